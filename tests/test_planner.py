"""The run plan: populations, step, compile and threads, decided from the study and the core count alone."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from factories import SGD_AND_ADAM, TINY_LAYERS, load_study, npz_study, tiny_study_tables
from helpers import make_npz

from trainlab import models, planner, spec
from trainlab.data.cache import DataCache
from trainlab.engine.lowered import lower
from trainlab.executors import run_local
from trainlab.optim import Optimizer
from trainlab.store import Store
from trainlab.trial import TrialSpec

INPUT = (1, 28, 28)
MLP = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 32, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
CNN = [
    {"type": "Conv2D", "filters": 2, "kernel_size": 3},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def trial_spec(
    *, optimizer: Any = "sgd", batch_size: Any = 32, layers: list[dict[str, Any]] | None = None, epochs: int = 3
) -> TrialSpec:
    """A resolved MNIST trial spec, as a study resolves it."""
    return TrialSpec.from_json(
        spec.resolve_trial(
            {
                "data": {"name": "mnist", "split": {"kind": "first", "validation": 5000}},
                "model": {"layers": copy.deepcopy(layers or MLP)},
                "optimizer": optimizer,
                "train": {"epochs": epochs, "batch_size": batch_size},
            }
        )
    )


def plan(trials: list[planner.Planned], **options: Any) -> dict[str, planner.Plan]:
    return planner.plan_trials(trials, input_shape=lambda s: INPUT, train_size=lambda s: 55000, **options)


@pytest.mark.parametrize(
    ("n", "limit", "sizes"),
    [
        (1, 16, [1]),
        (3, 16, [3]),
        (16, 16, [16]),
        (17, 16, [9, 8]),
        (18, 16, [9, 9]),
        (33, 16, [11, 11, 11]),
        (3, 2, [2, 1]),
        (5, 2, [2, 2, 1]),
        (4, 1, [1, 1, 1, 1]),
        (0, 16, []),
    ],
)
def test_groups_split_into_near_equal_consecutive_populations(n: int, limit: int, sizes: list[int]) -> None:
    hashes = [f"h{i}" for i in range(n)]
    parts = planner.split_group(hashes, limit)
    assert [len(p) for p in parts] == sizes
    assert [h for p in parts for h in p] == hashes  # consecutive, in study order


def test_population_ids_name_the_members_not_their_order() -> None:
    assert planner.population_id(["a", "b"]) == planner.population_id(["b", "a"])
    assert planner.population_id(["a", "b"]) != planner.population_id(["a", "c"])


def test_group_key_separates_what_changes_the_batches_only() -> None:
    base = trial_spec()
    key = planner.batch_key(base, 0, 0)
    assert planner.batch_key(trial_spec(optimizer="adam"), 0, 0) == key  # lives in tensors
    assert planner.batch_key(trial_spec(epochs=5), 0, 0) == key  # budgets may differ
    assert planner.batch_key(base, 1, 0) != key  # another batch order and noise
    assert planner.batch_key(base, 0, 2) != key  # another epoch to start from
    assert planner.batch_key(trial_spec(batch_size=64), 0, 0) != key
    wider = copy.deepcopy(MLP)
    wider[1]["units"] = 64
    assert planner.batch_key(trial_spec(layers=wider), 0, 0) != key


def test_dropout_rates_live_in_tensors_so_report_e_grid_rows_share_a_population() -> None:
    """Report E's grid: architectures x dropout 0.2 / 0.25 / 0.3. The rates of one architecture
    share a population (per seed); another architecture or another layer does not."""

    def blocks(filters: int, rate: float) -> list[dict[str, Any]]:
        return [
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "BatchNormalization"},
            {"type": "MaxPooling2D", "padding": "same"},
            {"type": "Dropout", "rate": rate},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]

    grid = [(filters, rate) for filters in (4, 8) for rate in (0.2, 0.25, 0.3)]
    trials = [
        planner.Planned(f"{f}-{r}-{s}", s, trial_spec(optimizer="adam", batch_size=256, layers=blocks(f, r)))
        for f, r in grid
        for s in (0, 1)
    ]
    plans = plan(trials, population=8)
    groups: dict[str, set[str]] = {}
    for trial in trials:
        groups.setdefault(plans[trial.hash].population or trial.hash, set()).add(trial.hash)
    assert sorted(map(sorted, groups.values())) == sorted(
        sorted(f"{f}-{r}-{s}" for r in (0.2, 0.25, 0.3)) for f in (4, 8) for s in (0, 1)
    )
    assert {plans[t.hash].members for t in trials} == {3}
    without = [layer for layer in blocks(4, 0.2) if layer["type"] != "Dropout"]
    assert planner.batch_key(trial_spec(layers=without), 0, 0) != planner.batch_key(
        trial_spec(layers=blocks(4, 0.2)), 0, 0
    )
    for layer_type, options in planner.IN_TENSORS.items():
        assert set(options) <= set(models.LAYER_DEFS[layer_type].params), "every row names a layer type and its options"


def test_auto_workers_from_the_groups_of_the_whole_study() -> None:
    sweep = [planner.Planned(f"{o}{s}", s, trial_spec(optimizer=o)) for o in ("sgd", "adam") for s in (0, 1)]
    assert planner.auto_workers(sweep, cores=2) == 1  # two populations of two: one worker on every core
    alone = [planner.Planned(f"s{s}", s, trial_spec()) for s in range(3)]
    assert planner.auto_workers(alone, cores=2) == 2  # three trials alone: one worker per core
    assert planner.auto_workers(alone, cores=8) == 3  # at most one per group
    assert planner.auto_workers([], cores=2) == 1


@pytest.mark.parametrize(
    ("batch_size", "layers", "available", "threads"),
    [
        (1, MLP, 2, 1),
        (16, MLP, 4, 1),
        (17, MLP, 4, 4),
        ("full", MLP, 2, 2),
        (32, MLP, 0, 1),
        (
            1,
            [
                {"type": "Conv2D", "filters": 2, "kernel_size": 3},
                {"type": "Flatten"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ],
            2,
            2,
        ),
    ],
)
def test_threads_follow_the_batch_and_the_model(
    batch_size: Any, layers: list[dict[str, Any]], available: int, threads: int
) -> None:
    assert planner.threads_for(trial_spec(batch_size=batch_size, layers=layers), available) == threads


LOWERING_CASES = {
    "sgd, batch 1": ({"optimizer": "sgd", "batch_size": 1}, True),
    "momentum, batch 16": ({"optimizer": {"name": "sgd", "momentum": 0.9}, "batch_size": 16}, True),
    "batch 17": ({"optimizer": "sgd", "batch_size": 17}, False),
    "adam": ({"optimizer": "adam", "batch_size": 1}, False),
    "full batch": ({"optimizer": "sgd", "batch_size": "full"}, False),
    "clipnorm": ({"optimizer": {"name": "sgd", "clipnorm": 1.0}, "batch_size": 1}, False),
    "dropout": (
        {"optimizer": "sgd", "batch_size": 1, "layers": [*MLP[:2], {"type": "Dropout", "rate": 0.5}, MLP[2]]},
        False,
    ),
    "l2": (
        {
            "optimizer": "sgd",
            "batch_size": 1,
            "layers": [MLP[0], {**MLP[1], "kernel_regularizer": {"l2": 0.01}}, MLP[2]],
        },
        False,
    ),
}


@pytest.mark.parametrize("case", LOWERING_CASES)
def test_the_planned_step_is_the_engines_own_rule(case: str) -> None:
    """The plan asks the engine's rule; here it is asked directly, on a model built with another seed."""
    options, expected = LOWERING_CASES[case]
    s = trial_spec(**options)
    net = models.build(s.model.to_json(), INPUT, 5)
    engine_says = lower(net, Optimizer(list(net.parameters()), s.optimizer.to_json()), s.train, s.task) is not None
    assert planner.lowered_applies(s, INPUT) == engine_says == expected


