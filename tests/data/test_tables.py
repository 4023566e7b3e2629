"""CSV and Parquet tables as data (``[data] path = "table.csv", target = "kind"``), and data
factories (``[data] factory = "mypkg.data:load"``): columns chosen by name, classes and targets
checked by hand, the same arrays from either file format, and a one-line error at the key for
what cannot be used."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import load_study
from helpers import FIXTURES

from trainlab.data import load_data, prepare
from trainlab.data.datasets import arrays_sha256
from trainlab.data.formats import Decoded
from trainlab.data.params import resolve_data
from trainlab.errors import SpecError

ROWS = [
    {"a": 1.0, "b": 10.0, "colour": "red", "kind": "up", "price": 2.5},
    {"a": 2.0, "b": 20.0, "colour": "blue", "kind": "down", "price": 3.5},
    {"a": 3.0, "b": 30.0, "colour": "red", "kind": "up", "price": 4.5},
    {"a": 4.0, "b": 40.0, "colour": "blue", "kind": "flat", "price": 5.5},
    {"a": 5.0, "b": 50.0, "colour": "red", "kind": "up", "price": 6.5},
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    frame = pd.DataFrame(ROWS)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    shutil.copytree(FIXTURES / "byo" / "mypkg", tmp_path / "mypkg")
    return tmp_path


def resolved(folder: Path, **data: Any) -> dict[str, Any]:
    table = {"split": {"kind": "first", "validation": 1}, **data}
    if "path" in table:
        table["path"] = str(folder / table["path"])
    return resolve_data({**table, **({"root": str(folder)} if "factory" in table else {})})


@pytest.mark.parametrize("file", ["t.csv", "t.parquet"])
def test_a_table_s_classes_are_its_sorted_target_values(folder: Path, file: str) -> None:
    data = resolved(folder, path=file, target="kind")
    # Features default to the other columns holding numbers; the task to classification (text).
    assert data["name"] == file.split(".")[1] and data["features"] == ["a", "b", "price"]
    assert data["task"] == "classification"
    raw = load_data(data)
    assert raw.info.class_names == ("down", "flat", "up")  # sorted
    assert raw.y_train.tolist() == [2, 0, 2, 1, 2]
    assert raw.x_train.tolist() == [[r["a"], r["b"], r["price"]] for r in ROWS]
    assert raw.info.feature_names == ("a", "b", "price") and raw.info.input_shape == (3,)
    decoded = Decoded(raw.x_train, raw.y_train, raw.x_test, raw.y_test)
    assert raw.sha256 == arrays_sha256(decoded)


def test_csv_and_parquet_give_the_same_arrays(folder: Path) -> None:
    one = load_data(resolved(folder, path="t.csv", target="kind", features=["b", "a"]))
    other = load_data(resolved(folder, path="t.parquet", target="kind", features=["b", "a"]))
    assert one.sha256 == other.sha256 and one.x_train[:, 0].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_a_float_target_is_regression_and_its_features_are_standardized_on_the_training_part(folder: Path) -> None:
    data = resolved(folder, path="t.csv", target="price", features=["a"], test_fraction=0.2)
    assert data["task"] == "regression"
    prepared = prepare(data)
    assert prepared.info.task == "regression" and prepared.info.num_classes == 0
    # Five rows: one test row (seeded), one validation row (the first of the rest), three train rows.
    assert prepared.split["sizes"] == {"train": 3, "validation": 1, "test": 1}
    train_a = prepared.x_train[:, 0]
    assert train_a.mean() == pytest.approx(0.0, abs=1e-6) and train_a.std() == pytest.approx(1.0, abs=1e-6)
    # Each row keeps its target beside its feature: price = a + 1.5.
    raw_a = train_a * prepared.split["standardize"]["std"][0] + prepared.split["standardize"]["mean"][0]
    assert prepared.y_train.tolist() == pytest.approx((raw_a + 1.5).tolist())
    assert prepared.split["data_sha256"] and prepared.split["path"] == str(folder / "t.csv")


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        (
            {"target": "kinds"},
            "data.target",
            "has no column 'kinds' to predict; its columns: a, b, colour, kind, price",
        ),
        ({"target": "kind", "features": ["a", "z"]}, "data.features", "has no column 'z'"),
        ({"target": "kind", "features": ["colour"]}, "data.features", "column 'colour' holds"),
        ({"target": "kind", "features": ["kind"]}, "data.features", "the target 'kind' cannot be a feature too"),
        ({}, "data.target", "is required: the column to predict"),
        ({"target": "kind", "task": "cluster"}, "data.task", "must be one of"),
        ({"target": "kind", "path": "missing.csv"}, "data.path", "missing.csv: no such file"),
        (
            {"name": "csv", "target": "kind", "factory": "mypkg.data:load"},
            "data.factory",
            "factory applies to factory data",
        ),
    ],
)
def test_a_table_that_cannot_be_used_is_an_error_at_its_key(
    folder: Path, data: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        resolved(folder, **{"path": "t.csv", **data})
    assert info.value.path == path and words in info.value.reason, str(info.value)


def test_a_table_with_empty_cells_or_one_class_is_refused(folder: Path) -> None:
    pd.DataFrame({"a": [1.0, None, 3.0], "y": [0, 1, 0]}).to_csv(folder / "gaps.csv", index=False)
    with pytest.raises(SpecError, match="column 'a' has 1 empty cells"):
        load_study(folder, _study("gaps.csv", "y"))
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["x", "x", "x"]}).to_csv(folder / "one.csv", index=False)
    with pytest.raises(SpecError, match="classification needs at least two classes, found one"):
        load_study(folder, _study("one.csv", "y"))


def _study(path: str, target: str) -> dict[str, Any]:
    return {
        "study": {"seeds": [0]},
        "data": {"path": path, "target": target, "split": {"kind": "first", "validation": 1}},
        "model": {"layers": [{"type": "Dense", "units": 3}]},
        "train": {"epochs": 1},
    }


def test_a_study_reads_a_table_beside_it(folder: Path) -> None:
    study = load_study(folder, _study("t.csv", "kind"))
    data = study.variants[0].spec["data"]
    assert data["path"] == str(folder / "t.csv") and data["target"] == "kind"
    assert study.variants[0].spec["task"] == "classification"


# ---------------------------------------------------------------------------------------------
# Data factories


def test_a_data_factory_s_arrays(folder: Path) -> None:
    data = resolved(folder, factory="mypkg.data:load", params={"n": 30})
    assert data["name"] == "factory" and len(data["source_sha256"]) == 64
    raw = load_data(data)
    assert raw.info.class_names == ("c0", "c1", "c2") and raw.x_train.shape == (30, 2)
    # By hand: the class is the integer part of the first feature.
    assert raw.y_train.tolist() == np.floor(raw.x_train[:, 0]).astype(int).tolist()
    assert not raw.has_test  # prepare carves the test split


def test_a_data_factory_may_return_tensors_with_a_test_split(folder: Path) -> None:
    raw = load_data(resolved(folder, factory="mypkg.data:tensors"))
    assert raw.has_test and raw.x_train.shape == (90, 2) and raw.x_test.shape == (30, 2)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64


def test_a_data_factory_may_return_trainlab_s_dataclass_of_lists(folder: Path) -> None:
    raw = load_data(resolved(folder, factory="mypkg.data:as_dataclass"))
    assert raw.x_train.shape == (30, 2) and raw.info.class_names == ("c0", "c1", "c2")


@pytest.mark.parametrize(
    ("factory", "words"),
    [
        ("mypkg.data:not_arrays", "returned a list without x_train and y_train; expected a dict or an object"),
        ("mypkg.data:raises", "mypkg.data:raises raised RuntimeError: the data is elsewhere"),
        ("mypkg.data:absent", "mypkg.data has no attribute 'absent'"),
        ("nowhere.data:load", "no module named 'nowhere'"),
    ],
)
def test_a_bad_data_factory_is_one_line_at_data_factory(folder: Path, factory: str, words: str) -> None:
    tables = _study("t.csv", "kind")
    tables["data"] = {"factory": factory}
    with pytest.raises(SpecError) as info:
        load_study(folder, tables)
    assert info.value.path == "data.factory" and words in str(info.value) and "\n" not in str(info.value)
