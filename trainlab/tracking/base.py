"""What every tracking backend is given, and the table of backends by scheme name.

A backend (MLflow, TensorBoard) shows a study's trials where its users already look. The store
stays the one record: a backend is only ever brought up to date *from* the store, one trial at a
time (:meth:`Backend.sync`), so that the same call copies a finished study afterwards, catches up
after an unreachable server, and follows a run while it trains. A :class:`TrialView` is
everything a backend shows of one trial, read from the store by :func:`trial_views`.

Every sync is idempotent: a backend finds what it already holds for a trial (by the trial's hash)
and adds only what is missing, so running it twice, or after a killed run resumed, never
duplicates a run, an epoch or an artifact.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from trainlab.errors import TrainlabError
from trainlab.store import FINISHED_STATUSES, Store, StudyRecord, TrialRecord

WriteModel = Callable[[Path], None]
"""Writes a done trial's model (``model.json`` and ``model.safetensors``, as ``trainlab export``
writes them) into a folder."""


@dataclass(frozen=True)
class TrialView:
    """One trial as a tracker shows it: identity, settings, every recorded epoch and the outcome.

    ``params`` are the trial's settings by key path (:func:`trainlab.describe.settings`, as
    ``trainlab check`` and the report JSON show them); ``epochs`` each recorded epoch's metrics
    by epoch number (from 0), NaN kept and missing values left out; ``final`` the outcome's
    metrics (the chosen epoch's validation metrics as ``best/NAME``, the test metrics as
    ``test/NAME``, and ``best_epoch`` counted from 1). ``started`` is when the trial was first
    claimed since it was last reset: a tracker that recorded another value holds an earlier
    attempt, which ``--retry-failed`` threw away.
    """

    study: str
    stage: str
    hash: str
    label: str
    seed: int
    status: str
    started: float | None
    finished: float | None
    params: dict[str, Any]
    spec_json: str
    epochs: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    """(epoch, seconds since the epoch it was recorded, metrics)."""
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    write_model: WriteModel | None = None
    """Writes the chosen model, for a done trial; None otherwise."""

    @property
    def ended(self) -> bool:
        """Whether the trial has a finished status (done, failed, diverged, pruned)."""
        return self.status in FINISHED_STATUSES

    @property
    def name(self) -> str:
        """How a tracker names the trial to a person: ``LABEL seed SEED``."""
        return f"{self.label} seed {self.seed}"

    def worth_showing(self) -> bool:
        """Whether there is anything to show: a pending trial never started has nothing yet."""
        return self.started is not None or bool(self.epochs) or self.ended


class Backend(abc.ABC):
    """One tracking destination for one study. Subclasses set :attr:`scheme` and implement
    :meth:`sync`; :meth:`open` makes sure the destination can be written (and says why not)."""

    scheme: ClassVar[str]

    def __init__(self, location: str, study: str) -> None:
        self.location = location
        self.study = study

    @classmethod
    def create(cls, location: str, study: str, *, option: str) -> Backend:
        """The backend for ``location`` (what follows ``SCHEME:``); a subclass refuses a location it
        cannot use, naming ``option``."""
        return cls(location, study)

    @property
    def target(self) -> str:
        """The destination as ``--track`` and ``--to`` take it."""
        return f"{self.scheme}:{self.location}" if self.location else self.scheme

    @abc.abstractmethod
    def open(self) -> None:
        """Reach the destination and prepare the study there (the MLflow experiment and parent
        run); a :class:`TrackingUnavailable` says why it cannot be reached."""

    @abc.abstractmethod
    def sync(self, view: TrialView) -> None:
        """Bring the trial's record at the destination up to ``view``, adding only what is missing."""

    def study_synced(self, views: Sequence[TrialView]) -> None:  # noqa: B027 - optional for a backend
        """Called after every trial of the study was synced (the MLflow parent run's status)."""

    def close(self) -> None:  # noqa: B027 - optional for a backend
        """Flush and release what the backend holds open."""


class TrackingUnavailable(TrainlabError):
    """A tracking destination that cannot be reached or written now (its package missing, the
    server down); training goes on without it, and ``trainlab track`` catches up later."""


_BACKENDS: dict[str, type[Backend]] = {}


def register_backend(backend: type[Backend]) -> None:
    """Make ``backend`` the one for destinations ``SCHEME[:LOCATION]`` of its :attr:`~Backend.scheme`."""
    _BACKENDS[backend.scheme] = backend


def schemes() -> list[str]:
    """The registered schemes, sorted."""
    return sorted(_BACKENDS)


DESTINATIONS = "mlflow[:TRACKING_URI] or tensorboard:DIR"
"""The destinations a user may give, as the command's help and errors spell them."""


