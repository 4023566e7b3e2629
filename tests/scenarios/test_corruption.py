"""Damaged files meet the command line: a truncated or corrupted store, bit rot inside a stored
checkpoint or weights blob, damaged JSON in the store, a truncated data file or data cache.

Each is detected and explained in a short message without a traceback (exit 2), never used as if
it were sound, and the damaged file is left as it was.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from factories import tiny_study_tables, write_study
from helpers import make_npz
from trained_study import trained_store

from trainlab import spec
from trainlab.cli import EXIT_USER_ERROR, main
from trainlab.data.cache import DataCache
from trainlab.executors import run_local
from trainlab.report.trials import find_trial
from trainlab.store import CHECKPOINT, WEIGHTS, Store


def cli(*args: str) -> tuple[int, str, str]:
    """``trainlab ARGS`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show  # as Python shows warnings outside pytest, which records them
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == EXIT_USER_ERROR, err
    assert err.startswith("trainlab: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, f"not one line: {err!r}"
    for word in words:
        assert word in err, (word, err)


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = trained_store(tmp_path_factory.getbasetemp())
    assert not Path(f"{path}-wal").exists(), "the trained store must be fully checkpointed into its file"
    return path


def copy_store(sound: Path, folder: Path) -> Path:
    target = folder / "store.db"
    shutil.copyfile(sound, target)
    return target


# --- the store file -------------------------------------------------------------------------


def _truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _truncate_header(data: bytes) -> bytes:
    return data[:60]


def _smash_pages(data: bytes) -> bytes:
    damaged = bytearray(data)
    for start in range(4096, len(damaged), 4096 * 3):
        damaged[start : start + 32] = b"\xa5" * 32
    return bytes(damaged)


def _garbage(data: bytes) -> bytes:
    return os.urandom(len(data))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_truncate_half, ("damaged", "was not used", "backup")),
        (_truncate_header, ("truncated",)),
        (_smash_pages, ("damaged",)),
        (_garbage, ("not a trainlab store",)),
    ],
    ids=["truncated", "truncated-header", "smashed-pages", "garbage"],
)
def test_a_damaged_store_is_refused_by_every_command_and_left_untouched(
    sound: Path, tmp_path: Path, damage: Any, words: tuple[str, ...]
) -> None:
    store = copy_store(sound, tmp_path)
    store.write_bytes(damage(store.read_bytes()))
    before = store.read_bytes()
    (tmp_path / "small.toml").write_text((sound.parent / "small.toml").read_text())
    for command in (
        ["run", str(sound.parent / "small.toml")],
        ["status"],
        ["report", "small"],
        ["report", "small", "--format", "html", "--out", str(tmp_path / "html")],
        ["export", "small", "--out", str(tmp_path / "model")],
        ["plot", "small", "curves", "--out", str(tmp_path / "figs")],
    ):
        code, _, err = cli(*command, "--store", str(store))
        assert_refused(code, err, str(store), *words)
    assert store.read_bytes() == before, "a damaged store must not be modified"
    assert not Path(f"{store}-wal").exists()
    assert not (tmp_path / "model").exists() and not (tmp_path / "html").exists() and not (tmp_path / "figs").exists()


def test_a_damaged_store_through_a_real_process(sound: Path, tmp_path: Path) -> None:
    store = copy_store(sound, tmp_path)
    store.write_bytes(_truncate_half(store.read_bytes()))
    env = {**os.environ, "TRAINLAB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "status", "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert_refused(proc.returncode, proc.stderr, "damaged")


def _flip_inside(store: Path, blob: bytes) -> None:
    """Flip one bit of ``blob``'s tensor bytes where they lie in the file, as bit rot would."""
    data = bytearray(store.read_bytes())
    for end in range(len(blob) - 8, len(blob) // 2, -97):
        chunk = blob[end - 48 : end]
        at = data.find(chunk)
        if at >= 0 and data.find(chunk, at + 1) < 0:
            data[at + 24] ^= 0x10
            store.write_bytes(bytes(data))
            return
    raise AssertionError("the blob's bytes were not found in the file")


def test_bit_rot_inside_the_final_weights_is_detected_not_used(sound: Path, tmp_path: Path) -> None:
    store = copy_store(sound, tmp_path)
    with Store.open(store) as db:
        chosen = find_trial(db, "small")
        blob = db.artifact(chosen.id, WEIGHTS).data  # type: ignore[union-attr]
    _flip_inside(store, blob)
    with Store.open(store) as db:  # SQLite's own check cannot see it: the pages are sound
        assert db.artifact(chosen.id, WEIGHTS).data != blob  # type: ignore[union-attr]
    code, _, err = cli("export", "small", "--store", str(store), "--out", str(tmp_path / "model"))
    assert_refused(code, err, "damaged", "SHA-256", "not used")
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_damaged_json_in_the_store_is_a_store_error(sound: Path, tmp_path: Path) -> None:
    store = copy_store(sound, tmp_path)
    with sqlite3.connect(store) as db:
        db.execute('UPDATE trials SET result_json = \'{"best": {"val_loss": 0.5, "val_accur\' WHERE id = 2')
    code, _, err = cli("report", "small", "--store", str(store))
    assert_refused(code, err, str(store), "damaged", "not valid JSON")
    copy_store(sound, tmp_path)
    with sqlite3.connect(store) as db:
        db.execute('UPDATE epochs SET metrics_json = \'{"loss": 0.5, "accur\' WHERE epoch = 1')
    code, _, err = cli("plot", "small", "curves", "--store", str(store), "--out", str(tmp_path / "figs"))
    assert_refused(code, err, str(store), "damaged", "not valid JSON")


def test_bit_rot_in_a_checkpoint_fails_that_trial_alone_and_retry_trains_it_afresh(
    tiny_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainlab.store.sqlite import SQLiteStore

    store = tiny_study.parent / "resume.db"
    study = spec.load(tiny_study)
    original = SQLiteStore.record_epoch
    calls = {"n": 0}

    def interrupt(self: SQLiteStore, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == 6:  # the second trial's second epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "record_epoch", interrupt)
    with Store.open(store) as db, pytest.raises(KeyboardInterrupt):
        run_local(study, db, population=1, cache=DataCache(), checkpoint_every=0)
    monkeypatch.setattr(SQLiteStore, "record_epoch", original)
    with Store.open(store) as db:
        held = [t for t in db.trials(db.study("tiny").id) if t.status == "pending" and db.epochs(t.id)]  # type: ignore[union-attr]
        assert len(held) == 1
        blob = db.artifact(held[0].id, CHECKPOINT).data  # type: ignore[union-attr]
    _flip_inside(store, blob)

    monkeypatch.chdir(tiny_study.parent)
    code, out, err = cli(
        "run", tiny_study.name, "--store", str(store), "--workers", "1", "--population", "1", "--format", "none"
    )
    assert code == 1 and "Traceback" not in err, err  # the run finished, but a trial failed
    assert "1 trial of study tiny failed with an error" in err
    assert f"{held[0].label} seed {held[0].seed}: failed: a stored checkpoint or weights file is damaged" in out
    with Store.open(store) as db:
        trials = {t.id: t for t in db.trials(db.study("tiny").id)}  # type: ignore[union-attr]
        assert trials[held[0].id].status == "failed" and "SHA-256" in (trials[held[0].id].error or "")
        assert [t.status for t in trials.values()].count("done") == 3, "the other trials are not affected"

    code, out, err = cli(
        "run",
        tiny_study.name,
        "--store",
        str(store),
        "--workers",
        "1",
        "--population",
        "1",
        "--format",
        "none",
        "--retry-failed",
    )
    assert code == 0, out + err
    with Store.open(store) as db:
        trial = db.trial(held[0].id)
        assert trial is not None and trial.status == "done"
        assert [e.epoch for e in db.epochs(trial.id)] == [0, 1, 2, 3]


# --- data files -----------------------------------------------------------------------------


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAINLAB_CIFAR10", raising=False)
    monkeypatch.chdir(tmp_path)
    from trainlab.data import clear_memory

    clear_memory()
    return tmp_path


@pytest.mark.parametrize("keep", [0.5, 0.05, 0.0])
def test_a_truncated_data_file_is_refused_before_anything_is_written(data_env: Path, keep: float) -> None:
    make_npz(data_env / "tiny.npz")
    data = (data_env / "tiny.npz").read_bytes()
    (data_env / "tiny.npz").write_bytes(data[: int(len(data) * keep)])
    write_study(data_env / "tiny.toml", tiny_study_tables(epochs=2))
    for command in (["check", "tiny.toml"], ["run", "tiny.toml", "--store", "s.db"]):
        code, _, err = cli(*command)
        assert_refused(code, err, "tiny.toml: data.path", "tiny.npz", "cannot be read as .npz")
    assert not (data_env / "s.db").exists()


CIFAR = """
[data]
name = "cifar10"

[model]
layers = [{ type = "Flatten" }, { type = "Dense", units = 10, activation = "softmax" }]

[train]
epochs = 1
"""


def test_a_damaged_data_cache_with_nothing_to_rebuild_it_stops_the_run(data_env: Path) -> None:
    (data_env / "cache").mkdir()
    make_npz(data_env / "cache" / "cifar10.npz")
    cache = data_env / "cache" / "cifar10.npz"
    cache.write_bytes(cache.read_bytes()[:300])
    damaged = cache.read_bytes()
    (data_env / "c.toml").write_text(CIFAR)
    code, _, err = cli("run", "c.toml", "--store", "s.db")
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == (
        f"trainlab: warning: {cache}: cannot be read as .npz (BadZipFile: File is not a zip file); "
        "rebuilding the cache from the next source"
    )
    assert lines[1].startswith(
        f"trainlab: data set cifar10 is not available: its cache {cache} is damaged and was not used"
    )
    assert not (data_env / "s.db").exists()
    assert cache.read_bytes() == damaged, "the damaged cache is left for the user to inspect"


def test_a_damaged_cache_rebuilt_from_another_source_is_reported_in_one_line(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import california_fixture, write_cal_housing_tgz

    from trainlab.data import datasets
    from trainlab.data.loader import cache_file, load_definition

    tgz = data_env / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    definition = california_fixture(tgz)
    monkeypatch.setattr(datasets, "definitions", lambda: {"california_housing": definition})
    load_definition(definition, data_env / "cache")
    file = cache_file("california_housing")
    file.write_bytes(file.read_bytes()[:200])
    code, _, err = cli("data", "show", "california_housing", "--out", "figs", "--formats", "svg")
    assert code == 0, err
    assert err == (
        f"trainlab: warning: {file}: cannot be read as .npz (BadZipFile: File is not a zip file); "
        "rebuilding the cache from the next source\n"
    )
    assert load_definition(definition, data_env / "cache").source == "cache", "the cache was rebuilt"
