"""Keras' image augmentation layers as torch modules: random in training, fixed in inference.

``RandomFlip``, ``RandomTranslation``, ``RandomRotation``, ``RandomZoom``, ``RandomCrop`` and
``RandomContrast`` draw one set of random values per batch (per image, or one crop position per
batch as Keras' ``RandomCrop`` does) and transform the whole batch with a few tensor operations:
the geometric ones sample every image at once with ``torch.nn.functional.grid_sample``. In
inference (``module.eval()``) every one of them is the identity, except ``RandomCrop``, which
then crops the centre to the target's aspect ratio and resizes it to the target size, as
Keras documents.

The random values come from torch's global generator, as Dropout's noise does: the engine seeds
it at the start of every epoch from the trial seed and the epoch
(:func:`trainlab.engine.loop.epoch_batches`), so a resumed trial augments exactly as an
uninterrupted one, and a population (``vmap(..., randomness="same")``) augments its one batch
once, the same for every member.

Coordinates follow Keras' transforms: pixel centres at integer positions, a transform maps each
output pixel to the input position it is read from, and points outside the image are filled
by ``fill_mode``:

- ``reflect``: ``d c b a | a b c d | d c b a``, reflected about the image's edge;
- ``wrap``: ``a b c d | a b c d | a b c d``;
- ``constant``: ``k k k k | a b c d | k k k k`` with ``k = fill_value``;
- ``nearest``: ``a a a a | a b c d | d d d d``.

``interpolation`` is ``bilinear`` (each output value from the four input pixels around its
position, filled ones included) or ``nearest``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class Augmentation(nn.Module):
    """An augmentation layer: ``forward`` transforms in training and is the identity in inference
    (unless the subclass says otherwise in :meth:`infer`)."""

    draws_noise = True
    """Draws its own noise: run outside compiled programs (:mod:`trainlab.engine.population`), so
    that a compiled population step augments as the same step run eagerly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x) if self.training else self.infer(x)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return x


def uniform(n: int, lower: float, upper: float, like: torch.Tensor) -> torch.Tensor:
    """``n`` draws from U[lower, upper) of the global generator, in ``like``'s dtype and device."""
    return lower + (upper - lower) * torch.rand(n, dtype=like.dtype, device=like.device)


def affine_sample(
    x: torch.Tensor, matrix: torch.Tensor, fill_mode: str, fill_value: float, interpolation: str
) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) resampled through its transform.

    ``matrix`` (N, 2, 3) maps an output pixel's (column, row, 1) to the input position
    (column, row) its value is read from, in pixels.
    """
    n, _, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype, device=x.device).reshape(1, h, 1)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).reshape(1, 1, w)
    m = matrix.reshape(n, 6, 1, 1)
    src_x = m[:, 0] * cols + m[:, 1] * rows + m[:, 2]
    src_y = m[:, 3] * cols + m[:, 4] * rows + m[:, 5]
    padding = {"reflect": "reflection", "constant": "zeros", "nearest": "border", "wrap": "border"}[fill_mode]
    source, width, height = x, w, h
    if fill_mode == "wrap":
        # Wrapped positions lie in [0, size); one more row and column (copies of the first) let
        # bilinear sampling past the last pixel read the first.
        src_x, src_y = torch.remainder(src_x, w), torch.remainder(src_y, h)
        source, width, height = F.pad(x, (0, 1, 0, 1), mode="circular"), w + 1, h + 1
    elif fill_mode == "constant" and fill_value != 0:
        source = x - fill_value
    # grid_sample's coordinates with align_corners=False: -1 and 1 are the image's outer edges.
    grid = torch.stack(((2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1), dim=-1)
    out = F.grid_sample(source, grid, mode=interpolation, padding_mode=padding, align_corners=False)
    return out + fill_value if fill_mode == "constant" and fill_value != 0 else out


def centred(matrix: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A linear map (N, 2, 2) about the image's centre as the (N, 2, 3) affine transform
    ``p -> A (p - c) + c`` with ``c = ((w - 1) / 2, (h - 1) / 2)``."""
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=matrix.dtype, device=matrix.device)
    offset = centre - (matrix @ centre)
    return torch.cat((matrix, offset.unsqueeze(-1)), dim=-1)


class RandomFlip(Augmentation):
    """Keras 3's ``RandomFlip``: each image is flipped with probability 1/2 (one draw per image,
    ``uniform <= 0.5``); ``horizontal_and_vertical`` flips it both ways together on that one draw."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in FLIP_MODES:
            raise ValueError(f"mode must be one of {FLIP_MODES}, got {mode!r}")
        self.mode = mode

    def extra_repr(self) -> str:
        return f"mode={self.mode}"

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        flips = (torch.rand(x.shape[0], dtype=x.dtype, device=x.device) <= 0.5).reshape(-1, 1, 1, 1)
        dims = {"horizontal": [-1], "vertical": [-2], "horizontal_and_vertical": [-2, -1]}[self.mode]
        return torch.where(flips, x.flip(dims), x)


class _Affine(Augmentation):
    """A random affine resampling with Keras' ``fill_mode``, ``fill_value`` and ``interpolation``."""

    def __init__(self, fill_mode: str, interpolation: str, fill_value: float) -> None:
        super().__init__()
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = fill_value

    def extra_repr(self) -> str:
        return f"fill_mode={self.fill_mode}, interpolation={self.interpolation}, fill_value={self.fill_value}"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's random transforms, (N, 2, 3)."""
        raise NotImplementedError

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return affine_sample(x, self.matrix(x), self.fill_mode, self.fill_value, self.interpolation)


