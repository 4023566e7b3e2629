"""Where data files come from: the user's cache dir, copies installed packages carry, downloads.

This module knows about places and bytes, not about what the bytes mean: decoding lives in
``formats`` and the facts each data set must satisfy in ``datasets``.

Environment:
  ``TRAINLAB_DATA``     the cache dir (default ``~/.cache/trainlab``)
  ``TRAINLAB_MIRROR``   a base URL replacing every canonical download URL; files are fetched
                        from ``{mirror}/{dataset}/{filename}`` (MNIST and Fashion-MNIST share
                        file names, hence the per-data-set folder)
  ``TRAINLAB_OFFLINE``  set to 1 to never try a download
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from trainlab.errors import DataError

ENV_DATA = "TRAINLAB_DATA"
ENV_MIRROR = "TRAINLAB_MIRROR"
ENV_OFFLINE = "TRAINLAB_OFFLINE"

DOWNLOAD_TIMEOUT_S = 30.0
_log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The directory holding decoded ``.npz`` caches and user-provided files.

    ``$TRAINLAB_DATA`` if set, else ``~/.cache/trainlab``. Not created here: readers must not
    need write access, writers create it when they first write.
    """
    configured = os.environ.get(ENV_DATA, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "trainlab"


def mirror() -> str | None:
    """The download base URL override from ``$TRAINLAB_MIRROR``, if any."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    return value.rstrip("/") or None


def offline() -> bool:
    """Whether ``$TRAINLAB_OFFLINE`` forbids downloads."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def package_file(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed top-level ``package``, located without importing it.

    ``importlib.util.find_spec`` on a top-level name only consults the import path, so a
    package that is slow or broken to import (or pulls in torch) costs nothing here.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes (``md5`` or ``sha256``), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a compressed ``.npz`` so that readers see either no file or the whole file.

    The data goes to a temporary file in the same directory, then ``os.replace`` swaps it in;
    two processes caching the same data set at once both succeed and one copy wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            members: dict[str, Any] = dict(arrays)
            np.savez_compressed(out, **members)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp creates 0600; the cache is ordinary shared data
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read eagerly and without unpickling anything.

    Raises DataError naming the file when it cannot be read (truncated, not a zip, a CRC
    mismatch inside, or an array that would need pickle).
    """
    try:
        # Opened here, not by np.load: np.load leaves its file open when the zip is damaged.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # zipfile, zlib and numpy each raise their own kinds
        raise DataError(f"{path}: cannot be read as .npz ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class RemoteFile:
    """One file of a canonical download: its name, the URLs that serve it, and its checksum."""

    filename: str
    urls: tuple[str, ...]
    algorithm: str  # "md5" or "sha256", whichever the publisher gives
    digest: str

    def candidates(self, dataset: str, base: str | None) -> tuple[str, ...]:
        """The URLs to try in order: the mirror alone when one is configured."""
        if base:
            return (f"{base}/{dataset}/{self.filename}",)
        return self.urls


def fetch(
    files: tuple[RemoteFile, ...],
    dest: Path,
    *,
    dataset: str,
    base: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> dict[str, Path]:
    """Download every file into ``dest``, verifying each checksum; returns filename -> path.

    Each file's URLs are tried in order until one yields the right bytes. A file whose
    checksum does not match is deleted and never returned. When some file cannot be
    obtained, DataError lists every URL tried and why it failed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for remote in files:
        attempts: list[str] = []
        target = dest / remote.filename
        for url in remote.candidates(dataset, base):
            try:
                _download(url, target, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                target.unlink(missing_ok=True)
                attempts.append(f"{url}: {_reason(exc)}")
                continue
            actual = file_digest(target, remote.algorithm)
            if actual != remote.digest:
                target.unlink(missing_ok=True)
                attempts.append(
                    f"{url}: {remote.algorithm} mismatch (got {actual}, expected {remote.digest});"
                    " the file was refused and deleted"
                )
                continue
            found[remote.filename] = target
            break
        else:
            raise DataError(f"could not download {remote.filename}:\n  " + "\n  ".join(attempts))
    return found


def _download(url: str, target: Path, *, timeout: float) -> None:
    """Stream ``url`` into ``target``."""
    _log.info("downloading %s", url)
    request = urllib.request.Request(url, headers={"User-Agent": "trainlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
        _copy(response, out)


def _copy(source: IO[bytes], out: IO[bytes]) -> None:
    while chunk := source.read(_CHUNK):
        out.write(chunk)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}"
