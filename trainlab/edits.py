"""Edits a later stage applies to the model chosen by an earlier one.

A staged study (report A) takes the best variant of one stage and changes it: sigmoid instead
of every hidden activation, a BatchNormalization layer after every hidden Dense or Conv2D, the
learning rate times five, convolutional layers inserted after the input, other widths. An edit
is a small table; :func:`apply` turns a resolved trial spec into the edited, unresolved tables,
which the caller resolves (and so validates) again.

``hidden`` layers are the Dense and Conv2D layers before the last Dense or Conv2D (the output).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from trainlab.errors import SpecError
from trainlab.registry import join

KEYS = ("insert", "hidden", "activation", "widths", "scale_widths", "dropout", "batch_norm", "scale_lr")
WEIGHT_LAYERS = ("Dense", "Conv2D")
BATCH_NORM = (True, False, "after", "before_activation")


def check(edit: Any, where: str) -> dict[str, Any]:
    """Validate an ``edit`` table's shape (what it does to a model is checked when applied)."""
    if not isinstance(edit, Mapping):
        raise SpecError(f"an edit is a table such as {{ activation = \"sigmoid\", batch_norm = true }}, got {edit!r}",
                        path=where)
    for key, value in edit.items():
        path = join(where, key)
        if key not in KEYS:
            raise SpecError(f"unknown edit {key!r}", path=path, allowed=KEYS, got=key)
        if key == "activation" and not isinstance(value, (str, Mapping)):
            raise SpecError(f"an activation name or table, got {value!r}", path=path)
        if key == "batch_norm" and value not in BATCH_NORM:
            raise SpecError(f"true (after each hidden layer), \"before_activation\" or false, got {value!r}",
                            path=path, allowed=("true", "false", "after", "before_activation"))
        if key in ("scale_lr", "scale_widths") and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
            raise SpecError(f"a positive factor, got {value!r}", path=path)
        if key in ("widths", "hidden") and (not isinstance(value, list) or not all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value) or (key == "widths" and not value)):
            what = "one per hidden Dense or Conv2D layer" if key == "widths" else "the hidden Dense layers' widths ([] for none)"
            raise SpecError(f"a list of positive integers, {what}, got {value!r}", path=path)
        if key == "dropout" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
            raise SpecError(f"a dropout rate in [0, 1), got {value!r}", path=path)
        if key == "insert":
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                _check_insert(item, join(path, i) if isinstance(value, list) else path)
    return dict(edit)


def _check_insert(item: Any, where: str) -> None:
    if not isinstance(item, Mapping) or set(item) != {"at", "layers"}:
        raise SpecError("an insert is a table { at = POSITION, layers = [ ...layer tables... ] }", path=where)
    if isinstance(item["at"], bool) or not isinstance(item["at"], int):
        raise SpecError(f"a layer position (0: right after the input; negative counts from the end), got {item['at']!r}",
                        path=join(where, "at"))
    if not isinstance(item["layers"], list) or not item["layers"] or not all(isinstance(x, Mapping) for x in item["layers"]):
        raise SpecError("a non-empty list of layer tables", path=join(where, "layers"))


def hidden(layers: list[Mapping[str, Any]]) -> list[int]:
    """Indices of the hidden Dense and Conv2D layers: all but the last weight layer."""
    weights = [i for i, layer in enumerate(layers) if layer.get("type") in WEIGHT_LAYERS]
    return weights[:-1]


def apply(spec: Mapping[str, Any], edit: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The trial tables of ``spec`` with ``edit`` applied, in the order of :data:`KEYS`.

    Inserting and rebuilding the hidden Dense layers come before the other edits, so that the
    new layers count as hidden ones (and get batch normalization when both are asked for).
    """
    out = {key: copy.deepcopy(value) for key, value in spec.items() if key != "task"}
    layers: list[dict[str, Any]] = out["model"]["layers"]
    if "insert" in edit:
        items = edit["insert"] if isinstance(edit["insert"], list) else [edit["insert"]]
        for item in sorted(items, key=lambda x: x["at"] if x["at"] >= 0 else len(layers) + x["at"], reverse=True):
            at = item["at"]
            if not -len(layers) <= at <= len(layers):
                raise SpecError(f"position {at} is outside the model's {len(layers)} layers", path=join(where, "insert.at"))
            at = at if at >= 0 else len(layers) + at
            layers[at:at] = [dict(layer) for layer in item["layers"]]
    if "hidden" in edit:
        layers[:] = _rebuild_dense(layers, edit["hidden"], join(where, "hidden"))
    inner = hidden(layers)
    if not inner and any(k in edit for k in ("activation", "batch_norm", "widths", "scale_widths")):
        raise SpecError("the model has no hidden Dense or Conv2D layer to edit", path=where)
    if "activation" in edit:
        last = max(i for i, layer in enumerate(layers) if layer.get("type") in WEIGHT_LAYERS)
        for i, layer in enumerate(layers):
            if i < last and (i in inner or layer.get("type") == "Activation"):
                layer["activation"] = copy.deepcopy(edit["activation"])
    if "widths" in edit:
        if len(edit["widths"]) != len(inner):
            raise SpecError(f"the model has {len(inner)} hidden Dense/Conv2D layers, the edit gives {len(edit['widths'])} widths",
                            path=join(where, "widths"))
        for i, width in zip(inner, edit["widths"]):
            layers[i][_width_key(layers[i])] = width
    if "scale_widths" in edit:
        for i in inner:
            key = _width_key(layers[i])
            layers[i][key] = max(1, round(layers[i][key] * edit["scale_widths"]))
    if "dropout" in edit:
        dropouts = [layer for layer in layers if layer.get("type") == "Dropout"]
        if not dropouts:
            raise SpecError("the model has no Dropout layer to set", path=join(where, "dropout"))
        for layer in dropouts:
            layer["rate"] = edit["dropout"]
    if edit.get("batch_norm"):
        for i in reversed(inner):
            added: list[dict[str, Any]] = [{"type": "BatchNormalization"}]
            if edit["batch_norm"] == "before_activation":
                added.append({"type": "Activation", "activation": layers[i].get("activation", "linear")})
                layers[i]["activation"] = "linear"
            layers[i + 1:i + 1] = added
    if "scale_lr" in edit:
        optimizer = out["optimizer"]
        if not isinstance(optimizer, Mapping) or "learning_rate" not in optimizer:
            raise SpecError("scale_lr needs the optimizer's learning_rate", path=join(where, "scale_lr"))
        optimizer["learning_rate"] = optimizer["learning_rate"] * edit["scale_lr"]
    return out


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
    template = layers[first:dense[1]] if len(dense) > 1 else [{"type": "Dense", "units": 1}]
    block: list[dict[str, Any]] = []
    for width in widths:
        copies = [copy.deepcopy(layer) for layer in template]
        copies[0]["units"] = width
        block += copies
    return layers[:first] + block + layers[output:]


def _width_key(layer: Mapping[str, Any]) -> str:
    return "units" if layer["type"] == "Dense" else "filters"
