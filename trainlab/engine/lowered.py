"""A hand-lowered training step for small batches: dense networks trained with plain SGD.

At batch size 1 ("pure SGD", report B) an epoch of MNIST is 55000 updates, and the cost of a
step is almost all per-operation overhead: autograd builds and walks a graph, the optimizer
materializes every gradient and then reads it again, and the metrics cost a handful of small
operations more. For the networks report B uses (Flatten, Dense layers with ReLU, sigmoid, tanh
or linear activations, a softmax or linear output) the backward pass is short enough to write
out. This module does so, with every intermediate in a buffer allocated once:

* the forward pass writes each layer's activations with ``addmm(..., out=...)``, the output
  straight into a per-epoch buffer of every example's output, from which the epoch's training
  loss and accuracy are computed in one vectorized pass at its end (no per-step metrics);
* the backward pass computes each layer's input gradient before its weights change, and folds
  the SGD update into the gradient product: ``W.addmm_(g.T, a, alpha=-lr)`` updates the weights
  without ever writing ``dL/dW`` (momentum: ``m = momentum m - lr g`` with the same fused
  product, then ``W += m``; Nesterov: ``W += momentum m - lr g``);
* a learning-rate schedule's rates for the epoch are read once as Python floats (the numbers
  the optimizer's own updates use, :meth:`~trainlab.optim.Optimizer.scheduled_rates`), and Keras'
  legacy ``decay`` is applied per step, ``lr / (1 + decay * iterations)``.

The results equal those of the autograd loop up to float rounding: the fused update rounds
``W - lr * (g.T a)`` once where the loop rounds ``g`` and ``lr * g`` apart. After 6000 steps at
batch 1 on MNIST the weights agree to 1e-6 and the metrics to 1e-7 relative (plain SGD, and
momentum 0.9 at lr 0.001); tests/engine/test_lowered.py holds them to 2e-5 on a small problem. As with
any change of rounding, a run that is itself chaotic (momentum 0.9 at lr 0.01 and batch 1,
where perturbing the initial weights by 1e-7 changes the final accuracy by 20 points) follows
another path. Anything else (other layers, optimizers, penalties, clipping, larger batches)
takes the autograd loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainlab.models import Net
from trainlab.optim import Optimizer
from trainlab.trial import TrainSettings

LOWERED_MAX_BATCH = 16
"""The largest batch the lowered step is used for; above it the matrix products dominate and
the autograd loop is as fast (measured in bench/README.md, benchmark 4)."""
ONE_THREAD_MAX_BATCH = 16
"""Batches up to this size train on one thread, lowered or not, unless the model has convolutions
(see :func:`single_threaded`)."""


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` for the block (unchanged for None), then restored."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Torch's intra-op threads set to one for the block, then restored.

    At batch sizes up to :data:`ONE_THREAD_MAX_BATCH` no operation is large enough for a second
    thread to pay much, and every parallel one (an elementwise pass over the first layer's 100k
    weights, an optimizer's foreach update) waits for all threads at its end. On cores shared
    with other processes, one of them is often descheduled, and the step waits for it, so such
    steps run many times slower on two threads than on one (the figures: bench/README.md,
    benchmark 4, "One thread at small batches").
    """
    with torch_threads(1):
        yield


_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
_LOSSES = {"classification": "sparse_categorical_crossentropy", "regression": "mean_squared_error"}
# The activations' backward functions, writing in place (``grad_input`` is the incoming gradient).
_threshold_backward = torch.ops.aten.threshold_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


@dataclass
class _Layer:
    """One Dense layer: its parameters (updated in place), their SGD velocities, its activation."""

    weight: Tensor
    weight_t: Tensor
    bias: Tensor | None
    activation: str
    """``relu``, ``sigmoid``, ``tanh`` or ``linear``."""
    weight_velocity: Tensor | None
    bias_velocity: Tensor | None


