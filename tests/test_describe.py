"""What a resolved trial sets beside Keras' defaults: settings, their spread over bases, their text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import example_study_files

from trainlab import describe, spec

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[study]
name = "d"
seeds = [0]

[data]
name = "mnist"

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 64, activation = "relu" },
  { type = "Dropout", rate = 0.2 },
  { type = "Dense", units = 10, activation = "softmax" },
]

[train]
epochs = 3
"""


def settings(extra: str = "", base: str = BASE) -> dict[str, Any]:
    study = spec.parse(base + extra, source="d.toml")
    return describe.settings(study.variants[0].spec)


def test_keras_defaults_show_only_what_always_shows() -> None:
    assert settings() == {
        "optimizer.name": "sgd",
        "optimizer.learning_rate": 0.01,
        "train.epochs": 3,
        "train.batch_size": 32,
        "model.layers[0].type": "Flatten",
        "model.layers[1].type": "Dense",
        "model.layers[1].units": 64,
        "model.layers[1].activation": "relu",
        "model.layers[2].type": "Dropout",
        "model.layers[2].rate": 0.2,
        "model.layers[3].type": "Dense",
        "model.layers[3].units": 10,
        "model.layers[3].activation": "softmax",
    }


def test_an_optimizers_parameters_are_compared_with_its_own_defaults() -> None:
    adam = settings('\n[optimizer]\nname = "adam"\nbeta_2 = 0.99\namsgrad = true\nclipnorm = 1.0\n')
    assert {k: v for k, v in adam.items() if k.startswith("optimizer.")} == {
        "optimizer.name": "adam",
        "optimizer.learning_rate": 0.001,
        "optimizer.beta_2": 0.99,
        "optimizer.amsgrad": True,
        "optimizer.clipnorm": 1.0,
    }
    written_out = settings('\n[optimizer]\nname = "rmsprop"\nlearning_rate = 0.001\nrho = 0.9\n')
    assert [k for k in written_out if k.startswith("optimizer.")] == ["optimizer.name", "optimizer.learning_rate"]


def test_named_parts_show_their_name_and_parameters_off_their_own_defaults() -> None:
    out = settings(
        base=BASE.replace(
            'units = 64, activation = "relu"',
            'units = 64, activation = { name = "leaky_relu", alpha = 0.5 }, kernel_initializer = { name = "random_normal", stddev = 0.1 }, '
            'bias_initializer = { name = "constant", value = 0.0 }, kernel_regularizer = { l2 = 0.001 }, use_bias = true',
        )
    )
    layer = {k[len("model.layers[1].") :]: v for k, v in out.items() if k.startswith("model.layers[1].")}
    assert layer == {
        "type": "Dense",
        "units": 64,
        "activation": "leaky_relu",
        "activation.negative_slope": 0.5,
        "kernel_initializer": "random_normal",
        "kernel_initializer.stddev": 0.1,
        "bias_initializer": "constant",
        "kernel_regularizer.l2": 0.001,
    }
    # Keras 3's leaky_relu slope (0.2) and RandomNormal stddev (0.05) are defaults: the name alone shows.
    plain = settings(
        base=BASE.replace(
            'units = 64, activation = "relu"',
            'units = 64, activation = { name = "leaky_relu", alpha = 0.2 }, kernel_initializer = "random_normal"',
        )
    )
    assert (
        plain["model.layers[1].activation"] == "leaky_relu" and "model.layers[1].activation.negative_slope" not in plain
    )
    assert (
        plain["model.layers[1].kernel_initializer"] == "random_normal"
        and "model.layers[1].kernel_initializer.stddev" not in plain
    )


def test_separable_convolutions_show_their_initializers_off_the_defaults_only() -> None:
    out = settings(
        base=BASE.replace(
            '{ type = "Flatten" },',
            '{ type = "SeparableConv2D", filters = 4, kernel_size = 3, depthwise_initializer = "he_normal", '
            'pointwise_initializer = "glorot_uniform" }, { type = "Flatten" },',
        )
    )
    layer = {k[len("model.layers[0].") :]: v for k, v in out.items() if k.startswith("model.layers[0].")}
    assert layer == {"type": "SeparableConv2D", "filters": 4, "kernel_size": 3, "depthwise_initializer": "he_normal"}


def test_train_settings_against_the_tasks_defaults_and_callbacks_with_their_monitor() -> None:
    out = settings(
        base=BASE + 'batch_size = 128\nmonitor = "val_loss"\nloss = "sparse_categorical_crossentropy"\n'
        'early_stopping = { monitor = "val_loss", patience = 4, mode = "auto" }\n'
        'reduce_lr_on_plateau = { monitor = "val_accuracy", mode = "min" }\n'
    )
    assert {k: v for k, v in out.items() if k.startswith("train.")} == {
        "train.epochs": 3,
        "train.batch_size": 128,
        "train.monitor": "val_loss",
        "train.early_stopping.monitor": "val_loss",
        "train.early_stopping.patience": 4,
        "train.reduce_lr_on_plateau.monitor": "val_accuracy",
        "train.reduce_lr_on_plateau.mode": "min",
    }


def _rebuilt(resolved: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    """A trial rebuilt from its settings alone, through key paths and the registries' defaults."""
    raw: dict[str, Any] = {"data": resolved["data"], "optimizer": shown["optimizer.name"], "train": {}, "model": {}}
    layers = sum(1 for key in shown if key.endswith("].type"))
    raw["model"]["layers"] = [{} for _ in range(layers)]
    for key, value in shown.items():
        if key != "optimizer.name":
            spec.set_path(raw, key, value, key)
    return spec.resolve_trial(raw)


@pytest.mark.parametrize("name", [str(p.relative_to(ROOT / "studies")) for p in example_study_files()])
def test_settings_and_keras_defaults_rebuild_every_example_variant(name: str) -> None:
    """Nothing that differs from a default is left out: a second code path, setting each shown
    key path on an empty trial and resolving it, gives back the same optimizer, training and model."""
    study = spec.load(ROOT / "studies" / name)
    variants = [v for vs in study.candidates(2).values() for v in vs][:40]
    assert variants
    for v in variants:
        again = _rebuilt(v.spec, describe.settings(v.spec))
        for part in ("optimizer", "train", "model"):
            assert again[part] == v.spec[part], (v.label, part)


def test_spread_and_lines_show_what_depends_on_the_base() -> None:
    one = settings()
    faster = {**one, "optimizer.learning_rate": 0.1, "optimizer.momentum": 0.9}
    assert describe.spread([one, faster])["optimizer.learning_rate"] == [0.01, 0.1]
    assert describe.spread([one, faster])["optimizer.momentum"] == [0.9, describe.DEFAULT]
    assert describe.lines([one]) == [
        "optimizer: sgd, learning_rate=0.01",
        "train: epochs=3, batch_size=32",
        "model: Flatten; Dense units=64 activation=relu; Dropout rate=0.2; Dense units=10 activation=softmax",
    ]
    wider = {**one, "model.layers[1].units": 128}
    assert describe.lines([one, faster, wider]) == [
        "optimizer: sgd, learning_rate=0.01|0.1, momentum=0.9|default",
        "train: epochs=3, batch_size=32",
        "model: depends on the base (3 possible)",
    ]
