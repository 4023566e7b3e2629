"""The ``[data]`` table's keys, their types, defaults and checks: one table for both readers.

A study's ``[data]`` is read twice: by the study parser, which resolves it into every trial's
spec (:func:`resolve_data`: defaults filled in, the keys a data set has no use for set aside so
that they do not enter the trial's identity), and by :func:`trainlab.data.prepare`, which is
given such a resolved table (:func:`check_resolved`: the same keys, types and ranges, and the
keys a resolved table always states must be there, not left to a default). Both read the
tables below, so a key's type, range, default and message are written once.

Where the two readers once disagreed, the stricter rule holds for both: ``test_fraction`` is a
fraction in (0, 1), never a count; ``path`` is refused for a named data set (it applies to
``npz`` alone); a split's ``seed`` is >= 0 and ``folds`` in 2..100.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainlab import factory
from trainlab.data import user
from trainlab.data.datasets import DATASETS, USER_NPZ
from trainlab.errors import DataError, SpecError
from trainlab.registry import Param, check_params, join, non_negative, one_of, param

KINDS = ("first", "random", "stratified", "kfold")
"""The split kinds (see :mod:`trainlab.data.splits`)."""
NAMES = (*DATASETS, USER_NPZ, *user.KINDS)
"""Every data set a ``[data]`` table may name."""
USER_NAMES = (USER_NPZ, *user.KINDS)
"""The user's own data: arrays, tables, image folders and factories."""
DEFAULT_TEST_FRACTION = 0.2
"""The share of a data set without its own test split held out as its test set."""
OWN_TEST_SPLIT_UNKNOWN = ("california_housing", *USER_NAMES)
"""The data sets that may lack a test split of their own: ``test_fraction`` applies to them
alone; for every other one it is set aside when a study resolves its ``[data]``."""


