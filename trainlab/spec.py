"""Study files: TOML in, a validated :class:`Study` out; every trial spec resolved and hashed.

A study file has a base trial (``[data]``, ``[model]``, ``[optimizer]``, ``[train]``), the
variations to compare (``[[compare]]`` entries and a ``[grid]`` over key paths) and the seeds
to repeat each variant with (``[study] seeds``). See ``docs/STUDY-FORMAT.md``.

Everything is checked here, before any training: an unknown key, name or value is a
:class:`~trainlab.errors.SpecError` naming the file, the key path, the allowed values and the
nearest match. A trial is identified by :func:`trial_hash` of its fully resolved spec and seed,
which is what resuming matches on.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainlab import edits, models, optim
from trainlab.data.datasets import DATASETS, USER_NPZ, DataInfo, definitions
from trainlab.errors import DataError, SpecError
from trainlab.losses import CLASSIFICATION_LOSSES, DEFAULT_LOSS, LOSSES, METRICS, mode_for
from trainlab.registry import Param, check_params, check_value, join, non_negative, one_of, param
from trainlab.trial import FORMAT_VERSION, TrialSpec, canonical_json, trial_hash

TOP_KEYS = ("study", "data", "model", "optimizer", "train", "compare", "grid", "search", "stage")
TRIAL_KEYS = ("data", "model", "optimizer", "train")

_STUDY = {
    "name": Param(None, (str, type(None))),
    "description": param("", str),
    "seeds": param(3, int, list),
    "smoke": param(False, bool),
}
SMOKE = {"train_limit": 1024, "val_limit": 512, "test_limit": 512, "epochs": 2, "folds": 2, "search_trials": 3}
"""How ``[study] smoke = true`` (``trainlab run --smoke``) shrinks a study: every code path, little work."""
_SPLIT = {
    "kind": param("first", str, check=one_of("first", "random", "stratified", "kfold")),
    "validation": Param(0.1, (int, float), lambda v: None if v > 0 else "must be > 0"),
    "seed": param(0, int, check=non_negative),
}
_KFOLD = {
    "kind": param("kfold", str),
    "folds": param(5, int, check=lambda v: None if 2 <= v <= 100 else "must be in 2..100"),
    "fold": Param(None, (int, type(None)), lambda v: None if v is None or v >= 0 else "must be >= 0"),
    "seed": param(0, int, check=non_negative),
}
"""A k-fold split: each variant trains once per fold (``fold`` unset), the fold validating."""
_DATA = {
    "name": Param(None, (str,), required=True),
    "path": Param(None, (str, type(None))),
    "split": param({}, dict),
    "test_fraction": param(0.2, float, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    "train_limit": Param(None, (int, type(None)), lambda v: None if v is None or v > 0 else "must be > 0"),
    "test_limit": Param(None, (int, type(None)), lambda v: None if v is None or v > 0 else "must be > 0"),
    "val_limit": Param(None, (int, type(None)), lambda v: None if v is None or v > 0 else "must be > 0"),
}
_EARLY_STOPPING = {
    "monitor": param("val_loss", str),
    "mode": param("auto", str, check=one_of("auto", "min", "max")),
    "patience": param(0, int, check=non_negative),
    "min_delta": param(0.0, float, check=non_negative),
    "baseline": Param(None, (float, type(None))),
    "restore_best_weights": param(False, bool),
    "start_from_epoch": param(0, int, check=non_negative),
}
_REDUCE_LR = {
    "monitor": param("val_loss", str),
    "mode": param("auto", str, check=one_of("auto", "min", "max")),
    "factor": param(0.1, float, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    "patience": param(10, int, check=non_negative),
    "min_delta": param(1e-4, float, check=non_negative),
    "cooldown": param(0, int, check=non_negative),
    "min_lr": param(0.0, float, check=non_negative),
}
MAX_EPOCHS = 100_000
MAX_SEED = 2**63 - 1
"""Seeds are stored as SQLite integers (signed 64-bit)."""
MAX_VARIANTS = 10_000
MAX_TRIALS = 100_000


def _batch_size(value: Any) -> str | None:
    if value == "full":
        return None
    if isinstance(value, int) and value >= 1:
        return None
    return "must be a positive integer or \"full\" (the whole training split in one step)"


_TRAIN = {
    "epochs": Param(None, (int,), lambda v: None if 1 <= v <= MAX_EPOCHS else f"must be in 1..{MAX_EPOCHS}", required=True),
    "batch_size": param(32, int, str, check=_batch_size),
    "loss": Param(None, (str, type(None))),
    "shuffle": param(True, bool),
    "monitor": Param(None, (str, type(None))),
    "keep": param("best", str, check=one_of("best", "last")),
    "early_stopping": Param(None, (dict, type(None))),
    "reduce_lr_on_plateau": Param(None, (dict, type(None))),
}


@dataclass(frozen=True)
class Variant:
    """One labelled setting to compare: its overrides of the base, and the grid values it carries."""

    label: str
    params: dict[str, Any]
    raw: dict[str, Any]
    """The merged, unresolved trial tables (what the user wrote, base plus overrides)."""
    spec: dict[str, Any]
    """The fully resolved trial spec: every default explicit."""
    seeds: tuple[int, ...] | None = None
    """The seeds of this variant's stage, when they differ from the study's."""


@dataclass(frozen=True)
class Trial:
    """One training run: a resolved spec and a seed, identified by their hash."""

    label: str
    params: dict[str, Any]
    spec: dict[str, Any]
    seed: int
    hash: str

    def spec_json(self) -> str:
        """The resolved spec as the store keeps it."""
        return TrialSpec.from_json(self.spec).json()


@dataclass(frozen=True)
class Entry:
    """One ``[[compare]]`` entry: its label, its overrides of the base and its model edits."""

    label: str
    override: dict[str, Any]
    edit: dict[str, Any]
    where: str


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


@dataclass(frozen=True)
class Stage:
    """A step of a study: variants to compare, built on the study's base or on the variant an
    earlier stage chose (``source``), with ``edit`` applied to every one."""

    name: str
    description: str
    source: str | None
    select: str | None
    seeds: tuple[int, ...] | None
    edit: dict[str, Any]
    entries: tuple[Entry, ...]
    grid: dict[str, list[Any]]
    search: SearchSpec | None
    where: str
    smoke: bool = False
    """Whether every variant is shrunk to a smoke run (see :data:`SMOKE`)."""


@dataclass(frozen=True)
class Study:
    """A validated study: its stages, and the variants (each resolved) known before training.

    A plain study has one stage and all its variants are known at once. A staged study or a
    search knows only its first stage's fixed variants here; :mod:`trainlab.plan` resolves the
    rest from the results in the store.
    """

    name: str
    description: str
    source: str | None
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    raw: dict[str, Any] = field(repr=False)
    stages: tuple[Stage, ...] = ()
    base: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def hash(self) -> str:
        return hashlib.sha256(canonical_json({"v": FORMAT_VERSION, "study": self.raw}).encode()).hexdigest()[:20]

    @property
    def staged(self) -> bool:
        """Whether the study has several stages (labels then carry the stage name)."""
        return len(self.stages) > 1

    @property
    def dynamic(self) -> bool:
        """Whether some variants depend on results: later stages or a search."""
        return self.staged or any(stage.search is not None for stage in self.stages)

    def trials(self) -> list[Trial]:
        """Every variant with every seed (and every fold of a k-fold split), in a stable order."""
        out = []
        for v in self.variants:
            for seed in v.seeds or self.seeds:
                for spec in fold_specs(v.spec):
                    out.append(Trial(v.label, v.params, spec, seed, trial_hash(spec, seed)))
        return out

    def with_variants(self, variants: Sequence[Variant]) -> "Study":
        """The same study with another list of variants (one round of a staged study)."""
        return replace(self, variants=tuple(variants))

    def spec_json(self) -> str:
        return canonical_json(self.raw)

    def candidates(self, bases: int) -> dict[str, list[Variant]]:
        """Each stage's variants as they may resolve before training: a later stage's on the first
        ``bases`` variants of the stage it starts from (see :func:`stage_candidates`)."""
        return stage_candidates(self.stages, self.base, self.variants, self.staged, bases)


def fold_specs(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A k-fold variant's specs, one per validation fold; any other spec alone."""
    split = spec["data"]["split"]
    if split["kind"] != "kfold" or split.get("fold") is not None:
        return [dict(spec)]
    out = []
    for fold in range(split["folds"]):
        one = copy.deepcopy(dict(spec))
        one["data"]["split"]["fold"] = fold
        out.append(one)
    return out


