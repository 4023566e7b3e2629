"""Name-or-table -> complete config, as Keras' ``get()`` does, for every registry in the package.

The registries are found by reading the package's source (every module-level ``NAME = Registry(...)``),
and every test over entries loops over what each registry holds, so a new registry or entry is
covered without a line here. Parameter values are drawn from a small pool by type and checked
like a study's; a required parameter without a value in the pool fails the test that needs it,
naming it. Keras' documented defaults of the entries it defines are pinned by hand.
"""

from __future__ import annotations

import ast
import importlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ROOT

from trainlab.errors import SpecError
from trainlab.registry import Entry, Param, Registry, check_value, join

PATH = "model.layers[0].activation"
"""The key path every resolve here is asked at: errors must name it (and the key below it)."""


def registries_in_source() -> dict[str, Registry]:
    """Every module-level ``NAME = Registry(...)`` of the package, by ``module.NAME``."""
    found: dict[str, Registry] = {}
    for file in sorted((ROOT / "trainlab").rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        module = ".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Registry":
                for target in targets:
                    assert isinstance(target, ast.Name), f"{file}: a registry assigned to {ast.dump(target)}"
                    found[f"{module}.{target.id}"] = getattr(importlib.import_module(module), target.id)
    return found


REGISTRIES = registries_in_source()
ENTRIES = [(r, name) for r, registry in REGISTRIES.items() for name in registry.names()]
"""Every (registry, entry name) pair of the package."""


def entry(registry: str, name: str) -> Entry:
    return REGISTRIES[registry].entries[name]


def defaults(registry: str, name: str) -> dict[str, Any]:
    """The complete config of an entry given by name alone: its name and every parameter's default."""
    return {"name": name, **{key: p.default for key, p in entry(registry, name).params.items()}}


POOL: list[Any] = [2, 3, 0.5, 0.25, 2.0, "relu", "same", True, False, [2, 2], {"name": "relu"}, None]
"""Values tried for a parameter, in order: the first its types and check accept is used."""


def values_for(spec: Param, path: str) -> Iterator[Any]:
    """The pool's values that ``spec`` accepts, each as it is stored (ints widened to floats)."""
    for value in POOL:
        try:
            yield check_value(value, spec, path)
        except SpecError:
            continue


def required_values(registry: str, name: str) -> dict[str, Any]:
    """A value for each required parameter of an entry (the smallest table that resolves)."""
    out = {}
    for key, spec in entry(registry, name).params.items():
        if spec.required:
            value = next(values_for(spec, key), None)
            assert value is not None, f"{registry} {name}: no value in POOL for the required {key!r}; add one"
            out[key] = value
    return out


def resolve(registry: str, config: Any, path: str = PATH) -> dict[str, Any]:
    return REGISTRIES[registry].resolve(config, path)


def refusal(registry: str, config: Any, path: str = PATH) -> SpecError:
    with pytest.raises(SpecError) as info:
        resolve(registry, config, path)
    return info.value


def test_the_source_scan_finds_the_registries_the_package_is_known_to_have() -> None:
    """A guard on the scan itself: were it to find nothing, every test below would pass on nothing."""
    assert {"trainlab.activations.ACTIVATIONS", "trainlab.losses.LOSSES", "trainlab.models.LAYERS"} <= set(REGISTRIES)
    assert all(isinstance(r, Registry) and r.entries for r in REGISTRIES.values())


# ---------------------------------------------------------------------------------------------
# Names -> complete configs


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_every_name_resolves_to_its_complete_config(registry: str, name: str) -> None:
    given = required_values(registry, name)
    expected = {**defaults(registry, name), **given}
    assert list(expected) == ["name", *entry(registry, name).params]
    if not given:
        assert resolve(registry, name) == expected
    assert resolve(registry, {"name": name, **given}) == expected
    assert json.loads(json.dumps(expected)) == expected, "a resolved config is JSON (the trial hash is made of it)"


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_a_resolved_config_resolves_to_itself(registry: str, name: str) -> None:
    """Resolving is idempotent: a stored, resolved config read back is the same config."""
    once = resolve(registry, {"name": name, **required_values(registry, name)})
    assert resolve(registry, once) == once


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_every_spelling_and_alias_of_a_name_resolves_to_it(registry: str, name: str) -> None:
    """Keras' ``get()`` accepts class and function names alike: case, ``_`` and ``-`` are ignored."""
    given = required_values(registry, name)
    expected = resolve(registry, {"name": name, **given})
    for written in (name, *entry(registry, name).aliases):
        for spelling in {
            written,
            written.upper(),
            written.lower(),
            written.replace("_", ""),
            written.replace("_", "-"),
        }:
            assert resolve(registry, {"name": spelling, **given}) == expected, spelling


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_a_table_overrides_each_parameter_and_keeps_every_other_default(registry: str, name: str) -> None:
    base = {**defaults(registry, name), **required_values(registry, name)}
    for key, spec in entry(registry, name).params.items():
        other = next((v for v in values_for(spec, key) if v != base[key]), None)
        if other is None:
            continue  # the pool has no second value this parameter accepts
        table = {**{k: v for k, v in base.items() if k != "name"}, key: other, "name": name}
        assert resolve(registry, table) == {**base, key: other}, key


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_resolving_leaves_the_given_table_as_it_was(registry: str, name: str) -> None:
    table = {"name": name.upper(), **required_values(registry, name)}
    for other, canonical in entry(registry, name).renamed.items():
        table[other] = defaults(registry, name)[canonical]
    kept = json.dumps(table)
    resolve(registry, table)
    assert json.dumps(table) == kept


@pytest.mark.parametrize(("registry", "name"), [(r, n) for r, n in ENTRIES if entry(r, n).renamed])
def test_another_name_of_a_parameter_gives_the_same_config_and_both_are_refused(registry: str, name: str) -> None:
    given = required_values(registry, name)
    for other, canonical in entry(registry, name).renamed.items():
        spec = entry(registry, name).params[canonical]
        value = next(v for v in values_for(spec, canonical) if v != spec.default)
        assert resolve(registry, {"name": name, **given, other: value}) == resolve(
            registry, {"name": name, **given, canonical: value}
        )
        error = refusal(registry, {"name": name, **given, other: value, canonical: value})
        assert (error.path, error.allowed) == (join(PATH, other), sorted([other, canonical]))
        assert f"'{canonical}' and '{other}' are two names for one parameter" in error.reason


@pytest.mark.parametrize(("registry", "name"), [(r, n) for r, n in ENTRIES if entry(r, n).build is not None])
def test_every_entry_with_a_builder_builds_from_its_default_config(registry: str, name: str) -> None:
    config = resolve(registry, {"name": name, **required_values(registry, name)})
    assert REGISTRIES[registry].build(config) is not None


# Keras' documented defaults (keras.io API reference), written out: what a name alone must give.
KERAS_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("trainlab.activations.ACTIVATIONS", "elu"): {"name": "elu", "alpha": 1.0},
    ("trainlab.activations.ACTIVATIONS", "leaky_relu"): {"name": "leaky_relu", "negative_slope": 0.2},
    ("trainlab.activations.ACTIVATIONS", "relu"): {"name": "relu"},
    ("trainlab.losses.LOSSES", "mse"): {"name": "mean_squared_error"},
    ("trainlab.losses.LOSSES", "mae"): {"name": "mean_absolute_error"},
    ("trainlab.models.LAYERS", "Flatten"): {"name": "Flatten"},
    ("trainlab.models.LAYERS", "MaxPool2D"): {
        "name": "MaxPooling2D",
        "pool_size": 2,
        "strides": None,
        "padding": "valid",
    },
    ("trainlab.models.LAYERS", "BatchNormalization"): {
        "name": "BatchNormalization",
        "momentum": 0.99,
        "epsilon": 0.001,
        "center": True,
        "scale": True,
    },
}


