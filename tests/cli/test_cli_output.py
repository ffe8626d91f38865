"""Progress and tables: plain lines where stderr/stdout are not terminals (the CLI runner, logs,
CI), a rich bar with elapsed time and ETA and aligned tables on a terminal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from _cli import run
from rich.console import Console

from search.cli._common import Progress, print_table
from search.cost import arch_cost
from search.space import ArchSpec
from search.store import Store

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _terminal(clock: Clock | None = None) -> Console:
    """A 100-column terminal, without colours so that the text reads plainly."""
    return Console(
        force_terminal=True, width=100, file=StringIO(), color_system=None, get_time=clock
    )


def _screen(console: Console) -> str:
    """What a terminal shows at the end: the last frame of the bar, without control codes."""
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return ANSI.sub("", text.rsplit("\r", 1)[-1]).rstrip()


# -- plain lines -------------------------------------------------------------------------------


def _lines(total: int, updates: list[tuple[int, str]], **kw: float | str) -> list[str]:
    err = StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        with Progress("trials", total, **kw) as bar:  # type: ignore[arg-type]
            for done, note in updates:
                bar.update(done, note=note)
    return err.getvalue().splitlines()


def test_a_line_per_tenth_done_and_the_total_last() -> None:
    assert _lines(12, [(n, "") for n in range(1, 13)]) == [
        f"trials: {n}/12 ({n / 12:.0%})" for n in (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12)
    ]


def test_trials_that_end_together_still_report() -> None:
    # 1 -> 3 in one update (two trials ended together), then a failure at the same count
    assert _lines(4, [(1, ""), (3, ""), (3, "1 failed"), (4, "1 failed")]) == [
        "trials: 1/4 (25%)",
        "trials: 3/4 (75%)",
        "trials: 4/4 (100%), 1 failed",
    ]


def test_the_last_count_is_printed_even_in_a_tenth_already_shown() -> None:
    # the job stopped short of its total: 7 is in 6's tenth, and still the last line
    assert _lines(12, [(6, ""), (7, "")]) == ["trials: 6/12 (50%)", "trials: 7/12 (58%)"]


def test_no_update_prints_nothing() -> None:
    assert _lines(12, []) == []


def test_scaled_counts_and_an_unknown_total() -> None:
    err = StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        with Progress("cifar10", 0, scale=2**20, unit="MiB") as bar:
            for done in (0, 2**20, 2**21, 3 * 2**20):
                bar.update(done, total=0)
    # no total: one line at the start and the final count at the end
    assert err.getvalue().splitlines() == [
        "cifar10: 0.0/0.0 MiB (0%)",
        "cifar10: 3.0/0.0 MiB (0%)",
    ]


# -- the bar on a terminal ---------------------------------------------------------------------


def test_the_bar_shows_label_counts_percent_elapsed_eta_and_note() -> None:
    clock = Clock()
    console = _terminal(clock)
    with Progress("trials", 12, console=console) as bar:
        clock.now += 30
        bar.update(3)
        clock.now += 30
        bar.update(6, note="1 failed")
    screen = _screen(console)
    # 6 of 12 after 60 s, the last 3 in 30 s: 6 more take 60 s
    match = re.fullmatch(r"trials (━+) +6/12  50% 0:01:00 eta 0:01:00 1 failed", screen)
    assert match, screen
    assert len(match[1]) == 20  # half of rich's 40-column bar


def test_the_bar_of_a_download_starts_with_its_first_update() -> None:
    clock = Clock()
    console = _terminal(clock)
    with Progress("cifar10", 0, scale=2**20, unit="MiB", console=console):
        pass
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]  # nothing to fetch
    with Progress("cifar10", 0, scale=2**20, unit="MiB", console=console) as bar:
        bar.update(0, total=4 * 2**20)
        clock.now += 2
        bar.update(4 * 2**20, total=4 * 2**20)
    assert re.fullmatch(
        r"cifar10 ━{40} 4\.0/4\.0 MiB 100% 0:00:02 eta 0:00:00", _screen(console)
    ), _screen(console)


def test_without_a_total_the_bar_pulses_and_shows_no_eta() -> None:
    clock = Clock()
    console = _terminal(clock)
    with Progress("cifar10", 0, scale=2**20, unit="MiB", console=console) as bar:
        clock.now += 3
        bar.update(2**20, total=0)
    # no percentage either: two spaces between the counts and the elapsed time
    assert re.fullmatch(r"cifar10 [━╸╺ ]{40} 1\.0/0\.0 MiB  0:00:00", _screen(console)), _screen(
        console
    )


def test_a_table_on_a_terminal_is_aligned_with_numbers_on_the_right() -> None:
    console = _terminal()
    print_table(
        ["trial", "s1.downsample", "val_acc", "flops"],
        [["0", "max", "0.8", "1,234"], ["12", "strided", "0.82", "-"]],
        console=console,
    )
    assert ANSI.sub("", console.file.getvalue()).splitlines() == [  # type: ignore[attr-defined]
        "trial   s1.downsample   val_acc   flops",
        "───────────────────────────────────────",
        "    0   max                 0.8   1,234",
        "   12   strided            0.82       -",
    ]


def test_a_table_wider_than_the_terminal_keeps_every_character() -> None:
    console = Console(force_terminal=True, width=20, file=StringIO(), color_system=None)
    print_table(["name", "value"], [["a" * 15, "12345"]], console=console)
    assert ANSI.sub("", console.file.getvalue()).splitlines() == [  # type: ignore[attr-defined]
        "name              value",
        "───────────────────────",
        "aaaaaaaaaaaaaaa   12345",
    ]


def test_a_plain_table_is_left_aligned_columns_two_spaces_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_table(["trial", "val_acc"], [["0", "0.8"], ["12", ""]])
    assert capsys.readouterr().out.splitlines() == ["trial  val_acc", "0      0.8", "12"]


# -- through the command ------------------------------------------------------------------------

ARCH = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "max", "kernel": 3, "skip": "none", "width": 8},
            {"downsample": "strided", "kernel": 3, "skip": "none", "width": 16},
        ]
    }
)
# (complete, failed) as the worker reports them: trials 2 and 3 end together, then one fails
REPORTS = [(1, 0), (3, 0), (3, 1), (4, 1)]


class FakeWorker:
    """``workers.daemon.Worker`` without Ray: it records four candidates and reports them."""

    def __init__(
        self, url: str, *, lease_s: float, on_progress: Callable[[int, int, int, int], None]
    ) -> None:
        self.url, self.on_progress = url, on_progress

    def run(self, *, job_id: int, ray_address: str | None) -> None:
        with Store.open(self.url) as store:
            assert store.claim("fake", 60, job_id=job_id) is not None
            for trial in range(4):
                cid = store.start_candidate(
                    job_id=job_id,
                    trial_number=trial,
                    optuna_trial_id=None,
                    arch=ARCH,
                    cost=arch_cost(ARCH, input_shape=(1, 8, 8)),
                    seed=trial,
                    attempt=1,
                    worker_id="fake",
                    epochs_total=1,
                )
                store.finish_candidate(candidate_id=cid, state="complete", val_acc=0.5 + trial / 10)
            for completed, failed in REPORTS:
                self.on_progress(job_id, "search", completed, 4, failed)
            store.finish_job(job_id, "fake", status="succeeded")


def test_run_prints_plain_progress_and_the_front_off_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.daemon

    monkeypatch.setattr(workers.daemon, "Worker", FakeWorker)
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    args = ("run", "--dataset", "digits", "--trials", "4", "--epochs", "1", "--stages", "2")
    args += ("--seeds", "1", "--ablate", "none")
    res = run(*args, "--widths", "8,16", "--db", url)
    assert res.code == 0, res.stderr
    assert res.stderr.splitlines() == [
        f"job 1: 4 trials of 1 epoch on digits, study poolstride-job-1, database {url}",
        "search trials: 1/4 (25%)",
        "search trials: 3/4 (75%)",
        "search trials: 4/4 (100%), 1 failed",
    ]
    # the same architecture with four seeds (92,480 FLOPs, 2,034 params): one front member,
    # its val_acc the mean over the seeds, shown by its first trial
    assert [
        (r["trial"], r["n"], r["val_acc"])
        for r in json.loads(run("pareto", "1", "--format", "json", "--db", url).stdout)
    ] == [(0, 4, pytest.approx(0.65))]
    assert res.stdout.splitlines() == [
        "job 1 succeeded: 4/4 search trials complete, 4 trained, 0 from the cache",
        "Pareto front (val_acc, flops):",
        "trial  n  s1.downsample  s1.kernel  s1.skip  s2.downsample  s2.kernel  s2.skip  "
        "val_acc        test_acc  flops   params  latency_ms  train_s  front",
        "0      4  max            3          none     strided        3          none     "
        "0.65 ± 0.1291  -         92,480  2,034   -           -        yes",
        "1 of 1 architectures on the front of their means over seeds (val_acc, flops; 4 "
        "complete candidates); hypervolume 0.0650",
        "",
        "verdicts: this job ran no ablation; submit with --ablate downsample|all (and --seeds 3 "
        "or more) for per-stage verdicts",
    ]
