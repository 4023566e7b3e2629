"""Statistics over seeds: what a difference between variants is worth.

A variant is trained once per seed, so each final metric is a small sample. This module
summarizes such a sample (mean, sample standard deviation, a Student-t confidence interval),
compares two samples with Welch's t-test (unequal variances, as seeds of different variants
have), and finds when a learning curve first reaches a target. SciPy does the distributions;
what is left here is deciding what a sample too small or too uniform to test means, and
saying so instead of printing a number that pretends.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
"""Level of every confidence interval in the report."""
ALPHA = 0.05
"""Significance level below which a difference from the best variant counts as distinguishable."""


def finite(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers (``None``, NaN and infinities dropped)."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n - 1) and Student-t confidence interval of a sample.

    ``std`` and the interval are ``None`` with fewer than two values: one seed tells nothing
    about the spread, and the report says "1 seed" rather than inventing one.
    """

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        """Half the width of the confidence interval (mean ± this)."""
        return None if self.ci_high is None or self.mean is None else self.ci_high - self.mean


def summarize(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Summary:
    """Summary of the finite ``values``: mean ± t_{(1+c)/2, n-1} · s / √n."""
    xs = finite(values)
    n = len(xs)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = statistics.fmean(xs)
    if n == 1:
        return Summary(1, mean, None, None, None)
    from scipy import stats as sps

    std = statistics.stdev(xs)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """Welch's t-test of one variant against another on one metric.

    ``p`` is the two-sided p-value, ``None`` where the test does not apply; ``note`` then says
    why ("1 seed", "no spread"). ``distinguishable`` is ``p < alpha``, ``False`` for samples
    that are identical, and ``None`` where nothing can be said.
    """

    t: float | None
    df: float | None
    p: float | None
    distinguishable: bool | None
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "df": self.df, "p": self.p, "distinguishable": self.distinguishable, "note": self.note}


def welch(a: Sequence[float | None], b: Sequence[float | None], alpha: float = ALPHA) -> Comparison:
    """Welch's unequal-variances t-test of the finite values of ``a`` against ``b``.

    Samples of one value cannot be tested (no variance estimate): the note names which side
    has one seed. Two samples without any spread (every seed gave the same number, common
    for accuracy on a small validation set) are either identical, hence not distinguishable,
    or differ by a constant the t-test cannot weigh: SciPy would return p = 0 there, which
    would claim certainty no experiment gave.
    """
    xa, xb = finite(a), finite(b)
    small = [name for name, xs in (("this variant", xa), ("the best", xb)) if len(xs) < 2]
    if small:
        counts = {len(xa), len(xb)}
        seeds = "no finished seed" if 0 in counts else "1 seed"
        return Comparison(None, None, None, None, f"{seeds} ({' and '.join(small)}): no test")
    if statistics.variance(xa) == 0 and statistics.variance(xb) == 0:
        if statistics.fmean(xa) == statistics.fmean(xb):
            return Comparison(None, None, None, False, "identical values")
        return Comparison(None, None, None, None, "no spread within either variant: no test")
    from scipy import stats as sps

    with warnings.catch_warnings():
        # Nearly equal samples make SciPy warn about precision; the result is still what is reported.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_ind(xa, xb, equal_var=False)
    p = float(result.pvalue)
    distinguishable = p < alpha
    note = f"differs at {alpha:.0%}" if distinguishable else f"not distinguishable at {alpha:.0%}"
    return Comparison(float(result.statistic), float(result.df), p, distinguishable, note)


@dataclass(frozen=True)
class Reached:
    """When one trial's curve first reached a target: epoch counted from 1, and seconds of
    training up to the end of that epoch; both ``None`` if it never did."""

    epoch: int | None
    seconds: float | None


def first_reaching(history: Sequence[Mapping[str, float | None]], metric: str, threshold: float, mode: str) -> Reached:
    """The first epoch whose ``metric`` is at least (``mode="max"``) or at most (``"min"``) ``threshold``."""
    elapsed = 0.0
    for i, logs in enumerate(history):
        elapsed += float(logs.get("seconds") or 0.0)
        value = logs.get(metric)
        if value is None or not math.isfinite(value):
            continue
        if (value >= threshold) if mode == "max" else (value <= threshold):
            return Reached(i + 1, elapsed)
    return Reached(None, None)
