"""A trained trial's model from its stored weights: the network rebuilt from the resolved model
spec, with the chosen weights the executor stored when the trial finished.

The report (figures of the chosen trial, model summaries) and the export both read trained
models; this module is the one place that knows how stored weights are laid out, so neither
reaches into the engine that wrote them, and neither needs the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from trainlab import models
from trainlab.engine.checkpoint import unpack
from trainlab.engine.loop import EVAL_BATCH
from trainlab.errors import TrainlabError
from trainlab.spec import dataset_info
from trainlab.store import WEIGHTS, Store, TrialRecord
from trainlab.trial import TrialSpec


def trial_state(store: Store, trial: TrialRecord) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The chosen weights of a finished trial and the metadata stored with them."""
    artifact = store.artifact(trial.id, WEIGHTS)
    if artifact is None:
        raise TrainlabError(
            f"trial {trial.hash[:10]} ({trial.label}, seed {trial.seed}) has no stored weights; it is {trial.status}"
        )
    groups, meta = unpack(artifact.data)
    return groups["model"], meta


def stored_input_shape(store: Store, trial_id: int) -> tuple[int, ...] | None:
    """The input shape stored with a trial's weights; ``None`` when it has no weights, or they
    carry no shape."""
    artifact = store.artifact(trial_id, WEIGHTS)
    if artifact is None:
        return None
    _, meta = unpack(artifact.data)
    return tuple(meta["input_shape"]) if meta.get("input_shape") else None


def trial_model(store: Store, trial: TrialRecord) -> tuple[models.Net, dict[str, Any]]:
    """The network of a finished trial with its chosen weights, in eval mode, and its metadata."""
    state, meta = trial_state(store, trial)
    spec = stored_spec(meta, trial)
    shape = tuple(meta.get("input_shape") or data_input_shape(spec))
    net = rebuild(spec.model.to_json(), shape, state)
    return net, {**meta, "spec": spec, "input_shape": list(shape)}


def stored_spec(meta: Mapping[str, Any], trial: TrialRecord) -> TrialSpec:
    """The spec stored with a trial's weights, else the trial's own."""
    return TrialSpec.from_json(meta.get("spec") or trial.spec_json)


def rebuild(model_spec: Mapping[str, Any], input_shape: Sequence[int], state: Mapping[str, torch.Tensor]) -> models.Net:
    """A network built from a resolved model spec alone, with ``state`` loaded (strictly), in eval mode."""
    net = models.build(model_spec, tuple(input_shape), seed=0)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
        ]
        raise TrainlabError(f"the weights do not fit the model spec: {'; '.join(p for p in parts if p)}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise TrainlabError(
                f"the weights do not fit the model spec: {name} has shape {tuple(tensor.shape)}, "
                f"the model needs {tuple(expected[name].shape)}"
            )
    try:
        net.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise TrainlabError(f"the weights do not fit the model spec: {str(exc).splitlines()[0]}") from None
    net.eval()
    return net


def data_input_shape(spec: TrialSpec) -> tuple[int, ...]:
    """The input shape of a trial's data set, for weights stored without one."""
    return tuple(dataset_info(spec.data.to_json()).input_shape)


def predict_all(net: models.Net, x: torch.Tensor) -> torch.Tensor:
    """``net``'s outputs on all of ``x``, computed in the batches training evaluates in, so that
    memory stays bounded on a whole test split."""
    outs = [net.predict(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(outs) if outs else torch.zeros((0, 1))
