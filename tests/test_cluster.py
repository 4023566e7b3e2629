"""The Ray executor: units train as tasks on a Ray cluster, the driver alone records them.

One Ray instance (2 CPUs, on this machine) serves the whole module. Faults are injected by
wrapping what the tasks run (``run_ray(worker=...)``): the wrapper runs on the worker, so it
can kill its own process or forbid it the store.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from factories import tiny_study_tables, variant, write_study
from helpers import make_npz

from trainlab import cli, spec
from trainlab.executors import EpochEnded, RunSummary, Silent, TrialEnded, UnitJob, run_local, unit_job
from trainlab.report import render, study_report
from trainlab.store import Store

# A third variant that stops early (after its second epoch) while its population trains on: a
# member whose checkpoint says "finished" before its result is reported.
STOPS = variant(
    "stops", optimizer="adam", train={"early_stopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}}
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray instance for the module; its workers see an offline, private data cache. Yields its address."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    env = {"TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(tmp_path_factory.mktemp("data-cache"))}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # before ray.init: the workers inherit it
    try:
        info = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
        yield info.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def study_file(tmp_path: Path, *, extra: Sequence[dict[str, Any]] = (), epochs: int = 4) -> Path:
    """The tiny study in ``tmp_path`` (``extra`` variants after SGD and Adam), with its data."""
    make_npz(tmp_path / "tiny.npz")
    tables = tiny_study_tables(epochs=epochs)
    tables["compare"] += extra
    return write_study(tmp_path / "tiny.toml", tables)


class Watcher(Silent):
    """Remembers what the executor reported: units started and retried, and the most units in flight."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []
        self.resumed_at: list[int] = []
        self.retried: list[tuple[list[str], int, str]] = []
        self.split: list[tuple[list[str], list[int], str]] = []
        self.running: set[int] = set()
        self.most_running_units = 0
        self.units: list[set[int]] = []

    def unit_started(self, trials: Sequence[Any], epochs: int, resumed_at: int) -> None:
        self.started.append([t.hash for t in trials])
        self.resumed_at.append(resumed_at)
        self.units.append({t.id for t in trials})
        self.running |= {t.id for t in trials}
        self.most_running_units = max(self.most_running_units, sum(bool(u & self.running) for u in self.units))

    def trial_finished(self, trial: Any, status: str, result: Any) -> None:
        self.running.discard(trial.id)

    def unit_retried(self, trials: Sequence[Any], resumed_at: int, reason: str) -> None:
        self.retried.append(([t.hash for t in trials], resumed_at, reason))

    def unit_split(self, trials: Sequence[Any], sizes: Sequence[int], reason: str) -> None:
        self.split.append(([t.hash for t in trials], list(sizes), reason))


def results(store_path: Path, name: str = "tiny") -> dict[str, dict[str, Any]]:
    """Per trial hash: status, error, epoch numbers and metrics (timings left out) and result."""
    out = {}
    with Store.open(store_path) as store:
        study = store.study(name)
        assert study is not None
        for trial in store.trials(study.id):
            epochs = store.epochs(trial.id)
            result = {k: v for k, v in (trial.result or {}).items() if k not in ("seconds_per_epoch", "population")}
            if "best" in result:
                result["best"] = {k: v for k, v in result["best"].items() if k != "seconds"}
            out[trial.hash] = {
                "label": trial.label,
                "seed": trial.seed,
                "status": trial.status,
                "error": trial.error,
                "epochs": [e.epoch for e in epochs],
                "metrics": [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in epochs],
                "result": result,
            }
    return out


