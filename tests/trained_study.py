"""A small trained study shared by the report and export tests: trained once per test process.

Four classes of 8x8 grayscale images whose class is a faint band at a class-specific row:
hard enough that accuracies differ between variants and some test images are misclassified,
small enough that three variants x two seeds train in a few seconds. One variant is a CNN, so
that the t-SNE picture compares an MLP with a CNN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STUDY = """
[study]
name = "small"
description = "MLP with SGD and Adam, and a CNN, on faint bands"
seeds = [0, 1]

[data]
name = "npz"
path = "small.npz"
split = { kind = "stratified", validation = 0.25 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 24, activation = "relu" },
  { type = "Dense", units = 4, activation = "softmax" },
]

[train]
epochs = 5
batch_size = 16

[[compare]]
label = "mlp sgd"
optimizer = { name = "sgd", learning_rate = 0.05, decay = 0.01 }

[[compare]]
label = "mlp adam"
optimizer = "adam"

[[compare]]
label = "cnn"
optimizer = "adam"
model.layers = [
  { type = "Conv2D", filters = 6, kernel_size = 3, padding = "same", activation = "relu" },
  { type = "MaxPooling2D" },
  { type = "Flatten" },
  { type = "Dense", units = 4, activation = "softmax" },
]
"""

CLASS_NAMES = np.array(["top", "upper", "lower", "bottom"])


def make_small_npz(path: Path, *, n_train: int = 320, n_test: int = 120, seed: int = 3) -> Path:
    """Four classes: a band of +45 at rows 0-1, 2-3, 4-5 or 6-7 over noise in [0, 140)."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 140, (n, 8, 8))
        for i, label in enumerate(y):
            x[i, 2 * label : 2 * label + 2, :] += 45
        return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=CLASS_NAMES)
    return path


_TRAINED: dict[str, Path] = {}


def trained_store(base: Path) -> Path:
    """The store of the small study, trained in this process on first use under ``base``
    (a directory that outlives the tests using it); later calls return the same store.

    The reports read what any executor records; these tests are about the reports, so the
    trials train one at a time rather than as populations.
    """
    if "store" not in _TRAINED:
        from trainlab import spec
        from trainlab.executors import run_local
        from trainlab.store import Store

        folder = base / "small-study"
        folder.mkdir(parents=True, exist_ok=True)
        make_small_npz(folder / "small.npz")
        (folder / "small.toml").write_text(STUDY)
        study = spec.load(folder / "small.toml")
        with Store.open(folder / "small.db") as store:
            run_local(study, store, population=1)  # one trial at a time: the quickest way for six tiny trials
        _TRAINED["store"] = folder / "small.db"
    return _TRAINED["store"]
