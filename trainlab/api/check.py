"""A study checked without training: its trials, and the lines ``trainlab check`` prints.

:func:`check_lines` says what a study will train: the number of trials, each stage, each
search, and each variant with what it sets beside Keras' defaults (:mod:`trainlab.describe`).
A later stage's variants depend on the stage they start from, so they are resolved on each of
that stage's first variants, and a setting that depends on the choice shows as ``a|b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainlab.spec import Study
from trainlab.spec.tune import describe as tune_summary

CHECK_SHOWN_BASES = 64
"""How many variants of an earlier stage ``check`` resolves a later stage on, to show its settings."""


def check_lines(study: Study) -> list[str]:
    """The lines ``trainlab check`` prints for ``study``."""
    trials = study.trials()
    if not study.dynamic:
        out = [f"study {study.name}: {len(study.variants)} variants x {len(study.seeds)} seeds = {len(trials)} trials"]
    else:
        what = f"{len(study.stages)} stages; later stages and searches" if study.staged else "its search points"
        out = [f"study {study.name}: {what} are resolved as results come in"]
    candidates = study.candidates(CHECK_SHOWN_BASES) if study.dynamic else {}
    for stage in study.stages:
        if study.staged:
            source = f" (from the best of {stage.source!r})" if stage.source else ""
            out.append(f"stage {stage.name}{source}: {stage.description}".rstrip(": "))
        if stage.tune is not None:
            out.append(f"  tune: {tune_summary(stage.tune, stage.entries or ['base'])}")
            found = {v.label for v in candidates[stage.name]}
            points = (
                1 + stage.tune.repeats * stage.tune.sampled()
                if stage.tune.defaults
                else stage.tune.repeats * stage.tune.sampled()
            )
            seeds = len(stage.seeds or study.seeds)
            out.append(
                f"  {len(found)} variants x {points} points x {seeds} seeds = {len(found) * points * seeds} trials"
                " (folds multiply it)"
            )
            for entry in stage.entries or ():
                space = stage.tune.search_for(entry.label, 0).space
                out.append(f"    {entry.label}: {', '.join(d.key for d in space)}")
        if stage.search is not None:
            s = stage.search
            out.append(
                f"  search: {s.sampler}, {s.trials} variants in rounds of {s.batch}, pruning {s.prune}; "
                f"space: {', '.join(d.key for d in s.space)}"
            )
        elif stage is study.stages[0] and stage.tune is None:
            for variant in study.variants:
                out += variant_lines(variant.label, [variant])
        else:
            found = candidates[stage.name]
            if stage.source:
                starts = len(candidates[stage.source])
                which = (
                    f"each of the {starts}"
                    if starts <= CHECK_SHOWN_BASES
                    else f"the first {CHECK_SHOWN_BASES} of the {starts}"
                )
                out.append(
                    f"  resolved on {which} variants of {stage.source!r} it may start from; "
                    "a|b: depends on the one chosen"
                )
            groups: dict[str, list[Any]] = {}
            for variant in found:
                groups.setdefault(variant.label, []).append(variant)
            for label, group in groups.items():
                out += variant_lines(label, group)
    return out


def variant_lines(label: str, variants: Sequence[Any]) -> list[str]:
    """A variant's label and its settings (see trainlab.describe); several possible specs of it
    (a later stage's variant on each base) show the values that differ among them as a|b."""
    from trainlab import describe

    split = variants[0].spec["data"]["split"]
    folds = split.get("folds") if split["kind"] == "kfold" else None
    return [f"  {label}" + (f" ({folds} folds)" if folds else "")] + [
        f"    {line}" for line in describe.lines([describe.settings(v.spec) for v in variants])
    ]
