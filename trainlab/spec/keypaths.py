"""Key paths into a trial's tables, and how a variant's overrides change its base.

A key path (``model.layers[1].activation``) names one setting of a trial; :func:`set_path`
sets it, :func:`merge` applies a variant's overrides (whole values, then key paths) to its
base. Grid and search keys are key paths or ``edit.NAME`` (:func:`point_key`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from trainlab import edits
from trainlab.errors import SpecError
from trainlab.registry import join
from trainlab.spec.sections import TRIAL_KEYS

_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")

MERGED_TABLES = ("data", "model", "train")
"""The trial tables an override merges into the base's key by key (one level: each key given
replaces the base's value of that key whole). ``optimizer``, given whole, replaces the base's."""
NAMED_PARTS = {
    ("optimizer",): "optimizer",
    ("model", "activation"): "activation",
    ("model", "kernel_initializer"): "initializer",
}
"""Where an override may give a named part (a name, or a table with ``name``) at the top of a
trial table; a table there is a complete config, so it must say which one it is."""


def is_key_path(key: str) -> bool:
    """Whether an override's key is a key path (it holds a dot or an index), not a table's name."""
    return "." in key or "[" in key


def parse_path(key: str, where: str) -> list[str | int]:
    """``model.layers[1].activation`` or ``model.layers.1.activation`` -> ["model", "layers", 1, "activation"]."""
    parts: list[str | int] = []
    for chunk in key.split("."):
        pos = 0
        while pos < len(chunk):
            m = _PATH_PART.match(chunk, pos)
            if not m or m.end() == pos:
                raise SpecError(f"not a key path: {key!r} (write keys like model.layers[1].activation)", path=where)
            parts.append(m.group(1) if m.group(1) else int(m.group(2) or m.group(3)))
            pos = m.end()
    if not parts or not isinstance(parts[0], str) or parts[0] not in TRIAL_KEYS:
        raise SpecError(
            f"a key path starts with one of {', '.join(TRIAL_KEYS)}: {key!r}",
            path=where,
            allowed=TRIAL_KEYS,
            got=str(parts[0]) if parts else key,
        )
    return parts


def point_key(key: str, where: str) -> None:
    """A grid or search key: a key path into the trial tables, or ``edit.NAME`` (an edit's value)."""
    if key.startswith("edit."):
        if key[5:] not in edits.KEYS:
            raise SpecError(f"unknown edit {key[5:]!r}", path=where, allowed=edits.KEYS, got=key[5:])
        return
    parse_path(key, where)


def get_path(tree: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key path in ``tree`` (a resolved spec), or None where there is none."""
    node: Any = tree
    for part in parse_path(key, key):
        if isinstance(part, int) and isinstance(node, list) and -len(node) <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    return node


def set_path(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``value`` at a dotted key path in ``tree``: that one setting, whole; nothing else changes.

    A name on the way becomes a table (``optimizer = "sgd"`` then ``"optimizer.momentum" = 0.9``
    is ``{ name = "sgd", momentum = 0.9 }``); a missing table (or one set to nothing) is created (an
    unknown key is then refused when the spec is resolved, with the allowed keys). A list on the
    way must exist: a path into a list that is not there names the keys that are.
    """
    parts = parse_path(key, where)
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            node = node[_index(node, part, key, where)]
            continue
        if not isinstance(node, dict):
            raise SpecError(f"{key!r}: {part!r} cannot be inside a list; index it with [i]", path=where)
        if isinstance(node.get(part), str) and isinstance(nxt, str):
            node[part] = {"name": node[part]}
        if node.get(part) is None:
            if isinstance(nxt, int):
                raise SpecError(
                    f"{key!r}: there is no list {part!r} to index", path=where, allowed=[str(k) for k in node], got=part
                )
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise SpecError(f"{key!r}: {part!r} holds a value, not a table", path=where)
    last = parts[-1]
    if isinstance(last, int):
        node[_index(node, last, key, where)] = copy.deepcopy(value)
    else:
        if not isinstance(node, dict):
            raise SpecError(f"{key!r}: cannot set {last!r} inside a list", path=where)
        node[last] = copy.deepcopy(value)


def _index(node: Any, index: int, key: str, where: str) -> int:
    """``index`` if ``node`` is a list that has it, else a SpecError saying which indices exist."""
    if not isinstance(node, list):
        raise SpecError(
            f"{key!r}: [{index}] indexes a list, but this is a table",
            path=where,
            allowed=[str(k) for k in node] if isinstance(node, Mapping) else None,
        )
    if not -len(node) <= index < len(node):
        have = f"indices 0..{len(node) - 1}" if node else "no items"
        raise SpecError(f"{key!r}: index {index} is out of range (the list has {have})", path=where)
    return index


def merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``override`` applied, as a variant changes its base.

    ``[data]``, ``[model]`` and ``[train]`` merge one level: each key given replaces the base's
    value of that key whole, and keys not given keep the base's. Every value given is complete:
    ``optimizer = { name = "sgd", momentum = 0.9 }`` (or an activation, an initializer, a split,
    an early stopping table) leaves out what takes the registry's (Keras') default, never the
    base's value, so the name form and the table form of one optimizer mean the same. Keys
    holding dots or ``[i]`` are key paths: they change that one setting of the result, and are
    applied after the whole values, whatever their order in the file.
    """
    out = copy.deepcopy(dict(base))
    paths = {key: value for key, value in override.items() if is_key_path(key)}
    for key, value in override.items():
        if key in paths:
            continue
        old = out.get(key)
        if key in MERGED_TABLES and isinstance(old, Mapping) and isinstance(value, Mapping):
            for inner, item in value.items():
                _check_named(item, (key, inner), join(where, key))
            out[key] = {**copy.deepcopy(dict(old)), **copy.deepcopy(dict(value))}
        else:
            _check_named(value, (key,), where)
            out[key] = copy.deepcopy(value)
    for key, value in paths.items():
        set_path(out, key, value, join(where, key))
    return out


def _check_named(value: Any, at: tuple[str, ...], where: str) -> None:
    """Refuse a table without ``name`` where an override gives a named part whole: it would not
    say which one it is (TOML reads ``optimizer.momentum = 0.9`` unquoted as such a table)."""
    kind = NAMED_PARTS.get(at)
    if kind is None or not isinstance(value, Mapping) or "name" in value:
        return
    path = ".".join(at)
    example = next(iter(value), "learning_rate")
    raise SpecError(
        f"an {kind} table given in a variant is a complete config and needs its 'name'; to change one "
        f'setting of the base\'s {kind}, write the key path in quotes: "{path}.{example}" = ...',
        path=join(where, at[-1]),
        allowed=["name"],
    )
