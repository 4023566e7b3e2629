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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab import models, optim
from trainlab.data.datasets import DATASETS, USER_NPZ, DataInfo, definitions
from trainlab.errors import DataError, SpecError
from trainlab.losses import CLASSIFICATION_LOSSES, DEFAULT_LOSS, LOSSES, METRICS, mode_for
from trainlab.registry import Param, check_params, check_value, join, non_negative, one_of, param

FORMAT_VERSION = 1
"""Part of every trial hash: bump it when a change alters what a resolved spec trains."""

TOP_KEYS = ("study", "data", "model", "optimizer", "train", "compare", "grid")
TRIAL_KEYS = ("data", "model", "optimizer", "train")

_STUDY = {
    "name": Param(None, (str, type(None))),
    "description": param("", str),
    "seeds": param(3, int, list),
}
_SPLIT = {
    "kind": param("first", str, check=one_of("first", "random", "stratified")),
    "validation": Param(0.1, (int, float), lambda v: None if v > 0 else "must be > 0"),
    "seed": param(0, int, check=non_negative),
}
_DATA = {
    "name": Param(None, (str,), required=True),
    "path": Param(None, (str, type(None))),
    "split": param({}, dict),
    "test_fraction": param(0.2, float, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    "train_limit": Param(None, (int, type(None)), lambda v: None if v is None or v > 0 else "must be > 0"),
    "test_limit": Param(None, (int, type(None)), lambda v: None if v is None or v > 0 else "must be > 0"),
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


@dataclass(frozen=True)
class Trial:
    """One training run: a resolved spec and a seed, identified by their hash."""

    label: str
    params: dict[str, Any]
    spec: dict[str, Any]
    seed: int
    hash: str

    def spec_json(self) -> str:
        return canonical_json(self.spec)


@dataclass(frozen=True)
class Study:
    """A validated study: its variants (each resolved) and the seeds to repeat them with."""

    name: str
    description: str
    source: str | None
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def hash(self) -> str:
        return hashlib.sha256(canonical_json({"v": FORMAT_VERSION, "study": self.raw}).encode()).hexdigest()[:20]

    def trials(self) -> list[Trial]:
        """Every variant with every seed, in a stable order (variant-major)."""
        return [
            Trial(v.label, v.params, v.spec, seed, trial_hash(v.spec, seed))
            for v in self.variants
            for seed in self.seeds
        ]

    def spec_json(self) -> str:
        return canonical_json(self.raw)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_hash(spec: Mapping[str, Any], seed: int) -> str:
    """The stable identity of a trial: its resolved spec and seed (and the format version)."""
    text = canonical_json({"v": FORMAT_VERSION, "spec": spec, "seed": seed})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load(path: str | Path) -> Study:
    """Read and validate a study file; every error names ``path`` and the key path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such study file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read study file {path}: {exc}") from None
    return parse(text, source=str(path), default_name=path.stem, base_dir=path.parent)


def parse(text: str, *, source: str | None = None, default_name: str = "study", base_dir: Path | None = None) -> Study:
    """Validate study TOML text (see :func:`load`); errors name ``source``."""
    try:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"not valid TOML: {exc}") from None
        return from_dict(raw, source=source, default_name=default_name, base_dir=base_dir)
    except SpecError as exc:
        raise (exc.in_file(source) if source else exc) from None


def from_dict(raw: Mapping[str, Any], *, source: str | None = None, default_name: str = "study", base_dir: Path | None = None) -> Study:
    """Validate a study given as nested tables (the TOML already parsed)."""
    raw = copy.deepcopy(dict(raw))
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(f"unknown section {key!r}", path=key, allowed=TOP_KEYS, got=key)
    _check_plain(raw, "")
    head = check_params(_table(raw.get("study", {}), "study"), _STUDY, "study")
    name = head["name"] or default_name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise SpecError(f"a study name uses letters, digits, '_', '-' and '.', got {name!r}", path="study.name")
    seeds = _seeds(head["seeds"])
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

    entries = raw.get("compare", [])
    if not isinstance(entries, list):
        raise SpecError("expected a list of [[compare]] tables", path="compare")
    grid = _table(raw.get("grid", {}), "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"a grid lists the values to try, e.g. \"{key}\" = [0.1, 0.01]; got {values!r}", path=f"grid.{key}")
        _parse_path(key, f"grid.{key}")
    size = max(len(entries), 1) * math.prod(len(values) for values in grid.values())
    if size > MAX_VARIANTS or size * len(seeds) > MAX_TRIALS:
        raise SpecError(f"the comparisons and the grid make {size:,} variants, {size * len(seeds):,} trials with the seeds; "
                        f"a study has at most {MAX_VARIANTS:,} variants and {MAX_TRIALS:,} trials", path="grid" if grid else "compare")

    variants: list[Variant] = []
    labels: dict[str, int] = {}
    seen: dict[str, str] = {}
    overrides = [( "base", {}, "")] if not entries else [
        (*_compare_entry(e, i), f"compare[{i}]") for i, e in enumerate(entries)
    ]
    for label, override, where in overrides:
        if label in labels:
            raise SpecError(f"the label {label!r} is used twice", path=f"{where}.label")
        labels[label] = 1
        merged = merge(base, override, where)
        for point in _grid_points(grid):
            trial_raw = copy.deepcopy(merged)
            for key, value in point.items():
                set_path(trial_raw, key, value, f"grid.{key}")
            full_label = label if not point else " ".join([label] * bool(entries) + [f"{_short(k)}={_fmt(v)}" for k, v in point.items()])
            try:
                spec = resolve_trial(trial_raw)
            except SpecError as exc:
                if not (entries or grid):
                    raise
                raise SpecError(f"{exc.reason} (in variant {full_label!r})", path=exc.path, allowed=exc.allowed, got=exc.got) from None
            key = canonical_json(spec)
            if key in seen:
                raise SpecError(f"variants {seen[key]!r} and {full_label!r} describe the same trial", path=where or "grid")
            seen[key] = full_label
            variants.append(Variant(full_label, dict(point), trial_raw, spec))
    raw_study = {"study": {**head, "name": name, "seeds": list(seeds)}, **{k: v for k, v in raw.items() if k != "study"}}
    return Study(name, head["description"], source, seeds, tuple(variants), raw_study)


def _seeds(value: int | list[Any]) -> tuple[int, ...]:
    if isinstance(value, int):
        if not 1 <= value <= 1000:
            raise SpecError(f"a number of seeds must be in 1..1000, got {value}", path="study.seeds")
        return tuple(range(value))
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value):
        raise SpecError(f"seeds are a count or a list of integers in 0..{MAX_SEED}, got {value!r}", path="study.seeds")
    if len(set(value)) != len(value):
        raise SpecError(f"seeds repeat: {value!r}", path="study.seeds")
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


def _compare_entry(entry: Any, i: int) -> tuple[str, dict[str, Any]]:
    where = f"compare[{i}]"
    entry = _table(entry, where)
    label = entry.pop("label", None)
    if not isinstance(label, str) or not label.strip():
        raise SpecError("each [[compare]] entry needs a 'label' (a non-empty string)", path=f"{where}.label")
    for key in entry:
        head = key.split(".")[0].split("[")[0]
        if head not in TRIAL_KEYS:
            raise SpecError(f"a [[compare]] entry overrides {', '.join(TRIAL_KEYS)} or a key path in them", path=f"{where}.{key}", allowed=TRIAL_KEYS, got=head)
        if "." in key or "[" in key:
            _parse_path(key, f"{where}.{key}")
    return label, entry


def _grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name", value.get("type", json.dumps(value, sort_keys=True))))
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


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
    """Set ``value`` at a dotted key path in ``tree``, creating tables along the way."""
    parts = _parse_path(key, where)
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                raise SpecError(f"{key!r}: index {part} is out of range ({len(node) if isinstance(node, list) else 0} items)", path=where)
            node = node[part]
            continue
        if isinstance(node.get(part), str) and isinstance(nxt, str):
            node[part] = {"name": node[part]}
        if part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise SpecError(f"{key!r}: {part!r} holds a value, not a table", path=where)
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise SpecError(f"{key!r}: index {last} is out of range", path=where)
        node[last] = copy.deepcopy(value)
    else:
        if not isinstance(node, dict):
            raise SpecError(f"{key!r}: cannot set {last!r} inside a list", path=where)
        node[last] = copy.deepcopy(value)


def merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``override`` applied: tables merge key by key, other values replace.

    A table that names a different ``name`` or ``type`` than the base's replaces it whole
    (``optimizer = { name = "adam" }`` does not inherit SGD's momentum). Keys holding dots or
    ``[i]`` are key paths into the result.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if "." in key or "[" in key:
            set_path(out, key, value, join(where, key))
            continue
        old = out.get(key)
        if isinstance(old, str) and isinstance(value, Mapping):
            old = {"name": old}
        if isinstance(old, Mapping) and isinstance(value, Mapping) and not _renames(old, value):
            out[key] = merge(old, value, join(where, key))
        else:
            out[key] = copy.deepcopy(value)
    return out


def _renames(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(k in new and k in old and str(new[k]).lower() != str(old[k]).lower() for k in ("name", "type"))


def resolve_trial(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fully resolved spec of one trial: data, model, optimizer and training settings."""
    data = check_params(_table(raw["data"], "data"), _DATA, "data")
    info = dataset_info(data)
    data["split"] = check_params(data["split"], _SPLIT, "data.split")
    v = data["split"]["validation"]
    if isinstance(v, float) and not 0 < v < 1:
        raise SpecError(f"a validation fraction must be in (0, 1), got {v}", path="data.split.validation")
    if data["name"] != "npz":
        data["path"] = None
    if data["name"] not in ("california_housing", USER_NPZ):
        data.pop("test_fraction")  # the data set has its own test split

    model = models.resolve(_table(raw["model"], "model"), info.input_shape)
    optimizer = optim.resolve(raw["optimizer"])
    train = check_params(_table(raw["train"], "train"), _TRAIN, "train")
    if train["loss"] is None:
        train["loss"] = DEFAULT_LOSS[info.task]
    train["loss"] = LOSSES.canonical(train["loss"], "train.loss")
    if (train["loss"] in CLASSIFICATION_LOSSES) != (info.task == "classification"):
        allowed = [n for n in LOSSES.names() if (n in CLASSIFICATION_LOSSES) == (info.task == "classification")]
        raise SpecError(f"{train['loss']} does not fit a {info.task} data set", path="train.loss", allowed=allowed)
    models.check_output(model, info.input_shape, info.task, train["loss"], info.num_classes)
    metrics = monitorable(info.task)
    if train["monitor"] is None:
        train["monitor"] = "val_accuracy" if info.task == "classification" else "val_loss"
    check_value(train["monitor"], param("", str, check=one_of(*metrics)), "train.monitor")
    for key, schema in (("early_stopping", _EARLY_STOPPING), ("reduce_lr_on_plateau", _REDUCE_LR)):
        if train[key] is not None:
            cb = check_params(train[key], schema, f"train.{key}")
            if cb["monitor"] not in metrics:
                raise SpecError(f"cannot monitor {cb['monitor']!r}", path=f"train.{key}.monitor", allowed=metrics, got=cb["monitor"])
            if cb["mode"] == "auto":
                cb["mode"] = mode_for(cb["monitor"])
            train[key] = cb
    return {"task": info.task, "data": data, "model": model, "optimizer": optimizer, "train": train}


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


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` table of a resolved spec, typed for the engine."""

    epochs: int
    batch_size: int | str
    loss: str
    shuffle: bool
    monitor: str
    keep: str
    early_stopping: dict[str, Any] | None
    reduce_lr_on_plateau: dict[str, Any] | None

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "TrainSettings":
        return cls(**spec["train"])
