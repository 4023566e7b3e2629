"""The frozen records a study is made of: its stages, their compare entries, variants and trials.

:class:`~trainlab.spec.study.Study` holds them; they hold no behaviour beyond reading themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainlab.spec.space import SearchSpec
from trainlab.spec.tune import TuneSpec
from trainlab.trial import TrialSpec


@dataclass(frozen=True)
class Variant:
    """One labelled setting to compare: its overrides of the base, and the grid values it carries."""

    label: str
    params: dict[str, Any]
    raw: dict[str, Any]
    """The merged, unresolved trial tables (what the user wrote, base plus overrides)."""
    spec: dict[str, Any]
    """The fully resolved trial spec: every default explicit."""
    seeds: tuple[int, ...] | None = None
    """The seeds of this variant's stage, when they differ from the study's."""


@dataclass(frozen=True)
class Trial:
    """One training run: a resolved spec and a seed, identified by their hash."""

    label: str
    params: dict[str, Any]
    spec: dict[str, Any]
    seed: int
    hash: str

    def spec_json(self) -> str:
        """The resolved spec as the store keeps it."""
        return TrialSpec.from_json(self.spec).json()


@dataclass(frozen=True)
class CompareEntry:
    """One ``[[compare]]`` entry: its label, its overrides of the base and its model edits."""

    label: str
    override: dict[str, Any]
    edit: dict[str, Any]
    where: str


@dataclass(frozen=True)
class Stage:
    """A step of a study: variants to compare, built on the study's base or on the variant an
    earlier stage chose (``source``), with ``edit`` applied to every one."""

    name: str
    description: str
    source: str | None
    select: str | None
    seeds: tuple[int, ...] | None
    edit: dict[str, Any]
    entries: tuple[CompareEntry, ...]
    grid: dict[str, list[Any]]
    search: SearchSpec | None
    where: str
    smoke: bool = False
    """Whether every variant is shrunk to a smoke run (see :data:`~trainlab.spec.sections.SMOKE`)."""
    tune: TuneSpec | None = None
    """Each listed variant tuned by a search of its own (see :mod:`trainlab.spec.tune`)."""
