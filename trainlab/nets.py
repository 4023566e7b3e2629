"""The network contract every trainer takes, whatever built the network: :class:`Net`.

The engine trains a :class:`Net`: ``forward`` gives logits (classification) or predictions
(regression), ``predict`` applies the output activation in eval mode, ``penalties`` and
``penalty`` add kernel regularization to the loss, and ``stochastic`` says whether training
draws noise per example. :mod:`trainlab.models` builds one from layer tables,
:mod:`trainlab.factory_models` wraps a user's module in one. The size limits both are held to
are here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.layers import Dropout

Shape = tuple[int, ...]

MAX_PARAMETERS = 100_000_000
"""The largest model trainlab builds: 400 MB of float32 weights, before optimizer state and
before a population stacks K copies. A study asking for more is refused before anything is
allocated (a typo like ``units = 1000000000`` would otherwise take the machine's memory)."""
MAX_VALUES = 10_000_000
"""The most values one layer may output (or pad its input to) per example: 40 MB in float32,
times the batch size, times what backpropagation keeps."""


@dataclass(frozen=True)
class LayerSummary:
    """One row of a Keras-style model summary."""

    name: str
    type: str
    output_shape: Shape
    params: int
    trainable: int


class Net(nn.Module):
    """The built model: ``forward`` gives logits (classification) or predictions (regression).

    A final softmax is kept apart in ``output_activation`` and applied by :meth:`predict`, so
    that training can use the stable cross-entropy on logits.
    """

    def __init__(
        self, body: nn.Sequential, output_activation: nn.Module, penalties: list[tuple[str, float, float]]
    ) -> None:
        super().__init__()
        self.body = body
        self.output_activation = output_activation
        self.penalties = penalties
        """(parameter name, l1, l2) of every regularized kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @property
    def stochastic(self) -> bool:
        """Whether training draws random noise per example (Dropout, SpatialDropout2D, RReLU, the
        augmentation layers)."""
        return any(
            isinstance(m, (Dropout, nn.Dropout, nn.RReLU)) or getattr(m, "draws_noise", False) for m in self.body
        )

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
