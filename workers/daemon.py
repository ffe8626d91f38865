"""The worker service: register, claim jobs, keep their leases alive, run them, report the end.

A worker holds a job through a lease that a heartbeat thread renews. If the worker dies
(``kill -9``), the lease expires and the next worker claims the job again, one attempt later, and
:meth:`search.study.JobStudy.recover` re-runs what the dead worker left running. A cancel
request seen by the heartbeat stops the job within a heartbeat; SIGTERM or Ctrl-C stop the
running job, hand its unfinished trials back to the queue and exit cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from optuna.storages import RDBStorage

from search.artifacts import artifact_dir
from search.store import (
    DEFAULT_LEASE_S,
    OUTAGE,
    DatabaseUnavailableError,
    JobInfo,
    LeaseLostError,
    Store,
    db_error_line,
    db_errors,
    new_worker_id,
    optuna_storage,
    retrying,
)
from search.study import end_open_trials
from search.vocabulary import Phase
from workers.ray_session import RayUnavailableError, check_address, ray_session
from workers.runner import JobOutcome, Outcome, run_job
from workers.searcher import ProgressFn, StopRequest

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
        on_progress: Called with ``(job_id, phase, done, total, failed)`` when a phase of a
            job starts and as its trials finish (``total`` is ``None`` until it is planned).

    Example:
        >>> worker = Worker("sqlite:///poolstride.db")  # doctest: +SKIP
        >>> worker.run(once=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        db_url: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 2.0,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
        on_progress: Callable[[int, Phase, int, int | None, int], None] | None = None,
    ) -> None:
        self.db_url = db_url
        self.store = Store.open(db_url)
        self.id = new_worker_id()
        self.lease_s, self.poll_s = lease_s, poll_s
        self.cpus_per_trial, self.gpus_per_trial = cpus_per_trial, gpus_per_trial
        self.on_progress = on_progress
        self.shutdown = threading.Event()
        self._job_stop: StopRequest | None = None
        self._optuna: RDBStorage | None = None
        self._ray_started = False

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
        Every database call of the loop (registering, polling, heartbeats, a job's start and
        end) waits out an outage of up to :data:`search.store.RETRY_S` seconds. Returns the
        outcome of each job it ran. A cluster at ``ray_address`` that does not answer (at the
        start, or when a job starts Ray) raises :class:`~workers.ray_session.RayUnavailableError`,
        the job handed back unharmed.
        """
        if ray_address:
            check_address(ray_address)  # before claiming: a wrong address fails no job
        outcomes: list[tuple[int, JobOutcome]] = []
        retrying(self.store.register_worker, self.id, lease_seconds=self.lease_s)
        previous = self._take_signals()
        clean = False
        try:
            with contextlib.ExitStack() as ray_scope:
                start_ray = functools.partial(self._ray, ray_scope, ray_address)
                sweep_at = 0.0
                while not self.shutdown.is_set():
                    if time.monotonic() >= sweep_at:
                        # what a worker that died (or lost a commit) between ending a job and
                        # closing its study left: at start, then once per lease
                        self._close_ended(retrying(self.store.ended_with_open_trials))
                        sweep_at = time.monotonic() + self.lease_s
                    self._close_ended(retrying(self.store.end_expired))
                    job = retrying(self.store.claim, self.id, self.lease_s, job_id=job_id)
                    if job is None:
                        if once or drain or job_id is not None:
                            break
                        retrying(self.store.worker_heartbeat, self.id)
                        self.shutdown.wait(self.poll_s)
                        continue
                    log.info(
                        "job %s claimed (attempt %s/%s)", job.id, job.attempts, job.max_attempts
                    )
                    outcomes.append((job.id, self._run_one(job, start_ray)))
                    if once or job_id is not None:
                        break
            clean = True
        finally:
            if clean:
                retrying(self.store.worker_stopped, self.id)
            else:  # leaving on an error (the database gone for good?): one try, no waiting
                with contextlib.suppress(Exception):
                    self.store.worker_stopped(self.id)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return outcomes

    def _take_signals(self) -> dict[int, Any]:
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _ray(self, scope: contextlib.ExitStack, address: str | None) -> None:
        # Ray starts with the first job, not with the worker: an idle worker (or one that only
        # ends expired jobs) needs none of it
        if self._ray_started:
            return
        scope.enter_context(ray_session(address=address))
        self._ray_started = True
        self._take_signals()  # ray.init installs a C++ SIGTERM handler that would kill us

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("signal %s: stopping (a running job is handed back to the queue)", signum)
        self.request_shutdown()

    def _storage(self) -> RDBStorage:
        # one Optuna storage for the worker's life: opening it checks Optuna's schema, and its
        # pool re-connects after an outage as the store's does
        if self._optuna is None:
            self._optuna = retrying(optuna_storage, self.db_url)
        return self._optuna

    def _run_one(self, job: JobInfo, start_ray: Callable[[], None]) -> JobOutcome:
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
                storage=self._storage(),
                stop=stop,
                on_progress=self._progress(job.id),
                weights_dir=artifact_dir(self.db_url) / f"job-{job.id}",
                start_ray=start_ray,
            )
        except db_errors() as exc:
            # the database stayed away longer than the retries wait: not the job's fault
            log.error("job %s: database unreachable for too long (%s)", job.id, db_error_line(exc))
            stop.set("error")
            beat.join()
            self._end(self.store.release_job, job.id)
            # and stop: claiming the job again would hand it back again, for ever
            if isinstance(exc, DatabaseUnavailableError):
                raise
            raise DatabaseUnavailableError(db_error_line(exc)) from exc
        except RayUnavailableError as exc:
            # the cluster went away, not the job's fault: hand it back, and stop (every job
            # claimed next would be handed back too)
            log.error("job %s: %s", job.id, exc)
            stop.set("error")
            beat.join()
            self._end(self.store.release_job, job.id)
            raise
        except Exception as exc:
            log.exception("job %s failed on this worker", job.id)
            stop.set("error")
            beat.join()
            error = f"{type(exc).__name__}: {exc}"
            after = self._end(self.store.fail_attempt, job.id, error=error)
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
            message = f"attempt {after.attempts}/{after.max_attempts}: {error}"
            self._close(after, reason=message, requeue=status == "requeued")
            log.info("job %s %s after %s", job.id, status, message)
            return JobOutcome(status, 0, 0, message)
        finally:
            self._job_stop = None
        stop.set(stop.reason or "done")
        beat.join()
        if outcome.status == "interrupted":
            if self._end(self.store.release_job, job.id) is not None:
                log.info("job %s handed back to the queue (%s)", job.id, outcome.error)
        elif stop.reason != "lease lost":
            after = self._end(
                self.store.finish_job, job.id, status=outcome.status, error=outcome.error
            )
            if after is not None and after.status != "succeeded":
                self._close(after, reason=outcome.error or f"job {after.status}")
            log.info(
                "job %s %s: %s complete, %s failed%s",
                job.id,
                outcome.status,
                outcome.completed,
                outcome.failed,
                f" ({outcome.error})" if outcome.error else "",
            )
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

    def _close(self, job: JobInfo, *, reason: str, requeue: bool = False) -> None:
        try:
            failed = retrying(
                end_open_trials,
                storage=self._storage(),
                store=self.store,
                job_id=job.id,
                study_name=job.study_name,
                reason=reason,
                requeue=requeue,
            )
        except db_errors():
            raise
        except Exception:  # the job's end is written; a later sweep closes what is left
            log.warning("job %s: closing its study failed", job.id, exc_info=True)
            return
        if failed:
            log.info("job %s: %s RUNNING trials told FAIL (%s)", job.id, failed, reason)

    def _close_ended(self, jobs: list[JobInfo]) -> None:
        for job in jobs:
            log.info("job %s %s (%s)", job.id, job.status, job.error)
            self._close(job, reason=job.error or f"job {job.status}")

    def _progress(self, job_id: int) -> ProgressFn:
        def report(phase: Phase, done: int, total: int | None, failed: int) -> None:
            if self.on_progress:
                self.on_progress(job_id, phase, done, total, failed)

        return report

    def _heartbeat(self, job_id: int, stop: StopRequest) -> None:
        # often enough that a cancel lands within seconds, and at least thrice per lease; an
        # outage is waited out (the lease has slack) and logged once, not at every beat
        while not stop.wait(min(self.lease_s / 3, 2.0)):
            try:
                beat = self.store.heartbeat(self.id, job_id, self.lease_s)
            except db_errors() as exc:
                OUTAGE.down(exc)
                continue
            except Exception:
                log.exception("heartbeat for job %s failed; retrying", job_id)
                continue
            OUTAGE.up()
            if not beat.lease_held:
                stop.set("lease lost")
            elif beat.cancel_requested:
                stop.set("cancel")
