"""From a study's ``[data]`` table to model-ready arrays: load, split, scale, record.

Images become float32 in [0, 1] laid out N, C, H, W (Keras' ``x / 255``); tabular features
are standardized with the training part's mean and std only, so nothing about validation or
test examples leaks into training. Labels are int64 classes or float32 regression targets.
``Prepared.split`` records what was done, JSON-able, for the store to keep with each trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainlab.data import params, splits
from trainlab.data.datasets import DataInfo, Raw
from trainlab.data.loader import load_data


@dataclass(frozen=True, eq=False)
class Prepared:
    """Model-ready arrays of one data set, split into train / validation / test."""

    info: DataInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: dict[str, Any]


@dataclass(frozen=True)
class _Request:
    name: str
    path: str | None
    split: splits.SplitSpec
    train_limit: int | None
    test_limit: int | None
    test_fraction: float
    val_limit: int | None = None


def prepare(data: Mapping[str, Any]) -> Prepared:
    """Load the data set ``data`` names, split it as ``data["split"]`` says, and scale it.

    ``data`` is the study's resolved ``[data]`` table, e.g.
    ``{"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}}``;
    optional ``path`` (for ``name = "npz"``), ``test_fraction`` (a fraction in (0, 1), default
    0.2; used only by data sets without an official test split, ignored otherwise),
    ``train_limit``, ``val_limit`` and ``test_limit`` (keep the first N, after splitting; for
    smoke runs). The keys are those of :mod:`trainlab.data.params`, checked as a study's are.
    Raises SpecError for an invalid table, DataError when the data cannot be found or verified.
    """
    table = params.check_resolved(data)
    request = _parse(table)
    raw = load_data(table)
    record: dict[str, Any] = {"dataset": request.name, **request.split.as_dict()}

    if raw.has_test:
        pool = np.arange(len(raw.x_train), dtype=np.int64)
        x_pool, y_pool = raw.x_train, raw.y_train
        x_test, y_test = raw.x_test, raw.y_test
        record["test"] = {"kind": "official"}
    else:
        fraction = request.test_fraction
        pool, test_idx = splits.carve_test(len(raw.x_train), fraction, request.split.seed)
        x_pool, y_pool = raw.x_train[pool], raw.y_train[pool]
        x_test, y_test = raw.x_train[test_idx], raw.y_train[test_idx]
        record["test"] = {
            "kind": "random",
            "fraction": fraction,
            "index_sha256": splits.index_sha256(test_idx),
        }

    train_idx, val_idx = splits.split_indices(request.split, len(x_pool), y_pool)
    record["val_index_sha256"] = splits.index_sha256(pool[val_idx])
    if request.train_limit is not None:
        train_idx = train_idx[: request.train_limit]
    if request.val_limit is not None:
        val_idx = val_idx[: request.val_limit]
    if request.test_limit is not None:
        x_test, y_test = x_test[: request.test_limit], y_test[: request.test_limit]

    x_train = _inputs(raw, x_pool, train_idx)
    x_val = _inputs(raw, x_pool, val_idx)
    x_te = _inputs(raw, x_test, None)
    if raw.layout == "NF":
        mean = x_train.mean(axis=0, dtype=np.float64)
        std = x_train.std(axis=0, dtype=np.float64)
        std[std == 0] = 1.0
        for x in (x_train, x_val, x_te):
            x -= mean.astype(np.float32)
            x /= std.astype(np.float32)
        record["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}

    record.update(
        sizes={"train": len(train_idx), "validation": len(val_idx), "test": len(x_te)},
        train_limit=request.train_limit,
        test_limit=request.test_limit,
        **({"val_limit": request.val_limit} if request.val_limit is not None else {}),
        data_sha256=raw.sha256,
        source=raw.source,
    )
    if request.name in params.USER_NAMES:
        record["path"] = raw.origin
    return Prepared(
        info=raw.info,
        x_train=x_train,
        y_train=_targets(raw, y_pool[train_idx]),
        x_val=x_val,
        y_val=_targets(raw, y_pool[val_idx]),
        x_test=x_te,
        y_test=_targets(raw, y_test),
        split=record,
    )


def _inputs(raw: Raw, x: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    """Select rows, lay them out N, C, H, W, and convert to float32 (pixels scaled to [0, 1])."""
    chosen = x if index is None else x[index]
    if raw.layout == "NHW":
        chosen = chosen[:, None, :, :]
    elif raw.layout == "NHWC":
        chosen = chosen.transpose(0, 3, 1, 2)
    out = np.array(chosen, dtype=np.float32, order="C", copy=True)
    if x.dtype == np.uint8:
        out /= 255.0
    return out


def _targets(raw: Raw, y: np.ndarray) -> np.ndarray:
    dtype = np.int64 if raw.info.task == "classification" else np.float32
    return np.array(y, dtype=dtype, copy=True)


def _parse(table: Mapping[str, Any]) -> _Request:
    """The request a resolved ``[data]`` table makes, once checked against the one table of data
    keys (:mod:`trainlab.data.params`) the study parser resolves it with."""
    return _Request(
        table["name"],
        table["path"],
        splits.as_split_spec(table["split"]),
        table["train_limit"],
        table["test_limit"],
        table["test_fraction"],
        table["val_limit"],
    )
