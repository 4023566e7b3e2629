"""Budget curves against hand computation and against enumerating every draw, the bootstrap band
against a second code path, and which points a search's curve counts, and how."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from trainlab.report.budget import RESAMPLES, SEED, bootstrap_band, budget_curve, expected_best, point_scores


def test_expected_best_of_three_by_hand() -> None:
    # Scores 0.2, 0.5, 0.9. Best of n drawn with replacement is the i-th worst with chance
    # (i/3)^n - ((i-1)/3)^n. n = 1: thirds, the mean 1.6 / 3. n = 2: 1/9, 3/9, 5/9.
    # n = 3: 1/27, 7/27, 19/27.
    curve = expected_best([0.5, 0.9, 0.2])
    assert curve == pytest.approx([1.6 / 3, (0.2 + 1.5 + 4.5) / 9, (0.2 + 3.5 + 17.1) / 27])


def test_expected_best_of_a_loss_by_hand() -> None:
    # The best is the lowest: n = 2 gives 0.2 with chance 5/9, 0.5 with 3/9, 0.9 with 1/9; n = 3: 19, 7, 1 in 27.
    assert expected_best([0.2, 0.5, 0.9], maximize=False) == pytest.approx(
        [1.6 / 3, (0.9 + 1.5 + 1.0) / 9, (0.9 + 3.5 + 3.8) / 27]
    )


@pytest.mark.parametrize("maximize", [True, False])
def test_expected_best_equals_the_mean_over_every_draw(maximize: bool) -> None:
    """Four scores with a tie: every ordered draw of n of them, equally likely, enumerated."""
    scores = [0.1, 0.4, 0.1, 0.8]
    best = max if maximize else min
    for n, value in enumerate(expected_best(scores, maximize), start=1):
        draws = list(itertools.product(scores, repeat=n))
        assert value == pytest.approx(sum(best(d) for d in draws) / len(draws))
    assert expected_best([], True) == []


def test_the_curve_runs_from_the_mean_towards_the_best() -> None:
    scores = [0.3, 0.6, 0.65, 0.9, 0.1]
    curve = expected_best(scores)
    assert curve[0] == pytest.approx(np.mean(scores))
    assert all(a <= b for a, b in zip(curve, curve[1:], strict=False)) and curve[-1] < 0.9


def test_the_band_at_one_point_is_the_bootstrap_band_of_the_mean() -> None:
    """At n = 1 the curve is the mean, so its band is the percentile band of the resamples' means,
    drawn here with the same generator and seed."""
    scores = [0.31, 0.52, 0.55, 0.74, 0.9, 0.12]
    band = bootstrap_band(scores)
    rng = np.random.default_rng(SEED)
    means = np.asarray(scores)[rng.integers(0, len(scores), size=(RESAMPLES, len(scores)))].mean(axis=1)
    assert band[0] == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert band == bootstrap_band(scores), "seeded: the same band every time"
    curve = expected_best(scores)
    assert all(low <= c <= high for (low, high), c in zip(band, curve, strict=True))
    assert bootstrap_band([0.5, 0.5]) == [(0.5, 0.5), (0.5, 0.5)]


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
    assert block["expected_best"] == pytest.approx(expected_best([0.2, 0.5, 0.9, 0.4, 0.7]))
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
    assert png_bytes(fig).startswith(b"\x89PNG")


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
