"""A long study in one process: 120 small trials, and the resident memory stays flat.

Memory is read from /proc/self/statm after every trial, once the allocator has given its freed
pages back to the system (glibc's ``malloc_trim``), so that the figure follows what is still
allocated rather than what the allocator keeps cached. The first figure is taken once 20 trials
have run (SQLite's page cache and the allocator are warm by then), the last after the final
trial. What the run does is fixed, not measured: the population size is given (1: each
trial alone; 2: each seed's two optimizers together, the way a sweep trains by default) and a
checkpoint is written after every epoch, not every few seconds of wall time. The model is sized
so that leaking anything per trial (one model's weights are 140 kB, a checkpoint with Adam's
slots about 0.5 MB) grows the process by at least 14 MB over the 100 trials measured, well past
the 8 MB bound; the growth seen without a leak is under 2 MB.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import make_npz

from trainlab import spec
from trainlab.data.cache import DataCache
from trainlab.executors import Silent, run_local
from trainlab.store import Store

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")

TRIALS = 120
WARM = 20
BOUND_MB = 8.0

STUDY = f"""
[study]
name = "long"
seeds = {TRIALS // 2}

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 0.25 }}

[model]
layers = [
  {{ type = "Flatten" }},
  {{ type = "Dense", units = 512, activation = "relu" }},
  {{ type = "Dropout", rate = 0.1 }},
  {{ type = "Dense", units = 3, activation = "softmax" }},
]

[train]
epochs = 2
batch_size = 32
early_stopping = {{ monitor = "val_loss", patience = 5, restore_best_weights = true }}

[[compare]]
label = "sgd"
optimizer = {{ name = "sgd", learning_rate = 0.05, momentum = 0.9 }}

[[compare]]
label = "adam"
optimizer = "adam"
"""


_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed_memory() -> None:
    """Return the allocator's free pages to the system where the C library can (glibc); else nothing."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler(Silent):
    """Records the resident set size each time a trial finishes."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        release_freed_memory()
        self.samples.append(rss_mb())


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train an order of magnitude faster on one thread on a busy machine (two
    threads spin waiting for each other); memory is what is measured here, not speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("population", [1, 2], ids=["alone", "population-of-2"])
def test_a_long_study_in_one_process_keeps_memory_flat(tmp_path: Path, one_thread: None, population: int) -> None:
    make_npz(tmp_path / "tiny.npz")
    (tmp_path / "long.toml").write_text(STUDY)
    study = spec.load(tmp_path / "long.toml")
    sampler = Sampler()
    began = time.perf_counter()
    with Store.open(tmp_path / "long.db") as store:
        summary = run_local(
            study, store, reporter=sampler, cache=DataCache(), population=population, checkpoint_every=0
        )
        counts = store.status_counts(summary.study_id)
        populations = {(t.result or {}).get("population") for t in store.trials(summary.study_id)}
    seconds = time.perf_counter() - began
    assert counts["done"] == TRIALS and len(sampler.samples) == TRIALS
    assert populations == {population}, "every trial trained as asked"
    first, last = sampler.samples[WARM - 1], sampler.samples[-1]
    peak = max(sampler.samples[WARM - 1 :])
    print(
        f"\n{TRIALS} trials in {seconds:.1f} s; RSS after {WARM} trials {first:.1f} MB, after {TRIALS} {last:.1f} MB "
        f"(growth {last - first:+.1f} MB, peak {peak:.1f} MB)",
        file=sys.stderr,
    )
    assert last - first < BOUND_MB, f"memory grew {last - first:.1f} MB over {TRIALS - WARM} trials"
    assert peak - first < BOUND_MB
