"""Derived seeds: one trial seed gives independent streams for init, shuffling, dropout, splits.

Deriving by hashing (not by drawing from a shared generator) makes each stream depend only on
the trial seed and its tag, never on what else ran in the process before it.
"""

from __future__ import annotations

import hashlib


def derive(seed: int, *tags: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``tags``."""
    text = "/".join([str(int(seed)), *map(str, tags)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
