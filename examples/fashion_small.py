"""Write examples/fashion_small.csv, the table examples/own_model.ipynb trains on: the first 3000
training images of Fashion-MNIST, each averaged over blocks of 4x4 pixels to 7x7 (49 columns
``p0`` ... ``p48``, integers 0-255), and the class name in the column ``label``.

Run from the repository's root, on a machine that has Fashion-MNIST (``trainlab data list``):
``python examples/fashion_small.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trainlab.data.loader import load_raw

ROWS = 3000
OUT = Path(__file__).with_name("fashion_small.csv")


def main() -> None:
    raw = load_raw("fashion_mnist")
    images = raw.x_train[:ROWS].reshape(ROWS, 7, 4, 7, 4).astype(np.float64).mean(axis=(2, 4))
    table = pd.DataFrame(np.rint(images.reshape(ROWS, 49)).astype(np.uint8), columns=[f"p{i}" for i in range(49)])
    table["label"] = np.asarray(raw.info.class_names)[raw.y_train[:ROWS]]
    table.to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
