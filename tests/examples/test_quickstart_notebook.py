"""examples/quickstart.ipynb executed by a real Jupyter kernel (nbclient, ipykernel's ``python3``):
its outputs hold the results table (the DataFrame's HTML) and an inline PNG figure.

The fast test runs the notebook's own cells on the tiny study: a cell after the notebook's
``parameters`` cell sets the study, its overrides and the store, as papermill sets parameters.
The slow test runs it as written, on the quickstart study (MNIST)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study
from helpers import ROOT
from notebooks import PNG, committed_clean, execute, html_outputs, png_outputs, stderr_text

import trainlab as tl

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def check_outputs(outputs: list[Any], store: Path, study: str) -> None:
    """The table as HTML holding the store's numbers, an inline PNG, and progress lines on stderr."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (source,) = [c.source for c in notebook.cells if c.source.startswith("table = result.table()")]
    shown = ast.literal_eval(re.search(r"^table\[(\[.*\])\]$", source, flags=re.M).group(1))
    expected = tl.open_store(store).result(study).table()[shown]._repr_html_()  # read here, from the store
    assert expected in html_outputs(outputs) and "val_accuracy_mean" in expected
    pngs = png_outputs(outputs)
    assert pngs and pngs[0].startswith(PNG)
    assert "epoch 2/2" in stderr_text(outputs)  # progress as lines: what an executed notebook keeps


def test_the_notebook_names_the_quickstart_study() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert 'STUDY = "../studies/quickstart.toml"' in cell.source
    assert (NOTEBOOK.parent / "../studies/quickstart.toml").is_file()
    assert committed_clean(NOTEBOOK)


def test_the_quickstart_notebook_shows_the_table_and_a_figure(tmp_path: Path, kernel_env: None) -> None:
    with_tiny_npz(tmp_path)
    write_study(tmp_path / "tiny.toml", tiny_study_tables(epochs=2))
    outputs = execute(NOTEBOOK, tmp_path, 'STUDY = "tiny.toml"\nOVERRIDES = {}\nSTORE = "notebook.db"')
    check_outputs(outputs, tmp_path / "notebook.db", "tiny")


@pytest.mark.slow
def test_the_quickstart_notebook_as_written(tmp_path: Path, kernel_env: None) -> None:
    from trainlab import data

    if not any(row.name == "mnist" and row.where != "missing" for row in data.available()):
        pytest.skip("MNIST is not on this machine (`trainlab data list`)")
    (tmp_path / "examples").mkdir()
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quickstart.toml").write_bytes((ROOT / "studies" / "quickstart.toml").read_bytes())
    outputs = execute(NOTEBOOK, tmp_path / "examples", None)
    check_outputs(outputs, tmp_path / "examples" / "quickstart.db", "quickstart")
