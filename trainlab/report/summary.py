"""Model summaries as Keras users know them: each layer with its output shape and parameter
count, then the totals, trainable and not. Read from the store: the resolved model spec of
each variant's trials and the input shape stored with their weights."""

from __future__ import annotations

from dataclasses import dataclass

from trainlab.errors import SpecError
from trainlab.factory import in_process
from trainlab.models import LayerSummary, summary
from trainlab.report.tables import current_trials
from trainlab.store import Store
from trainlab.trained import stored_input_shape
from trainlab.trial import TrialSpec, canonical_json


@dataclass(frozen=True)
class ModelSummary:
    """The summary of one model, shared by the variants in ``labels`` (same layers, same input).
    ``skipped``: why it has no layers (a factory of a notebook, which only its process can build)."""

    labels: list[str]
    input_shape: tuple[int, ...]
    layers: list[LayerSummary]
    skipped: str | None = None

    @property
    def total(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.layers)

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def shape_text(shape: tuple[int, ...]) -> str:
    """Keras' notation: the batch dimension as None, ``(None, 28, 28, 1)`` style but channels first."""
    return "(" + ", ".join(["None", *map(str, shape)]) + ")"


def study_models(store: Store, study: str) -> list[ModelSummary]:
    """One summary per distinct model of the study's variants, in variant order."""

    found: dict[str, ModelSummary] = {}
    seen_labels: set[str] = set()
    for trial in current_trials(store, study):
        if trial.label in seen_labels:
            continue
        spec = TrialSpec.from_json(trial.spec_json)
        shape = _input_shape(store, trial.id, spec)
        if shape is None:
            continue
        seen_labels.add(trial.label)
        model = spec.model.to_json()
        key = canonical_json({"model": model, "shape": list(shape)})
        if key in found:
            found[key].labels.append(trial.label)
        else:
            found[key] = _summary(trial.label, shape, spec)
    return list(found.values())


def _summary(label: str, shape: tuple[int, ...], spec: TrialSpec) -> ModelSummary:
    """The model's summary; for a factory of ``__main__`` that this process does not know (a
    notebook's, read from another process), none, and why."""
    own = spec.model.factory
    if own is not None and in_process(own.reference):
        try:
            return ModelSummary([label], shape, summary(spec.model.to_json(), shape))
        except SpecError as exc:
            return ModelSummary([label], shape, [], exc.reason)
    return ModelSummary([label], shape, summary(spec.model.to_json(), shape))


def _input_shape(store: Store, trial_id: int, spec: TrialSpec) -> tuple[int, ...] | None:
    """The input shape stored with the trial's weights; else the data set's, if it can be known."""
    stored = stored_input_shape(store, trial_id)
    if stored is not None:
        return stored
    from trainlab.errors import TrainlabError
    from trainlab.spec import dataset_info

    try:
        return tuple(dataset_info(spec.data.to_json()).input_shape)
    except TrainlabError:
        return None


def text(model: ModelSummary) -> str:
    """The summary as ``model.summary()`` prints it."""
    if model.skipped is not None:
        return f"Model: {', '.join(model.labels)}  (input {shape_text(model.input_shape)}): no summary: {model.skipped}"
    rows = [("Layer (type)", "Output Shape", "Param #")]
    rows += [(f"{r.name} ({r.type})", shape_text(r.output_shape), f"{r.params:,}") for r in model.layers]
    widths = [max(len(row[i]) for row in rows) + 3 for i in range(3)]
    rule = "─" * sum(widths)
    lines = [f"Model: {', '.join(model.labels)}  (input {shape_text(model.input_shape)})", rule]
    lines.append("".join(cell.ljust(w) for cell, w in zip(rows[0], widths)).rstrip())
    lines.append(rule)
    lines += ["".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows[1:]]
    lines.append(rule)
    lines += [
        f"Total params: {model.total:,}",
        f"Trainable params: {model.trainable:,}",
        f"Non-trainable params: {model.non_trainable:,}",
    ]
    return "\n".join(lines)
