"""The augmentation layers against hand-made images: Keras' transforms, fill modes and defaults.

Every expected image below is written out by hand from Keras' documentation of the layer (a
translation moves the image down and right for positive factors, a rotation turns it
counter-clockwise for positive ones, a positive zoom factor zooms out; ``reflect`` is
``d c b a | a b c d``, ``wrap`` is ``a b c d | a b c d``, ``nearest`` is ``a a a a | a b c d``).
Factors given as equal bounds make the random draw a fixed transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from trainlab import models
from trainlab.errors import SpecError


def layer_net(layer: dict[str, Any], shape: tuple[int, ...]) -> models.Net:
    return models.build(models.resolve({"layers": [layer]}, shape), shape, seed=0)


def augment(layer: dict[str, Any], x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The layer's training output on ``x`` with the global generator at ``seed``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return layer_net(layer, tuple(x.shape[1:])).train()(x)


def image(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(1, 1, len(rows), len(rows[0]))


SIX = image([[1, 2, 3], [4, 5, 6]])


def test_random_flip_flips_the_images_whose_draw_is_at_most_one_half() -> None:
    """Keras 3 draws one uniform number per image and flips it where the number is <= 0.5."""
    x = torch.cat([SIX, SIX + 10, SIX + 20, SIX + 30])
    torch.manual_seed(4)
    flips = (torch.rand(4) <= 0.5).tolist()
    assert 0 < sum(flips) < 4, "the seed flips some images and not others"
    horizontal = augment({"type": "RandomFlip", "mode": "horizontal"}, x, seed=4)
    vertical = augment({"type": "RandomFlip", "mode": "vertical"}, x, seed=4)
    both = augment({"type": "RandomFlip"}, x, seed=4)
    for i, flipped in enumerate(flips):
        base = 10 * i
        h = image([[3, 2, 1], [6, 5, 4]]) + base if flipped else SIX + base
        v = image([[4, 5, 6], [1, 2, 3]]) + base if flipped else SIX + base
        hv = image([[6, 5, 4], [3, 2, 1]]) + base if flipped else SIX + base
        assert torch.equal(horizontal[i : i + 1], h)
        assert torch.equal(vertical[i : i + 1], v)
        assert torch.equal(both[i : i + 1], hv)


GRID = image([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]])
"""A 4x4 image whose value is 4 * row + column: linear, so bilinear sampling is exact."""


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_random_translation_moves_down_and_right_for_positive_factors(interpolation: str) -> None:
    """height_factor 0.25 of 4 rows: one row down; width_factor -0.5 of 4 columns: two left."""
    layer = {
        "type": "RandomTranslation",
        "height_factor": [0.25, 0.25],
        "width_factor": [-0.5, -0.5],
        "fill_mode": "constant",
        "interpolation": interpolation,
    }
    expected = image([[0, 0, 0, 0], [2, 3, 0, 0], [6, 7, 0, 0], [10, 11, 0, 0]])
    assert torch.allclose(augment(layer, GRID), expected, atol=1e-5)


ROW = image([[1, 2, 3, 4]])


@pytest.mark.parametrize(
    ("fill_mode", "expected"),
    [
        ("reflect", [2, 1, 1, 2]),  # ... b a | a b c d
        ("wrap", [3, 4, 1, 2]),  # ... c d | a b c d
        ("constant", [9, 9, 1, 2]),  # fill_value 9
        ("nearest", [1, 1, 1, 2]),  # ... a a | a b c d
    ],
)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_fill_modes_match_keras_patterns(fill_mode: str, expected: list[float], interpolation: str) -> None:
    """[a b c d] moved two pixels right: the two pixels that come in from the left are filled."""
    layer = {
        "type": "RandomTranslation",
        "height_factor": 0.0,
        "width_factor": [0.5, 0.5],
        "fill_mode": fill_mode,
        "fill_value": 9.0,
        "interpolation": interpolation,
    }
    assert torch.allclose(augment(layer, ROW), image([expected]), atol=1e-5)


def test_wrap_interpolates_across_the_seam() -> None:
    """Half a pixel to the right: the first output pixel is halfway between d and a."""
    layer = {"type": "RandomTranslation", "height_factor": 0.0, "width_factor": [0.125, 0.125], "fill_mode": "wrap"}
    assert torch.allclose(augment(layer, ROW), image([[2.5, 1.5, 2.5, 3.5]]), atol=1e-5)


def test_random_rotation_turns_counter_clockwise_for_positive_factors() -> None:
    """factor 0.25 of a full turn: 90 degrees counter-clockwise; the top row becomes the left
    column, read upwards."""
    nine = image([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    quarter = augment({"type": "RandomRotation", "factor": [0.25, 0.25]}, nine)
    assert torch.allclose(quarter, image([[3, 6, 9], [2, 5, 8], [1, 4, 7]]), atol=1e-5)
    back = augment({"type": "RandomRotation", "factor": [-0.25, -0.25]}, nine)
    assert torch.allclose(back, image([[7, 4, 1], [8, 5, 2], [9, 6, 3]]), atol=1e-5)


def test_random_zoom_in_reads_the_centre_and_zoom_out_fills_the_border() -> None:
    """Keras' zoom transform reads output pixel p at c + z (p - c), c = 1.5 for 4 pixels.
    height_factor -0.5 (z = 0.5 both ways, width following height): rows and columns at
    0.75, 1.25, 1.75, 2.25, where the linear image is 4 * row + column. width_factor 1 alone
    (z = 2 across, 1 down): columns at -1.5, 0.5, 2.5, 4.5; the outer two fall outside and are
    filled with 0 (``constant``), bilinearly between two filled pixels."""
    zoomed_in = augment({"type": "RandomZoom", "height_factor": [-0.5, -0.5]}, GRID)
    at = torch.tensor([0.75, 1.25, 1.75, 2.25])
    assert torch.allclose(zoomed_in[0, 0], 4 * at.reshape(4, 1) + at.reshape(1, 4), atol=1e-5)
    layer = {"type": "RandomZoom", "height_factor": 0.0, "width_factor": [1.0, 1.0], "fill_mode": "constant"}
    rows = torch.tensor([0.0, 4.0, 8.0, 12.0]).reshape(4, 1)
    expected = torch.cat([torch.zeros(4, 1), rows + 0.5, rows + 2.5, torch.zeros(4, 1)], dim=1)
    assert torch.allclose(augment(layer, GRID)[0, 0], expected, atol=1e-5)


def test_random_crop_takes_one_window_per_batch_at_a_uniform_position() -> None:
    """Keras crops a batch at one position, row and column starts floor(U * (size - target + 1))."""
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    layer = {"type": "RandomCrop", "height": 3, "width": 2}
    starts = set()
    for seed in range(40):
        torch.manual_seed(seed)
        u = torch.rand(2, dtype=torch.float64)
        top, left = int(u[0] * 3), int(u[1] * 5)
        starts.add((top, left))
        assert torch.equal(augment(layer, x, seed=seed), x[:, :, top : top + 3, left : left + 2])
    assert {t for t, _ in starts} == {0, 1, 2} and {c for _, c in starts} == {0, 1, 2, 3, 4}


def test_random_crop_in_inference_resizes_the_centre_window_of_the_targets_aspect() -> None:
    """8 columns at aspect 2:1 is the centre window of 4 rows, kept as is; a 4x4 image to 2x2 is
    the whole image resized (bilinear, half-pixel centres, no antialiasing): each output pixel
    the mean of a 2x2 block. A training input no larger than the target both ways is treated so too."""
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    with torch.no_grad():
        centre = layer_net({"type": "RandomCrop", "height": 4, "width": 8}, (1, 8, 8)).eval()(x)
    assert torch.equal(centre, x[:, :, 2:6, :])
    with torch.no_grad():
        resized = layer_net({"type": "RandomCrop", "height": 2, "width": 2}, (1, 4, 4)).eval()(GRID)
    assert torch.allclose(resized, image([[2.5, 4.5], [10.5, 12.5]]))
    assert torch.equal(augment({"type": "RandomCrop", "height": 4, "width": 8}, x), centre)


def test_random_contrast_scales_each_channel_about_its_mean_and_clips() -> None:
    """(x - mean) * f + mean with the mean of each channel of each image and one f per image in
    [1 - lower, 1 + upper], clipped to value_range."""
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    layer = {"type": "RandomContrast", "factor": [0.5, 0.9], "value_range": [0.1, 0.9]}
    torch.manual_seed(7)
    f = (0.5 + 1.4 * torch.rand(3)).numpy().astype(np.float64)
    xs = x.numpy().astype(np.float64)
    mean = xs.mean(axis=(2, 3), keepdims=True)
    want = np.clip((xs - mean) * f.reshape(3, 1, 1, 1) + mean, 0.1, 0.9)
    np.testing.assert_allclose(augment(layer, x, seed=7).numpy(), want, rtol=1e-5, atol=1e-6)
    one = augment({"type": "RandomContrast", "factor": 0.0}, x * 255)
    assert torch.allclose(one, x * 255, atol=1e-4), "factor 0: f = 1, and the default range [0, 255] clips nothing"


AUGMENTATIONS: list[dict[str, Any]] = [
    {"type": "RandomFlip"},
    {"type": "RandomTranslation", "height_factor": 0.3, "width_factor": 0.3},
    {"type": "RandomRotation", "factor": 0.2},
    {"type": "RandomZoom", "height_factor": 0.3},
    {"type": "RandomContrast", "factor": 0.5, "value_range": [0, 1]},
    {"type": "RandomCrop", "height": 5, "width": 5},
]


@pytest.mark.parametrize("layer", AUGMENTATIONS, ids=lambda layer: layer["type"])
def test_augmentation_acts_in_training_and_is_the_identity_in_inference(layer: dict[str, Any]) -> None:
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    net = layer_net(layer, (3, 6, 6))
    with torch.no_grad():
        torch.manual_seed(1)
        trained = net.train()(x)
        inferred = net.eval()(x)
    assert net.stochastic
    if layer["type"] == "RandomCrop":
        assert inferred.shape == (8, 3, 5, 5) and not torch.equal(trained, inferred[:, :, :5, :5])
        return
    assert torch.equal(inferred, x)
    assert not torch.allclose(trained, x, atol=1e-3)


def test_every_parameter_shows_in_the_module_description() -> None:
    """Populations share their compiled steps between models whose modules print alike."""
    base = {"type": "RandomRotation", "factor": 0.1}
    variants = [
        base,
        {**base, "factor": 0.2},
        {**base, "fill_mode": "wrap"},
        {**base, "interpolation": "nearest"},
        {**base, "fill_value": 1.0},
    ]
    assert len({repr(layer_net(v, (1, 4, 4))) for v in variants}) == len(variants)


@pytest.mark.parametrize(
    ("layer", "key", "words"),
    [
        ({"type": "RandomRotation", "factor": 1.5}, "factor", "must lie in [-1, 1]"),
        ({"type": "RandomRotation", "factor": [0.1, 0.2, 0.3]}, "factor", "a list of two numbers"),
        ({"type": "RandomRotation", "factor": [0.1, True]}, "factor", "a list of two numbers"),
        ({"type": "RandomZoom", "height_factor": -1.0}, "height_factor", "must lie in (-1, 1]"),
        ({"type": "RandomZoom", "height_factor": 0.1, "width_factor": [0.0, 2.0]}, "width_factor", "(-1, 1]"),
        ({"type": "RandomTranslation", "height_factor": 0.1}, "width_factor", "is required"),
        (
            {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1, "fill_mode": "mirror"},
            "fill_mode",
            "must be one of 'reflect', 'wrap', 'constant', 'nearest'",
        ),
        ({"type": "RandomFlip", "mode": "diagonal"}, "mode", "must be one of 'horizontal', 'vertical'"),
        ({"type": "RandomContrast", "factor": -0.1}, "factor", "must lie in [0, 1]"),
        ({"type": "RandomContrast", "factor": 0.1, "value_range": [1, 0]}, "value_range", "low < high"),
        ({"type": "RandomCrop", "height": 0, "width": 3}, "height", "must be > 0"),
        ({"type": "RandomFlip", "seed": 3}, "seed", "unknown key 'seed'"),
    ],
)
def test_augmentation_parameters_are_checked_with_their_key_path(layer: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        models.resolve({"layers": [layer]}, (1, 8, 8), path="stage[1].model")
    assert info.value.path == f"stage[1].model.layers[0].{key}"
    assert words in str(info.value)


def test_a_single_factor_spans_both_directions_and_a_list_is_sorted() -> None:
    rotation = layer_net({"type": "RandomRotation", "factor": -0.2}, (1, 4, 4)).body[0]
    assert rotation.factor == (-0.2, 0.2)
    translation = layer_net(
        {"type": "RandomTranslation", "height_factor": [0.3, -0.1], "width_factor": 0}, (1, 4, 4)
    ).body[0]
    assert (translation.height, translation.width) == ((-0.1, 0.3), (0.0, 0.0))
    contrast = layer_net({"type": "RandomContrast", "factor": 0.3}, (1, 4, 4)).body[0]
    assert contrast.factor == (0.3, 0.3) and contrast.value_range == (0.0, 255.0)
