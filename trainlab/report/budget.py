"""Budget curves: the best validation score a search is expected to reach after ``n`` sampled
points, for ``n = 1 .. N``, from the ``N`` points it recorded.

Two estimators of that expected best, a named choice (:data:`ESTIMATORS`); with the recorded
scores ordered worst to best as ``v_(1) .. v_(N)``, each is a weighted sum
``E[best of n] = sum_i W[i, n] * v_(i)``:

- ``"unbiased"`` (the default): Tang et al. 2020, "Showing Your Work Doesn't Always Work"
  (ACL 2020). The ``n`` points are drawn WITHOUT replacement from the ``N``: the mean, over all
  ``C(N, n)`` subsets of ``n`` of the recorded points, of each subset's best. The ``i``-th worst
  is a subset's best when the subset holds it and ``n - 1`` of the ``i - 1`` worse points, so
  ``W[i, n] = C(i - 1, n - 1) / C(N, n)``. Averaging a function of ``n`` points over every
  subset of them makes it an unbiased estimate of the expected best of ``n`` fresh points from
  the distribution the search samples; it is defined for ``n <= N`` and equals the best
  recorded score at ``n = N``.
- ``"dodge"``: Dodge et al. 2019's expected maximum ("Show Your Work", EMNLP 2019). The ``n``
  points are drawn WITH replacement from the empirical distribution of the recorded scores, so
  the best of ``n`` is ``v_(i)`` with chance ``W[i, n] = (i/N)^n - ((i-1)/N)^n``. Tang et al.
  show this plug-in estimate is biased low: a draw can repeat a point, so at ``n = N`` it stays
  below the best recorded score. It is kept so that curves can be compared with work that
  used it.

Both are the mean score at ``n = 1`` and rise with ``n``. A reader sees from the curve whether a
ranking of searches holds at every budget or only at the one spent.

A tuned variant's searches start at the variant as listed (:mod:`trainlab.spec.tune`): that point
is not drawn but always there, so its curve starts at its score ``d`` (``n = 1``) and goes on as the
best of ``d`` and ``n - 1`` drawn points, ``sum_i W[i, n - 1] * best(d, v_(i))``: the weights are the
same, since ``best(d, v)`` keeps the points' order.

The band is a percentile bootstrap over the recorded points: the chosen estimator's curve on
each of :data:`RESAMPLES` resamples of the ``N`` points, drawn WITH replacement, from a
generator seeded by :data:`SEED`, so a report is the same on every run. Resampling a full sample
without replacement would only permute it and give no spread. This is how Tang et al. build the
interval of either estimator in their code (castorini/meanmax: a percentile bootstrap over
resamples drawn with replacement), and they find bootstrapped intervals of the expected maximum
unreliable ("poor bootstrapped confidence intervals"). The band is least reliable as ``n`` nears
``N``: at ``n = N`` the unbiased estimate is the sample maximum, and no resample's maximum
exceeds the recorded best, so the band's top is the best recorded score however much better the
unseen points may be. The band shows how much the curve depends on which points the search
happened to draw; it is not a guaranteed confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainlab.errors import TrainlabError

ESTIMATORS = ("unbiased", "dodge")
"""The estimators of the expected best of ``n`` points: Tang et al. 2020's unbiased one (drawn
without replacement) and Dodge et al. 2019's (drawn with replacement)."""
ESTIMATOR = "unbiased"
"""The estimator a report uses unless told otherwise."""
SOURCES = {
    "unbiased": "Tang et al. 2020: without replacement",
    "dodge": "Dodge et al. 2019: with replacement",
}
"""How a report names each estimator, with where it comes from."""
RESAMPLES = 1000
"""Bootstrap resamples behind a band."""
CONFIDENCE = 0.95
SEED = 0
"""The bootstrap generator's seed: fixed, so that a report never changes between runs."""
BUDGETS = (1, 4, 16)
"""The numbers of points a report's summary line gives the expected best at (those up to N)."""


def check_estimator(estimator: str, where: str = "budget estimator") -> str:
    """``estimator`` if it is one of :data:`ESTIMATORS`; otherwise an error naming ``where``
    (the argument or option that gave it) and the allowed values."""
    if estimator not in ESTIMATORS:
        raise TrainlabError(f"{where}: unknown estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")
    return estimator


def _worst_to_best(scores: np.ndarray, maximize: bool) -> np.ndarray:
    """``scores`` sorted along the last axis from the worst to the best."""
    ordered = np.sort(scores, axis=-1)
    return ordered if maximize else ordered[..., ::-1]


def _dodge_weights(count: int) -> np.ndarray:
    """``W[i - 1, n - 1] = (i/N)^n - ((i-1)/N)^n``: the chance that the ``i``-th worst of ``N``
    points is the best of ``n`` drawn with replacement."""
    i = np.arange(1, count + 1, dtype=np.float64)[:, None]
    n = np.arange(1, count + 1, dtype=np.float64)[None, :]
    return (i / count) ** n - ((i - 1) / count) ** n


