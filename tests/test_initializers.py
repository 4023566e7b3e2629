"""Initializers: Keras' distributions, fans and names, drawn from an explicit generator.

Expected moments and bounds are written from Keras' definitions (random_initializers.py),
never computed by trainlab's functions.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from trainlab import initializers
from trainlab.errors import SpecError

FAN_IN, FAN_OUT = 100, 300  # distinct, so fan_in, fan_out and fan_avg give different variances
SHAPE = (400, 500)  # 200,000 draws: relative standard error of a variance about 0.3%
TRUNC = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def draw(config: Any, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    tensor = torch.empty(shape)
    generator = torch.Generator().manual_seed(seed)
    out = initializers.initialize_(tensor, config, fan_in=FAN_IN, fan_out=FAN_OUT, generator=generator)
    assert out is tensor
    return tensor.double()


# (config, mean, std, bound): bound is the largest |x - mean| allowed (None: unbounded normal).
# Uniform on [-l, l] has std l / sqrt(3); a normal truncated at 2 sigma has std 0.8796 sigma.
RANDOM_CASES: dict[str, tuple[Any, float, float, float | None]] = {
    "random_normal": ("random_normal", 0.0, 0.05, None),
    "random_normal_custom": ({"name": "random_normal", "mean": 1.0, "stddev": 0.2}, 1.0, 0.2, None),
    "random_uniform": ("random_uniform", 0.0, 0.05 / math.sqrt(3), 0.05),
    "random_uniform_custom": ({"name": "random_uniform", "minval": 0.0, "maxval": 2.0}, 1.0, 1 / math.sqrt(3), 1.0),
    "truncated_normal": ("truncated_normal", 0.0, 0.05 * TRUNC, 0.1),
    "glorot_uniform": ("glorot_uniform", 0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (
        "glorot_normal",
        0.0,
        math.sqrt(2 / (FAN_IN + FAN_OUT)),
        2 * math.sqrt(2 / (FAN_IN + FAN_OUT)) / TRUNC,
    ),
    "he_uniform": ("he_uniform", 0.0, math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "he_normal": ("he_normal", 0.0, math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / TRUNC),
    "lecun_uniform": ("lecun_uniform", 0.0, math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN)),
    "lecun_normal": ("lecun_normal", 0.0, math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNC),
    "variance_scaling_default": ("variance_scaling", 0.0, math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNC),
    "variance_scaling_untruncated_fan_out": (
        {"name": "variance_scaling", "scale": 3.0, "mode": "fan_out", "distribution": "untruncated_normal"},
        0.0,
        math.sqrt(3 / FAN_OUT),
        None,
    ),
    "variance_scaling_uniform_fan_avg": (
        {"name": "VarianceScaling", "scale": 0.5, "mode": "fan_avg", "distribution": "uniform"},
        0.0,
        math.sqrt(0.5 / 200),
        math.sqrt(3 * 0.5 / 200),
    ),
}


@pytest.mark.parametrize("case", RANDOM_CASES)
def test_moments_and_bounds_follow_keras(case: str) -> None:
    config, mean, std, bound = RANDOM_CASES[case]
    x = draw(config)
    n = x.numel()
    assert abs(x.mean().item() - mean) < 5 * std / math.sqrt(n)
    assert x.std().item() == pytest.approx(std, rel=0.015)
    spread = (x - mean).abs().max().item()
    if bound is None:
        assert spread > 4 * std  # untruncated: 200,000 normal draws reach past 4 sigma
    else:
        assert spread <= bound * (1 + 1e-6)
        assert spread > 0.99 * bound  # the bound is reached, so it is the right one


def test_fan_in_of_at_least_one() -> None:
    """Keras divides by max(1, n): a zero fan does not blow up the scale."""
    x = torch.empty(1000)
    initializers.initialize_(x, "he_uniform", fan_in=0, fan_out=0, generator=torch.Generator().manual_seed(0))
    assert x.abs().max().item() <= math.sqrt(6.0)
    assert x.abs().max().item() > 0.9 * math.sqrt(6.0)


@pytest.mark.parametrize(
    "config,value", [("zeros", 0.0), ("ones", 1.0), ({"name": "constant", "value": 0.3}, 0.3), ("constant", 0.0)]
)
def test_constant_initializers(config: Any, value: float) -> None:
    x = torch.full((3, 4), 7.0)
    initializers.initialize_(x, config, fan_in=4, fan_out=3, generator=torch.Generator())
    assert torch.equal(x, torch.full((3, 4), value))


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (16, 3, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal(shape: tuple[int, ...], gain: float) -> None:
    x = draw({"name": "orthogonal", "gain": gain}, shape=shape).reshape(shape[0], -1)
    small = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    torch.testing.assert_close(small, gain**2 * torch.eye(small.shape[0], dtype=small.dtype), atol=1e-5, rtol=0)


def test_orthogonal_needs_a_matrix() -> None:
    with pytest.raises(ValueError, match="two dimensions"):
        draw("orthogonal", shape=(5,))


@pytest.mark.parametrize("config", ["glorot_uniform", "he_normal", "random_normal", "truncated_normal", "orthogonal"])
def test_same_seed_same_weights_and_only_the_given_generator_is_used(config: str) -> None:
    global_state = torch.random.get_rng_state()
    a, b, c = (
        draw(config, seed=7, shape=(20, 30)),
        draw(config, seed=7, shape=(20, 30)),
        draw(config, seed=8, shape=(20, 30)),
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), global_state)


def test_generator_advances_between_tensors() -> None:
    generator = torch.Generator().manual_seed(0)
    first, second = torch.empty(10, 10), torch.empty(10, 10)
    initializers.initialize_(first, "glorot_uniform", fan_in=10, fan_out=10, generator=generator)
    initializers.initialize_(second, "glorot_uniform", fan_in=10, fan_out=10, generator=generator)
    assert not torch.equal(first, second)


# ---------------------------------------------------------------------------------------------
# fans


@pytest.mark.parametrize(
    "shape,layout,expected",
    [
        ((128, 784), "dense", (784, 128)),  # nn.Linear(784, 128).weight is (out, in)
        ((64,), "dense", (64, 64)),  # Keras: a 1-D shape has fan_in = fan_out = its length
        ((32, 16, 3, 5), "conv2d", (16 * 15, 32 * 15)),  # (out, in, kh, kw): receptive field 15
        ((8, 4, 7), "conv1d", (4 * 7, 8 * 7)),
        ((8, 4, 2, 3, 3), "conv3d", (4 * 18, 8 * 18)),
        ((3, 5, 16, 32), "keras", (16 * 15, 32 * 15)),  # Keras' own (kh, kw, in, out)
        ((784, 128), "keras", (784, 128)),
        ((), "keras", (1, 1)),
    ],
)
def test_fans(shape: tuple[int, ...], layout: str, expected: tuple[int, int]) -> None:
    assert initializers.fans(shape, layout) == expected


def test_fans_of_real_torch_layers_match_keras_counts() -> None:
    conv = torch.nn.Conv2d(3, 32, kernel_size=3)
    dense = torch.nn.Linear(784, 128)
    assert initializers.fans(tuple(conv.weight.shape), "conv2d") == (3 * 9, 32 * 9)
    assert initializers.fans(tuple(dense.weight.shape), "dense") == (784, 128)


@pytest.mark.parametrize("shape,layout", [((3, 3, 3), "dense"), ((3, 3), "conv2d"), ((3, 3), "lstm")])
def test_fans_refuse_shapes_that_do_not_fit(shape: tuple[int, ...], layout: str) -> None:
    with pytest.raises(ValueError):
        initializers.fans(shape, layout)


# ---------------------------------------------------------------------------------------------
# resolve


@pytest.mark.parametrize(
    "config,expected",
    [
        ("zeros", {"name": "zeros"}),
        ("constant", {"name": "constant", "value": 0.0}),
        ("random_normal", {"name": "random_normal", "mean": 0.0, "stddev": 0.05}),
        ("random_uniform", {"name": "random_uniform", "minval": -0.05, "maxval": 0.05}),
        ("truncated_normal", {"name": "truncated_normal", "mean": 0.0, "stddev": 0.05}),
        (
            "variance_scaling",
            {"name": "variance_scaling", "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
        ),
        ("orthogonal", {"name": "orthogonal", "gain": 1.0}),
        ("glorot_uniform", {"name": "glorot_uniform"}),
        ({"name": "random_normal", "stddev": 1}, {"name": "random_normal", "mean": 0.0, "stddev": 1.0}),
        (
            {"name": "variance_scaling", "distribution": "normal"},  # Keras maps "normal" to truncated
            {"name": "variance_scaling", "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
        ),
    ],
)
def test_resolve_fills_keras_defaults(config: Any, expected: dict[str, Any]) -> None:
    assert initializers.resolve(config, path="p") == expected


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("GlorotUniform", "glorot_uniform"),
        ("HeNormal", "he_normal"),
        ("LecunNormal", "lecun_normal"),
        ("RandomNormal", "random_normal"),
        ("Zeros", "zeros"),
        (" he_uniform ", "he_uniform"),
        ("normal", "random_normal"),
        ("uniform", "random_uniform"),
        ("zero", "zeros"),
        ("one", "ones"),
        ("Orthogonal", "orthogonal"),
        ("OrthogonalInitializer", "orthogonal"),
        ("TruncatedNormal", "truncated_normal"),
    ],
)
def test_resolve_accepts_keras_spellings_and_aliases(spelling: str, name: str) -> None:
    assert initializers.resolve(spelling, path="p")["name"] == name


def test_every_initializer_resolves_and_draws() -> None:
    for name in initializers.INITIALIZERS:
        x = torch.empty(6, 5)
        initializers.initialize_(
            x, initializers.resolve(name, path="p"), fan_in=5, fan_out=6, generator=torch.Generator()
        )
        assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    "config,path,fragment",
    [
        ("glorot_unifrom", "model.k", "did you mean 'glorot_uniform'"),
        ({"name": "he_normall"}, "model.k.name", "did you mean 'he_normal'"),
        ("xavier_uniform", "model.k", "Keras initializer is glorot_uniform"),
        ({"name": "random_normal", "std": 0.1}, "model.k.std", "did you mean 'stddev'"),
        ({"name": "glorot_uniform", "scale": 2.0}, "model.k.scale", "takes no parameters"),
        ({"name": "he_normal", "seed": 1}, "model.k.seed", "no seed"),
        ({"name": "variance_scaling", "mode": "fan_ave"}, "model.k.mode", "did you mean 'fan_avg'"),
        ({"name": "variance_scaling", "distribution": "gaussian"}, "model.k.distribution", "allowed: truncated_normal"),
        ({"name": "random_normal", "stddev": 0.0}, "model.k.stddev", "positive"),
        ({"name": "random_normal", "stddev": "big"}, "model.k.stddev", "number"),
        ({"name": "random_uniform", "minval": 1.0, "maxval": 0.0}, "model.k.minval", "below maxval"),
        ({"stddev": 1.0}, "model.k.name", "needs a name"),
        (3, "model.k", "initializer name"),
    ],
)
def test_resolve_refuses_with_the_path(config: Any, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        initializers.resolve(config, path="model.k")
    assert info.value.path == path
    assert fragment in str(info.value)


def test_unknown_name_lists_the_allowed_names() -> None:
    with pytest.raises(SpecError) as info:
        initializers.resolve("glorot", path="model.layers[1].kernel_initializer")
    assert info.value.allowed == sorted(initializers.INITIALIZERS)
