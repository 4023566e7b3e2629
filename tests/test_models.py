"""The model builder: Keras layer semantics, shapes, parameter counts, determinism."""

from __future__ import annotations

import pytest
import torch

from trainlab import models
from trainlab.errors import SpecError

MLP = {"layers": [
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]}


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
    cnn = {"layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "BatchNormalization"},
        {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
        {"type": "Dropout", "rate": 0.25},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]}
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
    model = models.resolve({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 8}, {"type": "BatchNormalization"},
                                        {"type": "Dense", "units": 10}]}, (1, 4, 4))
    bn = models.build(model, (1, 4, 4), seed=0).body[2]
    assert isinstance(bn, models.KerasBatchNorm)
    assert bn.momentum == pytest.approx(0.99) and bn.epsilon == pytest.approx(1e-3)


def test_l2_regularizer_adds_keras_penalty() -> None:
    model = models.resolve({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "kernel_regularizer": {"l2": 0.01}}]}, (1, 2, 2))
    net = models.build(model, (1, 2, 2), seed=0)
    expected = 0.01 * net.body[1].weight.square().sum()
    assert torch.allclose(net.penalty(), expected)
    assert models.resolve({"layers": [{"type": "Dense", "units": 1, "kernel_regularizer": "l1"}]})["layers"][0]["kernel_regularizer"] == {"l1": 0.01, "l2": 0.0}


def test_activation_parameters_reach_the_module() -> None:
    model = models.resolve({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 4, "activation": {"name": "leaky_relu", "alpha": 0.5}},
                                       {"type": "Dense", "units": 10}]}, (1, 2, 2))
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
