"""Hostile study files: whatever the text, ``spec.parse`` returns a Study or raises a SpecError
naming a key path, never anything else; a Study it returns can be stored and built within the
size limits; and the CLI answers a bad file with the user-error code, a message without a
traceback, and no store written. Suite files get the same property from ``suite.parse``.

The fuzzing is bounded and reproducible: ``derandomize=True`` draws the same examples on every
run, and ``max_examples`` keeps the whole file within a few seconds of parsing.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, make_npz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainlab import models, spec
from trainlab import suite as suites
from trainlab.cli import EXIT_USER_ERROR, main
from trainlab.errors import SpecError

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=40)

CNN = {
    "study": {"name": "fz", "seeds": [0, 1], "description": "fuzzed"},
    "data": {"name": "mnist", "split": {"kind": "stratified", "validation": 0.1, "seed": 0}, "train_limit": 1000},
    "model": {
        "activation": "relu",
        "kernel_initializer": "he_normal",
        "layers": [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": [1, 1], "padding": "same"},
            {"type": "MaxPooling2D", "pool_size": 2, "padding": "valid"},
            {"type": "BatchNormalization", "momentum": 0.9},
            {"type": "Flatten"},
            {"type": "Dense", "units": 16, "kernel_regularizer": {"l2": 0.001}, "bias_initializer": "zeros"},
            {"type": "Activation", "activation": {"name": "leaky_relu", "alpha": 0.2}},
            {"type": "Dropout", "rate": 0.2},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
    },
    "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True, "clipnorm": 1.0},
    "train": {
        "epochs": 3,
        "batch_size": 32,
        "shuffle": True,
        "keep": "best",
        "monitor": "val_accuracy",
        "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 0.001, "restore_best_weights": True},
        "reduce_lr_on_plateau": {"factor": 0.5, "patience": 1, "min_lr": 1e-5},
    },
    "compare": [
        {"label": "adam", "optimizer": {"name": "adam", "learning_rate": 0.001}},
        {"label": "fast", "optimizer.learning_rate": 0.1, "train.batch_size": 64},
    ],
    "grid": {"model.layers[6].rate": [0.1, 0.3]},
}
REGRESSION = {
    "study": {"name": "reg", "seeds": 2},
    "data": {"name": "california_housing", "test_fraction": 0.2, "split": {"kind": "random", "validation": 0.2}},
    "model": {"layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 1}]},
    "optimizer": "adam",
    "train": {"epochs": 2, "batch_size": "full", "loss": "mse", "monitor": "val_loss"},
}
NPZ = {
    "data": {"name": "npz", "path": "tiny.npz", "split": {"kind": "first", "validation": 20}},
    "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]},
    "train": {"epochs": 1, "batch_size": 8},
    "compare": [{"label": "a"}, {"label": "../../escape", "optimizer": {"name": "rmsprop", "rho": 0.8}}],
}
OWN_MODEL = {
    "study": {"seeds": 1},
    "data": {"path": "table.csv", "target": "kind", "features": ["a", "b"], "split": {"kind": "random"}},
    "model": {"factory": "mypkg.models:build", "params": {"width": 4}},
    "train": {"epochs": 1, "batch_size": 8},
    "compare": [{"label": "a"}, {"label": "b", "optimizer": "adam", "model.params.width": 3}],
    "grid": {"train.batch_size": [4, 8]},
}
OWN_DATA = {
    "data": {"factory": "mypkg.data:load", "params": {"n": 60, "classes": 3}, "test_fraction": 0.25},
    "model": {"factory": "models.py:linear"},
    "train": {"epochs": 1},
    "grid": {"data.params.n": [40, 50]},
}
"""Bases with the user's own model (a factory) and data (a CSV table, a data factory), beside the
fixture files of tests/fixtures/byo."""
SCHEDULED = {
    "data": {"name": "npz", "path": "tiny.npz", "split": {"kind": "first", "validation": 20}},
    "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]},
    "optimizer": {
        "name": "sgd",
        "momentum": 0.9,
        "learning_rate": {
            "schedule": "cosine_decay",
            "initial_learning_rate": 0.0,
            "decay_steps": 100,
            "warmup_target": 0.1,
            "warmup_steps": 10,
        },
    },
    "train": {"epochs": 2, "batch_size": 8, "label_smoothing": 0.1},
    "compare": [
        {"label": "cosine"},
        {
            "label": "step",
            "optimizer.learning_rate": {
                "schedule": "piecewise_constant_decay",
                "boundaries": [1],
                "values": [0.1, 0.01],
                "per": "epoch",
            },
        },
        {
            "label": "one cycle",
            "optimizer.learning_rate": {"schedule": "OneCycleLR", "max_lr": 0.1, "three_phase": True},
        },
        {
            "label": "restarts",
            "optimizer.learning_rate": {
                "schedule": "cosine_decay_restarts",
                "initial_learning_rate": 0.1,
                "first_decay_steps": 5,
            },
        },
        {
            "label": "exp",
            "optimizer.learning_rate": {
                "schedule": "exponential_decay",
                "initial_learning_rate": 0.1,
                "decay_steps": 5,
                "decay_rate": 0.9,
                "staircase": True,
            },
        },
        {
            "label": "inverse",
            "optimizer.learning_rate": {
                "schedule": "inverse_time_decay",
                "initial_learning_rate": 0.1,
                "decay_steps": 5,
                "decay_rate": 0.5,
            },
        },
        {
            "label": "poly",
            "optimizer.learning_rate": {
                "schedule": "polynomial_decay",
                "initial_learning_rate": 0.1,
                "decay_steps": 5,
                "cycle": True,
            },
        },
    ],
}
"""Every schedule and label smoothing, so that edits reach their keys."""
AUGMENTED = {
    "study": {"name": "aug", "seeds": [0]},
    "data": {"name": "mnist", "split": {"kind": "first", "validation": 100}, "train_limit": 500},
    "model": {
        "layers": [
            {"type": "RandomFlip", "mode": "horizontal"},
            {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": [-0.1, 0.2], "fill_mode": "constant"},
            {"type": "RandomRotation", "factor": 0.05, "interpolation": "nearest", "fill_value": 0.5},
            {"type": "RandomZoom", "height_factor": [-0.1, 0.2], "width_factor": 0.1, "fill_mode": "wrap"},
            {"type": "RandomContrast", "factor": [0.1, 0.3], "value_range": [0, 1]},
            {"type": "RandomCrop", "height": 26, "width": 26},
            {"type": "SeparableConv2D", "filters": 8, "kernel_size": 3, "padding": "same", "depth_multiplier": 2},
            {"type": "DepthwiseConv2D", "kernel_size": [3, 2], "strides": 2, "activation": "relu"},
            {"type": "SpatialDropout2D", "rate": 0.1},
            {"type": "LayerNormalization", "axis": [1, 2, 3], "epsilon": 0.01},
            {"type": "AveragePooling2D", "pool_size": 3, "padding": "same"},
            {"type": "GlobalMaxPooling2D", "keepdims": True},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    },
    "optimizer": "adam",
    "train": {"epochs": 1, "batch_size": 32},
    "compare": [{"label": "a"}, {"label": "b", "model.layers[0].mode": "vertical"}],
}
SEARCHED = {
    "study": {"name": "searched", "seeds": 2},
    "data": {"name": "npz", "path": "tiny.npz", "split": {"kind": "first", "validation": 20}},
    "model": {
        "layers": [
            {"type": "Flatten"},
            {"type": "Dense", "units": 8, "activation": "relu"},
            {"type": "Dropout", "rate": 0.1},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ]
    },
    "train": {"epochs": 2, "batch_size": 8},
    "stage": [
        {
            "name": "optimizer",
            "compare": [{"label": "sgd", "optimizer": "sgd"}, {"label": "adam", "optimizer": "adam"}],
        },
        {
            "name": "tuned",
            "from": "optimizer",
            "search": {
                "sampler": "qmc",
                "trials": 8,
                "seed": 4,
                "prune": "median",
                "prune_warmup": 1,
                "space": {
                    "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
                    "model.layers[1].units": {"int": [4, 32], "step": 4},
                    "model.layers[2].rate": {"uniform": [0.0, 0.5]},
                    "train.batch_size": {"int": [4, 16], "log": True},
                    "model.layers[1].activation": {"choice": ["relu", {"name": "leaky_relu", "alpha": 0.2}]},
                },
            },
        },
    ],
}
"""A staged study whose second stage is a QMC search over every kind of dimension, so that edits
reach the sampler, the budget and the space."""
TUNED = {
    "study": {"name": "tuned", "seeds": 2},
    **{key: SEARCHED[key] for key in ("data", "model", "train")},
    "stage": [
        {"name": "width", "grid": {"model.layers[1].units": [4, 8]}},
        {
            "name": "optimizers",
            "from": "width",
            "compare": [
                {"label": "sgd", "optimizer": "sgd"},
                {"label": "momentum", "optimizer": {"name": "sgd", "momentum": 0.9}},
                {"label": "adam", "optimizer": "adam"},
            ],
            "tune": {
                "trials": 4,
                "repeats": 2,
                "seed": 1,
                "prune": "median",
                "space": {"optimizer.learning_rate": {"log_uniform": [1e-4, 1.0]}},
                "extra": {
                    "momentum": {"optimizer.momentum": {"uniform": [0.0, 0.99]}},
                    "adam": {
                        "optimizer.beta_1": {"uniform": [0.5, 0.99]},
                        "optimizer.epsilon": {"log_uniform": [1e-10, 1e-2]},
                    },
                },
            },
        },
    ],
}
"""The searched study's trial with a second stage that tunes three optimizers, each with the common
space and its own extra dimensions, so that edits reach the budget, the repeats and the conditional spaces."""
BASES = {
    "cnn": CNN,
    "searched": SEARCHED,
    "tuned": TUNED,
    "regression": REGRESSION,
    "npz": NPZ,
    "own_model": OWN_MODEL,
    "own_data": OWN_DATA,
    "scheduled": SCHEDULED,
    "augmented": AUGMENTED,
}

ABSURD: list[Any] = [
    0,
    -1,
    1,
    2,
    3,
    10,
    28,
    -(10**9),
    10**6,
    10**9,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    0.0,
    -0.0,
    0.5,
    1.0,
    1.5,
    -0.5,
    1e-300,
    5e-324,
    1e300,
    -1e300,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "",
    " ",
    "full",
    "nan",
    "inf",
    "relu",
    "softmax",
    "adam",
    "SGD",
    "qmc",
    "tpe",
    "Dense",
    "conv2d",
    "he_normal",
    "val_loss",
    "val_accuracy",
    "mnist",
    "npz",
    "same",
    "valid",
    "best",
    "../../x",
    "/etc/passwd",
    "x" * 300,
    "é\u200b",
    "model.layers[0].units",
    "mypkg.models:build",
    "mypkg.models:wrong_outputs",
    "mypkg.models:raises",
    "mypkg.data:load",
    "models.py:build",
    "table.csv",
    "kind",
    [],
    [0],
    [1, 1],
    [0, 0],
    [10**9, 10**9],
    [-1, 2],
    [math.nan],
    ["a", "a"],
    {},
    {"name": "adam"},
    {"name": "adamw", "weight_decay": -1},
    {"type": "Dense"},
    {"type": "Dense", "units": 10**9},
    {"type": "Conv2D", "filters": 10**6, "kernel_size": 1, "padding": "same"},
    {"l1": -1.0},
    {"name": 3},
    {"name": "glorot_uniform", "seed": -5},
    {"name": "x", "y": math.nan},
    {"schedule": "cosine_decay"},
    {"schedule": "one_cycle", "max_lr": 0.1, "total_steps": 1},
    {"schedule": 3},
    {"schedule": "piecewise_constant_decay", "boundaries": [2**64], "values": [1, math.inf]},
    {"schedule": "exponential_decay", "initial_learning_rate": 1e300, "decay_steps": 2**63, "decay_rate": 1e-300},
    datetime.date(2020, 1, 1),
    datetime.datetime(2020, 1, 1, 12, 0),
    datetime.time(7, 30),
]
"""Values that have broken parsers: wrong types, out-of-range and non-finite numbers, huge
integers, names that exist elsewhere, path-like strings, TOML dates."""

scalars = st.one_of(
    st.sampled_from(ABSURD),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.dates(),
    st.times(),
)
names = st.sampled_from(["adam", "sgd", "relu", "softmax", "he_normal", "zeros", "Dense", "Conv2D", "l2", "x", "Adam"])
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "type", "units", "rate", "learning_rate", "seed", "x", "schedule", "per"]),
            inner,
            max_size=3,
        ),
        st.fixed_dictionaries({"name": names}, optional={"learning_rate": inner, "alpha": inner, "seed": inner}),
    ),
    max_leaves=6,
)
new_keys = st.sampled_from(
    [
        "bogus",
        "unitz",
        "lr",
        "name",
        "type",
        "label",
        "seed",
        "units",
        "layers[0].units",
        "optimizer.learning_rate",
        "train.epochs",
        "model.layers[99].rate",
        "data.path",
        "1x",
        "factory",
        "params",
        "width",
        "target",
        "features",
        "model.params.width",
        "data.params.n",
        "schedule",
        "per",
        "boundaries",
        "warmup_steps",
        "total_steps",
        "label_smoothing",
        "train.label_smoothing",
        "optimizer.learning_rate.schedule",
        "sampler",
        "log_uniform",
        "choice",
        "step",
    ]
)


def key_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a nested study, tables and list items alike."""
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, item in items:
        out.append((*prefix, key))
        out += key_paths(item, (*prefix, key))
    return out


