"""The sections of a study file, and the checks of plain shape every part of the parser shares.

Which sections a study file has (:data:`TOP_KEYS`) and which of them are a trial's tables
(:data:`TRIAL_KEYS`); what a smoke run shrinks a study to (:data:`SMOKE`); and the checks that
need no knowledge of a section's meaning: a table, a list of seeds, no value that the stored
JSON cannot hold.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from trainlab.errors import SpecError
from trainlab.registry import join

TOP_KEYS = ("study", "data", "model", "optimizer", "train", "compare", "grid", "search", "tune", "stage")
TRIAL_KEYS = ("data", "model", "optimizer", "train")
SMOKE = {"train_limit": 1024, "val_limit": 512, "test_limit": 512, "epochs": 2, "folds": 2, "search_trials": 3}
"""How ``[study] smoke = true`` (``trainlab run --smoke``) shrinks a study: every code path, little work."""
MAX_SEED = 2**63 - 1
"""Seeds are stored as SQLite integers (signed 64-bit)."""


def as_table(value: Any, path: str) -> dict[str, Any]:
    """``value`` as a dict, or a SpecError at ``path`` when it is not a table."""
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a table, got {value!r}", path=path)
    return dict(value)


def check_seeds(value: Any, where: str) -> tuple[int, ...]:
    """The seeds a ``seeds`` value names: a count (the first N) or a list of distinct seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1000:
            raise SpecError(f"a number of seeds must be in 1..1000, got {value}", path=where)
        return tuple(range(value))
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value)
    ):
        raise SpecError(f"seeds are a count or a list of integers in 0..{MAX_SEED}, got {value!r}", path=where)
    if len(set(value)) != len(value):
        raise SpecError(f"seeds repeat: {value!r}", path=where)
    return tuple(value)


def check_plain(value: Any, path: str) -> None:
    """Refuse what no study value can be, wherever it is written (even where a variant overrides
    it): TOML dates and times, and NaN or infinite numbers, which the stored JSON cannot hold."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_plain(item, join(path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_plain(item, join(path, i))
    elif isinstance(value, (datetime.date, datetime.time)):
        raise SpecError(
            f"expected a number, string, true/false, list or table, got the date or time {value}", path=path
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", path=path)
