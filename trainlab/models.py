"""ModelSpec -> torch module: Keras layer names and defaults, shapes checked before training.

A model is a list of layer tables (``{ type = "Dense", units = 128, activation = "relu" }``).
:func:`resolve` fills every default (model-level ``activation`` and ``kernel_initializer``
included) and checks the shapes flow from the data's input to the output; :func:`build` makes
the :class:`Net`; :func:`summary` gives the Keras-style table of output shapes and parameters.

Images are N, C, H, W (PyTorch's layout); ``Flatten`` therefore orders features channel-first,
which permutes the next layer's weights relative to Keras but changes nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab import initializers
from trainlab.activations import ACTIVATIONS
from trainlab.errors import SpecError
from trainlab.registry import Entry, Param, Registry, check_params, fraction, join, one_of, param, positive, required

Shape = tuple[int, ...]

MAX_PARAMETERS = 100_000_000
"""The largest model trainlab builds: 400 MB of float32 weights, before optimizer state and
before a population stacks K copies. A study asking for more is refused before anything is
allocated (a typo like ``units = 1000000000`` would otherwise take the machine's memory)."""
MAX_VALUES = 10_000_000
"""The most values one layer may output (or pad its input to) per example: 40 MB in float32,
times the batch size, times what backpropagation keeps."""


def _int_pair(value: Any) -> str | None:
    if isinstance(value, int):
        return None if value > 0 else "must be > 0"
    if len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return None
    return "must be a positive integer or a list of two"


_INIT = (str, dict)
_DENSE = {
    "units": required(int, check=positive),
    "activation": param("linear", str, dict),
    "use_bias": param(True, bool),
    "kernel_initializer": param("glorot_uniform", *_INIT),
    "bias_initializer": param("zeros", *_INIT),
    "kernel_regularizer": Param(None, (str, dict, type(None))),
}
_CONV = {
    "filters": required(int, check=positive),
    "kernel_size": required(int, list, check=_int_pair),
    "strides": param(1, int, list, check=_int_pair),
    "padding": param("valid", str, check=one_of("valid", "same")),
    **{k: v for k, v in _DENSE.items() if k != "units"},
}
LAYERS = Registry(
    "layer type",
    {
        "Dense": Entry(_DENSE),
        "Conv2D": Entry(_CONV, aliases=("Convolution2D",)),
        "MaxPooling2D": Entry(
            {
                "pool_size": param(2, int, list, check=_int_pair),
                "strides": Param(None, (int, list, type(None)), _int_pair),
                "padding": param("valid", str, check=one_of("valid", "same")),
            },
            aliases=("MaxPool2D",),
        ),
        "Flatten": Entry(),
        "Dropout": Entry({"rate": required(float, check=fraction)}),
        "BatchNormalization": Entry(
            {
                "momentum": param(0.99, float, check=fraction),
                "epsilon": param(1e-3, float, check=positive),
                "center": param(True, bool),
                "scale": param(True, bool),
            }
        ),
        "Activation": Entry({"activation": required(str, dict)}),
    },
)
WEIGHTED = ("Dense", "Conv2D")
MODEL_KEYS = {
    "layers": Param(None, (list,), required=True),
    "activation": Param(None, (str, dict, type(None))),
    "kernel_initializer": Param(None, (str, dict, type(None))),
}


def resolve(model: Mapping[str, Any], input_shape: Shape | None = None, path: str = "model") -> dict[str, Any]:
    """A complete model config: every layer's every parameter explicit, shapes checked.

    ``model.activation`` is the activation of every Dense/Conv2D layer that does not name one,
    except the last layer (the output keeps its own, default linear); ``model.kernel_initializer``
    is the initializer of every Dense/Conv2D layer that does not name one.
    """
    top = check_params(model, MODEL_KEYS, path)
    layers = top["layers"]
    if not layers:
        raise SpecError("a model needs at least one layer", path=join(path, "layers"))
    resolved = []
    for i, layer in enumerate(layers):
        where = join(join(path, "layers"), i)
        if not isinstance(layer, Mapping):
            raise SpecError(f"expected a layer table like {{ type = \"Dense\", units = 10 }}, got {layer!r}", path=where)
        if "type" not in layer:
            raise SpecError("a layer needs 'type'", path=where, allowed=LAYERS.names())
        if not isinstance(layer["type"], str):
            raise SpecError(f"expected a layer type name, got {layer['type']!r}", path=join(where, "type"))
        kind = LAYERS.canonical(layer["type"], join(where, "type"))
        given = {k: v for k, v in layer.items() if k != "type"}
        if kind in WEIGHTED:
            if top["activation"] is not None and i < len(layers) - 1:
                given.setdefault("activation", top["activation"])
            if top["kernel_initializer"] is not None:
                given.setdefault("kernel_initializer", top["kernel_initializer"])
        cfg = check_params(given, LAYERS.entries[kind].params, where)
        if "activation" in cfg:
            cfg["activation"] = ACTIVATIONS.resolve(cfg["activation"], join(where, "activation"))
        for key in ("kernel_initializer", "bias_initializer"):
            if key in cfg:
                cfg[key] = initializers.resolve(cfg[key], path=join(where, key))
        if cfg.get("kernel_regularizer") is not None:
            cfg["kernel_regularizer"] = _regularizer(cfg["kernel_regularizer"], join(where, "kernel_regularizer"))
        resolved.append({"type": kind, **cfg})
    out = {"layers": resolved}
    if input_shape is not None:
        check_size(out, input_shape, path)
    return out


def check_size(model: Mapping[str, Any], input_shape: Shape, path: str = "model") -> None:
    """Refuse a model above :data:`MAX_PARAMETERS` or a layer above :data:`MAX_VALUES` per example.

    Counts from the resolved config alone, so an absurd width is refused before any tensor
    exists; the error names the layer where the limit is crossed.
    """
    total = 0
    shape = tuple(input_shape)
    for i, (layer, row) in enumerate(zip(model["layers"], summary(model, input_shape))):
        where = join(join(path, "layers"), i)
        kind = layer["type"]
        total += row.params
        if total > MAX_PARAMETERS:
            raise SpecError(
                f"{kind} brings the model to {total:,} parameters; trainlab builds at most {MAX_PARAMETERS:,} "
                f"(400 MB of float32 weights); use fewer units or filters",
                path=where,
            )
        if kind in ("Conv2D", "MaxPooling2D") and layer["padding"] == "same":
            k = _pair(layer["kernel_size"] if kind == "Conv2D" else layer["pool_size"])
            s = _pair(layer["strides"] if kind == "Conv2D" else (layer["strides"] or layer["pool_size"]))
            padded = [n + sum(_same_pads(n, kk, ss)) for n, kk, ss in zip(shape[1:], k, s)]
            if shape[0] * math.prod(padded) > MAX_VALUES:
                raise SpecError(
                    f"{kind} with 'same' padding pads its input {shape} to {padded[0]}x{padded[1]} pixels; "
                    f"trainlab allows at most {MAX_VALUES:,} values per example in a layer; use a smaller window",
                    path=where,
                )
        values = math.prod(row.output_shape)
        if values > MAX_VALUES:
            raise SpecError(
                f"{kind} outputs {values:,} values per example (shape {row.output_shape}); trainlab allows at most "
                f"{MAX_VALUES:,} per layer; use fewer units or filters, or strides or pooling before it",
                path=where,
            )
        shape = row.output_shape


def _regularizer(value: Any, path: str) -> dict[str, float]:
    """Keras regularizers: ``"l1"``, ``"l2"``, ``"l1_l2"`` (factor 0.01) or ``{ l1 = .., l2 = .. }``."""
    named = {"l1": {"l1": 0.01, "l2": 0.0}, "l2": {"l1": 0.0, "l2": 0.01}, "l1_l2": {"l1": 0.01, "l2": 0.01}}
    if isinstance(value, str):
        if value.lower() not in named:
            raise SpecError(f"unknown regularizer {value!r}", path=path, allowed=named, got=value)
        return named[value.lower()]
    factor = {"check": lambda v: None if v >= 0 else "must be >= 0"}
    return check_params(value, {"l1": param(0.0, float, **factor), "l2": param(0.0, float, **factor)}, path)


def shapes(model: Mapping[str, Any], input_shape: Shape, path: str = "model") -> list[Shape]:
    """The output shape (without batch) after each layer; a SpecError where a layer cannot apply."""
    shape = tuple(input_shape)
    out = []
    for i, layer in enumerate(model["layers"]):
        where = join(join(path, "layers"), i)
        kind = layer["type"]
        if kind == "Dense":
            if len(shape) != 1:
                raise SpecError(
                    f"Dense needs a flat input but gets shape {shape}; put {{ type = \"Flatten\" }} before it",
                    path=where,
                )
            shape = (layer["units"],)
        elif kind in ("Conv2D", "MaxPooling2D"):
            if len(shape) != 3:
                raise SpecError(
                    f"{kind} needs an image input (channels, height, width) but gets shape {shape}",
                    path=where,
                )
            if kind == "Conv2D":
                k, s, channels = _pair(layer["kernel_size"]), _pair(layer["strides"]), layer["filters"]
            else:
                k = _pair(layer["pool_size"])
                s, channels = _pair(layer["strides"] or layer["pool_size"]), shape[0]
            hw = [_out_size(n, kk, ss, layer["padding"]) for n, kk, ss in zip(shape[1:], k, s)]
            if min(hw) < 1:
                raise SpecError(f"{kind} leaves no pixels: input {shape} with window {k} and 'valid' padding", path=where)
            shape = (channels, *hw)
        elif kind == "Flatten":
            shape = (math.prod(shape),)
        out.append(shape)
    return out


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _out_size(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - k) // s + 1


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for one dimension: the extra pixel goes after."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class LayerSummary:
    """One row of a Keras-style model summary."""

    name: str
    type: str
    output_shape: Shape
    params: int
    trainable: int


def summary(model: Mapping[str, Any], input_shape: Shape) -> list[LayerSummary]:
    """Each layer with its output shape and parameter counts, as ``model.summary()`` shows them."""
    rows = []
    counts: dict[str, int] = {}
    shape = tuple(input_shape)
    for layer, out in zip(model["layers"], shapes(model, input_shape)):
        kind = layer["type"]
        counts[kind] = counts.get(kind, 0) + 1
        params = trainable = 0
        if kind == "Dense":
            params = trainable = shape[0] * layer["units"] + layer["units"] * layer["use_bias"]
        elif kind == "Conv2D":
            kh, kw = _pair(layer["kernel_size"])
            params = trainable = kh * kw * shape[0] * layer["filters"] + layer["filters"] * layer["use_bias"]
        elif kind == "BatchNormalization":
            channels = shape[0]
            trainable = channels * (layer["center"] + layer["scale"])
            params = trainable + 2 * channels
        rows.append(LayerSummary(f"{_snake(kind)}_{counts[kind]}", kind, out, params, trainable))
        shape = out
    return rows


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name)).replace("2_d", "2d")