def mutate(base: dict[str, Any], edits: list[tuple[int, str, Any, str]]) -> dict[str, Any]:
    """Replace a value, delete a key or add one, at paths chosen by index, once per edit."""
    study = copy.deepcopy(base)
    for index, op, value, key in edits:
        paths = key_paths(study)
        if not paths:
            break
        path = paths[index % len(paths)]
        parent: Any = study
        for part in path[:-1]:
            parent = parent[part]
        if op == "replace":
            parent[path[-1]] = copy.deepcopy(value)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[key] = copy.deepcopy(value)
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(value))
    return study


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(study: dict[str, Any]) -> str:
    """TOML for a nested study: sections as tables, lists of tables as ``[[...]]``, the rest inline."""
    head, body = [], []
    for key, value in study.items():
        if isinstance(value, dict):
            body.append(f"[{json.dumps(key)}]")
            body += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                body.append(f"[[{json.dumps(key)}]]")
                body += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in entry.items()]
        else:
            head.append(f"{json.dumps(key)} = {toml_value(value)}")
    return "\n".join(head + body) + "\n"


edits = st.lists(
    st.tuples(
        st.integers(0, 10**6), st.sampled_from(["replace", "replace", "replace", "delete", "add"]), values, new_keys
    ),
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    make_npz(path / "tiny.npz", n_train=80, n_test=20)
    for item in (FIXTURES / "byo").iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, path / item.name)
    shutil.copy(FIXTURES / "byo" / "mypkg" / "models.py", path / "models.py")
    return path


