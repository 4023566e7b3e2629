"""Learning-rate schedules: Keras' formulas (and PyTorch's OneCycleLR), checked against numbers
computed here; every training step follows them; a population agrees with its members trained
alone; resuming is bit-exact; study errors name the key path.

Expected rates come from ``keras_rate``, a plain-float transcription of the ``__call__`` of each
class in ``keras/src/optimizers/schedules/learning_rate_schedule.py``, from a few values worked
out by hand, and for ``one_cycle`` from ``torch.optim.lr_scheduler.OneCycleLR`` itself; never
from trainlab's formulas.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import mlp_spec
from helpers import make_npz

from trainlab import describe, edits, models, optim, schedules, spec
from trainlab.data.cache import DataCache
from trainlab.engine import fit
from trainlab.engine.checkpoint import unpack
from trainlab.errors import SpecError
from trainlab.executors import Silent, run_local
from trainlab.losses import loss_function
from trainlab.schedules import SCHEDULES, Timeline
from trainlab.store import WEIGHTS, Store, TrialRecord
from trainlab.trial import TrainSettings

# ---------------------------------------------------------------------------------------------
# The reference: Keras' formulas in plain Python floats


def keras_rate(c: dict[str, Any], step: int) -> float:
    """The rate of Keras' schedule ``c["schedule"]`` at ``step``, line by line from its ``__call__``."""
    name = c["schedule"]
    s = float(step)
    if name == "exponential_decay":
        p = s / c["decay_steps"]
        if c.get("staircase"):
            p = math.floor(p)
        return c["initial_learning_rate"] * c["decay_rate"] ** p
    if name == "inverse_time_decay":
        p = s / c["decay_steps"]
        if c.get("staircase"):
            p = math.floor(p)
        return c["initial_learning_rate"] / (1 + c["decay_rate"] * p)
    if name == "piecewise_constant_decay":
        b, v = c["boundaries"], c["values"]
        result = (step <= b[0]) * v[0] + (step > b[-1]) * v[-1]
        for low, high, value in zip(b[:-1], b[1:], v[1:-1]):
            result += (low < step <= high) * value
        return result
    if name == "polynomial_decay":
        end, power, ds = c.get("end_learning_rate", 0.0001), c.get("power", 1.0), float(c["decay_steps"])
        if c.get("cycle"):
            ds = ds * (1.0 if s == 0 else math.ceil(s / ds))
        else:
            s = min(s, ds)
        return (c["initial_learning_rate"] - end) * (1 - s / ds) ** power + end
    if name == "cosine_decay":
        alpha, ds = c.get("alpha", 0.0), float(c["decay_steps"])

        def decay(x: float, start: float) -> float:
            return start * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * x / ds)) + alpha)

        target = c.get("warmup_target")
        if target is None:
            return decay(min(s, ds), c["initial_learning_rate"])
        ws = float(c.get("warmup_steps", 0))
        s = min(s, ds + ws)
        if s < ws:
            return (target - c["initial_learning_rate"]) * (s / ws) + c["initial_learning_rate"]
        return decay(s - ws, target)
    if name == "cosine_decay_restarts":
        t_mul, m_mul, alpha = c.get("t_mul", 2.0), c.get("m_mul", 1.0), c.get("alpha", 0.0)
        fraction = s / c["first_decay_steps"]
        if t_mul == 1.0:
            i = math.floor(fraction)
            fraction -= i
        else:
            i = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            sum_r = (1.0 - t_mul**i) / (1.0 - t_mul)
            fraction = (fraction - sum_r) / t_mul**i
        cosine = 0.5 * m_mul**i * (1.0 + math.cos(math.pi * fraction))
        return c["initial_learning_rate"] * ((1 - alpha) * cosine + alpha)
    raise KeyError(name)


