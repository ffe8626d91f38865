"""Verdicts of one-choice ablations: what changing one stage choice does, with an interval.

A job's ablation phase trains, around a reference architecture, variants that differ from it
in one stage choice only (``downsample``, ``kernel`` or ``skip`` of one stage), each with the
reference's seeds. Replicate ``k`` of every architecture uses one seed, and the same seed means
the same data order and initialisation stream, so the results pair by seed:

- :func:`ablation_effects`: for each such variant, the mean of the seed-paired differences
  ``variant − reference`` of ``val_acc``, a Student t-interval over those differences, the
  exact change in FLOPs and params and a verdict (:data:`search.vocabulary.VERDICTS`);
  :func:`describe_verdict` says it in one sentence;
- :func:`recommendations`: per stage of the reference, the value of each choice to take for
  accuracy, and the cheapest value whose accuracy is within the interval of the best.

Any architecture of the frame that differs from the reference in one choice counts, whichever
phase trained it (a search-phase candidate is replicate 0 and pairs with the reference's
replicate 0). Fewer than :data:`MIN_SEEDS` paired seeds give no interval: the verdict is then
``too few seeds``. Pure pandas and numpy (scipy for the t quantile); renders nothing.

Example:
    >>> effects = ablation_effects(load_candidates(store, 1), references=[12])  # doctest: +SKIP
    >>> print(effects["text"].iloc[0])  # doctest: +SKIP
    stage 1: strided instead of max: -0.6 pt [-1.1, -0.1], -37 % FLOPs: cheaper and worse
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from search._frames import complete_rows, stage_numbers
from search.objectives import direction
from search.vocabulary import DOWNSAMPLES, KERNELS, SKIPS, STAGE_CHOICES, Verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EFFECT_COLUMNS",
    "MIN_SEEDS",
    "RECOMMENDATION_COLUMNS",
    "ablation_effects",
    "cost_objective",
    "describe_verdict",
    "paired_interval",
    "recommendations",
    "verdict",
]

# an interval needs a spread, and the t quantile of one degree of freedom (12.7 at 95 %) makes
# two seeds' interval too wide to say anything: below this many paired seeds, no interval
MIN_SEEDS = 3
EFFECT_COLUMNS = [
    "stage",
    "choice",
    "from",
    "to",
    "reference",
    "variant",
    "n",
    "delta",
    "ci_low",
    "ci_high",
    "half_width",
    "flops_ratio",
    "params_delta",
    "cost_change",
    "verdict",
    "sign_agrees",
    "text",
]
RECOMMENDATION_COLUMNS = ["stage", "reference", "accuracy", "cheapest", "text"]

_ORDER: dict[str, tuple[Any, ...]] = {"downsample": DOWNSAMPLES, "kernel": KERNELS, "skip": SKIPS}
_FIXED = ("width", "depth")
# a cost change that rounds to 0 % is no change
_SAME_COST = 0.005
_COST_NAMES = {"flops": "FLOPs"}


def cost_objective(objectives: Sequence[str]) -> str:
    """The cost a verdict puts in words: the job's first minimised objective, else FLOPs.

    Example:
        >>> cost_objective(["val_acc", "params"]), cost_objective(["val_acc"])
        ('params', 'flops')
    """
    return next((o for o in objectives if direction(o) == "minimize"), "flops")


def paired_interval(
    differences: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """The mean of ``differences`` and its Student t-interval: ``mean ± t·s/√n``, with ``t``
    the ``(1 + confidence) / 2`` quantile of ``n − 1`` degrees of freedom.

    Fewer than :data:`MIN_SEEDS` differences give the mean and ``nan`` bounds; none give three
    ``nan``.

    Example:
        >>> [round(v, 4) for v in paired_interval([0.01, 0.02, 0.03])]
        [0.02, -0.0048, 0.0448]
        >>> paired_interval([0.01, 0.03])
        (0.02, nan, nan)
    """
    x = np.asarray(differences, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < MIN_SEEDS:
        return mean, math.nan, math.nan
    # the t quantile (scipy.stats.t.ppf calls this function); imported here, and from
    # scipy.special rather than scipy.stats, which takes 0.6 s more to import
    from scipy.special import stdtrit

    quantile = float(stdtrit(len(x) - 1, (1.0 + confidence) / 2))
    half = quantile * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def verdict(n: int, ci_low: float, ci_high: float) -> Verdict:
    """What an interval of a paired effect says: ``better`` when it lies above zero,
    ``worse`` below, ``no detectable difference`` when it holds zero, and ``too few seeds``
    with fewer than :data:`MIN_SEEDS` paired seeds (whatever the bounds).

    Example:
        >>> verdict(5, 0.002, 0.01), verdict(5, -0.01, 0.01), verdict(2, 0.1, 0.2)
        ('better', 'no detectable difference', 'too few seeds')
    """
    if n < MIN_SEEDS or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "too few seeds"
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no detectable difference"


def ablation_effects(
    frame: pd.DataFrame,
    *,
    references: Sequence[int],
    cost: str = "flops",
    metric: str = "val_acc",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The effect of every one-choice change around each reference trial's architecture.

    For each reference (a trial number of ``frame``), every architecture of ``frame`` whose
    stages equal the reference's in width and depth and in every stage choice but one gives a
    row. Both architectures' results are averaged per seed first (a cached copy of a seed's
    result counts once); the differences ``variant − reference`` over the seeds they share are
    the paired differences.

    Args:
        frame: Candidates as :func:`search.query.load_candidates` returns them (stage columns,
            ``trial``, ``arch_hash``, ``seed``, ``metric``, ``flops``, ``params`` and ``cost``);
            only complete rows count.
        references: Trial numbers of the reference architectures, the primary one first.
        cost: The objective whose relative change the sentence puts in words (the job's first
            cost objective).
        metric: The measured metric compared.
        confidence: Of the t-intervals.

    Returns:
        :data:`EFFECT_COLUMNS`, one row per (reference, variant) with at least one shared
        seed, by reference (in the order given), stage, choice and the vocabulary's order of
        the new value: ``from`` and ``to`` (the reference's and the variant's value),
        ``variant`` (its lowest trial number), ``n`` (paired seeds), ``delta`` (mean paired
        difference, in ``metric`` units), ``ci_low``, ``ci_high`` and ``half_width`` (NaN below
        :data:`MIN_SEEDS`), ``flops_ratio`` (variant / reference), ``params_delta`` (variant −
        reference), ``cost_change`` (relative change of ``cost``, -0.37 for 37 % less),
        ``verdict``, ``sign_agrees`` (whether the same change, from the same value, has a delta
        of the same sign around every reference where it was measured; ``None`` where only one
        measured it) and ``text`` (:func:`describe_verdict`).

    Raises:
        ValueError: a missing column, or a reference that is no complete trial of ``frame``.

    Example:
        >>> effects = ablation_effects(frame, references=[12])  # doctest: +SKIP
        >>> effects[["stage", "choice", "from", "to", "verdict"]]  # doctest: +SKIP
    """
    import pandas as pd

    used = complete_rows(frame, [metric, "flops", "params", cost, "arch_hash", "seed", "trial"])
    stages = stage_numbers(used)
    # one row per architecture, its lowest trial; its columns as arrays, for one comparison
    # per stage choice with the reference instead of a frame selection per variant
    archs = used.sort_values("trial", kind="stable").drop_duplicates("arch_hash")
    hashes = [str(h) for h in archs["arch_hash"]]
    place = {h: i for i, h in enumerate(hashes)}
    column = {
        f"s{i}.{k}": archs[f"s{i}.{k}"].to_numpy(dtype=object)
        for i in stages
        for k in (*STAGE_CHOICES, *_FIXED)
    }
    trial_of = archs["trial"].to_numpy(dtype=np.int64)
    flops = archs["flops"].to_numpy(dtype=np.float64)
    params = archs["params"].to_numpy(dtype=np.int64)
    costs = used.groupby("arch_hash")[cost].mean()
    per_seed = _per_seed(used, metric)
    rows: list[dict[str, Any]] = []
    for trial in references:
        hit = used["arch_hash"][used["trial"] == trial]
        if hit.empty:
            raise ValueError(f"reference trial {trial} is not a complete candidate")
        r = place[str(hit.iloc[0])]
        differs = {key: values != values[r] for key, values in column.items()}
        changes = np.sum([differs[f"s{i}.{c}"] for i in stages for c in STAGE_CHOICES], axis=0)
        fixed = ~np.any([differs[f"s{i}.{k}"] for i in stages for k in _FIXED], axis=0)
        one_change = (changes == 1) & fixed
        for stage in stages:
            for choice in STAGE_CHOICES:
                key = f"s{stage}.{choice}"
                # architectures equal in all but one choice and this one differs: one per value
                found = {column[key][k]: k for k in np.flatnonzero(one_change & differs[key])}
                for value in _ranked(found, _ORDER[choice]):
                    v = found[value]
                    ref_seeds, var_seeds = per_seed[hashes[r]], per_seed[hashes[v]]
                    shared = ref_seeds.index.intersection(var_seeds.index)
                    if shared.empty:
                        continue
                    delta, lo, hi = paired_interval(
                        (var_seeds[shared] - ref_seeds[shared]).to_numpy(), confidence=confidence
                    )
                    rows.append(
                        {
                            "stage": stage,
                            "choice": choice,
                            "from": _plain(column[key][r]),
                            "to": _plain(value),
                            "reference": int(trial),
                            "variant": int(trial_of[v]),
                            "n": len(shared),
                            "delta": delta,
                            "ci_low": lo,
                            "ci_high": hi,
                            "half_width": (hi - lo) / 2,
                            "flops_ratio": flops[v] / flops[r],
                            "params_delta": int(params[v] - params[r]),
                            "cost_change": _change(
                                float(costs[hashes[v]]), float(costs[hashes[r]])
                            ),
                            "verdict": verdict(len(shared), lo, hi),
                        }
                    )
    _mark_sign_agreement(rows)
    for row in rows:
        row["text"] = describe_verdict(row, cost=cost)
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def describe_verdict(row: Mapping[str, Any], *, cost: str = "flops") -> str:
    """One sentence for a row of :func:`ablation_effects`: the change, the paired difference
    in points of accuracy with its interval (none below :data:`MIN_SEEDS` seeds), the cost
    change in words, the verdict, and the sign agreement across references where there is one.

    Example:
        >>> print(describe_verdict({"stage": 1, "choice": "downsample", "from": "max",
        ...       "to": "strided", "n": 5, "delta": -0.006, "ci_low": -0.011,
        ...       "ci_high": -0.001, "cost_change": -0.37, "verdict": "worse"}))
        stage 1: strided instead of max: -0.6 pt [-1.1, -0.1], -37 % FLOPs: cheaper and worse
        >>> print(describe_verdict({"stage": 2, "choice": "kernel", "from": 3, "to": 5,
        ...       "n": 2, "delta": 0.008, "ci_low": None, "ci_high": None,
        ...       "cost_change": 0.0, "verdict": "too few seeds"}))
        stage 2: kernel 5 instead of 3: +0.8 pt (2 seeds: too few seeds for an interval), same cost
    """
    change = _what(row["choice"], row["to"], row["from"])
    points = f"{_pt(row['delta'])} pt"
    cost_text, cost_word = _cost_words(row["cost_change"], cost)
    said: Verdict = row["verdict"]
    if said == "too few seeds":
        n = int(row["n"])
        text = f"{points} ({n} seed{'s' * (n != 1)}: too few seeds for an interval), {cost_text}"
        judged = cost_word
    else:
        measured = f"{points} [{_pt(row['ci_low'])}, {_pt(row['ci_high'])}]"
        if said == "no detectable difference":
            text = f"no detectable difference ({measured}), {cost_text}"
            judged = cost_word
        else:
            text = f"{measured}, {cost_text}"
            judged = f"{cost_word} and {said}" if cost_word else said
    sentence = f"stage {row['stage']}: {change}: {text}{f': {judged}' if judged else ''}"
    agrees = row.get("sign_agrees")
    if agrees is not None:
        sentence += (
            "; the same sign around the other references"
            if agrees
            else "; the sign differs around another reference"
        )
    return sentence


