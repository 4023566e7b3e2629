"""The Python API (``import trainlab as tl``) on the tiny study: loading, checking, running,
and the results as data, held against the command line (the same study run by ``trainlab``),
against the report's JSON and against sums done here."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import tiny_study_tables, with_tiny_npz, write_study
from helpers import ROOT

import trainlab as tl
from trainlab.api.run import RunOptions
from trainlab.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the tiny npz and the tiny study file ``tiny.toml`` (four epochs)."""
    path = with_tiny_npz(tmp_path_factory.mktemp("api"))
    write_study(path / "tiny.toml", tiny_study_tables(epochs=4))
    return path


@pytest.fixture(scope="module")
def result(folder: Path) -> tl.Result:
    """The tiny study run once through the API into ``api.db``, its progress kept in ``progress.txt``."""
    stream = io.StringIO()
    out = tl.Study.load(folder / "tiny.toml").run(
        store=folder / "api.db", workers=1, population=2, progress="lines", stream=stream
    )
    (folder / "progress.txt").write_text(stream.getvalue())
    return out


def trainlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(cwd / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc


TIMING = re.compile(r"seconds")
"""Report keys that hold measured time: the only ones two runs of one study may differ in."""


def untimed(value: Any) -> Any:
    """``value`` without the keys that hold measured time."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


# --- the command line and the API give the same results ----------------------------------------


def test_the_cli_and_the_api_give_identical_reports(folder: Path, result: tl.Result) -> None:
    # The same file, named as the API was given it: the report records the study's source as given.
    trainlab(
        "run",
        str(folder / "tiny.toml"),
        "--store",
        "cli.db",
        "--workers",
        "1",
        "--population",
        "2",
        "--quiet",
        cwd=folder,
    )
    cli = json.loads(trainlab("report", "tiny", "--store", "cli.db", "--format", "json", cwd=folder).stdout)
    api = json.loads(result.render("json"))
    assert untimed(api) == untimed(cli)
    assert api["variants"][0]["trials"][0]["seconds"] is not None  # the timing left out is there
    assert [v["label"] for v in api["variants"]] == ["sgd", "adam"]
    assert api["trials"] == {"total": 4, "status": {"done": 4}, "reused": 0}


def test_check_is_what_trainlab_check_prints(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check = tl.Study.load(folder / "tiny.toml").check()
    assert main(["check", str(folder / "tiny.toml")]) == 0
    assert str(check) + "\n" == capsys.readouterr().out
    assert check.lines[0] == "study tiny: 2 variants x 2 seeds = 4 trials"
    trials = check.trials()
    assert list(trials["variant"]) == ["sgd", "sgd", "adam", "adam"] and list(trials["seed"]) == [0, 1, 0, 1]


def test_status_and_studies_are_one_table(folder: Path, result: tl.Result, capsys: pytest.CaptureFixture[str]) -> None:
    studies = tl.open_store(folder / "api.db").studies()
    assert main(["status", "--store", str(folder / "api.db")]) == 0
    printed = [line.split(maxsplit=8) for line in capsys.readouterr().out.splitlines()]
    assert printed[0][:8] == list(studies.columns)[:8]
    assert [str(x) for x in studies.iloc[0]] == printed[1]
    assert studies.iloc[0]["done"] == 4 and studies.iloc[0]["plan"] == "4 x population of 2, eager, 1 thread"


# --- results as data -----------------------------------------------------------------------------


def test_table_rows_are_the_reports_statistics(result: tl.Result) -> None:
    table = result.table().set_index("variant")
    trials = result.trials()
    for label in ("sgd", "adam"):
        values = list(trials[trials["variant"] == label]["val_accuracy"])
        mean = sum(values) / 2
        std = math.sqrt(sum((v - mean) ** 2 for v in values))  # sample standard deviation of two values
        assert table.loc[label, "val_accuracy_mean"] == pytest.approx(mean, abs=1e-12)
        assert table.loc[label, "val_accuracy_std"] == pytest.approx(std, abs=1e-12)
        assert table.loc[label, "n"] == 2 and table.loc[label, "status"] == {"done": 2}
    chosen = table[table["chosen"]].index
    assert len(chosen) == 1
    others = table.drop(index=chosen)
    assert others["test_accuracy_mean"].isna().all()  # withheld, as in the report
    assert not table.loc[chosen[0], ["test_accuracy_mean"]].isna().any()
    assert not result.table(all_test=True)["test_accuracy_mean"].isna().any()


def test_text_table_holds_the_cells_the_terminal_shows(result: tl.Result) -> None:
    text = result.table(text=True)
    numbers = result.table()
    assert list(text["variant"]) == ["sgd", "adam"]
    for (_, cells), (_, row) in zip(text.iterrows(), numbers.iterrows()):
        assert cells["val accuracy"] == f"{row['val_accuracy_mean']:.4f} ± {row['val_accuracy_std']:.4f}"
        assert cells["val accuracy"] in result.render("table")


def test_epochs_are_long_and_agree_with_each_trials_result(result: tl.Result) -> None:
    epochs = result.epochs()
    trials = result.trials()
    assert list(epochs.columns) == ["variant", "seed", "hash", "epoch", "metric", "value"]
    assert sorted(set(epochs["epoch"])) == [1, 2, 3, 4]
    for _, trial in trials.iterrows():
        mine = epochs[epochs["hash"] == trial["hash"]]
        at_best = mine[(mine["epoch"] == trial["best_epoch"]) & (mine["metric"] == "val_accuracy")]
        assert list(at_best["value"]) == [trial["val_accuracy"]]
        assert len(mine[mine["metric"] == "loss"]) == trial["epochs"] == 4


def test_figures_and_the_page(result: tl.Result, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    figure = result.plot("curves")
    assert isinstance(figure, Figure) and figure.axes
    with pytest.raises(tl.TrainlabError, match="figure 'scatter' of study tiny: not drawn: predicted vs true"):
        result.plot("scatter")
    with pytest.raises(tl.TrainlabError, match="unknown figure 'pie'"):
        result.plot("pie")
    page = result.html(tmp_path, data=False)
    assert page == tmp_path / "tiny.html" and "<table" in page.read_text()


def test_a_run_again_trains_nothing_and_shows_progress_only_on_request(
    folder: Path, result: tl.Result, capsys: pytest.CaptureFixture[str]
) -> None:
    first = (folder / "progress.txt").read_text()
    assert "trial 1-2/4: sgd seed 0, adam seed 0 (population of 2, eager, 1 thread)" in first
    assert "  adam seed 1  epoch 4/4" in first
    assert result.outcome is not None and result.outcome.ran == {"done": 4}
    stream = io.StringIO()
    again = tl.Study.load(folder / "tiny.toml").run(store=folder / "api.db", workers=1, progress=False, stream=stream)
    assert again.outcome is not None and again.outcome.ran == {} and again.outcome.finished_before == 4
    assert "epoch" not in stream.getvalue()
    assert capsys.readouterr().out == ""  # the API prints nothing on standard output


def test_open_store_names_what_is_missing(folder: Path, result: tl.Result) -> None:
    with pytest.raises(tl.TrainlabError, match="no store at"):
        tl.open_store(folder / "none.db")
    assert not (folder / "none.db").exists()
    store = tl.open_store(folder / "api.db")
    with pytest.raises(tl.TrainlabError, match=r"no study named 'nope' in .*api.db \(studies: tiny\)"):
        store.result("nope")
    assert store.result(str(folder / "tiny.toml")).name == "tiny"  # a study file names its study
    assert store.result("tiny").report() == result.report()


# --- studies from files and from tables ------------------------------------------------------------


def test_a_dict_study_is_the_file_study(folder: Path) -> None:
    from_file = tl.Study.load(folder / "tiny.toml")
    from_dict = tl.Study.from_dict(tiny_study_tables(epochs=4), folder=folder)
    assert [t.hash for t in from_dict.spec.trials()] == [t.hash for t in from_file.spec.trials()]
    assert from_dict.source is None and from_file.source == str(folder / "tiny.toml")
    named = tl.Study.from_dict(
        {k: v for k, v in tiny_study_tables().items() if k != "study"}, name="given", folder=folder
    )
    assert named.name == "given"


def test_dict_study_errors_name_the_study_and_the_key(folder: Path) -> None:
    bad = tiny_study_tables(train={"epochz": 3})
    with pytest.raises(tl.SpecError) as caught:
        tl.Study.from_dict(bad, folder=folder)
    assert str(caught.value).startswith("study 'tiny' (a dict): train.epochz: unknown key 'epochz'")
    assert "did you mean 'epochs'?" in str(caught.value)
    nameless = {k: v for k, v in tiny_study_tables().items() if k != "study"}
    with pytest.raises(tl.SpecError, match=r"study \(a dict\): study.name: a study given as a dict needs a name"):
        tl.Study.from_dict(nameless, folder=folder)


def test_overrides_set_key_paths_and_their_errors_name_the_file(folder: Path) -> None:
    study = tl.Study.load(folder / "tiny.toml", overrides={"train.epochs": 1, "data.train_limit": 50})
    spec = study.spec.variants[0].spec
    assert spec["train"]["epochs"] == 1 and spec["data"]["train_limit"] == 50
    assert tl.Study.load(folder / "tiny.toml").spec.variants[0].spec["train"]["epochs"] == 4
    with pytest.raises(tl.SpecError, match=re.escape(f"{folder / 'tiny.toml'}: train.epoks: unknown key 'epoks'")):
        tl.Study.load(folder / "tiny.toml", overrides={"train.epoks": 1})


# --- options refused before anything is written -------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers= takes a positive number or 'auto', got 0"),
        ({"population": 0}, "population= takes a number of trials >= 1"),
        ({"checkpoint_every": -1}, "checkpoint_every= takes seconds >= 0, got -1"),
        ({"address": "auto"}, "address= is an option of executor='ray'"),
        ({"executor": "slurm"}, "executor= 'slurm' not allowed; allowed: local, ray"),
        ({"progress": "loud"}, "progress: 'loud' not allowed"),
    ],
)
def test_bad_run_options_are_refused_before_the_store_is_made(
    folder: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(tl.TrainlabError, match=re.escape(message)):
        tl.Study.load(folder / "tiny.toml").run(store=folder / "refused.db", **options)
    assert not (folder / "refused.db").exists()


def test_the_command_line_spells_options_as_flags() -> None:
    def flag(name: str, value: Any = None) -> str:
        return f"--{name.replace('_', '-')}" + ("" if value is None else f" {value}")

    with pytest.raises(tl.TrainlabError, match="--max-retries is an option of --executor ray"):
        RunOptions(max_retries=2).check(flag)


# --- the package's face ----------------------------------------------------------------------------


def test_import_trainlab_loads_no_heavy_package() -> None:
    """``import trainlab`` stays light: the API's names are imported when first used."""
    code = (
        "import sys, trainlab; print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'optuna', 'trainlab.api.study')"
        " if m in sys.modules)); print(trainlab.Study.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.split("\n")[:2] == ["[]", "trainlab.api.study"]


def test_every_exported_name_is_there_and_documented() -> None:
    doc = (ROOT / "docs" / "PYTHON.md").read_text()
    for name in tl.__all__:
        assert getattr(tl, name) is not None
        if name != "__version__":
            assert f"`{name}" in doc or f"tl.{name}" in doc, name


# --- docs/PYTHON.md runs as written ----------------------------------------------------------------


def python_blocks(text: str) -> Iterator[str]:
    yield from re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_python_doc_runs_as_written(tmp_path: Path) -> None:
    """Every ``python`` block of docs/PYTHON.md, in order, in one fresh interpreter in an empty
    folder, as a Jupyter kernel runs cells: each compiled from a file of its own (so that
    ``inspect.getsource`` reads the functions it defines), all in one ``__main__`` namespace."""
    blocks = list(python_blocks((ROOT / "docs" / "PYTHON.md").read_text()))
    code = "\n".join(blocks)
    assert "tl.Study.from_dict" in code and "result.table()" in code and "model=build" in code
    for i, block in enumerate(blocks):
        (tmp_path / f"cell_{i}.py").write_text(block)
    kernel = (
        "import sys; sys.path.insert(0, '')\n"
        "namespace = {'__name__': '__main__'}\n"
        f"for i in range({len(blocks)}):\n"
        "    name = f'cell_{i}.py'\n"
        "    exec(compile(open(name).read(), name, 'exec'), namespace)\n"
    )
    env = {**os.environ, "TRAINLAB_OFFLINE": "1", "TRAINLAB_DATA": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("TRAINLAB_STORE", None)
    out = subprocess.run(
        [sys.executable, "-c", kernel], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "runs.db").exists() and (tmp_path / "reports" / "bands.html").exists()


def test_a_tuned_study_runs_from_python_and_its_table_has_the_tuned_values(folder: Path, tmp_path: Path) -> None:
    tables = tiny_study_tables(epochs=2, seeds=(0,))
    tables["study"] = {**tables.get("study", {}), "name": "tuned-api"}
    tables["tune"] = {"trials": 3, "space": {"optimizer.learning_rate": {"log_uniform": [1e-3, 0.3]}}}
    study = tl.Study.from_dict(tables, folder=folder)
    result = study.run(store=tmp_path / "t.db", progress=False)
    report = result.report()
    block = report["stages"][0]["tune"]
    assert [v["label"] for v in block["variants"]] == [v["label"] for v in report["variants"]]
    table = result.table()
    assert list(table["variant"]) == [v["label"] for v in block["variants"]]
    for (_, row), tuned in zip(table.iterrows(), block["variants"], strict=True):
        assert row["tuned"] == tuned["values"] and 1e-3 <= tuned["values"]["optimizer.learning_rate"] <= 0.3
        assert row["study_median"] == pytest.approx(tuned["repeat_bests"][0])
