"""Pruning a search's hopeless trials: whom a trial is compared with, and the rule that stops it.

A trial of a pruned search is judged, epoch by epoch, against its **peers**: the other trials of
the same search (the same stage: never another stage's search, so that a slow-starting variant is
not cut against a fast one) that share its seed and fold (the same data order and initial
weights), and that were either sampled in an earlier round of the search or train in its own
population. Earlier rounds had finished before the round was sampled, so their curves are
complete; a population's members train in lockstep, and the decision for an epoch is made once
every member has ended it (:data:`trainlab.engine.population.PruneMembers`), so no member's fate
depends on the order members report in. Points of the same round in another population (another
batch size, say) are not peers: whether their epochs are recorded yet depends on timing.

The rules, on each trial's **score** at epoch ``e`` (the best value of the search's metric over
epochs ``0..e``), judged from epoch ``prune_warmup`` on, and only with at least
:data:`MIN_PEERS` peers that reached epoch ``e``:

* ``median``: a trial whose score is strictly worse than the median of its peers' scores stops;
* ``successive_halving``: at rung epochs ``w, 3w, 9w, ...`` (``w = max(1, prune_warmup)``), a
  trial stops unless it is among the best third (rounded up) of itself and its peers: it stops
  when that many peers score strictly better.

Because decisions use recorded values only, and the epoch's checkpoint is written after its
decision, a resumed search makes the decisions an uninterrupted one makes: peers that finished
before the resume are read back from the store.

:class:`Pruning` is plain data (worker processes take it along); :meth:`Pruning.for_population`
builds, from the store, the :class:`PopulationPruner` of the trials that train together.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from trainlab.engine.population import PruneMembers
from trainlab.store import Store, TrialRecord

MIN_PEERS = 2
"""The fewest peers with a value at an epoch for a trial to be judged there: one other trial is
too few to call a trial hopeless."""

HALVING_RATE = 3
"""Successive halving keeps the best ``1 / HALVING_RATE`` at each rung, and rungs are this far apart."""


@dataclass(frozen=True)
class SearchTrial:
    """One trial of a pruned search: its hash, the round its point was sampled in, and its group
    (seed and fold): only trials of one group are compared."""

    hash: str
    round: int
    group: str


@dataclass(frozen=True)
class PrunedSearch:
    """A search stage that prunes: its rule (``median`` or ``successive_halving``), warm-up epochs,
    the metric judged and whether higher is better, and its trials. ``stage`` names the search:
    its stage's name, or ``STAGE/VARIANT/REPEAT`` for one search of a tuned stage (each tuned
    variant's search prunes on its own, so a point is only judged against its own variant's)."""

    stage: str
    kind: str
    warmup: int
    metric: str
    maximize: bool
    trials: tuple[SearchTrial, ...]


def score(curve: Mapping[int, float], epoch: int, maximize: bool) -> float | None:
    """The best finite value of ``curve`` at epochs ``0..epoch``; None if it has none."""
    values = [v for e, v in curve.items() if e <= epoch and math.isfinite(v)]
    if not values:
        return None
    return max(values) if maximize else min(values)


def judged_at(kind: str, warmup: int, epoch: int) -> bool:
    """Whether a trial may be stopped at ``epoch`` (numbered from 0) under rule ``kind``."""
    if epoch < warmup:
        return False
    if kind == "median":
        return True
    rung = max(1, warmup)
    while rung < epoch:
        rung *= HALVING_RATE
    return rung == epoch


def hopeless(kind: str, own: float, peers: Sequence[float], maximize: bool) -> bool:
    """Whether a trial scoring ``own`` stops against its peers' scores (see the module docstring)."""
    if len(peers) < MIN_PEERS:
        return False
    better = [p for p in peers if (p > own if maximize else p < own)]
    if kind == "median":
        middle = statistics.median(peers)
        return own < middle if maximize else own > middle
    return len(better) >= math.ceil((len(peers) + 1) / HALVING_RATE)


