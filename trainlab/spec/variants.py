"""A stage's variants built: every compare entry at every grid point (or a search's sampled
points), merged onto its base, edited, resolved and labelled.

:func:`expand` lists a stage's variants, :func:`search_variant` builds one a search samples,
and :func:`stage_candidates` resolves every stage of a study on the bases it may start from,
so that a mistake in a late stage is found before the first one trains.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from trainlab import edits, models
from trainlab.errors import SpecError
from trainlab.registry import check_value, join, one_of, param
from trainlab.spec.keypaths import merge, set_path
from trainlab.spec.records import CompareEntry, Stage, Variant
from trainlab.spec.resolve import monitorable, resolve_trial
from trainlab.spec.sections import SMOKE, TRIAL_KEYS
from trainlab.spec.space import extremes
from trainlab.trial import canonical_json

MODEL_DEFAULTS = ("activation", "kernel_initializer")
"""The ``[model]`` keys that are defaults for the Dense and Conv2D layers naming none."""
CHECK_BASES = 8
"""How many of an earlier stage's variants a later stage is checked on before training."""


def expand(
    stage: Stage, base: Mapping[str, Any], *, staged: bool, params: Mapping[str, Any] | None = None
) -> list[Variant]:
    """The variants of a stage that lists them: every compare entry at every grid point, built
    on ``base`` (the study's trial tables, or the spec an earlier stage chose)."""
    return [v for _, v in expand_entries(stage, base, staged=staged, params=params)]


def expand_entries(
    stage: Stage, base: Mapping[str, Any], *, staged: bool, params: Mapping[str, Any] | None = None
) -> list[tuple[str, Variant]]:
    """:func:`expand`'s variants, each with the label of the compare entry it comes from
    (``base`` where the stage lists none)."""
    entries = stage.entries or (CompareEntry("base", {}, {}, stage.where),)
    variants: list[tuple[str, Variant]] = []
    seen: dict[str, str] = {}
    many = bool(stage.entries) or bool(stage.grid)
    for entry in entries:
        for point in _grid_points(stage.grid):
            label = _label(entry.label, point, bool(stage.entries))
            variant = build(
                stage,
                base,
                entry.override,
                point,
                entry.edit,
                label,
                staged=staged,
                many=many,
                params=params,
                where=entry.where if stage.entries else "",
            )
            key = canonical_json(variant.spec)
            if key in seen:
                raise SpecError(
                    f"variants {seen[key]!r} and {variant.label!r} describe the same trial",
                    path=entry.where or join(stage.where, "grid"),
                )
            seen[key] = variant.label
            variants.append((entry.label, variant))
    return variants


def _label(entry: str, point: Mapping[str, Any], named: bool) -> str:
    """A listed variant's label: its entry's (when there are entries) and its grid values."""
    if not point:
        return entry
    return " ".join([entry] * named + [f"{_short(k)}={_fmt(v)}" for k, v in point.items()])


def build(
    stage: Stage,
    base: Mapping[str, Any],
    override: Mapping[str, Any],
    point: Mapping[str, Any],
    edit: Mapping[str, Any],
    label: str,
    *,
    staged: bool,
    many: bool = True,
    params: Mapping[str, Any] | None = None,
    where: str = "",
) -> Variant:
    """One variant: ``base`` merged with ``override``, the key paths of ``point`` set, then the
    stage's edit and the entry's ``edit`` applied; resolved, so every problem is a SpecError."""
    full_label = f"{stage.name}: {label}" if staged else label
    try:
        trial_raw = _raw(stage, base, override, point, where)
        varied = {key[5:]: value for key, value in point.items() if key.startswith("edit.")}
        if varied:  # the entry's own edit was checked when the file was read; these values were not
            edit = edits.check({**edit, **varied}, join(where, "edit"))
        spec = resolve_trial(trial_raw)
        for at, change in ((join(stage.where, "edit"), stage.edit), (join(where, "edit"), edit)):
            if change:
                trial_raw = edits.apply(spec, change, at)
                spec = resolve_trial(trial_raw)
        if stage.smoke:
            spec = resolve_trial(_shrink(spec))
    except SpecError as exc:
        if not (many or staged):
            raise
        raise SpecError(
            f"{exc.reason} (in variant {full_label!r})", path=exc.path, allowed=exc.allowed, got=exc.got
        ) from None
    extra = {"stage": stage.name} if staged else {}
    return Variant(full_label, {**extra, **(params or {}), **point}, trial_raw, spec, stage.seeds)


