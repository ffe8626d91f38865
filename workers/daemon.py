"""The worker service: register, claim jobs, keep their leases alive, run them, report the end.

A worker holds a job through a lease that a heartbeat thread renews. If the worker dies
(``kill -9``), the lease expires and the next worker claims the job again, one attempt later, and
:meth:`search.study.JobStudy.recover` re-runs what the dead worker left running. A cancel
request seen by the heartbeat stops the job within a heartbeat; SIGTERM or Ctrl-C stop the
running job, hand its unfinished trials back to the queue and exit cleanly.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from search.artifacts import artifact_dir
from search.store import JobInfo, LeaseLostError, Store, new_worker_id, optuna_storage, retrying
from workers.ray_session import ray_session
from workers.runner import JobOutcome, Outcome, run_job
from workers.searcher import StopRequest

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Claims and runs jobs from one database.

    Args:
        db_url: The poolstride database.
        lease_s: Lease length; the heartbeat renews it every third of it.
        poll_s: Wait between claims when the queue is empty.
        cpus_per_trial: Overrides the job's CPU share per trial (this machine's choice).
        gpus_per_trial: Overrides the job's GPU share per trial.
        on_progress: Called with ``(job_id, completed, total, failed)`` as trials finish.

    Example:
        >>> worker = Worker("sqlite:///poolstride.db")  # doctest: +SKIP
        >>> worker.run(once=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        db_url: str,
        *,
        lease_s: float = 60.0,
        poll_s: float = 2.0,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
        on_progress: Callable[[int, int, int, int], None] | None = None,
    ) -> None:
        self.db_url = db_url
        self.store = Store.open(db_url)
        self.id = new_worker_id()
        self.lease_s, self.poll_s = lease_s, poll_s
        self.cpus_per_trial, self.gpus_per_trial = cpus_per_trial, gpus_per_trial
        self.on_progress = on_progress
        self.shutdown = threading.Event()
        self._job_stop: StopRequest | None = None

    def request_shutdown(self, *_: object) -> None:
        """Stop after handing the running job back (the SIGTERM handler)."""
        self.shutdown.set()
        if self._job_stop is not None:
            self._job_stop.set("shutdown")

    def run(
        self,
        *,
        once: bool = False,
        drain: bool = False,
        job_id: int | None = None,
        ray_address: str | None = None,
    ) -> list[tuple[int, JobOutcome]]:
        """Work jobs until shutdown; ``once``: one job at most; ``drain``: until none is queued.

        ``job_id`` restricts the worker to that one job (what ``poolstride run`` uses).
        Returns the outcome of each job it ran.
        """
        outcomes: list[tuple[int, JobOutcome]] = []
        self.store.register_worker(self.id)
        previous: dict[int, Any] = {}
        try:
            with ray_session(address=ray_address):
                # after ray.init, which installs a C++ SIGTERM handler that would kill us
                previous = {
                    sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)
                }
                while not self.shutdown.is_set():
                    job = self.store.claim(self.id, self.lease_s, job_id=job_id)
                    if job is None:
                        if once or drain or job_id is not None:
                            break
                        self.store.worker_heartbeat(self.id)
                        self.shutdown.wait(self.poll_s)
                        continue
                    outcomes.append((job.id, self._run_one(job)))
                    if once or job_id is not None:
                        break
        finally:
            self.store.worker_stopped(self.id)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return outcomes

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("signal %s: stopping after handing the running job back", signum)
        self.request_shutdown()

    def _run_one(self, job: JobInfo) -> JobOutcome:
        config = job.config
        if self.cpus_per_trial is not None:
            config = dataclasses.replace(config, cpus_per_trial=self.cpus_per_trial)
        if self.gpus_per_trial is not None:
            config = dataclasses.replace(config, gpus_per_trial=self.gpus_per_trial)
        stop = self._job_stop = StopRequest()
        if self.shutdown.is_set():
            stop.set("shutdown")
        beat = threading.Thread(target=self._heartbeat, args=(job.id, stop), daemon=True)
        beat.start()
        try:
            outcome = run_job(
                store=self.store,
                job_id=job.id,
                config=config,
                study_name=job.study_name,
                attempt=job.attempts,
                worker_id=self.id,
                storage=optuna_storage(self.db_url),
                stop=stop,
                on_progress=self._progress(job.id, config.trials),
                weights_dir=artifact_dir(self.db_url) / f"job-{job.id}",
            )
        except Exception as exc:
            log.exception("job %s failed on this worker", job.id)
            stop.set("error")
            beat.join()
            after = self._end(self.store.fail_attempt, job.id, error=f"{type(exc).__name__}: {exc}")
            if after is None:
                return JobOutcome("interrupted", 0, 0, f"lease lost; {exc}")
            # fail_attempt leaves the job queued again, failed (attempts used up) or cancelled
            status: Outcome = (
                "requeued"
                if after.status == "queued"
                else "cancelled"
                if after.status == "cancelled"
                else "failed"
            )
            return JobOutcome(status, 0, 0, f"attempt {after.attempts}/{after.max_attempts}: {exc}")
        finally:
            self._job_stop = None
        stop.set(stop.reason or "done")
        beat.join()
        if outcome.status == "interrupted":
            self._end(self.store.release_job, job.id)
        elif stop.reason != "lease lost":
            self._end(self.store.finish_job, job.id, status=outcome.status, error=outcome.error)
        return outcome

    def _end(self, write: Callable[..., JobInfo], job_id: int, **kw: Any) -> JobInfo | None:
        # Retried across a dropped connection; a retry whose first try did commit finds the
        # job no longer held, as does a worker whose lease ran out: then another worker (or
        # the first try) owns the job's end, and nothing is written twice.
        try:
            return retrying(write, job_id, self.id, **kw)
        except LeaseLostError:
            log.warning(
                "job %s is no longer held by this worker; its end is left to its holder", job_id
            )
            return None

    def _progress(self, job_id: int, total: int) -> Callable[[int, int], None]:
        def report(completed: int, failed: int) -> None:
            if self.on_progress:
                self.on_progress(job_id, completed, total, failed)

        return report

    def _heartbeat(self, job_id: int, stop: StopRequest) -> None:
        # often enough that a cancel lands within seconds, and at least thrice per lease
        while not stop.wait(min(self.lease_s / 3, 2.0)):
            try:
                beat = self.store.heartbeat(self.id, job_id, self.lease_s)
            except Exception:  # a lost connection must not kill the job; the lease has slack
                log.warning("heartbeat for job %s failed; retrying", job_id, exc_info=True)
                continue
            if not beat.lease_held:
                stop.set("lease lost")
            elif beat.cancel_requested:
                stop.set("cancel")
