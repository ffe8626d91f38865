"""Reading a study: ``pareto``, ``trials``, ``analyze`` and ``export``.

The numbers come from :mod:`search.query`, :mod:`search.pareto` and :mod:`search.analysis`;
this module only formats them. ``export`` validates its input, reads the candidate and hands it
to :mod:`workers.export`, imported (with torch) only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import click

from search._checks import INT64
from search.analysis import describe_effect, importances, paired_effects, stage_analysis
from search.artifacts import EXPORT_FORMATS, ExportFormat, weights_path
from search.cli._common import (
    Integer,
    bad_input,
    candidate_columns,
    cell,
    database,
    db_option,
    die,
    emit_json,
    fail,
    print_candidates,
    print_table,
    warn,
)
from search.objectives import OBJECTIVES
from search.query import load_candidates, load_front, parse_sort, parse_where, to_records
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
    "export",
    "pareto",
    "trials",
]

# ``--format`` of ``pareto`` and ``trials``, and of ``analyze`` (its tables do not fit a CSV)
Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = get_args(Format)
AnalyzeFormat = Literal["table", "json"]
ANALYZE_FORMATS: tuple[AnalyzeFormat, ...] = get_args(AnalyzeFormat)


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
    frame: pd.DataFrame, fmt: Format, job: JobInfo, *, with_state: bool, empty: str
) -> None:
    if fmt == "json":
        emit_json(to_records(frame[candidate_columns(job)]))
    elif fmt == "csv":
        click.echo(frame[candidate_columns(job)].to_csv(index=False), nl=False)
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
    """Print the job's Pareto front over its objectives (or ``--objectives``)."""
    names = None
    if objectives is not None:
        names = [o.strip() for o in objectives.split(",") if o.strip()]
        if not names:
            fail(f"--objectives {objectives!r}: name at least one objective")
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        with bad_input():
            front = load_front(store, job_id, names)
    _emit_rows(front.rows, fmt, job, with_state=False, empty=_none_complete(job))
    if fmt == "table" and not front.rows.empty:
        click.echo(
            f"{len(front.rows)} of {front.complete} complete candidates on the front "
            f"({', '.join(front.objectives)}); hypervolume {front.hypervolume:.4f}"
        )


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
    """The per-stage answer: each stage choice's accuracy, front share, cost and paired effect."""
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        objectives = job.config.objectives
        front = load_front(store, job_id)
        frame = load_candidates(store, job_id, where=["state=complete"])
        with database_errors(url):  # Optuna's storage, not the store: map its errors the same way
            found = importances(optuna_storage(url), job.study_name)
    if frame.empty:
        if fmt == "json":
            emit_json(
                {
                    "job": job_id,
                    "objectives": list(objectives),
                    "complete": 0,
                    "front_size": 0,
                    "hypervolume": 0.0,
                    "stages": [],
                    "effects": [],
                    "importances": {},
                }
            )
        else:
            click.echo(_none_complete(job))
        return
    analysis_objectives = objectives if len(objectives) > 1 else ("val_acc", "flops")
    stages = stage_analysis(frame, objectives=analysis_objectives)
    effects = paired_effects(frame)
    effect_rows = [{**row, "text": describe_effect(row)} for row in to_records(effects)]
    if fmt == "json":
        emit_json(
            {
                "job": job_id,
                "objectives": list(objectives),
                "complete": front.complete,
                "front_size": len(front.rows),
                "hypervolume": front.hypervolume,
                "stages": to_records(stages),
                "effects": effect_rows,
                "importances": found,
            }
        )
        return
    click.echo(
        f"job {job_id}: {front.complete} complete candidates, front of "
        f"{len(front.rows)} over {', '.join(objectives)}, hypervolume "
        f"{front.hypervolume:.4f}"
    )
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
    if effect_rows:
        click.echo("paired effects (architectures that differ in that one choice only):")
        for row in effect_rows:
            click.echo(f"  {row['text']}")
    else:
        click.echo("paired effects: no pairs of architectures differ in one choice only")
    if found:
        click.echo("")
        click.echo(f"parameter importances for {objectives[0]} (Optuna, fANOVA):")
        for name, value in found.items():
            click.echo(f"  {name:<16} {value:.3f}")


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
