"""Studies, trial specs and store records built in Python, so that a test says what it changes.

A study is built as nested tables (what ``tomllib`` gives for a study file) and goes through the
same validation a study file does: :func:`load_study` hands the tables to ``spec.from_dict`` with
the folder that a file would be in, and :func:`write_study` writes them as a TOML file for the
tests that run the command line. :func:`toml_text` is the writer; ``tests/test_factories.py``
holds it to ``tomllib``.

The study most tests train is :func:`tiny_study_tables` (the ``tiny_study`` fixture writes it): the tiny npz data set of
:func:`helpers.make_npz`, a small MLP with dropout, and SGD against Adam over two seeds.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers import make_npz

from trainlab import spec
from trainlab.store import NewTrial, Store, TrialRecord

Tables = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# The parts studies are made of

TINY_LAYERS: list[dict[str, Any]] = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 16, "activation": "relu"},
    {"type": "Dropout", "rate": 0.1},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]
"""The tiny study's model: an MLP for the 8x8, three-class images of :func:`helpers.make_npz`."""

SGD_AND_ADAM: list[dict[str, Any]] = [
    {"label": "sgd", "optimizer": {"name": "sgd", "learning_rate": 0.05}},
    {"label": "adam", "optimizer": "adam"},
]
"""The tiny study's two variants."""

STRATIFIED_QUARTER: dict[str, Any] = {"kind": "stratified", "validation": 0.25}
"""A stratified split keeping a quarter of the training set for validation."""


def npz_study(
    *,
    name: str | None = "tiny",
    seeds: int | Sequence[int] | None = (0, 1),
    data: str = "tiny.npz",
    split: Mapping[str, Any] | None = STRATIFIED_QUARTER,
    layers: Sequence[Mapping[str, Any]] = TINY_LAYERS,
    optimizer: str | Mapping[str, Any] | None = None,
    epochs: int = 4,
    batch_size: int | str = 16,
    train: Mapping[str, Any] | None = None,
    compare: Sequence[Mapping[str, Any]] = (),
    **tables: Any,
) -> Tables:
    """A study over a user npz (``data``, relative to the study's folder), as nested tables.

    ``train`` adds keys to the ``[train]`` table after ``epochs`` and ``batch_size``;
    ``optimizer`` is the base ``[optimizer]`` (a name or a table); ``compare`` the variants;
    ``tables`` any further top-level tables (``stage``, ``grid``, ...). ``name`` or ``seeds``
    None leaves the key out, as a study file may. Every value is copied, so a caller may change
    the result freely.
    """
    study: Tables = {}
    if name is not None:
        study["name"] = name
    if seeds is not None:
        study["seeds"] = seeds if isinstance(seeds, int) else list(seeds)
    out: Tables = {}
    if study:
        out["study"] = study
    data_table: Tables = {"name": "npz", "path": data}
    if split is not None:
        data_table["split"] = dict(split)
    out["data"] = data_table
    out["model"] = {"layers": list(layers)}
    if optimizer is not None:
        out["optimizer"] = {"name": optimizer} if isinstance(optimizer, str) else dict(optimizer)
    out["train"] = {"epochs": epochs, "batch_size": batch_size, **(train or {})}
    if compare:
        out["compare"] = list(compare)
    out.update(tables)
    return copy.deepcopy(out)


def tiny_study_tables(*, epochs: int = 4, seeds: int | Sequence[int] = (0, 1), **changes: Any) -> Tables:
    """The tiny study: SGD against Adam on the tiny npz, two seeds, ``epochs`` epochs.

    ``changes`` go to :func:`npz_study` (``batch_size=``, ``train=``, ``compare=``, ...).
    """
    return npz_study(epochs=epochs, seeds=seeds, **{"compare": SGD_AND_ADAM, **changes})


def variant(label: str, **overrides: Any) -> dict[str, Any]:
    """One ``[[compare]]`` entry: its label and its overrides, dotted key paths included
    (``variant("a", **{"optimizer.learning_rate": 0.001})``)."""
    return {"label": label, **overrides}


# ---------------------------------------------------------------------------------------------
# Studies as files and as validated studies


def load_study(folder: Path, tables: Mapping[str, Any], *, name: str = "study") -> spec.Study:
    """``tables`` validated as the study file ``folder / (name + ".toml")`` would be.

    Relative data paths are taken from ``folder``; nothing is written.
    """
    return spec.from_dict(
        copy.deepcopy(dict(tables)), source=str(folder / f"{name}.toml"), default_name=name, base_dir=folder
    )


def write_study(path: Path, tables: Mapping[str, Any]) -> Path:
    """``tables`` written as the study file ``path``, for the tests that run the command line."""
    path.write_text(toml_text(tables), encoding="utf-8")
    return path


def with_tiny_npz(folder: Path, **npz: Any) -> Path:
    """``folder / "tiny.npz"`` written by :func:`helpers.make_npz` (with ``npz`` as its options),
    unless it is already there; returns ``folder``."""
    if not (folder / "tiny.npz").exists():
        make_npz(folder / "tiny.npz", **npz)
    return folder


