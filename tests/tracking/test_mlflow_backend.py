"""MLflow tracking end to end against a real local MLflow store: runs read back with MLflow's own
client and every metric compared with trainlab's store."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors

from trainlab import describe
from trainlab.store import WEIGHTS, Store
from trainlab.tracking import TrialView, backend_for

STUDY = "tiny"


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def runs_of(uri: str) -> tuple[Any, list[Any]]:
    """The study's parent run and its trial runs (active ones), read back through MLflow."""
    c = client(uri)
    experiment = c.get_experiment_by_name(STUDY)
    runs = c.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "trial" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in parents]
    return parents[0], [r for r in runs if "trial" in r.data.tags]


def history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run as its (step, value) entries, in step order, duplicates kept."""
    c = client(uri)
    return {
        key: sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))
        for key in c.get_run(run_id).data.metrics
    }


def stored(store: Path) -> dict[str, Any]:
    """Each trial of the study by hash, with its epochs and weights, as trainlab's store holds it."""
    with Store.open(store) as db:
        study = db.study(STUDY)
        assert study is not None
        return {
            t.hash: {
                "trial": t,
                "epochs": [(e.epoch, e.metrics) for e in db.epochs(t.id)],
                "weights": (db.artifact(t.id, WEIGHTS) or None) and db.artifact(t.id, WEIGHTS).data,  # type: ignore[union-attr]
            }
            for t in db.trials(study.id)
        }


def assert_runs_match_store(uri: str, store: Path, *, except_metrics: tuple[str, ...] = ()) -> None:
    """One run per trial under the study's one parent, its tags and params as the trial's, and every
    metric of every epoch logged once with step = epoch and the store's value."""
    parent, runs = runs_of(uri)
    trials = stored(store)
    assert sorted(r.data.tags["trial"] for r in runs) == sorted(trials)
    for run in runs:
        record = trials[run.data.tags["trial"]]
        trial = record["trial"]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert (tags["study"], tags["variant"], tags["seed"], tags["status"]) == (
            STUDY,
            trial.label,
            str(trial.seed),
            trial.status,
        )
        expected_params = {
            re.sub(r"\[(\d+)\]", r".\1", k): v if isinstance(v, str) else json.dumps(v)
            for k, v in describe.settings(json.loads(trial.spec_json)).items()
        }
        assert run.data.params == expected_params
        logged = history(uri, run.info.run_id)
        expected: dict[str, list[tuple[int, float]]] = {}
        for epoch, metrics in record["epochs"]:
            for key, value in metrics.items():
                expected.setdefault(key, []).append((epoch, value))
        for key, entries in expected.items():
            steps = [step for step, _ in logged[key]]
            assert steps == [step for step, _ in entries], (key, steps)  # none missing, none doubled
            if key not in except_metrics:
                assert logged[key] == entries, key
        if trial.status == "done":
            result = trial.result
            assert logged["test/accuracy"] == [(0, result["test"]["accuracy"])]
            assert logged["best/val_accuracy"] == [(0, result["best"]["val_accuracy"])]
            assert logged["best_epoch"] == [(0, result["best_epoch"] + 1)]
            assert run.info.status == "FINISHED"


def test_run_track_logs_every_trial_and_track_adds_nothing_twice(
    study_file: Path, mlflow_uri: str, trainlab: Callable[..., int], tmp_path: Path
) -> None:
    args = ("--format", "none", "--quiet", "--workers", "1")
    assert trainlab("run", str(study_file), *args, "--track", f"mlflow:{mlflow_uri}") == 0
    store = tmp_path / "s.db"
    assert_runs_match_store(mlflow_uri, store)
    parent, runs = runs_of(mlflow_uri)
    assert parent.info.status == "FINISHED" and len(runs) == 4

    # The chosen weights, as `trainlab export` writes them: the store's tensors, bit for bit.
    trials = stored(store)
    c = client(mlflow_uri)
    run = runs[0]
    folder = Path(c.download_artifacts(run.info.run_id, "model", str(tmp_path / "download")))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    logged = load_safetensors((folder / "model.safetensors").read_bytes())
    kept = load_safetensors(trials[run.data.tags["trial"]]["weights"])  # the store packs the model as model/NAME
    assert {f"model/{k}" for k in logged} == kept.keys()
    assert all(torch.equal(logged[k], kept[f"model/{k}"]) for k in logged)
    spec = Path(c.download_artifacts(run.info.run_id, "spec.json", str(tmp_path / "spec")))
    assert json.loads(spec.read_text()) == json.loads(trials[run.data.tags["trial"]]["trial"].spec_json)

    before = {r.info.run_id: history(mlflow_uri, r.info.run_id) for r in runs}
    assert trainlab("track", str(study_file), "--to", f"mlflow:{mlflow_uri}") == 0
    assert trainlab("run", str(study_file), *args, "--track", f"mlflow:{mlflow_uri}") == 0  # nothing to train
    _, again = runs_of(mlflow_uri)
    assert {r.info.run_id: history(mlflow_uri, r.info.run_id) for r in again} == before


