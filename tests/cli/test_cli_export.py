"""`poolstride export` and :mod:`workers.export`: TorchScript that loads with plain torch, a state
dict that reproduces the stored validation accuracy, the input statistics it is given, and the
refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _cli import refusal, run

from search.artifacts import ARTIFACTS_ENV_VAR, weights_path
from search.config import JobConfig
from search.cost import arch_cost
from search.datasets import DatasetFacts
from search.space import ArchSpec
from search.store import Store, upgrade
from workers.data import load_dataset
from workers.export import (
    ClassCountError,
    StatisticsUnavailableError,
    WeightsMismatchError,
    class_count,
    export_candidate,
    input_statistics,
    load_weights,
    missing_onnx_packages,
    readme_path,
    rebuild,
)
from workers.model import Normalized, build_model
from workers.train import TrainConfig, TrainResult, evaluate, train

ARCH = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "strided", "kernel": 3, "skip": "pool", "width": 8},
            {"downsample": "max", "kernel": 5, "skip": "proj", "width": 16},
        ]
    }
)
# ARCH's candidate row as search.query.load_candidates gives it
ROW = {
    "trial": 0,
    "val_acc": 0.5,
    **{
        f"s{i}.{key}": value
        for i, stage in enumerate(ARCH.to_dict()["stages"], 1)
        for key, value in stage.items()
    },
}


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
        # what the worker records when it loads the data; export reads it from here
        store.record_dataset(job.id, load_dataset(config.dataset, seed=config.seed).facts())
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


def _export(job: TrainedJob, trial: int, out: Path, *args: str) -> tuple[str, ...]:
    return ("export", str(job.job_id), "--trial", str(trial), "--out", str(out), *args)


def _state_files(out: Path) -> str:
    """How the export's last line names the files of a ``state`` export to ``out``."""
    return f"{out}, {out.with_suffix('.json')} and {readme_path(out)}"


