"""Staged studies, stage edits, searches, k-fold splits and smoke runs, end to end on tiny data."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from factories import STAGED_BASE as BASE
from factories import STAGED_STUDY as STAGES
from factories import train_in_rounds
from factories import write_tiny_study_text as write

from trainlab import edits, orchestrate, spec
from trainlab.errors import SpecError, TrainlabError
from trainlab.executors import Silent, run_local
from trainlab.pruning import Pruning
from trainlab.report import render, study_report
from trainlab.report.figures import StudyFigures
from trainlab.report.html import render_html
from trainlab.report.tables import Options
from trainlab.search import Point, propose, qmc_points
from trainlab.store import Store


def best_by_epoch_rows(store: Store, stage: orchestrate.StagePlan) -> str:
    """The label of the stage's best variant, from the store's epoch rows alone: each trial's best
    epoch is the first with the highest validation accuracy (the monitor); the variant with the
    highest mean of those wins, ties going to the lower mean validation loss at those epochs, then
    to the earlier variant (the rule as stated in selection.py's docstring, applied here by hand)."""
    records = {t.hash: t for t in store.trials(store.study("staged").id)}  # type: ignore[union-attr]
    keys = []
    for index, variant in enumerate(stage.variants):
        accuracies, losses = [], []
        for trial_hash in orchestrate.variant_hashes(variant, stage.seeds):
            rows = [e.metrics for e in store.epochs(records[trial_hash].id)]
            best = max(range(len(rows)), key=lambda e: (rows[e]["val_accuracy"], -e))
            accuracies.append(rows[best]["val_accuracy"])
            losses.append(rows[best]["val_loss"])
        keys.append((-sum(accuracies) / len(accuracies), sum(losses) / len(losses), index))
    return stage.variants[min(keys)[2]].label


def hidden_types(layers: list[dict]) -> list[str]:
    return [layer["type"] for layer in layers]


def test_edits_apply_to_hidden_layers_only(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, BASE))
    base = study.variants[0].spec
    out = spec.resolve_trial(edits.apply(base, {"activation": "sigmoid", "batch_norm": True, "scale_lr": 5}, "edit"))
    layers = out["model"]["layers"]
    assert hidden_types(layers) == ["Flatten", "Dense", "BatchNormalization", "Dense", "BatchNormalization", "Dense"]
    assert [layers[i]["activation"]["name"] for i in (1, 3, 5)] == ["sigmoid", "sigmoid", "softmax"]
    assert out["optimizer"]["learning_rate"] == pytest.approx(0.25)
    before = spec.resolve_trial(edits.apply(base, {"batch_norm": "before_activation"}, "edit"))["model"]["layers"]
    assert hidden_types(before) == [
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dense",
    ]
    assert before[1]["activation"]["name"] == "linear" and before[3]["activation"] == {"name": "relu"}
    widths = spec.resolve_trial(edits.apply(base, {"scale_widths": 0.5}, "edit"))["model"]["layers"]
    assert [widths[1]["units"], widths[2]["units"], widths[3]["units"]] == [8, 4, 3]


def test_edit_errors_name_the_key_path(tmp_path: Path) -> None:
    bad = STAGES.replace("edit = { widths = [4, 4] }", "edit = { widths = [4] }")
    with pytest.raises(SpecError, match=r"stage\[0\].compare\[0\].edit.widths.*2 hidden"):
        spec.load(write(tmp_path, bad))
    with pytest.raises(SpecError, match=r"unknown edit 'batchnorm'") as info:
        spec.load(write(tmp_path, STAGES.replace("batch_norm = true", "batchnorm = true")))
    assert "batch_norm" in str(info.value)
    with pytest.raises(SpecError, match=r"stage\[1\].from.*earlier stage"):
        spec.load(write(tmp_path, STAGES.replace('from = "first"', 'from = "third"')))
    with pytest.raises(SpecError, match=r"inside the stages"):
        spec.load(write(tmp_path, STAGES + '\n[grid]\n"train.batch_size" = [8]\n'))


def test_later_stage_mistake_is_found_before_training(tmp_path: Path) -> None:
    bad = STAGES.replace('optimizer = "adam"', 'optimizer = "adamm"')
    with pytest.raises(SpecError, match="adamm") as info:
        spec.load(write(tmp_path, bad))
    assert "stage[2]" in str(info.value) or "third" in str(info.value)


