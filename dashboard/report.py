"""A job's report: one self-contained HTML file that opens offline, in any browser.

``poolstride report JOB --out report.html`` reads the job (:mod:`search.cli._report`) and hands
what it read to :func:`report_html`, which renders: the job's setup, the Pareto front of
per-architecture means with seed error bars, the forest plot of every one-choice effect with
its interval (coloured by verdict), the per-stage recommendations, the reference architecture
drawn stage by stage, and the learning curves of the reference and its variants. The figures
are the dashboard's own (:mod:`dashboard.figures`); plotly's JavaScript is embedded once, in
the page's head, and every figure only calls it.

Nothing here opens a database: the report is a pure function of the rows it is given.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from dashboard.figures import (
    arch_text,
    curves_figure,
    effect_label,
    forest_figure,
    off_front_sample,
    pareto_figure,
)
from dashboard.network import NETWORK_CSS, class_count, diagram_html, parts, parts_table
from dashboard.tables import (
    fmt_value,
    half_width_note,
    phases_text,
    skipped_lines,
    verdict_references,
)
from search.space import ArchSpec
from search.store import JobInfo
from search.vocabulary import STAGE_KEYS

__all__ = [
    "FIGURE_IDS",
    "MAX_POINTS",
    "ReportData",
    "curve_groups",
    "mean_curves",
    "report_html",
]

# The figures' element ids, in the page's order: what a test or a link looks for.
FIGURE_IDS = ("front-plot", "forest-plot", "curves-plot")
# Architectures drawn off the front beyond this many are a seeded sample, as on the Pareto page:
# a report of a 100k-candidate job stays a file a browser opens.
MAX_POINTS = 5_000
# The plotly options of every figure: no logo, no link to plotly's cloud, resizes with the page.
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = (
    """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px;
       padding: 0 16px; color: #222; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 32px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 14px; }
