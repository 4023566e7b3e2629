"""BatchNormalization as Keras 3 computes it, pinned against Keras' formulas written out in numpy.

Keras 3 ``BatchNormalization.call`` in training: ``mean, variance = moments(x, reduction axes)``
(``variance`` the plain mean of squared deviations), the output
``(x - mean) / sqrt(variance + epsilon) * gamma + beta``, and
``moving_x = moving_x * momentum + x * (1 - momentum)`` for the mean and the variance; in
inference the moving statistics take the batch's place. Defaults: momentum 0.99, epsilon 1e-3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import make_npz

from trainlab import models, spec
from trainlab.data.cache import DataCache
from trainlab.engine.checkpoint import unpack
from trainlab.executors import run_local
from trainlab.store import WEIGHTS, Store

MOMENTUM, EPSILON = 0.99, 1e-3


class KerasReference:
    """Keras 3's BatchNormalization in float64 numpy: the independent side of every comparison."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        self.gamma, self.beta = gamma.astype(np.float64), beta.astype(np.float64)
        self.moving_mean = np.zeros_like(self.gamma)
        self.moving_variance = np.ones_like(self.gamma)

    def _shape(self, x: np.ndarray) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.ndim - 2)

    def train(self, x: np.ndarray) -> np.ndarray:
        axes = (0, *range(2, x.ndim))
        x = x.astype(np.float64)
        mean = x.mean(axis=axes)
        variance = np.square(x - mean.reshape(self._shape(x))).mean(axis=axes)
        self.moving_mean = self.moving_mean * MOMENTUM + mean * (1 - MOMENTUM)
        self.moving_variance = self.moving_variance * MOMENTUM + variance * (1 - MOMENTUM)
        return self._normalise(x, mean, variance)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self._normalise(x.astype(np.float64), self.moving_mean, self.moving_variance)

    def _normalise(self, x: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
        s = self._shape(x)
        return (x - mean.reshape(s)) / np.sqrt(variance.reshape(s) + EPSILON) * self.gamma.reshape(
            s
        ) + self.beta.reshape(s)


def built_norm(input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The BatchNormalization module trainlab builds for a Dense (flat input) or Conv2D model,
    with gamma and beta set away from 1 and 0 so that both show in the outputs."""
    first: dict[str, Any] = (
        {"type": "Dense", "units": 4} if len(input_shape) == 1 else {"type": "Conv2D", "filters": 4, "kernel_size": 1}
    )
    model = models.resolve({"layers": [first, {"type": "BatchNormalization"}]}, input_shape)
    norm = models.build(model, input_shape, seed=0).body[1]
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.5, -2.0, 1.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.3, 2.0, 0.0]))
    return norm


SHAPES = {
    "dense-batch-8": (8, 4),
    "dense-batch-1": (1, 4),
    "conv-batch-8": (8, 4, 3, 3),
    "conv-batch-1": (1, 4, 3, 3),
    "conv-batch-1-one-pixel": (1, 4, 1, 1),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_one_training_step_matches_keras(shape: tuple[int, ...]) -> None:
    norm = built_norm(shape[1:2] if len(shape) == 2 else shape[1:])
    keras = KerasReference(norm.weight.detach().numpy(), norm.bias.detach().numpy())
    x = np.random.default_rng(1).normal(2.0, 3.0, size=shape).astype(np.float32)
    norm.train()
    out = norm(torch.from_numpy(x))
    want = keras.train(x)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.running_mean.numpy(), keras.moving_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.running_var.numpy(), keras.moving_variance, rtol=1e-6, atol=1e-6)
    assert int(norm.num_batches_tracked) == 1


def test_a_one_example_dense_batch_outputs_beta_and_moves_the_variance_toward_zero() -> None:
    norm = built_norm((4,))
    x = torch.tensor([[3.0, -1.0, 0.5, 7.0]])
    out = norm.train()(x)
    assert torch.equal(out, norm.bias.detach().reshape(1, 4))
    assert torch.allclose(norm.running_var, torch.full((4,), MOMENTUM))
    assert torch.allclose(norm.running_mean, x[0] * (1 - MOMENTUM))


def test_a_one_example_batch_passes_only_beta_its_gradient() -> None:
    """With one value per channel the output is beta whatever x and gamma are: their gradients
    are 0, beta's is the incoming gradient."""
    norm = built_norm((4,))
    x = torch.tensor([[3.0, -1.0, 0.5, 7.0]], requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    gx, gamma, beta = torch.autograd.grad((norm.train()(x) * upstream).sum(), [x, norm.weight, norm.bias])
    assert torch.equal(gx, torch.zeros_like(gx))
    assert torch.equal(gamma, torch.zeros(4))
    assert torch.equal(beta, upstream[0])


@pytest.mark.parametrize(
    "shape", [(8, 4), (1, 4), (8, 4, 3, 3), (1, 4, 2, 2)], ids=["dense-8", "dense-1", "conv-8", "conv-1"]
)
def test_moving_statistics_after_several_steps_and_inference_match_keras(shape: tuple[int, ...]) -> None:
    norm = built_norm(shape[1:2] if len(shape) == 2 else shape[1:])
    keras = KerasReference(norm.weight.detach().numpy(), norm.bias.detach().numpy())
    rng = np.random.default_rng(2)
    norm.train()
    for step in range(6):
        x = rng.normal(step - 2.0, 1.0 + step, size=shape).astype(np.float32)
        norm(torch.from_numpy(x))
        keras.train(x)
    np.testing.assert_allclose(norm.running_mean.numpy(), keras.moving_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.running_var.numpy(), keras.moving_variance, rtol=1e-6, atol=1e-6)
    assert int(norm.num_batches_tracked) == 6
    x = rng.normal(0.0, 2.0, size=(5, *shape[1:])).astype(np.float32)
    with torch.no_grad():
        out = norm.eval()(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), keras.infer(x), rtol=1e-5, atol=1e-5)


def test_the_moving_variance_is_the_biased_one_not_torchs() -> None:
    """The unbiased update (torch's BatchNorm1d) is what this replaces: at batch 8 it moves the
    variance 8/7 as far, which the comparison above must be able to see."""
    norm = built_norm((4,))
    x = np.random.default_rng(3).normal(0.0, 4.0, size=(8, 4)).astype(np.float32)
    norm.train()(torch.from_numpy(x))
    unbiased = MOMENTUM + (1 - MOMENTUM) * x.astype(np.float64).var(axis=0, ddof=1)
    assert np.abs(norm.running_var.numpy() - unbiased).min() > 100 * 1e-6, "far outside the tolerance above"


def test_state_dict_keeps_torchs_batch_norm_layout() -> None:
    """Checkpoints and exported weights written before keep loading: same names, shapes, dtypes."""
    norm = built_norm((4,))
    reference = torch.nn.BatchNorm1d(4).state_dict()
    state = norm.state_dict()
    assert state.keys() == reference.keys()
    for key, tensor in reference.items():
        assert (state[key].shape, state[key].dtype) == (tensor.shape, tensor.dtype), key
    norm.load_state_dict(reference)


def test_the_lowered_sgd_step_leaves_batch_norm_models_to_the_autograd_loop() -> None:
    """The hand-lowered step covers Dense layers and a few activations only; a model with
    BatchNormalization trains in the autograd loop (the same model without it is lowered)."""
    from trainlab.engine.lowered import lower
    from trainlab.optim import Optimizer, resolve
    from trainlab.trial import TrainSettings

    settings = TrainSettings(
        epochs=1,
        batch_size=1,
        loss="sparse_categorical_crossentropy",
        shuffle=True,
        monitor="val_loss",
        keep="last",
        early_stopping=None,
        reduce_lr_on_plateau=None,
    )
    dense = [{"type": "Dense", "units": 4, "activation": "relu"}, {"type": "Dense", "units": 3}]
    for layers, lowered in ((dense, True), ([dense[0], {"type": "BatchNormalization"}, dense[1]], False)):
        net = models.build(models.resolve({"layers": layers}, (5,)), (5,), seed=0)
        optimizer = Optimizer(list(net.parameters()), resolve("sgd"))
        assert (lower(net, optimizer, settings, "classification") is not None) == lowered


STUDY = """
[study]
name = "bn"
seeds = [0]

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 47 }}

[model]
layers = {layers}

[optimizer]
name = "sgd"

[train]
epochs = 3
batch_size = {batch_size}
keep = "last"

[[compare]]
label = "sgd"
"optimizer.learning_rate" = 0.05

[[compare]]
label = "momentum"
optimizer = {{ name = "sgd", momentum = 0.9, learning_rate = 0.01 }}

[[compare]]
label = "nesterov"
optimizer = {{ name = "sgd", momentum = 0.5, nesterov = true, learning_rate = 0.02 }}
"""
DENSE = '[{ type = "Flatten" }, { type = "Dense", units = 16, activation = "relu" }, { type = "BatchNormalization" }, { type = "Dense", units = 3, activation = "softmax" }]'
CONV = (
    '[{ type = "Conv2D", filters = 4, kernel_size = 3, activation = "relu" }, { type = "BatchNormalization" }, '
    '{ type = "MaxPooling2D" }, { type = "Flatten" }, { type = "BatchNormalization" }, { type = "Dense", units = 3, activation = "softmax" }]'
)


def train(tmp_path: Path, name: str, layers: str, batch_size: int, population: int) -> dict[str, Any]:
    """Each trial's status, population size, epochs and final weights after ``run_local``."""
    make_npz(tmp_path / "tiny.npz", n_train=240)  # 193 training examples after 47 for validation
    (tmp_path / f"{name}.toml").write_text(STUDY.format(layers=layers, batch_size=batch_size))
    out = {}
    with Store.open(tmp_path / f"{name}.db") as store:
        run_local(spec.load(tmp_path / f"{name}.toml"), store, population=population, cache=DataCache())
        record = store.study("bn")
        assert record is not None
        for trial in store.trials(record.id):
            artifact = store.artifact(trial.id, WEIGHTS)
            assert artifact is not None
            out[trial.label] = {
                "status": trial.status,
                "population": trial.result["population"],
                "epochs": [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)],
                "weights": unpack(artifact.data)[0]["model"],
            }
    return out


@pytest.mark.parametrize(
    ("layers", "batch_size"),
    [(DENSE, 1), (DENSE, 16), (DENSE, 192), (CONV, 16)],
    ids=["dense-1", "dense-16", "dense-192", "conv-16"],
)
def test_a_one_example_last_batch_trains_alone_and_in_a_population_alike(
    tmp_path: Path, layers: str, batch_size: int
) -> None:
    """Three SGD variants (Adam's normalised steps turn rounding-level gradients of a Dense bias
    before the normalisation into visible weight differences, with or without a short batch)."""
    assert (193 - 1) % batch_size == 0, "the last batch of every epoch holds one example"
    alone = train(tmp_path, "alone", layers, batch_size, population=1)
    together = train(tmp_path, "together", layers, batch_size, population=3)
    assert alone.keys() == together.keys() == {"sgd", "momentum", "nesterov"}
    for label, a in alone.items():
        b = together[label]
        assert (a["status"], b["status"]) == ("done", "done")
        assert (a["population"], b["population"]) == (1, 3)
        assert len(a["epochs"]) == len(b["epochs"]) == 3
        for ea, eb in zip(a["epochs"], b["epochs"]):
            assert ea.keys() == eb.keys()
            for metric in ea:
                assert ea[metric] == pytest.approx(eb[metric], rel=2e-5, abs=2e-5), (label, metric)
        for key, w in a["weights"].items():
            assert torch.allclose(w.double(), b["weights"][key].double(), atol=1e-4), (label, key)
        steps = 3 * -(-193 // batch_size)
        tracked = [w for key, w in a["weights"].items() if key.endswith("num_batches_tracked")]
        assert tracked and all(int(t) == steps for t in tracked), (
            "every batch, the one-example one included, updated the statistics"
        )