def load(path: str | Path, *, smoke: bool = False) -> Study:
    """Read and validate a study file; every error names ``path`` and the key path.
    ``smoke``: its smoke run instead (see :func:`from_dict`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such study file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read study file {path}: {exc}") from None
    return parse(text, source=str(path), default_name=path.stem, base_dir=path.parent, smoke=smoke)


def parse(text: str, *, source: str | None = None, default_name: str = "study", base_dir: Path | None = None,
          smoke: bool = False) -> Study:
    """Validate study TOML text (see :func:`load`); errors name ``source``."""
    try:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"not valid TOML: {exc}") from None
        return from_dict(raw, source=source, default_name=default_name, base_dir=base_dir, smoke=smoke)
    except SpecError as exc:
        raise (exc.in_file(source) if source else exc) from None


def from_dict(raw: Mapping[str, Any], *, source: str | None = None, default_name: str = "study", base_dir: Path | None = None,
              smoke: bool = False) -> Study:
    """Validate a study given as nested tables (the TOML already parsed).

    ``smoke`` makes it the study's smoke run: named ``NAME-smoke``, one seed, and every variant
    shrunk (:data:`SMOKE`), so that all its code paths run in seconds without touching the
    full study's results.
    """
    raw = copy.deepcopy(dict(raw))
    if smoke and not (isinstance(raw.get("study"), Mapping) and raw["study"].get("smoke")):
        head = dict(_table(raw.get("study", {}), "study"))
        head["name"] = f"{head.get('name') or default_name}-smoke"
        head["smoke"] = True
        raw["study"] = head
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(f"unknown section {key!r}", path=key, allowed=TOP_KEYS, got=key)
    _check_plain(raw, "")
    head = check_params(_table(raw.get("study", {}), "study"), _STUDY, "study")
    name = head["name"] or default_name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise SpecError(f"a study name uses letters, digits, '_', '-' and '.', got {name!r}", path="study.name")
    seeds = _seeds(head["seeds"], "study.seeds")
    if head["smoke"]:
        seeds = seeds[:1]
    if "data" in raw and base_dir is not None:
        data = _table(raw["data"], "data")
        if isinstance(data.get("path"), str):
            data["path"] = str((base_dir / data["path"]).resolve())
        raw["data"] = data
    base = {key: raw[key] for key in TRIAL_KEYS if key in raw}
    for key in ("data", "model", "train"):
        if key not in base:
            raise SpecError(f"the study needs a [{key}] section", path=key)
    base.setdefault("optimizer", "sgd")

    if "stage" in raw:
        for key in ("compare", "grid", "search"):
            if key in raw:
                raise SpecError(f"a staged study puts its variations inside the stages ([[stage.{key}]] or [stage.{key}])", path=key)
        tables = raw["stage"]
        if not isinstance(tables, list) or not tables:
            raise SpecError("expected one or more [[stage]] tables", path="stage")
        stages: list[Stage] = []
        for i, table in enumerate(tables):
            stages.append(_stage(_table(table, f"stage[{i}]"), f"stage[{i}]", stages, head["smoke"], len(seeds)))
    else:
        stages = [_stage({k: raw[k] for k in ("compare", "grid", "search") if k in raw}, "", [], head["smoke"], len(seeds))]
    staged = len(stages) > 1
    first = stages[0]
    variants = expand(first, base, staged=staged) if first.search is None else []
    _check_later_stages(stages, base, variants, staged)
    head_out = {**head, "name": name, "seeds": list(seeds)}
    if not head["smoke"]:
        del head_out["smoke"]  # absent unless set, so that studies written before it keep their hashes
    raw_study = {"study": head_out, **{k: v for k, v in raw.items() if k != "study"}}
    return Study(name, head["description"], source, seeds, tuple(variants), raw_study, tuple(stages), base)


_STAGE_KEYS = ("name", "description", "from", "select", "seeds", "edit", "compare", "grid", "search")
_SEARCH = {
    "sampler": param("random", str, check=one_of("random", "tpe")),
    "trials": Param(None, (int,), lambda v: None if 1 <= v <= 10_000 else "must be in 1..10000", required=True),
    "seed": param(0, int, check=non_negative),
    "batch": Param(None, (int, type(None)), lambda v: None if v is None or v >= 1 else "must be >= 1"),
    "space": Param(None, (dict,), required=True),
    "prune": param("none", str, check=one_of("none", "median", "successive_halving")),
    "prune_warmup": param(1, int, check=non_negative),
}
TPE_BATCH = 4
"""Variants a TPE search samples per round by default: enough to fill a population."""


def _stage(table: dict[str, Any], where: str, earlier: Sequence[Stage], smoke: bool, study_seeds: int) -> Stage:
    """Validate one stage table (``where`` is empty for a study without stages)."""
    for key in table:
        if key not in _STAGE_KEYS or (not where and key not in ("compare", "grid", "search")):
            raise SpecError(f"unknown key {key!r}", path=join(where, key), allowed=_STAGE_KEYS if where else TOP_KEYS, got=key)
    name = table.get("name", "")
    if where:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
            raise SpecError(f"each stage needs a 'name' of letters, digits, '_' and '-', got {name!r}", path=join(where, "name"))
        if any(s.name == name for s in earlier):
            raise SpecError(f"the stage name {name!r} is used twice", path=join(where, "name"))
    source = table.get("from")
    if source is not None and source not in [s.name for s in earlier]:
        raise SpecError(f"'from' names an earlier stage, got {source!r}", path=join(where, "from"),
                        allowed=[s.name for s in earlier], got=str(source))
    select = table.get("select")
    if select is not None and not isinstance(select, str):
        raise SpecError(f"a metric name such as \"val_accuracy\", got {select!r}", path=join(where, "select"))
    description = table.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"expected a string, got {description!r}", path=join(where, "description"))
    seeds = _seeds(table["seeds"], join(where, "seeds")) if "seeds" in table else None
    if smoke and seeds:
        seeds = seeds[:1]
    n_seeds = len(seeds) if seeds else study_seeds
    edit = edits.check(table["edit"], join(where, "edit")) if "edit" in table else {}
    compare = table.get("compare", [])
    if not isinstance(compare, list):
        raise SpecError("expected a list of [[compare]] tables", path=join(where, "compare"))
    entries = tuple(_compare_entry(e, join(join(where, "compare"), i)) for i, e in enumerate(compare))
    labels = [e.label for e in entries]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise SpecError(f"the label {label!r} is used twice", path=f"{join(join(where, 'compare'), i)}.label")
    # Key order is lost in the store's canonical JSON: sort, so that labels read back the same.
    grid = dict(sorted(_table(table.get("grid", {}), join(where, "grid")).items()))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"a grid lists the values to try, e.g. \"{key}\" = [0.1, 0.01]; got {values!r}", path=join(join(where, "grid"), key))
        _point_key(key, join(join(where, "grid"), key))
    size = max(len(entries), 1) * math.prod(len(values) for values in grid.values())
    if size > MAX_VARIANTS or size * n_seeds > MAX_TRIALS:
        raise SpecError(f"the comparisons and the grid make {size:,} variants, {size * n_seeds:,} trials with the seeds; "
                        f"a study has at most {MAX_VARIANTS:,} variants and {MAX_TRIALS:,} trials",
                        path=join(where, "grid") if grid else join(where, "compare"))
    search = _search(table["search"], join(where, "search")) if "search" in table else None
    if smoke and search is not None:
        search = replace(search, trials=min(search.trials, SMOKE["search_trials"]), batch=min(search.batch, SMOKE["search_trials"]))
    if search is not None and (entries or grid):
        raise SpecError("a stage either samples variants ([search]) or lists them ([[compare]], [grid]), not both",
                        path=join(where, "search"))
    return Stage(name, description, source, select, seeds, edit, entries, grid, search, where, smoke)


def _search(value: Any, where: str) -> SearchSpec:
    table = check_params(_table(value, where), _SEARCH, where)
    space = table["space"]
    if not space:
        raise SpecError("the search space needs at least one key path, e.g. \"optimizer.learning_rate\" = { log_uniform = [1e-4, 1e-1] }",
                        path=join(where, "space"))
    dims = tuple(_dimension(key, dist, join(join(where, "space"), key)) for key, dist in sorted(space.items()))
    batch = table["batch"] or (table["trials"] if table["sampler"] == "random" else TPE_BATCH)
    return SearchSpec(table["sampler"], table["trials"], table["seed"], min(batch, table["trials"]), dims,
                      table["prune"], table["prune_warmup"], where)


_DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int")


def _point_key(key: str, where: str) -> None:
    """A grid or search key: a key path into the trial tables, or ``edit.NAME`` (an edit's value)."""
    if key.startswith("edit."):
        if key[5:] not in edits.KEYS:
            raise SpecError(f"unknown edit {key[5:]!r}", path=where, allowed=edits.KEYS, got=key[5:])
        return
    _parse_path(key, where)


def _dimension(key: str, dist: Any, where: str) -> Dimension:
    _point_key(key, where)
    if not isinstance(dist, Mapping) or len([k for k in dist if k in _DISTRIBUTIONS]) != 1:
        raise SpecError("a distribution is one of { choice = [...] }, { uniform = [low, high] }, "
                        "{ log_uniform = [low, high] } or { int = [low, high], step = 1, log = false }",
                        path=where, allowed=_DISTRIBUTIONS)
    kind = next(k for k in dist if k in _DISTRIBUTIONS)
    extra = [k for k in dist if k != kind and not (kind == "int" and k in ("step", "log"))]
    if extra:
        raise SpecError(f"unknown key {extra[0]!r}", path=join(where, extra[0]), allowed=("step", "log") if kind == "int" else (), got=extra[0])
    value = dist[kind]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise SpecError(f"a non-empty list of values, got {value!r}", path=join(where, kind))
        return Dimension(key, kind, values=tuple(value))
    numbers = (int,) if kind == "int" else (int, float)
    if (not isinstance(value, list) or len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers) for v in value)
            or not all(math.isfinite(v) for v in value) or not value[0] < value[1]):
        raise SpecError(f"[low, high] with low < high{' (integers)' if kind == 'int' else ''}, got {value!r}", path=join(where, kind))
    log = kind == "log_uniform" or bool(dist.get("log", False))
    if log and value[0] <= 0:
        raise SpecError(f"a log scale needs low > 0, got {value[0]}", path=join(where, kind))
    step = dist.get("step", 1)
    if kind == "int" and (isinstance(step, bool) or not isinstance(step, int) or step < 1 or (log and step != 1)):
        raise SpecError(f"a positive integer step (1 on a log scale), got {step!r}", path=join(where, "step"))
    return Dimension(key, kind, low=value[0], high=value[1], step=step, log=log)


