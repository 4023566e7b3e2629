"""Performance profiles, their scores and the IQM, against numbers worked out by hand here.

The table of times most tests use (variants A, B, C on four workloads; ``inf`` = never reached
the target):

    workload   A    B    C     fastest   ratios A, B, C
    w1         10   20   40    10        1, 2, 4
    w2         20   20   inf   20        1, 1, inf   (a tie for the fastest)
    w3         30   60   15    15        2, 4, 1
    w4         inf  inf  inf   -         inf, inf, inf (nobody reached the target)

With the cut-off 4, a workload with ratio r <= 4 adds (4 - r) / 3 to the area, over 4 workloads:
A = (1 + 1 + 2/3 + 0) / 4 = 2/3, B = (2/3 + 1 + 0 + 0) / 4 = 5/12, C = (0 + 0 + 1 + 0) / 4 = 1/4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from trainlab.report import profiles

INF = math.inf
TIMES = np.array(
    [
        [10, 20, 30, INF],  # A
        [20, 20, 60, INF],  # B
        [40, INF, 15, INF],  # C
    ]
)
RATIOS = np.array(
    [
        [1, 1, 2, INF],
        [2, 1, 4, INF],
        [4, INF, 1, INF],
    ]
)


def test_ratios_divide_by_the_fastest_and_keep_failures_infinite() -> None:
    np.testing.assert_array_equal(profiles.ratios(TIMES), RATIOS)


def test_a_variant_without_any_result_counts_as_a_failure_and_a_fastest_time_of_zero_is_one() -> None:
    np.testing.assert_array_equal(
        profiles.ratios(np.array([[math.nan, 0.0], [3.0, 0.0], [6.0, 2.0]])), [[INF, 1], [1, 1], [2, INF]]
    )


def test_the_median_counts_a_failed_seed_as_infinite_time() -> None:
    assert profiles.median_time([3, INF, 5]) == 5
    assert profiles.median_time([2, 4]) == 3
    assert profiles.median_time([3, INF]) == INF  # half the seeds failed: so did the median
    assert profiles.median_time([INF, INF, 1]) == INF
    assert math.isnan(profiles.median_time([]))


def test_the_median_best_is_a_value_half_the_seeds_reached() -> None:
    """Best first: accuracies 0.9, 0.8, 0.7 give 0.8; 0.9, 0.8 give 0.8 (not their mean 0.85, which
    one seed of two reached); losses 0.1, 0.3 give 0.3."""
    assert profiles.median_best([0.7, 0.9, 0.8], "max") == 0.8
    assert profiles.median_best([0.9, 0.8], "max") == 0.8
    assert profiles.median_best([0.9, 0.8, 0.6, 0.7], "max") == 0.7
    assert profiles.median_best([0.1, 0.3], "min") == 0.3
    assert math.isnan(profiles.median_best([], "max"))


@pytest.mark.parametrize(
    ("row", "rhos"),
    [
        (0, [2 / 4, 2 / 4, 3 / 4, 3 / 4, 3 / 4]),
        (1, [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4]),
        (2, [1 / 4, 1 / 4, 1 / 4, 1 / 4, 2 / 4]),
    ],
)
def test_the_profile_is_the_fraction_of_workloads_within_tau(row: int, rhos: list[float]) -> None:
    taus = [1.0, 1.5, 2.0, 3.9, 4.0]
    np.testing.assert_allclose(profiles.profile(RATIOS[row], taus), rhos)


@pytest.mark.parametrize(("row", "area"), [(0, 2 / 3), (1, 5 / 12), (2, 1 / 4)])
def test_the_score_is_the_normalised_area_under_the_profile(row: int, area: float) -> None:
    assert profiles.score(RATIOS[row], 4.0) == pytest.approx(area, abs=1e-12)


@pytest.mark.parametrize("row", [0, 1, 2])
def test_the_exact_area_matches_a_fine_numerical_integral(row: int) -> None:
    """A second path: the profile sampled on a fine grid and integrated by the trapezoid rule, as
    AlgoPerf's scoring code does (with 100 points; more here, to get within 1e-4)."""
    taus = np.linspace(1.0, 4.0, 300_001)
    rho = profiles.profile(RATIOS[row], taus)
    numeric = float(np.sum((rho[1:] + rho[:-1]) / 2 * np.diff(taus))) / 3.0
    assert profiles.score(RATIOS[row], 4.0) == pytest.approx(numeric, abs=1e-4)