def test_staged_study_runs_stage_by_stage_and_records_choices(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, STAGES))
    assert [v.label for v in study.variants] == ["first: narrow", "first: wide"]
    with Store.open(tmp_path / "s.db") as store:
        waiting = orchestrate.resolve(study, store)
        assert [p.state for p in waiting] == ["ready", "waiting", "waiting"]
        rounds: list[list[str]] = []

        def execute(round_study: spec.Study, pruning: Pruning | None) -> None:
            rounds.append([v.label for v in round_study.variants])
            run_local(round_study, store, population=1)

        plans = orchestrate.run(study, store, execute)
        assert [p.state for p in plans] == ["ready", "ready", "ready"]
        assert len(rounds) == 3 and rounds[0] == ["first: narrow", "first: wide"]
        first_choice, second_choice = plans[1].chosen, plans[2].chosen
        # Each stage's choice is the variant with the best recorded mean, worked out from the epoch rows.
        assert first_choice == best_by_epoch_rows(store, plans[0])
        assert second_choice == best_by_epoch_rows(store, plans[1])
        # The second stage's "as chosen" variant is the first stage's choice, so its trials are shared.
        chosen_first = next(v for v in plans[0].variants if v.label == first_choice)
        assert orchestrate.variant_hashes(chosen_first, study.seeds) == orchestrate.variant_hashes(
            plans[1].variants[0], study.seeds
        )
        edited = plans[1].variants[1].spec
        assert [layer["type"] for layer in edited["model"]["layers"]].count("BatchNormalization") == 2
        assert edited["optimizer"]["learning_rate"] == pytest.approx(0.25)
        conv = plans[2].variants[1].spec["model"]["layers"]
        assert [layer["type"] for layer in conv[:3]] == ["Conv2D", "MaxPooling2D", "Flatten"]
        # The choice is recorded with every trial of the later stage.
        trials = store.trials(store.study("staged").id)
        assert {t.params.get("from") for t in trials if t.params.get("stage") == "third"} == {second_choice}
        assert all(t.status == "done" for t in trials) and len(trials) == 2 * 2 + 1 * 2 + 2 * 2

        report = study_report(store, "staged")
        assert [s["stage"] for s in report["stages"]] == ["first", "second", "third"]
        assert report["stages"][1]["started_from"] == first_choice
        assert report["stages"][2]["started_from"] == second_choice
        assert [v["label"] for v in report["stages"][1]["variants"]] == ["second: as chosen", "second: bn sigmoid x5"]
        assert report["stages"][1]["variants"][0]["n"] == 2
        assert report["selection"]["chosen"] == best_by_epoch_rows(store, plans[2])
        text = render(report, "markdown")
        assert f"from stage first's best: {first_choice}" in text and text.count("| variant |") == 3
        csv = render(report, "csv").splitlines()
        assert csv[0].startswith("stage,variant") and len(csv) == 1 + 6


def test_a_later_stage_waits_while_another_process_trains_its_source(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, STAGES))
    with Store.open(tmp_path / "s.db") as store:
        from trainlab.executors import register

        study_id, hashes = register(study, store)
        other = store.claim_next(study_id, "other-host:1")
        assert other is not None
        waits: list[str] = []

        def execute(round_study: spec.Study, pruning: Pruning | None) -> None:
            run_local(round_study, store, population=1)

        def on_wait(message: str) -> None:
            waits.append(message)
            # The other process finishes its trial while this one waits.
            store.release(other.id, "other-host:1")

        plans = orchestrate.run(study, store, execute, poll=0.01, on_wait=on_wait)
        assert waits and "waits for stage 'first'" in waits[0]
        assert all(p.state == "ready" for p in plans)


def test_a_stage_whose_source_failed_is_blocked_with_a_reason(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, STAGES))
    with Store.open(tmp_path / "s.db") as store:
        from trainlab.executors import register

        study_id, _ = register(study, store)
        while (t := store.claim_next(study_id, "me")) is not None:
            store.finish_trial(t.id, "me", "failed", error="boom")
        with pytest.raises(TrainlabError, match="none of its trials finished"):
            orchestrate.run(study, store, lambda s, p: None)