def expand(stage: Stage, base: Mapping[str, Any], *, staged: bool, params: Mapping[str, Any] | None = None) -> list[Variant]:
    """The variants of a stage that lists them: every compare entry at every grid point, built
    on ``base`` (the study's trial tables, or the spec an earlier stage chose)."""
    entries = stage.entries or (Entry("base", {}, {}, stage.where),)
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    many = bool(stage.entries) or bool(stage.grid)
    for entry in entries:
        for point in _grid_points(stage.grid):
            label = entry.label if not point else " ".join([entry.label] * bool(stage.entries) + [f"{_short(k)}={_fmt(v)}" for k, v in point.items()])
            variant = build(stage, base, entry.override, point, entry.edit, label, staged=staged, many=many,
                            params=params, where=entry.where if stage.entries else "")
            key = canonical_json(variant.spec)
            if key in seen:
                raise SpecError(f"variants {seen[key]!r} and {variant.label!r} describe the same trial", path=entry.where or join(stage.where, "grid"))
            seen[key] = variant.label
            variants.append(variant)
    return variants


def build(stage: Stage, base: Mapping[str, Any], override: Mapping[str, Any], point: Mapping[str, Any],
          edit: Mapping[str, Any], label: str, *, staged: bool, many: bool = True,
          params: Mapping[str, Any] | None = None, where: str = "") -> Variant:
    """One variant: ``base`` merged with ``override``, the key paths of ``point`` set, then the
    stage's edit and the entry's ``edit`` applied; resolved, so every problem is a SpecError."""
    full_label = f"{stage.name}: {label}" if staged else label
    try:
        trial_raw = merge(base, override, where)
        for key, value in point.items():
            if not key.startswith("edit."):
                set_path(trial_raw, key, value, join(join(stage.where, "grid"), key))
        _check_model_defaults(trial_raw["model"], override, where)
        _check_model_defaults(trial_raw["model"], point, join(stage.where, "grid"))
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
        raise SpecError(f"{exc.reason} (in variant {full_label!r})", path=exc.path, allowed=exc.allowed, got=exc.got) from None
    extra = {"stage": stage.name} if staged else {}
    return Variant(full_label, {**extra, **(params or {}), **point}, trial_raw, spec, stage.seeds)


