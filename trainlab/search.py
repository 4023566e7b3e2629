"""Sampling search points through Optuna's samplers (pruning is :mod:`trainlab.pruning`'s own).

trainlab keeps no Optuna database: the store is the only record. Each round of a search
rebuilds an in-memory Optuna study from the points already sampled (their values read from
the store) and asks it for the next ones, so a search resumes wherever it stopped, and the
points asked in a round depend only on the history before it and the search's seed.

Choices are sampled as indices, so a choice may be any TOML value (a list of layer widths, a
table naming an optimizer), not only the scalars Optuna stores.
"""

from __future__ import annotations

import logging
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
