"""The training-step table: every step a plan can record trains a population, and they agree with each other."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainlab import models, planner
from trainlab.data.cache import Tensors
from trainlab.engine import steps
from trainlab.spec import resolve_trial
from trainlab.trial import TrialSpec

INPUT = (1, 8, 8)


def spec(**train: Any) -> TrialSpec:
    return TrialSpec.from_json(
        resolve_trial(
            {
                "data": {"name": "mnist"},
                "optimizer": {"name": "sgd", "momentum": 0.5},
                "train": {"epochs": 2, "batch_size": 8, **train},
                "model": {
                    "layers": [
                        {"type": "Flatten"},
                        {"type": "Dense", "units": 16, "activation": "relu"},
                        {"type": "Dense", "units": 10, "activation": "softmax"},
                    ]
                },
            }
        )
    )


def population(n: int = 1) -> steps.Population:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, *INPUT, generator=g), torch.randint(0, 10, (96,), generator=g)
    data = Tensors(x[:64], y[:64], x[64:], y[64:], x[64:], y[64:])
    s = spec()
    return steps.Population(
        [models.build(s.model.to_json(), INPUT, 3) for _ in range(n)],
        [s] * n,
        [None] * n,
        data,
        "classification",
        seed=1,
    )


def test_every_step_trains_and_all_agree() -> None:
    """The same model, data and seed through each step: the same training within float rounding."""
    histories = {}
    for step in steps.STEPS:
        result = steps.train(step, population())[0]
        assert result.epochs == 2
        histories[step] = [h["loss"] for h in result.history]
    for step, losses in histories.items():
        assert losses == pytest.approx(histories["autograd"], rel=1e-5), step


def test_the_planner_chooses_among_the_steps() -> None:
    s = spec()
    chosen = {
        p.step
        for p in planner.plan_trials(
            [
                planner.Planned("a", 0, s),
                planner.Planned("b", 0, s),
                planner.Planned("c", 1, s),
                planner.Planned("d", 2, spec(batch_size=32)),
            ],
            input_shape=lambda _: INPUT,
            train_size=lambda _: 64,
        ).values()
    }
    assert chosen == set(steps.STEPS)  # a population, a lowered trial, an autograd trial


def test_a_step_alone_trains_one_model_and_an_unknown_step_is_refused() -> None:
    with pytest.raises(ValueError, match="trains one model, not 2"):
        steps.train("lowered", population(2))
    with pytest.raises(ValueError, match="the steps are population, lowered, autograd"):
        steps.train("jit", population())
    assert len(steps.train("population", population(2))) == 2
