"""The driver process meets faults: SIGKILL at random moments again and again, Ctrl-C, and a
second `trainlab run` on the same study and store at the same time.

Whatever happens, nothing finished is lost or changed, no trial or epoch is duplicated, no claim
is left stuck, and the final results equal those of an uninterrupted run.

How the tests avoid timing assumptions (the machine may be loaded): progress is watched through
what the store has committed (or the lines a run prints after each commit), never through
sleeps; the SIGKILL runs wait an extra 0.1 s before each epoch's commit, so that a kill aimed
after a given epoch lands near it even when the test process is descheduled for a while; and the concurrent runs meet at a barrier inside the
real command before either trains, so that they overlap however the scheduler treats them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from factories import tiny_study_tables, write_study
from helpers import make_npz

from trainlab.store import Store

EPOCHS = 8
TRIALS = 4  # two variants x two seeds
TOTAL = TRIALS * EPOCHS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL and SIGINT")


def start(
    study: Path, store: Path, *options: str, quiet: bool = True, prefix: tuple[str, ...] = (), group: bool = False
) -> subprocess.Popen[str]:
    """`trainlab run` as a user runs it; stderr goes to a file so that no pipe can fill and stall it."""
    # One thread per process: on a busy 2-core machine two threads per tiny model spin waiting for
    # each other and an epoch takes ten times longer; what is tested here does not depend on it.
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(study.parent / "cache"), "OMP_NUM_THREADS": "1"}
    command = [
        *(prefix or ("-m", "trainlab.cli")),
        "run",
        study.name,
        "--store",
        str(store),
        "--format",
        "none",
        *options,
    ]
    if quiet:
        command.append("--quiet")
    err = open(study.parent / f"stderr-{time.monotonic_ns()}.txt", "w+")  # noqa: SIM115 - closed in stderr_of
    proc = subprocess.Popen(
        [sys.executable, *command],
        cwd=study.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        start_new_session=group,
        preexec_fn=_default_sigint,
    )
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a test runner started as a shell's background job ignores
    SIGINT, and a child would inherit that (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stderr_of(proc: subprocess.Popen[str]) -> str:
    """What the process wrote to stderr (read once it has ended)."""
    err = proc.err_file  # type: ignore[attr-defined]
    if err.closed:
        return open(err.name).read()
    err.seek(0)
    text = err.read()
    err.close()
    return text


def query(store: Path, sql: str) -> list[tuple[Any, ...]] | None:
    """Rows from a read-only connection; None while the store is being created or is locked."""
    if not store.exists():
        return None
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.Error:
        return None


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 300) -> bool:
    """Poll ``condition`` until it holds (True) or the process ends or the time is up (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.01)
    return False


def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def count(store: Path, sql: str) -> int:
    """A count from the store; 0 while it cannot be read."""
    rows = query(store, sql)
    return int(rows[0][0]) if rows else 0


def epochs_written(store: Path) -> int:
    """Epoch rows committed so far (0 before the store exists); retried while the file is busy."""
    if not store.exists():
        return 0
    for _ in range(100):
        rows = query(store, "select count(*) from epochs")
        if rows is not None:
            return int(rows[0][0])
        time.sleep(0.1)
    raise AssertionError(f"{store} stayed unreadable for 10 s")


def finished(store: Path) -> dict[str, dict[str, Any]]:
    """Everything recorded for each finished trial, by trial hash: what must never change again."""
    if not store.exists():
        return {}
    out = {}
    with Store.open(store) as db:
        for study in db.studies():
            for trial in db.trials(study.id):
                if trial.status in ("pending", "running"):
                    continue
                weights = db.artifact(trial.id, "weights")
                out[trial.hash] = {
                    "status": trial.status,
                    "attempts": trial.attempts,
                    "finished": trial.finished,
                    "result": trial.result,
                    "epochs": [(e.epoch, e.metrics) for e in db.epochs(trial.id)],
                    "weights": hashlib.sha256(weights.data).hexdigest() if weights else None,
                }
    return out


def check_store(store: Path, epochs: int = EPOCHS, trials: int = TRIALS) -> None:
    """No duplicate trial, no duplicate or missing epoch, no weights or claim where none belongs."""
    with Store.open(store) as db:
        study = db.study("tiny")
        assert study is not None and len(db.studies()) == 1
        rows = db.trials(study.id)
        assert len(rows) == trials and len({t.hash for t in rows}) == trials, [t.hash for t in rows]
        assert len({(t.label, t.seed) for t in rows}) == trials
        for trial in rows:
            numbers = [e.epoch for e in db.epochs(trial.id)]
            assert numbers == list(range(len(numbers))) and len(numbers) <= epochs, (trial.label, trial.seed, numbers)
            if trial.status == "done":
                assert len(numbers) == epochs and db.artifact(trial.id, "weights") is not None
                assert db.artifact(trial.id, "checkpoint") is None
            else:
                assert db.artifact(trial.id, "weights") is None
                checkpoint = db.artifact(trial.id, "checkpoint")
                # A checkpoint is written every few seconds, so it may lag the epoch rows, never lead them.
                assert (checkpoint.epoch if checkpoint else -1) <= len(numbers) - 1, "checkpoint ahead of the epochs"
    raw = query(store, "select trial_id, epoch, count(*) from epochs group by trial_id, epoch having count(*) > 1")
    assert raw == [], f"duplicated epoch rows: {raw}"


