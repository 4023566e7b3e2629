"""Budget curves against hand computation and against enumerating every draw (Tang et al.'s
unbiased estimator: every subset; Dodge et al.'s: every ordered draw with replacement), the
bootstrap band against a second code path, and which points a search's curve counts, and how."""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainlab.errors import TrainlabError
from trainlab.report.budget import (
    ESTIMATOR,
    ESTIMATORS,
    RESAMPLES,
    SEED,
    bootstrap_band,
    budget_curve,
    expected_best,
    point_scores,
)


def mean_best_of_subsets(scores: list[float], n: int, maximize: bool) -> float:
    """The mean best over every subset of n of the scores (drawn without replacement)."""
    best = max if maximize else min
    subsets = list(itertools.combinations(scores, n))
    return sum(best(s) for s in subsets) / len(subsets)


def test_the_default_is_the_unbiased_estimator() -> None:
    assert ESTIMATOR == "unbiased" and ESTIMATORS == ("unbiased", "dodge")
    assert expected_best([0.5, 0.9, 0.2]) == expected_best([0.5, 0.9, 0.2], estimator="unbiased")


def test_unbiased_expected_best_of_three_by_hand() -> None:
    # Scores 0.2, 0.5, 0.9. n = 2: the subsets {0.2, 0.5}, {0.2, 0.9}, {0.5, 0.9} have best
    # 0.5, 0.9, 0.9: mean 2.3 / 3. n = 3: the one subset, best 0.9.
    curve = expected_best([0.5, 0.9, 0.2], estimator="unbiased")
    assert curve == pytest.approx([1.6 / 3, 2.3 / 3, 0.9])
    # For a loss the best is the lowest: n = 2 gives 0.2, 0.2, 0.5: mean 0.9 / 3; n = 3: 0.2.
    assert expected_best([0.5, 0.9, 0.2], maximize=False) == pytest.approx([1.6 / 3, 0.9 / 3, 0.2])


def test_unbiased_expected_best_of_four_by_hand() -> None:
    # Scores 0.1, 0.3, 0.6, 0.8. n = 2: the six pairs have best 0.3, 0.6, 0.8, 0.6, 0.8, 0.8
    # (sum 3.9); n = 3: the four triples have best 0.6, 0.8, 0.8, 0.8 (sum 3.0).
    scores = [0.6, 0.1, 0.8, 0.3]
    assert expected_best(scores) == pytest.approx([1.8 / 4, 3.9 / 6, 3.0 / 4, 0.8])
    # Lowest: pairs 0.1, 0.1, 0.1, 0.3, 0.3, 0.6 (sum 1.5); triples 0.1, 0.1, 0.1, 0.3 (sum 0.6).
    assert expected_best(scores, maximize=False) == pytest.approx([1.8 / 4, 1.5 / 6, 0.6 / 4, 0.1])


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("scores", [[0.2, 0.5, 0.9], [0.1, 0.4, 0.1, 0.8], [0.7, 0.3, 0.55, 0.3]])
def test_unbiased_expected_best_is_the_mean_best_over_every_subset(scores: list[float], maximize: bool) -> None:
    """Three and four scores (some with a tie): every subset of n of them, enumerated."""
    curve = expected_best(scores, maximize, estimator="unbiased")
    assert curve == pytest.approx([mean_best_of_subsets(scores, n, maximize) for n in range(1, len(scores) + 1)])


def test_unbiased_weights_match_binomial_coefficients_for_many_points() -> None:
    """The weights, built as a product of ratios, against exact C(i-1, n-1) / C(N, n): the
    estimate of scores 1 .. N is sum_i i * C(i-1, n-1) / C(N, n) = n (N+1) / (n+1)."""
    count = 60
    curve = expected_best([float(i) for i in range(count, 0, -1)])
    exact = [
        float(sum(Fraction(i * math.comb(i - 1, n - 1), math.comb(count, n)) for i in range(1, count + 1)))
        for n in range(1, count + 1)
    ]
    assert curve == pytest.approx(exact, rel=1e-12)
    assert curve == pytest.approx([n * (count + 1) / (n + 1) for n in range(1, count + 1)], rel=1e-12)
    # Far past where C(N, n) overflows a float, the weights still sum to 1 at every n.
    assert expected_best([1.0] * 1500)[::100] == pytest.approx([1.0] * 15, rel=1e-12)


