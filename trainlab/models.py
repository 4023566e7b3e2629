"""ModelSpec -> torch module: Keras layer names and defaults, shapes checked before training.

A model is a list of layer tables (``{ type = "Dense", units = 128, activation = "relu" }``).
:func:`resolve` fills every default (model-level ``activation`` and ``kernel_initializer``
included) and checks the shapes flow from the data's input to the output; :func:`build` makes
the :class:`Net`; :func:`summary` gives the Keras-style table of output shapes and parameters.
What each layer type is (its parameters, output shape, parameter count and torch modules) is
one row of :data:`LAYER_DEFS`; those functions loop over the layers and ask each one's row.

Images are N, C, H, W (PyTorch's layout); ``Flatten`` therefore orders features channel-first,
which permutes the next layer's weights relative to Keras but changes nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab import augment, factory_models, initializers
from trainlab.activations import ACTIVATIONS
from trainlab.errors import SpecError
from trainlab.layers import AveragePool, Dropout, GlobalPool, KerasLayerNorm, SpatialDropout
from trainlab.nets import MAX_PARAMETERS, MAX_VALUES, LayerSummary, Net, Shape
from trainlab.registry import (
    Check,
    Entry,
    Param,
    Registry,
    check_params,
    fraction,
    join,
    one_of,
    param,
    positive,
    required,
)


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
_POOL = {
    "pool_size": param(2, int, list, check=_int_pair),
    "strides": Param(None, (int, list, type(None)), _int_pair),
    "padding": param("valid", str, check=one_of("valid", "same")),
}
_BATCH_NORM = {
    "momentum": param(0.99, float, check=fraction),
    "epsilon": param(1e-3, float, check=positive),
    "center": param(True, bool),
    "scale": param(True, bool),
}


def _axes_check(value: Any) -> str | None:
    if isinstance(value, list) and not (value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return "must be an axis or a non-empty list of axes (integers)"
    return None


def _factor(low: float, high: float, *, low_open: bool = False) -> Check:
    """A check for Keras' augmentation factors: a number, or a list [lower, upper], each within
    [low, high] (``low_open``: above ``low``)."""
    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def check(value: Any) -> str | None:
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (
            len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            return "must be a number or a list of two numbers [lower, upper]"
        for v in values:
            if not math.isfinite(v) or v < low or v > high or (low_open and v == low):
                return f"must lie in {bounds}"
        return None

    return check


def _value_range_check(value: Any) -> str | None:
    if not (
        len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and value[0] < value[1]
    ):
        return "must be a list of two numbers [low, high] with low < high"
    return None


_DEPTHWISE = {
    "kernel_size": required(int, list, check=_int_pair),
    "strides": param(1, int, list, check=_int_pair),
    "padding": param("valid", str, check=one_of("valid", "same")),
    "depth_multiplier": param(1, int, check=positive),
    "activation": param("linear", str, dict),
    "use_bias": param(True, bool),
    "depthwise_initializer": param("glorot_uniform", *_INIT),
    "bias_initializer": param("zeros", *_INIT),
}
_SEPARABLE = {
    "filters": required(int, check=positive),
    **_DEPTHWISE,
    "pointwise_initializer": param("glorot_uniform", *_INIT),
}
_LAYER_NORM = {
    "axis": param(-1, int, list, check=_axes_check),
    "epsilon": param(1e-3, float, check=positive),
    "center": param(True, bool),
    "scale": param(True, bool),
}


_FILL = {
    "fill_mode": param("reflect", str, check=one_of(*augment.FILL_MODES)),
    "interpolation": param("bilinear", str, check=one_of(*augment.INTERPOLATIONS)),
    "fill_value": param(0.0, float),
}
_TRANSLATION = {
    "height_factor": required(float, list, check=_factor(-1, 1)),
    "width_factor": required(float, list, check=_factor(-1, 1)),
    **_FILL,
}
_ZOOM = {
    "height_factor": required(float, list, check=_factor(-1, 1, low_open=True)),
    "width_factor": Param(None, (float, list, type(None)), _factor(-1, 1, low_open=True)),
    **_FILL,
}
_CONTRAST = {
    "factor": required(float, list, check=_factor(0, 1)),
    "value_range": param([0.0, 255.0], list, check=_value_range_check),
}
Pair = tuple[int, int]
Layer = Mapping[str, Any]
"""A resolved layer table: ``type`` and every parameter of its type."""


def _no_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    return 0, 0


@dataclass(frozen=True)
class LayerDef:
    """Everything trainlab knows of one layer type, so that a new type is one row of :data:`LAYER_DEFS`.

    ``output_shape(layer, input_shape, where)`` is the shape (without batch) the layer gives, or a
    SpecError at ``where`` when it cannot apply to its input. ``weights(layer, input_shape)`` is
    (parameters, trainable parameters) as Keras' ``model.summary()`` counts them (a
    BatchNormalization layer's moving statistics are non-trainable parameters).
    ``modules(layer, input_shape, generator)`` builds the torch modules, initializing any kernel
    from ``generator``; a layer with a kernel returns the kernel's module last. The layer's
    ``activation``, if it has one, is added by :func:`build` after them.
    ``width`` names the parameter that sets the number of outputs of a layer with a kernel
    (``units``, ``filters``; None for layers without one), ``window(layer)`` the (size, strides)
    of a sliding-window layer (None for the others).
    """

    params: Mapping[str, Param]
    output_shape: Callable[[Layer, Shape, str], Shape]
    modules: Callable[[Layer, Shape, torch.Generator], list[nn.Module]]
    weights: Callable[[Layer, Shape], tuple[int, int]] = _no_weights
    aliases: tuple[str, ...] = ()
    width: str | None = None
    window: Callable[[Layer], tuple[Pair, Pair]] | None = None


MODEL_KEYS = {
    "layers": Param(None, (list,), required=True),
    "activation": Param(None, (str, dict, type(None))),
    "kernel_initializer": Param(None, (str, dict, type(None))),
}


def resolve(
    model: Mapping[str, Any],
    input_shape: Shape | None = None,
    path: str = "model",
    *,
    task: str | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """A complete model config: every layer's every parameter explicit, shapes checked.

    ``model.activation`` is the activation of every Dense/Conv2D layer that does not name one,
    except the last layer (the output keeps its own, default linear); ``model.kernel_initializer``
    is the initializer of every Dense/Conv2D layer that does not name one.

    A table naming a ``factory`` is a user's module instead (:mod:`trainlab.factory_models`):
    its output is set by ``task`` and ``num_classes``, the data's.
    """
    if factory_models.is_factory(model):
        return factory_models.resolve(model, input_shape, path, task=task, num_classes=num_classes)
    top = check_params(model, MODEL_KEYS, path)
    layers = top["layers"]
    if not layers:
        raise SpecError("a model needs at least one layer", path=join(path, "layers"))
    resolved = []
    for i, layer in enumerate(layers):
        where = join(join(path, "layers"), i)
        if not isinstance(layer, Mapping):
            raise SpecError(f'expected a layer table like {{ type = "Dense", units = 10 }}, got {layer!r}', path=where)
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
        for key in [k for k in cfg if k.endswith("_initializer")]:
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
    exists; the error names the layer where the limit is crossed. A factory model is checked when
    it is resolved (:func:`trainlab.factory_models.check`).
    """
    if factory_models.is_factory(model):
        factory_models.check(model, tuple(input_shape), path)
        return
    total = 0
    shape = tuple(input_shape)
    for i, (layer, row) in enumerate(zip(model["layers"], summary(model, input_shape))):
        where = join(join(path, "layers"), i)
        kind = layer["type"]
        window = LAYER_DEFS[kind].window
        total += row.params
        if total > MAX_PARAMETERS:
            raise SpecError(
                f"{kind} brings the model to {total:,} parameters; trainlab builds at most {MAX_PARAMETERS:,} "
                f"(400 MB of float32 weights); use fewer units or filters",
                path=where,
            )
        if window is not None and layer["padding"] == "same":
            k, s = window(layer)
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
    """The output shape (without batch) after each layer; a SpecError where a layer cannot apply.
    A factory model's: after each of its module's children."""
    if factory_models.is_factory(model):
        return [row.output_shape for row in factory_models.summary(model, tuple(input_shape))]
    shape = tuple(input_shape)
    out = []
    for i, layer in enumerate(model["layers"]):
        shape = LAYER_DEFS[layer["type"]].output_shape(layer, shape, join(join(path, "layers"), i))
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