@pytest.mark.parametrize(("registry", "name"), KERAS_DEFAULTS)
def test_names_alone_give_keras_defaults(registry: str, name: str) -> None:
    assert resolve(registry, name) == KERAS_DEFAULTS[registry, name]


def test_layers_with_required_parameters_fill_keras_defaults_around_them() -> None:
    layers = "trainlab.models.LAYERS"
    assert resolve(layers, {"name": "Dense", "units": 8}) == {
        "name": "Dense",
        "units": 8,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
    }
    conv = resolve(layers, {"name": "Convolution2D", "filters": 4, "kernel_size": [3, 3]})
    assert (conv["name"], conv["strides"], conv["padding"], conv["activation"]) == ("Conv2D", 1, "valid", "linear")
    assert resolve(layers, {"name": "Dropout", "rate": 0.5}) == {"name": "Dropout", "rate": 0.5}


# ---------------------------------------------------------------------------------------------
# Refusals: the key path, the allowed values and the nearest match


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_a_misspelt_name_lists_the_names_and_suggests_it(registry: str, name: str) -> None:
    names = REGISTRIES[registry].names()
    kind = REGISTRIES[registry].kind
    for config, path in ((f"{name}q", PATH), ({"name": f"{name}q"}, join(PATH, "name"))):
        error = refusal(registry, config)
        assert (error.path, error.reason, error.allowed) == (path, f"unknown {kind} '{name}q'", names)
        assert str(error).endswith(f"did you mean '{name}'?")


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_an_unknown_parameter_lists_the_parameters_and_suggests_the_nearest(registry: str, name: str) -> None:
    given = {"name": name, **required_values(registry, name)}
    params = sorted(entry(registry, name).params)
    if not params:
        error = refusal(registry, {**given, "alpha": 1.0})
        assert (error.path, error.reason, error.allowed) == (
            join(PATH, "alpha"),
            f"{name} takes no parameters, got 'alpha'",
            None,
        )
        return
    for key in params:
        error = refusal(registry, {**given, f"{key}q": 1})
        assert (error.path, error.reason, error.allowed) == (join(PATH, f"{key}q"), f"unknown key '{key}q'", params)
        assert str(error).endswith(f"did you mean '{key}'?")


