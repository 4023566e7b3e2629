"""EarlyStopping and ReduceLROnPlateau with Keras 3 semantics, as small resumable state machines.

Each keeps only JSON-able state (:meth:`state` / :meth:`load`), so that a run resumed from a
checkpoint makes the same decisions an uninterrupted run would have made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


def _worst(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    monitor: str
    mode: str
    patience: int
    min_delta: float
    baseline: float | None
    restore_best_weights: bool
    start_from_epoch: int
    best: float = math.nan
    best_epoch: int = -1
    wait: int = 0
    stopped_epoch: int = -1

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> EarlyStopping:
        es = cls(**cfg)
        es.best = _worst(es.mode)
        return es

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def update(self, epoch: int, logs: Mapping[str, float]) -> tuple[bool, bool]:
        """Feed one epoch's logs; returns (improved, stop)."""
        value = logs.get(self.monitor)
        if value is None or math.isnan(value) or epoch < self.start_from_epoch:
            return False, False
        self.wait += 1
        if self._improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.baseline is None or self._improves(value, self.baseline):
                self.wait = 0
            return True, False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return False, True
        return False, False

    def state(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, state: Mapping[str, Any]) -> None:
        for key in ("best", "best_epoch", "wait", "stopped_epoch"):
            setattr(self, key, state[key])


@dataclass
class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    monitor: str
    mode: str
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_lr: float
    best: float = math.nan
    wait: int = 0
    cooldown_counter: int = 0

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> ReduceLROnPlateau:
        cb = cls(**cfg)
        cb.best = _worst(cb.mode)
        return cb

    def update(self, logs: Mapping[str, float], lr: float) -> float:
        """Feed one epoch's logs and the current learning rate; returns the rate to use next."""
        value = logs.get(self.monitor)
        if value is None or math.isnan(value):
            return lr
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        # Keras 3's rule, as EarlyStopping's: min_delta moves the value, not the best (the two
        # round differently: 0.3 after 0.4 is no improvement by 0.1, but 0.3 < 0.4 - 0.1).
        better = value + self.min_delta < self.best if self.mode == "min" else value - self.min_delta > self.best
        if better:
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                self.cooldown_counter, self.wait = self.cooldown, 0
                return max(lr * self.factor, self.min_lr)
        return lr

    def state(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, state: Mapping[str, Any]) -> None:
        for key in ("best", "wait", "cooldown_counter"):
            setattr(self, key, state[key])
