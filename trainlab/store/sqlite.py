"""The SQLite store: one file shared by any number of processes on one machine.

Settings and why:

* ``journal_mode=WAL``: readers (``trainlab status``, reports) never block the writers
  that are training, and a commit is one append to the ``-wal`` file.
* ``synchronous=NORMAL``: a commit returns once its pages are written to the WAL with
  ``write()``; from then on they belong to the operating system, so a SIGKILL (or any
  crash of the process) loses nothing committed. Only a power loss or OS crash can lose
  the last few commits, and even then the file stays consistent (WAL never corrupts
  under NORMAL) and, because an epoch and its checkpoint are one transaction, the store
  looks exactly as if training had crashed a little earlier: resuming re-does those
  epochs. ``FULL`` would add an fsync of every epoch's checkpoint (megabytes) while the
  write lock is held, slowing every process sharing the file, to save at most those
  few epochs.
* ``busy_timeout`` (60 s by default): writers queue instead of failing with "database is
  locked"; every write is one short ``BEGIN IMMEDIATE`` transaction, so waits are short.
  ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never has to
  upgrade a read snapshot, which WAL would refuse without waiting.
* ``foreign_keys=ON``: epochs and artifacts cannot outlive their trial.
* ``PRAGMA application_id`` marks the file as a trainlab store and the ``trainlab_schema``
  table holds its schema version; ``PRAGMA quick_check`` at open refuses a damaged file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

from trainlab.errors import StoreError
from trainlab.store.base import (
    CHECKPOINT,
    DEFAULT_LEASE,
    DEFAULT_TIMEOUT,
    FINISHED_STATUSES,
    STATUSES,
    WEIGHTS,
    ArtifactRecord,
    ClaimLostError,
    Clock,
    EpochRecord,
    NewTrial,
    Status,
    Store,
    StudyRecord,
    TrialRecord,
    dumps,
    encode_metrics,
    loads,
    owner_alive,
)

APPLICATION_ID: Final = 0x54524C42
"""``PRAGMA application_id`` of a trainlab store ("TRLB")."""
SCHEMA_VERSION: Final = 2
"""The schema version this code writes; files with a higher one are refused, older ones migrated."""

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE: Final = 100

_STATUS_LIST: Final = ", ".join(f"'{status}'" for status in STATUSES)
_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE trainlab_schema (
        version INTEGER PRIMARY KEY,
        applied REAL NOT NULL
    )""",
    """CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        spec_json TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        source TEXT,
        created REAL NOT NULL
    )""",
    f"""CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        hash TEXT NOT NULL,
        label TEXT NOT NULL,
        params_json TEXT NOT NULL,
        seed INTEGER NOT NULL,
        spec_json TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_STATUS_LIST})),
        owner TEXT,
        heartbeat REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started REAL,
        finished REAL,
        error TEXT,
        result_json TEXT,
        plan_json TEXT,
        UNIQUE (study_id, hash)
    )""",
    "CREATE INDEX trials_by_status ON trials(study_id, status)",
    # metrics_json is the record; the columns copy the common metrics for plain SQL
    # queries (NaN is NULL there, since SQLite stores a NaN REAL as NULL).
    """CREATE TABLE epochs (
        trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL CHECK (epoch >= 0),
        metrics_json TEXT NOT NULL,
        train_loss REAL,
        train_accuracy REAL,
        val_loss REAL,
        val_accuracy REAL,
        learning_rate REAL,
        seconds REAL,
        recorded REAL NOT NULL,
        PRIMARY KEY (trial_id, epoch)
    ) WITHOUT ROWID""",
    """CREATE TABLE artifacts (
        trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        format TEXT NOT NULL,
        epoch INTEGER,
        created REAL NOT NULL,
        PRIMARY KEY (trial_id, kind)
    )""",
)

_METRIC_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "train_loss": ("train_loss", "loss"),
    "train_accuracy": ("train_accuracy", "accuracy"),
    "val_loss": ("val_loss",),
    "val_accuracy": ("val_accuracy",),
    "learning_rate": ("learning_rate", "lr"),
    "seconds": ("seconds",),
}
"""Epoch column -> metric names (trainlab's first, then the Keras spelling) it copies."""

