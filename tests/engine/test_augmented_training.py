"""Augmentation layers and SpatialDropout2D in training: a population trains each member as it
trains alone, a resumed trial continues bit-exactly, and the noise follows the seed and the epoch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import SGD_AND_ADAM, load_study, npz_study, variant
from helpers import make_npz

from trainlab import executors, models
from trainlab.data.cache import DataCache
from trainlab.engine.checkpoint import unpack
from trainlab.engine.loop import epoch_batches
from trainlab.executors import Silent, run_local
from trainlab.store import CHECKPOINT, WEIGHTS, Store, TrialRecord
from trainlab.trial import TrainSettings

AUGMENTED: list[dict[str, Any]] = [
    {"type": "RandomFlip", "mode": "horizontal"},
    {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": [-0.2, 0.1], "fill_mode": "constant"},
    {"type": "RandomRotation", "factor": 0.05},
    {"type": "RandomZoom", "height_factor": 0.1, "width_factor": 0.2, "fill_mode": "nearest"},
    {"type": "RandomContrast", "factor": 0.2, "value_range": [0, 1]},
    {"type": "RandomCrop", "height": 7, "width": 7},
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "SpatialDropout2D", "rate": 0.25},
    {"type": "Flatten"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]
"""A CNN for the 8x8 images of :func:`helpers.make_npz` with every augmentation layer and
SpatialDropout2D, each drawing noise every step."""
PLAIN = [layer for layer in AUGMENTED if not layer["type"].startswith("Random") and layer["type"] != "SpatialDropout2D"]
"""The same CNN without the layers that draw noise."""

VARIANTS = [
    variant("sgd", optimizer={"name": "sgd", "learning_rate": 0.05}),
    variant("momentum", optimizer={"name": "sgd", "learning_rate": 0.02, "momentum": 0.9}),
    variant("adam", optimizer={"name": "adam", "learning_rate": 0.003}),
]


def train(folder: Path, name: str, layers: list[dict[str, Any]], population: int) -> dict[str, Any]:
    """Each trial's population size, epochs (without timings) and final weights, by label."""
    if not (folder / "tiny.npz").exists():
        make_npz(folder / "tiny.npz")
    study = load_study(folder, npz_study(seeds=[3], layers=layers, epochs=3, compare=VARIANTS), name="tiny")
    out = {}
    with Store.open(folder / f"{name}.db") as store:
        run_local(study, store, population=population, cache=DataCache())
        record = store.study("tiny")
        assert record is not None
        for trial in store.trials(record.id):
            assert trial.status == "done", trial.error
            artifact = store.artifact(trial.id, WEIGHTS)
            assert artifact is not None
            out[trial.label] = {
                "population": trial.result["population"],
                "epochs": [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)],
                "weights": unpack(artifact.data)[0]["model"],
            }
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The three variants trained alone and as one population with the noise layers, and as one
    population without them."""
    folder = tmp_path_factory.mktemp("augmented")
    return {
        "alone": train(folder, "alone", AUGMENTED, population=1),
        "together": train(folder, "together", AUGMENTED, population=3),
        "plain": train(folder, "plain", PLAIN, population=3),
    }


def test_a_population_augments_and_drops_channels_as_each_member_alone(trained: dict[str, dict[str, Any]]) -> None:
    alone, together = trained["alone"], trained["together"]
    assert alone.keys() == together.keys() == {"sgd", "momentum", "adam"}
    for label, a in alone.items():
        b = together[label]
        assert (a["population"], b["population"]) == (1, 3)
        for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
            for metric in ea:
                assert ea[metric] == pytest.approx(eb[metric], rel=2e-5, abs=2e-5), (label, metric)
        for key, w in a["weights"].items():
            assert torch.allclose(w, b["weights"][key], atol=1e-4), (label, key)


def test_the_noise_changes_training(trained: dict[str, dict[str, Any]]) -> None:
    """The comparison above would tell little if the noise layers did nothing in training:
    without them the same variants train to other losses."""
    augmented, plain = trained["together"], trained["plain"]
    for label in augmented:
        losses = [e["loss"] for e in augmented[label]["epochs"]], [e["loss"] for e in plain[label]["epochs"]]
        assert all(abs(a - b) > 1e-4 for a, b in zip(*losses)), label


def _augmented_batch(seed: int, epoch: int) -> torch.Tensor:
    """The training outputs of the augmentation layers on a fixed batch, after the engine seeds ``epoch``."""
    net = models.build(models.resolve({"layers": AUGMENTED}, (1, 8, 8)), (1, 8, 8), seed=0)
    augment = torch.nn.Sequential(*list(net.body)[:6]).train()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    settings = TrainSettings(4, 16, "sparse_categorical_crossentropy", True, "val_loss", "last", None, None)
    data = type("Data", (), {"x_train": x, "y_train": torch.zeros(16, dtype=torch.long)})()
    epoch_batches(data, settings, seed, epoch)  # type: ignore[arg-type]
    return augment(x)


def test_augmentation_depends_on_the_trial_seed_and_the_epoch_alone() -> None:
    first = _augmented_batch(seed=5, epoch=2)
    torch.rand(100)  # whatever ran before in the process
    assert torch.equal(_augmented_batch(seed=5, epoch=2), first)
    assert not torch.equal(_augmented_batch(seed=5, epoch=3), first)
    assert not torch.equal(_augmented_batch(seed=6, epoch=2), first)


class StopAfter(Silent):
    """Interrupts training (as Ctrl-C does) once epoch ``epoch`` of the trial labelled ``label`` is recorded."""

    def __init__(self, label: str, epoch: int) -> None:
        self.label, self.epoch = label, epoch

    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None:
        if (trial.label, epoch) == (self.label, self.epoch):
            raise KeyboardInterrupt


def history(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Per trial hash: its recorded epochs, then its final weights, without timings."""
    record = store.study("tiny")
    assert record is not None
    out = {}
    for trial in store.trials(record.id):
        assert trial.status == "done", trial.error
        rows: list[Any] = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)]
        artifact = store.artifact(trial.id, WEIGHTS)
        assert artifact is not None
        rows.append({k: v.tolist() for k, v in unpack(artifact.data)[0]["model"].items()})
        out[trial.hash] = rows
    return out


