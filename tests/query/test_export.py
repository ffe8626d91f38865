"""`poolstride export`: TorchScript that loads with plain torch, a state dict that reproduces
the stored validation accuracy, and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _cli import run

from search.artifacts import ARTIFACTS_ENV_VAR, weights_path
from search.config import JobConfig
from search.cost import arch_cost
from search.space import ArchSpec
from search.store import Store, upgrade
from workers.data import load_dataset
from workers.model import build_model
from workers.train import TrainConfig, TrainResult, evaluate, train

ARCH = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "strided", "kernel": 3, "skip": "pool", "width": 8},
            {"downsample": "max", "kernel": 5, "skip": "proj", "width": 16},
        ]
    }
)


@dataclass
class TrainedJob:
    url: str
    job_id: int
    config: JobConfig
    val_acc: float


CONFIG = JobConfig.from_mapping(
    {
        "dataset": "digits",
        "trials": 2,
        "epochs": 2,
        "seed": 3,
        "space": {"stages": 2, "widths": [8, 16]},
    }
)


@pytest.fixture(scope="module")
def training() -> TrainResult:
    """ARCH trained for real (2 epochs on digits, the job's split seed), weights kept."""
    dataset = load_dataset(CONFIG.dataset, seed=CONFIG.seed)
    result = train(
        ARCH, dataset, TrainConfig(epochs=2, device="cpu", seed=5, augment=False), keep_weights=True
    )
    assert result.weights is not None
    return result


@pytest.fixture
def trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, training: TrainResult
) -> Iterator[TrainedJob]:
    """A job whose trial 0 is the trained candidate, its weights filed where the runner files
    them; trial 1 has no weights."""
    monkeypatch.delenv(ARTIFACTS_ENV_VAR, raising=False)
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    upgrade(url)
    config, result = CONFIG, training
    with Store.open(url) as store:
        job = store.submit(config)
        for trial in (0, 1):
            cid = store.start_candidate(
                job_id=job.id,
                trial_number=trial,
                optuna_trial_id=None,
                arch=ARCH,
                cost=arch_cost(ARCH, input_shape=(1, 8, 8)),
                seed=5,
                attempt=1,
                worker_id="w",
                epochs_total=2,
            )
            store.finish_candidate(
                candidate_id=cid, state="complete", val_acc=result.val_acc, test_acc=result.test_acc
            )
    path = weights_path(url, job.id, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(result.weights or b"")
    yield TrainedJob(url, job.id, config, result.val_acc)


def _val_acc(model: torch.nn.Module, config: JobConfig, *, raw: bool = False) -> float:
    ds = load_dataset(config.dataset, seed=config.seed)
    x = ds.x_val.float() if raw else ds.normalize(ds.x_val)
    return evaluate(model, x, ds.y_val, batch_size=1024)


def test_torchscript_loads_with_plain_torch_in_a_fresh_process(
    trained: TrainedJob, tmp_path: Path
) -> None:
    out = tmp_path / "model.ts"
    res = run(
        "export",
        str(trained.job_id),
        "--trial",
        "0",
        "--out",
        str(out),
        "--format",
        "torchscript",
        "--db",
        trained.url,
    )
    assert res.code == 0, res.stderr
    assert "warning" not in res.stderr
    # -I: no user site, no current folder; poolstride's packages are made unimportable
    script = (
        "import sys\n"
        "sys.modules['search'] = sys.modules['workers'] = None\n"
        "import torch\n"
        f"m = torch.jit.load({str(out)!r})\n"
        "print(tuple(m(torch.zeros(5, 1, 8, 8)).shape))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(5, 10)"
    # and it is the trained network, normalising raw pixels itself: it reproduces the stored
    # validation accuracy
    assert _val_acc(torch.jit.load(str(out)), trained.config, raw=True) == pytest.approx(
        trained.val_acc, abs=1e-6
    )


def test_state_export_reproduces_the_stored_validation_accuracy(
    trained: TrainedJob, tmp_path: Path
) -> None:
    out = tmp_path / "trial0.pt"
    res = run(
        "export",
        str(trained.job_id),
        "--trial",
        "0",
        "--out",
        str(out),
        "--format",
        "state",
        "--db",
        trained.url,
    )
    assert res.code == 0, res.stderr
    saved = torch.load(out, map_location="cpu", weights_only=True)  # plain torch reads it
    assert saved["arch"] == ARCH.to_dict()
    assert (saved["input_shape"], saved["num_classes"], saved["trained"]) == ([1, 8, 8], 10, True)
    assert json.loads(out.with_suffix(".json").read_text())["arch"] == ARCH.to_dict()
    ds = load_dataset(trained.config.dataset, seed=trained.config.seed)
    assert (saved["mean"], saved["std"]) == (list(ds.mean), list(ds.std))
    model = build_model(
        ArchSpec.from_dict(saved["arch"]), in_channels=1, num_classes=saved["num_classes"]
    )
    model.load_state_dict(saved["state_dict"])
    assert _val_acc(model, trained.config) == pytest.approx(trained.val_acc, abs=1e-9)


def test_export_without_kept_weights_needs_untrained_and_then_warns(
    trained: TrainedJob, tmp_path: Path
) -> None:
    out = tmp_path / "untrained.pt"
    args = (
        "export",
        str(trained.job_id),
        "--trial",
        "1",
        "--out",
        str(out),
        "--format",
        "state",
        "--db",
        trained.url,
    )
    refused = run(*args)
    assert refused.code == 2 and refused.stdout == "" and not out.exists()
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "kept no trained weights for trial 1" in refused.stderr
    res = run(*args, "--untrained")
    assert res.code == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "kept no trained weights for trial 1" in warning[0]
    assert torch.load(out, weights_only=True)["trained"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (("--trial", "7", "--out", "{tmp}/a.pt"), "has no trial 7"),
        (("--trial", "0", "--out", "{tmp}/missing/a.pt"), "does not exist"),
        (("--trial", "0", "--out", "{tmp}/a.json", "--format", "state"), "another suffix"),
        (("--trial", "0", "--out", "{tmp}/a.onnx", "--format", "onnx"), "pip install onnx"),
    ],
)
def test_export_refusals_write_nothing(
    trained: TrainedJob,
    tmp_path: Path,
    row_counts: Callable[[str], dict[str, int]],
    args: tuple[str, ...],
    message: str,
) -> None:
    if "onnx" in args and all(_importable(m) for m in ("onnx", "onnxscript")):
        pytest.skip("onnx is installed here")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = row_counts(trained.url)
    res = run(
        "export", str(trained.job_id), *(a.format(tmp=out_dir) for a in args), "--db", trained.url
    )
    assert res.code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr
    assert list(out_dir.iterdir()) == []
    assert row_counts(trained.url) == before


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