def test_eager_estimate_by_hand() -> None:
    """MLP 784-32-10: 784*32 + 32 + 32*10 + 10 = 25,450 parameters; 55,000 examples at batch 32
    are 1,719 steps an epoch, 3 epochs; three members."""
    params, steps = 25_450, 3 * 1_719
    by_hand = steps * (planner.NOMINAL_STEP_SECONDS + 6 * params * 32 * 3 / planner.NOMINAL_FLOPS)
    assert planner.eager_seconds(trial_spec(), INPUT, 55_000, 3) == pytest.approx(by_hand, rel=1e-12)


def test_plans_of_a_sweep() -> None:
    """Three optimizers x two seeds: a population of three per seed, eager (short), every core."""
    trials = [
        planner.Planned(f"{o}{s}", s, trial_spec(optimizer=o)) for s in (0, 1) for o in ("sgd", "adam", "rmsprop")
    ]
    plans = plan(trials, cores=2)
    assert plans == plan(list(trials), cores=2)  # the same study plans the same way
    by_seed = {s: {plans[t.hash].population for t in trials if t.seed == s} for s in (0, 1)}
    assert all(len(ids) == 1 and None not in ids for ids in by_seed.values())
    assert by_seed[0] != by_seed[1]
    for p in plans.values():
        assert (p.members, p.step, p.compile, p.threads, p.workers, p.cores) == (3, "population", False, 2, 1, 2)
    assert plan(trials, cores=2, workers=2)["sgd0"].threads == 1
    assert plan(trials, cores=2, threads=4)["sgd0"].threads == 4