MODEL_DEFAULTS = ("activation", "kernel_initializer")
"""The ``[model]`` keys that are defaults for the Dense and Conv2D layers naming none."""


def _check_model_defaults(model: Any, given: Mapping[str, Any], where: str) -> None:
    """Refuse a model-level default a variant gives (``model = { activation = ... }``,
    ``"model.activation"``) that reaches no layer because every layer names its own, as every layer
    of the variant an earlier stage chose does: it would change nothing, silently."""
    keys: dict[str, str] = {}
    for key, value in given.items():
        if key == "model" and isinstance(value, Mapping):
            keys.update({k: join(join(where, "model"), k) for k in value if k in MODEL_DEFAULTS})
        for name in MODEL_DEFAULTS:
            if key == f"model.{name}" or key.startswith(f"model.{name}."):
                keys[name] = join(where, key)
    layers = model.get("layers") if isinstance(model, Mapping) else None
    if not keys or not isinstance(layers, list):
        return
    for name, at in keys.items():
        reach = [i for i, layer in enumerate(layers) if _weighted(layer) and name not in layer
                 and (name != "activation" or i < len(layers) - 1)]
        if not reach:
            who = "hidden Dense/Conv2D layer (the output keeps its own)" if name == "activation" else "Dense/Conv2D layer"
            how = "edit = { activation = ... } or " if name == "activation" else ""
            raise SpecError(f"model.{name} is the default of the layers that name no {name}, and every {who} names its own "
                            f"(as every layer of a variant an earlier stage chose does): it would change nothing. "
                            f"Set the layers' own with {how}key paths such as \"model.layers[1].{name}\"", path=at)


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


