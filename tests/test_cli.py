"""The ``trainlab`` command run as a user runs it: a subprocess on a tiny study."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def trainlab(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"trainlab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


# The report's mean and standard deviation against the same sums done here: equal up to the
# rounding of a two-value float sum, far below the four decimals the table prints.
FLOAT_SUM = 1e-12


def test_run_resume_status_and_report(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    first = trainlab("run", tiny_study.name, "--workers", "1", "--population", "2", cwd=cwd)
    assert "this run: 4 done" in first.stdout
    assert "trial 1-2/4: sgd seed 0, adam seed 0 (population of 2, eager, 1 thread)" in first.stdout
    assert "trial 3-4/4: sgd seed 1, adam seed 1" in first.stdout
    assert "  adam seed 1  epoch 4/4" in first.stdout
    assert "│ adam" in first.stdout and "val accuracy" in first.stdout
    assert (cwd / "trainlab.db").exists()

    again = trainlab("run", tiny_study.name, "--workers", "2", cwd=cwd)
    assert "this run: nothing to run; already finished before: 4" in again.stdout
    assert "epoch 1/4" not in again.stdout

    status = trainlab("status", cwd=cwd).stdout.splitlines()
    assert status[0].split() == [
        "study",
        "trials",
        "pending",
        "running",
        "done",
        "failed",
        "diverged",
        "pruned",
        "plan",
    ]
    assert status[1].split() == [
        "tiny",
        "4",
        "0",
        "0",
        "4",
        "0",
        "0",
        "0",
        "4",
        "x",
        "population",
        "of",
        "2,",
        "eager,",
        "1",
        "thread",
    ]

    report = json.loads(trainlab("report", "tiny", "--format", "json", cwd=cwd).stdout)
    assert report["format"] == "trainlab-report/1"
    assert [v["label"] for v in report["variants"]] == ["sgd", "adam"]
    adam = report["variants"][1]
    assert adam["n"] == 2 and adam["seeds"] == [0, 1]
    # The report's numbers, recomputed here from the store's epoch rows and results.
    import statistics

    from trainlab.store import Store

    with Store.open(cwd / "trainlab.db") as store:
        trials = [t for t in store.trials(store.study("tiny").id) if t.label == "adam"]  # type: ignore[union-attr]
        curves = [[e.metrics["val_accuracy"] for e in store.epochs(t.id)] for t in trials]
        tests = [t.result["test"]["accuracy"] for t in trials]  # type: ignore[index]
    # The best epoch is the first with the highest validation accuracy (the monitor), counted from 1.
    best = [curve.index(max(curve)) + 1 for curve in curves]
    assert [t["best_epoch"] for t in adam["trials"]] == best
    assert adam["val_accuracy"]["values"] == [max(curve) for curve in curves]
    assert adam["val_accuracy"]["mean"] == pytest.approx(statistics.fmean(max(c) for c in curves), rel=FLOAT_SUM)
    assert adam["val_accuracy"]["std"] == pytest.approx(statistics.stdev(max(c) for c in curves), rel=FLOAT_SUM)
    assert adam["best_epoch"]["mean"] == pytest.approx(statistics.fmean(best), rel=FLOAT_SUM)
    assert adam["test_accuracy"]["values"] == tests
    # The bright band makes the classes easy: Adam beats chance (1/3) by far on every seed.
    assert min(tests) > 0.8 and min(max(c) for c in curves) > 0.8, (tests, curves)
    assert all(t["status"] == "done" for t in adam["trials"])

    rows = list(csv.DictReader(io.StringIO(trainlab("report", "tiny.toml", "--format", "csv", cwd=cwd).stdout)))
    assert [r["variant"] for r in rows] == ["sgd", "adam"]
    assert float(rows[1]["val_accuracy_mean"]) == pytest.approx(adam["val_accuracy"]["mean"])

    md = trainlab("report", "tiny", "--format", "markdown", "--out", "r.md", cwd=cwd)
    assert md.stdout == ""
    assert (cwd / "r.md").read_text().startswith("| variant | n | val accuracy |")


def test_user_mistakes_exit_2_with_a_message_and_no_traceback(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    bad = tiny_study.read_text().replace('optimizer = "adam"', 'optimizer = "adamm"')
    (cwd / "bad.toml").write_text(bad)
    proc = trainlab("run", "bad.toml", cwd=cwd, check=False)
    assert proc.returncode == 2
    assert "bad.toml: optimizer" in proc.stderr and "did you mean 'adam'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (cwd / "trainlab.db").exists(), "nothing may be written for an invalid study"

    proc = trainlab("report", "nope", cwd=cwd, check=False)
    assert proc.returncode == 2 and "no store" in proc.stderr

    big = tiny_study.read_text().replace("batch_size = 16", "batch_size = 100000")
    (cwd / "big.toml").write_text(big)
    proc = trainlab("run", "big.toml", cwd=cwd, check=False)
    assert proc.returncode == 2 and "larger than the training split" in proc.stderr

    proc = trainlab("run", tiny_study.name, "--population", "0", cwd=cwd, check=False)
    assert proc.returncode == 2 and "--population takes a number of trials >= 1" in proc.stderr
    assert not (cwd / "trainlab.db").exists()


def test_check_lists_trials_without_training(tiny_study: Path) -> None:
    out = trainlab("check", tiny_study.name, cwd=tiny_study.parent).stdout
    assert "2 variants x 2 seeds = 4 trials" in out
    assert not (tiny_study.parent / "trainlab.db").exists()


def test_help_teaches() -> None:
    out = subprocess.run([sys.executable, "-m", "trainlab.cli", "--help"], capture_output=True, text=True).stdout
    for word in ("run", "status", "report", "data", "examples:"):
        assert word in out
    out = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "report", "--help"], capture_output=True, text=True
    ).stdout
    assert "--format" in out and "REPORT-JSON" in out


def test_machine_formats_leave_stdout_to_the_report(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    first = trainlab("run", tiny_study.name, "--workers", "1", "--format", "json", cwd=cwd)
    report = json.loads(first.stdout)  # nothing but the report on stdout
    assert report["trials"] == {"total": 4, "status": {"done": 4}, "reused": 0}
    assert "epoch 4/4" in first.stderr and "4 trials, 0 already finished" in first.stderr
    assert "study tiny: 4 trials; this run: 4 done; already finished before: 0" in first.stderr

    again = trainlab("run", tiny_study.name, "--format", "csv", cwd=cwd)
    rows = list(csv.DictReader(io.StringIO(again.stdout)))
    assert [r["variant"] for r in rows] == ["sgd", "adam"] and rows[0]["reused_from"] == ""
    assert "this run: nothing to run; already finished before: 4" in again.stderr

    md = trainlab("run", tiny_study.name, "--format", "markdown", cwd=cwd)
    assert md.stdout.startswith("| variant | n |") and "this run:" not in md.stdout and "this run:" in md.stderr
    assert "- 4 trials: 4 done." in md.stdout

    table = trainlab("run", tiny_study.name, cwd=cwd)  # the terminal format keeps everything on stdout
    assert "this run: nothing to run" in table.stdout and "this run:" not in table.stderr

    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache")}
    piped = subprocess.run(
        f"{sys.executable} -m trainlab.cli run {tiny_study.name} --format json | {sys.executable} -m json.tool",
        shell=True,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["selection"] == report["selection"]
    assert "this run: nothing to run" in piped.stderr


def test_report_summary_keeps_machine_formats_whole(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    trainlab("run", tiny_study.name, "--workers", "1", "--quiet", "--format", "none", cwd=cwd)
    for fmt in ("json", "csv"):
        proc = trainlab("report", "tiny", "--format", fmt, "--summary", cwd=cwd, check=False)
        assert proc.returncode == 2 and proc.stdout == "" and f"would break --format {fmt}" in proc.stderr
    md = trainlab("report", "tiny", "--format", "markdown", "--summary", cwd=cwd).stdout
    assert md.count("```") == 2 and "Total params:" in md.split("```")[1]


def _failing_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every unit training an Adam trial raise, as a crash inside the training loop would."""
    from trainlab import executors

    real = executors.train_population

    def train_population(job: Any, *args: Any, **kwargs: Any) -> Any:
        if any(s.optimizer.name == "adam" for s in job.specs):
            raise RuntimeError("boom: this trial cannot train")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(executors, "train_population", train_population)


