"""What a study trains next: its stages and searches resolved against the results in the store.

A plain study's variants are known from its file. A staged study's later stages start from
the variant an earlier stage chose, and a search samples its variants a round at a time from
the outcomes of the earlier ones: both depend on results. :func:`resolve` works out, from the
study file and the store alone, every variant that can be known now; :func:`run` alternates
resolving and training until every stage is finished, waiting where a stage depends on trials
another process is still training. Since the store is the only record, a study resumes across
stages exactly where it stopped, and a report resolves the same plan the run did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainlab import selection
from trainlab.errors import TrainlabError
from trainlab.losses import mode_for
from trainlab.pruning import PrunedSearch, Pruning, SearchTrial
from trainlab.search import Point, propose
from trainlab.spec import SearchSpec, Stage, Study, Variant, base_of, expand, fold_specs, resolve_trial, search_variant
from trainlab.spec.variants import expand_entries, tune_defaults, tune_label, tune_variant
from trainlab.store import FINISHED_STATUSES, Store, TrialRecord
from trainlab.trial import trial_hash

POLL_SECONDS = 5.0


@dataclass
class StagePlan:
    """One stage as far as it can be resolved now.

    ``state`` is ``ready`` (its variants are known), ``waiting`` (its source stage has
    unfinished trials) or ``blocked`` (its source finished without a usable result; ``reason``
    says why). ``chosen`` is the label of the variant the source stage chose, ``complete`` says
    whether every variant is known (a search may still have points to sample).
    """

    stage: Stage
    seeds: tuple[int, ...]
    variants: list[Variant] = field(default_factory=list)
    state: str = "ready"
    reason: str = ""
    chosen: str | None = None
    chosen_value: float | None = None
    metric: str = ""
    complete: bool = True
    tuned: list[Tuned] = field(default_factory=list)
    """A tuned stage's listed variants, each with its searches (empty for other stages)."""

    def choices(self) -> list[Variant]:
        """The variants the stage chooses among: each tuned variant at its tuned best (those with
        a finished point), or the variants it lists or samples."""
        if self.stage.tune is None:
            return self.variants
        return [t.chosen for t in self.tuned if t.chosen is not None]

    def hashes(self) -> list[str]:
        """The trial hashes of the known variants, in order."""
        return [h for v in self.variants for h in variant_hashes(v, self.seeds)]

    def finished(self, records: Mapping[str, TrialRecord]) -> bool:
        """Whether every variant is known and every one of its trials has finished."""
        return (
            self.state == "ready"
            and self.complete
            and all(h in records and records[h].status in FINISHED_STATUSES for h in self.hashes())
        )


@dataclass
class Tuned:
    """A listed variant of a tuned stage and its searches, as far as the store's results go.

    ``searches`` holds each repeat's points in order (with ``defaults``, the first is the variant
    as listed, the same trial in every repeat); ``bests`` each repeat's best point and its value
    (None before a point finished); ``chosen`` is the point the variant is compared at: the best of
    the repeat whose best is the median of the repeats' bests (the worse of the two middle ones
    for an even number), or None.
    """

    label: str
    entry: str
    variant: Variant
    searches: list[list[Variant]]
    bests: list[tuple[Variant, float] | None]
    chosen: Variant | None
    complete: bool


def variant_hashes(variant: Variant, seeds: Sequence[int]) -> list[str]:
    """The trial hashes of a variant: one per seed (its stage's, else ``seeds``) and fold."""
    return [trial_hash(spec, seed) for seed in (variant.seeds or seeds) for spec in fold_specs(variant.spec)]


def _records(study: Study, store: Store) -> dict[str, TrialRecord]:
    record = store.study(study.name)
    return {} if record is None else {t.hash: t for t in store.trials(record.id)}


def _results(variant: Variant, study: Study, records: Mapping[str, TrialRecord]) -> list[TrialRecord]:
    return [records[h] for h in variant_hashes(variant, study.seeds) if h in records]


