"""Fixtures of the tracking tests: a real local MLflow store per test, and the tiny study trained.

MLflow builds a SQLite tracking store's tables (its migrations) the first time it opens one,
which takes seconds; the session builds one empty store and every test starts from a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, empty_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh local MLflow tracking store in ``tmp_path`` (artifacts under ``tmp_path/mlruns``)."""
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny study (two variants, two seeds, three epochs) in ``tmp_path``, with data offline."""
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    with_tiny_npz(tmp_path)
    return write_study(tmp_path / "tiny.toml", tiny_study_tables(epochs=3))


@pytest.fixture
def trainlab(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """``trainlab ARGS`` in this process, on the store ``tmp_path/s.db``."""
    from trainlab import cli

    def run(*args: str) -> int:
        return cli.main([*args, "--store", str(tmp_path / "s.db")])

    yield run
