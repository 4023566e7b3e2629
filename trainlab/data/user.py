"""The user's own data: CSV and Parquet tables, image folders, and a factory's arrays.

Each is decoded into arrays and then held to the checks every user data set meets
(:func:`trainlab.data.datasets.user_raw`: shapes, labels, at least two classes, finite numbers),
so that it splits, scales and records its SHA-256 as the built-in sets do.

* **Tables** (``name = "csv"`` or ``"parquet"``): pandas reads the file; ``target`` names the
  column to predict and ``features`` the input columns (default: every other column), which
  must hold numbers without gaps. A ``classification`` target's distinct values, sorted, are
  the classes (their text is the class names); a ``regression`` target is a number. ``task``
  defaults to regression for a float column and classification otherwise.
* **Image folders** (``name = "images"``): one subfolder per class, as torchvision's
  ``ImageFolder`` lays them out; the classes are the subfolders' names, sorted, and the images
  the files with an image extension in each, sorted. Every image must have the same size;
  they are read as grayscale when every one is, else as RGB. The decoded pixels are cached in
  the cache dir, keyed by every file's name, size and modification time.
* **A factory** (``name = "factory"``): ``load(**params)`` returns a dict, or an object with
  attributes (a dataclass such as :class:`Arrays`), holding ``x_train``, ``y_train`` and
  optionally ``x_test``, ``y_test``, ``class_names`` and ``feature_names``, as numpy arrays,
  torch tensors or lists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import factory
from trainlab.data.datasets import Raw, user_raw
from trainlab.data.sources import cache_dir, read_npz, write_npz_atomic
from trainlab.errors import DataError, SpecError

TABLES = ("csv", "parquet")
IMAGES = "images"
FACTORY = "factory"
KINDS = (*TABLES, IMAGES, FACTORY)
"""The user data kinds of this module (with ``npz``, read by :mod:`trainlab.data.datasets`)."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""The files of an image folder that are images: torchvision's ``IMG_EXTENSIONS``."""
IMAGE_CACHE_FORMAT = "trainlab-images-1"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "class_names", "feature_names")


@dataclass(frozen=True)
class Arrays:
    """What a data factory may return (a dict with these keys does as well)."""

    x_train: Any
    y_train: Any
    x_test: Any = None
    y_test: Any = None
    class_names: Sequence[str] | None = None
    feature_names: Sequence[str] | None = None


def kind_of(path: str) -> str | None:
    """The user data kind a ``path`` names by its form: a folder, or a file by its suffix."""
    file = Path(path)
    if file.is_dir():
        return IMAGES
    suffix = file.suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}.get(suffix)


# ---------------------------------------------------------------------------------------------
# Tables


def read_table(name: str, path: str) -> Any:
    """The table at ``path`` as a pandas DataFrame, or a DataError naming the file."""
    import pandas as pd

    try:
        return pd.read_csv(path) if name == "csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as exc:  # pandas and pyarrow raise many kinds for a malformed file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f"{path}: cannot be read as {name} ({type(exc).__name__}: {first})") from None


def table_columns(name: str, path: str, target: str, features: Sequence[str] | None, task: str | None) -> Any:
    """The resolved ``features`` (every column but the target where none are named) and ``task``
    of a table, checked against its columns: a SpecError at the key that names a missing column."""
    frame = read_table(name, path)
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise SpecError(
            f"{path} has no column {target!r} to predict; its columns: {', '.join(columns)}",
            path="data.target",
            allowed=columns,
            got=target,
        )
    numeric = [c for c, kind in zip(columns, (frame[c].dtype.kind for c in frame.columns)) if kind in "biuf"]
    chosen = [c for c in numeric if c != target] if features is None else list(features)
    for column in chosen:
        if column not in columns:
            raise SpecError(f"{path} has no column {column!r}", path="data.features", allowed=columns, got=column)
        if column == target:
            raise SpecError(f"the target {target!r} cannot be a feature too", path="data.features")
        if column not in numeric:
            raise SpecError(
                f"{path}: column {column!r} holds {frame[column].dtype}, not numbers; encode it first, or leave it out",
                path="data.features",
            )
    if not chosen:
        raise SpecError(f"{path}: no feature columns beside the target {target!r}", path="data.features")
    if task is None:
        task = "regression" if frame[target].dtype.kind == "f" else "classification"
    return chosen, task


