"""A part given whole is a complete Keras config; a key path changes one setting of the base.

The trap these tests guard against: a stage starting from SGD at learning rate 0.1 wrote
``optimizer = { name = "sgd", momentum = 0.9 }``, meaning "SGD with momentum at Keras'
defaults", and trained at 0.1, while ``optimizer = "sgd"`` trained at 0.01.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab import cli, spec
from trainlab.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent

KERAS_SGD_LEARNING_RATE = 0.01
"""``keras.optimizers.SGD``'s default learning rate (Keras 3 documentation)."""

BASE = """
[study]
name = "t"
seeds = [0]

[data]
name = "mnist"
split = { kind = "first", validation = 5000 }

[model]
activation = "relu"
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 32 },
  { type = "Dense", units = 10, activation = "softmax" },
]

[optimizer]
name = "sgd"
learning_rate = 0.1

[train]
epochs = 2
early_stopping = { monitor = "val_accuracy", patience = 3, restore_best_weights = true }
"""

STAGED = (
    BASE.replace("learning_rate = 0.1\n", "")
    + """
[[stage]]
name = "rate"
[stage.grid]
"optimizer.learning_rate" = [0.05, 0.1]

[[stage]]
name = "optimizers"
from = "rate"
[[stage.compare]]
label = "sgd"
optimizer = "sgd"
[[stage.compare]]
label = "momentum"
optimizer = { name = "sgd", momentum = 0.9 }
[[stage.compare]]
label = "momentum at the chosen rate"
"optimizer.momentum" = 0.9
"""
)


def variant(text: str, base: str = BASE) -> spec.Variant:
    study = spec.parse(base + text, source="t.toml")
    assert len(study.variants) == 1
    return study.variants[0]


def error(text: str, base: str = BASE) -> str:
    with pytest.raises(SpecError) as info:
        spec.parse(base + text, source="t.toml")
    return str(info.value)


def later(study: spec.Study, stage: str) -> dict[str, list[spec.Variant]]:
    """A later stage's variants by label, on every base it may start from."""
    out: dict[str, list[spec.Variant]] = {}
    for v in study.candidates(64)[stage]:
        out.setdefault(v.label.split(": ", 1)[1], []).append(v)
    return out


def test_the_table_form_takes_keras_defaults_never_the_base() -> None:
    v = variant('\n[[compare]]\nlabel = "m"\noptimizer = { name = "sgd", momentum = 0.9 }\n')
    assert v.spec["optimizer"]["learning_rate"] == KERAS_SGD_LEARNING_RATE
    assert v.spec["optimizer"]["momentum"] == 0.9


def test_a_later_stage_table_form_takes_keras_defaults_on_every_base() -> None:
    variants = later(spec.parse(STAGED, source="t.toml"), "optimizers")
    for label in ("sgd", "momentum"):
        assert {v.spec["optimizer"]["learning_rate"] for v in variants[label]} == {KERAS_SGD_LEARNING_RATE}, label
    # The key path keeps the chosen variant's learning rate: 0.05 or 0.1, whichever was chosen.
    assert [v.spec["optimizer"]["learning_rate"] for v in variants["momentum at the chosen rate"]] == [0.05, 0.1]


def test_the_key_path_changes_only_that_setting() -> None:
    plain = variant("")
    v = variant('\n[[compare]]\nlabel = "m"\n"optimizer.momentum" = 0.9\n')
    assert v.spec["optimizer"] == {**plain.spec["optimizer"], "momentum": 0.9}
    assert v.spec["optimizer"]["learning_rate"] == 0.1
    assert {k: v.spec[k] for k in ("data", "model", "train")} == {k: plain.spec[k] for k in ("data", "model", "train")}


def test_both_forms_agree_given_the_same_values() -> None:
    table = variant('\n[[compare]]\nlabel = "m"\noptimizer = { name = "sgd", learning_rate = 0.1, momentum = 0.9 }\n')
    path = variant('\n[[compare]]\nlabel = "m"\n"optimizer.momentum" = 0.9\n')
    assert table.spec == path.spec
    named = variant('\n[[compare]]\nlabel = "s"\noptimizer = "sgd"\n')
    whole = variant('\n[[compare]]\nlabel = "s"\noptimizer = { name = "sgd" }\n')
    assert named.spec == whole.spec
    assert named.spec["optimizer"]["learning_rate"] == KERAS_SGD_LEARNING_RATE


def test_key_paths_apply_after_parts_given_whole_whatever_their_order() -> None:
    v = variant('\n[[compare]]\nlabel = "a"\n"optimizer.learning_rate" = 0.02\noptimizer = "adam"\n')
    assert v.spec["optimizer"]["name"] == "adam" and v.spec["optimizer"]["learning_rate"] == 0.02


