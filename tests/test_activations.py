"""Activations by Keras name: leaky_relu's slope, its two parameter names, and where each default comes from.

Keras 3 documents ``keras.activations.leaky_relu(x, negative_slope=0.2)`` (what
``activation="leaky_relu"`` and ``Activation("leaky_relu")`` call) and
``keras.layers.LeakyReLU(negative_slope=0.3)``; Keras 2 called the slope ``alpha``. The function
is ``x`` for ``x >= 0`` and ``negative_slope * x`` below.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainlab import models
from trainlab.activations import ACTIVATIONS
from trainlab.errors import SpecError

KERAS3_FUNCTION_SLOPE = 0.2
KERAS3_LAYER_SLOPE = 0.3
X = torch.tensor([-5.0, -1.0, -0.25, 0.0, 0.5, 3.0])


def keras_leaky_relu(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """Keras 3's formula, written out: x where x >= 0, negative_slope * x elsewhere."""
    return torch.tensor([v if v >= 0 else negative_slope * v for v in x.tolist()])


def slope_applied(config: Any) -> float:
    """The slope the built module applies, read from its output on -1 (not from its attributes)."""
    module = ACTIVATIONS.build(ACTIVATIONS.resolve(config, "activation"))
    return -float(module(torch.tensor([-1.0]))[0])


def test_the_string_activation_is_keras_3s_function_with_slope_0_2() -> None:
    assert ACTIVATIONS.resolve("leaky_relu", "activation") == {
        "name": "leaky_relu",
        "negative_slope": KERAS3_FUNCTION_SLOPE,
    }
    module = ACTIVATIONS.build(ACTIVATIONS.resolve("leaky_relu", "activation"))
    torch.testing.assert_close(module(X), keras_leaky_relu(X, KERAS3_FUNCTION_SLOPE))


@pytest.mark.parametrize("written", ["leaky_relu", "LeakyReLU", "leakyrelu", {"name": "leaky_relu"}])
def test_every_spelling_of_the_activation_name_is_the_function(written: Any) -> None:
    """Names fold case and underscores, so "LeakyReLU" is the activation function too, not the layer."""
    assert slope_applied(written) == pytest.approx(KERAS3_FUNCTION_SLOPE)


@pytest.mark.parametrize("key", ["negative_slope", "alpha"])
def test_keras_3_and_keras_2_names_give_the_same_parameter(key: str) -> None:
    resolved = ACTIVATIONS.resolve({"name": "leaky_relu", key: KERAS3_LAYER_SLOPE}, "activation")
    assert resolved == {"name": "leaky_relu", "negative_slope": KERAS3_LAYER_SLOPE}, "one resolved form: one trial hash"
    module = ACTIVATIONS.build(resolved)
    torch.testing.assert_close(module(X), keras_leaky_relu(X, KERAS3_LAYER_SLOPE))


def test_giving_both_names_is_refused_naming_both() -> None:
    with pytest.raises(SpecError) as info:
        models.resolve(
            {
                "layers": [
                    {
                        "type": "Dense",
                        "units": 2,
                        "activation": {"name": "leaky_relu", "negative_slope": 0.3, "alpha": 0.3},
                    }
                ]
            }
        )
    message = str(info.value)
    assert "model.layers[0].activation.alpha" in message
    assert "'negative_slope' and 'alpha'" in message
    assert info.value.allowed == ["alpha", "negative_slope"]


def test_an_unknown_parameter_lists_the_keras_3_name() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'slope'") as info:
        ACTIVATIONS.resolve({"name": "leaky_relu", "slope": 0.1}, "activation")
    assert info.value.allowed == ["negative_slope"]


def test_a_negative_slope_below_zero_is_refused_under_either_name() -> None:
    for key in ("negative_slope", "alpha"):
        with pytest.raises(SpecError, match=r"activation.negative_slope: must be >= 0"):
            ACTIVATIONS.resolve({"name": "leaky_relu", key: -0.1}, "activation")


def test_the_activation_layer_and_the_model_default_use_the_function_slope() -> None:
    """Keras' Activation("leaky_relu") layer calls the function; so do trainlab's Activation layer
    and the model-level activation."""
    model = models.resolve(
        {
            "activation": "leaky_relu",
            "layers": [
                {"type": "Dense", "units": 4},
                {"type": "Activation", "activation": "leaky_relu"},
                {"type": "Dense", "units": 2},
            ],
        },
        (3,),
    )
    net = models.build(model, (3,), seed=0)
    slopes = [m.negative_slope for m in net.body if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [KERAS3_FUNCTION_SLOPE, KERAS3_FUNCTION_SLOPE]


def test_keras_leaky_relu_layer_default_is_one_parameter_away() -> None:
    """trainlab has no LeakyReLU layer type; Keras' layer default is written as a parameter."""
    with pytest.raises(SpecError, match=r"unknown layer type 'LeakyReLU'"):
        models.resolve({"layers": [{"type": "LeakyReLU"}]})
    assert slope_applied({"name": "leaky_relu", "negative_slope": KERAS3_LAYER_SLOPE}) == pytest.approx(
        KERAS3_LAYER_SLOPE
    )