ul.effects li { margin: 2px 0; }
"""
    + NETWORK_CSS
)


@dataclass(frozen=True)
class ReportData:
    """What a report shows, read from one job.

    Attributes:
        job: The job, with its config, progress per phase and plan.
        means: :func:`search.pareto.architecture_means` of the job's complete candidates.
        front: :attr:`search.query.Front.rows`: the front's architectures (``on_front``), then
            those that were on the search's front and are not on the final one.
        hypervolume: The front's hypervolume over the means.
        complete: How many complete candidates (every seed counted).
        effects: :func:`search.analysis.ablation_effects` around :attr:`references`.
        recommendations: :func:`search.analysis.recommendations` for the primary reference.
        references: The ablation's reference trials, the primary one first; empty without one.
        skipped: The variants the ablation skipped, as its plan records them.
        curves: Per-epoch curves (:func:`mean_curves`) and their names, by trial.
        written_at: When the report was made (UTC).
    """

    job: JobInfo
    means: pd.DataFrame
    front: pd.DataFrame
    hypervolume: float
    complete: int
    effects: pd.DataFrame
    recommendations: pd.DataFrame
    references: tuple[int, ...]
    skipped: tuple[Mapping[str, Any], ...]
    curves: tuple[pd.DataFrame, Mapping[int, str]]
    written_at: datetime


def curve_groups(
    frame: pd.DataFrame,
    *,
    effects: pd.DataFrame,
    reference: int | None,
    front_trials: Sequence[int],
) -> dict[str, list[int]]:
    """Which learning curves a report draws: per architecture, its name and trial numbers.

    Around a reference: the reference's architecture and each variant an effect around it
    measured, named as the forest plot names the effect. Without one: the front's
    architectures, named by their first trial.

    Args:
        frame: The job's complete candidates (:func:`search.query.load_candidates` rows with
            ``trial`` and ``arch_hash``).
        effects: :func:`search.analysis.ablation_effects` rows (``reference``, ``variant``).
        reference: The primary reference trial, or ``None``.
        front_trials: The front's trials (each architecture's first), used without a reference.

    Example:
        >>> rows = pd.DataFrame({"trial": [3, 9, 10, 11], "arch_hash": ["a", "a", "b", "b"]})
        >>> effects = pd.DataFrame([{"stage": 1, "choice": "downsample", "from": "max",
        ...                          "to": "avg", "reference": 3, "variant": 10}])
        >>> curve_groups(rows, effects=effects, reference=3, front_trials=[3])
        {'reference (trial 3)': [3, 9], 's1 avg vs max': [10, 11]}
    """
    trials_of = frame.groupby("arch_hash")["trial"].apply(lambda t: sorted(map(int, t)))
    arch_of = dict(zip(frame["trial"], frame["arch_hash"], strict=True))
    if reference is None:
        return {f"trial {t}": trials_of[arch_of[t]] for t in front_trials if t in arch_of}
    groups = {f"reference (trial {reference})": trials_of[arch_of[reference]]}
    for row in effects[effects["reference"] == reference].to_dict("records"):
        groups[effect_label(row)] = trials_of[arch_of[row["variant"]]]
    return groups


def mean_curves(
    epochs: pd.DataFrame, groups: Mapping[str, Sequence[int]]
) -> tuple[pd.DataFrame, dict[int, str]]:
    """One curve per group: the mean ``val_acc`` per epoch over the group's seeds, keyed by the
    group's first trial, and the names :func:`dashboard.figures.curves_figure` gives them.

    Example:
        >>> epochs = pd.DataFrame({"trial_number": [3, 3, 9, 9], "epoch": [1, 2, 1, 2],
        ...                        "val_acc": [0.5, 0.7, 0.3, 0.5]})
        >>> curves, names = mean_curves(epochs, {"reference (trial 3)": [3, 9]})
        >>> curves["val_acc"].round(2).tolist(), names
        ([0.4, 0.6], {3: 'reference (trial 3) (2 seeds)'})
    """
    parts = []
    names: dict[int, str] = {}
    for name, trials in groups.items():
        mine = epochs[epochs["trial_number"].isin(trials)]
        if mine.empty:
            continue
        curve = mine.groupby("epoch", as_index=False)["val_acc"].mean()
        parts.append(curve.assign(trial_number=min(trials)))
        seeds = len(set(mine["trial_number"]))
        names[min(trials)] = f"{name} ({seeds} seed{'s' * (seeds != 1)})"
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["trial_number", "epoch", "val_acc"])
    )
    return frame, names


def report_html(data: ReportData) -> str:
    """The report of ``data`` as one HTML document: plotly's JavaScript embedded once in its
    head, no address outside the file, every section said in words when it has nothing to show.

    Example:
        >>> page = report_html(data)  # doctest: +SKIP
        >>> page.count("<script type=\\"text/javascript\\">/**")  # doctest: +SKIP
        1
    """
    job = data.job
    title = f"poolstride report · job {job.id} ({job.name})"
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">Written {data.written_at:%Y-%m-%d %H:%M} UTC from the job as it '
            f"stood then ({html.escape(job.status)}).</p>",
            _setup(data),
            _front(data),
            _verdicts(data),
            _recommendations(data),
            _reference(data),
            _curves(data),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style>"
        # the one copy of plotly.js: the figures' scripts below only call Plotly.newPlot
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f"</head>\n<body>\n{body}\n</body></html>\n"
    )


def _figure(fig: go.Figure, div_id: str) -> str:
    return str(
        fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG)
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned and written as :func:`fmt_value` writes them."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = []
        for value in row:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            text = fmt_value(value) if number else str(value)
            cells.append(
                f'<td class="num">{text}</td>' if number else f"<td>{html.escape(text)}</td>"
            )
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _setup(data: ReportData) -> str:
    job = data.job
    config = job.config
    train = config.train
    facts = job.dataset_facts
    k = config.references
    reference = (
        f"trial {config.reference}"
        if config.reference is not None
        else "the most accurate front member"
        if k == 1
        else f"each of the {k} most accurate front members"
    )
    rows: list[tuple[str, Any]] = [
        ("dataset", config.dataset + (f" ({facts.num_classes} classes)" if facts else "")),
        ("input", "×".join(map(str, config.space.input_shape))),
        ("objectives", ", ".join(config.objectives)),
        ("sampler", f"{config.sampler}, seed {config.seed}"),
        ("search budget", f"{config.trials} candidates with a result"),
        ("seeds", f"{config.seeds} per front member and per variant"),
        ("ablation", config.ablate),
        ("reference", reference),
        ("result cache", "on" if config.cache else "off"),
        (
            "validation share",
            f"{config.val_fraction:g} of each class (where the data has no split)",
        ),
        (
            "training",
            f"{train.epochs} epoch{'s' * (train.epochs != 1)}, batch {train.batch_size}, "
            f"lr {train.lr:g} ({train.schedule}), label smoothing {train.label_smoothing:g}, "
            f"augmentation {'on' if train.augment else 'off'}, device {train.device}",
        ),
        (
            "candidates",
            f"{data.complete} complete: {job.trained} trained, {job.cached} from the cache",
        ),
        ("phases", phases_text(job)),
    ]
    space = _table(
        ["stage", *STAGE_KEYS],
        [
            [i, *(", ".join(map(str, getattr(stage, key))) for key in STAGE_KEYS)]
            for i, stage in enumerate(config.space.stages, 1)
        ],
    )
    return (
        "<h2>Setup</h2>"
        + _table(["setting", "value"], rows)
        + "<p>The search space, per stage:</p>"
        + space
    )


def _objective_axes(job: JobInfo) -> tuple[str, str]:
    """(x, y) of the front figure: the first objective up, the second (FLOPs without one)
    across."""
    objectives = job.config.objectives
    return (objectives[1] if len(objectives) > 1 else "flops"), objectives[0]


def _front(data: ReportData) -> str:
    x, y = _objective_axes(data.job)
    front = data.front
    on = front[front["on_front"].astype(bool)] if "on_front" in front.columns else front
    others = data.means[~data.means["trial"].isin(front["trial"])]
    shown, sampled = off_front_sample(others, list(on["trial"]), MAX_POINTS)
    colour = "s2.downsample" if "s2.downsample" in data.means.columns else None
    fig = pareto_figure(others[others["trial"].isin(shown)], front, x=x, y=y, color_by=colour)
    seeds = int(data.means["n"].max()) if "n" in data.means.columns and len(data.means) else 1
    words = (
        f"{len(on)} of {len(data.means)} architectures on the front over "
        f"{', '.join(data.job.config.objectives)} (hypervolume {data.hypervolume:.4f}), from "
        f"{data.complete} complete candidates."
        + (
            " Points are means over seeds, bars one standard deviation."
            if seeds > 1
            else " Each architecture was trained with one seed: no error bars."
        )
        + _fallen_words(len(front) - len(on))
        + (f" Drawn off the front: a sample of {len(shown):,}." if sampled else "")
    )
    metrics = [m for m in ("val_acc", "test_acc", "flops", "params") if m in front.columns]
    rows = [
        [
            int(r["trial"]),
            "yes" if r.get("on_front", True) else "fell off",
            arch_text(pd.DataFrame([r])).iloc[0],
            int(r["n"]) if "n" in r else 1,
            *(_mean_std(r, m) for m in metrics),
        ]
        for r in front.to_dict("records")
    ]
    return (
        "<h2>Pareto front</h2>"
        + f'<p class="note">{html.escape(words)}</p>'
        + _figure(fig, FIGURE_IDS[0])
        + _table(["trial", "on the front", "architecture", "seeds", *metrics], rows)
    )


def _fallen_words(fallen: int) -> str:
    if not fallen:
        return ""
    if fallen == 1:
        return (
            " 1 architecture (the open diamond) was on the search's front and is not on this "
            "one: beaten by its own mean over seeds or by an architecture trained later."
        )
    return (
        f" {fallen} architectures (open diamonds) were on the search's front and are not on "
        "this one: each beaten by its own mean over seeds or by an architecture trained later."
    )


def _mean_std(row: Mapping[str, Any], metric: str) -> Any:
    """A metric of a per-architecture row: the mean, with ``± std`` where seeds give one."""
    std = row.get(f"{metric}_std")
    if std is None or not math.isfinite(float(std)):
        return row[metric]
    return f"{float(row[metric]):.4f} ± {float(std):.4f}"


def _verdicts(data: ReportData) -> str:
    head = "<h2>Effects of one choice at a time</h2>"
    _, none = verdict_references(data.job)
    if none is None and data.effects.empty:
        none = "The ablation has measured no effect yet."
    if none is not None:
        # the words are the Stages page's markdown: its commands in backticks become code
        words = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(none))
        return head + f'<p class="note">{words}</p>' + _skipped(data.skipped)
    effects = data.effects
    refs = ", ".join(f"trial {t}" for t in data.references)
    note = (
        f"Each row: the mean over seeds of the variant's val_acc minus the reference's "
        f"(reference: {refs}), seed by seed, in points, with a 95 % t-interval over the "
        "paired differences; fewer than 3 seeds give no interval. "
        + (half_width_note(effects) or "")
    )
    sentences = "".join(f"<li>{html.escape(str(t))}</li>" for t in effects["text"])
    return (
        head
        + f'<p class="note">{html.escape(note)}</p>'
        + _figure(forest_figure(effects), FIGURE_IDS[1])
        + f'<ul class="effects">{sentences}</ul>'
        + _skipped(data.skipped)
    )


def _skipped(skipped: Sequence[Mapping[str, Any]]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped_lines(skipped))
    return f"<p>Variants not trained:</p><ul>{items}</ul>"


def _recommendations(data: ReportData) -> str:
    head = "<h2>Per-stage recommendations</h2>"
    if data.recommendations.empty:
        return head + ('<p class="note">No recommendation without measured effects: see above.</p>')

    def choices(values: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in values.items()) or "-"

    rows = [
        [int(r["stage"]), choices(r["accuracy"]), choices(r["cheapest"]), r["text"]]
        for r in data.recommendations.to_dict("records")
    ]
    return head + _table(
        ["stage", "for accuracy", "cheapest within the interval of the best", "in words"], rows
    )


def _reference(data: ReportData) -> str:
    head = "<h2>The reference architecture</h2>"
    job = data.job
    if data.references:
        trial = data.references[0]
        rows = data.means[data.means["trials"].apply(lambda t: trial in t)]
        what = f"trial {trial}, the ablation's reference"
    else:
        rows = data.front.head(1)
        what = "the front's most accurate architecture (this job ran no ablation)"
    if rows.empty:
        return head + '<p class="note">No reference architecture to draw.</p>'
    row = rows.iloc[0].to_dict()
    network = parts(ArchSpec.from_row(row), job.config.space.input_shape, class_count(job))
    table = parts_table(network)
    trials = ", ".join(map(str, row.get("trials") or [row["trial"]]))
    label = f"{what}; its trials {trials}"
    return (
        head
        + f'<p class="note">{html.escape(label)}; val_acc {_mean_std(row, "val_acc")}.</p>'
        + diagram_html(network, job.config.space.input_shape)
        + _table(list(table.columns), table.to_numpy().tolist())
    )


def _curves(data: ReportData) -> str:
    head = "<h2>Learning curves</h2>"
    curves, names = data.curves
    if curves.empty:
        return head + '<p class="note">No recorded epochs to draw.</p>'
    what = (
        "the reference and each of its variants" if data.references else "the front's architectures"
    )
    return (
        head + f'<p class="note">Validation accuracy per epoch of {what}, each the mean over its '
        "seeds.</p>" + _figure(curves_figure(curves, names=names), FIGURE_IDS[2])
    )
