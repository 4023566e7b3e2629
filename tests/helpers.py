"""What the tests share besides fixtures: the repository's paths, and data files written here
in the formats trainlab reads (a user npz, MNIST's IDX files, the CIFAR-10 tarball, StatLib's
cal_housing.tgz), so that no test needs the real data sets."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.data import formats
from trainlab.data.datasets import (
    CIFAR_CLASSES,
    DatasetDef,
    Facts,
    LocalSource,
    arrays_sha256,
    california_housing_definition,
    cifar10_definition,
)

if TYPE_CHECKING:
    from trainlab.spec import Trial

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root: README.md, studies/ and trainlab/ are found from here."""
STUDIES = ROOT / "studies"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Files committed for the tests (a store written by an older trainlab, its study)."""


# ---------------------------------------------------------------------------------------------
# A user npz


def make_npz(
    path: Path, *, n_train: int = 240, n_test: int = 60, classes: int = 3, size: int = 8, seed: int = 0
) -> Path:
    """Images whose class is a brighter band at a class-specific row, plus noise: learnable in a few epochs."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        x = rng.integers(0, 90, (n, size, size))
        for i, label in enumerate(y):
            x[i, 2 * label : 2 * label + 2, :] += 150
        return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as MNIST ships it: magic (0, 0, type, ndim), big-endian dims, payload."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx_folder(folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> formats.Decoded:
    """The four gzipped IDX files of an MNIST-shaped data set in ``folder``; returns what they hold."""
    rng = np.random.default_rng(seed)
    decoded = formats.Decoded(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(formats.IDX_STEMS, decoded, strict=True):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return decoded


# ---------------------------------------------------------------------------------------------
# CIFAR-10


class Py2Pickler(pickle._Pickler):  # type: ignore[misc]
    """Writes ``str`` and ``bytes`` as Python 2 strings and names numpy's reconstruct the old
    way, so fixtures look like the official batches (pickled by Python 2's cPickle)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled as the official CIFAR-10 batches are (see :class:`Py2Pickler`)."""
    out = io.BytesIO()
    Py2Pickler(out, protocol=2).dump(obj)
    return out.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar_tarball(
    path: Path,
    per_class_train: int = 1,
    per_class_test: int = 1,
    seed: int = 0,
    members: dict[str, bytes] | None = None,
) -> formats.Decoded:
    """A cifar-10-python.tar.gz in the official layout with ``per_class_train`` images of each
    class in every one of the five training batches."""
    rng = np.random.default_rng(seed)
    blobs: dict[str, bytes] = {}
    xs, ys = [], []
    for i, name in enumerate((*formats.CIFAR_TRAIN_BATCHES, formats.CIFAR_TEST_BATCH)):
        per_class = per_class_test if name == formats.CIFAR_TEST_BATCH else per_class_train
        labels = [k for k in range(10) for _ in range(per_class)]
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        blobs[name] = py2_pickle(
            {
                b"batch_label": f"batch {i}".encode(),
                b"labels": labels,
                b"data": data,
                b"filenames": [b"x.png"] * len(labels),
            }
        )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.array(labels, np.uint8))
    blobs[formats.CIFAR_META] = py2_pickle(
        {
            b"num_cases_per_batch": 10 * per_class_train,
            b"label_names": [n.encode() for n in CIFAR_CLASSES],
            b"num_vis": 3072,
        }
    )
    blobs.update(members or {})
    with tarfile.open(path, "w:gz") as archive:
        for name, blob in blobs.items():
            member = tarfile.TarInfo(f"{formats.CIFAR_FOLDER}/{name}")
            member.size = len(blob)
            archive.addfile(member, io.BytesIO(blob))
    return formats.Decoded(np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5])


def fixture_cifar_definition(path: Path) -> DatasetDef:
    """The CIFAR-10 definition held to the facts of the tarball ``write_cifar_tarball`` writes with its defaults."""
    facts = Facts((50, 3, 32, 32), (20, 3, 32, 32), "uint8", "uint8", (5,) * 10, (2,) * 10, None)
    return cifar10_definition(facts, md5=hashlib.md5(path.read_bytes()).hexdigest())


# ---------------------------------------------------------------------------------------------
# California housing, StatLib layout


# Raw StatLib columns: longitude, latitude, age, rooms, bedrooms, population, households,
# income, value (the first rows of the real file).
CAL_HOUSING_ROWS = np.array(
    [
        [-122.23, 37.88, 41, 880, 129, 322, 126, 8.3252, 452600],
        [-122.22, 37.86, 21, 7099, 1106, 2401, 1138, 8.3014, 358500],
        [-122.24, 37.85, 52, 1467, 190, 496, 177, 7.2574, 352100],
        [-122.25, 37.85, 52, 1274, 235, 558, 219, 5.6431, 341300],
    ]
)


def write_cal_housing_tgz(path: Path, rows: np.ndarray = CAL_HOUSING_ROWS) -> bytes:
    """cal_housing.tgz as StatLib ships it, holding ``rows``; returns the file's bytes."""
    text = "\n".join(",".join(f"{v:f}" for v in row) for row in rows).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        member = tarfile.TarInfo(formats.CAL_HOUSING_MEMBER)
        member.size = len(text)
        archive.addfile(member, io.BytesIO(text))
    return path.read_bytes()


def fixture_facts(path: Path, *, with_sha: bool = True) -> Facts:
    """The facts of the cal_housing.tgz fixture at ``path`` (with its arrays' checksum unless ``with_sha`` is false)."""
    sha = arrays_sha256(formats.read_cal_housing_tgz(path))
    return Facts((len(CAL_HOUSING_ROWS), 8), (0, 8), "float32", "float32", None, None, sha if with_sha else None)


def california_fixture(tgz: Path, *, with_sha: bool = True, local: bool = True) -> DatasetDef:
    """The California definition held to the fixture's facts, with a local file source
    (or none) instead of the package copy."""
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    defn = california_housing_definition(fixture_facts(tgz, with_sha=with_sha), sha256=digest)
    source = LocalSource("file", f"fixture {tgz}", lambda: tgz, formats.read_cal_housing_tgz, "write the fixture")
    return dataclasses.replace(defn, sources=(source,) if local else ())


def run_as_cell(folder: Path, source: str, name: str = "cell.py") -> dict[str, object]:
    """``source`` run as a Jupyter kernel runs a cell: compiled from a file of its own (so that
    :func:`inspect.getsource` reads what it defines), its names in ``__main__``; the cell's names."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


def example_study_files() -> list[Path]:
    """The example study files under studies/ (a suite's studies too), without the suite files."""
    from trainlab.suite import is_suite_file

    found = [*(ROOT / "studies").glob("*.toml"), *(ROOT / "studies").glob("*/*.toml")]
    return sorted(p for p in found if not is_suite_file(p))


def example_trials() -> list[Trial]:
    """Every trial the example studies know before training, of each study and of its smoke run."""
    from trainlab import spec

    out = []
    for path in example_study_files():
        for smoke in (False, True):
            out.extend(spec.load(path, smoke=smoke).trials())
    return out