def stage_choice(
    variants: Sequence[Variant], study: Study, records: Mapping[str, TrialRecord], metric: str
) -> tuple[Variant, float] | None:
    """The variant with the best mean of ``metric`` over its finished trials (the report's rule)."""
    means = []
    for v in variants:
        done = [t for t in _results(v, study, records) if t.status == "done" and t.result]
        means.append(
            (
                selection.mean([t.result["best"].get(metric) for t in done]),
                selection.mean([t.result["best"].get(selection.tie_break(metric)) for t in done]),
            )
        )
    index = selection.choose(means, metric)
    return None if index is None else (variants[index], means[index][0])  # type: ignore[return-value]


def resolve(
    study: Study, store: Store, *, propose_points: bool = False, records: Mapping[str, TrialRecord] | None = None
) -> list[StagePlan]:
    """Every stage of ``study`` as far as the store's results determine it.

    With ``propose_points``, a search whose sampled points have all finished samples its next
    round (the new variants are returned, not yet recorded: training them records them).
    ``records``: the study's trials by hash, if the caller has just read them.
    """
    records = _records(study, store) if records is None else records
    plans: dict[str, StagePlan] = {}
    for stage in study.stages:
        plan = StagePlan(stage, stage.seeds or study.seeds)
        plans[stage.name] = plan
        if stage.source is None:
            base = dict(study.base)
        else:
            source = plans[stage.source]
            plan.metric = stage.select or _monitor(source)
            if not source.finished(records):
                plan.state = "waiting"
                plan.reason = f"stage {stage.name!r} waits for stage {stage.source!r} to finish"
                continue
            best = stage_choice(source.choices(), study, records, plan.metric)
            if best is None:
                plan.state = "blocked"
                plan.reason = (
                    f"stage {stage.name!r} starts from the best variant of stage {stage.source!r}, "
                    f"but none of its trials finished with a {plan.metric}; see `trainlab status`"
                )
                continue
            plan.chosen, plan.chosen_value = best[0].label, best[1]
            base = base_of(best[0].spec)
        params = {"from": plan.chosen} if plan.chosen is not None else None
        if stage.tune is not None:
            _tune(plan, study, base, records, propose_points, params)
        elif stage.search is None:
            plan.variants = expand(stage, base, staged=study.staged, params=params)
        else:
            _search(plan, study, base, records, propose_points)
    return list(plans.values())


def _monitor(plan: StagePlan) -> str:
    return plan.variants[0].spec["train"]["monitor"] if plan.variants else "val_loss"


def _search(
    plan: StagePlan, study: Study, base: Mapping[str, Any], records: Mapping[str, TrialRecord], propose_points: bool
) -> None:
    """The points a search stage sampled so far (read back from the store), and, if asked and
    the last round has finished, the next round's."""
    stage = plan.stage
    assert stage.search is not None
    plan.metric = resolve_trial(base)["train"]["monitor"]

    def build(number: int, values: Mapping[str, Any]) -> Variant:
        return search_variant(stage, base, number, values, staged=study.staged)

    plan.variants, plan.complete = _points(
        stage.search,
        build,
        [],
        study,
        records,
        propose_points,
        plan.metric,
    )


def _points(
    search: SearchSpec,
    build: Callable[[int, Mapping[str, Any]], Variant],
    fixed: Sequence[Variant],
    study: Study,
    records: Mapping[str, TrialRecord],
    propose_points: bool,
    metric: str,
) -> tuple[list[Variant], bool]:
    """One search's points: ``fixed`` ones first (known without sampling), then its rounds as
    they were sampled, and, if asked and no sampled point is still running, the next round's.
    Returns the points and whether the search has all of them.

    The rounds are replayed: round ``r`` is what the sampler proposes from the outcomes of the
    rounds before it (which had finished when it was sampled), and it belongs to the search where
    the store holds one of its trials. So a point is found by what it is, not by the labels its
    trials were first recorded with, and a trial two searches share (the same point of the same
    space, as a stage tuned over the learning rate alone and one whose space for that variant is
    the same) counts in both. The fixed points are not the sampler's: a QMC sequence or a TPE
    model sees only its own, and the first round is sampled while the fixed points train."""
    direction = "maximize" if mode_for(metric) == "max" else "minimize"
    variants = list(fixed)
    sampled: list[Point] = []
    wanted = search.trials - len(fixed)
    while len(sampled) < wanted:
        if any(p.state == "running" for p in sampled):
            break  # the next round waits for this one's outcomes
        count = min(search.batch, wanted - len(sampled))
        start = len(fixed) + len(sampled)
        proposed = [build(start + i, values) for i, values in enumerate(propose(search, sampled, count, direction))]
        recorded = any(variant_hashes(v, study.seeds)[0] in records for v in proposed)
        if not recorded and not propose_points:
            break
        variants += proposed
        sampled += [point_of(v, study, records, metric) for v in proposed]
        if not recorded:
            break  # a new round: trained before the next is sampled
    return variants, len(sampled) >= wanted


