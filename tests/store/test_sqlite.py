"""The SQLite backend's file: what ``Store.open`` picks, damaged, foreign, newer or locked files,
and the file's locks. What every backend promises is in test_contract.py."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from factories import make_study

from trainlab.errors import StoreError
from trainlab.store import SQLiteStore, Store, make_owner
from trainlab.store.base import SQLITE, backend, register_backend

# --- SQLite files -----------------------------------------------------------------------------


def _filled_store(path: Path) -> None:
    with SQLiteStore.open(path) as store:
        study_id = make_study(store, 20)
        owner = make_owner()
        while (trial := store.claim_next(study_id, owner)) is not None:
            store.record_epoch(trial.id, owner, 0, {"loss": 1.0})
            store.finish_trial(trial.id, owner, "done", weights=bytes(range(256)) * 200)


class TestSQLiteFile:
    """What the SQLite backend does with the file itself."""

    def test_store_open_picks_sqlite(self, tmp_path: Path) -> None:
        with Store.open(tmp_path / "sub" / "dir" / "s.db") as store:
            assert isinstance(store, SQLiteStore)
            assert store.path == tmp_path / "sub" / "dir" / "s.db"

    def test_store_open_uses_the_registered_backend(self, tmp_path: Path) -> None:
        """``Store.open`` opens with whatever class is registered for SQLite files, not a name it imports."""

        class Recording(SQLiteStore):
            pass

        register_backend(SQLITE, Recording)
        try:
            with Store.open(tmp_path / "s.db") as store:
                assert type(store) is Recording
        finally:
            register_backend(SQLITE, SQLiteStore)
        with Store.open(tmp_path / "s.db") as store:
            assert type(store) is SQLiteStore

    def test_a_kind_without_a_backend_is_a_store_error(self) -> None:
        with pytest.raises(StoreError, match=r"no store backend for 'tape' locations \(registered: sqlite\)"):
            backend("tape")

    def test_settings(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        with SQLiteStore.open(path) as store:
            conn = store._connection()
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
        raw = sqlite3.connect(path)
        assert raw.execute("SELECT MAX(version) FROM trainlab_schema").fetchall() == [(2,)]
        raw.close()

    def test_common_metrics_are_columns(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        with SQLiteStore.open(path) as store:
            study_id = make_study(store, 1)
            owner = make_owner()
            trial = store.claim_next(study_id, owner)
            assert trial is not None
            store.record_epoch(trial.id, owner, 0, {"loss": 0.5, "accuracy": 0.8, "val_loss": math.nan, "seconds": 2})
        raw = sqlite3.connect(path)
        row = raw.execute("SELECT train_loss, train_accuracy, val_loss, val_accuracy, seconds FROM epochs").fetchone()
        raw.close()
        assert row == (0.5, 0.8, None, None, 2.0)

    def test_garbage_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "results.db"
        path.write_bytes(b"\x00garbage\xff" * 1000)
        with pytest.raises(StoreError, match=r"results\.db.*not a SQLite database"):
            SQLiteStore.open(path)
        assert path.read_bytes() == b"\x00garbage\xff" * 1000

    def test_text_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "study.toml"
        path.write_text("[study]\nname = 'x'\n")
        with pytest.raises(StoreError, match=r"study\.toml.*not a trainlab store"):
            SQLiteStore.open(path)

    @pytest.mark.parametrize("keep", [0.9, 0.5, 0.2])
    def test_truncated_store_is_refused(self, tmp_path: Path, keep: float) -> None:
        path = tmp_path / "store.db"
        _filled_store(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(StoreError, match=r"store\.db.*damaged.*backup"):
            SQLiteStore.open(path)

    def test_store_truncated_inside_header_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "store.db"
        _filled_store(path)
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(StoreError, match=r"store\.db.*truncated"):
            SQLiteStore.open(path)

    def test_store_with_damaged_pages_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "store.db"
        _filled_store(path)
        data = bytearray(path.read_bytes())
        page = 4096
        for start in range(page, len(data), page):
            data[start : start + 16] = b"\xa5" * 16  # overwrite every b-tree page header
        path.write_bytes(bytes(data))
        with pytest.raises(StoreError, match=r"store\.db.*damaged"):
            SQLiteStore.open(path)

    def test_other_sqlite_database_is_refused_and_untouched(self, tmp_path: Path) -> None:
        path = tmp_path / "app.sqlite"
        raw = sqlite3.connect(path)
        raw.execute("CREATE TABLE users (name TEXT)")
        raw.execute("INSERT INTO users VALUES ('ada')")
        raw.commit()
        raw.close()
        before = path.read_bytes()
        with pytest.raises(StoreError, match=r"app\.sqlite.*not a trainlab store.*users"):
            SQLiteStore.open(path)
        assert path.read_bytes() == before
        assert not Path(f"{path}-wal").exists()

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "store.db"
        SQLiteStore.open(path).close()
        raw = sqlite3.connect(path)
        raw.execute("INSERT INTO trainlab_schema VALUES (99, 0)")
        raw.commit()
        raw.close()
        with pytest.raises(StoreError, match=r"store\.db.*newer trainlab.*99.*Upgrade"):
            SQLiteStore.open(path)

    def test_directory_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="directory"):
            SQLiteStore.open(tmp_path)

    def test_lock_held_too_long_is_a_store_error_and_store_stays_usable(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        with SQLiteStore.open(path, timeout=0.1) as store:
            study_id = make_study(store, 1)
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match=r"s\.db.*locked.*timeout"):
                store.claim_next(study_id, make_owner())
            assert store.trials(study_id)[0].status == "pending"  # readers are not blocked
            blocker.execute("ROLLBACK")
            blocker.close()
            assert store.claim_next(study_id, make_owner()) is not None

    def test_empty_file_becomes_a_store(self, tmp_path: Path) -> None:
        path = tmp_path / "new.db"
        path.touch()
        with SQLiteStore.open(path) as store:
            assert store.studies() == []


def test_a_second_connection_in_one_process_never_reads_the_file_behind_sqlite(tmp_path, monkeypatch) -> None:
    """Closing a plain descriptor of the file would drop the POSIX locks of the open connection."""
    from trainlab.store import sqlite as backend

    path = tmp_path / "s.db"
    with Store.open(path) as first:
        calls: list[object] = []
        monkeypatch.setattr(backend, "_check_header", lambda p: calls.append(p))
        with Store.open(path) as second:
            second.ensure_study("a", "{}", "h", None)
        assert calls == []
        assert first.study("a") is not None
    with Store.open(path):
        assert calls == [path]
