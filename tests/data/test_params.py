"""The one table of ``[data]`` keys (trainlab.data.params), read by both of its users: the study
parser, which resolves a study's ``[data]`` into every trial's spec, and ``prepare`` (with the
split parser), which is given such a resolved table.

Each check is pinned on both readers at once: the same key path and the same message, written
out here by hand, and, where the two readers once disagreed, the stricter rule in both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import example_trials

from trainlab import spec
from trainlab.data import params, prepare
from trainlab.data.splits import parse_split
from trainlab.errors import SpecError
from trainlab.registry import param

ROOT = Path(__file__).resolve().parents[2]
MODEL = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
REGRESSION = {"layers": [{"type": "Dense", "units": 1}]}
SPLIT = {"kind": "first", "validation": 5, "seed": 0}


def study_error(data: dict[str, Any]) -> SpecError:
    """The SpecError the study parser gives for a study with this ``[data]``."""
    with pytest.raises(SpecError) as info:
        spec.from_dict({"data": data, "model": MODEL, "train": {"epochs": 1}})
    return info.value


def prepare_error(data: dict[str, Any]) -> SpecError:
    """The SpecError ``prepare`` gives for this ``[data]`` table, before it loads anything."""
    with pytest.raises(SpecError) as info:
        prepare(data)
    return info.value


def resolved(data: dict[str, Any], model: dict[str, Any] = MODEL) -> dict[str, Any]:
    """The study parser's resolved ``[data]`` of a one-variant study."""
    study = spec.from_dict({"data": data, "model": model, "train": {"epochs": 1}})
    return study.variants[0].spec["data"]


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"shuffle": True}, "data.shuffle", "unknown key 'shuffle'"),
        ({"name": "mnits"}, "data.name", "unknown data set 'mnits'"),
        ({"name": 3}, "data.name", "expected a string, got 3"),
        ({"train_limit": 0}, "data.train_limit", "must be > 0, got 0"),
        ({"val_limit": 2.5}, "data.val_limit", "expected an integer or nothing, got 2.5"),
        ({"test_limit": True}, "data.test_limit", "expected an integer or nothing, got True"),
        ({"test_fraction": 1.5}, "data.test_fraction", "must be in (0, 1), got 1.5"),
        ({"test_fraction": "x"}, "data.test_fraction", "expected a number, got 'x'"),
        ({"split": "random"}, "data.split", "expected a table, got 'random'"),
        ({"split": {**SPLIT, "validation": 0}}, "data.split.validation", "must be > 0, got 0"),
        ({"split": {**SPLIT, "validation": -0.5}}, "data.split.validation", "must be > 0, got -0.5"),
        (
            {"split": {**SPLIT, "validation": 1.0}},
            "data.split.validation",
            "a validation fraction must be in (0, 1), got 1.0",
        ),
        (
            {"split": {**SPLIT, "validation": True}},
            "data.split.validation",
            "expected an integer or a number, got True",
        ),
        ({"split": {**SPLIT, "seed": 1.5}}, "data.split.seed", "expected an integer, got 1.5"),
        ({"split": {**SPLIT, "sead": 1}}, "data.split.sead", "unknown key 'sead'"),
        ({"split": {**SPLIT, "kind": "stratify"}}, "data.split.kind", "unknown split kind 'stratify'"),
        (
            {"split": {"kind": "kfold", "folds": 3, "fold": 3}},
            "data.split.fold",
            "fold 3 does not exist: folds are 0..2",
        ),
        ({"split": {"kind": "kfold", "folds": 1, "fold": 0}}, "data.split.folds", "must be in 2..100, got 1"),
        ({"split": {"kind": "kfold", "fold": -1}}, "data.split.fold", "must be >= 0, got -1"),
        (
            {"split": {"kind": "kfold", "fold": 0, "validation": 0.1}},
            "data.split.validation",
            "unknown key 'validation'",
        ),
    ],
)
def test_both_readers_refuse_a_table_at_the_same_key_with_the_same_words(
    change: dict[str, Any], path: str, reason: str
) -> None:
    data = {"name": "mnist", "split": SPLIT, **change}
    for error in (study_error(data), prepare_error(data)):
        assert (error.path, error.reason) == (path, reason)


