"""The slow tests CI runs on purpose: real MNIST through the whole CLI, real data sets verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from trainlab import data

pytestmark = pytest.mark.slow

ONE_EPOCH = """
[study]
name = "mnist-adam"
seeds = [0]

[data]
name = "mnist"
split = { kind = "first", validation = 5000 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 128, activation = "relu" },
  { type = "Dense", units = 64, activation = "relu" },
  { type = "Dense", units = 10, activation = "softmax" },
]

[optimizer]
name = "adam"

[train]
epochs = 1
batch_size = 128
"""


def test_real_mnist_one_adam_epoch_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(ONE_EPOCH)
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "run", "s.toml", "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout[run.stdout.index("{") :])
    adam = report["variants"][0]
    assert adam["n"] == 1
    # one epoch of Adam at batch 128 on the 55000/5000 split of report A: Keras gets about 0.96
    assert adam["val_accuracy"]["mean"] > 0.95
    assert adam["test_accuracy"]["mean"] > 0.95
    split = adam["trials"][0]
    assert split["status"] == "done"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "california_housing"])
def test_packaged_data_sets_verify(name: str) -> None:
    result = data.verify(name)
    assert result.ok, result.message


def test_quickstart_study_is_valid_and_its_data_is_here() -> None:
    from trainlab import spec

    study = spec.load(ROOT / "studies" / "quickstart.toml")
    prepared = data.prepare(study.variants[0].spec["data"])
    assert prepared.x_train.shape == (55000, 1, 28, 28)
    assert prepared.x_val.shape == (5000, 1, 28, 28)
    assert prepared.x_test.shape == (10000, 1, 28, 28)
    assert 0.0 <= float(prepared.x_train.min()) and float(prepared.x_train.max()) <= 1.0


def _table(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a table drawn by Rich (box characters)."""
    header = next(line for line in lines if line.startswith("┃"))
    rows = [line for line in lines if line.startswith("│")]

    def cells(line: str, bar: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip(bar).split(bar)]

    return cells(header, "┃"), [cells(row, "│") for row in rows]


def test_the_readme_quickstart_table_is_what_make_run_prints(tmp_path: Path) -> None:
    """`make run` trains studies/quickstart.toml; the README shows some columns of its table. Every
    shown number is reproduced exactly, whatever the load (docs/REPRODUCIBILITY.md)."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("```\n┏") + 4 : readme.index("```", readme.index("```\n┏") + 4)]
    shown_header, shown_rows = _table(block.splitlines())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab.cli",
            "run",
            str(ROOT / "studies" / "quickstart.toml"),
            "--store",
            str(tmp_path / "q.db"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert run.returncode == 0, run.stderr
    header, rows = _table(run.stdout.splitlines())
    by_variant = {row[0]: dict(zip(header, row)) for row in rows}
    assert [row[0] for row in shown_rows] == list(by_variant)
    for row in shown_rows:
        printed = by_variant[row[0]]
        assert dict(zip(shown_header, row)) == {name: printed[name] for name in shown_header}
    for line in block.splitlines():
        if not line.startswith(("┏", "┃", "┡", "│", "└")):
            assert line in run.stdout  # the notes under the table, too