def summary(model: Mapping[str, Any], input_shape: Shape) -> list[LayerSummary]:
    """Each layer with its output shape and parameter counts, as ``model.summary()`` shows them;
    a factory model's module, a row per child."""
    if factory_models.is_factory(model):
        return factory_models.summary(model, tuple(input_shape))
    rows = []
    counts: dict[str, int] = {}
    shape = tuple(input_shape)
    for layer, out in zip(model["layers"], shapes(model, input_shape)):
        kind = layer["type"]
        counts[kind] = counts.get(kind, 0) + 1
        params, trainable = LAYER_DEFS[kind].weights(layer, shape)
        rows.append(LayerSummary(f"{_snake(kind)}_{counts[kind]}", kind, out, params, trainable))
        shape = out
    return rows


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name)).replace("2_d", "2d")


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
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.epsilon
            )
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
    """The torch module for a resolved model, initialized from ``seed`` alone (a factory
    model: the user's module in a :class:`~trainlab.factory_models.FactoryNet`)."""
    if factory_models.is_factory(model):
        return factory_models.build(model, tuple(input_shape), seed)
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    penalties: list[tuple[str, float, float]] = []
    shape = tuple(input_shape)
    layers = list(model["layers"])
    output_activation: nn.Module = nn.Identity()
    for i, (layer, out) in enumerate(zip(layers, shapes(model, input_shape))):
        definition = LAYER_DEFS[layer["type"]]
        modules += definition.modules(layer, shape, generator)
        kernel = len(modules) - 1  # a layer with a kernel builds it last
        if "activation" in layer:
            act = layer["activation"]
            if i == len(layers) - 1 and act["name"] == "softmax":
                output_activation = ACTIVATIONS.build(act)
            elif act["name"] != "linear":
                modules.append(ACTIVATIONS.build(act))
        if definition.width is not None and layer.get("kernel_regularizer"):
            reg = layer["kernel_regularizer"]
            penalties.append((f"body.{kernel}.weight", reg["l1"], reg["l2"]))
        shape = out
    return Net(nn.Sequential(*modules), output_activation, penalties)