def test_track_copies_a_half_finished_study_and_the_run_continues_it(
    study_file: Path, mlflow_uri: str, trainlab: Callable[..., int], tmp_path: Path
) -> None:
    """Ctrl-C after a few epochs leaves trials part-trained; `track` copies what there is, and the
    resumed run goes on in the same runs."""
    from trainlab import executors

    store = tmp_path / "s.db"
    seen = 0
    original = executors.Recorder.record

    def interrupt_after_three(self: Any, event: Any) -> None:
        nonlocal seen
        original(self, event)
        if isinstance(event, executors.EpochEnded):
            seen += 1
            if seen == 3:
                raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executors.Recorder, "record", interrupt_after_three)
        assert trainlab("run", str(study_file), "--format", "none", "--quiet", "--workers", "1") == 130
    assert trainlab("track", STUDY, "--to", f"mlflow:{mlflow_uri}") == 0
    _, runs = runs_of(mlflow_uri)
    started = {h: r for h, r in stored(store).items() if r["epochs"]}
    assert sorted(r.data.tags["trial"] for r in runs) == sorted(started)  # trials not started yet wait
    assert {r.data.tags["status"] for r in runs} == {"pending"}
    first_ids = {r.data.tags["trial"]: r.info.run_id for r in runs}

    assert (
        trainlab(
            "run", str(study_file), "--format", "none", "--quiet", "--workers", "1", "--track", f"mlflow:{mlflow_uri}"
        )
        == 0
    )
    assert_runs_match_store(mlflow_uri, store, except_metrics=("seconds",))
    _, runs = runs_of(mlflow_uri)
    assert all(first_ids[h] == r.info.run_id for r in runs if (h := r.data.tags["trial"]) in first_ids)


def view(started: float, epochs: int, status: str = "running") -> TrialView:
    return TrialView(
        study=STUDY,
        stage="",
        hash="a" * 20,
        label="adam",
        seed=0,
        status=status,
        started=started,
        finished=None,
        params={"optimizer.name": "adam", "model.layers[1].units": 16},
        spec_json="{}",
        epochs=[(e, started + e, {"loss": 1.0 / (e + 1) + started}) for e in range(epochs)],
    )


def test_a_trial_run_again_from_scratch_replaces_its_run(mlflow_uri: str) -> None:
    """--retry-failed resets a trial: its new attempt (another start time) gets a new run; the old
    one is deleted, so the study still has one run per trial."""
    backend = backend_for(f"mlflow:{mlflow_uri}", STUDY)
    backend.open()
    backend.sync(view(100.0, 3))
    backend.sync(view(100.0, 3))  # again: nothing added
    _, runs = runs_of(mlflow_uri)
    assert len(runs) == 1
    assert history(mlflow_uri, runs[0].info.run_id)["loss"] == [(e, 1.0 / (e + 1) + 100.0) for e in range(3)]
    assert runs[0].data.params == {"optimizer.name": "adam", "model.layers.1.units": "16"}

    reopened = backend_for(f"mlflow:{mlflow_uri}", STUDY)  # another process, finding the run by its tag
    reopened.open()
    reopened.sync(view(200.0, 2))
    _, runs = runs_of(mlflow_uri)
    assert len(runs) == 1
    assert history(mlflow_uri, runs[0].info.run_id)["loss"] == [(e, 1.0 / (e + 1) + 200.0) for e in range(2)]


def test_an_unreachable_server_neither_fails_nor_stalls_the_run(
    study_file: Path, trainlab: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    code = trainlab(
        "run", str(study_file), "--format", "none", "--quiet", "--workers", "1", "--track", "mlflow:http://127.0.0.1:9"
    )
    took = time.monotonic() - began
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("127.0.0.1:9") >= 1 and err.count("unreachable") == 1, err
    assert "trainlab track tiny --to mlflow:http://127.0.0.1:9" in err
    assert took < 120  # MLflow's own retries would take minutes


def test_track_refuses_an_unreachable_server_and_an_unknown_destination(
    study_file: Path, trainlab: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trainlab("run", str(study_file), "--track", "wandb", "--format", "none", "--quiet") == 2
    assert "unknown destination 'wandb'" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()  # refused before the store is touched
    assert trainlab("run", str(study_file), "--track", "tensorboard", "--format", "none", "--quiet") == 2
    assert "tensorboard:DIR" in capsys.readouterr().err
    assert trainlab("run", str(study_file), "--format", "none", "--quiet", "--workers", "1") == 0
    capsys.readouterr()
    assert trainlab("track", STUDY, "--to", "mlflow:http://127.0.0.1:9") == 2
    assert "unreachable" in capsys.readouterr().err
