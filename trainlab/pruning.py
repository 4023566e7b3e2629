"""Pruning a search's hopeless trials: which trials a pruned search holds, and the decisions for them.

:class:`Pruning` is plain data (the stages of a study that prune, and their trials in sampling
order), so that worker processes can take it along; :meth:`Pruning.for_population` builds, from
the store, the pruners for the trials that train together, each primed with its search's
recorded history. The decisions themselves are Optuna's (:mod:`trainlab.search`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainlab.losses import mode_for
from trainlab.search import Point, Pruner
from trainlab.store import FINISHED_STATUSES, Store


@dataclass(frozen=True)
class Pruning:
    """Which trials belong to a pruned search, and how to prune them: plain data, so that
    worker processes can take it along; :meth:`for_population` builds the pruners from the store."""

    stages: tuple[tuple[str, str, int, str, tuple[str, ...]], ...]
    """(stage name, pruner kind, warm-up epochs, metric, trial hashes in sampling order)."""

    def for_population(self, store: Store, study_id: int, hashes: Sequence[str]) -> PopulationPruner | None:
        """Pruners for the trials of one population, each primed with its search's recorded history."""
        wanted = set(hashes)
        pruners: dict[str, tuple[Pruner, str]] = {}
        for _name, kind, warmup, metric, stage_hashes in self.stages:
            if not wanted & set(stage_hashes):
                continue
            records = {t.hash: t for t in store.trials(study_id, hashes=set(stage_hashes))}
            history = []
            for h in stage_hashes:
                t = records.get(h)
                if t is None or t.status == "pending" and h not in wanted:
                    continue
                curve = {e.epoch: e.metrics[metric] for e in store.epochs(t.id) if e.metrics.get(metric) is not None}
                state = {"done": "complete", "pruned": "pruned"}.get(
                    t.status, "failed" if t.status in FINISHED_STATUSES else "running"
                )
                value = t.result["best"].get(metric) if t.status == "done" and t.result else None
                history.append((h, Point({}, state, value, curve)))
            pruner = Pruner(kind, warmup, "maximize" if mode_for(metric) == "max" else "minimize", history)
            for h in wanted & set(stage_hashes):
                pruners[h] = (pruner, metric)
        return PopulationPruner(pruners) if pruners else None


class PopulationPruner:
    """The pruning decisions for the trials of one population, by trial hash."""

    def __init__(self, pruners: Mapping[str, tuple[Pruner, str]]) -> None:
        self._pruners = dict(pruners)

    def should_prune(self, trial_hash: str, epoch: int, logs: Mapping[str, float]) -> bool:
        """Report a finished epoch; True if the trial should stop as pruned."""
        if trial_hash not in self._pruners:
            return False
        pruner, metric = self._pruners[trial_hash]
        return pruner.should_prune(trial_hash, epoch, float(logs[metric]))

    def finish(self, trial_hash: str, status: str, best: Mapping[str, float] | None) -> None:
        """A trial of the population ended; later decisions count it."""
        if trial_hash in self._pruners:
            pruner, metric = self._pruners[trial_hash]
            state = {"done": "complete", "pruned": "pruned"}.get(status, "failed")
            pruner.finish(trial_hash, state, (best or {}).get(metric))
