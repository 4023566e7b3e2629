"""Models from a user's factory (``[model] factory = "mypkg.models:build"``): resolved, checked,
identified by reference, params and source SHA-256, trained in a population or alone, planned
with the reason when alone, summarised, exported and predicted.

The factories are those of tests/fixtures/byo, copied into each test's folder, so that a test may
edit one without touching the others."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import load_study
from helpers import FIXTURES, make_npz

from trainlab import models, planner
from trainlab.cli import EXIT_USER_ERROR, main
from trainlab.data.cache import DataCache
from trainlab.errors import SpecError
from trainlab.executors import run_local
from trainlab.export import evaluate_test, export_trial, load_model
from trainlab.report.summary import study_models
from trainlab.store import Store
from trainlab.trial import TrialSpec, trial_hash

BYO = FIXTURES / "byo"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder: the fixture package and files beside a small npz of 8x8 images, 3 classes."""
    for item in BYO.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    make_npz(tmp_path / "tiny.npz", n_train=160, n_test=40)
    return tmp_path


def tables(factory: str = "mypkg.models:build", params: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"factory": factory}
    if params is not None:
        model["params"] = params
    return {
        "study": {"name": "byo", "seeds": [0]},
        "data": {"name": "npz", "path": "tiny.npz", "split": {"kind": "first", "validation": 40}},
        "model": model,
        "train": {"epochs": 2, "batch_size": 16},
        "compare": [{"label": "sgd"}, {"label": "adam", "optimizer": "adam"}],
        **more,
    }


def test_a_factory_model_resolves_to_its_reference_params_source_and_output(folder: Path) -> None:
    study = load_study(folder, tables(params={"width": 8}))
    model = study.variants[0].spec["model"]
    import hashlib

    source = hashlib.sha256((folder / "mypkg" / "models.py").read_bytes()).hexdigest()
    assert model == {
        "factory": "mypkg.models:build",
        "params": {"width": 8},
        "source_sha256": source,
        "outputs": 3,
        "task": "classification",
        "root": str(folder.resolve()),
    }
    # A resolved model resolves to itself (a later stage's base, an export's model.json).
    assert models.resolve(model, (1, 8, 8)) == model


def test_the_factory_gets_the_input_shape_the_outputs_and_the_params(folder: Path) -> None:
    study = load_study(folder, tables(params={"width": 5}))
    net = models.build(study.variants[0].spec["model"], (1, 8, 8), seed=0)
    # Residual(64 inputs, 3 outputs, width 5): by hand, project 64*5+5, block 5*5+5, head 5*3+3.
    assert [(name, p.numel()) for name, p in net.named_parameters()] == [
        ("body.0.project.weight", 320),
        ("body.0.project.bias", 5),
        ("body.0.block.1.weight", 25),
        ("body.0.block.1.bias", 5),
        ("body.0.head.weight", 15),
        ("body.0.head.bias", 3),
    ]
    rows = models.summary(study.variants[0].spec["model"], (1, 8, 8))
    assert [(r.name, r.type, r.output_shape, r.params) for r in rows] == [
        ("flatten", "Flatten", (64,), 0),
        ("project", "Linear", (5,), 325),
        ("block", "Sequential", (5,), 30),
        ("head", "Linear", (3,), 18),
    ]


def test_the_seed_alone_sets_the_initial_weights_and_leaves_torch_s_generator_alone(folder: Path) -> None:
    model = load_study(folder, tables()).variants[0].spec["model"]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = (models.build(model, (1, 8, 8), seed=s).state_dict() for s in (3, 3, 4))
    assert torch.rand(1) == before
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["body.0.head.weight"], c["body.0.head.weight"])


