"""CIFAR-10 in a study: flattened to 3072 inputs for report B's MLP, and as images for Conv2D,
on a tiny fixture in the official tarball format; and the one-line instructions when it is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fixture_cifar_definition, write_cifar_tarball

from trainlab import models, spec, trained
from trainlab.data import clear_memory
from trainlab.data import datasets as ds
from trainlab.data.cache import DataCache
from trainlab.executors import run_local
from trainlab.store import WEIGHTS, Store, TrialRecord

CIFAR_STUDY = """
[study]
name = "cifar"
seeds = [0]

[data]
name = "cifar10"
split = { kind = "stratified", validation = 10 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 128, activation = "relu" },
  { type = "Dense", units = 64, activation = "relu" },
  { type = "Dense", units = 10, activation = "softmax" },
]

[optimizer]
name = "sgd"

[train]
epochs = 2
batch_size = 8

[[compare]]
label = "mlp"

[[compare]]
label = "cnn"
model = { layers = [
  { type = "Conv2D", filters = 4, kernel_size = 3, activation = "relu" },
  { type = "MaxPooling2D" },
  { type = "Flatten" },
  { type = "Dense", units = 10, activation = "softmax" },
] }
"""


# Accuracy over 10 images is a multiple of 0.1; the recorded one went through float32. 1e-6 is
# far below one image (0.1) and far above float32's rounding of such a fraction (about 1e-8).
ONE_IMAGE_IN_FLOAT32 = 1e-6


def independent_val_accuracy(store: Store, trial: TrialRecord) -> float:
    """The fraction of validation images the trial's stored weights classify right, computed with
    the network rebuilt from the spec (``trained.trial_model``), not with the training loop's evaluation."""
    net, meta = trained.trial_model(store, trial)
    tensors, _, _ = DataCache().get(meta["spec"].data.to_json())
    with torch.no_grad():
        predicted = net(tensors.x_val).argmax(dim=1)
    return float((predicted == tensors.y_val).double().mean())


@pytest.fixture
def study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.delenv("TRAINLAB_CIFAR10", raising=False)
    clear_memory()
    path = tmp_path / "cifar.toml"
    path.write_text(CIFAR_STUDY)
    yield path
    clear_memory()


def test_a_cifar10_study_trains_its_mlp_on_3072_inputs_and_its_cnn_on_images(
    tmp_path: Path, study_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball, per_class_train=1, per_class_test=2)  # 50 training images, 20 test
    monkeypatch.setenv("TRAINLAB_CIFAR10", str(tarball))
    official = ds.definitions
    monkeypatch.setattr(ds, "definitions", lambda: {**official(), "cifar10": fixture_cifar_definition(tarball)})

    study = spec.load(study_file)
    mlp, cnn = (v.spec["model"] for v in study.variants)
    assert models.shapes(mlp, (3, 32, 32))[0] == (3072,)
    assert sum(row.params for row in models.summary(mlp, (3, 32, 32))) == 402_250  # report B part 2's MLP
    assert models.shapes(cnn, (3, 32, 32))[1] == (4, 15, 15)

    with Store.open(tmp_path / "s.db") as store:
        summary = run_local(study, store)
        assert summary.ran == {"done": 2}
        record = store.study("cifar")
        assert record is not None
        for trial in store.trials(record.id):
            epochs = store.epochs(trial.id)
            assert [e.epoch for e in epochs] == [0, 1], trial.label
            result = trial.result or {}
            # The stored weights, rebuilt from the spec alone and run on the validation split here,
            # classify exactly as many of the 10 validation images right as the recorded accuracy says.
            recorded = epochs[result["best_epoch"]].metrics["val_accuracy"]
            assert recorded == result["best"]["val_accuracy"], trial.label
            assert independent_val_accuracy(store, trial) == pytest.approx(recorded, abs=ONE_IMAGE_IN_FLOAT32), (
                trial.label
            )
            assert result["split"]["dataset"] == "cifar10" and result["split"]["source"] == "file"
            assert result["split"]["sizes"] == {"train": 40, "validation": 10, "test": 20}
            weights = store.artifact(trial.id, WEIGHTS)
            assert weights is not None
            assert json.loads(trial.spec_json)["data"]["name"] == "cifar10"


def test_without_cifar10_run_stops_before_training_with_one_line_saying_how_to_provide_it(
    tmp_path: Path, study_file: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "run", study_file.name, "--store", "s.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    message = lines[0]
    assert message.startswith("trainlab: data set cifar10 is not available on this machine. To provide it: ")
    for needle in (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "trainlab data add cifar10 /path/cifar-10-python.tar.gz",
        "export TRAINLAB_CIFAR10=/path/cifar-10-python.tar.gz",
        "trainlab data verify cifar10",
    ):
        assert needle in message
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stdout
    with Store.open(tmp_path / "s.db") as store:
        trials = [t for study in store.studies() for t in store.trials(study.id)]
        assert all(t.status == "pending" and t.attempts == 0 and not store.epochs(t.id) for t in trials)
