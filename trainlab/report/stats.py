"""Statistics over seeds: what a difference between variants is worth.

A variant is trained once per seed, so each final metric is a small sample. This module
summarizes such a sample (mean, sample standard deviation, a Student-t confidence interval),
compares two samples with Welch's t-test (unequal variances, as seeds of different variants
have) or, where both variants finished the same seeds, with the paired t-test (trials at one
seed share the validation split, the shuffling order and, for one architecture, the initial
weights: see trainlab/seeding.py), corrects a family of such comparisons for their number
(Holm), and finds when a learning curve first reaches a target. SciPy does the distributions;
what is left here is deciding what a sample too small or too uniform to test means, and
saying so instead of printing a number that pretends.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
"""Level of every confidence interval in the report."""
ALPHA = 0.05
"""Significance level below which a difference from the best variant counts as distinguishable."""
PAIRED_MIN_SEEDS = 3
"""Fewest shared seeds for the paired t-test. With two pairs it has one degree of freedom
(t_{0.975, 1} = 12.7) against Welch's two or more (t_{0.975, 2} = 4.3): it would win only where
the seeds' effect is nearly the whole spread, so two seeds are compared unpaired."""
WILCOXON_MIN_PAIRS = 6
"""Fewest pairs for the Wilcoxon signed-rank test: its smallest two-sided p is 2 / 2^n, which
first falls below 5% at six pairs (0.031); with fewer it could never find a difference."""
ROUNDING = 1e-9
"""Relative size below which the spread of paired differences is float rounding, not spread."""
CORRECTIONS = ("holm", "bonferroni", "none")
"""How a family of p-values is corrected for its number; ``holm`` is the default."""


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
    test: str | None = None
    """``"welch"`` or ``"paired t"``; ``None`` where no test ran."""
    pairs: int | None = None
    """Shared seeds of a paired test."""
    wilcoxon_p: float | None = None
    """Two-sided p of the Wilcoxon signed-rank test beside a paired test of at least
    :data:`WILCOXON_MIN_PAIRS` pairs; ``None`` otherwise."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "df": self.df,
            "p": self.p,
            "distinguishable": self.distinguishable,
            "note": self.note,
            "test": self.test,
            "pairs": self.pairs,
            "wilcoxon_p": self.wilcoxon_p,
        }


def _verdict(p: float, alpha: float) -> tuple[bool, str]:
    distinguishable = p < alpha
    return distinguishable, f"differs at {alpha:.0%}" if distinguishable else f"not distinguishable at {alpha:.0%}"


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
    if len(set(xa)) == 1 and len(set(xb)) == 1:  # no spread on either side
        if xa[0] == xb[0]:
            return Comparison(None, None, None, False, "identical values")
        return Comparison(None, None, None, None, "no spread within either variant: no test")
    (ma, va), (mb, vb) = _mean_var(xa), _mean_var(xb)
    va, vb = va / len(xa), vb / len(xb)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    p = _two_sided(t, df)
    distinguishable, note = _verdict(p, alpha)
    return Comparison(t, df, p, distinguishable, note, test="welch")


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample variance (n - 1) in floats (``statistics.variance`` is exact, in fractions,
    and far slower than a report comparing every pair of variants can afford)."""
    mean = math.fsum(xs) / len(xs)
    return mean, math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def _two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's T with ``df`` degrees of freedom.

    The tests here write their statistic out (the textbook formulas: the report compares every
    pair of variants, and scipy.stats.ttest_ind costs a hundred times this per call); SciPy's
    ttest_ind and ttest_rel check them in the tests. ``scipy.special.stdtr`` is Student's CDF."""
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(t)))


def paired(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """Paired t-test of ``a`` against ``b``, aligned by seed, both finite and of one length >= 2.

    The differences a_i - b_i are the sample: t = mean(d) / (s_d / sqrt n), n - 1 degrees of
    freedom. Differences all zero are identical samples; one and the same non-zero difference at
    every seed has no spread to weigh, and is said so, as :func:`welch` says of constant samples;
    a spread of the differences below :data:`ROUNDING` of the values is float rounding (0.94 - 0.84
    and 0.90 - 0.80 differ in the 17th digit), not a measured one.
    Beside the t-test, from :data:`WILCOXON_MIN_PAIRS` pairs on, the Wilcoxon signed-rank p
    (no normality assumed; zero differences dropped, as Wilcoxon did).
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a paired test needs two aligned samples of at least 2 values, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    if all(d == 0 for d in diffs):
        return Comparison(None, None, None, False, "identical values", pairs=len(diffs))
    if math.sqrt(_mean_var(diffs)[1]) <= ROUNDING * max(abs(x) for x in [*a, *b]):
        return Comparison(None, None, None, None, "the same difference at every seed: no test", pairs=len(diffs))
    n = len(diffs)
    mean, var = _mean_var(diffs)
    t = mean / math.sqrt(var / n)
    p = _two_sided(t, n - 1)
    distinguishable, note = _verdict(p, alpha)
    return Comparison(
        t,
        float(n - 1),
        p,
        distinguishable,
        note,
        test="paired t",
        pairs=len(diffs),
        wilcoxon_p=wilcoxon(diffs),
    )


def wilcoxon(diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p of paired differences, or ``None`` with fewer than
    :data:`WILCOXON_MIN_PAIRS` non-zero differences (too few to reach 5%)."""
    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) < WILCOXON_MIN_PAIRS:
        return None
    from scipy import stats as sps

    return float(sps.wilcoxon(nonzero).pvalue)


