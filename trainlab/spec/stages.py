"""One ``[[stage]]`` table (or a plain study's variations) checked into a :class:`Stage`.

A stage has a name, may start ``from`` an earlier stage's chosen variant, ``select`` its own
best by a metric, run its own ``seeds``, ``edit`` every variant, and lists its variants
(``[[compare]]`` entries at every ``[grid]`` point) or samples them (``[search]``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from trainlab import edits
from trainlab.errors import SpecError
from trainlab.registry import join
from trainlab.spec.keypaths import is_key_path, parse_path, point_key
from trainlab.spec.records import CompareEntry, Stage
from trainlab.spec.sections import SMOKE, TOP_KEYS, TRIAL_KEYS, as_table, check_seeds
from trainlab.spec.space import SearchSpec, parse_search
from trainlab.spec.tune import TuneSpec, parse_tune

STAGE_KEYS = ("name", "description", "from", "select", "seeds", "edit", "compare", "grid", "search", "tune")
VARIATION_KEYS = ("compare", "grid", "search", "tune")
"""The keys of a stage a plain study writes at its top level."""
MAX_VARIANTS = 10_000
MAX_TRIALS = 100_000
_TEXTS: dict[str, tuple[str | None, str]] = {
    "select": (None, 'a metric name such as "val_accuracy"'),
    "description": ("", "expected a string"),
}
"""A stage's optional text keys, in the order they are checked: (default, what a wrong value is told)."""


def parse_stage(table: dict[str, Any], where: str, earlier: Sequence[Stage], smoke: bool, study_seeds: int) -> Stage:
    """Validate one stage table (``where`` is empty for a study without stages)."""
    _check_keys(table, where)
    name = _name(table.get("name", ""), where, earlier)
    source = _source(table.get("from"), where, earlier)
    select, description = (_text(table, key, where) for key in _TEXTS)
    seeds = _seeds(table, where, smoke)
    edit = edits.check(table["edit"], join(where, "edit")) if "edit" in table else {}
    entries = _entries(table.get("compare", []), join(where, "compare"))
    grid = _grid(table.get("grid", {}), join(where, "grid"))
    _check_size(entries, grid, len(seeds) if seeds else study_seeds, where)
    search = _search(table, where, smoke, listed=bool(entries or grid))
    tune = _tune(table, where, smoke, entries, searched=search is not None)
    return Stage(name, description, source, select, seeds, edit, entries, grid, search, where, smoke, tune)


def _check_keys(table: Mapping[str, Any], where: str) -> None:
    """A stage's keys; a plain study's top level gives only its variations."""
    for key in table:
        if key not in STAGE_KEYS or (not where and key not in VARIATION_KEYS):
            raise SpecError(
                f"unknown key {key!r}", path=join(where, key), allowed=STAGE_KEYS if where else TOP_KEYS, got=key
            )


def _name(name: Any, where: str, earlier: Sequence[Stage]) -> str:
    """A staged study's stage name: letters, digits, '_' and '-', unique (a plain study's is empty)."""
    if where:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
            raise SpecError(
                f"each stage needs a 'name' of letters, digits, '_' and '-', got {name!r}", path=join(where, "name")
            )
        if any(s.name == name for s in earlier):
            raise SpecError(f"the stage name {name!r} is used twice", path=join(where, "name"))
    return name


def _source(source: Any, where: str, earlier: Sequence[Stage]) -> str | None:
    """``from``: the name of an earlier stage, or None."""
    if source is not None and source not in [s.name for s in earlier]:
        raise SpecError(
            f"'from' names an earlier stage, got {source!r}",
            path=join(where, "from"),
            allowed=[s.name for s in earlier],
            got=str(source),
        )
    return source


def _text(table: Mapping[str, Any], key: str, where: str) -> Any:
    """A text key's value: a string (or unset, where its default is None)."""
    default, what = _TEXTS[key]
    value = table.get(key, default)
    if not isinstance(value, str) and not (value is None and default is None):
        raise SpecError(f"{what}, got {value!r}", path=join(where, key))
    return value


def _seeds(table: Mapping[str, Any], where: str, smoke: bool) -> tuple[int, ...] | None:
    """The stage's own seeds, if it gives them (the first alone in a smoke run)."""
    seeds = check_seeds(table["seeds"], join(where, "seeds")) if "seeds" in table else None
    return seeds[:1] if smoke and seeds else seeds


