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

From Python a study may hold the callable itself (:func:`reference_for`). One from an
importable module is named as that module's reference, exactly as a study file would name it.
One defined in a notebook cell or a script lives in ``__main__``, which no other process can
import: it is named ``"__main__:build"`` and known only to the process that defined it (a
registry here), and its SHA-256 is that of its source as :func:`inspect.getsource` reads it,
with the sources of the functions and classes of ``__main__`` it names (:func:`main_source`),
so that editing the cell makes new trials. Anywhere else ``"__main__:..."`` is refused with a
message naming the fix: move the function into a ``.py`` file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

from trainlab.errors import SpecError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_NAME}(?:\.{_NAME})*"
REFERENCE = re.compile(rf"^(?:(?P<module>{_DOTTED})|(?P<file>[^:\x00]+\.py)):(?P<attr>{_DOTTED})$")
"""A factory reference: a dotted module path or a ``.py`` file, a colon, and the callable's name."""
EXAMPLE = '"mypkg.models:build" or "models.py:build"'
MAIN = "__main__"
"""The module of a notebook's cells and of a script run as a program: a factory defined there is
known only to the process that defined it."""

_lock = threading.Lock()
_loaded: dict[tuple[str, str], tuple[str, ModuleType]] = {}
"""(root, module or file) -> (the SHA-256 of its source when imported, the module)."""
_defined: dict[str, Callable[..., Any]] = {}
"""``"__main__:name"`` -> the callable of ``__main__`` a study of this process was given."""


@dataclass(frozen=True)
class Factory:
    """A factory imported: its reference, the callable, its source file and that file's SHA-256."""

    reference: str
    function: Callable[..., Any]
    file: Path
    sha256: str

    @property
    def source(self) -> str:
        """Where its source is, as a message names it."""
        if in_process(self.reference):
            return f"its source (defined in {MAIN}, {self.file})"
        return f"its source file {self.file}"


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
    if target == MAIN:
        return _defined_here(reference, path)
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


def in_process(reference: str) -> bool:
    """Whether ``reference`` names a callable of ``__main__`` (a notebook's or a script's), which
    only the process that defined it knows."""
    return reference.startswith(MAIN + ":")


def reference_for(function: Any, path: str) -> tuple[str, str | None]:
    """The reference a study names the Python callable ``function`` by, and the folder it is
    imported from (its ``root``).

    A function or class of an importable module is ``"module:name"``, imported from the folder
    that holds its top-level package: a study file naming it gives the same trials. One of
    ``__main__`` is ``"__main__:name"``, with no folder: it is registered in this process, and
    its source must be readable (see :func:`main_source`). Anything else (a lambda, a function
    defined inside another, a callable object) is a SpecError at ``path``.
    """
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None)
    if not callable(function) or not isinstance(module, str) or not isinstance(name, str):
        raise SpecError(f"expected a factory reference like {EXAMPLE} or a function, got {function!r}", path=path)
    if not re.fullmatch(_DOTTED, name):
        raise SpecError(
            f"{module}:{name} cannot be named by a study: give a function or class defined at the top level of a "
            "module, a notebook cell or a script (not a lambda, nor one defined inside a function)",
            path=path,
        )
    reference = f"{module}:{name}"
    if module == MAIN:
        main_source(function, reference, path)  # a source that cannot be read is refused now
        with _lock:
            _defined[reference] = function
        return reference, None
    return reference, _root_of(module, reference, path)


def _root_of(name: str, reference: str, path: str) -> str:
    """The folder from which the imported module ``name`` is imported again by its name."""
    file = getattr(sys.modules.get(name), "__file__", None)
    if not file:
        raise SpecError(f"{reference}: module {name} has no source file to identify it by", path=path)
    file_path = Path(file).resolve()
    root = file_path.parent
    for _ in range(name.count(".") + (file_path.name == "__init__.py")):
        root = root.parent
    module_path = root.joinpath(*name.split("."))
    if file_path not in (module_path.with_name(module_path.name + ".py"), module_path / "__init__.py"):
        raise SpecError(
            f"{reference}: {file_path} cannot be imported again as {name}; name it by its file instead: "
            f"'{file_path}:{reference.partition(':')[2]}'",
            path=path,
        )
    return str(root)


def main_source(function: Any, reference: str, path: str) -> str:
    """The source that identifies a callable of ``__main__``: its own, then that of each function
    and class of ``__main__`` it names, and they name, in the order first named.

    A function's source is what :func:`inspect.getsource` reads (a notebook cell's code is kept
    in a file of its own); a class's, where Python cannot read it (a notebook's), is its header
    and its methods'. Values it names (a constant, a module) are not followed: give those as
    params. A source that cannot be read is a SpecError at ``path``.
    """
    parts: list[str] = []
    seen: set[int] = set()
    pending = [function]
    while pending:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        text, functions = _own_source(item, reference, path)
        parts.append(text)
        if isinstance(item, type):
            pending.extend(base for base in item.__bases__ if base.__module__ == MAIN)
        for own in functions:
            for name in _names(own.__code__):
                value = own.__globals__.get(name)
                if isinstance(value, (FunctionType, type)) and getattr(value, "__module__", None) == MAIN:
                    pending.append(value)
    return "\n".join(parts)


def _own_source(item: Any, reference: str, path: str) -> tuple[str, list[FunctionType]]:
    """The source of one function or class of ``__main__``, and the functions it is made of."""
    functions = [item] if isinstance(item, FunctionType) else _methods(item)
    try:
        if isinstance(item, type):
            try:
                return inspect.getsource(item), functions
            except (OSError, TypeError):  # a notebook's class: Python 3.11 cannot find its source
                header = f"class {item.__qualname__}({', '.join(b.__qualname__ for b in item.__bases__)}):"
                return "\n".join([header, *(inspect.getsource(f) for f in functions)]), functions
        return inspect.getsource(item), functions
    except (OSError, TypeError) as exc:
        raise SpecError(
            f"{reference}: cannot read the source of {item.__qualname__} ({exc}), which identifies a factory defined "
            f"in {MAIN}: define it in a notebook cell or a script file, or in a module",
            path=path,
        ) from None


def _methods(cls: type) -> list[FunctionType]:
    """The functions a class defines itself (methods, static and class methods, properties)."""
    out: list[FunctionType] = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            out.extend(f for f in (value.fget, value.fset, value.fdel) if isinstance(f, FunctionType))
        elif isinstance(value, FunctionType):
            out.append(value)
    return out


def _names(code: CodeType) -> list[str]:
    """The global names a code object and the code nested in it (functions, comprehensions) read."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names.extend(_names(const))
    return names


def _defined_here(reference: str, path: str) -> Factory:
    """The callable of ``__main__`` that a study of this process was given, and its source's SHA-256."""
    with _lock:
        function = _defined.get(reference)
    if function is None:
        raise SpecError(
            f"{reference} is a function defined in a notebook or a script ({MAIN}), which only the process that "
            "defined it can run; run this there, or move the function into a .py file, import it from there and pass "
            "it as before (any process can then import it; its trials are new ones)",
            path=path,
        )
    text = main_source(function, reference, path)
    try:
        file = Path(inspect.getsourcefile(function) or MAIN)
    except TypeError:  # a notebook's class
        file = Path(MAIN)
    return Factory(reference, function, file, hashlib.sha256(text.encode()).hexdigest())


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
