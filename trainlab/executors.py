"""Executors: take a study's trials from the store one claim at a time and train them.

The local executor trains in this process. Every finished epoch goes to the store in one
transaction together with the state to resume from, so killing the process loses at most the
epoch in flight; a trial that fails is recorded with its error text and the study goes on.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from trainlab import data as datasets
from trainlab import models, planner
from trainlab.engine import Tensors, evaluate, fit, weights_bytes
from trainlab.engine.population import Member, fit_population
from trainlab.errors import SpecError, StoreError, TrainlabError
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
              cache: DataCache | None = None, population: int | None = None) -> RunSummary:
    """Train every unfinished trial of ``study`` in this process, recording into ``store``.

    Trials that can share a population (see :mod:`trainlab.planner`) train together: as many
    at once as measured throughput favours, or ``population`` of them (1: one at a time).
    Data is prepared (and verified) for every trial before the first one trains, so that a
    missing or corrupt data set stops the run before any work is done.
    """
    reporter = reporter or Silent()
    owner = owner or make_owner()
    cache = cache or DataCache()
    check_data(study, cache)
    study_id, hashes = register(study, store)
    wanted = set(hashes)
    current = store.trials(study_id, hashes=wanted)
    summary = RunSummary(study_id, len(current), skipped_done=sum(t.status in FINISHED_STATUSES for t in current))
    reporter.study_started(len(current), summary.skipped_done)
    try:
        while (leader := store.claim_next(study_id, owner, hashes=wanted)) is not None:
            unit = [leader, *_mates(leader, store, study_id, wanted, owner, cache, population)]
            for status in run_unit(unit, store, owner, cache, reporter):
                summary.ran[status] = summary.ran.get(status, 0) + 1
    except KeyboardInterrupt:
        # Wherever Ctrl-C landed (choosing mates, between trials, inside a unit), give back every
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


def check_data(study: Study, cache: DataCache) -> None:
    """Prepare (and verify) every data set of ``study`` and check each batch size fits its data.

    What only the data can refute (a missing or corrupt file, a split or batch larger than the
    data) is found here, before anything is written to a store.
    """
    for spec in {canonical_json(v.spec["data"]): v.spec["data"] for v in study.variants}.values():
        try:
            _check_batch_size(study, spec, cache)
        except SpecError as exc:
            raise (exc.in_file(study.source) if study.source and not exc.file else exc) from None


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


def run_unit(trials: Sequence[TrialRecord], store: Store, owner: str, cache: DataCache, reporter: Reporter) -> list[str]:
    """Train claimed trials to their end, together if several, and record each; returns their statuses.

    A unit that raises records its unfinished trials as ``failed`` with the error text. Ctrl-C
    gives them back (their finished epochs stay) and propagates.
    """
    specs = [json.loads(t.spec_json) for t in trials]
    finished: dict[int, str] = {}
    try:
        tensors, info, split = cache.get(specs[0]["data"])
        nets = [models.build(spec["model"], info.input_shape, derive(t.seed, "init")) for t, spec in zip(trials, specs)]
        saved = [store.artifact(t.id, CHECKPOINT) for t in trials]
        resumes = [a.data if a is not None else None for a in saved]
        reporter.unit_started(trials, specs[0]["train"]["epochs"], _resumes_at(saved[0]))

        def on_epoch(i: int, epoch: int, logs: dict[str, float], make_checkpoint: Any) -> None:
            store.record_epoch(trials[i].id, owner, epoch, logs, make_checkpoint(), checkpoint_format="safetensors")
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
    except StoreError:
        # The store failed (damaged, full, locked too long): not the trials' fault, so they are not
        # marked failed; they are given back if the store still takes writes, and the run stops.
        for i, trial in enumerate(trials):
            if i not in finished:
                try:
                    store.release(trial.id, owner)
                except StoreError:
                    break
        raise
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


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker(study: Study, store_path: str, threads: int, population: int | None, stop: Any) -> None:
    """A pool process: claims and trains trials until none is left, quietly.

    It starts with Ctrl-C ignored (a SIGINT while it imports would print a traceback) and
    takes it up here, once: a Ctrl-C in a terminal reaches it twice (from the terminal and
    passed on by the driver), and the second must not cut short the giving back of its trials.
    ``stop`` is set by a driver that was interrupted before this process took Ctrl-C up.
    """
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        if stop.is_set():
            return
        torch.set_num_threads(threads)
        with Store.open(store_path) as store:
            run_local(study, store, population=population)
    except KeyboardInterrupt:
        pass


def run_pool(study: Study, store_path: str, workers: int, *, reporter: Reporter | None = None,
             population: int | None = None, cache: DataCache | None = None) -> RunSummary:
    """Train ``study`` with ``workers`` processes sharing the machine's cores and one store.

    This process is one of the workers (its progress is the one shown); the others claim trials
    from the same store, so each trial still runs once. Results do not depend on the number of
    workers: every trial's randomness comes from its own seed.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    children = [context.Process(target=_worker, args=(study, store_path, threads, population, stop), daemon=True)
                for _ in range(workers - 1)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    with Store.open(store_path) as store:
        study_id, hashes = register(study, store)
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
            summary = run_local(study, store, reporter=reporter, population=population, cache=cache)
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
