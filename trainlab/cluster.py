"""The Ray executor: a study's populations trained as tasks on a Ray cluster, recorded by the driver alone.

What runs where (docs/CLUSTER.md tells it for users):

* The *driver*, the process running ``trainlab run --executor ray``, registers the study, checks
  the data, claims trials and plans populations exactly as the local executor does
  (:func:`trainlab.executors.claim_members`, under the plans of :mod:`trainlab.planner`), and is the
  only process that opens the store.
* Each population goes to the cluster as one streaming-generator task carrying a
  :class:`~trainlab.executors.UnitJob`: specs, seeds and the checkpoints to resume from, as
  bytes. The task prepares the data itself from the data spec (once per worker process: later
  tasks on that worker reuse it), trains with :func:`~trainlab.executors.train_population` and
  yields each :data:`~trainlab.executors.Event` as it happens. Workers need trainlab and the
  data on their node; they never see the store, nor need a file system shared with the driver.
* The driver follows as many tasks at once as the cluster has CPUs for (cluster CPUs divided by
  CPUs per task) and records every event as it arrives, through the same
  :class:`~trainlab.executors.Recorder` the local executor uses, so the store and the progress
  display look as they do for a local run.

Failures: a task whose worker process or node dies is handed out again, resuming from the last
checkpoint the driver recorded, at most ``max_retries`` times for each trial; a trial that keeps
dying is recorded as ``failed`` with the error, and the study goes on. An exception inside
training is not retried: it fails the population's unfinished trials, as it does locally. Ctrl-C
cancels the tasks and gives the unfinished trials back, keeping their finished epochs.

Ray is imported only when this executor runs; it is the optional extra ``trainlab[ray]``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from trainlab.data.cache import DataCache
from trainlab.errors import TrainlabError
from trainlab.executors import (
    Event,
    Recorder,
    Reporter,
    RunSummary,
    Silent,
    UnitFailed,
    UnitJob,
    check_data,
    claim_members,
    error_text,
    memory_message,
    memory_parts,
    plan_unplanned,
    register,
    start_epoch,
    train_population,
    unit_job,
)
from trainlab.spec import Study
from trainlab.store import FINISHED_STATUSES, ClaimLostError, Store, TrialRecord, make_owner
from trainlab.trial import TrialSpec

DEFAULT_MAX_RETRIES = 2
INSTALL_HINT = "pip install 'trainlab[ray]'"

Worker = Callable[[UnitJob], Iterator[Event]]
"""What a task runs: a population's job in, its events out (:func:`population_events`; tests wrap it)."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a TrainlabError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise TrainlabError(
            f"the ray executor needs Ray, which cannot be imported here ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


# --- the worker side ------------------------------------------------------------------------

_worker_cache: DataCache | None = None


def worker_cache() -> DataCache:
    """This process's prepared data sets: a worker process prepares each one once, for all its tasks."""
    global _worker_cache
    if _worker_cache is None:
        _worker_cache = DataCache()
    return _worker_cache


def population_events(job: UnitJob) -> Iterator[Event]:
    """Train ``job`` in this process and yield its events as they happen.

    Training reports through callbacks, a task streams by yielding: training runs in a thread
    and hands each event over. An exception in training becomes one :class:`UnitFailed`.
    """
    events: queue.Queue[Event | None] = queue.Queue()

    def work() -> None:
        try:
            train_population(job, worker_cache(), events.put)
        except torch.OutOfMemoryError as exc:
            events.put(UnitFailed(error_text(exc), out_of_memory=True))
        except BaseException as exc:  # noqa: BLE001 - whatever ends training is the population's failure
            events.put(UnitFailed(error_text(exc)))
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="trainlab-population", daemon=True)
    thread.start()
    while (event := events.get()) is not None:
        yield event
    thread.join()


def _task(worker: Worker, job: UnitJob, threads: int) -> Iterator[Event]:
    """The body of every task: torch uses the CPUs the task holds, then ``worker`` trains (a job
    planned on ``cuda`` on the GPU Ray gave the task, which it sees as its first)."""
    torch.set_num_threads(threads)
    yield from worker(job)


