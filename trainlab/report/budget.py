"""Budget curves: the best validation score a search is expected to reach after ``n`` sampled
points, for ``n = 1 .. N``, from the ``N`` points it recorded.

The estimator is Dodge et al. 2019's expected maximum ("Show your work"): drawing ``n`` points
from the empirical distribution of the recorded scores, ordered worst to best as
``v_(1) .. v_(N)``, the best of the ``n`` is ``v_(i)`` with probability
``(i/N)^n - ((i-1)/N)^n``, so ``E[best of n] = sum_i v_(i) * ((i/N)^n - ((i-1)/N)^n)``. At
``n = 1`` it is the mean score, and it rises to the best recorded score as ``n`` grows. A reader
sees from the curve whether a ranking of searches holds at every budget or only at the one spent.

The band is a percentile bootstrap over the recorded points: the curve of each resample of the
``N`` points (with replacement), from a generator seeded by :data:`SEED`, so a report is the same
on every run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RESAMPLES = 1000
"""Bootstrap resamples behind a band."""
CONFIDENCE = 0.95
SEED = 0
"""The bootstrap generator's seed: fixed, so that a report never changes between runs."""
BUDGETS = (1, 4, 16)
"""The numbers of points a report's summary line gives the expected best at (those up to N)."""


def _worst_to_best(scores: np.ndarray, maximize: bool) -> np.ndarray:
    """``scores`` sorted along the last axis from the worst to the best."""
    ordered = np.sort(scores, axis=-1)
    return ordered if maximize else ordered[..., ::-1]


def _weights(count: int) -> np.ndarray:
    """``W[i - 1, n - 1] = (i/N)^n - ((i-1)/N)^n``: the chance that the ``i``-th worst of ``N``
    points is the best of ``n`` drawn with replacement."""
    i = np.arange(1, count + 1, dtype=np.float64)[:, None]
    n = np.arange(1, count + 1, dtype=np.float64)[None, :]
    return (i / count) ** n - ((i - 1) / count) ** n


def expected_best(scores: Sequence[float], maximize: bool = True) -> list[float]:
    """``E[best of n]`` for ``n = 1 .. len(scores)`` (the highest score, or the lowest for a
    loss, when ``maximize`` is False)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return []
    return [float(x) for x in _worst_to_best(values, maximize) @ _weights(values.size)]


def bootstrap_band(
    scores: Sequence[float],
    maximize: bool = True,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> list[tuple[float, float]]:
    """The ``confidence`` percentile band of :func:`expected_best` at each ``n``, over
    ``resamples`` bootstrap resamples of the scores."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return []
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(resamples, values.size))]
    curves = _worst_to_best(samples, maximize) @ _weights(values.size)
    tail = (1 - confidence) / 2
    low, high = np.quantile(curves, [tail, 1 - tail], axis=0)
    return [(float(a), float(b)) for a, b in zip(low, high, strict=True)]


def point_scores(variants: Sequence[Mapping[str, Any]], metric: str, maximize: bool) -> tuple[list[float], int]:
    """The score of each finished point of a search, and how many of them count as the worst.

    ``variants`` are the report's rows of the search's points. A point's score is the mean over
    its trials of each trial's best ``metric``; a pruned trial counts at the best value it
    recorded before it was stopped. A point that diverged on any seed (or recorded no finite
    value) counts as the worst: at the lowest score of the others (the highest, for a loss), so
    that it never lifts the curve but still costs a draw. Points still training, and points
    with a failed trial (an error, not an outcome of the hyper-parameters), are left out.
    """
    scored: list[float | None] = []
    for v in variants:
        rows = v["trials"]
        statuses = {r["status"] for r in rows}
        if not rows or not statuses <= {"done", "pruned", "diverged"}:
            continue
        values = [r.get(metric) for r in rows]
        if "diverged" in statuses or any(x is None or not math.isfinite(x) for x in values):
            scored.append(None)
        else:
            scored.append(sum(values) / len(values))
    finite = [s for s in scored if s is not None]
    if not finite:
        return [], 0
    worst = min(finite) if maximize else max(finite)
    return [worst if s is None else s for s in scored], len(scored) - len(finite)


def budget_curve(variants: Sequence[Mapping[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """A search's budget curve as the report's JSON holds it; None before any point finished."""
    maximize = mode == "max"
    scores, worst = point_scores(variants, metric, maximize)
    if not scores:
        return None
    curve = expected_best(scores, maximize)
    band = bootstrap_band(scores, maximize)
    return {
        "metric": metric,
        "mode": mode,
        "points": len(scores),
        "counted_worst": worst,
        "expected_best": curve,
        "band": [list(b) for b in band],
        "confidence": CONFIDENCE,
        "resamples": RESAMPLES,
        "seed": SEED,
        "at": [{"n": n, "expected_best": curve[n - 1], "band": list(band[n - 1])} for n in BUDGETS if n <= len(scores)],
    }
