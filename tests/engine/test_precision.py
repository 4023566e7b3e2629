"""Mixed precision on the CPU: bfloat16 and float16 autocast, and float16's loss scaling held to
torch.amp.GradScaler's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import mlp_spec

from trainlab import models
from trainlab.data.cache import DataCache
from trainlab.engine import fit
from trainlab.engine.lowered import lower
from trainlab.engine.population import Member, fit_population
from trainlab.engine.precision import LossScaler, autocast
from trainlab.errors import SpecError
from trainlab.optim import Optimizer
from trainlab.trial import TrainSettings


def run(trial: dict[str, Any], resume: bytes | None = None) -> tuple[Any, list[bytes], torch.nn.Module]:
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, 0)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], trial["optimizer"])
    checkpoints: list[bytes] = []
    result = fit(
        net,
        opt,
        tensors,
        TrainSettings.of(trial),
        info.task,
        seed=0,
        resume=resume,
        on_epoch=lambda e, logs, make: checkpoints.append(make()),
        lowered=True,
    )
    return result, checkpoints, net


def test_the_loss_scaler_follows_gradscaler() -> None:
    """The same gradients, some with an overflow, through GradScaler (with torch's SGD) and through
    LossScaler (with trainlab's): the same scale after every step, the same steps skipped, the same weights."""
    torch.manual_seed(0)
    grads = [torch.randn(5) for _ in range(12)]
    for i in (2, 3, 9):
        grads[i][1] = math.inf if i != 3 else math.nan
    kw = {"init_scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3}

    theirs = torch.nn.Parameter(torch.ones(5))
    sgd = torch.optim.SGD([theirs], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", **kw)
    ours = torch.ones(5)
    optimizer = Optimizer([ours], {"name": "sgd", "learning_rate": 0.1})
    loss_scaler = LossScaler(**kw)
    for g in grads:
        sgd.zero_grad()
        scaler.scale((theirs * g).sum()).backward()  # the gradient is g times the scale
        scaler.step(sgd)
        scaler.update()
        unscaled, finite = loss_scaler.unscale([g * loss_scaler.scale])
        if finite:
            optimizer.step(unscaled)
        loss_scaler.update(finite)
        assert loss_scaler.scale == scaler.get_scale()
        torch.testing.assert_close(ours, theirs.detach(), rtol=0, atol=0)
    assert optimizer.iterations == len(grads) - 3


def test_bfloat16_trains_to_other_but_finite_numbers(tmp_path: Path) -> None:
    full, _, _ = run(mlp_spec(tmp_path, epochs=2))
    half, _, _ = run(mlp_spec(tmp_path, epochs=2, train={"precision": "bfloat16"}))
    for epoch_full, epoch_half in zip(full.history, half.history):
        assert all(math.isfinite(epoch_half[k]) for k in ("loss", "val_loss", "accuracy"))
        assert epoch_half["loss"] != epoch_full["loss"]
        assert epoch_half["loss"] == pytest.approx(epoch_full["loss"], rel=0.05)  # the same training, rounded coarser


def test_float16_resumes_with_its_loss_scale(tmp_path: Path) -> None:
    trial = mlp_spec(tmp_path, epochs=3, train={"precision": "float16"})
    full, checkpoints, full_net = run(trial)
    assert all(math.isfinite(h["loss"]) for h in full.history)
    resumed, _, resumed_net = run(trial, resume=checkpoints[0])
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for key, value in full_net.state_dict().items():
        assert torch.equal(resumed_net.state_dict()[key], value)


def test_mixed_precision_takes_the_autograd_loop_not_the_lowered_step(tmp_path: Path) -> None:
    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    for precision, lowered in (("float32", True), ("bfloat16", False), ("float16", False)):
        trial = mlp_spec(tmp_path, optimizer="sgd", layers=layers, train={"precision": precision})
        net = models.build(trial["model"], (1, 8, 8), 0)
        opt = Optimizer(list(net.parameters()), trial["optimizer"])
        assert (lower(net, opt, TrainSettings.of(trial), "classification") is not None) == lowered


def test_float16_is_refused_in_a_population(tmp_path: Path) -> None:
    trial = mlp_spec(tmp_path, train={"precision": "float16"})
    tensors, info, _ = DataCache().get(trial["data"])
    members = [
        Member(models.build(trial["model"], info.input_shape, s), trial["optimizer"], TrainSettings.of(trial))
        for s in (0, 1)
    ]
    with pytest.raises(ValueError, match="float16 trials train alone"):
        fit_population(members, tensors, info.task, seed=0)


def test_autocast_runs_products_in_the_precision_and_float32_untouched() -> None:
    a = torch.randn(4, 4)
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        with autocast(torch.device("cpu"), precision):
            assert (a @ a).dtype == dtype


def test_an_unknown_precision_names_the_key_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        mlp_spec(tmp_path, train={"precision": "float8"})
    assert "train.precision" in str(caught.value)
    assert "'float32', 'bfloat16', 'float16'" in str(caught.value)