def torch_one_cycle(c: dict[str, Any], steps: int) -> list[float]:
    """The rates PyTorch's OneCycleLR gives the first ``steps`` updates (momentum not cycled)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    kw = {k: c[k] for k in ("pct_start", "anneal_strategy", "div_factor", "final_div_factor", "three_phase") if k in c}
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=c["max_lr"], total_steps=c["total_steps"], cycle_momentum=False, **kw
    )
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


CASES: list[dict[str, Any]] = [
    {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
    {
        "schedule": "exponential_decay",
        "initial_learning_rate": 0.1,
        "decay_steps": 7,
        "decay_rate": 0.9,
        "staircase": True,
    },
    {"schedule": "inverse_time_decay", "initial_learning_rate": 0.2, "decay_steps": 4, "decay_rate": 0.5},
    {
        "schedule": "InverseTimeDecay",
        "initial_learning_rate": 0.2,
        "decay_steps": 4,
        "decay_rate": 0.5,
        "staircase": True,
    },
    {"schedule": "piecewise_constant_decay", "boundaries": [3, 10], "values": [1.0, 0.5, 0.1]},
    {"schedule": "PiecewiseConstantDecay", "boundaries": [5], "values": [0.3, 0.03]},
    {"schedule": "polynomial_decay", "initial_learning_rate": 0.1, "decay_steps": 10},
    {
        "schedule": "polynomial_decay",
        "initial_learning_rate": 0.1,
        "decay_steps": 6,
        "end_learning_rate": 0.01,
        "power": 0.5,
        "cycle": True,
    },
    {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 12, "alpha": 0.1},
    {
        "schedule": "cosine_decay",
        "initial_learning_rate": 0.0,
        "decay_steps": 10,
        "warmup_target": 0.2,
        "warmup_steps": 5,
    },
    {"schedule": "CosineDecay", "initial_learning_rate": 0.05, "decay_steps": 8, "warmup_target": 0.1},
    {"schedule": "cosine_decay_restarts", "initial_learning_rate": 0.1, "first_decay_steps": 4},
    {
        "schedule": "cosine_decay_restarts",
        "initial_learning_rate": 0.1,
        "first_decay_steps": 3,
        "t_mul": 1.0,
        "m_mul": 0.5,
        "alpha": 0.2,
    },
    {"schedule": "one_cycle", "max_lr": 0.1, "total_steps": 40},
    {"schedule": "OneCycleLR", "max_lr": 0.5, "total_steps": 30, "three_phase": True, "anneal_strategy": "linear"},
    {"schedule": "one_cycle", "max_lr": 0.2, "total_steps": 25, "pct_start": 0.5, "div_factor": 10.0},
]
STEPS = 45


def expected(case: dict[str, Any]) -> list[float]:
    c = {**case, "schedule": schedules.resolve(case)["schedule"]}
    if c["schedule"] == "one_cycle":
        rates = torch_one_cycle(c, c["total_steps"])
        return rates + [rates[-1]] * (STEPS - len(rates))  # past total_steps the last rate holds
    return [keras_rate(c, step) for step in range(STEPS)]


def test_every_schedule_in_the_table_is_checked() -> None:
    assert {schedules.resolve(c)["schedule"] for c in CASES} == set(SCHEDULES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['schedule']}-{len(c)}")
def test_rates_follow_the_reference_formula(case: dict[str, Any]) -> None:
    got = schedules.rates(schedules.resolve(case), torch.arange(STEPS)).tolist()
    assert got == pytest.approx(expected(case), rel=2e-6, abs=1e-8)


def test_rates_worked_out_by_hand() -> None:
    def at(config: dict[str, Any], step: int) -> float:
        return float(schedules.rates(schedules.resolve(config), torch.tensor([step]))[0])

    exp = {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    assert at(exp, 5) == pytest.approx(0.1 * math.sqrt(0.5), rel=1e-6)  # 0.0707107
    cosine = {"schedule": "cosine_decay", "initial_learning_rate": 0.0, "decay_steps": 10}
    warm = {**cosine, "warmup_target": 0.2, "warmup_steps": 5}
    assert at(warm, 0) == 0.0 and at(warm, 2) == pytest.approx(0.08, rel=1e-6)  # 2/5 of the way to 0.2
    assert at(warm, 10) == pytest.approx(0.1, rel=1e-6)  # half-way down the cosine: 0.2 * 0.5
    assert at(warm, 100) == pytest.approx(0.0, abs=1e-9)
    piecewise = {"schedule": "piecewise_constant_decay", "boundaries": [3], "values": [1.0, 0.5]}
    assert [at(piecewise, s) for s in (3, 4)] == [1.0, 0.5]  # Keras: values[0] while step <= boundary
    one_cycle = {"schedule": "one_cycle", "max_lr": 0.1, "total_steps": 100}
    assert at(one_cycle, 0) == pytest.approx(0.004, rel=1e-6)  # max_lr / div_factor 25
    assert at(one_cycle, 29) == pytest.approx(0.1, rel=1e-6)  # the top after pct_start 0.3 of the steps
    assert at(one_cycle, 99) == pytest.approx(0.004 / 1e4, rel=1e-4)  # initial / final_div_factor


def test_a_per_epoch_schedule_counts_epochs() -> None:
    config = schedules.resolve(
        {
            "schedule": "exponential_decay",
            "initial_learning_rate": 0.1,
            "decay_steps": 1,
            "decay_rate": 0.5,
            "per": "epoch",
        }
    )
    got = schedules.rates(config, torch.arange(9), Timeline(steps_per_epoch=3, epochs=3)).tolist()
    assert got == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 3, rel=1e-6)
    with pytest.raises(ValueError, match="timeline"):
        schedules.rates(config, torch.arange(3))


def test_one_cycle_without_total_steps_spans_the_training() -> None:
    config = schedules.resolve({"schedule": "one_cycle", "max_lr": 0.1})
    got = schedules.rates(config, torch.arange(40), Timeline(steps_per_epoch=8, epochs=5)).tolist()
    assert got == pytest.approx(torch_one_cycle({"max_lr": 0.1, "total_steps": 40}, 40), rel=2e-6, abs=1e-8)
    per_epoch = schedules.resolve({"schedule": "one_cycle", "max_lr": 0.1, "per": "epoch"})
    by_epoch = schedules.rates(per_epoch, torch.arange(0, 40, 8), Timeline(steps_per_epoch=8, epochs=5)).tolist()
    assert by_epoch == pytest.approx(torch_one_cycle({"max_lr": 0.1, "total_steps": 5}, 5), rel=2e-6)


def test_the_rate_of_a_step_does_not_depend_on_where_reading_began() -> None:
    config = {"name": "sgd", "learning_rate": CASES[13]}
    table = schedules.RateTable([schedules.resolve(CASES[13])], population=False)
    whole = table.span_of(0, 1500)
    assert table.span_of(700, 600) == whole[700:1300]
    assert float(table.row(1234)) == whole[1234]
    assert optim.Optimizer([torch.zeros(1)], config).scheduled_rates(3) == whole[:3]


# ---------------------------------------------------------------------------------------------
# The optimizer follows the schedule


def test_each_update_uses_the_rate_at_the_updates_already_applied() -> None:
    case = CASES[9]  # cosine with warmup from 0: the first update moves nothing
    opt = optim.Optimizer([torch.zeros(2, dtype=torch.float64)], {"name": "sgd", "learning_rate": case})
    p, g = 0.0, 1.5
    for step in range(STEPS):
        assert opt.current_lr() == pytest.approx(keras_rate({**case}, step), rel=1e-6, abs=1e-9)
        opt.step([torch.full((2,), g, dtype=torch.float64)])
        p -= float(torch.tensor(keras_rate(case, step), dtype=torch.float32)) * g
        assert float(opt.params[0][0]) == pytest.approx(p, rel=1e-6, abs=1e-9)
    assert opt.iterations == STEPS


def test_legacy_decay_divides_the_scheduled_rate_as_keras_2_did() -> None:
    case = CASES[0]
    opt = optim.Optimizer([torch.zeros(1)], {"name": "sgd", "learning_rate": case, "decay": 0.1})
    for step in range(5):
        assert opt.current_lr() == pytest.approx(keras_rate(case, step) / (1 + 0.1 * step), rel=1e-6)
        opt.step([torch.ones(1)])


def test_weight_decay_uses_the_scheduled_rate() -> None:
    case = CASES[6]  # polynomial decay
    opt = optim.Optimizer(
        [torch.ones(1, dtype=torch.float64)], {"name": "adamw", "learning_rate": case, "weight_decay": 0.5}
    )
    p = 1.0
    for step in range(12):
        opt.step([torch.zeros(1, dtype=torch.float64)])  # Adam moves nothing on zero gradients: only the decay acts
        p *= 1 - 0.5 * keras_rate(case, step)
        assert float(opt.params[0][0]) == pytest.approx(p, rel=1e-7)


def test_a_scheduled_rate_cannot_be_set() -> None:
    opt = optim.Optimizer([torch.zeros(1)], {"name": "adam", "learning_rate": CASES[0]})
    with pytest.raises(ValueError, match="schedule"):
        opt.learning_rate = 0.5
    population = optim.PopulationOptimizer([torch.zeros(2, 1)], [{"name": "adam", "learning_rate": CASES[0]}, "adam"])
    population.set_learning_rate(1, 0.5)  # the member without a schedule: as before
    with pytest.raises(ValueError, match="schedule"):
        population.set_learning_rate(0, 0.5)


def test_a_population_gives_each_member_its_own_schedule() -> None:
    configs: list[Any] = [
        {"name": "sgd", "learning_rate": CASES[9]},
        {"name": "sgd", "learning_rate": 0.05},
        {"name": "sgd", "learning_rate": CASES[4]},
        {"name": "sgd", "learning_rate": {**CASES[5], "per": "epoch"}},
    ]
    timeline = Timeline(steps_per_epoch=4, epochs=10)
    population = optim.PopulationOptimizer([torch.zeros(4, 3)], configs)
    population.set_timeline(timeline)
    singles = [optim.Optimizer([torch.zeros(3)], c) for c in configs]
    for single in singles:
        single.set_timeline(timeline)
    for step in range(20):
        grad = torch.full((3,), 0.5 + step)
        rates = population.current_lrs()
        assert rates == [s.current_lr() for s in singles]
        population.step([grad.expand(4, 3).clone()])
        for single in singles:
            single.step([grad])
    for k, single in enumerate(singles):
        assert torch.equal(population.params[0][k], single.params[0]), k
    assert population.current_lrs()[3] == pytest.approx(0.3)  # epoch 5 (20 steps of 4): still <= boundary 5


# ---------------------------------------------------------------------------------------------
# Training: every step, populations, resume


COSINE = {
    "schedule": "cosine_decay",
    "initial_learning_rate": 0.0,
    "decay_steps": 40,
    "warmup_target": 0.1,
    "warmup_steps": 10,
}


def test_the_recorded_learning_rate_is_the_rate_of_each_epochs_first_update(tmp_path: Path) -> None:
    trial = mlp_spec(tmp_path, optimizer={"name": "sgd", "learning_rate": COSINE}, epochs=4, batch_size=32)
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, 0)
    result = fit(
        net,
        optim.Optimizer(list(net.parameters()), trial["optimizer"]),
        tensors,
        TrainSettings.of(trial),
        info.task,
        seed=0,
    )
    steps = math.ceil(len(tensors.x_train) / 32)
    resolved = schedules.resolve(COSINE)
    assert [e["learning_rate"] for e in result.history] == pytest.approx(
        [keras_rate(resolved, epoch * steps) for epoch in range(4)], rel=1e-6
    )


@pytest.mark.parametrize("lowered", [True, False])
@pytest.mark.parametrize("stop_after", [0, 2])
def test_resume_with_a_schedule_equals_an_uninterrupted_run(tmp_path: Path, lowered: bool, stop_after: int) -> None:
    schedule = {"schedule": "one_cycle", "max_lr": 0.2}  # its length: the trial's, from the timeline
    trial = mlp_spec(
        tmp_path, optimizer={"name": "sgd", "learning_rate": schedule, "momentum": 0.9}, epochs=4, batch_size=8
    )
    tensors, info, _ = DataCache().get(trial["data"])
    settings = TrainSettings.of(trial)

    def run(resume: bytes | None, seen: list[bytes]) -> tuple[Any, torch.nn.Module]:
        net = models.build(trial["model"], info.input_shape, 0 if resume is None else 123)
        opt = optim.Optimizer(list(net.parameters()), trial["optimizer"])
        result = fit(
            net,
            opt,
            tensors,
            settings,
            info.task,
            seed=0,
            resume=resume,
            lowered=lowered,
            on_epoch=lambda epoch, logs, make: seen.append(make()),
        )
        return result, net

    checkpoints: list[bytes] = []
    full, full_net = run(None, checkpoints)
    resumed, net = run(checkpoints[stop_after], [])
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert len({e["learning_rate"] for e in full.history}) == 4
    for key, value in full_net.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_the_lowered_step_follows_the_schedule_as_the_autograd_loop_does(tmp_path: Path) -> None:
    trial = mlp_spec(
        tmp_path,
        optimizer={"name": "sgd", "learning_rate": CASES[4]},
        epochs=3,
        batch_size=4,
        train={"label_smoothing": 0.1},
    )
    tensors, info, _ = DataCache().get(trial["data"])
    out = []
    for lowered in (True, False):
        net = models.build(trial["model"], info.input_shape, 0)
        result = fit(
            net,
            optim.Optimizer(list(net.parameters()), trial["optimizer"]),
            tensors,
            TrainSettings.of(trial),
            info.task,
            seed=0,
            lowered=lowered,
        )
        out.append((result, net))
    (a, net_a), (b, net_b) = out
    for ea, eb in zip(a.history, b.history):
        for key in ("loss", "accuracy", "val_loss", "learning_rate"):
            assert ea[key] == pytest.approx(eb[key], rel=2e-5, abs=2e-5), key
    for key, value in net_a.state_dict().items():
        assert torch.allclose(value, net_b.state_dict()[key], atol=1e-5), key


STUDY = """
[study]
name = "sched"
seeds = [0]

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 0.25 }}