def test_editing_the_factory_makes_new_trials_and_moving_the_folder_does_not(
    folder: Path, tmp_path_factory: Any
) -> None:
    before = load_study(folder, tables()).trials()
    moved = tmp_path_factory.mktemp("moved")
    for item in folder.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, moved / item.name)
    # The data path is part of the identity (as for every npz); point the moved study at the same file.
    elsewhere = tables()
    elsewhere["data"]["path"] = str(folder / "tiny.npz")
    assert [t.hash for t in load_study(moved, elsewhere).trials()] == [t.hash for t in before]
    source = folder / "mypkg" / "models.py"
    source.write_text(source.read_text() + "\n# an edit that changes nothing but the file\n")
    after = load_study(folder, tables()).trials()
    assert {t.hash for t in after}.isdisjoint(t.hash for t in before)
    # The identity is reference, params and source hash (not the folder): hashing by hand agrees.
    spec = copy.deepcopy(after[0].spec)
    spec["model"]["root"] = "/somewhere/else"
    assert trial_hash(spec, after[0].seed) == after[0].hash


def test_a_grid_may_give_another_factory(folder: Path) -> None:
    study = load_study(folder, tables(grid={"model.factory": ["mypkg.models:build", "mypkg.models:linear"]}))
    assert [v.spec["model"]["factory"] for v in study.variants][:2] == ["mypkg.models:build", "mypkg.models:linear"]


def test_a_grid_varies_the_params_by_key_path(folder: Path) -> None:
    study = load_study(folder, tables(params={"width": 8}, grid={"model.params.width": [4, 12]}))
    widths = [(v.label, v.spec["model"]["params"]["width"]) for v in study.variants]
    assert widths == [("sgd width=4", 4), ("sgd width=12", 12), ("adam width=4", 4), ("adam width=12", 12)]


