"""Activations by Keras name, built as ``torch.nn`` modules."""

from __future__ import annotations

from torch import nn

from trainlab.registry import Entry, Registry, fraction, non_negative, param, positive

LEAKY_RELU_SLOPE = 0.2
"""Keras 3's ``keras.activations.leaky_relu`` default ``negative_slope``."""

ACTIVATIONS = Registry(
    "activation",
    {
        "linear": Entry(build=nn.Identity, aliases=("none", "identity")),
        "sigmoid": Entry(build=nn.Sigmoid),
        "tanh": Entry(build=nn.Tanh),
        "relu": Entry(build=nn.ReLU),
        # Keras 3's activation function keras.activations.leaky_relu(x, negative_slope=0.2), which
        # activation="leaky_relu" and Activation("leaky_relu") call. (Keras' LeakyReLU *layer*
        # defaults to negative_slope=0.3: write negative_slope = 0.3 for it.) Keras 2 named the
        # slope alpha; either name is accepted.
        "leaky_relu": Entry(
            {"negative_slope": param(LEAKY_RELU_SLOPE, float, check=non_negative)},
            build=lambda negative_slope: nn.LeakyReLU(negative_slope),
            aliases=("leakyrelu",),
            renamed={"alpha": "negative_slope"},
        ),
        # Randomized leaky ReLU (Xu et al. 2015): slope drawn from U(lower, upper) in training,
        # their mean at evaluation; not in Keras, torch's defaults.
        "rrelu": Entry(
            {"lower": param(1 / 8, float, check=fraction), "upper": param(1 / 3, float, check=fraction)},
            build=lambda lower, upper: nn.RReLU(lower, upper),
        ),
        "elu": Entry({"alpha": param(1.0, float, check=positive)}, build=lambda alpha: nn.ELU(alpha)),
        "selu": Entry(build=nn.SELU),
        "gelu": Entry(build=nn.GELU),
        "swish": Entry(build=nn.SiLU, aliases=("silu",)),
        "softplus": Entry(build=nn.Softplus),
        "softsign": Entry(build=nn.Softsign),
        "softmax": Entry(build=lambda: nn.Softmax(dim=1)),
    },
)
