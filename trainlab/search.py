"""Sampling search points and pruning hopeless trials, through Optuna's samplers and pruners.

trainlab keeps no Optuna database: the store is the only record. Each round of a search
rebuilds an in-memory Optuna study from the points already sampled (their values read from
the store) and asks it for the next ones, so a search resumes wherever it stopped, and the
points asked in a round depend only on the history before it and the search's seed.

Choices are sampled as indices, so a choice may be any TOML value (a list of layer widths, a
table naming an optimizer), not only the scalars Optuna stores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from trainlab.seeding import derive
from trainlab.spec.space import Dimension, SearchSpec

optuna.logging.set_verbosity(logging.WARNING)

STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


@dataclass(frozen=True)
class Point:
    """A sampled point and what became of it: ``state`` is complete, pruned, failed or running;
    ``value`` the objective (mean over seeds of the selection metric) when complete;
    ``curve`` the intermediate values by epoch, when known."""

    values: dict[str, Any]
    state: str = "running"
    value: float | None = None
    curve: dict[int, float] = field(default_factory=dict)


def distributions(space: Sequence[Dimension]) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every dimension (choices as indices)."""
    out: dict[str, BaseDistribution] = {}
    for d in space:
        if d.kind == "choice":
            out[d.key] = CategoricalDistribution(list(range(len(d.values))))
        elif d.kind == "int":
            out[d.key] = IntDistribution(int(d.low), int(d.high), step=d.step, log=d.log)
        else:
            out[d.key] = FloatDistribution(float(d.low), float(d.high), log=d.log)
    return out


def _encode(space: Sequence[Dimension], values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for d in space:
        value = values[d.key]
        out[d.key] = next(i for i, v in enumerate(d.values) if v == value) if d.kind == "choice" else value
    return out


def _decode(space: Sequence[Dimension], params: Mapping[str, Any]) -> dict[str, Any]:
    return {d.key: d.values[params[d.key]] if d.kind == "choice" else params[d.key] for d in space}


def _sampler(search: SearchSpec, round_seed: int) -> optuna.samplers.BaseSampler:
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=round_seed)
    return optuna.samplers.RandomSampler(seed=round_seed)


def propose(search: SearchSpec, history: Sequence[Point], count: int, direction: str) -> list[dict[str, Any]]:
    """The next ``count`` points to try, given every point sampled so far and its outcome.

    ``direction`` is ``maximize`` or ``minimize`` (the selection metric's). The sampler's seed
    is derived from the search seed and the number of points already sampled, so a search that
    resumes asks for the same points an uninterrupted one would have.
    """
    dists = distributions(search.space)
    study = optuna.create_study(
        direction=direction, sampler=_sampler(search, derive(search.seed, "search", len(history)) % 2**32)
    )
    for point in history:
        state = STATES.get(point.state, TrialState.RUNNING)
        value = point.value if state == TrialState.COMPLETE else None
        study.add_trial(
            optuna.trial.create_trial(
                params=_encode(search.space, point.values),
                distributions=dists,
                state=state,
                value=value,
                intermediate_values=dict(point.curve),
            )
        )
    return [_decode(search.space, study.ask(dists).params) for _ in range(count)]


class Pruner:
    """Decides, epoch by epoch, whether a search trial is hopeless (Optuna's median or
    successive-halving rule on the selection metric of the trials of the same search).

    Built from the search's history as recorded (finished trials, then the curves of those
    still running), it then follows the trials this process trains as their epochs end.
    """

    def __init__(self, kind: str, warmup: int, direction: str, history: Sequence[tuple[str, Point]]) -> None:
        if kind == "median":
            pruner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(n_warmup_steps=warmup)
        elif kind == "successive_halving":
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup))
        else:
            raise ValueError(f"unknown pruner {kind!r}")
        self._study = optuna.create_study(
            direction=direction, pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0)
        )
        self._live: dict[str, optuna.Trial] = {}
        for key, point in history:
            trial = self._trial(key)
            for epoch, value in sorted(point.curve.items()):
                trial.report(value, epoch)
                trial.should_prune()
            if point.state != "running":
                self.finish(key, point.state, point.value)

    def _trial(self, key: str) -> optuna.Trial:
        if key not in self._live:
            self._live[key] = self._study.ask()
        return self._live[key]

    def should_prune(self, key: str, epoch: int, value: float) -> bool:
        """Report trial ``key``'s value at ``epoch``; True if the trial should stop here."""
        if not math.isfinite(value):
            return False
        trial = self._trial(key)
        trial.report(value, epoch)
        return trial.should_prune()

    def finish(self, key: str, state: str, value: float | None) -> None:
        """Trial ``key`` ended (complete with ``value``, pruned, or failed)."""
        trial = self._live.pop(key, None)
        if trial is None:
            return
        optuna_state = STATES.get(state, TrialState.FAIL)
        if optuna_state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            optuna_state = TrialState.FAIL
        self._study.tell(trial, value if optuna_state == TrialState.COMPLETE else None, state=optuna_state)