def backend_for(target: str, study: str, *, option: str = "--track") -> Backend:
    """The backend for destination ``target`` (``mlflow``, ``mlflow:URI``, ``tensorboard:DIR``) and
    study ``study``; a :class:`TrainlabError` naming ``option`` and the allowed schemes otherwise."""
    scheme, _, location = target.partition(":")
    backend = _BACKENDS.get(scheme.strip().lower())
    if backend is None:
        raise TrainlabError(
            f"{option}: unknown destination {target!r}; give {DESTINATIONS} (schemes: {', '.join(schemes())})"
        )
    return backend.create(location.strip(), study, option=option)


# --- the store's trials as views --------------------------------------------------------------


def study_record(store: Store, name: str) -> StudyRecord:
    """Study ``name`` of the store, or an error naming the studies it holds."""
    record = store.study(name)
    if record is None:
        known = ", ".join(s.name for s in store.studies()) or "none yet"
        raise TrainlabError(
            f"no study named {name!r} in this store (studies: {known}); run it first with `trainlab run`"
        )
    return record


def stages_of(store: Store, record: StudyRecord) -> dict[str, str]:
    """Stage name by trial hash for the trials the study's stages hold now (the first stage that
    holds a trial, where stages share one); empty for a stored spec that no longer validates."""
    from trainlab import orchestrate, spec

    raw = json.loads(record.spec_json)
    try:
        study = spec.from_dict(raw, default_name=raw.get("study", {}).get("name", record.name))
    except TrainlabError:
        return {}
    out: dict[str, str] = {}
    for plan in orchestrate.resolve(study, store):
        for trial_hash in plan.hashes():
            out.setdefault(trial_hash, plan.stage.name)
    return out


def trial_view(store: Store, study: str, trial: TrialRecord, stage: str, *, model: bool = True) -> TrialView:
    """``trial`` of study ``study`` as the store holds it now; ``model``: with the writer of its
    chosen model (a done trial's), which builds a torch model and so must not run while this
    process trains (see :mod:`trainlab.tracking.live`)."""
    from trainlab import describe

    try:
        params = describe.settings(json.loads(trial.spec_json))
    except (KeyError, TypeError, AttributeError, TrainlabError):  # a spec of another version: none shown
        params = {}
    epochs = [
        (e.epoch, e.recorded, {k: float(v) for k, v in e.metrics.items() if v is not None})
        for e in store.epochs(trial.id)
    ]
    return TrialView(
        study=study,
        stage=stage,
        hash=trial.hash,
        label=trial.label,
        seed=trial.seed,
        status=trial.status,
        started=trial.started,
        finished=trial.finished,
        params=params,
        spec_json=trial.spec_json,
        epochs=epochs,
        final=final_metrics(trial.result) if trial.status in FINISHED_STATUSES else {},
        error=trial.error,
        write_model=_model_writer(store, study, trial) if model and trial.status == "done" else None,
    )


def final_metrics(result: Mapping[str, Any] | None) -> dict[str, float]:
    """A finished trial's outcome as metrics: ``best/NAME`` (its chosen epoch's validation
    metrics), ``test/NAME`` and ``best_epoch`` (from 1, as the report counts)."""
    result = result or {}
    out: dict[str, float] = {}
    for name, value in (result.get("best") or {}).items():
        if _number(value):
            out[f"best/{name}"] = float(value)
    for name, value in (result.get("test") or {}).items():
        if _number(value):
            out[f"test/{name}"] = float(value)
    if _number(result.get("best_epoch")):
        out["best_epoch"] = float(result["best_epoch"]) + 1
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isinf(value)


def _model_writer(store: Store, study: str, trial: TrialRecord) -> WriteModel:
    def write(folder: Path) -> None:
        from trainlab.export import export_record

        export_record(store, study, trial, folder)

    return write


def trial_views(
    store: Store, study: str, *, hashes: Sequence[str] | None = None, models: bool = True
) -> list[TrialView]:
    """The study's trials (those its stored spec holds now, or those of ``hashes``) as views
    (``models``: with their model writers, see :func:`trial_view`)."""
    from trainlab.report.tables import current_trials

    record = study_record(store, study)
    stages = stages_of(store, record)
    trials = current_trials(store, study) if hashes is None else store.trials(record.id, hashes=set(hashes))
    return [trial_view(store, study, t, stages.get(t.hash, ""), model=models) for t in trials]


def sync_study(store: Store, study: str, backend: Backend) -> list[TrialView]:
    """Bring ``backend`` up to the store's record of ``study``: every trial it holds now."""
    views = trial_views(store, study)
    for view in views:
        if view.worth_showing():
            backend.sync(view)
    backend.study_synced(views)
    return views