def search_variant(stage: Stage, base: Mapping[str, Any], number: int, point: Mapping[str, Any], *, staged: bool) -> Variant:
    """The variant a search samples as its ``number``-th point."""
    label = f"#{number + 1:02d} " + " ".join(f"{_short(k)}={_fmt(v, digits=3)}" for k, v in point.items())
    return build(stage, base, {}, point, {}, label, staged=staged, params={"search": number})


def base_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The trial tables of a resolved spec, as the base of a later stage."""
    return {key: copy.deepcopy(spec[key]) for key in TRIAL_KEYS}


def extremes(stage: Stage) -> list[dict[str, Any]]:
    """Points of a search space that exercise every bound and every choice (for validation)."""
    assert stage.search is not None
    dims = stage.search.space
    low = {d.key: d.values[0] if d.kind == "choice" else d.low for d in dims}
    points = [low, {d.key: d.values[-1] if d.kind == "choice" else d.high for d in dims}]
    for d in dims:
        points += [{**low, d.key: v} for v in d.values[1:-1]]
    return points


def _check_later_stages(stages: Sequence[Stage], base: Mapping[str, Any], first: Sequence[Variant], staged: bool) -> None:
    """Resolve every stage on the bases it may start from, so that a mistake in a late stage is
    found before the first one trains. A stage after a search is checked on the search's extremes."""
    stage_candidates(stages, base, first, staged, CHECK_BASES)


