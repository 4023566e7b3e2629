"""A study file read: TOML in, a validated :class:`Study` out.

:func:`load` reads a file, :func:`parse` TOML text, :func:`from_dict` the parsed tables: the
``[study]`` head, the base trial, and its stages (or the plain study's one), whose first
variants are resolved here and whose later ones are checked on the bases they may start from.
"""

from __future__ import annotations

import copy
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainlab.errors import SpecError
from trainlab.registry import Param, check_params, param
from trainlab.spec.records import Stage, Trial, Variant
from trainlab.spec.resolve import fold_specs
from trainlab.spec.sections import TOP_KEYS, TRIAL_KEYS, as_table, check_plain, check_seeds
from trainlab.spec.stages import VARIATION_KEYS, parse_stage
from trainlab.spec.variants import check_later_stages, expand, stage_candidates
from trainlab.trial import FORMAT_VERSION, canonical_json, trial_hash

_STUDY = {
    "name": Param(None, (str, type(None))),
    "description": param("", str),
    "seeds": param(3, int, list),
    "smoke": param(False, bool),
}
REQUIRED_SECTIONS = ("data", "model", "train")
"""The trial tables a study must give (the optimizer defaults to plain SGD)."""


@dataclass(frozen=True)
class Study:
    """A validated study: its stages, and the variants (each resolved) known before training.

    A plain study has one stage and all its variants are known at once. A staged study or a
    search knows only its first stage's fixed variants here; :mod:`trainlab.orchestrate` resolves the
    rest from the results in the store.
    """

    name: str
    description: str
    source: str | None
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    raw: dict[str, Any] = field(repr=False)
    stages: tuple[Stage, ...] = ()
    base: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def hash(self) -> str:
        return hashlib.sha256(canonical_json({"v": FORMAT_VERSION, "study": self.raw}).encode()).hexdigest()[:20]

    @property
    def staged(self) -> bool:
        """Whether the study has several stages (labels then carry the stage name)."""
        return len(self.stages) > 1

    @property
    def dynamic(self) -> bool:
        """Whether some variants depend on results: later stages, a search or tuning."""
        return self.staged or any(stage.search is not None or stage.tune is not None for stage in self.stages)

    def trials(self) -> list[Trial]:
        """Every variant with every seed (and every fold of a k-fold split), in a stable order."""
        out = []
        for v in self.variants:
            for seed in v.seeds or self.seeds:
                for spec in fold_specs(v.spec):
                    out.append(Trial(v.label, v.params, spec, seed, trial_hash(spec, seed)))
        return out

    def with_variants(self, variants: Sequence[Variant]) -> Study:
        """The same study with another list of variants (one round of a staged study)."""
        return replace(self, variants=tuple(variants))

    def spec_json(self) -> str:
        return canonical_json(self.raw)

    def candidates(self, bases: int) -> dict[str, list[Variant]]:
        """Each stage's variants as they may resolve before training: a later stage's on the first
        ``bases`` variants of the stage it starts from (see :func:`stage_candidates`)."""
        return stage_candidates(self.stages, self.base, self.variants, self.staged, bases)


def load(path: str | Path, *, smoke: bool = False) -> Study:
    """Read and validate a study file; every error names ``path`` and the key path.
    ``smoke``: its smoke run instead (see :func:`from_dict`)."""
    path = Path(path)
    return parse(read_text(path), source=str(path), default_name=path.stem, base_dir=path.parent, smoke=smoke)


def read_text(path: Path) -> str:
    """The text of study file ``path``; a SpecError naming it where it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such study file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read study file {path}: {exc}") from None


def toml_tables(text: str) -> dict[str, Any]:
    """Study TOML text as its tables; a SpecError where it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}") from None


def parse(
    text: str,
    *,
    source: str | None = None,
    default_name: str = "study",
    base_dir: Path | None = None,
    smoke: bool = False,
) -> Study:
    """Validate study TOML text (see :func:`load`); errors name ``source``."""
    try:
        return from_dict(toml_tables(text), source=source, default_name=default_name, base_dir=base_dir, smoke=smoke)
    except SpecError as exc:
        raise (exc.in_file(source) if source else exc) from None


