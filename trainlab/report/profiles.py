"""Rankings across workloads: AlgoPerf's performance profiles and rliable's interquartile mean.

Pure functions of numbers (numpy and scipy); :mod:`trainlab.report.ranking` gathers the
numbers from the store.

**Performance profiles** follow the AlgoPerf benchmark's definition (Dahl et al. 2023,
"Benchmarking Neural Network Training Algorithms"; the rules in mlcommons/algorithmic-efficiency,
docs/DOCUMENTATION.md, "AlgoPerf Benchmark Score via Integrated Performance Profiles"):

* ``t[s, w]``, the time of variant ``s`` on workload ``w``, is the median over its seeds (AlgoPerf:
  over its studies) of the time each took to first reach the workload's validation target; a run
  that never reached it takes infinite time, and an infinite time takes part in the median;
* ``r[s, w] = t[s, w] / min_s' t[s', w]``, the ratio to the fastest variant on that workload
  (infinite where ``t`` is; where no variant reached the target, every ratio is infinite);
* ``rho_s(tau) = |{w : r[s, w] <= tau}| / n``, the fraction of the ``n`` workloads on which ``s``
  is within a factor ``tau`` of the fastest;
* the score ``B_s = 1 / (r_max - 1) * integral from 1 to r_max of rho_s(tau) dtau``, in [0, 1]:
  1 for the fastest variant on every workload, 0 for one never within ``r_max`` (the cut-off,
  4 by default) of the fastest anywhere.

The integral is computed exactly: ``rho_s`` is a step function, and a workload with ratio
``r <= r_max`` adds ``(r_max - r) / ((r_max - 1) n)`` to it. AlgoPerf's scoring code approximates
the same integral with the trapezoid rule on 100 points and sets ratios above ``r_max`` to
infinity first, which changes nothing here: such a workload adds nothing either way.

**The interquartile mean** (IQM) is rliable's (Agarwal et al. 2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice"): the 25% trimmed mean of every run's
score on every workload pooled, ``scipy.stats.trim_mean(scores, 0.25)``, which drops
``int(0.25 n)`` scores at each end. Its confidence interval is rliable's **stratified percentile
bootstrap**: each resample draws, within each workload separately, as many runs as it has, with
replacement; the interval runs between the 2.5th and 97.5th percentiles of the resamples' IQMs.
The generator is seeded (:data:`SEED`), so a report is the same every time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

CUTOFF = 4.0
"""AlgoPerf's r_max: the profiles' upper limit of tau, and the ratio beyond which a workload earns nothing."""
RESAMPLES = 2000
"""Bootstrap resamples behind an IQM's interval."""
CONFIDENCE = 0.95
SEED = 0
"""The bootstrap generator's seed: fixed, so that a report never changes between runs."""
TRIM = 0.25
"""The share of scores the IQM drops at each end."""


def median_time(times: Sequence[float]) -> float:
    """The median of one variant's per-seed times on one workload, ``math.inf`` for a seed that
    never reached the target (it counts in the median: with half the seeds or more failing, the
    median is infinite). NaN for no seed at all."""
    if not times:
        return math.nan
    return float(np.median(np.asarray(times, dtype=np.float64)))