def mlp_spec(
    folder: Path,
    *,
    optimizer: str | Mapping[str, Any] = "adam",
    epochs: int = 4,
    batch_size: int | str = 16,
    layers: Sequence[Mapping[str, Any]] = TINY_LAYERS,
    train: Mapping[str, Any] | None = None,
    **study: Any,
) -> dict[str, Any]:
    """The resolved spec of one trial of the tiny data set in ``folder`` (written there if absent):
    ``layers`` trained with ``optimizer`` for ``epochs`` at ``batch_size``, ``train`` adding keys
    to ``[train]``; every default explicit, as a study resolves it."""
    with_tiny_npz(folder)
    tables = npz_study(optimizer=optimizer, epochs=epochs, batch_size=batch_size, layers=layers, train=train, **study)
    return load_study(folder, tables, name="s").variants[0].spec


# ---------------------------------------------------------------------------------------------
# Staged studies

# Staged studies are written as text: their tests change them the way a user edits a file.

STAGED_BASE = """
[study]
name = "staged"
seeds = [0, 1]

[data]
name = "npz"
path = "tiny.npz"
split = { kind = "stratified", validation = 0.25 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 16, activation = "relu" },
  { type = "Dense", units = 8, activation = "relu" },
  { type = "Dense", units = 3, activation = "softmax" },
]

[optimizer]
name = "sgd"
learning_rate = 0.05

[train]
epochs = 3
batch_size = 16
"""
"""The base of the staged study: an SGD MLP on the tiny npz, two seeds, three epochs."""

STAGED_STUDY = (
    STAGED_BASE
    + """
[[stage]]
name = "first"
[[stage.compare]]
label = "narrow"
edit = { widths = [4, 4] }
[[stage.compare]]
label = "wide"

[[stage]]
name = "second"
from = "first"
description = "sigmoid with batch norm, lr x5"
[[stage.compare]]
label = "as chosen"
[[stage.compare]]
label = "bn sigmoid x5"
edit = { activation = "sigmoid", batch_norm = true, scale_lr = 5 }

[[stage]]
name = "third"
from = "second"
[[stage.compare]]
label = "adam"
optimizer = "adam"
[[stage.compare]]
label = "conv first"
edit = { insert = { at = 0, layers = [{ type = "Conv2D", filters = 2, kernel_size = 3, padding = "same" }, { type = "MaxPooling2D" }] } }
"""
)
"""Three stages: widths, then activation and batch norm, then optimizer and a convolution in front."""


def write_tiny_study_text(folder: Path, text: str, name: str = "s.toml") -> Path:
    """The study file ``folder / name`` holding ``text``, beside the tiny npz (written if absent)."""
    with_tiny_npz(folder)
    path = folder / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# TOML text

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_text(tables: Mapping[str, Any]) -> str:
    """Nested tables as TOML: top-level tables as ``[name]`` sections, lists of tables as
    ``[[name]]`` entries, everything deeper inline. Values are str, bool, int, float, lists and
    tables, as ``tomllib`` returns them."""
    lines: list[str] = []
    sections: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in tables.items():
        if isinstance(value, Mapping):
            sections.append((key, value))
        elif _is_table_list(value):
            arrays.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, table in sections:
        lines += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_value(v)}" for k, v in table.items())]
    for key, entries in arrays:
        for entry in entries:
            lines += ["", f"[[{_key(key)}]]", *(f"{_key(k)} = {_value(v)}" for k, v in entry.items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}: {value!r}")


# ---------------------------------------------------------------------------------------------
# Store records

RECORD_SPEC = '{"model": "mlp"}'
"""The spec JSON of the store tests' trials: the store keeps it as given."""


def new_trials(n: int, prefix: str = "h") -> list[NewTrial]:
    """``n`` trials to add to a study, hashed ``prefix0``, ``prefix1``, ..."""
    return [
        NewTrial(
            hash=f"{prefix}{i}", label=f"lr={i}", params={"lr": 10.0**-i, "depth": i}, seed=i, spec_json=RECORD_SPEC
        )
        for i in range(n)
    ]


def make_study(store: Store, n: int = 3, name: str = "study") -> int:
    """A study named ``name`` with ``n`` pending trials in ``store``; returns its id."""
    study_id = store.ensure_study(name, RECORD_SPEC, "spec-hash", "studies/s.toml")
    store.add_trials(study_id, new_trials(n))
    return study_id


def train_in_rounds(study: spec.Study, db: Path, stop_after: int | None = None) -> list[TrialRecord]:
    """Train ``study`` round by round into the store ``db`` (one process, one trial at a time,
    with its pruning), stopping as Ctrl-C would after ``stop_after`` rounds; returns the study's
    trial records (none if it never started)."""
    from trainlab import orchestrate
    from trainlab.executors import run_local

    with Store.open(db) as store:
        calls = 0

        def execute(round_study: spec.Study, pruning: Any) -> None:
            nonlocal calls
            calls += 1
            if stop_after is not None and calls > stop_after:
                raise KeyboardInterrupt
            run_local(round_study, store, population=1, pruning=pruning)

        try:
            orchestrate.run(study, store, execute)
        except KeyboardInterrupt:
            pass
        record = store.study(study.name)
        return store.trials(record.id) if record is not None else []
