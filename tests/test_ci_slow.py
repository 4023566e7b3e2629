"""The slow tests CI runs on purpose: real MNIST through the whole CLI, real data sets verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainlab import data

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

ONE_EPOCH = """
[study]
name = "mnist-adam"
seeds = [0]

[data]
name = "mnist"
split = { kind = "first", validation = 5000 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 128, activation = "relu" },
  { type = "Dense", units = 64, activation = "relu" },
  { type = "Dense", units = 10, activation = "softmax" },
]

[optimizer]
name = "adam"

[train]
epochs = 1
batch_size = 128
"""


def test_real_mnist_one_adam_epoch_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(ONE_EPOCH)
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "trainlab.cli", "run", "s.toml", "--format", "json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout[run.stdout.index("{"):])
    adam = report["variants"][0]
    assert adam["n"] == 1
    # one epoch of Adam at batch 128 on the 55000/5000 split of report A: Keras gets about 0.96
    assert adam["val_accuracy"]["mean"] > 0.95
    assert adam["test_accuracy"]["mean"] > 0.95
    split = adam["trials"][0]
    assert split["status"] == "done"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "california_housing"])
def test_packaged_data_sets_verify(name: str) -> None:
    result = data.verify(name)
    assert result.ok, result.message


def test_quickstart_study_is_valid_and_its_data_is_here() -> None:
    from trainlab import spec

    study = spec.load(ROOT / "studies" / "quickstart.toml")
    prepared = data.prepare(study.variants[0].spec["data"])
    assert prepared.x_train.shape == (55000, 1, 28, 28)
    assert prepared.x_val.shape == (5000, 1, 28, 28)
    assert prepared.x_test.shape == (10000, 1, 28, 28)
    assert 0.0 <= float(prepared.x_train.min()) and float(prepared.x_train.max()) <= 1.0