def _init(core: nn.Linear | nn.Conv2d, layer: Mapping[str, Any], layout: str, generator: torch.Generator) -> None:
    with torch.no_grad():
        fan_in, fan_out = initializers.fans(tuple(core.weight.shape), layout)
        initializers.initialize_(
            core.weight, layer["kernel_initializer"], fan_in=fan_in, fan_out=fan_out, generator=generator
        )
        if core.bias is not None:
            # Keras computes a bias's fans from its own shape (n,): (n, n).
            b_in, b_out = initializers.fans(tuple(core.bias.shape), "keras")
            initializers.initialize_(
                core.bias, layer["bias_initializer"], fan_in=b_in, fan_out=b_out, generator=generator
            )


# ---------------------------------------------------------------------------------------------
# The layer types, one row each


def _identity_output(layer: Layer, shape: Shape, where: str) -> Shape:
    return shape


def _dense_output(layer: Layer, shape: Shape, where: str) -> Shape:
    if len(shape) != 1:
        raise SpecError(
            f'Dense needs a flat input but gets shape {shape}; put {{ type = "Flatten" }} before it', path=where
        )
    return (layer["units"],)


def _dense_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    count = shape[0] * layer["units"] + layer["units"] * layer["use_bias"]
    return count, count


def _dense_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    core = nn.Linear(shape[0], layer["units"], bias=layer["use_bias"])
    _init(core, layer, "dense", generator)
    return [core]


def _conv_window(layer: Layer) -> tuple[Pair, Pair]:
    return _pair(layer["kernel_size"]), _pair(layer["strides"])


def _pool_window(layer: Layer) -> tuple[Pair, Pair]:
    """Keras' pooling strides default to the pool size."""
    return _pair(layer["pool_size"]), _pair(layer["strides"] or layer["pool_size"])


