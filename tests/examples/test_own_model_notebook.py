"""examples/own_model.ipynb executed by a real Jupyter kernel: report C's optimizer exercise with
the notebook's own torch model (a function of a cell) on the CSV table beside it. Its outputs
hold the CSV's first rows and the results table (DataFrames as HTML, the numbers those read here
from the file and the store) and an inline PNG figure. The test trains one seed for two epochs
(set after the notebook's ``parameters`` cell)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
from helpers import ROOT
from notebooks import PNG, committed_clean, execute, html_outputs, png_outputs, stderr_text

import trainlab as tl

NOTEBOOK = ROOT / "examples" / "own_model.ipynb"
CSV = ROOT / "examples" / "fashion_small.csv"
SHOWN = ["variant", "n", "val_accuracy_mean", "val_accuracy_std", "vs_best", "val_loss_mean", "test_accuracy_mean"]
"""The columns of the results table the notebook shows."""


def test_the_notebook_names_its_table_and_is_committed_clean() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert 'CSV = "fashion_small.csv"' in cell.source and CSV.is_file()
    assert CSV.stat().st_size < 1_000_000
    table = pd.read_csv(CSV)
    assert table.shape == (3000, 50) and table["label"].nunique() == 10
    assert committed_clean(NOTEBOOK)


def test_the_own_model_notebook_shows_the_tables_and_a_figure(tmp_path: Path, kernel_env: None) -> None:
    shutil.copy(CSV, tmp_path / CSV.name)
    outputs = execute(NOTEBOOK, tmp_path, 'SEEDS = [0]\nEPOCHS = 2\nSTORE = "notebook.db"')
    html = html_outputs(outputs)
    (shown,) = [h for h in html if "<th>label</th>" in h]  # the CSV's first rows, as the notebook shows them
    body = shown.split("<tbody>")[1]
    labels = [re.findall(r"<td>(.*?)</td>", row)[-1] for row in body.split("</tr>") if "<td>" in row]
    assert labels == list(pd.read_csv(CSV)["label"][:5])
    result = tl.open_store(tmp_path / "notebook.db").result("own-model")  # read here, from the store
    expected = result.table()[SHOWN]
    assert expected._repr_html_() in html
    assert sorted(expected["variant"]) == ["adagrad", "adam", "rmsprop", "sgd"]
    trials = result.trials()
    assert len(trials) == 4 and set(trials["status"]) == {"done"}
    pngs = png_outputs(outputs)
    assert pngs and pngs[0].startswith(PNG)
    assert "epoch 2/2" in stderr_text(outputs)
