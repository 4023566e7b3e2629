"""One trial's tables resolved: every default explicit, every name and value checked.

:func:`resolve_trial` turns a variant's merged ``[data]``, ``[model]``, ``[optimizer]`` and
``[train]`` into the spec a trial is identified by; ``[data]`` through the one table of data
keys (:mod:`trainlab.data.params`) that :func:`trainlab.data.prepare` checks too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from trainlab import models, optim, schedules
from trainlab.data.datasets import DataInfo, definitions
from trainlab.data.params import USER_NAMES, check_source, resolve_data
from trainlab.errors import DataError, SpecError
from trainlab.losses import CLASSIFICATION_LOSSES, DEFAULT_LOSS, LOSSES, METRICS, mode_for
from trainlab.registry import Param, check_params, check_value, non_negative, one_of, param
from trainlab.spec.sections import as_table
from trainlab.trial import PRECISIONS

_EARLY_STOPPING = {
    "monitor": param("val_loss", str),
    "mode": param("auto", str, check=one_of("auto", "min", "max")),
    "patience": param(0, int, check=non_negative),
    "min_delta": param(0.0, float, check=non_negative),
    "baseline": Param(None, (float, type(None))),
    "restore_best_weights": param(False, bool),
    "start_from_epoch": param(0, int, check=non_negative),
}
_REDUCE_LR = {
    "monitor": param("val_loss", str),
    "mode": param("auto", str, check=one_of("auto", "min", "max")),
    "factor": param(0.1, float, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    "patience": param(10, int, check=non_negative),
    "min_delta": param(1e-4, float, check=non_negative),
    "cooldown": param(0, int, check=non_negative),
    "min_lr": param(0.0, float, check=non_negative),
}
_CALLBACKS = {"early_stopping": _EARLY_STOPPING, "reduce_lr_on_plateau": _REDUCE_LR}
MAX_EPOCHS = 100_000


def _batch_size(value: Any) -> str | None:
    if value == "full":
        return None
    if isinstance(value, int) and value >= 1:
        return None
    return 'must be a positive integer or "full" (the whole training split in one step)'


_TRAIN = {
    "epochs": Param(
        None, (int,), lambda v: None if 1 <= v <= MAX_EPOCHS else f"must be in 1..{MAX_EPOCHS}", required=True
    ),
    "batch_size": param(32, int, str, check=_batch_size),
    "loss": Param(None, (str, type(None))),
    "shuffle": param(True, bool),
    "monitor": Param(None, (str, type(None))),
    "keep": param("best", str, check=one_of("best", "last")),
    "early_stopping": Param(None, (dict, type(None))),
    "reduce_lr_on_plateau": Param(None, (dict, type(None))),
    "label_smoothing": param(0.0, float, check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
    "precision": param("float32", str, check=one_of(*PRECISIONS)),
}


def resolve_trial(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fully resolved spec of one trial: data, model, optimizer and training settings."""
    data = resolve_data(raw["data"])
    info = dataset_info(data)
    model = models.resolve(
        as_table(raw["model"], "model"), info.input_shape, task=info.task, num_classes=info.num_classes
    )
    optimizer = optim.resolve(raw["optimizer"])
    train = resolve_train(raw["train"], info.task)
    models.check_output(model, info.input_shape, info.task, train["loss"], info.num_classes)
    _check_schedule_alone(optimizer, train)
    return {"task": info.task, "data": data, "model": model, "optimizer": optimizer, "train": train}


def _check_schedule_alone(optimizer: Mapping[str, Any], train: Mapping[str, Any]) -> None:
    """Refuse ReduceLROnPlateau over a learning-rate schedule, as Keras does (the callback cannot
    set a learning rate that is a schedule): one of them must go."""
    if schedules.is_schedule(optimizer["learning_rate"]) and train["reduce_lr_on_plateau"] is not None:
        raise SpecError(
            "ReduceLROnPlateau cannot change a learning rate that follows a schedule "
            f"(optimizer.learning_rate is {optimizer['learning_rate']['schedule']}; Keras refuses to set a "
            "schedule's rate too): remove train.reduce_lr_on_plateau or give a constant learning rate",
            path="train.reduce_lr_on_plateau",
        )


def resolve_train(table: Any, task: str) -> dict[str, Any]:
    """A complete ``[train]`` table for a ``task`` ("classification" or "regression"): every
    default explicit, the loss and monitored metrics checked against the task. Given only
    ``epochs`` (and a callback's ``monitor``), it gives the defaults a setting is compared with."""
    train = check_params(as_table(table, "train"), _TRAIN, "train")
    train["loss"] = _loss(train["loss"], task)
    if train["label_smoothing"] and train["loss"] not in CLASSIFICATION_LOSSES:
        raise SpecError(
            f"label smoothing applies to the cross-entropy of a classification, not to {train['loss']}",
            path="train.label_smoothing",
        )
    if not train["label_smoothing"]:
        del train["label_smoothing"]  # the default, left out as specs stored before it existed
    metrics = monitorable(task)
    if train["monitor"] is None:
        train["monitor"] = "val_accuracy" if task == "classification" else "val_loss"
    check_value(train["monitor"], param("", str, check=one_of(*metrics)), "train.monitor")
    for key, schema in _CALLBACKS.items():
        if train[key] is not None:
            train[key] = _callback(train[key], schema, f"train.{key}", metrics)
    return train


def _loss(loss: str | None, task: str) -> str:
    """The loss by its canonical name (the task's default if none), refused if it does not fit the task."""
    name = LOSSES.canonical(DEFAULT_LOSS[task] if loss is None else loss, "train.loss")
    if (name in CLASSIFICATION_LOSSES) != (task == "classification"):
        allowed = [n for n in LOSSES.names() if (n in CLASSIFICATION_LOSSES) == (task == "classification")]
        raise SpecError(f"{name} does not fit a {task} data set", path="train.loss", allowed=allowed)
    return name


def _callback(table: Any, schema: Mapping[str, Param], where: str, metrics: list[str]) -> dict[str, Any]:
    """A callback table complete: its monitored metric checked, its ``auto`` mode made explicit."""
    cb = check_params(table, schema, where)
    if cb["monitor"] not in metrics:
        raise SpecError(
            f"cannot monitor {cb['monitor']!r}", path=f"{where}.monitor", allowed=metrics, got=cb["monitor"]
        )
    if cb["mode"] == "auto":
        cb["mode"] = mode_for(cb["monitor"])
    return cb


def dataset_info(data: Mapping[str, Any]) -> DataInfo:
    """What the model needs to know of the named data set (a user's ``npz`` file is opened)."""
    name = data["name"]
    check_source(name, data.get("path"))
    if name in USER_NAMES:
        from trainlab.data.loader import load_data

        try:
            return load_data(data).info
        except DataError as exc:
            raise SpecError(str(exc), path="data.factory" if name == "factory" else "data.path") from None
    return definitions()[name].info


def monitorable(task: str) -> list[str]:
    """The metric names a callback or ``train.monitor`` can watch, Keras-style."""
    names = METRICS[task]
    return [*names, *(f"val_{n}" for n in names)]


def fold_specs(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A k-fold variant's specs, one per validation fold; any other spec alone."""
    split = spec["data"]["split"]
    if split["kind"] != "kfold" or split.get("fold") is not None:
        return [dict(spec)]
    out = []
    for fold in range(split["folds"]):
        one = copy.deepcopy(dict(spec))
        one["data"]["split"]["fold"] = fold
        out.append(one)
    return out