[model]
layers = [
  {{ type = "Flatten" }},
  {{ type = "Dense", units = 12, activation = "relu" }},
  {{ type = "Dropout", rate = 0.2 }},
  {{ type = "Dense", units = 3, activation = "softmax" }},
]

[optimizer]
name = "{optimizer}"
learning_rate = 0.01

[train]
epochs = 5
batch_size = 32
label_smoothing = 0.1

[[compare]]
label = "constant"

[[compare]]
label = "cosine"
"optimizer.learning_rate" = {{ schedule = "cosine_decay", initial_learning_rate = 0.0, decay_steps = 20, warmup_target = 0.03, warmup_steps = 6 }}

[[compare]]
label = "step"
"optimizer.learning_rate" = {{ schedule = "piecewise_constant_decay", boundaries = [1, 3], values = [0.03, 0.01, 0.003], per = "epoch" }}
train = {{ early_stopping = {{ monitor = "val_loss", patience = 0, min_delta = 0.5 }} }}

[[compare]]
label = "one-cycle"
"optimizer.learning_rate" = {{ schedule = "one_cycle", max_lr = 0.05 }}
"train.epochs" = 4
"""


class StopAfter(Silent):
    """Interrupts training (as Ctrl-C does) once epoch ``epoch`` of the trial labelled ``label`` is recorded."""

    def __init__(self, label: str, epoch: int) -> None:
        self.label, self.epoch = label, epoch

    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Any) -> None:
        if (trial.label, epoch) == (self.label, self.epoch):
            raise KeyboardInterrupt


def run_study(tmp_path: Path, db: str, optimizer: str, **kw: Any) -> dict[str, Any]:
    if not (tmp_path / "tiny.npz").exists():
        make_npz(tmp_path / "tiny.npz")
    path = tmp_path / "sched.toml"
    path.write_text(STUDY.format(optimizer=optimizer))
    study = spec.load(path)
    out = {}
    with Store.open(tmp_path / db) as store:
        run_local(study, store, cache=DataCache(), **kw)
        record = store.study("sched")
        assert record is not None
        for trial in store.trials(record.id):
            epochs = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)]
            weights = unpack(store.artifact(trial.id, WEIGHTS).data)[0]["model"]  # type: ignore[union-attr]
            out[trial.label] = {"epochs": epochs, "weights": weights, "result": trial.result}
    return out


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_population_with_a_schedule_per_member_equals_each_trained_alone(tmp_path: Path, optimizer: str) -> None:
    together = run_study(tmp_path, "together.db", optimizer, population=4)
    alone = run_study(tmp_path, "alone.db", optimizer, population=1)
    assert together.keys() == alone.keys() == {"constant", "cosine", "step", "one-cycle"}
    for label in together:
        x, y = together[label], alone[label]
        assert x["result"]["population"] == 4 and y["result"]["population"] == 1
        assert len(x["epochs"]) == len(y["epochs"])
        for ex, ey in zip(x["epochs"], y["epochs"]):
            assert ex["learning_rate"] == ey["learning_rate"], label  # the same float32 rate
            for m in ex:
                assert ex[m] == pytest.approx(ey[m], rel=2e-5, abs=2e-5), (label, m)
        for name, w in x["weights"].items():
            assert torch.allclose(w, y["weights"][name], atol=1e-4), (label, name)
    assert len(together["step"]["epochs"]) < 5, "early stopping ends the stepped member alone"
    assert [e["learning_rate"] for e in together["step"]["epochs"]][:2] == pytest.approx([0.03, 0.03])
    assert len({e["learning_rate"] for e in together["cosine"]["epochs"]}) == 5
    assert [e["learning_rate"] for e in together["constant"]["epochs"]] == pytest.approx([0.01] * 5)


def test_a_population_killed_and_resumed_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    reference = run_study(tmp_path, "reference.db", "adam", population=4, checkpoint_every=0)
    with pytest.raises(KeyboardInterrupt):
        run_study(tmp_path, "resumed.db", "adam", population=4, checkpoint_every=0, reporter=StopAfter("cosine", 1))
    resumed = run_study(tmp_path, "resumed.db", "adam", population=4, checkpoint_every=0)
    for label, ref in reference.items():
        assert resumed[label]["epochs"] == ref["epochs"], label
        for name, w in ref["weights"].items():
            assert torch.equal(resumed[label]["weights"][name], w), (label, name)


# ---------------------------------------------------------------------------------------------
# Study files


def resolve_with(tmp_path: Path, learning_rate: Any, train: dict[str, Any] | None = None) -> dict[str, Any]:
    return mlp_spec(tmp_path, optimizer={"name": "sgd", "learning_rate": learning_rate}, train=train)


def test_a_study_resolves_a_schedule_with_every_default_explicit(tmp_path: Path) -> None:
    trial = resolve_with(tmp_path, {"schedule": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 100})
    assert trial["optimizer"]["learning_rate"] == {
        "schedule": "cosine_decay",
        "initial_learning_rate": 0.1,
        "decay_steps": 100,
        "alpha": 0.0,
        "warmup_target": None,
        "warmup_steps": 0,
        "per": "step",
    }
    constant = resolve_with(tmp_path, 0.1)
    assert constant["optimizer"]["learning_rate"] == 0.1 and "label_smoothing" not in constant["train"]


@pytest.mark.parametrize(
    ("learning_rate", "path", "words"),
    [
        (
            {"schedule": "cosine_decy", "initial_learning_rate": 0.1, "decay_steps": 1},
            "optimizer.learning_rate.schedule",
            ["did you mean 'cosine_decay'"],
        ),
        ({"initial_learning_rate": 0.1}, "optimizer.learning_rate.schedule", ["needs its schedule", "one_cycle"]),
        (
            {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10},
            "optimizer.learning_rate.decay_rate",
            ["is required"],
        ),
        (
            {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5},
            "optimizer.learning_rate.decay_steps",
            ["must be > 0"],
        ),
        (
            {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10, "warmup": 5},
            "optimizer.learning_rate.warmup",
            ["unknown key", "did you mean 'warmup_steps'"],
        ),
        (
            {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10, "warmup_steps": 5},
            "optimizer.learning_rate.warmup_steps",
            ["without warmup_target"],
        ),
        (
            {"schedule": "piecewise_constant_decay", "boundaries": [3, 6], "values": [0.1, 0.01]},
            "optimizer.learning_rate.values",
            ["one more value"],
        ),
        (
            {"schedule": "piecewise_constant_decay", "boundaries": [6, 3], "values": [0.1, 0.01, 0.001]},
            "optimizer.learning_rate.boundaries",
            ["strictly increasing"],
        ),
        ({"schedule": "one_cycle", "max_lr": 0.1, "per": "batch"}, "optimizer.learning_rate.per", ["'step', 'epoch'"]),
        (
            {"schedule": "one_cycle", "max_lr": 0.1, "total_steps": 3, "pct_start": 0.1},
            "optimizer.learning_rate.total_steps",
            ["phase without steps"],
        ),
        (
            {"schedule": "one_cycle", "max_lr": 0.1, "cycle_momentum": True},
            "optimizer.learning_rate.cycle_momentum",
            ["learning rate alone"],
        ),
        (
            {"schedule": "cosine_decay_restarts", "initial_learning_rate": 0.1, "first_decay_steps": 5, "t_mul": 0.5},
            "optimizer.learning_rate.t_mul",
            ["must be >= 1"],
        ),
        ("fast", "optimizer.learning_rate", ["must be a number"]),
    ],
)
def test_a_wrong_schedule_is_refused_with_its_key_path(
    tmp_path: Path, learning_rate: Any, path: str, words: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_with(tmp_path, learning_rate)
    assert caught.value.path.endswith(path), str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_check_shows_a_schedule_as_the_key_paths_a_study_writes(tmp_path: Path) -> None:
    trial = resolve_with(tmp_path, {"schedule": "one_cycle", "max_lr": 0.1, "per": "epoch", "pct_start": 0.3})
    shown = {k: v for k, v in describe.settings(trial).items() if k.startswith("optimizer.learning_rate")}
    assert shown == {
        "optimizer.learning_rate.schedule": "one_cycle",
        "optimizer.learning_rate.max_lr": 0.1,
        "optimizer.learning_rate.per": "epoch",
    }


def test_reduce_lr_on_plateau_over_a_schedule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_with(tmp_path, CASES[0], train={"reduce_lr_on_plateau": {"patience": 2}})
    assert caught.value.path == "train.reduce_lr_on_plateau"
    assert "schedule" in caught.value.reason and "Keras" in caught.value.reason
    resolve_with(tmp_path, 0.1, train={"reduce_lr_on_plateau": {"patience": 2}})  # a constant rate: as before


def test_scale_lr_scales_every_rate_of_a_schedule() -> None:
    tables: dict[str, Any] = {"optimizer": {"name": "sgd", "learning_rate": dict(CASES[9])}}
    edits.EDITS["scale_lr"].apply(tables, 5, "edit.scale_lr")
    scaled = tables["optimizer"]["learning_rate"]
    assert (scaled["initial_learning_rate"], scaled["warmup_target"], scaled["decay_steps"]) == (0.0, 1.0, 10)
    tables = {"optimizer": {"name": "sgd", "learning_rate": dict(CASES[4])}}
    edits.EDITS["scale_lr"].apply(tables, 2, "edit.scale_lr")
    assert tables["optimizer"]["learning_rate"]["values"] == [2.0, 1.0, 0.2]


# ---------------------------------------------------------------------------------------------
# Label smoothing


def test_label_smoothing_is_keras_categorical_crossentropy_on_one_hot_targets() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    s, k = 0.2, 3
    expected = 0.0
    for row, label in zip(logits.tolist(), labels.tolist()):
        # Keras: y = onehot (1 - s) + s / k, loss = -sum y log softmax
        norm = math.log(sum(math.exp(z) for z in row))
        target = [(1 - s) * (j == label) + s / k for j in range(k)]
        expected += -sum(t * (z - norm) for t, z in zip(target, row))
    got = loss_function("sparse_categorical_crossentropy", s)(logits, labels)
    assert float(got) == pytest.approx(expected / 2, rel=1e-12)


def test_the_validation_loss_is_the_smoothed_loss(tmp_path: Path) -> None:
    trial = mlp_spec(tmp_path, epochs=2, train={"label_smoothing": 0.3, "keep": "last"})
    tensors, info, _ = DataCache().get(trial["data"])
    net = models.build(trial["model"], info.input_shape, 0)
    result = fit(
        net,
        optim.Optimizer(list(net.parameters()), trial["optimizer"]),
        tensors,
        TrainSettings.of(trial),
        info.task,
        seed=0,
    )
    net.eval()
    with torch.no_grad():
        logits = net(tensors.x_val).double()
    log_p = torch.log_softmax(logits, dim=1)
    target = torch.nn.functional.one_hot(tensors.y_val, 3).double() * 0.7 + 0.1  # y (1 - s) + s / 3
    assert result.history[-1]["val_loss"] == pytest.approx(float(-(target * log_p).sum(1).mean()), rel=1e-5)


def test_label_smoothing_changes_the_identity_only_when_set(tmp_path: Path) -> None:
    plain = resolve_with(tmp_path, 0.1)
    smoothed = resolve_with(tmp_path, 0.1, train={"label_smoothing": 0.1})
    assert smoothed["train"]["label_smoothing"] == 0.1
    assert resolve_with(tmp_path, 0.1, train={"label_smoothing": 0}) == plain
    assert TrainSettings.of(plain).label_smoothing == 0.0 and "label_smoothing" not in TrainSettings.of(plain).to_json()


def test_label_smoothing_of_a_regression_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        spec.resolve_train({"epochs": 1, "label_smoothing": 0.1}, "regression")
    assert caught.value.path == "train.label_smoothing"
    with pytest.raises(SpecError) as caught:
        spec.resolve_train({"epochs": 1, "label_smoothing": 1.0}, "classification")
    assert "[0, 1)" in str(caught.value)