def _raw(
    stage: Stage, base: Mapping[str, Any], override: Mapping[str, Any], point: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """The variant's unresolved trial tables: ``base`` merged with ``override``, the key paths of
    ``point`` set (its ``edit.`` values are the edit's), model-level defaults checked to reach a layer."""
    trial_raw = merge(base, override, where)
    for key, value in point.items():
        if not key.startswith("edit."):
            set_path(trial_raw, key, value, join(join(stage.where, "grid"), key))
    _check_model_defaults(trial_raw["model"], override, where)
    _check_model_defaults(trial_raw["model"], point, join(stage.where, "grid"))
    return trial_raw


def _grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt(value: Any, digits: int = 6) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name", value.get("type", json.dumps(value, sort_keys=True))))
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v, digits) for v in value) + "]"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _check_model_defaults(model: Any, given: Mapping[str, Any], where: str) -> None:
    """Refuse a model-level default a variant gives (``model = { activation = ... }``,
    ``"model.activation"``) that reaches no layer because every layer names its own, as every layer
    of the variant an earlier stage chose does: it would change nothing, silently."""
    keys = _model_defaults_given(given, where)
    layers = model.get("layers") if isinstance(model, Mapping) else None
    if not keys or not isinstance(layers, list):
        return
    for name, at in keys.items():
        reach = [
            i
            for i, layer in enumerate(layers)
            if _weighted(layer) and name not in layer and (name != "activation" or i < len(layers) - 1)
        ]
        if not reach:
            who = (
                "hidden Dense/Conv2D layer (the output keeps its own)" if name == "activation" else "Dense/Conv2D layer"
            )
            how = "edit = { activation = ... } or " if name == "activation" else ""
            raise SpecError(
                f"model.{name} is the default of the layers that name no {name}, and every {who} names its own "
                f"(as every layer of a variant an earlier stage chose does): it would change nothing. "
                f'Set the layers\' own with {how}key paths such as "model.layers[1].{name}"',
                path=at,
            )


def _model_defaults_given(given: Mapping[str, Any], where: str) -> dict[str, str]:
    """The model-level defaults among a variant's overrides, each with the key path it is given at."""
    keys: dict[str, str] = {}
    for key, value in given.items():
        if key == "model" and isinstance(value, Mapping):
            keys.update({k: join(join(where, "model"), k) for k in value if k in MODEL_DEFAULTS})
        for name in MODEL_DEFAULTS:
            if key == f"model.{name}" or key.startswith(f"model.{name}."):
                keys[name] = join(where, key)
    return keys


def _weighted(layer: Any) -> bool:
    """Whether a layer table (unresolved) is a Dense or Conv2D layer."""
    if not isinstance(layer, Mapping) or not isinstance(layer.get("type"), str):
        return False
    try:
        return models.LAYERS.canonical(layer["type"], "") in models.WEIGHTED
    except SpecError:
        return False