def _window_output(layer: Layer, shape: Shape, where: str, window: tuple[Pair, Pair], channels: int | None) -> Shape:
    """The (channels, height, width) after a sliding window of (size, strides) over an image;
    ``channels`` None keeps the input's."""
    kind = layer["type"]
    if len(shape) != 3:
        raise SpecError(f"{kind} needs an image input (channels, height, width) but gets shape {shape}", path=where)
    k, s = window
    hw = [_out_size(n, kk, ss, layer["padding"]) for n, kk, ss in zip(shape[1:], k, s)]
    if min(hw) < 1:
        raise SpecError(f"{kind} leaves no pixels: input {shape} with window {k} and 'valid' padding", path=where)
    return (shape[0] if channels is None else channels, *hw)


def _conv_output(layer: Layer, shape: Shape, where: str) -> Shape:
    return _window_output(layer, shape, where, _conv_window(layer), layer["filters"])


def _pool_output(layer: Layer, shape: Shape, where: str) -> Shape:
    return _window_output(layer, shape, where, _pool_window(layer), None)


def _conv_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    kh, kw = _pair(layer["kernel_size"])
    count = kh * kw * shape[0] * layer["filters"] + layer["filters"] * layer["use_bias"]
    return count, count


def _conv_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    modules, core = _padded_conv(layer, shape, layer["filters"], groups=1, bias=layer["use_bias"])
    _init(core, layer, "conv2d", generator)
    return [*modules, core]


def _padded_conv(
    layer: Layer, shape: Shape, out_channels: int, *, groups: int, bias: bool
) -> tuple[list[nn.Module], nn.Conv2d]:
    """The convolution of a layer's window, and the modules before it: TensorFlow's 'same'
    padding is symmetric padding in the convolution when it can be, else an explicit zero pad
    before it (the extra pixel after)."""
    k, s = _conv_window(layer)
    pads = [(0, 0), (0, 0)]
    if layer["padding"] == "same":
        pads = [_same_pads(n, kk, ss) for n, kk, ss in zip(shape[1:], k, s)]
    symmetric = all(a == b for a, b in pads)
    modules: list[nn.Module] = []
    if not symmetric:
        modules.append(nn.ZeroPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1])))
    core = nn.Conv2d(
        shape[0],
        out_channels,
        k,
        stride=s,
        groups=groups,
        bias=bias,
        padding=(pads[0][0], pads[1][0]) if symmetric else 0,
    )
    return modules, core


def _pool_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    """'same' padding pads with -inf, which no window's maximum picks."""
    k, s = _pool_window(layer)
    modules: list[nn.Module] = []
    if layer["padding"] == "same":
        pads = [_same_pads(n, kk, ss) for n, kk, ss in zip(shape[1:], k, s)]
        if any(sum(p) for p in pads):
            modules.append(nn.ConstantPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1]), float("-inf")))
    return [*modules, nn.MaxPool2d(k, s)]


def _flatten_output(layer: Layer, shape: Shape, where: str) -> Shape:
    return (math.prod(shape),)


def _flatten_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [nn.Flatten()]


def _dropout_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [Dropout(layer["rate"])]


def _batch_norm_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    """gamma (``scale``) and beta (``center``) train; the moving mean and variance do not."""
    channels = shape[0]
    trainable = channels * (layer["center"] + layer["scale"])
    return trainable + 2 * channels, trainable


def _batch_norm_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    bn = KerasBatchNorm(shape[0], momentum=layer["momentum"], epsilon=layer["epsilon"])
    bn.weight.requires_grad_(layer["scale"])
    bn.bias.requires_grad_(layer["center"])
    return [bn]


def _no_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return []


def _image_output(layer: Layer, shape: Shape, where: str) -> Shape:
    """The shape of a layer that keeps its image input's shape; a SpecError for a flat input."""
    if len(shape) != 3:
        raise SpecError(
            f"{layer['type']} needs an image input (channels, height, width) but gets shape {shape}", path=where
        )
    return shape


