"""A tiny suite end to end through the command line: ``trainlab check``, ``run`` (twice: the
second trains nothing) and ``report`` in every format, with the ranking recomputed here from the
epochs the store recorded, by a second, plain-Python path (no numpy, no scipy)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from factories import npz_study, variant, write_study
from helpers import ROOT, make_npz

from trainlab.cli import EXIT_USER_ERROR, main
from trainlab.store import Store

VARIANTS = [
    variant("slow", optimizer={"name": "sgd", "learning_rate": 0.01}),
    variant("fast", optimizer={"name": "sgd", "learning_rate": 0.1}),
    variant("adam", optimizer="adam"),
]
SUITE = """
[suite]
name = "mini"
description = "three optimizers on two tiny workloads"
studies = ["a.toml", "b.toml"]
[suite.targets]
wa = 0.9
"""
"""Study wa has its target in the suite; wb (monitored by val_loss) takes the median best of its
first variant, slow. wb's extra variant (rmsprop) is not in wa, so it is left out."""


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("suite")
    make_npz(folder / "a.npz", seed=0)
    make_npz(folder / "b.npz", seed=1, n_train=120)
    write_study(folder / "a.toml", npz_study(name="wa", data="a.npz", epochs=5, compare=VARIANTS))
    extra = [*VARIANTS, variant("extra", optimizer="rmsprop")]
    write_study(
        folder / "b.toml",
        npz_study(name="wb", data="b.npz", epochs=5, compare=extra, train={"monitor": "val_loss"}),
    )
    (folder / "suite.toml").write_text(SUITE)
    code, out, err = cli("run", str(folder / "suite.toml"), "--store", str(folder / "s.db"), "--format", "json")
    assert code == 0, err
    return {"folder": folder, "report": json.loads(out), "err": err}


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--quiet"] if args[0] == "run" else list(args))
    return code, out.getvalue(), err.getvalue()


def recorded(store_path: Path, study: str, metric: str) -> dict[str, list[list[float]]]:
    """Each variant's trials (seed order) as their recorded values of ``metric``, epoch by epoch."""
    out: dict[str, list[tuple[int, list[float]]]] = {}
    with Store.open(store_path) as store:
        record = store.study(study)
        assert record is not None
        for trial in store.trials(record.id):
            assert trial.status == "done"
            values = [e.metrics[metric] for e in store.epochs(trial.id)]
            out.setdefault(trial.label, []).append((trial.seed, values))
    return {label: [v for _, v in sorted(runs)] for label, runs in out.items()}


def first_epoch(values: list[float], target: float, maximise: bool) -> float:
    for epoch, value in enumerate(values, start=1):
        if (value >= target) if maximise else (value <= target):
            return epoch
    return math.inf


def median(xs: list[float]) -> float:
    ordered = sorted(xs)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def trimmed(xs: list[float]) -> float:
    ordered = sorted(xs)
    cut = len(ordered) // 4
    kept = ordered[cut : len(ordered) - cut]
    return sum(kept) / len(kept)


def test_the_ranking_is_the_one_the_recorded_epochs_give(ran: dict[str, Any]) -> None:
    report, store_path = ran["report"], ran["folder"] / "s.db"
    assert report["format"] == "trainlab-suite/1" and report["labels"] == ["slow", "fast", "adam"]
    assert report["left_out"] == {"wb": ["extra"]}
    labels = report["labels"]
    times: dict[str, dict[str, float]] = {label: {} for label in labels}
    normalised: dict[str, list[float]] = {label: [] for label in labels}
    for study, metric, maximise in (("wa", "val_accuracy", True), ("wb", "val_loss", False)):
        runs = recorded(store_path, study, metric)
        best = {label: [(max if maximise else min)(v) for v in runs[label]] for label in runs}
        target = 0.9 if study == "wa" else max(best["slow"])  # of two losses, the worse: both seeds reach it
        workload = next(w for w in report["workloads"] if w["name"] == study)
        assert workload["target"] == pytest.approx(target) and workload["metric"] == metric
        for label in labels:
            epochs = [first_epoch(v, target, maximise) for v in runs[label]]
            shown = workload["variants"][label]
            assert shown["epochs_to_target"] == [e if math.isfinite(e) else None for e in epochs]
            times[label][study] = median(epochs)
            assert shown["median_epochs"] == (times[label][study] if math.isfinite(times[label][study]) else None)
        levels = {label: statistics.fmean(best[label]) for label in labels}
        hi = (max if maximise else min)(levels.values())
        lo = (min if maximise else max)(levels.values())
        if hi != lo:
            for label in labels:
                normalised[label] += [(x - lo) / (hi - lo) for x in best[label]]
    scores = {}
    for label in labels:
        area = 0.0
        for study in ("wa", "wb"):
            fastest = min(times[other][study] for other in labels)
            ratio = times[label][study] / fastest if math.isfinite(times[label][study]) else math.inf
            area += (4 - ratio) / 3 if ratio <= 4 else 0.0
        scores[label] = area / 2
    by_label = {row["label"]: row for row in report["ranking"]}
    for label in labels:
        assert by_label[label]["score"] == pytest.approx(scores[label], abs=1e-12)
        assert by_label[label]["iqm"] == pytest.approx(trimmed(normalised[label]), abs=1e-12)
        low, high = by_label[label]["iqm_ci95"]
        assert low <= by_label[label]["iqm"] + 1e-12 and by_label[label]["iqm"] <= high + 1e-12
    ranked = sorted(labels, key=lambda label: (-scores[label], -trimmed(normalised[label])))
    assert [row["label"] for row in report["ranking"]] == ranked
    assert [row["rank"] for row in report["ranking"]] == [1, 2, 3]


