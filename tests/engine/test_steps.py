"""The training-step table: every step a plan can record trains a population, and they agree with each other."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
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


def test_the_models_go_where_the_population_trains_and_the_data_must_be_there() -> None:
    """``--device cpu`` made explicit: every parameter, optimizer-visible weight and data tensor on it."""
    p = replace(population(2), device=torch.device("cpu"))
    seen: list[torch.device] = []
    original = steps.STEPS["population"]

    def spy(pop: steps.Population, on_epoch: Any, on_batch: Any, prune: Any) -> Any:
        seen.extend(param.device for net in pop.nets for param in net.parameters())
        seen.extend(t.device for t in (pop.data.x_train, pop.data.y_train, pop.data.x_val, pop.data.x_test))
        return original(pop, on_epoch, on_batch, prune)

    steps.STEPS["population"] = spy
    try:
        results = steps.train("population", p)
    finally:
        steps.STEPS["population"] = original
    assert seen and set(seen) == {torch.device("cpu")}
    assert {w.device for r in results for w in r.weights.values()} == {torch.device("cpu")}
    with pytest.raises(ValueError, match="the data is on cpu, the population trains on meta"):
        steps.train("autograd", replace(population(), device=torch.device("meta")))


ENGINE = Path(steps.__file__).parent
FACTORIES = {"empty", "zeros", "ones", "full", "tensor", "arange", "rand", "randn", "randint", "randperm", "eye"}
HOST_ON_PURPOSE = {
    ("loop.py", "randperm"): "the batch order is drawn on the CPU, the same on every device, then moved",
    ("precision.py", "tensor"): "the loss scale's state, kept for checkpoints, which are CPU tensors",
}


def test_every_tensor_the_engine_makes_names_its_device() -> None:
    """A tensor made without ``device=`` lands on the CPU whatever the population trains on: each
    call of a torch factory in the engine passes a device (or is a ``*_like``), unless listed here
    with its reason."""
    unplaced = []
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
                and node.func.attr in FACTORIES
                and not any(k.arg == "device" for k in node.keywords)
                and (path.name, node.func.attr) not in HOST_ON_PURPOSE
            ):
                unplaced.append(f"{path.name}:{node.lineno} torch.{node.func.attr}")
    assert unplaced == []
