"""A suite file read: the same variants trained on several studies (workloads), to be ranked
across them as AlgoPerf ranks training algorithms.

A suite file is TOML with one ``[suite]`` table (docs/STUDY-FORMAT.md, "Suites"): the study
files it runs (relative to the suite file), the performance profiles' cut-off, what time is
measured in, and each study's target, given or taken from a reference variant's results. Each
study is an ordinary study file, read and checked by :mod:`trainlab.spec`; the suite ranks the
variant labels every study has. Everything is checked here, before anything trains: a mistake
is a :class:`~trainlab.errors.SpecError` naming the suite file, the key path, the allowed
values and the nearest match, as a study file's is.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab import spec
from trainlab.errors import SpecError
from trainlab.registry import Param, check_params, one_of, param
from trainlab.spec.study import read_text, toml_tables

CUTOFF = 4.0
"""The performance profiles' default upper limit of tau (AlgoPerf's r_max)."""
TIMES = ("epochs", "seconds")
"""What a time to target is measured in: epochs (the same on every machine) or training seconds."""
TOP_KEYS = ("suite",)


def _above_one(value: Any) -> str | None:
    return None if value > 1 else "must be > 1 (a ratio to the fastest variant)"


_SUITE = {
    "name": Param(None, (str, type(None))),
    "description": param("", str),
    "studies": Param(None, (list,), required=True),
    "cutoff": param(CUTOFF, float, check=_above_one),
    "time": param("epochs", str, check=one_of(*TIMES)),
    "reference": Param(None, (str, type(None))),
    "targets": param({}, dict),
}


@dataclass(frozen=True)
class Workload:
    """One study of a suite: its file, the validated study, and where its target comes from.

    ``name`` is the study's name as its file gives it (the key of ``[suite.targets]``);
    ``study.name`` is its name in the store, ``NAME-smoke`` for a smoke run. ``target`` is the
    value from ``[suite.targets]``, or None when it is the median best of variant ``reference``.
    """

    name: str
    file: str
    study: spec.Study = field(repr=False)
    target: float | None
    reference: str

    @property
    def labels(self) -> tuple[str, ...]:
        """The study's variant labels, in its order."""
        return tuple(v.label for v in self.study.variants)


@dataclass(frozen=True)
class Suite:
    """A validated suite: its workloads in file order and the labels it ranks.

    ``labels`` are the variant labels every study has, in the first study's order;
    ``left_out`` maps a study's name to its labels that are not ranked (they are missing from
    another study). ``cutoff`` is the profiles' tau max; ``time`` is ``"epochs"`` or
    ``"seconds"``.
    """

    name: str
    description: str
    source: str | None
    workloads: tuple[Workload, ...]
    labels: tuple[str, ...]
    left_out: dict[str, tuple[str, ...]]
    cutoff: float
    time: str
    reference: str | None
    """The ``reference`` key as given (None: each study's first variant)."""


def is_suite_file(path: str | Path) -> bool:
    """Whether ``path`` is a TOML file with a ``[suite]`` table (a study file has none). A file
    that cannot be read or decoded is not taken for a suite: the study parser then says why."""
    target = Path(path)
    if not target.is_file():
        return False
    try:
        return isinstance(tomllib.loads(target.read_text(encoding="utf-8")).get("suite"), Mapping)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def load(path: str | Path, *, smoke: bool = False) -> Suite:
    """Read and validate the suite file ``path`` and every study it names; errors name the file
    at fault and the key path. ``smoke``: every study's smoke run (``trainlab run --smoke``)."""
    path = Path(path)
    return parse(read_text(path), source=str(path), default_name=path.stem, base_dir=path.parent, smoke=smoke)


def parse(
    text: str,
    *,
    source: str | None = None,
    default_name: str = "suite",
    base_dir: Path | None = None,
    smoke: bool = False,
) -> Suite:
    """Validate suite TOML text (see :func:`load`); the suite's own errors name ``source``, a
    study's name its study file."""
    try:
        return from_dict(toml_tables(text), source=source, default_name=default_name, base_dir=base_dir, smoke=smoke)
    except SpecError as exc:
        raise (exc.in_file(source) if source and not exc.file else exc) from None


def from_dict(
    raw: Mapping[str, Any],
    *,
    source: str | None = None,
    default_name: str = "suite",
    base_dir: Path | None = None,
    smoke: bool = False,
) -> Suite:
    """Validate a suite given as parsed TOML tables; study paths are taken from ``base_dir``
    (default: the current folder). A study's own errors name the study file."""
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(
                f"unknown section {key!r}: a suite file has one [suite] table", path=key, allowed=TOP_KEYS, got=key
            )
    if "suite" not in raw:
        raise SpecError("a suite file needs a [suite] table", path="suite")
    if not isinstance(raw["suite"], Mapping):
        raise SpecError(f"expected a table, got {raw['suite']!r}", path="suite")
    head = check_params(raw["suite"], _SUITE, "suite")
    name = _name(head["name"] or default_name)
    folder = base_dir if base_dir is not None else Path.cwd()
    studies = _studies(head["studies"], folder, smoke)
    names = [_study_name(s, smoke) for s in studies]
    targets = _targets(head["targets"], names)
    reference = head["reference"]
    _check_reference(reference, studies, names, targets)
    workloads = tuple(
        Workload(n, s.source or "", s, targets.get(n), reference or s.variants[0].label) for n, s in zip(names, studies)
    )
    labels = _shared(workloads)
    left_out = {w.name: tuple(label for label in w.labels if label not in labels) for w in workloads}
    return Suite(
        f"{name}-smoke" if smoke else name,
        head["description"],
        source,
        workloads,
        labels,
        {k: v for k, v in left_out.items() if v},
        float(head["cutoff"]),
        head["time"],
        reference,
    )


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise SpecError(f"a suite name uses letters, digits, '_', '-' and '.', got {name!r}", path="suite.name")
    return name


