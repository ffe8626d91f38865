"""Reading a study: ``pareto``, ``trials``, ``analyze`` and ``export``.

The numbers come from :mod:`search.query`, :mod:`search.pareto`, :mod:`search.analysis` and
:mod:`search.verdicts`; this module only formats them. ``export`` validates its input, reads the
candidate and hands it to :mod:`workers.export`, imported (with torch) only when it runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import click

from search._checks import INT64
from search.analysis import (
    ablation_effects,
    cost_objective,
    describe_effect,
    importances,
    paired_effects,
    recommendations,
    stage_analysis,
)
from search.artifacts import EXPORT_FORMATS, ExportFormat, weights_path
from search.cli._common import (
    Integer,
    bad_input,
    candidate_columns,
    cell,
    count,
    database,
    db_option,
    die,
    emit_json,
    fail,
    print_candidates,
    print_table,
    table_columns,
    warn,
)
from search.objectives import OBJECTIVES
from search.pareto import MEASURED, architecture_means
from search.query import Front, load_candidates, load_front, parse_sort, parse_where, to_records
from search.space import ArchSpec
from search.store import JobInfo, Store, database_errors, optuna_storage
from search.vocabulary import FINAL_STATUSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ANALYZE_FORMATS",
    "FORMATS",
    "AnalyzeFormat",
    "Format",
    "analyze",
    "echo_front",
    "echo_verdicts",
    "export",
    "pareto",
    "trials",
]

# ``--format`` of ``pareto`` and ``trials``, and of ``analyze`` (its tables do not fit a CSV)
Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = get_args(Format)
AnalyzeFormat = Literal["table", "json"]
ANALYZE_FORMATS: tuple[AnalyzeFormat, ...] = get_args(AnalyzeFormat)
# what a front row adds to a candidate row in JSON and CSV: the seeds behind its means
_FRONT_COLUMNS = ("n", *(f"{m}_std" for m in MEASURED), "trials", "on_front")


def _format_option(choices: tuple[str, ...] = FORMATS) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default="table",
        show_default=True,
        help="Output format.",
    )


def _emit_rows(
    frame: pd.DataFrame,
    fmt: Format,
    job: JobInfo,
    *,
    with_state: bool,
    empty: str,
    extra: Sequence[str] = (),
) -> None:
    columns = [*candidate_columns(job), *extra]
    if fmt == "json":
        emit_json(to_records(frame[columns]))
    elif fmt == "csv":
        click.echo(frame[columns].to_csv(index=False), nl=False)
    elif frame.empty:
        click.echo(empty)
    else:
        print_candidates(frame, job, with_state=with_state)


def _none_complete(job: JobInfo) -> str:
    """What a report says of a job with no complete candidate: "yet" only while it can still
    produce some."""
    if job.status in FINAL_STATUSES:
        return f"job {job.id} has ended ({job.status}) with no complete candidates"
    return f"job {job.id} has no complete candidates yet"


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@click.option(
    "--objectives",
    metavar="A,B",
    help=f"Objectives of the front, of {', '.join(OBJECTIVES)} (default: the job's).",
)
@_format_option()
@db_option
def pareto(job_id: int, objectives: str | None, fmt: Format, db: str | None) -> None:
    """Print the job's Pareto front over its objectives (or ``--objectives``).

    The front is of architectures: an architecture trained with several seeds counts once,
    with its metrics averaged over them (the table then shows mean ± standard deviation and
    the number of seeds n, and marks "fell off" the architectures on the search's front that
    are not on the final one: beaten by their own mean, or by an architecture trained later).
    """
    names = None
    if objectives is not None:
        names = [o.strip() for o in objectives.split(",") if o.strip()]
        if not names:
            fail(f"--objectives {objectives!r}: name at least one objective")
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        with bad_input():
            front = load_front(store, job_id, names)
    if fmt == "table":
        echo_front(job, front)
    else:
        _emit_rows(front.rows, fmt, job, with_state=False, empty="", extra=_FRONT_COLUMNS)


def echo_front(job: JobInfo, front: Front) -> None:
    """The front as ``pareto`` prints its table (``run`` ends with it too)."""
    if front.rows.empty:
        click.echo(_none_complete(job))
        return
    if not _has_seeds(front):
        print_candidates(front.rows, job, with_state=False)
        click.echo(
            f"{len(front.members)} of {front.complete} complete candidates on the front "
            f"({', '.join(front.objectives)}); hypervolume {front.hypervolume:.4f}"
        )
        return
    keys = table_columns(job, with_state=False)
    print_table(
        [keys[0], "n", *keys[1:], "front"],
        [
            [
                cell(r[keys[0]]),
                cell(r["n"]),
                *(_spread(r, k) if k in MEASURED else cell(r[k]) for k in keys[1:]),
                "yes" if r["on_front"] else "fell off",
            ]
            for r in to_records(front.rows)
        ],
    )
    fallen = len(front.rows) - len(front.members)
    click.echo(
        f"{len(front.members)} of {front.architectures} architectures on the front of their "
        f"means over seeds ({', '.join(front.objectives)}; {front.complete} complete "
        f"candidates); hypervolume {front.hypervolume:.4f}"
        + (
            f"; {count(fallen, 'architecture')} of the search's front fell off it (each beaten by "
            "its own mean over seeds or by an architecture trained later)"
            if fallen
            else ""
        )
    )


def _has_seeds(front: Front) -> bool:
    """Whether the front has anything a one-seed table cannot show: an architecture with
    several seeds, or one that fell off."""
    return bool((front.rows["n"] > 1).any() or not front.rows["on_front"].all())


def _spread(row: Mapping[str, Any], key: str) -> str:
    """A measured metric as mean ± standard deviation over seeds (the mean alone for one)."""
    std = row[f"{key}_std"]
    return cell(row[key]) if std is None or row[key] is None else f"{cell(row[key])} ± {cell(std)}"


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPR",
    help="KEY=VALUE, KEY!=VALUE, KEY<N, KEY<=N, KEY>N or KEY>=N; repeat for AND. "
    "Keys: sN.downsample|kernel|skip|width|depth, trial, state, val_acc, "
    "test_acc, flops, params, latency_ms, train_s, ...",
)
@click.option("--sort", metavar="KEY", help="Sort by KEY, or -KEY descending (default trial).")
# LIMIT takes a 64-bit integer on both databases
@click.option("--limit", type=Integer(INT64, minimum=0), help="At most N rows.")
@_format_option()
@db_option
def trials(
    job_id: int,
    where: tuple[str, ...],
    sort: str | None,
    limit: int | None,
    fmt: Format,
    db: str | None,
) -> None:
    """List the job's candidates, filtered and sorted in the database."""
    with bad_input():
        # the grammar and the numbers' ranges before the database; the stages after (the job's)
        conditions = [parse_where(expr) for expr in where]
        if sort is not None:
            parse_sort(sort)
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        with bad_input():
            frame = load_candidates(store, job_id, where=conditions, sort=sort, limit=limit)
    _emit_rows(frame, fmt, job, with_state=True, empty="no candidates match")


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@_format_option(ANALYZE_FORMATS)
@db_option
def analyze(job_id: int, fmt: AnalyzeFormat, db: str | None) -> None:
    """The per-stage answer: verdicts of the one-choice ablations, then each stage choice's
    accuracy, front share and cost, matched pairs and parameter importances.

    A verdict compares a variant with the reference architecture by the seed-paired
    differences of val_acc: their mean and a 95 % t-interval over them (none below 3 seeds).
    """
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        objectives = job.config.objectives
        front = load_front(store, job_id)
        frame = load_candidates(store, job_id, where=["state=complete"])
        with database_errors(url):  # Optuna's storage, not the store: map its errors the same way
            found = importances(optuna_storage(url), job.study_name)
    planned, skipped = _ablation_plan(job)
    if frame.empty:
        if fmt == "json":
            emit_json(
                {
                    "job": job_id,
                    "objectives": list(objectives),
                    "complete": 0,
                    "architectures": 0,
                    "front_size": 0,
                    "hypervolume": 0.0,
                    "reference": None,
                    "references": [],
                    "effects": [],
                    "recommendations": [],
                    "skipped": skipped,
                    "stages": [],
                    "matched_pairs": [],
                    "importances": {},
                }
            )
        else:
            click.echo(_none_complete(job))
        return
    analysis_objectives = objectives if len(objectives) > 1 else ("val_acc", "flops")
    references, effects, advice = _verdicts(job, frame, planned)
    stages = stage_analysis(frame, objectives=analysis_objectives)
    pairs = paired_effects(frame)
    pair_rows = [{**row, "text": describe_effect(row)} for row in to_records(pairs)]
    if fmt == "json":
        emit_json(
            {
                "job": job_id,
                "objectives": list(objectives),
                "complete": front.complete,
                "architectures": front.architectures,
                "front_size": len(front.members),
                "hypervolume": front.hypervolume,
                "reference": references[0] if references else None,
                "references": references,
                "effects": to_records(effects),
                "recommendations": to_records(advice),
                "skipped": skipped,
                "stages": to_records(stages),
                "matched_pairs": pair_rows,
                "importances": found,
            }
        )
        return
    click.echo(
        f"job {job_id}: {front.complete} complete candidates, front of "
        f"{len(front.members)} over {', '.join(objectives)}, hypervolume "
        f"{front.hypervolume:.4f}"
    )
    click.echo("")
    _print_verdicts(job, planned, references, to_records(effects), to_records(advice), skipped)
    if stages.empty:
        return
    click.echo("")
    print_table(
        ["STAGE", "CHOICE", "VALUE", "N", "VAL_ACC", "95% CI", "FRONT", "FLOPS", "PARAMS"],
        [
            [
                str(r["stage"]),
                r["choice"],
                str(r["value"]),
                str(r["count"]),
                f"{r['val_acc_mean']:.4f}",
                f"[{r['val_acc_lo']:.4f}, {r['val_acc_hi']:.4f}]" if r["count"] > 1 else "-",
                "-" if r["front_share"] is None else f"{r['front_share']:.0%}",
                cell(round(r["flops_mean"])),
                cell(round(r["params_mean"])),
            ]
            for r in to_records(stages)
        ],
    )
    click.echo("")
    if pair_rows:
        click.echo("matched pairs (architectures that differ in that one choice only):")
        for row in pair_rows:
            click.echo(f"  {row['text']}")
    else:
        click.echo("matched pairs: no pairs of architectures differ in one choice only")
    if found:
        click.echo("")
        click.echo(f"parameter importances for {objectives[0]} (Optuna, fANOVA):")
        for name, value in found.items():
            click.echo(f"  {name:<16} {value:.3f}")


