"""Equal-budget tuning per variant (``tune``), end to end on tiny data: the table checked, each
variant's searches sampled, trained, resumed and reported."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from factories import STAGED_BASE, train_in_rounds
from factories import write_tiny_study_text as write

from trainlab import orchestrate, selection, spec
from trainlab.errors import SpecError
from trainlab.report import render, study_report
from trainlab.report.figures import StudyFigures
from trainlab.report.html import render_html
from trainlab.search import qmc_points
from trainlab.seeding import derive
from trainlab.store import Store

BASE = STAGED_BASE.replace('name = "staged"', 'name = "tuned"')
TUNED = (
    BASE
    + """
[[compare]]
label = "sgd"
[[compare]]
label = "momentum"
optimizer = { name = "sgd", momentum = 0.9, learning_rate = 0.05 }
[[compare]]
label = "adam"
optimizer = { name = "adam", learning_rate = 0.001 }

[tune]
trials = 4
repeats = 2
seed = 7
[tune.space]
"optimizer.learning_rate" = { log_uniform = [0.0001, 0.5] }
[tune.extra.momentum]
"optimizer.momentum" = { uniform = [0.5, 0.99] }
[tune.extra.adam]
"optimizer.beta_1" = { uniform = [0.5, 0.99] }
"optimizer.learning_rate" = { log_uniform = [0.00001, 0.1] }
"""
)


def run_rounds(study: spec.Study, db: Path, stop_after: int | None = None) -> list[tuple[str, str]]:
    """The (hash, label) of the trials :func:`train_in_rounds` recorded, sorted."""
    return sorted((t.hash, t.label) for t in train_in_rounds(study, db, stop_after))


def test_the_tune_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, TUNED))
    tune = study.stages[0].tune
    assert tune is not None and study.dynamic and study.variants == ()
    assert (tune.search.sampler, tune.search.trials, tune.repeats, tune.defaults) == ("qmc", 4, 2, True)
    assert tune.sampled() == 3
    adam = tune.search_for("adam", 0)
    # the entry's own learning-rate range replaces the common one; its extra dimension is added
    assert [(d.key, d.low, d.high) for d in adam.space] == [
        ("optimizer.beta_1", 0.5, 0.99),
        ("optimizer.learning_rate", 0.00001, 0.1),
    ]
    assert [d.key for d in tune.search_for("sgd", 0).space] == ["optimizer.learning_rate"]
    seeds = {tune.search_for(e, r).seed for e in ("sgd", "momentum", "adam") for r in (0, 1)}
    assert len(seeds) == 6 and tune.search_for("adam", 1).seed == derive(7, "tune", "adam", 1)


def test_extra_dimensions_name_a_compare_entry(tmp_path: Path) -> None:
    text = TUNED + '[tune.extra.adma]\n"optimizer.beta_2" = { uniform = [0.9, 0.999] }\n'
    with pytest.raises(SpecError, match=r"(?s)tune\.extra\.adma: .*no entry is labelled 'adma'.*did you mean 'adam'"):
        spec.load(write(tmp_path, text))


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("repeats = 2", "repeats = 0", r"tune\.repeats.*1\.\.100"),
        ("repeats = 2", "repeats = 2\ndefaults = 1", r"tune\.defaults"),
        (
            "repeats = 2",
            'repeats = 2\nsampler = "grid"',
            r"(?s)tune\.sampler: unknown sampler .grid.*allowed: qmc, random, tpe",
        ),
        ("repeats = 2", "repeats = 2\nrepeat = 3", r"(?s)tune\.repeat: unknown key.*did you mean 'repeats'"),
        ("trials = 4", "trials = 0", r"tune\.trials"),
    ],
)
def test_a_wrong_tune_key_names_its_key_path(tmp_path: Path, before: str, after: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec.load(write(tmp_path, TUNED.replace(before, after)))


def test_a_space_key_a_variant_cannot_take_is_refused_before_training(tmp_path: Path) -> None:
    """Adam has no momentum: a common dimension every variant cannot take belongs in ``extra``."""
    text = TUNED.replace(
        '"optimizer.learning_rate" = { log_uniform = [0.0001, 0.5] }\n[tune.extra.momentum]',
        '"optimizer.learning_rate" = { log_uniform = [0.0001, 0.5] }\n"optimizer.momentum" = { uniform = [0.5, 0.99] }\n'
        "[tune.extra.momentum]",
    )
    with pytest.raises(SpecError, match=r"momentum.*in variant 'adam"):
        spec.load(write(tmp_path, text))


def test_tune_beside_a_search_is_refused(tmp_path: Path) -> None:
    text = BASE + '[tune]\ntrials = 2\nspace = { "optimizer.learning_rate" = { uniform = [0.01, 0.1] } }\n'
    text += '[search]\ntrials = 2\nspace = { "optimizer.learning_rate" = { uniform = [0.01, 0.1] } }\n'
    with pytest.raises(SpecError, match=r"tune.*not both"):
        spec.load(write(tmp_path, text))


def test_each_variant_is_searched_on_its_own_sequence_and_resumes_identically(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, TUNED))
    interrupted = run_rounds(study, tmp_path / "a.db", stop_after=0)
    assert interrupted == []
    resumed_parts = run_rounds(study, tmp_path / "a.db", stop_after=1)
    assert 0 < len(resumed_parts)
    resumed = run_rounds(study, tmp_path / "a.db")
    straight = run_rounds(study, tmp_path / "b.db")
    # 3 variants x (1 as listed + 2 repeats x 3 sampled) points x 2 seeds
    assert resumed == straight and len(straight) == 3 * 7 * 2
    tune = study.stages[0].tune
    assert tune is not None
    with Store.open(tmp_path / "b.db") as store:
        plan = orchestrate.resolve(study, store)[0]
    assert [t.label for t in plan.tuned] == ["sgd", "momentum", "adam"] and plan.complete
    for t in plan.tuned:
        listed = t.searches[0][0]
        assert all(points[0] is listed for points in t.searches)  # one trial as listed, shared by the repeats
        assert listed.spec == t.variant.spec
        for repeat, points in enumerate(t.searches):
            sampled = [{k: v for k, v in p.params.items() if k.startswith("optimizer.")} for p in points[1:]]
            assert sampled == qmc_points(tune.search_for(t.entry, repeat), 0, 3)
            assert [p.params["search"] for p in points] == [0, 1, 2, 3]
            assert all(p.params["tune"] == t.label and p.params["repeat"] == repeat for p in points[1:])


def best_by_hand(store: Store, variants: list[spec.Variant], seeds: tuple[int, ...], metric: str) -> tuple[str, float]:
    """The label and value of the point with the highest mean best ``metric`` over its trials,
    from the store's epoch rows alone (ties to the lower loss, as the report breaks them)."""
    record = store.study("tuned")
    assert record is not None
    trials = {t.hash: t for t in store.trials(record.id)}
    scored = []
    for v in variants:
        bests, losses = [], []
        for h in orchestrate.variant_hashes(v, seeds):
            trial = trials[h]
            rows = [e.metrics for e in store.epochs(trial.id)]
            top = max(rows, key=lambda m: (m[metric], -m["val_loss"]))
            bests.append(top[metric])
            losses.append(top["val_loss"])
        scored.append((statistics.fmean(bests), -statistics.fmean(losses), v.label))
    value, _, label = max(scored)
    return label, value