def outcome(store: Path) -> dict[str, tuple[list[dict[str, float]], dict[str, Any]]]:
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


def make_study(folder: Path, *, n_train: int = 1200, epochs: int = EPOCHS) -> Path:
    make_npz(folder / "tiny.npz", n_train=n_train)
    return write_study(folder / "tiny.toml", tiny_study_tables(epochs=epochs))


ONE_AT_A_TIME = ("--workers", "1", "--population", "1", "--checkpoint-every", "0")

SLOW = """
import sys, time
from trainlab import cli
from trainlab.store import Store

original = Store.record_epoch

def record_epoch(self, *args, **kwargs):
    # Each epoch takes at least 0.1 s more before it is committed, in the driver and in any worker
    # process (a spawned worker imports this module again): a kill aimed after a given epoch lands
    # near it even when the test process is descheduled for a while on a loaded machine. Sleeping
    # changes no number.
    time.sleep(0.1)
    return original(self, *args, **kwargs)

Store.record_epoch = record_epoch
if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study every test here runs, each into its own store (trial hashes include the data's path)."""
    return make_study(tmp_path_factory.mktemp("kill"))


@pytest.fixture(scope="module")
def reference(study: Path) -> dict[str, Any]:
    """The uninterrupted run every faulty run must end up equal to."""
    folder = study.parent
    proc = start(study, folder / "reference.db", *ONE_AT_A_TIME)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    assert epochs_written(folder / "reference.db") == TOTAL
    return outcome(folder / "reference.db")


@pytest.mark.parametrize("options", [ONE_AT_A_TIME, ()], ids=["one-at-a-time", "default"])
def test_repeated_sigkill_loses_nothing_and_changes_nothing(
    study: Path, options: tuple[str, ...], reference: dict[str, Any]
) -> None:
    store = study.parent / f"killed-{len(options)}.db"
    rng = random.Random(7)
    # Kill points spread over the whole study (so that later kills hit runs that find finished
    # trials in the store), as epoch counts: 6, 12, 14 and 22 of 32 with this seed.
    targets = sorted(rng.sample(range(2, TOTAL - 1), 4))
    kills, rounds = 0, 0
    kept: dict[str, dict[str, Any]] = {}
    slow = study.parent / "slow.py"
    slow.write_text(SLOW)
    while rounds <= len(targets) and rounds < 12:
        before = epochs_written(store)
        if before >= TOTAL:
            break
        proc = start(study, store, *options, prefix=(str(slow),))
        if rounds == 0:
            # The first kill lands while the run claims, measures or trains its first epoch:
            # at a random moment after it holds a trial.
            wait_for(lambda: count(store, "select count(*) from trials where status = 'running'") > 0, proc)
        else:
            # Later kills: once the store has the target's epochs (or one more than the last run
            # left, if an overshoot passed it), plus a random fraction of the next epoch.
            target = max(targets[rounds - 1], before + 1)
            wait_for(lambda target=target: epochs_written(store) >= target, proc)
        rounds += 1
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), stderr_of(proc)
        stderr_of(proc)
        after = epochs_written(store)
        assert after >= before, "a kill lost epochs that had been written"
        if store.exists():
            check_store(store)
            now = finished(store)
            for key, record in kept.items():
                assert now.get(key) == record, "a finished trial changed after a kill"
            kept = now
    assert kills >= 3, f"only {kills} kills in {rounds} rounds"
    assert kept, "some trial finished before a later kill: the check that finished trials stay intact ran"

    proc = start(study, store, *options)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    assert epochs_written(store) == TOTAL
    check_store(store)
    now = finished(store)
    assert all(now[key] == record for key, record in kept.items()), "a finished trial changed on resume"
    if options == ONE_AT_A_TIME:
        # Resumed with the same scheduling: bit for bit what the uninterrupted run gave.
        assert outcome(store) == reference
    else:
        assert_close(outcome(store), reference)
    with Store.open(store) as db:
        attempts = [t.attempts for t in db.trials(db.study("tiny").id)]  # type: ignore[union-attr]
    assert max(attempts) >= 2, "some trial must have been resumed"
    print(
        f"{options or 'default'}: {kills} SIGKILLs in {rounds} rounds, attempts per trial {attempts}, results lost: 0"
    )