@pytest.mark.parametrize("maximize", [True, False])
def test_unbiased_estimate_of_all_n_points_is_the_best_recorded_exactly(maximize: bool) -> None:
    scores = [0.31, 0.52, 0.55, 0.74, 0.9, 0.12, 0.9001]
    best = max(scores) if maximize else min(scores)
    assert expected_best(scores, maximize)[-1] == best
    assert expected_best(scores, maximize, estimator="dodge")[-1] != best


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_both_estimators_give_the_mean_at_one_point(estimator: str) -> None:
    scores = [0.3, 0.6, 0.65, 0.9, 0.1]
    assert expected_best(scores, estimator=estimator)[0] == pytest.approx(sum(scores) / len(scores))
    assert expected_best(scores, False, estimator)[0] == pytest.approx(sum(scores) / len(scores))


def test_dodge_falls_short_of_the_unbiased_estimate_by_the_amount_computed_by_hand() -> None:
    # Scores 0.2, 0.5, 0.9. Drawn with replacement, n = 2 gives 0.9 with chance 5/9, 0.5 with
    # 3/9, 0.2 with 1/9: 6.2 / 9 against 2.3 / 3 = 6.9 / 9 without, 0.7 / 9 less; n = 3: 19, 7, 1
    # in 27: 20.8 / 27 against 0.9 = 24.3 / 27, 3.5 / 27 less.
    unbiased = expected_best([0.2, 0.5, 0.9])
    dodge = expected_best([0.2, 0.5, 0.9], estimator="dodge")
    assert [u - d for u, d in zip(unbiased, dodge, strict=True)] == pytest.approx([0.0, 0.7 / 9, 3.5 / 27])


@pytest.mark.parametrize("maximize", [True, False])
def test_dodge_never_exceeds_the_unbiased_estimate_and_is_lower_from_two_points(maximize: bool) -> None:
    """Drawn without replacement, the best of n is at most the k-th worst with chance
    C(k, n) / C(N, n) = prod_j (k - j) / (N - j), below (k/N)^n with replacement for 0 < k < N
    and n >= 2: the unbiased estimate's best is the larger, strictly so unless all scores tie."""
    rng = np.random.default_rng(7)
    for count in (2, 3, 5, 9, 17):
        scores = list(rng.choice([0.1, 0.35, 0.5, 0.8, 0.95], size=count))
        if len(set(scores)) == 1:
            scores[0] = 0.2
        unbiased = expected_best(scores, maximize)
        dodge = expected_best(scores, maximize, estimator="dodge")
        gain = [u - d if maximize else d - u for u, d in zip(unbiased, dodge, strict=True)]
        assert gain[0] == pytest.approx(0.0, abs=1e-12) and all(g > 1e-12 for g in gain[1:]), scores
    assert expected_best([0.4] * 5, estimator="dodge") == pytest.approx(expected_best([0.4] * 5))


def test_the_example_of_the_reports_page() -> None:
    """docs/REPORTS.md, "Budget curves": five points scoring 0.45, 0.6, 0.7, 0.72 and 0.88."""
    from trainlab.report.tables import budget_text

    page = (Path(__file__).resolve().parents[2] / "docs" / "REPORTS.md").read_text()
    variants = [point("done", v) for v in (0.45, 0.6, 0.7, 0.72, 0.88)]
    unbiased = budget_curve(variants, "val_accuracy", "max")
    dodge = budget_curve(variants, "val_accuracy", "max", "dodge")
    assert unbiased is not None and dodge is not None
    note = budget_text(unbiased).split(": the expected best")[0]
    assert f"the note reads `{note}`" in " ".join(page.split())
    # By hand: the best of 4 of the 5 is 0.88 in the 4 subsets that hold it, 0.72 in the other one.
    assert unbiased["at"][1]["expected_best"] == pytest.approx(0.72 / 5 + 0.88 * 4 / 5) == 0.848
    assert "4-point value is 0.72 · 1/5 + 0.88 · 4/5 = 0.848" in page
    assert f"it gives {dodge['at'][1]['expected_best']:.4f} at 4 points" in " ".join(page.split())


