"""The seam trackers listen at: the Recorder tells listeners of each event once the store holds it,
and the commands teach the tracking options."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from factories import load_study, tiny_study_tables, with_tiny_npz

from trainlab import executors
from trainlab.store import Store


def test_listeners_hear_each_event_after_the_store_holds_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    with_tiny_npz(tmp_path)
    study = load_study(tmp_path, tiny_study_tables(epochs=3))
    heard: list[tuple[str, str, int | None, int]] = []

    with Store.open(tmp_path / "s.db") as store:

        class Listener:
            def recorded(self, trial: Any, event: Any) -> None:
                epoch = getattr(event, "epoch", None)
                held = len(store.epochs(trial.id))  # what the store holds when the listener hears it
                heard.append((trial.hash, type(event).__name__, epoch, held))

        @contextmanager
        def factory() -> Iterator[Listener]:
            yield Listener()

        with executors.listening(factory):
            executors.run_local(study, store)
        with executors.listening(factory):
            pass
        executors.run_local(study, store)  # after the block: nobody listens

        trials = store.trials(store.study("tiny").id)  # type: ignore[union-attr]
    assert len(heard) == len(trials) * 4
    for trial in trials:
        mine = [h[1:] for h in heard if h[0] == trial.hash]
        assert mine == [("EpochEnded", 0, 1), ("EpochEnded", 1, 2), ("EpochEnded", 2, 3), ("TrialEnded", None, 3)]


def test_help_teaches_the_destinations() -> None:
    def help_of(*command: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "trainlab.cli", *command, "--help"], capture_output=True, text=True, check=True
        ).stdout

    assert "--track" in help_of("run") and "tensorboard:DIR" in help_of("run")
    text = help_of("track")
    for words in ("mlflow:URI", "tensorboard:DIR", "step = epoch", "docs/TRACKING.md", "never a second run"):
        assert words in text, words
    assert "--logdir" in help_of("tensorboard")