WRONG_TYPES: list[Any] = ["text", 1.5, 7, True, [1], {"a": 1}]
"""Values of every type a study can hold: each parameter refuses some of them."""


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_a_value_of_the_wrong_type_is_refused_at_its_key(registry: str, name: str) -> None:
    given = {"name": name, **required_values(registry, name)}
    for key, spec in entry(registry, name).params.items():
        for wrong in WRONG_TYPES:
            if type(wrong) in spec.types or (type(wrong) is int and float in spec.types):
                continue  # a value of a type it takes (an integer is a number)
            error = refusal(registry, {**given, key: wrong})
            assert error.path == join(PATH, key)
            assert error.reason.startswith("expected ") and error.reason.endswith(f", got {wrong!r}")


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_a_missing_required_parameter_is_named(registry: str, name: str) -> None:
    given = required_values(registry, name)
    for key in given:
        error = refusal(registry, {"name": name, **{k: v for k, v in given.items() if k != key}})
        assert (error.path, error.reason) == (join(PATH, key), "is required")


@pytest.mark.parametrize("registry", REGISTRIES)
def test_something_that_is_neither_a_name_nor_a_named_table_is_refused(registry: str) -> None:
    kind = REGISTRIES[registry].kind
    article = "an" if kind[0] in "aeiou" else "a"
    names = REGISTRIES[registry].names()
    error = refusal(registry, 3)
    assert (error.path, error.reason) == (PATH, f"expected {article} {kind} name or a table with 'name', got 3")
    error = refusal(registry, {"units": 3})
    assert (error.path, error.allowed) == (join(PATH, "name"), names)
    assert error.reason == f"needs a name: the {kind} table must say which one, e.g. name = ..."
    error = refusal(registry, {"name": 5})
    assert (error.path, error.reason, error.allowed) == (
        join(PATH, "name"),
        f"expected {article} {kind} name, got 5",
        names,
    )


# ---------------------------------------------------------------------------------------------
# Values: Keras' types, widened and checked (hand cases on the activations' parameters)

ACTIVATIONS = "trainlab.activations.ACTIVATIONS"


def test_an_integer_is_a_number_and_is_stored_as_one() -> None:
    resolved = resolve(ACTIVATIONS, {"name": "elu", "alpha": 2})
    assert resolved == {"name": "elu", "alpha": 2.0} and type(resolved["alpha"]) is float


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "expected a number, got True"),
        ("1.0", "expected a number, got '1.0'"),
        (math.inf, "must be a finite number, got inf"),
        (math.nan, "must be a finite number, got nan"),
        (0, "must be > 0, got 0.0"),
        (-1.5, "must be > 0, got -1.5"),
    ],
)
def test_a_bad_number_is_refused_with_what_is_wrong(value: Any, reason: str) -> None:
    error = refusal(ACTIVATIONS, {"name": "elu", "alpha": value})
    assert (error.path, error.reason) == (join(PATH, "alpha"), reason)
    assert str(error) == f"study: {PATH}.alpha: {reason}"


def test_fractions_are_checked_at_both_ends() -> None:
    assert resolve(ACTIVATIONS, {"name": "rrelu", "lower": 0, "upper": 0.5})["lower"] == 0.0
    assert refusal(ACTIVATIONS, {"name": "rrelu", "upper": 1}).reason == "must be in [0, 1), got 1.0"


def test_a_name_in_a_string_is_refused_the_same_way_as_in_a_table_but_at_its_own_path() -> None:
    assert refusal(ACTIVATIONS, "relux").path == PATH
    assert refusal(ACTIVATIONS, {"name": "relux"}).path == f"{PATH}.name"


@pytest.mark.parametrize(
    ("path", "key", "joined"),
    [
        ("", "train", "train"),
        ("train", "epochs", "train.epochs"),
        ("model.layers", 2, "model.layers[2]"),
        ("", 0, "[0]"),
    ],
)
def test_join_writes_key_paths_as_the_errors_show_them(path: str, key: str | int, joined: str) -> None:
    assert join(path, key) == joined
