"""Executors: take a study's trials from the store one claim at a time and train them.

The local executor trains in this process. Every finished epoch goes to the store as it ends,
with the state to resume from every :data:`CHECKPOINT_EVERY` seconds, so killing the process
loses at most that much training, which the next run re-does identically; a trial that fails is
recorded with its error text and the study goes on.

Every executor shares two halves: :func:`train_population` turns a :class:`UnitJob` (specs, seeds,
checkpoints; no store) into :data:`Event` s, and a :class:`Recorder` writes those events to the
store. Here both run in one process; the Ray executor (:mod:`trainlab.cluster`) runs the first
on the cluster and the second on the driver.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from trainlab import devices, models, planner
from trainlab.data.cache import DataCache
from trainlab.engine import evaluate, steps, weights_bytes
from trainlab.engine.loop import OnBatch
from trainlab.engine.lowered import torch_threads
from trainlab.engine.population import PruneMembers
from trainlab.errors import SpecError, StoreError, TrainlabError
from trainlab.pruning import PopulationPruner, Pruning
from trainlab.seeding import derive
from trainlab.spec import Study, fold_specs
from trainlab.store import (
    CHECKPOINT,
    FINISHED_STATUSES,
    ArtifactRecord,
    ClaimLostError,
    NewTrial,
    Store,
    TrialRecord,
    make_owner,
)
from trainlab.trial import TrialSpec, canonical_json


class Reporter(Protocol):
    """What an executor tells whoever watches it (the CLI's progress bars, or nothing)."""

    def study_started(self, total: int, done: int) -> None: ...
    def unit_started(self, trials: Sequence[TrialRecord], epochs: int, resumed_at: int) -> None: ...
    def batch(self, step: int, steps: int) -> None: ...
    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None: ...
    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None: ...
    def unit_retried(self, trials: Sequence[TrialRecord], resumed_at: int, reason: str) -> None: ...
    def unit_split(self, trials: Sequence[TrialRecord], sizes: Sequence[int], reason: str) -> None: ...


class Silent:
    """A reporter that shows nothing."""

    def study_started(self, total: int, done: int) -> None:
        pass

    def unit_started(self, trials: Sequence[TrialRecord], epochs: int, resumed_at: int) -> None:
        pass

    def batch(self, step: int, steps: int) -> None:
        pass

    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None:
        pass

    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None:
        pass

    def unit_retried(self, trials: Sequence[TrialRecord], resumed_at: int, reason: str) -> None:
        pass

    def unit_split(self, trials: Sequence[TrialRecord], sizes: Sequence[int], reason: str) -> None:
        pass


@dataclass
class RunSummary:
    """What one ``run`` did: trials it finished by status, and those it left to other processes."""

    study_id: int
    total: int
    ran: dict[str, int] = field(default_factory=dict)
    skipped_done: int = 0
    busy_elsewhere: int = 0


CHECKPOINT_EVERY = 10.0
"""Default seconds of training between two checkpoints of a trial.

Every epoch's metrics are recorded as it ends; the resumable state (weights, optimizer state,
callbacks) is written with an epoch only when this long has passed since the last one. Writing
it (packing the weights and optimizer state, and the store write) costs little next to a long
epoch, but most of a short one: a full-batch epoch on a small data set, or a large share of one
on MNIST (bench/README.md, benchmark 5). A crash then loses at most this much
training: the next run resumes from the last checkpoint and re-does the epochs after it,
deterministically (every epoch's randomness derives from the trial seed and the epoch), and
their re-recorded rows replace those the crashed run left.
"""


def _monotonic() -> float:
    return time.monotonic()


class CheckpointPolicy:
    """Whether an epoch's checkpoint is written: when ``every`` seconds have passed since the
    last one written (or since the population began). One decision per epoch, shared by every member of
    a population, so that they keep resuming together. ``every = 0``: every epoch."""

    def __init__(self, every: float = CHECKPOINT_EVERY) -> None:
        if math.isnan(every) or every < 0:
            raise ValueError(f"checkpoint interval must be >= 0 seconds, got {every}")
        self.every = every
        self._last = _monotonic()
        self._epoch: int | None = None
        self._due = False

    def due(self, epoch: int) -> bool:
        if epoch != self._epoch:
            self._epoch = epoch
            now = _monotonic()
            self._due = now - self._last >= self.every
            if self._due:
                self._last = now
        return self._due


def register(study: Study, store: Store) -> tuple[int, list[str]]:
    """Record the study and its trials in the store (idempotent); returns its id and trial hashes."""
    trials = list({t.hash: t for t in study.trials()}.values())  # stages may share a trial
    study_id = store.ensure_study(study.name, study.spec_json(), study.hash, study.source)
    store.add_trials(study_id, [NewTrial(t.hash, t.label, t.params, t.seed, t.spec_json()) for t in trials])
    return study_id, [t.hash for t in trials]


def run_local(
    study: Study,
    store: Store,
    *,
    reporter: Reporter | None = None,
    owner: str | None = None,
    cache: DataCache | None = None,
    population: int | None = None,
    pruning: Pruning | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY,
    workers: int = 1,
    device: str = "cpu",
    gpu: int = 0,
) -> RunSummary:
    """Train every unfinished trial of ``study`` in this process, recording into ``store``.

    Each trial trains under its run plan (see :mod:`trainlab.planner`), recorded before it first
    trains: trials that share a population train together, at most ``population`` at once
    (1: one at a time); ``workers``: how many processes share the machine's cores (a plan's
    thread count derives from it). ``checkpoint_every``: seconds of training between
    checkpoints (see :data:`CHECKPOINT_EVERY`). Data is prepared (and verified) for every trial
    before the first one trains, so that a missing or corrupt data set stops the run before any
    work is done. ``pruning`` stops the hopeless trials of a search early (see :mod:`trainlab.orchestrate`).
    ``device``: where trials are planned to train (:func:`trainlab.devices.resolve`); a planned
    ``cuda`` trains on this process's GPU, ``gpu`` (one worker process per GPU).
    """
    reporter = reporter or Silent()
    owner = owner or make_owner()
    cache = cache or DataCache()
    check_data(study, cache)
    study_id, hashes = register(study, store)
    plan_unplanned(
        store,
        study_id,
        hashes,
        cache,
        population=population,
        workers=workers,
        device=device,
        device_memory=devices.total_memory(device),
    )
    placement = Placement(device, gpu)
    wanted = set(hashes)
    current = store.trials(study_id, hashes=wanted)
    summary = RunSummary(study_id, len(current), skipped_done=sum(t.status in FINISHED_STATUSES for t in current))
    reporter.study_started(len(current), summary.skipped_done)
    try:
        while (leader := store.claim_next(study_id, owner, hashes=wanted)) is not None:
            population = [leader, *claim_members(leader, store, study_id, wanted, owner)]
            pruner = pruning.for_population(store, study_id, [t.hash for t in population]) if pruning else None
            for status in run_population(
                population, store, owner, cache, reporter, pruner, CheckpointPolicy(checkpoint_every), placement
            ):
                summary.ran[status] = summary.ran.get(status, 0) + 1
    except KeyboardInterrupt:
        # Wherever Ctrl-C landed (choosing its members, between trials, inside a population), give back every
        # trial this owner holds: their finished epochs stay and the next run resumes them.
        release_all(store, study_id, owner)
        raise
    summary.busy_elsewhere = sum(t.status == "running" for t in store.trials(study_id, hashes=wanted))
    return summary


def release_all(store: Store, study_id: int, owner: str) -> None:
    """Give back every trial of the study that ``owner`` holds (pending again, progress kept)."""
    for trial in store.trials(study_id, status="running"):
        if trial.owner == owner:
            store.release(trial.id, owner)


def _resumes_at(saved: ArtifactRecord | None) -> int:
    """The epoch a trial with this checkpoint (or none) starts from."""
    return saved.epoch + 1 if saved is not None and saved.epoch is not None else 0


def start_epoch(store: Store, trial: TrialRecord) -> int:
    """The epoch a trial trains from next: after its stored checkpoint's, else 0."""
    return _resumes_at(store.artifact(trial.id, CHECKPOINT))


def plan_unplanned(
    store: Store,
    study_id: int,
    hashes: Sequence[str],
    cache: DataCache,
    *,
    population: int | None = None,
    workers: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    device_memory: int | None = None,
) -> None:
    """Decide and record the run plan of every unfinished trial in ``hashes`` that has none.

    Trials keep a plan once recorded (a resumed trial goes on as it began; another process
    planning the same trials records nothing over it). Trials of an older store, which were
    never planned, are planned from the epoch their checkpoint resumes at.
    """
    wanted = set(hashes)
    todo = [t for t in store.trials(study_id, hashes=wanted) if t.plan is None and t.status not in FINISHED_STATUSES]
    if not todo:
        return
    trials = [planner.Planned(t.hash, t.seed, TrialSpec.from_json(t.spec_json), start_epoch(store, t)) for t in todo]
    plans = planner.plan_trials(
        trials,
        input_shape=lambda spec: cache.get(spec.data.to_json())[1].input_shape,
        train_size=lambda spec: len(cache.get(spec.data.to_json())[0].x_train),
        population=population,
        workers=workers,
        threads=threads,
        device=device,
        device_memory=device_memory,
    )
    store.set_plans(study_id, {h: p.to_json() for h, p in plans.items()})


def claim_members(leader: TrialRecord, store: Store, study_id: int, wanted: set[str], owner: str) -> list[TrialRecord]:
    """The other trials of ``leader``'s population that nobody else holds and that resume at its
    epoch, claimed for ``owner``.

    Members of a population resume together from the same epoch. Only a crash between two
    members' records of an epoch that carried checkpoints leaves them at different epochs;
    they then resume as separate populations.
    """
    population = (leader.plan or {}).get("population")
    if population is None:
        return []
    start = start_epoch(store, leader)
    members = []
    for trial in store.trials(study_id, hashes=wanted):
        if trial.id == leader.id or trial.status not in ("pending", "running"):
            continue
        if (
            (trial.plan or {}).get("population") == population
            and start_epoch(store, trial) == start
            and store.claim(trial.id, owner)
        ):
            members.append(trial)
    return members


def auto_workers(study: Study, device: str = "cpu") -> int:
    """Worker processes for a study: one per GPU where trials train on ``cuda`` (each worker
    holds one), else decided from all its trials (see :func:`planner.auto_workers`)."""
    if device == "cuda":
        return max(1, devices.cuda_count())
    if device != "cpu":
        return 1  # one named GPU, or Apple's one GPU: one process drives it
    return planner.auto_workers([planner.Planned(t.hash, t.seed, TrialSpec.from_json(t.spec)) for t in study.trials()])


def check_data(study: Study, cache: DataCache) -> None:
    """Prepare (and verify) every data set and fold of ``study`` and check each batch size fits its data.

    What only the data can refute (a missing or corrupt file, a split or batch larger than the
    data) is found here, before anything is written to a store.
    """
    try:
        _check_batch_sizes(study, cache)
    except SpecError as exc:
        raise (exc.in_file(study.source) if study.source and not exc.file else exc) from None


def _check_batch_sizes(study: Study, cache: DataCache) -> None:
    sizes: dict[str, int] = {}
    for v in study.variants:
        for fold in fold_specs(v.spec):
            spec = TrialSpec.from_json(fold)
            key = canonical_json(spec.data.to_json())
            if key not in sizes:
                sizes[key] = len(cache.get(spec.data.to_json())[0].x_train)
            size, n = spec.train.batch_size, sizes[key]
            if size != "full" and size > n:
                raise TrainlabError(
                    f"{study.source or study.name}: train.batch_size (variant {v.label!r}): {size} is larger than "
                    f'the training split ({n} examples); use at most {n}, or "full" for full-batch gradient descent'
                )


@dataclass(frozen=True)
class UnitJob:
    """Everything needed to train one population, and nothing that points at the store.

    ``specs`` are the trials' resolved specs, ``resumes`` their checkpoints (bytes
    from the store, ``None`` to start afresh). A job can be pickled and sent to another
    machine: the trainer prepares the data itself from the data spec. ``attempt`` counts how
    often the population was handed out before (0 the first time).
    """

    hashes: tuple[str, ...]
    seeds: tuple[int, ...]
    specs: tuple[TrialSpec, ...]
    resumes: tuple[bytes | None, ...]
    start: int = 0
    """The epoch training starts from (all the population's trials start from the same one)."""
    attempt: int = 0
    plan: planner.Plan | None = None
    """How the population trains (every trial of a population shares its plan); None: as the trials' count
    and the engine's defaults say, for a job made without a store."""


@dataclass(frozen=True)
class Placement:
    """Where this process trains: the run's device (for jobs without a plan, and for a planned
    device this machine lacks) and, for trials planned on ``cuda``, the index of its GPU."""

    device: str = "cpu"
    gpu: int = 0

    def of(self, plan: planner.Plan | None) -> torch.device:
        """The torch device a job of ``plan`` trains on here (see :func:`trainlab.devices.placed`)."""
        return devices.placed(plan.device if plan is not None else self.device, self.device, self.gpu)


@dataclass(frozen=True)
class EpochEnded:
    """Trial ``index`` of the population finished ``epoch``; ``checkpoint`` is the state to resume after
    it, or None for an epoch recorded without one (see :class:`CheckpointPolicy`)."""

    index: int
    epoch: int
    logs: dict[str, float]
    checkpoint: bytes | None


@dataclass(frozen=True)
class TrialEnded:
    """Trial ``index`` of the population ended with ``status``, its ``outcome`` and chosen ``weights``."""

    index: int
    status: str
    outcome: dict[str, Any]
    weights: bytes


@dataclass(frozen=True)
class UnitFailed:
    """Training raised: every trial of the population without a :class:`TrialEnded` fails with
    ``error``, unless it ran ``out_of_memory`` on its device: then the driver trains it on in
    smaller populations (:func:`memory_parts`)."""

    error: str
    out_of_memory: bool = False


Event = EpochEnded | TrialEnded | UnitFailed
"""What training a population produces, in order: epochs as they end, then each trial's end."""


def unit_job(trials: Sequence[TrialRecord], store: Store, attempt: int = 0) -> UnitJob:
    """The job of claimed ``trials``, each resuming from its last recorded checkpoint."""
    saved = [store.artifact(t.id, CHECKPOINT) for t in trials]
    plan = planner.Plan.from_json(trials[0].plan) if trials[0].plan is not None else None
    return UnitJob(
        tuple(t.hash for t in trials),
        tuple(t.seed for t in trials),
        tuple(TrialSpec.from_json(t.spec_json) for t in trials),
        tuple(a.data if a is not None else None for a in saved),
        _resumes_at(saved[0]),
        attempt,
        plan,
    )


def train_population(
    job: UnitJob,
    cache: DataCache,
    emit: Callable[[Event], None],
    on_batch: OnBatch | None = None,
    prune: PruneMembers | None = None,
    checkpoint_due: Callable[[int], bool] | None = None,
    placement: Placement | None = None,
) -> None:
    """Train a population's trials to their end, together if several, telling ``emit`` each :data:`Event`.

    The one training path of every executor: it knows nothing of the store, only the job.
    Exceptions propagate (the caller decides what a failure means); nothing else is emitted
    after one. ``prune(epoch, logs by index)``, asked once every trial has ended an epoch and before
    any of it is emitted, ends the trials whose indices it returns there as ``pruned`` (their
    checkpoints carry the decision). ``checkpoint_due(epoch)`` says whether an epoch carries
    its checkpoint (default: every epoch); the others are recorded without one. The trials train
    on their plan's device (``placement`` says which GPU, and where a job without a plan goes);
    the data moves there once and stays, and their weights and checkpoints come back as CPU
    copies, which load anywhere.
    """
    specs = job.specs
    device = (placement or Placement()).of(job.plan)
    tensors, info, split = cache.get(specs[0].data.to_json(), device=device)
    nets = [
        models.build(spec.model.to_json(), info.input_shape, derive(seed, "init"))
        for seed, spec in zip(job.seeds, specs)
    ]

    def on_epoch(i: int, epoch: int, logs: dict[str, float], make_checkpoint: Callable[[], bytes]) -> bool:
        due = checkpoint_due is None or checkpoint_due(epoch)
        emit(EpochEnded(i, epoch, logs, make_checkpoint() if due else None))
        return False

    plan = job.plan
    step = plan.step if plan is not None else ("population" if len(nets) > 1 else "lowered")
    population = steps.Population(
        nets,
        specs,
        job.resumes,
        tensors,
        info.task,
        job.seeds[0],
        compile=plan.compile if plan is not None else False,
        channels_last=lambda: cache.get(specs[0].data.to_json(), channels_last=True, device=device)[0],
        device=device,
    )
    population = steps.laid_out(step, population)
    tensors = population.data
    with torch_threads(plan.threads if plan is not None else None), devices.deterministic(device):
        results = steps.train(step, population, on_epoch, on_batch, prune)
        # The test evaluation too runs at the plan's threads: its sums depend on the thread count.
        for i, (trial_hash, spec, net, result) in enumerate(zip(job.hashes, specs, nets, results)):
            net.load_state_dict(result.weights)
            test = evaluate(
                net,
                tensors.x_test,
                tensors.y_test,
                info.task,
                spec.train.loss,
                label_smoothing=spec.train.label_smoothing,
                precision=spec.train.precision,
            )
            outcome = {
                "best_epoch": result.best_epoch,
                "best": result.best,
                "epochs": result.epochs,
                "stop_reason": result.stop_reason,
                "test": test,
                "split": split,
                "population": len(nets),
                "device": str(device),
                "seconds_per_epoch": sum(h["seconds"] for h in result.history) / max(len(result.history), 1),
            }
            weights = weights_bytes(
                result.weights, {"trial": trial_hash, "spec": spec.to_json(), "input_shape": list(info.input_shape)}
            )
            emit(TrialEnded(i, result.status, outcome, weights))


class Listener(Protocol):
    """Whoever follows what the store records (a tracking server): told of each event of a trial
    once the store holds it, in the order they come. It must return quickly and never raise:
    training waits for it."""

    def recorded(self, trial: TrialRecord, event: Event) -> None: ...


ListenerFactory = Callable[[], AbstractContextManager[Listener]]
"""Makes a listener for one process, as a context manager (entered before training, left after it).
It is sent to the worker processes of :func:`run_pool`, so it must pickle."""

_LISTENING: list[tuple[ListenerFactory, Listener]] = []


@contextmanager
def listening(factory: ListenerFactory) -> Iterator[None]:
    """While the block runs, every :class:`Recorder` of this process tells the listener ``factory``
    makes of each event it records, and :func:`run_pool`'s worker processes each make their own."""
    with factory() as listener:
        entry = (factory, listener)
        _LISTENING.append(entry)
        try:
            yield
        finally:
            _LISTENING.remove(entry)


def _tell(trial: TrialRecord, event: Event) -> None:
    for _, listener in list(_LISTENING):
        listener.recorded(trial, event)


def error_text(exc: BaseException) -> str:
    """What a failed trial records: a user's mistake as its message, anything else as the traceback."""
    return str(exc) if isinstance(exc, TrainlabError) else "".join(traceback.format_exception(exc))


class Recorder:
    """Writes one population's events to the store, in the order they come, and tells the reporter.

    The one recording path of every executor: the local one feeds it as training runs, the Ray
    driver as events arrive from the cluster. Store writes name ``owner`` and raise
    :class:`ClaimLostError` if another process took the trial meanwhile. Each event written is
    then told to the listeners of :func:`listening` (trackers).
    """

    def __init__(self, trials: Sequence[TrialRecord], store: Store, owner: str, reporter: Reporter) -> None:
        self.trials = list(trials)
        self.store = store
        self.owner = owner
        self.reporter = reporter
        self.finished: dict[int, str] = {}
        """Status by index of each trial the population finished."""

    def record(self, event: Event) -> None:
        if isinstance(event, EpochEnded):
            trial = self.trials[event.index]
            self.store.record_epoch(
                trial.id, self.owner, event.epoch, event.logs, event.checkpoint, checkpoint_format="safetensors"
            )
            self.reporter.epoch_finished(trial, event.epoch, event.logs)
            _tell(trial, event)
        elif isinstance(event, TrialEnded):
            trial = self.trials[event.index]
            self.store.finish_trial(
                trial.id,
                self.owner,
                event.status,
                result=event.outcome,
                weights=event.weights,  # type: ignore[arg-type]
                weights_format="safetensors",
            )
            self.finished[event.index] = event.status
            self.reporter.trial_finished(trial, event.status, event.outcome)
            _tell(trial, event)
        else:
            self.fail(event.error)

    @property
    def unfinished(self) -> list[TrialRecord]:
        return [t for i, t in enumerate(self.trials) if i not in self.finished]

    def fail(self, error: str) -> None:
        """Record every unfinished trial as ``failed`` with ``error``."""
        for i, trial in enumerate(self.trials):
            if i not in self.finished:
                self.store.finish_trial(trial.id, self.owner, "failed", error=error)
                self.finished[i] = "failed"
                self.reporter.trial_finished(
                    trial, "failed", {"error": error.strip().splitlines()[-1] if error.strip() else error}
                )
                _tell(trial, UnitFailed(error))

    def release(self) -> None:
        """Give the unfinished trials back; their recorded epochs and checkpoints stay."""
        for trial in self.unfinished:
            self.store.release(trial.id, self.owner)

    def statuses(self, default: str = "lost") -> list[str]:
        """Each trial's status, ``default`` for those the population did not finish."""
        return [self.finished.get(i, default) for i in range(len(self.trials))]


def run_population(
    trials: Sequence[TrialRecord],
    store: Store,
    owner: str,
    cache: DataCache,
    reporter: Reporter,
    pruner: PopulationPruner | None = None,
    checkpoints: CheckpointPolicy | None = None,
    placement: Placement | None = None,
) -> list[str]:
    """Train claimed trials to their end in this process, together if several, and record each; returns their statuses.

    Every epoch is recorded; its checkpoint only when ``checkpoints`` says so (default: every
    :data:`CHECKPOINT_EVERY` seconds).

    A population that raises records its unfinished trials as ``failed`` with the error text,
    except for want of device memory: then its unfinished trials train on in two halves, each
    from its members' last checkpoints (:func:`_split_on_memory`), and only a trial alone that does
    not fit fails. Ctrl-C gives them back (their finished epochs stay) and propagates. ``pruner``
    decides, epoch by epoch, whether a search trial goes on. ``placement``: where this process
    trains (see :class:`Placement`).
    """
    recorder = Recorder(trials, store, owner, reporter)
    out_of_memory: str | None = None
    try:
        job = unit_job(trials, store)
        reporter.unit_started(trials, job.specs[0].train.epochs, job.start)
        policy = checkpoints or CheckpointPolicy()
        prune = None if pruner is None else pruner.for_indices(job.hashes)
        train_population(
            job, cache, recorder.record, reporter.batch, prune=prune, checkpoint_due=policy.due, placement=placement
        )
    except KeyboardInterrupt:
        recorder.release()
        raise
    except ClaimLostError:
        # Another process holds these trials now (this one was presumed dead): their results are theirs.
        return recorder.statuses()
    except StoreError:
        # The store failed (damaged, full, locked too long): not the trials' fault, so they are not
        # marked failed; they are given back if the store still takes writes, and the run stops.
        for trial in recorder.unfinished:
            try:
                store.release(trial.id, owner)
            except StoreError:
                break
        raise
    except torch.OutOfMemoryError as exc:
        if len(recorder.unfinished) < 2:
            recorder.fail(error_text(exc))
        else:
            out_of_memory = memory_message(str(exc))
    except Exception as exc:
        recorder.fail(error_text(exc))
    if out_of_memory is None:
        return recorder.statuses()
    # Outside the except block, so that the failed step's tensors are freed before the halves train.
    return _split_on_memory(
        recorder,
        out_of_memory,
        lambda part: run_population(part, store, owner, cache, reporter, pruner, checkpoints, placement),
    )


def memory_message(error: str) -> str:
    """The line of an out-of-memory error (or its traceback) that says what ran out."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "out of memory"


def memory_parts(trials: Sequence[TrialRecord], store: Store) -> list[list[TrialRecord]]:
    """The populations the unfinished ``trials`` of a population that ran out of device memory
    train on in: two of half the size, each resuming from its members' last checkpoint. Trials
    whose checkpoints are of different epochs (a checkpoint written for some members only) go
    apart by epoch instead, as a resume plans them.

    A member's numbers do not depend on the other members of its population (see
    :mod:`trainlab.planner`), and a trial resumed from its checkpoint goes on as if never stopped,
    so a split changes which trials train together, not what they compute. How much memory is
    free is not a fixed property of the machine, so this is a fallback, not a plan: the plan sizes
    populations from the device's total memory (:func:`planner.memory_limit`), and each trial's
    result records the population it finished in.
    """
    by_start: dict[int, list[TrialRecord]] = {}
    for trial in trials:
        by_start.setdefault(start_epoch(store, trial), []).append(trial)
    if len(by_start) > 1:
        return [by_start[epoch] for epoch in sorted(by_start)]
    half = (len(trials) + 1) // 2
    return [list(trials[:half]), list(trials[half:])]


def _split_on_memory(recorder: Recorder, error: str, train: Callable[[Sequence[TrialRecord]], list[str]]) -> list[str]:
    """A population ran out of device memory: its unfinished trials, still claimed, train on in
    the populations of :func:`memory_parts` (each splitting again if it too does not fit), and the
    statuses of all come back in the population's order."""
    left = recorder.unfinished
    parts = memory_parts(left, recorder.store)
    recorder.reporter.unit_split(left, [len(p) for p in parts], error)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    statuses = dict(zip((t.id for t in left), (s for part in parts for s in train(part))))
    return [recorder.finished.get(i, statuses.get(t.id, "lost")) for i, t in enumerate(recorder.trials)]


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker(
    study: Study,
    store_path: str,
    workers: int,
    population: int | None,
    pruning: Pruning | None,
    checkpoint_every: float,
    stop: Any,
    device: str = "cpu",
    gpu: int = 0,
    listeners: Sequence[ListenerFactory] = (),
) -> None:
    """A pool process: claims and trains trials until none is left, quietly; on ``cuda``, on GPU
    ``gpu``; telling a listener of its own made by each of ``listeners`` (those of the driver's
    :func:`listening`).

    It starts with Ctrl-C ignored (a SIGINT while it imports would print a traceback) and
    takes it up here, once: a Ctrl-C in a terminal reaches it twice (from the terminal and
    passed on by the driver), and the second must not cut short the giving back of its trials.
    ``stop`` is set by a driver that was interrupted before this process took Ctrl-C up.
    """
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        if stop.is_set():
            return
        torch.set_num_threads(max(1, planner.machine_cores() // workers))
        with ExitStack() as stack, Store.open(store_path) as store:
            for factory in listeners:
                stack.enter_context(listening(factory))
            run_local(
                study,
                store,
                population=population,
                pruning=pruning,
                checkpoint_every=checkpoint_every,
                workers=workers,
                device=device,
                gpu=gpu,
            )
    except (KeyboardInterrupt, TrainlabError):  # the driver, a worker too, meets the same problem and reports it
        pass


def run_pool(
    study: Study,
    store_path: str,
    workers: int,
    *,
    reporter: Reporter | None = None,
    population: int | None = None,
    pruning: Pruning | None = None,
    store: Store | None = None,
    cache: DataCache | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY,
    device: str = "cpu",
) -> RunSummary:
    """Train ``study`` with ``workers`` processes sharing the machine's cores and one store.

    This process is one of the workers (its progress is the one shown); the others claim trials
    from the same store, so each trial still runs once. Results do not depend on the number of
    workers: every trial's randomness comes from its own seed. ``store``: this process's open
    connection to ``store_path``, if it has one. On ``cuda``, worker ``i`` holds GPU ``i``
    (modulo the GPUs present): one worker per GPU is the default (:func:`auto_workers`).
    """
    threads = max(1, planner.machine_cores() // workers)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    children = [
        context.Process(
            target=_worker,
            args=(
                study,
                store_path,
                workers,
                population,
                pruning,
                checkpoint_every,
                stop,
                device,
                index,
                [f for f, _ in _LISTENING],
            ),
            daemon=True,
        )
        for index in range(1, workers)
    ]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    cache = cache or DataCache()
    # A missing or corrupt data set stops the run here, before any worker starts.
    check_data(study, cache)
    with nullcontext(store) if store is not None else Store.open(store_path) as store:
        study_id, hashes = register(study, store)
        plan_unplanned(
            store,
            study_id,
            hashes,
            cache,
            population=population,
            workers=workers,
            device=device,
            device_memory=devices.total_memory(device),
        )
        before = store.status_counts(study_id, hashes=set(hashes))
        main_thread = threading.current_thread() is threading.main_thread()
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None  # inherited: see _worker
        try:
            for child in children:
                child.start()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, handler)
        try:
            summary = run_local(
                study,
                store,
                reporter=reporter,
                population=population,
                pruning=pruning,
                cache=cache,
                checkpoint_every=checkpoint_every,
                workers=workers,
                device=device,
            )
            for child in children:
                child.join()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches every worker; a SIGINT sent to this process alone is
            # passed on, so that each worker gives its trials back before the command exits.
            stop.set()
            for child in children:
                if child.is_alive() and child.pid is not None:
                    os.kill(child.pid, signal.SIGINT)
            for child in children:
                child.join(timeout=60)
            raise
        finally:
            torch.set_num_threads(previous)
            for child in children:
                if child.is_alive():
                    child.join(timeout=30)
        after = store.status_counts(study_id, hashes=set(hashes))
    summary.ran = {s: after[s] - before.get(s, 0) for s in FINISHED_STATUSES if after.get(s, 0) > before.get(s, 0)}
    summary.busy_elsewhere = after.get("running", 0)
    return summary