def _shrink(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A smoke run's version of a resolved spec: little data, few epochs, two folds at most."""
    out = base_of(spec)
    data, train = out["data"], out["train"]
    for key in ("train_limit", "val_limit", "test_limit"):
        data[key] = min(data.get(key) or SMOKE[key], SMOKE[key])
    train["epochs"] = min(train["epochs"], SMOKE["epochs"])
    if data["split"]["kind"] == "kfold":
        data["split"]["folds"] = min(data["split"]["folds"], SMOKE["folds"])
    return out


def search_variant(
    stage: Stage, base: Mapping[str, Any], number: int, point: Mapping[str, Any], *, staged: bool
) -> Variant:
    """The variant a search samples as its ``number``-th point."""
    label = f"#{number + 1:02d} " + " ".join(f"{_short(k)}={_fmt(v, digits=3)}" for k, v in point.items())
    return build(stage, base, {}, point, {}, label, staged=staged, params={"search": number})


def tune_label(stage: Stage, variant: Variant, *, staged: bool) -> str:
    """The label of a tuned variant without its stage's prefix: what its points' labels start with."""
    prefix = f"{stage.name}: "
    return variant.label[len(prefix) :] if staged and variant.label.startswith(prefix) else variant.label


def tune_defaults(stage: Stage, variant: Variant, *, staged: bool) -> Variant:
    """The first point of a tuned variant's searches: the variant as listed, shared by every repeat."""
    name = tune_label(stage, variant, staged=staged)
    label = f"{stage.name}: {name} (as listed)" if staged else f"{name} (as listed)"
    return replace(variant, label=label, params={**variant.params, "tune": name, "repeat": 0, "search": 0})


def tune_variant(
    stage: Stage, variant: Variant, repeat: int, number: int, point: Mapping[str, Any], *, staged: bool, repeats: int
) -> Variant:
    """Point ``number`` of repeat ``repeat`` of the search that tunes ``variant`` (a listed one):
    the variant's resolved spec with the point's key paths set. The stage's edits are already in it."""
    name = tune_label(stage, variant, staged=staged)
    where = f"r{repeat + 1} " if repeats > 1 else ""
    values = " ".join(f"{_short(k)}={_fmt(v, digits=3)}" for k, v in point.items())
    label = f"{name} ({where}#{number + 1:02d} {values})"
    meta = {**variant.params, "tune": name, "repeat": repeat, "search": number}
    return build(replace(stage, edit={}), base_of(variant.spec), {}, point, {}, label, staged=staged, params=meta)


def base_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The trial tables of a resolved spec, as the base of a later stage."""
    return {key: copy.deepcopy(spec[key]) for key in TRIAL_KEYS}


def check_later_stages(
    stages: Sequence[Stage], base: Mapping[str, Any], first: Sequence[Variant], staged: bool
) -> None:
    """Resolve every stage on the bases it may start from, so that a mistake in a late stage is
    found before the first one trains. A stage after a search is checked on the search's extremes."""
    stage_candidates(stages, base, first, staged, CHECK_BASES)


def stage_candidates(
    stages: Sequence[Stage], base: Mapping[str, Any], first: Sequence[Variant], staged: bool, bases: int
) -> dict[str, list[Variant]]:
    """Each stage's variants, by stage name, resolved on the first ``bases`` variants of the stage
    it starts from (any of which it may start from; on the study's base for a stage without
    ``from``), and each stage's ``select`` checked. A search stands for its extremes."""
    candidates: dict[str, list[Variant]] = {}
    for stage in stages:
        if stage.source is None:
            starts = [dict(base)]
        else:
            starts = [base_of(v.spec) for v in candidates[stage.source][:bases]]
        found: list[Variant] = list(first) if stage is stages[0] and stage.search is None else []
        for b in starts if not found else []:
            found += _variants_on(stage, b, staged)
        if stage.select is not None:
            task = found[0].spec["task"]
            check_value(stage.select, param("", str, check=one_of(*monitorable(task))), join(stage.where, "select"))
        candidates[stage.name] = found
    return candidates


def _variants_on(stage: Stage, base: Mapping[str, Any], staged: bool) -> list[Variant]:
    """A stage's variants on one base: those it lists, or a search's extremes. A tuned stage's
    listed variants are each checked at the extremes of its own search space too."""
    if stage.tune is not None:
        listed = expand_entries(stage, base, staged=staged)
        for entry, variant in listed:
            search = stage.tune.search_for(entry, 0)
            for i, point in enumerate(extremes(search)):
                tune_variant(stage, variant, 0, i + 1, point, staged=staged, repeats=1)
        return [v for _, v in listed]
    if stage.search is None:
        return expand(stage, base, staged=staged)
    return [search_variant(stage, base, i, p, staged=staged) for i, p in enumerate(extremes(stage.search))]