class Net(nn.Module):
    """The built model: ``forward`` gives logits (classification) or predictions (regression).

    A final softmax is kept apart in ``output_activation`` and applied by :meth:`predict`, so
    that training can use the stable cross-entropy on logits.
    """

    def __init__(self, body: nn.Sequential, output_activation: nn.Module, penalties: list[tuple[str, float, float]]) -> None:
        super().__init__()
        self.body = body
        self.output_activation = output_activation
        self.penalties = penalties
        """(parameter name, l1, l2) of every regularized kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @property
    def stochastic(self) -> bool:
        """Whether training draws random noise per example (Dropout, RReLU)."""
        return any(isinstance(m, (nn.Dropout, nn.RReLU)) for m in self.body)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax output) or regression values, in eval mode."""
        return self.output_activation(self.body(x))

    def penalty(self, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """Kernel L1/L2 regularization added to the training loss, as Keras adds it; None if none.

        ``params`` gives the weights by name (a population's per-member slice); default: this model's.
        """
        if not self.penalties:
            return None
        weights = dict(self.named_parameters()) if params is None else params
        total = torch.zeros(())
        for name, l1, l2 in self.penalties:
            w = weights[name]
            if l1:
                total = total + l1 * w.abs().sum()
            if l2:
                total = total + l2 * w.square().sum()
        return total


class KerasBatchNorm(nn.Module):
    """Keras 3's ``BatchNormalization`` over the channels of (N, C) or (N, C, H, W) inputs.

    Training normalises with the batch's biased variance (the mean of squared deviations over
    every axis but the channels) and updates the moving statistics as Keras does::

        moving_mean     = moving_mean * momentum     + mean     * (1 - momentum)
        moving_variance = moving_variance * momentum + variance * (1 - momentum)

    with that same biased ``variance``; torch's ``BatchNorm`` moves toward the unbiased one
    instead, which shifts every inference-mode output. A batch with one value per channel
    (one example into a Dense layer's normalisation) trains as in Keras: its variance is 0,
    the output is ``beta`` and the moving variance moves toward 0, where torch raises.
    Inference normalises with the moving statistics.

    Parameters and buffers carry torch's ``BatchNorm`` names and shapes (``weight`` = gamma,
    ``bias`` = beta, ``running_mean``, ``running_var``, ``num_batches_tracked``), so state
    dicts, checkpoints and exported weights keep one layout. The buffers are updated in place,
    which is how stacked population buffers passed to ``torch.func.functional_call`` follow.
    """

    def __init__(self, channels: int, *, momentum: float, epsilon: float) -> None:
        super().__init__()
        self.channels = channels
        self.momentum = momentum
        self.epsilon = epsilon
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.channels}, momentum={self.momentum}, epsilon={self.epsilon}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.epsilon)
        axes = [0, *range(2, x.dim())]
        with torch.no_grad():
            variance, mean = torch.var_mean(x.detach(), dim=axes, correction=0)
            self.running_mean.mul_(self.momentum).add_(mean * (1 - self.momentum))
            self.running_var.mul_(self.momentum).add_(variance * (1 - self.momentum))
            self.num_batches_tracked.add_(1)
        if math.prod(x.shape[i] for i in axes) > 1:
            # torch's fused kernel normalises with the same biased batch variance.
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.epsilon)
        return self._one_value(x, axes)

    def _one_value(self, x: torch.Tensor, axes: list[int]) -> torch.Tensor:
        """The training output of one value per channel, written out (``F.batch_norm`` refuses
        it): ``x - mean`` is 0, so the output is beta; gamma and beta stay in the gradient graph."""
        centred = x - x.mean(dim=axes, keepdim=True)
        normalised = centred * torch.rsqrt(centred.square().mean(dim=axes, keepdim=True) + self.epsilon)
        shape = (1, self.channels, *([1] * (x.dim() - 2)))
        return normalised * self.weight.reshape(shape) + self.bias.reshape(shape)


