"""The ``poolstride`` command: the composition root, the only place that wires ``workers`` in.

Conventions every command follows: ``--json`` prints one JSON document on stdout; progress and
logs go to stderr; bad input prints one line ``poolstride: error: …`` on stderr, writes nothing
and exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from search.artifacts import KEEP_WEIGHTS
from search.config import JobConfig
from search.cost import arch_cost
from search.datasets import DATASETS
from search.objectives import OBJECTIVES
from search.query import load_front, output_columns, to_records
from search.space import ArchSpec, SpaceConfig, load_toml, parse_input_shape
from search.store import (
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    JOB_STATUSES,
    JobInfo,
    JobNotFoundError,
    JobStateError,
    SchemaError,
    Store,
    StoreError,
    current_revision,
    display_url,
    head_revision,
    normalize_url,
    resolve_db_url,
    upgrade,
)
from search.study import SAMPLERS
from search.vocabulary import TABLE_METRICS

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print one line on stderr and exit 2: the answer to bad input."""
    click.echo(f"poolstride: error: {' '.join(str(message).split())}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def bad_input() -> Iterator[None]:
    """Turn a ``ValueError`` raised while validating user input into :func:`fail`."""
    try:
        yield
    except ValueError as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def read_arg(value: str) -> str:
    """``@path`` reads the file; anything else is the value itself."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value[1:]!r}: {exc.strerror}") from None
    return value


def _scalar(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _csv(text: str) -> list[Any]:
    return [_scalar(v) for v in text.split(",") if v.strip()]


def space_options(fn: F) -> F:
    """The search-space flags; the same keys as the TOML config (which they override)."""
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="TOML file with the space keys (top level or a [space] table).",
        ),
        click.option("--input", "input_shape", help="Input shape CxHxW, e.g. 3x32x32."),
        click.option("--stages", type=int, help="Number of stages."),
        click.option(
            "--widths",
            help="Width per stage, e.g. 32,64,128; 16/32 makes one stage's width searchable.",
        ),
        click.option("--depth", help="Convs per stage (all stages), e.g. 1 or 1,2 to search."),
        click.option("--downsample", help="Allowed downsamples, e.g. max,avg,strided,conv."),
        click.option("--kernel", help="Allowed kernel sizes, e.g. 3,5,7."),
        click.option("--skip", help="Allowed skips, e.g. none,proj,pool."),
        click.option(
            "--override",
            "overrides",
            multiple=True,
            metavar="sN.KEY=V1,V2",
            help="One stage's allowed values, e.g. s2.downsample=max,strided.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def space_from_flags(*, config_path: str | None, **flags: Any) -> SpaceConfig:
    """Merge the TOML config (if any) with the flags into a validated space."""
    data: dict[str, Any] = load_toml(config_path, table="space") if config_path else {}
    return SpaceConfig.from_mapping(space_mapping_from_flags(data, **flags))


def space_mapping_from_flags(
    base: Mapping[str, Any],
    *,
    input_shape: str | None,
    stages: int | None,
    widths: str | None,
    depth: str | None,
    downsample: str | None,
    kernel: str | None,
    skip: str | None,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """The space keys of ``base`` (a loaded TOML table) with the space flags applied on top."""
    data = dict(base)
    if input_shape is not None:
        data["input"] = input_shape
    if stages is not None:
        data["stages"] = stages
        if widths is None and "widths" in data and len(data["widths"]) != stages:
            del data["widths"]  # --stages alone rescales the default widths
    if widths is not None:
        data["widths"] = [
            [_scalar(c) for c in w.split("/")] if "/" in w else _scalar(w)
            for w in widths.split(",")
        ]
    for key, value in (
        ("depth", depth),
        ("downsample", downsample),
        ("kernel", kernel),
        ("skip", skip),
    ):
        if value is not None:
            data[key] = _csv(value)
    if overrides:
        table = dict(data.get("overrides", {}))
        for item in overrides:
            key, sep, values = item.partition("=")
            if not sep:
                raise ValueError(f"--override {item!r} is not sN.KEY=V1,V2")
            table[key.strip()] = _csv(values)
        data["overrides"] = table
    return data


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """poolstride: search per-stage downsampling, kernels and skips of CNNs."""


@cli.command()
@space_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def space(as_json: bool, **flags: Any) -> None:
    """Print the search space: per stage the allowed values, and its size."""
    with bad_input():
        cfg = space_from_flags(**flags)
    if as_json:
        emit_json(cfg.to_dict())
        return
    click.echo(f"input {cfg.to_dict()['input']}, {len(cfg.stages)} stages")
    for i, st in enumerate(cfg.stages, 1):
        parts = "  ".join(f"{k}={'|'.join(map(str, v))}" for k, v in st.to_dict().items())
        click.echo(f"  s{i}: {parts}")
    click.echo(f"{cfg.size():,} distinct architectures")


@cli.group()
def arch() -> None:
    """Inspect single architectures."""


@arch.command("cost")
@click.argument("arch_json")
@click.option(
    "--input", "input_shape", default="1x28x28", show_default=True, help="Input shape CxHxW."
)
@click.option("--classes", "num_classes", type=int, default=10, show_default=True)
@click.option("--measure", is_flag=True, help="Also build the module and count with torch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def arch_cost_cmd(
    arch_json: str, input_shape: str, num_classes: int, measure: bool, as_json: bool
) -> None:
    """Params, FLOPs, activation bytes and receptive field of ARCH_JSON (a string or @file)."""
    with bad_input():
        spec = ArchSpec.from_json(read_arg(arch_json))
        shape = parse_input_shape(input_shape)
        cost = arch_cost(spec, input_shape=shape, num_classes=num_classes)
    out: dict[str, Any] = cost._asdict()
    if measure:
        from workers.model import build_model
        from workers.model import measure as torch_measure

        model = build_model(spec, in_channels=shape[0], num_classes=num_classes)
        out["measured"] = torch_measure(model, shape)
    if as_json:
        emit_json(out)
        return
    for key, value in out.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:,}" for k, v in value.items())
        else:
            value = f"{value:,}"
        click.echo(f"{key}: {value}")


EXIT_FAILURE = 1


def db_option(fn: F) -> F:
    """The ``--db URL`` option every database command takes."""
    return click.option(
        "--db",
        "db",
        metavar="URL",
        help=f"Database URL (default: ${DB_ENV_VAR}, else {DEFAULT_DB_URL}).",
    )(fn)


def _die(message: str) -> NoReturn:
    """One line on stderr and exit 1: the database failed, the input was fine."""
    click.echo(f"poolstride: error: {' '.join(str(message).split())}", err=True)
    sys.exit(EXIT_FAILURE)


@contextlib.contextmanager
def _database(db: str | None) -> Iterator[str]:
    """Resolve ``--db`` and turn database failures into one line on stderr."""
    with bad_input():
        url = normalize_url(resolve_db_url(db))
    try:
        yield url
    except StoreError as exc:
        if isinstance(exc, SchemaError | JobNotFoundError | JobStateError):
            fail(str(exc))
        _die(str(exc))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _die(f"database {display_url(url)}: {reason}")


def job_config_from_flags(
    *,
    config_path: str | None,
    input_shape: str | None,
    stages: int | None,
    widths: str | None,
    depth: str | None,
    downsample: str | None,
    kernel: str | None,
    skip: str | None,
    overrides: tuple[str, ...],
    **job_flags: Any,
) -> JobConfig:
    """Merge the job TOML (if any) with the flags into a validated :class:`JobConfig`."""
    data: dict[str, Any] = load_toml(config_path) if config_path else {}
    space = data.pop("space", {})
    if not isinstance(space, dict):
        raise ValueError("[space] must be a table of space keys")
    space_map = space_mapping_from_flags(
        space,
        input_shape=input_shape,
        stages=stages,
        widths=widths,
        depth=depth,
        downsample=downsample,
        kernel=kernel,
        skip=skip,
        overrides=overrides,
    )
    return JobConfig.from_mapping(data, overrides={**job_flags, "space": space_map})


def job_options(fn: F) -> F:
    """The job flags of ``submit`` (and ``run``); the same keys as the job TOML."""
    options = [
        click.option("--name", help="Job name (default: the dataset)."),
        click.option("--dataset", help=f"One of {', '.join(DATASETS)} (default mnist5k)."),
        click.option(
            "--data-dir",
            "--data-path",
            "data_dir",
            metavar="PATH",
            help="Data folder (cifar10, imagefolder) or .npz file (npz).",
        ),
        click.option("--trials", type=int, help="Candidates to train (required)."),
        click.option("--epochs", type=int, help="Epochs per candidate (required)."),
        click.option(
            "--objectives",
            help=f"Comma-separated, of {', '.join(OBJECTIVES)} (default val_acc,flops).",
        ),
        click.option("--sampler", help=f"One of {', '.join(SAMPLERS)} (default nsga2)."),
        click.option("--seed", type=int, help="Sampler and training seed (default 0)."),
        click.option("--priority", type=int, help="Higher runs first (default 0)."),
        click.option("--cpus-per-trial", type=float, help="CPUs per trial (default 1)."),
        click.option("--gpus-per-trial", type=float, help="GPU share per trial (default 0)."),
        click.option("--concurrency", type=int, help="Trials at once (default 2)."),
        click.option(
            "--max-attempts", type=int, help="Claims before a crashing job is failed (default 3)."
        ),
        click.option("--batch-size", type=int, help="Training batch size (default 128)."),
        click.option("--lr", type=float, help="Peak learning rate (default 0.05)."),
        click.option("--label-smoothing", type=float, help="Label smoothing (default 0.1)."),
        click.option(
            "--augment/--no-augment", default=None, help="Flip and crop augmentation (default off)."
        ),
        click.option(
            "--keep-weights",
            type=click.Choice(KEEP_WEIGHTS),
            help="Trained weights to keep for export (default: the Pareto front).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.group()
def db() -> None:
    """Create, upgrade and inspect the database schema."""


@db.command("upgrade")
@db_option
def db_upgrade_cmd(db: str | None) -> None:
    """Create or upgrade poolstride's tables and Optuna's."""
    with _database(db) as url:
        revision = upgrade(url)
    click.echo(f"database {display_url(url)} is at revision {revision} (head)")


@db.command("current")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def db_current_cmd(db: str | None, as_json: bool) -> None:
    """Print the database's poolstride schema revision."""
    with _database(db) as url:
        current = None
        if not _missing_sqlite_file(url):
            with Store.open(url, check=False) as store:
                current = current_revision(store.engine)
        head = head_revision()
    if as_json:
        emit_json({"current": current, "head": head, "up_to_date": current == head})
    elif current == head:
        click.echo(f"{current} (head)")
    else:
        click.echo(f"{current or 'none'} (head is {head}: run `poolstride db upgrade`)")


@cli.command()
@space_options
@job_options
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def submit(db: str | None, as_json: bool, **flags: Any) -> None:
    """Queue a search: validate its config and add it to the queue; nothing is trained here.

    A brand-new SQLite database file gets its schema created on the way.
    """
    with bad_input():
        config = job_config_from_flags(**flags)
    if config.data_dir is not None and not Path(config.data_dir).exists():
        # a worker on another machine may see it; say so, but queue the job
        click.echo(
            f"poolstride: warning: {config.data_dir!r} does not exist here; the worker "
            "that runs the job must have it",
            err=True,
        )
    with _database(db) as url, Store.open(url, create=True) as store:
        job = store.submit(config)
    if as_json:
        emit_json(job.to_dict())
        return
    named = f" {job.name!r}" if job.name != config.dataset else ""
    click.echo(
        f"job {job.id}{named} queued: {_count(config.trials, 'trial')} of "
        f"{_count(config.epochs, 'epoch')} on {config.dataset} (study {job.study_name})"
    )


_JOB_COLUMNS = ("id", "name", "status", "priority", "trials", "attempts", "created")


@cli.command()
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs with this status.")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def jobs(status: str | None, db: str | None, as_json: bool) -> None:
    """List the queue, oldest first."""
    with _database(db) as url, Store.open(url) as store:
        found = store.list_jobs(status)
    if as_json:
        emit_json([{k: v for k, v in job.to_dict().items() if k != "config"} for job in found])
        return
    rows = [
        (
            str(j.id),
            j.name,
            j.status,
            str(j.priority),
            f"{j.trials_done}/{j.trials_total}",
            f"{j.attempts}/{j.max_attempts}",
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for j in found
    ]
    if not rows:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
        return
    print_table([c.upper() for c in _JOB_COLUMNS], rows)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def status(job_id: int, db: str | None, as_json: bool) -> None:
    """Show one job: status, progress, attempts, lease and last error."""
    with _database(db) as url, Store.open(url) as store:
        job = store.get_job(job_id)
        front = load_front(store, job_id)
    if as_json:
        emit_json(
            {**job.to_dict(), "front_size": len(front.rows), "hypervolume": front.hypervolume}
        )
        return
    cfg = job.config
    lines = {
        "job": f"{job.id} {job.name!r}",
        "status": job.status
        + (" (cancel requested)" if job.cancel_requested and job.status == "running" else ""),
        "study": job.study_name,
        "trials": f"{job.trials_done}/{job.trials_total} complete",
        "dataset": cfg.dataset,
        "objectives": ", ".join(cfg.objectives),
        "front": f"{_count(len(front.rows), 'candidate')}, hypervolume {front.hypervolume:.4f}",
        "sampler": cfg.sampler,
        "priority": str(job.priority),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "worker": job.worker_id or "-",
        "lease until": _when(job.lease_expires_at),
        "created": _when(job.created_at),
        "started": _when(job.started_at),
        "finished": _when(job.finished_at),
        "error": job.error or "-",
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        click.echo(f"{key + ':':<{width + 1}} {value}")


@cli.command()
@click.argument("job_id", metavar="JOB", type=int)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def cancel(job_id: int, db: str | None, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one at its worker's next heartbeat."""
    with _database(db) as url, Store.open(url) as store:
        job = store.cancel(job_id)
    if as_json:
        emit_json(job.to_dict())
    elif job.status == "cancelled":
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id}: cancel requested; its worker stops it at the next heartbeat")


# -- running searches (the only commands that import workers/, and only when they run) --------


def _worker_options(fn: F) -> F:
    options = [
        click.option(
            "--ray-address",
            metavar="ADDR",
            help="Join this Ray cluster (default: start a private local instance).",
        ),
        click.option(
            "--lease-s",
            type=click.FloatRange(min=1),
            default=60.0,
            show_default=True,
            help="Lease length: another worker takes the job over this long after "
            "this one stops heartbeating.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _quiet_libraries() -> None:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


@cli.command()
@click.option("--once", is_flag=True, help="Run one job (if any is queued), then exit.")
@click.option("--drain", is_flag=True, help="Run jobs until the queue is empty, then exit.")
@click.option(
    "--cpus-per-trial", type=float, help="CPU share per trial on this worker (overrides the job's)."
)
@click.option(
    "--gpus-per-trial",
    type=float,
    help="GPU share per trial on this worker, e.g. 0.25 (overrides the job's).",
)
@_worker_options
@db_option
def worker(
    once: bool,
    drain: bool,
    ray_address: str | None,
    cpus_per_trial: float | None,
    gpus_per_trial: float | None,
    lease_s: float,
    db: str | None,
) -> None:
    """Claim queued jobs and run them on Ray until stopped (SIGTERM or Ctrl-C hand back cleanly)."""
    if once and drain:
        fail("--once and --drain exclude each other")
    _check_shares(cpus_per_trial, gpus_per_trial)
    with _database(db) as url:
        Store.open(url).close()  # refuse a missing or out-of-date schema before starting Ray
        from workers.daemon import Worker

        _quiet_libraries()
        runner = Worker(
            url,
            lease_s=lease_s,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            on_progress=_log_progress,
        )
        click.echo(f"worker {runner.id} on {display_url(url)}", err=True)
        outcomes = runner.run(once=once, drain=drain, ray_address=ray_address)
    if not outcomes:
        click.echo("no queued job", err=True)
    for job_id, outcome in outcomes:
        click.echo(
            f"job {job_id}: {outcome.status}, {outcome.completed} complete, "
            f"{outcome.failed} failed" + (f" ({outcome.error})" if outcome.error else ""),
            err=True,
        )


def _check_shares(cpus: float | None, gpus: float | None) -> None:
    if cpus is not None and cpus <= 0:
        fail(f"--cpus-per-trial {cpus} must be positive")
    if gpus is not None and gpus < 0:
        fail(f"--gpus-per-trial {gpus} must not be negative")


def _log_progress(job_id: int, completed: int, total: int, failed: int) -> None:
    click.echo(
        f"job {job_id}: {completed}/{total} trials complete"
        + (f", {failed} failed" if failed else ""),
        err=True,
    )


class Progress:
    """Progress on stderr: a bar on a terminal; elsewhere (logs, CI) a line per tenth done.

    Example:
        >>> with Progress("trials", 4) as bar:  # doctest: +SKIP
        ...     bar.update(1)
    """

    def __init__(self, label: str, total: int, *, scale: float = 1, unit: str = "") -> None:
        self.label, self.total, self.scale, self.unit = label, total, scale, unit
        self.done, self._tenth = 0, -1
        self._tty = sys.stderr.isatty()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tty:
            click.echo(err=True)

    def update(self, done: int, *, total: int | None = None, note: str = "") -> None:
        self.done, self.total = done, total or self.total
        fraction = done / self.total if self.total else 0.0
        amount = (
            f"{done / self.scale:.1f}/{self.total / self.scale:.1f}"
            if self.scale != 1
            else f"{done}/{self.total}"
        )
        line = (
            f"{self.label}: {amount}{' ' + self.unit if self.unit else ''} "
            f"({fraction:.0%}){', ' + note if note else ''}"
        )
        if self._tty:
            filled = int(fraction * 30)
            click.echo(f"\r[{'#' * filled}{'-' * (30 - filled)}] {line}", err=True, nl=False)
        elif int(fraction * 10) > self._tenth:
            self._tenth = int(fraction * 10)
            click.echo(line, err=True)


RUN_DEFAULTS = {"trials": 12, "epochs": 2}


@cli.command()
@space_options
@job_options
@_worker_options
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def run(
    db: str | None, as_json: bool, ray_address: str | None, lease_s: float, **flags: Any
) -> None:
    """Submit a search, work it to its end here, then print its Pareto front.

    Defaults: mnist5k, 12 trials of 2 epochs, the default space (3 stages, 46,656 architectures).
    """
    for key, value in RUN_DEFAULTS.items():
        if flags[key] is None:
            flags[key] = value
    with bad_input():
        config = job_config_from_flags(**flags)
    if config.data_dir is not None and not Path(config.data_dir).exists():
        fail(f"--data-dir {config.data_dir!r} does not exist")
    with _database(db) as url:
        with Store.open(url, create=True) as store:
            job = store.submit(config)
        click.echo(
            f"job {job.id}: {_count(config.trials, 'trial')} of "
            f"{_count(config.epochs, 'epoch')} on {config.dataset}, study "
            f"{job.study_name}, database {display_url(url)}",
            err=True,
        )
        from workers.daemon import Worker

        _quiet_libraries()
        with Progress("trials", config.trials) as bar:

            def advance(job_id: int, completed: int, total: int, failed: int) -> None:
                bar.update(completed, note=f"{failed} failed" if failed else "")

            Worker(url, lease_s=lease_s, on_progress=advance).run(
                job_id=job.id, ray_address=ray_address
            )
        with Store.open(url) as store:
            job = store.get_job(job.id)
            front = pareto_rows(store, job)
    if as_json:
        emit_json({**{k: v for k, v in job.to_dict().items() if k != "config"}, "pareto": front})
    else:
        click.echo(
            f"job {job.id} {job.status}: {job.trials_done}/{job.trials_total} trials "
            "complete" + (f" ({job.error})" if job.error else "")
        )
        if front:
            click.echo(
                f"Pareto front ({', '.join(config.objectives)}), {_count(len(front), 'candidate')}:"
            )
            keys = ["trial", *config.space.distributions(), *TABLE_METRICS]
            print_table(keys, [[_fmt(row.get(k)) for k in keys] for row in front])
    if job.status != "succeeded":
        sys.exit(EXIT_FAILURE)


def pareto_rows(store: Store, job: JobInfo) -> list[dict[str, Any]]:
    """The job's Pareto-optimal candidates as flat rows (:func:`search.query.load_front`)."""
    front = load_front(store, job.id).rows
    return to_records(front[output_columns(len(job.config.space.stages))])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@cli.group()
def data() -> None:
    """Datasets."""


@data.command("fetch")
@click.argument("name", type=click.Choice(["cifar10"]))
@click.option(
    "--data-dir",
    metavar="DIR",
    help="Where to unpack (default: $POOLSTRIDE_DATA, else ~/.cache/poolstride/data).",
)
@click.option("--url", help="Download from this address instead of the official one.")
@click.option("--checksum", help="Expected MD5 (32 hex) or SHA-256 (64 hex) of the archive.")
def data_fetch(name: str, data_dir: str | None, url: str | None, checksum: str | None) -> None:
    """Download NAME's official archive, verify its checksum and unpack it."""
    from workers.data import CIFAR10_MD5, CIFAR10_URL, default_data_dir, fetch_cifar10

    target = Path(data_dir) if data_dir else default_data_dir()
    with Progress(name, 0, scale=2**20, unit="MiB") as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done, total=total)

        with bad_input():
            try:
                path = fetch_cifar10(
                    target,
                    url=url or CIFAR10_URL,
                    checksum=checksum or CIFAR10_MD5,
                    progress=progress,
                )
            except OSError as exc:
                _die(str(exc))
    click.echo(f"{name} is in {path}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(parsed.database)
        and parsed.database != ":memory:"
        and not Path(str(parsed.database)).exists()
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs :data:`cli`, reporting usage errors as one line with status 2."""
    try:
        cli.main(args=argv, prog_name="poolstride", standalone_mode=False)
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        click.echo("poolstride: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


import search._cli_query  # noqa: E402, F401  (registers its commands)
from search import _cli_dashboard  # noqa: E402, F401  (registers its commands)

if __name__ == "__main__":
    main()
