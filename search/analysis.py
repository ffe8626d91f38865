"""The per-stage answer: which downsample, kernel and skip work, stage by stage, with data.

Views of a job's complete candidates (a frame from :func:`search.query.load_candidates`):

- the verdicts of the job's one-choice ablations, seed-paired against a reference
  architecture: :func:`ablation_effects`, :func:`recommendations` and
  :func:`describe_verdict` (from :mod:`search.verdicts`, re-exported here);
- :func:`stage_analysis`: for every stage and every value of ``downsample``, ``kernel`` and
  ``skip``: how many candidates, their mean validation accuracy with a 95 % bootstrap
  interval, the share of the Pareto front that has it, mean FLOPs and params;
- :func:`paired_effects`, the *matched pairs*: where the study holds pairs of architectures
  that differ in one stage choice only, the mean change that choice makes (so the other stages
  do not confound it), whatever seeds trained them; :func:`describe_effect` says it in one
  sentence;
- :func:`importances`: Optuna's parameter importances on the job's study.

All of it is deterministic (fixed bootstrap seed) and renders nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from search._frames import complete_rows, stage_numbers
from search.objectives import DEFAULT_OBJECTIVES
from search.pareto import pareto_front
from search.verdicts import (
    ablation_effects,
    cost_objective,
    describe_verdict,
    recommendations,
)
from search.vocabulary import DOWNSAMPLES, KERNELS, SKIPS, STAGE_KEYS

if TYPE_CHECKING:
    import pandas as pd
    from optuna.storages import BaseStorage

__all__ = [
    "BOOTSTRAP_MAX_N",
    "CHOICES",
    "ablation_effects",
    "bootstrap_ci",
    "cost_objective",
    "describe_effect",
    "describe_verdict",
    "importances",
    "paired_effects",
    "recommendations",
    "stage_analysis",
]

CHOICES: dict[str, tuple[Any, ...]] = {"downsample": DOWNSAMPLES, "kernel": KERNELS, "skip": SKIPS}
# above this many values the percentile bootstrap of a mean equals the normal interval to
# the printed precision, and costs n × resamples draws; use the closed form instead
BOOTSTRAP_MAX_N = 5000
_Z = {0.90: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    ``resamples`` resamples (with replacement, ``numpy.random.default_rng(seed)``, indices
    drawn as one ``integers(0, n, (resamples, n))`` array), then the ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2`` quantiles (numpy's default linear method) of their means.
    More than :data:`BOOTSTRAP_MAX_N` values: the normal interval ``mean ± z·s/√n``.
    No values: ``(nan, nan)``.

    Example:
        >>> bootstrap_ci([0.5, 0.5, 0.5])
        (0.5, 0.5)
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    if n > BOOTSTRAP_MAX_N:
        z = _Z.get(round(confidence, 2))
        if z is None:
            raise ValueError(f"confidence {confidence} must be one of {', '.join(map(str, _Z))}")
        half = z * float(x.std(ddof=1)) / math.sqrt(n)
        mean = float(x.mean())
        return mean - half, mean + half
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def stage_analysis(
    df: pd.DataFrame,
    *,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    metric: str = "val_acc",
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per stage and per value of each choice: count, mean ``metric`` with a bootstrap
    interval, share of the Pareto front, mean FLOPs and params.

    Only rows with ``metric`` and every objective present count (complete candidates). The
    front is :func:`search.pareto.pareto_front` of those rows over ``objectives``;
    ``front_share`` is the fraction of front members that have the value (the shares of one
    stage's choice add up to 1). Only values some candidate has get a row.

    Returns:
        Columns ``stage``, ``choice``, ``value``, ``count``, ``{metric}_mean``,
        ``{metric}_lo``, ``{metric}_hi``, ``front_share``, ``flops_mean``, ``params_mean``,
        ordered by stage, choice (downsample, kernel, skip) and the space's value order.

    Example:
        >>> table = stage_analysis(load_candidates(store, 1))  # doctest: +SKIP
        >>> table[(table.stage == 2) & (table.choice == "downsample")]  # doctest: +SKIP
    """
    import pandas as pd

    used = complete_rows(df, [metric, *objectives])
    front = pareto_front(used, objectives)
    # only these three columns of a group are read: selecting them, not whole rows, saves
    # copying every column of 100k candidates for each of the ~30 values
    measured = {key: used[key] for key in (metric, "flops", "params")}
    rows = []
    for stage in stage_numbers(df):
        for choice, order in CHOICES.items():
            col = f"s{stage}.{choice}"
            if col not in used.columns:
                continue
            for value in _values(used[col], order):
                has = (used[col] == value).to_numpy(dtype=bool)
                group = {key: series[has] for key, series in measured.items()}
                lo, hi = bootstrap_ci(
                    group[metric].to_numpy(), resamples=resamples, seed=seed, confidence=confidence
                )
                rows.append(
                    {
                        "stage": stage,
                        "choice": choice,
                        "value": value,
                        "count": len(group[metric]),
                        f"{metric}_mean": _mean(group[metric]),
                        f"{metric}_lo": lo,
                        f"{metric}_hi": hi,
                        "front_share": (
                            float((front[col] == value).mean()) if len(front) else math.nan
                        ),
                        "flops_mean": _mean(group["flops"]),
                        "params_mean": _mean(group["params"]),
                    }
                )
    columns = [
        "stage",
        "choice",
        "value",
        "count",
        f"{metric}_mean",
        f"{metric}_lo",
        f"{metric}_hi",
        "front_share",
        "flops_mean",
        "params_mean",
    ]
    return pd.DataFrame(rows, columns=columns)


