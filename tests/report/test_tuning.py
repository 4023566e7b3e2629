"""The tuning block's parts against hand computation: edges of the space, the spread over
repeated searches, the outcomes of a variant's points, and its one-line summary."""

from __future__ import annotations

import math

import pytest

from trainlab.report.tuning import edges, outcomes, study_spread, tune_text
from trainlab.spec import Dimension

LR = Dimension("optimizer.learning_rate", "log_uniform", low=1e-4, high=1.0, log=True)
MOMENTUM = Dimension("optimizer.momentum", "uniform", low=0.0, high=0.99)
UNITS = Dimension("model.layers[1].units", "int", low=8, high=64, step=8)
ACTIVATION = Dimension("model.layers[1].activation", "choice", values=("relu", "tanh"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # log10(1.5e-4 / 1e-4) / 4 = 0.044: within 5% of the low end, on the log scale
        ({"optimizer.learning_rate": 1.5e-4}, [("optimizer.learning_rate", "low")]),
        # log10(0.9 / 1e-4) / 4 = 0.9886: the high end
        ({"optimizer.learning_rate": 0.9}, [("optimizer.learning_rate", "high")]),
        # 0.01 is half-way on the log scale (it would be at 1% of a linear range)
        ({"optimizer.learning_rate": 0.01}, []),
        # 0.05 / 0.99 = 0.0505: just inside; 0.04 / 0.99 = 0.0404: at the edge
        ({"optimizer.momentum": 0.05}, []),
        ({"optimizer.momentum": 0.04}, [("optimizer.momentum", "low")]),
        # (64 - 8) / 56 = 1: an integer at its top
        ({"model.layers[1].units": 64}, [("model.layers[1].units", "high")]),
        # choices have no edge
        ({"model.layers[1].activation": "tanh"}, []),
    ],
)
def test_a_value_near_a_bound_is_at_the_edge(values: dict, expected: list) -> None:
    found = edges([LR, MOMENTUM, UNITS, ACTIVATION], values)
    assert [(e["key"], e["bound"]) for e in found] == expected
    assert all(e["value"] == values[e["key"]] for e in found)
    assert math.log10(1.5e-4 / 1e-4) / 4 < 0.05 < math.log10(0.01 / 1e-4) / 4


def test_the_study_spread_is_over_the_searches_bests() -> None:
    spread = study_spread([0.81, None, 0.85, 0.83])
    assert spread == {"searches": 3, "median": 0.83, "min": 0.81, "max": 0.85, "std": pytest.approx(0.02)}
    assert study_spread([0.9])["std"] is None  # type: ignore[index]
    assert study_spread([None]) is None


def test_outcomes_count_points_by_their_trials() -> None:
    rows = [
        {"status": {"done": 2}},
        {"status": {"done": 1, "pruned": 1}},
        {"status": {"diverged": 2}},
        {"status": {"done": 1, "running": 1}},  # not finished
    ]
    assert outcomes(rows) == {
        "points": 4,
        "finished": 3,
        "pruned": 1,
        "diverged": 1,
        "pruned_share": pytest.approx(1 / 3),
        "diverged_share": pytest.approx(1 / 3),
        "trials": 8,
    }


def test_the_summary_says_which_spread_is_which_and_warns_at_an_edge() -> None:
    variant = {
        "label": "adam",
        "values": {"optimizer.learning_rate": 0.9},
        "points": 15,
        "finished": 15,
        "trials": 30,
        "diverged": 2,
        "pruned": 0,
        "defaults": 0.8,
        "study_spread": {"searches": 2, "median": 0.86, "min": 0.85, "max": 0.87, "std": 0.014},
        "budget": None,
        "edges": [{"key": "optimizer.learning_rate", "value": 0.9, "bound": "high"}],
    }
    block = {"sampler": "qmc", "trials": 8, "repeats": 2, "defaults": True, "variants": [variant]}
    line, note = tune_text(block, "val_accuracy")
    assert line.startswith("adam: tuned learning_rate=0.9; 15/15 points finished (30 trials; 2 diverged, 0 pruned)")
    assert "best of 2 searches: median 0.8600 [0.8500, 0.8700]" in line
    assert "WARNING: optimizer.learning_rate = 0.9 lies at the high edge" in line
    assert "(trial variance)" in note and "(study variance)" in note


def test_no_edge_warning_where_the_variant_as_listed_wins() -> None:
    """The variant as listed is not a point of the space: Adam's default beta_2 = 0.999 near the
    top of a [0.5, 0.9999] range says nothing of the range."""
    from trainlab.report.tuning import variant_tuning
    from trainlab.spec.tune import parse_tune

    tune = parse_tune({"trials": 2, "space": {"optimizer.beta_2": {"uniform": [0.5, 0.9999]}}}, "tune", ["adam"])
    spec = {"optimizer": {"name": "adam", "beta_2": 0.999}}
    listed = {"label": "adam (as listed)", "params": {}, "status": {"done": 1}, "trials": []}
    sampled = {"label": "adam (#02 beta_2=0.9)", "params": {}, "status": {"done": 1}, "trials": []}
    won = variant_tuning("adam", tune, "adam", [[listed, sampled]], [0.9], listed, spec, "val_accuracy", "max")
    assert won["values"] == {"optimizer.beta_2": 0.999} and won["edges"] == []
    # the same value reached by a sampled point is a warning
    lost = variant_tuning("adam", tune, "adam", [[listed, sampled]], [0.9], sampled, spec, "val_accuracy", "max")
    assert [e["bound"] for e in lost["edges"]] == ["high"]
