"""Sampling search points: random and TPE through Optuna's samplers, QMC from scrambled Sobol
points (pruning is :mod:`trainlab.pruning`'s own).

trainlab keeps no Optuna database: the store is the only record. Each round of a search
rebuilds an in-memory Optuna study from the points already sampled (their values read from
the store) and asks it for the next ones, so a search resumes wherever it stopped, and the
points asked in a round depend only on the history before it and the search's seed.

QMC does not go through Optuna: its ``QMCSampler`` would restart its sequence with every
rebuilt study (and draw the first point from a random fallback). Instead the ``k``-th point of
a QMC search is the ``k``-th point of one scrambled Sobol sequence, seeded by the search seed
alone, mapped onto the space as Optuna's distributions map the unit interval; a search that
resumes after ``k`` points skips the first ``k``.

Choices are sampled as indices, so a choice may be any TOML value (a list of layer widths, a
table naming an optimizer), not only the scalars Optuna stores.
"""

from __future__ import annotations

import logging
import math
import warnings
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


SOBOL_WARNING = "The balance properties of Sobol' points require n to be a power of 2."
"""SciPy's warning for a draw that does not end on a power of two: a budget need not be one."""


def unit_points(seed: int, dimensions: int, start: int, count: int) -> list[list[float]]:
    """Points ``start .. start + count - 1`` of the scrambled Sobol sequence that ``seed`` fixes,
    each in ``[0, 1)`` along every dimension."""
    from scipy.stats import qmc  # SciPy's stats take a while to import; only QMC searches need them

    engine = qmc.Sobol(dimensions, scramble=True, seed=seed)
    if start > 0:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SOBOL_WARNING)
        return [[float(u) for u in row] for row in engine.random(count)]


def from_unit(dim: Dimension, u: float) -> Any:
    """The value of ``dim`` at ``u`` in ``[0, 1)``, as Optuna's distributions map the unit interval.

    A choice takes index ``floor(u * k)`` of its ``k`` values; a float is uniform on its scale
    (logarithmic for ``log_uniform``); an integer is the nearest step to a uniform value on
    ``[low - step/2, high + step/2]`` (on ``[log(low - 1/2), log(high + 1/2)]`` for a log scale),
    so every step is as likely, the ends included. The top of an integer range that ``step`` does
    not reach is dropped, as Optuna drops it.
    """
    if dim.kind == "choice":
        return dim.values[min(int(u * len(dim.values)), len(dim.values) - 1)]
    if dim.kind == "int":
        return _int_from_unit(int(dim.low), int(dim.high), dim.step, dim.log, u)
    low, high = float(dim.low), float(dim.high)
    if dim.log:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return min(max(value, low), math.nextafter(high, low))
    return min(low + u * (high - low), math.nextafter(high, low))


def _int_from_unit(low: int, high: int, step: int, log: bool, u: float) -> int:
    high = low + (high - low) // step * step
    if log:
        lo, hi = math.log(low - 0.5), math.log(high + 0.5)
        return min(max(round(math.exp(lo + u * (hi - lo))), low), high)
    t = (low - step / 2) + u * (high - low + step)
    return min(max(low + math.floor((t - low) / step + 0.5) * step, low), high)


def qmc_points(search: SearchSpec, start: int, count: int) -> list[dict[str, Any]]:
    """Points ``start .. start + count - 1`` of a QMC search: the same points however the search
    is split into rounds, since the sequence depends on the search seed alone."""
    seed = derive(search.seed, "qmc")
    return [
        {d.key: from_unit(d, u) for d, u in zip(search.space, row, strict=True)}
        for row in unit_points(seed, len(search.space), start, count)
    ]


def propose(search: SearchSpec, history: Sequence[Point], count: int, direction: str) -> list[dict[str, Any]]:
    """The next ``count`` points to try, given every point sampled so far and its outcome.

    ``direction`` is ``maximize`` or ``minimize`` (the selection metric's). The sampler's seed
    is derived from the search seed and the number of points already sampled, so a search that
    resumes asks for the same points an uninterrupted one would have. A QMC search ignores the
    outcomes: its next points are the next ones of its sequence.
    """
    if search.sampler == "qmc":
        return qmc_points(search, len(history), count)
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
