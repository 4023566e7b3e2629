"""What a finished trial's chosen weights do on the test set: the data behind the confusion
matrix, the grid of test images, the predicted-vs-true scatter and the t-SNE feature picture.

This is the one place the report touches the data set (through
:class:`~trainlab.data.cache.DataCache`, so the split is exactly the trial's) and torch, and
it reads the trained model through :mod:`trainlab.trained`. It
reads the test set only for the trial already chosen on validation (or one the user names);
nothing here feeds back into choosing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainlab.data.cache import DataCache
from trainlab.errors import TrainlabError
from trainlab.store import Store, TrialRecord
from trainlab.trained import predict_all, trial_model
from trainlab.trial import TrialSpec


@dataclass(frozen=True)
class TestPredictions:
    """A trial's predictions on its test split.

    ``x`` are the model inputs (N, C, H, W images in [0, 1], or standardized features);
    ``y_pred`` the predicted class (or value); ``proba`` the class probabilities (None for
    regression); ``class_names`` empty for regression.
    """

    trial: TrialRecord
    x: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    class_names: tuple[str, ...]
    task: str


def _data(trial: TrialRecord, cache: object | None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], str]:
    spec = TrialSpec.from_json(trial.spec_json)
    data_cache = cache if isinstance(cache, DataCache) else DataCache()
    tensors, info, _ = data_cache.get(spec.data.to_json())
    return tensors.x_test, tensors.y_test, tuple(info.class_names), info.task


def test_predictions(store: Store, trial: TrialRecord, cache: object | None = None) -> TestPredictions:
    """Run the trial's chosen weights on its whole test split."""
    net, _ = trial_model(store, trial)
    x, y, class_names, task = _data(trial, cache)
    out = predict_all(net, x)
    if task == "classification":
        proba = out.numpy()
        return TestPredictions(trial, x.numpy(), y.numpy(), proba.argmax(1), proba, class_names, task)
    return TestPredictions(trial, x.numpy(), y.numpy(), out.reshape(-1).numpy(), None, (), task)


@dataclass(frozen=True)
class Hidden:
    """Activations of the last hidden layer (the input of the output layer) on a test sample."""

    trial: TrialRecord
    features: np.ndarray
    labels: np.ndarray
    layer: str
    """Which activations these are, for the figure: e.g. ``dense_2 (64 units)``."""


def last_hidden(store: Store, trial: TrialRecord, samples: int, cache: object | None = None, seed: int = 0) -> Hidden:
    """The last hidden layer's activations on ``samples`` test examples drawn with ``seed``.

    The same examples are drawn for every trial on the same data, so that the pictures of
    two models show the same images.
    """
    net, meta = trial_model(store, trial)
    x, y, _, _ = _data(trial, cache)
    n = min(samples, len(x))
    index = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
    xs = x[torch.from_numpy(index)]
    linears = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TrainlabError(f"trial {trial.hash[:10]} ({trial.label}) has no Linear layer whose input to show")
    captured: list[torch.Tensor] = []
    handle = linears[-1][1].register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
    try:
        net.predict(xs)
    finally:
        handle.remove()
    features = captured[0].reshape(n, -1).numpy()
    from trainlab.models import summary

    spec = meta["spec"]
    if spec.model.factory is not None:
        where = linears[-1][0].removeprefix("body.0.") or "the module"
        reference = spec.model.factory.reference
        layer = f"input of {where}, the last Linear layer of {reference}, {features.shape[1]} features"
    else:
        rows = summary(spec.model.to_json(), tuple(meta["input_shape"]))
        if any(r.type in ("Dense", "Conv2D") for r in rows[:-1]):
            layer = f"output of {rows[-2].name}, {features.shape[1]} features"
        else:
            layer = f"no hidden layer: the {features.shape[1]} inputs"
    return Hidden(trial, features, y[torch.from_numpy(index)].numpy(), layer)