def test_dodge_expected_best_of_three_by_hand() -> None:
    # Best of n drawn with replacement is the i-th worst with chance (i/3)^n - ((i-1)/3)^n.
    curve = expected_best([0.5, 0.9, 0.2], estimator="dodge")
    assert curve == pytest.approx([1.6 / 3, (0.2 + 1.5 + 4.5) / 9, (0.2 + 3.5 + 17.1) / 27])
    # The best is the lowest: n = 2 gives 0.2 with chance 5/9, 0.5 with 3/9, 0.9 with 1/9; n = 3: 19, 7, 1 in 27.
    assert expected_best([0.2, 0.5, 0.9], maximize=False, estimator="dodge") == pytest.approx(
        [1.6 / 3, (0.9 + 1.5 + 1.0) / 9, (0.9 + 3.5 + 3.8) / 27]
    )


@pytest.mark.parametrize("maximize", [True, False])
def test_dodge_expected_best_equals_the_mean_over_every_draw_with_replacement(maximize: bool) -> None:
    """Four scores with a tie: every ordered draw of n of them, equally likely, enumerated."""
    scores = [0.1, 0.4, 0.1, 0.8]
    best = max if maximize else min
    for n, value in enumerate(expected_best(scores, maximize, estimator="dodge"), start=1):
        draws = list(itertools.product(scores, repeat=n))
        assert value == pytest.approx(sum(best(d) for d in draws) / len(draws))
    assert expected_best([], True) == [] and expected_best([], True, "dodge") == []


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_curve_runs_from_the_mean_towards_the_best(estimator: str) -> None:
    scores = [0.3, 0.6, 0.65, 0.9, 0.1]
    curve = expected_best(scores, estimator=estimator)
    assert curve[0] == pytest.approx(np.mean(scores))
    assert all(a <= b for a, b in zip(curve, curve[1:], strict=False)) and curve[-1] <= 0.9


def test_an_unknown_estimator_is_refused_with_the_allowed_ones() -> None:
    for call in (
        lambda: expected_best([0.1], estimator="tang"),
        lambda: bootstrap_band([0.1], estimator="tang"),
        lambda: budget_curve([point("done", 0.1)], "val_accuracy", "max", "tang"),
    ):
        with pytest.raises(TrainlabError, match="unknown estimator 'tang'; allowed: unbiased, dodge"):
            call()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_band_at_one_point_is_the_bootstrap_band_of_the_mean(estimator: str) -> None:
    """At n = 1 the curve is the mean, so its band is the percentile band of the resamples' means,
    drawn here with the same generator and seed."""
    scores = [0.31, 0.52, 0.55, 0.74, 0.9, 0.12]
    band = bootstrap_band(scores, estimator=estimator)
    rng = np.random.default_rng(SEED)
    means = np.asarray(scores)[rng.integers(0, len(scores), size=(RESAMPLES, len(scores)))].mean(axis=1)
    assert band[0] == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert band == bootstrap_band(scores, estimator=estimator), "seeded: the same band every time"
    curve = expected_best(scores, estimator=estimator)
    assert all(low <= c <= high for (low, high), c in zip(band, curve, strict=True))
    assert bootstrap_band([0.5, 0.5], estimator=estimator) == [(0.5, 0.5), (0.5, 0.5)]