def echo_verdicts(store: Store, job: JobInfo) -> None:
    """Print ``analyze``'s verdicts section for ``job`` (``run`` ends with it)."""
    frame = load_candidates(store, job.id, where=["state=complete"])
    if frame.empty:
        return
    planned, skipped = _ablation_plan(job)
    references, effects, advice = _verdicts(job, frame, planned)
    _print_verdicts(job, planned, references, to_records(effects), to_records(advice), skipped)


def _ablation_plan(job: JobInfo) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job's ablate plan (empty until planned) and its skipped variants."""
    planned = dict((job.plan or {}).get("ablate") or {})
    return planned, list(planned.get("skipped", []))


def _verdicts(
    job: JobInfo, frame: pd.DataFrame, planned: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], pd.DataFrame, pd.DataFrame]:
    """The references as JSON, the effects around them and the recommendations."""
    objectives = job.config.objectives
    cost = cost_objective(objectives)
    trials = [int(t) for t in planned.get("references", [])]
    effects = ablation_effects(frame, references=trials, cost=cost)
    advice = recommendations(frame, effects, cost=cost)
    means = architecture_means(frame, objectives)
    return [_reference(frame, means, t) for t in trials], effects, advice


def _reference(frame: pd.DataFrame, means: pd.DataFrame, trial: int) -> dict[str, Any]:
    """A reference trial as JSON: its architecture and its mean val_acc over its seeds."""
    arch_hash = frame.loc[frame["trial"] == trial, "arch_hash"].iloc[0]
    (row,) = to_records(means[means["arch_hash"] == arch_hash])
    return {
        "trial": trial,
        "architecture": ArchSpec.from_row(row).to_dict(),
        "val_acc": row["val_acc"],
        "val_acc_std": row["val_acc_std"],
        "n": row["n"],
    }