def test_a_smaller_cutoff_gives_no_credit_beyond_it() -> None:
    """Cut-off 2: A earns (1 + 1 + 0 + 0) / 4 = 1/2 (its ratio 2 is at the cut-off, worth 0);
    B earns (0 + 1 + 0 + 0) / 4 = 1/4; C earns 1/4."""
    assert [profiles.score(r, 2.0) for r in RATIOS] == pytest.approx([1 / 2, 1 / 4, 1 / 4])
    with pytest.raises(ValueError):
        profiles.score(RATIOS[0], 1.0)


def test_fastest_everywhere_scores_one_and_never_within_the_cutoff_scores_zero() -> None:
    assert profiles.score([1, 1, 1], 4.0) == 1.0
    assert profiles.score([INF, 5, 4], 4.0) == 0.0


def test_the_profile_steps_are_exact_points_of_the_step_function() -> None:
    assert profiles.profile_steps(RATIOS[1], 4.0) == [(1.0, 0.25), (2.0, 0.5), (4.0, 0.75)]
    assert profiles.profile_steps(RATIOS[2], 4.0) == [(1.0, 0.25), (4.0, 0.5)]
    assert profiles.profile_steps([INF, INF], 4.0) == [(1.0, 0.0), (4.0, 0.0)]


def test_iqm_drops_a_quarter_at_each_end() -> None:
    assert profiles.iqm([100, 0, 1, 2, 3, 4, 5, 6]) == pytest.approx((2 + 3 + 4 + 5) / 4)  # 8 values: 2 cut each end
    assert profiles.iqm([10, 0, 1, 2, 3, -10]) == pytest.approx((0 + 1 + 2 + 3) / 4)  # 6 values: int(1.5) = 1
    assert profiles.iqm([7.0]) == 7.0
    assert math.isnan(profiles.iqm([]))


def test_the_bootstrap_resamples_within_each_workload() -> None:
    """Each workload's runs all score the same, so every stratified resample pools two 0s and two
    1s (IQM 0.5) and the interval has no width; resampling the four runs together would not."""
    assert profiles.bootstrap_iqm([[0.0, 0.0], [1.0, 1.0]]) == (0.5, 0.5)
    assert profiles.bootstrap_iqm([]) is None
    assert profiles.bootstrap_iqm([[]]) is None


def test_the_bootstrap_is_seeded_and_agrees_with_scipy_on_one_workload() -> None:
    """One stratum is a plain percentile bootstrap: scipy's, with its own generator, lands within
    a few hundredths on 60 draws of a normal sample."""
    scores = np.random.default_rng(3).normal(0.5, 0.2, 60)
    ours = profiles.bootstrap_iqm([scores])
    assert ours == profiles.bootstrap_iqm([scores])
    theirs = sps.bootstrap(
        (scores,),
        lambda x, axis: sps.trim_mean(x, 0.25, axis=axis),
        method="percentile",
        n_resamples=20000,
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert ours is not None and ours[0] < profiles.iqm(scores) < ours[1]
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.03)


def test_normalised_scores_run_from_the_worst_variant_to_the_best() -> None:
    """Levels (means): a 0.85, b 0.6, c 0.6; best a, worst b (the first of the tie); span 0.25."""
    values = {"a": [0.9, 0.8], "b": [0.5, 0.7], "c": [0.6, 0.6]}
    scores, best, worst = profiles.normalised(values, "max")  # type: ignore[misc]
    assert (best, worst) == ("a", "b")
    assert scores["a"] == pytest.approx([1.2, 0.8])
    assert scores["b"] == pytest.approx([-0.4, 0.4])
    assert scores["c"] == pytest.approx([0.0, 0.0])


def test_normalised_scores_of_a_loss_put_the_lowest_at_one_and_a_run_without_a_value_at_zero() -> None:
    """Levels: a 0.2, b 0.6 (its NaN seed left out of the level); best a, span -0.4."""
    scores, best, worst = profiles.normalised({"a": [0.1, 0.3], "b": [0.6, math.nan]}, "min")  # type: ignore[misc]
    assert (best, worst) == ("a", "b")
    assert scores["a"] == pytest.approx([1.25, 0.75])
    assert scores["b"] == pytest.approx([0.0, 0.0])


def test_nothing_to_normalise_by_without_two_different_levels() -> None:
    assert profiles.normalised({"a": [1.0, 1.0], "b": [1.0]}, "max") is None
    assert profiles.normalised({"a": [0.5], "b": [math.nan]}, "max") is None