def _run_readme(out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the example of the README beside the state file ``out`` as a user would: in its
    folder, with nothing imported for it; its variables after."""
    text = readme_path(out).read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(out.parent)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, str(readme_path(out)), "exec"), namespace)
    return namespace


def test_torchscript_loads_with_plain_torch_in_a_fresh_process(
    trained: TrainedJob, tmp_path: Path
) -> None:
    out = tmp_path / "model.ts"
    res = run(*_export(trained, 0, out, "--format", "torchscript", "--db", trained.url))
    assert (res.code, res.stdout) == (0, "")
    assert res.stderr == f"trial 0 of job {trained.job_id} (trained) written to {out}\n"
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
    res = run(*_export(trained, 0, out, "--format", "state", "--db", trained.url))
    assert res.code == 0, res.stderr
    sidecar = tmp_path / "trial0.json"
    assert (
        res.stderr == f"trial 0 of job {trained.job_id} (trained) written to {_state_files(out)}\n"
    )
    saved = torch.load(out, map_location="cpu", weights_only=True)  # plain torch reads it
    ds = load_dataset(trained.config.dataset, seed=trained.config.seed)
    meta = {
        "job": trained.job_id,
        "trial": 0,
        "arch": ARCH.to_dict(),
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "trained": True,
        "val_acc": trained.val_acc,
        "dataset": "digits",
        "mean": list(ds.mean),
        "std": list(ds.std),
    }
    assert {k: v for k, v in saved.items() if k != "state_dict"} == meta
    assert json.loads(sidecar.read_text()) == meta
    model = build_model(
        ArchSpec.from_dict(saved["arch"]), in_channels=1, num_classes=saved["num_classes"]
    )
    model.load_state_dict(saved["state_dict"])
    assert _val_acc(model, trained.config) == pytest.approx(trained.val_acc, abs=1e-9)


def test_the_state_readme_example_rebuilds_the_trained_network_and_classifies(
    trained: TrainedJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "trial0.pt"
    res = run(*_export(trained, 0, out, "--format", "state", "--db", trained.url))
    assert res.code == 0, res.stderr
    readme = readme_path(out).read_text()
    assert readme.startswith(f"# Trial 0 of job {trained.job_id} (digits)\n")
    assert "The weights are the trained ones." in readme
    example = _run_readme(out, monkeypatch)
    # the network it rebuilds is the trained one: it reproduces the stored validation accuracy
    assert _val_acc(example["model"], trained.config) == pytest.approx(trained.val_acc, abs=1e-9)
    # and it classifies its raw input as the trained network behind the training split's
    # normalisation does
    ds = load_dataset(trained.config.dataset, seed=trained.config.seed)
    weights = load_weights(weights_path(trained.url, trained.job_id, 0))
    bare = rebuild(ROW, in_channels=1, num_classes=10, weights=weights)
    with torch.no_grad():
        expected = Normalized(bare, ds.mean, ds.std)(torch.zeros(1, 1, 8, 8))
    assert torch.allclose(example["logits"], expected, atol=1e-6)
    assert capsys.readouterr().out == f"logits (1, 10) class {expected.argmax().item()}\n"


def _npz_config(path: Path) -> JobConfig:
    """A job on an ``.npz`` file: a dataset of any class count, here one that is not there."""
    return JobConfig.from_mapping(
        {
            "dataset": "npz",
            "data_dir": str(path),
            "trials": 1,
            "epochs": 1,
            "space": {"input": "1x8x8", "stages": 2, "widths": [8, 16]},
        }
    )


def _job_of_one_candidate(url: str, config: JobConfig, facts: DatasetFacts | None) -> int:
    """A new job (facts recorded or not) whose trial 0 is ARCH; its id."""
    with Store.open(url) as store:
        job = store.submit(config)
        if facts is not None:
            store.record_dataset(job.id, facts)
        store.start_candidate(
            job_id=job.id,
            trial_number=0,
            optuna_trial_id=None,
            arch=ARCH,
            cost=arch_cost(ARCH, input_shape=(1, 8, 8)),
            seed=5,
            attempt=1,
            worker_id="w",
            epochs_total=2,
        )
    return job.id


def _untrained_meta(url: str, tmp_path: Path, facts: DatasetFacts | None) -> dict[str, Any]:
    """Export trial 0 of a new job (facts recorded or not) untrained; its state file's meta."""
    job_id = _job_of_one_candidate(url, CONFIG, facts)
    out = tmp_path / f"job{job_id}.pt"
    res = run(
        "export",
        str(job_id),
        "--trial",
        "0",
        "--out",
        str(out),
        "--format",
        "state",
        "--untrained",
        "--db",
        url,
    )
    assert res.code == 0, res.stderr
    meta: dict[str, Any] = torch.load(out, weights_only=True)
    return meta


def test_export_reads_the_facts_the_job_recorded(trained: TrainedJob, tmp_path: Path) -> None:
    # facts unlike the data's: export must take them from the job, not load the data again
    facts = DatasetFacts(7, (1, 8, 8), (1.5,), (2.5,))
    meta = _untrained_meta(trained.url, tmp_path, facts)
    assert (meta["num_classes"], meta["mean"], meta["std"]) == (7, [1.5], [2.5])
    assert meta["state_dict"]["head.weight"].shape[0] == 7


def test_a_job_without_recorded_facts_reads_them_from_its_data(
    trained: TrainedJob, tmp_path: Path
) -> None:
    # a job no worker has loaded, or one from before the facts were stored (schema 0001)
    meta = _untrained_meta(trained.url, tmp_path, None)
    ds = load_dataset(CONFIG.dataset, seed=CONFIG.seed)
    assert (meta["num_classes"], meta["mean"], meta["std"]) == (10, list(ds.mean), list(ds.std))


def test_without_facts_the_class_count_comes_from_the_registry_else_the_kept_head(
    tmp_path: Path,
) -> None:
    npz = _npz_config(tmp_path / "gone.npz")
    assert class_count(CONFIG, None, None) == 10
    assert class_count(npz, DatasetFacts(3, (1, 8, 8), (0.0,), (1.0,)), None) == 3
    assert class_count(npz, None, {"head.weight": torch.zeros(7, 16)}) == 7
    with pytest.raises(ClassCountError) as refused:
        class_count(npz, None, None)
    assert str(refused.value) == (
        "dataset npz has no fixed class count and no weights were kept; cannot size the classifier"
    )


def test_without_facts_the_statistics_come_from_the_data_if_it_loads(tmp_path: Path) -> None:
    ds = load_dataset(CONFIG.dataset, seed=CONFIG.seed)
    assert input_statistics(CONFIG, None) == (ds.mean, ds.std)
    facts = DatasetFacts(3, (1, 8, 8), (1.5,), (2.5,))
    assert input_statistics(_npz_config(tmp_path / "gone.npz"), facts) == ((1.5,), (2.5,))
    with pytest.raises(StatisticsUnavailableError) as refused:
        input_statistics(_npz_config(tmp_path / "gone.npz"), None)
    assert str(refused.value) == (
        f"cannot load npz for its input statistics (npz data {str(tmp_path / 'gone.npz')!r} "
        "does not exist); the exported model expects normalised inputs"
    )


def test_a_job_whose_data_is_gone_exports_from_its_kept_weights_or_refuses(
    trained: TrainedJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _job_of_one_candidate(trained.url, _npz_config(tmp_path / "gone.npz"), None)
    out = tmp_path / "a.pt"
    args = ("export", str(job_id), "--trial", "0", "--out", str(out), "--format", "state")
    assert refusal(run(*args, "--untrained", "--db", trained.url)) == (
        "dataset npz has no fixed class count and no weights were kept; cannot size the classifier"
    )
    assert not out.exists()
    kept = weights_path(trained.url, job_id, 0)
    kept.parent.mkdir(parents=True)
    torch.save(build_model(ARCH, in_channels=1, num_classes=7).state_dict(), kept)
    res = run(*args, "--db", trained.url)
    assert res.code == 0, res.stderr
    assert res.stderr.splitlines() == [
        f"poolstride: warning: cannot load npz for its input statistics (npz data "
        f"{str(tmp_path / 'gone.npz')!r} does not exist); the exported model expects "
        "normalised inputs",
        f"trial 0 of job {job_id} (trained) written to {_state_files(out)}",
    ]
    meta = torch.load(out, weights_only=True)
    assert (meta["num_classes"], meta["mean"], meta["std"]) == (7, None, None)
    # without statistics the README's example feeds the network its input as it is
    example = _run_readme(out, monkeypatch)
    with torch.no_grad():
        expected = rebuild(ROW, in_channels=1, num_classes=7, weights=load_weights(kept))(
            torch.zeros(1, 1, 8, 8)
        )
    assert torch.equal(example["logits"], expected)
    assert capsys.readouterr().out == f"logits (1, 7) class {expected.argmax().item()}\n"


def test_export_without_kept_weights_needs_untrained_and_then_warns(
    trained: TrainedJob, tmp_path: Path
) -> None:
    out = tmp_path / "untrained.pt"
    args = _export(trained, 1, out, "--format", "state", "--db", trained.url)
    kept = weights_path(trained.url, trained.job_id, 1)
    assert refusal(run(*args)) == (
        f"job {trained.job_id} kept no trained weights for trial 1 (no {kept}; jobs keep the "
        "Pareto front's by default, see --keep-weights); --untrained exports the architecture "
        "with random weights"
    )
    assert not out.exists()
    res = run(*args, "--untrained")
    assert res.code == 0, res.stderr
    assert res.stderr.splitlines() == [
        f"poolstride: warning: job {trained.job_id} kept no trained weights for trial 1; "
        "exporting a randomly initialised model",
        f"trial 1 of job {trained.job_id} (untrained) written to {_state_files(out)}",
    ]
    assert torch.load(out, weights_only=True)["trained"] is False


def test_weights_of_another_architecture_exit_1(trained: TrainedJob, tmp_path: Path) -> None:
    other = ArchSpec.from_dict({"stages": [{**s, "width": 4} for s in ARCH.to_dict()["stages"]]})
    kept = weights_path(trained.url, trained.job_id, 1)
    torch.save(build_model(other, in_channels=1, num_classes=10).state_dict(), kept)
    out = tmp_path / "a.ts"
    assert refusal(run(*_export(trained, 1, out, "--db", trained.url)), code=1) == (
        f"weights {kept} do not fit trial 1's architecture: Error(s) in loading state_dict for Net:"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--trial", "7", "--out", "{tmp}/a.pt"), "job {job} has no trial 7"),
        (
            ("--trial", "0", "--out", "{tmp}/missing/a.pt"),
            "--out '{tmp}/missing/a.pt': folder '{tmp}/missing' does not exist",
        ),
        (
            ("--trial", "0", "--out", "{tmp}/a.json", "--format", "state"),
            "--out '{tmp}/a.json': the state file needs another suffix than .json (the "
            "architecture goes to the .json beside it)",
        ),
        (
            ("--trial", "0", "--out", "{tmp}/a.onnx", "--format", "onnx"),
            "--format onnx needs the onnx and onnxscript packages: pip install onnx onnxscript",
        ),
    ],
)
def test_export_refusals_write_nothing(
    trained: TrainedJob,
    tmp_path: Path,
    row_counts: Callable[[str], dict[str, int]],
    args: tuple[str, ...],
    message: str,
) -> None:
    if "onnx" in args and not missing_onnx_packages():
        pytest.skip("onnx is installed here")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = row_counts(trained.url)
    res = run(
        "export", str(trained.job_id), *(a.format(tmp=out_dir) for a in args), "--db", trained.url
    )
    assert refusal(res) == message.format(tmp=out_dir, job=trained.job_id)
    assert list(out_dir.iterdir()) == []
    assert row_counts(trained.url) == before


def test_export_takes_the_statistics_it_is_given(tmp_path: Path) -> None:
    # tuples, as a job's stored dataset facts hold them, are written as lists
    written = export_candidate(
        ROW,
        out=tmp_path / "net.pt",
        fmt="state",
        job_id=4,
        dataset="npz",
        input_shape=(3, 8, 8),
        num_classes=7,
        mean=(10.0, 20.0, 30.0),
        std=(2.0, 4.0, 8.0),
        weights=None,
    )
    assert written == [tmp_path / "net.pt", tmp_path / "net.json", tmp_path / "net.README.md"]
    saved = json.loads((tmp_path / "net.json").read_text())
    assert (saved["num_classes"], saved["mean"], saved["std"]) == (
        7,
        [10.0, 20.0, 30.0],
        [2.0, 4.0, 8.0],
    )
    assert (saved["job"], saved["dataset"], saved["trained"]) == (4, "npz", False)

    # TorchScript normalises with them: a raw input x gives the bare network's (x - mean) / std
    torch.manual_seed(0)
    weights = build_model(ARCH, in_channels=3, num_classes=7).state_dict()
    export_candidate(
        ROW,
        out=tmp_path / "net.ts",
        fmt="torchscript",
        job_id=4,
        dataset="npz",
        input_shape=(3, 8, 8),
        num_classes=7,
        mean=(10.0, 20.0, 30.0),
        std=(2.0, 4.0, 8.0),
        weights=weights,
    )
    x = torch.rand(2, 3, 8, 8) * 50
    bare = rebuild(ROW, in_channels=3, num_classes=7, weights=weights)
    mean, std = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2.0, 4.0, 8.0])
    with torch.no_grad():
        expected = bare((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
        assert torch.allclose(torch.jit.load(str(tmp_path / "net.ts"))(x), expected, atol=1e-5)


def test_rebuild_refuses_weights_that_do_not_fit() -> None:
    weights = build_model(ARCH, in_channels=1, num_classes=10).state_dict()
    with pytest.raises(WeightsMismatchError) as refused:
        rebuild(ROW, in_channels=1, num_classes=7, weights=weights)
    assert str(refused.value) == (
        "do not fit trial 0's architecture: Error(s) in loading state_dict for Net:"
    )
