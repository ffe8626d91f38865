"""What the store's read queries return: plain frozen dataclasses, never ORM rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from search.config import JobConfig
from search.datasets import DatasetFacts
from search.vocabulary import CandidateState, JobStatus, Phase, WorkerStatus

__all__ = ["CachedResult", "CandidateInfo", "Heartbeat", "JobInfo", "PhaseProgress", "WorkerInfo"]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class PhaseProgress:
    """How far one phase of a job is: ``done`` complete candidates (cache hits included) and
    ``failed`` failed ones, of ``total`` (``None`` until the phase is planned).

    Example:
        >>> PhaseProgress("confirm", 4, 6, 0).to_dict()
        {'name': 'confirm', 'done': 4, 'total': 6, 'failed': 0}
    """

    name: Phase
    done: int
    total: int | None
    failed: int

    @property
    def ended(self) -> bool:
        """Whether the phase is over: the search when its budget of results is met (its failed
        trials are replaced), a planned phase when each of its trials completed or failed.

        Example:
            >>> PhaseProgress("confirm", 5, 6, 1).ended, PhaseProgress("search", 5, 6, 1).ended
            (True, False)
        """
        if self.total is None:
            return False
        ended = self.done if self.name == "search" else self.done + self.failed
        return ended >= self.total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobInfo:
    """A job as the queue sees it, with its progress.

    ``study_name`` is the Optuna study's name (``study`` in :meth:`to_dict`); ``trials_done``
    counts the search phase's candidates evaluated: complete, or pruned by early stopping
    (``config.trials`` of them end it). ``trained`` counts the candidates that trained
    (complete or pruned, not served by the cache), ``cached`` the complete ones the cache
    served, ``stopped`` those early stopping stopped; ``phases`` holds one
    :class:`PhaseProgress` per phase the job has (search; confirm with more than one seed;
    ablate unless ``ablate`` is ``"none"``), ``plan`` what the worker planned for each phase
    after search (:meth:`~search.store.Store.record_plan`), ``None`` until it planned one.
    """

    id: int
    name: str
    status: JobStatus
    priority: int
    study_name: str
    config: JobConfig
    trials_done: int
    trials_total: int
    attempts: int
    max_attempts: int
    error: str | None
    cancel_requested: bool
    worker_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    dataset_facts: DatasetFacts | None = None
    trained: int = 0
    cached: int = 0
    stopped: int = 0
    phases: tuple[PhaseProgress, ...] = ()
    plan: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 (UTC), ``config`` as :meth:`JobConfig.to_dict`,
        ``dataset_facts`` as :meth:`DatasetFacts.to_dict` (``None`` until a worker loaded the
        data), ``phases`` as a list of :meth:`PhaseProgress.to_dict`."""
        out = {
            ("study" if k == "study_name" else k): _jsonable(v)
            for k, v in vars(self).items()
            if k not in ("config", "dataset_facts", "phases")
        }
        out["config"] = self.config.to_dict()
        facts = self.dataset_facts
        out["dataset_facts"] = facts.to_dict() if facts else None
        out["phases"] = [p.to_dict() for p in self.phases]
        return out


@dataclass(frozen=True)
class Heartbeat:
    """The answer to a job heartbeat.

    Attributes:
        lease_held: The caller still holds the job and its lease was renewed. When false the
            job has moved on (reclaimed, finished or cancelled): stop working on it.
        cancel_requested: Someone asked to cancel the job: stop and ``finish_job(cancelled)``.
    """

    lease_held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker and when it was last heard from.

    ``status`` is ``lost`` when the worker said it was idle or busy but its last heartbeat is
    older than its lease (``lease_seconds``; the default lease for rows that do not record one).
    """

    id: str
    hostname: str
    pid: int
    status: WorkerStatus
    current_job_id: int | None
    started_at: datetime
    last_heartbeat: datetime
    lease_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CandidateInfo:
    """One candidate: architecture, costs, metrics, where it ran, and which phase and
    replicate of the job it is (``cached_from``: the candidate whose result it reuses)."""

    id: int
    job_id: int
    trial_number: int
    optuna_trial_id: int | None
    state: CandidateState
    arch_json: str
    arch_hash: str
    val_acc: float | None
    test_acc: float | None
    flops: int
    params: int
    activation_bytes: int
    receptive_field: int
    latency_ms: float | None
    train_s: float | None
    epochs_done: int
    epochs_total: int
    device: str | None
    seed: int
    attempt: int
    worker_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    phase: Phase
    replicate: int
    reference: int | None
    cached_from: int | None
    cache_key: str | None
    latency_rel: float | None
    gpu_share: float | None
    stopped_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CachedResult:
    """A complete, fully trained candidate that a trial with the same cache key may reuse
    (:meth:`~search.store.Store.find_cached`): where it came from and what it measured.

    Example:
        >>> hit = CachedResult(7, 1, 3, 0.91, 0.9, 1.5, 12.0, "cpu", 3)
        >>> hit.candidate_id, hit.val_acc
        (7, 0.91)
    """

    candidate_id: int
    job_id: int
    trial_number: int
    val_acc: float
    test_acc: float | None
    latency_ms: float | None
    train_s: float | None
    device: str | None
    epochs_done: int
    latency_rel: float | None = None
    stopped_at: int | None = None  # a training early stopping stopped (Store.find_stopped)
