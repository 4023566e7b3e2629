"""Shared fixtures; the helpers they use are in helpers.py (paths, data files) and factories.py (studies)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    """A two-variant, two-seed study of four epochs on the tiny data set, in ``tmp_path``."""
    with_tiny_npz(tmp_path)
    return write_study(tmp_path / "tiny.toml", tiny_study_tables(epochs=4))
