"""The training loop for one model: in-memory tensors sliced per batch, Keras' epoch semantics.

The engine knows nothing about files or the store: it reports each finished epoch through
``on_epoch`` together with a way to serialize the state to resume from, and returns what the
trial produced. Randomness (shuffling, dropout noise) is drawn from streams derived from the
trial seed and the epoch, so that a run resumed at epoch *e* continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from trainlab.data.cache import Tensors
from trainlab.engine import checkpoint
from trainlab.engine.lowered import ONE_THREAD_MAX_BATCH, lower, single_threaded
from trainlab.engine.precision import LossScaler, autocast
from trainlab.engine.tracker import FitResult, Tracker
from trainlab.losses import METRICS, loss_function
from trainlab.models import Net
from trainlab.optim import Optimizer
from trainlab.schedules import Timeline
from trainlab.seeding import derive
from trainlab.trial import TrainSettings

EVAL_BATCH = 2048


OnEpoch = Callable[[int, dict[str, float], Callable[[], bytes]], "bool | None"]
"""Called after each epoch with its number (0-based), its metrics and a checkpoint maker, which
makes the checkpoint of the state after that epoch only when called, and only until it returns.
A true return value ends the trial there as pruned."""
Prune = Callable[[int, dict[str, float]], bool]
"""Asked after each epoch, before it is reported, with its number and metrics: True ends the
trial there as pruned, so that the epoch's checkpoint already carries the decision and a trial
resumed from it stays pruned."""
OnBatch = Callable[[int, int], None]
"""Called every few steps with (steps done, steps in the epoch), for progress display."""


def evaluate(
    net: Net,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    loss_name: str,
    *,
    label_smoothing: float = 0.0,
    precision: str = "float32",
) -> dict[str, float]:
    """Loss and metrics of ``net`` on (x, y) in eval mode, Keras names without prefix (the loss
    smoothed as in training, as Keras' ``evaluate`` uses the compiled loss); the forward pass in
    the ``precision`` the trial trains in, on the device ``x`` lives on."""
    loss_fn = loss_function(loss_name, label_smoothing)
    was_training = net.training
    net.eval()
    n = len(x)
    totals = {name: 0.0 for name in METRICS[task]}
    with torch.inference_mode():
        for i in range(0, n, EVAL_BATCH):
            with autocast(x.device, precision):
                out = net(x[i : i + EVAL_BATCH])
            out = out.float()  # a mixed-precision pass gives bfloat16 or float16: metrics in float32
            yb = y[i : i + EVAL_BATCH]
            for name, value in _batch_metrics(out, yb, task, loss_fn).items():
                totals[name] += float(value) * len(yb)
        penalty = net.penalty()
    net.train(was_training)
    result = {name: total / max(n, 1) for name, total in totals.items()}
    if penalty is not None:
        result["loss"] += float(penalty)
    return result


def _batch_metrics(
    out: torch.Tensor, y: torch.Tensor, task: str, loss_fn: Callable[..., torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {"loss": loss_fn(out, y), **_extra_metrics(out, y, task)}


def _extra_metrics(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    """The batch means of the task's metrics other than the loss."""
    if task == "classification":
        return {"accuracy": (out.argmax(1) == y).float().mean()}
    err = out.reshape(y.shape) - y
    return {"mse": err.square().mean(), "mae": err.abs().mean()}


def epoch_batches(
    data: Tensors, settings: TrainSettings, seed: int, epoch: int, *, stochastic: bool = True
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The epoch's training inputs and targets in batch order, the batch size and the number of steps.

    Also seeds the noise stream (dropout, RReLU) of the epoch. Everything depends only on the
    trial seed and the epoch, so a resumed or population-trained trial sees the same batches.

    A full batch is not shuffled unless the model is ``stochastic`` (draws noise per example,
    as Dropout does): its one gradient is then the same sum in another order, which changes it
    by float rounding only, and the shuffle would copy the whole training set every epoch
    (170 MB for MNIST; its cost: bench/README.md, benchmark 5).
    """
    torch.manual_seed(derive(seed, "noise", epoch))
    n = len(data.x_train)
    batch = n if settings.batch_size == "full" else min(int(settings.batch_size), n)
    if settings.shuffle and (batch < n or stochastic):
        # The order is drawn on the CPU whatever the device, so that every device sees the same batches.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive(seed, "shuffle", epoch)))
        order = order.to(data.x_train.device)
        return data.x_train.index_select(0, order), data.y_train.index_select(0, order), batch, -(-n // batch)
    return data.x_train, data.y_train, batch, -(-n // batch)


def timeline(data: Tensors, settings: TrainSettings) -> Timeline:
    """The trial's optimizer steps per epoch and epochs, which per-epoch schedules and
    ``one_cycle`` without ``total_steps`` count in (the batches of :func:`epoch_batches`)."""
    n = len(data.x_train)
    batch = n if settings.batch_size == "full" else min(int(settings.batch_size), n)
    return Timeline(-(-n // max(batch, 1)), settings.epochs)


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
    lowered: bool = True,
    prune: Prune | None = None,
) -> FitResult:
    """Train ``net`` for ``settings.epochs`` epochs (fewer if early stopping or divergence ends it).

    ``lowered``: train with the hand-lowered step of :mod:`trainlab.engine.lowered` where it
    applies (small batches, dense networks, SGD, float32); False always uses the autograd loop.
    ``net``, ``optimizer`` and ``data`` live on one device, where training runs; ``settings.precision``
    other than float32 runs the forward pass under autocast (float16 with loss scaling).
    """
    loss_fn = loss_function(settings.loss, settings.label_smoothing)
    params = [p for p in net.parameters() if p.requires_grad]
    tracker = Tracker(settings, _copy(net.state_dict()))
    scaler = LossScaler() if settings.precision == "float16" else None
    if resume is not None:
        groups, meta = checkpoint.unpack(resume)
        net.load_state_dict(groups["model"])
        optimizer.load_state_dict(groups["optimizer"])
        tracker.restore(meta, groups)
        if scaler is not None and "scaler" in groups:
            scaler.load_state_dict(groups["scaler"])
    optimizer.set_timeline(timeline(data, settings))

    trainer = lower(net, optimizer, settings, task) if lowered else None
    step = _Step(net, optimizer, params, loss_fn, task, settings.precision, scaler)
    # Convolutions do enough work per example to use every thread even at small batches.
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    while not tracker.finished:
        epoch = tracker.next_epoch
        began = time.perf_counter()
        xs, ys, batch, steps = epoch_batches(data, settings, seed, epoch, stochastic=net.stochastic)
        lr_used = optimizer.current_lr()
        net.train()
        if trainer is not None:
            logs = trainer.train_epoch(xs, ys, batch, on_batch)
        elif batch <= ONE_THREAD_MAX_BATCH and not convolutional and xs.device.type == "cpu":
            with single_threaded():
                logs = _train_epoch(step, xs, ys, batch, on_batch)
        else:
            logs = _train_epoch(step, xs, ys, batch, on_batch)
        val = evaluate(
            net,
            data.x_val,
            data.y_val,
            task,
            settings.loss,
            label_smoothing=settings.label_smoothing,
            precision=settings.precision,
        )
        for name, value in val.items():
            logs[f"val_{name}"] = value
        logs["learning_rate"] = lr_used
        logs["seconds"] = time.perf_counter() - began
        new_lr = tracker.end_epoch(logs, lambda: _copy(net.state_dict()), optimizer.learning_rate)
        if new_lr != optimizer.learning_rate:
            optimizer.learning_rate = new_lr
        if prune is not None and not tracker.finished and prune(epoch, logs):
            tracker.prune()
        if on_epoch is not None:
            # The checkpoint is made only if the callback asks for it (and before the next epoch).
            if on_epoch(
                epoch,
                logs,
                lambda: checkpoint.pack(
                    {
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        **tracker.snapshots(),
                        **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                    },
                    tracker.meta(),
                ),
            ):
                tracker.prune()
    return tracker.result(_copy(net.state_dict()))


class _Step:
    """One autograd step of a model: forward (under the trial's autocast), loss, gradients and
    the optimizer's update, skipped where float16's loss scaling found an overflow."""

    def __init__(
        self,
        net: Net,
        optimizer: Optimizer,
        params: list[torch.Tensor],
        loss_fn: Callable[..., torch.Tensor],
        task: str,
        precision: str,
        scaler: LossScaler | None,
    ) -> None:
        self.net, self.optimizer, self.params, self.loss_fn = net, optimizer, params, loss_fn
        self.task, self.precision, self.scaler = task, precision, scaler
        self.penalized = bool(net.penalties)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch; its outputs and total loss, detached."""
        with autocast(xb.device, self.precision):
            out = self.net(xb)
            total = self.loss_fn(out, yb)
            if self.penalized:
                penalty = self.net.penalty()
                assert penalty is not None
                total = total + penalty
        if self.scaler is None:
            grads = list(torch.autograd.grad(total, self.params))
            self.optimizer.step(grads)
        else:
            grads, finite = self.scaler.unscale(torch.autograd.grad(self.scaler.scaled(total), self.params))
            if finite:
                self.optimizer.step(grads)
            self.scaler.update(finite)
        return out.detach(), total.detach()


def _train_epoch(
    step_fn: _Step, xs: torch.Tensor, ys: torch.Tensor, batch: int, on_batch: OnBatch | None
) -> dict[str, float]:
    """One epoch of the autograd loop over ``xs``/``ys`` (in batch order); the training metrics.

    Per step, only what the update needs runs: the batches are views made once per epoch, and
    each step's loss (a 0-d tensor) and outputs are kept, so that the epoch's metrics are
    computed in one pass at its end instead of a handful of small operations per step. On a GPU
    nothing waits for the device before the epoch's end.
    """
    n = len(xs)
    x_batches, y_batches = xs.split(batch), ys.split(batch)
    steps = len(x_batches)
    report_every = max(1, steps // 50)
    outputs: torch.Tensor | None = None
    totals: list[torch.Tensor] = []
    for step in range(steps):
        xb, yb = x_batches[step], y_batches[step]
        out, total = step_fn(xb, yb)
        if outputs is None:
            # Kept in float32 at least: a mixed-precision forward pass gives bfloat16 or float16 outputs.
            outputs = torch.empty(
                (n, *out.shape[1:]), dtype=torch.promote_types(out.dtype, torch.float32), device=out.device
            )
        outputs[step * batch : step * batch + len(yb)].copy_(out)
        totals.append(total)
        if on_batch is not None and (step + 1) % report_every == 0:
            on_batch(step + 1, steps)
    assert outputs is not None
    sizes = torch.full((steps,), float(batch), dtype=torch.float64, device="cpu")
    sizes[-1] = n - batch * (steps - 1)
    logs = {"loss": float((torch.stack(totals).cpu().double() * sizes).sum()) / n}
    with torch.no_grad():
        for name, value in _extra_metrics(outputs, ys, step_fn.task).items():
            logs[name] = float(value)
    return logs


def _copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def weights_bytes(weights: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> bytes:
    """The chosen weights as a self-describing safetensors blob."""
    return checkpoint.pack({"model": weights}, meta)
