"""workers.data: every dataset's shape, classes and split; the decode cache; fetch_cifar10."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import workers.data as data
from search.datasets import DATASETS, DatasetInfo
from workers.data import CIFAR10_CLASSES, Dataset, fetch_cifar10, load_dataset


def _split_sizes(ds: Dataset) -> tuple[int, int, int]:
    return len(ds.y_train), len(ds.y_val), len(ds.y_test)


def _assert_consistent(ds: Dataset, shape: tuple[int, int, int], classes: int) -> None:
    assert ds.input_shape == shape
    assert ds.num_classes == classes == len(ds.classes)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert tuple(x.shape[1:]) == shape and len(x) == len(y) > 0
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < classes
    assert len(ds.mean) == len(ds.std) == shape[0]


@pytest.mark.parametrize(
    ("name", "shape", "total"),
    [
        ("mnist5k", (1, 28, 28), 5000),
        ("digits", (1, 8, 8), 1797),
        ("synthetic", (3, 32, 32), 2000),
    ],
)
def test_builtin_datasets_have_their_shape_and_a_stratified_split(
    name: str, shape: tuple[int, int, int], total: int
) -> None:
    ds = load_dataset(name, seed=3)
    _assert_consistent(ds, shape, 10)
    n_train, n_val, n_test = _split_sizes(ds)
    assert n_train + n_val + n_test == total
    assert abs(n_val - 0.1 * total) <= 10 and abs(n_test - 0.2 * total) <= 10
    # stratified: every class appears in validation in proportion
    counts = torch.bincount(ds.y_val, minlength=10).float()
    expected = torch.bincount(torch.cat([ds.y_train, ds.y_val, ds.y_test]), minlength=10) * 0.1
    assert torch.all((counts - expected).abs() <= 1)
    # normalised train data has zero mean and unit spread per channel
    xn = ds.normalize(ds.x_train)
    assert xn.dtype == torch.float32
    assert torch.allclose(xn.mean(dim=(0, 2, 3)), torch.zeros(shape[0]), atol=1e-3)
    assert torch.allclose(xn.std(dim=(0, 2, 3)), torch.ones(shape[0]), atol=1e-2)


def test_split_is_deterministic_per_seed_and_survives_pickling() -> None:
    a, b, c = (load_dataset("digits", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.y_train, c.y_train)
    copy = pickle.loads(pickle.dumps(a))
    assert torch.equal(copy.x_test, a.x_test) and copy.mean == a.mean
    assert copy.input_shape == a.input_shape and copy.classes == a.classes


def _id_npz(path: Path, n: int, *, with_test: bool) -> None:
    """Images whose every pixel is their index, so splits can be checked for overlap."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 2, 4, 4))
    fields: dict[str, np.ndarray] = {"x_train": x.copy(), "y_train": np.arange(n) % 3}
    if with_test:
        fields.update(x_test=np.full((9, 2, 4, 4), -1, np.float32), y_test=np.arange(9) % 3)
    np.savez(path, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("with_test", [False, True])
def test_splits_do_not_overlap_and_cover_everything(tmp_path: Path, with_test: bool) -> None:
    _id_npz(tmp_path / "ids.npz", 300, with_test=with_test)
    ds = load_dataset("npz", data_dir=tmp_path / "ids.npz", cache_dir=tmp_path / "cache")
    _assert_consistent(ds, (2, 4, 4), 3)
    ids = {
        name: set(getattr(ds, f"x_{name}")[:, 0, 0, 0].tolist())
        for name in ("train", "val", "test")
    }
    if with_test:
        assert ids["test"] == {-1.0} and _split_sizes(ds) == (270, 30, 9)
        assert ids["train"] | ids["val"] == set(map(float, range(300)))
    else:
        assert _split_sizes(ds) == (210, 30, 60)
        assert ids["train"] | ids["val"] | ids["test"] == set(map(float, range(300)))
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]


