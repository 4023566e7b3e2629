"""A study of one's own model (a factory) and data (a CSV table) survives SIGKILL: run again, it
resumes the trial cut off from its checkpoint and ends with exactly the results of an
uninterrupted run; the factory is imported again by the new process from the study's folder.
So does a study run from Python whose model is a function of the script itself (``__main__``,
as a notebook's cell defines it), which the script gives again when it is run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factories import write_study
from helpers import FIXTURES, ROOT
from test_kill_resume import check_store, epochs_written, outcome, start, stderr_of, wait_for

from trainlab.store import Store

EPOCHS = 10
TRIALS = 2

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("own")
    for item in (FIXTURES / "byo").iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, folder / item.name)
    tables = {
        "study": {"name": "tiny", "seeds": [0]},
        "data": {"path": "table.csv", "target": "kind", "features": ["a", "b"], "split": {"kind": "random"}},
        "model": {"factory": "mypkg.models:build", "params": {"width": 8}},
        "train": {"epochs": EPOCHS, "batch_size": 4},
        "compare": [{"label": "sgd"}, {"label": "adam", "optimizer": "adam"}],
    }
    return write_study(folder / "tiny.toml", tables)


ONE_AT_A_TIME = ("--workers", "1", "--population", "1", "--checkpoint-every", "0")


def kill_halfway_through_the_first_trial(proc: subprocess.Popen[str], store: Path) -> None:
    """SIGKILL ``proc`` once half the first trial's epochs are in ``store``; the store then holds
    some of the study's epochs, not all."""
    wait_for(lambda: epochs_written(store) >= EPOCHS // 2, proc)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr_of(proc)
    stderr_of(proc)
    assert 0 < epochs_written(store) < EPOCHS * TRIALS


def test_a_factory_study_killed_mid_trial_resumes_to_the_uninterrupted_results(study: Path) -> None:
    folder = study.parent
    proc = start(study, folder / "reference.db", *ONE_AT_A_TIME)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    reference = outcome(folder / "reference.db")
    assert len(reference) == TRIALS

    store = folder / "killed.db"
    kill_halfway_through_the_first_trial(start(study, store, *ONE_AT_A_TIME), store)
    check_store(store, epochs=EPOCHS, trials=TRIALS)

    proc = start(study, store, *ONE_AT_A_TIME)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    check_store(store, epochs=EPOCHS, trials=TRIALS)
    assert outcome(store) == reference  # same scheduling: bit for bit
    with Store.open(store) as db:
        attempts = sorted(t.attempts for t in db.trials(db.study("tiny").id))  # type: ignore[union-attr]
    assert attempts[-1] >= 2, "the trial cut off was resumed"


SCRIPT = """import json
import sys

import trainlab as tl
from torch import nn


class Residual(nn.Module):
    def __init__(self, inputs, outputs, width):
        super().__init__()
        self.project = nn.Linear(inputs, width)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Linear(width, outputs)

    def forward(self, x):
        h = self.project(x)
        return self.head(h + self.block(h))


def build(input_shape, outputs, width=8):
    return Residual(input_shape[0], outputs, width)


tables = json.loads(sys.argv[1])
tl.Study.from_dict(tables, model=build).run(store=sys.argv[2], progress=False, population=1, checkpoint_every=0)
"""


def run_script(folder: Path, store: Path) -> subprocess.Popen[str]:
    """The script run as a user runs it: ``python script.py``; stderr to a file (see :func:`stderr_of`)."""
    tables = {
        "study": {"name": "tiny", "seeds": [0]},
        "data": {"path": "table.csv", "target": "kind", "features": ["a", "b"], "split": {"kind": "random"}},
        "model": {"params": {"width": 8}},
        "train": {"epochs": EPOCHS, "batch_size": 4},
        "compare": [{"label": "sgd"}, {"label": "adam", "optimizer": "adam"}],
    }
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    err = open(folder / f"stderr-{time.monotonic_ns()}.txt", "w+")  # noqa: SIM115 - closed in stderr_of
    proc = subprocess.Popen(
        [sys.executable, "script.py", json.dumps(tables), str(store)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
    )  # fmt: skip
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def test_a_script_defined_model_killed_mid_trial_resumes_to_the_uninterrupted_results(study: Path) -> None:
    folder = study.parent
    (folder / "script.py").write_text(SCRIPT)
    proc = run_script(folder, folder / "script-reference.db")
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    reference = outcome(folder / "script-reference.db")
    assert len(reference) == TRIALS

    store = folder / "script-killed.db"
    kill_halfway_through_the_first_trial(run_script(folder, store), store)

    proc = run_script(folder, store)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    check_store(store, epochs=EPOCHS, trials=TRIALS)
    assert outcome(store) == reference
    with Store.open(store) as db:
        trials = db.trials(db.study("tiny").id)  # type: ignore[union-attr]
    assert max(t.attempts for t in trials) >= 2, "the trial cut off was resumed"
    assert {json.loads(t.spec_json)["model"]["factory"] for t in trials} == {"__main__:build"}