def _print_verdicts(
    job: JobInfo,
    planned: Mapping[str, Any],
    references: Sequence[Mapping[str, Any]],
    effects: Sequence[Mapping[str, Any]],
    advice: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
) -> None:
    """The verdicts section of ``analyze``: per reference its line and one line per effect,
    then the recommendations, the half-width note and the skipped variants."""
    if job.config.ablate == "none":
        click.echo(
            "verdicts: this job ran no ablation; submit with --ablate downsample|all "
            "(and --seeds 3 or more) for per-stage verdicts"
        )
        return
    if not planned:
        click.echo("verdicts: the ablation is not planned yet (it follows the search)")
        return
    if not references:
        reason = planned.get("reason")
        click.echo(
            "verdicts: the ablation had no reference architecture to vary"
            + (f" ({reason})" if reason else "")
        )
    else:
        click.echo(
            "verdicts (val_acc: mean of the seed-paired differences from the reference, "
            "95 % t-interval):"
        )
    for ref in references:
        std = "" if ref["val_acc_std"] is None else f" ± {ref['val_acc_std']:.4f}"
        click.echo(
            f"reference: trial {ref['trial']} ({_arch_text(ref['architecture'])}), "
            f"val_acc {ref['val_acc']:.4f}{std} over {count(ref['n'], 'seed')}"
        )
        around = [e for e in effects if e["reference"] == ref["trial"]]
        if not around:
            click.echo("  no variant has a result yet")
        for e in around:
            half = e["half_width"]
            click.echo(f"  {e['text']}" + ("" if half is None else f" (±{half * 100:.1f} pt)"))
    if advice:
        click.echo(f"recommendations (around trial {advice[0]['reference']}):")
        for r in advice:
            click.echo(f"  {r['text']}")
    widths = [e["half_width"] for e in effects if e["half_width"] is not None]
    if widths:
        click.echo(
            f"an effect of about ±{statistics.median(widths) * 100:.1f} pt would be detected "
            "about half the time (the median half-width; each line's own is after it)"
        )
    for note in skipped:
        click.echo(
            f"skipped: stage {note['stage']} {note['choice']} {note['value']}: {note['reason']}"
        )


