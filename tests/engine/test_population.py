"""Population training gives each trial the results it gets alone, and members end independently."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import make_npz

from trainlab import spec
from trainlab.api.progress import LineReporter
from trainlab.data.cache import DataCache
from trainlab.engine import population as population_module
from trainlab.engine.checkpoint import unpack
from trainlab.executors import run_local
from trainlab.store import WEIGHTS, Store

STUDY = """
[study]
name = "pop"
seeds = [0, 1]

[data]
name = "npz"
path = "tiny.npz"
split = {{ kind = "stratified", validation = 0.25 }}

[model]
layers = [
  {{ type = "Flatten" }},
  {{ type = "Dense", units = 16, activation = "relu", kernel_regularizer = {{ l2 = 0.001 }} }},
  {{ type = "Dropout", rate = 0.2 }},
  {{ type = "BatchNormalization" }},
  {{ type = "Dense", units = 3, activation = "softmax" }},
]

[optimizer]
name = "{optimizer}"

[train]
epochs = 6
batch_size = 16

[[compare]]
label = "a"
"optimizer.learning_rate" = 0.001

[[compare]]
label = "b"
"optimizer.learning_rate" = 0.003
train = {{ early_stopping = {{ monitor = "val_loss", patience = 0, min_delta = 0.5 }} }}