class RandomTranslation(_Affine):
    """Keras' ``RandomTranslation``: each image shifted by ``U[lower, upper) * size`` pixels down
    (``height_factor``) and right (``width_factor``); negative shifts go up and left."""

    def __init__(
        self,
        height: tuple[float, float],
        width: tuple[float, float],
        fill_mode: str,
        interpolation: str,
        fill_value: float,
    ) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.height = height
        self.width = width

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}, {super().extra_repr()}"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dy = uniform(n, *self.height, x) * h
        dx = uniform(n, *self.width, x) * w
        one, zero = torch.ones_like(dx), torch.zeros_like(dx)
        return torch.stack((one, zero, -dx, zero, one, -dy), dim=-1).reshape(n, 2, 3)


class RandomRotation(_Affine):
    """Keras' ``RandomRotation``: each image rotated about its centre by ``U[lower, upper) * 360``
    degrees, counter-clockwise for positive angles."""

    def __init__(self, factor: tuple[float, float], fill_mode: str, interpolation: str, fill_value: float) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.factor = factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}, {super().extra_repr()}"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = uniform(n, self.factor[0] * 2 * math.pi, self.factor[1] * 2 * math.pi, x)
        cos, sin = torch.cos(angle), torch.sin(angle)
        return centred(torch.stack((cos, -sin, sin, cos), dim=-1).reshape(n, 2, 2), h, w)


class RandomZoom(_Affine):
    """Keras' ``RandomZoom``: each image scaled about its centre; the input is read over
    ``U[1 + lower, 1 + upper)`` times the output's extent, so a positive factor zooms out and a
    negative one zooms in. Without ``width`` the width takes the height's zoom."""

    def __init__(
        self,
        height: tuple[float, float],
        width: tuple[float, float] | None,
        fill_mode: str,
        interpolation: str,
        fill_value: float,
    ) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.height = height
        self.width = width

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}, {super().extra_repr()}"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        zy = uniform(n, 1 + self.height[0], 1 + self.height[1], x)
        zx = zy if self.width is None else uniform(n, 1 + self.width[0], 1 + self.width[1], x)
        zero = torch.zeros_like(zx)
        return centred(torch.stack((zx, zero, zero, zy), dim=-1).reshape(n, 2, 2), h, w)


class RandomCrop(Augmentation):
    """Keras' ``RandomCrop`` to ``height`` x ``width``, at most the input's size.

    In training, when the input is larger both ways, one window at a random position (the same
    for the whole batch, as Keras crops a batch) with ``start = floor(U[0, size - target + 1))``
    per axis; otherwise, and in inference, the centre window of the target's aspect ratio,
    resized to the target (bilinear, no antialiasing: Keras' ``image.resize`` default), which
    is the identity when the input has the target's size.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}"

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if not (h > self.height and w > self.width):
            return self.infer(x)
        room = torch.tensor([h - self.height + 1, w - self.width + 1], dtype=torch.float64, device=x.device)
        starts = torch.floor(torch.rand(2, dtype=torch.float64, device=x.device) * room).long()
        rows = starts[0] + torch.arange(self.height, device=x.device)
        cols = starts[1] + torch.arange(self.width, device=x.device)
        return x.index_select(-2, rows).index_select(-1, cols)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        crop_h = max(min(h, int(w * self.height / self.width)), 1)
        crop_w = max(min(w, int(h * self.width / self.height)), 1)
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        window = x[..., top : top + crop_h, left : left + crop_w]
        if (crop_h, crop_w) == (self.height, self.width):
            return window
        return F.interpolate(window, size=(self.height, self.width), mode="bilinear", align_corners=False)


class RandomContrast(Augmentation):
    """Keras' ``RandomContrast``: each image's channels moved away from (or toward) their mean,
    ``(x - mean) * f + mean`` with one ``f ~ U[1 - lower, 1 + upper)`` per image and the mean of
    each channel over its pixels, then clipped to ``value_range``."""

    def __init__(self, factor: tuple[float, float], value_range: tuple[float, float]) -> None:
        super().__init__()
        self.factor = factor
        self.value_range = value_range

    def extra_repr(self) -> str:
        return f"factor={self.factor}, value_range={self.value_range}"

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        f = uniform(x.shape[0], 1 - self.factor[0], 1 + self.factor[1], x).reshape(-1, 1, 1, 1)
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return ((x - mean) * f + mean).clamp(self.value_range[0], self.value_range[1])