def test_the_report_compares_each_variant_at_its_tuned_best(tmp_path: Path) -> None:
    text = TUNED.replace("seeds = [0, 1]", "seeds = [0, 1, 2]").replace("epochs = 3", "epochs = 1")
    study = spec.load(write(tmp_path, text))
    run_rounds(study, tmp_path / "t.db")
    with Store.open(tmp_path / "t.db") as store:
        plan = orchestrate.resolve(study, store)[0]
        report = study_report(store, "tuned")
        section = report["stages"][0]
        assert [v["label"] for v in section["variants"]] == ["sgd", "momentum", "adam"]
        assert report["trials"]["total"] == 3 * 7 * 3 and report["trials"]["reused"] == 0
        block = section["tune"]
        seen: set[float] = set()
        assert (block["sampler"], block["trials"], block["repeats"]) == ("qmc", 4, 2)
        for t, row, tuned in zip(plan.tuned, section["variants"], block["variants"], strict=True):
            repeat_bests = []
            for points in t.searches:
                label, value = best_by_hand(store, points, study.seeds, "val_accuracy")
                repeat_bests.append((value, label))
            # the median of two repeats' bests is the worse one (the later repeat's at a tie)
            order = sorted(range(len(repeat_bests)), key=lambda r: -repeat_bests[r][0])
            value, label = repeat_bests[order[len(order) // 2]]
            assert tuned["chosen"] == label
            assert row["val_accuracy"]["mean"] == pytest.approx(value)
            assert tuned["repeat_bests"] == pytest.approx([b[0] for b in repeat_bests])
            seen.update(b[0] for b in repeat_bests)
            assert tuned["study_spread"]["median"] == pytest.approx(statistics.median(b[0] for b in repeat_bests))
            assert (tuned["points"], tuned["finished"], tuned["trials"]) == (7, 7, 21)
            assert tuned["budget"]["points"] == 7 and tuned["budget"]["first"] == tuned["defaults"]
            chosen = next(p for points in t.searches for p in points if p.label == label)
            keys = [d.key.split(".")[1] for d in study.stages[0].tune.search_for(t.entry, 0).space]
            assert tuned["values"] == {f"optimizer.{k}": chosen.spec["optimizer"][k] for k in keys}
        assert len(seen) >= 3  # the points differ: the choices above are not decided by ties
        assert selection.choose(
            [(v["val_accuracy"]["mean"], v["val_loss"]["mean"]) for v in section["variants"]], "val_accuracy"
        ) == [v["chosen"] for v in section["variants"]].index(True)
        text = render(report, "markdown")
        assert "Tuned: each variant by its own qmc search of 4 points" in text
        assert "(study variance)" in text and "(trial variance)" in text
        assert json.loads(render(report, "json"))["stages"][0]["tune"]["variants"][0]["label"] == "sgd"
        figure = StudyFigures(store, "tuned").make("budget").figure
        assert figure is not None
        (ax,) = figure.axes  # a plain study's one tuned stage: one panel
        lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        assert lines == {
            f"{v['label']} (N={v['budget']['points']})": pytest.approx(v["budget"]["expected_best"])
            for v in block["variants"]
        }
        assert 'id="fig-budget"' in render_html(store, "tuned", trial_figures=False)
        csv_text = render(report, "csv")
        assert csv_text.splitlines()[0].endswith(
            "tuned,study_median,study_min,study_max,best_at_1,best_at_4,best_at_16"
        )
        assert "best at 1 / 4 / 16 points" in text


def test_pruning_judges_a_point_only_against_points_of_its_own_variant(tmp_path: Path) -> None:
    study = spec.load(write(tmp_path, TUNED.replace("seed = 7", 'seed = 7\nprune = "median"')))
    with Store.open(tmp_path / "p.db") as store:
        plans = orchestrate.resolve(study, store, propose_points=True)
        pruning = orchestrate.pruning_of(plans)
    assert pruning is not None
    names = [s.stage for s in pruning.searches]
    assert names == [f"/{v}/{r}" for v in ("sgd", "momentum", "adam") for r in (0, 1)]
    listed = {h for t in plans[0].tuned for h in orchestrate.variant_hashes(t.searches[0][0], study.seeds)}
    for search, (t, repeat) in zip(pruning.searches, [(t, r) for t in plans[0].tuned for r in (0, 1)], strict=True):
        own = {h for p in t.searches[repeat][1:] for h in orchestrate.variant_hashes(p, study.seeds)}
        assert {x.hash for x in search.trials} == own and not own & listed


def median_best_case(values: list[float], metric: str) -> Any:
    bests = [(spec.Variant(str(v), {}, {}, {}), v) for v in values]
    chosen = orchestrate.median_best(bests, metric)
    return None if chosen is None else float(chosen.label)


def test_the_compared_point_is_the_median_repeats_best() -> None:
    assert median_best_case([0.7, 0.9, 0.8], "val_accuracy") == 0.8
    assert median_best_case([0.7, 0.9], "val_accuracy") == 0.7  # the worse middle one
    assert median_best_case([0.3, 0.1, 0.2, 0.4], "val_loss") == 0.3  # a loss: lower is better
    assert median_best_case([], "val_accuracy") is None


def test_a_smoke_run_tunes_with_three_points_and_at_most_two_repeats(tmp_path: Path) -> None:
    text = TUNED.replace("trials = 4", "trials = 16").replace("repeats = 2", "repeats = 5")
    tune = spec.load(write(tmp_path, text), smoke=True).stages[0].tune
    assert tune is not None and (tune.search.trials, tune.search.batch, tune.repeats) == (3, 3, 2)
    assert spec.load(write(tmp_path, text)).stages[0].tune.repeats == 5  # type: ignore[union-attr]


def test_check_shows_each_variants_space_and_the_trials(tmp_path: Path) -> None:
    from trainlab.api.check import check_lines

    lines = check_lines(spec.load(write(tmp_path, TUNED)))
    assert "  3 variants x 7 points x 2 seeds = 42 trials (folds multiply it)" in lines
    assert "    momentum: optimizer.learning_rate, optimizer.momentum" in lines
    assert "    adam: optimizer.beta_1, optimizer.learning_rate" in lines
    assert any(line.startswith("  tune: each of 3 variants tuned on its own: 4 points each") for line in lines)
