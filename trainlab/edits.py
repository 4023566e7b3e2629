"""Edits a later stage applies to the model chosen by an earlier one.

A staged study (report A) takes the best variant of one stage and changes it: sigmoid instead
of every hidden activation, a BatchNormalization layer after every hidden Dense or Conv2D, the
learning rate times five, convolutional layers inserted after the input, other widths. An edit
is a small table; :func:`apply` turns a resolved trial spec into the edited, unresolved tables,
which the caller resolves (and so validates) again.

Each kind of edit is one row of :data:`EDITS`: how its value is checked when the study is read
and how it changes the trial tables, so that a new edit is one row (and one test).

``hidden`` layers are the Dense and Conv2D layers before the last Dense or Conv2D (the output).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainlab import models, schedules
from trainlab.errors import SpecError
from trainlab.registry import join

WEIGHT_LAYERS = models.WEIGHTED
"""The layer types with a kernel, whose width an edit may change."""
BATCH_NORM = (True, False, "after", "before_activation")
MODEL_FREE = ("scale_lr",)
"""The edits that leave the model alone, and so apply to a factory model too."""

Check = Callable[[Any, str], None]
"""Validates an edit's value at its key path; raises a SpecError saying what is allowed."""
Apply = Callable[[dict[str, Any], Any, str], None]
"""Changes the trial tables (a deep copy, changed in place) by an edit's value; its key path names errors."""


@dataclass(frozen=True)
class EditDef:
    """One kind of edit: how its value is checked and how it changes the trial tables.

    ``rebuilds``: the edit adds or replaces layers, so it runs before the others and the layers it
    makes count as hidden ones (and get batch normalization when both are asked for).
    ``needs_hidden``: the edit changes the hidden layers, so a model without any is refused.
    """

    check: Check
    apply: Apply
    rebuilds: bool = False
    needs_hidden: bool = False


def check(edit: Any, where: str) -> dict[str, Any]:
    """Validate an ``edit`` table's shape (what it does to a model is checked when applied)."""
    if not isinstance(edit, Mapping):
        raise SpecError(
            f'an edit is a table such as {{ activation = "sigmoid", batch_norm = true }}, got {edit!r}', path=where
        )
    for key, value in edit.items():
        path = join(where, key)
        if key not in EDITS:
            raise SpecError(f"unknown edit {key!r}", path=path, allowed=KEYS, got=key)
        EDITS[key].check(value, path)
    return dict(edit)


def hidden(layers: list[Mapping[str, Any]]) -> list[int]:
    """Indices of the hidden Dense and Conv2D layers: all but the last weight layer."""
    weights = [i for i, layer in enumerate(layers) if layer.get("type") in WEIGHT_LAYERS]
    return weights[:-1]