@pytest.mark.parametrize("maximize", [True, False])
def test_the_unbiased_band_at_every_point_is_the_bootstrap_band_of_the_best(maximize: bool) -> None:
    """At n = N the unbiased estimate of a resample is its best: the band is the percentile band
    of the resamples' best, which never passes the best recorded score."""
    scores = [0.31, 0.52, 0.55, 0.74, 0.9, 0.12]
    rng = np.random.default_rng(SEED)
    samples = np.asarray(scores)[rng.integers(0, len(scores), size=(RESAMPLES, len(scores)))]
    bests = samples.max(axis=1) if maximize else samples.min(axis=1)
    low, high = bootstrap_band(scores, maximize)[-1]
    assert (low, high) == pytest.approx(tuple(np.quantile(bests, [0.025, 0.975])))
    assert (high if maximize else low) == (0.9 if maximize else 0.12)


def point(status: str | list[str], *values: float | None) -> dict[str, Any]:
    statuses = [status] * len(values) if isinstance(status, str) else status
    return {"trials": [{"status": s, "val_accuracy": v} for s, v in zip(statuses, values, strict=True)]}


def test_which_points_count_and_at_what() -> None:
    variants = [
        point("done", 0.8, 0.9),  # mean 0.85
        point(["done", "pruned"], 0.6, 0.4),  # pruned at its best recorded value: mean 0.5
        point(["done", "diverged"], 0.9, None),  # diverged on a seed: the worst
        point(["done", "running"], 0.99, None),  # not finished: left out
        point(["done", "failed"], 0.99, None),  # an error: left out
        point("done", 0.3, 0.3),
    ]
    scores, worst = point_scores(variants, "val_accuracy", maximize=True)
    assert scores == pytest.approx([0.85, 0.5, 0.3, 0.3]) and worst == 1
    # For a loss the worst is the highest.
    scores, worst = point_scores(variants, "val_accuracy", maximize=False)
    assert scores == pytest.approx([0.85, 0.5, 0.85, 0.3]) and worst == 1
    assert point_scores([point("diverged", None)], "val_accuracy", True) == ([], 0)


def test_the_report_block_gives_the_curve_and_the_budgets_up_to_n() -> None:
    variants = [point("done", v) for v in (0.2, 0.5, 0.9, 0.4, 0.7)]
    block = budget_curve(variants, "val_accuracy", "max")
    assert block is not None
    assert block["points"] == 5 and block["counted_worst"] == 0 and len(block["band"]) == 5
    assert block["estimator"] == "unbiased"
    assert block["expected_best"] == pytest.approx(expected_best([0.2, 0.5, 0.9, 0.4, 0.7]))
    assert block["expected_best"][-1] == 0.9
    dodge = budget_curve(variants, "val_accuracy", "max", "dodge")
    assert dodge is not None and dodge["estimator"] == "dodge"
    assert dodge["expected_best"] == pytest.approx(expected_best([0.2, 0.5, 0.9, 0.4, 0.7], estimator="dodge"))
    assert dodge["band"] == [list(b) for b in bootstrap_band([0.2, 0.5, 0.9, 0.4, 0.7], estimator="dodge")]
    assert [a["n"] for a in block["at"]] == [1, 4]  # 16 > 5 points
    assert block["at"][1]["expected_best"] == block["expected_best"][3]
    assert budget_curve([], "val_accuracy", "max") is None


