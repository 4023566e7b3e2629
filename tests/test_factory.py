"""Importing the factory a study names: the forms of a reference, the study's folder first on the
path, a module imported again once its file changes, and a one-line error for each failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import run_as_cell

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


# --- a Python callable as a factory: named by its module, or known to this process (__main__) ---------


BLOCK = """class Block(Base):
    def __init__(self, width):
        self.width = width

    def forward(self, x):
        return helper(x) + self.width
"""
HELPER = "def helper(x):\n    return x * 2\n"
BUILD = "def build(input_shape, outputs, width=4):\n    return Block(width)\n"
CELL = "class Base:\n    pass\n\n\n" + BLOCK + "\n\n" + HELPER + "\n\n" + BUILD


def test_a_module_function_is_named_by_its_module_and_imported_from_its_package_folder(root: Path) -> None:
    one = factory.load("facpkg_a.make:one", str(root), "x").function
    assert factory.reference_for(one, "model.factory") == ("facpkg_a.make:one", str(root.resolve()))
    small = factory.load("facpkg_a.make:Factories.small", str(root), "x").function
    assert factory.reference_for(small, "m")[0] == "facpkg_a.make:Factories.small"


def test_a_notebook_function_is_identified_by_its_source_and_the_main_code_it_names(tmp_path: Path) -> None:
    namespace = run_as_cell(tmp_path, CELL)
    reference, root = factory.reference_for(namespace["build"], "model.factory")
    assert (reference, root) == ("__main__:build", None)
    found = factory.load(reference, None, "model.factory")
    assert found.function is namespace["build"] and factory.in_process(reference)
    # build, then the class it names (Python cannot read a class's source from a cell: its header
    # and its methods), then the class's base and the function its methods name
    init = "    def __init__(self, width):\n        self.width = width\n"
    forward = "    def forward(self, x):\n        return helper(x) + self.width\n"
    block = "\n".join(["class Block(Base):", init, forward])
    text = "\n".join([BUILD, block, "class Base(object):", HELPER])
    assert factory.main_source(namespace["build"], reference, "x") == text
    assert found.sha256 == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.replace("Block(width)", "Block(width + 1)"),  # the function itself
        lambda c: c.replace("helper(x) + self.width", "helper(x) - self.width"),  # a class it names
        lambda c: c.replace("x * 2", "x * 3"),  # a function that class names
    ],
)
def test_editing_a_cell_the_factory_draws_on_changes_its_sha256(tmp_path: Path, edit: object) -> None:
    before = factory.load(factory.reference_for(run_as_cell(tmp_path, CELL)["build"], "m")[0], None, "m").sha256
    edited = edit(CELL)  # type: ignore[operator]
    assert edited != CELL
    after = factory.load(
        factory.reference_for(run_as_cell(tmp_path, edited, "cell2.py")["build"], "m")[0], None, "m"
    ).sha256
    assert after != before
    again = factory.load(
        factory.reference_for(run_as_cell(tmp_path, CELL, "cell3.py")["build"], "m")[0], None, "m"
    ).sha256
    assert again == before  # the same code in another cell (a new kernel): the same identity


def test_values_a_notebook_function_reads_are_not_its_identity(tmp_path: Path) -> None:
    one = run_as_cell(tmp_path, "WIDTH = 3\n\ndef build(shape, outputs):\n    return WIDTH\n")
    first = factory.load(factory.reference_for(one["build"], "m")[0], None, "m").sha256
    two = run_as_cell(tmp_path, "WIDTH = 5\n\ndef build(shape, outputs):\n    return WIDTH\n", "other.py")
    assert factory.load(factory.reference_for(two["build"], "m")[0], None, "m").sha256 == first


@pytest.mark.parametrize(
    ("source", "name", "words"),
    [
        ("build = lambda shape, outputs: None\n", "build", "__main__:<lambda> cannot be named by a study"),
        (
            "def outer():\n    def build(s, o):\n        return None\n    return build\nbuild = outer()\n",
            "build",
            "__main__:outer.<locals>.build cannot be named by a study",
        ),
        ("import functools\nbuild = functools.partial(print, 1)\n", "build", "expected a factory reference like"),
    ],
)
def test_a_callable_a_study_cannot_name_is_refused_at_the_key(
    tmp_path: Path, source: str, name: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        factory.reference_for(run_as_cell(tmp_path, source)[name], "model.factory")
    assert info.value.path == "model.factory" and words in info.value.reason and "\n" not in str(info.value)


def test_a_function_without_readable_source_is_refused(tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def build(shape, outputs):\n    return None\n", namespace)  # as `python -c` defines it: no file
    with pytest.raises(SpecError, match=r"model.factory: __main__:build: cannot read the source of build"):
        factory.reference_for(namespace["build"], "model.factory")


def test_a_notebook_reference_this_process_has_not_been_given_names_the_fix() -> None:
    with pytest.raises(SpecError) as info:
        factory.load("__main__:never_given", None, "model.factory")
    assert "defined in a notebook or a script (__main__), which only the process that defined it" in info.value.reason
    assert "move the function into a .py file" in info.value.reason