def search_study(sampler: str, trials: int, extra: str = "") -> str:
    return (
        BASE.replace("seeds = [0, 1]", "seeds = 1")
        + f"""
[search]
sampler = "{sampler}"
trials = {trials}
seed = 3
{extra}
[search.space]
"optimizer.learning_rate" = {{ log_uniform = [0.001, 0.3] }}
"model.layers[1].units" = {{ int = [4, 32], step = 4 }}
"model.layers[2].activation" = {{ choice = ["relu", {{ name = "leaky_relu", alpha = 0.2 }}] }}
"""
    )


def test_search_points_are_seeded_and_resume_identically(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, search_study("tpe", 5, "batch = 2")))
    search = study.stages[0].search
    assert search is not None and search.batch == 2
    first = propose(search, [], 3, "maximize")
    assert first == propose(search, [], 3, "maximize")
    assert all(0.001 <= p["optimizer.learning_rate"] <= 0.3 and p["model.layers[1].units"] % 4 == 0 for p in first)
    history = [Point(p, "complete", 0.5 + i / 10) for i, p in enumerate(first)]
    assert propose(search, history, 2, "maximize") == propose(search, history, 2, "maximize")

    def run_all(db: Path, stop_after: int | None) -> list[tuple[str, str]]:
        return sorted((t.hash, t.label) for t in train_in_rounds(study, db, stop_after))

    interrupted = run_all(tmp_path / "a.db", stop_after=1)
    assert len(interrupted) == 2
    resumed = run_all(tmp_path / "a.db", stop_after=None)
    straight = run_all(tmp_path / "b.db", stop_after=None)
    assert resumed == straight and len(straight) == 5
    with Store.open(tmp_path / "b.db") as store:
        report = study_report(store, "staged")
        search = dict(report["stages"][0]["search"])
        assert search.pop("budget")["points"] == 5
        assert search == {
            "sampler": "tpe",
            "trials": 5,
            "sampled": 5,
            "prune": "none",
            "finished": 5,
            "pruned": 0,
            "diverged": 0,
            "pruned_share": 0.0,
        }
        assert len(report["variants"]) == 5 and report["variants"][0]["label"].startswith("#01 units=")


def test_a_qmc_search_resumed_between_rounds_trains_the_points_of_one_sequence(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, search_study("qmc", 5, "batch = 2")))
    search = study.stages[0].search
    assert search is not None

    def trained(db: Path, stop_after: int | None) -> list[tuple[str, str]]:
        return sorted((t.hash, t.label) for t in train_in_rounds(study, db, stop_after))

    assert len(trained(tmp_path / "a.db", stop_after=1)) == 2
    resumed = trained(tmp_path / "a.db", stop_after=None)
    assert resumed == trained(tmp_path / "b.db", stop_after=None) and len(resumed) == 5
    with Store.open(tmp_path / "a.db") as store:
        plan = orchestrate.resolve(study, store)[0]
        report = study_report(store, "staged")
    sampled = [{k: v for k, v in variant.params.items() if k not in ("search", "stage")} for variant in plan.variants]
    assert sampled == qmc_points(search, 0, 5)
    block = report["stages"][0]["search"]
    assert block["sampler"] == "qmc"
    # The budget curve at 1 and 4 points, from every subset of that many of the five scores
    # (Tang et al.'s unbiased estimator, the default); Dodge et al.'s from every ordered draw.
    scores = [v["val_accuracy"]["mean"] for v in report["stages"][0]["variants"]]
    budget = block["budget"]
    assert budget["points"] == 5 and [a["n"] for a in budget["at"]] == [1, 4] and budget["estimator"] == "unbiased"
    for at in budget["at"]:
        subsets = list(itertools.combinations(scores, at["n"]))
        assert at["expected_best"] == pytest.approx(sum(map(max, subsets)) / len(subsets))
        assert at["band"][0] <= at["expected_best"] <= at["band"][1]
    assert budget["expected_best"][-1] == max(scores)
    assert "Best at 1 / 4 points: " in render(report, "table")
    with Store.open(tmp_path / "a.db") as store:
        dodge = study_report(store, "staged", Options(budget_estimator="dodge"))["stages"][0]["search"]["budget"]
        with pytest.raises(TrainlabError, match="budget_estimator: unknown estimator 'tang'; allowed: unbiased, dodge"):
            study_report(store, "staged", Options(budget_estimator="tang"))
    assert dodge["estimator"] == "dodge"
    for at in dodge["at"]:
        draws = list(itertools.product(scores, repeat=at["n"]))
        assert at["expected_best"] == pytest.approx(sum(map(max, draws)) / len(draws))
    with Store.open(tmp_path / "a.db") as store:
        made = StudyFigures(store, "staged").make("budget")
        page = render_html(store, "staged", trial_figures=False)
    assert made.figure is not None
    (line,) = made.figure.axes[0].get_lines()
    assert list(line.get_ydata()) == pytest.approx(budget["expected_best"])
    assert 'id="fig-budget"' in page