def stage_candidates(stages: Sequence[Stage], base: Mapping[str, Any], first: Sequence[Variant], staged: bool,
                     bases: int) -> dict[str, list[Variant]]:
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
            if stage.search is None:
                found += expand(stage, b, staged=staged)
            else:
                found += [search_variant(stage, b, i, p, staged=staged) for i, p in enumerate(extremes(stage))]
        if stage.select is not None:
            task = found[0].spec["task"]
            check_value(stage.select, param("", str, check=one_of(*monitorable(task))), join(stage.where, "select"))
        candidates[stage.name] = found
    return candidates


CHECK_BASES = 8
"""How many of an earlier stage's variants a later stage is checked on before training."""


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1000:
            raise SpecError(f"a number of seeds must be in 1..1000, got {value}", path=where)
        return tuple(range(value))
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value):
        raise SpecError(f"seeds are a count or a list of integers in 0..{MAX_SEED}, got {value!r}", path=where)
    if len(set(value)) != len(value):
        raise SpecError(f"seeds repeat: {value!r}", path=where)
    return tuple(value)


def _check_plain(value: Any, path: str) -> None:
    """Refuse what no study value can be, wherever it is written (even where a variant overrides
    it): TOML dates and times, and NaN or infinite numbers, which the stored JSON cannot hold."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(item, join(path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, join(path, i))
    elif isinstance(value, (datetime.date, datetime.time)):
        raise SpecError(f"expected a number, string, true/false, list or table, got the date or time {value}", path=path)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", path=path)


def _table(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a table, got {value!r}", path=path)
    return dict(value)


def _compare_entry(entry: Any, where: str) -> Entry:
    entry = _table(entry, where)
    label = entry.pop("label", None)
    if not isinstance(label, str) or not label.strip():
        raise SpecError("each [[compare]] entry needs a 'label' (a non-empty string)", path=f"{where}.label")
    edit = edits.check(entry.pop("edit"), f"{where}.edit") if "edit" in entry else {}
    for key in entry:
        head = key.split(".")[0].split("[")[0]
        if head not in TRIAL_KEYS:
            raise SpecError(f"a [[compare]] entry overrides {', '.join(TRIAL_KEYS)} or a key path in them, or has an 'edit'",
                            path=f"{where}.{key}", allowed=(*TRIAL_KEYS, "edit", "label"), got=head)
        if "." in key or "[" in key:
            _parse_path(key, f"{where}.{key}")
    return Entry(label, entry, edit, where)


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


_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")


def _parse_path(key: str, where: str) -> list[str | int]:
    """``model.layers[1].activation`` or ``model.layers.1.activation`` -> ["model", "layers", 1, "activation"]."""
    parts: list[str | int] = []
    for chunk in key.split("."):
        pos = 0
        while pos < len(chunk):
            m = _PATH_PART.match(chunk, pos)
            if not m or m.end() == pos:
                raise SpecError(f"not a key path: {key!r} (write keys like model.layers[1].activation)", path=where)
            parts.append(m.group(1) if m.group(1) else int(m.group(2) or m.group(3)))
            pos = m.end()
    if not parts or not isinstance(parts[0], str) or parts[0] not in TRIAL_KEYS:
        raise SpecError(f"a key path starts with one of {', '.join(TRIAL_KEYS)}: {key!r}", path=where, allowed=TRIAL_KEYS, got=str(parts[0]) if parts else key)
    return parts


def set_path(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``value`` at a dotted key path in ``tree``: that one setting, whole; nothing else changes.

    A name on the way becomes a table (``optimizer = "sgd"`` then ``"optimizer.momentum" = 0.9``
    is ``{ name = "sgd", momentum = 0.9 }``); a missing table (or one set to nothing) is created (an
    unknown key is then refused when the spec is resolved, with the allowed keys). A list on the
    way must exist: a path into a list that is not there names the keys that are.
    """
    parts = _parse_path(key, where)
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            node = node[_index(node, part, key, where)]
            continue
        if not isinstance(node, dict):
            raise SpecError(f"{key!r}: {part!r} cannot be inside a list; index it with [i]", path=where)
        if isinstance(node.get(part), str) and isinstance(nxt, str):
            node[part] = {"name": node[part]}
        if node.get(part) is None:
            if isinstance(nxt, int):
                raise SpecError(f"{key!r}: there is no list {part!r} to index", path=where, allowed=[str(k) for k in node], got=part)
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise SpecError(f"{key!r}: {part!r} holds a value, not a table", path=where)
    last = parts[-1]
    if isinstance(last, int):
        node[_index(node, last, key, where)] = copy.deepcopy(value)
    else:
        if not isinstance(node, dict):
            raise SpecError(f"{key!r}: cannot set {last!r} inside a list", path=where)
        node[last] = copy.deepcopy(value)


