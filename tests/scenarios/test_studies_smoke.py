"""Every example study in ``studies/`` runs end to end as a smoke run (``trainlab run --smoke``),
and so does every example suite (a file with a ``[suite]`` table), study after study.

A smoke run keeps every stage, variant, search, fold and callback of the study but trains one
seed on 1024 examples for two epochs, so all of them together take a few minutes. The studies
use the real data sets (CIFAR-10, absent here, is replaced by a small tarball in the official
layout), hence the ``slow`` marker; CI runs these on purpose (``make test-ci``).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import STUDIES, write_cifar_tarball

from trainlab.store import WEIGHTS
from trainlab.suite import is_suite_file

SUITES = sorted(p.name for p in STUDIES.glob("*.toml") if is_suite_file(p))
FILES = sorted(p.name for p in STUDIES.glob("*.toml") if p.name not in SUITES)
NEEDS_CIFAR = {"report_b2_cifar_mlp.toml"}
SMOKE_EPOCHS = 2  # a smoke run trains every trial for at most two epochs


def check_report(report: dict, study: str) -> None:
    """Every stage resolved, every one of its trials finished, and at least one done per stage
    (a sampled learning rate may legitimately diverge)."""
    sections = report.get("stages") or [report]
    for section in sections:
        where = f"{study}: stage {section.get('stage', '')}"
        assert section.get("state", "ready") == "ready", where
        assert section["variants"], where
        for variant in section["variants"]:
            counts = variant["status"]
            assert set(counts) <= {"done", "pruned", "diverged"}, f"{where}: {variant['label']}: {counts}"
        assert any(v["n"] for v in section["variants"]), where


def check_recorded(store_path: Path, report: dict, study: str) -> None:
    """What the smoke run recorded: every trial of the study finished with one epoch row per epoch
    it reports (at most the smoke run's two), finite metrics in every row but a diverged trial's
    last, a test evaluation for each done trial, and one rendered table per stage."""
    from trainlab.report import render
    from trainlab.store import Store

    with Store.open(store_path) as store:
        record = store.study(report["study"]["name"])
        assert record is not None, study
        trials = store.trials(record.id)
        assert trials, study
        for trial in trials:
            where = f"{study}: {trial.label} seed {trial.seed}"
            assert trial.status in ("done", "pruned", "diverged"), f"{where}: {trial.status} {trial.error}"
            rows = store.epochs(trial.id)
            assert [e.epoch for e in rows] == list(range(len(rows))), where
            assert 1 <= len(rows) <= SMOKE_EPOCHS and len(rows) == (trial.result or {}).get("epochs"), where
            checked = rows[:-1] if trial.status == "diverged" else rows
            for row in checked:
                bad = {k: v for k, v in row.metrics.items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
                assert not bad, f"{where}: epoch {row.epoch}: {bad}"
            if trial.status == "done":
                test = (trial.result or {})["test"]
                assert test and all(math.isfinite(v) for v in test.values()), f"{where}: {test}"
                assert store.artifact(trial.id, WEIGHTS) is not None, where
    markdown = render(report, "markdown")
    assert markdown.count("| variant |") == len(report.get("stages") or [report]), f"{study}:\n{markdown}"


def test_every_study_file_has_a_smoke_test() -> None:
    assert len(FILES) >= 8 and "report_a_mnist.toml" in FILES and "report_e_fashion.toml" in FILES


@pytest.mark.slow
@pytest.mark.parametrize("name", [f for f in FILES if f not in NEEDS_CIFAR])
def test_study_smoke_run(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab.cli",
            "run",
            str(STUDIES / name),
            "--smoke",
            "--store",
            str(tmp_path / "s.db"),
            "--quiet",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert report["study"]["name"].endswith("-smoke")
    check_report(report, name)
    check_recorded(tmp_path / "s.db", report, name)


def test_the_example_suites_are_found_and_valid() -> None:
    """The suites are told apart from the studies, and each names several valid studies."""
    from trainlab import suite

    assert SUITES == ["suite_optimizers.toml"] and not set(SUITES) & set(FILES)
    for name in SUITES:
        assert len(suite.load(STUDIES / name).workloads) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", SUITES)
def test_suite_smoke_run(name: str, tmp_path: Path) -> None:
    """Each study of the suite trains as its smoke run; the ranking covers every study and every
    shared label, and every study's trials are recorded as a smoke run records them."""
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "run", str(STUDIES / name), "--smoke"]
        + ["--store", str(tmp_path / "s.db"), "--quiet", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranking = json.loads(proc.stdout)
    assert ranking["suite"]["name"].endswith("-smoke")
    assert sorted(row["label"] for row in ranking["ranking"]) == sorted(ranking["labels"])
    assert all(0.0 <= row["score"] <= 1.0 for row in ranking["ranking"])
    from trainlab.report import study_report
    from trainlab.store import Store

    for workload in ranking["workloads"]:
        assert workload["study"].endswith("-smoke")
        assert workload["trials"]["status"] == {"done": workload["trials"]["total"]}, workload["name"]
        with Store.open(tmp_path / "s.db") as store:
            report = study_report(store, workload["study"])
        check_report(report, workload["study"])
        check_recorded(tmp_path / "s.db", report, workload["study"])


@pytest.mark.slow
def test_cifar_study_smoke_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainlab import cli
    from trainlab.data import datasets
    from trainlab.data.datasets import Facts

    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball, per_class_train=121, per_class_test=2)
    facts = Facts((6050, 3, 32, 32), (20, 3, 32, 32), "uint8", "uint8", (605,) * 10, (2,) * 10, None)
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    real = datasets.cifar10_definition
    monkeypatch.setattr(datasets, "cifar10_definition", lambda *a, **k: real(facts, md5=md5))
    monkeypatch.setenv("TRAINLAB_CIFAR10", str(tarball))
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    code = cli.main(
        [
            "run",
            str(STUDIES / "report_b2_cifar_mlp.toml"),
            "--smoke",
            "--store",
            str(tmp_path / "s.db"),
            "--quiet",
            "--format",
            "json",
            "--workers",
            "1",
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err[-2000:]
    report = json.loads(out[out.index("{") :])
    check_report(report, "report_b2_cifar_mlp.toml")
    check_recorded(tmp_path / "s.db", report, "report_b2_cifar_mlp.toml")
    search = report["stages"][1]
    assert search["search"]["sampled"] == 3 and len(search["variants"]) == 3
    first = report["stages"][0]["variants"][0]["trials"][0]
    assert first["status"] == "done"


def test_cifar_study_without_the_data_stops_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAINLAB_CIFAR10", raising=False)
    env = {**__import__("os").environ, "TRAINLAB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab.cli",
            "run",
            str(STUDIES / "report_b2_cifar_mlp.toml"),
            "--smoke",
            "--store",
            str(tmp_path / "s.db"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "trainlab data add cifar10" in proc.stderr
    from trainlab.store import Store

    with Store.open(tmp_path / "s.db") as store:
        record = store.study("report-b2-smoke")
        assert record is None or all(not store.epochs(t.id) for t in store.trials(record.id))
