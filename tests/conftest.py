"""Shared fixtures: a tiny learnable image data set as a user npz, and a study over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def make_npz(path: Path, *, n_train: int = 240, n_test: int = 60, classes: int = 3, size: int = 8, seed: int = 0) -> Path:
    """Images whose class is a brighter band at a class-specific row, plus noise: learnable in a few epochs."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        x = rng.integers(0, 90, (n, size, size))
        for i, label in enumerate(y):
            x[i, 2 * label : 2 * label + 2, :] += 150
        return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


STUDY = """
[study]
name = "tiny"
seeds = [0, 1]

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 0.25 }}

[model]
layers = [
  {{ type = "Flatten" }},
  {{ type = "Dense", units = 16, activation = "relu" }},
  {{ type = "Dropout", rate = 0.1 }},
  {{ type = "Dense", units = 3, activation = "softmax" }},
]

[train]
epochs = {epochs}
batch_size = 16

[[compare]]
label = "sgd"
optimizer = {{ name = "sgd", learning_rate = 0.05 }}

[[compare]]
label = "adam"
optimizer = "adam"
"""


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    """A two-variant, two-seed study of four epochs on the tiny data set, in ``tmp_path``."""
    make_npz(tmp_path / "tiny.npz")
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY.format(epochs=4))
    return path
