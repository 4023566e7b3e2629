"""The results table of a study, read from the store alone: one row per variant.

Each row aggregates the finished trials (one per seed) of a variant: the validation metrics at
each trial's chosen epoch, that epoch, the test metrics of the chosen weights, the epochs run,
the seconds per epoch and the training time, as mean, sample standard deviation and 95%
Student-t confidence interval over seeds. Epochs are counted from 1, as Keras prints them.

The variant with the best mean of the selection metric (``train.monitor``, validation
accuracy or loss) is the **chosen** one. Every other variant is compared with it by Welch's
t-test; the human formats mark the variants not distinguishable from it at 5%, and show
test metrics only for the chosen variant (all of them only when asked, labelled so), because
a test score read for every variant turns the test set into a second validation set.

The JSON form is stable (``"format": "trainlab-report/1"``) and documented in
``docs/REPORT-JSON.md``; the other formats render the same rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainlab import selection
from trainlab.errors import TrainlabError
from trainlab.jsonio import finite
from trainlab.report import stats
from trainlab.report.budget import BUDGETS, ESTIMATOR, SOURCES, budget_curve, check_estimator
from trainlab.store import Store, TrialRecord

FORMAT = "trainlab-report/1"
FORMATS = ("table", "markdown", "csv", "json")
FINISHED_OK = ("done",)


@dataclass(frozen=True)
class Options:
    """What a report shows beyond the defaults.

    ``all_test``: test metrics of every variant, not only the chosen one. ``target``: a value
    of ``target_metric`` (default ``val_accuracy``, or ``val_loss`` for regression) whose first
    reaching, in epochs and seconds, is reported per variant. ``correction``: how "vs best" p-values
    are corrected for the number of comparisons, one of :data:`stats.CORRECTIONS`.
    ``budget_estimator``: the estimator of a search's budget curve, one of
    :data:`trainlab.report.budget.ESTIMATORS` (Tang et al. 2020's unbiased one by default).
    """

    all_test: bool = False
    target: float | None = None
    target_metric: str | None = None
    correction: str = "holm"
    budget_estimator: str = ESTIMATOR


def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (None below two values), 95% CI and the values themselves."""
    summary = stats.summarize(values)
    return {
        "mean": summary.mean,
        "std": summary.std,
        "ci95": None if summary.ci_low is None else [summary.ci_low, summary.ci_high],
        "values": list(values),
    }


def metric_names(task: str) -> list[str]:
    """The headline metrics of a task, in display order."""
    return ["accuracy", "loss"] if task == "classification" else ["mse", "mae", "loss"]


def _mode(metric: str) -> str:
    from trainlab.losses import mode_for

    return mode_for(metric)


def study_report(store: Store, name: str, options: Options | None = None) -> dict[str, Any]:
    """The report of study ``name`` as plain data (the JSON format).

    A staged study or a search has a section per stage under ``stages`` (each with its own
    chosen variant and comparisons, and the choice it started from); its top-level
    ``variants`` are all stages' variants and its ``selection`` is the last stage's.
    """
    options = options or Options()
    if options.correction not in stats.CORRECTIONS:
        raise TrainlabError(f"unknown correction {options.correction!r}; allowed: {', '.join(stats.CORRECTIONS)}")
    check_estimator(options.budget_estimator, "budget_estimator")
    record = store.study(name)
    if record is None:
        known = ", ".join(s.name for s in store.studies()) or "none yet"
        raise TrainlabError(
            f"no study named {name!r} in this store (studies: {known}); run it first with `trainlab run`"
        )
    spec = json.loads(record.spec_json)
    study = _study_of(spec)
    header = {
        "name": record.name,
        "source": record.source,
        "spec_hash": record.spec_hash,
        "task": "classification",
        "description": spec.get("study", {}).get("description", ""),
    }
    if study is not None and study.dynamic:
        return _staged_report(store, record.id, study, header, options)
    trials = current_trials(store, name)
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(trial.label, []).append(trial)
    section = _section(store, groups, options)
    header["task"] = section.pop("task")
    counts = count_trials([(None, section["variants"])])
    return {"format": FORMAT, "study": header, "trials": counts, **section}


def _section(store: Store, groups: Mapping[str, list[TrialRecord]], options: Options) -> dict[str, Any]:
    """Rows, chosen variant and comparisons of one set of variants (a study, or a stage)."""
    first = next((t for g in groups.values() for t in g), None)
    first_spec = json.loads(first.spec_json) if first is not None else {}
    task = first_spec.get("task", "classification")
    monitor = first_spec.get("train", {}).get("monitor") or ("val_accuracy" if task == "classification" else "val_loss")
    target = _target(options, task, store, groups)
    variants = [_variant(label, group, task, target, monitor) for label, group in groups.items()]
    chosen = chosen_variant(variants, monitor)
    _compare(variants, chosen, monitor, options.correction)
    for v in variants:
        v["chosen"] = chosen is not None and v["label"] == chosen["label"]
    section: dict[str, Any] = {
        "task": task,
        "metrics": metric_names(task),
        "selection": {
            "metric": monitor,
            "mode": _mode(monitor),
            "chosen": chosen["label"] if chosen else None,
            "chosen_trial": best_trial_row(chosen, monitor)["hash"] if chosen else None,
            "test_shown": "all" if options.all_test else "chosen",
            "confidence": stats.CONFIDENCE,
            "alpha": stats.ALPHA,
            "correction": options.correction,
        },
        "variants": variants,
    }
    if target is not None:
        section["target"] = {"metric": target[0], "threshold": target[1], "mode": _mode(target[0])}
    return section


def _staged_report(store: Store, study_id: int, study: Any, header: dict[str, Any], options: Options) -> dict[str, Any]:
    from trainlab import orchestrate

    records = {t.hash: t for t in store.trials(study_id)}
    sections = []
    for stage_plan in orchestrate.resolve(study, store):
        groups = {}
        shown = stage_plan.variants if stage_plan.stage.tune is None else stage_plan.choices()
        names = {t.chosen.label: t.variant.label for t in stage_plan.tuned if t.chosen is not None}
        for v in shown:
            found = [records[h] for h in orchestrate.variant_hashes(v, stage_plan.seeds) if h in records]
            if found:
                groups[names.get(v.label, v.label)] = found
        section = _section(store, groups, options)
        if stage_plan.stage.tune is not None:
            section["tune"] = _tune_block(stage_plan, records, section, options)
        stage = stage_plan.stage
        section.update(
            {
                "stage": stage.name,
                "description": stage.description,
                "from": stage.source,
                "started_from": stage_plan.chosen,
                "started_from_value": stage_plan.chosen_value,
                "selected_by": stage_plan.metric or None,
                "state": stage_plan.state,
                "reason": stage_plan.reason,
                "search": None
                if stage.search is None
                else {
                    "sampler": stage.search.sampler,
                    "trials": stage.search.trials,
                    "sampled": len(stage_plan.variants),
                    "prune": stage.search.prune,
                    **search_outcomes(groups.values()),
                    "budget": budget_curve(
                        section["variants"],
                        section["selection"]["metric"],
                        section["selection"]["mode"],
                        options.budget_estimator,
                    ),
                },
            }
        )
        sections.append(section)
    last = next((s for s in reversed(sections) if s["variants"]), sections[-1])
    header["task"] = last["task"]
    for section in sections:
        for v in section["variants"]:
            v["stage"] = section["stage"]
    counts = count_trials([(s["stage"], s.get("points", s["variants"])) for s in sections])
    for section in sections:
        if section.pop("points", None) is not None:
            for v in section["variants"]:
                v.setdefault("reused_from", None)
    variants = [v for s in sections for v in s["variants"]]
    report = {
        "format": FORMAT,
        "study": header,
        "trials": counts,
        "metrics": last["metrics"],
        "selection": last["selection"],
        "variants": variants,
        "stages": sections,
    }
    if "target" in last:
        report["target"] = last["target"]
    return report


def _tune_block(
    plan: Any, records: Mapping[str, TrialRecord], section: dict[str, Any], options: Options
) -> dict[str, Any]:
    """A tuned stage's ``tune`` block: each variant's tuning (:mod:`trainlab.report.tuning`) from
    the rows of every point it trained. Leaves every point's rows in ``section["points"]`` for
    the study's trial count, which counts each trial once."""
    from trainlab import orchestrate
    from trainlab.report.tuning import variant_tuning

    tune = plan.stage.tune
    metric, mode = section["selection"]["metric"], section["selection"]["mode"]
    rows: dict[str, dict[str, Any]] = {}

    def row(v: Any) -> dict[str, Any] | None:
        if v.label not in rows:
            found = [records[h] for h in orchestrate.variant_hashes(v, plan.seeds) if h in records]
            if not found:
                return None
            rows[v.label] = _variant(v.label, found, section["task"], None, metric)
        return rows[v.label]

    variants = []
    for t in plan.tuned:
        searches = [[r for r in map(row, points) if r is not None] for points in t.searches]
        bests = [None if b is None else b[1] for b in t.bests]
        chosen = row(t.chosen) if t.chosen is not None else None
        variants.append(
            variant_tuning(
                t.variant.label,
                tune,
                t.entry,
                searches,
                bests,
                chosen,
                None if t.chosen is None else t.chosen.spec,
                metric,
                mode,
                options.budget_estimator,
            )
        )
    section["points"] = list(rows.values())
    return {
        "sampler": tune.search.sampler,
        "trials": tune.search.trials,
        "repeats": tune.repeats,
        "defaults": tune.defaults,
        "prune": tune.search.prune,
        "variants": variants,
    }


def search_outcomes(points: Iterable[Sequence[TrialRecord]]) -> dict[str, Any]:
    """How a search's points ended, each point by its trials (:func:`~trainlab.report.tuning.point_outcomes`)."""
    from trainlab.report.tuning import point_outcomes

    return point_outcomes({t.status for t in trials} for trials in points)


def count_trials(sections: Sequence[tuple[str | None, Sequence[dict[str, Any]]]]) -> dict[str, Any]:
    """Count each trial once, and mark where it appears again.

    A later stage may hold a trial an earlier stage trained (its "as chosen" variant is the
    earlier stage's choice): that trial belongs to both stages' tables, but it is one trial. Its
    first appearance counts; each later one gets ``reused_from`` (the stage it first appeared
    in) on the trial row, and its variant a ``reused_from`` of ``{"stage", "variant",
    "trials"}`` (``None`` where no trial of it is reused). Returns the study's ``trials``
    block: ``total`` distinct trials, their ``status`` counts, and ``reused`` appearances.
    """
    seen: dict[str, tuple[str | None, str]] = {}
    status: dict[str, int] = {}
    reused = 0
    for stage, variants in sections:
        for v in variants:
            origin: tuple[str | None, str] | None = None
            again = 0
            for row in v["trials"]:
                first = seen.get(row["hash"])
                row["reused_from"] = None if first is None else first[0]
                if first is None:
                    seen[row["hash"]] = (stage, v["label"])
                    status[row["status"]] = status.get(row["status"], 0) + 1
                else:
                    origin, again = origin or first, again + 1
            v["reused_from"] = None if origin is None else {"stage": origin[0], "variant": origin[1], "trials": again}
            reused += again
    return {"total": len(seen), "status": dict(sorted(status.items())), "reused": reused}


def trials_text(counts: Mapping[str, Any]) -> str:
    """The study's trial count in one sentence: ``93 trials: 90 done, 3 failed (9 appear again ...)``."""
    by_status = ", ".join(f"{n} {k}" for k, n in counts["status"].items()) or "none recorded yet"
    text = f"{counts['total']} trials: {by_status}"
    if counts.get("reused"):
        text += f"; {counts['reused']} appear again in a later stage (marked 'reused from') and are counted once"
    return text + "."


def _study_of(spec: Mapping[str, Any]) -> Any:
    """The study a stored spec describes, or None if it no longer validates."""
    from trainlab.spec import from_dict

    try:
        return from_dict(spec, default_name=spec.get("study", {}).get("name", "study"))
    except TrainlabError:
        return None


def current_trials(store: Store, name: str) -> list[TrialRecord]:
    """The trials of study ``name`` that its stored spec describes now, in insertion order."""
    record = store.study(name)
    if record is None:
        return []
    study = _study_of(json.loads(record.spec_json))
    trials = store.trials(record.id)
    if study is None:
        return trials
    if study.dynamic:
        from trainlab import orchestrate

        current = {h for p in orchestrate.resolve(study, store) for h in p.hashes()}
    else:
        current = {t.hash for t in study.trials()}
    return [t for t in trials if t.hash in current]


def _target(
    options: Options, task: str, store: Store, groups: Mapping[str, list[TrialRecord]]
) -> tuple[str, float, dict[int, stats.Reached]] | None:
    """(metric, threshold, when each done trial first reached it), or None without a target."""
    if options.target is None:
        return None
    metric = options.target_metric or ("val_accuracy" if task == "classification" else "val_loss")
    from trainlab.spec import monitorable

    if metric not in monitorable(task):
        raise TrainlabError(
            f"cannot use {metric!r} as target metric for a {task} study; choose one of: {', '.join(monitorable(task))}"
        )
    mode = _mode(metric)
    reached = {}
    for group in groups.values():
        for t in group:
            if t.status in FINISHED_OK:
                history = [e.metrics for e in store.epochs(t.id)]
                reached[t.id] = stats.first_reaching(history, metric, options.target, mode)
    return metric, options.target, reached


def _variant(
    label: str,
    trials: list[TrialRecord],
    task: str,
    target: tuple[str, float, dict[int, stats.Reached]] | None,
    monitor: str,
) -> dict[str, Any]:
    done = [t for t in trials if t.status in FINISHED_OK and t.result]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    rows = [_trial(t, task, target, monitor) for t in trials]
    ok = [r for r, t in zip(rows, trials) if t in done]
    out: dict[str, Any] = {
        "label": label,
        "params": trials[0].params,
        "settings": _settings(trials[0]),
        "n": len(done),
        "seeds": [t.seed for t in done],
        "status": counts,
    }
    for name in metric_names(task):
        out[f"val_{name}"] = _stat([r[f"val_{name}"] for r in ok])
        out[f"test_{name}"] = _stat([r[f"test_{name}"] for r in ok])
    for name in ("best_epoch", "epochs", "seconds_per_epoch", "seconds"):
        out[name] = _stat([r[name] for r in ok])
    if monitor not in out:
        out[monitor] = _stat([r[monitor] for r in ok])
    if target is not None:
        hit = [r for r in ok if r["epochs_to_target"] is not None]
        out["time_to_target"] = {
            "reached": len(hit),
            "fraction": len(hit) / len(ok) if ok else None,
            "epochs": _stat([r["epochs_to_target"] for r in hit]),
            "seconds": _stat([r["seconds_to_target"] for r in hit]),
        }
    out["trials"] = rows
    return out


def _settings(trial: TrialRecord) -> dict[str, Any]:
    """What the variant trains beside Keras' defaults, by key path (see trainlab.describe);
    empty for a stored spec that is not a complete resolved one (written by hand, or lacking a
    part another version of trainlab resolves), since the report must not stop on it."""
    from trainlab.describe import settings

    try:
        return settings(json.loads(trial.spec_json))
    except (KeyError, TypeError, AttributeError, TrainlabError):
        return {}


def _trial(
    trial: TrialRecord, task: str, target: tuple[str, float, dict[int, stats.Reached]] | None, monitor: str
) -> dict[str, Any]:
    result = trial.result or {}
    best, test = result.get("best", {}), result.get("test", {})
    row: dict[str, Any] = {"hash": trial.hash, "seed": trial.seed, "status": trial.status}
    for name in metric_names(task):
        row[f"val_{name}"] = best.get(f"val_{name}")
        row[f"test_{name}"] = test.get(name)
    row["best_epoch"] = result["best_epoch"] + 1 if "best_epoch" in result else None
    row["epochs"] = result.get("epochs")
    row["seconds_per_epoch"] = result.get("seconds_per_epoch")
    spe, epochs = result.get("seconds_per_epoch"), result.get("epochs")
    row["seconds"] = spe * epochs if spe is not None and epochs is not None else None
    row["stop_reason"] = result.get("stop_reason")
    row["error"] = trial.error
    row["plan"] = trial.plan
    if monitor not in row:
        row[monitor] = best.get(monitor)
    if target is not None:
        reached = target[2].get(trial.id, stats.Reached(None, None))
        row["epochs_to_target"], row["seconds_to_target"] = reached.epoch, reached.seconds
    return row


def chosen_variant(variants: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any] | None:
    """The variant with the best mean of ``metric`` (the rule of :mod:`trainlab.selection`);
    None if none has finished."""
    other = selection.tie_break(metric)
    index = selection.choose([(v.get(metric, {}).get("mean"), v.get(other, {}).get("mean")) for v in variants], metric)
    return None if index is None else variants[index]


def best_trial_row(variant: Mapping[str, Any], metric: str) -> Mapping[str, Any]:
    """The variant's done trial with the best ``metric`` (ties as in :func:`chosen_variant`, then seed order)."""
    other = selection.tie_break(metric)
    rows = [r for r in variant["trials"] if r["status"] in FINISHED_OK and r.get(metric) is not None]
    if not rows:
        raise TrainlabError(f"variant {variant['label']!r} has no finished trial")
    return min(enumerate(rows), key=lambda item: selection.rank(item[1][metric], item[1].get(other), metric, item[0]))[
        1
    ]


def _compare(variants: list[dict[str, Any]], chosen: Mapping[str, Any] | None, metric: str, correction: str) -> None:
    """Add ``vs_best`` to each variant: its test on ``metric`` against the chosen variant (paired
    where both finished the same seeds, Welch's otherwise), the p-value corrected by
    ``correction`` over every pair of variants (see :func:`stats.versus_best`)."""
    samples = {
        v["label"]: {r["seed"]: r.get(metric) for r in v["trials"] if r["status"] in FINISHED_OK}
        for v in variants
        if v["n"] > 0
    }
    against = {} if chosen is None else stats.versus_best(samples, chosen["label"], correction=correction)
    family = next(iter(against.values())).family if against else 0
    for v in variants:
        base = {"metric": metric, "best": chosen["label"] if chosen else None, "correction": correction}
        if chosen is None or v["n"] == 0:
            v["vs_best"] = {**base, **_no_test("no finished seed"), "family": family}
        elif v["label"] == chosen["label"]:
            note = "best (1 seed)" if v["n"] == 1 else "best"
            v["vs_best"] = {**base, **_no_test(note), "distinguishable": False, "family": family}
        else:
            result = against[v["label"]]
            v["vs_best"] = {
                **base,
                **result.comparison.as_dict(),
                "p_adjusted": result.p_adjusted,
                "distinguishable": result.distinguishable,
                "note": result.note,
                "family": result.family,
            }


def _no_test(note: str) -> dict[str, Any]:
    return {**stats.Comparison(None, None, None, None, note).as_dict(), "p_adjusted": None}


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the human-readable table: header, cell text, and the CSV fields it yields."""

    header: str
    cell: Callable[[Mapping[str, Any]], str]
    key: str | None = None
    """The statistic behind the column, if any: CSV writes its mean, std and CI."""
    decimals: int = 4


def _cell(stat: Mapping[str, Any], decimals: int) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{stat['mean']:.{decimals}f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.{decimals}f}"
    return text


def _ci_cell(stat: Mapping[str, Any], n: int, decimals: int) -> str:
    if n == 0 or stat["mean"] is None:
        return "-"
    if stat.get("ci95") is None:
        return "1 seed" if n == 1 else "-"
    low, high = stat["ci95"]
    return f"[{low:.{decimals}f}, {high:.{decimals}f}]"


def vs_best_text(v: Mapping[str, Any]) -> str:
    """Short text for the comparison with the best: ``best``, ``≈ best (p=0.43)``, ``worse (p=0.003)``;
    the p shown is the corrected one (``p_adjusted``) where the report corrects."""
    cmp = v["vs_best"]
    if cmp["p"] is None:
        note = cmp["note"]
        if note.startswith("1 seed") or note.startswith("no finished"):
            return note.split(" (")[0]
        if note == "identical values":
            return "≈ best (identical)"
        return note.split(":")[0]
    p = cmp["p"] if cmp.get("p_adjusted") is None else cmp["p_adjusted"]
    ptext = f"p={p:.3f}" if p >= 0.001 else "p<0.001"
    return f"≈ best ({ptext})" if not cmp["distinguishable"] else f"worse ({ptext})"


def tests_text(variants: Sequence[Mapping[str, Any]]) -> str:
    """Which tests the comparisons with the best used, in words."""
    used = {v["vs_best"].get("test") for v in variants} - {None}
    if used == {"paired t"}:
        pairs = sorted({v["vs_best"]["pairs"] for v in variants if v["vs_best"].get("test") == "paired t"})
        return f"paired t-test over the {'/'.join(map(str, pairs))} seeds both share"
    if used == {"welch", "paired t"}:
        return "paired t-test where both finished the same 3 or more seeds, Welch's t-test otherwise"
    return "Welch's t-test"


def correction_text(report: Mapping[str, Any]) -> str:
    """How the shown p-values were corrected, with the family's size; empty with fewer than two tests."""
    correction = report["selection"].get("correction", "none")
    family = max((v["vs_best"].get("family") or 0 for v in report["variants"]), default=0)
    if family < 2:
        return ""
    if correction == "none":
        return f"vs best p: uncorrected for the {family} pairs of variants tested (--correction none)."
    name = {"holm": "Holm", "bonferroni": "Bonferroni"}[correction]
    return (
        f"vs best p: corrected by {name} over all {family} pairs of variants, "
        "since the best is chosen from the same data."
    )


def _short(metric: str) -> str:
    return metric.replace("val_", "val ").replace("test_", "test ").replace("_", " ")


def _columns(report: Mapping[str, Any]) -> list[Column]:
    task = report["study"]["task"]
    selection = report["selection"]
    metric = selection["metric"]
    cols: list[Column] = []

    def stat_col(header: str, key: str, decimals: int) -> Column:
        return Column(header, lambda v: _cell(v[key], decimals), key, decimals)

    def ci_col(key: str) -> Column:
        return Column("95% CI", lambda v: _ci_cell(v[key], v["n"], 4))

    names = metric_names(task)
    val_keys = [f"val_{n}" for n in names]
    for key in val_keys:
        cols.append(stat_col(_short(key), key, 4))
        if key == metric:
            cols += [ci_col(key), Column("vs best", vs_best_text)]
    if metric not in val_keys:
        cols += [stat_col(_short(metric), metric, 4), ci_col(metric), Column("vs best", vs_best_text)]
    cols.append(stat_col("best epoch", "best_epoch", 1))
    show_all = selection["test_shown"] == "all"
    for name in names[:1]:
        key = f"test_{name}"

        def test_cell(v: Mapping[str, Any], key: str = key) -> str:
            return _cell(v[key], 4) if show_all or v.get("chosen") else "·"

        cols.append(Column(_short(key), test_cell, key, 4))
    target = report.get("target")
    if target is not None:
        th = f"{target['threshold']:g}"
        cols.append(Column(f"reached {th}", lambda v: f"{v['time_to_target']['reached']}/{v['n']}"))
        cols.append(Column(f"epochs to {th}", lambda v: _cell(v["time_to_target"]["epochs"], 1)))
        cols.append(Column(f"s to {th}", lambda v: _cell(v["time_to_target"]["seconds"], 1)))
    cols.append(stat_col("epochs", "epochs", 1))
    cols.append(stat_col("s/epoch", "seconds_per_epoch", 2))
    cols.append(stat_col("time (s)", "seconds", 1))
    return cols


def _status_note(counts: Mapping[str, int]) -> str:
    others = {k: v for k, v in counts.items() if k != "done"}
    return ", ".join(f"{v} {k}" for k, v in sorted(others.items()))


def table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the human-readable table (shared by the terminal, Markdown and HTML)."""
    cols = _columns(report)
    header = ["variant", "n", *[c.header for c in cols], "not done"]
    body = [
        [variant_cell(v), str(v["n"]), *[c.cell(v) for c in cols], _status_note(v["status"])]
        for v in report["variants"]
    ]
    tune = report.get("tune")
    if tune:
        curves = {t["label"]: t["budget"] for t in tune["variants"]}
        header.insert(-1, "best at " + " / ".join(str(n) for n in BUDGETS) + " points")
        for row, v in zip(body, report["variants"], strict=True):
            row.insert(-1, _budget_cell(curves.get(v["label"])))
    return header, body


def _budget_cell(budget: Mapping[str, Any] | None) -> str:
    """A tuned variant's expected best at 1, 4 and 16 points (· where it has fewer)."""
    at = {a["n"]: a["expected_best"] for a in budget["at"]} if budget else {}
    return " / ".join(f"{at[n]:.4f}" if n in at else "·" for n in BUDGETS)


def variant_cell(v: Mapping[str, Any]) -> str:
    """A variant's label, marked where its trials were trained (and are counted) in an earlier stage."""
    reused = v.get("reused_from")
    return v["label"] if not reused else f"{v['label']} (reused from {reused['stage']})"


def notes(report: Mapping[str, Any]) -> list[str]:
    """The sentences a reader needs to read the table right: what the CI, the test and the
    test-set columns mean, in this report's terms."""
    sel = report["selection"]
    metric = _short(sel["metric"])
    out = [
        f"Mean ± standard deviation over seeds; 95% CI: Student t over seeds of {metric}.",
    ]
    if sel["chosen"] is None:
        out.append("No variant has a finished trial yet.")
        return out + ([trials_text(report["trials"])] if report.get("trials") else [])
    direction = "highest" if sel["mode"] == "max" else "lowest"
    out.append(
        f"Chosen on validation: {sel['chosen']} ({direction} mean {metric}). "
        f"vs best: {tests_text(report['variants'])} on {metric} against {sel['chosen']}; "
        f"≈ best = not distinguishable from it at {sel['alpha']:.0%}."
    )
    correction = correction_text(report)
    if correction:
        out.append(correction)
    wilcoxon = [v for v in report["variants"] if v["vs_best"].get("wilcoxon_p") is not None]
    if wilcoxon:
        out.append(
            "Wilcoxon signed-rank over the shared seeds, uncorrected, no normality assumed: "
            + ", ".join(f"{v['label']} p={v['vs_best']['wilcoxon_p']:.3f}" for v in wilcoxon)
            + "."
        )
    test = _short("test_" + report["metrics"][0])
    if sel["test_shown"] == "all":
        out.append(
            f"{test}: every variant shown on request (--all-test); "
            "choosing by it would make the test set a validation set."
        )
    else:
        out.append(
            f"{test}: only for the variant chosen on validation ({sel['chosen']}); · = withheld, --all-test shows all."
        )
    if any(v["n"] == 1 for v in report["variants"]):
        out.append("1 seed: a single run has no spread to estimate, so no interval and no test; run more seeds.")
    target = report.get("target")
    if target is not None:
        rel = "≥" if target["mode"] == "max" else "≤"
        out.append(
            f"reached / epochs to / s to: first epoch with {_short(target['metric'])} {rel} {target['threshold']:g}, "
            "over the seeds that reached it; seconds are training time up to the end of that epoch."
        )
    reused = sorted({v["reused_from"]["stage"] for v in report["variants"] if v.get("reused_from")})
    if reused:
        out.append(
            f"reused from {', '.join(reused)}: the same trials as that stage's variant, trained once and "
            "shown again here; the study's trial count counts them once."
        )
    budget = (report.get("search") or {}).get("budget")
    if budget and budget["at"]:
        out.append(budget_text(budget))
    if report.get("tune"):
        from trainlab.report.tuning import tune_text

        out += tune_text(report["tune"], sel["metric"])
    if report.get("trials"):
        out.append(trials_text(report["trials"]))
    return out


def _tune_columns(section: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A tuned stage's CSV columns by variant label: the tuned values (a dict of key paths), the
    median, minimum and maximum of the repeated searches' bests, and the budget curve at 1, 4 and
    16 points."""
    out = {}
    for v in (section.get("tune") or {}).get("variants", []):
        spread = v["study_spread"] or {}
        at = {a["n"]: a["expected_best"] for a in v["budget"]["at"]} if v["budget"] else {}
        out[v["label"]] = [
            v["values"],
            spread.get("median"),
            spread.get("min"),
            spread.get("max"),
            *(at.get(n) for n in BUDGETS),
        ]
    return out


def budget_text(budget: Mapping[str, Any]) -> str:
    """The search's budget curve in one sentence: the expected best at 1, 4 and 16 points (those
    it has), with their bootstrap bands, and the estimator behind them."""
    at = budget["at"]
    values = " / ".join(f"{a['expected_best']:.4f} [{a['band'][0]:.4f}, {a['band'][1]:.4f}]" for a in at)
    worst = f"; {budget['counted_worst']} diverged counted as the worst" if budget["counted_worst"] else ""
    return (
        f"Best at {' / '.join(str(a['n']) for a in at)} points: {values}: the expected best {_short(budget['metric'])} "
        f"of that many points drawn from the search's {budget['points']} finished ones{worst} "
        f"({SOURCES[budget['estimator']]}; {budget['confidence']:.0%} bootstrap band)."
    )


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The report in one of :data:`FORMATS` (``table`` is for a terminal, via Rich).

    A staged report renders one table per stage, each headed by the choice it started from
    (CSV: one table with a ``stage`` column), then the study's trial count."""
    if fmt == "json":
        return json.dumps(finite(report), indent=2, allow_nan=False)
    if fmt == "csv":
        return _csv(report)
    if fmt not in FORMATS:
        raise TrainlabError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not report.get("stages"):
        return _render_one(report, fmt)
    parts = []
    for section, sub in stage_views(report):
        assert section is not None
        heading = stage_heading(section)
        if not section["variants"]:
            parts.append(
                f"{'### ' if fmt == 'markdown' else ''}{heading}\n{section['reason'] or 'no finished trial yet'}"
            )
            continue
        parts.append((f"### {heading}\n\n" if fmt == "markdown" else f"{heading}\n") + _render_one(sub, fmt))
    parts.append(trials_text(report["trials"]))
    return "\n\n".join(parts)


def stage_views(report: Mapping[str, Any]) -> list[tuple[Mapping[str, Any] | None, dict[str, Any]]]:
    """Each stage of a staged report as (its section, a report of that stage alone), which the
    table formats and the HTML page render like a plain study's; a plain report is one view,
    ``(None, report)``. A stage's view has no ``trials`` count: the study's counts each trial once."""
    if not report.get("stages"):
        return [(None, dict(report))]
    return [
        (
            section,
            {
                **report,
                **section,
                "stages": None,
                "trials": None,
                "study": {**report["study"], "name": f"{report['study']['name']} / {section['stage']}"},
            },
        )
        for section in report["stages"]
    ]


def _render_one(report: Mapping[str, Any], fmt: str) -> str:
    """One table (a plain study, or one stage) as Markdown or a terminal table, with its notes."""
    header, body = table_rows(report)
    if fmt == "markdown":
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|",
        ]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
        lines += [""] + [f"- {line}" for line in notes(report)]
        return "\n".join(lines)
    return _rich_table(report["study"]["name"], header, body, notes(report))


