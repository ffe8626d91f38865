"""What every command shares: the error exits, ``--db``, JSON, numbers, tables and progress.

The names here are public within :mod:`search.cli` (the command modules import them); nothing
outside the package should.

Output follows one rule: on a terminal, tables are aligned by rich and progress is a rich bar
with elapsed time and ETA; anywhere else (a pipe, a log, CI, the tests) they are plain text
lines, and ``--json`` output is never touched.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from search._checks import INT32, Bounds
from search.query import output_columns, to_records
from search.store import (
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    JobInfo,
    JobNotFoundError,
    JobStateError,
    SchemaError,
    StoreError,
    normalize_url,
    resolve_db_url,
)
from search.vocabulary import TABLE_METRICS

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "TIME_FORMAT",
    "Integer",
    "Progress",
    "bad_input",
    "candidate_columns",
    "cell",
    "count",
    "database",
    "db_option",
    "die",
    "emit_json",
    "fail",
    "json_option",
    "print_candidates",
    "print_table",
    "stack",
    "table_columns",
    "terminal",
    "warn",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# -- exits -----------------------------------------------------------------------------------


def _exit(message: str, code: int) -> NoReturn:
    click.echo(f"poolstride: error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: the answer to bad input.

    Example:
        >>> fail("kernel 4 is not odd")
        Traceback (most recent call last):
        SystemExit: 2
    """
    _exit(message, EXIT_BAD_INPUT)


def die(message: str) -> NoReturn:
    """One line on stderr and exit 1: something failed (the database, a download), not the input.

    Example:
        >>> die("database sqlite:///x.db: disk I/O error")
        Traceback (most recent call last):
        SystemExit: 1
    """
    _exit(message, EXIT_FAILURE)


def warn(message: str) -> None:
    """One ``poolstride: warning:`` line on stderr; the command goes on.

    Example:
        >>> warn("no weights kept")  # doctest: +SKIP
        poolstride: warning: no weights kept
    """
    click.echo(f"poolstride: warning: {message}", err=True)


@contextlib.contextmanager
def bad_input() -> Iterator[None]:
    """Turn a ``ValueError`` raised while validating user input into :func:`fail`.

    Example:
        >>> with bad_input():
        ...     int("many")
        Traceback (most recent call last):
        SystemExit: 2
    """
    try:
        yield
    except ValueError as exc:
        fail(str(exc))


@contextlib.contextmanager
def database(db: str | None) -> Iterator[str]:
    """Resolve ``--db`` (the flag, else ``$POOLSTRIDE_DB``, else the default) to a URL.

    Inside the block, the store's refusals (no schema, an unknown job, a job in the wrong state)
    become :func:`fail` and a failing database becomes :func:`die`, each one line.

    Example:
        >>> with database(None) as url:  # doctest: +SKIP
        ...     Store.open(url).close()
    """
    with bad_input():
        url = normalize_url(resolve_db_url(db))
    try:
        yield url
    except StoreError as exc:
        if isinstance(exc, SchemaError | JobNotFoundError | JobStateError):
            fail(str(exc))
        die(str(exc))


# -- options ---------------------------------------------------------------------------------


