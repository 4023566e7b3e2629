"""Keras' weight initializers, drawn from an explicit ``torch.Generator``.

Names, defaults and distributions follow Keras 3 (``keras/src/initializers``): a study that
says ``he_normal`` gets Keras' truncated normal with ``stddev = sqrt(2 / fan_in)`` measured
after truncation, not PyTorch's untruncated one. Every random draw takes the caller's
generator, so a trial's weights depend only on its seed.

Fans are passed in rather than read from the tensor because PyTorch stores weights as
(out, in, ...) where Keras has (..., in, out): ``fans(shape, layout)`` translates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trainlab.errors import SpecError
from trainlab.registry import split_name

__all__ = ["INITIALIZERS", "InitializerDef", "fans", "initialize_", "resolve"]

TRUNCATED_STDDEV_FACTOR = 0.87962566103423978
"""Standard deviation of a unit normal truncated to [-2, 2]; Keras divides by it so that the
truncated draw has the intended standard deviation."""

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


@dataclass(frozen=True)
class InitializerDef:
    """One initializer: its Keras defaults and, for the VarianceScaling family, its fixed settings."""

    name: str
    defaults: Mapping[str, Any]
    variance_scaling: Mapping[str, Any] | None = None


def _vs(scale: float, mode: str, distribution: str) -> dict[str, Any]:
    return {"scale": scale, "mode": mode, "distribution": distribution}


INITIALIZERS: dict[str, InitializerDef] = {
    d.name: d
    for d in [
        InitializerDef("zeros", {}),
        InitializerDef("ones", {}),
        InitializerDef("constant", {"value": 0.0}),
        InitializerDef("random_normal", {"mean": 0.0, "stddev": 0.05}),
        InitializerDef("random_uniform", {"minval": -0.05, "maxval": 0.05}),
        InitializerDef("truncated_normal", {"mean": 0.0, "stddev": 0.05}),
        InitializerDef("variance_scaling", _vs(1.0, "fan_in", "truncated_normal")),
        InitializerDef("glorot_uniform", {}, _vs(1.0, "fan_avg", "uniform")),
        InitializerDef("glorot_normal", {}, _vs(1.0, "fan_avg", "truncated_normal")),
        InitializerDef("he_uniform", {}, _vs(2.0, "fan_in", "uniform")),
        InitializerDef("he_normal", {}, _vs(2.0, "fan_in", "truncated_normal")),
        InitializerDef("lecun_uniform", {}, _vs(1.0, "fan_in", "uniform")),
        InitializerDef("lecun_normal", {}, _vs(1.0, "fan_in", "truncated_normal")),
        InitializerDef("orthogonal", {"gain": 1.0}),
    ]
}
"""Every initializer by its canonical (Keras snake_case) name."""

_ALIASES = {
    # Keras' own aliases (keras.initializers.get)
    "uniform": "random_uniform",
    "normal": "random_normal",
    "one": "ones",
    "zero": "zeros",
    "orthogonalinitializer": "orthogonal",
}


_PYTORCH_NAMES = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
}
"""PyTorch words users may reach for; refused with a pointer, since their distributions differ
(PyTorch's normal variants are untruncated and kaiming's defaults differ from He's)."""


def _lookup_key(name: str) -> str:
    """Case and underscore-insensitive form, so "GlorotUniform", "glorot_uniform" and "Glorot_Uniform" agree."""
    return name.strip().replace("_", "").replace("-", "").lower()


_BY_KEY = {_lookup_key(n): n for n in INITIALIZERS} | {_lookup_key(a): n for a, n in _ALIASES.items()}


def resolve(config: str | Mapping[str, Any], *, path: str) -> dict[str, Any]:
    """A name or ``{name = ..., parameters}`` -> ``{"name": canonical, every parameter explicit}``.

    Accepts Keras' class and function names in any case ("HeNormal", "he_normal") and its
    aliases ("normal", "uniform", "zero", "one"). Raises ``SpecError`` naming ``path``, the
    allowed names or keys, and the nearest match.
    """
    name, raw = split_name(config, path, "initializer", INITIALIZERS)
    canonical = _BY_KEY.get(_lookup_key(name))
    if canonical is None:
        where = path if isinstance(config, str) else f"{path}.name"
        word = name.strip().lower()
        if word in _PYTORCH_NAMES:
            message = f"{word} is PyTorch's name; the Keras initializer is {_PYTORCH_NAMES[word]}"
            raise SpecError(message, path=where, allowed=INITIALIZERS, got=_PYTORCH_NAMES[word])
        raise SpecError(f"unknown initializer {name!r}", path=where, allowed=INITIALIZERS, got=word)
    definition = INITIALIZERS[canonical]
    for key in raw:
        if key not in definition.defaults:
            if key == "seed":
                message = "initializers take no seed: weights are drawn from the trial's seed"
            elif definition.defaults:
                message = f"{canonical} has no parameter {key!r}"
            else:
                message = f"{canonical} takes no parameters, got {key!r}"
            raise SpecError(message, path=f"{path}.{key}", allowed=definition.defaults, got=key)
    out: dict[str, Any] = {"name": canonical}
    for key, default in definition.defaults.items():
        out[key] = _check(canonical, key, raw.get(key, default), path=f"{path}.{key}")
    if canonical == "random_uniform" and not out["minval"] < out["maxval"]:
        raise SpecError(f"minval must be below maxval, got {out['minval']} and {out['maxval']}", path=f"{path}.minval")
    return out


def _check(name: str, key: str, value: Any, *, path: str) -> Any:
    """One parameter, validated: numbers become floats, mode and distribution must be Keras' words."""
    if key == "mode":
        value = value.lower() if isinstance(value, str) else value
        if value not in MODES:
            raise SpecError(f"unknown mode {value!r}", path=path, allowed=MODES, got=value)
        return value
    if key == "distribution":
        word = value.lower() if isinstance(value, str) else value
        if word == "normal":  # Keras maps "normal" to the truncated normal
            word = "truncated_normal"
        if word not in DISTRIBUTIONS:
            raise SpecError(f"unknown distribution {value!r}", path=path, allowed=DISTRIBUTIONS, got=value)
        return word
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", path=path)
    number = float(value)
    if key in ("stddev", "scale") and number <= 0:
        raise SpecError(f"must be positive, got {value!r}", path=path)
    return number


def fans(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a PyTorch weight, as Keras' ``compute_fans`` counts them.

    Layouts: ``"dense"`` for ``nn.Linear`` weights ``(out, in)`` (a 1-D shape ``(n,)`` gives
    ``(n, n)`` as in Keras); ``"conv1d"``, ``"conv2d"``, ``"conv3d"`` for ``(out, in, *kernel)``,
    where both fans include the receptive field: ``in * prod(kernel)`` and ``out * prod(kernel)``;
    ``"keras"`` for a shape already in Keras' order ``(..., in, out)``.
    """
    shape = tuple(int(d) for d in shape)
    if layout == "keras":
        if len(shape) == 0:
            return 1, 1
        if len(shape) == 1:
            return shape[0], shape[0]
        receptive = math.prod(shape[:-2])
        return shape[-2] * receptive, shape[-1] * receptive
    if layout == "dense":
        if len(shape) == 1:
            return shape[0], shape[0]
        if len(shape) == 2:
            return shape[1], shape[0]
        raise ValueError(f"a dense weight is (out, in), got shape {shape}")
    conv_dims = {"conv1d": 1, "conv2d": 2, "conv3d": 3}
    if layout in conv_dims:
        if len(shape) != 2 + conv_dims[layout]:
            raise ValueError(f"a {layout} weight is (out, in, {conv_dims[layout]} kernel sizes), got shape {shape}")
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    raise ValueError(f"unknown layout {layout!r}; use dense, conv1d, conv2d, conv3d or keras")


def _truncated_normal_(tensor: Tensor, mean: float, stddev: float, generator: torch.Generator) -> Tensor:
    """Normal(mean, stddev) redrawn outside mean +- 2 stddev, as Keras' ``random.truncated_normal``."""
    return torch.nn.init.trunc_normal_(
        tensor, mean=mean, std=stddev, a=mean - 2 * stddev, b=mean + 2 * stddev, generator=generator
    )


def variance_scaling_(
    tensor: Tensor,
    *,
    scale: float,
    mode: str,
    distribution: str,
    fan_in: int,
    fan_out: int,
    generator: torch.Generator,
) -> Tensor:
    """Keras' VarianceScaling, in place: variance ``scale / n`` with ``n`` the chosen fan (at least 1).

    truncated_normal: ``stddev = sqrt(scale / n) / 0.8796...`` truncated at 2 stddev (so the
    result has standard deviation ``sqrt(scale / n)``); untruncated_normal: ``sqrt(scale / n)``;
    uniform: ``[-limit, limit]`` with ``limit = sqrt(3 scale / n)``.
    """
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / max(1.0, n)
    if distribution == "truncated_normal":
        return _truncated_normal_(tensor, 0.0, math.sqrt(variance) / TRUNCATED_STDDEV_FACTOR, generator)
    if distribution == "untruncated_normal":
        return torch.nn.init.normal_(tensor, 0.0, math.sqrt(variance), generator=generator)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return torch.nn.init.uniform_(tensor, -limit, limit, generator=generator)
    raise ValueError(f"unknown distribution {distribution!r}")


def _orthogonal_(tensor: Tensor, gain: float, generator: torch.Generator) -> Tensor:
    """A (semi-)orthogonal matrix from the QR decomposition of a normal draw, times ``gain``.

    PyTorch flattens (out, in, ...) to (out, in*...) where Keras flattens (..., in, out) to
    (...*in, out): the two matrices are transposes up to a permutation of the input index,
    and the Haar distribution is invariant under both, so the draws follow Keras' law.
    """
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal needs a tensor of at least two dimensions, got shape {tuple(tensor.shape)}")
    return torch.nn.init.orthogonal_(tensor, gain=gain, generator=generator)


@torch.no_grad()
def initialize_(
    tensor: Tensor, config: str | Mapping[str, Any], *, fan_in: int, fan_out: int, generator: torch.Generator
) -> Tensor:
    """Fill ``tensor`` in place from the initializer ``config`` and return it.

    ``fan_in`` and ``fan_out`` come from ``fans(weight.shape, layout)``; every random draw
    uses ``generator``, so equal generator states give equal tensors.
    """
    cfg = resolve(config, path="initializer")
    name = cfg["name"]
    definition = INITIALIZERS[name]
    if definition.variance_scaling is not None or name == "variance_scaling":
        settings = definition.variance_scaling or cfg
        return variance_scaling_(
            tensor,
            scale=settings["scale"],
            mode=settings["mode"],
            distribution=settings["distribution"],
            fan_in=fan_in,
            fan_out=fan_out,
            generator=generator,
        )
    if name == "zeros":
        return tensor.zero_()
    if name == "ones":
        return tensor.fill_(1.0)
    if name == "constant":
        return tensor.fill_(cfg["value"])
    if name == "random_normal":
        return torch.nn.init.normal_(tensor, cfg["mean"], cfg["stddev"], generator=generator)
    if name == "random_uniform":
        return torch.nn.init.uniform_(tensor, cfg["minval"], cfg["maxval"], generator=generator)
    if name == "truncated_normal":
        return _truncated_normal_(tensor, cfg["mean"], cfg["stddev"], generator)
    if name == "orthogonal":
        return _orthogonal_(tensor, cfg["gain"], generator)
    raise AssertionError(f"initializer {name!r} has no sampler")
