"""The training loop for one model: in-memory tensors sliced per batch, Keras' epoch semantics.

The engine knows nothing about files or the store: it reports each finished epoch through
``on_epoch`` together with a way to serialize the state to resume from, and returns what the
trial produced. Randomness (shuffling, dropout noise) is drawn from streams derived from the
trial seed and the epoch, so that a run resumed at epoch *e* continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.engine import checkpoint
from trainlab.engine.callbacks import EarlyStopping, ReduceLROnPlateau
from trainlab.losses import LOSSES, METRICS, mode_for
from trainlab.models import Net
from trainlab.optim import Optimizer
from trainlab.seeding import derive
from trainlab.spec import TrainSettings

EVAL_BATCH = 2048


@dataclass(frozen=True)
class Tensors:
    """A prepared data set as tensors: float inputs, int64 classes or float targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class FitResult:
    """What training produced: how it ended, the chosen epoch and the chosen weights."""

    status: str
    """``done`` or ``diverged``."""
    epochs: int
    best_epoch: int
    best: dict[str, float]
    weights: dict[str, torch.Tensor]
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)


OnEpoch = Callable[[int, dict[str, float], Callable[[], bytes]], None]
"""Called after each epoch with its number (0-based), its metrics and a checkpoint maker."""
OnBatch = Callable[[int, int], None]
"""Called every few steps with (steps done, steps in the epoch), for progress display."""


def evaluate(net: Net, x: torch.Tensor, y: torch.Tensor, task: str, loss_name: str) -> dict[str, float]:
    """Loss and metrics of ``net`` on (x, y) in eval mode, Keras names without prefix."""
    loss_fn = LOSSES.build({"name": loss_name})
    was_training = net.training
    net.eval()
    n = len(x)
    totals = {name: 0.0 for name in METRICS[task]}
    with torch.inference_mode():
        for i in range(0, n, EVAL_BATCH):
            out = net(x[i : i + EVAL_BATCH])
            yb = y[i : i + EVAL_BATCH]
            for name, value in _batch_metrics(out, yb, task, loss_fn).items():
                totals[name] += float(value) * len(yb)
        penalty = net.penalty()
    net.train(was_training)
    result = {name: total / max(n, 1) for name, total in totals.items()}
    if penalty is not None:
        result["loss"] += float(penalty)
    return result


