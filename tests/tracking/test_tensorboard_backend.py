"""TensorBoard tracking end to end: event files read back with TensorBoard's own reader
(EventAccumulator), every scalar compared with trainlab's store, and the HParams sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainlab import describe
from trainlab.store import Store


def read(folder: Path) -> Any:
    """A trial folder's events as TensorBoard reads them, keeping every event (no purging of
    out-of-order steps), so that a doubled step would show."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}, purge_orphaned_data=False)
    events.Reload()
    return events


def session(events: Any) -> tuple[dict[str, Any], int | None]:
    """The HParams session of a trial: its hyper-parameters, and its end status (None: no end)."""
    from tensorboard.plugins.hparams import metadata

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    end = content.get(metadata.SESSION_END_INFO_TAG)
    return hparams, None if end is None else metadata.parse_session_end_info_plugin_data(end).status


def assert_logdir_matches_store(logdir: Path, store: Path) -> None:
    from tensorboard.plugins.hparams import api_pb2

    with Store.open(store) as db:
        study = db.study("tiny")
        assert study is not None
        trials = db.trials(study.id)
        folders = sorted(p for p in logdir.iterdir() if p.is_dir())
        assert len(folders) == len(trials)
        for trial in trials:
            (folder,) = [f for f in folders if f.name.endswith(trial.hash[:10])]
            events = read(folder)
            expected: dict[str, list[tuple[int, float]]] = {}
            for e in db.epochs(trial.id):
                for key, value in e.metrics.items():
                    expected.setdefault(key, []).append((e.epoch, value))
            for key, entries in expected.items():
                got = [(s.step, s.value) for s in events.Scalars(key)]
                # Event files keep 32-bit floats.
                assert [step for step, _ in got] == [step for step, _ in entries], key
                assert all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for (_, a), (_, b) in zip(got, entries)), key
            result = trial.result or {}
            assert [s.step for s in events.Scalars("test/accuracy")] == [0]
            assert abs(events.Scalars("test/accuracy")[0].value - result["test"]["accuracy"]) < 1e-6
            assert events.Scalars("best_epoch")[0].value == result["best_epoch"] + 1
            hparams, status = session(events)
            assert hparams["variant"] == trial.label and hparams["seed"] == trial.seed
            settings = describe.settings(json.loads(trial.spec_json))
            assert hparams["optimizer.name"] == settings["optimizer.name"]
            assert hparams["model.layers[1].units"] == settings["model.layers[1].units"]
            assert status == api_pb2.STATUS_SUCCESS


def test_tensorboard_writes_one_folder_per_trial_and_adds_nothing_twice(
    study_file: Path, trainlab: Callable[..., int], tmp_path: Path
) -> None:
    assert trainlab("run", str(study_file), "--format", "none", "--quiet", "--workers", "1") == 0
    logdir = tmp_path / "tb"
    assert trainlab("tensorboard", "tiny", "--logdir", str(logdir)) == 0
    assert_logdir_matches_store(logdir, tmp_path / "s.db")
    assert trainlab("tensorboard", "tiny", "--logdir", str(logdir)) == 0  # again: nothing doubled
    assert_logdir_matches_store(logdir, tmp_path / "s.db")


def test_run_track_tensorboard_writes_while_training(
    study_file: Path, trainlab: Callable[..., int], tmp_path: Path
) -> None:
    logdir = tmp_path / "tb"
    args = ("--format", "none", "--quiet", "--workers", "2", "--population", "1")  # a worker process tracks too
    assert trainlab("run", str(study_file), *args, "--track", f"tensorboard:{logdir}") == 0
    assert_logdir_matches_store(logdir, tmp_path / "s.db")


def test_a_trial_run_again_from_scratch_gets_its_folder_rewritten(tmp_path: Path) -> None:
    from test_mlflow_backend import view

    from trainlab.tracking import backend_for

    backend = backend_for(f"tensorboard:{tmp_path / 'tb'}", "tiny")
    backend.open()
    backend.sync(view(100.0, 3))
    backend.close()
    (folder,) = (tmp_path / "tb").iterdir()
    assert [(s.step, s.value) for s in read(folder).Scalars("loss")] == [
        (e, pytest.approx(1.0 / (e + 1) + 100.0, rel=1e-6))
        for e in range(3)  # event files keep 32-bit floats
    ]
    again = backend_for(f"tensorboard:{tmp_path / 'tb'}", "tiny")  # another process, reading the folder back
    again.open()
    again.sync(view(100.0, 3))  # the same attempt: nothing added
    again.close()
    assert len(read(folder).Scalars("loss")) == 3
    again.sync(view(200.0, 2))  # reset and run again: the folder holds the new attempt alone
    again.close()
    assert [(s.step, s.value) for s in read(folder).Scalars("loss")] == [
        (e, pytest.approx(1.0 / (e + 1) + 200.0, rel=1e-6)) for e in range(2)
    ]
    assert session(read(folder))[0]["model.layers[1].units"] == 16
