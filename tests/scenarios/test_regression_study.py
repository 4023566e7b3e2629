"""A California-housing-style regression study: float targets, standardized features, a linear
output trained with MSE, MSE and MAE recorded each epoch and shown by the report where
classification shows accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainlab import spec
from trainlab.data.cache import DataCache
from trainlab.executors import run_local
from trainlab.report import render, study_report
from trainlab.store import Store

REGRESSION_STUDY = """
[study]
name = "houses"
seeds = [0, 1]

[data]
name = "npz"
path = "houses.npz"
split = { kind = "random", validation = 0.2 }

[model]
layers = [
  { type = "Dense", units = 16, activation = "relu" },
  { type = "Dense", units = 1 },
]

[optimizer]
name = "sgd"
learning_rate = 0.01

[train]
epochs = 4
batch_size = 4
loss = "mse"

[[compare]]
label = "sgd-batch4"

[[compare]]
label = "adam-batch32"
optimizer = { name = "adam", learning_rate = 0.02 }
train = { batch_size = 32 }
"""


def make_houses(path: Path, n: int = 400, seed: int = 0) -> None:
    """Eight features on very different scales (like median income vs. population) and a float
    target that depends on them linearly plus noise; no test arrays, so a test split is carved."""
    rng = np.random.default_rng(seed)
    scales = np.array([2.0, 12.0, 2.5, 0.5, 1100.0, 10.0, 2.0, 2.0], dtype=np.float32)
    centers = np.array([3.9, 28.0, 5.4, 1.1, 1400.0, 3.0, 35.6, -119.6], dtype=np.float32)
    x = (rng.standard_normal((n, 8)) * scales + centers).astype(np.float32)
    y = 0.4 * (x[:, 0] - 3.9) / 2.0 - 0.2 * (x[:, 4] - 1400) / 1100 + 2.0 + 0.05 * rng.standard_normal(n)
    np.savez(path, x_train=x, y_train=y.astype(np.float32))


@pytest.fixture
def study(tmp_path: Path) -> spec.Study:
    make_houses(tmp_path / "houses.npz")
    (tmp_path / "houses.toml").write_text(REGRESSION_STUDY)
    return spec.load(tmp_path / "houses.toml")


def test_regression_study_resolves_to_mse_with_a_linear_output(study: spec.Study) -> None:
    trial = study.variants[0].spec
    assert trial["task"] == "regression"
    assert trial["train"]["loss"] == "mean_squared_error" and trial["train"]["monitor"] == "val_loss"
    assert trial["model"]["layers"][-1]["activation"]["name"] == "linear"


def test_features_are_standardized_with_the_training_split_only(study: spec.Study) -> None:
    tensors, info, split = DataCache().get(study.variants[0].spec["data"])
    assert info.task == "regression" and info.input_shape == (8,)
    assert tensors.y_train.dtype.is_floating_point
    x = tensors.x_train.double()
    assert x.mean(0).abs().max() < 1e-5 and (x.std(0, correction=0) - 1).abs().max() < 1e-4
    assert split["test"]["kind"] == "random" and len(split["standardize"]["mean"]) == 8
    assert (tensors.x_val.double().mean(0).abs() > 1e-3).any()  # validation was not used for the statistics


def test_regression_trains_records_mse_and_mae_and_the_report_shows_them(tmp_path: Path, study: spec.Study) -> None:
    with Store.open(tmp_path / "s.db") as store:
        assert run_local(study, store).ran == {"done": 4}
        record = store.study("houses")
        assert record is not None
        for trial in store.trials(record.id):
            epochs = [e.metrics for e in store.epochs(trial.id)]
            assert set(epochs[0]) == {
                "loss",
                "mse",
                "mae",
                "val_loss",
                "val_mse",
                "val_mae",
                "learning_rate",
                "seconds",
            }
            for row in epochs:
                assert row["loss"] == pytest.approx(row["mse"], rel=1e-5)  # no penalty: the loss is the MSE
                assert row["val_loss"] == pytest.approx(row["val_mse"], rel=1e-6)
                assert 0 < row["mae"] ** 2 <= row["mse"] * (1 + 1e-6)  # type: ignore[operator]
            assert epochs[-1]["val_mse"] < 0.5 * epochs[0]["val_mse"], trial.label  # type: ignore[operator]
            assert set((trial.result or {})["test"]) == {"loss", "mse", "mae"}

        report = study_report(store, "houses")
        assert report["metrics"] == ["mse", "mae", "loss"] and report["selection"]["metric"] == "val_loss"
        assert report["selection"]["mode"] == "min"
        table = render(report, "markdown")
        header = table.splitlines()[0]
        for column in ("val mse", "val mae", "val loss", "test mse"):
            assert column in header
        assert "accuracy" not in table
        # Chosen: the lowest mean over seeds of each trial's lowest validation loss, from the epoch rows.
        lowest: dict[str, list[float]] = {}
        for trial in store.trials(record.id):
            lowest.setdefault(trial.label, []).append(min(e.metrics["val_loss"] for e in store.epochs(trial.id)))
        means = {label: sum(values) / len(values) for label, values in lowest.items()}
        assert [v["label"] for v in report["variants"] if v["chosen"]] == [min(means, key=means.__getitem__)], means
        print(table)
