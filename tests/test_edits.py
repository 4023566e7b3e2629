"""Stage edits, one table row per kind: each kind's result as the resolved spec written out by
hand, and each kind's refusal of a bad value with its key path and allowed values."""

from __future__ import annotations

from typing import Any

import pytest

from trainlab import edits, spec
from trainlab.errors import SpecError

SGD = {"name": "sgd", "learning_rate": 0.05}
FLAT = {"type": "Flatten"}


def dense(units: int, activation: str = "linear") -> dict[str, Any]:
    return {"type": "Dense", "units": units, "activation": activation}


def conv(filters: int, activation: str = "linear") -> dict[str, Any]:
    return {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": activation}


def trial(layers: list[dict[str, Any]], optimizer: Any = SGD) -> dict[str, Any]:
    """The resolved spec of an MNIST trial with these layers and this optimizer."""
    raw = {
        "data": {"name": "mnist", "split": {"kind": "first", "validation": 100}},
        "model": {"layers": layers},
        "optimizer": optimizer,
        "train": {"epochs": 1, "batch_size": 8},
    }
    return spec.resolve_trial(raw)


MLP = [FLAT, dense(16, "relu"), dense(8, "relu"), dense(10, "softmax")]
MLP_DROPOUT = [FLAT, dense(16, "relu"), {"type": "Dropout", "rate": 0.2}, dense(8, "relu"), dense(10, "softmax")]
CNN = [conv(4, "relu"), {"type": "MaxPooling2D"}, conv(6, "relu"), FLAT, dense(10, "softmax")]
BARE = [FLAT, dense(10, "softmax")]
CONV_BLOCK = [{"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same"}, {"type": "MaxPooling2D"}]

# name: (base layers, base optimizer, edit, the edited layers and optimizer, written out by hand)
APPLIED: dict[str, tuple[list[dict[str, Any]], Any, dict[str, Any], list[dict[str, Any]], Any]] = {
    "insert at the input": (MLP, SGD, {"insert": {"at": 0, "layers": CONV_BLOCK}}, [*CONV_BLOCK, *MLP], SGD),
    "insert two, positions in the model as it was": (
        MLP,
        SGD,
        {"insert": [{"at": -1, "layers": [dense(7)]}, {"at": 1, "layers": [{"type": "Dropout", "rate": 0.3}]}]},
        [FLAT, {"type": "Dropout", "rate": 0.3}, dense(16, "relu"), dense(8, "relu"), dense(7), dense(10, "softmax")],
        SGD,
    ),
    "hidden copies the first hidden block": (
        MLP_DROPOUT,
        SGD,
        {"hidden": [5, 6, 7]},
        [
            FLAT,
            dense(5, "relu"),
            {"type": "Dropout", "rate": 0.2},
            dense(6, "relu"),
            {"type": "Dropout", "rate": 0.2},
            dense(7, "relu"),
            {"type": "Dropout", "rate": 0.2},
            dense(10, "softmax"),
        ],
        SGD,
    ),
    "hidden none": (MLP_DROPOUT, SGD, {"hidden": []}, BARE, SGD),
    "hidden on a model without any": (BARE, SGD, {"hidden": [4]}, [FLAT, dense(4), dense(10, "softmax")], SGD),
    "activation": (
        MLP,
        SGD,
        {"activation": "sigmoid"},
        [FLAT, dense(16, "sigmoid"), dense(8, "sigmoid"), dense(10, "softmax")],
        SGD,
    ),
    "activation reaches Activation layers before the output": (
        [
            FLAT,
            dense(16),
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            dense(10, "softmax"),
        ],
        SGD,
        {"activation": {"name": "leaky_relu", "negative_slope": 0.2}},
        [
            FLAT,
            {**dense(16), "activation": {"name": "leaky_relu", "negative_slope": 0.2}},
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": {"name": "leaky_relu", "negative_slope": 0.2}},
            dense(10, "softmax"),
        ],
        SGD,
    ),
    "activation of convolutions": (
        CNN,
        SGD,
        {"activation": "tanh"},
        [conv(4, "tanh"), {"type": "MaxPooling2D"}, conv(6, "tanh"), FLAT, dense(10, "softmax")],
        SGD,
    ),
    "widths": (MLP, SGD, {"widths": [3, 5]}, [FLAT, dense(3, "relu"), dense(5, "relu"), dense(10, "softmax")], SGD),
    "widths of convolutions": (
        CNN,
        SGD,
        {"widths": [2, 9]},
        [conv(2, "relu"), {"type": "MaxPooling2D"}, conv(9, "relu"), FLAT, dense(10, "softmax")],
        SGD,
    ),
    "scale_widths": (
        MLP,
        SGD,
        {"scale_widths": 0.5},
        [FLAT, dense(8, "relu"), dense(4, "relu"), dense(10, "softmax")],
        SGD,
    ),
    "scale_widths rounds, at least one": (
        CNN,
        SGD,
        {"scale_widths": 0.3},
        [conv(1, "relu"), {"type": "MaxPooling2D"}, conv(2, "relu"), FLAT, dense(10, "softmax")],
        SGD,
    ),
    "dropout": (
        MLP_DROPOUT,
        SGD,
        {"dropout": 0.4},
        [FLAT, dense(16, "relu"), {"type": "Dropout", "rate": 0.4}, dense(8, "relu"), dense(10, "softmax")],
        SGD,
    ),
    "batch_norm": (
        MLP,
        SGD,
        {"batch_norm": True},
        [
            FLAT,
            dense(16, "relu"),
            {"type": "BatchNormalization"},
            dense(8, "relu"),
            {"type": "BatchNormalization"},
            dense(10, "softmax"),
        ],
        SGD,
    ),
    "batch_norm before the activation": (
        MLP,
        SGD,
        {"batch_norm": "before_activation"},
        [
            FLAT,
            dense(16),
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            dense(8),
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            dense(10, "softmax"),
        ],
        SGD,
    ),
    "batch_norm false changes nothing": (MLP, SGD, {"batch_norm": False}, MLP, SGD),
    "scale_lr": (MLP, SGD, {"scale_lr": 5}, MLP, {"name": "sgd", "learning_rate": 0.25}),
    "scale_lr of a default learning rate": (
        MLP,
        "adam",
        {"scale_lr": 10},
        MLP,
        {"name": "adam", "learning_rate": 0.01},
    ),
    "inserted layers are hidden and get batch norm": (
        MLP,
        SGD,
        {"insert": {"at": 0, "layers": CONV_BLOCK}, "batch_norm": True},
        [
            CONV_BLOCK[0],
            {"type": "BatchNormalization"},
            CONV_BLOCK[1],
            FLAT,
            dense(16, "relu"),
            {"type": "BatchNormalization"},
            dense(8, "relu"),
            {"type": "BatchNormalization"},
            dense(10, "softmax"),
        ],
        SGD,
    ),
    "an inserted layer is hidden in a model without one": (
        BARE,
        SGD,
        {"insert": {"at": 1, "layers": [dense(6)]}, "activation": "relu"},
        [FLAT, dense(6, "relu"), dense(10, "softmax")],
        SGD,
    ),
    "a rebuilt layer is hidden in a model without one": (
        BARE,
        SGD,
        {"hidden": [4], "batch_norm": True},
        [FLAT, dense(4), {"type": "BatchNormalization"}, dense(10, "softmax")],
        SGD,
    ),
    "rebuilt layers get the new widths, activation and batch norm": (
        MLP,
        SGD,
        {"hidden": [4, 4, 4], "scale_widths": 2, "activation": "elu", "batch_norm": True, "scale_lr": 2},
        [
            FLAT,
            *[layer for _ in range(3) for layer in (dense(8, "elu"), {"type": "BatchNormalization"})],
            dense(10, "softmax"),
        ],
        {"name": "sgd", "learning_rate": 0.1},
    ),
}


def test_every_edit_kind_has_an_applied_case() -> None:
    covered = {key for _, _, edit, _, _ in APPLIED.values() for key in edit}
    assert covered == set(edits.EDITS)


def test_keys_are_the_edit_table_in_the_order_edits_apply() -> None:
    assert edits.KEYS == (
        "insert",
        "hidden",
        "activation",
        "widths",
        "scale_widths",
        "dropout",
        "batch_norm",
        "scale_lr",
    )


@pytest.mark.parametrize("case", APPLIED)
def test_an_edit_gives_the_spec_written_out_by_hand(case: str) -> None:
    layers, optimizer, edit, expected_layers, expected_optimizer = APPLIED[case]
    base = trial(layers, optimizer)
    edited = spec.resolve_trial(edits.apply(base, edits.check(edit, "edit"), "edit"))
    assert edited == trial(expected_layers, expected_optimizer)
    assert base == trial(layers, optimizer)  # the source spec is left as it was


# name: (edit, the error's key path, its reason, its allowed values)
REFUSED: dict[str, tuple[dict[str, Any], str, str, list[str] | None]] = {
    "insert not a table": (
        {"insert": 3},
        "e.insert",
        "an insert is a table { at = POSITION, layers = [ ...layer tables... ] }",
        None,
    ),
    "insert position": (
        {"insert": [{"at": 0, "layers": [FLAT]}, {"at": "end", "layers": [FLAT]}]},
        "e.insert[1].at",
        "a layer position (0: right after the input; negative counts from the end), got 'end'",
        None,
    ),
    "insert no layers": (
        {"insert": {"at": 0, "layers": []}},
        "e.insert.layers",
        "a non-empty list of layer tables",
        None,
    ),
    "hidden": (
        {"hidden": [64, 0]},
        "e.hidden",
        "a list of positive integers, the hidden Dense layers' widths ([] for none), got [64, 0]",
        None,
    ),
    "activation": ({"activation": 1}, "e.activation", "an activation name or table, got 1", None),
    "widths": (
        {"widths": []},
        "e.widths",
        "a list of positive integers, one per hidden Dense or Conv2D layer, got []",
        None,
    ),
    "scale_widths": ({"scale_widths": True}, "e.scale_widths", "a positive factor, got True", None),
    "dropout": ({"dropout": 1}, "e.dropout", "a dropout rate in [0, 1), got 1", None),
    "batch_norm": (
        {"batch_norm": "yes"},
        "e.batch_norm",
        "true (after each hidden layer), \"before_activation\" or false, got 'yes'",
        ["after", "before_activation", "false", "true"],
    ),
    "scale_lr": ({"scale_lr": float("inf")}, "e.scale_lr", "a positive factor, got inf", None),
}


def test_every_edit_kind_has_a_refused_value() -> None:
    assert {key for edit, _, _, _ in REFUSED.values() for key in edit} == set(edits.EDITS)


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_edit_value_is_refused_with_its_key_path(case: str) -> None:
    edit, path, reason, allowed = REFUSED[case]
    with pytest.raises(SpecError) as info:
        edits.check(edit, "e")
    assert (info.value.path, info.value.reason, info.value.allowed) == (path, reason, allowed)


def test_an_unknown_edit_lists_the_edits_and_the_nearest() -> None:
    with pytest.raises(SpecError) as info:
        edits.check({"activation": "tanh", "scale_lrr": 2}, "stage[1].edit")
    assert str(info.value) == (
        "study: stage[1].edit.scale_lrr: unknown edit 'scale_lrr'\n"
        "  allowed: activation, batch_norm, dropout, hidden, insert, scale_lr, scale_widths, widths\n"
        "  did you mean 'scale_lr'?"
    )
    with pytest.raises(SpecError, match=r"an edit is a table"):
        edits.check(["activation"], "e")


# name: (base layers, edit, the error's key path, its reason)
MISFITS: dict[str, tuple[list[dict[str, Any]], dict[str, Any], str, str]] = {
    "insert outside": (
        MLP,
        {"insert": {"at": -5, "layers": [FLAT]}},
        "e.insert.at",
        "position -5 is outside the model's 4 layers",
    ),
    "widths count": (
        MLP,
        {"widths": [4]},
        "e.widths",
        "the model has 2 hidden Dense/Conv2D layers, the edit gives 1 widths",
    ),
    "no Dropout": (MLP, {"dropout": 0.1}, "e.dropout", "the model has no Dropout layer to set"),
    "no hidden layer": (BARE, {"activation": "relu"}, "e", "the model has no hidden Dense or Conv2D layer to edit"),
    # Asking for any edit of the hidden layers (batch_norm = false too) on a model without them is
    # refused before the other edits apply.
    "no hidden layer before no Dropout": (
        BARE,
        {"dropout": 0.1, "batch_norm": False},
        "e",
        "the model has no hidden Dense or Conv2D layer to edit",
    ),
    "hidden after rebuilding none": (
        MLP,
        {"hidden": [], "scale_widths": 2},
        "e",
        "the model has no hidden Dense or Conv2D layer to edit",
    ),
}


@pytest.mark.parametrize("case", MISFITS)
def test_an_edit_that_does_not_fit_the_model_names_its_key_path(case: str) -> None:
    layers, edit, path, reason = MISFITS[case]
    with pytest.raises(SpecError) as info:
        edits.apply(trial(layers), edit, "e")
    assert (info.value.path, info.value.reason) == (path, reason)


def test_scale_lr_needs_a_learning_rate() -> None:
    with pytest.raises(SpecError) as info:
        edits.apply({"model": {"layers": [dict(layer) for layer in MLP]}, "optimizer": "sgd"}, {"scale_lr": 2}, "e")
    assert (info.value.path, info.value.reason) == ("e.scale_lr", "scale_lr needs the optimizer's learning_rate")