def _arch_text(arch: Mapping[str, Any]) -> str:
    """An architecture in one line: each stage's downsample, kernel and skip."""
    return " | ".join(f"{s['downsample']} k{s['kernel']} {s['skip']}" for s in arch["stages"])


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@click.option(
    "--trial", "trial", type=Integer(), required=True, help="The candidate's trial number."
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="torchscript",
    show_default=True,
    help="torchscript (torch.jit.load), onnx, or state (state "
    "dict + architecture, plus a sibling .json and a README).",
)
@click.option(
    "--untrained",
    is_flag=True,
    help="Export the architecture with random weights when none were kept.",
)
@db_option
def export(
    job_id: int, trial: int, out: Path, fmt: ExportFormat, untrained: bool, db: str | None
) -> None:
    """Rebuild one candidate, with its trained weights where the job kept them, and save it.

    TorchScript and ONNX models take raw NCHW float32 pixels (the dataset's own scale, e.g.
    0-255) and normalise them with the training split's per-channel mean and std themselves;
    ``state`` keeps the bare network and writes the mean and std beside its weights.
    """
    from workers.export import (
        ClassCountError,
        StatisticsUnavailableError,
        WeightsMismatchError,
        class_count,
        export_candidate,
        input_statistics,
        load_weights,
        missing_onnx_packages,
        sidecar_path,
    )

    missing = missing_onnx_packages() if fmt == "onnx" else []
    if missing:
        fail(
            f"--format onnx needs the {' and '.join(missing)} package"
            f"{'s' * (len(missing) > 1)}: pip install {' '.join(missing)}"
        )
    if not out.parent.is_dir():
        fail(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if fmt == "state" and sidecar_path(out) == out:
        fail(
            f"--out {str(out)!r}: the state file needs another suffix than .json "
            "(the architecture goes to the .json beside it)"
        )
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        rows = load_candidates(store, job_id, trials=[trial])
    if rows.empty:
        fail(f"job {job_id} has no trial {trial}")
    weights_file = weights_path(url, job_id, trial)
    weights = load_weights(weights_file)
    if weights is None and not untrained:
        fail(
            f"job {job_id} kept no trained weights for trial {trial} (no {weights_file}; jobs "
            "keep the Pareto front's by default, see --keep-weights); --untrained exports "
            "the architecture with random weights"
        )
    try:
        num_classes = class_count(job.config, job.dataset_facts, weights)
    except ClassCountError as exc:
        fail(str(exc))
    if weights is None:
        warn(
            f"job {job_id} kept no trained weights for trial {trial}; exporting a randomly "
            "initialised model"
        )
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    try:
        mean, std = input_statistics(job.config, job.dataset_facts)
    except StatisticsUnavailableError as exc:
        warn(str(exc))
        mean = std = None
    try:
        written = export_candidate(
            to_records(rows)[0],
            out=out,
            fmt=fmt,
            job_id=job_id,
            dataset=job.config.dataset,
            input_shape=job.config.space.input_shape,
            num_classes=num_classes,
            mean=mean,
            std=std,
            weights=weights,
        )
    except WeightsMismatchError as exc:
        die(f"weights {weights_file} {exc}")
    *rest, last = map(str, written)
    click.echo(
        f"trial {trial} of job {job_id} ({'untrained' if weights is None else 'trained'}) "
        f"written to {', '.join(rest) + ' and ' if rest else ''}{last}",
        err=True,
    )