[[compare]]
label = "c"
"optimizer.learning_rate" = 0.01
train = {{ reduce_lr_on_plateau = {{ monitor = "loss", patience = 0, factor = 0.5, min_delta = 10.0 }} }}
{extra}
"""


def run(
    tmp_path: Path, name: str, population: int, optimizer: str = "adam", extra: str = "", **options: Any
) -> dict[str, Any]:
    if not (tmp_path / "tiny.npz").exists():
        make_npz(tmp_path / "tiny.npz")
    path = tmp_path / "pop.toml"
    path.write_text(STUDY.format(optimizer=optimizer, extra=extra))
    study = spec.load(path)
    out = {}
    with Store.open(tmp_path / f"{name}.db") as store:
        run_local(study, store, population=population, cache=DataCache(), **options)
        record = store.study("pop")
        assert record is not None
        for trial in store.trials(record.id):
            epochs = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)]
            weights = unpack(store.artifact(trial.id, WEIGHTS).data)[0]["model"]  # type: ignore[union-attr]
            out[trial.hash] = {
                "status": trial.status,
                "epochs": epochs,
                "weights": weights,
                "result": trial.result,
                "label": trial.label,
            }
    return out


def assert_same(a: dict[str, Any], b: dict[str, Any], tol: float = 2e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert x["status"] == y["status"]
        assert len(x["epochs"]) == len(y["epochs"])
        for ex, ey in zip(x["epochs"], y["epochs"]):
            assert ex.keys() == ey.keys()
            for m in ex:
                assert ex[m] == pytest.approx(ey[m], rel=tol, abs=tol), (x["result"], m)
        for name, w in x["weights"].items():
            assert torch.allclose(w.double(), y["weights"][name].double(), atol=1e-4), name
        assert x["result"]["population"] != y["result"]["population"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_population_equals_one_at_a_time(tmp_path: Path, optimizer: str) -> None:
    together = run(tmp_path, "together", population=3, optimizer=optimizer)
    alone = run(tmp_path, "alone", population=1, optimizer=optimizer)
    assert_same(together, alone)
    results = {v["result"]["population"] for v in together.values()}
    assert results == {3}
    lengths = sorted(len(v["epochs"]) for v in together.values())
    assert lengths[0] < 6 and lengths[-1] == 6, "early stopping must end member b alone"
    lrs = [e["learning_rate"] for v in together.values() for e in v["epochs"]]
    assert min(lrs) < 0.01 * 0.5 + 1e-9, "ReduceLROnPlateau must act on member c"


def test_members_with_other_dropout_rates_train_as_they_do_alone(tmp_path: Path) -> None:
    """Dropout rates live in tensors: variants that differ only in them share a population, and
    each member drops what it drops trained alone (report E's grid of rates)."""
    extra = "".join(
        f'\n[[compare]]\nlabel = "rate {rate}"\n"model.layers[2].rate" = {rate}\n' for rate in (0.0, 0.5, 0.7)
    )
    together = run(tmp_path, "rates-together", population=6, optimizer="sgd", extra=extra)
    alone = run(tmp_path, "rates-alone", population=1, optimizer="sgd", extra=extra)
    assert_same(together, alone)
    assert {v["result"]["population"] for v in together.values()} == {6}, "the six variants of a seed train together"
    finals = {v["label"]: v["epochs"][-1]["loss"] for v in alone.values()}
    assert len({round(finals[f"rate {rate}"], 6) for rate in (0.0, 0.5, 0.7)}) == 3, "each rate trains its own way"


def test_a_population_out_of_device_memory_trains_on_in_halves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A population that does not fit the device's memory (torch.OutOfMemoryError, raised here for
    stacks of more than two members at their third epoch) is not failed: its unfinished trials
    train on as two populations of half the size, from the checkpoints of epoch 2, and end with
    exactly the numbers of a run whose populations fit."""
    extra = '\n[[compare]]\nlabel = "d"\n"optimizer.learning_rate" = 0.02\n'
    fits = run(tmp_path, "fits", population=2, optimizer="sgd", extra=extra, checkpoint_every=0)

    train_epoch = population_module._train_epoch
    raised: list[int] = []

    def tight(stack: Any, *args: Any) -> Any:
        epoch = args[5]
        if stack.size > 2 and epoch == 2:
            raised.append(stack.size)
            raise torch.OutOfMemoryError(f"CUDA out of memory (a stack of {stack.size})")
        return train_epoch(stack, *args)

    monkeypatch.setattr(population_module, "_train_epoch", tight)
    lines = io.StringIO()
    split = run(
        tmp_path, "split", population=4, optimizer="sgd", extra=extra, checkpoint_every=0, reporter=LineReporter(lines)
    )
    assert raised, "the population of four must have run out of memory"
    assert {v["status"] for v in split.values()} == {"done"}
    for key, trial in fits.items():
        assert split[key]["epochs"] == trial["epochs"], trial["label"]
        assert all(torch.equal(w, split[key]["weights"][n]) for n, w in trial["weights"].items()), trial["label"]
    assert {v["result"]["population"] for v in split.values() if len(v["epochs"]) == 6} <= {1, 2}
    text = lines.getvalue()
    assert "the population did not fit in the device's memory (CUDA out of memory (a stack of" in text, text
    assert "training on as populations of" in text and "Traceback" not in text
    assert "(population of 2, eager, 1 thread; 4 planned) (resuming after epoch 2)" in text, text


def test_a_trial_that_does_not_fit_even_alone_fails_with_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The halving ends: a trial whose stack runs out of memory alone is failed with the error,
    and the trials that finished before stay done."""
    train_epoch = population_module._train_epoch

    def none_fits(stack: Any, *args: Any) -> Any:
        if args[5] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (every stack)")
        return train_epoch(stack, *args)

    monkeypatch.setattr(population_module, "_train_epoch", none_fits)
    make_npz(tmp_path / "tiny.npz")
    path = tmp_path / "pop.toml"
    path.write_text(STUDY.format(optimizer="sgd", extra=""))
    with Store.open(tmp_path / "none-fits.db") as store:
        run_local(spec.load(path), store, population=3, cache=DataCache(), checkpoint_every=0)
        trials = store.trials(store.study("pop").id)  # type: ignore[union-attr]
    by_status = {status: sorted(t.label for t in trials if t.status == status) for status in {t.status for t in trials}}
    assert by_status == {"done": ["b", "b"], "failed": ["a", "a", "c", "c"]}, by_status  # b stops early by itself
    assert all("CUDA out of memory (every stack)" in (t.error or "") for t in trials if t.status == "failed")