def test_a_second_run_trains_nothing_and_the_notes_go_to_stderr(ran: dict[str, Any]) -> None:
    suite, store = str(ran["folder"] / "suite.toml"), str(ran["folder"] / "s.db")
    assert "suite mini: study 1 of 2: wa" in ran["err"] and "study wb: 8 trials; this run: 8 done" in ran["err"]
    code, out, err = cli("run", suite, "--store", store, "--format", "json")
    assert code == 0 and "study wa: 6 trials; this run: nothing to run; already finished before: 6" in err
    assert json.loads(out)["ranking"] == ran["report"]["ranking"]  # the same numbers: the bootstrap is seeded


def test_the_report_formats_agree(ran: dict[str, Any]) -> None:
    suite, store = str(ran["folder"] / "suite.toml"), str(ran["folder"] / "s.db")
    ranking = ran["report"]["ranking"]
    code, out, _ = cli("report", suite, "--store", store, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["variant"] for r in rows] == [r["label"] for r in ranking]
    assert [float(r["score"]) for r in rows] == [r["score"] for r in ranking]
    assert "wa_epochs" in rows[0] and "wb_ratio" in rows[0]
    code, out, _ = cli("report", suite, "--store", store)
    assert code == 0 and "suite mini" in out and "score: area under the performance profile on [1, 4]" in out
    assert f"│    1 │ {ranking[0]['label']}" in out
    code, out, _ = cli("report", suite, "--store", store, "--format", "markdown")
    assert code == 0 and out.startswith("### suite mini\n") and "| rank | variant | score |" in out
    code, out, _ = cli("report", suite, "--store", store, "--format", "html", "--out", str(ran["folder"] / "html"))
    page = (ran["folder"] / "html" / "mini.html").read_text()
    assert code == 0 and "Performance profiles" in page and "data:image/png;base64," in page
    assert "<h3>wb</h3>" in page and "median best of slow" in page


def test_check_describes_the_suite_and_study_options_are_refused(ran: dict[str, Any]) -> None:
    suite, store = str(ran["folder"] / "suite.toml"), str(ran["folder"] / "s.db")
    code, out, _ = cli("check", suite)
    assert code == 0 and out.startswith("suite mini: 2 studies") and "wb: extra" in out
    code, _, err = cli("report", suite, "--store", store, "--target", "0.5")
    assert code == EXIT_USER_ERROR and "--target applies to a study's report" in err


def documented_keys() -> dict[str, set[str]]:
    """docs/REPORTS.md's table of the suite JSON: each row's key, and the keys its text names in backticks."""
    text = (ROOT / "docs" / "REPORTS.md").read_text(encoding="utf-8")
    section = text.split("### The suite JSON")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) >= 2:
            rows[cells[0].strip("| `")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def test_the_json_has_the_keys_docs_reports_lists(ran: dict[str, Any]) -> None:
    report, documented = ran["report"], documented_keys()
    assert set(report) == {"format", *(k for k in documented if "." not in k and "[" not in k)}
    workload = report["workloads"][1]
    for key, node in [
        ("suite", report["suite"]),
        ("workloads", workload),
        ("workloads[].variants.LABEL", workload["variants"]["slow"]),
        ("ranking", report["ranking"][0]),
    ]:
        assert set(node) <= documented[key], (key, set(node) - documented[key])
    assert set(report["suite"]["iqm"]) <= documented["suite"]