def recommendations(
    frame: pd.DataFrame,
    effects: pd.DataFrame,
    *,
    reference: int | None = None,
    cost: str = "flops",
    metric: str = "val_acc",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per stage of the primary reference: which value of each measured choice to take.

    For a stage and choice, the candidates are the reference's value and every value an effect
    around the reference measured. *For accuracy*: the one with the highest mean paired
    difference against the reference (the reference's own is 0; a tie keeps the reference's).
    *Cheapest*: the one with the lowest ``cost`` among the best and the values that no other
    measured value is detectably more accurate than (each seed-paired t-interval against
    another value reaches zero): within the interval of the best, and not beaten by the
    reference either. A value with fewer than :data:`MIN_SEEDS` seeds paired with the
    reference is left out of both (the text says so): one or two samples neither win nor,
    having no interval, rule the others out.

    Args:
        frame: The candidates :func:`ablation_effects` read.
        effects: Its rows.
        reference: The primary reference's trial (default: the first reference of
            ``effects``).
        cost: The objective that says which value is cheapest.
        metric: The measured metric compared.
        confidence: Of the t-intervals against the best.

    Returns:
        :data:`RECOMMENDATION_COLUMNS`, one row per stage of the reference's architecture:
        ``accuracy`` and ``cheapest`` map each measured choice to a value (empty where no
        variant of that stage was measured), and ``text`` says it.

    Example:
        >>> recommendations(frame, ablation_effects(frame, references=[12]))  # doctest: +SKIP
    """
    import pandas as pd

    if effects.empty:
        return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
    primary = int(effects["reference"].iloc[0]) if reference is None else reference
    around = effects[effects["reference"] == primary]
    used = complete_rows(frame, [metric, cost, "arch_hash", "seed", "trial"])
    hash_of = dict(zip(used["trial"], used["arch_hash"], strict=False))
    if primary not in hash_of:
        raise ValueError(f"reference trial {primary} is not a complete candidate")
    per_seed = _per_seed(used, metric)
    costs = used.groupby("arch_hash")[cost].mean()
    rows = []
    for stage in stage_numbers(used):
        accuracy: dict[str, Any] = {}
        cheapest: dict[str, Any] = {}
        # the notes after a value: a best that its interval does not tell from the reference's,
        # a cheapest value's cost change against the best
        unresolved: dict[str, str] = {}
        notes: dict[str, str] = {}
        thin = False
        for choice in STAGE_CHOICES:
            measured = around[(around["stage"] == stage) & (around["choice"] == choice)]
            # a value with too few seeds paired with the reference can neither win for
            # accuracy on a sample or two nor, without an interval, rule out a cheaper one
            thin = thin or bool((measured["n"] < MIN_SEEDS).any())
            measured = measured[measured["n"] >= MIN_SEEDS]
            if measured.empty:
                continue
            # value -> (its architecture, its mean paired difference against the reference)
            own = _plain(measured["from"].iloc[0])
            options = {own: (hash_of[primary], 0.0)}
            for r in measured.to_dict("records"):
                options[_plain(r["to"])] = (hash_of[r["variant"]], float(r["delta"]))
            best = max(options, key=lambda v: options[v][1])
            best_hash = options[best][0]
            # not detectably worse than any measured value: against the best alone, a value
            # the reference beats could pass where its pairing with the best is noisier
            eligible = [
                v
                for v, (h, _) in options.items()
                if v == best
                or all(
                    _within(per_seed[h], per_seed[other], confidence)
                    for w, (other, _) in options.items()
                    if w != v
                )
            ]
            # lowest cost, then the more accurate
            cheap = min(eligible, key=lambda v: (costs[options[v][0]], -options[v][1]))
            accuracy[choice], cheapest[choice] = best, cheap
            judged = measured.loc[measured["to"] == best, "verdict"]
            if not judged.empty and judged.iloc[0] != "better":
                unresolved[choice] = f"not detectably better than {own}"
            if cheap != best:
                change = _change(float(costs[options[cheap][0]]), float(costs[best_hash]))
                notes[choice] = _cost_words(change, cost)[0]
        rows.append(
            {
                "stage": stage,
                "reference": primary,
                "accuracy": accuracy,
                "cheapest": cheapest,
                "text": _recommendation_text(stage, accuracy, cheapest, unresolved, notes, thin),
            }
        )
    return pd.DataFrame(rows, columns=RECOMMENDATION_COLUMNS)


# --------------------------------------------------------------------------- internals


def _per_seed(frame: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Architecture hash -> its mean ``metric`` per seed (a cached copy of a seed counts once)."""
    means = frame.groupby(["arch_hash", "seed"])[metric].mean()
    return {str(h): group.droplevel(0) for h, group in means.groupby(level=0)}


