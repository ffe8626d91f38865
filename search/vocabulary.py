"""poolstride's words, each defined once: stage choices and keys, states and metrics.

The ``Literal`` types are what the code is typed with; the tuples beside them (derived from the
types, so the two cannot drift apart) are what validation, the CLI help, the database's CHECK
constraints and the dashboard iterate over. The registries of datasets
(:data:`search.datasets.DATASETS`), objectives (:data:`search.objectives.OBJECTIVES`) and
samplers (:data:`search.study.SAMPLERS`) live beside the code they describe.

Example:
    >>> DOWNSAMPLES, FINAL_STATUSES
    (('max', 'avg', 'strided', 'conv'), ('succeeded', 'failed', 'cancelled'))
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ABLATE_CHOICES",
    "ABLATE_MODES",
    "CANDIDATE_STATES",
    "DOWNSAMPLES",
    "EARLY_STOPS",
    "FINAL_CANDIDATE_STATES",
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "KERNELS",
    "METRICS",
    "PHASES",
    "SKIPS",
    "STAGE_CHOICES",
    "STAGE_KEYS",
    "TABLE_METRICS",
    "VERDICTS",
    "AblateMode",
    "CandidateState",
    "Downsample",
    "EarlyStop",
    "FinalStatus",
    "JobStatus",
    "Metric",
    "Phase",
    "Skip",
    "StageChoice",
    "StageKey",
    "Verdict",
    "WorkerStatus",
]

Downsample = Literal["max", "avg", "strided", "conv"]
Skip = Literal["none", "proj", "pool"]
# the searched choices of a stage, and every key of a stage (width and depth may be fixed)
StageChoice = Literal["downsample", "kernel", "skip"]
StageKey = Literal["downsample", "kernel", "skip", "width", "depth"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FinalStatus = Literal["succeeded", "failed", "cancelled"]
CandidateState = Literal["running", "complete", "pruned", "failed"]
# "lost" is never stored: a live status whose heartbeat is older than the lease reads as lost
WorkerStatus = Literal["idle", "busy", "stopped", "lost"]
# a job's phases, in order: the sampler's search, more seeds for the front, one-choice variants
Phase = Literal["search", "confirm", "ablate"]
# which stage choices the ablation varies around its reference
AblateMode = Literal["none", "downsample", "all"]
# how a job stops search candidates early: never, or search.halving's rule
EarlyStop = Literal["none", "mo-asha"]
# what an effect measured around a reference says
Verdict = Literal["better", "worse", "no detectable difference", "too few seeds"]
# the measured and computed numbers of a candidate, in output order
Metric = Literal[
    "val_acc",
    "test_acc",
    "flops",
    "params",
    "latency_ms",
    "train_s",
    "activation_bytes",
    "receptive_field",
    "latency_rel",
]

DOWNSAMPLES: tuple[Downsample, ...] = get_args(Downsample)
SKIPS: tuple[Skip, ...] = get_args(Skip)
KERNELS: tuple[int, ...] = (3, 5, 7)  # the default kernel choices; any odd size is accepted
STAGE_CHOICES: tuple[StageChoice, ...] = get_args(StageChoice)
STAGE_KEYS: tuple[StageKey, ...] = get_args(StageKey)
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)
CANDIDATE_STATES: tuple[CandidateState, ...] = get_args(CandidateState)
FINAL_CANDIDATE_STATES: tuple[CandidateState, ...] = ("complete", "pruned", "failed")
METRICS: tuple[Metric, ...] = get_args(Metric)
PHASES: tuple[Phase, ...] = get_args(Phase)
ABLATE_MODES: tuple[AblateMode, ...] = get_args(AblateMode)
EARLY_STOPS: tuple[EarlyStop, ...] = get_args(EarlyStop)
ABLATE_CHOICES: dict[AblateMode, tuple[StageChoice, ...]] = {
    "none": (),
    "downsample": ("downsample",),
    "all": STAGE_CHOICES,
}
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
# the metrics a table of candidates shows (the last two are costs that rarely decide)
TABLE_METRICS: tuple[Metric, ...] = METRICS[:6]
