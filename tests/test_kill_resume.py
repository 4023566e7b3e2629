"""SIGKILL at random moments, again and again: nothing finished is lost, nothing is duplicated,
and the final results equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import STUDY, make_npz
from trainlab.store import Store


def start(study: Path, store: Path, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(study.parent / "cache")}
    return subprocess.Popen([sys.executable, "-m", "trainlab.cli", "run", study.name, "--store", str(store), "--quiet",
                             "--format", "none", *options], cwd=study.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def epochs_written(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("select count(*) from epochs").fetchone()[0]
    except sqlite3.Error:
        return 0


def outcome(store: Path) -> dict[str, tuple[list[dict[str, float]], dict]]:
    """Per trial hash: the epoch metrics without timings, and the result without timings."""
    out = {}
    with Store.open(store) as db:
        study = db.study("tiny")
        assert study is not None
        for trial in db.trials(study.id):
            assert trial.status == "done", (trial.label, trial.status, trial.error)
            epochs = db.epochs(trial.id)
            assert [e.epoch for e in epochs] == list(range(len(epochs)))
            metrics = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in epochs]
            # Timings and how the trial was scheduled (alone or in a population) are not results.
            result = {k: v for k, v in (trial.result or {}).items() if k not in ("seconds_per_epoch", "population")}
            result["best"] = {k: v for k, v in result["best"].items() if k != "seconds"}
            out[trial.hash] = (metrics, json.loads(json.dumps(result)))
    return out


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal up to float rounding: a resumed trial may continue in a population or alone."""
    assert got.keys() == want.keys()
    for key in want:
        (ge, gr), (we, wr) = got[key], want[key]
        assert len(ge) == len(we)
        for a, b in zip(ge, we):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
        assert gr["best_epoch"] == wr["best_epoch"] and gr["epochs"] == wr["epochs"]
        assert gr["test"] == pytest.approx(wr["test"], rel=1e-5, abs=1e-6)


# One at a time with a checkpoint every epoch: every kill resumes from a checkpoint. Default:
# checkpoints every 10 s, so most kills here restart their trials from their first epoch.
@pytest.mark.parametrize("options", [("--workers", "1", "--population", "1", "--checkpoint-every", "0"), ()],
                         ids=["one-at-a-time", "default"])
def test_repeated_sigkill_loses_nothing_and_changes_nothing(tmp_path: Path, options: tuple[str, ...]) -> None:
    make_npz(tmp_path / "tiny.npz", n_train=3000)
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY.format(epochs=6))

    reference = tmp_path / "reference.db"
    proc = start(study, reference, *options)
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    total = epochs_written(reference)
    assert total == 4 * 6

    store = tmp_path / "killed.db"
    rng = random.Random(7)
    kills = 0
    for _ in range(8):
        before = epochs_written(store)
        if before >= total:
            break
        proc = start(study, store, *options)
        target = before + rng.randint(1, 4)
        deadline = time.monotonic() + 120
        # kill after a random number of new epochs, plus a random fraction of the next one
        while epochs_written(store) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        after = epochs_written(store)
        assert after >= before, "a kill lost epochs that had been written"
    assert kills >= 3

    proc = start(study, store, *options)
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    assert epochs_written(store) == total
    if options:
        # Resumed with the same scheduling: bit for bit what the uninterrupted run gave.
        assert outcome(store) == outcome(reference)
    else:
        assert_close(outcome(store), outcome(reference))
    with Store.open(store) as db:
        attempts = [t.attempts for t in db.trials(db.study("tiny").id)]  # type: ignore[union-attr]
    assert max(attempts) >= 2, "some trial must have been resumed"