def _within(values: pd.Series, best: pd.Series, confidence: float) -> bool:
    """Whether ``values`` is not detectably worse than ``best``: the t-interval of their
    seed-paired differences reaches zero (and exists)."""
    shared = values.index.intersection(best.index)
    _, _, hi = paired_interval((values[shared] - best[shared]).to_numpy(), confidence=confidence)
    return len(shared) >= MIN_SEEDS and hi >= 0


def _mark_sign_agreement(rows: Sequence[dict[str, Any]]) -> None:
    """Set each row's ``sign_agrees``: whether the same change (stage, choice, from, to) has a
    delta of one sign around every reference that measured it; ``None`` where only one did."""
    signs: dict[tuple[Any, ...], dict[int, float]] = {}
    for row in rows:
        key = (row["stage"], row["choice"], row["from"], row["to"])
        signs.setdefault(key, {})[row["reference"]] = float(np.sign(row["delta"]))
    for row in rows:
        around = signs[(row["stage"], row["choice"], row["from"], row["to"])]
        row["sign_agrees"] = len(set(around.values())) == 1 if len(around) > 1 else None


def _ranked(present: Collection[Any], order: Sequence[Any]) -> list[Any]:
    ranked = [v for v in order if v in present]
    return ranked + sorted((v for v in present if v not in ranked), key=str)