def ray_device(requested: str, gpus_per_task: float) -> str:
    """The device Ray tasks train on, from ``--device`` and ``--gpus-per-task``: decided by the
    GPUs the tasks hold, not by the driver's machine, which may have none. ``auto`` is ``cuda``
    where tasks hold GPUs, else ``cpu``."""
    if gpus_per_task < 0:
        raise TrainlabError(f"--gpus-per-task takes a number of GPUs >= 0, got {gpus_per_task:g}")
    if requested == "auto":
        return "cuda" if gpus_per_task > 0 else "cpu"
    if requested in ("cuda", "cpu"):
        if requested == "cuda" and gpus_per_task == 0:
            raise TrainlabError("--device cuda with --executor ray needs --gpus-per-task (the GPUs each task holds)")
        return requested
    raise TrainlabError(
        f"--device {requested} with --executor ray: tasks train on auto, cpu or cuda (Ray gives each task its GPUs)"
    )


# --- the driver side ------------------------------------------------------------------------


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join the cluster at ``address`` (``None``: start Ray on this machine); whether this call started
    the connection (and so should end it). A process already connected keeps its connection."""
    if ray.is_initialized():
        return False
    if address is not None and address.startswith("ray://"):
        raise TrainlabError(
            f"--address {address}: a ray:// address connects through Ray Client, which cannot stream a task's "
            "results while it runs (a limitation of Ray). Run trainlab on a machine of the cluster with "
            "--address auto (or HEAD:6379), for example through `ray job submit` (docs/CLUSTER.md)"
        )
    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise TrainlabError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return True


def slots(ray: ModuleType, cpus_per_task: float, gpus_per_task: float = 0.0) -> int:
    """Units to keep in flight: the cluster's CPUs divided by the CPUs each task takes, and its
    GPUs by the GPUs each takes where tasks hold GPUs (at least one)."""
    resources = ray.cluster_resources()
    width = int(resources.get("CPU", 0) // cpus_per_task)
    if gpus_per_task > 0:
        width = min(width, int(resources.get("GPU", 0) // gpus_per_task))
    return max(1, width)


def run_ray(
    study: Study,
    store: Store,
    *,
    address: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    cpus_per_task: int = 1,
    gpus_per_task: float = 0.0,
    device: str = "cpu",
    reporter: Reporter | None = None,
    owner: str | None = None,
    cache: DataCache | None = None,
    population: int | None = None,
    worker: Worker | None = None,
    announce: Callable[[str], None] | None = None,
) -> RunSummary:
    """Train every unfinished trial of ``study`` on a Ray cluster, recording into ``store`` from this process.

    ``address``: the cluster (``auto``, ``HOST:PORT``); ``None`` starts Ray on this machine for
    the run. A process already connected to Ray uses that connection. ``max_retries``: how often
    a trial is handed out again after its task died. ``cpus_per_task``: CPUs each task holds
    (torch uses as many threads); ``gpus_per_task``: GPUs each holds, and ``device`` (from
    :func:`ray_device`) where its trials are planned to train. ``worker``: what tasks run,
    :func:`population_events` by default.
    ``announce``: told, in one line, which cluster trains and how many populations at once.
    Units are planned as :func:`~trainlab.executors.run_local` plans them.
    """
    if max_retries < 0:
        raise TrainlabError(f"--max-retries takes a number >= 0, got {max_retries}")
    if cpus_per_task < 1:
        raise TrainlabError(f"CPUs per task must be at least 1, got {cpus_per_task}")
    ray = import_ray()
    reporter = reporter or Silent()
    owner = owner or make_owner()
    cache = cache or DataCache()
    # The data is checked here, before anything is handed out, as the local executor does.
    check_data(study, cache)
    started = connect(ray, address)
    try:
        study_id, hashes = register(study, store)
        width = slots(ray, cpus_per_task, gpus_per_task)
        plan_unplanned(
            store,
            study_id,
            hashes,
            cache,
            population=population,
            workers=width,
            threads=cpus_per_task,
            device=device,
        )
        wanted = set(hashes)
        current = store.trials(study_id, hashes=wanted)
        summary = RunSummary(study_id, len(current), skipped_done=sum(t.status in FINISHED_STATUSES for t in current))
        if announce is not None:
            cpus = ray.cluster_resources().get("CPU", 0)
            where = (
                "a Ray instance on this machine"
                if address is None and started
                else f"the Ray cluster at {address or 'the current connection'}"
            )
            gpus = f", {gpus_per_task:g} GPUs per task" if gpus_per_task else ""
            announce(
                f"training on {where}: {cpus:g} CPUs, {cpus_per_task} per task{gpus}, up to {width} populations at once"
            )
        reporter.study_started(len(current), summary.skipped_done)
        driver = _Driver(
            ray,
            store,
            study_id,
            wanted,
            owner,
            cache,
            reporter,
            worker or population_events,
            cpus_per_task,
            max_retries,
            width,
            gpus_per_task,
        )
        driver.run()
        summary.ran = driver.ran
        summary.busy_elsewhere = sum(t.status == "running" for t in store.trials(study_id, hashes=wanted))
        return summary
    finally:
        if started:
            ray.shutdown()


@dataclass
class _Flight:
    """A population handed out to the cluster: its job and the recorder of its events."""

    job: UnitJob
    recorder: Recorder


class _Driver:
    """Hands populations out, follows their event streams, records them, and retries populations whose task died."""

    def __init__(
        self,
        ray: ModuleType,
        store: Store,
        study_id: int,
        wanted: set[str],
        owner: str,
        cache: DataCache,
        reporter: Reporter,
        worker: Worker,
        cpus_per_task: int,
        max_retries: int,
        slots: int,
        gpus_per_task: float = 0.0,
    ) -> None:
        self.ray, self.store, self.study_id, self.wanted, self.owner = ray, store, study_id, wanted, owner
        self.cache, self.reporter, self.worker = cache, reporter, worker
        self.cpus_per_task, self.max_retries, self.slots = cpus_per_task, max_retries, slots
        # max_retries=0: Ray would rerun a task from its first checkpoint; the driver retries from its last.
        self.remote = ray.remote(
            num_returns="streaming", num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0
        )(_task)
        self.flights: dict[Any, _Flight] = {}
        self.again: list[tuple[list[TrialRecord], int]] = []
        """Units whose task died, waiting to be handed out again, with their attempt number."""
        self.deaths: dict[int, int] = {}
        """Per trial id: how many of its tasks died."""
        self.ran: dict[str, int] = {}
        self.claiming = True

    def run(self) -> None:
        try:
            while True:
                self._fill()
                if not self.flights:
                    return
                ready, _ = self.ray.wait(list(self.flights), num_returns=1)
                for stream in ready:
                    self._advance(stream)
        except BaseException:
            self._abandon()
            raise

    def _fill(self) -> None:
        """Hand out populations until every slot is taken: first those to retry, then newly claimed ones."""
        while len(self.flights) < self.slots:
            if self.again:
                trials, attempt = self.again.pop(0)
                job = unit_job(trials, self.store, attempt)
            elif self.claiming:
                leader = self.store.claim_next(self.study_id, self.owner, hashes=self.wanted)
                if leader is None:
                    self.claiming = False
                    continue
                trials = [leader, *claim_members(leader, self.store, self.study_id, self.wanted, self.owner)]
                job = unit_job(trials, self.store)
                self.reporter.unit_started(trials, _epochs(trials[0]), job.start)
            else:
                return
            stream = self.remote.remote(self.worker, job, self.cpus_per_task)
            self.flights[stream] = _Flight(job, Recorder(trials, self.store, self.owner, self.reporter))

    def _advance(self, stream: Any) -> None:
        """Record the next event of a stream that has one, or handle its end."""
        flight = self.flights[stream]
        try:
            ref = next(stream)
        except StopIteration:
            self._close(stream, "the task ended without reporting the trial's end")
            return
        try:
            event = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            # An exception outside training (trainlab missing on the node, say): retrying would not help.
            flight.recorder.fail(str(exc))
            self._close(stream)
            return
        except self.ray.exceptions.RayError as exc:
            # The worker process or its node died, or the task's results were lost.
            self._died(stream, exc)
            return
        if isinstance(event, UnitFailed) and event.out_of_memory and len(flight.recorder.unfinished) > 1:
            self._split(stream, event.error)
            return
        try:
            flight.recorder.record(event)
        except ClaimLostError:
            # Another process took these trials over (this one was presumed dead): the results are theirs.
            self._cancel(stream)
            self._close(stream)

    def _close(self, stream: Any, unfinished_error: str | None = None) -> None:
        """Forget a stream that has ended; its trials not finished fail with ``unfinished_error`` if given."""
        flight = self.flights.pop(stream)
        if unfinished_error is not None and flight.recorder.unfinished:
            flight.recorder.fail(unfinished_error)
        self._count(flight.recorder.statuses())

    def _died(self, stream: Any, exc: BaseException) -> None:
        """A task died: its unfinished trials go out again from their last checkpoints, or fail once they
        have died more than ``max_retries`` times. Trials resuming at different epochs (a population cut
        between two members' epoch reports) go out as separate populations, as a local resume plans them."""
        flight = self.flights.pop(stream)
        self._count(list(flight.recorder.finished.values()))
        reason = _first_line(str(exc)) or type(exc).__name__
        retry: dict[int, list[TrialRecord]] = {}
        for trial in flight.recorder.unfinished:
            deaths = self.deaths[trial.id] = self.deaths.get(trial.id, 0) + 1
            if deaths > self.max_retries:
                error = (
                    f"the Ray task training this trial died {deaths} times, more than --max-retries "
                    f"({self.max_retries}) allows; last: {type(exc).__name__}: {str(exc).strip()}"
                )
                giving_up = Recorder([trial], self.store, self.owner, self.reporter)
                try:
                    giving_up.fail(error)
                except ClaimLostError:
                    pass
                self._count(giving_up.statuses())
            else:
                retry.setdefault(start_epoch(self.store, trial), []).append(trial)
        for start, trials in sorted(retry.items()):
            attempt = max(self.deaths[t.id] for t in trials)
            self.reporter.unit_retried(trials, start, reason)
            self.again.append((trials, attempt))

    def _split(self, stream: Any, error: str) -> None:
        """A task's population ran out of device memory: its unfinished trials go out again as the
        smaller populations of :func:`memory_parts`, from their last checkpoints (not counted as a
        death: the task did not die, the population did not fit)."""
        flight = self.flights.pop(stream)
        self._count(list(flight.recorder.finished.values()))
        left = flight.recorder.unfinished
        parts = memory_parts(left, self.store)
        self.reporter.unit_split(left, [len(p) for p in parts], memory_message(error))
        for part in parts:
            self.reporter.unit_started(part, _epochs(part[0]), start_epoch(self.store, part[0]))
            self.again.append((part, flight.job.attempt))

    def _count(self, statuses: Sequence[str]) -> None:
        for status in statuses:
            self.ran[status] = self.ran.get(status, 0) + 1

    def _cancel(self, stream: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(stream, force=True)

    def _abandon(self) -> None:
        """Ctrl-C or an error in the driver: cancel every task and give every unfinished trial back."""
        for stream in self.flights:
            self._cancel(stream)
        held = [t for flight in self.flights.values() for t in flight.recorder.unfinished]
        held += [t for trials, _ in self.again for t in trials]
        for trial in held:
            with contextlib.suppress(Exception):
                self.store.release(trial.id, self.owner)
        self.flights.clear()
        self.again.clear()


def _epochs(trial: TrialRecord) -> int:
    return TrialSpec.from_json(trial.spec_json).train.epochs


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
