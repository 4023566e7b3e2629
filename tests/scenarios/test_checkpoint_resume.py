"""Checkpoints every few seconds, epochs recorded every epoch: resuming from a checkpoint older
than the newest epoch re-does the epochs after it and gives exactly the uninterrupted results."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from factories import load_study, tiny_study_tables
from helpers import make_npz

from trainlab import executors, spec
from trainlab.executors import Silent, run_local
from trainlab.store import CHECKPOINT, Store, TrialRecord


def history(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Per trial hash: its recorded epochs without timings, then its result without timings."""
    out = {}
    study = store.study("tiny")
    assert study is not None
    for trial in store.trials(study.id):
        assert trial.status == "done", trial.error
        rows = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)]
        result = {k: v for k, v in (trial.result or {}).items() if k not in ("seconds_per_epoch", "best")}
        out[trial.hash] = [*rows, result]
    return out


class StopAfter(Silent):
    """Interrupts training (as Ctrl-C does) once epoch ``epoch`` of the trial labelled ``label`` is recorded."""

    def __init__(self, label: str, epoch: int) -> None:
        self.label, self.epoch = label, epoch

    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None:
        if (trial.label, epoch) == (self.label, self.epoch):
            raise KeyboardInterrupt


@pytest.fixture
def study(tmp_path: Path) -> spec.Study:
    make_npz(tmp_path / "tiny.npz")
    return load_study(tmp_path, tiny_study_tables(epochs=5, seeds=[0]), name="tiny")


@pytest.mark.parametrize("population", [1, 2])
def test_resume_from_an_older_checkpoint_redoes_later_epochs_identically(
    tmp_path: Path, study: spec.Study, monkeypatch: pytest.MonkeyPatch, population: int
) -> None:
    with Store.open(tmp_path / "reference.db") as store:
        run_local(study, store, population=population, checkpoint_every=0)
        reference = history(store)

    # A clock ticking once per decision: with 1.5 s between checkpoints, a unit checkpoints its
    # epochs 1 and 3. Adam (whose moments a resume must restore) is interrupted after epoch 2.
    ticks: Iterator[float] = itertools.count()
    monkeypatch.setattr(executors, "_monotonic", lambda: float(next(ticks)))
    with Store.open(tmp_path / "resumed.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_local(study, store, population=population, checkpoint_every=1.5, reporter=StopAfter("adam", 2))
        study_id = store.study("tiny").id  # type: ignore[union-attr]
        adam = next(t for t in store.trials(study_id) if t.label == "adam")
        saved = store.artifact(adam.id, CHECKPOINT)
        assert saved is not None and saved.epoch == 1
        assert [e.epoch for e in store.epochs(adam.id)] == [0, 1, 2]
        monkeypatch.undo()
        run_local(study, store, population=population)
        assert max(t.attempts for t in store.trials(study_id)) == 2
        assert history(store) == reference