def _unbiased_weights(count: int) -> np.ndarray:
    """``W[i - 1, n - 1] = C(i-1, n-1) / C(N, n)``: the share of the subsets of ``n`` of ``N``
    points whose best is the ``i``-th worst.

    Binomial coefficients overflow a float beyond ``N`` of about a thousand, so the column of
    each ``n`` is built from the best point down as a product of ratios, each at most 1:
    ``W[N, n] = n / N`` and ``W[i - 1, n] = W[i, n] * (i - n) / (i - 1)``, which reaches 0 at
    ``i = n`` (fewer than ``n`` points are never a subset's best). The weights at ``n = 1``
    (all ``1/N``) and ``n = N`` (1 on the best) come out exact.
    """
    n = np.arange(1, count + 1, dtype=np.float64)[None, :]
    i = np.arange(count, 1, -1, dtype=np.float64)[:, None]  # N, N-1, .., 2
    ratios = np.maximum(i - n, 0.0) / (i - 1)  # W[i-1, n] / W[i, n]
    below = (n / count) * np.cumprod(ratios, axis=0)  # W at i = N-1 .. 1
    return np.concatenate([below[::-1], n / count], axis=0)


def _weights(count: int, estimator: str) -> np.ndarray:
    """The ``N`` by ``N`` weights of ``estimator``: ``E[best of n]`` is the ordered scores
    times column ``n``."""
    check_estimator(estimator)
    return _unbiased_weights(count) if estimator == "unbiased" else _dodge_weights(count)


def _with_first(ordered: np.ndarray, first: float | None, maximize: bool) -> np.ndarray:
    """Ordered scores as the best of each and a point that is always there (``first``), if any."""
    if first is None:
        return ordered
    return np.maximum(ordered, first) if maximize else np.minimum(ordered, first)


def expected_best(
    scores: Sequence[float], maximize: bool = True, estimator: str = ESTIMATOR, first: float | None = None
) -> list[float]:
    """``E[best of n]`` for ``n = 1 .. len(scores)`` (the highest score, or the lowest for a
    loss, when ``maximize`` is False), by ``estimator``, one of :data:`ESTIMATORS`. With
    ``first`` (the score of a point every search holds), ``n = 1 .. len(scores) + 1``: ``first``,
    then the best of it and ``n - 1`` drawn points."""
    values = np.asarray(scores, dtype=np.float64)
    check_estimator(estimator)
    head = [] if first is None else [float(first)]
    if values.size == 0:
        return head
    ordered = _with_first(_worst_to_best(values, maximize), first, maximize)
    return head + [float(x) for x in ordered @ _weights(values.size, estimator)]


def bootstrap_band(
    scores: Sequence[float],
    maximize: bool = True,
    *,
    estimator: str = ESTIMATOR,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
    first: float | None = None,
) -> list[tuple[float, float]]:
    """The ``confidence`` percentile band of :func:`expected_best` by ``estimator`` at each
    ``n``, over ``resamples`` bootstrap resamples of the scores (with replacement). A ``first``
    point is always there, not resampled: its ``n = 1`` band is its score alone."""
    values = np.asarray(scores, dtype=np.float64)
    check_estimator(estimator)
    head = [] if first is None else [(float(first), float(first))]
    if values.size == 0:
        return head
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(resamples, values.size))]
    curves = _with_first(_worst_to_best(samples, maximize), first, maximize) @ _weights(values.size, estimator)
    tail = (1 - confidence) / 2
    low, high = np.quantile(curves, [tail, 1 - tail], axis=0)
    return head + [(float(a), float(b)) for a, b in zip(low, high, strict=True)]


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


def budget_curve(
    variants: Sequence[Mapping[str, Any]],
    metric: str,
    mode: str,
    estimator: str = ESTIMATOR,
    first: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """A search's budget curve by ``estimator`` (one of :data:`ESTIMATORS`) as the report's JSON
    holds it; None before any point finished. ``first``: the row of a point every search holds
    (a tuned variant as listed), the curve's first point, when it finished."""
    check_estimator(estimator)
    maximize = mode == "max"
    scores, worst = point_scores(variants, metric, maximize)
    head, _ = point_scores([first] if first is not None else [], metric, maximize)
    fixed = head[0] if head else None
    if not scores and fixed is None:
        return None
    curve = expected_best(scores, maximize, estimator, first=fixed)
    band = bootstrap_band(scores, maximize, estimator=estimator, first=fixed)
    return {
        "metric": metric,
        "mode": mode,
        "estimator": estimator,
        "points": len(curve),
        "first": fixed,
        "counted_worst": worst,
        "expected_best": curve,
        "band": [list(b) for b in band],
        "confidence": CONFIDENCE,
        "resamples": RESAMPLES,
        "seed": SEED,
        "at": [{"n": n, "expected_best": curve[n - 1], "band": list(band[n - 1])} for n in BUDGETS if n <= len(curve)],
    }