def compare(a: Mapping[int, float | None], b: Mapping[int, float | None], alpha: float = ALPHA) -> Comparison:
    """``a`` against ``b`` (each: seed -> value): paired where both have finite values at the same
    seeds, at least :data:`PAIRED_MIN_SEEDS` of them; Welch's test otherwise."""
    fa = {s: float(v) for s, v in a.items() if v is not None and math.isfinite(v)}
    fb = {s: float(v) for s, v in b.items() if v is not None and math.isfinite(v)}
    if set(fa) == set(fb) and len(fa) >= PAIRED_MIN_SEEDS:
        seeds = sorted(fa)
        return paired([fa[s] for s in seeds], [fb[s] for s in seeds], alpha)
    return welch(list(fa.values()), list(fb.values()), alpha)


def adjust(pvalues: Sequence[float | None], correction: str = "holm") -> list[float | None]:
    """The p-values of one family, corrected for its size m (the ``None`` entries are no test
    and do not count).

    ``holm``: Holm's step-down: with the m p-values sorted, p_(1) <= ... <= p_(m), the i-th
    adjusted value is max_{j <= i} min(1, (m - j + 1) p_(j)). It rejects whatever Bonferroni
    rejects and more, and keeps the chance of any false rejection in the family at most alpha
    under any dependence between the tests. ``bonferroni``: min(1, m p). ``none``: p as it is.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; allowed: {', '.join(CORRECTIONS)}")
    tested = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    m = len(tested)
    if correction == "none":
        return list(pvalues)
    if correction == "bonferroni":
        for p, i in tested:
            out[i] = min(1.0, m * p)
        return out
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class VersusBest:
    """One variant against the best, with its p-value corrected within the family.

    The best is chosen from the same data, as the variant with the best mean: whichever came
    out on top, "vs best" is one of the k(k - 1) / 2 comparisons between k variants the choice
    could have made, and the comparison of the best with the worst is the largest of them. The
    family is therefore every pair of variants, not only the k - 1 pairs with the best: a
    correction over the k - 1 alone lets the selection through (ten identical variants of five
    seeds: about 10% of such studies report a difference under Holm over 9, against 5% allowed;
    tests/report/test_stats.py simulates it).
    """

    comparison: Comparison
    p_adjusted: float | None
    distinguishable: bool | None
    note: str
    family: int
    correction: str


def versus_best(
    samples: Mapping[str, Mapping[int, float | None]],
    best: str,
    *,
    correction: str = "holm",
    alpha: float = ALPHA,
) -> dict[str, VersusBest]:
    """Each variant other than ``best`` compared with it (see :func:`compare`), the p-values
    corrected by ``correction`` over every pair of variants (see :class:`VersusBest`).

    ``samples``: variant -> seed -> value of the selection metric, in study order.
    """
    labels = list(samples)
    pairs = [(x, y) for i, x in enumerate(labels) for y in labels[i + 1 :]]
    tests = {pair: compare(samples[pair[0]], samples[pair[1]], alpha) for pair in pairs}
    adjusted = dict(zip(pairs, adjust([tests[pair].p for pair in pairs], correction)))
    family = sum(1 for pair in pairs if tests[pair].p is not None)
    out = {}
    for label in labels:
        if label == best:
            continue
        pair = (label, best) if (label, best) in tests else (best, label)
        raw = tests[pair]
        if pair[0] == best and raw.t is not None:  # orient t as this variant minus the best
            raw = Comparison(-raw.t, raw.df, raw.p, raw.distinguishable, raw.note, raw.test, raw.pairs, raw.wilcoxon_p)
        p = adjusted[pair]
        if p is None:
            out[label] = VersusBest(raw, None, raw.distinguishable, raw.note, family, correction)
        else:
            distinguishable, note = _verdict(p, alpha)
            out[label] = VersusBest(raw, p, distinguishable, note, family, correction)
    return out


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
