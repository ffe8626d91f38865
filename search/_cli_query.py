"""The query commands: ``pareto``, ``trials``, ``analyze`` and ``export``.

They attach themselves to :data:`search.cli.cli` when ``search.cli`` imports this module. The
numbers come from :mod:`search.query`, :mod:`search.pareto` and :mod:`search.analysis`; this
module only formats them. ``export`` is the one command that imports torch (and
``workers.model``), and only when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from search.analysis import describe_effect, importances, paired_effects, stage_analysis
from search.cli import _database, _die, _fmt, bad_input, cli, db_option, emit_json, fail
from search.cli import print_table as _print_table
from search.config import JobConfig
from search.objectives import OBJECTIVES
from search.query import load_candidates, load_front, output_columns, to_records
from search.space import ArchSpec
from search.store import JobInfo, Store, optuna_storage
from search.vocabulary import STAGE_KEYS, TABLE_METRICS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["analyze", "export", "pareto", "trials"]

FORMATS = ("table", "json", "csv")
EXPORT_FORMATS = ("torchscript", "onnx", "state")


def _format_option(choices: tuple[str, ...] = FORMATS) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default="table",
        show_default=True,
        help="Output format.",
    )


def _table_columns(job: JobInfo, *, with_state: bool) -> list[str]:
    # the searched parameters only: fixed widths and depths would repeat on every line
    return [
        "trial",
        *(["state"] if with_state else []),
        *job.config.space.distributions(),
        *TABLE_METRICS,
    ]


def _emit_rows(
    frame: pd.DataFrame, fmt: str, job: JobInfo, *, with_state: bool, empty: str
) -> None:
    columns = output_columns(len(job.config.space.stages))
    if fmt == "json":
        emit_json(to_records(frame[columns]))
    elif fmt == "csv":
        click.echo(frame[columns].to_csv(index=False), nl=False)
    elif frame.empty:
        click.echo(empty)
    else:
        keys = _table_columns(job, with_state=with_state)
        _print_table(keys, [[_fmt(r[k]) for k in keys] for r in to_records(frame[keys])])


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
@click.option(
    "--objectives",
    metavar="A,B",
    help=f"Objectives of the front, of {', '.join(OBJECTIVES)} (default: the job's).",
)
@_format_option()
@db_option
def pareto(job_id: int, objectives: str | None, fmt: str, db: str | None) -> None:
    """Print the job's Pareto front over its objectives (or ``--objectives``)."""
    names = None
    if objectives is not None:
        names = [o.strip() for o in objectives.split(",") if o.strip()]
        if not names:
            fail(f"--objectives {objectives!r}: name at least one objective")
    with _database(db) as url, Store.open(url) as store:
        job = store.get_job(job_id)
        with bad_input():
            front = load_front(store, job_id, names)
    _emit_rows(
        front.rows, fmt, job, with_state=False, empty=f"job {job_id} has no complete candidates yet"
    )
    if fmt == "table" and not front.rows.empty:
        click.echo(
            f"{len(front.rows)} of {front.complete} complete candidates on the front "
            f"({', '.join(front.objectives)}); hypervolume {front.hypervolume:.4f}"
        )


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
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
@click.option("--limit", type=click.IntRange(min=0), help="At most N rows.")
@_format_option()
@db_option
def trials(
    job_id: int,
    where: tuple[str, ...],
    sort: str | None,
    limit: int | None,
    fmt: str,
    db: str | None,
) -> None:
    """List the job's candidates, filtered and sorted in the database."""
    with _database(db) as url, Store.open(url) as store:
        job = store.get_job(job_id)
        with bad_input():
            frame = load_candidates(store, job_id, where=where, sort=sort, limit=limit)
    _emit_rows(frame, fmt, job, with_state=True, empty="no candidates match")


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
@_format_option(("table", "json"))
@db_option
def analyze(job_id: int, fmt: str, db: str | None) -> None:
    """The per-stage answer: each stage choice's accuracy, front share, cost and paired effect."""
    with _database(db) as url, Store.open(url) as store:
        job = store.get_job(job_id)
        objectives = job.config.objectives
        front = load_front(store, job_id)
        frame = load_candidates(store, job_id, where=["state=complete"])
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
            click.echo(f"job {job_id} has no complete candidates yet")
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
    header = ["STAGE", "CHOICE", "VALUE", "N", "VAL_ACC", "95% CI", "FRONT", "FLOPS", "PARAMS"]
    _print_table(
        header,
        [
            [
                str(r["stage"]),
                r["choice"],
                str(r["value"]),
                str(r["count"]),
                f"{r['val_acc_mean']:.4f}",
                f"[{r['val_acc_lo']:.4f}, {r['val_acc_hi']:.4f}]" if r["count"] > 1 else "-",
                "-" if r["front_share"] is None else f"{r['front_share']:.0%}",
                _fmt(round(r["flops_mean"])),
                _fmt(round(r["params_mean"])),
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


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
@click.option("--trial", "trial", type=int, required=True, help="The candidate's trial number.")
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
    "dict + architecture, plus a sibling .json).",
)
@click.option(
    "--untrained",
    is_flag=True,
    help="Export the architecture with random weights when none were kept.",
)
@db_option
def export(job_id: int, trial: int, out: Path, fmt: str, untrained: bool, db: str | None) -> None:
    """Rebuild one candidate, with its trained weights where the job kept them, and save it.

    TorchScript and ONNX models take raw NCHW float32 pixels (the dataset's own scale, e.g.
    0-255) and normalise them with the training split's per-channel mean and std themselves;
    ``state`` keeps the bare network and writes the mean and std beside its weights.
    """
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if not _importable(m)]
        if missing:
            fail(
                f"--format onnx needs the {' and '.join(missing)} package"
                f"{'s' * (len(missing) > 1)}: pip install {' '.join(missing)}"
            )
    if not out.parent.is_dir():
        fail(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    sidecar = out.with_suffix(".json")
    if fmt == "state" and sidecar == out:
        fail(
            f"--out {str(out)!r}: the state file needs another suffix than .json "
            "(the architecture goes to the .json beside it)"
        )
    from search.artifacts import weights_path
    from search.datasets import dataset_info

    with _database(db) as url, Store.open(url) as store:
        job = store.get_job(job_id)
        rows = load_candidates(store, job_id, trials=[trial])
    if rows.empty:
        fail(f"job {job_id} has no trial {trial}")
    row = to_records(rows)[0]
    arch = _arch_of(row, len(job.config.space.stages))
    input_shape = job.config.space.input_shape
    weights_file = weights_path(url, job_id, trial)

    import torch

    from workers.model import Normalized, build_model

    state: dict[str, Any] | None = None
    if weights_file.is_file():
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    elif not untrained:
        fail(
            f"job {job_id} kept no trained weights for trial {trial} (no {weights_file}; jobs "
            "keep the Pareto front's by default, see --keep-weights); --untrained exports "
            "the architecture with random weights"
        )
    else:
        click.echo(
            f"poolstride: warning: job {job_id} kept no trained weights for trial "
            f"{trial}; exporting a randomly initialised model",
            err=True,
        )
    num_classes = dataset_info(job.config.dataset).num_classes
    if num_classes is None and state is not None:
        num_classes = int(state["head.weight"].shape[0])
    if num_classes is None:
        fail(
            f"dataset {job.config.dataset} has no fixed class count and no weights were "
            "kept; cannot size the classifier"
        )
    model = build_model(arch, in_channels=input_shape[0], num_classes=num_classes)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            _die(
                f"weights {weights_file} do not fit trial {trial}'s architecture: "
                f"{str(exc).splitlines()[0]}"
            )
    model.eval()
    mean, std = _input_stats(job.config)
    example = torch.zeros(2, *input_shape)
    meta = {
        "job": job_id,
        "trial": trial,
        "arch": arch.to_dict(),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "trained": state is not None,
        "val_acc": row.get("val_acc"),
        "dataset": job.config.dataset,
        "mean": mean,
        "std": std,
    }
    exported: torch.nn.Module = model
    if fmt != "state" and mean is not None and std is not None:
        exported = Normalized(model, mean, std).eval()
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(exported, example)
        torch.jit.save(traced, str(out))
    elif fmt == "onnx":
        torch.onnx.export(
            exported,
            (example,),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    else:
        torch.save({**meta, "state_dict": model.state_dict()}, out)
        sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    what = "trained" if state is not None else "untrained"
    click.echo(
        f"trial {trial} of job {job_id} ({what}) written to {out}"
        + (f" and {sidecar}" if fmt == "state" else ""),
        err=True,
    )


def _input_stats(config: JobConfig) -> tuple[list[float] | None, list[float] | None]:
    """The training split's per-channel mean and std (the dataset loads from its cache)."""
    from workers.data import load_dataset

    try:
        data = load_dataset(
            config.dataset,
            data_dir=config.data_dir,
            input_shape=config.space.input_shape,
            seed=config.seed,
        )
    except ValueError as exc:
        click.echo(
            f"poolstride: warning: cannot load {config.dataset} for its input statistics "
            f"({exc}); the exported model expects normalised inputs",
            err=True,
        )
        return None, None
    return list(data.mean), list(data.std)


def _arch_of(row: dict[str, Any], n_stages: int) -> ArchSpec:
    return ArchSpec.from_dict(
        {"stages": [{k: row[f"s{i}.{k}"] for k in STAGE_KEYS} for i in range(1, n_stages + 1)]}
    )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
