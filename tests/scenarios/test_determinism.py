"""Same study, same numbers: bit-identical on a busy machine, and what holds across other plans.

Each run is the real command (``trainlab run``) on a fresh store. The study has every kind of
unit: per seed a population of four optimizers on a multi-threaded batch size, a trial alone on
the autograd step, and a pure-SGD trial alone on the lowered step.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import make_npz

from trainlab.engine.checkpoint import unpack
from trainlab.store import WEIGHTS, Store

STUDY = """
[study]
name = "det"
seeds = [0, 1]

[data]
name = "npz"
path = "det.npz"
split = { kind = "stratified", validation = 0.25 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 128, activation = "relu" },
  { type = "Dropout", rate = 0.2 },
  { type = "Dense", units = 3, activation = "softmax" },
]

[train]
epochs = 3
batch_size = 64

[[compare]]
label = "sgd"
optimizer = "sgd"

[[compare]]
label = "momentum"
optimizer = { name = "sgd", momentum = 0.9 }

[[compare]]
label = "adam"
optimizer = "adam"

[[compare]]
label = "rmsprop"
optimizer = "rmsprop"

[[compare]]
label = "wide"
optimizer = "adam"
model = { layers = [{ type = "Flatten" }, { type = "Dense", units = 256, activation = "tanh" }, { type = "Dense", units = 3, activation = "softmax" }] }

[[compare]]
label = "pure"
optimizer = "sgd"
model = { layers = [{ type = "Flatten" }, { type = "Dense", units = 64, activation = "relu" }, { type = "Dense", units = 3, activation = "softmax" }] }
train = { batch_size = 4 }
"""

LOSS_RTOL = 1e-4
"""Relative tolerance on per-epoch losses between plans that sum in another order (another thread
count, a population against a trial alone): float32 rounding, grown over a few hundred steps."""
ACCURACY_EXAMPLES = 2
"""Accuracies between such plans may differ by this many examples of the set they count: a
prediction near a tie flips with the last bit of a logit."""


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("determinism")
    make_npz(path / "det.npz", n_train=1200, n_test=200, size=28)
    (path / "det.toml").write_text(STUDY)
    return path


def run(cwd: Path, store: str, *options: str) -> dict[str, dict[str, Any]]:
    """``trainlab run`` into a fresh store; every trial's plan, epochs (less their timings), test
    metrics and a digest of its final weights, by trial hash."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab.cli",
            "run",
            "det.toml",
            "--store",
            store,
            "--quiet",
            "--format",
            "none",
            *options,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    out = {}
    with Store.open(cwd / store) as s:
        record = s.study("det")
        assert record is not None
        for trial in s.trials(record.id):
            assert trial.status == "done", (trial.label, trial.error)
            weights = unpack(s.artifact(trial.id, WEIGHTS).data)[0]["model"]  # type: ignore[union-attr]
            digest = hashlib.sha256()
            for name in sorted(weights):
                digest.update(name.encode() + weights[name].numpy().tobytes())
            out[trial.hash] = {
                "label": trial.label,
                "plan": trial.plan,
                "test": trial.result["test"],  # type: ignore[index]
                "epochs": [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in s.epochs(trial.id)],
                "weights": digest.hexdigest(),
            }
    return out


@contextmanager
def cpu_burners() -> Iterator[None]:
    """One busy process per core, competing with the run for the whole block."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()


def units(trials: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """How each variant trained, by label: step, population size, threads."""
    return {t["label"]: (t["plan"]["step"], t["plan"]["members"], t["plan"]["threads"]) for t in trials.values()}


@pytest.fixture(scope="module")
def quiet_run(study_dir: Path) -> dict[str, dict[str, Any]]:
    return run(study_dir, "quiet.db")


def test_the_study_covers_every_kind_of_unit(quiet_run: dict[str, dict[str, Any]]) -> None:
    threads = max(1, os.cpu_count() or 1)
    assert units(quiet_run) == {
        **{label: ("population", 4, threads) for label in ("sgd", "momentum", "adam", "rmsprop")},
        "wide": ("autograd", 1, threads),
        "pure": ("lowered", 1, 1),
    }


def test_same_study_same_numbers_on_a_busy_machine(study_dir: Path, quiet_run: dict[str, dict[str, Any]]) -> None:
    with cpu_burners():
        busy = run(study_dir, "busy.db")
    assert busy.keys() == quiet_run.keys()
    for key, trial in quiet_run.items():
        assert busy[key] == trial, trial["label"]  # plans, every epoch's metrics, test metrics, weights: bit for bit


def test_population_limits_of_two_or_more_give_the_same_numbers(
    study_dir: Path, quiet_run: dict[str, dict[str, Any]]
) -> None:
    """``--population 2`` splits each seed's four optimizers into two populations of two: each member's
    numbers do not depend on which trials share its population."""
    pairs = run(study_dir, "pairs.db", "--population", "2")
    assert {label: members for label, (_, members, _) in units(pairs).items()} == {
        "sgd": 2,
        "momentum": 2,
        "adam": 2,
        "rmsprop": 2,
        "wide": 1,
        "pure": 1,
    }
    for key, trial in quiet_run.items():
        assert {k: v for k, v in pairs[key].items() if k != "plan"} == {
            k: v for k, v in trial.items() if k != "plan"
        }, trial["label"]


def assert_close(a: dict[str, Any], b: dict[str, Any], counts: dict[str, int]) -> None:
    """Per-epoch metrics within the tolerances above; accuracies by examples of the set they count."""
    assert len(a["epochs"]) == len(b["epochs"])
    for x, y in zip(a["epochs"], b["epochs"]):
        assert x.keys() == y.keys()
        for name, value in x.items():
            if name.endswith("accuracy"):
                n = counts["val" if name.startswith("val_") else "train"]
                assert abs(value - y[name]) * n <= ACCURACY_EXAMPLES + 1e-6, (a["label"], name)
            else:
                assert math.isclose(value, y[name], rel_tol=LOSS_RTOL), (a["label"], name, value, y[name])


def same_arithmetic(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two plans run the same operations on the same threads (populations of any size >= 2 alike)."""
    return all(a[k] == b[k] for k in ("step", "compile", "threads")) and (a["members"] > 1) == (b["members"] > 1)


@pytest.mark.parametrize("options", [("--population", "1"), ("--workers", "2")])
def test_other_plans_agree_within_float_rounding(
    study_dir: Path, quiet_run: dict[str, dict[str, Any]], options: tuple[str, ...]
) -> None:
    """Training alone instead of in a population, or on another thread count, adds in another order;
    a trial whose plan runs the same arithmetic gives the same numbers bit for bit."""
    other = run(study_dir, f"other{options[1]}.db", *options)
    counts = {"train": 900, "val": 300}  # 1200 examples, a quarter validates
    alike = 0
    for key, trial in quiet_run.items():
        if options[0] == "--workers":
            assert other[key]["plan"]["workers"] == 2  # recorded: the pool ran, with the cores divided
        if same_arithmetic(other[key]["plan"], trial["plan"]):
            alike += 1
            assert {k: v for k, v in other[key].items() if k != "plan"} == {
                k: v for k, v in trial.items() if k != "plan"
            }
        else:
            assert_close(other[key], trial, counts)
    # Alike in every plan: the pure-SGD trials (alone, lowered, one thread); with the cores
    # undivided, also the wide trials (alone, autograd, every core).
    assert alike == {"--population": 4, "--workers": 2}[options[0]]
