"""Trials across devices: a GPU trial going on on a CPU machine, and, where CUDA is present, the
device path end to end: data and models on the GPU, the same numbers twice, checkpoints readable
on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factories import load_study, npz_study, with_tiny_npz

from trainlab.data.cache import DataCache
from trainlab.engine import checkpoint
from trainlab.executors import plan_unplanned, register, run_local
from trainlab.store import WEIGHTS, Store


def test_a_trial_planned_on_a_gpu_goes_on_on_this_machines_cpu(tmp_path: Path) -> None:
    """A plan recorded on a GPU machine (its trials then resumed here, without CUDA): the trials
    train on the CPU, with a warning, and record where they trained."""
    with_tiny_npz(tmp_path)
    study = load_study(tmp_path, npz_study(seeds=[0], epochs=1), name="moved")
    cache = DataCache()
    with Store.open(tmp_path / "s.db") as store:
        study_id, hashes = register(study, store)
        plan_unplanned(store, study_id, hashes, cache, device="cuda:3", device_memory=2**34)
        with pytest.warns(UserWarning, match="a trial planned on cuda:3 goes on on cpu"):
            run_local(study, store, cache=cache, device="cpu")
        (trial,) = store.trials(study_id)
        assert trial.status == "done" and trial.plan is not None and trial.plan["device"] == "cuda:3"
        assert trial.result is not None and trial.result["device"] == "cpu"


def gpu_run(folder: Path, name: str, precision: str = "float32") -> list[tuple[str, bytes, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    with_tiny_npz(folder)
    tables = npz_study(
        seeds=[0, 1],
        epochs=2,
        train={"precision": precision},
        compare=[
            {"label": "sgd", "optimizer": {"name": "sgd", "learning_rate": 0.05}},
            {"label": "adam", "optimizer": "adam"},
        ],
    )
    study = load_study(folder, tables, name=name)
    with Store.open(folder / f"{name}.db") as store:
        run_local(study, store, cache=DataCache(), device="cuda")
        record = store.study(study.name)
        assert record is not None
        out = []
        for t in store.trials(record.id):
            weights = store.artifact(t.id, WEIGHTS)
            assert t.status == "done" and weights is not None and t.result is not None and t.plan is not None
            assert t.plan["device"] == "cuda" and t.result["device"].startswith("cuda")
            best = {k: v for k, v in t.result["best"].items() if k != "seconds"}  # the clock's, not the numbers'
            out.append((t.hash, weights.data, json.dumps(best, sort_keys=True)))
        return out


@pytest.mark.gpu
def test_a_gpu_study_gives_the_same_numbers_twice(tmp_path: Path) -> None:
    first, second = gpu_run(tmp_path / "a", "g"), gpu_run(tmp_path / "b", "g")
    assert [best for _, _, best in first] == [best for _, _, best in second]  # in study order
    for (_, a, _), (_, b, _) in zip(first, second):
        groups_a, _ = checkpoint.unpack(a)
        groups_b, _ = checkpoint.unpack(b)
        for key, value in groups_a["model"].items():
            assert value.device == torch.device("cpu")  # saved from a CPU copy: loads anywhere
            assert torch.equal(value, groups_b["model"][key])


@pytest.mark.gpu
def test_bfloat16_on_the_gpu_trains_to_finite_numbers(tmp_path: Path) -> None:
    for _, _, best in gpu_run(tmp_path, "h", "bfloat16"):
        assert all(isinstance(v, float) for v in json.loads(best).values())


@pytest.mark.gpu
def test_the_data_and_the_models_live_on_the_gpu(tmp_path: Path) -> None:
    from trainlab import models
    from trainlab.engine import steps
    from trainlab.trial import TrialSpec

    with_tiny_npz(tmp_path)
    spec = load_study(tmp_path, npz_study(seeds=[0], epochs=1), name="d").trials()[0].spec
    typed = TrialSpec.from_json(spec)
    device = torch.device("cuda", 0)
    tensors, info, _ = DataCache().get(typed.data.to_json(), device=device)
    assert {t.device for t in (tensors.x_train, tensors.y_train, tensors.x_val, tensors.x_test)} == {device}
    nets = [models.build(typed.model.to_json(), info.input_shape, s) for s in (0, 1)]
    population = steps.Population(nets, [typed] * 2, [None] * 2, tensors, info.task, 0, device=device)
    results = steps.train("population", population)
    assert {p.device for net in nets for p in net.parameters()} == {device}
    assert len(results) == 2