@pytest.mark.parametrize("population", [1, 2])
def test_a_trial_resumed_from_an_older_checkpoint_augments_as_the_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, population: int
) -> None:
    """Checkpoints after epochs 1 and 3 (a clock ticking once per decision, 1.5 s between them);
    Adam is interrupted after epoch 2, and the resumed run re-does epoch 2 with the same noise."""
    make_npz(tmp_path / "tiny.npz")
    study = load_study(tmp_path, npz_study(seeds=[0], layers=AUGMENTED, epochs=4, compare=SGD_AND_ADAM), name="tiny")
    with Store.open(tmp_path / "reference.db") as store:
        run_local(study, store, population=population, checkpoint_every=0)
        reference = history(store)
    ticks: Iterator[float] = itertools.count()
    monkeypatch.setattr(executors, "_monotonic", lambda: float(next(ticks)))
    with Store.open(tmp_path / "resumed.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_local(study, store, population=population, checkpoint_every=1.5, reporter=StopAfter("adam", 2))
        record = store.study("tiny")
        assert record is not None
        adam = next(t for t in store.trials(record.id) if t.label == "adam")
        saved = store.artifact(adam.id, CHECKPOINT)
        assert saved is not None and saved.epoch == 1
        monkeypatch.undo()
        run_local(study, store, population=population)
        assert history(store) == reference


def test_a_compiled_population_step_augments_as_the_eager_one(tmp_path: Path) -> None:
    """A compiled program would draw its random numbers from its own generator; the noise layers
    run outside it, so compiling changes float rounding only."""
    from trainlab.engine.population import Member, fit_population
    from trainlab.seeding import derive

    make_npz(tmp_path / "tiny.npz")
    study = load_study(tmp_path, npz_study(seeds=[3], layers=AUGMENTED, epochs=1, compare=VARIANTS[:2]), name="tiny")
    tensors, info, _ = DataCache().get(study.variants[0].spec["data"])

    def members() -> list[Member]:
        return [
            Member(
                models.build(v.spec["model"], info.input_shape, derive(0, "init")),
                v.spec["optimizer"],
                TrainSettings.of(v.spec),
            )
            for v in study.variants
        ]

    eager = fit_population(members(), tensors, info.task, seed=0, compile=False)
    compiled = fit_population(members(), tensors, info.task, seed=0, compile=True)
    for a, b in zip(eager, compiled, strict=True):
        for ha, hb in zip(a.history, b.history, strict=True):
            assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-5)
            assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-5)
        for name, w in a.weights.items():
            assert torch.allclose(w, b.weights[name], atol=1e-5), name
