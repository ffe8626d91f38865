"""The ``poolstride`` command: the composition root, the only place that wires ``workers`` in.

Conventions every command follows: ``--json`` prints one JSON document on stdout; progress and
logs go to stderr; bad input prints one line ``poolstride: error: …`` on stderr, writes nothing
and exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from search.cost import arch_cost
from search.space import ArchSpec, SpaceConfig, load_toml, parse_input_shape

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
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="TOML file with the space keys (top level or a [space] table)."),
        click.option("--input", "input_shape", help="Input shape CxHxW, e.g. 3x32x32."),
        click.option("--stages", type=int, help="Number of stages."),
        click.option("--widths", help="Width per stage, e.g. 32,64,128; 16/32 makes one "
                                      "stage's width searchable."),
        click.option("--depth", help="Convs per stage (all stages), e.g. 1 or 1,2 to search."),
        click.option("--downsample", help="Allowed downsamples, e.g. max,avg,strided,conv."),
        click.option("--kernel", help="Allowed kernel sizes, e.g. 3,5,7."),
        click.option("--skip", help="Allowed skips, e.g. none,proj,pool."),
        click.option("--override", "overrides", multiple=True, metavar="sN.KEY=V1,V2",
                     help="One stage's allowed values, e.g. s2.downsample=max,strided."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def space_from_flags(*, config_path: str | None, input_shape: str | None, stages: int | None,
                     widths: str | None, depth: str | None, downsample: str | None,
                     kernel: str | None, skip: str | None, overrides: tuple[str, ...],
                     ) -> SpaceConfig:
    """Merge the TOML config (if any) with the flags into a validated space."""
    data: dict[str, Any] = load_toml(config_path, table="space") if config_path else {}
    if input_shape is not None:
        data["input"] = input_shape
    if stages is not None:
        data["stages"] = stages
        if widths is None and "widths" in data and len(data["widths"]) != stages:
            del data["widths"]  # --stages alone rescales the default widths
    if widths is not None:
        data["widths"] = [[_scalar(c) for c in w.split("/")] if "/" in w else _scalar(w)
                          for w in widths.split(",")]
    for key, value in (("depth", depth), ("downsample", downsample), ("kernel", kernel),
                       ("skip", skip)):
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
    return SpaceConfig.from_mapping(data)


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
@click.option("--input", "input_shape", default="1x28x28", show_default=True,
              help="Input shape CxHxW.")
@click.option("--classes", "num_classes", type=int, default=10, show_default=True)
@click.option("--measure", is_flag=True, help="Also build the module and count with torch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def arch_cost_cmd(arch_json: str, input_shape: str, num_classes: int, measure: bool,
                  as_json: bool) -> None:
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


if __name__ == "__main__":
    main()