def lower(net: Net, optimizer: Optimizer, settings: TrainSettings, task: str) -> LoweredSGD | None:
    """The lowered trainer of ``net`` if it, its optimizer and its settings qualify, else None.

    Mixed precision (``train.precision`` other than float32) takes the autograd loop: the
    lowered step's fused products are written for float32 buffers."""
    if settings.precision != "float32":
        return None
    if settings.batch_size == "full" or int(settings.batch_size) > LOWERED_MAX_BATCH:
        return None
    if net.penalties or settings.loss != _LOSSES.get(task):
        return None
    opts = optimizer.opts
    if optimizer.config["name"] != "sgd" or any(
        opts[k] for k in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay")
    ):
        return None
    if task == "classification" and not isinstance(net.output_activation, (nn.Softmax, nn.Identity)):
        return None
    layers: list[tuple[nn.Linear, str]] = []
    for module in net.body:
        if isinstance(module, nn.Flatten):
            if layers:  # a Flatten after a Dense layer is a no-op on (batch, units), but keep it simple
                return None
        elif isinstance(module, nn.Linear):
            layers.append((module, "linear"))
        elif type(module) in _ACTIVATIONS and layers and layers[-1][1] == "linear":
            layers[-1] = (layers[-1][0], _ACTIVATIONS[type(module)])
        else:
            return None
    if not layers or layers[-1][1] != "linear":
        return None
    velocity = dict(zip(map(id, optimizer.params), optimizer.state.get("momentum", [None] * len(optimizer.params))))
    params = {id(p) for p in optimizer.params}
    built = []
    for linear, activation in layers:
        if id(linear.weight) not in params or (linear.bias is not None and id(linear.bias) not in params):
            return None
        built.append(
            _Layer(
                linear.weight.data,
                linear.weight.data.t(),
                None if linear.bias is None else linear.bias.data,
                activation,
                velocity[id(linear.weight)],
                None if linear.bias is None else velocity[id(linear.bias)],
            )
        )
    return LoweredSGD(built, optimizer, task, settings.label_smoothing)


class _Buffers:
    """Every intermediate of one step at batch size ``batch``, allocated once: each layer's
    activations, each layer's output gradient and its transposed view (what the fused weight
    update multiplies), and a vector of ones (the bias gradient is ``g.T @ ones``)."""

    def __init__(self, layers: list[_Layer], batch: int) -> None:
        dtype, device = layers[0].weight.dtype, layers[0].weight.device
        self.hidden = [torch.empty(batch, layer.weight.shape[0], dtype=dtype, device=device) for layer in layers[:-1]]
        self.grads = [torch.empty(batch, layer.weight.shape[0], dtype=dtype, device=device) for layer in layers]
        self.grads_t = [g.t() for g in self.grads]
        self.ones = torch.ones(batch, dtype=dtype, device=device)


