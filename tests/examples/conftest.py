"""What the notebook tests share: a kernel that imports this checkout's trainlab."""

from __future__ import annotations

import os

import pytest
from helpers import ROOT


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel imports this checkout's trainlab, and downloads nothing."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
