"""One candidate as a file: its network rebuilt from its row, its kept weights, written out.

Three formats (``poolstride export --format``):

- ``torchscript``: ``torch.jit.load`` reads it with plain torch;
- ``onnx``: needs the ``onnx`` and ``onnxscript`` packages;
- ``state``: the bare network's state dict with the architecture and the input statistics,
  plus the same facts (without the weights) in a ``.json`` beside it and a README whose example
  rebuilds the network, loads the weights and runs one input.

TorchScript and ONNX models take raw NCHW float32 pixels in the dataset's own scale: the network
is wrapped in :class:`workers.model.Normalized` with the training split's per-channel mean and
std. ``state`` keeps the bare network (rebuild it with :func:`workers.model.build_model`).

:func:`class_count` and :func:`input_statistics` read the class count and the statistics from
the facts the job recorded when a worker first loaded its data; for a job without them (no
worker loaded it yet, or it predates schema 0002), from the dataset registry or the kept
weights' head, and from the data loaded again (from its cache).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from search.artifacts import ExportFormat
from search.config import JobConfig
from search.datasets import DatasetFacts, dataset_info
from search.space import ArchSpec
from workers.data import load_job_data
from workers.model import Net, Normalized, build_model

__all__ = [
    "ONNX_PACKAGES",
    "ClassCountError",
    "StateDict",
    "StatisticsUnavailableError",
    "WeightsMismatchError",
    "class_count",
    "export_candidate",
    "head_classes",
    "input_statistics",
    "load_weights",
    "missing_onnx_packages",
    "readme_path",
    "rebuild",
    "sidecar_path",
    "state_readme",
]

StateDict = dict[str, torch.Tensor]
ONNX_PACKAGES = ("onnx", "onnxscript")


class WeightsMismatchError(ValueError):
    """Kept weights whose shapes or names do not fit the candidate's architecture."""


class ClassCountError(ValueError):
    """Nothing says how many classes the classifier has: no recorded facts, a dataset of any
    class count and no kept weights."""


class StatisticsUnavailableError(ValueError):
    """No recorded facts and the data does not load: the model can only take normalised inputs."""


def missing_onnx_packages() -> list[str]:
    """The packages ONNX export needs that are not installed.

    Example:
        >>> set(missing_onnx_packages()) <= set(ONNX_PACKAGES)
        True
    """
    return [m for m in ONNX_PACKAGES if importlib.util.find_spec(m) is None]


def sidecar_path(out: Path) -> Path:
    """Where the ``state`` format writes its ``.json`` beside ``out``.

    Example:
        >>> str(sidecar_path(Path("runs/net.pt")))
        'runs/net.json'
    """
    return out.with_suffix(".json")


def readme_path(out: Path) -> Path:
    """Where the ``state`` format writes its README beside ``out``.

    Example:
        >>> str(readme_path(Path("runs/net.pt")))
        'runs/net.README.md'
    """
    return out.with_name(f"{out.stem}.README.md")