def test_random_search_samples_its_whole_budget_in_one_round(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, search_study("random", 4)))
    with Store.open(tmp_path / "s.db") as store:
        plans = orchestrate.resolve(study, store, propose_points=True)
        assert len(plans[0].variants) == 4 and plans[0].complete
        assert orchestrate.resolve(study, store)[0].variants == []  # nothing recorded until trained


def lr_search(trials: int = 12, sampler: str = "tpe", extra: str = "", stage: str = "") -> str:
    """A search over the learning rate alone, five decades wide, with median pruning after one epoch:
    a third or more of its points stay at chance (1/3 on the tiny data)."""
    table = "stage.search" if stage else "search"
    head = f'[[stage]]\nname = "{stage}"\n' if stage else ""
    return f"""
{head}[{table}]
sampler = "{sampler}"
trials = {trials}
seed = 3
prune = "median"
prune_warmup = 1
{extra}
[{table}.space]
"optimizer.learning_rate" = {{ log_uniform = [1e-5, 1.0] }}
"""


LR_BASE = BASE.replace("seeds = [0, 1]", "seeds = 1").replace("epochs = 3", "epochs = 4")


def curves(store: Store, trials: list) -> dict[str, list[float]]:
    return {t.label: [e.metrics["val_accuracy"] for e in store.epochs(t.id)] for t in trials}


def test_a_tpe_search_prunes_its_chance_level_points_and_never_its_best(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, LR_BASE + lr_search()))
    with Store.open(tmp_path / "s.db") as store:
        orchestrate.run(study, store, lambda s, p: run_local(s, store, pruning=p))
        trials = store.trials(store.study("staged").id)
        seen = curves(store, trials)
        status = {t.label: t.status for t in trials}
        report = study_report(store, "staged")
    assert len(trials) == 12
    chance = [label for label, c in seen.items() if max(c) <= 0.36]
    pruned = [label for label in chance if status[label] == "pruned"]
    assert len(chance) >= 4 and len(pruned) >= len(chance) / 2, (chance, status)
    # Points of the first round train together as one population, with no earlier round to go by:
    # they are compared with each other.
    assert any(status[label] == "pruned" for label in sorted(seen)[:4]), status
    best = max(seen, key=lambda label: max(seen[label]))
    assert status[best] == "done" and len(seen[best]) == 4
    assert all(status[label] != "pruned" for label, c in seen.items() if max(c) >= 0.9)
    search = report["stages"][0]["search"]
    assert search["pruned"] == list(status.values()).count("pruned") and search["finished"] == 12
    assert search["pruned_share"] == pytest.approx(search["pruned"] / 12)
    assert f"{search['pruned']} of 12 finished points pruned" in render(report, "table")


# The population of eight records 8 epochs per epoch, and its first points are pruned at epoch 2.
# 24: after the last record of epoch 2 (the pruned resume from checkpoints that carry the
# decision); 21: between two members' records of epoch 2.
@pytest.mark.parametrize("kill_at", [24, 21])
def test_a_search_killed_inside_a_population_resumes_to_the_same_decisions(tmp_path: Path, kill_at: int) -> None:
    study = spec.load(write(tmp_path, LR_BASE + lr_search(8, "random")))

    class Kill(Silent):
        epochs = 0

        def epoch_finished(self, trial: object, epoch: int, logs: object) -> None:
            self.epochs += 1
            if self.epochs == kill_at:
                raise KeyboardInterrupt

    def outcome(db: Path, kill: bool) -> list[tuple[str, str, list[float]]]:
        with Store.open(db) as store:
            reporter = Kill() if kill else Silent()
            try:
                orchestrate.run(
                    study, store, lambda s, p: run_local(s, store, pruning=p, reporter=reporter, checkpoint_every=0)
                )
            except KeyboardInterrupt:
                orchestrate.run(study, store, lambda s, p: run_local(s, store, pruning=p, checkpoint_every=0))
            trials = store.trials(store.study("staged").id)
            seen = curves(store, trials)
            return sorted((t.label, t.status, seen[t.label]) for t in trials)

    straight = outcome(tmp_path / "a.db", kill=False)
    assert [len(epochs) for _, status, epochs in straight if status == "pruned"] == [3, 3, 3, 3]
    assert outcome(tmp_path / "b.db", kill=True) == straight


