"""Start the dashboard's server warm: ``python -m dashboard.serve`` is ``python -m streamlit``
that first does what a cold server's first page view would otherwise wait for.

``poolstride dashboard`` runs ``python -m dashboard.serve run <dashboard/app.py> --server.port
…``: the same arguments as ``streamlit run``. Before Streamlit starts, :func:`warm` imports
every module the pages use (pandas, plotly, SQLAlchemy, Alembic, ``search``; about a second
on a laptop) and opens the read-only store with one read of the queue, in this same process,
so the first visitor's page runs only its own queries. Then Streamlit's own command line takes
the arguments (:func:`streamlit.web.cli.main`, what ``python -m streamlit`` runs).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Sequence

__all__ = ["PAGE_MODULES", "main", "warm"]

# What the app and its pages import, and what they import lazily on a first run (pyarrow: the
# first st.dataframe; pandas' Styler and its jinja2: the Architecture page's diff).
PAGE_MODULES = (
    "pandas",
    "pandas.io.formats.style",
    "pyarrow",
    "plotly.graph_objects",
    "plotly.subplots",
    "sqlalchemy",
    "search.analysis",
    "search.objectives",
    "search.pareto",
    "search.query",
    "search.store",
    "dashboard._data",
    "dashboard._ui",
    "dashboard.figures",
    "dashboard.network",
    "dashboard.tables",
)


def warm(url: str | None = None) -> str:
    """Import :data:`PAGE_MODULES` and open the read-only store on ``url`` (default: the
    dashboard's database, ``$POOLSTRIDE_DB``) with one read of its queue.

    A database that cannot be read is not an error here: the app says why on the page, as it
    does when the database fails later.

    Returns:
        One line for the server's log: what the warm-up took.

    Example:
        >>> print(warm("sqlite://"))  # doctest: +ELLIPSIS
        dashboard warmed in ... s (code ... s, database: ... has no poolstride schema: ...)
    """
    start = time.perf_counter()
    import streamlit  # noqa: F401  (creates its loggers, which the next lines adjust)

    # The data helpers are cached functions: defined before Streamlit's runtime exists, each
    # logs that it falls back to an in-memory cache. Those lines are wrong here (the runtime
    # creates the real caches on their first call) and would only alarm a reader of the log.
    caching_log = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = caching_log.level
    caching_log.setLevel(logging.ERROR)
    try:
        for name in PAGE_MODULES:
            importlib.import_module(name)
    finally:
        caching_log.setLevel(level)
    _draw_each_figure()
    code = time.perf_counter()

    from dashboard import _data
    from search.store import StoreError, check_schema

    try:
        # The cached store (one engine and pool per process) is the one the pages then use;
        # the cached reads are not called here, their caches belong to Streamlit's runtime.
        store = _data.store(url or _data.database_url())
        check_schema(store.engine)
        store.list_jobs()
        store.list_workers()
        database = f"{time.perf_counter() - code:.2f} s"
    except StoreError as exc:
        database = str(exc)
    return (
        f"dashboard warmed in {time.perf_counter() - start:.2f} s "
        f"(code {code - start:.2f} s, database: {database})"
    )


def _draw_each_figure() -> None:
    """Build and serialise one tiny figure of each kind the pages draw: plotly loads a trace's
    and a layout's classes on their first use (a tenth of a second for the stage panels)."""
    import pandas as pd

    from dashboard import figures
    from search.analysis import stage_analysis

    stage = {"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none", "s1.width": 8}
    metrics = {"val_acc": 0.5, "test_acc": 0.5, "flops": 10, "params": 5}
    one = pd.DataFrame([{"trial": 0, **stage, "s1.depth": 1, **metrics}])
    for figure in (
        figures.pareto_figure(one, one, x="flops", y="val_acc", color_by="s1.downsample"),
        figures.hypervolume_figure(pd.DataFrame({"trial": [0], "hypervolume": [0.5]})),
        figures.stage_figure(1, stage_analysis(one, resamples=10)),
        figures.curves_figure(pd.DataFrame({"trial_number": [0], "epoch": [1], "val_acc": [0.5]})),
    ):
        figure.to_json()


def main(argv: Sequence[str] | None = None) -> None:
    """Warm up, then run Streamlit's command line on ``argv`` (default: this process's
    arguments), as ``python -m streamlit`` would.

    Example:
        >>> main(["run", "dashboard/app.py", "--server.port", "8502"])  # doctest: +SKIP
    """
    print(warm(), file=sys.stderr, flush=True)
    from streamlit.web import cli

    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="streamlit")


if __name__ == "__main__":
    main()