def stack(*options: Callable[[Any], Any]) -> Callable[[F], F]:
    """Several click decorators as one, applied as if written one above the other in order.

    Example:
        >>> verbose = stack(click.option("--quiet", is_flag=True), click.option("--loud"))
        >>> [p.name for p in click.command()(verbose(lambda quiet, loud: None)).params]
        ['quiet', 'loud']
    """

    def apply(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


class Integer(click.IntRange):
    """A command-line integer that the database can take: within ``bounds``, the range of the
    column it is stored in or compared with (:data:`search._checks.INT32` for an ``Integer``
    column), and at least ``minimum`` if given.

    Out of range, click refuses it as it refuses a word, in one line with status 2, before
    anything touches the database. The help reads as click's own types': ``INTEGER`` and no
    range, or with ``minimum`` ``INTEGER RANGE`` and ``[x>=MINIMUM]``; the column's bounds show
    only in a refusal.

    Example:
        >>> Integer().convert("7", None, None)
        7
        >>> Integer().convert("99999999999999999999", None, None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        click.exceptions.BadParameter: 99999999999999999999 is not in the range -2147483648<=x...
    """

    def __init__(self, bounds: Bounds = INT32, *, minimum: int | None = None) -> None:
        self.lo = bounds.lo if minimum is None else max(minimum, bounds.lo)
        self.hi = bounds.hi
        self.minimum = minimum
        super().__init__(min=self.lo, max=self.hi)
        self.name = "integer" if minimum is None else "integer range"

    def _describe_range(self) -> str:
        # click asks this for the help's ``[...]`` (an empty answer shows none) and for its
        # refusal, which convert words itself, with both bounds
        return "" if self.minimum is None else f"x>={self.minimum}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number: int = click.INT.convert(value, param, ctx)
        if not self.lo <= number <= self.hi:
            self.fail(f"{number} is not in the range {self.lo}<=x<={self.hi}.", param, ctx)
        return number


db_option = click.option(
    "--db",
    "db",
    metavar="URL",
    help=f"Database URL (default: ${DB_ENV_VAR}, else {DEFAULT_DB_URL}).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


# -- output ----------------------------------------------------------------------------------


def emit_json(data: Any) -> None:
    """Print ``data`` as one indented JSON document on stdout (datetimes as text).

    Example:
        >>> emit_json({"job": 1})  # doctest: +NORMALIZE_WHITESPACE
        { "job": 1 }
    """
    click.echo(json.dumps(data, indent=2, default=str))


def cell(value: Any) -> str:
    """One table cell: floats to 4 significant digits, ints with thousands commas, None as -.

    Example:
        >>> cell(0.823456), cell(1234567), cell(None), cell("max")
        ('0.8235', '1,234,567', '-', 'max')
    """
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1.

    Example:
        >>> count(1, "trial"), count(12, "trial")
        ('1 trial', '12 trials')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def when(value: datetime | None) -> str:
    """A UTC time to the second, or ``-``.

    Example:
        >>> when(datetime(2024, 5, 1, 12, 0, 3)), when(None)
        ('2024-05-01 12:00:03 UTC', '-')
    """
    return value.strftime(f"{TIME_FORMAT} UTC") if value else "-"


def terminal(stream: TextIO) -> Console | None:
    """A rich console on ``stream`` if it is a terminal; ``None`` means plain text.

    Decided by ``isatty`` alone, so an environment that forces colour (``FORCE_COLOR``) still
    gets plain lines in a pipe.

    Example:
        >>> import io
        >>> terminal(io.StringIO()) is None
        True
    """
    return Console(file=stream, force_terminal=True) if stream.isatty() else None


_NUMBER = re.compile(r"-|[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?")


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, console: Console | None = None
) -> None:
    """Print ``rows`` under ``header`` on stdout (or ``console``).

    On a terminal: a rich table, numeric columns right-aligned. Elsewhere: left-aligned
    columns two spaces apart, trailing spaces trimmed.

    Example:
        >>> print_table(["trial", "val_acc"], [["0", "0.8"], ["12", "0.82"]])
        trial  val_acc
        0      0.8
        12     0.82
    """
    console = console or terminal(sys.stdout)
    if console is None:
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, name in enumerate(header):
        numeric = bool(rows) and all(_NUMBER.fullmatch(r[i]) for r in rows)
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    natural = console.measure(table, options=console.options.update_width(10**6)).maximum
    if natural > console.width:
        # wider than the terminal: let the terminal wrap the lines rather than rich cut cells
        table.width = natural
    console.print(table, crop=False)


def table_columns(job: JobInfo, *, with_state: bool) -> list[str]:
    """The columns a table of the job's candidates shows.

    Only the searched stage parameters: fixed widths and depths would repeat on every line.
    """
    return [
        "trial",
        *(["state"] if with_state else []),
        *job.config.space.distributions(),
        *TABLE_METRICS,
    ]


def candidate_columns(job: JobInfo) -> list[str]:
    """The columns of the job's candidate rows in JSON and CSV: every stage parameter, metric
    and cost, and which training it is (:func:`search.query.output_columns`)."""
    return output_columns(len(job.config.space.stages))


def print_candidates(frame: pd.DataFrame, job: JobInfo, *, with_state: bool) -> None:
    """Candidate rows as a table of :func:`table_columns`."""
    keys = table_columns(job, with_state=with_state)
    print_table(keys, [[cell(r[k]) for k in keys] for r in to_records(frame[keys])])


class Progress:
    """Progress of one count on stderr: a rich bar on a terminal, else a line per tenth done.

    The plain lines read ``LABEL: DONE/TOTAL (PCT)[, NOTE]``: one whenever the tenth done
    changes, and on leaving the last count if it was not printed yet, so the last line always
    holds the final count however the updates arrived.

    Args:
        label: What is counted, e.g. ``trials``.
        total: The count to reach; ``0`` if unknown until :meth:`update` gives it.
        scale: Counts are shown divided by it, with one decimal (e.g. ``2**20`` for MiB).
        unit: Shown after the counts, e.g. ``MiB``.
        console: Where to draw the bar; default: stderr if it is a terminal, else plain lines.

    Example:
        >>> with Progress("trials", 3) as bar:  # doctest: +SKIP
        ...     bar.update(1)
        ...     bar.update(3, note="1 failed")
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        scale: float = 1,
        unit: str = "",
        console: Console | None = None,
    ) -> None:
        self.label, self.total, self.scale, self.unit = label, total, scale, unit
        self.done, self.note = 0, ""
        self._console = console or terminal(sys.stderr)
        self._bar: tuple[RichProgress, TaskID] | None = None
        self._tenth: int | None = None
        self._pending: str | None = None

    def __enter__(self) -> Progress:
        if self.total and self._console is not None:
            # the clock starts now, not at the first update, when the total is known up front
            self._start(self._console)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar[0].stop()
        elif self._pending is not None:
            click.echo(self._pending, err=True)
            self._pending = None

    def update(self, done: int, *, total: int | None = None, note: str = "") -> None:
        """Set the count to ``done`` (of ``total``, if it changed), with a ``note`` after it."""
        self.done, self.total, self.note = done, total or self.total, note
        if self._console is not None:
            bar, task = self._start(self._console)
            bar.update(
                task,
                completed=done,
                total=self.total or None,
                amount=self._amount(),
                note=note,
            )
            return
        fraction = done / self.total if self.total else 0.0
        line = f"{self.label}: {self._amount()} ({fraction:.0%}){', ' + note if note else ''}"
        tenth = done * 10 // self.total if self.total else 0
        if tenth != self._tenth:
            self._tenth, self._pending = tenth, None
            click.echo(line, err=True)
        else:
            self._pending = line

    def _amount(self) -> str:
        if self.scale == 1:
            amount = f"{self.done}/{self.total}"
        else:
            amount = f"{self.done / self.scale:.1f}/{self.total / self.scale:.1f}"
        return f"{amount} {self.unit}" if self.unit else amount

    def _start(self, console: Console) -> tuple[RichProgress, TaskID]:
        if self._bar is None:
            bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                _Eta(),
                TextColumn("{task.fields[note]}"),
                console=console,
                # trials end minutes apart: estimate the rate over the whole run, not 30 s
                speed_estimate_period=24 * 3600,
            )
            task = bar.add_task(
                self.label, total=self.total or None, amount=self._amount(), note=self.note
            )
            bar.start()
            self._bar = bar, task
        return self._bar


class _Eta(TimeRemainingColumn):
    """The time left, labelled; nothing while the total is unknown."""

    def render(self, task: Task) -> Text:
        left = super().render(task)
        return Text("eta ") + left if left.plain else left