@pytest.mark.parametrize(
    ("layout", "shape"),
    [
        ((20, 6, 5, 3), (3, 6, 5)),  # NHWC
        ((20, 3, 6, 5), (3, 6, 5)),  # NCHW
        ((20, 6, 5), (1, 6, 5)),  # NHW
    ],
)
def test_npz_layouts(tmp_path: Path, layout: tuple[int, ...], shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 255, layout, dtype=np.uint8),
        y_train=np.arange(20) % 2,
    )
    ds = load_dataset(
        "npz", data_dir=tmp_path / "d.npz", cache_dir=tmp_path, val_fraction=0.2, test_fraction=0.2
    )
    _assert_consistent(ds, shape, 2)
    assert ds.x_train.dtype == torch.uint8


def test_npz_nhwc_keeps_pixels_in_place(tmp_path: Path) -> None:
    x = np.zeros((10, 4, 4, 3), np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 10, 20, 30
    np.savez(
        tmp_path / "d.npz",
        x_train=x,
        y_train=np.arange(10) % 2,
        x_test=x[:4],
        y_test=np.arange(4) % 2,
    )
    ds = load_dataset("npz", data_dir=tmp_path / "d.npz", cache_dir=tmp_path)
    assert ds.x_test[:, 0].unique().tolist() == [10] and ds.x_test[:, 2].unique().tolist() == [30]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"x_train": np.zeros((4, 2, 2))}, "lacks x_train and y_train"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(3, int)}, "one label per image"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(4)}, "integer class labels"),
        ({"x_train": np.zeros(4), "y_train": np.zeros(4, int)}, "expected NHW, NCHW or NHWC"),
    ],
)
def test_bad_npz_is_one_clear_value_error(
    tmp_path: Path, fields: dict[str, np.ndarray], message: str
) -> None:
    np.savez(tmp_path / "bad.npz", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", data_dir=tmp_path / "bad.npz", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"name": "digits", "input_shape": (3, 8, 8)}, "is 1x8x8, not 3x8x8"),
        ({"name": "digits", "val_fraction": 0.0}, "val_fraction"),
        ({"name": "npz"}, "needs data_dir"),
        ({"name": "npz", "data_dir": "/nonexistent/x.npz"}, "does not exist"),
        ({"name": "cifar10", "data_dir": "/nonexistent"}, "poolstride data fetch cifar10"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cifar10


def _cifar_batch(n: int, offset: int) -> dict[bytes, object]:
    """``n`` images whose R, G and B planes are 10, 20, 30 (+ offset), labels cycling 0..9."""
    planes = np.concatenate([np.full((n, 1024), v + offset, np.uint8) for v in (10, 20, 30)], 1)
    return {b"data": planes, b"labels": [i % 10 for i in range(n)]}


def _write_cifar(folder: Path, n: int = 20) -> Path:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for i in range(1, 6):
        (batches / f"data_batch_{i}").write_bytes(pickle.dumps(_cifar_batch(n, i)))
    (batches / "test_batch").write_bytes(pickle.dumps(_cifar_batch(n, 100)))
    return batches


def test_cifar10_from_pickled_batches(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "data")
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    _assert_consistent(ds, (3, 32, 32), 10)
    assert ds.classes == CIFAR10_CLASSES
    assert _split_sizes(ds) == (90, 10, 20)  # the official test batch is the test split
    assert ds.x_test[:, 0].unique().tolist() == [110]  # R plane of the test batch
    assert ds.x_test[:, 2].unique().tolist() == [130]
    assert set(ds.x_train[:, 1].unique().tolist()) == {21, 22, 23, 24, 25}


# --------------------------------------------------------------------------- imagefolder

_COLOURS = {"dog": (250, 10, 10), "ant": (10, 250, 10), "cat": (10, 10, 250)}


def _write_images(folder: Path, per_class: int, size: tuple[int, int] = (12, 10)) -> None:
    for name, colour in _COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(folder / name / f"{i}.png")


def _assert_labels_match_colours(ds: Dataset) -> None:
    assert ds.classes == ("ant", "cat", "dog")  # sorted folder names
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for img, label in zip(x, y, strict=True):
            expected = _COLOURS[ds.classes[int(label)]]
            assert tuple(img[:, 0, 0].tolist()) == expected


def test_imagefolder_without_splits_resizes_and_labels_by_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", per_class=10)
    ds = load_dataset(
        "imagefolder",
        data_dir=tmp_path / "imgs",
        input_shape=(3, 8, 8),
        cache_dir=tmp_path / "cache",
    )
    _assert_consistent(ds, (3, 8, 8), 3)
    assert _split_sizes(ds) == (21, 3, 6)
    _assert_labels_match_colours(ds)


def test_imagefolder_train_test_as_folder_and_as_archive(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _write_images(root / "train", per_class=10)
    _write_images(root / "test", per_class=2)
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="wrapped")  # a wrapping folder is not a class
    from_dir = load_dataset(
        "imagefolder", data_dir=root, input_shape=(1, 10, 12), cache_dir=tmp_path / "cache"
    )
    from_tar = load_dataset(
        "imagefolder", data_dir=archive, input_shape=(1, 10, 12), cache_dir=tmp_path / "cache"
    )
    for ds in (from_dir, from_tar):
        _assert_consistent(ds, (1, 10, 12), 3)
        assert _split_sizes(ds) == (27, 3, 6)
        assert ds.classes == ("ant", "cat", "dog")
    assert torch.equal(from_dir.x_train, from_tar.x_train)
    assert torch.equal(from_dir.y_test, from_tar.y_test)


def test_imagefolder_needs_two_classes(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="at least two class folders"):
        load_dataset("imagefolder", data_dir=tmp_path, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- cache


def _forbid(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def fail(*args: object) -> None:
        raise AssertionError(f"{name} ran although the cache holds the arrays")

    monkeypatch.setattr(data, name, fail)


def test_cache_avoids_a_second_decode_until_the_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_images(tmp_path / "imgs", per_class=4)
    _write_cifar(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_dataset("imagefolder", data_dir=tmp_path / "imgs", cache_dir=cache)
    first_cifar = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2

    with monkeypatch.context() as m:
        _forbid(m, "_decode_images")
        _forbid(m, "_read_cifar10")
        again = load_dataset("imagefolder", data_dir=tmp_path / "imgs", cache_dir=cache)
        again_cifar = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=cache)
    assert torch.equal(first.x_train, again.x_train) and first.classes == again.classes
    assert torch.equal(first_cifar.x_test, again_cifar.x_test)

    # another shape, or a changed file, is decoded again
    calls: list[int] = []
    decode = data._decode_images

    def counted(*args: Any) -> np.ndarray:
        calls.append(1)
        return decode(*args)

    monkeypatch.setattr(data, "_decode_images", counted)
    load_dataset("imagefolder", data_dir=tmp_path / "imgs", input_shape=(1, 8, 8), cache_dir=cache)
    assert calls == [1]
    Image.new("RGB", (9, 9), (1, 2, 3)).save(tmp_path / "imgs" / "ant" / "0.png")
    changed = load_dataset("imagefolder", data_dir=tmp_path / "imgs", cache_dir=cache)
    assert calls == [1, 1]
    everything = torch.cat([changed.x_train, changed.x_val, changed.x_test])
    assert (everything[:, :, 0, 0] == torch.tensor([1, 2, 3], dtype=torch.uint8)).all(1).any()


# --------------------------------------------------------------------------- fetch_cifar10


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder and the loopback URL it is served at."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tiny_archive(path: Path, tmp: Path) -> str:
    batches = _write_cifar(tmp / "src", n=10)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_downloads_verifies_and_unpacks(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    md5 = _tiny_archive(www / "cifar.tar.gz", tmp_path)
    size = (www / "cifar.tar.gz").stat().st_size
    calls: list[tuple[int, int]] = []
    target = fetch_cifar10(
        tmp_path / "data",
        url=f"{base}/cifar.tar.gz",
        checksum=md5,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert target == tmp_path / "data" / "cifar-10-batches-py"
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert sorted(os.listdir(tmp_path / "data")) == ["cifar-10-batches-py"]  # no temp files
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert _split_sizes(ds) == (45, 5, 10)
    # already present: nothing is downloaded (this URL would fail)
    calls.clear()
    again = fetch_cifar10(
        tmp_path / "data",
        url=f"{base}/missing",
        checksum=md5,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert again == target and calls == []


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    _tiny_archive(www / "cifar.tar.gz", tmp_path)
    with pytest.raises(ValueError, match="expected " + "0" * 32):
        fetch_cifar10(tmp_path / "data", url=f"{base}/cifar.tar.gz", checksum="0" * 32)
    assert os.listdir(tmp_path / "data") == []


def test_fetch_rejects_path_traversal(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    with tarfile.open(www / "evil.tar.gz", "w:gz") as tar:
        payload = b"owned"
        info = tarfile.TarInfo("cifar-10-batches-py/../../evil.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    sha = hashlib.sha256((www / "evil.tar.gz").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="outside the target folder"):
        fetch_cifar10(tmp_path / "data", url=f"{base}/evil.tar.gz", checksum=sha)
    assert os.listdir(tmp_path / "data") == []
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_http_error_is_an_os_error(tmp_path: Path, served: tuple[Path, str]) -> None:
    _, base = served
    with pytest.raises(OSError, match=r"download of \S+ failed"):
        fetch_cifar10(tmp_path / "data", url=f"{base}/nothing.tar.gz", checksum="0" * 64)
    assert os.listdir(tmp_path / "data") == []


def test_data_fetch_command(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    md5 = _tiny_archive(www / "cifar.tar.gz", tmp_path)
    command = [
        sys.executable,
        "-m",
        "search.cli",
        "data",
        "fetch",
        "cifar10",
        "--data-dir",
        str(tmp_path / "data"),
        "--url",
        f"{base}/cifar.tar.gz",
    ]
    bad = subprocess.run(
        [*command, "--checksum", "0" * 32], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1] == (
        f"poolstride: error: download from {base}/cifar.tar.gz has md5 {md5}, expected "
        f"{'0' * 32}; the file was discarded"
    )
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()

    ok = subprocess.run([*command, "--checksum", md5], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    assert "100%" in ok.stderr  # the progress bar ran to its end


def test_the_loaders_read_the_job_registry() -> None:
    for name in ("mnist5k", "digits"):
        assert load_dataset(name).input_shape == DATASETS[name].input_shape
    assert load_dataset("synthetic", size=100).input_shape == DATASETS["synthetic"].default_input
    with pytest.raises(ValueError, match="unknown dataset 'mnist' \\(expected one of mnist5k, "):
        load_dataset("mnist")


# what each dataset that needs files says when it has none: its own words, not the catch-all
NEEDS_DATA = {
    "cifar10": "CIFAR-10 batches not found in",
    "imagefolder": r"dataset 'imagefolder' needs data_dir \(the image folder or archive\)",
    "npz": r"dataset 'npz' needs data_dir \(the \.npz file\)",
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_dataset_has_a_loader(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = DATASETS[name]
    if not info.needs_data:
        ds = load_dataset(name, size=100 if name == "synthetic" else None, cache_dir=tmp_path)
        assert ds.input_shape == (info.input_shape or info.default_input)
        return
    # cifar10 looks in the default folder when given none: make that an empty one
    monkeypatch.setattr(data, "default_data_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=NEEDS_DATA[name]):
        load_dataset(name, cache_dir=tmp_path)


def test_a_registered_dataset_without_a_loader_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "extra", DatasetInfo("extra", (1, 2, 2), 2, needs_data=False))
    with pytest.raises(ValueError, match=r"^no loader for dataset 'extra'$"):
        load_dataset("extra")