def _what(choice: str, new: Any, old: Any) -> str:
    # "strided instead of max" needs no name; "5 instead of 3" does: "kernel 5 instead of 3"
    return f"{_value(choice, new)} instead of {old}"


def _value(choice: str, value: Any) -> str:
    return str(value) if choice == "downsample" else f"{choice} {value}"


def _pt(value: Any) -> str:
    return f"{float(value) * 100:+.1f}"


def _change(new: float, old: float) -> float:
    return new / old - 1.0 if old else math.nan


def _cost_words(change: Any, cost: str) -> tuple[str, str]:
    """The cost change as text ("-37 % FLOPs" or "same cost") and as a word ("cheaper",
    "costlier" or "" for the same cost)."""
    value = math.nan if change is None else float(change)
    if not math.isfinite(value) or abs(value) < _SAME_COST:
        return "same cost", ""
    name = _COST_NAMES.get(cost, cost)
    return f"{value * 100:+.0f} % {name}", "cheaper" if value < 0 else "costlier"


def _recommendation_text(
    stage: int,
    accuracy: Mapping[str, Any],
    cheapest: Mapping[str, Any],
    unresolved: Mapping[str, str],
    notes: Mapping[str, str],
    thin: bool,
) -> str:
    left_out = f" (values with under {MIN_SEEDS} seeds left out)" if thin else ""
    if not accuracy:
        if thin:
            return f"stage {stage}: too few seeds to recommend a value"
        return f"stage {stage}: no variant of this stage was measured"
    return (
        f"stage {stage}: for accuracy {_values_text(accuracy, unresolved)}; cheapest within "
        f"the interval of the best: {_values_text(cheapest, notes)}{left_out}"
    )


def _values_text(values: Mapping[str, Any], notes: Mapping[str, str]) -> str:
    return ", ".join(
        _value(c, v) + (f" ({notes[c]})" if c in notes else "") for c, v in values.items()
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
