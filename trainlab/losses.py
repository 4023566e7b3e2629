"""Losses by Keras name, and the metrics each task records per epoch.

Classification trains on logits: a final ``softmax`` is applied only for prediction, and the
loss is ``cross_entropy`` on the pre-softmax outputs (the numerically stable form of Keras'
``sparse_categorical_crossentropy`` on probabilities).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.nn import functional as F

from trainlab.registry import Entry, Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.reshape(y.shape), y)


def _mae(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(out.reshape(y.shape), y)


def _huber(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(out.reshape(y.shape), y, delta=1.0)


LOSSES = Registry(
    "loss",
    {
        "sparse_categorical_crossentropy": Entry(build=lambda: F.cross_entropy),
        "mean_squared_error": Entry(build=lambda: _mse, aliases=("mse",)),
        "mean_absolute_error": Entry(build=lambda: _mae, aliases=("mae",)),
        "huber": Entry(build=lambda: _huber),
    },
)


def loss_function(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The loss ``name``, with Keras' ``label_smoothing`` for the cross-entropy.

    Keras' SparseCategoricalCrossentropy has no ``label_smoothing``; its CategoricalCrossentropy
    smooths one-hot targets as ``y (1 - s) + s / classes``. Applied to the one-hot form of the
    integer labels, that is ``(1 - s) CE(y) + s / classes * sum_c -log p_c``, which
    ``F.cross_entropy(label_smoothing=s)`` computes.
    """
    if not label_smoothing:
        return LOSSES.build({"name": name})
    if name not in CLASSIFICATION_LOSSES:
        raise ValueError(f"label smoothing applies to the cross-entropy, not to {name}")
    return functools.partial(F.cross_entropy, label_smoothing=label_smoothing)


CLASSIFICATION_LOSSES = ("sparse_categorical_crossentropy",)
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber")
DEFAULT_LOSS = {"classification": "sparse_categorical_crossentropy", "regression": "mean_squared_error"}

METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "mse", "mae")}
"""Per-epoch metrics, Keras names; validation ones carry a ``val_`` prefix."""

HIGHER_IS_BETTER = {"accuracy"}


def mode_for(monitor: str) -> str:
    """Keras' ``mode="auto"``: ``max`` for accuracy, ``min`` for losses and errors."""
    return "max" if monitor.removeprefix("val_") in HIGHER_IS_BETTER else "min"