def check(text: str, folder: Path) -> spec.Study | SpecError:
    """The property: a Study, or a SpecError that names the file and a key path."""
    try:
        study = spec.parse(text, source="fuzz.toml", base_dir=folder)
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: "), message
        assert "Traceback" not in message
        if not exc.reason.startswith("not valid TOML"):
            assert exc.path, f"no key path in {message!r}"
            assert message.startswith(f"fuzz.toml: {exc.path}: "), message
        return exc
    # What was accepted can be stored and hashed (strict JSON, SQLite integers) ...
    spec.canonical_json(json.loads(study.spec_json()))
    assert study.hash
    for trial in study.trials():
        json.loads(trial.spec_json())
        assert 0 <= trial.seed < 2**63
    # ... and built within the limits, without allocating anything to find out.
    for variant in study.variants:
        rows = models.summary(variant.spec["model"], _input_shape(variant.spec))
        assert sum(r.params for r in rows) <= models.MAX_PARAMETERS
        assert all(math.prod(r.output_shape) <= models.MAX_VALUES for r in rows)
    return study


def _input_shape(resolved: dict[str, Any]) -> tuple[int, ...]:
    return tuple(spec.dataset_info(resolved["data"]).input_shape)


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_unedited_bases_are_valid_studies(folder: Path, base: str) -> None:
    """Else every edit would only meet the error the base already has."""
    study = check(to_toml(BASES[base]), folder)
    assert isinstance(study, spec.Study) and len(study.variants) >= 1


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), changes=edits)
def test_any_edit_of_a_valid_study_parses_or_names_a_key_path(folder: Path, base: str, changes: list[Any]) -> None:
    check(to_toml(mutate(BASES[base], changes)), folder)