def test_one_diverging_member_stops_alone(tmp_path: Path) -> None:
    extra = '\n[[compare]]\nlabel = "boom"\n"optimizer.learning_rate" = 1e30\n'
    out = run(tmp_path, "div", population=4, optimizer="sgd", extra=extra)
    assert {v["label"]: v["status"] for v in out.values()} == {
        "a": "done",
        "b": "done",
        "c": "done",
        "boom": "diverged",
    }
    assert all(len(v["epochs"]) == 6 for v in out.values() if v["label"] in ("a", "c"))
    assert all(v["result"]["population"] == 4 for v in out.values())


def test_a_population_checkpoint_resumes_one_trial_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = run(tmp_path, "reference", population=3)
    from trainlab.store.sqlite import SQLiteStore

    original = SQLiteStore.record_epoch
    calls = {"n": 0}

    def interrupt(self: SQLiteStore, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 3 of the first population
            raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "record_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "resumed", population=3)
    monkeypatch.setattr(SQLiteStore, "record_epoch", original)
    resumed = run(tmp_path, "resumed", population=1)
    for key, ref in reference.items():
        got = resumed[key]
        assert [len(e) for e in got["epochs"]] == [len(e) for e in ref["epochs"]]
        for ex, ey in zip(got["epochs"], ref["epochs"]):
            for m in ex:
                assert ex[m] == pytest.approx(ey[m], rel=2e-5, abs=2e-5)


def test_mixed_optimizers_share_a_population_and_equal_training_alone(tmp_path: Path) -> None:
    extra = """
[[compare]]
label = "nesterov"
optimizer = { name = "sgd", momentum = 0.9, nesterov = true }

[[compare]]
label = "rmsprop"
optimizer = "rmsprop"

[[compare]]
label = "adagrad"
optimizer = "adagrad"
"""
    together = run(tmp_path, "mixed-together", population=8, extra=extra)
    alone = run(tmp_path, "mixed-alone", population=1, extra=extra)
    assert_same(together, alone)
    assert {v["result"]["population"] for v in together.values()} == {6}


MIXED = """
[[compare]]
label = "adam"
optimizer = "adam"

[[compare]]
label = "rmsprop"
optimizer = "rmsprop"
"""


@pytest.mark.parametrize("extra", ["", MIXED], ids=["one-update-rule", "mixed-optimizers"])
def test_a_compiled_population_step_equals_the_eager_one(tmp_path: Path, extra: str) -> None:
    from trainlab import models
    from trainlab.engine.population import Member, fit_population
    from trainlab.seeding import derive
    from trainlab.trial import TrainSettings

    make_npz(tmp_path / "tiny.npz")
    (tmp_path / "pop.toml").write_text(STUDY.format(optimizer="sgd", extra=extra))
    variants = spec.load(tmp_path / "pop.toml").variants
    tensors, info, _ = DataCache().get(variants[0].spec["data"])

    def members() -> list[Member]:
        return [
            Member(
                models.build(v.spec["model"], info.input_shape, derive(0, "init")),
                v.spec["optimizer"],
                TrainSettings.of(v.spec),
            )
            for v in variants
        ]

    eager = fit_population(members(), tensors, info.task, seed=0, compile=False)
    compiled = fit_population(members(), tensors, info.task, seed=0, compile=True)
    for a, b in zip(eager, compiled):
        assert len(a.history) == len(b.history)
        for ha, hb in zip(a.history, b.history):
            assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
            assert ha["val_accuracy"] == pytest.approx(hb["val_accuracy"], abs=1e-3)
        for name, w in a.weights.items():
            assert torch.allclose(w, b.weights[name], atol=1e-4), name


REGRESSION = """
[study]
name = "reg"
seeds = [0]

[data]
name = "npz"
path = "reg.npz"
split = {{ kind = "random", validation = 0.25 }}

[model]
layers = [{{ type = "Dense", units = 8, activation = "relu" }}, {{ type = "Dense", units = 1 }}]

[optimizer]
name = "sgd"

[train]
epochs = 6
batch_size = 16
loss = "mse"

[[compare]]
label = "ok"
"optimizer.learning_rate" = 0.01

[[compare]]
label = "also ok"
"optimizer.learning_rate" = 0.1
{extra}
"""
BOOMS = """
[[compare]]
label = "nan"
"optimizer.learning_rate" = 1000.0

[[compare]]
label = "inf"
"optimizer.learning_rate" = 0.4

[[compare]]
label = "exploding"
"optimizer.learning_rate" = 0.38
"""


def run_regression(tmp_path: Path, name: str, extra: str) -> dict[str, Any]:
    import numpy as np

    if not (tmp_path / "reg.npz").exists():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 5)).astype(np.float32)
        y = (x @ rng.normal(size=5) + 0.1 * rng.normal(size=300)).astype(np.float32)
        np.savez(tmp_path / "reg.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    (tmp_path / f"{name}.toml").write_text(REGRESSION.format(extra=extra))
    out = {}
    with Store.open(tmp_path / f"{name}.db") as store:
        run_local(spec.load(tmp_path / f"{name}.toml"), store, population=8, cache=DataCache())
        for trial in store.trials(store.study("reg").id):  # type: ignore[union-attr]
            weights = store.artifact(trial.id, WEIGHTS)
            out[trial.label] = {
                "status": trial.status,
                "result": trial.result,
                "epochs": [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)],
                "weights": unpack(weights.data)[0]["model"] if weights else None,
            }
    return out


