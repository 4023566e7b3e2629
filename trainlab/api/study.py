"""A study in Python: read from a file or given as tables, checked, and run into a store."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trainlab import factory, spec
from trainlab.api.check import check_lines
from trainlab.api.result import Result
from trainlab.api.run import RunOptions, default_store, run_study
from trainlab.errors import SpecError
from trainlab.spec.study import read_text, toml_tables

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Check:
    """A study checked without training: the lines ``trainlab check`` prints, and the trials
    known before training (a later stage's and a search's come with results)."""

    study: str
    lines: tuple[str, ...]
    known: tuple[spec.Trial, ...]

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython shows a check as ``trainlab check`` prints it."""
        printer.text(str(self))

    def trials(self) -> pd.DataFrame:
        """One row per trial known before training: ``variant``, ``seed``, ``hash`` and the
        variant's ``params`` (what it changes from the base trial, by key path)."""
        import pandas as pd

        rows = [{"variant": t.label, "seed": t.seed, "hash": t.hash, "params": dict(t.params)} for t in self.known]
        return pd.DataFrame(rows, columns=["variant", "seed", "hash", "params"])


class Study:
    """A validated study (docs/STUDY-FORMAT.md): every key checked, every trial it knows resolved.

    Make one with :meth:`load` (a study file) or :meth:`from_dict` (the same tables in Python);
    both refuse a mistake with the :class:`~trainlab.errors.SpecError` a study file gets.
    ``overrides`` sets key paths on the tables before they are checked
    (``{"train.epochs": 1, "data.train_limit": 2000}``), as a ``[[compare]]`` entry sets them.

    Where the tables name a factory, they may hold the function itself (``"factory": build``;
    :func:`named_factories`): one of a module is named by its module, as a study file names it;
    one defined in a notebook cell or a script (``__main__``) is known to this process alone, so
    its study trains here, in one process (see :func:`trainlab.api.run.run_study`).
    """

    def __init__(self, validated: spec.Study) -> None:
        self.spec = validated
        """The validated study, as the rest of trainlab takes it."""

    @classmethod
    def load(cls, path: str | Path, *, smoke: bool = False, overrides: Mapping[str, Any] | None = None) -> Study:
        """The study file ``path``; errors name it. ``smoke``: its smoke run, as ``trainlab run --smoke``."""
        path = Path(path)
        if not overrides:
            return cls(spec.load(path, smoke=smoke))
        text = read_text(path)
        try:
            tables = named_factories(_overridden(toml_tables(text), overrides))
            return cls(
                spec.from_dict(tables, source=str(path), default_name=path.stem, base_dir=path.parent, smoke=smoke)
            )
        except SpecError as exc:
            raise exc.in_file(str(path)) from None

    @classmethod
    def from_dict(
        cls,
        tables: Mapping[str, Any],
        *,
        name: str | None = None,
        folder: str | Path | None = None,
        smoke: bool = False,
        overrides: Mapping[str, Any] | None = None,
        model: Callable[..., Any] | None = None,
        data: Callable[..., Any] | None = None,
    ) -> Study:
        """A study given as nested tables, as ``tomllib`` reads a study file (``{"study": {...},
        "data": {...}, "model": {...}, ...}``).

        Its name is ``[study] name``, else ``name``; one of them is required. A relative data
        ``path`` is taken from ``folder`` (default: the current folder), as a file's is from the
        file's folder. It has no file: errors name it ``study 'NAME' (a dict)`` instead, and the
        store records no source for it.

        ``model``: a function ``build(input_shape, outputs, **params)`` returning a
        ``torch.nn.Module``, set as ``[model] factory`` (the tables' ``[model]`` then gives only
        its ``params``). ``data``: a function ``load(**params)`` returning the arrays, set as
        ``[data] factory``. docs/PYTHON.md, "Your own model and data", says how each is identified.
        """
        head = tables.get("study")
        given = head.get("name") if isinstance(head, Mapping) else None
        shown = given if isinstance(given, str) else name
        if shown is None:
            raise SpecError(
                "a study given as a dict needs a name: set [study] name in the tables, or pass name=",
                path="study.name",
                file="study (a dict)",
            )
        try:
            raw = _overridden(copy.deepcopy(dict(tables)), overrides or {})
            for key, function in (("model", model), ("data", data)):
                if function is not None:
                    raw[key] = {**_table(raw.get(key, {}), key), "factory": function}
            raw = named_factories(raw)
            return cls(spec.from_dict(raw, default_name=shown, base_dir=Path(folder or Path.cwd()), smoke=smoke))
        except SpecError as exc:
            raise exc.in_file(f"study {shown!r} (a dict)") from None

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<trainlab.Study {self.name!r}{where}: {len(self.spec.stages)} stage(s), seeds {list(self.seeds)}>"

    @property
    def name(self) -> str:
        """The study's name in the store."""
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def source(self) -> str | None:
        """The study file, or None for a study given as a dict."""
        return self.spec.source

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.spec.seeds

    def check(self) -> Check:
        """What the study will train, without training: ``str()`` of the result is what ``trainlab
        check`` prints, and its :meth:`Check.trials` the trials known before training."""
        return Check(self.name, tuple(check_lines(self.spec)), tuple(self.spec.trials()))

    def run(
        self,
        store: str | Path | None = None,
        *,
        progress: bool | str = "auto",
        stream: TextIO | None = None,
        retry_failed: bool = False,
        workers: int | str = "auto",
        population: int | None = None,
        checkpoint_every: float | None = None,
        executor: str = "local",
        address: str | None = None,
        max_retries: int | None = None,
        cpus_per_task: int | None = None,
        gpus_per_task: float | None = None,
        device: str = "auto",
        track: Sequence[str] = (),
    ) -> Result:
        """Train every unfinished trial into ``store`` (default: ``$TRAINLAB_STORE``, else
        ``trainlab.db``), as ``trainlab run`` does; returns the study's :class:`Result`.

        Resumable: finished trials are kept, a trial cut off resumes from its last checkpoint,
        and calling it again trains only what is left. ``progress``: ``"auto"`` (Rich bars where
        ``stream`` is a terminal, else one line per epoch, which is what a notebook shows),
        ``"bars"``, ``"lines"``, or False; progress and notes go to ``stream`` (default: standard
        error). The other options are :class:`~trainlab.api.run.RunOptions`, as ``trainlab run``'s
        options of those names. A failed trial is a result: :meth:`Result.trials` shows its error.
        """
        options = RunOptions(
            retry_failed=retry_failed,
            workers=workers,
            population=population,
            checkpoint_every=checkpoint_every,
            executor=executor,
            address=address,
            max_retries=max_retries,
            cpus_per_task=cpus_per_task,
            track=tuple(track),
            device=device,
            gpus_per_task=gpus_per_task,
        ).check()
        path = Path(default_store() if store is None else store)
        outcome = run_study(self.spec, path, options, progress=progress, stream=stream or sys.stderr)
        return Result(path, self.name, outcome)


def named_factories(tables: dict[str, Any]) -> dict[str, Any]:
    """``tables`` with every function given as a factory (``"factory": build`` in a table, or
    ``"model.factory": build`` as a key path) replaced by the reference that names it, and the
    folder it is imported from set beside it (``root``), unless the table gives one
    (:func:`trainlab.factory.reference_for`)."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key in list(node):
                where = f"{path}.{key}" if path else key
                if (key == "factory" or key.endswith(".factory")) and not isinstance(node[key], str | None):
                    reference, root = factory.reference_for(node[key], where)
                    node[key] = reference
                    root_key = key.removesuffix("factory") + "root"
                    if root is not None and root_key not in node:
                        node[root_key] = root
                else:
                    walk(node[key], where)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(tables, "")
    return tables


def _table(value: Any, key: str) -> dict[str, Any]:
    """The tables' ``[key]``, which a function given as its factory completes."""
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a table (the factory's params), got {value!r}", path=key)
    return dict(value)


def _overridden(tables: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``tables`` with each key path of ``overrides`` set (copied values: the caller's stay as they are)."""
    for key, value in overrides.items():
        spec.set_path(tables, key, copy.deepcopy(value), key)
    return tables