def _entries(compare: Any, where: str) -> tuple[CompareEntry, ...]:
    """The ``[[compare]]`` entries, each checked, their labels unique."""
    if not isinstance(compare, list):
        raise SpecError("expected a list of [[compare]] tables", path=where)
    entries = tuple(compare_entry(e, join(where, i)) for i, e in enumerate(compare))
    labels = [e.label for e in entries]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise SpecError(f"the label {label!r} is used twice", path=f"{join(where, i)}.label")
    return entries


def compare_entry(entry: Any, where: str) -> CompareEntry:
    """One ``[[compare]]`` entry: a label, overrides of the trial tables (or key paths into them), an edit."""
    entry = as_table(entry, where)
    label = entry.pop("label", None)
    if not isinstance(label, str) or not label.strip():
        raise SpecError("each [[compare]] entry needs a 'label' (a non-empty string)", path=f"{where}.label")
    edit = edits.check(entry.pop("edit"), f"{where}.edit") if "edit" in entry else {}
    for key in entry:
        head = key.split(".")[0].split("[")[0]
        if head not in TRIAL_KEYS:
            raise SpecError(
                f"a [[compare]] entry overrides {', '.join(TRIAL_KEYS)} or a key path in them, or has an 'edit'",
                path=f"{where}.{key}",
                allowed=(*TRIAL_KEYS, "edit", "label"),
                got=head,
            )
        if is_key_path(key):
            parse_path(key, f"{where}.{key}")
    return CompareEntry(label, entry, edit, where)


def _grid(value: Any, where: str) -> dict[str, list[Any]]:
    """The ``[grid]``: key paths (or ``edit.NAME``) to non-empty lists of values."""
    # Key order is lost in the store's canonical JSON: sort, so that labels read back the same.
    grid = dict(sorted(as_table(value, where).items()))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(
                f'a grid lists the values to try, e.g. "{key}" = [0.1, 0.01]; got {values!r}', path=join(where, key)
            )
        point_key(key, join(where, key))
    return grid


def _check_size(entries: Sequence[CompareEntry], grid: Mapping[str, list[Any]], n_seeds: int, where: str) -> None:
    """Refuse more variants or trials than a study may have, before any is built."""
    size = max(len(entries), 1) * math.prod(len(values) for values in grid.values())
    if size > MAX_VARIANTS or size * n_seeds > MAX_TRIALS:
        raise SpecError(
            f"the comparisons and the grid make {size:,} variants, {size * n_seeds:,} trials with the seeds; "
            f"a study has at most {MAX_VARIANTS:,} variants and {MAX_TRIALS:,} trials",
            path=join(where, "grid") if grid else join(where, "compare"),
        )


def _search(table: Mapping[str, Any], where: str, smoke: bool, *, listed: bool) -> SearchSpec | None:
    """The stage's ``[search]``, if any (a few trials in a smoke run); not beside listed variants."""
    if "search" not in table:
        return None
    search = parse_search(table["search"], join(where, "search"))
    if smoke:
        search = replace(
            search, trials=min(search.trials, SMOKE["search_trials"]), batch=min(search.batch, SMOKE["search_trials"])
        )
    if listed:
        raise SpecError(
            "a stage either samples variants ([search]) or lists them ([[compare]], [grid]), not both",
            path=join(where, "search"),
        )
    return search


def _tune(
    table: Mapping[str, Any], where: str, smoke: bool, entries: Sequence[CompareEntry], *, searched: bool
) -> TuneSpec | None:
    """The stage's ``tune``, if any (a few points and at most two repeats in a smoke run); not
    beside a ``[search]``, which samples variants rather than tuning listed ones."""
    if "tune" not in table:
        return None
    if searched:
        raise SpecError(
            "a stage either samples variants ([search]) or tunes the variants it lists (tune), not both",
            path=join(where, "tune"),
        )
    tune = parse_tune(table["tune"], join(where, "tune"), [e.label for e in entries] or ["base"])
    if smoke:
        trials = min(tune.search.trials, SMOKE["search_trials"])
        tune = replace(
            tune,
            search=replace(tune.search, trials=trials, batch=min(tune.search.batch, trials)),
            repeats=min(tune.repeats, 2),
        )
    return tune
