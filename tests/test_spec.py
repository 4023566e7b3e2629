"""Study files: parsing, merging, defaults, hashing, and the errors a user sees."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainlab import spec
from trainlab.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[study]
name = "t"
seeds = [0, 1]

[data]
name = "mnist"
split = { kind = "first", validation = 5000 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 32, activation = "relu" },
  { type = "Dense", units = 10, activation = "softmax" },
]

[train]
epochs = 2
"""


def parse(extra: str = "", base: str = BASE) -> spec.Study:
    return spec.parse(base + extra, source="t.toml")


def error(text: str, base: str = BASE) -> SpecError:
    with pytest.raises(SpecError) as info:
        spec.parse(base + text, source="t.toml")
    return info.value


def test_quickstart_has_three_optimizers_times_two_seeds() -> None:
    study = spec.load(ROOT / "studies" / "quickstart.toml")
    assert study.name == "quickstart"
    assert [v.label for v in study.variants] == ["sgd", "rmsprop", "adam"]
    assert study.seeds == (0, 1)
    trials = study.trials()
    assert len(trials) == 6
    assert len({t.hash for t in trials}) == 6
    adam = study.variants[2].spec["optimizer"]
    assert adam == {**adam, "name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


def test_defaults_are_explicit_so_writing_them_out_changes_nothing() -> None:
    implicit = parse('\n[optimizer]\nname = "adam"\n')
    explicit = parse('\n[optimizer]\nname = "Adam"\nlearning_rate = 0.001\nbeta_1 = 0.9\nepsilon = 1e-7\n')
    assert [t.hash for t in implicit.trials()] == [t.hash for t in explicit.trials()]
    assert implicit.variants[0].spec["train"]["batch_size"] == 32
    assert implicit.variants[0].spec["train"]["monitor"] == "val_accuracy"
    dense = implicit.variants[0].spec["model"]["layers"][1]
    assert dense["kernel_initializer"]["name"] == "glorot_uniform"
    assert dense["bias_initializer"]["name"] == "zeros"


def test_hash_depends_on_seed_and_spec_and_is_stable() -> None:
    a, b = parse().trials(), parse().trials()
    assert [t.hash for t in a] == [t.hash for t in b]
    assert a[0].hash != a[1].hash
    changed = parse(base=BASE.replace("epochs = 2", "epochs = 3")).trials()
    assert changed[0].hash != a[0].hash


def test_round_trip_through_stored_json() -> None:
    import json

    study = parse(
        '\n[[compare]]\nlabel = "a"\noptimizer = "adam"\n[[compare]]\nlabel = "s"\noptimizer = { name = "sgd", momentum = 0.9 }\n'
    )
    again = spec.from_dict(json.loads(study.spec_json()))
    assert [t.hash for t in again.trials()] == [t.hash for t in study.trials()]
    assert again.hash == study.hash
    assert [t.spec_json() for t in again.trials()] == [t.spec_json() for t in study.trials()]


def test_compare_replaces_an_optimizer_whole_and_a_key_path_changes_one_setting() -> None:
    study = parse("""
[optimizer]
name = "sgd"
momentum = 0.9

[[compare]]
label = "momentum-lr"
"optimizer.learning_rate" = 0.1

[[compare]]
label = "adam"
optimizer = { name = "adam" }
""")
    sgd, adam = (v.spec["optimizer"] for v in study.variants)
    assert sgd["name"] == "sgd" and sgd["momentum"] == 0.9 and sgd["learning_rate"] == 0.1
    assert adam["name"] == "adam" and "momentum" not in adam


def test_key_paths_edit_list_elements_and_model_defaults_skip_the_output() -> None:
    base = BASE.replace('units = 32, activation = "relu"', "units = 32").replace(
        "[model]", '[model]\nactivation = "relu"'
    )
    study = parse(
        """
[[compare]]
label = "sigmoid"
"model.layers[1].activation" = "sigmoid"

[[compare]]
label = "relu"

[[compare]]
label = "selu-lecun"
model = { activation = "selu", kernel_initializer = "lecun_normal" }
""",
        base=base,
    )
    sig, relu, selu = study.variants
    assert sig.spec["model"]["layers"][1]["activation"]["name"] == "sigmoid"
    assert relu.spec["model"]["layers"][1]["activation"]["name"] == "relu"
    layers = selu.spec["model"]["layers"]
    assert layers[1]["activation"]["name"] == "selu"
    assert layers[2]["activation"]["name"] == "softmax"
    assert layers[1]["kernel_initializer"]["name"] == layers[2]["kernel_initializer"]["name"] == "lecun_normal"


def test_grid_crosses_with_compare_and_labels_carry_values() -> None:
    study = parse("""
[[compare]]
label = "sgd"
optimizer = "sgd"

[grid]
"optimizer.learning_rate" = [0.1, 0.01]
"train.batch_size" = [32, 128]
""")
    labels = [v.label for v in study.variants]
    assert labels == [
        "sgd learning_rate=0.1 batch_size=32",
        "sgd learning_rate=0.1 batch_size=128",
        "sgd learning_rate=0.01 batch_size=32",
        "sgd learning_rate=0.01 batch_size=128",
    ]
    assert study.variants[1].params == {"optimizer.learning_rate": 0.1, "train.batch_size": 128}
    assert len(study.trials()) == 8


def test_seeds_as_a_count_and_full_batch() -> None:
    study = parse(
        base=BASE.replace("seeds = [0, 1]", "seeds = 3").replace("epochs = 2", 'epochs = 2\nbatch_size = "full"')
    )
    assert study.seeds == (0, 1, 2)
    assert study.variants[0].spec["train"]["batch_size"] == "full"


def test_callbacks_get_keras_defaults_and_auto_mode() -> None:
    study = parse(
        base=BASE
        + 'early_stopping = { monitor = "val_accuracy", patience = 2 }\nreduce_lr_on_plateau = { patience = 3 }\n'
    )
    train = study.variants[0].spec["train"]
    assert train["early_stopping"]["mode"] == "max"
    assert train["early_stopping"]["restore_best_weights"] is False
    assert train["reduce_lr_on_plateau"] == {
        "monitor": "val_loss",
        "mode": "min",
        "factor": 0.1,
        "patience": 3,
        "min_delta": 1e-4,
        "cooldown": 0,
        "min_lr": 0.0,
    }


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ('\n[optimzer]\nname = "adam"\n', "optimzer", ["unknown section", "did you mean 'optimizer'"]),
        ('\n[optimizer]\nname = "adamm"\n', "optimizer.name", ["unknown optimizer", "did you mean 'adam'"]),
        (
            '\n[optimizer]\nname = "adam"\nbeta1 = 0.8\n',
            "optimizer.beta1",
            ["no hyper-parameter 'beta1'", "did you mean 'beta_1'"],
        ),
        ("", "train.epochs", ["1..100000"]),
    ],
)
def test_errors_name_file_path_and_nearest_match(text: str, path: str, words: list[str]) -> None:
    base = BASE if "epochs" not in path else BASE.replace("epochs = 2", "epochs = -1")
    err = error(text, base=base)
    message = str(err)
    assert message.startswith("t.toml: " + path), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("replace", "path", "word"),
    [
        (("epochs = 2", "epochs = 2\nbatch_size = 0"), "train.batch_size", "positive integer"),
        (("epochs = 2", "epochs = 2\nbatch_size = 1.5"), "train.batch_size", "expected"),
        (("epochs = 2", 'epochs = 2\nmonitor = "val_acc"'), "train.monitor", "val_accuracy"),
        (("epochs = 2", 'epochs = 2\nloss = "mse"'), "train.loss", "does not fit a classification"),
        (('{ type = "Flatten" },', ""), "model.layers[0]", 'put { type = "Flatten" } before it'),
        (('units = 10, activation = "softmax"', 'units = 5, activation = "softmax"'), "model.layers[2]", "10 units"),
        (
            ('units = 10, activation = "softmax"', 'units = 10, activation = "relu"'),
            "model.layers[2].activation",
            "softmax",
        ),
        (('type = "Dense", units = 32', 'type = "Dens", units = 32'), "model.layers[1].type", "did you mean 'Dense'"),
        (
            ('units = 32, activation = "relu"', 'units = 32, activation = "relu", kernel_initializer = "he_normall"'),
            "model.layers[1].kernel_initializer",
            "he_normal",
        ),
        (('name = "mnist"', 'name = "mnsit"'), "data.name", "did you mean 'mnist'"),
        (('kind = "first"', 'kind = "firts"'), "data.split.kind", "'first'"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), "study.seeds", "repeat"),
    ],
)
def test_bad_values_are_refused_with_their_key_path(replace: tuple[str, str], path: str, word: str) -> None:
    err = error("", base=BASE.replace(*replace))
    assert str(err).startswith("t.toml: " + path), str(err)
    assert word in str(err), str(err)


