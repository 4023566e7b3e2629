"""Notebooks executed by a real Jupyter kernel (nbclient, ipykernel's ``python3``), as CI runs
the examples: the notebook's own cells, with parameters set after its ``parameters`` cell."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import nbclient
import nbformat


def execute(notebook_path: Path, folder: Path, parameters: str | None) -> list[Any]:
    """Run the notebook in ``folder`` (its working directory) with ``parameters`` set after its
    parameters cell, as papermill sets them; returns every output of its code cells."""
    notebook = nbformat.read(notebook_path, as_version=4)
    if parameters is not None:
        at = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
        notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(parameters))
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def html_outputs(outputs: list[Any]) -> list[str]:
    """The HTML the outputs show (a DataFrame's table)."""
    return [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]


def png_outputs(outputs: list[Any]) -> list[bytes]:
    """The inline PNG images of the outputs (a matplotlib Figure), decoded."""
    return [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]


def stderr_text(outputs: list[Any]) -> str:
    """What the cells wrote to standard error (progress)."""
    return "".join(o["text"] for o in outputs if o.output_type == "stream" and o.name == "stderr")


def committed_clean(notebook_path: Path) -> bool:
    """Whether the notebook is committed without outputs."""
    notebook = nbformat.read(notebook_path, as_version=4)
    return all(c.get("outputs", []) == [] for c in notebook.cells if c.cell_type == "code")


PNG = b"\x89PNG\r\n\x1a\n"
"""The first bytes of every PNG file."""
