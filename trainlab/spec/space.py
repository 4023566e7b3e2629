"""A stage's ``[search]`` table: how many variants to sample, with which sampler, from which space.

Each key of ``space`` is a key path (or ``edit.NAME``) with the distribution its values come
from. This module only reads and checks the table; :mod:`trainlab.search` samples from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainlab.errors import SpecError
from trainlab.registry import Param, check_params, join, non_negative, param
from trainlab.spec.keypaths import point_key
from trainlab.spec.sections import as_table


@dataclass(frozen=True)
class Dimension:
    """One axis of a search space: a key path and the distribution its values come from.

    ``kind`` is ``choice`` (``values``), ``uniform``, ``log_uniform`` (``low``..``high``) or
    ``int`` (``low``..``high`` in ``step``s, log-spaced if ``log``).
    """

    key: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class SearchSpec:
    """A ``[search]`` table: how many variants to sample, from which space, with which sampler."""

    sampler: str
    trials: int
    seed: int
    batch: int
    space: tuple[Dimension, ...]
    prune: str
    prune_warmup: int
    where: str


_SEARCH = {
    "sampler": param("random", str),
    "trials": Param(None, (int,), lambda v: None if 1 <= v <= 10_000 else "must be in 1..10000", required=True),
    "seed": param(0, int, check=non_negative),
    "batch": Param(None, (int, type(None)), lambda v: None if v is None or v >= 1 else "must be >= 1"),
    "space": Param(None, (dict,), required=True),
    "prune": param("none", str),
    "prune_warmup": param(1, int, check=non_negative),
}
SAMPLERS = ("random", "tpe", "qmc")
"""``random`` and ``tpe`` are Optuna's samplers; ``qmc`` is a scrambled Sobol sequence
(:mod:`trainlab.search`), which covers the space evenly at any budget."""
PRUNERS = ("none", "median", "successive_halving")
TPE_BATCH = 4
"""Variants a TPE search samples per round by default: enough to fill a population."""
SOBOL_MAX_DIMENSIONS = 21201
"""The most dimensions SciPy's Sobol sequence has direction numbers for."""

DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int")
_BOUNDS = {"uniform": (int, float), "log_uniform": (int, float), "int": (int,)}
"""The numbers each ranged distribution's ``[low, high]`` takes."""
_OPTIONS = {"int": ("step", "log")}
"""The keys a distribution takes beside its own."""


def parse_search(value: Any, where: str) -> SearchSpec:
    """Validate a ``[search]`` table; its space's keys in sorted order (the store's JSON loses theirs)."""
    table = check_params(as_table(value, where), _SEARCH, where)
    for key, allowed in (("sampler", SAMPLERS), ("prune", PRUNERS)):
        if table[key] not in allowed:
            raise SpecError(f"unknown {key} {table[key]!r}", path=join(where, key), allowed=allowed, got=table[key])
    space = table["space"]
    if not space:
        raise SpecError(
            "the search space needs at least one key path, "
            'e.g. "optimizer.learning_rate" = { log_uniform = [1e-4, 1e-1] }',
            path=join(where, "space"),
        )
    if table["sampler"] == "qmc" and len(space) > SOBOL_MAX_DIMENSIONS:
        raise SpecError(
            f"a qmc search has at most {SOBOL_MAX_DIMENSIONS} dimensions, got {len(space)}", path=join(where, "space")
        )
    dims = tuple(dimension(key, dist, join(join(where, "space"), key)) for key, dist in sorted(space.items()))
    batch = table["batch"] or (TPE_BATCH if table["sampler"] == "tpe" else table["trials"])
    return SearchSpec(
        table["sampler"],
        table["trials"],
        table["seed"],
        min(batch, table["trials"]),
        dims,
        table["prune"],
        table["prune_warmup"],
        where,
    )


def dimension(key: str, dist: Any, where: str) -> Dimension:
    """One axis of a search space: ``key`` checked, and its distribution."""
    point_key(key, where)
    kind = _kind(dist, where)
    if kind == "choice":
        return _choice(key, dist[kind], join(where, kind))
    low, high = _bounds(kind, dist[kind], join(where, kind))
    log = kind == "log_uniform" or bool(dist.get("log", False))
    if log and low <= 0:
        raise SpecError(f"a log scale needs low > 0, got {low}", path=join(where, kind))
    step = _step(kind, dist.get("step", 1), log, join(where, "step"))
    return Dimension(key, kind, low=low, high=high, step=step, log=log)


def _kind(dist: Any, where: str) -> str:
    """The one distribution a table names, its other keys checked against those it takes."""
    if not isinstance(dist, Mapping) or len([k for k in dist if k in DISTRIBUTIONS]) != 1:
        raise SpecError(
            "a distribution is one of { choice = [...] }, { uniform = [low, high] }, "
            "{ log_uniform = [low, high] } or { int = [low, high], step = 1, log = false }",
            path=where,
            allowed=DISTRIBUTIONS,
        )
    kind = next(k for k in dist if k in DISTRIBUTIONS)
    options = _OPTIONS.get(kind, ())
    extra = [k for k in dist if k != kind and k not in options]
    if extra:
        raise SpecError(f"unknown key {extra[0]!r}", path=join(where, extra[0]), allowed=options, got=extra[0])
    return kind


def _choice(key: str, values: Any, where: str) -> Dimension:
    if not isinstance(values, list) or not values:
        raise SpecError(f"a non-empty list of values, got {values!r}", path=where)
    return Dimension(key, "choice", values=tuple(values))


def _bounds(kind: str, value: Any, where: str) -> tuple[Any, Any]:
    """``[low, high]``: two finite numbers of the kind's type, low < high."""
    numbers = _BOUNDS[kind]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers) for v in value)
        or not all(math.isfinite(v) for v in value)
        or not value[0] < value[1]
    ):
        raise SpecError(
            f"[low, high] with low < high{' (integers)' if kind == 'int' else ''}, got {value!r}", path=where
        )
    return value[0], value[1]


def _step(kind: str, step: Any, log: bool, where: str) -> Any:
    """An ``int`` distribution's step: a positive integer, 1 on a log scale."""
    if kind == "int" and (isinstance(step, bool) or not isinstance(step, int) or step < 1 or (log and step != 1)):
        raise SpecError(f"a positive integer step (1 on a log scale), got {step!r}", path=where)
    return step


def extremes(search: SearchSpec) -> list[dict[str, Any]]:
    """Points of a search space that exercise every bound and every choice (for validation)."""
    dims = search.space
    low = {d.key: d.values[0] if d.kind == "choice" else d.low for d in dims}
    points = [low, {d.key: d.values[-1] if d.kind == "choice" else d.high for d in dims}]
    for d in dims:
        points += [{**low, d.key: v} for v in d.values[1:-1]]
    return points