@FUZZ
@given(
    base=st.sampled_from(sorted(BASES)),
    start=st.integers(0, 10**6),
    length=st.integers(0, 40),
    insert=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,#\n 0123456789abcxyz_-+e\\")), max_size=8),
)
def test_damaged_toml_text_parses_or_names_a_key_path(
    folder: Path, base: str, start: int, length: int, insert: str
) -> None:
    text = to_toml(BASES[base])
    at = start % (len(text) + 1)
    check(text[:at] + insert + text[at + length :], folder)


@FEW
@given(text=st.text(max_size=200))
def test_arbitrary_text_parses_or_is_a_spec_error(folder: Path, text: str) -> None:
    check(text, folder)


@pytest.mark.parametrize(
    ("edit", "path", "words"),
    [
        (("model", "layers", 4, "units"), "model.layers[4]", "parameters; trainlab builds at most 100,000,000"),
        (("model", "layers", 0, "filters"), "model.layers[0]", "parameters; trainlab builds at most"),
        (("model", "layers", 0, "kernel_size"), "model.layers[0]", "parameters; trainlab builds at most"),
        (("model", "layers", 1, "pool_size"), "model.layers[1]", "leaves no pixels"),
    ],
)
def test_a_billion_units_or_filters_is_refused_before_any_allocation(
    edit: tuple[Any, ...], path: str, words: str
) -> None:
    study = copy.deepcopy(CNN)
    node: Any = study
    for part in edit[:-1]:
        node = node[part]
    node[edit[-1]] = 10**9
    with pytest.raises(SpecError) as info:
        spec.parse(to_toml(study), source="big.toml")
    assert info.value.path == path and words in info.value.reason


