"""The typed trial spec: a lossless view of the resolved JSON, and a trial identity that stays put.

The golden hashes are those trainlab 0.1.0 gave these trials: a later version must give the same,
or every store written before it would stop resuming.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import example_trials

from trainlab import spec, trial
from trainlab.trial import TrialSpec, canonical_json, trial_hash

ROOT = Path(__file__).resolve().parent.parent

GOLDEN_STUDIES = {
    "mlp": """
[study]
name = "g-mlp"
seeds = [0, 3]
[data]
name = "mnist"
split = { kind = "first", validation = 5000 }
[model]
layers = [{ type = "Flatten" }, { type = "Dense", units = 64, activation = "relu" }, { type = "Dropout", rate = 0.2 },
          { type = "BatchNormalization" }, { type = "Dense", units = 10, activation = "softmax" }]
[optimizer]
name = "sgd"
learning_rate = 0.1
momentum = 0.9
nesterov = true
[train]
epochs = 20
batch_size = 128
early_stopping = { monitor = "val_loss", patience = 3 }
reduce_lr_on_plateau = { monitor = "val_loss", factor = 0.5, patience = 2 }
""",
    "cnn": """
[study]
name = "g-cnn"
seeds = [1]
[data]
name = "fashion_mnist"
split = { kind = "stratified", validation = 0.1 }
[model]
layers = [{ type = "Conv2D", filters = 8, kernel_size = 3, activation = "relu", padding = "same" },
          { type = "MaxPooling2D", pool_size = 2 }, { type = "Flatten" },
          { type = "Dense", units = 10, activation = "softmax", kernel_initializer = "he_normal" }]
[optimizer]
name = "adam"
learning_rate = 0.0005
[train]
epochs = 5
batch_size = 64
""",
    "housing": """
[study]
name = "g-housing"
seeds = [2]
[data]
name = "california_housing"
[model]
layers = [{ type = "Dense", units = 32, activation = "tanh", kernel_regularizer = { l2 = 0.001 } },
          { type = "Dense", units = 1 }]
[optimizer]
name = "rmsprop"
[train]
epochs = 10
batch_size = "full"
""",
}

GOLDEN_HASHES = {
    "mlp": [(0, "0d6383d9f04aff76391a"), (3, "81beb76389bc2ae21d79")],
    "cnn": [(1, "17f86f2ca3fccc67fee6")],
    "housing": [(2, "36de4f0ddfc77f0c8261")],
}
"""Written by trainlab 0.1.0 for the studies above."""


@pytest.mark.parametrize("name", GOLDEN_STUDIES)
def test_trial_identity_is_what_0_1_gave(name: str) -> None:
    study = spec.parse(GOLDEN_STUDIES[name])
    assert [(t.seed, t.hash) for t in study.trials()] == GOLDEN_HASHES[name]
    for t in study.trials():
        assert TrialSpec.from_json(t.spec).hash(t.seed) == t.hash  # the typed spec hashes the same


def test_every_example_trial_round_trips_through_the_typed_spec() -> None:
    trials = example_trials()
    assert len(trials) > 100
    for t in trials:
        typed = TrialSpec.from_json(t.spec)
        assert TrialSpec.from_json(typed.json()) == typed
        assert typed.json() == canonical_json(trial.identity(t.spec))  # nothing lost but neutral defaults
        assert typed.hash(t.seed) == t.hash


def test_the_typed_spec_reads_its_parts() -> None:
    t = spec.parse(GOLDEN_STUDIES["mlp"]).trials()[0]
    typed = TrialSpec.from_json(t.spec_json())
    assert (typed.optimizer.name, typed.optimizer.learning_rate, typed.optimizer.options["nesterov"]) == (
        "sgd",
        0.1,
        True,
    )
    assert (typed.train.epochs, typed.train.batch_size, typed.train.full_batch) == (20, 128, False)
    assert typed.train.early_stopping is not None and typed.train.early_stopping["patience"] == 3
    assert [layer["type"] for layer in typed.model.layers] == [
        "Flatten",
        "Dense",
        "Dropout",
        "BatchNormalization",
        "Dense",
    ]
    assert (
        not typed.model.convolutional
        and TrialSpec.from_json(spec.parse(GOLDEN_STUDIES["cnn"]).trials()[0].spec).model.convolutional
    )
    assert (typed.data.name, typed.data.val_limit, typed.data.test_fraction) == ("mnist", None, None)
    assert typed.task == "classification"
    housing = TrialSpec.from_json(spec.parse(GOLDEN_STUDIES["housing"]).trials()[0].spec)
    assert (housing.task, housing.data.test_fraction, housing.train.full_batch) == ("regression", 0.2, True)


def test_a_stored_spec_without_a_later_setting_reads_its_neutral_default() -> None:
    t = spec.parse(GOLDEN_STUDIES["mlp"]).trials()[0]
    stored = json.loads(t.spec_json())
    assert "val_limit" not in stored["data"]  # stored as 0.1 stored it
    assert TrialSpec.from_json(stored).data.val_limit is None


def test_a_new_setting_at_its_neutral_default_keeps_every_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a setting is one row of NEUTRAL_DEFAULTS: trials that hold its default keep their hash,
    trials that set it get a new one."""
    t = spec.parse(GOLDEN_STUDIES["mlp"]).trials()[0]
    with_default = json.loads(json.dumps(t.spec))
    with_default["train"]["gradient_noise"] = 0.0
    assert trial_hash(with_default, t.seed) != t.hash  # not yet declared neutral: a new identity
    monkeypatch.setitem(trial.NEUTRAL_DEFAULTS, ("train", "gradient_noise"), 0.0)
    assert trial_hash(with_default, t.seed) == t.hash
    with_default["train"]["gradient_noise"] = 0.1
    assert trial_hash(with_default, t.seed) != t.hash


def test_a_factory_model_round_trips_and_its_folder_is_not_its_identity() -> None:
    model = {
        "factory": "mypkg.models:build",
        "params": {"width": 8, "block": {"depth": 2}},
        "source_sha256": "ab" * 32,
        "outputs": 3,
        "task": "classification",
        "root": "/home/me/project",
    }
    data = {"name": "factory", "path": None, "split": {"kind": "first", "validation": 0.1, "seed": 0}}
    data.update(train_limit=None, test_limit=None, factory="mypkg.data:load", params={}, root="/home/me/project")
    data.update(source_sha256="cd" * 32, test_fraction=0.2)
    raw = {"task": "classification", "data": data, "model": model, "optimizer": {"name": "sgd"}}
    raw["train"] = {
        "epochs": 1,
        "batch_size": 32,
        "loss": "sparse_categorical_crossentropy",
        "shuffle": True,
        "monitor": "val_accuracy",
        "keep": "best",
        "early_stopping": None,
        "reduce_lr_on_plateau": None,
    }
    spec = TrialSpec.from_json(raw)
    assert spec.model.factory is not None and spec.model.layers == ()
    assert json.loads(spec.json()) == json.loads(canonical_json(raw))  # what is hashed is what is stored
    moved = json.loads(spec.json())
    moved["model"]["root"] = moved["data"]["root"] = "/elsewhere"
    assert trial_hash(moved, 0) == spec.hash(0)
    for key, value in (("params", {"width": 9, "block": {"depth": 2}}), ("source_sha256", "ef" * 32)):
        changed = json.loads(spec.json())
        changed["model"][key] = value
        assert trial_hash(changed, 0) != spec.hash(0), key