def _studies(value: Any, folder: Path, smoke: bool) -> list[spec.Study]:
    """The study files ``suite.studies`` lists, each read and validated; a missing file, one listed
    twice, two files of one study name, or a staged, searched or tuned study is refused."""
    if not value or not all(isinstance(item, str) and item for item in value):
        raise SpecError(f"expected a list of one or more study files, got {value!r}", path="suite.studies")
    studies: list[spec.Study] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        where = f"suite.studies[{i}]"
        if not (folder / item).is_file():
            raise SpecError(
                f"no such study file: {folder / item} (study paths are relative to the suite file)", path=where
            )
        path = (folder / item).resolve()
        if str(path) in seen:
            raise SpecError(f"{item!r} is listed twice (first at suite.studies[{seen[str(path)]}])", path=where)
        seen[str(path)] = i
        study = spec.load(folder / item, smoke=smoke)
        if study.dynamic:
            raise SpecError(
                f"{item} is a staged study or a search, or tunes its variants, whose variants depend on results; "
                "a suite ranks the variants of plain studies ([[compare]] and [grid])",
                path=where,
            )
        for j, other in enumerate(studies):
            if other.name == study.name:
                raise SpecError(
                    f"{item} and {value[j]} are both study {study.name!r}: they would share one study in the "
                    "store; give each its own [study] name",
                    path=where,
                )
        studies.append(study)
    return studies


def _study_name(study: spec.Study, smoke: bool) -> str:
    """The name a study's file gives it (a smoke run's name without its ``-smoke``)."""
    return study.name.removesuffix("-smoke") if smoke else study.name


def _targets(value: Mapping[str, Any], names: Sequence[str]) -> dict[str, float]:
    """``[suite.targets]``: a finite number per study name of the suite."""
    out: dict[str, float] = {}
    for key, target in value.items():
        where = f"suite.targets.{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'suite.targets."{key}"'
        if key not in names:
            raise SpecError(f"no study of the suite is named {key!r}", path=where, allowed=names, got=key)
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
            raise SpecError(f"expected the validation value to reach (a finite number), got {target!r}", path=where)
        out[key] = float(target)
    return out


def _check_reference(
    reference: str | None, studies: Sequence[spec.Study], names: Sequence[str], targets: Mapping[str, float]
) -> None:
    """A ``reference`` must be a label of every study that takes its target from it (of some
    study, where every study has a target of its own)."""
    if reference is None:
        return
    untargeted = [s for s, n in zip(studies, names) if n not in targets]
    if untargeted:
        allowed = set.intersection(*({v.label for v in s.variants} for s in untargeted))
        missing = [
            n for s, n in zip(studies, names) if n not in targets and reference not in {v.label for v in s.variants}
        ]
        if missing:
            raise SpecError(
                f"variant {reference!r} is not in study {', '.join(missing)}, which takes its target from the "
                "reference's median best (or give it one in [suite.targets])",
                path="suite.reference",
                allowed=allowed,
                got=reference,
            )
    else:
        known = {v.label for s in studies for v in s.variants}
        if reference not in known:
            raise SpecError(f"no study has variant {reference!r}", path="suite.reference", allowed=known, got=reference)


def _shared(workloads: Sequence[Workload]) -> tuple[str, ...]:
    """The labels every study has, in the first study's order; refused where there is none."""
    common = set.intersection(*(set(w.labels) for w in workloads))
    if not common:
        listed = "; ".join(f"{w.file}: {', '.join(w.labels)}" for w in workloads)
        raise SpecError(
            f"the studies share no variant label, so there is nothing to rank across them ({listed}); "
            "give the variants to compare the same [[compare]] label in every study",
            path="suite.studies",
        )
    return tuple(label for label in workloads[0].labels if label in common)


def describe(suite: Suite) -> list[str]:
    """What ``trainlab check SUITE`` prints: the studies, their targets, and the labels ranked and left out."""
    lines = [f"suite {suite.name}: {len(suite.workloads)} studies, ranked by time to target in {suite.time}"]
    if suite.description:
        lines.append(f"  {suite.description}")
    for w in suite.workloads:
        target = f"target {w.target:g}" if w.target is not None else f"target: median best of {w.reference!r}"
        trials = len(w.study.trials())
        lines.append(f"  {w.study.name} ({w.file}): {len(w.labels)} variants, {trials} trials, {target}")
    lines.append(f"ranked: {', '.join(suite.labels)}")
    for name, labels in suite.left_out.items():
        lines.append(f"left out of the ranking (not in every study): {name}: {', '.join(labels)}")
    lines.append(f"performance profiles up to tau = {suite.cutoff:g}")
    return lines