def _same_pad_pairs(layer: Layer, shape: Shape, window: tuple[Pair, Pair]) -> tuple[Pair, ...]:
    """((top, bottom), (left, right)) of a window layer's padding: TensorFlow's for 'same', none for 'valid'."""
    if layer["padding"] != "same":
        return ((0, 0), (0, 0))
    k, s = window
    return tuple(_same_pads(n, kk, ss) for n, kk, ss in zip(shape[1:], k, s))


def _avg_pool_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    window = _pool_window(layer)
    return [AveragePool(*window, _same_pad_pairs(layer, shape, window))]


def _global_pool_output(layer: Layer, shape: Shape, where: str) -> Shape:
    channels = _image_output(layer, shape, where)[0]
    return (channels, 1, 1) if layer["keepdims"] else (channels,)


def _global_pool(mode: str) -> Callable[[Layer, Shape, torch.Generator], list[nn.Module]]:
    def modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
        return [GlobalPool(mode, layer["keepdims"])]

    return modules


def _norm_dims(layer: Layer, shape: Shape, where: str) -> tuple[int, ...]:
    """The torch dimensions a LayerNormalization normalises, from Keras' ``axis`` on Keras'
    channels-last input (batch, height, width, channels) or (batch, features): ``-1``, the
    default, is the channels of an image and the features of a flat input."""
    axes = layer["axis"] if isinstance(layer["axis"], list) else [layer["axis"]]
    rank = len(shape) + 1
    to_torch = {1: 2, 2: 3, 3: 1} if len(shape) == 3 else {k: k for k in range(1, rank)}
    out = []
    for axis in axes:
        k = axis + rank if axis < 0 else axis
        if not 1 <= k < rank:
            layout = "(batch, height, width, channels)" if len(shape) == 3 else "(batch, features)"
            allowed = "1 or -1" if rank == 2 else f"1 to {rank - 1} or -{rank - 1} to -1"
            raise SpecError(
                f"axis {axis} is not a feature axis of the input; Keras' axes of this input {layout} are {allowed}",
                path=join(where, "axis"),
            )
        if to_torch[k] in out:
            raise SpecError(f"axis {axis} is given twice", path=join(where, "axis"))
        out.append(to_torch[k])
    return tuple(sorted(out))


def _layer_norm_output(layer: Layer, shape: Shape, where: str) -> Shape:
    _norm_dims(layer, shape, where)
    return shape


def _layer_norm_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    """gamma (``scale``) and beta (``center``), each the size of the normalised axes, both trained."""
    size = math.prod(shape[d - 1] for d in _norm_dims(layer, shape, "model"))
    count = size * (layer["center"] + layer["scale"])
    return count, count


def _layer_norm_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    dims = _norm_dims(layer, shape, "model")
    return [KerasLayerNorm(shape, dims, epsilon=layer["epsilon"], center=layer["center"], scale=layer["scale"])]


def _spatial_dropout_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [SpatialDropout(layer["rate"])]


def _depthwise_output(layer: Layer, shape: Shape, where: str) -> Shape:
    channels, *hw = _window_output(layer, shape, where, _conv_window(layer), None)
    return (channels * layer["depth_multiplier"], *hw)


def _separable_output(layer: Layer, shape: Shape, where: str) -> Shape:
    return _window_output(layer, shape, where, _conv_window(layer), layer["filters"])


def _depthwise_count(layer: Layer, shape: Shape) -> int:
    """The depthwise kernel's size: Keras' shape (kh, kw, channels, depth_multiplier)."""
    kh, kw = _pair(layer["kernel_size"])
    return kh * kw * shape[0] * layer["depth_multiplier"]


def _depthwise_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    outputs = shape[0] * layer["depth_multiplier"]
    count = _depthwise_count(layer, shape) + outputs * layer["use_bias"]
    return count, count


def _separable_weights(layer: Layer, shape: Shape) -> tuple[int, int]:
    """The depthwise kernel, the pointwise kernel (1, 1, channels * depth_multiplier, filters), the bias."""
    pointwise = shape[0] * layer["depth_multiplier"] * layer["filters"]
    count = _depthwise_count(layer, shape) + pointwise + layer["filters"] * layer["use_bias"]
    return count, count