def _positive_or_none(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be > 0"


def _fraction(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


def _validation(value: Any) -> str | None:
    """A count of validation examples (> 0) or a fraction of the training set in (0, 1)."""
    if value <= 0:
        return "must be > 0"
    if isinstance(value, float) and value >= 1:
        return "a validation fraction must be in (0, 1)"
    return None


def _names(value: Any) -> str | None:
    if value is None or (value and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)):
        return None
    return "must be a list of distinct column names"


DATA: dict[str, Param] = {
    "name": Param(None, (str,)),
    "path": Param(None, (str, type(None))),
    "factory": Param(None, (str, type(None))),
    "params": param({}, dict),
    "root": Param(None, (str, type(None))),
    "source_sha256": Param(None, (str, type(None))),
    "target": Param(None, (str, type(None))),
    "features": Param(None, (list, type(None)), _names),
    "task": Param(None, (str, type(None)), lambda v: None if v is None else one_of(*TASKS)(v)),
    "split": param({}, dict),
    "test_fraction": param(DEFAULT_TEST_FRACTION, float, check=_fraction),
    "train_limit": Param(None, (int, type(None)), _positive_or_none),
    "test_limit": Param(None, (int, type(None)), _positive_or_none),
    "val_limit": Param(None, (int, type(None)), _positive_or_none),
}
"""``[data]``: the data set, its file or factory, its split, its test share and its size limits."""
TASKS = ("classification", "regression")
OWN_KEYS: dict[str, tuple[str, ...]] = {
    USER_NPZ: (),
    "csv": ("target", "features", "task"),
    "parquet": ("target", "features", "task"),
    user.IMAGES: (),
    user.FACTORY: ("factory", "params", "root", "source_sha256"),
}
"""The keys beside ``path`` that only some of the user's data kinds take; a table states them
for its kind alone, so that a named data set's spec (and identity) is as it always was."""
_OPTIONAL = sorted({key for keys in OWN_KEYS.values() for key in keys})
SPLIT: dict[str, Param] = {
    "kind": param("first", str, check=one_of(*KINDS)),
    "validation": Param(0.1, (int, float), _validation),
    "seed": param(0, int, check=non_negative),
}
"""``[data.split]`` of every kind but ``kfold``."""
KFOLD: dict[str, Param] = {
    "kind": param("kfold", str),
    "folds": param(5, int, check=lambda v: None if 2 <= v <= 100 else "must be in 2..100"),
    "fold": Param(None, (int, type(None)), lambda v: None if v is None or v >= 0 else "must be >= 0"),
    "seed": param(0, int, check=non_negative),
}
"""A k-fold split: each variant trains once per fold (``fold`` unset), the fold validating."""

STATED: dict[str, dict[str, str]] = {
    "data": {"split": 'is required, e.g. {kind = "random", validation = 0.2, seed = 0}'},
    "split": {
        "kind": "is required: the kind of split",
        "validation": "is required: a count of validation examples (int >= 1) or a fraction in (0, 1)",
    },
    "kfold": {"fold": "is required: the fold that validates (a study sets it: each variant trains once per fold)"},
}
"""The keys a resolved table states, by table, with what to say when one is missing (or
unset); a study leaves them to their defaults, :func:`check_resolved` does not."""


def resolve_data(table: Any, *, path: str = "data") -> dict[str, Any]:
    """A study's ``[data]`` as every trial's spec holds it: checked, every default explicit;
    ``path`` None but for ``npz``, ``test_fraction`` left out for a data set with its own test split."""
    data = _check_data(table, path, stated=False)
    if data["name"] not in OWN_TEST_SPLIT_UNKNOWN:
        data.pop("test_fraction")
    return data


def check_resolved(table: Any, *, path: str = "data") -> dict[str, Any]:
    """A resolved ``[data]`` table checked as :func:`resolve_data` checks a study's, and holding
    what a resolved table always states: ``split``, its ``kind`` and ``validation`` (a k-fold
    split's ``fold``). Optional keys come back at their defaults; ``test_fraction`` is kept."""
    return _check_data(table, path, stated=True)


def check_split(table: Any, *, path: str = "data.split", stated: bool = False) -> dict[str, Any]:
    """A ``[data.split]`` table checked, its defaults filled in; ``stated``: refuse one that
    leaves to a default what a resolved table states (see :data:`STATED`)."""
    split = _as_table(table, path)
    kfold = split.get("kind") == "kfold"
    if stated:
        _require(split, STATED["kfold" if kfold else "split"], path)
    if kfold:
        out = check_params(split, KFOLD, path)
        _check_fold(out, path)
        return out
    _check_kind(split.get("kind"), join(path, "kind"))
    return check_params(split, SPLIT, path)


def _check_data(table: Any, path: str, *, stated: bool) -> dict[str, Any]:
    data = _as_table(table, path)
    if stated:
        _require(data, STATED["data"], path)
    out = check_params(data, DATA, path)
    if out["name"] is None:
        out["name"] = _infer_name(out, path)
    check_source(out["name"], out["path"], path=path)
    _own_keys(out, path)
    out["split"] = check_split(out["split"], path=join(path, "split"), stated=stated)
    return out


def _infer_name(table: Mapping[str, Any], path: str) -> str:
    """The kind of data a ``[data]`` table without ``name`` gives: a factory, or by its path's form."""
    if table["factory"] is not None:
        return user.FACTORY
    if table["path"] is not None:
        kind = user.kind_of(table["path"])
        if kind is None:
            raise SpecError(
                f"cannot tell the kind of data from {table['path']!r}: give a .csv, .parquet or .npz file, or an "
                "image folder (one subfolder per class), or set name",
                path=join(path, "path"),
                allowed=USER_NAMES,
            )
        return kind
    raise SpecError(
        "is required: a data set's name, or a path or factory of your own", path=join(path, "name"), allowed=NAMES
    )


def _own_keys(table: dict[str, Any], path: str) -> None:
    """Refuse a key the data kind does not take; drop the others' defaults; resolve a table's
    columns and a factory's source."""
    name = table["name"]
    own = OWN_KEYS.get(name, ())
    for key in _OPTIONAL:
        if key in own:
            continue
        if table[key] not in (None, {}):
            takers = [n for n, keys in OWN_KEYS.items() if key in keys]
            raise SpecError(f"{key} applies to {' and '.join(takers)} data, not to {name}", path=join(path, key))
        del table[key]
    if name in user.TABLES:
        if table["target"] is None:
            raise SpecError("is required: the column to predict", path=join(path, "target"))
        try:
            table["features"], table["task"] = user.table_columns(
                name, table["path"], table["target"], table["features"], table["task"]
            )
        except DataError as exc:  # the table file itself: missing or unreadable
            raise SpecError(str(exc), path=join(path, "path")) from None
    elif name == user.FACTORY:
        found = factory.load(table["factory"], table["root"], join(path, "factory"))
        if table["source_sha256"] is not None and table["source_sha256"] != found.sha256:
            raise SpecError(
                f"{found.reference}: {found.source} has changed since this data was resolved; an "
                "edited factory makes new trials: run the study again",
                path=join(path, "factory"),
            )
        table["factory"], table["source_sha256"] = found.reference, found.sha256


def _as_table(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a table, got {value!r}", path=path)
    return dict(value)


def _require(table: Mapping[str, Any], keys: Mapping[str, str], path: str) -> None:
    """Refuse a table in which one of ``keys`` is missing or unset, saying what it needs."""
    for key, why in keys.items():
        if table.get(key) is None:
            raise SpecError(why, path=join(path, key), allowed=KINDS if key in ("split", "kind") else None)


def _check_kind(kind: Any, path: str) -> None:
    """An unknown split kind, named with the allowed kinds and the nearest (a non-string is
    left to the table's type check)."""
    if isinstance(kind, str) and kind not in KINDS:
        raise SpecError(f"unknown split kind {kind!r}", path=path, allowed=KINDS, got=kind)


def _check_fold(split: Mapping[str, Any], path: str) -> None:
    fold, folds = split["fold"], split["folds"]
    if fold is not None and fold >= folds:
        raise SpecError(f"fold {fold} does not exist: folds are 0..{folds - 1}", path=join(path, "fold"))


def check_source(name: Any, file: Any, *, path: str = "data") -> None:
    """The data set a ``[data]`` table names is one there is, and ``path`` is given for the user's
    files (an ``npz``, a table, an image folder) and for nothing else."""
    if name not in NAMES:
        raise SpecError(f"unknown data set {name!r}", path=join(path, "name"), allowed=NAMES, got=name)
    files = (USER_NPZ, *user.TABLES, user.IMAGES)
    if name in files and not file:
        what = {USER_NPZ: "the file with x_train, y_train (x_test, y_test)", user.IMAGES: "the folder of class folders"}
        article = "an" if name in (USER_NPZ, user.IMAGES) else "a"
        raise SpecError(
            f"{article} {name} data set needs 'path', {what.get(name, f'the {name} file')}", path=join(path, "path")
        )
    if name not in files and file is not None:
        given = 'name = "npz", "csv", "parquet" or "images"'
        raise SpecError(f"path applies only to {given}, not to {name}", path=join(path, "path"), got=file)
