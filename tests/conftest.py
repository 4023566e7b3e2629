"""Shared fixtures; the helpers they use are in helpers.py (paths, data files) and factories.py (studies)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factories import tiny_study_tables, with_tiny_npz, write_study


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    """A two-variant, two-seed study of four epochs on the tiny data set, in ``tmp_path``."""
    with_tiny_npz(tmp_path)
    return write_study(tmp_path / "tiny.toml", tiny_study_tables(epochs=4))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped, with what torch found, where it sees no CUDA device."""
    if torch.cuda.is_available():
        return
    from trainlab import devices

    skip = pytest.mark.skip(reason=f"needs a CUDA GPU; this machine has {devices.found()}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
