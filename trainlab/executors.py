"""Executors: take a study's trials from the store one claim at a time and train them.

The local executor trains in this process. Every finished epoch goes to the store as it ends,
with the state to resume from every :data:`CHECKPOINT_EVERY` seconds, so killing the process
loses at most that much training, which the next run re-does identically; a trial that fails is
recorded with its error text and the study goes on.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from trainlab import data as datasets
from trainlab import models, planner
from trainlab.engine import Tensors, evaluate, fit, weights_bytes
from trainlab.engine.population import Member, fit_population
from trainlab.errors import TrainlabError
from trainlab.optim import Optimizer
from trainlab.seeding import derive
from trainlab.spec import Study, TrainSettings, canonical_json
from trainlab.store import CHECKPOINT, FINISHED_STATUSES, ArtifactRecord, ClaimLostError, NewTrial, Store, TrialRecord, make_owner


class Reporter(Protocol):
    """What an executor tells whoever watches it (the CLI's progress bars, or nothing)."""

    def study_started(self, total: int, done: int) -> None: ...
    def unit_started(self, trials: Sequence[TrialRecord], epochs: int, resumed_at: int) -> None: ...
    def batch(self, step: int, steps: int) -> None: ...
    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None: ...
    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None: ...


class Silent:
    """A reporter that shows nothing."""

    def study_started(self, total: int, done: int) -> None: pass
    def unit_started(self, trials: Sequence[TrialRecord], epochs: int, resumed_at: int) -> None: pass
    def batch(self, step: int, steps: int) -> None: pass
    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None: pass
    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None: pass


@dataclass
class RunSummary:
    """What one ``run`` did: trials it finished by status, and those it left to other processes."""

    study_id: int
    total: int
    ran: dict[str, int] = field(default_factory=dict)
    skipped_done: int = 0
    busy_elsewhere: int = 0


class DataCache:
    """Prepared data sets as tensors, by their resolved ``data`` spec, loaded once per process."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Tensors, datasets.DataInfo, dict[str, Any]]] = {}

    def get(self, spec: Mapping[str, Any], *, channels_last: bool = False) -> tuple[Tensors, datasets.DataInfo, dict[str, Any]]:
        """The tensors of a data spec; ``channels_last`` lays images out N, H, W, C in memory (same shape)."""
        key = canonical_json({"data": spec, "channels_last": channels_last})
        if key not in self._cache:
            if channels_last:
                plain, info, split = self.get(spec)
                tensors = Tensors(*(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in (
                    plain.x_train, plain.y_train, plain.x_val, plain.y_val, plain.x_test, plain.y_test)))
            else:
                prepared = datasets.prepare(spec)
                tensors = Tensors(*(torch.from_numpy(getattr(prepared, name)) for name in (
                    "x_train", "y_train", "x_val", "y_val", "x_test", "y_test")))
                info, split = prepared.info, prepared.split
            self._cache[key] = (tensors, info, split)
        return self._cache[key]


CHECKPOINT_EVERY = 10.0
"""Default seconds of training between two checkpoints of a trial.

Every epoch's metrics are recorded as it ends; the resumable state (weights, optimizer state,
callbacks) is written with an epoch only when this long has passed since the last one. Writing
it costs milliseconds to tens of milliseconds (packing the weights and optimizer state, and the
store write): nothing next to an epoch of seconds, but the whole cost of a full-batch epoch on
a small data set, or a large share of one on MNIST. A crash then loses at most this much
training: the next run resumes from the last checkpoint and re-does the epochs after it,
deterministically (every epoch's randomness derives from the trial seed and the epoch), and
their re-recorded rows replace those the crashed run left.
"""


def _monotonic() -> float:
    return time.monotonic()


class CheckpointPolicy:
    """Whether an epoch's checkpoint is written: when ``every`` seconds have passed since the
    last one written (or since the unit began). One decision per epoch, shared by every member of
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


def _convolutional(spec: Mapping[str, Any]) -> bool:
    """Convolutional models train a third faster in channels_last layout here (bench/README.md)."""
    return any(layer["type"] == "Conv2D" for layer in spec["model"]["layers"])


def register(study: Study, store: Store) -> tuple[int, list[str]]:
    """Record the study and its trials in the store (idempotent); returns its id and trial hashes."""
    trials = study.trials()
    study_id = store.ensure_study(study.name, study.spec_json(), study.hash, study.source)
    store.add_trials(study_id, [NewTrial(t.hash, t.label, t.params, t.seed, t.spec_json()) for t in trials])
    return study_id, [t.hash for t in trials]


def run_local(study: Study, store: Store, *, reporter: Reporter | None = None, owner: str | None = None,
              cache: DataCache | None = None, population: int | None = None,
              checkpoint_every: float = CHECKPOINT_EVERY) -> RunSummary:
    """Train every unfinished trial of ``study`` in this process, recording into ``store``.

    Trials that can share a population (see :mod:`trainlab.planner`) train together: as many
    at once as measured throughput favours, or ``population`` of them (1: one at a time).
    ``checkpoint_every``: seconds of training between checkpoints (see :data:`CHECKPOINT_EVERY`).
    Data is prepared (and verified) for every trial before the first one trains, so that a
    missing or corrupt data set stops the run before any work is done.
    """
    reporter = reporter or Silent()
    owner = owner or make_owner()
    cache = cache or DataCache()
    _check_data(study, cache)
    study_id, hashes = register(study, store)
    wanted = set(hashes)
    current = store.trials(study_id, hashes=wanted)
    summary = RunSummary(study_id, len(current), skipped_done=sum(t.status in FINISHED_STATUSES for t in current))
    reporter.study_started(len(current), summary.skipped_done)
    while (leader := store.claim_next(study_id, owner, hashes=wanted)) is not None:
        unit = [leader, *_mates(leader, store, study_id, wanted, owner, cache, population)]
        for status in run_unit(unit, store, owner, cache, reporter, CheckpointPolicy(checkpoint_every)):
            summary.ran[status] = summary.ran.get(status, 0) + 1
    summary.busy_elsewhere = sum(t.status == "running" for t in store.trials(study_id, hashes=wanted))
    return summary


def _resumes_at(saved: ArtifactRecord | None) -> int:
    """The epoch a trial with this checkpoint (or none) starts from."""
    return saved.epoch + 1 if saved is not None and saved.epoch is not None else 0


def _start_epoch(store: Store, trial: TrialRecord) -> int:
    return _resumes_at(store.artifact(trial.id, CHECKPOINT))


def _mates(leader: TrialRecord, store: Store, study_id: int, wanted: set[str], owner: str,
           cache: DataCache, population: int | None) -> list[TrialRecord]:
    """Pending trials that can train in one population with ``leader``, claimed for ``owner``."""
    if population == 1:
        return []
    spec = json.loads(leader.spec_json)
    key = planner.group_key(spec, leader.seed, _start_epoch(store, leader))
    # The seed is the cheap part of the key: only same-seed trials need their checkpoint looked up.
    candidates = [t for t in store.trials(study_id, status="pending", hashes=wanted) if t.seed == leader.seed
                  and planner.group_key(json.loads(t.spec_json), t.seed, _start_epoch(store, t)) == key]
    if not candidates:
        return []
    if population is not None:
        k = population
    else:
        tensors, info, _ = cache.get(spec["data"])
        k = planner.measure_k(spec, info.input_shape, tensors.x_train, tensors.y_train,
                              limit=min(len(candidates) + 1, planner.CANDIDATE_K[-1]))
    mates = []
    for trial in candidates:
        if len(mates) + 1 >= k:
            break
        if store.claim(trial.id, owner):
            mates.append(trial)
    return mates


def _check_data(study: Study, cache: DataCache) -> None:
    """Prepare (and verify) every data set the study uses, and check its batch sizes against them."""
    for spec in {canonical_json(v.spec["data"]): v.spec["data"] for v in study.variants}.values():
        _check_batch_size(study, spec, cache)


def _check_batch_size(study: Study, data_spec: Mapping[str, Any], cache: DataCache) -> None:
    tensors, _, _ = cache.get(data_spec)
    n = len(tensors.x_train)
    for v in study.variants:
        size = v.spec["train"]["batch_size"]
        if v.spec["data"] == data_spec and size != "full" and size > n:
            raise TrainlabError(
                f"{study.source or study.name}: train.batch_size (variant {v.label!r}): {size} is larger than "
                f"the training split ({n} examples); use at most {n}, or \"full\" for full-batch gradient descent"
            )


def run_unit(trials: Sequence[TrialRecord], store: Store, owner: str, cache: DataCache, reporter: Reporter,
             checkpoints: CheckpointPolicy | None = None) -> list[str]:
    """Train claimed trials to their end, together if several, and record each; returns their statuses.

    Every epoch is recorded; its checkpoint only when ``checkpoints`` says so (default: every
    :data:`CHECKPOINT_EVERY` seconds).

    A unit that raises records its unfinished trials as ``failed`` with the error text. Ctrl-C
    gives them back (their finished epochs stay) and propagates.
    """
    specs = [json.loads(t.spec_json) for t in trials]
    finished: dict[int, str] = {}
    policy = checkpoints or CheckpointPolicy()
    try:
        tensors, info, split = cache.get(specs[0]["data"])
        nets = [models.build(spec["model"], info.input_shape, derive(t.seed, "init")) for t, spec in zip(trials, specs)]
        saved = [store.artifact(t.id, CHECKPOINT) for t in trials]
        resumes = [a.data if a is not None else None for a in saved]
        reporter.unit_started(trials, specs[0]["train"]["epochs"], _resumes_at(saved[0]))

        def on_epoch(i: int, epoch: int, logs: dict[str, float], make_checkpoint: Any) -> None:
            blob = make_checkpoint() if policy.due(epoch) else None
            store.record_epoch(trials[i].id, owner, epoch, logs, blob, checkpoint_format="safetensors")
            reporter.epoch_finished(trials[i], epoch, logs)

        if len(trials) == 1:
            if _convolutional(specs[0]):
                nets[0] = nets[0].to(memory_format=torch.channels_last)
                tensors, _, _ = cache.get(specs[0]["data"], channels_last=True)
            optimizer = Optimizer([p for p in nets[0].parameters() if p.requires_grad], specs[0]["optimizer"])
            results = [fit(nets[0], optimizer, tensors, TrainSettings.of(specs[0]), info.task, seed=trials[0].seed,
                           resume=resumes[0], on_epoch=lambda e, logs, ck: on_epoch(0, e, logs, ck), on_batch=reporter.batch)]
        else:
            members = [Member(net, spec["optimizer"], TrainSettings.of(spec), resume) for net, spec, resume in zip(nets, specs, resumes)]
            results = fit_population(members, tensors, info.task, seed=trials[0].seed, on_epoch=on_epoch, on_batch=reporter.batch)
        for i, (trial, spec, net, result) in enumerate(zip(trials, specs, nets, results)):
            net.load_state_dict(result.weights)
            test = evaluate(net, tensors.x_test, tensors.y_test, info.task, spec["train"]["loss"])
            outcome = {
                "best_epoch": result.best_epoch,
                "best": result.best,
                "epochs": result.epochs,
                "stop_reason": result.stop_reason,
                "test": test,
                "split": split,
                "population": len(trials),
                "seconds_per_epoch": sum(h["seconds"] for h in result.history) / max(len(result.history), 1),
            }
            weights = weights_bytes(result.weights, {"trial": trial.hash, "spec": spec, "input_shape": list(info.input_shape)})
            store.finish_trial(trial.id, owner, result.status, result=outcome, weights=weights, weights_format="safetensors")
            finished[i] = result.status
            reporter.trial_finished(trial, result.status, outcome)
        return [finished[i] for i in range(len(trials))]
    except KeyboardInterrupt:
        for i, trial in enumerate(trials):
            if i not in finished:
                store.release(trial.id, owner)
        raise
    except ClaimLostError:
        # Another process holds these trials now (this one was presumed dead): their results are theirs.
        return [finished.get(i, "lost") for i in range(len(trials))]
    except Exception as exc:
        text = str(exc) if isinstance(exc, TrainlabError) else traceback.format_exc()
        for i, trial in enumerate(trials):
            if i not in finished:
                store.finish_trial(trial.id, owner, "failed", error=text)
                finished[i] = "failed"
                reporter.trial_finished(trial, "failed", {"error": text.strip().splitlines()[-1]})
        return [finished[i] for i in range(len(trials))]


def _groups(study: Study, store: Store) -> dict[str, int]:
    """Unfinished trials per group that could train as one population."""
    study_id, hashes = register(study, store)
    groups: dict[str, int] = {}
    for t in store.trials(study_id, hashes=set(hashes)):
        if t.status not in FINISHED_STATUSES:
            key = planner.group_key(json.loads(t.spec_json), t.seed, _start_epoch(store, t))
            groups[key] = groups.get(key, 0) + 1
    return groups


def auto_workers(study: Study, store: Store) -> int:
    """Worker processes for a study.

    Where trials form populations (two or more per group on average), one worker using every
    core is faster: measured on 2 cores, six optimizers x 3 seeds trained in 69 s with one
    2-thread worker against 81 s with two 1-thread workers (bench/README.md). Where trials
    train alone, one worker per core, at most one per group.
    """
    groups = _groups(study, store)
    if not groups or sum(groups.values()) >= 2 * len(groups):
        return 1
    return max(1, min(os.cpu_count() or 1, len(groups)))


def _worker(study: Study, store_path: str, threads: int, population: int | None, checkpoint_every: float) -> None:
    """A pool process: claims and trains trials until none is left, quietly."""
    torch.set_num_threads(threads)
    try:
        with Store.open(store_path) as store:
            run_local(study, store, population=population, checkpoint_every=checkpoint_every)
    except (KeyboardInterrupt, TrainlabError):
        pass  # the parent process, a worker too, meets the same problem and reports it


def run_pool(study: Study, store_path: str, workers: int, *, reporter: Reporter | None = None,
             population: int | None = None, checkpoint_every: float = CHECKPOINT_EVERY) -> RunSummary:
    """Train ``study`` with ``workers`` processes sharing the machine's cores and one store.

    This process is one of the workers (its progress is the one shown); the others claim trials
    from the same store, so each trial still runs once. Results do not depend on the number of
    workers: every trial's randomness comes from its own seed.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_worker, args=(study, store_path, threads, population, checkpoint_every), daemon=True)
                for _ in range(workers - 1)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    cache = DataCache()
    _check_data(study, cache)  # a missing data set stops the run here, before any worker starts
    with Store.open(store_path) as store:
        study_id, hashes = register(study, store)
        before = store.status_counts(study_id, hashes=set(hashes))
        for child in children:
            child.start()
        try:
            summary = run_local(study, store, reporter=reporter, population=population, checkpoint_every=checkpoint_every,
                                cache=cache)
            for child in children:
                child.join()
        finally:
            torch.set_num_threads(previous)
            for child in children:
                if child.is_alive():
                    child.join(timeout=30)
        after = store.status_counts(study_id, hashes=set(hashes))
    summary.ran = {s: after[s] - before.get(s, 0) for s in FINISHED_STATUSES if after.get(s, 0) > before.get(s, 0)}
    summary.busy_elsewhere = after.get("running", 0)
    return summary
