"""File decoders on small fixtures written here: IDX, CIFAR-10 pickles, cal_housing.tgz."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CAL_HOUSING_ROWS,
    fixture_cifar_definition,
    idx_bytes,
    py2_pickle,
    write_cal_housing_tgz,
    write_cifar_tarball,
    write_idx_folder,
)

from trainlab.data import formats
from trainlab.data.datasets import CIFAR_CLASSES, cifar10_definition
from trainlab.data.loader import add_definition, load_definition
from trainlab.errors import DataError

# ---------------------------------------------------------------------------------------------
# IDX


def test_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    plain, packed = tmp_path / "images-idx3-ubyte", tmp_path / "images-idx3-ubyte.gz"
    plain.write_bytes(idx_bytes(images))
    packed.write_bytes(gzip.compress(idx_bytes(images)))
    for path in (plain, packed):
        out = formats.read_idx(path)
        assert out.dtype == np.uint8 and out.shape == (5, 4, 3)
        np.testing.assert_array_equal(out, images)


def test_idx_truncated_file_is_refused_with_a_helpful_message(tmp_path: Path) -> None:
    blob = idx_bytes(np.ones((5, 4, 4), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(blob[:-7])
    with pytest.raises(DataError) as info:
        formats.read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert "(5, 4, 4)" in message and "download the file again" in message


def test_idx_truncated_gzip_and_trailing_bytes_and_bad_magic(tmp_path: Path) -> None:
    blob = idx_bytes(np.ones((5, 4, 4), np.uint8))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(blob)[:-10])
    with pytest.raises(DataError, match="gzip stream is truncated"):
        formats.read_idx(cut)
    longer = tmp_path / "longer"
    longer.write_bytes(blob + b"\0\0")
    with pytest.raises(DataError, match="longer than its header says"):
        formats.read_idx(longer)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"PK\x03\x04" + blob[4:])
    with pytest.raises(DataError, match="not an IDX file"):
        formats.read_idx(wrong)
    header_only = tmp_path / "header"
    header_only.write_bytes(blob[:6])
    with pytest.raises(DataError, match="inside the IDX header"):
        formats.read_idx(header_only)


def test_idx_folder_reads_the_four_files(tmp_path: Path) -> None:
    written = write_idx_folder(tmp_path / "mnist")
    read = formats.read_idx_folder(tmp_path / "mnist")
    for a, b in zip(written, read, strict=True):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz .* is missing"):
        formats.read_idx_folder(tmp_path / "mnist")


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_tarball_decodes_in_the_official_layout(tmp_path: Path) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    written = write_cifar_tarball(tarball, per_class_train=1, per_class_test=2)
    decoded, names = formats.read_cifar_tarball(tarball)
    assert names == CIFAR_CLASSES
    assert decoded.x_train.shape == (50, 3, 32, 32) and decoded.x_test.shape == (20, 3, 32, 32)
    for a, b in zip(written, decoded, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_cifar_fixture_loads_through_the_source_chain_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball, per_class_test=2)
    monkeypatch.setenv("TRAINLAB_CIFAR10", str(tarball))
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    defn = fixture_cifar_definition(tarball)
    raw = load_definition(defn, tmp_path / "cache", allow_download=False)
    assert raw.source == "file" and raw.layout == "NCHW" and raw.info.input_shape == (3, 32, 32)
    again = load_definition(defn, tmp_path / "cache", allow_download=False)
    assert again.source == "cache" and again.sha256 == raw.sha256


def test_the_official_md5_still_refuses_the_fixture(tmp_path: Path) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball)
    with pytest.raises(DataError, match="c58f30108f718f92721af3b95e74349a"):
        add_definition(cifar10_definition(), tarball, tmp_path / "cache")
    assert not (tmp_path / "cache" / "cifar10.npz").exists()
    # Right checksum, wrong counts for the real data set: refused by the facts.
    real_facts = cifar10_definition(md5=hashlib.md5(tarball.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=r"x_train has shape \(50, 3, 32, 32\), expected \(50000, 3, 32, 32\)"):
        add_definition(real_facts, tarball, tmp_path / "cache")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = py2_pickle({b"data": _Exploit(marker), b"labels": []})
    for attempt in (blob, pickle.dumps(_Exploit(marker), protocol=4)):
        with pytest.raises(DataError, match=r"refused global (posix|os|nt)\.system"):
            formats.safe_unpickle(attempt, where="batch")
    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball, members={"data_batch_3": blob})
    with pytest.raises(DataError, match="data_batch_3: refused to unpickle"):
        formats.read_cifar_tarball(tarball)
    assert not marker.exists()


def test_other_globals_are_refused_too() -> None:
    for module, name in (
        ("builtins", "eval"),
        ("numpy", "load"),
        ("subprocess", "Popen"),
        ("numpy.core.multiarray", "scalar"),
    ):
        blob = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
        with pytest.raises(DataError, match=f"refused global {module}.{name}"):
            formats.safe_unpickle(blob, where="x")


def test_truncated_cifar_tarball_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(tarball)
    tarball.write_bytes(tarball.read_bytes()[:4000])
    with pytest.raises(DataError, match="cannot read the tarball"):
        formats.read_cifar_tarball(tarball)


# ---------------------------------------------------------------------------------------------
# California housing, StatLib layout


def test_cal_housing_tgz_gets_sklearns_features(tmp_path: Path) -> None:
    path = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(path, CAL_HOUSING_ROWS[:3])
    decoded = formats.read_cal_housing_tgz(path)
    assert decoded.x_train.dtype == np.float32 and decoded.x_train.shape == (3, 8)
    assert decoded.x_test.shape == (0, 8)
    first = decoded.x_train[0]
    expected = [8.3252, 41, 880 / 126, 129 / 126, 322, 322 / 126, 37.88, -122.23]
    np.testing.assert_allclose(first, np.array(expected, np.float32), rtol=1e-6)
    np.testing.assert_allclose(decoded.y_train, [4.526, 3.585, 3.521], rtol=1e-6)