def state_readme(out: Path, meta: Mapping[str, Any]) -> str:
    """The README of a ``state`` export to ``out`` whose facts are ``meta``: what the files
    hold, and the code that rebuilds the network from them and classifies one input.

    The code runs as it stands in the README's folder where poolstride is installed (the
    network is :class:`workers.model.Net`); without input statistics (``meta["mean"]`` is
    ``None``) it feeds the network an input as it is, to be normalised as in training.

    Example:
        >>> meta = {"job": 1, "trial": 0, "dataset": "digits", "trained": True, "mean": [7.0]}
        >>> text = state_readme(Path("net.pt"), meta)
        >>> text.splitlines()[0], 'torch.load("net.pt"' in text
        ('# Trial 0 of job 1 (digits)', True)
    """
    weights = (
        "the trained ones"
        if meta["trained"]
        else "random: the job kept no trained weights for this trial"
    )
    if meta["mean"] is None:
        classify = [
            "# the job recorded no input statistics: normalise the input as in training",
            "with torch.no_grad():",
            "    logits = model(image)",
        ]
    else:
        classify = [
            "# the network takes the input normalised by the training split's mean and std",
            'mean = torch.tensor(saved["mean"]).view(1, -1, 1, 1)',
            'std = torch.tensor(saved["std"]).view(1, -1, 1, 1)',
            "with torch.no_grad():",
            "    logits = model((image - mean) / std)",
        ]
    code = [
        "import torch",
        "",
        "from search.space import ArchSpec",
        "from workers.model import build_model",
        "",
        f'saved = torch.load({json.dumps(out.name)}, map_location="cpu", weights_only=True)',
        "model = build_model(",
        '    ArchSpec.from_dict(saved["arch"]),',
        '    in_channels=saved["input_shape"][0],',
        '    num_classes=saved["num_classes"],',
        ")",
        'model.load_state_dict(saved["state_dict"])',
        "model.eval()",
        "",
        "# one image (a batch of 1) of raw pixels in the dataset's own scale; zeros here",
        'image = torch.zeros(1, *saved["input_shape"])',
        *classify,
        'print("logits", tuple(logits.shape), "class", logits.argmax(dim=1).item())',
    ]
    return "\n".join(
        [
            f"# Trial {meta['trial']} of job {meta['job']} ({meta['dataset']})",
            "",
            f"`{out.name}` holds the network's weights (`state_dict`) and what rebuilding it "
            "takes: its architecture (`arch`), `input_shape`, `num_classes` and the training "
            f"split's per-channel `mean` and `std`. `{sidecar_path(out).name}` holds the same "
            f"facts without the weights. The weights are {weights}.",
            "",
            "The network is poolstride's own module: where poolstride is installed, this code "
            "rebuilds it in this folder, loads the weights and classifies one input.",
            "",
            "```python",
            *code,
            "```",
            "",
        ]
    )


def load_weights(path: Path) -> StateDict | None:
    """The state dict a job kept in ``path`` (:func:`search.artifacts.weights_path`), if any.

    Example:
        >>> load_weights(Path("no-such-file.pt")) is None
        True
    """
    if not path.is_file():
        return None
    state: StateDict = torch.load(path, map_location="cpu", weights_only=True)
    return state


def head_classes(weights: StateDict) -> int:
    """The class count of the classifier ``weights`` belong to.

    Example:
        >>> head_classes({"head.weight": torch.zeros(7, 16)})
        7
    """
    return int(weights["head.weight"].shape[0])


def class_count(config: JobConfig, facts: DatasetFacts | None, weights: StateDict | None) -> int:
    """The class count of a job's classifiers: its recorded ``facts``', else the dataset
    registry's, else the head of the kept ``weights``.

    Raises:
        ClassCountError: none of them says.

    Example:
        >>> config = JobConfig.from_mapping({"dataset": "digits", "trials": 1, "epochs": 1})
        >>> class_count(config, None, None)
        10
    """
    if facts is not None:
        return facts.num_classes
    num_classes = dataset_info(config.dataset).num_classes
    if num_classes is None and weights is not None:
        num_classes = head_classes(weights)
    if num_classes is None:
        raise ClassCountError(
            f"dataset {config.dataset} has no fixed class count and no weights were "
            "kept; cannot size the classifier"
        )
    return num_classes


