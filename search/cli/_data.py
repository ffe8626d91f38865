"""``poolstride data fetch``: download a dataset's official archive (``workers.data`` does it)."""

from __future__ import annotations

from pathlib import Path

import click

from search.cli._common import Progress, bad_input, die

__all__ = ["data"]


@click.group()
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
    # the bar ends before an error is reported, so the error is the last line
    with bad_input():
        try:
            with Progress(name, 0, scale=2**20, unit="MiB") as bar:

                def progress(done: int, total: int) -> None:
                    bar.update(done, total=total)

                path = fetch_cifar10(
                    target,
                    url=url or CIFAR10_URL,
                    checksum=checksum or CIFAR10_MD5,
                    progress=progress,
                )
        except OSError as exc:
            die(str(exc))
    click.echo(f"{name} is in {path}")
