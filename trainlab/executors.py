"""Executors: take a study's trials from the store one claim at a time and train them.

The local executor trains in this process. Every finished epoch goes to the store in one
transaction together with the state to resume from, so killing the process loses at most the
epoch in flight; a trial that fails is recorded with its error text and the study goes on.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from trainlab import data as datasets
from trainlab import models
from trainlab.engine import Tensors, evaluate, fit, weights_bytes
from trainlab.errors import TrainlabError
from trainlab.optim import Optimizer
from trainlab.seeding import derive
from trainlab.spec import Study, TrainSettings, canonical_json
from trainlab.store import CHECKPOINT, ClaimLostError, NewTrial, Store, TrialRecord, make_owner


class Reporter(Protocol):
    """What an executor tells whoever watches it (the CLI's progress bars, or nothing)."""

    def study_started(self, total: int, done: int) -> None: ...
    def trial_started(self, trial: TrialRecord, epochs: int, resumed_at: int) -> None: ...
    def batch(self, step: int, steps: int) -> None: ...
    def epoch_finished(self, epoch: int, logs: Mapping[str, float]) -> None: ...
    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None: ...


class Silent:
    """A reporter that shows nothing."""

    def study_started(self, total: int, done: int) -> None: pass
    def trial_started(self, trial: TrialRecord, epochs: int, resumed_at: int) -> None: pass
    def batch(self, step: int, steps: int) -> None: pass
    def epoch_finished(self, epoch: int, logs: Mapping[str, float]) -> None: pass
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

    def get(self, spec: Mapping[str, Any]) -> tuple[Tensors, datasets.DataInfo, dict[str, Any]]:
        key = canonical_json(spec)
        if key not in self._cache:
            prepared = datasets.prepare(spec)
            tensors = Tensors(*(torch.from_numpy(getattr(prepared, name)) for name in (
                "x_train", "y_train", "x_val", "y_val", "x_test", "y_test")))
            self._cache[key] = (tensors, prepared.info, prepared.split)
        return self._cache[key]


def register(study: Study, store: Store) -> tuple[int, list[str]]:
    """Record the study and its trials in the store (idempotent); returns its id and trial hashes."""
    trials = study.trials()
    study_id = store.ensure_study(study.name, study.spec_json(), study.hash, study.source)
    store.add_trials(study_id, [NewTrial(t.hash, t.label, t.params, t.seed, t.spec_json()) for t in trials])
    return study_id, [t.hash for t in trials]


def run_local(study: Study, store: Store, *, reporter: Reporter | None = None, owner: str | None = None,
              cache: DataCache | None = None) -> RunSummary:
    """Train every unfinished trial of ``study`` in this process, recording into ``store``.

    Data is prepared (and verified) for every trial before the first one trains, so that a
    missing or corrupt data set stops the run before any work is done.
    """
    reporter = reporter or Silent()
    owner = owner or make_owner()
    cache = cache or DataCache()
    study_id, hashes = register(study, store)
    for spec in {canonical_json(v.spec["data"]): v.spec["data"] for v in study.variants}.values():
        _check_batch_size(study, spec, cache)
    wanted = set(hashes)
    current = [t for t in store.trials(study_id) if t.hash in wanted]
    summary = RunSummary(study_id, len(current), skipped_done=sum(t.status in ("done", "diverged", "failed", "pruned") for t in current))
    reporter.study_started(len(current), summary.skipped_done)
    while (trial := store.claim_next(study_id, owner, hashes=wanted)) is not None:
        status = run_trial(trial, store, owner, cache, reporter)
        summary.ran[status] = summary.ran.get(status, 0) + 1
    summary.busy_elsewhere = sum(t.status == "running" for t in store.trials(study_id) if t.hash in wanted)
    return summary


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


def run_trial(trial: TrialRecord, store: Store, owner: str, cache: DataCache, reporter: Reporter) -> str:
    """Train one claimed trial to its end and record it; returns the final status.

    A trial that raises is recorded as ``failed`` with its error text. Ctrl-C gives the trial
    back (its finished epochs stay) and propagates.
    """
    spec = json.loads(trial.spec_json)
    settings = TrainSettings.of(spec)
    try:
        tensors, info, split = cache.get(spec["data"])
        net = models.build(spec["model"], info.input_shape, derive(trial.seed, "init"))
        optimizer = Optimizer([p for p in net.parameters() if p.requires_grad], spec["optimizer"])
        saved = store.artifact(trial.id, CHECKPOINT)
        resume = saved.data if saved is not None else None
        reporter.trial_started(trial, settings.epochs, saved.epoch + 1 if saved and saved.epoch is not None else 0)

        def on_epoch(epoch: int, logs: dict[str, float], make_checkpoint: Any) -> None:
            store.record_epoch(trial.id, owner, epoch, logs, make_checkpoint(), checkpoint_format="safetensors")
            reporter.epoch_finished(epoch, logs)

        result = fit(net, optimizer, tensors, settings, info.task, seed=trial.seed,
                     resume=resume, on_epoch=on_epoch, on_batch=reporter.batch)
        net.load_state_dict(result.weights)
        test = evaluate(net, tensors.x_test, tensors.y_test, info.task, settings.loss)
        outcome = {
            "best_epoch": result.best_epoch,
            "best": result.best,
            "epochs": result.epochs,
            "stop_reason": result.stop_reason,
            "test": test,
            "split": split,
            "seconds_per_epoch": sum(h["seconds"] for h in result.history) / max(len(result.history), 1),
        }
        weights = weights_bytes(result.weights, {"trial": trial.hash, "spec": spec, "input_shape": list(info.input_shape)})
        store.finish_trial(trial.id, owner, result.status, result=outcome, weights=weights, weights_format="safetensors")
        reporter.trial_finished(trial, result.status, outcome)
        return result.status
    except KeyboardInterrupt:
        store.release(trial.id, owner)
        raise
    except ClaimLostError:
        # Another process holds the trial now (this one was presumed dead): its result is theirs.
        return "lost"
    except TrainlabError as exc:
        store.finish_trial(trial.id, owner, "failed", error=str(exc))
        reporter.trial_finished(trial, "failed", {"error": str(exc)})
        return "failed"
    except Exception:
        text = traceback.format_exc()
        store.finish_trial(trial.id, owner, "failed", error=text)
        reporter.trial_finished(trial, "failed", {"error": text.strip().splitlines()[-1]})
        return "failed"
