"""The model builder: Keras layer semantics, shapes, parameter counts, determinism."""

from __future__ import annotations

import pytest
import torch

from trainlab import models
from trainlab.errors import SpecError

MLP = {
    "layers": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 64, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
}


def test_report_b_mlp_has_109386_parameters() -> None:
    rows = models.summary(models.resolve(MLP, (1, 28, 28)), (1, 28, 28))
    assert [r.name for r in rows] == ["flatten_1", "dense_1", "dense_2", "dense_3"]
    assert [r.output_shape for r in rows] == [(784,), (128,), (64,), (10,)]
    assert sum(r.params for r in rows) == 109_386
    net = models.build(models.resolve(MLP, (1, 28, 28)), (1, 28, 28), seed=0)
    assert sum(p.numel() for p in net.parameters()) == 109_386


def test_report_e_baseline_has_7850_parameters() -> None:
    model = models.resolve({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
    assert sum(r.params for r in models.summary(model, (1, 28, 28))) == 7_850


def test_softmax_is_kept_for_prediction_and_forward_gives_logits() -> None:
    model = models.resolve(MLP, (1, 28, 28))
    net = models.build(model, (1, 28, 28), seed=1).eval()
    x = torch.rand(5, 1, 28, 28)
    logits = net(x)
    probs = net.predict(x)
    assert torch.allclose(probs, torch.softmax(logits, dim=1))
    assert torch.allclose(probs.sum(1), torch.ones(5))


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    model = models.resolve(MLP, (1, 28, 28))
    a, b, c = (models.build(model, (1, 28, 28), seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["body.1.weight"], c["body.1.weight"])
    assert torch.count_nonzero(a["body.1.bias"]) == 0


def test_glorot_uniform_bounds_hold_for_the_built_kernel() -> None:
    net = models.build(models.resolve(MLP, (1, 28, 28)), (1, 28, 28), seed=0)
    w = net.body[1].weight
    limit = (6 / (784 + 128)) ** 0.5
    assert w.abs().max() <= limit
    assert w.abs().max() > 0.9 * limit


def test_cnn_same_padding_and_pooling_shapes_match_keras() -> None:
    cnn = {
        "layers": [
            {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "BatchNormalization"},
            {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
            {"type": "Conv2D", "filters": 64, "kernel_size": 3, "strides": 2, "padding": "same"},
            {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
            {"type": "Dropout", "rate": 0.25},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    }
    model = models.resolve(cnn, (1, 28, 28))
    rows = models.summary(model, (1, 28, 28))
    # Keras: 28 -> same conv 28 -> pool same 14 -> conv stride 2 same 7 -> pool same 4 (ceil(7/2))
    assert [r.output_shape for r in rows][:5] == [(32, 28, 28), (32, 28, 28), (32, 14, 14), (64, 7, 7), (64, 4, 4)]
    bn = rows[1]
    assert (bn.params, bn.trainable) == (128, 64)
    assert rows[0].params == 3 * 3 * 1 * 32 + 32
    net = models.build(model, (1, 28, 28), seed=0).eval()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) == sum(r.trainable for r in rows)


def test_batch_norm_uses_keras_momentum_and_epsilon() -> None:
    model = models.resolve(
        {
            "layers": [
                {"type": "Flatten"},
                {"type": "Dense", "units": 8},
                {"type": "BatchNormalization"},
                {"type": "Dense", "units": 10},
            ]
        },
        (1, 4, 4),
    )
    bn = models.build(model, (1, 4, 4), seed=0).body[2]
    assert isinstance(bn, models.KerasBatchNorm)
    assert bn.momentum == pytest.approx(0.99) and bn.epsilon == pytest.approx(1e-3)


def test_l2_regularizer_adds_keras_penalty() -> None:
    model = models.resolve(
        {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "kernel_regularizer": {"l2": 0.01}}]}, (1, 2, 2)
    )
    net = models.build(model, (1, 2, 2), seed=0)
    expected = 0.01 * net.body[1].weight.square().sum()
    assert torch.allclose(net.penalty(), expected)
    assert models.resolve({"layers": [{"type": "Dense", "units": 1, "kernel_regularizer": "l1"}]})["layers"][0][
        "kernel_regularizer"
    ] == {"l1": 0.01, "l2": 0.0}


def test_activation_parameters_reach_the_module() -> None:
    model = models.resolve(
        {
            "layers": [
                {"type": "Flatten"},
                {"type": "Dense", "units": 4, "activation": {"name": "leaky_relu", "alpha": 0.5}},
                {"type": "Dense", "units": 10},
            ]
        },
        (1, 2, 2),
    )
    act = models.build(model, (1, 2, 2), seed=0).body[2]
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.5


def test_shape_errors_name_the_layer() -> None:
    with pytest.raises(SpecError, match=r"model.layers\[0\].*image input"):
        models.resolve({"layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3}]}, (784,))
    with pytest.raises(SpecError, match=r"model.layers\[0\].*leaves no pixels"):
        models.resolve({"layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 5}]}, (1, 3, 3))
    with pytest.raises(SpecError, match=r"model.layers\[1\].rate"):
        models.resolve({"layers": [{"type": "Flatten"}, {"type": "Dropout", "rate": 1.5}]}, (1, 3, 3))
    with pytest.raises(SpecError, match=r"model.layers\[0\].units.*required"):
        models.resolve({"layers": [{"type": "Dense"}]})


# One table of every layer type: each case is a layer on an input shape, with the output shape
# and the (parameters, trainable parameters) Keras' model.summary() shows, computed by hand:
# Dense in*units + units (bias); Conv2D kh*kw*in_channels*filters + filters (bias), output
# floor((n - k) / s) + 1 ('valid') or ceil(n / s) ('same'); BatchNormalization 2*C trainable
# (gamma, beta) + 2*C non-trainable (moving mean, variance); and the torch modules it builds.
LAYER_CASES: dict[str, tuple[dict, tuple[int, ...], tuple[int, ...], int, int, list[str]]] = {
    "dense": ({"type": "Dense", "units": 10}, (784,), (10,), 7850, 7850, ["Linear"]),
    "dense without bias": ({"type": "Dense", "units": 4, "use_bias": False}, (3,), (4,), 12, 12, ["Linear"]),
    "conv valid": (
        {"type": "Conv2D", "filters": 32, "kernel_size": 3},
        (1, 28, 28),
        (32, 26, 26),
        320,
        320,
        ["Conv2d"],
    ),
    "conv same strided": (
        {"type": "Conv2D", "filters": 8, "kernel_size": [3, 5], "strides": 2, "padding": "same"},
        (3, 7, 9),
        (8, 4, 5),
        368,
        368,
        ["Conv2d"],
    ),
    "conv without bias": (
        {"type": "Convolution2D", "filters": 4, "kernel_size": 2, "strides": [1, 3], "use_bias": False},
        (2, 6, 10),
        (4, 5, 3),
        32,
        32,
        ["Conv2d"],
    ),
    "pool": ({"type": "MaxPooling2D"}, (32, 26, 26), (32, 13, 13), 0, 0, ["MaxPool2d"]),
    "pool same": (
        {"type": "MaxPool2D", "pool_size": 3, "padding": "same"},
        (4, 7, 7),
        (4, 3, 3),
        0,
        0,
        ["ConstantPad2d", "MaxPool2d"],
    ),
    "pool strided": (
        {"type": "MaxPooling2D", "pool_size": [2, 3], "strides": 1},
        (2, 5, 6),
        (2, 4, 4),
        0,
        0,
        ["MaxPool2d"],
    ),
    "flatten": ({"type": "Flatten"}, (32, 13, 13), (5408,), 0, 0, ["Flatten"]),
    "dropout": ({"type": "Dropout", "rate": 0.5}, (10,), (10,), 0, 0, ["Dropout"]),
    "batch norm": ({"type": "BatchNormalization"}, (16,), (16,), 64, 32, ["KerasBatchNorm"]),
    "batch norm of channels, no beta": (
        {"type": "BatchNormalization", "center": False},
        (8, 5, 5),
        (8, 5, 5),
        24,
        8,
        ["KerasBatchNorm"],
    ),
    "batch norm, nothing trains": (
        {"type": "BatchNormalization", "center": False, "scale": False},
        (6,),
        (6,),
        12,
        0,
        ["KerasBatchNorm"],
    ),
    "activation": ({"type": "Activation", "activation": "relu"}, (3, 4, 4), (3, 4, 4), 0, 0, ["ReLU"]),
    # AveragePooling2D: MaxPooling2D's shapes. Global pooling: (C,), or (C, 1, 1) with keepdims.
    "average pool": ({"type": "AveragePooling2D"}, (4, 6, 6), (4, 3, 3), 0, 0, ["AveragePool"]),
    "average pool same": (
        {"type": "AvgPool2D", "pool_size": 3, "padding": "same"},
        (2, 7, 7),
        (2, 3, 3),
        0,
        0,
        ["AveragePool"],
    ),
    "global average pool": ({"type": "GlobalAveragePooling2D"}, (8, 5, 5), (8,), 0, 0, ["GlobalPool"]),
    "global max pool, dims kept": (
        {"type": "GlobalMaxPool2D", "keepdims": True},
        (8, 5, 3),
        (8, 1, 1),
        0,
        0,
        ["GlobalPool"],
    ),
    # LayerNormalization: gamma and beta span the normalised axes (Keras' axis -1: the features,
    # or an image's channels), both trainable.
    "layer norm": ({"type": "LayerNormalization"}, (16,), (16,), 32, 32, ["KerasLayerNorm"]),
    "layer norm of an image's channels": (
        {"type": "LayerNormalization"},
        (8, 5, 5),
        (8, 5, 5),
        16,
        16,
        ["KerasLayerNorm"],
    ),
    "layer norm of whole images, no beta": (
        {"type": "LayerNormalization", "axis": [1, 2, 3], "center": False},
        (3, 4, 5),
        (3, 4, 5),
        60,
        60,
        ["KerasLayerNorm"],
    ),
    "spatial dropout": ({"type": "SpatialDropout2D", "rate": 0.3}, (4, 5, 5), (4, 5, 5), 0, 0, ["SpatialDropout"]),
    # DepthwiseConv2D: kh*kw*C*depth_multiplier + C*depth_multiplier (bias), C*depth_multiplier
    # channels out. SeparableConv2D: that depthwise kernel + C*depth_multiplier*filters (the 1x1
    # pointwise kernel) + filters (bias).
    "depthwise": ({"type": "DepthwiseConv2D", "kernel_size": 3}, (3, 8, 8), (3, 6, 6), 30, 30, ["Conv2d"]),
    "depthwise same strided, multiplier 2": (
        {"type": "DepthwiseConv2D", "kernel_size": [3, 5], "strides": 2, "padding": "same", "depth_multiplier": 2},
        (2, 7, 9),
        (4, 4, 5),
        64,
        64,
        ["Conv2d"],
    ),
    "separable": (
        {"type": "SeparableConv2D", "filters": 8, "kernel_size": 3},
        (3, 8, 8),
        (8, 6, 6),
        59,
        59,
        ["Conv2d", "Conv2d"],
    ),
    "separable same, multiplier 2, no bias": (
        {
            "type": "SeparableConvolution2D",
            "filters": 4,
            "kernel_size": 2,
            "padding": "same",
            "depth_multiplier": 2,
            "use_bias": False,
        },
        (2, 5, 5),
        (4, 5, 5),
        32,
        32,
        ["ZeroPad2d", "Conv2d", "Conv2d"],
    ),
    # The augmentation layers keep the image's shape, but RandomCrop, which gives its target's.
    "random flip": ({"type": "RandomFlip"}, (1, 8, 8), (1, 8, 8), 0, 0, ["RandomFlip"]),
    "random translation": (
        {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": [-0.2, 0.3]},
        (3, 6, 7),
        (3, 6, 7),
        0,
        0,
        ["RandomTranslation"],
    ),
    "random rotation": ({"type": "RandomRotation", "factor": 0.1}, (1, 8, 8), (1, 8, 8), 0, 0, ["RandomRotation"]),
    "random zoom": ({"type": "RandomZoom", "height_factor": -0.2}, (2, 5, 9), (2, 5, 9), 0, 0, ["RandomZoom"]),
    "random crop": ({"type": "RandomCrop", "height": 5, "width": 6}, (3, 8, 8), (3, 5, 6), 0, 0, ["RandomCrop"]),
    "random contrast": ({"type": "RandomContrast", "factor": 0.5}, (3, 4, 4), (3, 4, 4), 0, 0, ["RandomContrast"]),
}


def test_layer_cases_cover_every_layer_type() -> None:
    covered = {models.LAYERS.canonical(layer["type"], "") for layer, *_ in LAYER_CASES.values()}
    assert covered == set(models.LAYER_DEFS)
    assert set(models.LAYERS.names()) == set(models.LAYER_DEFS)
    assert models.WEIGHTED == ("Dense", "Conv2D")


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_shape_and_parameters_match_keras(case: str) -> None:
    layer, shape, expected_shape, params, trainable, _ = LAYER_CASES[case]
    model = models.resolve({"layers": [layer]}, shape)
    assert models.shapes(model, shape) == [expected_shape]
    [row] = models.summary(model, shape)
    assert (row.output_shape, row.params, row.trainable) == (expected_shape, params, trainable)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_built_layer_has_the_shape_and_parameters_it_declares(case: str) -> None:
    """The torch module, counted apart from the formulas: trainable = parameters that train,
    non-trainable = a batch norm's moving statistics."""
    layer, shape, expected_shape, params, trainable, modules = LAYER_CASES[case]
    net = models.build(models.resolve({"layers": [layer]}, shape), shape, seed=0).eval()
    assert [type(m).__name__ for m in net.body] == modules
    assert net(torch.rand(2, *shape)).shape == (2, *expected_shape)
    trains = sum(p.numel() for p in net.parameters() if p.requires_grad)
    moving = sum(b.numel() for name, b in net.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert (trains + moving, trains) == (params, trainable)


# Every layer type whose output shape can refuse its input: (layer, input shape, message).
SHAPE_ERRORS: dict[str, tuple[dict, tuple[int, ...], str]] = {
    "Dense on an image": (
        {"type": "Dense", "units": 3},
        (1, 4, 4),
        'Dense needs a flat input but gets shape (1, 4, 4); put { type = "Flatten" } before it',
    ),
    "Conv2D on a vector": (
        {"type": "Conv2D", "filters": 2, "kernel_size": 3},
        (16,),
        "Conv2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "Conv2D too large": (
        {"type": "Conv2D", "filters": 2, "kernel_size": [2, 5]},
        (1, 4, 4),
        "Conv2D leaves no pixels: input (1, 4, 4) with window (2, 5) and 'valid' padding",
    ),
    "MaxPooling2D on a vector": (
        {"type": "MaxPooling2D"},
        (16,),
        "MaxPooling2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "MaxPooling2D too large": (
        {"type": "MaxPooling2D", "pool_size": 5},
        (2, 3, 3),
        "MaxPooling2D leaves no pixels: input (2, 3, 3) with window (5, 5) and 'valid' padding",
    ),
    "AveragePooling2D too large": (
        {"type": "AveragePooling2D", "pool_size": [1, 4]},
        (2, 3, 3),
        "AveragePooling2D leaves no pixels: input (2, 3, 3) with window (1, 4) and 'valid' padding",
    ),
    "GlobalAveragePooling2D on a vector": (
        {"type": "GlobalAveragePooling2D"},
        (16,),
        "GlobalAveragePooling2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "GlobalMaxPooling2D on a vector": (
        {"type": "GlobalMaxPooling2D"},
        (16,),
        "GlobalMaxPooling2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "SpatialDropout2D on a vector": (
        {"type": "SpatialDropout2D", "rate": 0.1},
        (16,),
        "SpatialDropout2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "DepthwiseConv2D too large": (
        {"type": "DepthwiseConv2D", "kernel_size": 4},
        (2, 3, 8),
        "DepthwiseConv2D leaves no pixels: input (2, 3, 8) with window (4, 4) and 'valid' padding",
    ),
    "SeparableConv2D on a vector": (
        {"type": "SeparableConv2D", "filters": 2, "kernel_size": 3},
        (16,),
        "SeparableConv2D needs an image input (channels, height, width) but gets shape (16,)",
    ),
    "RandomFlip on a vector": (
        {"type": "RandomFlip"},
        (16,),
        "RandomFlip needs an image input (channels, height, width) but gets shape (16,)",
    ),
    **{
        f"{layer['type']} on a vector": (
            layer,
            (16,),
            f"{layer['type']} needs an image input (channels, height, width) but gets shape (16,)",
        )
        for layer in (
            {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
            {"type": "RandomRotation", "factor": 0.1},
            {"type": "RandomZoom", "height_factor": 0.1},
            {"type": "RandomCrop", "height": 1, "width": 1},
            {"type": "RandomContrast", "factor": 0.1},
        )
    },
    "RandomCrop larger than the image": (
        {"type": "RandomCrop", "height": 4, "width": 9},
        (1, 8, 8),
        "RandomCrop crops to 4x9 pixels but its input is only 8x8; the target must fit in the image",
    ),
}


@pytest.mark.parametrize("case", SHAPE_ERRORS)
def test_a_layer_that_cannot_apply_names_its_key_path(case: str) -> None:
    layer, shape, reason = SHAPE_ERRORS[case]
    model = models.resolve({"layers": [{"type": "Dropout", "rate": 0.1}, layer]})
    with pytest.raises(SpecError) as info:
        models.shapes(model, shape, path="stage[0].model")
    assert (info.value.path, info.value.reason) == ("stage[0].model.layers[1]", reason)


def test_same_padding_limit_uses_each_windows_strides() -> None:
    """A 'same' window of size k and strides s pads n pixels to (ceil(n / s) - 1) * s + k a side.
    A 3150-wide convolution (strides 1) pads 28 pixels to 27 + 3150 = 3177: 1 x 3177 x 3177 =
    10,093,329 values, over the 10M limit; a 3150-wide pooling (strides 3150, its size) pads them
    to 3150: 9,922,500 values, allowed."""
    with pytest.raises(SpecError, match=r"Conv2D with 'same' padding pads its input \(1, 28, 28\) to 3177x3177 pixels"):
        models.resolve(
            {"layers": [{"type": "Conv2D", "filters": 1, "kernel_size": 3150, "padding": "same"}]}, (1, 28, 28)
        )
    pooled = models.resolve({"layers": [{"type": "MaxPooling2D", "pool_size": 3150, "padding": "same"}]}, (1, 28, 28))
    assert models.shapes(pooled, (1, 28, 28)) == [(1, 1, 1)]
    with pytest.raises(
        SpecError, match=r"MaxPooling2D with 'same' padding pads its input \(1, 28, 28\) to 3200x3200 pixels"
    ):
        models.resolve({"layers": [{"type": "MaxPooling2D", "pool_size": 3200, "padding": "same"}]}, (1, 28, 28))
