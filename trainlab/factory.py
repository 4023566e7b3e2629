"""A user's own code, named by a study: ``"mypkg.models:build"`` or ``"models.py:build"``.

A study file runs no code of its own. Where it names a factory (``[model] factory`` or
``[data] factory``), trainlab imports that one module and calls that one callable, nothing else:

* ``"package.module:name"`` imports the module with the study file's folder (``root``) first on
  the import path, so a ``mypkg/`` folder beside the study is found, then an installed package;
* ``"path/to/file.py:name"`` loads that file, relative to ``root``, as a module of its own.

The callable may be an attribute path (``"mypkg.models:Builders.small"``). Every reference is
checked against :data:`REFERENCE` before anything is imported, so a study cannot make trainlab
import a name that is not a plain module path or file.

A factory's identity includes :func:`source_sha256`, the SHA-256 of its source file, so that
editing the file makes new trials. A module imported earlier in this process whose file has
changed since is imported again, so a notebook that edits its factory gets the new code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from trainlab.errors import SpecError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_NAME}(?:\.{_NAME})*"
REFERENCE = re.compile(rf"^(?:(?P<module>{_DOTTED})|(?P<file>[^:\x00]+\.py)):(?P<attr>{_DOTTED})$")
"""A factory reference: a dotted module path or a ``.py`` file, a colon, and the callable's name."""
EXAMPLE = '"mypkg.models:build" or "models.py:build"'

_lock = threading.Lock()
_loaded: dict[tuple[str, str], tuple[str, ModuleType]] = {}
"""(root, module or file) -> (the SHA-256 of its source when imported, the module)."""


@dataclass(frozen=True)
class Factory:
    """A factory imported: its reference, the callable, its source file and that file's SHA-256."""

    reference: str
    function: Callable[..., Any]
    file: Path
    sha256: str


def check_reference(reference: Any, path: str) -> str:
    """``reference`` if it has the form of a factory reference, else a SpecError at ``path``."""
    if not isinstance(reference, str) or not REFERENCE.match(reference):
        raise SpecError(
            f"expected a factory reference like {EXAMPLE} (a module path or a .py file, a colon, the callable's "
            f"name), got {reference!r}",
            path=path,
        )
    return reference


def file_sha256(file: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(file.read_bytes()).hexdigest()


def load(reference: Any, root: str | None, path: str) -> Factory:
    """Import the callable ``reference`` names, ``root`` (the study's folder) first on the path.

    Every failure is a one-line SpecError at ``path`` naming the reference: a malformed
    reference, a module or file that does not import (with the exception it raised), a name the
    module does not have, or one that is not callable.
    """
    reference = check_reference(reference, path)
    target, _, attr = reference.rpartition(":")
    module = _module(target, root, reference, path)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise SpecError(f"{reference}: {target} has no attribute {part!r}", path=path)
        value = getattr(value, part)
    if not callable(value):
        raise SpecError(f"{reference}: expected a callable, {attr} is a {type(value).__name__}", path=path)
    file = Path(getattr(module, "__file__", "") or "")
    if not file.is_file():
        raise SpecError(f"{reference}: {target} has no source file to identify it by", path=path)
    return Factory(reference, value, file, file_sha256(file))


def call(factory: Factory, path: str, *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``; any exception it raises becomes a one-line SpecError at ``path``."""
    try:
        return factory.function(*args, **kwargs)
    except Exception as exc:  # the user's code may raise anything
        raise SpecError(f"{factory.reference} raised {_one_line(exc)}", path=path) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _module(target: str, root: str | None, reference: str, path: str) -> ModuleType:
    """The module of ``target`` (a dotted path or a .py file), imported again if its file changed."""
    key = (root or "", target)
    with _lock:
        cached = _loaded.get(key)
        if cached is not None and _source_sha256(cached[1]) == cached[0]:
            return cached[1]
        try:
            if target.endswith(".py"):
                module = _import_file(target, root)
            else:
                module = _import_module(target, root, stale=cached is not None)
        except SpecError as exc:
            raise SpecError(f"{reference}: {exc.reason}", path=path) from None
        except Exception as exc:  # importing runs the user's module, which may raise anything
            raise SpecError(f"{reference} does not import: {_one_line(exc)}", path=path) from None
        _loaded[key] = (_source_sha256(module), module)
        return module


def _source_sha256(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    return file_sha256(Path(file)) if file and Path(file).is_file() else ""


def _import_file(target: str, root: str | None) -> ModuleType:
    """The .py file ``target`` (relative to ``root``) executed as a module named after its path."""
    file = Path(target)
    if not file.is_absolute():
        file = Path(root or ".") / file
    file = file.resolve()
    if not file.is_file():
        raise SpecError(f"no such file {file}")
    name = "trainlab_factory_" + hashlib.sha256(str(file).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot load {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(target: str, root: str | None, *, stale: bool) -> ModuleType:
    """Import ``target`` with ``root`` first on ``sys.path`` (it stays on it, so that the module
    can import its neighbours later). A module imported before is imported again where its file
    changed (``stale``) or lies in ``root`` (a notebook may have edited it since). One imported
    from elsewhere is forgotten when ``root`` holds a package of that name (so that a process
    imports what a fresh one would); any other, as Python does, is the one already imported."""
    if root:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    importlib.invalidate_caches()
    existing = sys.modules.get(target)
    top = target.split(".")[0]
    if existing is not None and root and not _within(existing, root) and _has_top(root, top):
        # The study's folder holds its own package of that name, which a fresh process would
        # import (its folder comes first on the path): forget the other one, as a fresh process has.
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        existing = None
    try:
        if existing is None:
            return importlib.import_module(target)
        if stale or (root and _within(existing, root)):
            return importlib.reload(existing)
        return existing
    except ModuleNotFoundError as exc:
        where = f"{root} or the installed packages" if root else "the installed packages"
        raise SpecError(f"no module named {exc.name!r} in {where}") from None


def _has_top(root: str, top: str) -> bool:
    """Whether ``root`` holds the top-level package or module ``top``."""
    return (Path(root) / top).is_dir() or (Path(root) / f"{top}.py").is_file()


def _within(module: ModuleType, root: str) -> bool:
    file = getattr(module, "__file__", None)
    return bool(file) and Path(file).resolve().is_relative_to(Path(root).resolve())