def test_run_exits_1_when_trials_failed_and_0_when_one_diverged(
    tiny_study: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainlab.cli import EXIT_TRIALS_FAILED, main

    cwd = tiny_study.parent
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.setenv("TRAINLAB_DATA", str(cwd / "cache"))
    args = ["--workers", "1", "--population", "1", "--format", "json"]
    with monkeypatch.context() as patch:
        _failing_adam(patch)
        assert main(["run", tiny_study.name, "--store", "failed.db", *args]) == EXIT_TRIALS_FAILED == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["trials"]["status"] == {"done": 2, "failed": 2}
    assert "2 trials of study tiny failed with an error" in err and "exit status 1" in err
    # Nothing left to run, but the study still holds failed trials: a script must still see it.
    assert main(["run", tiny_study.name, "--store", "failed.db", *args]) == 1
    capsys.readouterr()
    assert main(["run", tiny_study.name, "--store", "failed.db", "--retry-failed", *args]) == 0
    capsys.readouterr()

    diverging = tiny_study.read_text().replace("learning_rate = 0.05", "learning_rate = 1e30")
    (cwd / "diverging.toml").write_text(diverging)
    assert main(["run", "diverging.toml", "--store", "diverged.db", *args]) == 0
    out, err = capsys.readouterr()
    statuses = json.loads(out)["trials"]["status"]
    assert statuses == {"diverged": 2, "done": 2}, "a diverged trial is a result, not an error"
    assert "failed" not in err


def test_a_stage_that_cannot_start_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from factories import STAGED_STUDY as STAGES
    from factories import write_tiny_study_text as write

    from trainlab import executors
    from trainlab.cli import EXIT_USER_ERROR, main

    def train_population(job: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom: no trial trains")

    monkeypatch.setattr(executors, "train_population", train_population)
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    study = write(tmp_path, STAGES)
    code = main(
        ["run", str(study), "--store", str(tmp_path / "s.db"), "--workers", "1", "--population", "1", "--quiet"]
    )
    assert code == EXIT_USER_ERROR == 2
    assert "none of its trials finished" in capsys.readouterr().err


def test_run_help_and_readme_say_what_each_exit_status_means() -> None:
    from trainlab.cli import EXIT_INTERRUPTED, EXIT_TRIALS_FAILED, EXIT_USER_ERROR

    out = subprocess.run([sys.executable, "-m", "trainlab.cli", "run", "--help"], capture_output=True, text=True).stdout
    section = out.split("exit status:")[1]
    codes = [
        line.split()[0]
        for line in section.splitlines()
        if line.strip() and line.startswith("  ") and not line.startswith("     ")
    ]
    assert codes == ["0", str(EXIT_TRIALS_FAILED), str(EXIT_USER_ERROR), str(EXIT_INTERRUPTED)]
    assert "diverged or pruned" in section and "failed with an error" in section
    assert "standard error" in out.split("output:")[1]

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    paragraph = readme.split("### Exit status")[1].split("\n#")[0]
    for code in (0, EXIT_TRIALS_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED):
        assert f"`{code}`" in paragraph, code
    assert "diverged" in paragraph and "failed" in paragraph


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line_and_writes_nothing(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    proc = trainlab("run", tiny_study.name, "--device", "cuda", cwd=cwd, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert proc.stderr.startswith("trainlab: --device cuda: this machine has no CUDA")
    assert not (cwd / "trainlab.db").exists()
    proc = trainlab("run", tiny_study.name, "--device", "tpu", cwd=cwd, check=False)
    assert proc.returncode == 2 and "--device takes auto, cpu, cuda, cuda:N, mps" in proc.stderr


def test_device_and_precision_are_recorded_with_each_trial(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    text = tiny_study.read_text().replace("[train]\n", '[train]\nprecision = "bfloat16"\n')
    assert text != tiny_study.read_text()
    (cwd / "half.toml").write_text(text)
    report = json.loads(trainlab("run", "half.toml", "--device", "cpu", "--format", "json", "--quiet", cwd=cwd).stdout)
    trials = [t for v in report["variants"] for t in v["trials"]]
    assert len(trials) == 4
    assert {(t["plan"]["device"], t["plan"]["precision"]) for t in trials} == {("cpu", "bfloat16")}
    assert all(v["settings"]["train.precision"] == "bfloat16" for v in report["variants"])
    assert all(isinstance(t["val_loss"], float) for t in trials)