def assert_same_results(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    """Equal up to float rounding (Ray's tasks use one thread, this process may use more)."""
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        assert (g["status"], g["epochs"]) == (w["status"], w["epochs"]), w["label"]
        for a, b in zip(g["metrics"], w["metrics"]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), w["label"]
        assert g["result"]["best_epoch"] == w["result"]["best_epoch"] and g["result"]["epochs"] == w["result"]["epochs"]
        assert g["result"]["stop_reason"] == w["result"]["stop_reason"]
        assert g["result"]["test"] == pytest.approx(w["result"]["test"], rel=1e-5, abs=1e-6)


def reference(study_path: Path, population: int) -> dict[str, dict[str, Any]]:
    """The results of an uninterrupted local run."""
    path = study_path.parent / "reference.db"
    with Store.open(path) as store:
        run_local(spec.load(study_path), store, population=population)
    return results(path)


def run(study_path: Path, store_name: str, **options: Any) -> tuple[RunSummary, Watcher]:
    from trainlab.cluster import run_ray

    watcher = Watcher()
    with Store.open(study_path.parent / store_name) as store:
        summary = run_ray(spec.load(study_path), store, reporter=watcher, **options)
    return summary, watcher


def trainlab(*args: str, cwd: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache"), **env_vars}
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"trainlab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_cli_ray_gives_what_local_gives(cluster: str, tiny_study: Path) -> None:
    cwd = tiny_study.parent
    ray_run = trainlab(
        "run",
        tiny_study.name,
        "--store",
        "ray.db",
        "--executor",
        "ray",
        "--address",
        cluster,
        "--population",
        "2",
        "--format",
        "json",
        cwd=cwd,
    )
    # One thread, as each Ray task has: the same arithmetic in the same order.
    trainlab(
        "run",
        tiny_study.name,
        "--store",
        "local.db",
        "--workers",
        "1",
        "--population",
        "2",
        "--format",
        "none",
        cwd=cwd,
        OMP_NUM_THREADS="1",
    )
    # With --format json the report alone is on stdout; progress and notes are on stderr.
    assert json.loads(ray_run.stdout)["trials"]["total"] == 4
    assert "training on the Ray cluster at" in ray_run.stderr and "up to 2 populations at once" in ray_run.stderr
    assert "(population of 2, eager, 1 thread)" in ray_run.stderr
    assert "this run: 4 done; already finished before: 0" in ray_run.stderr
    # Two units train at once: each epoch line names its trial.
    assert "  adam seed 1  epoch 4/4" in ray_run.stderr

    got, want = results(cwd / "ray.db"), results(cwd / "local.db")
    assert [g["status"] for g in got.values()] == ["done"] * 4
    assert all(g["epochs"] == [0, 1, 2, 3] for g in got.values())
    # Scheduled alike (the same populations), trained alike: equal to the last bit.
    assert got == want

    reports = {}
    for name in ("ray", "local"):
        with Store.open(cwd / f"{name}.db") as store:
            reports[name] = json.loads(render(study_report(store, "tiny"), "json"))
    ray_report, local_report = reports["ray"], reports["local"]
    assert ray_report.keys() == local_report.keys()
    assert ray_report["selection"]["chosen"] == local_report["selection"]["chosen"]
    for r, l in zip(ray_report["variants"], local_report["variants"], strict=True):
        assert r.keys() == l.keys() and r["label"] == l["label"] and r["n"] == l["n"] == 2
        assert r["val_accuracy"]["mean"] == pytest.approx(l["val_accuracy"]["mean"], rel=1e-5, abs=1e-6)
        assert [t["hash"] for t in r["trials"]] == [t["hash"] for t in l["trials"]]

    again = trainlab(
        "run",
        tiny_study.name,
        "--store",
        "ray.db",
        "--executor",
        "ray",
        "--address",
        cluster,
        "--format",
        "none",
        cwd=cwd,
    )
    assert "this run: nothing to run; already finished before: 4" in again.stdout


def test_killed_workers_are_retried_from_the_last_recorded_epoch(cluster: str, tmp_path: Path) -> None:
    study_path = study_file(tmp_path, extra=[STOPS], epochs=5)
    store_path = tmp_path / "ray.db"
    killed_at = 7

    def dies_on_first_attempt(job: UnitJob) -> Iterator[Any]:
        # Defined in here: a task's function travels by value, and workers cannot import this module.
        import sqlite3

        from trainlab.cluster import population_events

        def recorded_epochs(hashes: Sequence[str]) -> int:
            """Epoch rows the driver has committed for these trials (read-only; 0 while the file is busy)."""
            marks = ",".join("?" * len(hashes))
            try:
                with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5) as db:
                    return int(
                        db.execute(
                            f"select count(*) from epochs join trials on trials.id = epochs.trial_id "
                            f"where trials.hash in ({marks})",
                            tuple(hashes),
                        ).fetchone()[0]
                    )
            except sqlite3.Error:
                return 0

        for n, event in enumerate(population_events(job)):
            # Seven events in (see below which), the task dies once the driver has recorded all
            # seven: this test's worker reads the store on the same machine. The wait is bounded;
            # past it, the retries asserted below cannot match.
            if job.attempt == 0 and n == killed_at:
                deadline = time.monotonic() + 120
                while recorded_epochs(job.hashes) < killed_at and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
            yield event

    summary, watcher = run(study_path, store_path.name, population=3, worker=dies_on_first_attempt)
    assert summary.ran == {"done": 6}
    assert len(watcher.started) == 2, "two populations of three"
    # Each population's task died once, after seven recorded events. A population steps its members
    # grouped by optimizer, Adam's before SGD's, so those were: epoch 0 of adam, stops and sgd,
    # epoch 1 of the three (stops then ends: early stopping), and epoch 2 of adam. So adam goes out
    # again from epoch 3, and sgd with stops (its checkpoint says it has stopped; its end is still
    # to report) from epoch 2, as a separate unit since they start from another epoch.
    by_name = {(g["label"], g["seed"]): h for h, g in results(store_path).items()}
    want = sorted(
        item
        for seed in (0, 1)
        for item in [((by_name["adam", seed],), 3), (tuple(sorted((by_name["sgd", seed], by_name["stops", seed]))), 2)]
    )
    assert sorted((tuple(sorted(hashes)), resumed_at) for hashes, resumed_at, _ in watcher.retried) == want, (
        watcher.retried
    )
    assert all("died" in reason for _, _, reason in watcher.retried)
    got = results(tmp_path / "ray.db")
    assert_same_results(got, reference(study_path, population=3))
    stops = [g for g in got.values() if g["label"] == "stops"]
    assert all(g["epochs"] == [0, 1] for g in stops)


def test_a_population_out_of_device_memory_goes_out_again_in_halves(cluster: str, tmp_path: Path) -> None:
    """A task whose population of three runs out of device memory after its first epoch
    (torch.OutOfMemoryError in training) is not retried as a death: its trials go out again as
    populations of two and one, from their checkpoints, and end as an uninterrupted run."""
    study_path = study_file(tmp_path, extra=[STOPS])

    def runs_out_of_memory(job: UnitJob) -> Iterator[Any]:
        # Defined in here: a task's function travels by value. While it trains, training in the
        # task's process raises torch.OutOfMemoryError where a stack of more than two starts its
        # second epoch; the worker process is put back as it was after (later tests reuse it).
        import torch

        from trainlab.cluster import population_events
        from trainlab.engine import population

        train_epoch = population._train_epoch

        def tight(stack: Any, *args: Any) -> Any:
            if stack.size > 2 and args[5] == 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return train_epoch(stack, *args)

        population._train_epoch = tight
        try:
            yield from population_events(job)
        finally:
            population._train_epoch = train_epoch

    summary, watcher = run(study_path, "ray.db", population=3, worker=runs_out_of_memory)
    assert summary.ran == {"done": 6}, [(g["label"], g["error"]) for g in results(tmp_path / "ray.db").values()]
    assert watcher.retried == [], "running out of memory is not a death"
    assert sorted(sizes for _, sizes, _ in watcher.split) == [[2, 1], [2, 1]]
    assert {reason for _, _, reason in watcher.split} == {
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    }
    assert sorted(len(hashes) for hashes in watcher.started) == [1, 1, 2, 2, 3, 3]
    assert sorted(watcher.resumed_at) == [0, 0, 1, 1, 1, 1], "the parts resume after the first epoch"
    assert_same_results(results(tmp_path / "ray.db"), reference(study_path, population=3))


def test_a_trial_that_keeps_dying_fails_and_the_others_finish(cluster: str, tmp_path: Path) -> None:
    study_path = study_file(tmp_path)
    doomed = next(t.hash for t in spec.load(study_path).trials() if t.label == "adam" and t.seed == 0)

    def kills_one_trial(job: UnitJob) -> Iterator[Any]:
        from trainlab.cluster import population_events

        for event in population_events(job):
            yield event
            # Dies on three attempts: a driver that retried without bound would finish the trial.
            if doomed in job.hashes and job.attempt < 3:
                time.sleep(0.3)
                os.kill(os.getpid(), signal.SIGKILL)

    summary, watcher = run(study_path, "ray.db", population=1, max_retries=1, worker=kills_one_trial)
    assert summary.ran == {"done": 3, "failed": 1}
    assert [(hashes, reason) for hashes, _, reason in watcher.retried] == [([doomed], watcher.retried[0][2])], (
        "handed out again once (--max-retries 1), then failed"
    )
    got = results(tmp_path / "ray.db")
    assert got[doomed]["status"] == "failed"
    assert "died 2 times" in got[doomed]["error"] and "--max-retries (1)" in got[doomed]["error"]
    assert "WorkerCrashedError" in got[doomed]["error"]
    assert [g["status"] for h, g in got.items() if h != doomed] == ["done"] * 3


@pytest.mark.parametrize("where", ["in training", "in the task"])
def test_an_exception_fails_the_unit_without_retry(cluster: str, tmp_path: Path, where: str) -> None:
    study_path = study_file(tmp_path, epochs=2)
    broken = next(t.hash for t in spec.load(study_path).trials() if t.label == "sgd" and t.seed == 1)

    def raises(job: UnitJob) -> Iterator[Any]:
        from dataclasses import replace

        from trainlab.cluster import population_events

        if broken in job.hashes:
            if where == "in the task":
                raise RuntimeError("the task broke")
            job = replace(
                job, specs=tuple(replace(s, optimizer=replace(s.optimizer, name="NoSuchOptimizer")) for s in job.specs)
            )
        yield from population_events(job)

    summary, watcher = run(study_path, "ray.db", population=1, worker=raises)
    assert summary.ran == {"done": 3, "failed": 1}
    assert watcher.retried == []
    got = results(tmp_path / "ray.db")
    assert got[broken]["status"] == "failed"
    assert ("unknown optimizer 'NoSuchOptimizer'" if where == "in training" else "the task broke") in got[broken][
        "error"
    ]
    assert [g["status"] for h, g in got.items() if h != broken] == ["done"] * 3


def test_the_driver_alone_writes_the_store_epoch_by_epoch(cluster: str, tmp_path: Path) -> None:
    study_path = study_file(tmp_path)
    driver = os.getpid()

    def without_store(job: UnitJob) -> Iterator[Any]:
        """Trains with every way to the store closed in the worker process."""
        from trainlab.cluster import population_events
        from trainlab.store.sqlite import SQLiteStore

        assert os.getpid() != driver, "tasks run in worker processes"
        assert "ray.db" not in repr(job), "a job does not name the store"

        def forbidden(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a worker opened a store")

        saved = sqlite3.connect, SQLiteStore.open
        sqlite3.connect, SQLiteStore.open = forbidden, forbidden  # type: ignore[assignment]
        try:
            yield from population_events(job)
        finally:
            sqlite3.connect, SQLiteStore.open = saved  # type: ignore[assignment]

    from trainlab.cluster import run_ray

    seen: list[tuple[int, int]] = []

    class Checks(Watcher):
        def epoch_finished(self, trial: Any, epoch: int, logs: Any) -> None:
            # Recorded before it is reported, one epoch at a time.
            assert [e.epoch for e in store.epochs(trial.id)] == list(range(epoch + 1))
            seen.append((trial.id, epoch))

    watcher = Checks()
    with Store.open(tmp_path / "ray.db") as store:
        summary = run_ray(spec.load(study_path), store, reporter=watcher, population=1, worker=without_store)
    assert summary.ran == {"done": 4}
    assert len(seen) == 4 * 4
    assert watcher.most_running_units == 2, "as many units in flight as the cluster has CPUs (2), one per task"


def test_ctrl_c_cancels_the_tasks_and_gives_the_trials_back(cluster: str, tmp_path: Path) -> None:
    import ray

    from trainlab.cluster import run_ray

    study_path = study_file(tmp_path, epochs=6)

    class Interrupts(Watcher):
        epochs = 0

        def epoch_finished(self, trial: Any, epoch: int, logs: Any) -> None:
            self.epochs += 1
            if self.epochs == 5:
                raise KeyboardInterrupt

    def lingers(job: UnitJob) -> Iterator[Any]:
        """Holds its CPU long after training, unless cancelled."""
        from trainlab.cluster import population_events

        yield from population_events(job)
        time.sleep(600)

    with Store.open(tmp_path / "ray.db") as store, pytest.raises(KeyboardInterrupt):
        run_ray(spec.load(study_path), store, reporter=Interrupts(), population=1, worker=lingers)
    got = results(tmp_path / "ray.db")
    assert all(g["status"] == "pending" for g in got.values()), "unfinished trials are given back"
    assert sum(len(g["epochs"]) for g in got.values()) >= 4, "finished epochs stay"
    # The cancelled tasks give their CPUs back.
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2

    summary, watcher = run(study_path, "ray.db", population=1)
    assert summary.ran == {"done": 4}
    assert any(resumed_at > 0 for resumed_at in watcher.resumed_at), "the next run resumes where Ctrl-C stopped"
    assert_same_results(results(tmp_path / "ray.db"), reference(study_path, population=1))


def test_unit_events_streams_a_units_events_and_reuses_the_prepared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainlab.data.cache
    from trainlab import cluster

    study_path = study_file(tmp_path, epochs=2)
    calls = []
    real = trainlab.data.cache.prepare

    def counting(data: Any) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(cluster, "_worker_cache", None)  # a fresh worker process
    monkeypatch.setattr(trainlab.data.cache, "prepare", counting)
    with Store.open(tmp_path / "s.db") as store:
        from trainlab.executors import register

        study_id, _ = register(spec.load(study_path), store)
        trials = store.trials(study_id)
        jobs = [unit_job(trials[:2], store), unit_job(trials[2:3], store)]
    first = list(cluster.population_events(jobs[0]))
    assert [(type(e).__name__, e.index, getattr(e, "epoch", None)) for e in first] == [
        ("EpochEnded", 0, 0),
        ("EpochEnded", 1, 0),
        ("EpochEnded", 0, 1),
        ("EpochEnded", 1, 1),
        ("TrialEnded", 0, None),
        ("TrialEnded", 1, None),
    ]
    assert all(isinstance(e, EpochEnded) and e.checkpoint for e in first[:4])
    assert all(isinstance(e, TrialEnded) and e.status == "done" and e.weights for e in first[4:])
    second = list(cluster.population_events(jobs[1]))
    assert [type(e).__name__ for e in second] == ["EpochEnded", "EpochEnded", "TrialEnded"]
    assert len(calls) == 1, "the second task on a worker reuses the data the first prepared"


def test_slots_are_cluster_cpus_over_cpus_per_task() -> None:
    from trainlab.cluster import slots

    class Fake:
        def __init__(self, cpus: float) -> None:
            self.cpus = cpus

        def cluster_resources(self) -> dict[str, float]:
            return {"CPU": self.cpus} if self.cpus else {}

    assert slots(Fake(8), 1) == 8  # type: ignore[arg-type]
    assert slots(Fake(8), 3) == 2  # type: ignore[arg-type]
    assert slots(Fake(0), 1) == 1  # type: ignore[arg-type]


def test_without_ray_the_run_says_how_to_install_it(
    tiny_study: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    store = tiny_study.parent / "t.db"
    assert cli.main(["run", str(tiny_study), "--store", str(store), "--executor", "ray"]) == cli.EXIT_USER_ERROR
    assert "pip install 'trainlab[ray]'" in capsys.readouterr().err
    assert not store.exists(), "nothing is written before Ray is found"


def test_executor_options_belong_to_their_executor(tiny_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tiny_study.parent / "t.db"
    assert cli.main(["run", str(tiny_study), "--store", str(store), "--address", "auto"]) == cli.EXIT_USER_ERROR
    assert "--address is an option of --executor ray" in capsys.readouterr().err
    assert not store.exists()