def stage_heading(section: Mapping[str, Any]) -> str:
    """One line saying what a stage is and which choice it started from."""
    text = f"stage {section['stage']}" if section["stage"] else "the study"
    if section.get("description"):
        text += f": {section['description']}"
    if section.get("from"):
        if section.get("started_from"):
            value = section.get("started_from_value")
            shown = f", {_short(section['selected_by'])} {value:.4f}" if value is not None else ""
            text += f" (from stage {section['from']}'s best: {section['started_from']}{shown})"
        else:
            text += f" ({section['state']}: starts from stage {section['from']}'s best)"
    search = section.get("search")
    if search:
        text += (
            f" [{search['sampler']} search, {search['sampled']}/{search['trials']} sampled, pruning {search['prune']}"
        )
        if search["prune"] != "none" and search.get("pruned_share") is not None:
            text += (
                f": {search['pruned']} of {search['finished']} finished points pruned ({search['pruned_share']:.0%})"
            )
        text += "]"
    tune = section.get("tune")
    if tune:
        repeats = f", {tune['repeats']} searches each" if tune["repeats"] > 1 else ""
        text += f" [each variant tuned: {tune['sampler']}, {tune['trials']} points{repeats}, pruning {tune['prune']}]"
    return text


def csv_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the CSV format, with their values as data: numbers (None where there
    is none, or where a test metric is withheld), the ``status`` counts as a dict, ``chosen`` as a
    bool. A staged report has a ``stage`` column and the rows of every stage with variants. The
    CSV writes these; the Python API's table is these."""
    if report.get("stages"):
        header: list[str] = []
        out: list[list[Any]] = []
        tuned = any(s.get("tune") for s in report["stages"])
        for section in (s for s in report["stages"] if s["variants"]):
            head, rows = csv_rows({**report, **section, "stages": None, "trials": None})
            columns = ["tuned", "study_median", "study_min", "study_max", *(f"best_at_{n}" for n in BUDGETS)]
            header = ["stage", *head] + (columns if tuned else [])
            extra = _tune_columns(section) if tuned else {}
            out += [[section["stage"], *row, *extra.get(row[0], [None] * len(columns))] for row in rows]
        return header, out
    cols = [c for c in _columns(report) if c.key is not None]
    show_all = report["selection"]["test_shown"] == "all"
    header = ["variant", "n"]
    for c in cols:
        header += [f"{c.key}_mean", f"{c.key}_std", f"{c.key}_ci_low", f"{c.key}_ci_high"]
    header += ["status", "chosen", "vs_best", "p_vs_best", "p_vs_best_adjusted", "test_vs_best", "wilcoxon_p_vs_best"]
    target = report.get("target")
    if target is not None:
        header += [
            "target_reached",
            "epochs_to_target_mean",
            "epochs_to_target_std",
            "seconds_to_target_mean",
            "seconds_to_target_std",
        ]
    header += ["reused_from", "reused_trials"]
    rows: list[list[Any]] = []
    for v in report["variants"]:
        row: list[Any] = [v["label"], v["n"]]
        for c in cols:
            assert c.key is not None
            stat = v[c.key]
            if c.key.startswith("test_") and not (show_all or v.get("chosen")):
                row += [None, None, None, None]
                continue
            ci = stat.get("ci95") or [None, None]
            row += [stat["mean"], stat["std"], ci[0], ci[1]]
        row += [
            dict(v["status"]),
            bool(v.get("chosen")),
            vs_best_text(v),
            v["vs_best"]["p"],
            v["vs_best"].get("p_adjusted"),
            v["vs_best"].get("test"),
            v["vs_best"].get("wilcoxon_p"),
        ]
        if target is not None:
            ttt = v["time_to_target"]
            row += [
                ttt["reached"],
                ttt["epochs"]["mean"],
                ttt["epochs"]["std"],
                ttt["seconds"]["mean"],
                ttt["seconds"]["std"],
            ]
        reused = v.get("reused_from")
        row += [reused["stage"], reused["trials"]] if reused else [None, 0]
        rows.append(row)
    return header, rows


def _csv(report: Mapping[str, Any]) -> str:
    header, rows = csv_rows(report)
    if not header:  # a staged study with no finished stage yet
        return "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_value(value) for value in row] for row in rows])
    return buf.getvalue()


def _rich_table(title: str, header: list[str], body: list[list[str]], caption: list[str]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"study {title}", title_justify="left", caption="\n".join(caption), caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i in (0, len(header) - 1) else "right")
    for row in body:
        table.add_row(*row)
    console = Console(width=220, record=True, file=io.StringIO(), force_terminal=False)
    console.print(table)
    return console.export_text().rstrip("\n")


def _csv_value(value: Any) -> Any:
    """A CSV cell: floats exact (``repr``), None empty, a bool as ``true``/``false``, a dict as sorted JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)
    return value