def _batch_metrics(out: torch.Tensor, y: torch.Tensor, task: str, loss_fn: Callable[..., torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"loss": loss_fn(out, y), **_extra_metrics(out, y, task)}


def _extra_metrics(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    """The batch means of the task's metrics other than the loss."""
    if task == "classification":
        return {"accuracy": (out.argmax(1) == y).float().mean()}
    err = out.reshape(y.shape) - y
    return {"mse": err.square().mean(), "mae": err.abs().mean()}


def fit(
    net: Net,
    optimizer: Optimizer,
    data: Tensors,
    settings: TrainSettings,
    task: str,
    *,
    seed: int,
    resume: bytes | None = None,
    on_epoch: OnEpoch | None = None,
    on_batch: OnBatch | None = None,
) -> FitResult:
    """Train ``net`` for ``settings.epochs`` epochs (fewer if early stopping or divergence ends it)."""
    loss_fn = LOSSES.build({"name": settings.loss})
    params = [p for p in net.parameters() if p.requires_grad]
    early = EarlyStopping.of(settings.early_stopping) if settings.early_stopping else None
    plateau = ReduceLROnPlateau.of(settings.reduce_lr_on_plateau) if settings.reduce_lr_on_plateau else None
    monitor, better = settings.monitor, mode_for(settings.monitor)
    best_value = math.inf if better == "min" else -math.inf
    best_epoch, best_logs = -1, {}
    best_weights = _copy(net.state_dict())
    es_weights: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    start = 0

    if resume is not None:
        groups, meta = checkpoint.unpack(resume)
        net.load_state_dict(groups["model"])
        optimizer.load_state_dict(groups["optimizer"])
        best_weights = groups["best"]
        es_weights = groups.get("es_best")
        start, best_epoch, best_value, best_logs = meta["epoch"] + 1, meta["best_epoch"], meta["best_value"], meta["best_logs"]
        history = meta["history"]
        if early:
            early.load(meta["early_stopping"])
        if plateau:
            plateau.load(meta["reduce_lr_on_plateau"])
        if meta.get("stopped"):
            return _finish(net, meta["status"], history, best_epoch, best_logs, best_weights, es_weights, early, settings, meta["stop_reason"])

    n = len(data.x_train)
    batch = n if settings.batch_size == "full" else min(int(settings.batch_size), n)
    steps = -(-n // batch)
    report_every = max(1, steps // 50)
    status, stop_reason = "done", f"ran all {settings.epochs} epochs"

    for epoch in range(start, settings.epochs):
        began = time.perf_counter()
        torch.manual_seed(derive(seed, "noise", epoch))
        if settings.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(derive(seed, "shuffle", epoch)))
            xs, ys = data.x_train.index_select(0, order), data.y_train.index_select(0, order)
        else:
            xs, ys = data.x_train, data.y_train
        lr_used = optimizer.current_lr()
        net.train()
        sums = {name: torch.zeros((), dtype=torch.float64) for name in METRICS[task]}
        for step in range(steps):
            xb, yb = xs[step * batch : (step + 1) * batch], ys[step * batch : (step + 1) * batch]
            out = net(xb)
            loss = loss_fn(out, yb)
            penalty = net.penalty()
            total = loss if penalty is None else loss + penalty
            grads = torch.autograd.grad(total, params)
            optimizer.step(list(grads))
            with torch.no_grad():
                sums["loss"].add_(total.detach(), alpha=len(yb))
                for name, value in _extra_metrics(out.detach(), yb, task).items():
                    sums[name].add_(value, alpha=len(yb))
            if on_batch is not None and (step + 1) % report_every == 0:
                on_batch(step + 1, steps)
        logs = {name: float(s) / n for name, s in sums.items()}
        for name, value in evaluate(net, data.x_val, data.y_val, task, settings.loss).items():
            logs[f"val_{name}"] = value
        logs["learning_rate"] = lr_used
        logs["seconds"] = time.perf_counter() - began
        history.append(logs)

        stopped = False
        if not all(math.isfinite(logs[k]) for k in ("loss", "val_loss")):
            status, stop_reason, stopped = "diverged", f"loss became {logs['loss']} at epoch {epoch + 1}", True
        else:
            value = logs[monitor]
            if (value < best_value) if better == "min" else (value > best_value):
                best_value, best_epoch, best_logs = value, epoch, dict(logs)
                best_weights = _copy(net.state_dict())
            if early is not None:
                improved, stop = early.update(epoch, logs)
                if improved and early.restore_best_weights:
                    es_weights = _copy(net.state_dict())
                if stop:
                    stopped, stop_reason = True, f"early stopping: {early.monitor} did not improve for {early.patience} epochs"
            if plateau is not None:
                optimizer.learning_rate = plateau.update(logs, optimizer.learning_rate)
        if on_epoch is not None:
            meta = {
                "epoch": epoch, "best_epoch": best_epoch, "best_value": best_value, "best_logs": best_logs,
                "history": history, "stopped": stopped, "status": status, "stop_reason": stop_reason,
                "early_stopping": early.state() if early else None,
                "reduce_lr_on_plateau": plateau.state() if plateau else None,
            }
            groups = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "best": best_weights}
            if es_weights is not None:
                groups["es_best"] = es_weights
            on_epoch(epoch, logs, lambda: checkpoint.pack(groups, meta))
        if stopped:
            break
    return _finish(net, status, history, best_epoch, best_logs, best_weights, es_weights, early, settings, stop_reason)


def _finish(
    net: Net,
    status: str,
    history: list[dict[str, float]],
    best_epoch: int,
    best_logs: Mapping[str, float],
    best_weights: dict[str, torch.Tensor],
    es_weights: dict[str, torch.Tensor] | None,
    early: EarlyStopping | None,
    settings: TrainSettings,
    stop_reason: str,
) -> FitResult:
    """The chosen weights: the best epoch's by ``train.monitor`` (``keep = "best"``), or the last
    ones, which early stopping's ``restore_best_weights`` replaces by its own best, as in Keras."""
    if settings.keep == "best" and best_epoch >= 0:
        weights = best_weights
    elif es_weights is not None and early is not None and early.restore_best_weights:
        weights = es_weights
        best_epoch = early.best_epoch
        best_logs = history[best_epoch]
    else:
        weights = _copy(net.state_dict())
        best_epoch = len(history) - 1
        best_logs = history[-1] if history else {}
    return FitResult(status, len(history), best_epoch, dict(best_logs), weights, stop_reason, history)


def _copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def weights_bytes(weights: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> bytes:
    """The chosen weights as a self-describing safetensors blob."""
    return checkpoint.pack({"model": weights}, meta)
