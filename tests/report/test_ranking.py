"""A suite's ranking read from a store whose epochs are written here by hand, so that every
number of the report is worked out in this file.

Two studies of the tiny data set, variants sgd and adam, seeds 0 and 1. Study ``one`` (val
accuracy, target 0.8 in the suite file); study ``two`` (monitored by val_loss; no target, so the
median best of its first variant, sgd). Epochs last one second each.

    one   sgd  seed 0 done      val_accuracy 0.5, 0.7, 0.85   reaches 0.8 at epoch 3   best 0.85
          sgd  seed 1 diverged  0.6, 0.9                      epoch 2 (it counts)       best 0.9
          adam seed 0 done      0.82                          epoch 1                   best 0.82
          adam seed 1 failed    (an error: left out)
    two   sgd  seed 0 done      val_loss 0.9, 0.5, 0.4        best 0.4
          sgd  seed 1 done      0.8, 0.6                      best 0.6
          adam seed 0 done      0.7, 0.65                     never                     best 0.65
          adam seed 1 pending   (no result yet: left out)

Study two's target: of sgd's bests 0.4 and 0.6, the value both seeds reached, 0.6; sgd reaches
it at epochs 2 and 2. Medians: one: sgd 2.5, adam 1; two: sgd 2, adam never. Ratios: one: sgd
2.5, adam 1; two: sgd 1, adam inf. Scores (cut-off 4): sgd ((4 - 2.5) / 3 + 1) / 2 = 0.75;
adam (1 + 0) / 2 = 0.5.

Normalised scores: one: levels sgd 0.875, adam 0.82 (span 0.055): sgd 0.03 / 0.055 and
0.08 / 0.055, adam 0. two (a loss): levels sgd 0.5, adam 0.65 (span -0.15): sgd 0.25 / 0.15 and
0.05 / 0.15, adam 0. IQM of sgd's four: the middle two, (0.03 + 0.08) / 0.055 / 2 = 1; adam's: 0.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from factories import npz_study, variant, with_tiny_npz, write_study

from trainlab import suite as suites
from trainlab.executors import register
from trainlab.report import ranking
from trainlab.store import Store

OWNER = "test-owner"
EPOCHS: dict[tuple[str, str, int], tuple[str, list[float]]] = {
    ("one", "sgd", 0): ("done", [0.5, 0.7, 0.85]),
    ("one", "sgd", 1): ("diverged", [0.6, 0.9]),
    ("one", "adam", 0): ("done", [0.82]),
    ("one", "adam", 1): ("failed", []),
    ("two", "sgd", 0): ("done", [0.9, 0.5, 0.4]),
    ("two", "sgd", 1): ("done", [0.8, 0.6]),
    ("two", "adam", 0): ("done", [0.7, 0.65]),
}


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    with_tiny_npz(tmp_path)
    pair = [variant("sgd", optimizer="sgd"), variant("adam", optimizer="adam")]
    write_study(tmp_path / "one.toml", npz_study(name="one", compare=pair))
    write_study(tmp_path / "two.toml", npz_study(name="two", compare=pair, train={"monitor": "val_loss"}))
    (tmp_path / "suite.toml").write_text('[suite]\nstudies = ["one.toml", "two.toml"]\n[suite.targets]\none = 0.8\n')
    suite = suites.load(tmp_path / "suite.toml")
    with Store.open(tmp_path / "s.db") as store:
        for workload in suite.workloads:
            study_id, _ = register(workload.study, store)
            metric = "val_accuracy" if workload.name == "one" else "val_loss"
            for trial in store.trials(study_id):
                key = (workload.name, trial.label, trial.seed)
                if key not in EPOCHS:
                    continue  # left pending
                status, values = EPOCHS[key]
                assert store.claim(trial.id, OWNER)
                for epoch, value in enumerate(values):
                    store.record_epoch(trial.id, OWNER, epoch, {metric: value, "seconds": 1.0})
                store.finish_trial(trial.id, OWNER, status, result={}, error="boom" if status == "failed" else None)
        return ranking.suite_report(store, suite)


def workload(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(w for w in report["workloads"] if w["name"] == name)


def test_times_to_target_count_diverged_runs_and_leave_out_failed_and_unfinished_ones(report: dict[str, Any]) -> None:
    one, two = workload(report, "one"), workload(report, "two")
    assert (one["target"], one["target_from"]) == (0.8, "suite")
    assert (two["target"], two["target_from"], two["reference"]) == (0.6, "reference", "sgd")
    assert one["variants"]["sgd"]["epochs_to_target"] == [3, 2] and one["variants"]["sgd"]["median_epochs"] == 2.5
    assert one["variants"]["sgd"]["seconds_to_target"] == [3.0, 2.0]
    assert one["variants"]["adam"]["seeds"] == [0] and one["variants"]["adam"]["median_epochs"] == 1
    assert two["variants"]["sgd"]["epochs_to_target"] == [2, 2]
    assert two["variants"]["adam"]["epochs_to_target"] == [math.inf] and two["variants"]["adam"]["reached"] == 0
    assert one["fastest"] == ["adam"] and two["fastest"] == ["sgd"]
    assert one["trials"]["status"] == {"diverged": 1, "done": 2, "failed": 1}


def test_ratios_scores_and_the_order_are_the_hand_computed_ones(report: dict[str, Any]) -> None:
    rows = {row["label"]: row for row in report["ranking"]}
    assert [row["label"] for row in report["ranking"]] == ["sgd", "adam"]
    assert rows["sgd"]["ratios"] == {"one": 2.5, "two": 1.0}
    assert rows["adam"]["ratios"] == {"one": 1.0, "two": math.inf}
    assert rows["sgd"]["score"] == pytest.approx(0.75) and rows["adam"]["score"] == pytest.approx(0.5)
    assert rows["sgd"]["profile"] == [[1.0, 0.5], [2.5, 1.0], [4.0, 1.0]]
    assert (rows["adam"]["within_cutoff"], rows["adam"]["reached"]) == (1, 1)


def test_the_iqm_pools_normalised_scores_over_studies_and_seeds(report: dict[str, Any]) -> None:
    one, two = workload(report, "one"), workload(report, "two")
    assert one["normalisation"] == {"best": "sgd", "worst": "adam"}
    assert one["variants"]["sgd"]["normalised"] == pytest.approx([0.03 / 0.055, 0.08 / 0.055])
    assert two["variants"]["sgd"]["normalised"] == pytest.approx([0.25 / 0.15, 0.05 / 0.15])
    rows = {row["label"]: row for row in report["ranking"]}
    assert rows["sgd"]["iqm"] == pytest.approx(1.0) and rows["sgd"]["runs"] == 4
    assert rows["adam"]["iqm"] == 0.0 and rows["adam"]["iqm_ci95"] == [0.0, 0.0]
    low, high = rows["sgd"]["iqm_ci95"]
    assert low < 1.0 < high


def test_the_notes_say_what_is_left_out(report: dict[str, Any]) -> None:
    notes = ranking.notes(report)
    assert "one: 1 of 4 trials have no result yet (1 failed with an error)" in " ".join(notes)
    assert "two: 1 of 4 trials have no result yet;" in " ".join(notes)
    assert "Targets: one: val accuracy ≥ 0.8 (given in the suite); two: val loss ≤ 0.6 (median best of sgd)." in notes


def test_json_and_csv_write_infinite_as_null_and_inf(report: dict[str, Any]) -> None:
    data = json.loads(ranking.render(report, "json"))
    assert data["ranking"][1]["ratios"] == {"one": 1.0, "two": None}
    assert workload(data, "two")["variants"]["adam"]["epochs_to_target"] == [None]
    rows = list(csv.DictReader(io.StringIO(ranking.render(report, "csv"))))
    assert rows[1]["variant"] == "adam" and rows[1]["two_epochs"] == "inf" and rows[1]["two_ratio"] == "inf"
    assert float(rows[0]["score"]) == pytest.approx(0.75)
    header, body = ranking.table_rows(report)
    assert header == ["rank", "variant", "score", "IQM", "95% CI", "one (epochs)", "two (epochs)"]
    assert body[0][:3] == ["1", "sgd", "0.750"] and body[0][5:] == ["2.5 (2.50)", "2 (1.00)"]
    assert body[1][5:] == ["1 (1.00)", "never"]


def test_a_study_not_run_yet_has_no_target_and_no_times(tmp_path: Path) -> None:
    with_tiny_npz(tmp_path)
    pair = [variant("sgd", optimizer="sgd"), variant("adam", optimizer="adam")]
    write_study(tmp_path / "one.toml", npz_study(name="one", compare=pair))
    (tmp_path / "suite.toml").write_text('[suite]\nstudies = ["one.toml"]\n')
    with Store.open(tmp_path / "s.db") as store:
        report = ranking.suite_report(store, suites.load(tmp_path / "suite.toml"))
    one = workload(report, "one")
    assert one["target"] is None and one["variants"]["sgd"]["seeds"] == []
    assert math.isnan(one["variants"]["sgd"]["median_epochs"])
    assert [row["score"] for row in report["ranking"]] == [0.0, 0.0]
    assert "one: no target yet" in " ".join(ranking.notes(report))
    assert ranking.table_rows(report)[1][0][5] == "-"


def test_ties_in_score_go_to_the_higher_iqm_then_to_the_suites_order() -> None:
    rows = [
        {"label": "a", "score": 0.5, "iqm": None},
        {"label": "b", "score": 0.5, "iqm": 0.2},
        {"label": "c", "score": 0.9, "iqm": 0.1},
        {"label": "d", "score": 0.5, "iqm": 0.2},
        {"label": "e", "score": 0.5, "iqm": 0.7},
    ]
    out = ranking.ranked(rows)
    assert [(r["rank"], r["label"]) for r in out] == [(1, "c"), (2, "e"), (3, "b"), (4, "d"), (5, "a")]