def test_nan_inf_and_exploding_members_stop_alone_and_leave_the_others_untouched(tmp_path: Path) -> None:
    import math

    healthy = run_regression(tmp_path, "healthy", "")
    mixed = run_regression(tmp_path, "mixed", BOOMS)
    assert {label: t["status"] for label, t in mixed.items()} == {
        "ok": "done",
        "also ok": "done",
        "nan": "diverged",
        "inf": "diverged",
        "exploding": "diverged",
    }
    assert {t["result"]["population"] for t in mixed.values()} == {5}, "all five trained as one population"
    kinds = set()
    for label in ("nan", "inf", "exploding"):
        epochs = mixed[label]["epochs"]
        last = epochs[-1]
        assert not (math.isfinite(last["loss"]) and math.isfinite(last["val_loss"])), (label, last)
        assert all(math.isfinite(e["loss"]) and math.isfinite(e["val_loss"]) for e in epochs[:-1]), "stops at the first"
        assert mixed[label]["result"]["stop_reason"].startswith("loss became ")
        kinds |= {"nan" if math.isnan(v) else "inf" for v in (last["loss"], last["val_loss"]) if not math.isfinite(v)}
    assert kinds == {"nan", "inf"}, "the members cover both NaN and an infinite loss"
    assert (
        len(mixed["exploding"]["epochs"]) >= 2
        and mixed["exploding"]["epochs"][0]["loss"] > 10 * mixed["ok"]["epochs"][0]["loss"]
    ), "the exploding member grows for an epoch before it overflows"
    for label in ("ok", "also ok"):
        assert mixed[label]["result"]["population"] == 5 and healthy[label]["result"]["population"] == 2
        assert len(mixed[label]["epochs"]) == 6
        for got, want in zip(mixed[label]["epochs"], healthy[label]["epochs"]):
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6), "a diverging member leaked into a healthy one"
        for name, w in mixed[label]["weights"].items():
            assert torch.allclose(w, healthy[label]["weights"][name], atol=1e-5), name


PURE_SGD = """
[study]
name = "pop"
seeds = [0]

[data]
name = "npz"
path = "tiny.npz"
split = { kind = "stratified", validation = 0.25 }

[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 16, activation = "relu" },
  { type = "Dense", units = 8, activation = "relu" },
  { type = "Dense", units = 3, activation = "softmax" },
]

[optimizer]
name = "sgd"

[train]
epochs = 2
batch_size = 1

[[compare]]
label = "plain"

[[compare]]
label = "decay"
optimizer = { name = "sgd", decay = 1e-3 }

[[compare]]
label = "decay-momentum"
optimizer = { name = "sgd", decay = 1e-3, momentum = 0.5, learning_rate = 0.005 }
"""