def test_train_merges_one_level_and_a_table_inside_replaces_whole() -> None:
    v = variant('\n[[compare]]\nlabel = "b"\ntrain = { batch_size = 64, early_stopping = { patience = 5 } }\n')
    train = v.spec["train"]
    assert train["epochs"] == 2 and train["batch_size"] == 64  # epochs kept from the base
    # Keras' EarlyStopping(patience=5): monitor val_loss, best weights not restored.
    assert train["early_stopping"]["monitor"] == "val_loss" and train["early_stopping"]["restore_best_weights"] is False
    kept = variant('\n[[compare]]\nlabel = "b"\n"train.early_stopping.patience" = 5\n')
    assert kept.spec["train"]["early_stopping"]["monitor"] == "val_accuracy"
    assert kept.spec["train"]["early_stopping"]["restore_best_weights"] is True


def test_a_model_table_merges_one_level_and_an_activation_table_is_complete() -> None:
    v = variant(
        '\n[[compare]]\nlabel = "l"\nmodel = { activation = { name = "leaky_relu" } }\n',
        base=BASE.replace('activation = "relu"', 'activation = { name = "leaky_relu", alpha = 0.5 }'),
    )
    # Keras 3's activation function leaky_relu: negative_slope 0.2, not the base's 0.5.
    assert v.spec["model"]["layers"][1]["activation"] == {"name": "leaky_relu", "negative_slope": 0.2}
    assert [layer["type"] for layer in v.spec["model"]["layers"]] == ["Flatten", "Dense", "Dense"]


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        (
            '"optimizer.momentun" = 0.9',
            "optimizer.momentun",
            ["no hyper-parameter 'momentun'", "did you mean 'momentum'"],
        ),
        (
            '"model.layerz[1].units" = 64',
            "compare[0].model.layerz[1].units",
            ["no list 'layerz'", "did you mean 'layers'"],
        ),
        ('"model.layers[5].units" = 64', "compare[0].model.layers[5].units", ["out of range", "indices 0..2"]),
        ('"optimzer.learning_rate" = 0.1', "compare[0].optimzer.learning_rate", ["did you mean 'optimizer'"]),
        ('"train.early_stoping.patience" = 3', "train.early_stoping", ["unknown key", "did you mean 'early_stopping'"]),
        ('"optimizer.learning_rate.x" = 1', "compare[0].optimizer.learning_rate.x", ["holds a value"]),
        ('"model.layers.units.x" = 1', "compare[0].model.layers.units.x", ["cannot be inside a list"]),
        ("optimizer.momentum = 0.9", "compare[0].optimizer", ['"optimizer.momentum" = ...', "needs its 'name'"]),
        ('optimizer = "adam"\n"optimizer.momentum" = 0.9', "optimizer.momentum", ["no hyper-parameter 'momentum'"]),
    ],
)
def test_a_bad_key_path_names_its_path_and_the_allowed_keys(entry: str, path: str, words: list[str]) -> None:
    message = error(f'\n[[compare]]\nlabel = "x"\n{entry}\n')
    assert message.startswith(f"t.toml: {path}"), message
    for word in words:
        assert word in message, message


def test_a_bad_key_path_in_a_grid_and_in_a_later_stage_names_where_it_is_written() -> None:
    message = error('\n[grid]\n"model.layerz[1].units" = [8, 16]\n')
    assert message.startswith("t.toml: grid.model.layerz[1].units") and "did you mean 'layers'" in message
    staged = STAGED.replace('"optimizer.momentum" = 0.9', '"optimizer.momentun" = 0.9')
    with pytest.raises(SpecError) as info:
        spec.parse(staged, source="t.toml")
    assert str(info.value).startswith("t.toml: optimizer.momentun") and "momentum at the chosen rate" in str(info.value)


def test_a_model_default_that_reaches_no_layer_is_refused() -> None:
    every_layer_names_one = BASE.replace("units = 32 }", 'units = 32, activation = "tanh" }')
    message = error('\n[[compare]]\nlabel = "s"\n"model.activation" = "sigmoid"\n', base=every_layer_names_one)
    assert message.startswith("t.toml: compare[0].model.activation") and "change nothing" in message
    # In a later stage every layer of the chosen variant names its own activation.
    staged = STAGED + '[[stage.compare]]\nlabel = "tanh"\nmodel = { activation = "tanh" }\n'
    with pytest.raises(SpecError, match=r"stage\[1\]\.compare\[3\]\.model\.activation.*edit = \{ activation"):
        spec.parse(staged, source="t.toml")
    # Where a layer names none, it reaches that layer.
    v = variant('\n[[compare]]\nlabel = "s"\n"model.activation" = "sigmoid"\n')
    assert v.spec["model"]["layers"][1]["activation"]["name"] == "sigmoid"