def test_a_pruned_point_is_compared_only_with_points_of_its_own_search(tmp_path: Path) -> None:
    slow = lr_search(4, "random", stage="slow").replace("[1e-5, 1.0]", "[1e-5, 1e-4]")
    fast = lr_search(4, "random", stage="fast").replace("[1e-5, 1.0]", "[0.02, 0.05]")
    study = spec.load(write(tmp_path, LR_BASE + slow + fast))
    captured: list[Pruning] = []

    def execute(round_study: spec.Study, pruning: Pruning | None) -> None:
        assert pruning is not None
        captured.append(pruning)
        run_local(round_study, store, pruning=pruning)

    with Store.open(tmp_path / "s.db") as store:
        orchestrate.run(study, store, execute)
        study_id = store.study("staged").id  # type: ignore[union-attr]
        trials = store.trials(study_id)
        stage_of = {t.hash: t.params["stage"] for t in trials}
        status = {t.hash: t.status for t in trials}
        seen = {t.hash: [e.metrics["val_accuracy"] for e in store.epochs(t.id)] for t in trials}
        populations = {(t.plan or {}).get("population") for t in trials}
        assert len(populations) == 1, "both searches train in one population"
        pruner = captured[0].for_population(store, study_id, [t.hash for t in trials])
        assert pruner is not None
        for h in stage_of:
            assert pruner.peers(h) and {stage_of[p] for p in pruner.peers(h)} == {stage_of[h]}
    slow_hashes = [h for h in stage_of if stage_of[h] == "slow"]
    fast_scores = [max(seen[h][:2]) for h in stage_of if stage_of[h] == "fast"]
    # Judged beside the fast search, every slow point would be behind the median at epoch 1 ...
    from trainlab.pruning import hopeless

    for h in slow_hashes:
        others = [max(seen[o][:2]) for o in slow_hashes if o != h]
        assert hopeless("median", max(seen[h][:2]), others + fast_scores, maximize=True)
    # ... judged within its own search, the slow search keeps its points that are not behind their own median.
    assert any(status[h] == "done" for h in slow_hashes), {h: (status[h], seen[h]) for h in slow_hashes}


def test_pruned_trials_are_recorded_with_their_epochs(tmp_path: Path) -> None:
    # One trial at a time: a trial's peers are the points of the earlier rounds (of 4).
    text = search_study("random", 12, 'batch = 4\nprune = "median"\nprune_warmup = 1').replace(
        "epochs = 3", "epochs = 4"
    )
    study = spec.load(write(tmp_path, text))
    with Store.open(tmp_path / "s.db") as store:
        orchestrate.run(study, store, lambda s, p: run_local(s, store, population=1, pruning=p))
        trials = store.trials(store.study("staged").id)
        statuses = [t.status for t in trials]
        assert len(trials) == 12 and "pruned" in statuses, statuses
        for t in trials:
            epochs = store.epochs(t.id)
            if t.status == "pruned":
                assert 2 <= len(epochs) < 4 and t.result["epochs"] == len(epochs)
                assert "pruned" in t.result["stop_reason"]
        report = study_report(store, "staged")
        assert sum(v["status"].get("pruned", 0) for v in report["variants"]) == statuses.count("pruned")


KFOLD = (
    BASE.replace('split = { kind = "stratified", validation = 0.25 }', 'split = { kind = "kfold", folds = 3 }').replace(
        "seeds = [0, 1]", "seeds = 1"
    )
    + """
[[compare]]
label = "sgd"
[[compare]]
label = "adam"
optimizer = "adam"
"""
)


def test_kfold_trains_each_variant_once_per_fold_and_reports_their_spread(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, KFOLD))
    trials = study.trials()
    assert len(trials) == 6 and [t.spec["data"]["split"]["fold"] for t in trials[:3]] == [0, 1, 2]
    from trainlab import data

    folds = [data.prepare(t.spec["data"]) for t in trials[:3]]
    sizes = [len(f.x_val) for f in folds]
    assert sum(sizes) == 240 and max(sizes) - min(sizes) <= 1
    seen = {f.split["val_index_sha256"] for f in folds}
    assert len(seen) == 3
    with Store.open(tmp_path / "s.db") as store:
        run_local(study, store, population=1)
        report = study_report(store, "staged")
        sgd = report["variants"][0]
        assert sgd["n"] == 3 and sgd["val_accuracy"]["std"] is not None and len(sgd["val_accuracy"]["values"]) == 3


