"""The ``trainlab`` command run as a user runs it: a subprocess on a tiny study."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def trainlab(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache")}
    proc = subprocess.run([sys.executable, "-m", "trainlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
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
    assert "trial 1-2/4: sgd seed 0, adam seed 0 (a population of 2, trained together)" in first.stdout
    assert "trial 3-4/4: sgd seed 1, adam seed 1" in first.stdout
    assert "  adam seed 1  epoch 4/4" in first.stdout
    assert "│ adam" in first.stdout and "val accuracy" in first.stdout
    assert (cwd / "trainlab.db").exists()

    again = trainlab("run", tiny_study.name, "--workers", "2", cwd=cwd)
    assert "this run: nothing to run; already finished before: 4" in again.stdout
    assert "epoch 1/4" not in again.stdout

    status = trainlab("status", cwd=cwd).stdout.splitlines()
    assert status[0].split() == ["study", "trials", "pending", "running", "done", "failed", "diverged", "pruned"]
    assert status[1].split() == ["tiny", "4", "0", "0", "4", "0", "0", "0"]

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


def test_check_lists_trials_without_training(tiny_study: Path) -> None:
    out = trainlab("check", tiny_study.name, cwd=tiny_study.parent).stdout
    assert "2 variants x 2 seeds = 4 trials" in out
    assert not (tiny_study.parent / "trainlab.db").exists()


def test_help_teaches() -> None:
    out = subprocess.run([sys.executable, "-m", "trainlab.cli", "--help"], capture_output=True, text=True).stdout
    for word in ("run", "status", "report", "data", "examples:"):
        assert word in out
    out = subprocess.run([sys.executable, "-m", "trainlab.cli", "report", "--help"], capture_output=True, text=True).stdout
    assert "--format" in out and "REPORT-JSON" in out


def test_results_do_not_depend_on_workers_or_populations(tiny_study: Path) -> None:
    cwd = tiny_study.parent
    runs = {}
    for name, args in {"alone": ["--workers", "1", "--population", "1"], "together": ["--workers", "1", "--population", "2"],
                       "pool": ["--workers", "2", "--population", "1"]}.items():
        trainlab("run", tiny_study.name, "--store", f"{name}.db", "--quiet", "--format", "none", *args, cwd=cwd)
        report = json.loads(trainlab("report", "tiny", "--store", f"{name}.db", "--format", "json", "--all-test", cwd=cwd).stdout)
        runs[name] = {(t["hash"]): t for v in report["variants"] for t in v["trials"]}
    for name in ("together", "pool"):
        assert runs[name].keys() == runs["alone"].keys()
        for key, trial in runs["alone"].items():
            other = runs[name][key]
            for metric in ("val_accuracy", "val_loss", "test_accuracy", "best_epoch", "epochs"):
                assert other[metric] == pytest.approx(trial[metric], rel=1e-4, abs=1e-5), (name, metric)
