"""A tracked run killed with SIGKILL and run again: exactly one MLflow run per trial, every epoch
logged once with the store's values (the killed run's epochs that the resumed run re-did are
not logged again; their ``seconds`` are the first attempt's)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from factories import tiny_study_tables, write_study
from test_mlflow_backend import assert_runs_match_store, runs_of

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


def epochs_in(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("select count(*) from epochs").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


def test_a_killed_tracked_run_resumes_in_the_same_runs(
    study_file: Path, mlflow_uri: str, trainlab: Callable[..., int], tmp_path: Path
) -> None:
    write_study(study_file, tiny_study_tables(epochs=8))
    store = tmp_path / "s.db"
    command = [sys.executable, "-m", "trainlab.cli", "run", study_file.name, "--store", str(store)]
    command += ["--format", "none", "--quiet", "--workers", "1", "--track", f"mlflow:{mlflow_uri}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Killed inside the second population (two trials of 8 epochs each): the first population's
    # trials finished, whether or not their last epochs reached MLflow before the kill.
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda: epochs_in(store) >= 19, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert epochs_in(store) < 32
    assert (
        trainlab(
            "run", str(study_file), "--format", "none", "--quiet", "--workers", "1", "--track", f"mlflow:{mlflow_uri}"
        )
        == 0
    )
    assert epochs_in(store) == 32
    assert_runs_match_store(mlflow_uri, store, except_metrics=("seconds",))
    _, runs = runs_of(mlflow_uri)
    assert len(runs) == 4
