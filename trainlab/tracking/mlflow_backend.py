"""MLflow: one experiment per study, a parent run for the study, one nested run per trial.

A trial's run carries the trial's settings as params (by key path, ``model.layers.1.units``), the tags ``study``,
``stage``, ``variant``, ``seed``, ``trial`` (its hash) and ``status``, every recorded epoch's
metrics with ``step`` = the epoch (from 0), the outcome as ``best/NAME``, ``test/NAME`` and
``best_epoch``, the resolved spec as ``spec.json`` and, once it is done, its chosen model as the
folder ``model/`` (``model.json`` and ``model.safetensors``, as ``trainlab export`` writes them).

**Which run is a trial's.** A run is found by its ``trial`` tag (one ``search_runs`` of the study's
experiment when the backend opens), not by a run id kept in trainlab's store: the trial hash
already identifies a trial everywhere, one study may be copied to several tracking servers, and
the store stays free of any one server's ids. A trial that ``--retry-failed`` reset and ran again
from scratch no longer matches its run's ``trainlab.started`` tag; its old run is deleted (MLflow
keeps deleted runs until ``mlflow gc``) and a new one holds the new attempt.

**Nothing twice.** Before adding to a run the backend reads which (metric, step) pairs it holds,
and logs only the missing ones, so a resumed trial continues its run with no epoch missing or
doubled, and ``trainlab track`` may run any number of times.
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trainlab.tracking.base import Backend, TrackingUnavailable, TrialView

PARENT = "study"
"""``trainlab.kind`` of a study's parent run; a trial's run has ``trial``."""
BATCH_METRICS = 1000
"""Metrics per ``log_batch`` call: MLflow's limit."""
BATCH_PARAMS = 100
"""Params per ``log_batch`` call: MLflow's limit."""
RUN_STATUS = {"done": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "pruned": "KILLED"}
"""The MLflow run status of each finished trial status."""
PROBE_SECONDS = 3.0
"""How long opening waits for a tracking server's port to answer before calling it unreachable."""


@dataclass
class _Run:
    """A trial's run: its id and the tags it holds."""

    id: str
    tags: dict[str, str]


