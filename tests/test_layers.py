"""The values the new layer types compute, against hand computations of Keras' definitions.

AveragePooling2D with 'same' padding divides each window's sum by the real pixels in it
(TensorFlow's rule, which Keras 3 documents); LayerNormalization is Keras 3's formula with
epsilon 1e-3 on Keras' channels-last axes; SpatialDropout2D drops whole feature maps; depthwise
and separable convolutions are written out in numpy; their kernels take the fans of Keras'
kernel shapes. None of them is hand-lowered: the lowered SGD step leaves them to autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from trainlab import models
from trainlab.errors import SpecError


def built(layers: list[dict[str, Any]], shape: tuple[int, ...], seed: int = 0) -> models.Net:
    return models.build(models.resolve({"layers": layers}, shape), shape, seed=seed).eval()


def run(layer: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return built([layer], tuple(x.shape[1:]))(x)


NINE = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
"""[[1, 2, 3], [4, 5, 6], [7, 8, 9]]"""


@pytest.mark.parametrize(
    ("layer", "x", "expected"),
    [
        # strides 1, 'same': one pixel of padding after, each window the mean of its real pixels.
        (
            {"type": "AveragePooling2D", "pool_size": 2, "strides": 1, "padding": "same"},
            NINE,
            [[3.0, 4.0, 4.5], [6.0, 7.0, 7.5], [7.5, 8.5, 9.0]],
        ),
        # strides 2, 'same': 3 -> 2 pixels, the last window of each axis holds one row or column.
        ({"type": "AveragePooling2D", "padding": "same"}, NINE, [[3.0, 4.5], [7.5, 9.0]]),
        # 'valid' over [[1..4], [5..8], [9..12]] with 2x2 windows and strides 2.
        ({"type": "AvgPool2D"}, torch.arange(1.0, 13.0).reshape(1, 1, 3, 4), [[3.5, 5.5]]),
    ],
    ids=["same-strides-1", "same-strides-2", "valid"],
)
def test_average_pooling_matches_hand_computation(layer: dict[str, Any], x: torch.Tensor, expected: list) -> None:
    assert torch.equal(run(layer, x), torch.tensor([[expected]]))


def test_global_pooling_takes_each_channels_mean_and_maximum() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-1.0, -5.0], [0.0, -2.0]]]])
    assert torch.equal(run({"type": "GlobalAveragePooling2D"}, x), torch.tensor([[3.0, -2.0]]))
    assert torch.equal(run({"type": "GlobalMaxPooling2D"}, x), torch.tensor([[6.0, 0.0]]))
    kept = run({"type": "GlobalAvgPool2D", "keepdims": True}, x)
    assert torch.equal(kept, torch.tensor([3.0, -2.0]).reshape(1, 2, 1, 1))


def keras_layer_norm(x: np.ndarray, axes: tuple[int, ...], gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Keras' formula in float64 numpy on a channels-last array: mean and variance over ``axes``,
    ``(x - mean) / sqrt(var + 1e-3) * gamma + beta`` (gamma and beta shaped as those axes)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return (x - mean) / np.sqrt(var + 1e-3) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize(
    ("axis", "keras_axes"),
    [(-1, (3,)), (3, (3,)), ([1, 2], (1, 2)), ([-3, -2, -1], (1, 2, 3))],
    ids=["channels", "channels-by-index", "height-width", "whole-image"],
)
def test_layer_normalization_of_images_matches_keras_on_channels_last(axis: Any, keras_axes: tuple[int, ...]) -> None:
    """The input is given channels first; Keras' axes count on the channels-last layout
    (batch, height, width, channels). Small channel counts and a near-constant map make
    epsilon matter."""
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(3, 2, 4, 5)).astype(np.float32)
    x[0, :, 0, 0] = [0.5, 0.51]
    net = built([{"type": "LayerNormalization", "axis": axis}], (2, 4, 5))
    norm = net.body[0]
    channels_last = x.transpose(0, 2, 3, 1)
    shape = tuple(channels_last.shape[a] for a in keras_axes)
    gamma = rng.normal(1.0, 0.5, size=shape)
    beta = rng.normal(0.0, 0.5, size=shape)
    # The module holds gamma and beta over the same axes in torch's order (channels before pixels).
    to_torch = {3: 0, 1: 1, 2: 2}
    order = sorted(range(len(keras_axes)), key=lambda i: to_torch[keras_axes[i]])
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(gamma.transpose(order)))
        norm.bias.copy_(torch.from_numpy(beta.transpose(order)))
        out = net(torch.from_numpy(x)).numpy()
    want = keras_layer_norm(channels_last, keras_axes, gamma, beta).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_layer_normalization_of_features_with_epsilon_one_thousandth() -> None:
    """Two features 0.02 apart: variance 1e-4, so the output is +-0.01 / sqrt(1e-4 + 1e-3)."""
    out = run({"type": "LayerNormalization"}, torch.tensor([[1.0, 1.02], [3.0, -1.0]]))
    expected = torch.tensor([[-0.01, 0.01], [2.0, -2.0]]) / torch.sqrt(torch.tensor([[1e-4 + 1e-3], [4.0 + 1e-3]]))
    assert torch.allclose(out, expected, rtol=1e-5)
    no_gamma = built([{"type": "LayerNormalization", "scale": False, "center": False}], (2,)).body[0]
    assert no_gamma.weight is None and no_gamma.bias is None and not list(no_gamma.parameters())


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        (4, "axis 4 is not a feature axis"),
        (0, "axis 0 is not a feature axis"),
        (-4, "axis -4 is not a feature axis"),
        ([-1, 3], "axis 3 is given twice"),
        ([], "must be an axis or a non-empty list of axes"),
        ([1, "2"], "must be an axis or a non-empty list of axes"),
    ],
)
def test_a_layer_normalization_axis_outside_the_input_names_its_key_path(axis: Any, message: str) -> None:
    """Keras' axes of an image input (batch, height, width, channels) are 1..3 or -3..-1."""
    layers = [{"type": "Dropout", "rate": 0.1}, {"type": "LayerNormalization", "axis": axis}]
    with pytest.raises(SpecError, match=message) as info:
        models.resolve({"layers": layers}, (3, 4, 4))
    assert info.value.path == "model.layers[1].axis"
    with pytest.raises(SpecError, match=r"axis 2 is not a feature axis.*\(batch, features\).*1 or -1"):
        models.resolve({"layers": [{"type": "Flatten"}, {"type": "LayerNormalization", "axis": 2}]}, (3, 4, 4))