def table_raw(name: str, path: str, target: str, features: Sequence[str], task: str) -> Raw:
    """A table's features and target as checked arrays: float32 features (N, F) named by their
    columns; class indices into the sorted distinct target values, or float32 targets."""
    frame = read_table(name, path)
    frame.columns = [str(c) for c in frame.columns]
    missing = [c for c in [target, *features] if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; its columns: {', '.join(frame.columns)}")
    for column in features:
        if frame[column].dtype.kind not in "biuf":
            raise DataError(f"{path}: column {column!r} holds {frame[column].dtype}, not numbers; encode it first")
    for column in [target, *features]:
        gaps = int(frame[column].isna().sum())
        if gaps:
            raise DataError(f"{path}: column {column!r} has {gaps} empty cells; fill or drop them first")
    x = frame[list(features)].to_numpy(dtype=np.float32)
    arrays: dict[str, Any] = {"x_train": x, "feature_names": np.array(list(features))}
    if task == "classification":
        values = frame[target].to_numpy()
        classes = np.unique(values)  # sorted
        arrays["y_train"] = np.searchsorted(classes, values).astype(np.int64)
        arrays["class_names"] = np.array([str(c) for c in classes])
    else:
        if frame[target].dtype.kind not in "biuf":
            raise DataError(f"{path}: the regression target {target!r} holds {frame[target].dtype}, not numbers")
        arrays["y_train"] = frame[target].to_numpy(dtype=np.float32)
    return user_raw(name, arrays, path, layout="NF")


# ---------------------------------------------------------------------------------------------
# Image folders


def image_files(folder: str) -> tuple[list[str], list[list[Path]]]:
    """The class names (subfolders, sorted) and each class's image files (sorted), checked: at
    least two classes, each with an image."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = f"found {len(classes)}" + (f" ({classes[0]})" if classes else "")
        raise DataError(
            f"{folder}: an image folder holds one subfolder per class, at least two; {found}. "
            "Lay it out as FOLDER/CLASS/IMAGE.png"
        )
    files = []
    for name in classes:
        found_files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found_files:
            raise DataError(f"{root / name}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        files.append(found_files)
    return classes, files


def images_key(folder: str) -> str:
    """What an image folder's decoded pixels are cached by: the folder, and every image file's
    name, size and modification time (so a changed, added or removed image decodes again)."""
    _, files = image_files(folder)
    listing = [(str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for fs in files for f in fs]
    return hashlib.sha256(json.dumps([str(Path(folder).resolve()), listing]).encode()).hexdigest()[:24]


def images_raw(folder: str) -> Raw:
    """An image folder as checked uint8 pixels, cached in the cache dir once decoded."""
    classes, files = image_files(folder)
    key = images_key(folder)
    cached = cache_dir() / "user" / f"images-{key}.npz"
    arrays = _cached_images(cached)
    if arrays is None:
        arrays = _decode_images(folder, classes, files)
        try:
            write_npz_atomic(cached, {**arrays, "format": np.array(IMAGE_CACHE_FORMAT)})
        except OSError:
            pass  # an unwritable cache costs decoding again next time, nothing else
    layout = "NHW" if arrays["x_train"].ndim == 3 else "NHWC"
    return user_raw(IMAGES, {k: v for k, v in arrays.items() if k != "format"}, folder, layout=layout)


def _cached_images(file: Path) -> dict[str, np.ndarray] | None:
    if not file.is_file():
        return None
    try:
        arrays = read_npz(file)
    except DataError:
        return None
    if str(arrays.get("format", "")) != IMAGE_CACHE_FORMAT or "x_train" not in arrays:
        return None
    return arrays


def _decode_images(folder: str, classes: list[str], files: list[list[Path]]) -> dict[str, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    sizes: dict[tuple[int, int], Path] = {}
    gray = True
    for path in (f for fs in files for f in fs):
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
                gray = gray and image.mode in ("1", "L", "I;16", "I", "F")
        except UnidentifiedImageError:
            raise DataError(f"{path}: not an image file Pillow can read") from None
        if len(sizes) > 1:
            (a, first), (b, _) = list(sizes.items())[:2]
            raise DataError(
                f"{folder}: images differ in size: {first} is {a[0]}x{a[1]}, {path} is {b[0]}x{b[1]}; "
                "an image folder's images share one size"
            )
    pixels, labels = [], []
    for label, class_files in enumerate(files):
        for path in class_files:
            with Image.open(path) as image:
                pixels.append(np.asarray(image.convert("L" if gray else "RGB"), dtype=np.uint8))
            labels.append(label)
    return {
        "x_train": np.stack(pixels),
        "y_train": np.array(labels, dtype=np.int64),
        "class_names": np.array(classes),
    }


# ---------------------------------------------------------------------------------------------
# Factories


def factory_raw(reference: str, root: str | None, params: Mapping[str, Any], path: str = "data.factory") -> Raw:
    """The arrays a data factory returns, checked; every failure a SpecError at ``path`` naming it."""
    found = factory.load(reference, root, path)
    result = factory.call(found, path, **params)
    arrays = _factory_arrays(result, reference, path)
    try:
        return user_raw(FACTORY, arrays, reference)
    except DataError as exc:
        raise SpecError(str(exc), path=path) from None


def _factory_arrays(result: Any, reference: str, path: str) -> dict[str, np.ndarray]:
    """A factory's result as named numpy arrays (tensors and lists converted), None values left out."""
    get = result.get if isinstance(result, Mapping) else lambda key: getattr(result, key, None)
    if get("x_train") is None or get("y_train") is None:
        raise SpecError(
            f"{reference} returned a {type(result).__name__} without x_train and y_train; expected a dict or an "
            f"object (such as trainlab.data.user.Arrays) with x_train, y_train and optionally "
            "x_test, y_test, class_names, feature_names",
            path=path,
        )
    out = {}
    for key in _ARRAYS:
        value = get(key)
        if value is None:
            continue
        if hasattr(value, "detach"):  # a torch tensor, converted without importing torch here
            value = value.detach().cpu().numpy()
        try:
            out[key] = np.asarray(value) if key not in ("class_names", "feature_names") else np.array(list(value))
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{reference} returned a {key} that is not an array ({exc})", path=path) from None
        if key not in ("class_names", "feature_names") and out[key].dtype == object:
            raise SpecError(f"{reference} returned a {key} that is not an array of numbers", path=path)
    return out
