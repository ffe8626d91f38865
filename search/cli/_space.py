"""``poolstride space`` and ``poolstride arch cost``: the space and single architectures.

Neither touches the database; ``arch cost --measure`` is the one place that builds the module
with torch (imported only then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from search.cli._common import bad_input, emit_json, json_option
from search.cli._flags import space_from_flags, space_options
from search.cost import arch_cost
from search.space import ArchSpec, parse_input_shape

__all__ = ["arch", "read_arg", "space"]


def read_arg(value: str) -> str:
    """``@path`` reads the file; anything else is the value itself.

    Raises:
        ValueError: the file cannot be read.

    Example:
        >>> read_arg('{"stages": []}')
        '{"stages": []}'
    """
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value[1:]!r}: {exc.strerror}") from None
    return value


@click.command()
@space_options
@json_option
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


@click.group()
def arch() -> None:
    """Inspect single architectures."""


@arch.command("cost")
@click.argument("arch_json")
@click.option(
    "--input", "input_shape", default="1x28x28", show_default=True, help="Input shape CxHxW."
)
@click.option("--classes", "num_classes", type=int, default=10, show_default=True)
@click.option("--measure", is_flag=True, help="Also build the module and count with torch.")
@json_option
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
