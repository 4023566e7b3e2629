"""Getting a data set's verified arrays: the cache first, then local copies, then the download.

Every source is held to the facts in ``datasets``; the first one that passes wins and, unless
it was the cache, is written to the cache as a compact ``.npz`` for the next process. A
source that fails is recorded, so that when none works the error lists each one tried and
how to provide the data by hand. Nothing unverified is ever returned.
"""

from __future__ import annotations

import json
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.data import datasets as ds
from trainlab.data import user
from trainlab.data.datasets import DatasetDef, Raw
from trainlab.data.formats import Decoded
from trainlab.data.sources import cache_dir, fetch, file_digest, mirror, offline, read_npz, write_npz_atomic
from trainlab.errors import DataError, DataUnavailable

CACHE_FORMAT = "trainlab-data-1"


class DataWarning(UserWarning):
    """Something about the data was wrong and has been repaired (e.g. a corrupt cache rebuilt)."""


@dataclass(frozen=True)
class Availability:
    """Where a data set would be loaded from right now, for ``trainlab data list``."""

    name: str
    where: str  # "cache" | "package" | "file" | "missing"
    path: str | None
    size: int | None  # bytes
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``trainlab data verify NAME``."""

    name: str
    ok: bool
    message: str


_memo: dict[tuple[str, ...], Raw] = {}
_memo_lock = threading.Lock()


def clear_memory() -> None:
    """Forget the arrays loaded in this process (the next load reads and verifies again)."""
    with _memo_lock:
        _memo.clear()


def cache_file(name: str, folder: Path | None = None) -> Path:
    """Where the decoded arrays of ``name`` are cached."""
    return (folder or cache_dir()) / f"{name}.npz"


def definition(name: str) -> DatasetDef:
    """The registered definition of ``name``, or DataError listing the known names."""
    registry = ds.definitions()
    if name not in registry:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(ds.DATASETS)} (or 'npz' with a path)")
    return registry[name]


def load_raw(name: str, *, path: str | None = None) -> Raw:
    """Decoded, verified arrays of a named data set (or of the user's ``.npz`` at ``path``).

    Loaded once per process and cache dir; the arrays are read-only because every caller
    shares them.
    """
    if name == ds.USER_NPZ:
        if not path:
            raise DataError("data set 'npz' needs the path of the user's .npz file")
        file = Path(path).expanduser().resolve()
        try:
            stat = file.stat()
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc.strerror or exc})") from exc
        key: tuple[str, ...] = (name, str(file), str(stat.st_mtime_ns), str(stat.st_size))
        with _memo_lock:
            if key not in _memo:
                _memo[key] = ds.user_npz(file)
            return _memo[key]
    defn = definition(name)
    folder = cache_dir()
    key = (name, str(folder))
    with _memo_lock:
        if key not in _memo:
            _memo[key] = load_definition(defn, folder)
        return _memo[key]


def load_data(table: Mapping[str, Any]) -> Raw:
    """The checked arrays a resolved ``[data]`` table names: a named data set, a user's ``npz``
    (:func:`load_raw`), or a table, image folder or factory (:mod:`trainlab.data.user`); each
    loaded once per process while its files (or its factory's source) stay the same."""
    name = table["name"]
    if name not in user.KINDS:
        return load_raw(name, path=table.get("path"))
    key, load = _user_source(table)
    with _memo_lock:
        if key not in _memo:
            _memo[key] = load()
        return _memo[key]


def _user_source(table: Mapping[str, Any]) -> tuple[tuple[str, ...], Callable[[], Raw]]:
    """What a user's table, image folder or factory is remembered by in this process, and how to load it."""
    name, path = table["name"], table.get("path")
    if name in user.TABLES:
        columns = json.dumps([table["target"], table["features"], table["task"]])
        load = partial(user.table_raw, name, path, table["target"], table["features"], table["task"])
        return (name, path, *_stat(path), columns), load
    if name == user.IMAGES:
        return (name, path, user.images_key(path)), partial(user.images_raw, path)
    params = table.get("params") or {}
    key = (name, table["factory"], str(table.get("root")), json.dumps(params, sort_keys=True))
    return (*key, str(table.get("source_sha256"))), partial(
        user.factory_raw, table["factory"], table.get("root"), params
    )


def _stat(path: str) -> tuple[str, str]:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return str(stat.st_mtime_ns), str(stat.st_size)


def load_definition(defn: DatasetDef, folder: Path, *, allow_download: bool | None = None) -> Raw:
    """Try the cache, each local source, then each download; return the first verified copy.

    ``allow_download`` defaults to "unless $TRAINLAB_OFFLINE is set".
    """
    tried: list[str] = []
    damaged = ""
    cached = cache_file(defn.name, folder)
    if cached.exists():
        try:
            return _from_cache(defn, cached)
        except DataError as exc:
            warnings.warn(f"{exc}; rebuilding the cache from the next source", DataWarning, stacklevel=3)
            tried.append(f"cache {cached}: refused ({exc}); delete it if it cannot be rebuilt")
            damaged = f": its cache {cached} is damaged and was not used, and no other source could replace it"
    else:
        tried.append(f"cache {cached}: not present")

    for source in defn.sources:
        try:
            found = source.locate()
        except DataError as exc:
            tried.append(f"{source.label}: {exc}")
            continue
        if found is None:
            tried.append(f"{source.label}: not found (to provide it: {source.provide})")
            continue
        try:
            if source.checksum is not None:
                _check_file(found, source.checksum)
            decoded = source.decode(found)
            return _accept(defn, decoded, folder, source=source.kind, origin=str(found))
        except DataError as exc:
            tried.append(f"{source.label}: refused ({exc})")

    if allow_download is None:
        allow_download = not offline()
    for download in defn.downloads:
        if not allow_download:
            tried.append(f"download {download.label}: skipped ($TRAINLAB_OFFLINE is set)")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as temp:
            try:
                paths = fetch(download.files, Path(temp), dataset=defn.name, base=mirror())
                decoded = download.decode(paths)
                origin = ", ".join(f.candidates(defn.name, mirror())[0] for f in download.files)
                return _accept(defn, decoded, folder, source="download", origin=origin)
            except (DataError, OSError) as exc:
                tried.append(f"download {download.label}: {exc}")

    listing = "\n".join(f"  {i}. " + line.replace("\n", "\n     ") for i, line in enumerate(tried, 1))
    raise DataUnavailable(
        f"data set {defn.name} is not available{damaged}. Sources tried:\n{listing}\n"
        f"To provide it by hand: {defn.manual}",
        f"data set {defn.name} is not available{damaged or ' on this machine'}. To provide it: {defn.manual}. "
        f"(`trainlab data verify {defn.name}` lists the {len(tried)} places tried.)",
    )


def _check_file(path: Path, checksum: tuple[str, str]) -> None:
    algorithm, expected = checksum
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(
            f"{path}: {algorithm} is {actual}, the official file's is {expected}; "
            "the file is truncated, modified or a different release: download it again"
        )


def _from_cache(defn: DatasetDef, file: Path) -> Raw:
    arrays = read_npz(file)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test", "sha256", "format") if k not in arrays]
    if missing:
        raise DataError(f"{file}: not a trainlab data cache (lacks {missing})")
    if str(arrays["format"]) != CACHE_FORMAT:
        raise DataError(f"{file}: cache format {arrays['format']!s}, expected {CACHE_FORMAT}")
    decoded = Decoded(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    sha = ds.check(defn.facts, defn.info, decoded, where=str(file), expected_sha256=str(arrays["sha256"]))
    return _raw(defn, decoded, sha, source="cache", origin=str(file))


def _accept(defn: DatasetDef, decoded: Decoded, folder: Path, *, source: str, origin: str) -> Raw:
    """Verify freshly decoded arrays, cache them, and wrap them as Raw."""
    sha = ds.check(defn.facts, defn.info, decoded, where=origin)
    try:
        _write_cache(defn, decoded, sha, folder)
    except OSError as exc:
        warnings.warn(
            f"could not write the data cache in {folder} ({exc}); decoding again next time",
            DataWarning,
            stacklevel=4,
        )
    return _raw(defn, decoded, sha, source=source, origin=origin)


def _write_cache(defn: DatasetDef, decoded: Decoded, sha: str, folder: Path) -> Path:
    file = cache_file(defn.name, folder)
    arrays = dict(zip(("x_train", "y_train", "x_test", "y_test"), decoded, strict=True))
    write_npz_atomic(file, {**arrays, "sha256": np.array(sha), "format": np.array(CACHE_FORMAT)})
    return file


def _raw(defn: DatasetDef, decoded: Decoded, sha: str, *, source: str, origin: str) -> Raw:
    x_train, y_train, x_test, y_test = (np.ascontiguousarray(a) for a in decoded)
    for array in (x_train, y_train, x_test, y_test):
        array.setflags(write=False)
    return Raw(defn.info, x_train, y_train, x_test, y_test, defn.layout, sha, source, origin)


def add_local(name: str, path: str | Path) -> Path:
    """Verify a file (or folder) the user provides and decode it into the cache.

    ``cifar10``: ``cifar-10-python.tar.gz`` (its official MD5 is checked). ``mnist`` and
    ``fashion_mnist``: a folder with the four IDX files. ``california_housing``:
    ``cal_housing.tgz`` or the sklearn-layout parquet. The decoded arrays must meet the
    recorded facts before anything is written. Returns the cache file written.
    """
    defn = definition(name)
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    return add_definition(defn, source, cache_dir())


def add_definition(defn: DatasetDef, source: Path, folder: Path) -> Path:
    """``add_local`` for an explicit definition and cache dir."""
    if defn.add_checksum is not None:
        if not source.is_file():
            raise DataError(f"{source}: expected a file")
        _check_file(source, defn.add_checksum)
    decoded = defn.add_local(source)
    sha = ds.check(defn.facts, defn.info, decoded, where=str(source))
    try:
        file = _write_cache(defn, decoded, sha, folder)
    except OSError as exc:
        raise DataError(
            f"cannot write the data cache in {folder} ({exc}); set $TRAINLAB_DATA to a writable folder"
        ) from exc
    with _memo_lock:
        for key in [k for k in _memo if k[0] == defn.name]:
            del _memo[key]
    return file


def available() -> list[Availability]:
    """For each named data set, where it would be loaded from now (nothing is decoded)."""
    out: list[Availability] = []
    for name in ds.DATASETS:
        defn = definition(name)
        cached = cache_file(name)
        if cached.is_file():
            out.append(Availability(name, "cache", str(cached), cached.stat().st_size))
            continue
        entry = Availability(name, "missing", None, None, f"downloads on first use, or {defn.manual}")
        for source in defn.sources:
            try:
                found = source.locate()
            except DataError as exc:
                entry = Availability(name, "missing", None, None, str(exc))
                continue
            if found is not None:
                size = (
                    found.stat().st_size
                    if found.is_file()
                    else sum(p.stat().st_size for p in found.iterdir() if p.is_file())
                )
                entry = Availability(name, source.kind, str(found), size, source.label)
                break
        out.append(entry)
    return out


def verify(name: str, *, path: str | None = None) -> VerifyResult:
    """Load ``name`` afresh (not from this process's memory) and report what was checked."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            if name == ds.USER_NPZ:
                raw = load_raw(name, path=path)
            else:
                defn = definition(name)
                raw = load_definition(defn, cache_dir())
                with _memo_lock:
                    _memo[(name, str(cache_dir()))] = raw
        except DataError as exc:
            return VerifyResult(name, False, str(exc))
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    return VerifyResult(name, True, describe(raw) + "".join(f"\n  note: {n}" for n in notes))


def describe(raw: Raw) -> str:
    """One paragraph: source, shapes, dtypes, class counts and checksum status."""
    lines = [
        f"from {raw.source} {raw.origin}",
        f"  train x {raw.x_train.shape} {raw.x_train.dtype}, y {raw.y_train.shape} {raw.y_train.dtype}",
    ]
    if raw.has_test:
        lines.append(f"  test  x {raw.x_test.shape} {raw.x_test.dtype}, y {raw.y_test.shape} {raw.y_test.dtype}")
    else:
        lines.append("  no official test split (prepare carves one)")
    if raw.info.task == "classification":
        train = np.bincount(raw.y_train.astype(np.int64), minlength=raw.info.num_classes)
        lines.append(f"  classes {raw.info.num_classes}, train per class {train.min()}..{train.max()}")
        if raw.has_test:
            test = np.bincount(raw.y_test.astype(np.int64), minlength=raw.info.num_classes)
            lines[-1] += f", test per class {test.min()}..{test.max()}"
    recorded = ds.definitions().get(raw.info.name)
    if recorded is not None and recorded.facts.sha256:
        lines.append(f"  sha256 {raw.sha256} matches the value recorded in trainlab")
    elif recorded is not None:
        lines.append(
            f"  sha256 {raw.sha256} (no published value for the decoded arrays; the source file's "
            "official checksum was verified when the cache was built)"
        )
    else:
        lines.append(f"  sha256 {raw.sha256} (user file, nothing to compare with)")
    return "\n".join(lines)