def test_pure_sgd_populations_equal_the_lowered_step_alone(tmp_path: Path) -> None:
    """Batch size 1 in a population of three SGD variants (two sharing a velocity slot with zero
    momentum) against each trained alone, which takes the hand-lowered step. The plan steps the
    population eagerly (this short run's nominal work is far below what compiling repays;
    benchmark 4 times the compiled one)."""
    make_npz(tmp_path / "tiny.npz", n_train=80)  # 60 steps an epoch
    (tmp_path / "pop.toml").write_text(PURE_SGD)
    study = spec.load(tmp_path / "pop.toml")
    runs = {}
    for population in (3, 1):
        with Store.open(tmp_path / f"{population}.db") as store:
            run_local(study, store, population=population, cache=DataCache())
            record = store.study("pop")
            assert record is not None
            runs[population] = {
                t.hash: (t.result, [e.metrics for e in store.epochs(t.id)]) for t in store.trials(record.id)
            }
            steps = {t.plan["step"] for t in store.trials(record.id) if t.plan}  # type: ignore[index]
            assert steps == ({"population"} if population == 3 else {"lowered"})
            assert not any(t.plan["compile"] for t in store.trials(record.id) if t.plan)  # type: ignore[index]
    assert runs[3].keys() == runs[1].keys()
    for key, (result, epochs) in runs[1].items():
        other_result, other_epochs = runs[3][key]
        assert (result["population"], other_result["population"]) == (1, 3)
        assert len(epochs) == len(other_epochs) == 2
        for a, b in zip(epochs, other_epochs):
            for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
                assert a[metric] == pytest.approx(b[metric], rel=1e-4, abs=1e-5), metric


def test_a_members_numbers_do_not_depend_on_its_mates() -> None:
    """Member a trains for 3 epochs beside mates that stop early, beside mates that do not, and
    as a population of one: its epochs and weights are the same bits each time. Two threads, a
    batch large enough that torch splits the work between them."""
    from trainlab import models
    from trainlab.data.cache import Tensors
    from trainlab.engine.lowered import torch_threads
    from trainlab.engine.population import Member, fit_population
    from trainlab.spec import resolve_trial
    from trainlab.trial import TrainSettings

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 1, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
    data = Tensors(x[:384], y[:384], x[384:], y[384:], x[384:], y[384:])

    def spec(optimizer: Any, train: dict[str, Any] | None = None) -> dict[str, Any]:
        return resolve_trial(
            {
                "data": {"name": "mnist"},
                "optimizer": optimizer,
                "train": {"epochs": 3, "batch_size": 64, **(train or {})},
                "model": {
                    "layers": [
                        {"type": "Flatten"},
                        {"type": "Dense", "units": 128, "activation": "relu"},
                        {"type": "Dropout", "rate": 0.2},
                        {"type": "Dense", "units": 10, "activation": "softmax"},
                    ]
                },
            }
        )

    stops = {"early_stopping": {"monitor": "loss", "patience": 0, "min_delta": 100.0}}
    mates = {
        "alone": [],
        "stopping": [spec("sgd", stops), spec("rmsprop", stops)],
        "going on": [spec("sgd"), spec({"name": "adam", "learning_rate": 0.01})],
    }
    runs = {}
    with torch_threads(2):
        for name, others in mates.items():
            specs = [spec("adam"), *others]
            members = [
                Member(models.build(s["model"], (1, 28, 28), 7 + i), s["optimizer"], TrainSettings.of(s))
                for i, s in enumerate(specs)
            ]
            result, *rest = fit_population(members, data, "classification", seed=3)
            assert all(r.epochs == (2 if name == "stopping" else 3) for r in rest)  # stopping: a trains on alone
            runs[name] = (
                [{k: v for k, v in h.items() if k != "seconds"} for h in result.history],
                {k: v.clone() for k, v in result.weights.items()},
            )
    history, weights = runs["alone"]
    assert len(history) == 3
    for name in ("stopping", "going on"):
        assert runs[name][0] == history, name
        assert all(torch.equal(runs[name][1][k], weights[k]) for k in weights), name
