"""Torch modules for the Keras layers that torch has no exact counterpart of.

Each module computes what its Keras 3 layer computes, on trainlab's channels-first layout
(N, C, H, W); :mod:`trainlab.models` decides which module a layer table builds. Modules that
draw noise in training (:class:`Dropout`, :class:`SpatialDropout`) draw it from torch's global
generator: the engine seeds it from the trial seed and the epoch, and a population's
``vmap(..., randomness="same")`` gives every member the draw a single model makes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AveragePool(nn.Module):
    """Keras' ``AveragePooling2D``: the mean over each window of the pixels inside the image.

    With ``"same"`` padding TensorFlow pads the input (the extra pixel after) and divides each
    window's sum by the number of real pixels in it, not by the window's size; torch's
    ``count_include_pad=False`` does that only for symmetric padding, so the count is pooled
    from a mask of ones padded as the input is. ``pads`` is ((top, bottom), (left, right)).
    """

    def __init__(self, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.kernel = kernel
        self.strides = strides
        self.pads = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
        """F.pad's order: left, right, top, bottom."""

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, strides={self.strides}, pads={self.pads}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return F.avg_pool2d(x, self.kernel, self.strides)
        summed = F.avg_pool2d(F.pad(x, self.pads), self.kernel, self.strides, divisor_override=1)
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        counted = F.avg_pool2d(F.pad(ones, self.pads), self.kernel, self.strides, divisor_override=1)
        return summed / counted


class GlobalPool(nn.Module):
    """Keras' ``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D``: the mean or maximum of each
    channel over height and width; (N, C), or (N, C, 1, 1) with ``keepdims``."""

    def __init__(self, mode: str, keepdims: bool) -> None:
        super().__init__()
        if mode not in ("average", "max"):
            raise ValueError(f"mode must be 'average' or 'max', got {mode!r}")
        self.mode = mode
        self.keepdims = keepdims

    def extra_repr(self) -> str:
        return f"mode={self.mode}, keepdims={self.keepdims}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "average":
            return x.mean(dim=(-2, -1), keepdim=self.keepdims)
        return x.amax(dim=(-2, -1), keepdim=self.keepdims)


class KerasLayerNorm(nn.Module):
    """Keras 3's ``LayerNormalization`` over the torch dimensions ``dims`` of each example.

    ``(x - mean) / sqrt(variance + epsilon) * gamma + beta`` with the mean and the biased
    variance over ``dims``; ``gamma`` (``weight``, ones) and ``beta`` (``bias``, zeros) span
    those dimensions and exist only with ``scale`` and ``center``, as in Keras, so that the
    parameters counted are the parameters trained. ``shape`` is the input's shape without the
    batch dimension; the weights have the sizes of ``dims`` in it, in torch's order.
    """

    def __init__(self, shape: tuple[int, ...], dims: tuple[int, ...], *, epsilon: float, center: bool, scale: bool):
        super().__init__()
        self.dims = tuple(sorted(dims))
        self.epsilon = epsilon
        self.broadcast = tuple(shape[d - 1] if d in self.dims else 1 for d in range(1, len(shape) + 1))
        """The weights' shape as they multiply an example (1 on the dimensions not normalised)."""
        weight_shape = tuple(shape[d - 1] for d in self.dims)
        self.weight = nn.Parameter(torch.ones(weight_shape)) if scale else None
        self.bias = nn.Parameter(torch.zeros(weight_shape)) if center else None

    def extra_repr(self) -> str:
        return (
            f"dims={self.dims}, epsilon={self.epsilon}, scale={self.weight is not None}, center={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance, mean = torch.var_mean(x, dim=self.dims, keepdim=True, correction=0)
        out = (x - mean) * torch.rsqrt(variance + self.epsilon)
        if self.weight is not None:
            out = out * self.weight.reshape(self.broadcast)
        if self.bias is not None:
            out = out + self.bias.reshape(self.broadcast)
        return out


class Dropout(nn.Module):
    """Keras' ``Dropout``: in training, each input is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``, or zeroed (Keras' ``where(mask, x / keep, 0)``); in inference
    the identity.

    The rate lives in a tensor (a buffer left out of the state dict), not in the module's
    structure, so that trials differing only in their dropout rates share a population: the
    stacked members each carry their own rate, and under ``vmap(..., randomness="same")`` they
    draw the same uniform numbers a single model with the shared seed draws, each keeping the
    inputs whose number is at least its rate. A member therefore drops what it would drop
    trained alone (tests/engine/test_population.py). Saved weights hold no rate: the study's
    layer table says it.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate: torch.Tensor
        self.register_buffer("rate", torch.tensor(float(rate)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = torch.rand_like(x) >= self.rate
        return torch.where(keep, x / (1 - self.rate), torch.zeros((), dtype=x.dtype, device=x.device))


class SpatialDropout(nn.Module):
    """Keras' ``SpatialDropout2D``: in training, each example's each channel is kept whole with
    probability ``1 - rate`` (and scaled by ``1 / (1 - rate)``) or zeroed whole; in inference the
    identity. The noise has shape (N, C, 1, 1), Keras' ``noise_shape`` for channels."""

    draws_noise = True

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def extra_repr(self) -> str:
        return f"rate={self.rate}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run outside compiled programs, as the augmentation layers (``draws_noise``)."""
        if not self.training or self.rate == 0:
            return x
        keep = torch.rand((x.shape[0], x.shape[1], 1, 1), dtype=x.dtype, device=x.device) >= self.rate
        return torch.where(keep, x / (1 - self.rate), torch.zeros((), dtype=x.dtype, device=x.device))
