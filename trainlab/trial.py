"""The typed trial spec: what one trial trains, parsed once from its resolved JSON.

A study file resolves (:mod:`trainlab.spec`) to one JSON object per trial with every default
explicit, and the store keeps that text. Everything below the study parser — the planner,
executors, engine, report and export — takes a :class:`TrialSpec` made from it with
:meth:`TrialSpec.from_json`, never the dict, so that each concept has one typed place.

A trial's identity is :func:`trial_hash` of its resolved spec and seed. So that a store keeps
resuming across versions, a setting added later whose default keeps the old behaviour is left
out of the identity while it has that default: it is a row of :data:`NEUTRAL_DEFAULTS`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

FORMAT_VERSION = 1
"""Part of every trial hash: bump it when a change alters what a resolved spec trains."""

NEUTRAL_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("data", "val_limit"): None,
    ("train", "label_smoothing"): 0.0,
    ("train", "precision"): "float32",
}
"""Key paths of settings added after trials were first stored, and the default that trains as
before. A spec holding the default is hashed as if the key were absent, so adding a row here
(with its setting) changes no stored trial's identity. Keys absent from a stored spec read as
their default."""


PRECISIONS = ("float32", "bfloat16", "float16")
"""What ``train.precision`` accepts: float32, or mixed precision in bfloat16 or float16."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


LOCATIONS: tuple[tuple[str, ...], ...] = (("model", "root"), ("data", "root"))
"""Key paths that say where a user's factory is imported from, not what it is: left out of every
trial's identity (the factory's reference, params and source SHA-256 are in it), so that moving
a project's folder keeps its trials."""


def identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved spec as it is hashed: without the settings that hold their neutral default,
    nor the :data:`LOCATIONS` of factories."""
    out = json.loads(canonical_json(spec))
    for path in LOCATIONS:
        node = out.get(path[0]) if isinstance(out, dict) else None
        if isinstance(node, dict):
            node.pop(path[1], None)
    for path, default in NEUTRAL_DEFAULTS.items():
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    return out


def trial_hash(spec: Mapping[str, Any], seed: int) -> str:
    """The stable identity of a trial: its resolved spec (less neutral defaults), its seed and
    the format version."""
    text = canonical_json({"v": FORMAT_VERSION, "spec": identity(spec), "seed": seed})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


USER_DATA_KEYS = ("target", "features", "task", "factory", "params", "root", "source_sha256")
"""The ``[data]`` keys of the user's own tables and factories (see :mod:`trainlab.data.params`),
stated in a spec only for the data kinds that take them."""


@dataclass(frozen=True)
class DataSpec:
    """Which data set, how it is limited and split. ``path``: the user's file or folder (an
    ``npz``, a table, an image folder); ``test_fraction``: the test share of a data set without
    its own test split (else None); ``own``: the keys of a table (``target``, ``features``,
    ``task``) or a factory (``factory``, ``params``, ``root``, ``source_sha256``)."""

    name: str
    path: str | None
    split: Mapping[str, Any]
    train_limit: int | None
    test_limit: int | None
    val_limit: int | None = None
    test_fraction: float | None = None
    own: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "split": dict(self.split),
            "train_limit": self.train_limit,
            "test_limit": self.test_limit,
            **json.loads(canonical_json(self.own)),
        }
        if self.val_limit is not None:
            out["val_limit"] = self.val_limit
        if self.test_fraction is not None:
            out["test_fraction"] = self.test_fraction
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DataSpec:
        return cls(
            value["name"],
            value.get("path"),
            dict(value["split"]),
            value.get("train_limit"),
            value.get("test_limit"),
            value.get("val_limit"),
            value.get("test_fraction"),
            {k: value[k] for k in USER_DATA_KEYS if k in value},
        )


@dataclass(frozen=True)
class FactorySpec:
    """A user's module (:mod:`trainlab.factory_models`): the factory's reference, its params,
    the SHA-256 of its source file, the outputs and task the data asks for, and the folder the
    reference is imported from (``root``, not part of the trial's identity)."""

    reference: str
    params: Mapping[str, Any]
    source_sha256: str
    outputs: int
    task: str
    root: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "factory": self.reference,
            "params": json.loads(canonical_json(self.params)),
            "source_sha256": self.source_sha256,
            "outputs": self.outputs,
            "task": self.task,
            "root": self.root,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FactorySpec:
        return cls(
            value["factory"],
            dict(value["params"]),
            value["source_sha256"],
            value["outputs"],
            value["task"],
            value.get("root"),
        )


CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
"""The layer types that convolve: a model with one trains on every thread and, alone, channels_last."""


@dataclass(frozen=True)
class ModelSpec:
    """The layers, each a complete config (``type`` and every parameter); or, for a user's own
    module, no layers and its ``factory``."""

    layers: tuple[Mapping[str, Any], ...]
    factory: FactorySpec | None = None

    def to_json(self) -> dict[str, Any]:
        if self.factory is not None:
            return self.factory.to_json()
        return {"layers": [json.loads(canonical_json(layer)) for layer in self.layers]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ModelSpec:
        if "factory" in value:
            return cls((), FactorySpec.from_json(value))
        return cls(tuple(value["layers"]))

    @property
    def convolutional(self) -> bool:
        """Whether a layer convolves (Conv2D, DepthwiseConv2D, SeparableConv2D); a factory model's
        module is not looked into: False, so it keeps the channels-first memory layout its forward
        may rely on."""
        return any(layer["type"] in CONVOLUTIONS for layer in self.layers)


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer's name and its complete options (every Keras parameter explicit)."""

    name: str
    options: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> OptimizerSpec:
        return cls(value["name"], {k: v for k, v in value.items() if k != "name"})

    @property
    def learning_rate(self) -> float | None:
        """The constant learning rate; None where a schedule sets it (see :attr:`schedule`)."""
        rate = self.options["learning_rate"]
        return None if isinstance(rate, Mapping) else float(rate)

    @property
    def schedule(self) -> Mapping[str, Any] | None:
        """The learning-rate schedule (its resolved table, see :mod:`trainlab.schedules`), if any."""
        rate = self.options["learning_rate"]
        return rate if isinstance(rate, Mapping) else None


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` table: how long, in what batches, with which loss, monitor and callbacks."""

    epochs: int
    batch_size: int | str
    loss: str
    shuffle: bool
    monitor: str
    keep: str
    early_stopping: dict[str, Any] | None
    reduce_lr_on_plateau: dict[str, Any] | None
    label_smoothing: float = 0.0
    """Keras' CategoricalCrossentropy ``label_smoothing`` for the cross-entropy loss (0: none)."""
    precision: str = "float32"
    """``float32``, or mixed precision: ``bfloat16`` or ``float16`` (see :mod:`trainlab.engine.precision`)."""

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.label_smoothing:
            del out["label_smoothing"]  # as specs stored before it existed read
        if self.precision == "float32":
            del out["precision"]  # a neutral default: stored and hashed as before it existed
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TrainSettings:
        return cls(**value)

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> TrainSettings:
        """The settings of a resolved spec given as a dict (its ``train`` table)."""
        return cls.from_json(spec["train"])

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"


@dataclass(frozen=True)
class TrialSpec:
    """One trial's resolved spec: data, model, optimizer, training settings and the task
    (``classification`` or ``regression``)."""

    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    train: TrainSettings
    task: str

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data.to_json(),
            "model": self.model.to_json(),
            "optimizer": self.optimizer.to_json(),
            "task": self.task,
            "train": self.train.to_json(),
        }

    def json(self) -> str:
        """The canonical JSON text, as the store keeps it."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: str | Mapping[str, Any]) -> TrialSpec:
        """From a resolved spec, as a dict or the store's JSON text."""
        raw = json.loads(value) if isinstance(value, str) else value
        return cls(
            DataSpec.from_json(raw["data"]),
            ModelSpec.from_json(raw["model"]),
            OptimizerSpec.from_json(raw["optimizer"]),
            TrainSettings.from_json(raw["train"]),
            raw["task"],
        )

    def hash(self, seed: int) -> str:
        return trial_hash(self.to_json(), seed)
