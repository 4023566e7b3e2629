"""A study given in Python with its own model and data as functions (``model=build``,
``data=load``). A module's function gives the trials a study file naming it gives. A notebook's
(``__main__``) trains in the process that defined it, keeps its trials in a new kernel while
its source stays the same, makes new ones when it is edited, and its results are reported from
any process, while export, which needs its code, is refused elsewhere with the fix."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study
from helpers import FIXTURES, ROOT, run_as_cell
from test_api import untimed

import trainlab as tl
from trainlab import factory

BUILD = """def build(input_shape, outputs, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, outputs))
"""
MODEL_CELL = "from torch import nn\n\n\n" + BUILD


def tables(epochs: int = 2) -> dict[str, Any]:
    """The tiny study (SGD against Adam, two seeds) with the model's params alone: the function is given apart."""
    out = tiny_study_tables(epochs=epochs)
    out["model"] = {"params": {"width": 6}}
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return with_tiny_npz(tmp_path)


def test_a_notebook_model_trains_in_its_process_and_keeps_its_trials_in_a_new_kernel(folder: Path) -> None:
    build = run_as_cell(folder, MODEL_CELL)["build"]
    study = tl.Study.from_dict(tables(), model=build, folder=folder)
    assert "model: factory __main__:build width=6" in str(study.check())
    model = study.spec.trials()[0].spec["model"]
    sha = hashlib.sha256(BUILD.encode()).hexdigest()  # the function's source, as the cell holds it
    assert (model["factory"], model["params"], model["source_sha256"]) == ("__main__:build", {"width": 6}, sha)

    stream = io.StringIO()
    result = study.run(store=folder / "runs.db", progress="lines", stream=stream)
    assert result.outcome.ran == {"done": 4}
    assert "worker processes" not in stream.getvalue()  # workers="auto": this process alone
    assert result.plot("confusion").axes  # runs the chosen trial: build is known here
    first = set(result.trials()["hash"])

    again = run_as_cell(folder, MODEL_CELL, "new_kernel.py")["build"]  # the same cell, run in a new kernel
    kept = tl.Study.from_dict(tables(), model=again, folder=folder).run(store=folder / "runs.db", progress=False)
    assert kept.outcome.ran == {} and kept.outcome.finished_before == 4

    edited = run_as_cell(folder, MODEL_CELL.replace("nn.ReLU()", "nn.Tanh()"), "edited.py")["build"]
    study = tl.Study.from_dict(tables(), model=edited, folder=folder)
    new = study.run(store=folder / "runs.db", progress=False)
    assert new.outcome.ran == {"done": 4} and not first & set(new.trials()["hash"])


def test_a_model_entry_may_hold_the_function_itself(folder: Path) -> None:
    build = run_as_cell(folder, MODEL_CELL)["build"]
    given = tables()
    given["model"] = {"factory": build, "params": {"width": 6}}
    keyword = tl.Study.from_dict(tables(), model=build, folder=folder)
    assert [t.hash for t in tl.Study.from_dict(given, folder=folder).spec.trials()] == [
        t.hash for t in keyword.spec.trials()
    ]


def test_a_notebook_model_is_refused_worker_processes_before_the_store_is_touched(folder: Path) -> None:
    study = tl.Study.from_dict(tables(), model=run_as_cell(folder, MODEL_CELL)["build"], folder=folder)
    with pytest.raises(tl.TrainlabError) as info:
        study.run(store=folder / "never.db", workers=2, progress=False)
    assert str(info.value).startswith(
        "workers=2: study tiny trains __main__:build, defined in this notebook or script (__main__), which no other "
        "process can import, so it trains in this process (workers=1, or 'auto'); move the function into a .py file"
    )
    assert not (folder / "never.db").exists()


def test_a_module_function_gives_the_trials_of_the_study_file_naming_it(tmp_path: Path) -> None:
    for item in (FIXTURES / "byo").iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    file_tables = {
        "study": {"name": "own", "seeds": [0, 1]},
        "data": {"path": "table.csv", "target": "kind", "features": ["a", "b"], "split": {"kind": "random"}},
        "model": {"factory": "mypkg.models:build", "params": {"width": 8}},
        "train": {"epochs": 2, "batch_size": 4},
        "compare": [{"label": "sgd"}, {"label": "adam", "optimizer": "adam"}],
    }
    from_file = tl.Study.load(write_study(tmp_path / "own.toml", file_tables))
    build = factory.load("mypkg.models:build", str(tmp_path), "model.factory").function  # as `import mypkg.models`
    python_tables = {**file_tables, "model": {"params": {"width": 8}}}
    from_python = tl.Study.from_dict(python_tables, model=build, folder=tmp_path)
    assert [t.hash for t in from_python.spec.trials()] == [t.hash for t in from_file.spec.trials()]
    assert from_python.spec.trials()[0].spec["model"]["root"] == str(tmp_path.resolve())


def test_a_notebook_data_function_is_data_of_its_own(folder: Path) -> None:
    source = """import numpy as np


def load(n=120):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return {"x_train": x, "y_train": (x[:, 0] > 0).astype("int64")}
"""
    load = run_as_cell(folder, source)["load"]
    given = tiny_study_tables(epochs=1, seeds=[0])
    given["data"] = {"params": {"n": 80}, "split": {"kind": "random", "validation": 0.25}}
    given["model"] = {"layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]}
    study = tl.Study.from_dict(given, data=load, folder=folder)
    data = study.spec.trials()[0].spec["data"]
    assert data["factory"] == "__main__:load" and data["params"] == {"n": 80}
    assert data["source_sha256"] == hashlib.sha256(source.split("\n\n\n", 1)[1].encode()).hexdigest()
    result = study.run(store=folder / "data.db", progress=False)
    assert result.outcome.ran == {"done": 2} and len(result.table()) == 2


SCRIPT = """import json
import sys

import trainlab as tl
from torch import nn


def build(input_shape, outputs, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, outputs))


tables = json.loads(sys.argv[1])
result = tl.Study.from_dict(tables, model=build).run(store=sys.argv[2], progress=False)
json.dump(result.report(), open(sys.argv[3], "w"))
"""


def subprocess_env(folder: Path) -> dict[str, str]:
    return {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(folder / "cache"), "PYTHONPATH": str(ROOT)}


def test_a_script_factory_is_reported_from_any_process_and_exported_only_from_its_own(folder: Path) -> None:
    (folder / "script.py").write_text(SCRIPT)
    env = subprocess_env(folder)
    ran = subprocess.run(
        [sys.executable, "script.py", json.dumps(tables()), "runs.db", "report.json"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    def trainlab(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "trainlab.cli", *args, "--store", "runs.db"]
        return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)

    report = trainlab("report", "tiny", "--format", "json")
    assert report.returncode == 0, report.stderr
    assert untimed(json.loads(report.stdout)) == untimed(json.loads((folder / "report.json").read_text()))

    page = trainlab("report", "tiny", "--format", "html", "--out", "reports")
    assert page.returncode == 0, page.stderr
    assert (
        "No summary: __main__:build is a function defined in a notebook or a script"
        in (folder / "reports" / "tiny.html").read_text()
    )

    export = trainlab("export", "tiny", "--out", "model")
    assert export.returncode == 2 and not (folder / "model" / "model.safetensors").exists()
    assert "model.factory: __main__:build is a function defined in a notebook or a script" in export.stderr
    assert "move the function into a .py file" in export.stderr
