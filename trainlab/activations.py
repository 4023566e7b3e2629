"""Activations by Keras name, built as ``torch.nn`` modules."""

from __future__ import annotations

from torch import nn

from trainlab.registry import Entry, Registry, fraction, non_negative, param, positive

ACTIVATIONS = Registry(
    "activation",
    {
        "linear": Entry(build=nn.Identity, aliases=("none", "identity")),
        "sigmoid": Entry(build=nn.Sigmoid),
        "tanh": Entry(build=nn.Tanh),
        "relu": Entry(build=nn.ReLU),
        # Keras' LeakyReLU layer: negative_slope 0.3 (the function keras.activations.leaky_relu says 0.2).
        "leaky_relu": Entry(
            {"alpha": param(0.3, float, check=non_negative)},
            build=lambda alpha: nn.LeakyReLU(alpha),
            aliases=("leakyrelu",),
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