@pytest.mark.parametrize(
    ("factory", "words"),
    [
        ("nope.models:build", "no module named 'nope'"),
        ("broken:build", "broken:build does not import: ImportError: this module is broken on purpose"),
        ("mypkg.models:absent", "mypkg.models has no attribute 'absent'"),
        ("mypkg.models:raises", "mypkg.models:raises raised ValueError: no model for you"),
        ("mypkg.models:not_a_module", "returned a dict; expected a torch.nn.Module"),
        ("mypkg.models:wrong_outputs", "output for a batch of 2 is shape (2, 4); expected a tensor of shape (2, 3)"),
        # 64 x 10^9 + 10^9 weights and biases into the hidden layer, 3 x 10^9 + 3 out: counted on the meta device
        ("mypkg.models:huge", "builds a model of 68,000,000,003 parameters; trainlab builds at most"),
        ("os.path;rm:join", "expected a factory reference like"),
        ("mypkg.models", "expected a factory reference like"),
        ("absent.py:build", "absent.py:build: no such file"),
    ],
)
def test_a_bad_factory_is_one_line_naming_the_key_and_the_factory(folder: Path, factory: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        load_study(folder, tables(factory=factory))
    message = str(info.value)
    assert info.value.path.endswith("model.factory") and words in message, message
    assert "\n" not in message and "Traceback" not in message


def test_the_command_refuses_a_bad_factory_before_the_store_exists(folder: Path, capsys: Any) -> None:
    from factories import write_study

    study = write_study(folder / "bad.toml", tables(factory="mypkg.models:wrong_outputs"))
    code = main(["run", str(study), "--store", str(folder / "bad.db")])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not (folder / "bad.db").exists()
    assert "model.factory: mypkg.models:wrong_outputs: the module's output" in err and "Traceback" not in err


def test_edits_that_change_layers_are_refused_for_a_factory_model(folder: Path) -> None:
    bad = tables(compare=[{"label": "bn", "edit": {"batch_norm": True}}])
    with pytest.raises(SpecError, match=r"batch_norm edits layers; a factory model \(mypkg.models:build\) has none"):
        load_study(folder, bad)
    fine = load_study(folder, tables(compare=[{"label": "fast", "edit": {"scale_lr": 10}}]))
    assert fine.variants[0].spec["optimizer"]["learning_rate"] == pytest.approx(0.1)


def test_a_model_cannot_be_layers_and_a_factory(folder: Path) -> None:
    both = tables()
    both["model"]["layers"] = [{"type": "Flatten"}, {"type": "Dense", "units": 3}]
    with pytest.raises(SpecError, match="either a list of layers or a factory"):
        load_study(folder, both)


def _planned(study: Any) -> dict[str, planner.Plan]:
    trials = [planner.Planned(t.hash, t.seed, TrialSpec.from_json(t.spec)) for t in study.trials()]
    return planner.plan_trials(trials, input_shape=lambda s: (1, 8, 8), train_size=lambda s: 120)


def test_a_module_torch_func_can_run_trains_in_a_population(folder: Path) -> None:
    plans = _planned(load_study(folder, tables()))
    assert [(p.step, p.members, p.reason) for p in plans.values()] == [("population", 2, None)] * 2


def test_a_module_vmap_cannot_run_trains_alone_and_the_plan_says_why(folder: Path) -> None:
    plans = list(_planned(load_study(folder, tables(factory="mypkg.models:item_forward"))).values())
    assert [(p.step, p.members) for p in plans] == [("autograd", 1)] * 2
    assert plans[0].reason is not None and plans[0].reason.startswith(
        "mypkg.models:item_forward does not run under torch.func.vmap (RuntimeError: vmap:"
    )
    assert "alone because mypkg.models:item_forward" in plans[0].describe()
    assert planner.Plan.from_json(plans[0].to_json()) == plans[0]


def _run(folder: Path, store_name: str, study_tables: dict[str, Any], **options: Any) -> Store:
    study = load_study(folder, study_tables, name="byo")
    store = Store.open(folder / store_name)
    run_local(study, store, cache=DataCache(), **options)
    return store


def _results(store: Store) -> dict[str, list[dict[str, float]]]:
    out = {}
    for trial in store.trials(store.study("byo").id):  # type: ignore[union-attr]
        assert trial.status == "done", (trial.label, trial.error)
        out[trial.label] = [{k: v for k, v in e.metrics.items() if k != "seconds"} for e in store.epochs(trial.id)]
    return out


def test_a_population_trains_each_member_as_it_trains_alone(folder: Path) -> None:
    together = _results(_run(folder, "together.db", tables()))
    alone = _results(_run(folder, "alone.db", tables(), population=1))
    assert together.keys() == alone.keys() == {"sgd", "adam"}
    for label, epochs in together.items():
        assert len(epochs) == 2
        for a, b in zip(epochs, alone[label]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_reports_exports_and_predicts_a_factory_model(folder: Path) -> None:
    store = _run(folder, "runs.db", tables(params={"width": 6}))
    [summary] = study_models(store, "byo")
    assert summary.labels == ["sgd", "adam"] and summary.total == 64 * 6 + 6 + 6 * 6 + 6 + 6 * 3 + 3
    exported = export_trial(store, "byo", None, folder / "model")
    assert exported.meta["model"]["factory"] == "mypkg.models:build"
    assert exported.meta["model"]["params"] == {"width": 6}
    assert (folder / "model" / "model.safetensors").is_file()
    loaded = load_model(folder / "model")
    # The exported model scores, bit for bit, the test metrics recorded for its trial.
    assert evaluate_test(loaded) == exported.meta["recorded"]["test"]
    probabilities = loaded.net.predict(torch.zeros((2, 1, 8, 8)))
    assert probabilities.shape == (2, 3) and torch.allclose(probabilities.sum(1), torch.ones(2))


def test_predict_refuses_a_factory_edited_since_the_export(folder: Path) -> None:
    store = _run(folder, "runs.db", tables())
    export_trial(store, "byo", None, folder / "model")
    source = folder / "mypkg" / "models.py"
    source.write_text(source.read_text() + "\n# edited\n")
    with pytest.raises(Exception, match="has changed since this model was resolved"):
        load_model(folder / "model")


def test_a_factory_in_a_file_beside_the_study(folder: Path) -> None:
    study = load_study(folder, tables(factory="mypkg/models.py:linear"))
    model = study.variants[0].spec["model"]
    assert model["factory"] == "mypkg/models.py:linear"
    net = models.build(model, (1, 8, 8), seed=0)
    assert sum(p.numel() for p in net.parameters()) == 64 * 3 + 3


def test_a_factory_edited_after_the_study_was_read_trains_nothing_with_the_new_code(folder: Path) -> None:
    study = load_study(folder, tables(), name="byo")
    source = folder / "mypkg" / "models.py"
    source.write_text(source.read_text() + "\n# edited while the study waits to run\n")
    with Store.open(folder / "runs.db") as store, pytest.raises(SpecError, match="has changed since this model"):
        run_local(study, store, cache=DataCache())