def _tune(
    plan: StagePlan,
    study: Study,
    base: Mapping[str, Any],
    records: Mapping[str, TrialRecord],
    propose_points: bool,
    params: Mapping[str, Any] | None,
) -> None:
    """Every listed variant of a tuned stage with its searches: each repeat's points so far (the
    variant as listed first, with ``defaults``) and, if asked, each search's next round."""
    stage = plan.stage
    tune = stage.tune
    assert tune is not None
    plan.metric = stage.select or resolve_trial(base)["train"]["monitor"]
    staged = study.staged
    all_points: list[Variant] = []
    for entry, variant in expand_entries(stage, base, staged=staged, params=params):
        name = tune_label(stage, variant, staged=staged)
        fixed = [tune_defaults(stage, variant, staged=staged)] if tune.defaults else []
        searches, bests, complete = [], [], True
        for repeat in range(tune.repeats):

            def build(
                number: int, values: Mapping[str, Any], repeat: int = repeat, variant: Variant = variant
            ) -> Variant:
                return tune_variant(stage, variant, repeat, number, values, staged=staged, repeats=tune.repeats)

            points, done = _points(
                tune.search_for(entry, repeat), build, fixed, study, records, propose_points, plan.metric
            )
            searches.append(points)
            finished = [p for p in points if _finished(p, study, records)]
            bests.append(stage_choice(finished, study, records, plan.metric))
            complete = complete and done
        all_points += [p for points in searches for p in points]
        plan.tuned.append(Tuned(name, entry, variant, searches, bests, median_best(bests, plan.metric), complete))
    plan.variants = _unique(all_points)
    plan.complete = all(t.complete for t in plan.tuned)


def _finished(variant: Variant, study: Study, records: Mapping[str, TrialRecord]) -> bool:
    return all(h in records and records[h].status in FINISHED_STATUSES for h in variant_hashes(variant, study.seeds))


