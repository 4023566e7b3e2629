"""Where trials and every finished epoch are recorded, so a killed run resumes losing nothing.

``Store.open(path)`` opens (or creates) a store; :mod:`trainlab.store.base` holds the
interface every backend implements and the records it returns, :mod:`trainlab.store.sqlite`
the SQLite backend.
"""

from trainlab.store.base import (
    CHECKPOINT,
    DEFAULT_LEASE,
    FINISHED_STATUSES,
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
)
from trainlab.store.sqlite import SQLiteStore

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