def test_the_figure_draws_each_search_with_its_band() -> None:
    from trainlab.report.plots import budget_curves, png_bytes

    fast = budget_curve([point("done", v) for v in (0.2, 0.5, 0.9, 0.4, 0.7)], "val_accuracy", "max")
    slow = budget_curve([point("done", v) for v in (0.3, 0.35, 0.6)], "val_accuracy", "max")
    assert fast is not None and slow is not None
    fig = budget_curves([("stage fast", fast), ("stage slow", slow)])
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["stage fast (N=5)", "stage slow (N=3)"]
    assert list(lines["stage slow (N=3)"].get_xdata()) == [1, 2, 3]
    assert list(lines["stage fast (N=5)"].get_ydata()) == pytest.approx(fast["expected_best"])
    assert len(ax.collections) == 2, "one band per search"
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "expected best validation accuracy"
    assert "(Tang et al. 2020: without replacement), 95% bootstrap band" in fig.get_suptitle()
    assert png_bytes(fig).startswith(b"\x89PNG")
    dodge = budget_curve([point("done", v) for v in (0.3, 0.35, 0.6)], "val_accuracy", "max", "dodge")
    assert dodge is not None
    assert "(Dodge et al. 2019: with replacement)" in budget_curves([("stage slow", dodge)]).get_suptitle()
    both = budget_curves([("stage fast", fast), ("stage slow", dodge)]).get_suptitle()
    assert "(Tang et al. 2020: without replacement / Dodge et al. 2019: with replacement)" in both


def test_tuned_stages_are_panels_and_a_variant_keeps_its_colour_in_each() -> None:
    from trainlab.report.plots import budget_curves

    a = budget_curve([point("done", v) for v in (0.2, 0.5, 0.9)], "val_accuracy", "max")
    b = budget_curve([point("done", v) for v in (0.3, 0.6)], "val_accuracy", "max")
    assert a is not None and b is not None
    curves = [("lr: sgd", a), ("lr: adam", b), ("all: sgd", b), ("all: adam", a)]
    fig = budget_curves(curves, ["stage lr", "stage lr", "stage all", "stage all"])
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("stage lr", "stage all")
    labels = [[line.get_label() for line in ax.get_lines()] for ax in (left, right)]
    assert labels == [["sgd (N=3)", "adam (N=2)"], ["sgd (N=2)", "adam (N=3)"]]
    assert left.get_lines()[0].get_color() == right.get_lines()[0].get_color()
    assert left.get_lines()[0].get_color() != left.get_lines()[1].get_color()


def test_the_note_gives_the_budgets_and_the_points_counted_as_the_worst() -> None:
    from trainlab.report.tables import budget_text

    variants = [point("done", v) for v in (0.2, 0.5, 0.9, 0.4)] + [point("diverged", None)]
    block = budget_curve(variants, "val_accuracy", "max")
    assert block is not None
    (one, four) = block["at"]
    text = budget_text(block)
    assert text.startswith(
        f"Best at 1 / 4 points: {one['expected_best']:.4f} [{one['band'][0]:.4f}, {one['band'][1]:.4f}] / "
        f"{four['expected_best']:.4f} ["
    )
    assert one["expected_best"] == pytest.approx((0.2 + 0.5 + 0.9 + 0.4 + 0.2) / 5)
    assert "the expected best val accuracy" in text and "5 finished ones; 1 diverged counted as the worst" in text
    assert text.endswith("(Tang et al. 2020: without replacement; 95% bootstrap band).")
    dodge = budget_curve(variants, "val_accuracy", "max", "dodge")
    assert dodge is not None
    assert budget_text(dodge).endswith("(Dodge et al. 2019: with replacement; 95% bootstrap band).")


@pytest.mark.parametrize("maximize", [True, False])
def test_a_point_every_search_holds_starts_the_curve_and_bounds_it(maximize: bool) -> None:
    """A tuned variant as listed is in every search: the curve is its score at one point, then the
    mean over every subset of ``n - 1`` drawn points of the best of them and it."""
    scores, first = [0.2, 0.9, 0.5, 0.7], 0.6
    best = max if maximize else min
    curve = expected_best(scores, maximize, first=first)
    by_subsets = [first] + [
        statistics.fmean(best([first, *subset]) for subset in itertools.combinations(scores, n - 1))
        for n in range(2, len(scores) + 2)
    ]
    assert curve == pytest.approx(by_subsets)
    band = bootstrap_band(scores, maximize, first=first)
    assert len(band) == len(curve) and band[0] == (first, first)
    assert all((lo >= first) if maximize else (hi <= first) for lo, hi in band)
