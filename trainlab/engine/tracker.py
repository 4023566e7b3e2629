"""The host-side bookkeeping of one trial, shared by single-model and population training.

A :class:`Tracker` sees each finished epoch's metrics and decides what Keras' callbacks would:
whether the epoch is the best so far, whether early stopping ends the trial, what learning rate
ReduceLROnPlateau sets, and whether the loss diverged. Its state is JSON plus a few weight
snapshots, so a trial resumes with the same decisions wherever it continues, alone or in a
population.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.engine.callbacks import EarlyStopping, ReduceLROnPlateau
from trainlab.losses import mode_for
from trainlab.trial import TrainSettings

Weights = dict[str, torch.Tensor]


@dataclass
class FitResult:
    """What training produced: how it ended, the chosen epoch and the chosen weights."""

    status: str
    """``done``, ``diverged`` or ``pruned``."""
    epochs: int
    best_epoch: int
    best: dict[str, float]
    weights: Weights
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)


class Tracker:
    """Callbacks, best epoch, divergence and history of one trial."""

    def __init__(self, settings: TrainSettings, initial: Weights) -> None:
        self.settings = settings
        self.early = EarlyStopping.of(settings.early_stopping) if settings.early_stopping else None
        self.plateau = ReduceLROnPlateau.of(settings.reduce_lr_on_plateau) if settings.reduce_lr_on_plateau else None
        self.better = mode_for(settings.monitor)
        self.best_value = math.inf if self.better == "min" else -math.inf
        self.best_epoch = -1
        self.best_logs: dict[str, float] = {}
        self.best_weights = initial
        self.es_weights: Weights | None = None
        self.history: list[dict[str, float]] = []
        self.status = "done"
        self.stop_reason = f"ran all {settings.epochs} epochs"
        self.stopped = False

    @property
    def next_epoch(self) -> int:
        """The epoch to run next (0-based)."""
        return len(self.history)

    @property
    def finished(self) -> bool:
        """Whether the trial has nothing left to train."""
        return self.stopped or self.next_epoch >= self.settings.epochs

    def end_epoch(self, logs: Mapping[str, float], weights: Callable[[], Weights], lr: float) -> float:
        """Record one finished epoch; returns the learning rate for the next one.

        ``weights`` is called (and its snapshot kept) only when the epoch is the best so far.
        """
        epoch = self.next_epoch
        self.history.append(dict(logs))
        diverged = next((k for k in ("loss", "val_loss") if not math.isfinite(logs[k])), None)
        if diverged is not None:
            self.status, self.stopped = "diverged", True
            self.stop_reason = f"{diverged} became {logs[diverged]} at epoch {epoch + 1}"
            return lr
        value = logs[self.settings.monitor]
        if (value < self.best_value) if self.better == "min" else (value > self.best_value):
            self.best_value, self.best_epoch, self.best_logs = value, epoch, dict(logs)
            self.best_weights = weights()
        if self.early is not None:
            improved, stop = self.early.update(epoch, logs)
            if improved and self.early.restore_best_weights:
                self.es_weights = self.best_weights if self.best_epoch == epoch else weights()
            if stop:
                self.stopped = True
                self.stop_reason = (
                    f"early stopping: {self.early.monitor} did not improve for {self.early.patience} epochs"
                )
        if self.plateau is not None:
            lr = self.plateau.update(logs, lr)
        if self.next_epoch >= self.settings.epochs:
            self.stopped = True
        return lr

    def prune(self) -> None:
        """End the trial after its last recorded epoch: a search judged it hopeless."""
        if not self.stopped:
            self.status, self.stopped = "pruned", True
            self.stop_reason = (
                f"pruned after epoch {self.next_epoch}: "
                f"{self.settings.monitor} was behind the other trials of the search"
            )

    def snapshots(self) -> dict[str, Weights]:
        """The weight snapshots a checkpoint must carry besides the current model."""
        groups = {"best": self.best_weights}
        if self.es_weights is not None:
            groups["es_best"] = self.es_weights
        return groups

    def meta(self) -> dict[str, Any]:
        """The JSON part of a checkpoint."""
        return {
            "epoch": self.next_epoch - 1,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "best_logs": self.best_logs,
            "history": self.history,
            "stopped": self.stopped,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "early_stopping": self.early.state() if self.early else None,
            "reduce_lr_on_plateau": self.plateau.state() if self.plateau else None,
        }

    def restore(self, meta: Mapping[str, Any], groups: Mapping[str, Weights]) -> None:
        """Continue from a checkpoint's ``meta`` and snapshots."""
        self.best_epoch, self.best_value, self.best_logs = meta["best_epoch"], meta["best_value"], meta["best_logs"]
        self.history = list(meta["history"])
        self.stopped, self.status, self.stop_reason = meta["stopped"], meta["status"], meta["stop_reason"]
        self.best_weights = dict(groups["best"])
        self.es_weights = dict(groups["es_best"]) if "es_best" in groups else None
        if self.early:
            self.early.load(meta["early_stopping"])
        if self.plateau:
            self.plateau.load(meta["reduce_lr_on_plateau"])

    def result(self, final: Weights) -> FitResult:
        """The chosen weights: the best epoch's by ``train.monitor`` (``keep = "best"``), or the
        last ones, which early stopping's ``restore_best_weights`` replaces by its own best, as in Keras."""
        best_epoch, best_logs = self.best_epoch, self.best_logs
        if self.settings.keep == "best" and best_epoch >= 0:
            weights = self.best_weights
        elif self.es_weights is not None and self.early is not None:
            weights, best_epoch = self.es_weights, self.early.best_epoch
            best_logs = self.history[best_epoch]
        else:
            weights, best_epoch = final, len(self.history) - 1
            best_logs = self.history[-1] if self.history else {}
        return FitResult(
            self.status, len(self.history), best_epoch, dict(best_logs), weights, self.stop_reason, self.history
        )