def test_an_unknown_split_kind_names_the_kinds_and_the_nearest_in_both() -> None:
    data = {"name": "mnist", "split": {**SPLIT, "kind": "stratify"}}
    for error in (study_error(data), prepare_error(data)):
        assert error.allowed == ["first", "kfold", "random", "stratified"]
        assert "did you mean 'stratified'?" in str(error)


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        # prepare took a count of test examples; the study, a fraction in (0, 1) only.
        ({"name": "california_housing", "test_fraction": 5}, "data.test_fraction", "must be in (0, 1), got 5.0"),
        # the study dropped a path given to a named data set; prepare refused it.
        (
            {"path": "mnist.npz"},
            "data.path",
            'path applies only to name = "npz", "csv", "parquet" or "images", not to mnist',
        ),
        # prepare took any integer seed and any number of folds >= 2; the study, seed >= 0 and 2..100 folds.
        ({"split": {**SPLIT, "seed": -1}}, "data.split.seed", "must be >= 0, got -1"),
        ({"split": {"kind": "kfold", "folds": 101, "fold": 0}}, "data.split.folds", "must be in 2..100, got 101"),
    ],
)
def test_where_the_readers_once_disagreed_both_hold_the_stricter_rule(
    change: dict[str, Any], path: str, reason: str
) -> None:
    data = {"name": "mnist", "split": SPLIT, **change}
    for error in (study_error(data), prepare_error(data)):
        assert (error.path, error.reason) == (path, reason)


def test_an_npz_data_set_needs_its_path_in_both() -> None:
    data = {"name": "npz", "split": SPLIT}
    for error in (study_error(data), prepare_error(data)):
        assert error.path == "data.path" and "an npz data set needs 'path'" in error.reason


def test_the_study_fills_the_defaults_a_resolved_table_states() -> None:
    """Written out by hand from docs/STUDY-FORMAT.md's [data] table."""
    assert resolved({"name": "mnist"}) == {
        "name": "mnist",
        "path": None,
        "train_limit": None,
        "test_limit": None,
        "val_limit": None,
        "split": {"kind": "first", "validation": 0.1, "seed": 0},
    }
    housing = resolved({"name": "california_housing", "split": {"kind": "kfold"}}, REGRESSION)
    assert housing["test_fraction"] == 0.2
    assert housing["split"] == {"kind": "kfold", "folds": 5, "fold": None, "seed": 0}


def test_the_study_sets_test_fraction_aside_for_a_data_set_with_its_own_test_split() -> None:
    assert "test_fraction" not in resolved({"name": "mnist", "test_fraction": 0.5})
    assert resolved({"name": "california_housing", "test_fraction": 0.5}, REGRESSION)["test_fraction"] == 0.5


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"name": "mnist"}, "data.split"),
        ({"name": "mnist", "split": {"validation": 0.2}}, "data.split.kind"),
        ({"name": "mnist", "split": {"kind": "random"}}, "data.split.validation"),
        ({"name": "mnist", "split": {"kind": "kfold", "folds": 3}}, "data.split.fold"),
    ],
)
def test_prepare_refuses_what_a_resolved_table_always_states(data: dict[str, Any], path: str) -> None:
    """The study leaves these to their defaults (it resolves them); a resolved table states them."""
    resolved(data)  # a study takes it
    assert prepare_error(data).path == path
    assert "is required" in prepare_error(data).reason


def test_every_resolved_data_table_of_the_example_studies_passes_prepares_check_unchanged() -> None:
    """What the study resolves, prepare reads as is: the check keeps every value, and the split
    parser gives back the very split the spec holds."""
    trials = example_trials()
    assert len(trials) > 100
    for trial in trials:
        data = trial.spec["data"]
        checked = params.check_resolved(data)
        assert {k: checked[k] for k in data} == data
        assert parse_split(data["split"]).as_dict() == data["split"]


def test_one_table_drives_both_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to the table is a change to both: a split seed that must now be 7."""
    monkeypatch.setitem(params.SPLIT, "seed", param(0, int, check=lambda v: None if v == 7 else "must be 7"))
    data = {"name": "mnist", "split": SPLIT}
    for error in (study_error(data), prepare_error(data)):
        assert (error.path, error.reason) == ("data.split.seed", "must be 7, got 0")
    assert resolved({"name": "mnist", "split": {**SPLIT, "seed": 7}})["split"]["seed"] == 7


def test_the_default_test_fraction_is_the_one_prepare_holds_out(tmp_path: Path) -> None:
    """An npz without x_test: the study resolves test_fraction = 0.2, and prepare holds out
    0.2 of 50 = 10 examples (counted by hand), with or without the key stated."""
    path = tmp_path / "no_test.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((50, 4)).astype(np.float32), y_train=rng.random(50).astype(np.float32))
    data = resolved({"name": "npz", "path": str(path), "split": {"kind": "random", "validation": 10}}, REGRESSION)
    assert data["test_fraction"] == 0.2
    for table in (data, {k: v for k, v in data.items() if k != "test_fraction"}):
        prepared = prepare(table)
        assert prepared.split["test"]["fraction"] == 0.2
        assert len(prepared.x_test) == math.floor(0.2 * 50 + 0.5) == 10
        assert (len(prepared.x_train), len(prepared.x_val)) == (30, 10)
