"""A store written by trainlab 0.1 (schema 1, before run plans) opens, reports and resumes today.

``fixtures/store-v1.db`` was written by trainlab 0.1.0 from ``fixtures/store-v1-study.toml``
(two optimizers on 600 MNIST images, both trained) and the same study registered under the
name ``later`` without training (two pending trials).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import FIXTURES

from trainlab import spec
from trainlab.data.cache import DataCache
from trainlab.executors import run_local
from trainlab.report import study_report
from trainlab.store import Store

OLD_HASHES = {"sgd": "9c636413b4d958fa3fae", "adam": "4f3e2fe660ede502c22b"}
"""The trial hashes trainlab 0.1.0 gave the study's trials: the same study must find them."""


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    shutil.copy(FIXTURES / "store-v1.db", path)
    return path


def test_the_fixture_is_a_schema_1_store() -> None:
    raw = sqlite3.connect(f"file:{FIXTURES / 'store-v1.db'}?mode=ro", uri=True)
    try:
        assert raw.execute("SELECT MAX(version) FROM trainlab_schema").fetchone() == (1,)
        columns = [row[1] for row in raw.execute("PRAGMA table_info(trials)")]
        assert "plan_json" not in columns
    finally:
        raw.close()


def test_opening_migrates_and_keeps_every_record(old_store: Path) -> None:
    with Store.open(old_store) as store:
        record = store.study("old")
        assert record is not None
        trials = store.trials(record.id)
        assert {t.label: (t.hash, t.status, t.plan) for t in trials} == {
            label: (h, "done", None) for label, h in OLD_HASHES.items()
        }
        assert all(len(store.epochs(t.id)) == 2 for t in trials)
        report = study_report(store, "old")
        assert [v["label"] for v in report["variants"]] == ["sgd", "adam"]
        assert all(v["n"] == 1 for v in report["variants"])
    raw = sqlite3.connect(old_store)
    try:
        assert [row[0] for row in raw.execute("SELECT version FROM trainlab_schema ORDER BY version")] == [1, 2]
    finally:
        raw.close()


def test_the_same_study_finds_its_trials_and_trains_the_pending_ones(old_store: Path, tmp_path: Path) -> None:
    study = spec.load(FIXTURES / "store-v1-study.toml")
    assert {t.label: t.hash for t in study.trials()} == OLD_HASHES  # trial identity is stable
    with Store.open(old_store) as store:
        summary = run_local(study, store, cache=DataCache())
        assert summary.ran == {} and summary.skipped_done == 2
        later_file = tmp_path / "later.toml"
        later_file.write_text((FIXTURES / "store-v1-study.toml").read_text().replace('name = "old"', 'name = "later"'))
        later = run_local(spec.load(later_file), store, cache=DataCache())
        assert later.ran == {"done": 2}
        record = store.study("later")
        assert record is not None
        plans = [t.plan for t in store.trials(record.id)]
        assert all(p is not None and p["step"] == "population" and p["members"] == 2 for p in plans)
