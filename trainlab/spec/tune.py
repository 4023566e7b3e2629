"""A stage's ``tune`` table: every listed variant tuned by its own search, with the same budget.

A stage that lists its variants (``[[compare]]``, ``[grid]``) may add
``tune = { space = { ... }, trials = N, sampler = "qmc", seed = S }``. Each variant then gets a
search of its own over ``space`` (plus the dimensions ``extra.LABEL`` adds for the compare entry
``LABEL``, replacing common ones of the same key), ``trials`` points each, and is compared at its
tuned best. That is how a comparison of optimizers stays fair: a ranking of variants each at
hand-picked hyper-parameters mostly ranks the picks (Choi et al. 2019, Schmidt et al. 2021).

``repeats`` runs each variant's search that many times with independent search seeds, so that the
report can tell the spread of a tuned result (study variance) from the spread over training seeds
at fixed hyper-parameters (trial variance). With ``defaults`` (on unless set false), every search's
first point is the variant as listed, trained once and shared by its repeats: the budget curve's
first point.

This module only reads and checks the table; :mod:`trainlab.orchestrate` runs the searches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trainlab.errors import SpecError
from trainlab.registry import join
from trainlab.seeding import derive
from trainlab.spec.sections import as_table
from trainlab.spec.space import Dimension, SearchSpec, dimension, parse_search

TUNE_KEYS = ("space", "extra", "trials", "sampler", "seed", "batch", "repeats", "defaults", "prune", "prune_warmup")
DEFAULT_SAMPLER = "qmc"
"""Quasi-random points cover a space evenly at any budget, and need no outcomes to choose them."""
MAX_REPEATS = 100


@dataclass(frozen=True)
class TuneSpec:
    """A stage's ``tune`` table: the common search (space, budget, sampler, pruning), the extra
    dimensions of some compare entries, how many times each search is repeated, and whether each
    search starts at the variant as listed."""

    search: SearchSpec
    extra: dict[str, tuple[Dimension, ...]]
    repeats: int
    defaults: bool

    def search_for(self, entry: str, repeat: int) -> SearchSpec:
        """The search of compare entry ``entry``'s variant in repeat ``repeat`` (from 0): the common
        space with the entry's extra dimensions, and a search seed of its own, so that every variant
        and every repeat samples independently and a resumed study asks for the same points."""
        space = {d.key: d for d in self.search.space}
        space.update({d.key: d for d in self.extra.get(entry, ())})
        return replace(
            self.search,
            space=tuple(space[k] for k in sorted(space)),
            seed=derive(self.search.seed, "tune", entry, repeat),
        )

    def sampled(self) -> int:
        """How many points of each search are sampled (the first is the variant as listed with ``defaults``)."""
        return self.search.trials - int(self.defaults)


def parse_tune(value: Any, where: str, entries: Sequence[str]) -> TuneSpec:
    """Validate a ``tune`` table; ``entries`` are the stage's compare entry labels (``extra``'s keys)."""
    table = dict(as_table(value, where))
    for key in table:
        if key not in TUNE_KEYS:
            raise SpecError(f"unknown key {key!r}", path=join(where, key), allowed=TUNE_KEYS, got=key)
    extra_raw = table.pop("extra", {})
    repeats = table.pop("repeats", 1)
    defaults = table.pop("defaults", True)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise SpecError(f"repeats must be an integer in 1..{MAX_REPEATS}, got {repeats!r}", path=join(where, "repeats"))
    if not isinstance(defaults, bool):
        raise SpecError(f"defaults is true or false, got {defaults!r}", path=join(where, "defaults"))
    table.setdefault("sampler", DEFAULT_SAMPLER)
    search = parse_search(table, where)
    extra = _extra(extra_raw, join(where, "extra"), entries)
    return TuneSpec(search, extra, repeats, defaults)


def _extra(value: Any, where: str, entries: Sequence[str]) -> dict[str, tuple[Dimension, ...]]:
    """``extra``: compare entry labels to the dimensions their variants' searches add."""
    table = as_table(value, where)
    out = {}
    for label, space in sorted(table.items()):
        if label not in entries:
            raise SpecError(
                f"extra dimensions are given per [[compare]] entry label; no entry is labelled {label!r}",
                path=join(where, label),
                allowed=entries,
                got=label,
            )
        dims = as_table(space, join(where, label))
        if not dims:
            raise SpecError("at least one key path with its distribution", path=join(where, label))
        out[label] = tuple(dimension(key, dist, join(join(where, label), key)) for key, dist in sorted(dims.items()))
    return out


def describe(tune: TuneSpec, entries: Mapping[str, Any] | Sequence[str]) -> str:
    """One line for people: the budget and the sampler of a tuned stage."""
    points = f"{tune.search.trials} points each ({'the variant as listed, then ' if tune.defaults else ''}"
    points += f"{tune.sampled()} {tune.search.sampler})"
    repeats = f", {tune.repeats} independent searches each" if tune.repeats > 1 else ""
    return f"each of {len(entries)} variants tuned on its own: {points}{repeats}, pruning {tune.search.prune}"
