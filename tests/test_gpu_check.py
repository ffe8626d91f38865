"""bench/gpu_check.py runs where GPU machines are bare: torch, numpy, pandas, scipy and Pillow only.

The GPU itself is not here; the figures are checked on a CPU smoke run of the same code.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"
BLOCKED = ("ray", "optuna", "sqlalchemy", "alembic", "streamlit", "plotly", "mlxtend", "sklearn")
# every module of the repository the script imports, itself included
MODULES = (
    "search",
    "search.space",
    "search.design",
    "search.verdicts",
    "search._frames",
    "search.cost",
    "search.memory",
    "search.training",
    "workers",
    "workers.train",
    "workers.model",
    "workers.data",
    "bench.trainer",
)

# a meta-path finder that refuses the packages a bare GPU machine lacks, as a missing one would
BLOCKER = f"""
import importlib.abc, importlib.util, json, sys
sys.path.insert(0, {str(ROOT)!r})
BLOCKED = {BLOCKED!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked)")
        return None

sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_the_blocker_refuses_what_it_names() -> None:
    # the check below could pass by not blocking anything: search.study needs Optuna
    out = _run("import search.study")
    assert out.returncode != 0
    assert "No module named 'optuna' (blocked)" in out.stderr


def test_the_script_and_its_analysis_import_and_run_without_the_blocked_packages() -> None:
    code = f"""
import importlib
for name in {MODULES!r}:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("gpu_check", {str(SCRIPT)!r})
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)
# the pure parts: the plan, the frame the analysis reads, the verdicts, the memory estimates
reference = gpu_check._arch((8, 16, 32))
plan = gpu_check.answer_plan(reference)
accs = [(0.8 + 0.05 * (p.arch.stages[1].downsample == "strided") + 0.001 * (i % 3), 0.8)
        for i, p in enumerate(plan)]
frame = gpu_check.answer_frame(plan, accs, input_shape=(3, 32, 32), num_classes=10)
answer = gpu_check.answer_verdicts(frame)
from search.memory import estimate_memory
est = [estimate_memory(a, input_shape=(3, 32, 32), num_classes=10, batch_size=64,
                       precision="bf16", dataset_bytes=0).allocated
       for a in gpu_check.memory_candidates((8, 16, 32))]
print(json.dumps({{
    "verdicts": dict(zip(answer.effects["stage"].astype(str) + answer.effects["to"],
                         answer.effects["verdict"])),
    "recommendations": len(answer.recommendations),
    "estimates": est,
    "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED)),
}}))
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["loaded"] == []
    # 3 stages x 3 other downsamples; the planted stage-2 effect is found, in its direction
    assert len(result["verdicts"]) == 9
    assert result["verdicts"]["2strided"] == "better"
    assert result["verdicts"]["1strided"] == "no detectable difference"
    assert result["recommendations"] == 3
    assert len(result["estimates"]) == 5 and all(e > 0 for e in result["estimates"])


def _tiny_cifar(path: Path) -> None:
    """A CIFAR-10-shaped image-folder tarball: 3 classes of 32x32 JPEGs, train/ and test/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split, count in (("train", 40), ("test", 8)):
            for label, name in enumerate(("airplane", "bird", "cat")):
                for i in range(count):
                    pixels = rng.integers(0, 80, (32, 32, 3)) + 80 * label
                    buffer = io.BytesIO()
                    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    tar.addfile(info, buffer)


@pytest.mark.slow
def test_a_cpu_smoke_run_prints_every_figure_and_the_verdicts(tmp_path: Path) -> None:
    data = tmp_path / "cifar10-tiny.tar.gz"
    _tiny_cifar(data)
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--smoke",
            "--device",
            "cpu",
            "--data",
            str(data),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    figures = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    expected = [
        "device",
        "data",
        "trainer_naive_images_per_s",
        "trainer_images_per_s",
        "trainer_speedup",
        *(f"memory_estimate_mib_{i}" for i in range(1, 6)),
        "memory_ratio",
        "packing_images_per_s_1",
        "packing_images_per_s_2",
        "packing_factor_2",
        "packing_factor",
        "answer_plan",
        "answer_reference_val_acc",
        *(f"verdict_s{s}_{to}" for s in (1, 2) for to in ("avg", "strided", "conv")),
        "recommendation_s1",
        "recommendation_s2",
        "answer_verdicts_resolved",
        *(f"{s}_s" for s in ("data", "trainer", "memory", "packing", "answer")),
        "total_s",
    ]
    assert [name for name in expected if name not in figures] == []
    assert figures["data"].endswith("96 train, 12 val, 24 test images")
    assert figures["memory_ratio"].startswith("skipped: torch.cuda.max_memory_allocated")
    assert "memory_measured_mib_1" not in figures
    for name in ("trainer_speedup", "packing_factor_2"):
        assert float(figures[name]) > 0
    # the analysis ran on 7 architectures x 3 seeds: each verdict has its interval
    assert "21 trainings" in figures["answer_plan"]
    assert figures["verdict_s2_strided"].startswith("stage 2: strided instead of max: ")
    assert "pt [" in figures["verdict_s2_strided"]
    assert figures["answer_verdicts_resolved"].endswith(" of 6")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the check would run")
def test_without_cuda_the_full_check_stops_with_one_clear_line() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", "synthetic"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode != 0
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "gpu_check: device 'cuda' was asked for, but CUDA is not available; this check is "
        "for a CUDA GPU (--device cpu or --smoke runs it on the CPU)"
    ]