_TRIAL_COLUMNS: Final = (
    "id, study_id, hash, label, params_json, seed, spec_json, status, owner, heartbeat, "
    "attempts, started, finished, error, result_json, plan_json"
)

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: ("ALTER TABLE trials ADD COLUMN plan_json TEXT",),
}
"""Version -> the statements that bring a store of the version before it up to it.

Version 2 records each trial's run plan (population, step, compile, threads); trials of a
version-1 store have none and are planned when they next run."""


class SQLiteStore(Store):
    """A :class:`Store` in one SQLite file; see the module docstring for its settings.

    One object per thread per process (the connection refuses other threads, and a
    forked child must open its own). Any number of processes may open the same file.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, lease: float, clock: Clock) -> None:
        """Wrap an already prepared connection; use :meth:`open` instead."""
        self._conn: sqlite3.Connection | None = connection
        self._path = path
        self._lease = lease
        self._clock = clock
        self._pid = os.getpid()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        lease: float = DEFAULT_LEASE,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        clock: Clock = time.time,
    ) -> SQLiteStore:
        """Open the store file at ``path``, creating it (and its directory) if missing.

        ``lease``: seconds without a heartbeat after which an owner on another host is
        presumed dead. ``timeout``: seconds to wait for another process's write (the
        busy timeout). ``check``: run ``PRAGMA quick_check`` (reads the whole file once;
        its cost: bench/README.md, "Smaller measurements") to refuse a damaged store.
        ``clock``: the time source, replaceable in tests.

        Raises :class:`StoreError` naming the file if it is not a SQLite database, is a
        database of something else, has a newer schema, or is damaged; such a file is
        never modified.
        """
        path = Path(path)
        key = os.path.realpath(path)
        if not _OPEN_HERE.get(key):
            # Reading the file through a second descriptor and closing it would drop the POSIX
            # locks this process's open connections hold on it (see SQLite's "How To Corrupt").
            _check_header(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store's directory: {exc}") from exc
        try:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from exc
        try:
            _prepare(conn, path, check=check, timeout=timeout, now=clock())
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _open_error(path, exc) from exc
            raise
        _OPEN_HERE[key] = _OPEN_HERE.get(key, 0) + 1
        return cls(conn, path, lease=lease, clock=clock)

    @property
    def path(self) -> Path:
        """The store file."""
        return self._path

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            if self._pid == os.getpid():
                self._conn.close()
                key = os.path.realpath(self._path)
                _OPEN_HERE[key] = max(0, _OPEN_HERE.get(key, 0) - 1)
            self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._path)!r})"

    # --- studies and trials -------------------------------------------------------------

    def ensure_study(self, name: str, spec_json: str, spec_hash: str, source: str | None) -> int:
        """See :meth:`Store.ensure_study`."""
        with self._write() as conn:
            row = conn.execute("SELECT id, spec_hash, source FROM studies WHERE name = ?", (name,)).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO studies (name, spec_json, spec_hash, source, created) VALUES (?, ?, ?, ?, ?)",
                    (name, spec_json, spec_hash, source, self._clock()),
                )
                return cast(int, cursor.lastrowid)
            study_id, old_hash, old_source = row
            if (old_hash, old_source) != (spec_hash, source):
                conn.execute(
                    "UPDATE studies SET spec_json = ?, spec_hash = ?, source = ? WHERE id = ?",
                    (spec_json, spec_hash, source, study_id),
                )
            return int(study_id)

    def add_trials(self, study_id: int, trials: Sequence[NewTrial]) -> None:
        """See :meth:`Store.add_trials`."""
        rows = [(study_id, t.hash, t.label, dumps(dict(t.params)), int(t.seed), t.spec_json) for t in trials]
        with self._write() as conn:
            self._require_study(conn, study_id)
            conn.executemany(
                "INSERT INTO trials (study_id, hash, label, params_json, seed, spec_json) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (study_id, hash) DO NOTHING",
                rows,
            )

    def set_plans(self, study_id: int, plans: Mapping[str, Mapping[str, Any]]) -> None:
        """See :meth:`Store.set_plans`."""
        rows = [(dumps(dict(plan)), study_id, trial_hash) for trial_hash, plan in plans.items()]
        with self._write() as conn:
            self._require_study(conn, study_id)
            conn.executemany(
                "UPDATE trials SET plan_json = ? WHERE study_id = ? AND hash = ? AND plan_json IS NULL", rows
            )

    def studies(self) -> list[StudyRecord]:
        """See :meth:`Store.studies`."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, name, spec_json, spec_hash, source, created FROM studies ORDER BY id"
            ).fetchall()
        return [StudyRecord(*row) for row in rows]

    def study(self, name: str) -> StudyRecord | None:
        """See :meth:`Store.study`."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT id, name, spec_json, spec_hash, source, created FROM studies WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else StudyRecord(*row)

    def trial(self, trial_id: int) -> TrialRecord | None:
        """See :meth:`Store.trial`."""
        with self._reading() as conn:
            return _fetch_trial(conn, trial_id)

    def trials(
        self,
        study_id: int,
        *,
        status: Status | None = None,
        hashes: Collection[str] | None = None,
    ) -> list[TrialRecord]:
        """See :meth:`Store.trials`."""
        if status is not None:
            _check_statuses([status], allowed=STATUSES)
        sql = f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE study_id = ?"
        args: list[Any] = [study_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        wanted = None if hashes is None else set(hashes)
        with self._reading() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
            return [_trial_record(row) for row in rows if wanted is None or row[2] in wanted]

    def status_counts(self, study_id: int, *, hashes: Collection[str] | None = None) -> dict[str, int]:
        """See :meth:`Store.status_counts`."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        with self._reading() as conn:
            rows = conn.execute("SELECT hash, status FROM trials WHERE study_id = ?", (study_id,)).fetchall()
        wanted = None if hashes is None else set(hashes)
        for trial_hash, status in rows:
            if wanted is None or trial_hash in wanted:
                counts[status] += 1
        return counts

    # --- running trials -----------------------------------------------------------------

    def claim_next(self, study_id: int, owner: str, *, hashes: Collection[str] | None = None) -> TrialRecord | None:
        """See :meth:`Store.claim_next`."""
        wanted = None if hashes is None else set(hashes)
        with self._write() as conn:
            now = self._clock()
            candidates = conn.execute(
                "SELECT id, hash, status, owner, heartbeat FROM trials "
                "WHERE study_id = ? AND status IN ('pending', 'running') ORDER BY id",
                (study_id,),
            ).fetchall()
            for trial_id, trial_hash, status, holder, beat in candidates:
                if wanted is not None and trial_hash not in wanted:
                    continue
                if status == "pending" or holder is None or not owner_alive(holder, beat, now, self._lease):
                    self._take(conn, trial_id, owner, now)
                    return _fetch_trial(conn, trial_id)
            return None

    def claim(self, trial_id: int, owner: str) -> bool:
        """See :meth:`Store.claim`. Returns ``False`` for an unknown id."""
        with self._write() as conn:
            now = self._clock()
            row = conn.execute("SELECT status, owner, heartbeat FROM trials WHERE id = ?", (trial_id,)).fetchone()
            if row is None:
                return False
            status, holder, beat = row
            if status == "running" and holder == owner:
                conn.execute("UPDATE trials SET heartbeat = ? WHERE id = ?", (now, trial_id))
                return True
            if status == "pending" or (
                status == "running" and (holder is None or not owner_alive(holder, beat, now, self._lease))
            ):
                self._take(conn, trial_id, owner, now)
                return True
            return False

    def heartbeat(self, trial_id: int, owner: str) -> None:
        """See :meth:`Store.heartbeat`."""
        with self._write() as conn:
            self._require_owner(conn, trial_id, owner)
            conn.execute("UPDATE trials SET heartbeat = ? WHERE id = ?", (self._clock(), trial_id))

    def record_epoch(
        self,
        trial_id: int,
        owner: str,
        epoch: int,
        metrics: Mapping[str, float | None],
        checkpoint: bytes | None = None,
        *,
        checkpoint_format: str = "bytes",
    ) -> None:
        """See :meth:`Store.record_epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        values = encode_metrics(metrics)
        columns = [_first_present(values, names) for names in _METRIC_COLUMNS.values()]
        with self._write() as conn:
            self._require_owner(conn, trial_id, owner)
            now = self._clock()
            conn.execute(
                f"INSERT OR REPLACE INTO epochs (trial_id, epoch, metrics_json, {', '.join(_METRIC_COLUMNS)}, "
                f"recorded) VALUES (?, ?, ?, {', '.join('?' * len(_METRIC_COLUMNS))}, ?)",
                (trial_id, epoch, dumps(values), *columns, now),
            )
            conn.execute("DELETE FROM epochs WHERE trial_id = ? AND epoch > ?", (trial_id, epoch))
            if checkpoint is not None:
                self._put_artifact(conn, trial_id, CHECKPOINT, checkpoint, checkpoint_format, epoch, now)
            else:
                conn.execute(
                    "DELETE FROM artifacts WHERE trial_id = ? AND kind = ? AND epoch > ?",
                    (trial_id, CHECKPOINT, epoch),
                )
            conn.execute("UPDATE trials SET heartbeat = ? WHERE id = ?", (now, trial_id))

    def finish_trial(
        self,
        trial_id: int,
        owner: str,
        status: Status,
        *,
        result: Mapping[str, Any] | None = None,
        weights: bytes | None = None,
        weights_format: str = "bytes",
        error: str | None = None,
    ) -> None:
        """See :meth:`Store.finish_trial`."""
        _check_statuses([status], allowed=FINISHED_STATUSES)
        result_json = None if result is None else dumps(dict(result))
        with self._write() as conn:
            self._require_owner(conn, trial_id, owner)
            now = self._clock()
            conn.execute(
                "UPDATE trials SET status = ?, finished = ?, heartbeat = ?, result_json = ?, error = ? WHERE id = ?",
                (status, now, now, result_json, error, trial_id),
            )
            conn.execute("DELETE FROM artifacts WHERE trial_id = ? AND kind = ?", (trial_id, CHECKPOINT))
            if weights is not None:
                self._put_artifact(conn, trial_id, WEIGHTS, weights, weights_format, None, now)

    def release(self, trial_id: int, owner: str) -> None:
        """See :meth:`Store.release`."""
        with self._write() as conn:
            conn.execute(
                "UPDATE trials SET status = 'pending', owner = NULL, heartbeat = NULL "
                "WHERE id = ? AND status = 'running' AND owner = ?",
                (trial_id, owner),
            )

    def reset_trials(self, study_id: int, statuses: Collection[str]) -> int:
        """See :meth:`Store.reset_trials`."""
        if isinstance(statuses, str):
            statuses = [statuses]
        _check_statuses(statuses, allowed=FINISHED_STATUSES)
        chosen = sorted(set(statuses))
        if not chosen:
            return 0
        marks = ", ".join("?" * len(chosen))
        with self._write() as conn:
            ids = [
                (trial_id,)
                for (trial_id,) in conn.execute(
                    f"SELECT id FROM trials WHERE study_id = ? AND status IN ({marks})", (study_id, *chosen)
                )
            ]
            conn.executemany("DELETE FROM epochs WHERE trial_id = ?", ids)
            conn.executemany("DELETE FROM artifacts WHERE trial_id = ?", ids)
            conn.executemany(
                "UPDATE trials SET status = 'pending', owner = NULL, heartbeat = NULL, started = NULL, "
                "finished = NULL, error = NULL, result_json = NULL, plan_json = NULL WHERE id = ?",
                ids,
            )
            return len(ids)

    # --- reading results ----------------------------------------------------------------

    def epochs(self, trial_id: int) -> list[EpochRecord]:
        """See :meth:`Store.epochs`."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT trial_id, epoch, metrics_json, recorded FROM epochs WHERE trial_id = ? ORDER BY epoch",
                (trial_id,),
            ).fetchall()
            return [EpochRecord(tid, epoch, _json(text), recorded) for tid, epoch, text, recorded in rows]

    def artifact(self, trial_id: int, kind: str) -> ArtifactRecord | None:
        """See :meth:`Store.artifact`."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT trial_id, kind, data, format, epoch, created FROM artifacts WHERE trial_id = ? AND kind = ?",
                (trial_id, kind),
            ).fetchone()
        if row is None:
            return None
        tid, kind, data, fmt, epoch, created = row
        return ArtifactRecord(tid, kind, bytes(data), fmt, epoch, created)

    # --- internals ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection, after checking it is still usable from this process."""
        if self._conn is None:
            raise StoreError(f"{self._path}: the store is closed")
        if os.getpid() != self._pid:
            raise StoreError(
                f"{self._path}: this store object was opened in process {self._pid} and cannot be "
                f"used in process {os.getpid()} (a forked child); open the store again there"
            )
        return self._conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, with failures of the file reported as :class:`StoreError`."""
        conn = self._connection()
        with self._translated():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front; rolled back on any error."""
        conn = self._connection()
        with self._translated():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Report problems of the file (locked, disk full, I/O, damage) as :class:`StoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            error = _runtime_error(self._path, exc)
            if error is None:
                raise
            raise error from exc
        except _DamagedText as exc:
            raise StoreError(_corrupt_message(self._path, f"a stored record is not valid JSON: {exc}")) from None

    def _take(self, conn: sqlite3.Connection, trial_id: int, owner: str, now: float) -> None:
        conn.execute(
            "UPDATE trials SET status = 'running', owner = ?, heartbeat = ?, attempts = attempts + 1, "
            "started = COALESCE(started, ?) WHERE id = ?",
            (owner, now, now, trial_id),
        )

    def _require_owner(self, conn: sqlite3.Connection, trial_id: int, owner: str) -> None:
        """Raise :class:`ClaimLostError` unless ``owner`` holds the running trial."""
        row = conn.execute("SELECT status, owner FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise ClaimLostError(f"{self._path}: trial {trial_id} does not exist")
        status, holder = row
        if status != "running" or holder != owner:
            now_held = f"held by {holder}" if status == "running" else f"{status}"
            raise ClaimLostError(
                f"{self._path}: trial {trial_id} is no longer held by {owner} (it is {now_held}); stop working on it"
            )

    def _require_study(self, conn: sqlite3.Connection, study_id: int) -> None:
        if conn.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is None:
            raise ValueError(f"{self._path}: no study with id {study_id}")

    def _put_artifact(
        self,
        conn: sqlite3.Connection,
        trial_id: int,
        kind: str,
        data: bytes,
        fmt: str,
        epoch: int | None,
        now: float,
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO artifacts (trial_id, kind, data, format, epoch, created) VALUES (?, ?, ?, ?, ?, ?)",
            (trial_id, kind, sqlite3.Binary(data), fmt, epoch, now),
        )


# --- opening ----------------------------------------------------------------------------------


_OPEN_HERE: dict[str, int] = {}
"""Connections this process holds open, by the store file's real path."""


def _check_header(path: Path) -> None:
    """Refuse, before SQLite touches it, a file that cannot be a SQLite database."""
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a trainlab store; give the path of a store file")
    try:
        with path.open("rb") as handle:
            header = handle.read(_SQLITE_HEADER_SIZE)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store: {exc}") from exc
    if not header:
        return
    if not header.startswith(_SQLITE_MAGIC[: len(header)]):
        raise StoreError(
            f"{path}: not a trainlab store (not a SQLite database at all). Give another store path, "
            "or move this file away if it was meant to be a store"
        )
    if len(header) < _SQLITE_HEADER_SIZE:
        raise StoreError(
            f"{path}: the store is truncated ({len(header)} bytes, shorter than a SQLite header). "
            "Restore it from a backup, or move it away to start a new store"
        )


def _prepare(conn: sqlite3.Connection, path: Path, *, check: bool, timeout: float, now: float) -> None:
    """Check the file, switch it to the store's settings and create the schema if it is new."""
    if check:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            lines = [line.strip() for p in problems for line in str(p).splitlines()]
            found = [line for line in lines if line and not line.startswith("***")]
            detail = "; ".join(found[:3]) + (f"; {len(found) - 3} more problems" if len(found) > 3 else "")
            raise StoreError(_corrupt_message(path, detail))
    conn.execute("BEGIN")  # one snapshot for both reads, while another process may be creating the schema
    try:
        fresh = _identify(conn, path)
    finally:
        conn.rollback()
    _set_wal(conn, path, timeout)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # After a checkpoint, shrink a WAL that a big checkpoint blob made large.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    if fresh:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _identify(conn, path):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO trainlab_schema (version, applied) VALUES (?, ?)", (SCHEMA_VERSION, now))
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")
    else:
        _migrate(conn, now)


def _migrate(conn: sqlite3.Connection, now: float) -> None:
    """Bring an older store up to :data:`SCHEMA_VERSION`, one version per step, each in one
    transaction (another process may be migrating the same file: the version is re-read
    under the write lock)."""
    while True:
        version = conn.execute("SELECT MAX(version) FROM trainlab_schema").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT MAX(version) FROM trainlab_schema").fetchone()[0] == version:
                for statement in _MIGRATIONS[version + 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO trainlab_schema (version, applied) VALUES (?, ?)", (version + 1, now))
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")


def _identify(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether the database is empty (to be initialized); raise if it is not a usable store."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if app_id == 0 and not tables:
        return True
    if app_id != APPLICATION_ID or "trainlab_schema" not in tables:
        shown = ", ".join(sorted(tables)[:5]) or "none"
        raise StoreError(
            f"{path}: not a trainlab store (a SQLite database of something else; tables: {shown}). "
            "Give another store path; this file was left untouched"
        )
    version = conn.execute("SELECT MAX(version) FROM trainlab_schema").fetchone()[0]
    if version is None:
        raise StoreError(_corrupt_message(path, "its schema version is missing"))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer trainlab (store schema version {version}, this trainlab reads "
            f"up to {SCHEMA_VERSION}). Upgrade trainlab to use this store"
        )
    return False


def _set_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Switch to WAL, retrying while another process holds a lock (the switch does not wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith("SQLITE_BUSY") or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if str(mode).lower() != "wal":
        raise StoreError(
            f"{path}: SQLite cannot use write-ahead logging here (journal mode stays {mode!r}); "
            "put the store on a local file system"
        )


def _open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """A :class:`StoreError` explaining why SQLite refused the file."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_NOTADB"):
        return StoreError(
            f"{path}: not a trainlab store (not a SQLite database at all). Give another store path, "
            "or move this file away if it was meant to be a store"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return StoreError(f"{path}: cannot open the store ({exc}); check the path and permissions")
    return _runtime_error(path, exc) or StoreError(f"{path}: cannot open the store: {exc}")


def _runtime_error(path: Path, exc: sqlite3.Error) -> StoreError | None:
    """A :class:`StoreError` for a problem of the file or disk; ``None`` for other errors (bugs)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(
            f"{path}: another process held the store locked for longer than the timeout ({exc}); "
            "retry, or open the store with a longer timeout"
        )
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"{path}: the disk holding the store is full; free space and run again ({exc})")
    if name.startswith("SQLITE_CORRUPT"):
        return StoreError(_corrupt_message(path, str(exc)))
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM")):
        return StoreError(f"{path}: the store cannot be written ({exc}); check its permissions")
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"{path}: reading or writing the store failed ({exc}); check the disk")
    return None


def _corrupt_message(path: Path, detail: str) -> str:
    return (
        f"{path}: the store is damaged ({detail}) and was not used. Restore it from a backup, "
        f"salvage what is readable with `sqlite3 {path} .recover | sqlite3 recovered.db`, "
        "or move it away to start a new store"
    )


# --- rows -------------------------------------------------------------------------------------


def _fetch_trial(conn: sqlite3.Connection, trial_id: int) -> TrialRecord | None:
    row = conn.execute(f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE id = ?", (trial_id,)).fetchone()
    return None if row is None else _trial_record(row)


def _trial_record(row: tuple[Any, ...]) -> TrialRecord:
    (tid, study_id, trial_hash, label, params, seed, spec, status, owner, beat, attempts, started,
     finished, error, result, plan) = row  # fmt: skip
    return TrialRecord(
        id=tid,
        study_id=study_id,
        hash=trial_hash,
        label=label,
        params=_json(params),
        seed=seed,
        spec_json=spec,
        status=status,
        owner=owner,
        heartbeat=beat,
        attempts=attempts,
        started=started,
        finished=finished,
        error=error,
        result=None if result is None else _json(result),
        plan=None if plan is None else _json(plan),
    )


class _DamagedText(ValueError):
    """JSON text in the store that does not parse: the file's bytes changed under SQLite."""


def _json(text: str) -> Any:
    try:
        return loads(text)
    except (ValueError, TypeError) as exc:
        raise _DamagedText(str(exc)) from None


def _first_present(values: Mapping[str, float | None], names: tuple[str, ...]) -> float | None:
    for name in names:
        if name in values:
            return values[name]
    return None


def _check_statuses(statuses: Collection[str], *, allowed: Collection[str]) -> None:
    for status in statuses:
        if status not in allowed:
            raise ValueError(f"status {status!r} is not one of {', '.join(sorted(allowed))}")
