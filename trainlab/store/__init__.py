"""Where trials and every finished epoch are recorded, so a killed run resumes losing nothing.

``Store.open(path)`` opens (or creates) a store; :mod:`trainlab.store.base` holds the
interface every backend implements and the records it returns, :mod:`trainlab.store.sqlite`
the SQLite backend. The backends build on the interface, so the interface does not import
them: this package registers each one with :func:`~trainlab.store.base.register_backend`.
"""

from trainlab.store.base import (
    CHECKPOINT,
    DEFAULT_LEASE,
    FINISHED_STATUSES,
    SQLITE,
    STATUSES,
    WEIGHTS,
    ArtifactRecord,
    ClaimLostError,
    EpochRecord,
    NewTrial,
    Status,
    Store,
    StudyRecord,
    TrialRecord,
    make_owner,
    owner_alive,
    register_backend,
)
from trainlab.store.sqlite import SQLiteStore

register_backend(SQLITE, SQLiteStore)

__all__ = [
    "CHECKPOINT",
    "DEFAULT_LEASE",
    "FINISHED_STATUSES",
    "STATUSES",
    "WEIGHTS",
    "ArtifactRecord",
    "ClaimLostError",
    "EpochRecord",
    "NewTrial",
    "SQLiteStore",
    "Status",
    "Store",
    "StudyRecord",
    "TrialRecord",
    "make_owner",
    "owner_alive",
]
