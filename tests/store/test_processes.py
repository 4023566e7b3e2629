"""The store shared by real processes: concurrent workers, and workers killed with SIGKILL.

The workers are this file run as a script (``python test_store_processes.py MODE ...``),
so each is a fresh interpreter with its own connection, as in real use.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUDY = "shared"
N_TRIALS = 40
N_WORKERS = 4
EPOCHS_PER_TRIAL = 3
KILL_EPOCHS = 100_000
CHECKPOINT_SIZE = 256 * 1024

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL and pids")


# --- workers (run in child processes) ---------------------------------------------------------


def run_worker(path: str, go: str, workers: int) -> None:
    """Once the file ``go`` exists, create-or-join the study, then claim and finish trials
    until none is left.

    Prints ``ready`` when it waits for ``go`` (so all workers start together), then the ids
    of the trials it ran as one JSON list. After its first claim it waits until every worker
    holds a trial at the same moment: the workers overlap by construction, not by the luck of
    the scheduler (on a loaded machine one worker could otherwise finish every trial before the
    others start).
    """
    from trainlab.store import NewTrial, Store, make_owner

    owner = make_owner()
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    ran: list[int] = []
    with Store.open(path) as store:
        study_id = store.ensure_study(STUDY, "{}", "spec", None)
        store.add_trials(study_id, [NewTrial(f"t{i:03d}", f"trial {i}", {"i": i}, i, "{}") for i in range(N_TRIALS)])
        first = True
        while (trial := store.claim_next(study_id, owner)) is not None:
            deadline = time.monotonic() + 120
            while first and time.monotonic() < deadline:
                if len({t.owner for t in store.trials(study_id, status="running")}) >= workers:
                    break
                time.sleep(0.005)
            first = False
            for epoch in range(EPOCHS_PER_TRIAL):
                time.sleep(0.002)  # the training, during which other workers get the lock
                store.record_epoch(trial.id, owner, epoch, {"loss": 1.0 / (epoch + 1)}, os.urandom(2048))
            store.finish_trial(trial.id, owner, "done", result={"owner": owner}, weights=b"w")
            ran.append(trial.id)
    print(json.dumps(ran), flush=True)


def train_worker(path: str, study_id: int) -> None:
    """Claim the next trial and train it from its checkpoint, one line per committed epoch.

    Prints ``claimed <trial id> <attempts> <first epoch>`` then ``<epoch>`` after each
    commit, and ``finished`` if it reaches the end. Every epoch's checkpoint is the epoch
    number repeated, so a test can tell which epoch a checkpoint belongs to.
    """
    from trainlab.store import CHECKPOINT, Store, make_owner

    owner = make_owner()
    with Store.open(path) as store:
        trial = store.claim_next(study_id, owner)
        assert trial is not None, "nothing to claim"
        checkpoint = store.artifact(trial.id, CHECKPOINT)
        start = 0 if checkpoint is None else _checkpoint_epoch(checkpoint.data) + 1
        print(f"claimed {trial.id} {trial.attempts} {start}", flush=True)
        last = int(os.environ.get("TRAIN_EPOCHS", KILL_EPOCHS))
        for epoch in range(start, last):
            state = epoch.to_bytes(4, "little") * (CHECKPOINT_SIZE // 4)
            store.record_epoch(trial.id, owner, epoch, {"loss": float(epoch), "attempt": trial.attempts}, state)
            print(epoch, flush=True)
        store.finish_trial(trial.id, owner, "done", result={"epochs": last}, weights=b"final")
        print("finished", flush=True)


def _checkpoint_epoch(data: bytes) -> int:
    epoch = int.from_bytes(data[:4], "little")
    assert data == epoch.to_bytes(4, "little") * (len(data) // 4), "checkpoint bytes are mixed up"
    return epoch


# --- tests ------------------------------------------------------------------------------------


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def test_concurrent_workers_run_every_trial_exactly_once(tmp_path: Path) -> None:
    from trainlab.store import Store

    path = tmp_path / "store.db"  # not created yet: the workers race to create it too
    go = tmp_path / "go"
    workers = [_spawn("run", str(path), str(go), str(N_WORKERS)) for _ in range(N_WORKERS)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    go.touch()
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert err == "", err
    per_worker = [json.loads(out) for out, _ in outputs]
    ran = [trial_id for trial_ids in per_worker for trial_id in trial_ids]
    assert all(per_worker), f"every worker held a trial at once, so every worker ran one: {per_worker}"
    assert len(ran) == N_TRIALS and len(set(ran)) == N_TRIALS, sorted(ran)

    with Store.open(path) as store:
        study = store.study(STUDY)
        assert study is not None
        trials = store.trials(study.id)
        assert sorted(t.id for t in trials) == sorted(ran)
        assert {(t.status, t.attempts) for t in trials} == {("done", 1)}
        assert all(t.result == {"owner": t.owner} for t in trials)
        assert all([e.epoch for e in store.epochs(t.id)] == list(range(EPOCHS_PER_TRIAL)) for t in trials)
        assert store.status_counts(study.id)["done"] == N_TRIALS


def test_sigkilled_worker_loses_nothing_and_its_trial_resumes(tmp_path: Path) -> None:
    from trainlab.store import CHECKPOINT, WEIGHTS, NewTrial, Store

    path = tmp_path / "store.db"
    with Store.open(path) as store:
        study_id = store.ensure_study("killed", "{}", "spec", None)
        store.add_trials(study_id, [NewTrial("first", "a", {}, 0, "{}"), NewTrial("second", "b", {}, 1, "{}")])
        trial_id = store.trials(study_id)[0].id

    rng = random.Random(20240613)
    committed = -1
    kills = 5
    for attempt in range(1, kills + 1):
        worker = _spawn("train", str(path), str(study_id))
        assert worker.stdout is not None and worker.stderr is not None
        claimed = worker.stdout.readline().split()
        assert claimed == ["claimed", str(trial_id), str(attempt), str(committed + 1)], worker.stderr.read()
        first = worker.stdout.readline()
        assert first.strip().isdigit(), first
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(worker.pid, signal.SIGKILL)
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == -signal.SIGKILL
        printed = [int(line) for line in [first, *out.splitlines()] if line.strip().isdigit()]
        last_printed = printed[-1]

        with Store.open(path) as store:  # runs quick_check: the file must be intact
            epochs = store.epochs(trial_id)
            numbers = [e.epoch for e in epochs]
            assert numbers == list(range(len(numbers))), numbers
            assert numbers[-1] >= last_printed, (numbers[-1], last_printed)
            assert all(e.metrics["loss"] == e.epoch for e in epochs)
            checkpoint = store.artifact(trial_id, CHECKPOINT)
            assert checkpoint is not None and checkpoint.epoch == numbers[-1]
            assert _checkpoint_epoch(checkpoint.data) == numbers[-1]
            trial = store.trial(trial_id)
            assert trial is not None and (trial.status, trial.attempts) == ("running", attempt)
            assert trial.owner is not None and f":{worker.pid}:" in trial.owner
            assert store.trials(study_id)[1].status == "pending"
            committed = numbers[-1]

    final_epochs = committed + 20
    worker = _spawn("train", str(path), str(study_id), env={"TRAIN_EPOCHS": str(final_epochs)})
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert out.splitlines()[0] == f"claimed {trial_id} {kills + 1} {committed + 1}"
    assert out.splitlines()[-1] == "finished"

    with Store.open(path) as store:
        epochs = store.epochs(trial_id)
        assert [e.epoch for e in epochs] == list(range(final_epochs))
        assert all(e.metrics["loss"] == e.epoch for e in epochs)
        trial = store.trial(trial_id)
        assert trial is not None and (trial.status, trial.attempts) == ("done", kills + 1)
        assert store.artifact(trial_id, CHECKPOINT) is None
        assert store.artifact(trial_id, WEIGHTS).data == b"final"  # type: ignore[union-attr]


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    if mode == "run":
        run_worker(arguments[0], arguments[1], int(arguments[2]))
    elif mode == "train":
        train_worker(arguments[0], int(arguments[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
