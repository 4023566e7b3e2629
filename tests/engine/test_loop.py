"""The training loop: learning, resuming bit-identically from any epoch, divergence, chosen weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import mlp_spec

from trainlab import models
from trainlab.data.cache import DataCache
from trainlab.engine import FitResult, fit
from trainlab.optim import Optimizer
from trainlab.trial import TrainSettings


def variant(
    tmp_path: Path, train: dict[str, Any] | None = None, optimizer: str = "adam", epochs: int = 4
) -> dict[str, Any]:
    """The tiny study's MLP trained with ``optimizer``, ``train`` adding to its training settings."""
    return mlp_spec(tmp_path, optimizer=optimizer, epochs=epochs, train=train)


def train(
    trial: dict[str, Any], seed: int = 0, **kw: Any
) -> tuple[FitResult, list[tuple[int, dict[str, float], bytes]], torch.nn.Module]:
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, seed)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], trial["optimizer"])
    seen: list[tuple[int, dict[str, float], bytes]] = []
    result = fit(
        net,
        opt,
        tensors,
        TrainSettings.of(trial),
        info.task,
        seed=seed,
        on_epoch=lambda e, logs, ck: seen.append((e, logs, ck())),
        **kw,
    )
    return result, seen, net


def strip_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_learns_the_tiny_task_and_records_keras_metrics(tmp_path: Path) -> None:
    result, seen, _ = train(variant(tmp_path))
    assert result.status == "done" and result.epochs == 4
    assert [e for e, _, _ in seen] == [0, 1, 2, 3]
    assert set(seen[0][1]) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
    assert seen[-1][1]["val_accuracy"] > 0.9
    assert seen[-1][1]["loss"] < seen[0][1]["loss"]


@pytest.mark.parametrize("stop_after", [0, 2])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path: Path, stop_after: int) -> None:
    trial = variant(tmp_path, {"reduce_lr_on_plateau": {"patience": 1, "factor": 0.5}})
    full, seen, full_net = train(trial)
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, 123)  # other init: the checkpoint must overwrite it
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], trial["optimizer"])
    resumed = fit(net, opt, tensors, TrainSettings.of(trial), info.task, seed=0, resume=seen[stop_after][2])
    assert strip_time(resumed.history) == strip_time(full.history)
    assert resumed.best_epoch == full.best_epoch
    for key, value in full_net.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    for key, value in full.weights.items():
        assert torch.equal(resumed.weights[key], value), key


def test_a_checkpoint_of_a_stopped_run_finishes_without_training(tmp_path: Path) -> None:
    trial = variant(tmp_path, {"early_stopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}}, epochs=10)
    full, seen, _ = train(trial)
    assert full.epochs == 2 and "early stopping" in full.stop_reason
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, 0)
    opt = Optimizer(list(net.parameters()), trial["optimizer"])
    again = fit(net, opt, tensors, TrainSettings.of(trial), info.task, seed=0, resume=seen[-1][2])
    assert again.epochs == 2 and again.stop_reason == full.stop_reason


def test_seeds_differ_and_repeat(tmp_path: Path) -> None:
    trial = variant(tmp_path, epochs=2)
    a, _, _ = train(trial, seed=0)
    b, _, _ = train(trial, seed=0)
    c, _, _ = train(trial, seed=1)
    assert strip_time(a.history) == strip_time(b.history)
    assert strip_time(a.history) != strip_time(c.history)


def test_divergence_ends_the_trial_as_diverged(tmp_path: Path) -> None:
    trial = variant(tmp_path, optimizer="sgd", epochs=5)
    trial["optimizer"]["learning_rate"] = 1e30
    result, seen, _ = train(trial)
    assert result.status == "diverged"
    assert result.epochs == len(seen) < 5 or not math.isfinite(seen[-1][1]["loss"])
    assert "loss became" in result.stop_reason


def test_keep_best_returns_the_best_epochs_weights_and_keep_last_the_final(tmp_path: Path) -> None:
    trial = variant(tmp_path, epochs=4)
    best, seen, net = train(trial)
    values = [logs["val_accuracy"] for _, logs, _ in seen]
    assert best.best_epoch == values.index(max(values))
    assert best.best["val_accuracy"] == max(values)
    trial["train"]["keep"] = "last"
    last, _, net = train(trial)
    assert last.best_epoch == 3
    assert all(torch.equal(last.weights[k], v) for k, v in net.state_dict().items())


def test_full_batch_is_one_step_per_epoch(tmp_path: Path) -> None:
    trial = variant(tmp_path, optimizer="sgd", epochs=3)
    trial["train"]["batch_size"] = "full"
    steps: list[tuple[int, int]] = []
    train(trial, on_batch=lambda step, total: steps.append((step, total)))
    assert steps == [(1, 1)] * 3


def test_a_full_batch_is_shuffled_only_when_the_model_draws_noise(tmp_path: Path) -> None:
    from trainlab.engine.loop import epoch_batches

    trial = variant(tmp_path, optimizer="sgd")
    trial["train"]["batch_size"] = "full"
    tensors, _, _ = DataCache().get(trial["data"])
    settings = TrainSettings.of(trial)
    xs, ys, batch, steps = epoch_batches(tensors, settings, 0, 1, stochastic=False)
    assert (batch, steps) == (len(tensors.x_train), 1) and xs is tensors.x_train and ys is tensors.y_train
    xs, ys, _, _ = epoch_batches(tensors, settings, 0, 1, stochastic=True)
    assert not torch.equal(ys, tensors.y_train) and torch.equal(ys.sort().values, tensors.y_train.sort().values)
    trial["train"]["batch_size"] = 16
    xs, _, _, _ = epoch_batches(tensors, TrainSettings.of(trial), 0, 1, stochastic=False)
    assert not torch.equal(xs, tensors.x_train)


def test_full_batch_without_noise_equals_the_shuffled_gradient_up_to_rounding(tmp_path: Path) -> None:
    trial = variant(tmp_path, optimizer="sgd", epochs=3)
    trial["model"]["layers"] = [layer for layer in trial["model"]["layers"] if layer["type"] != "Dropout"]
    trial["train"]["batch_size"] = "full"
    unshuffled, _, net = train(trial)
    assert not net.stochastic
    from trainlab.engine import loop

    original = loop.epoch_batches
    try:
        loop.epoch_batches = lambda *a, **kw: original(*a, **{**kw, "stochastic": True})  # type: ignore[assignment]
        shuffled, _, _ = train(trial)
    finally:
        loop.epoch_batches = original  # type: ignore[assignment]
    for a, b in zip(strip_time(unshuffled.history), strip_time(shuffled.history), strict=True):
        assert a == pytest.approx(b, rel=1e-5)