def build(model: Mapping[str, Any], input_shape: Shape, seed: int) -> Net:
    """The torch module for a resolved model, initialized from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    penalties: list[tuple[str, float, float]] = []
    shape = tuple(input_shape)
    layers = list(model["layers"])
    output_activation: nn.Module = nn.Identity()
    for i, (layer, out) in enumerate(zip(layers, shapes(model, input_shape))):
        kind = layer["type"]
        if kind == "Dense":
            core: nn.Module = nn.Linear(shape[0], layer["units"], bias=layer["use_bias"])
            _init(core, layer, "dense", generator)
            modules.append(core)
            core_index = len(modules) - 1
        elif kind == "Conv2D":
            k, s = _pair(layer["kernel_size"]), _pair(layer["strides"])
            pads = [(0, 0), (0, 0)]
            if layer["padding"] == "same":
                pads = [_same_pads(n, kk, ss) for n, kk, ss in zip(shape[1:], k, s)]
            symmetric = all(a == b for a, b in pads)
            if not symmetric:
                modules.append(nn.ZeroPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1])))
            core = nn.Conv2d(
                shape[0], layer["filters"], k, stride=s, bias=layer["use_bias"],
                padding=(pads[0][0], pads[1][0]) if symmetric else 0,
            )
            _init(core, layer, "conv2d", generator)
            modules.append(core)
            core_index = len(modules) - 1
        elif kind == "MaxPooling2D":
            k = _pair(layer["pool_size"])
            s = _pair(layer["strides"] or layer["pool_size"])
            if layer["padding"] == "same":
                pads = [_same_pads(n, kk, ss) for n, kk, ss in zip(shape[1:], k, s)]
                if any(sum(p) for p in pads):
                    modules.append(nn.ConstantPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1]), float("-inf")))
            modules.append(nn.MaxPool2d(k, s))
        elif kind == "Flatten":
            modules.append(nn.Flatten())
        elif kind == "Dropout":
            modules.append(nn.Dropout(layer["rate"]))
        elif kind == "BatchNormalization":
            bn = KerasBatchNorm(shape[0], momentum=layer["momentum"], epsilon=layer["epsilon"])
            bn.weight.requires_grad_(layer["scale"])
            bn.bias.requires_grad_(layer["center"])
            modules.append(bn)
        if "activation" in layer:
            act = layer["activation"]
            if i == len(layers) - 1 and act["name"] == "softmax":
                output_activation = ACTIVATIONS.build(act)
            elif act["name"] != "linear":
                modules.append(ACTIVATIONS.build(act))
        if kind in WEIGHTED and layer.get("kernel_regularizer"):
            reg = layer["kernel_regularizer"]
            penalties.append((f"body.{core_index}.weight", reg["l1"], reg["l2"]))
        shape = out
    return Net(nn.Sequential(*modules), output_activation, penalties)


def _init(core: nn.Linear | nn.Conv2d, layer: Mapping[str, Any], layout: str, generator: torch.Generator) -> None:
    with torch.no_grad():
        fan_in, fan_out = initializers.fans(tuple(core.weight.shape), layout)
        initializers.initialize_(core.weight, layer["kernel_initializer"], fan_in=fan_in, fan_out=fan_out, generator=generator)
        if core.bias is not None:
            # Keras computes a bias's fans from its own shape (n,): (n, n).
            b_in, b_out = initializers.fans(tuple(core.bias.shape), "keras")
            initializers.initialize_(core.bias, layer["bias_initializer"], fan_in=b_in, fan_out=b_out, generator=generator)


def check_output(model: Mapping[str, Any], input_shape: Shape, task: str, loss: str, num_classes: int, path: str = "model") -> None:
    """The last layer must fit the task: ``num_classes`` units with softmax (or linear logits) for
    classification, one linear-ish unit for regression."""
    last = model["layers"][-1]
    where = join(join(path, "layers"), len(model["layers"]) - 1)
    out = shapes(model, input_shape, path)[-1]
    act = last.get("activation", {"name": "linear"})["name"]
    if task == "classification":
        if out != (num_classes,):
            raise SpecError(f"the output must have {num_classes} units (one per class), it has shape {out}", path=where)
        if act not in ("softmax", "linear"):
            raise SpecError(
                f"{loss} needs a softmax output (or linear logits), the last layer's activation is {act!r}",
                path=join(where, "activation"), allowed=["softmax", "linear"],
            )
    else:
        if out != (1,):
            raise SpecError(f"a regression output must have 1 unit, it has shape {out}", path=where)
        if act == "softmax":
            raise SpecError("softmax makes no sense on a single regression output", path=join(where, "activation"))