def paired_effects(
    df: pd.DataFrame,
    *,
    metric: str = "val_acc",
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Matched-pair effects of changing one stage choice while everything else stays equal.

    For each stage, choice and pair of values ``(baseline, alternative)`` (the baseline is the
    one earlier in the space's order: ``max`` before ``strided``, kernel 3 before 5), the
    candidates are grouped by all their other stage parameters; each group that holds both
    values is one pair (repeated architectures are averaged first). Per pair the differences
    ``alternative − baseline`` of ``metric`` and the relative changes of FLOPs and params are
    taken; the row holds their means and a bootstrap interval of the ``metric`` difference
    (NaN from a single pair, which has no spread to resample).

    Returns:
        Columns ``stage``, ``choice``, ``baseline``, ``alternative``, ``pairs``,
        ``delta_{metric}``, ``delta_{metric}_lo``, ``delta_{metric}_hi``,
        ``flops_change_pct``, ``params_change_pct``; only value pairs with at least one pair.

    Example:
        >>> effects = paired_effects(load_candidates(store, 1))  # doctest: +SKIP
        >>> [describe_effect(row) for row in effects.to_dict("records")]  # doctest: +SKIP
    """
    import pandas as pd

    used = complete_rows(df, [metric, "flops", "params"])
    stages = stage_numbers(df)
    all_params = [f"s{i}.{k}" for i in stages for k in STAGE_KEYS if f"s{i}.{k}" in used.columns]
    # integer codes per parameter: grouping on one int key is far cheaper than on 15 objects.
    # A missing stage (NaN) gets a code of its own: the -1 sentinel would make _combined's
    # mixed radix confuse it with another value
    codes = {
        c: pd.factorize(used[c], use_na_sentinel=False)[0].astype(np.int64) for c in all_params
    }
    measures = used[[metric, "flops", "params"]].to_numpy(dtype=np.float64)
    rows = []
    for stage in stages:
        for choice, order in CHOICES.items():
            col = f"s{stage}.{choice}"
            if col not in used.columns:
                continue
            other = pd.factorize(_combined([codes[c] for c in all_params if c != col], len(used)))[
                0
            ]
            frame = pd.DataFrame(
                {
                    "other": other,
                    "value": used[col].to_numpy(),
                    "m": measures[:, 0],
                    "flops": measures[:, 1],
                    "params": measures[:, 2],
                }
            )
            # repeated architectures are averaged into one cell first
            cells = {
                value: group.groupby("other")[["m", "flops", "params"]].mean()
                for value, group in frame.groupby("value", sort=False)
            }
            for base, alt in itertools.combinations(_values(used[col], order), 2):
                both = cells[base].add_suffix("_a").join(cells[alt].add_suffix("_b"), how="inner")
                if both.empty:
                    continue
                delta = (both["m_b"] - both["m_a"]).to_numpy()
                # one pair has no spread to resample: its interval would be a point
                lo, hi = (
                    bootstrap_ci(delta, resamples=resamples, seed=seed, confidence=confidence)
                    if len(delta) >= 2
                    else (math.nan, math.nan)
                )
                rows.append(
                    {
                        "stage": stage,
                        "choice": choice,
                        "baseline": base,
                        "alternative": alt,
                        "pairs": len(both),
                        f"delta_{metric}": float(delta.mean()),
                        f"delta_{metric}_lo": lo,
                        f"delta_{metric}_hi": hi,
                        "flops_change_pct": _pct(both["flops_b"], both["flops_a"]),
                        "params_change_pct": _pct(both["params_b"], both["params_a"]),
                    }
                )
    columns = [
        "stage",
        "choice",
        "baseline",
        "alternative",
        "pairs",
        f"delta_{metric}",
        f"delta_{metric}_lo",
        f"delta_{metric}_hi",
        "flops_change_pct",
        "params_change_pct",
    ]
    return pd.DataFrame(rows, columns=columns)


def describe_effect(row: Mapping[str, Any], *, metric: str = "val_acc") -> str:
    """One sentence for a row of :func:`paired_effects`.

    ``± Y`` is half the width of the bootstrap interval; a single pair gets none.

    Example:
        >>> print(describe_effect({"stage": 2, "choice": "downsample", "baseline": "max",
        ...       "alternative": "strided", "pairs": 7, "delta_val_acc": 0.012,
        ...       "delta_val_acc_lo": 0.008, "delta_val_acc_hi": 0.016,
        ...       "flops_change_pct": -37.5, "params_change_pct": 0.0}))
        ... # doctest: +NORMALIZE_WHITESPACE
        stage 2: strided instead of max changes val_acc by +0.0120 ± 0.0040
        and FLOPs by -37.5% (7 pairs)
    """
    delta = float(row[f"delta_{metric}"])
    # no interval: NaN in a frame, None in JSON records
    bounds = [row[f"delta_{metric}_{end}"] for end in ("lo", "hi")]
    half = (float(bounds[1]) - float(bounds[0])) / 2 if None not in bounds else math.nan
    pairs = int(row["pairs"])
    # "strided instead of max" needs no name; "5 instead of 3" does: "kernel 5 instead of 3"
    kind = "" if row["choice"] == "downsample" else f"{row['choice']} "
    what = f"{kind}{row['alternative']} instead of {row['baseline']}"
    spread = f" ± {half:.4f}" if math.isfinite(half) else ""
    basis = f"{pairs} pairs" if pairs != 1 else "1 pair: too few for an interval"
    return (
        f"stage {row['stage']}: {what} changes {metric} by {delta:+.4f}{spread} and "
        f"FLOPs by {float(row['flops_change_pct']):+.1f}% ({basis})"
    )


def importances(
    storage: BaseStorage,
    study_name: str,
    *,
    objective: int = 0,
    min_trials: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA, seeded) for objective number ``objective``.

    ``storage`` is the Optuna storage of the database (:func:`search.store.optuna_storage`).
    Returns ``{}`` when the study does not exist, has fewer than ``min_trials``
    complete trials, or its parameters do not vary (nothing to attribute).

    Example:
        >>> importances(optuna_storage(url), job.study_name)  # doctest: +SKIP
        {'s2.downsample': 0.41, 's1.kernel': 0.22, ...}
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < min_trials:
        return {}
    try:
        found = get_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(seed=seed),
            target=lambda t: t.values[objective],
        )
    except (ValueError, RuntimeError):
        return {}
    return {str(k): float(v) for k, v in found.items()}


# --------------------------------------------------------------------------- internals


def _combined(codes: Sequence[np.ndarray], n: int) -> np.ndarray:
    """One int64 key per row that is equal exactly where all of ``codes`` (factorize codes,
    ``>= 0``) are: their mixed-radix number, re-factorised only when the next digit could
    overflow. ``pd.factorize`` of it numbers the combinations in order of first appearance,
    as factorising after every digit would, at one pass instead of one per code."""
    import pandas as pd

    key = np.zeros(n, dtype=np.int64)
    bound = 1  # key < bound
    for code in codes:
        base = int(code.max()) + 1 if len(code) else 1
        if bound > np.iinfo(np.int64).max // base:
            key = pd.factorize(key)[0].astype(np.int64)
            bound = int(key.max()) + 1
        key = key * base + code
        bound *= base
    return key


def _values(column: pd.Series, order: Sequence[Any]) -> list[Any]:
    present = set(column.dropna().unique().tolist())
    ranked = [v for v in order if v in present]
    return ranked + sorted((v for v in present if v not in ranked), key=str)


def _mean(series: pd.Series) -> float:
    return float(series.mean()) if len(series) else math.nan


def _pct(new: pd.Series, old: pd.Series) -> float:
    ratio = new.to_numpy(dtype=np.float64) / old.to_numpy(dtype=np.float64)
    return float((ratio.mean() - 1.0) * 100.0)