class LoweredSGD:
    """Trains the layers it was given one epoch at a time; see the module docstring."""

    def __init__(self, layers: list[_Layer], optimizer: Optimizer, task: str, label_smoothing: float = 0.0) -> None:
        self.layers = layers
        self.optimizer = optimizer
        self.task = task
        self.label_smoothing = label_smoothing
        """Keras' label smoothing of the one-hot targets (the loss's gradient is ``softmax(z) - target``)."""
        self.outputs = layers[-1].weight.shape[0]
        self._buffers: dict[int, _Buffers] = {}

    def _buffers_for(self, batch: int) -> _Buffers:
        if batch not in self._buffers:
            self._buffers[batch] = _Buffers(self.layers, batch)
        return self._buffers[batch]

    def train_epoch(
        self, xs: Tensor, ys: Tensor, batch: int, on_batch: Callable[[int, int], None] | None
    ) -> dict[str, float]:
        """One epoch over ``xs``/``ys`` (already in batch order); returns the training metrics.

        Runs on one thread (see :func:`single_threaded`).
        """
        with single_threaded():
            return self._train_epoch(xs, ys, batch, on_batch)

    def _train_epoch(
        self, xs: Tensor, ys: Tensor, batch: int, on_batch: Callable[[int, int], None] | None
    ) -> dict[str, float]:
        n = len(xs)
        steps = -(-n // batch)
        x_batches = xs.reshape(n, -1).split(batch)
        out = torch.empty(n, self.outputs, dtype=xs.dtype, device=xs.device)
        out_batches = out.split(batch)
        if self.task == "classification":
            targets = F.one_hot(ys, self.outputs).to(xs.dtype)
            if self.label_smoothing:
                targets = targets * (1 - self.label_smoothing) + self.label_smoothing / self.outputs
            scale = 1.0  # d(mean cross-entropy)/dz = (softmax(z) - onehot) / batch
        else:
            targets = ys.reshape(n, 1).to(xs.dtype)
            scale = 2.0  # d(mean squared error)/dz = 2 (z - y) / batch
        target_batches = targets.split(batch)
        hp, opts = self.optimizer.hp, self.optimizer.opts
        scheduled = self.optimizer.scheduled_rates(steps)
        base_lr = float(hp["learning_rate"])
        decay = float(hp["decay"]) if opts["decay"] else 0.0
        momentum = float(hp["momentum"]) if opts["momentum"] else 0.0
        nesterov = bool(opts["nesterov"]) and momentum > 0
        iterations = self.optimizer.iterations
        report_every = max(1, steps // 50)
        layers = self.layers
        last = len(layers) - 1
        classification = self.task == "classification"
        step_fn = self._step
        for step in range(steps):
            x, z, target = x_batches[step], out_batches[step], target_batches[step]
            size = len(x)
            rate = base_lr if scheduled is None else scheduled[step]
            lr = rate / (1.0 + decay * (iterations + step)) if decay else rate
            step_fn(x, z, target, self._buffers_for(size), -lr * scale / size, momentum, nesterov, classification, last)
            if on_batch is not None and (step + 1) % report_every == 0:
                on_batch(step + 1, steps)
        self.optimizer.advance(steps)
        with torch.no_grad():
            if classification:
                return {
                    "loss": float(
                        F.cross_entropy(out, ys, reduction="sum", label_smoothing=self.label_smoothing).double() / n
                    ),
                    "accuracy": float((out.argmax(1) == ys).sum()) / n,
                }
            err = out.reshape(-1).double() - ys.double()
            mse = float(err.square().mean())
            return {"loss": mse, "mse": mse, "mae": float(err.abs().mean())}

    def _step(
        self,
        x: Tensor,
        z: Tensor,
        target: Tensor,
        buf: _Buffers,
        alpha: float,
        momentum: float,
        nesterov: bool,
        classification: bool,
        last: int,
    ) -> None:
        """One SGD update on the batch ``x``; the network's output is written to ``z``.

        ``alpha`` is ``-lr`` times the loss gradient's constant factor over the batch size.
        """
        layers, hidden, grads, grads_t, ones = self.layers, buf.hidden, buf.grads, buf.grads_t, buf.ones
        a = x
        for i, layer in enumerate(layers):
            h = z if i == last else hidden[i]
            if layer.bias is not None:
                torch.addmm(layer.bias, a, layer.weight_t, out=h)
            else:
                torch.mm(a, layer.weight_t, out=h)
            activation = layer.activation
            if activation == "relu":
                h.relu_()
            elif activation == "sigmoid":
                h.sigmoid_()
            elif activation == "tanh":
                h.tanh_()
            a = h
        grad = grads[last]
        torch.sub(torch.softmax(z, 1) if classification else z, target, out=grad)
        for i in range(last, -1, -1):
            layer = layers[i]
            if i > 0:
                # The gradient of the layer's input, before its weights change.
                below, a = grads[i - 1], hidden[i - 1]
                torch.mm(grad, layer.weight, out=below)
                activation = layers[i - 1].activation
                if activation == "relu":
                    _threshold_backward(below, a, 0, grad_input=below)
                elif activation == "sigmoid":
                    _sigmoid_backward(below, a, grad_input=below)
                elif activation == "tanh":
                    _tanh_backward(below, a, grad_input=below)
            else:
                a = x
            grad_t = grads_t[i]
            if momentum == 0.0:
                layer.weight.addmm_(grad_t, a, alpha=alpha)
                if layer.bias is not None:
                    layer.bias.addmv_(grad_t, ones, alpha=alpha)
            else:
                v = layer.weight_velocity
                assert v is not None
                v.addmm_(grad_t, a, beta=momentum, alpha=alpha)  # m = momentum m - lr g
                if nesterov:
                    layer.weight.add_(v, alpha=momentum).addmm_(grad_t, a, alpha=alpha)
                else:
                    layer.weight.add_(v)
                if layer.bias is not None:
                    bv = layer.bias_velocity
                    assert bv is not None
                    bv.addmv_(grad_t, ones, beta=momentum, alpha=alpha)
                    if nesterov:
                        layer.bias.add_(bv, alpha=momentum).addmv_(grad_t, ones, alpha=alpha)
                    else:
                        layer.bias.add_(bv)
            if i > 0:
                grad = grads[i - 1]
