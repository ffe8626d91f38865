"""The child process of the claim race (kept free of pytest so that spawning is quick)."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.synchronize import Barrier

from search.store import Store


def claim_all(url: str, worker: str, barrier: Barrier, out: mp.Queue) -> None:
    """Wait for every racer, then claim until the queue is empty; report the ids."""
    store = Store.open(url)
    claimed: list[int] = []
    barrier.wait(timeout=60)
    # as a worker does: one job at a time, ended before the next claim
    while (job := store.claim(worker, 60)) is not None:
        claimed.append(job.id)
        store.finish_job(job.id, worker, "succeeded")
    store.close()
    out.put((worker, claimed))