@dataclass(frozen=True)
class Pruning:
    """The pruned searches of a study as far as they are known: plain data, so that worker
    processes can take it along; :meth:`for_population` builds the pruner from the store."""

    searches: tuple[PrunedSearch, ...]

    def for_population(self, store: Store, study_id: int, hashes: Sequence[str]) -> PopulationPruner | None:
        """The pruner of the trials ``hashes`` that train together, their peers' curves read from the store."""
        wanted = set(hashes)
        judged: dict[str, JudgedTrial] = {}
        recorded: dict[str, dict[int, float]] = {}
        for search in self.searches:
            mine = [t for t in search.trials if t.hash in wanted]
            if not mine:
                continue
            records = {t.hash: t for t in store.trials(study_id, hashes={t.hash for t in search.trials})}
            curves = {h: _curve(store, r, search.metric) for h, r in records.items()}
            for trial in mine:
                population = _population(records.get(trial.hash))
                fixed = [
                    p.hash
                    for p in search.trials
                    if p.hash != trial.hash
                    and p.group == trial.group
                    and p.hash in records
                    and (
                        p.round < trial.round
                        or (
                            p.round == trial.round
                            and p.hash not in wanted
                            and population is not None
                            and _population(records[p.hash]) == population
                        )
                    )
                ]
                live = [
                    p.hash for p in mine if p.hash != trial.hash and (p.group, p.round) == (trial.group, trial.round)
                ]
                judged[trial.hash] = JudgedTrial(search, {h: curves[h] for h in fixed}, tuple(live))
                recorded[trial.hash] = curves.get(trial.hash, {})
        return PopulationPruner(judged, recorded) if judged else None


def _population(record: TrialRecord | None) -> str | None:
    return None if record is None else (record.plan or {}).get("population")


def _curve(store: Store, record: TrialRecord, metric: str) -> dict[int, float]:
    """A trial's recorded values of ``metric`` by epoch (a trial that resumes: those before this run)."""
    return {e.epoch: float(e.metrics[metric]) for e in store.epochs(record.id) if e.metrics.get(metric) is not None}


@dataclass(frozen=True)
class JudgedTrial:
    """A trial this process trains, its search, and its peers: ``fixed`` (curves read from the
    store) and ``live`` (members of its population, by hash)."""

    search: PrunedSearch
    fixed: Mapping[str, Mapping[int, float]]
    live: tuple[str, ...]


class PopulationPruner:
    """The pruning decisions for the trials of one population, by trial hash."""

    def __init__(self, judged: Mapping[str, JudgedTrial], curves: Mapping[str, Mapping[int, float]]) -> None:
        self._judged = dict(judged)
        self._curves = {h: dict(curves.get(h, {})) for h in judged}

    def peers(self, trial_hash: str) -> list[str]:
        """The hashes ``trial_hash`` is compared with (recorded and live), sorted."""
        judged = self._judged.get(trial_hash)
        return [] if judged is None else sorted([*judged.fixed, *judged.live])

    def decide(self, epoch: int, logs: Mapping[str, Mapping[str, float]]) -> set[str]:
        """Every trial of the population has ended ``epoch`` with ``logs`` (by hash): the ones to stop."""
        for h, values in logs.items():
            if h in self._judged and values.get(self._judged[h].search.metric) is not None:
                self._curves[h][epoch] = float(values[self._judged[h].search.metric])
        return {h for h in logs if h in self._judged and self._hopeless(h, epoch)}

    def _hopeless(self, trial_hash: str, epoch: int) -> bool:
        judged = self._judged[trial_hash]
        search = judged.search
        if not judged_at(search.kind, search.warmup, epoch):
            return False
        own = self._curves[trial_hash]
        if epoch not in own:
            return False
        mine = score(own, epoch, search.maximize)
        curves = [*judged.fixed.values(), *(self._curves[h] for h in judged.live)]
        peers = [score(c, epoch, search.maximize) for c in curves if epoch in c]
        known = [p for p in peers if p is not None]
        return mine is not None and hopeless(search.kind, mine, known, search.maximize)

    def for_indices(self, hashes: Sequence[str]) -> PruneMembers:
        """The engine's per-epoch question for a population whose member ``i`` is trial ``hashes[i]``."""

        def prune(epoch: int, logs: Mapping[int, dict[str, float]]) -> Collection[int]:
            stop = self.decide(epoch, {hashes[i]: values for i, values in logs.items()})
            return {i for i in logs if hashes[i] in stop}

        return prune
