"""The test factories build what a study file says: their TOML reads back through ``tomllib`` as
the tables they were given, and the tiny study equals its study file written out by hand."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from factories import (
    load_study,
    mlp_spec,
    npz_study,
    tiny_study_tables,
    toml_text,
    variant,
    with_tiny_npz,
    write_study,
)

from trainlab import spec

TINY_BY_HAND = """
[study]
name = "tiny"
seeds = [0, 1]

[data]
name = "npz"
path = "tiny.npz"
split = { kind = "stratified", validation = 0.25 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 16, activation = "relu" },
  { type = "Dropout", rate = 0.1 },
  { type = "Dense", units = 3, activation = "softmax" },
]

[train]
epochs = 4
batch_size = 16

[[compare]]
label = "sgd"
optimizer = { name = "sgd", learning_rate = 0.05 }

[[compare]]
label = "adam"
optimizer = "adam"
"""


def test_the_tiny_study_is_the_file_written_by_hand() -> None:
    assert tiny_study_tables(epochs=4) == tomllib.loads(TINY_BY_HAND)


@pytest.mark.parametrize(
    "tables",
    [
        tiny_study_tables(epochs=2, seeds=[0, 1, 2, 3]),
        npz_study(
            optimizer={"name": "sgd", "momentum": 0.5},
            train={"keep": "last", "early_stopping": {"patience": 0}},
            compare=[variant("a", **{"optimizer.learning_rate": 0.001}), variant("b c", model={"layers": []})],
        ),
        {
            "odd keys": {"a.b": 1, "x y": 'quote " and \\ and\nnewline', "é": [1.5, -2, 1e-07, True, False]},
            "stage": [{"name": "first", "compare": [{"label": "l", "edit": {"widths": [4, 4]}}]}, {"name": "second"}],
            "empty": {"table": {}, "list": []},
        },
    ],
    ids=["tiny", "npz-study", "odd-values"],
)
def test_toml_text_reads_back_as_the_tables_it_was_given(tables: dict[str, Any]) -> None:
    assert tomllib.loads(toml_text(tables)) == tables


def test_toml_text_writes_float_infinities_and_nan() -> None:
    back = tomllib.loads(toml_text({"t": {"big": math.inf, "small": -math.inf, "none": math.nan}}))["t"]
    assert back["big"] == math.inf and back["small"] == -math.inf and math.isnan(back["none"])


def test_toml_text_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(TypeError, match="no TOML for NoneType"):
        toml_text({"t": {"x": None}})


def test_a_study_in_python_resolves_as_its_file_does(tmp_path: Path) -> None:
    """``load_study`` (no file) and ``spec.load`` of the file ``write_study`` writes: the same trials."""
    with_tiny_npz(tmp_path)
    tables = tiny_study_tables(epochs=3)
    from_python = load_study(tmp_path, tables, name="tiny")
    from_file = spec.load(write_study(tmp_path / "tiny.toml", tables))
    assert [(t.label, t.seed, t.hash) for t in from_python.trials()] == [
        (t.label, t.seed, t.hash) for t in from_file.trials()
    ]
    assert [t.label for t in from_python.trials()] == ["sgd", "sgd", "adam", "adam"]


def test_mlp_spec_is_the_variant_a_study_file_gives(tmp_path: Path) -> None:
    with_tiny_npz(tmp_path)
    (tmp_path / "s.toml").write_text(TINY_BY_HAND.split("[[compare]]")[0] + '\n[optimizer]\nname = "sgd"\n')
    assert mlp_spec(tmp_path, optimizer="sgd") == spec.load(tmp_path / "s.toml").variants[0].spec