def _init_tensor(
    tensor: torch.Tensor, config: Mapping[str, Any], keras_shape: Shape, generator: torch.Generator
) -> None:
    """Fill ``tensor`` from an initializer with the fans Keras computes for its weight of ``keras_shape``."""
    fan_in, fan_out = initializers.fans(keras_shape, "keras")
    with torch.no_grad():
        initializers.initialize_(tensor, config, fan_in=fan_in, fan_out=fan_out, generator=generator)


def _depthwise_conv(
    layer: Layer, shape: Shape, bias: bool, generator: torch.Generator
) -> tuple[list[nn.Module], nn.Conv2d]:
    """A grouped convolution, one group per input channel: output channel ``c * depth_multiplier
    + m`` is input channel ``c``'s ``m``-th filter, Keras' order. Its kernel is initialized with
    the fans of Keras' depthwise kernel (kh, kw, channels, depth_multiplier)."""
    multiplier = layer["depth_multiplier"]
    modules, core = _padded_conv(layer, shape, shape[0] * multiplier, groups=shape[0], bias=bias)
    kh, kw = _pair(layer["kernel_size"])
    _init_tensor(core.weight, layer["depthwise_initializer"], (kh, kw, shape[0], multiplier), generator)
    return modules, core


def _depthwise_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    modules, core = _depthwise_conv(layer, shape, layer["use_bias"], generator)
    if core.bias is not None:
        _init_tensor(core.bias, layer["bias_initializer"], tuple(core.bias.shape), generator)
    return [*modules, core]


def _separable_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    """The depthwise convolution (no bias, with the layer's strides and padding), then a 1x1
    pointwise convolution to ``filters`` channels with the bias, as Keras' SeparableConv2D."""
    modules, depthwise = _depthwise_conv(layer, shape, False, generator)
    channels = shape[0] * layer["depth_multiplier"]
    pointwise = nn.Conv2d(channels, layer["filters"], 1, bias=layer["use_bias"])
    _init_tensor(pointwise.weight, layer["pointwise_initializer"], (1, 1, channels, layer["filters"]), generator)
    if pointwise.bias is not None:
        _init_tensor(pointwise.bias, layer["bias_initializer"], tuple(pointwise.bias.shape), generator)
    return [*modules, depthwise, pointwise]


def _span(value: float | list[float]) -> tuple[float, float]:
    """Keras' factor: a number ``f`` is [-|f|, |f|], a list is [lower, upper] sorted."""
    if isinstance(value, list):
        low, high = sorted(value)
        return float(low), float(high)
    return -abs(float(value)), abs(float(value))


def _crop_output(layer: Layer, shape: Shape, where: str) -> Shape:
    channels, h, w = _image_output(layer, shape, where)
    if layer["height"] > h or layer["width"] > w:
        raise SpecError(
            f"RandomCrop crops to {layer['height']}x{layer['width']} pixels but its input is only {h}x{w}; "
            f"the target must fit in the image",
            path=where,
        )
    return (channels, layer["height"], layer["width"])


def _flip_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [augment.RandomFlip(layer["mode"])]


def _fill(layer: Layer) -> tuple[str, str, float]:
    return layer["fill_mode"], layer["interpolation"], layer["fill_value"]


def _translation_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [augment.RandomTranslation(_span(layer["height_factor"]), _span(layer["width_factor"]), *_fill(layer))]


def _rotation_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [augment.RandomRotation(_span(layer["factor"]), *_fill(layer))]


def _zoom_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    width = None if layer["width_factor"] is None else _span(layer["width_factor"])
    return [augment.RandomZoom(_span(layer["height_factor"]), width, *_fill(layer))]


def _crop_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    return [augment.RandomCrop(layer["height"], layer["width"])]


def _contrast_modules(layer: Layer, shape: Shape, generator: torch.Generator) -> list[nn.Module]:
    """Keras' contrast factor: a number ``f`` draws from [1 - f, 1 + f], a list [lower, upper]
    from [1 - lower, 1 + upper]."""
    factor = layer["factor"]
    lower, upper = sorted(factor) if isinstance(factor, list) else (factor, factor)
    low, high = layer["value_range"]
    return [augment.RandomContrast((float(lower), float(upper)), (float(low), float(high)))]