def from_dict(
    raw: Mapping[str, Any],
    *,
    source: str | None = None,
    default_name: str = "study",
    base_dir: Path | None = None,
    smoke: bool = False,
) -> Study:
    """Validate a study given as nested tables (the TOML already parsed).

    ``smoke`` makes it the study's smoke run: named ``NAME-smoke``, one seed, and every variant
    shrunk (:data:`~trainlab.spec.sections.SMOKE`), so that all its code paths run in seconds
    without touching the full study's results.
    """
    raw = copy.deepcopy(dict(raw))
    if smoke and not (isinstance(raw.get("study"), Mapping) and raw["study"].get("smoke")):
        raw["study"] = _smoke_head(raw.get("study", {}), default_name)
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(f"unknown section {key!r}", path=key, allowed=TOP_KEYS, got=key)
    check_plain(raw, "")
    head = check_params(as_table(raw.get("study", {}), "study"), _STUDY, "study")
    name = _name(head["name"] or default_name)
    seeds = check_seeds(head["seeds"], "study.seeds")
    if head["smoke"]:
        seeds = seeds[:1]
    if "data" in raw and base_dir is not None:
        raw["data"] = _data_beside(raw["data"], base_dir)
    if base_dir is not None:
        _factories_beside(raw, str(base_dir.resolve()))
    base = _base(raw)
    stages = _stages(raw, head["smoke"], len(seeds))
    staged = len(stages) > 1
    first = stages[0]
    variants = expand(first, base, staged=staged) if first.search is None and first.tune is None else []
    check_later_stages(stages, base, variants, staged)
    head_out = {**head, "name": name, "seeds": list(seeds)}
    if not head["smoke"]:
        del head_out["smoke"]  # absent unless set, so that studies written before it keep their hashes
    raw_study = {"study": head_out, **{k: v for k, v in raw.items() if k != "study"}}
    return Study(name, head["description"], source, seeds, tuple(variants), raw_study, tuple(stages), base)


def _smoke_head(study: Any, default_name: str) -> dict[str, Any]:
    """The ``[study]`` head of a study's smoke run: ``NAME-smoke``, ``smoke = true``."""
    head = dict(as_table(study, "study"))
    head["name"] = f"{head.get('name') or default_name}-smoke"
    head["smoke"] = True
    return head


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise SpecError(f"a study name uses letters, digits, '_', '-' and '.', got {name!r}", path="study.name")
    return name


def _data_beside(value: Any, base_dir: Path) -> dict[str, Any]:
    """``[data]`` with its ``path`` (a string) made absolute, relative to the study file's folder."""
    data = as_table(value, "data")
    if isinstance(data.get("path"), str):
        data["path"] = str((base_dir / data["path"]).resolve())
    return data


def _factories_beside(node: Any, root: str) -> None:
    """Every table of the study naming a ``factory`` (the base's ``[model]`` and ``[data]``, a
    compare entry's, a grid's or a search's value) gets the study file's folder as its ``root``,
    where the factory is imported from, unless it gives one."""
    if isinstance(node, dict):
        if isinstance(node.get("factory"), str) and "root" not in node:
            node["root"] = root
        for value in node.values():
            _factories_beside(value, root)
    elif isinstance(node, list):
        for item in node:
            _factories_beside(item, root)


def _base(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The base trial: the study's trial tables, the optimizer plain SGD unless given."""
    base = {key: raw[key] for key in TRIAL_KEYS if key in raw}
    for key in REQUIRED_SECTIONS:
        if key not in base:
            raise SpecError(f"the study needs a [{key}] section", path=key)
    base.setdefault("optimizer", "sgd")
    return base


def _stages(raw: Mapping[str, Any], smoke: bool, n_seeds: int) -> list[Stage]:
    """The ``[[stage]]`` tables checked, in order; a plain study's variations as its one stage."""
    if "stage" not in raw:
        return [parse_stage({k: raw[k] for k in VARIATION_KEYS if k in raw}, "", [], smoke, n_seeds)]
    for key in VARIATION_KEYS:
        if key in raw:
            raise SpecError(
                f"a staged study puts its variations inside the stages ([[stage.{key}]] or [stage.{key}])", path=key
            )
    tables = raw["stage"]
    if not isinstance(tables, list) or not tables:
        raise SpecError("expected one or more [[stage]] tables", path="stage")
    stages: list[Stage] = []
    for i, table in enumerate(tables):
        stages.append(parse_stage(as_table(table, f"stage[{i}]"), f"stage[{i}]", stages, smoke, n_seeds))
    return stages
