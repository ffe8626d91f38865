"""Dashboard render time on a big study: every page on a job of 100k candidates.

Fills a fresh SQLite database (or ``--db URL``, empty or upgraded) with one job of N complete
candidates (default 100,000) by ``bench/db_scale.py``'s bulk insert, plus one learning-curve
point per candidate. Then renders each page with Streamlit's ``AppTest`` (the app's real script
run, in-process, no browser), twice:

- **cold**: Streamlit's caches emptied first, so the page reads the database and computes
  everything (what the first visitor after the cache expiry waits for);
- **warm**: the same page again within the cache's lifetime (what every widget change and
  auto-refresh costs).

Target: every page under 3 s. The last line is ``dashboard_render_s: X``, the slowest cold page.

    .venv/bin/python bench/dashboard_render.py [--candidates 100000] [--db URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import streamlit as st  # noqa: E402
from db_scale import add_scale_args, scaled_database  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from search.store import DB_ENV_VAR, Store  # noqa: E402

# bulk INSERT of 100k epochs: Store.record_epoch is one transaction per point, no bulk path
from search.store._models import Candidate, Epoch  # noqa: E402

TARGET_S = 3.0
APP = ROOT / "dashboard" / "app.py"
PAGES = ("queue", "pareto", "stages", "trials", "architecture")


def finish(url: str, job_id: int) -> int:
    """Give every candidate one learning-curve point (its final val_acc, as a 1-epoch job
    records) and end the job ``succeeded``, as a finished study is; returns the epoch rows."""
    with Store.open(url) as store:
        with store.session(write=True) as s:
            rows = [
                {"candidate_id": cid, "epoch": 1, "val_acc": acc, "train_loss": 1.0, "seconds": 1.0}
                for cid, acc in s.execute(
                    select(Candidate.id, Candidate.val_acc).where(Candidate.job_id == job_id)
                )
            ]
            for start in range(0, len(rows), 50_000):
                s.execute(insert(Epoch), rows[start : start + 50_000])
        assert store.claim("bench", lease_seconds=60, job_id=job_id) is not None
        store.finish_job(job_id, "bench", "succeeded")
        return len(rows)


def render(
    page: str,
    job_id: int,
    *,
    cold: bool,
    at: AppTest | None = None,
) -> tuple[float, AppTest]:
    """Seconds of one script run of ``page``; ``cold`` empties the caches first."""
    if at is None:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()  # the entry page registers the others
        if page != "queue":
            at.switch_page(f"views/{page}.py")
        at.query_params["job"] = str(job_id)
    if cold:
        st.cache_data.clear()
        st.cache_resource.clear()
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].value}")
    return elapsed, at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_args(parser)
    args = parser.parse_args()

    with scaled_database(args) as (url, job_id):
        print(f"and {finish(url, job_id):,} epoch rows")
        os.environ[DB_ENV_VAR] = url

        cold_times = {}
        for page in PAGES:
            cold, at = render(page, job_id, cold=True)
            warm, _ = render(page, job_id, cold=False, at=at)
            cold_times[page] = cold
            flag = "" if cold < TARGET_S else f"  over the {TARGET_S:.0f} s target"
            print(f"{page:<13} cold {cold:6.3f} s   warm {warm:6.3f} s{flag}")

    slowest = max(cold_times, key=cold_times.__getitem__)
    print(f"slowest page: {slowest} (cold); target {TARGET_S:.0f} s per page")
    print(f"dashboard_render_s: {cold_times[slowest]:.3f}")


if __name__ == "__main__":
    main()