def _index(node: Any, index: int, key: str, where: str) -> int:
    """``index`` if ``node`` is a list that has it, else a SpecError saying which indices exist."""
    if not isinstance(node, list):
        raise SpecError(f"{key!r}: [{index}] indexes a list, but this is a table", path=where,
                        allowed=[str(k) for k in node] if isinstance(node, Mapping) else None)
    if not -len(node) <= index < len(node):
        have = f"indices 0..{len(node) - 1}" if node else "no items"
        raise SpecError(f"{key!r}: index {index} is out of range (the list has {have})", path=where)
    return index


MERGED_TABLES = ("data", "model", "train")
"""The trial tables an override merges into the base's key by key (one level: each key given
replaces the base's value of that key whole). ``optimizer``, given whole, replaces the base's."""
NAMED_PARTS = {("optimizer",): "optimizer", ("model", "activation"): "activation",
               ("model", "kernel_initializer"): "initializer"}
"""Where an override may give a named part (a name, or a table with ``name``) at the top of a
trial table; a table there is a complete config, so it must say which one it is."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``override`` applied, as a variant changes its base.

    ``[data]``, ``[model]`` and ``[train]`` merge one level: each key given replaces the base's
    value of that key whole, and keys not given keep the base's. Every value given is complete:
    ``optimizer = { name = "sgd", momentum = 0.9 }`` (or an activation, an initializer, a split,
    an early stopping table) leaves out what takes the registry's (Keras') default, never the
    base's value, so the name form and the table form of one optimizer mean the same. Keys
    holding dots or ``[i]`` are key paths: they change that one setting of the result, and are
    applied after the whole values, whatever their order in the file.
    """
    out = copy.deepcopy(dict(base))
    paths = {key: value for key, value in override.items() if "." in key or "[" in key}
    for key, value in override.items():
        if key in paths:
            continue
        old = out.get(key)
        if key in MERGED_TABLES and isinstance(old, Mapping) and isinstance(value, Mapping):
            for inner, item in value.items():
                _check_named(item, (key, inner), join(where, key))
            out[key] = {**copy.deepcopy(dict(old)), **copy.deepcopy(dict(value))}
        else:
            _check_named(value, (key,), where)
            out[key] = copy.deepcopy(value)
    for key, value in paths.items():
        set_path(out, key, value, join(where, key))
    return out