def apply(spec: Mapping[str, Any], edit: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The trial tables of ``spec`` with ``edit`` applied, in the order of :data:`KEYS`.

    The edits that add or replace layers (inserting, rebuilding the hidden Dense layers) come
    before the others, so that the new layers count as hidden ones (and get batch normalization
    when both are asked for).
    """
    out = {key: copy.deepcopy(value) for key, value in spec.items() if key != "task"}
    asked = [(name, row) for name, row in EDITS.items() if name in edit]
    if "factory" in out["model"]:
        layered = [name for name in edit if name not in MODEL_FREE]
        if layered:
            raise SpecError(
                f"{layered[0]} edits layers; a factory model ({out['model']['factory']}) has none: vary its "
                'params instead ("model.params.NAME")',
                path=join(where, layered[0]),
                allowed=MODEL_FREE,
            )
    for name, row in asked:
        if row.rebuilds:
            row.apply(out, edit[name], join(where, name))
    if any(row.needs_hidden for _, row in asked) and not hidden(out["model"]["layers"]):
        raise SpecError("the model has no hidden Dense or Conv2D layer to edit", path=where)
    for name, row in asked:
        if not row.rebuilds:
            row.apply(out, edit[name], join(where, name))
    return out


# ---------------------------------------------------------------------------------------------
# Checks of an edit's value


def _check_activation(value: Any, path: str) -> None:
    if not isinstance(value, (str, Mapping)):
        raise SpecError(f"an activation name or table, got {value!r}", path=path)


def _check_batch_norm(value: Any, path: str) -> None:
    if value not in BATCH_NORM:
        raise SpecError(
            f'true (after each hidden layer), "before_activation" or false, got {value!r}',
            path=path,
            allowed=("true", "false", "after", "before_activation"),
        )


def _check_factor(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"a positive factor, got {value!r}", path=path)


def _is_widths(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value)


def _check_widths(value: Any, path: str) -> None:
    if not _is_widths(value) or not value:
        raise SpecError(f"a list of positive integers, one per hidden Dense or Conv2D layer, got {value!r}", path=path)


def _check_hidden(value: Any, path: str) -> None:
    if not _is_widths(value):
        raise SpecError(
            f"a list of positive integers, the hidden Dense layers' widths ([] for none), got {value!r}", path=path
        )


def _check_dropout(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"a dropout rate in [0, 1), got {value!r}", path=path)


def _check_inserts(value: Any, path: str) -> None:
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        _check_insert(item, join(path, i) if isinstance(value, list) else path)


def _check_insert(item: Any, where: str) -> None:
    if not isinstance(item, Mapping) or set(item) != {"at", "layers"}:
        raise SpecError("an insert is a table { at = POSITION, layers = [ ...layer tables... ] }", path=where)
    if isinstance(item["at"], bool) or not isinstance(item["at"], int):
        raise SpecError(
            f"a layer position (0: right after the input; negative counts from the end), got {item['at']!r}",
            path=join(where, "at"),
        )
    if (
        not isinstance(item["layers"], list)
        or not item["layers"]
        or not all(isinstance(x, Mapping) for x in item["layers"])
    ):
        raise SpecError("a non-empty list of layer tables", path=join(where, "layers"))


# ---------------------------------------------------------------------------------------------
# What each edit does to the trial tables


def _layers(tables: dict[str, Any]) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = tables["model"]["layers"]
    return layers


def _insert(tables: dict[str, Any], value: Any, path: str) -> None:
    """Insert each item's layers at its position, the last position first so that every
    position counts in the model as it was."""
    layers = _layers(tables)
    items = value if isinstance(value, list) else [value]
    for item in sorted(items, key=lambda x: x["at"] if x["at"] >= 0 else len(layers) + x["at"], reverse=True):
        at = item["at"]
        if not -len(layers) <= at <= len(layers):
            raise SpecError(f"position {at} is outside the model's {len(layers)} layers", path=join(path, "at"))
        at = at if at >= 0 else len(layers) + at
        layers[at:at] = [dict(layer) for layer in item["layers"]]


def _hidden(tables: dict[str, Any], value: Any, path: str) -> None:
    layers = _layers(tables)
    layers[:] = _rebuild_dense(layers, value, path)


def _activation(tables: dict[str, Any], value: Any, path: str) -> None:
    """Every hidden layer's activation and every Activation layer's before the output."""
    layers = _layers(tables)
    inner = hidden(layers)
    last = max(i for i, layer in enumerate(layers) if layer.get("type") in WEIGHT_LAYERS)
    for i, layer in enumerate(layers):
        if i < last and (i in inner or layer.get("type") == "Activation"):
            layer["activation"] = copy.deepcopy(value)


def _widths(tables: dict[str, Any], value: Any, path: str) -> None:
    layers = _layers(tables)
    inner = hidden(layers)
    if len(value) != len(inner):
        raise SpecError(
            f"the model has {len(inner)} hidden Dense/Conv2D layers, the edit gives {len(value)} widths", path=path
        )
    for i, width in zip(inner, value):
        layers[i][_width_key(layers[i])] = width


def _scale_widths(tables: dict[str, Any], value: Any, path: str) -> None:
    layers = _layers(tables)
    for i in hidden(layers):
        key = _width_key(layers[i])
        layers[i][key] = max(1, round(layers[i][key] * value))


def _dropout(tables: dict[str, Any], value: Any, path: str) -> None:
    dropouts = [layer for layer in _layers(tables) if layer.get("type") == "Dropout"]
    if not dropouts:
        raise SpecError("the model has no Dropout layer to set", path=path)
    for layer in dropouts:
        layer["rate"] = value


def _batch_norm(tables: dict[str, Any], value: Any, path: str) -> None:
    """A BatchNormalization layer after each hidden layer (false: none); ``"before_activation"``
    moves the layer's activation into an Activation layer after the normalization."""
    if not value:
        return
    layers = _layers(tables)
    for i in reversed(hidden(layers)):
        added: list[dict[str, Any]] = [{"type": "BatchNormalization"}]
        if value == "before_activation":
            added.append({"type": "Activation", "activation": layers[i].get("activation", "linear")})
            layers[i]["activation"] = "linear"
        layers[i + 1 : i + 1] = added


def _scale_lr(tables: dict[str, Any], value: Any, path: str) -> None:
    optimizer = tables["optimizer"]
    if not isinstance(optimizer, Mapping) or "learning_rate" not in optimizer:
        raise SpecError("scale_lr needs the optimizer's learning_rate", path=path)
    rate = optimizer["learning_rate"]
    if schedules.is_schedule(rate):
        optimizer["learning_rate"] = schedules.scale(rate, value)
    else:
        optimizer["learning_rate"] = rate * value


def _rebuild_dense(layers: list[dict[str, Any]], widths: list[int], where: str) -> list[dict[str, Any]]:
    """The model with its hidden Dense layers replaced by ``widths``: each new layer is a copy of
    the first hidden Dense layer together with the layers that follow it (a Dropout, say)."""
    dense = [i for i, layer in enumerate(layers) if layer.get("type") == "Dense"]
    if not dense:
        raise SpecError("the model has no Dense output layer", path=where)
    output = dense[-1]
    first = dense[0] if len(dense) > 1 else output
    if any(layer.get("type") in WEIGHT_LAYERS for layer in layers[first:output] if layer.get("type") != "Dense"):
        raise SpecError("hidden Dense layers must come after the convolutional part", path=where)
    template = layers[first : dense[1]] if len(dense) > 1 else [{"type": "Dense", "units": 1}]
    block: list[dict[str, Any]] = []
    for width in widths:
        copies = [copy.deepcopy(layer) for layer in template]
        copies[0]["units"] = width
        block += copies
    return layers[:first] + block + layers[output:]


def _width_key(layer: Mapping[str, Any]) -> str:
    """The parameter that sets a weight layer's width (``units``, ``filters``)."""
    width = models.LAYER_DEFS[layer["type"]].width
    assert width is not None, f"{layer['type']} has no width"
    return width


EDITS: dict[str, EditDef] = {
    "insert": EditDef(_check_inserts, _insert, rebuilds=True),
    "hidden": EditDef(_check_hidden, _hidden, rebuilds=True),
    "activation": EditDef(_check_activation, _activation, needs_hidden=True),
    "widths": EditDef(_check_widths, _widths, needs_hidden=True),
    "scale_widths": EditDef(_check_factor, _scale_widths, needs_hidden=True),
    "dropout": EditDef(_check_dropout, _dropout),
    "batch_norm": EditDef(_check_batch_norm, _batch_norm, needs_hidden=True),
    "scale_lr": EditDef(_check_factor, _scale_lr),
}
"""Every kind of edit by its key in an ``edit`` table, in the order they apply."""
KEYS = tuple(EDITS)