def sweep(layers: list[dict[str, Any]]) -> list[planner.Planned]:
    """Three optimizers at one seed: trials that share their batches."""
    return [planner.Planned(o, 0, trial_spec(optimizer=o, layers=layers)) for o in ("sgd", "adam", "rmsprop")]


def test_convolutional_trials_train_alone_on_the_cpu_and_the_plan_says_why() -> None:
    plans = plan(sweep(CNN), cores=2)
    assert [(p.population, p.members, p.step, p.threads) for p in plans.values()] == [(None, 1, "autograd", 2)] * 3
    assert {p.reason for p in plans.values()} == {planner.CPU_CONVOLUTIONS_ALONE}
    assert "benchmark 3" in planner.CPU_CONVOLUTIONS_ALONE and "--population" in planner.CPU_CONVOLUTIONS_ALONE
    assert plans["sgd"].describe() == f"alone, autograd step, 2 threads; alone because {planner.CPU_CONVOLUTIONS_ALONE}"
    assert planner.Plan.from_json(plans["sgd"].to_json()) == plans["sgd"]
    assert plan(sweep(CNN), cores=2) == plans  # from the study and the device alone


def test_convolutional_trials_form_populations_when_population_is_given() -> None:
    plans = plan(sweep(CNN), population=3, cores=2)
    assert len({p.population for p in plans.values()}) == 1
    assert [(p.members, p.step, p.reason) for p in plans.values()] == [(3, "population", None)] * 3
    assert [p.members for p in plan(sweep(CNN), population=2).values()] == [2, 2, 1]


@pytest.mark.parametrize("memory", [None, 80 * 2**30])
def test_convolutional_trials_form_populations_on_cuda(memory: int | None) -> None:
    plans = plan(sweep(CNN), device="cuda", device_memory=memory)
    assert len({p.population for p in plans.values()} - {None}) == 1
    assert [(p.members, p.step, p.reason, p.device) for p in plans.values()] == [(3, "population", None, "cuda")] * 3


def test_dense_trials_on_the_cpu_still_form_populations() -> None:
    plans = plan(sweep(MLP), cores=2)
    assert [(p.members, p.step, p.reason) for p in plans.values()] == [(3, "population", None)] * 3


def test_a_convolutional_study_records_its_plan_and_trains_alone(tmp_path: Path) -> None:
    """End to end on the CPU: the recorded plan and the trained result agree that each trial trained alone."""
    make_npz(tmp_path / "tiny.npz")
    layers = [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, *TINY_LAYERS]
    tables = npz_study(name="conv", seeds=[0], layers=layers, epochs=1, compare=SGD_AND_ADAM)
    study = load_study(tmp_path, tables, name="conv")
    with Store.open(tmp_path / "s.db") as store:
        run_local(study, store, cache=DataCache(), device="cpu")
        record = store.study("conv")
        assert record is not None
        trials = store.trials(record.id)
        assert [t.status for t in trials] == ["done", "done"]
        assert [(t.plan or {}).get("reason") for t in trials] == [planner.CPU_CONVOLUTIONS_ALONE] * 2
        assert [(t.result or {}).get("population") for t in trials] == [1, 1]


def test_population_one_trains_every_trial_alone_with_its_engine_step() -> None:
    trials = [
        planner.Planned("sgd", 0, trial_spec(batch_size=1)),
        planner.Planned("adam", 0, trial_spec(optimizer="adam", batch_size=1)),
    ]
    plans = plan(trials, population=1, cores=2)
    assert [(p.population, p.members, p.step, p.threads) for p in plans.values()] == [
        (None, 1, "lowered", 1),
        (None, 1, "autograd", 1),
    ]


def test_a_long_population_is_compiled() -> None:
    long = [planner.Planned(o, 0, trial_spec(optimizer=o, epochs=40)) for o in ("sgd", "adam")]
    assert planner.eager_seconds(long[0].spec, INPUT, 55_000, 2) > planner.COMPILE_PAYS_AFTER
    assert all(p.compile for p in plan(long).values())
    alone = plan(long, population=1)
    assert not any(p.compile for p in alone.values())  # a trial alone never compiles


def test_trials_resuming_at_different_epochs_are_planned_apart() -> None:
    trials = [planner.Planned("a", 0, trial_spec()), planner.Planned("b", 0, trial_spec(optimizer="adam"), start=2)]
    assert all(p.population is None for p in plan(trials).values())