def _check_named(value: Any, at: tuple[str, ...], where: str) -> None:
    """Refuse a table without ``name`` where an override gives a named part whole: it would not
    say which one it is (TOML reads ``optimizer.momentum = 0.9`` unquoted as such a table)."""
    kind = NAMED_PARTS.get(at)
    if kind is None or not isinstance(value, Mapping) or "name" in value:
        return
    path = ".".join(at)
    example = next(iter(value), "learning_rate")
    raise SpecError(f"an {kind} table given in a variant is a complete config and needs its 'name'; to change one "
                    f"setting of the base's {kind}, write the key path in quotes: \"{path}.{example}\" = ...",
                    path=join(where, at[-1]), allowed=["name"])


def resolve_trial(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fully resolved spec of one trial: data, model, optimizer and training settings."""
    data = check_params(_table(raw["data"], "data"), _DATA, "data")
    info = dataset_info(data)
    split = _table(data["split"], "data.split")
    if split.get("kind") == "kfold":
        data["split"] = check_params(split, _KFOLD, "data.split")
        if data["split"]["fold"] is not None and data["split"]["fold"] >= data["split"]["folds"]:
            raise SpecError(f"fold {data['split']['fold']} does not exist: folds are 0..{data['split']['folds'] - 1}", path="data.split.fold")
    else:
        data["split"] = check_params(split, _SPLIT, "data.split")
    v = data["split"].get("validation")
    if isinstance(v, float) and not 0 < v < 1:
        raise SpecError(f"a validation fraction must be in (0, 1), got {v}", path="data.split.validation")
    if data["name"] != "npz":
        data["path"] = None
    if data["name"] not in ("california_housing", USER_NPZ):
        data.pop("test_fraction")  # the data set has its own test split

    model = models.resolve(_table(raw["model"], "model"), info.input_shape)
    optimizer = optim.resolve(raw["optimizer"])
    train = resolve_train(raw["train"], info.task)
    models.check_output(model, info.input_shape, info.task, train["loss"], info.num_classes)
    return {"task": info.task, "data": data, "model": model, "optimizer": optimizer, "train": train}


def resolve_train(table: Any, task: str) -> dict[str, Any]:
    """A complete ``[train]`` table for a ``task`` ("classification" or "regression"): every
    default explicit, the loss and monitored metrics checked against the task. Given only
    ``epochs`` (and a callback's ``monitor``), it gives the defaults a setting is compared with."""
    train = check_params(_table(table, "train"), _TRAIN, "train")
    if train["loss"] is None:
        train["loss"] = DEFAULT_LOSS[task]
    train["loss"] = LOSSES.canonical(train["loss"], "train.loss")
    if (train["loss"] in CLASSIFICATION_LOSSES) != (task == "classification"):
        allowed = [n for n in LOSSES.names() if (n in CLASSIFICATION_LOSSES) == (task == "classification")]
        raise SpecError(f"{train['loss']} does not fit a {task} data set", path="train.loss", allowed=allowed)
    metrics = monitorable(task)
    if train["monitor"] is None:
        train["monitor"] = "val_accuracy" if task == "classification" else "val_loss"
    check_value(train["monitor"], param("", str, check=one_of(*metrics)), "train.monitor")
    for key, schema in (("early_stopping", _EARLY_STOPPING), ("reduce_lr_on_plateau", _REDUCE_LR)):
        if train[key] is not None:
            cb = check_params(train[key], schema, f"train.{key}")
            if cb["monitor"] not in metrics:
                raise SpecError(f"cannot monitor {cb['monitor']!r}", path=f"train.{key}.monitor", allowed=metrics, got=cb["monitor"])
            if cb["mode"] == "auto":
                cb["mode"] = mode_for(cb["monitor"])
            train[key] = cb
    return train


def dataset_info(data: Mapping[str, Any]) -> DataInfo:
    """What the model needs to know of the named data set (a user's ``npz`` file is opened)."""
    name = data["name"]
    if name == USER_NPZ:
        if not data.get("path"):
            raise SpecError("an npz data set needs 'path', the file with x_train, y_train (x_test, y_test)", path="data.path")
        from trainlab.data import load_raw

        try:
            return load_raw(USER_NPZ, path=data["path"]).info
        except DataError as exc:
            raise SpecError(str(exc), path="data.path") from None
    known = definitions()
    if name not in known:
        raise SpecError(f"unknown data set {name!r}", path="data.name", allowed=(*DATASETS, USER_NPZ), got=name)
    return known[name].info


def monitorable(task: str) -> list[str]:
    """The metric names a callback or ``train.monitor`` can watch, Keras-style."""
    names = METRICS[task]
    return [*names, *(f"val_{n}" for n in names)]