def median_best(values: Sequence[float], mode: str) -> float:
    """A target from a reference variant's per-seed best values: the best value at least half its
    seeds reached. That is the median for an odd count; for an even count it is the worse of the
    two middle values (``mode`` ``"max"``: the lower), since their mean, the plain median, is
    reached by fewer than half the seeds and would make the reference's own median time infinite.
    NaN without a value."""
    if not values:
        return math.nan
    ordered = sorted(values, reverse=mode == "max")  # best first
    return float(ordered[len(ordered) // 2])


def ratios(times: np.ndarray) -> np.ndarray:
    """``r[s, w] = t[s, w] / min_s' t[s', w]`` for ``times`` of shape (variants, workloads).

    Infinite where the time is infinite or NaN (no result), and in a whole column where no
    variant has a finite time. A fastest time of 0 gives ratio 1 to every variant with time 0
    and infinity to the others."""
    t = np.asarray(times, dtype=np.float64)
    t = np.where(np.isnan(t), np.inf, t)
    fastest = t.min(axis=0, initial=np.inf)
    out = np.full(t.shape, np.inf)
    for w in range(t.shape[1]):
        best = fastest[w]
        if not np.isfinite(best):
            continue
        column = t[:, w]
        if best == 0:
            out[:, w] = np.where(column == 0, 1.0, np.inf)
        else:
            out[:, w] = np.where(np.isfinite(column), column / best, np.inf)
    return out


def profile(ratio_row: Sequence[float], taus: Sequence[float]) -> np.ndarray:
    """``rho(tau)`` for each of ``taus``: the fraction of workloads whose ratio is at most tau."""
    r = np.asarray(ratio_row, dtype=np.float64)
    if r.size == 0:
        return np.zeros(len(taus))
    return np.array([float(np.count_nonzero(r <= tau)) / r.size for tau in taus])


def profile_steps(ratio_row: Sequence[float], cutoff: float = CUTOFF) -> list[tuple[float, float]]:
    """The profile on [1, cutoff] exactly, as the points where it steps: ``(tau, rho(tau))`` at 1,
    at every ratio inside (1, cutoff], and at the cut-off; rho holds its value up to the next tau."""
    r = np.asarray(ratio_row, dtype=np.float64)
    taus = sorted({1.0, float(cutoff), *(float(x) for x in r if 1.0 < x <= cutoff)})
    return [(tau, float(rho)) for tau, rho in zip(taus, profile(r, taus))]


def score(ratio_row: Sequence[float], cutoff: float = CUTOFF) -> float:
    """``B = 1 / (cutoff - 1) * integral_1^cutoff rho(tau) dtau``, exactly: the mean over workloads
    of ``(cutoff - r) / (cutoff - 1)`` where ``r <= cutoff``, and 0 elsewhere."""
    if cutoff <= 1:
        raise ValueError(f"the cut-off must be > 1, got {cutoff}")
    r = np.asarray(ratio_row, dtype=np.float64)
    if r.size == 0:
        return 0.0
    within = np.where(r <= cutoff, (cutoff - np.maximum(r, 1.0)) / (cutoff - 1.0), 0.0)
    return float(within.mean())


def normalised(values: Mapping[str, Sequence[float]], mode: str) -> tuple[dict[str, list[float]], str, str] | None:
    """Each run's score on one workload, normalised between the workload's worst and best variant.

    ``values`` are each variant's per-seed best validation values; a variant's level is their mean
    (finite values only). A run scores ``(x - worst) / (best - worst)``: 1 at the best variant's
    mean, 0 at the worst's, for a metric maximised or minimised (``mode``) alike; a single seed may
    fall outside [0, 1]. A run without a finite value scores 0. Returns the scores with the best
    and the worst variant's labels, or None where fewer than two variants differ in level (nothing
    to normalise by)."""
    levels = {label: float(np.mean(f)) for label, xs in values.items() if (f := [x for x in xs if math.isfinite(x)])}
    if len(levels) < 2:
        return None
    sign = 1.0 if mode == "max" else -1.0
    best = max(levels, key=lambda label: sign * levels[label])
    worst = min(levels, key=lambda label: sign * levels[label])
    span = levels[best] - levels[worst]
    if span == 0:
        return None
    scores = {
        label: [(x - levels[worst]) / span if math.isfinite(x) else 0.0 for x in xs] for label, xs in values.items()
    }
    return scores, best, worst


def iqm(scores: Sequence[float]) -> float:
    """The interquartile mean: ``scipy.stats.trim_mean(scores, 0.25)``, as rliable's ``aggregate_iqm``."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return math.nan
    return float(sps.trim_mean(x, TRIM))


def bootstrap_iqm(
    strata: Sequence[Sequence[float]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """The stratified percentile bootstrap interval of the IQM of the pooled ``strata`` (one
    sequence of run scores per workload): each resample draws, within each stratum, as many runs
    as it holds, with replacement. None without any score."""
    groups = [np.asarray(s, dtype=np.float64) for s in strata if len(s)]
    if not groups:
        return None
    rng = np.random.default_rng(seed)
    drawn = np.concatenate([g[rng.integers(0, g.size, size=(resamples, g.size))] for g in groups], axis=1)
    values = sps.trim_mean(drawn, TRIM, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
