"""QMC search points: the unit interval mapped onto each kind of dimension (by hand and against
Optuna's own transform), a sequence that does not depend on how it is split into rounds, and the
even coverage that sets it apart from random sampling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from optuna._transform import _SearchSpaceTransform  # Optuna's mapping: a second code path

from trainlab.errors import SpecError
from trainlab.search import Point, distributions, from_unit, propose, qmc_points, unit_points
from trainlab.spec.space import Dimension, SearchSpec, parse_search

SPACE = {
    "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "model.layers[1].units": {"int": [4, 30], "step": 4},
    "model.layers[1].rate": {"uniform": [0.0, 0.5]},
    "train.batch_size": {"int": [8, 512], "log": True},
    "optimizer.name": {"choice": ["sgd", "adam", {"name": "rmsprop", "rho": 0.8}]},
}


def qmc(trials: int = 16, seed: int = 0, space: dict[str, Any] | None = None, **extra: Any) -> SearchSpec:
    return parse_search({"sampler": "qmc", "trials": trials, "seed": seed, "space": space or SPACE, **extra}, "search")


def test_values_by_hand() -> None:
    lr = Dimension("optimizer.learning_rate", "log_uniform", low=1e-4, high=1e-1, log=True)
    assert from_unit(lr, 0.0) == pytest.approx(1e-4)
    assert from_unit(lr, 0.5) == pytest.approx(10**-2.5)  # halfway on the log scale
    assert from_unit(lr, 2 / 3) == pytest.approx(1e-2)
    rate = Dimension("model.layers[1].rate", "uniform", low=0.0, high=0.5)
    assert from_unit(rate, 0.25) == pytest.approx(0.125)
    # int [4, 30] in steps of 4: 4, 8, ..., 28 (30 is not reached), seven values, each 1/7 of [0, 1).
    units = Dimension("model.layers[1].units", "int", low=4, high=30, step=4)
    assert [from_unit(units, u) for u in (0.0, 1 / 7 - 1e-9, 1 / 7 + 1e-9, 0.5, 1 - 1e-12)] == [4, 4, 8, 16, 28]
    # int [1, 3] on a log scale: uniform on [log 0.5, log 3.5], rounded; 2 begins at exp(t) = 1.5.
    batch = Dimension("train.batch_size", "int", low=1, high=3, log=True)
    edge = (math.log(1.5) - math.log(0.5)) / (math.log(3.5) - math.log(0.5))
    assert [from_unit(batch, u) for u in (0.0, edge - 1e-9, edge + 1e-9, 1 - 1e-12)] == [1, 1, 2, 3]
    # Three choices: thirds of the unit interval.
    choice = Dimension("optimizer.name", "choice", values=("sgd", "adam", "nadam"))
    assert [from_unit(choice, u) for u in (0.0, 0.33, 0.34, 0.99)] == ["sgd", "sgd", "adam", "nadam"]


@pytest.mark.filterwarnings("ignore:The distribution is specified by:UserWarning")
def test_numeric_values_match_optunas_transform() -> None:
    search = qmc()
    numeric = [d for d in search.space if d.kind != "choice"]
    transform = _SearchSpaceTransform(distributions(numeric), transform_0_1=True)
    for u in np.random.default_rng(0).random((500, len(numeric))):
        expected = transform.untransform(u)
        got = {d.key: from_unit(d, float(x)) for d, x in zip(numeric, u, strict=True)}
        assert got.keys() == expected.keys()
        for key, value in got.items():
            assert value == pytest.approx(expected[key], rel=1e-12), key
            assert type(value) is type(expected[key]), key


def test_rounds_one_at_a_time_equal_all_at_once() -> None:
    search = qmc(trials=13)
    whole = propose(search, [], 13, "maximize")
    for sizes in ([1] * 13, [4, 4, 4, 1], [5, 8]):
        history: list[Point] = []
        for size in sizes:
            # Outcomes do not steer a QMC search: give the rounds made-up ones.
            history += [Point(p, "complete", float(len(history))) for p in propose(search, history, size, "minimize")]
        assert [p.values for p in history] == whole
    assert whole == qmc_points(search, 0, 13)


def test_the_sequence_is_the_search_seeds_alone() -> None:
    assert qmc_points(qmc(seed=1), 0, 4) == qmc_points(qmc(seed=1, batch=2), 0, 4)
    assert qmc_points(qmc(seed=1), 0, 4) != qmc_points(qmc(seed=2), 0, 4)


def test_sixteen_points_cover_sixteen_strata_of_every_dimension() -> None:
    """A scrambled Sobol sequence puts one of its first 2**k points in each 1/2**k of every
    axis; 16 random points leave about a third of the strata empty."""
    points = np.array(unit_points(seed=7, dimensions=5, start=0, count=16))
    for axis in points.T:
        assert sorted(np.floor(axis * 16).astype(int).tolist()) == list(range(16))
    # And so two choices get exactly half of 16 points each, whatever the seed.
    space = {"train.shuffle": {"choice": [True, False]}}
    for seed in range(5):
        values = [p["train.shuffle"] for p in qmc_points(qmc(space=space, seed=seed), 0, 16)]
        assert values.count(True) == 8


def test_points_stay_inside_the_space() -> None:
    for point in qmc_points(qmc(), 0, 64):
        assert 1e-4 <= point["optimizer.learning_rate"] < 1e-1
        assert point["model.layers[1].units"] in range(4, 29, 4)
        assert 0.0 <= point["model.layers[1].rate"] < 0.5
        assert 8 <= point["train.batch_size"] <= 512 and isinstance(point["train.batch_size"], int)
        assert point["optimizer.name"] in ("sgd", "adam", {"name": "rmsprop", "rho": 0.8})


def test_a_qmc_search_samples_its_whole_budget_in_one_round_by_default() -> None:
    assert qmc(trials=10).batch == 10
    assert qmc(trials=10, batch=3).batch == 3


@pytest.mark.parametrize(
    ("key", "value", "near"),
    [("sampler", "qmcc", "qmc"), ("sampler", "sobol", None), ("prune", "medain", "median")],
)
def test_an_unknown_sampler_or_pruner_names_the_allowed_ones(key: str, value: str, near: str | None) -> None:
    with pytest.raises(SpecError) as info:
        parse_search({"trials": 4, "space": SPACE, key: value}, "stage[1].search")
    error = info.value
    assert error.path == f"stage[1].search.{key}"
    assert error.allowed == sorted(
        ("random", "tpe", "qmc") if key == "sampler" else ("none", "median", "successive_halving")
    )
    assert (f"did you mean {near!r}?" in str(error)) == (near is not None), str(error)
