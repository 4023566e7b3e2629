"""What a resolved trial sets, beside Keras' defaults: the settings a reader needs to see what runs.

A resolved spec writes out every default, which hides the few settings that matter among dozens
that do not. :func:`settings` keeps the optimizer's name and learning rate, the epochs and batch
size, each layer's type and sizes, and every other setting that differs from the default the
registries give (Keras'), as key paths a study could write (``optimizer.momentum``,
``model.layers[1].activation``). ``trainlab check`` prints them for each variant, and the report's
JSON carries them, so that a variant's label can be checked against what it trains.

:func:`spread` and :func:`lines` show several possible specs of one variant at once: a later
stage's variant, resolved on each variant of the stage it may start from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trainlab import initializers, models, optim, schedules, spec
from trainlab.activations import ACTIVATIONS

DEFAULT = "default"
"""How :func:`lines` shows a setting that some of the specs leave at its default."""

_CALLBACKS = ("early_stopping", "reduce_lr_on_plateau")
_ALWAYS = {"optimizer": ("name", "learning_rate"), "train": ("epochs", "batch_size")}


def settings(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """Key path -> value for a resolved trial spec: the optimizer's name and learning rate, the
    epochs and batch size, each layer's type and required sizes, and every setting that differs
    from its default (a named part's parameters against that part's own defaults)."""
    out = {f"optimizer.{k}": resolved["optimizer"][k] for k in _ALWAYS["optimizer"]}
    name = resolved["optimizer"]["name"]
    out.update(_named("optimizer", resolved["optimizer"], name, lambda name: optim.resolve(name)))
    rate = resolved["optimizer"]["learning_rate"]
    if schedules.is_schedule(rate):
        del out["optimizer.learning_rate"]
        out.update(_schedule("optimizer.learning_rate", rate))
    out.update(_train(resolved["train"], resolved["task"]))
    out.update(_model(resolved["model"]))
    return out


def _model(model: Mapping[str, Any]) -> dict[str, Any]:
    """Each layer's type and settings; a factory model's reference and each of its params."""
    if "factory" in model:
        return {"model.factory": model["factory"], **_params("model.params", model["params"])}
    out: dict[str, Any] = {}
    for i, layer in enumerate(model["layers"]):
        out.update(_layer(f"model.layers[{i}]", layer))
    return out


def _params(at: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A factory's params as key paths, tables followed down (``model.params.block.width``)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            out.update(_params(f"{at}.{key}", value))
        else:
            out[f"{at}.{key}"] = value
    return out


def _schedule(at: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A learning-rate schedule as key paths: its name, its required parameters and those that
    differ from the schedule's defaults (``per`` where it is not ``step``)."""
    params = schedules.SCHEDULES[config["schedule"]].params
    out: dict[str, Any] = {f"{at}.schedule": config["schedule"]}
    for key, value in config.items():
        if key in params and (params[key].required or value != params[key].default):
            out[f"{at}.{key}"] = value
    if config.get("per", "step") != "step":
        out[f"{at}.per"] = config["per"]
    return out


def _train(train: Mapping[str, Any], task: str) -> dict[str, Any]:
    out = {f"train.{k}": train[k] for k in _ALWAYS["train"]}
    default = spec.resolve_train({"epochs": train["epochs"]}, task)
    for key, value in train.items():
        if key in _CALLBACKS and value is not None:
            # A callback's own defaults, with Keras' mode for the metric it watches.
            own = spec.resolve_train({"epochs": 1, key: {"monitor": value["monitor"]}}, task)[key]
            out[f"train.{key}.monitor"] = value["monitor"]
            out.update({f"train.{key}.{k}": v for k, v in value.items() if v != own.get(k)})
        elif key not in default or value != default[key]:
            out[f"train.{key}"] = value
    return out


def _layer(at: str, layer: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {f"{at}.type": layer["type"]}
    params = models.LAYERS.entries[layer["type"]].params
    for key, value in layer.items():
        if key == "type":
            continue
        if key not in params:  # a spec stored by another version of trainlab: shown as it is
            out[f"{at}.{key}"] = value
            continue
        default = params[key].default
        if key == "activation":
            out.update(_named(f"{at}.{key}", value, default, lambda name: ACTIVATIONS.resolve(name, "")))
        elif key.endswith("_initializer"):
            out.update(_named(f"{at}.{key}", value, default, lambda name: initializers.resolve(name, path="")))
        elif key == "kernel_regularizer" and value is not None:
            out.update({f"{at}.{key}.{k}": v for k, v in value.items() if v})
        elif params[key].required or value != default:
            out[f"{at}.{key}"] = value
    return out


def _named(
    at: str, value: Mapping[str, Any], default: str | None, resolve: Callable[[str], Mapping[str, Any]]
) -> dict[str, Any]:
    """A resolved named part: its name where it is not the default's (always, without a
    default), and each parameter that differs from that name's own default."""
    out: dict[str, Any] = {}
    own = resolve(value["name"])
    if default is None or own["name"] != resolve(default)["name"]:
        out[at] = value["name"]
    out.update({f"{at}.{k}": v for k, v in value.items() if k != "name" and v != own.get(k)})
    return out


def spread(many: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Key path -> the distinct values it takes over several :func:`settings`, in order of first
    appearance; :data:`DEFAULT` where some leave it at its default (or have no such layer)."""
    out: dict[str, list[Any]] = {}
    for one in many:
        for key, value in one.items():
            values = out.setdefault(key, [])
            if value not in values:
                values.append(value)
    for key, values in out.items():
        if any(key not in one for one in many):
            values.append(DEFAULT)
    return out


def lines(many: Sequence[Mapping[str, Any]]) -> list[str]:
    """The settings of one variant as text, a line each for its optimizer, training and model.

    Given several :func:`settings` (a later stage's variant on each base it may start from), a
    value that differs among them is written ``a|b``; a model that differs is not spelled out.
    """
    values = spread(many)
    out = []
    for group in ("optimizer", "train"):
        items = [(k[len(group) + 1 :], v) for k, v in values.items() if k.startswith(group + ".")]
        head = [_text(v) for k, v in items if group == "optimizer" and k == "name"]
        rest = [f"{k}={_text(v)}" for k, v in items if not (group == "optimizer" and k == "name")]
        out.append(f"{group}: " + ", ".join(head + rest))
    model = {k: v for k, v in values.items() if k.startswith("model.")}
    if any(len(v) > 1 for v in model.values()):
        out.append(f"model: depends on the base ({len(many)} possible)")
    else:
        out.append("model: " + "; ".join(_layers({k: v[0] for k, v in model.items()})))
    return out


def _layers(model: Mapping[str, Any]) -> list[str]:
    """``Dense units=128 activation=relu`` for each layer, in order; a factory model as
    ``factory mypkg.models:build width=64``."""
    if "model.factory" in model:
        params = [f"{k[len('model.params.') :]}={_text([v])}" for k, v in model.items() if k != "model.factory"]
        return [" ".join([f"factory {model['model.factory']}", *params])]
    layers: dict[str, list[str]] = {}
    for key, value in model.items():
        index, _, rest = key[len("model.layers[") :].partition("].")
        words = layers.setdefault(index, [])
        words.append(_text([value]) if rest == "type" else f"{rest}={_text([value])}")
    return [" ".join(words) for words in layers.values()]


def _text(values: Sequence[Any]) -> str:
    return "|".join(_value(v) for v in values)


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
