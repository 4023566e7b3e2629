"""Image folders as data (``[data] path = "images/"``): one subfolder per class, as
torchvision's ImageFolder lays them out, decoded once into the cache; pixels, classes and order
checked by hand, and the folders that cannot be used refused at ``data.path``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from factories import load_study
from PIL import Image

from trainlab.data import clear_memory, load_data, prepare
from trainlab.data.params import resolve_data
from trainlab.errors import SpecError


def write(path: Path, pixels: list[list[int]] | np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(path)


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cats/ and dogs/, grayscale 2x3 images whose top-left pixel numbers them."""
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "pets"
    for i in range(3):
        write(folder / "dogs" / f"d{i}.png", [[100 + i, 0, 0], [0, 0, 255]])
    for i in range(2):
        write(folder / "cats" / f"c{i}.png", [[10 + i, 0, 0], [0, 0, 0]])
    (folder / "cats" / "notes.txt").write_text("not an image")
    return folder


def data(folder: Path) -> dict[str, object]:
    return resolve_data({"path": str(folder), "split": {"kind": "first", "validation": 1}})


def test_classes_are_the_sorted_subfolders_and_images_their_sorted_files(images: Path) -> None:
    table = data(images)
    assert table["name"] == "images"
    raw = load_data(table)
    assert raw.info.class_names == ("cats", "dogs") and raw.info.input_shape == (1, 2, 3)
    assert raw.y_train.tolist() == [0, 0, 1, 1, 1]
    assert raw.x_train[:, 0, 0].tolist() == [10, 11, 100, 101, 102]  # the text file is not an image
    assert raw.x_train.dtype == np.uint8 and raw.x_train[2, 1, 2] == 255


def test_pixels_are_scaled_and_laid_out_channels_first(images: Path) -> None:
    prepared = prepare({**data(images), "test_fraction": 0.2})
    assert prepared.x_train.shape[1:] == (1, 2, 3) and prepared.x_train.dtype == np.float32
    assert prepared.x_train.max() <= 1.0 and 255 / 255 in prepared.x_train
    assert prepared.split["sizes"]["test"] == 1 and prepared.split["data_sha256"]


def test_colour_images_give_three_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 200
    write(tmp_path / "c" / "red" / "a.png", red, "RGB")
    write(tmp_path / "c" / "gray" / "b.png", np.full((4, 5), 7), "L")  # read as RGB beside a colour image
    raw = load_data(data(tmp_path / "c"))
    assert raw.info.input_shape == (3, 4, 5)
    assert raw.x_train[0, 0, 0].tolist() == [7, 7, 7] and raw.x_train[1, 0, 0].tolist() == [200, 0, 0]


def test_decoded_once_then_read_from_the_cache(images: Path, tmp_path: Path) -> None:
    first = load_data(data(images))
    cached = list((tmp_path / "cache" / "user").glob("images-*.npz"))
    assert len(cached) == 1
    clear_memory()
    for png in images.rglob("*.png"):
        # Garbage of the same size and time: the cache's key is unchanged, and decoding would fail.
        stat = png.stat()
        png.write_bytes(b"x" * stat.st_size)
        os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_data(data(images))
    assert again.sha256 == first.sha256


def test_a_changed_image_is_decoded_again(images: Path) -> None:
    before = load_data(data(images))
    write(images / "dogs" / "d9.png", [[1, 1, 1], [1, 1, 1]])
    after = load_data(data(images))
    assert len(after.x_train) == len(before.x_train) + 1 and after.sha256 != before.sha256


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda f: write(f / "only" / "a.png", [[1]]), "at least two; found 1 (only)"),
        (lambda f: None, "at least two; found 0"),
        (
            lambda f: (write(f / "a" / "x.png", [[1, 2]]), write(f / "b" / "y.png", [[1], [2]])),
            "images differ in size",
        ),
        (lambda f: (write(f / "a" / "x.png", [[1]]), (f / "b").mkdir()), "no image files"),
    ],
)
def test_a_folder_that_cannot_be_used_is_refused_at_data_path(tmp_path: Path, make, words: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "imgs"
    folder.mkdir()
    make(folder)
    tables = {
        "study": {"seeds": [0]},
        "data": {"path": "imgs", "split": {"kind": "first", "validation": 1}},
        "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2}]},
        "train": {"epochs": 1},
    }
    with pytest.raises(SpecError) as info:
        load_study(tmp_path, tables)
    assert info.value.path == "data.path" and words in info.value.reason, str(info.value)