def test_ctrl_c_keeps_every_epoch_releases_the_claim_and_resumes(study: Path, reference: dict[str, Any]) -> None:
    store = study.parent / "interrupted.db"
    proc = start(study, store, *ONE_AT_A_TIME, quiet=False)
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:  # each epoch line is printed after its epoch is committed
        if line.lstrip().startswith("epoch "):
            printed.append(line)
            if len(printed) == EPOCHS + 3:  # the first trial done, the second in its fourth epoch
                proc.send_signal(signal.SIGINT)
                break
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, (out, stderr_of(proc))
    err = stderr_of(proc)
    assert "interrupted; finished epochs are kept. Run the same command again to resume." in err
    assert "Traceback" not in err, err
    epochs_seen = len(printed) + sum(line.lstrip().startswith("epoch ") for line in out.splitlines())

    with Store.open(store) as db:
        trials = db.trials(db.study("tiny").id)  # type: ignore[union-attr]
        assert not [t for t in trials if t.status == "running"], "a claim was left behind"
        assert [t.status for t in trials].count("done") >= 1
        held = [t for t in trials if t.status == "pending" and db.epochs(t.id)]
        assert held, "the trial in progress must be pending again, with its epochs"
        assert all(t.owner is None for t in held)
    # Every epoch reported finished is in the store (one more if Ctrl-C fell between a commit and its line).
    assert epochs_seen <= epochs_written(store) <= epochs_seen + 1
    check_store(store)
    kept = finished(store)

    proc = start(study, store, *ONE_AT_A_TIME)
    assert proc.wait(timeout=600) == 0, stderr_of(proc)
    stderr_of(proc)
    check_store(store)
    assert all(finished(store)[key] == record for key, record in kept.items())
    assert outcome(store) == reference, "the interrupted and resumed study equals the uninterrupted one"


@pytest.mark.parametrize("to_group", [False, True], ids=["driver-alone", "whole-group"])
def test_ctrl_c_reaches_pool_workers(tmp_path: Path, to_group: bool) -> None:
    """SIGINT to the `trainlab run` process only, or to its whole process group as a terminal's
    Ctrl-C sends it (then each worker gets it twice: from the terminal and passed on): the worker
    processes give their trials back too, so nothing stays claimed by a process that is gone."""
    study = tmp_path / "tiny.toml"
    make_npz(tmp_path / "tiny.npz", n_train=3000)
    write_study(study, tiny_study_tables(epochs=40, seeds=[0, 1, 2, 3]))
    store = tmp_path / "pool.db"
    proc = start(study, store, "--workers", "2", "--population", "1", group=to_group)
    # The trials held at the moment of Ctrl-C, read in the same query that shows both workers
    # holding one (a worker may give its trial back as soon as the signal arrives).
    held: dict[int, str] = {}

    def both_workers_hold_a_trial() -> bool:
        rows = query(store, "select id, owner from trials where status = 'running'") or []
        held.clear()
        held.update(rows)
        return len(set(held.values())) == 2

    assert wait_for(both_workers_hold_a_trial, proc), "both workers must hold a trial"
    assert len(held) == 2, held  # population 1: one trial per worker
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=180) == 130, stderr_of(proc)
    err = stderr_of(proc)
    assert "Traceback" not in err and "Run the same command again to resume" in err, err
    # Every claim given back: the store reaches that state within a bounded time (it has once the
    # command has exited; the poll only guards against reading a file another process still writes).
    no_claims = "select count(*) from trials where status = 'running' or (status = 'pending' and owner is not null)"
    assert poll(lambda: query(store, no_claims) == [(0,)], timeout=30), query(
        store, "select id, status, owner from trials"
    )
    statuses = dict(query(store, "select id, status from trials") or [])
    assert all(statuses[i] in ("pending", "done") for i in held), "a trial in progress was not given back"


BARRIER = """
import sqlite3, sys, time
from trainlab import cli, executors

store = sys.argv[sys.argv.index("--store") + 1]
original = executors.run_population

def run_population(trials, *args, **kwargs):
    # Hold the first claim until the other run holds one too: the two runs overlap for sure.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with sqlite3.connect(store, timeout=30) as db:
            if db.execute("select count(distinct owner) from trials where status = 'running'").fetchone()[0] >= 2:
                break
        time.sleep(0.01)
    executors.run_population = original
    return original(trials, *args, **kwargs)

executors.run_population = run_population
sys.exit(cli.main(sys.argv[1:]))
"""


def test_two_runs_of_one_study_at_once_train_each_trial_once(study: Path, reference: dict[str, Any]) -> None:
    store = study.parent / "shared.db"
    barrier = study.parent / "barrier.py"
    barrier.write_text(BARRIER)
    runs = [start(study, store, "--workers", "1", prefix=(str(barrier),)) for _ in range(2)]
    for proc in runs:
        assert proc.wait(timeout=600) == 0, stderr_of(proc)
        assert "Traceback" not in stderr_of(proc)
    check_store(store)
    with Store.open(store) as db:
        trials = db.trials(db.study("tiny").id)  # type: ignore[union-attr]
        assert [t.attempts for t in trials] == [1] * TRIALS, "a trial was claimed twice"
        assert len({t.owner.rsplit(":", 2)[1] for t in trials if t.owner}) == 2, "both runs trained"
    assert epochs_written(store) == TOTAL
    assert_close(outcome(store), reference)