def test_quickstart_and_unchanged_report_a_trials_keep_their_hashes() -> None:
    """Hashes computed before parts given whole stopped inheriting the base's settings."""
    quickstart = spec.load(ROOT / "studies" / "quickstart.toml")
    assert [t.hash for t in quickstart.trials()] == [
        "79a393f8b892ed7f18fd",
        "6b64c8648fa030bad067",
        "adee7762ab65cc8be389",
        "c5009ae070cb8d738a3d",
        "d7e0d60f5218db170aad",
        "4bdb03600ea624ee6299",
    ]
    report_a = spec.load(ROOT / "studies" / "report_a_mnist.toml")
    first = {t.label: t.hash for t in report_a.trials() if t.seed == 0}
    assert (
        first["architecture: 128 activation=relu kernel_initializer=glorot_uniform learning_rate=0.1"]
        == "7bad85671ef19b28d8ff"
    )
    assert (
        first["architecture: 128 activation=tanh kernel_initializer=he_normal learning_rate=0.01"]
        == "210fd142859b051bf911"
    )


def test_report_a_optimizers_train_at_keras_defaults_on_every_base() -> None:
    study = spec.load(ROOT / "studies" / "report_a_mnist.toml")
    defaults = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.001, "rmsprop": 0.001, "adam": 0.001}
    variants = later(study, "optimizers")
    assert set(variants) == set(defaults)
    for label, rate in defaults.items():
        assert {v.spec["optimizer"]["learning_rate"] for v in variants[label]} == {rate}, label
    # Every hidden layer of every architecture takes the grid's activation and initializer.
    for v in study.variants:
        hidden = [layer for layer in v.spec["model"]["layers"] if layer["type"] == "Dense"][:-1]
        assert {layer["activation"]["name"] for layer in hidden} == {v.params["model.activation"]}, v.label
        assert {layer["kernel_initializer"]["name"] for layer in hidden} == {v.params["model.kernel_initializer"]}, (
            v.label
        )


def test_check_lists_each_variants_non_default_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(STAGED)
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    block = out[out.index("stage optimizers") :]
    assert "resolved on each of the 2 variants of 'rate' it may start from" in block
    sgd, momentum, chosen = (
        block[block.index(f"  optimizers: {label}\n") :].splitlines()[1:4]
        for label in ("sgd", "momentum", "momentum at the chosen rate")
    )
    assert sgd[0].strip() == "optimizer: sgd, learning_rate=0.01"
    assert momentum[0].strip() == "optimizer: sgd, learning_rate=0.01, momentum=0.9"
    assert chosen[0].strip() == "optimizer: sgd, learning_rate=0.05|0.1, momentum=0.9"
    assert momentum[1].strip() == (
        "train: epochs=2, batch_size=32, early_stopping.monitor=val_accuracy, "
        "early_stopping.patience=3, early_stopping.restore_best_weights=true"
    )
    first = out[out.index("  rate: learning_rate=0.1\n") :].splitlines()[1:4]
    assert first[2].strip() == "model: Flatten; Dense units=32 activation=relu; Dense units=10 activation=softmax"


def test_the_report_json_carries_each_variants_settings(tmp_path: Path) -> None:
    from trainlab.executors import register
    from trainlab.report import study_report
    from trainlab.store import Store

    study = spec.parse(
        BASE + '\n[[compare]]\nlabel = "sgd"\n[[compare]]\nlabel = "momentum"\n'
        'optimizer = { name = "sgd", momentum = 0.9, nesterov = true }\n',
        source="t.toml",
    )
    with Store.open(tmp_path / "s.db") as store:
        register(study, store)
        report = json.loads(json.dumps(study_report(store, "t")))
    settings = {v["label"]: v["settings"] for v in report["variants"]}
    assert settings["sgd"]["optimizer.learning_rate"] == 0.1
    momentum = settings["momentum"]
    assert {k: momentum[k] for k in momentum if k.startswith("optimizer.")} == {
        "optimizer.name": "sgd",
        "optimizer.learning_rate": KERAS_SGD_LEARNING_RATE,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": True,
    }
    assert momentum["model.layers[1].activation"] == "relu" and momentum["train.early_stopping.patience"] == 3


def test_a_grid_key_path_changes_one_setting_and_a_grid_part_is_whole() -> None:
    study = spec.parse(BASE + '\n[grid]\n"optimizer.momentum" = [0.5, 0.9]\n', source="t.toml")
    assert [(v.spec["optimizer"]["learning_rate"], v.spec["optimizer"]["momentum"]) for v in study.variants] == [
        (0.1, 0.5),
        (0.1, 0.9),
    ]
    whole = spec.parse(BASE + '\n[grid]\noptimizer = [{ name = "sgd", momentum = 0.9 }, "adam"]\n', source="t.toml")
    assert [v.spec["optimizer"]["learning_rate"] for v in whole.variants] == [KERAS_SGD_LEARNING_RATE, 0.001]
