"""Host memory stays flat over a long study: nothing a finished trial leaves behind (its weights,
checkpoints, data, compiled programs) is kept by the process that trained it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from factories import load_study, npz_study, with_tiny_npz

from trainlab.data.cache import DataCache
from trainlab.executors import Silent, run_local
from trainlab.store import Store, TrialRecord

WIDE = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 512, "activation": "relu"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]
"""35 000 parameters: 140 kB a copy, so that keeping one copy of each trial's weights would show."""


def rss_mib() -> float:
    """This process's resident memory now (not its peak)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class Sampler(Silent):
    """Records the resident memory after every finished trial."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None:
        self.samples.append(rss_mib())


@pytest.mark.parametrize("trials", [pytest.param(300, id="300"), pytest.param(1000, id="1000", marks=pytest.mark.slow)])
def test_a_long_study_keeps_host_memory_flat(tmp_path: Path, trials: int) -> None:
    """``trials`` one-epoch trials, each alone (one seed each). After the first 50 (the data, the
    models' code and the store warm up), memory may grow by at most a fifth of one copy of a
    trial's weights per trial: a leak of a trial's weights, checkpoint or data would be several."""
    with_tiny_npz(tmp_path)
    study = load_study(tmp_path, npz_study(seeds=list(range(trials)), epochs=1, layers=WIDE), name="long")
    sampler = Sampler()
    with Store.open(tmp_path / "s.db") as store:
        run_local(study, store, cache=DataCache(), reporter=sampler, checkpoint_every=0)
    assert len(sampler.samples) == trials
    growth = sampler.samples[-1] - sampler.samples[49]
    per_trial_weights = 35_459 * 4 / 2**20
    assert growth < 0.2 * per_trial_weights * (trials - 50), f"{growth:.1f} MiB over {trials - 50} trials"