class MlflowBackend(Backend):
    """Trials as MLflow runs on the tracking server (or local store) at ``location``; an empty
    location is MLflow's own default (``$MLFLOW_TRACKING_URI``, else its local default)."""

    scheme = "mlflow"

    def __init__(self, location: str, study: str) -> None:
        super().__init__(location, study)
        self.client: Any = None
        self.experiment_id = ""
        self.parent_id = ""
        self.runs: dict[str, _Run] = {}
        """The study's trial runs by trial hash."""
        self.logged: dict[str, set[tuple[str, int]]] = {}
        """(metric, step) pairs each run holds, by run id, once read."""

    def open(self) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise TrackingUnavailable(
                "tracking to MLflow needs the mlflow package: pip install 'trainlab[mlflow]'"
            ) from None
        _probe(self.location)
        self.client = MlflowClient(self.location or None)
        try:
            self._prepare()
        except Exception as exc:  # the client's errors: connection, permission, a malformed URI
            raise TrackingUnavailable(f"MLflow at {self.location or self.client.tracking_uri}: {_reason(exc)}") from exc

    def _prepare(self) -> None:
        """The study's experiment and parent run, created if missing, and its trial runs by hash."""
        experiment = self.client.get_experiment_by_name(self.study)
        if experiment is None:
            # MLflow's UI opens an experiment of this kind on its model-training pages (runs, charts).
            tags = {"trainlab.study": self.study, "mlflow.experimentKind": "custom_model_development"}
            self.experiment_id = self.client.create_experiment(self.study, tags=tags)
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
        parents = []
        for run in self._all_runs():
            tags = run.data.tags
            if tags.get("trainlab.kind") == PARENT:
                parents.append(run)
            elif "trial" in tags:
                self.runs.setdefault(tags["trial"], _Run(run.info.run_id, dict(tags)))
        if parents:
            self.parent_id = min(parents, key=lambda r: r.info.start_time).info.run_id
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=self.study, tags={"trainlab.kind": PARENT, "study": self.study}
            )
            self.parent_id = run.info.run_id

    def _all_runs(self) -> list[Any]:
        """Every active run of the study's experiment, oldest first."""
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], max_results=1000, order_by=["attributes.start_time ASC"], page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def sync(self, view: TrialView) -> None:
        run = self.runs.get(view.hash)
        if run is not None and run.tags.get("trainlab.started") != _started(view):
            self.client.delete_run(run.id)  # an earlier attempt, reset since
            self.logged.pop(run.id, None)
            run = None
        if run is None:
            run = self._create(view)
        if run.tags.get("trainlab.described") != "1":
            self._describe(run.id, view)
            run.tags["trainlab.described"] = "1"
        self._log_metrics(run.id, view, self._logged(run.id))
        if run.tags.get("status") != view.status:
            self.client.set_tag(run.id, "status", view.status)
            run.tags["status"] = view.status
        if view.ended and run.tags.get("trainlab.ended") != view.status:
            self._end(run.id, view)
            run.tags["trainlab.ended"] = view.status
        if view.write_model is not None and run.tags.get("trainlab.model") != "1":
            with tempfile.TemporaryDirectory() as folder:
                view.write_model(Path(folder))
                self.client.log_artifacts(run.id, folder, "model")
            self.client.set_tag(run.id, "trainlab.model", "1")
            run.tags["trainlab.model"] = "1"

    def _create(self, view: TrialView) -> _Run:
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "trainlab.kind": "trial",
            "trainlab.started": _started(view),
            "study": view.study,
            "stage": view.stage,
            "variant": view.label,
            "seed": str(view.seed),
            "trial": view.hash,
            "status": view.status,
        }
        start = int(view.started * 1000) if view.started is not None else None
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags, run_name=view.name)
        self.runs[view.hash] = _Run(run.info.run_id, tags)
        self.logged[run.info.run_id] = set()
        return self.runs[view.hash]

    def _describe(self, run_id: str, view: TrialView) -> None:
        """The trial's settings as params and its resolved spec as ``spec.json``; marked done by the
        ``trainlab.described`` tag, so that a run whose first sync was cut short gets them later."""
        from mlflow.entities import Param

        params = [Param(param_key(key), _param_text(value)) for key, value in view.params.items()]
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        self.client.log_text(run_id, view.spec_json, "spec.json")
        self.client.set_tag(run_id, "trainlab.described", "1")

    def _logged(self, run_id: str) -> set[tuple[str, int]]:
        """The (metric, step) pairs the run holds, read once per run and kept up to date after."""
        if run_id not in self.logged:
            keys = self.client.get_run(run_id).data.metrics
            self.logged[run_id] = {(key, m.step) for key in keys for m in self.client.get_metric_history(run_id, key)}
        return self.logged[run_id]

    def _log_metrics(self, run_id: str, view: TrialView, logged: set[tuple[str, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [
            Metric(key, value, int(recorded * 1000), epoch)
            for epoch, recorded, values in view.epochs
            for key, value in values.items()
            if (key, epoch) not in logged
        ]
        ended = int((view.finished or time.time()) * 1000)
        metrics += [Metric(key, value, ended, 0) for key, value in view.final.items() if (key, 0) not in logged]
        for i in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH_METRICS])
        logged.update((m.key, m.step) for m in metrics)

    def _end(self, run_id: str, view: TrialView) -> None:
        """A finished trial's error text and its run's end (its model is written apart, once
        there is a writer: see :meth:`sync`)."""
        if view.error:
            self.client.log_text(run_id, view.error, "error.txt")
        end = int(view.finished * 1000) if view.finished is not None else None
        self.client.set_terminated(run_id, RUN_STATUS[view.status], end_time=end)
        self.client.set_tag(run_id, "trainlab.ended", view.status)

    def study_synced(self, views: Sequence[TrialView]) -> None:
        status = "FINISHED" if views and all(v.ended for v in views) else "RUNNING"
        if self.client.get_run(self.parent_id).info.status != status:
            if status == "RUNNING":
                self.client.update_run(self.parent_id, status="RUNNING")
            else:
                self.client.set_terminated(self.parent_id, status)


def _started(view: TrialView) -> str:
    """The ``trainlab.started`` tag: which attempt of the trial a run holds."""
    return "" if view.started is None else repr(view.started)


def param_key(key: str) -> str:
    """A key path as an MLflow param name, which cannot hold brackets: ``model.layers[1].units`` ->
    ``model.layers.1.units`` (a study file takes either spelling)."""
    return re.sub(r"\[(\d+)\]", r".\1", key)


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _probe(location: str) -> None:
    """For a tracking server (``http(s)://``), whether its port answers within
    :data:`PROBE_SECONDS`; a :class:`TrackingUnavailable` otherwise. MLflow's client would retry
    for minutes before giving up."""
    url = urlparse(location)
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise TrackingUnavailable(f"MLflow tracking server {location} is unreachable ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
