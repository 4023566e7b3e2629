"""examples/quickstart.ipynb executed by a real Jupyter kernel (nbclient, ipykernel's ``python3``):
its outputs hold the results table (the DataFrame's HTML) and an inline PNG figure.

The fast test runs the notebook's own cells on the tiny study: a cell after the notebook's
``parameters`` cell sets the study, its overrides and the store, as papermill sets parameters.
The slow test runs it as written, on the quickstart study (MNIST)."""

from __future__ import annotations

import ast
import base64
import os
import re
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study
from helpers import ROOT

import trainlab as tl

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def execute(folder: Path, parameters: str | None) -> list[Any]:
    """Run the notebook in ``folder`` (its working directory) with ``parameters`` set after its
    parameters cell; returns every output of its code cells."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if parameters is not None:
        at = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
        notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(parameters))
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel imports this checkout's trainlab, and downloads nothing."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")


def check_outputs(outputs: list[Any], store: Path, study: str) -> None:
    """The table as HTML holding the store's numbers, an inline PNG, and progress lines on stderr."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (source,) = [c.source for c in notebook.cells if c.source.startswith("table = result.table()")]
    shown = ast.literal_eval(re.search(r"^table\[(\[.*\])\]$", source, flags=re.M).group(1))
    expected = tl.open_store(store).result(study).table()[shown]._repr_html_()  # read here, from the store
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert expected in html and "val_accuracy_mean" in expected
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert pngs and base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")
    stderr = "".join(o["text"] for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "epoch 2/2" in stderr  # progress as lines: what an executed notebook keeps


def test_the_notebook_names_the_quickstart_study() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert 'STUDY = "../studies/quickstart.toml"' in cell.source
    assert (NOTEBOOK.parent / "../studies/quickstart.toml").is_file()
    assert all(c.get("outputs", []) == [] for c in notebook.cells if c.cell_type == "code")  # committed clean


def test_the_quickstart_notebook_shows_the_table_and_a_figure(tmp_path: Path, kernel_env: None) -> None:
    with_tiny_npz(tmp_path)
    write_study(tmp_path / "tiny.toml", tiny_study_tables(epochs=2))
    outputs = execute(tmp_path, 'STUDY = "tiny.toml"\nOVERRIDES = {}\nSTORE = "notebook.db"')
    check_outputs(outputs, tmp_path / "notebook.db", "tiny")


@pytest.mark.slow
def test_the_quickstart_notebook_as_written(tmp_path: Path, kernel_env: None) -> None:
    from trainlab import data

    if not any(row.name == "mnist" and row.where != "missing" for row in data.available()):
        pytest.skip("MNIST is not on this machine (`trainlab data list`)")
    (tmp_path / "examples").mkdir()
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quickstart.toml").write_bytes((ROOT / "studies" / "quickstart.toml").read_bytes())
    outputs = execute(tmp_path / "examples", None)
    check_outputs(outputs, tmp_path / "examples" / "quickstart.db", "quickstart")