def input_statistics(
    config: JobConfig, facts: DatasetFacts | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The training split's per-channel mean and std: the job's recorded ``facts``', else
    those of its data, loaded again (from the dataset's cache).

    Raises:
        StatisticsUnavailableError: no ``facts`` and the data does not load.

    Example:
        >>> config = JobConfig.from_mapping({"dataset": "digits", "trials": 1, "epochs": 1})
        >>> [len(values) for values in input_statistics(config, None)]
        [1, 1]
    """
    if facts is not None:
        return facts.mean, facts.std
    try:
        data = load_job_data(config)
    except ValueError as exc:
        raise StatisticsUnavailableError(
            f"cannot load {config.dataset} for its input statistics ({exc}); the exported "
            "model expects normalised inputs"
        ) from exc
    return data.mean, data.std


def rebuild(
    row: Mapping[str, Any], *, in_channels: int, num_classes: int, weights: StateDict | None
) -> Net:
    """The network of a candidate row (its ``sN.*`` columns), with ``weights`` if given, in
    eval mode.

    Raises:
        WeightsMismatchError: ``weights`` do not fit the architecture.

    Example:
        >>> row = {"trial": 0, "s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...        "s1.width": 8, "s1.depth": 1}
        >>> rebuild(row, in_channels=1, num_classes=10, weights=None)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    model = build_model(ArchSpec.from_row(row), in_channels=in_channels, num_classes=num_classes)
    if weights is not None:
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise WeightsMismatchError(
                f"do not fit trial {row['trial']}'s architecture: {str(exc).splitlines()[0]}"
            ) from None
    return model.eval()


def export_candidate(
    row: Mapping[str, Any],
    *,
    out: Path,
    fmt: ExportFormat,
    job_id: int,
    dataset: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    weights: StateDict | None,
) -> list[Path]:
    """Write the candidate of ``row`` (a :func:`search.query.load_candidates` row) to ``out``.

    Args:
        row: The candidate: ``trial``, ``val_acc`` and its ``sN.*`` stage columns.
        out: The file to write (``state`` also writes :func:`sidecar_path` and
            :func:`readme_path`).
        fmt: ``torchscript``, ``onnx`` or ``state``.
        job_id: The candidate's job, recorded with ``state``.
        dataset: The job's dataset name, recorded with ``state``.
        input_shape: ``(C, H, W)`` of one input image.
        num_classes: The classifier's size.
        mean: The training split's per-channel mean; ``None``: the model takes normalised
            inputs.
        std: The training split's per-channel standard deviation, as ``mean``.
        weights: The kept state dict; ``None`` exports random initial weights.

    Returns:
        The files written.

    Raises:
        WeightsMismatchError: ``weights`` do not fit the architecture.
        ValueError: an unknown ``fmt``.

    Example:
        >>> import tempfile
        >>> row = {"trial": 0, "val_acc": 0.9, "s1.downsample": "max", "s1.kernel": 3,
        ...        "s1.skip": "none", "s1.width": 8, "s1.depth": 1}
        >>> out = Path(tempfile.mkdtemp()) / "net.pt"
        >>> written = export_candidate(row, out=out, fmt="state", job_id=1, dataset="digits",
        ...     input_shape=(1, 8, 8), num_classes=10, mean=[7.0], std=[5.0], weights=None)
        >>> [path.name for path in written]
        ['net.pt', 'net.json', 'net.README.md']
    """
    model = rebuild(row, in_channels=input_shape[0], num_classes=num_classes, weights=weights)
    mean_, std_ = (None, None) if mean is None or std is None else (list(mean), list(std))
    if fmt == "state":
        meta = {
            "job": job_id,
            "trial": row["trial"],
            "arch": ArchSpec.from_row(row).to_dict(),
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "trained": weights is not None,
            "val_acc": row.get("val_acc"),
            "dataset": dataset,
            "mean": mean_,
            "std": std_,
        }
        sidecar, readme = sidecar_path(out), readme_path(out)
        torch.save({**meta, "state_dict": model.state_dict()}, out)
        sidecar.write_text(json.dumps(meta, indent=2) + "\n")
        readme.write_text(state_readme(out, meta))
        return [out, sidecar, readme]
    exported: torch.nn.Module = model
    if mean_ is not None and std_ is not None:
        exported = Normalized(model, mean_, std_).eval()
    example = torch.zeros(2, *input_shape)
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
        raise ValueError(f"unknown export format {fmt!r} (expected torchscript, onnx or state)")
    return [out]