def test_kfold_fold_out_of_range_is_refused(tmp_path: Path) -> None:
    bad = KFOLD.replace("folds = 3 }", "folds = 3, fold = 3 }")
    with pytest.raises(SpecError, match=r"data.split.fold.*folds are 0..2"):
        spec.load(write(tmp_path, bad))


def test_smoke_run_shrinks_every_variant_and_keeps_its_own_name(tmp_path: Path) -> None:
    path = write(tmp_path, STAGES.replace("epochs = 3", "epochs = 50"))
    study = spec.load(path, smoke=True)
    assert study.name == "staged-smoke" and study.seeds == (0,)
    v = study.variants[0].spec
    assert v["train"]["epochs"] == 2 and v["data"]["train_limit"] == 1024 and v["data"]["val_limit"] == 512
    again = spec.from_dict(study.raw, default_name="x")
    assert again.name == "staged-smoke" and [x.spec for x in again.variants] == [x.spec for x in study.variants]
    full = spec.load(path)
    assert full.variants[0].spec["train"]["epochs"] == 50 and full.variants[0].spec["data"]["val_limit"] is None
    # Without a limit the key is stored and hashed as before it existed.
    assert "val_limit" not in json.loads(full.trials()[0].spec_json())["data"]


def test_hidden_and_dropout_edits_rebuild_the_dense_stack(tmp_path: Path) -> None:
    text = (
        BASE.replace(
            '{ type = "Dense", units = 16, activation = "relu" },',
            '{ type = "Dense", units = 16, activation = "relu" },\n  { type = "Dropout", rate = 0.2 },',
        )
        + """
[[compare]]
label = "384-256-128"
edit = { hidden = [384, 256, 128] }
[[compare]]
label = "256"
edit = { hidden = [256] }
[grid]
"edit.dropout" = [0.25, 0.3]
"""
    )
    study = spec.load(write(tmp_path, text))
    assert [v.label for v in study.variants] == [
        "384-256-128 dropout=0.25",
        "384-256-128 dropout=0.3",
        "256 dropout=0.25",
        "256 dropout=0.3",
    ]
    layers = study.variants[1].spec["model"]["layers"]
    assert [(x["type"], x.get("units"), x.get("rate")) for x in layers] == [
        ("Flatten", None, None),
        ("Dense", 384, None),
        ("Dropout", None, 0.3),
        ("Dense", 256, None),
        ("Dropout", None, 0.3),
        ("Dense", 128, None),
        ("Dropout", None, 0.3),
        ("Dense", 3, None),
    ]
    assert [x["type"] for x in study.variants[2].spec["model"]["layers"]] == ["Flatten", "Dense", "Dropout", "Dense"]
    bare = spec.resolve_trial(edits.apply(study.variants[0].spec, {"hidden": []}, "edit"))["model"]["layers"]
    assert [(x["type"], x.get("units")) for x in bare] == [("Flatten", None), ("Dense", 3)]
    with pytest.raises(SpecError, match="no Dropout layer"):
        edits.apply(
            spec.resolve_trial(edits.apply(study.variants[0].spec, {"hidden": []}, "edit")), {"dropout": 0.2}, "edit"
        )
    with pytest.raises(SpecError, match="unknown edit 'dropuot'"):
        spec.load(write(tmp_path, text.replace("edit.dropout", "edit.dropuot")))


def test_a_staged_study_resumes_across_stages_with_the_same_results(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, STAGES))

    def run_all(db: Path, stop_after: int | None) -> dict[str, tuple[str, dict]]:
        return {
            t.hash: (t.status, {k: v for k, v in (t.result or {}).get("best", {}).items() if k != "seconds"})
            for t in train_in_rounds(study, db, stop_after)
        }

    assert len(run_all(tmp_path / "a.db", stop_after=1)) == 4
    assert len(run_all(tmp_path / "a.db", stop_after=1)) == 6  # the next stage, then stopped again
    assert run_all(tmp_path / "a.db", stop_after=None) == run_all(tmp_path / "b.db", stop_after=None)
