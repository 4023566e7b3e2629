"""Name-or-table -> resolved config, as Keras' ``get()`` does, for every table of named things.

A study writes ``activation = "relu"`` or ``activation = { name = "leaky_relu", negative_slope = 0.5 }``;
:meth:`Registry.resolve` turns either into a complete, JSON-able dict with every parameter
explicit (so the trial hash changes when a default would), and refuses unknown names, unknown
parameters and wrongly typed values with the key path, the allowed values and the nearest match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainlab.errors import SpecError

Check = Callable[[Any], str | None]
"""A value check: returns None when the value is fine, else what is wrong with it."""


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"

    return check


@dataclass(frozen=True)
class Param:
    """One parameter of a registered thing: its default, accepted types and an optional check."""

    default: Any
    types: tuple[type, ...]
    check: Check | None = None
    required: bool = False


def param(default: Any, *types: type, check: Check | None = None) -> Param:
    """A parameter with a default; ``float`` accepts ints too."""
    return Param(default, types or (type(default),), check)


def required(*types: type, check: Check | None = None) -> Param:
    """A parameter the user must give."""
    return Param(None, types, check, required=True)


def check_value(value: Any, spec: Param, path: str) -> Any:
    """Type-check ``value`` against ``spec`` and return it normalised (ints widened to float)."""
    types = spec.types
    if value is None and type(None) in types:
        return None
    if isinstance(value, bool) and bool not in types:
        raise SpecError(f"expected {_type_names(types)}, got {value!r}", path=path)
    if isinstance(value, int) and not isinstance(value, bool) and float in types and int not in types:
        value = float(value)
    if not isinstance(value, types):
        raise SpecError(f"expected {_type_names(types)}, got {value!r}", path=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", path=path)
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise SpecError(f"{problem}, got {value!r}", path=path)
    return value


def check_params(
    given: Mapping[str, Any], params: Mapping[str, Param], path: str, *, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Validate ``given`` against ``params``: every key known, every value typed; defaults filled."""
    for key in given:
        if key not in params and key not in skip:
            if not params:
                raise SpecError(f"unknown key {key!r}: this takes no parameters", path=join(path, key))
            raise SpecError(f"unknown key {key!r}", path=join(path, key), allowed=params.keys(), got=key)
    out: dict[str, Any] = {}
    for key, spec in params.items():
        if key in given:
            out[key] = check_value(given[key], spec, join(path, key))
        elif spec.required:
            raise SpecError("is required", path=join(path, key))
        else:
            out[key] = spec.default
    return out


@dataclass(frozen=True)
class Entry:
    """A registered thing: its parameters and what builds it from the resolved config."""

    params: Mapping[str, Param] = field(default_factory=dict)
    build: Callable[..., Any] | None = None
    aliases: tuple[str, ...] = ()
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Other accepted names of parameters -> the name in ``params`` (a parameter Keras renamed)."""


def rename_params(given: Mapping[str, Any], renamed: Mapping[str, str], path: str) -> dict[str, Any]:
    """``given`` with every other name of a parameter replaced by its name in the registry.

    Giving a parameter under both names is refused, naming both: which one was meant is unknown.
    """
    out = dict(given)
    for other, name in renamed.items():
        if other in out:
            if name in out:
                raise SpecError(
                    f"'{name}' and '{other}' are two names for one parameter; give only one",
                    path=join(path, other),
                    allowed=[name, other],
                )
            out[name] = out.pop(other)
    return out


def split_name(config: Any, path: str, kind: str, allowed: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """A name, or a table with ``name`` and parameters -> (the name as written, the other keys).

    Refuses anything else with the key path: a number, a table without a name, a name that is
    not a string.
    """
    if isinstance(config, str):
        return config, {}
    if not isinstance(config, Mapping):
        raise SpecError(f"expected {_a(kind)} name or a table with 'name', got {config!r}", path=path)
    if "name" not in config:
        raise SpecError(
            f"needs a name: the {kind} table must say which one, e.g. name = ...",
            path=join(path, "name"),
            allowed=allowed,
        )
    name = config["name"]
    if not isinstance(name, str):
        raise SpecError(f"expected {_a(kind)} name, got {name!r}", path=join(path, "name"), allowed=allowed)
    return name, {k: v for k, v in config.items() if k != "name"}


class Registry:
    """A table of named things of one kind (activations, losses, layers...)."""

    def __init__(self, kind: str, entries: Mapping[str, Entry]) -> None:
        self.kind = kind
        self.entries = dict(entries)
        self._names: dict[str, str] = {}
        for name, entry in self.entries.items():
            for alias in (name, *entry.aliases):
                self._names[_fold(alias)] = name

    def names(self) -> list[str]:
        return sorted(self.entries)

    def canonical(self, name: str, path: str) -> str:
        """The registered name for ``name`` (case and ``_`` insensitive), or a SpecError."""
        found = self._names.get(_fold(name))
        if found is None:
            raise SpecError(f"unknown {self.kind} {name!r}", path=path, allowed=self.names(), got=name)
        return found

    def resolve(self, config: Any, path: str) -> dict[str, Any]:
        """A complete config ``{"name": ..., **params}`` from a name or a table."""
        written, rest = split_name(config, path, self.kind, self.names())
        name = self.canonical(written, path if isinstance(config, str) else join(path, "name"))
        entry = self.entries[name]
        given = rename_params(rest, entry.renamed, path)
        if given and not entry.params:
            key = next(iter(given))
            raise SpecError(f"{name} takes no parameters, got {key!r}", path=join(path, key))
        return {"name": name, **check_params(given, entry.params, path)}

    def build(self, config: Mapping[str, Any]) -> Any:
        """Build the object a resolved config describes."""
        entry = self.entries[config["name"]]
        assert entry.build is not None, f"{self.kind} {config['name']} has no builder"
        return entry.build(**{k: v for k, v in config.items() if k != "name"})


def join(path: str, key: str | int) -> str:
    """``a.b`` + ``c`` -> ``a.b.c``; list indices as ``a.b[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _a(kind: str) -> str:
    """``kind`` after its indefinite article: ``a loss``, ``an optimizer``."""
    return f"{'an' if kind[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {kind}"


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _type_names(types: tuple[type, ...]) -> str:
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        type(None): "nothing",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)
