"""Splitting and preparing: sizes, disjointness, determinism, stratification, scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainlab.data import prepare
from trainlab.data.splits import SplitSpec, carve_test, index_sha256, parse_split, split_indices
from trainlab.errors import SpecError


def labels_with_counts(counts: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels).astype(np.uint8)


def check_partition(train: np.ndarray, val: np.ndarray, n: int) -> None:
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    assert train.dtype == val.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# split_indices


def test_first_takes_exactly_the_first_n() -> None:
    train, val = split_indices(SplitSpec("first", 5000), 60000)
    np.testing.assert_array_equal(val, np.arange(5000))
    np.testing.assert_array_equal(train, np.arange(5000, 60000))


@pytest.mark.parametrize("kind", ["random", "stratified"])
@pytest.mark.parametrize("validation,expected", [(0.2, 2000), (1234, 1234), (1, 1), (0.5, 5000)])
def test_sizes_disjoint_and_complete(kind: str, validation: float, expected: int) -> None:
    labels = labels_with_counts([1000] * 10)
    train, val = split_indices(SplitSpec(kind, validation, 3), 10000, labels)
    assert len(val) == expected and len(train) == 10000 - expected
    check_partition(train, val, 10000)


@pytest.mark.parametrize("kind", ["random", "stratified"])
def test_same_seed_same_split_different_seed_different_split(kind: str) -> None:
    labels = labels_with_counts([300, 500, 200])
    a = split_indices(SplitSpec(kind, 0.25, 7), 1000, labels)[1]
    b = split_indices(SplitSpec(kind, 0.25, 7), 1000, labels)[1]
    c = split_indices(SplitSpec(kind, 0.25, 8), 1000, labels)[1]
    np.testing.assert_array_equal(a, b)
    assert index_sha256(a) == index_sha256(b) != index_sha256(c)
    assert not np.array_equal(a, c)


def test_stratified_keeps_class_proportions_report_e() -> None:
    labels = labels_with_counts([6000] * 10)
    train, val = split_indices(SplitSpec("stratified", 0.2, 0), 60000, labels)
    assert (len(train), len(val)) == (48000, 12000)
    assert np.bincount(labels[val]).tolist() == [1200] * 10


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=2, max_size=6),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
)
def test_stratified_is_within_one_example_per_class(counts: list[int], fraction: float, seed: int) -> None:
    labels = labels_with_counts(counts, seed)
    n = len(labels)
    n_val = int(np.floor(fraction * n + 0.5))
    if not 1 <= n_val <= n - 1:
        return
    train, val = split_indices(SplitSpec("stratified", fraction, seed), n, labels)
    check_partition(train, val, n)
    assert len(val) == n_val
    taken = np.bincount(labels[val], minlength=len(counts))
    exact = np.array(counts) * n_val / n
    assert (np.abs(taken - exact) < 1).all()


def test_carve_test_is_disjoint_seeded_and_separate_from_validation() -> None:
    rest, test = carve_test(1000, 0.2, 0)
    assert len(test) == 200 and len(rest) == 800
    check_partition(rest, test, 1000)
    np.testing.assert_array_equal(test, carve_test(1000, 0.2, 0)[1])
    assert not np.array_equal(test, carve_test(1000, 0.2, 1)[1])
    _, val = split_indices(SplitSpec("random", 0.2, 0), 1000)
    assert not np.array_equal(test, val)


@pytest.mark.parametrize(
    "table,path",
    [
        ({"kind": "shuffle", "validation": 0.2}, "data.split.kind"),
        ({"validation": 0.2}, "data.split.kind"),
        ({"kind": "random"}, "data.split.validation"),
        ({"kind": "random", "validation": 0}, "data.split.validation"),
        ({"kind": "random", "validation": -3}, "data.split.validation"),
        ({"kind": "random", "validation": 1.0}, "data.split.validation"),
        ({"kind": "random", "validation": 0.0}, "data.split.validation"),
        ({"kind": "random", "validation": True}, "data.split.validation"),
        ({"kind": "random", "validation": "20%"}, "data.split.validation"),
        ({"kind": "random", "validation": 0.2, "seed": 1.5}, "data.split.seed"),
        ({"kind": "random", "validation": 0.2, "sead": 1}, "data.split.sead"),
        ("random", "data.split"),
    ],
)
def test_invalid_split_tables_name_the_key(table: object, path: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_split(table)
    assert info.value.path == path


def test_unknown_kind_lists_allowed_and_suggests() -> None:
    with pytest.raises(SpecError) as info:
        parse_split({"kind": "stratify", "validation": 0.2})
    assert info.value.allowed == ["first", "kfold", "random", "stratified"]
    assert "did you mean 'stratified'" in str(info.value)


def test_too_large_a_validation_set_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="between 1 and 99") as info:
        split_indices(SplitSpec("first", 100), 100)
    assert info.value.path == "data.split.validation"
    with pytest.raises(SpecError):
        split_indices(SplitSpec("random", 0.001), 100)  # rounds to 0 examples


def test_stratified_needs_classes() -> None:
    with pytest.raises(SpecError, match="regression") as info:
        split_indices(SplitSpec("stratified", 0.2), 10, np.linspace(0, 1, 10))
    assert info.value.path == "data.split.kind"


# ---------------------------------------------------------------------------------------------
# prepare, on the user's own arrays


@pytest.fixture
def images_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (200, 6, 5), dtype=np.uint8),
        y_train=(np.arange(200) % 4).astype(np.int64),
        x_test=rng.integers(0, 256, (30, 6, 5), dtype=np.uint8),
        y_test=(np.arange(30) % 4).astype(np.int64),
        class_names=np.array(["a", "b", "c", "d"]),
    )
    return path


@pytest.fixture
def tabular_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "tabular.npz"
    x = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], (500, 3))
    x[:, 1] = np.linspace(-10, 10, 500)  # a trend, so a random validation part has a different mean
    np.savez(path, x_train=x, y_train=x @ np.array([1.0, 2.0, 0.01]), feature_names=np.array(["p", "q", "r"]))
    return path


def test_first_split_takes_the_first_examples_and_scales_images(images_npz: Path) -> None:
    raw = np.load(images_npz)
    p = prepare({"name": "npz", "path": str(images_npz), "split": {"kind": "first", "validation": 50}})
    assert p.info.input_shape == (1, 6, 5) and p.info.class_names == ("a", "b", "c", "d")
    assert p.x_val.shape == (50, 1, 6, 5) and p.x_train.shape == (150, 1, 6, 5)
    assert p.x_train.dtype == np.float32 and p.y_train.dtype == np.int64
    np.testing.assert_array_equal(p.x_val[:, 0], raw["x_train"][:50].astype(np.float32) / 255)
    np.testing.assert_array_equal(p.x_train[:, 0], raw["x_train"][50:].astype(np.float32) / 255)
    np.testing.assert_array_equal(p.y_val, raw["y_train"][:50])
    assert 0.0 <= p.x_train.min() and p.x_train.max() <= 1.0
    # The test set is untouched: all of it, in order.
    np.testing.assert_array_equal(p.x_test[:, 0], raw["x_test"].astype(np.float32) / 255)
    np.testing.assert_array_equal(p.y_test, raw["y_test"])
    assert p.split["sizes"] == {"train": 150, "validation": 50, "test": 30}
    assert p.split["test"] == {"kind": "official"}
    assert p.split["val_index_sha256"] == index_sha256(np.arange(50))


def test_split_record_is_json_and_reproducible(images_npz: Path) -> None:
    import json

    table = {
        "name": "npz",
        "path": str(images_npz),
        "split": {"kind": "stratified", "validation": 0.2, "seed": 4},
    }
    a, b = prepare(table), prepare(table)
    assert json.loads(json.dumps(a.split)) == a.split == b.split
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert np.bincount(a.y_val).tolist() == [10, 10, 10, 10]
    other = prepare({**table, "split": {**table["split"], "seed": 5}})
    assert other.split["val_index_sha256"] != a.split["val_index_sha256"]


def test_limits_apply_after_splitting(images_npz: Path) -> None:
    full = prepare({"name": "npz", "path": str(images_npz), "split": {"kind": "random", "validation": 40}})
    small = prepare(
        {
            "name": "npz",
            "path": str(images_npz),
            "split": {"kind": "random", "validation": 40},
            "train_limit": 16,
            "test_limit": 7,
        }
    )
    np.testing.assert_array_equal(small.x_val, full.x_val)
    np.testing.assert_array_equal(small.x_train, full.x_train[:16])
    np.testing.assert_array_equal(small.x_test, full.x_test[:7])
    assert small.split["sizes"] == {"train": 16, "validation": 40, "test": 7}


def test_channels_last_images_become_channels_first(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 9, 3), dtype=np.uint8)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x[:3], y_test=np.arange(3) % 2)
    p = prepare({"name": "npz", "path": str(path), "split": {"kind": "first", "validation": 5}})
    assert p.info.input_shape == (3, 8, 9) and p.x_train.shape == (15, 3, 8, 9)
    np.testing.assert_array_equal(p.x_val, x[:5].transpose(0, 3, 1, 2).astype(np.float32) / 255)


def test_tabular_is_standardized_with_training_statistics_only(tabular_npz: Path) -> None:
    p = prepare({"name": "npz", "path": str(tabular_npz), "split": {"kind": "random", "validation": 0.25, "seed": 0}})
    assert p.info.task == "regression" and p.info.num_classes == 0 and p.info.feature_names == ("p", "q", "r")
    assert p.y_train.dtype == np.float32 and p.y_train.ndim == 1
    # No official test: 20% carved first, then 25% of the rest for validation.
    assert p.split["sizes"] == {"train": 300, "validation": 100, "test": 100}
    assert p.split["test"]["kind"] == "random" and p.split["test"]["fraction"] == 0.2
    np.testing.assert_allclose(p.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(p.x_train.std(axis=0), 1.0, atol=1e-5)
    assert np.abs(p.x_val.mean(axis=0)).max() > 1e-3 and np.abs(p.x_test.mean(axis=0)).max() > 1e-3
    # The recorded statistics are those of the training rows, recovered from the raw data.
    raw_x = np.load(tabular_npz)["x_train"].astype(np.float32)
    mean, std = np.array(p.split["standardize"]["mean"]), np.array(p.split["standardize"]["std"])
    restored = p.x_train * std + mean
    rows = [np.flatnonzero(np.all(np.isclose(raw_x, r, rtol=1e-4), axis=1))[0] for r in restored[:5]]
    np.testing.assert_allclose(raw_x[rows], restored[:5], rtol=1e-4)
    np.testing.assert_allclose(p.y_train[:5], np.load(tabular_npz)["y_train"][rows].astype(np.float32), rtol=1e-5)


def test_regression_cannot_be_stratified(tabular_npz: Path) -> None:
    with pytest.raises(SpecError, match="regression"):
        prepare({"name": "npz", "path": str(tabular_npz), "split": {"kind": "stratified", "validation": 0.2}})


@pytest.mark.parametrize(
    "table,path",
    [
        ({"name": "mnits", "split": {"kind": "first", "validation": 5}}, "data.name"),
        ({"name": "npz", "split": {"kind": "first", "validation": 5}}, "data.path"),
        ({"name": "mnist", "path": "/x.npz", "split": {"kind": "first", "validation": 5}}, "data.path"),
        ({"name": "mnist"}, "data.split"),
        (
            {"name": "mnist", "split": {"kind": "first", "validation": 5}, "train_limit": 0},
            "data.train_limit",
        ),
        (
            {"name": "mnist", "split": {"kind": "first", "validation": 5}, "test_limit": 2.5},
            "data.test_limit",
        ),
        (
            {"name": "mnist", "split": {"kind": "first", "validation": 5}, "test_fraction": 1.5},
            "data.test_fraction",
        ),
        ({"name": "mnist", "split": {"kind": "first", "validation": 5}, "shuffle": True}, "data.shuffle"),
    ],
)
def test_invalid_data_tables_name_the_key(table: dict, path: str) -> None:
    with pytest.raises(SpecError) as info:
        prepare(table)
    assert info.value.path == path


def test_unknown_data_set_suggests_the_nearest() -> None:
    with pytest.raises(SpecError, match="did you mean 'mnist'"):
        prepare({"name": "mnits", "split": {"kind": "first", "validation": 5}})


def test_test_fraction_is_ignored_when_there_is_an_official_test_set(images_npz: Path) -> None:
    table = {"name": "npz", "path": str(images_npz), "split": {"kind": "first", "validation": 5}}
    with_fraction = prepare({**table, "test_fraction": 0.1})
    assert with_fraction.split["test"] == {"kind": "official"}
    np.testing.assert_array_equal(with_fraction.x_test, prepare(table).x_test)