def test_plan_round_trips_through_json() -> None:
    p = planner.Plan("abc", 3, "population", True, 2, 1, 2)
    assert planner.Plan.from_json(p.to_json()) == p
    assert planner.Plan.from_json({**p.to_json(), "added_later": 1}) == p
    assert p.describe() == "population of 3, compiled, 2 threads"
    assert planner.Plan(None, 1, "lowered", False, 1, 1, 2).describe() == "alone, lowered step, 1 thread"


def test_a_trial_keeps_its_recorded_plan(tmp_path: Path) -> None:
    """The first run records every plan; a later run with another --population keeps them."""
    make_npz(tmp_path / "tiny.npz")
    study = load_study(tmp_path, tiny_study_tables(epochs=1), name="tiny")
    with Store.open(tmp_path / "s.db") as store:
        run_local(study, store, cache=DataCache())
        record = store.study("tiny")
        assert record is not None
        first = {t.hash: t.plan for t in store.trials(record.id)}
        assert all(p is not None and p["members"] == 2 and p["step"] == "population" for p in first.values())
        store.reset_trials(record.id, ("done",))
        assert all(t.plan is None for t in store.trials(record.id))  # a reset trial is planned afresh
        run_local(study, store, cache=DataCache(), population=1)
        assert all(t.plan is not None and t.plan["step"] != "population" for t in store.trials(record.id))
        assert {t.hash: t.plan for t in store.trials(record.id)} != first


def precision_spec(precision: str, optimizer: str = "sgd") -> TrialSpec:
    base = trial_spec(optimizer=optimizer).to_json()
    base["train"]["precision"] = precision
    return TrialSpec.from_json(base)


def test_plans_record_the_device_and_each_trials_precision() -> None:
    trials = [
        planner.Planned("a", 0, precision_spec("bfloat16")),
        planner.Planned("b", 0, precision_spec("bfloat16", "adam")),
        planner.Planned("c", 0, trial_spec()),
    ]
    plans = plan(trials, device="cuda", device_memory=80 * 2**30)
    assert [(p.device, p.precision, p.device_memory) for p in plans.values()] == [
        ("cuda", "bfloat16", 80 * 2**30),
        ("cuda", "bfloat16", 80 * 2**30),
        ("cuda", "float32", 80 * 2**30),
    ]
    # Another precision is another population: the members share one autocast.
    assert plans["a"].population == plans["b"].population != plans["c"].population
    assert plans["a"].describe() == "population of 2, eager, 2 threads, cuda, bfloat16"
    assert planner.Plan.from_json(plans["a"].to_json()) == plans["a"]
    assert [p.device for p in plan(trials).values()] == ["cpu"] * 3  # the default, as before


def test_float16_trials_train_alone_with_the_autograd_step() -> None:
    trials = [planner.Planned(o, 0, precision_spec("float16", o)) for o in ("sgd", "adam")]
    assert [(p.population, p.step) for p in plan(trials).values()] == [(None, "autograd")] * 2


def test_member_bytes_by_hand() -> None:
    """MLP 784-32-10 at batch 32: 25450 parameters; 784 + 32 + 10 outputs per example."""
    by_hand = 4 * (6 * 25_450 + 826 * (2 * 32 + 2048))
    assert planner.member_bytes(trial_spec(), INPUT, 55_000) == by_hand == 7_588_848


def test_a_gpu_population_is_sized_by_total_memory_and_split_not_refused() -> None:
    """A memory for exactly three members of the MLP beside the data: a group of seven splits 3, 2, 2."""
    data = planner.data_bytes(INPUT, 55_000)
    memory = int((data + 3 * 7_588_848) / planner.MEMORY_SHARE) + 1
    spec = trial_spec()
    assert planner.memory_limit(spec, INPUT, 55_000, memory) == 3
    assert planner.memory_limit(spec, INPUT, 55_000, 1) == 1  # never less than one: alone, not refused
    assert planner.memory_limit(spec, INPUT, 55_000, 2**50) == planner.GPU_MAX_POPULATION
    trials = [planner.Planned(f"t{i}", 0, trial_spec(optimizer="sgd")) for i in range(7)]
    plans = plan(trials, device="cuda", device_memory=memory)
    assert [plans[t.hash].members for t in trials] == [3, 3, 3, 2, 2, 2, 2]
    assert plan(trials, device="cuda", device_memory=memory) == plans  # the same memory, the same plan
    big = [planner.Planned(f"t{i}", 0, trial_spec(optimizer="sgd")) for i in range(40)]
    assert {p.members for p in plan(big, device="cuda", device_memory=2**40).values()} == {40}
    assert {p.members for p in plan(big).values()} == {14, 13}  # on the CPU: at most 16
