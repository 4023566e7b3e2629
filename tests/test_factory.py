"""Importing the factory a study names: the forms of a reference, the study's folder first on the
path, a module imported again once its file changes, and a one-line error for each failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from trainlab import factory
from trainlab.errors import SpecError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path / "facpkg_a" / "__init__.py", "")
    write(
        tmp_path / "facpkg_a" / "make.py",
        "def one():\n    return 1\n\nclass Factories:\n    @staticmethod\n    def small():\n        return 'small'\n",
    )
    write(tmp_path / "loose.py", "def two():\n    return 2\n\nvalue = 3\n")
    return tmp_path


def test_a_module_path_is_imported_from_the_study_folder(root: Path) -> None:
    found = factory.load("facpkg_a.make:one", str(root), "model.factory")
    assert found.function() == 1 and found.file == root / "facpkg_a" / "make.py"
    assert found.sha256 == hashlib.sha256((root / "facpkg_a" / "make.py").read_bytes()).hexdigest()
    assert factory.load("facpkg_a.make:Factories.small", str(root), "x").function() == "small"


def test_a_file_is_loaded_relative_to_the_study_folder(root: Path) -> None:
    assert factory.load("loose.py:two", str(root), "x").function() == 2


def test_an_edited_module_is_imported_again(root: Path) -> None:
    assert factory.load("facpkg_a.make:one", str(root), "x").function() == 1
    write(root / "facpkg_a" / "make.py", "def one():\n    return 'edited'\n")
    found = factory.load("facpkg_a.make:one", str(root), "x")
    assert found.function() == "edited"
    assert found.sha256 == hashlib.sha256(b"def one():\n    return 'edited'\n").hexdigest()
    write(root / "loose.py", "def two():\n    return 'also edited'\n")
    assert factory.load("loose.py:two", str(root), "x").function() == "also edited"


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("facpkg_a.make", "expected a factory reference like"),
        ("facpkg_a.make:one()", "expected a factory reference like"),
        ("import os:x", "expected a factory reference like"),
        (3, "expected a factory reference like"),
        ("facpkg_a.absent:one", "facpkg_a.absent:one: no module named 'facpkg_a.absent'"),
        ("facpkg_a.make:nine", "facpkg_a.make has no attribute 'nine'"),
        ("loose.py:value", "loose.py:value: expected a callable, value is a int"),
        ("missing.py:two", "missing.py:two: no such file"),
    ],
)
def test_each_failure_is_one_line_at_the_key(root: Path, reference: object, words: str) -> None:
    with pytest.raises(SpecError) as info:
        factory.load(reference, str(root), "model.factory")
    assert info.value.path == "model.factory" and words in info.value.reason and "\n" not in str(info.value)


def test_a_call_that_raises_is_one_line_naming_the_factory(root: Path) -> None:
    write(root / "bad.py", "def f(n):\n    raise KeyError(n)\n")
    found = factory.load("bad.py:f", str(root), "data.factory")
    with pytest.raises(SpecError, match=r"^study: data.factory: bad.py:f raised KeyError: 7$"):
        factory.call(found, "data.factory", 7)
