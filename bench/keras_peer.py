"""The Keras 3 side of the benchmarks, run in its own process (the backend is fixed at import).

Reads the arrays trainlab prepared (the same split, scaled the same way) from an .npz, trains
with ``model.fit`` and prints one JSON line: per-epoch seconds and validation accuracies.

    KERAS_BACKEND=tensorflow python bench/keras_peer.py --data data.npz --model mlp --batch 32 --epochs 3
    python bench/keras_peer.py --data data.npz --model mlp --batch 32 --epochs 5 --optimizers sgd,adam --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(),
    "momentum": lambda: keras.optimizers.SGD(momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True),
    "adagrad": lambda: keras.optimizers.Adagrad(),
    "rmsprop": lambda: keras.optimizers.RMSprop(),
    "adam": lambda: keras.optimizers.Adam(),
}


def build(kind: str, dropout: float = 0.0) -> keras.Model:
    """The benchmark models, layer for layer as the trainlab study files write them; ``mlp-e`` is
    report E's MLP grid row (512-256 with ``dropout`` after each hidden layer)."""
    if kind == "mlp-e":
        layers = [
            keras.layers.Flatten(),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10, activation="softmax"),
        ]
    elif kind == "mlp":
        layers = [
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    else:
        layers = [
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    return keras.Sequential([keras.Input((28, 28, 1)), *layers])


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch, as ``fit`` runs it (training and validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._began = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", choices=("mlp", "cnn", "mlp-e"), default="mlp")
    parser.add_argument("--dropouts", default="0", help="dropout rates of the mlp-e model, one fit each")
    parser.add_argument("--batch", type=int, default=32, help="batch size; 0: the whole training set (full batch)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizers", default="sgd")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N examples only")
    parser.add_argument("--val-limit", type=int, default=None, help="validate on the first N examples only")
    args = parser.parse_args()
    began = time.perf_counter()
    arrays = np.load(args.data)
    # trainlab's images are N, C, H, W; Keras wants N, H, W, C.
    x_train, x_val = (arrays[k].transpose(0, 2, 3, 1) for k in ("x_train", "x_val"))
    y_train, y_val = arrays["y_train"], arrays["y_val"]
    x_train, y_train = x_train[: args.train_limit], y_train[: args.train_limit]
    x_val, y_val = x_val[: args.val_limit], y_val[: args.val_limit]
    batch = len(x_train) if args.batch == 0 else args.batch
    runs = []
    for name, dropout in [(o, float(d)) for o in args.optimizers.split(",") for d in args.dropouts.split(",")]:
        for seed in map(int, args.seeds.split(",")):
            keras.utils.set_random_seed(seed)
            model = build(args.model, dropout)
            model.compile(optimizer=OPTIMIZERS[name](), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            timer = EpochTimer()
            history = model.fit(
                x_train,
                y_train,
                batch_size=batch,
                epochs=args.epochs,
                validation_data=(x_val, y_val),
                callbacks=[timer],
                verbose=0,
            )
            runs.append(
                {
                    "optimizer": name,
                    "dropout": dropout,
                    "seed": seed,
                    "epoch_seconds": timer.seconds,
                    "val_accuracy": history.history["val_accuracy"],
                }
            )
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "keras": keras.__version__,
                "runs": runs,
                "wall_seconds": time.perf_counter() - began,
            }
        )
    )


if __name__ == "__main__":
    main()