def test_spatial_dropout_drops_whole_channels_in_training_only() -> None:
    net = built([{"type": "SpatialDropout2D", "rate": 0.5}], (8, 3, 3))
    x = torch.ones(16, 8, 3, 3)
    assert torch.equal(net(x), x)
    torch.manual_seed(0)
    out = net.train()(x)
    maps = out.reshape(16, 8, 9)
    assert torch.equal(maps.amin(-1), maps.amax(-1)), "each feature map is kept or dropped whole"
    assert set(maps[:, :, 0].unique().tolist()) == {0.0, 2.0}, "kept maps are scaled by 1 / (1 - rate)"
    assert 0.3 < float((maps[:, :, 0] == 0).float().mean()) < 0.7
    assert net.stochastic and not built([{"type": "LayerNormalization"}], (8, 3, 3)).stochastic


def test_dropout_keeps_the_inputs_whose_uniform_draw_reaches_the_rate_scaled_as_keras() -> None:
    """Keras' formula, ``where(mask, x / (1 - rate), 0)``, with the mask drawn here by hand from the
    same generator state: the inputs whose uniform number is at least the rate are kept."""
    net = built([{"type": "Flatten"}, {"type": "Dropout", "rate": 0.25}], (4, 3, 3))
    x = torch.arange(1.0, 1 + 8 * 36).reshape(8, 4, 3, 3)
    assert torch.equal(net(x), x.reshape(8, 36)), "the identity in inference"
    torch.manual_seed(3)
    out = net.train()(x)
    torch.manual_seed(3)
    u = torch.rand(8, 36)
    expected = torch.where(u >= 0.25, x.reshape(8, 36) / 0.75, torch.zeros(()))
    assert torch.equal(out, expected)
    assert 0.15 < float((out == 0).float().mean()) < 0.35
    assert net.stochastic
    assert not any(name.endswith("rate") for name in net.state_dict()), "saved weights hold no rate"


def correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'valid' cross-correlation of one 2-d map with one 2-d kernel, as a convolution layer computes."""
    kh, kw = kernel.shape
    h, w = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    return np.array([[(image[i : i + kh, j : j + kw] * kernel).sum() for j in range(w)] for i in range(h)])


def test_depthwise_convolution_filters_each_channel_alone_in_keras_order() -> None:
    """Output channel ``c * depth_multiplier + m`` is input channel ``c`` through its ``m``-th kernel."""
    layer = {"type": "DepthwiseConv2D", "kernel_size": [2, 3], "depth_multiplier": 2, "bias_initializer": "ones"}
    net = built([layer], (3, 4, 5))
    conv = net.body[0]
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x).numpy()
    kernels, xs = conv.weight.detach().numpy(), x.numpy()
    for n in range(2):
        for c in range(3):
            for m in range(2):
                want = correlate(xs[n, c], kernels[c * 2 + m, 0]) + 1.0
                np.testing.assert_allclose(out[n, c * 2 + m], want, rtol=1e-5, atol=1e-5)


def test_separable_convolution_is_depthwise_then_pointwise() -> None:
    layer = {
        "type": "SeparableConv2D",
        "filters": 4,
        "kernel_size": 2,
        "bias_initializer": {"name": "constant", "value": 0.5},
    }
    net = built([layer], (3, 3, 3))
    depthwise, pointwise = net.body
    x = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = net(x).numpy()
    dk = depthwise.weight.detach().numpy()
    pk = pointwise.weight.detach().numpy()[:, :, 0, 0]  # (filters, channels)
    for n in range(2):
        maps = np.stack([correlate(x.numpy()[n, c], dk[c, 0]) for c in range(3)])  # (3, 2, 2)
        want = np.einsum("fc,chw->fhw", pk, maps) + 0.5
        np.testing.assert_allclose(out[n], want, rtol=1e-5, atol=1e-5)
    assert depthwise.bias is None, "the bias is the pointwise convolution's alone"


def test_depthwise_and_pointwise_kernels_take_keras_fans() -> None:
    """glorot_uniform's limit is sqrt(6 / (fan_in + fan_out)) with Keras' fans of the kernel's
    Keras shape: depthwise (5, 5, 16, 2) -> (16 * 25, 2 * 25), limit sqrt(6 / 450); pointwise
    (1, 1, 32, 64) -> (32, 64), limit sqrt(6 / 96). Torch's conv2d fans of the depthwise weight
    (32, 1, 5, 5) would give sqrt(6 / 825), below most of the drawn values."""
    layer = {"type": "SeparableConv2D", "filters": 64, "kernel_size": 5, "depth_multiplier": 2}
    depthwise, pointwise = built([layer], (16, 9, 9)).body
    for weight, limit in ((depthwise.weight.detach(), (6 / 450) ** 0.5), (pointwise.weight.detach(), (6 / 96) ** 0.5)):
        assert float(weight.abs().max()) <= limit
        assert float(weight.abs().max()) > 0.95 * limit
    assert float(depthwise.weight.detach().abs().max()) > (6 / 825) ** 0.5


def test_same_seed_same_kernels() -> None:
    layer = {"type": "SeparableConv2D", "filters": 3, "kernel_size": 3}
    a, b, c = (built([layer], (2, 5, 5), seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["body.0.weight"], c["body.0.weight"])


NEW_LAYERS: dict[str, tuple[list[dict[str, Any]], tuple[int, ...]]] = {
    "LayerNormalization": ([{"type": "Flatten"}, {"type": "LayerNormalization"}], (1, 4, 4)),
    "AveragePooling2D": ([{"type": "AveragePooling2D"}, {"type": "Flatten"}], (1, 4, 4)),
    "GlobalAveragePooling2D": ([{"type": "GlobalAveragePooling2D"}], (16, 2, 2)),
    "GlobalMaxPooling2D": ([{"type": "GlobalMaxPooling2D"}], (16, 2, 2)),
    "SpatialDropout2D": ([{"type": "SpatialDropout2D", "rate": 0.2}, {"type": "Flatten"}], (1, 4, 4)),
    "DepthwiseConv2D": ([{"type": "DepthwiseConv2D", "kernel_size": 1}, {"type": "Flatten"}], (1, 4, 4)),
    "SeparableConv2D": ([{"type": "SeparableConv2D", "filters": 1, "kernel_size": 1}, {"type": "Flatten"}], (1, 4, 4)),
    "RandomFlip": ([{"type": "RandomFlip"}, {"type": "Flatten"}], (1, 4, 4)),
    "RandomTranslation": (
        [{"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1}, {"type": "Flatten"}],
        (1, 4, 4),
    ),
    "RandomRotation": ([{"type": "RandomRotation", "factor": 0.1}, {"type": "Flatten"}], (1, 4, 4)),
    "RandomZoom": ([{"type": "RandomZoom", "height_factor": 0.1}, {"type": "Flatten"}], (1, 4, 4)),
    "RandomCrop": ([{"type": "RandomCrop", "height": 4, "width": 4}, {"type": "Flatten"}], (1, 4, 4)),
    "RandomContrast": ([{"type": "RandomContrast", "factor": 0.1}, {"type": "Flatten"}], (1, 4, 4)),
}
"""Each new layer type in a small SGD network the lowered step would otherwise take."""


def test_every_new_layer_type_is_in_the_lowered_step_check() -> None:
    old = {"Dense", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "BatchNormalization", "Activation"}
    assert set(NEW_LAYERS) == set(models.LAYER_DEFS) - old


@pytest.mark.parametrize("kind", NEW_LAYERS)
def test_the_lowered_sgd_step_leaves_the_new_layers_to_autograd(kind: str) -> None:
    """lower() takes Flatten, Dense and a few activations only; with the new layer the model trains
    in the autograd loop (or a population), without it the same network is lowered."""
    from trainlab.engine.lowered import lower
    from trainlab.optim import Optimizer, resolve
    from trainlab.trial import TrainSettings

    settings = TrainSettings(1, 4, "sparse_categorical_crossentropy", True, "val_loss", "last", None, None)
    layers, shape = NEW_LAYERS[kind]
    dense = [{"type": "Dense", "units": 4, "activation": "relu"}, {"type": "Dense", "units": 3}]
    plain = [{"type": "Flatten"}] if len(shape) == 3 else []
    for model, lowered in (([*layers, *dense], False), ([*plain, *dense], True)):
        net = models.build(models.resolve({"layers": model}, shape), shape, seed=0)
        optimizer = Optimizer(list(net.parameters()), resolve("sgd"))
        assert (lower(net, optimizer, settings, "classification") is not None) == lowered, model