def test_layer_output_and_same_padding_limits() -> None:
    wide = copy.deepcopy(CNN)
    wide["model"]["layers"][0] = {"type": "Conv2D", "filters": 20_000, "kernel_size": 1}  # 20000 x 28 x 28 values
    with pytest.raises(
        SpecError, match=r"model\.layers\[0\]: Conv2D outputs 15,680,000 values per example.*10,000,000"
    ):
        spec.parse(to_toml(wide), source="f.toml")
    pad = copy.deepcopy(CNN)
    pad["model"]["layers"][1] = {"type": "MaxPooling2D", "pool_size": 10**6, "strides": 1, "padding": "same"}
    with pytest.raises(SpecError, match=r"model\.layers\[1\]: MaxPooling2D with 'same' padding pads its input"):
        spec.parse(to_toml(pad), source="f.toml")


@pytest.mark.parametrize(
    ("edit", "value", "path"),
    [
        (("train", "epochs"), -3, "train.epochs"),
        (("train", "epochs"), 0, "train.epochs"),
        (("train", "batch_size"), 0, "train.batch_size"),
        (("optimizer", "learning_rate"), math.nan, "optimizer.learning_rate"),
        (("optimizer", "learning_rate"), math.inf, "optimizer.learning_rate"),
        (("optimizer", "learning_rate"), -0.1, "optimizer.learning_rate"),
        (("model", "layers", 6, "rate"), 1.0, "model.layers[6].rate"),
        (("model", "layers", 6, "rate"), -0.1, "model.layers[6].rate"),
        (("model", "layers", 0, "filters"), -4, "model.layers[0].filters"),
        (("study", "seeds"), [2**64], "study.seeds"),
        (("study", "seeds"), -1, "study.seeds"),
        (("study", "seeds"), 10**9, "study.seeds"),
        (("train", "reduce_lr_on_plateau", "min_lr"), math.nan, "train.reduce_lr_on_plateau.min_lr"),
        (("train", "batch_size"), datetime.date(2020, 1, 1), "train.batch_size"),
        (("train", "label_smoothing"), math.nan, "train.label_smoothing"),
        (("train", "label_smoothing"), -0.1, "train.label_smoothing"),
        (
            ("optimizer", "learning_rate"),
            {"schedule": "one_cycle", "max_lr": math.inf},
            "optimizer.learning_rate.max_lr",
        ),
        (("optimizer", "learning_rate"), {"schedule": "one_cycle", "max_lr": 0.1}, "train.reduce_lr_on_plateau"),
        (
            ("optimizer", "learning_rate"),
            {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": -1, "decay_rate": 0.5},
            "optimizer.learning_rate.decay_steps",
        ),
        (
            ("optimizer", "learning_rate"),
            {"schedule": "piecewise_constant_decay", "boundaries": [1], "values": [0.1, math.nan]},
            "optimizer.learning_rate.values",
        ),
    ],
)
def test_absurd_values_name_their_key_path(edit: tuple[Any, ...], value: Any, path: str) -> None:
    study = copy.deepcopy(CNN)
    del study["grid"], study["compare"]  # else a variant could override the edited value
    node: Any = study
    for part in edit[:-1]:
        node = node[part]
    node[edit[-1]] = value
    with pytest.raises(SpecError) as info:
        spec.parse(to_toml(study), source="absurd.toml")
    assert info.value.path.startswith(path), (info.value.path, str(info.value))


def test_a_value_a_variant_overrides_must_still_be_storable() -> None:
    """Overridden values are never resolved, but the study text is stored: NaN or a date there
    would crash the store's strict JSON long after parsing."""
    for bad in (math.nan, datetime.time(7, 30)):
        study = copy.deepcopy(CNN)
        study["train"]["batch_size"] = bad
        study["grid"] = {"train.batch_size": [16, 32]}
        with pytest.raises(SpecError) as info:
            spec.parse(to_toml(study), source="o.toml")
        assert info.value.path == "train.batch_size"


def test_a_grid_too_large_to_expand_is_refused_without_expanding() -> None:
    study = copy.deepcopy(CNN)
    study["grid"] = {
        f"model.layers[{i}].{key}": list(range(1, 11))
        for i, key in [(0, "filters"), (4, "units"), (0, "kernel_size"), (1, "pool_size"), (6, "rate")]
    }
    with pytest.raises(SpecError, match=r"200,000 variants, 400,000 trials with the seeds; a study has at most 10,000"):
        spec.parse(to_toml(study), source="g.toml")
    study["grid"] = {"model.layers[4].units": list(range(1, 201))}
    study["study"]["seeds"] = 1000
    with pytest.raises(SpecError, match=r"400 variants, 400,000 trials with the seeds; .* and 100,000 trials"):
        spec.parse(to_toml(study), source="g.toml")


# --- suite files -------------------------------------------------------------------------------

SUITE = {
    "suite": {
        "name": "fz-suite",
        "description": "fuzzed",
        "studies": ["s1.toml", "s2.toml"],
        "cutoff": 4.0,
        "time": "epochs",
        "reference": "a",
        "targets": {"s1": 0.9},
    }
}
"""A suite of two copies of the NPZ base (studies s1 and s2, labels a and ../../escape), every key set."""
suite_keys = st.sampled_from(
    ["bogus", "cutof", "cutoff", "time", "reference", "targets", "studies", "name", "s1", "s3", "study", "suite"]
)
suite_edits = st.lists(
    st.tuples(
        st.integers(0, 10**6), st.sampled_from(["replace", "replace", "replace", "delete", "add"]), values, suite_keys
    ),
    min_size=1,
    max_size=3,
)


def check_suite(text: str, folder: Path) -> suites.Suite | SpecError:
    """The property for suite files: a Suite ranking one label or more, or a SpecError that names
    the suite file (or the study file at fault) and a key path."""
    for name in ("s1", "s2"):
        if not (folder / f"{name}.toml").exists():
            (folder / f"{name}.toml").write_text(to_toml(NPZ))
    try:
        suite = suites.parse(text, source="fuzz-suite.toml", base_dir=folder)
    except SpecError as exc:
        message = str(exc)
        assert "Traceback" not in message
        assert message.startswith("fuzz-suite.toml: ") or message.startswith(str(folder)), message
        if not exc.reason.startswith(("not valid TOML", "cannot read study file")):
            assert exc.path, f"no key path in {message!r}"
        return exc
    assert suite.labels and suite.cutoff > 1 and suite.time in suites.TIMES
    assert all(w.study.name in ("s1", "s2") for w in suite.workloads)
    return suite


def test_the_unedited_suite_parses(folder: Path) -> None:
    suite = check_suite(to_toml(SUITE), folder)
    assert isinstance(suite, suites.Suite) and suite.labels == ("a", "../../escape")


@FUZZ
@given(changes=suite_edits)
def test_any_edit_of_a_valid_suite_parses_or_names_a_key_path(folder: Path, changes: list[Any]) -> None:
    check_suite(to_toml(mutate(SUITE, changes)), folder)


@FEW
@given(
    start=st.integers(0, 10**6),
    length=st.integers(0, 40),
    insert=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,#\n 0123456789abcxyz_-+e\\")), max_size=8),
)
def test_damaged_suite_text_parses_or_names_a_key_path(folder: Path, start: int, length: int, insert: str) -> None:
    text = to_toml(SUITE)
    at = start % (len(text) + 1)
    check_suite(text[:at] + insert + text[at + length :], folder)


# --- through the command line ----------------------------------------------------------------


@FEW
@given(base=st.sampled_from(sorted(BASES)), changes=edits)
def test_cli_refuses_bad_files_with_exit_2_and_writes_nothing(folder: Path, base: str, changes: list[Any]) -> None:
    text = to_toml(mutate(BASES[base], changes))
    if not isinstance(check(text, folder), SpecError):
        return  # a valid study would train: the property is about bad ones
    study = folder / "bad.toml"
    store = folder / "bad.db"
    study.write_text(text)
    for command in (["check", str(study)], ["run", str(study), "--store", str(store), "--quiet"]):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            assert main(command) == EXIT_USER_ERROR
        err = stderr.getvalue()
        assert err.startswith(f"trainlab: {study}: ") and "Traceback" not in err, err
        assert not store.exists(), "nothing may be written for an invalid study"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_processes_refuse_bad_and_impossible_studies_and_write_nothing(tmp_path: Path) -> None:
    """Real processes: bad files (refused by the parser) and studies that only the data can
    refute (a batch or a validation split larger than the data): exit 2, one message, no
    traceback, no store file."""
    make_npz(tmp_path / "tiny.npz", n_train=80, n_test=20)
    files = {}
    for name, change in {
        "units": lambda s: s["model"]["layers"].__setitem__(1, {"type": "Dense", "units": 10**9}),
        "lr": lambda s: s.__setitem__("optimizer", {"name": "sgd", "learning_rate": math.nan}),
        "toml": None,
        "batch": lambda s: s["train"].__setitem__("batch_size", 10**6),
        "validation": lambda s: s["data"]["split"].__setitem__("validation", 10**6),
    }.items():
        study = copy.deepcopy(NPZ)
        if change is not None:
            change(study)
        text = to_toml(study) if change is not None else to_toml(study)[:-30]
        (tmp_path / f"{name}.toml").write_text(text)
        files[name] = tmp_path / f"{name}.toml"
    for name, path in files.items():
        for command in [["check", path.name] if name == "toml" else ["run", path.name, "--store", "s.db"]]:
            proc = _cli(*command, cwd=tmp_path)
            assert proc.returncode == EXIT_USER_ERROR, (name, proc.stdout, proc.stderr)
            assert proc.stderr.startswith(f"trainlab: {path.name}: "), (name, proc.stderr)
            assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, (name, proc.stderr)
            assert not (tmp_path / "s.db").exists(), (name, "a store was written")