def median_best(bests: Sequence[tuple[Variant, float] | None], metric: str) -> Variant | None:
    """The best point of the repeat whose best is the median of the repeats' (the worse middle one
    for an even count); None before any repeat has a finished point."""
    found = [b for b in bests if b is not None]
    if not found:
        return None
    found.sort(key=lambda b: b[1], reverse=mode_for(metric) == "max")
    return found[len(found) // 2][0]


def point_of(variant: Variant, study: Study, records: Mapping[str, TrialRecord], metric: str) -> Point:
    """What became of a search point: its objective is the mean of ``metric`` over its trials."""
    hashes = variant_hashes(variant, study.seeds)
    trials = [records[h] for h in hashes if h in records]
    values = {k: v for k, v in variant.params.items() if k not in ("search", "stage", "from")}
    if len(trials) < len(hashes) or any(t.status not in FINISHED_STATUSES for t in trials):
        return Point(values)
    if any(t.status == "pruned" for t in trials):
        return Point(values, "pruned")
    done = [t.result["best"].get(metric) for t in trials if t.status == "done" and t.result]
    value = selection.mean(done)
    return Point(values, "complete", value) if value is not None else Point(values, "failed")


def pruning_of(plans: Sequence[StagePlan]) -> Pruning | None:
    """The pruned searches among ``plans``, as the executors take them; None if none prunes.

    Each trial is tagged with the round its point was sampled in (rounds are ``batch`` points,
    numbered in sampling order) and its seed and fold, which say whom it is compared with
    (see :mod:`trainlab.pruning`). Each tuned variant's every repeat is a search of its own, so a
    point is only ever judged against points of the same variant; the variant as listed (the
    first point of its searches) is never pruned."""
    searches = []
    for p in plans:
        maximize = mode_for(p.metric) == "max"
        if p.stage.tune is not None and p.stage.tune.search.prune != "none":
            search = p.stage.tune.search
            first = int(p.stage.tune.defaults)
            for t in p.tuned:
                for repeat, points in enumerate(t.searches):
                    trials = _search_trials(points[first:], p.seeds, search.batch, first)
                    name = f"{p.stage.name}/{t.label}/{repeat}"
                    searches.append(PrunedSearch(name, search.prune, search.prune_warmup, p.metric, maximize, trials))
        search = p.stage.search
        if search is not None and search.prune != "none":
            trials = _search_trials(p.variants, p.seeds, search.batch, 0)
            searches.append(PrunedSearch(p.stage.name, search.prune, search.prune_warmup, p.metric, maximize, trials))
    return Pruning(tuple(searches)) if searches else None


def _search_trials(points: Sequence[Variant], seeds: Sequence[int], batch: int, first: int) -> tuple[SearchTrial, ...]:
    """The trials of a search's sampled points, each with its round (``first`` is the number of
    the first sampled point) and its seed and fold."""
    return tuple(
        SearchTrial(h, (int(v.params["search"]) - first) // batch, group)
        for v in points
        for h, group in trial_groups(v, seeds)
    )


def trial_groups(variant: Variant, seeds: Sequence[int]) -> list[tuple[str, str]]:
    """Each trial hash of a variant (as :func:`variant_hashes` orders them) with its seed and fold."""
    return [
        (trial_hash(spec, seed), f"seed {seed}, fold {fold}")
        for seed in (variant.seeds or seeds)
        for fold, spec in enumerate(fold_specs(variant.spec))
    ]


Execute = Callable[[Study, "Pruning | None"], Any]


def run(
    study: Study,
    store: Store,
    execute: Execute,
    *,
    poll: float = POLL_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> list[StagePlan]:
    """Train ``study`` to the end: resolve what can be known, train it with ``execute``, repeat.

    ``execute(round_study, pruning)`` trains the unfinished trials of a study holding every
    variant known so far (finished ones are skipped by the executor). Where the next stage
    waits on trials another process is training, this polls the store every ``poll`` seconds
    (telling ``on_wait`` why). Returns the final plan; raises TrainlabError if a stage cannot
    start (its source stage has no finished trial).
    """
    if not study.dynamic:
        execute(study, None)
        return resolve(study, store)
    said = ""
    while True:
        records = _records(study, store)
        plans = resolve(study, store, propose_points=True, records=records)
        variants = _unique([v for p in plans for v in p.variants])
        todo = [
            h
            for v in variants
            for h in variant_hashes(v, study.seeds)
            if h not in records or records[h].status == "pending"
        ]
        if todo:
            execute(study.with_variants(variants), pruning_of(plans))
            continue
        if all(p.finished(records) for p in plans):
            return plans
        running = [
            h
            for v in variants
            for h in variant_hashes(v, study.seeds)
            if records.get(h) and records[h].status == "running"
        ]
        if running:
            waiting = next((p.reason for p in plans if p.state == "waiting"), "the last trials finish")
            message = f"{len(running)} trials are running in another process; {waiting}"
            if on_wait is not None and message != said:
                on_wait(message)
            said = message
            time.sleep(poll)
            continue
        blocked = [p.reason for p in plans if p.state == "blocked"]
        raise TrainlabError(
            blocked[0] if blocked else "the study cannot go on: no trial is left to train and no stage can start"
        )


def _unique(variants: Sequence[Variant]) -> list[Variant]:
    seen: set[str] = set()
    out = []
    for v in variants:
        if v.label not in seen:
            seen.add(v.label)
            out.append(v)
    return out