LAYER_DEFS: dict[str, LayerDef] = {
    "Dense": LayerDef(_DENSE, _dense_output, _dense_modules, _dense_weights, width="units"),
    "Conv2D": LayerDef(
        _CONV,
        _conv_output,
        _conv_modules,
        _conv_weights,
        aliases=("Convolution2D",),
        width="filters",
        window=_conv_window,
    ),
    "MaxPooling2D": LayerDef(_POOL, _pool_output, _pool_modules, aliases=("MaxPool2D",), window=_pool_window),
    "Flatten": LayerDef({}, _flatten_output, _flatten_modules),
    "Dropout": LayerDef({"rate": required(float, check=fraction)}, _identity_output, _dropout_modules),
    "BatchNormalization": LayerDef(_BATCH_NORM, _identity_output, _batch_norm_modules, _batch_norm_weights),
    "Activation": LayerDef({"activation": required(str, dict)}, _identity_output, _no_modules),
    "AveragePooling2D": LayerDef(_POOL, _pool_output, _avg_pool_modules, aliases=("AvgPool2D",), window=_pool_window),
    "GlobalAveragePooling2D": LayerDef(
        {"keepdims": param(False, bool)}, _global_pool_output, _global_pool("average"), aliases=("GlobalAvgPool2D",)
    ),
    "GlobalMaxPooling2D": LayerDef(
        {"keepdims": param(False, bool)}, _global_pool_output, _global_pool("max"), aliases=("GlobalMaxPool2D",)
    ),
    "LayerNormalization": LayerDef(_LAYER_NORM, _layer_norm_output, _layer_norm_modules, _layer_norm_weights),
    "SpatialDropout2D": LayerDef({"rate": required(float, check=fraction)}, _image_output, _spatial_dropout_modules),
    "DepthwiseConv2D": LayerDef(
        _DEPTHWISE, _depthwise_output, _depthwise_modules, _depthwise_weights, window=_conv_window
    ),
    "SeparableConv2D": LayerDef(
        _SEPARABLE,
        _separable_output,
        _separable_modules,
        _separable_weights,
        aliases=("SeparableConvolution2D",),
        window=_conv_window,
    ),
    "RandomFlip": LayerDef(
        {"mode": param("horizontal_and_vertical", str, check=one_of(*augment.FLIP_MODES))},
        _image_output,
        _flip_modules,
    ),
    "RandomTranslation": LayerDef(_TRANSLATION, _image_output, _translation_modules),
    "RandomRotation": LayerDef(
        {"factor": required(float, list, check=_factor(-1, 1)), **_FILL}, _image_output, _rotation_modules
    ),
    "RandomZoom": LayerDef(_ZOOM, _image_output, _zoom_modules),
    "RandomCrop": LayerDef(
        {"height": required(int, check=positive), "width": required(int, check=positive)}, _crop_output, _crop_modules
    ),
    "RandomContrast": LayerDef(_CONTRAST, _image_output, _contrast_modules),
}
"""Every layer type by its Keras name."""
LAYERS = Registry("layer type", {name: Entry(d.params, aliases=d.aliases) for name, d in LAYER_DEFS.items()})
"""The layer types' names, aliases and parameters, for resolving a layer table."""
WEIGHTED = tuple(name for name, d in LAYER_DEFS.items() if d.width is not None)
"""The layer types with a kernel (Dense, Conv2D): the model-level ``activation`` and
``kernel_initializer`` reach them, and stage edits count them as hidden layers."""


def check_output(
    model: Mapping[str, Any], input_shape: Shape, task: str, loss: str, num_classes: int, path: str = "model"
) -> None:
    """The last layer must fit the task: ``num_classes`` units with softmax (or linear logits) for
    classification, one linear-ish unit for regression. A factory model's module is run once on
    zeros to check the same (:func:`trainlab.factory_models.check`)."""
    if factory_models.is_factory(model):
        factory_models.check(model, tuple(input_shape), path)
        return
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
                path=join(where, "activation"),
                allowed=["softmax", "linear"],
            )
    else:
        if out != (1,):
            raise SpecError(f"a regression output must have 1 unit, it has shape {out}", path=where)
        if act == "softmax":
            raise SpecError("softmax makes no sense on a single regression output", path=join(where, "activation"))