def test_nan_learning_rate_and_huge_values_are_refused() -> None:
    assert "got nan" in str(error('\n[optimizer]\nname = "sgd"\nlearning_rate = nan\n'))
    assert "train.epochs" in str(error("", base=BASE.replace("epochs = 2", "epochs = 1000000000")))


def test_compare_errors_name_the_entry() -> None:
    assert "compare[0].label" in str(error('\n[[compare]]\noptimizer = "adam"\n'))
    assert "used twice" in str(error('\n[[compare]]\nlabel = "a"\n[[compare]]\nlabel = "a"\noptimizer = "adam"\n'))
    assert "same trial" in str(error('\n[[compare]]\nlabel = "a"\n[[compare]]\nlabel = "b"\n'))
    msg = str(error('\n[[compare]]\nlabel = "x"\n"model.layers[7].units" = 3\n'))
    assert "out of range" in msg and "compare[0]" in msg
    msg = str(error('\n[[compare]]\nlabel = "x"\noptimizer = "nadamm"\n'))
    assert "in variant 'x'" in msg and "t.toml: optimizer" in msg


def test_invalid_toml_and_missing_file() -> None:
    assert "not valid TOML" in str(error("\n[train\n"))
    with pytest.raises(SpecError, match="no such study file"):
        spec.load("/nonexistent/study.toml")


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        spec.canonical_json({"x": math.nan})
