"""No file is written outside what the user named: study names, variant labels and names read
from a store (which may come from elsewhere) never steer a report, plot or export path.

Each test works three folders deep inside its temporary folder and snapshots the whole
temporary folder before and after, so that a ``../../x`` escape would show up as a new file.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import make_npz

from trainlab import spec
from trainlab.cli import main
from trainlab.data.cache import DataCache
from trainlab.errors import SpecError
from trainlab.executors import run_local
from trainlab.report.plots import safe_stem
from trainlab.store import Store

HOSTILE_LABELS = """
[study]
name = "a..b"
seeds = [0]

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 0.25 }}

[model]
layers = [{{ type = "Flatten" }}, {{ type = "Dense", units = 3, activation = "softmax" }}]

[train]
epochs = 2
batch_size = 16

[[compare]]
label = "../../x"

[[compare]]
label = "/tmp/abs"
optimizer = "adam"

[[compare]]
label = "..\\\\up {{name}}"
optimizer = "rmsprop"
"""


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "a" / "b" / "c"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    make_npz(folder / "tiny.npz")
    (folder / "s.toml").write_text(HOSTILE_LABELS.format())
    with Store.open(folder / "s.db") as store:
        run_local(spec.load(folder / "s.toml"), store, population=1, cache=DataCache())
    return folder


def assert_inside(before: set[Path], after: set[Path], *allowed: Path) -> None:
    new = after - before
    outside = [p for p in new if not any(p.is_relative_to(a) for a in allowed)]
    assert not outside, f"written outside the named places: {sorted(map(str, outside))}"


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "..", ".hidden", "a/b\\c", ""])
def test_safe_stem_keeps_a_name_in_its_folder(name: str, tmp_path: Path) -> None:
    stem = safe_stem(name)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert (tmp_path / f"{stem}.png").resolve().parent == tmp_path.resolve()


def test_labels_like_paths_never_steer_where_files_go(work: Path) -> None:
    root = work.parents[2]
    before = files(root)
    assert cli("report", "s.toml", "--store", "s.db", "--format", "html", "--out", "html")[0] == 0
    assert cli("report", "a..b", "--store", "s.db", "--format", "markdown", "--out", "r.md")[0] == 0
    code, text = cli("plot", "a..b", "curves", "final", "--store", "s.db", "--out", "figs", "--formats", "svg")
    assert code == 0, text
    for label in ("../../x", "/tmp/abs", "..\\up {name}"):
        code, text = cli("export", "a..b", "--store", "s.db", "--trial", label, "--out", "model", "--torch")
        assert code == 0, text
    assert cli("data", "show", "s.toml", "--out", "data", "--formats", "svg")[0] == 0
    after = files(root)
    assert_inside(before, after, work / "html", work / "r.md", work / "figs", work / "model", work / "data")
    assert {p.name for p in (work / "html").iterdir()} == {"a..b.html"}
    assert {p.name for p in (work / "model").iterdir()} == {"model.json", "model.safetensors", "model.pt"}


def test_a_study_name_from_a_foreign_store_cannot_escape(work: Path) -> None:
    root = work.parents[2]
    names = ("../../escape", "/tmp/abs-escape")
    for i, name in enumerate(names):
        shutil.copyfile(work / "s.db", work / f"foreign{i}.db")
        with sqlite3.connect(work / f"foreign{i}.db") as db:
            db.execute("UPDATE studies SET name = ?", (name,))
    before = files(root)
    for i, name in enumerate(names):
        code, text = cli("report", name, "--store", f"foreign{i}.db", "--format", "html", "--out", "html")
        assert code == 0, text
        code, text = cli("plot", name, "curves", "--store", f"foreign{i}.db", "--out", "figs", "--formats", "svg")
        assert code == 0, text
    after = files(root)
    assert_inside(
        before,
        after,
        work / "html",
        work / "figs",
        *(work / f"foreign{i}.db-{x}" for i in (0, 1) for x in ("wal", "shm")),
    )
    assert {p.name for p in (work / "html").iterdir()} == {"_._.._escape.html", "_tmp_abs-escape.html"}
    assert {p.name for p in (work / "figs").iterdir()} == {"_._.._escape-curves.svg", "_tmp_abs-escape-curves.svg"}
    assert not Path("/tmp/abs-escape.html").exists()


@pytest.mark.parametrize("name", ["../../x", "/abs", "..", ".hidden", "a/b", "a\\b"])
def test_a_study_file_cannot_name_its_study_like_a_path(name: str) -> None:
    with pytest.raises(SpecError) as info:
        spec.parse(
            HOSTILE_LABELS.format().replace('name = "a..b"', f'name = "{name.replace(chr(92), chr(92) * 2)}"'),
            source="p.toml",
        )
    assert info.value.path == "study.name"
