"""What a tuned stage's report says of each variant's tuning: the values it was tuned to, the
budget it spent, how its points ended, how far its result moves between independent searches
(study variance), whether its best lies at the edge of the space, and its budget curve.

Pure functions over the report's rows of each point (:func:`trainlab.report.tables.study_report`
builds them); nothing here reads the store.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from trainlab.report.budget import ESTIMATOR, budget_curve
from trainlab.spec import Dimension, TuneSpec
from trainlab.spec.keypaths import get_path
from trainlab.store import FINISHED_STATUSES

EDGE = 0.05
"""A tuned value within this share of its range from a bound (on the dimension's own scale, a
log one for log ranges) lies at the edge of the space."""


def edges(space: Sequence[Dimension], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The numeric dimensions whose ``values`` lie within :data:`EDGE` of a bound: each with the
    bound it is near (``low`` or ``high``). The tuning playbook's sign that the search is probably
    not wide enough: the best might lie outside it."""
    out = []
    for d in space:
        value = values.get(d.key)
        if d.kind == "choice" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        scale = math.log if d.log else float
        low, high = scale(d.low), scale(d.high)
        where = (scale(value) - low) / (high - low) if high > low else 0.5
        if where <= EDGE or where >= 1 - EDGE:
            out.append({"key": d.key, "value": value, "bound": "low" if where <= EDGE else "high"})
    return out


def study_spread(bests: Sequence[float | None]) -> dict[str, Any] | None:
    """The spread of a variant's tuned result over independent searches: the median of each
    search's best (AlgoPerf's summary of repeated studies), its minimum, maximum and standard
    deviation; None before any search has a best."""
    values = [b for b in bests if b is not None]
    if not values:
        return None
    return {
        "searches": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def point_outcomes(points: Iterable[Collection[str]]) -> dict[str, Any]:
    """How a search's points ended, each point by the statuses of its trials: ``finished`` (every
    trial finished), ``pruned`` and ``diverged`` (a trial was), and ``pruned_share``, pruned over
    finished (None before any finished)."""
    finished = pruned = diverged = 0
    for statuses in points:
        if set(statuses) <= FINISHED_STATUSES:
            finished += 1
            pruned += "pruned" in statuses
            diverged += "diverged" in statuses
    share = pruned / finished if finished else None
    return {"finished": finished, "pruned": pruned, "diverged": diverged, "pruned_share": share}


def outcomes(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How a variant's points ended (:func:`point_outcomes`, from each point row's status
    counts), with the diverged share of finished points and the trials trained."""
    counted = point_outcomes(row["status"] for row in rows)
    finished = counted["finished"]
    return {
        "points": len(rows),
        **counted,
        "diverged_share": counted["diverged"] / finished if finished else None,
        "trials": sum(sum(row["status"].values()) for row in rows),
    }


def tuned_values(
    row: Mapping[str, Any] | None, spec: Mapping[str, Any] | None, space: Sequence[Dimension]
) -> dict[str, Any]:
    """The values of the search space's keys at a variant's tuned best: read from the point's
    resolved ``spec`` (so the variant as listed has its values too), an ``edit.`` key from its
    ``row``'s params."""
    if row is None or spec is None:
        return {}
    out = {}
    for d in space:
        value = row["params"].get(d.key) if d.key.startswith("edit.") else get_path(spec, d.key)
        if value is not None:
            out[d.key] = value
    return out


def variant_tuning(
    label: str,
    tune: TuneSpec,
    entry: str,
    searches: Sequence[Sequence[Mapping[str, Any]]],
    bests: Sequence[float | None],
    chosen: Mapping[str, Any] | None,
    chosen_spec: Mapping[str, Any] | None,
    metric: str,
    mode: str,
    estimator: str = ESTIMATOR,
) -> dict[str, Any]:
    """The tuning block of one variant: ``searches`` holds each repeat's point rows (with
    ``defaults``, each starts with the variant as listed: the same row), ``bests`` each repeat's
    best value, ``chosen`` the row of the point the variant is compared at and ``chosen_spec`` its
    resolved spec. The budget curve pools
    the repeats' sampled points, and starts at the variant as listed where it has one."""
    space = tune.search_for(entry, 0).space
    first = int(tune.defaults)
    defaults = searches[0][0] if first and searches and searches[0] else None
    unique = ([defaults] if defaults is not None else []) + [row for rows in searches for row in rows[first:]]
    values = tuned_values(chosen, chosen_spec, space)
    return {
        "label": label,
        "chosen": chosen["label"] if chosen else None,
        "values": values,
        "space": [d.key for d in space],
        # The variant as listed is not a point of the space: where it wins, its values say
        # nothing of the space's width.
        "edges": [] if chosen is not None and chosen is defaults else edges(space, values),
        **outcomes(unique),
        "repeat_bests": list(bests),
        "study_spread": study_spread(bests),
        "defaults": None if defaults is None else _mean_best(defaults, metric),
        "budget": budget_curve(
            [row for rows in searches for row in rows[first:]], metric, mode, estimator, first=defaults
        ),
    }


def _mean_best(row: Mapping[str, Any], metric: str) -> float | None:
    """A point's value: the mean over its finished trials of each one's best ``metric``."""
    values = [t.get(metric) for t in row["trials"] if t["status"] in ("done", "pruned")]
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite and len(finite) == len(values) else None


def tune_text(block: Mapping[str, Any], metric: str) -> list[str]:
    """The tuning of each variant in one line each, and what the two spreads are."""
    lines = []
    for v in block["variants"]:
        values = " ".join(f"{k.split('.')[-1]}={_fmt(x)}" for k, x in v["values"].items()) or "none yet"
        text = f"{v['label']}: tuned {values}; {v['finished']}/{v['points']} points finished"
        text += f" ({v['trials']} trials; {v['diverged']} diverged, {v['pruned']} pruned)"
        if v["defaults"] is not None:
            text += f"; as listed {v['defaults']:.4f}"
        spread = v["study_spread"]
        if spread is not None and spread["searches"] > 1:
            text += (
                f"; best of {spread['searches']} searches: median {spread['median']:.4f} "
                f"[{spread['min']:.4f}, {spread['max']:.4f}]"
            )
        budget = v["budget"]
        if budget and budget["at"]:
            at = " / ".join(f"{a['expected_best']:.4f}" for a in budget["at"])
            text += f"; best at {' / '.join(str(a['n']) for a in budget['at'])} points {at}"
        for edge in v["edges"]:
            text += (
                f"; WARNING: {edge['key']} = {_fmt(edge['value'])} lies at the {edge['bound']} edge of the space "
                "(the search is probably not wide enough)"
            )
        lines.append(text + ".")
    lines.append(
        f"Tuned: each variant by its own {block['sampler']} search of {block['trials']} points"
        + (" (the first as listed)" if block["defaults"] else "")
        + (f", repeated {block['repeats']} times with independent search seeds" if block["repeats"] > 1 else "")
        + f", compared at its best {_short(metric)} on validation. ± and CI: over training seeds at the tuned values "
        "(trial variance)"
        + ("; 'best of N searches': over the repeated searches (study variance)." if block["repeats"] > 1 else ".")
    )
    return lines


def _short(metric: str) -> str:
    return metric.replace("_", " ")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
