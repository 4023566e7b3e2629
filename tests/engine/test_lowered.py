"""The hand-lowered SGD step equals the autograd loop up to float rounding, resumes exactly, and
is used only where it applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from factories import load_study, npz_study
from helpers import make_npz

from trainlab import models
from trainlab.data.cache import DataCache, Tensors
from trainlab.engine import fit
from trainlab.engine.lowered import lower
from trainlab.optim import Optimizer
from trainlab.trial import TrainSettings

CLASSIFIER: list[dict[str, Any]] = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 12, "activation": "relu"},
    {"type": "Dense", "units": 6, "activation": "tanh"},
    {"type": "Dense", "units": 5, "activation": "sigmoid"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]
REGRESSOR: list[dict[str, Any]] = [
    {"type": "Dense", "units": 8, "activation": "relu"},
    {"type": "Dense", "units": 1, "use_bias": False},
]
TANH = 2
"""Where CLASSIFIER's tanh layer is."""


def with_layer(index: int, layer: dict[str, Any]) -> list[dict[str, Any]]:
    """CLASSIFIER with its layer at ``index`` replaced by ``layer``."""
    return [layer if i == index else dict(old) for i, old in enumerate(CLASSIFIER)]


def trial(
    tmp_path: Path,
    *,
    batch: int = 1,
    layers: list[dict[str, Any]] = CLASSIFIER,
    optimizer: dict[str, Any] | None = None,
    regression: bool = False,
) -> dict[str, Any]:
    if regression:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((150, 5)).astype(np.float32)
        np.savez(tmp_path / "r.npz", x_train=x, y_train=(x @ [1.0, -2.0, 0.5, 0.0, 1.0]).astype(np.float32))
        file = "r.npz"
    else:
        make_npz(tmp_path / "tiny.npz", n_train=150)
        file = "tiny.npz"
    tables = npz_study(
        name=None,
        seeds=None,
        data=file,
        split={"kind": "first", "validation": 40},
        layers=layers,
        optimizer="sgd",
        epochs=3,
        batch_size=batch,
    )
    resolved = load_study(tmp_path, tables, name="s").variants[0].spec
    if optimizer:
        resolved["optimizer"] = {**resolved["optimizer"], **optimizer}
    return resolved


def train(
    resolved: dict[str, Any], *, lowered: bool, resume: bytes | None = None, seen: list[bytes] | None = None
) -> tuple[Any, Optimizer]:
    tensors, info, _ = DataCache().get(resolved["data"])
    net = models.build(resolved["model"], info.input_shape, 0)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], resolved["optimizer"])
    result = fit(
        net,
        opt,
        tensors,
        TrainSettings.of(resolved),
        info.task,
        seed=0,
        lowered=lowered,
        resume=resume,
        on_epoch=None if seen is None else lambda e, logs, ck: seen.append(ck()),
    )
    return result, opt


def strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize(
    "batch, optimizer",
    [
        (1, {}),
        (3, {"decay": 1e-3}),  # 110 examples: a short last batch of 2
        (1, {"momentum": 0.9, "decay": 1e-3, "learning_rate": 0.005}),
        (2, {"momentum": 0.5, "nesterov": True}),
    ],
    ids=["pure-sgd", "decay-batch3", "momentum-decay", "nesterov"],
)
def test_lowered_classification_equals_the_autograd_loop(tmp_path: Path, batch: int, optimizer: dict[str, Any]) -> None:
    resolved = trial(tmp_path, batch=batch, optimizer=optimizer)
    (ours, ours_opt), (theirs, theirs_opt) = train(resolved, lowered=True), train(resolved, lowered=False)
    assert ours_opt.iterations == theirs_opt.iterations == 3 * -(-110 // batch)
    for a, b in zip(strip(ours.history), strip(theirs.history), strict=True):
        assert a == pytest.approx(b, rel=2e-5, abs=1e-6)
    for key, value in theirs.weights.items():
        torch.testing.assert_close(ours.weights[key], value, rtol=1e-4, atol=1e-5)
    for key, value in theirs_opt.state_dict().items():
        torch.testing.assert_close(ours_opt.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    assert ours.history[-1]["loss"] < ours.history[0]["loss"]


def test_lowered_regression_equals_the_autograd_loop(tmp_path: Path) -> None:
    resolved = trial(tmp_path, batch=2, layers=REGRESSOR, regression=True, optimizer={"learning_rate": 0.02})
    ours, _ = train(resolved, lowered=True)
    theirs, _ = train(resolved, lowered=False)
    for a, b in zip(strip(ours.history), strip(theirs.history), strict=True):
        assert a == pytest.approx(b, rel=2e-5, abs=1e-6)
        assert set(a) == {"loss", "mse", "mae", "val_loss", "val_mse", "val_mae", "learning_rate"}
    assert ours.history[-1]["val_mse"] < 0.5 * ours.history[0]["val_mse"]


def test_lowered_training_resumes_exactly(tmp_path: Path) -> None:
    resolved = trial(tmp_path, batch=1, optimizer={"momentum": 0.9, "decay": 1e-3, "learning_rate": 0.005})
    seen: list[bytes] = []
    full, _ = train(resolved, lowered=True, seen=seen)
    resumed, _ = train(resolved, lowered=True, resume=seen[0])
    assert strip(resumed.history) == strip(full.history)
    assert all(torch.equal(resumed.weights[k], v) for k, v in full.weights.items())


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": {"name": "adam"}},
        {"optimizer": {"clipnorm": 1.0}},
        {"optimizer": {"weight_decay": 0.01}},
        {"batch": 32},
        {"layers": with_layer(TANH, {"type": "Dropout", "rate": 0.2})},
        {"layers": with_layer(TANH, {**CLASSIFIER[TANH], "activation": "elu"})},
        {"layers": with_layer(TANH, {**CLASSIFIER[TANH], "kernel_regularizer": "l2"})},
    ],
    ids=["adam", "clipnorm", "weight-decay", "batch-32", "dropout", "elu", "l2"],
)
def test_the_autograd_loop_trains_what_the_lowered_step_does_not_cover(tmp_path: Path, change: dict[str, Any]) -> None:
    resolved = trial(tmp_path, batch=change.get("batch", 1), layers=change.get("layers", CLASSIFIER))
    resolved["optimizer"] = {**resolved["optimizer"], **change.get("optimizer", {})}
    if "name" in change.get("optimizer", {}):
        resolved["optimizer"] = change["optimizer"]
    tensors, info, _ = DataCache().get(resolved["data"])
    net = models.build(resolved["model"], info.input_shape, 0)
    opt = Optimizer(list(net.parameters()), resolved["optimizer"])
    assert lower(net, opt, TrainSettings.of(resolved), info.task) is None
    plain = trial(tmp_path, batch=1)
    net = models.build(plain["model"], info.input_shape, 0)
    assert (
        lower(net, Optimizer(list(net.parameters()), plain["optimizer"]), TrainSettings.of(plain), info.task)
        is not None
    )


def test_full_batch_is_never_lowered(tmp_path: Path) -> None:
    resolved = trial(tmp_path)
    resolved["train"]["batch_size"] = "full"
    tensors, info, _ = DataCache().get(resolved["data"])
    net = models.build(resolved["model"], info.input_shape, 0)
    assert (
        lower(net, Optimizer(list(net.parameters()), resolved["optimizer"]), TrainSettings.of(resolved), info.task)
        is None
    )
    assert isinstance(tensors, Tensors)
