"""Statistics over seeds, checked against values computed by hand, and the report rows built
on them: confidence intervals, Welch's test against the best variant, the one-seed case,
time-to-target and the rule that test metrics are shown only for the variant chosen on
validation. The store here is filled directly (no training), so every number is known."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from trainlab.errors import TrainlabError
from trainlab.report import render, stats, study_report
from trainlab.report.tables import Options, vs_best_text
from trainlab.store import NewTrial, Store

T_975_2 = 4.302653  # Student t quantile t_{0.975, 2}, from a printed table


def p_two_sided_df2(t: float) -> float:
    """Closed form for 2 degrees of freedom: P(|T| > |t|) = 1 - |t| / sqrt(2 + t^2)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def p_two_sided_df4(t: float) -> float:
    """Closed form for 4 degrees of freedom: with s = |t| / sqrt(t^2 + 4), P(|T| > |t|) = 1 - s (3 - s^2) / 2."""
    s = abs(t) / math.sqrt(t * t + 4)
    return 1 - s * (3 - s * s) / 2


# --- summaries ---------------------------------------------------------------------------------


def test_summary_of_three_values_by_hand() -> None:
    s = stats.summarize([0.90, 0.92, 0.94])
    # mean 0.92; deviations -0.02, 0, 0.02 -> s^2 = 0.0008 / 2 -> s = 0.02
    half = T_975_2 * 0.02 / math.sqrt(3)  # = 0.0496827
    assert s.n == 3
    assert s.mean == pytest.approx(0.92, abs=1e-12)
    assert s.std == pytest.approx(0.02, abs=1e-12)
    assert s.ci_low == pytest.approx(0.92 - half, abs=1e-6)
    assert s.ci_high == pytest.approx(0.92 + half, abs=1e-6)
    assert s.half_width == pytest.approx(0.0496827, abs=1e-6)


def test_summary_of_one_value_has_no_spread_and_no_interval() -> None:
    s = stats.summarize([0.9])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high, s.half_width) == (1, 0.9, None, None, None, None)
    assert stats.summarize([]).mean is None


def test_summary_ignores_missing_and_non_finite_values() -> None:
    s = stats.summarize([1.0, None, float("nan"), 3.0, float("inf")])
    assert (s.n, s.mean) == (2, 2.0)
    assert s.std == pytest.approx(math.sqrt(2))


# --- Welch's t-test ----------------------------------------------------------------------------


def test_welch_equal_sizes_two_each_by_hand() -> None:
    # means 2 and 5, variances 2 and 2: se = sqrt(2/2 + 2/2) = sqrt 2, t = -3 / sqrt 2;
    # Welch-Satterthwaite df = (1 + 1)^2 / (1/1 + 1/1) = 2
    c = stats.welch([1.0, 3.0], [4.0, 6.0])
    t = -3 / math.sqrt(2)
    assert c.t == pytest.approx(t, abs=1e-12)
    assert c.df == pytest.approx(2.0, abs=1e-12)
    assert c.p == pytest.approx(p_two_sided_df2(t), abs=1e-9)
    assert c.p == pytest.approx(0.1679497, abs=1e-7)
    assert c.distinguishable is False and "not distinguishable" in c.note


def test_welch_distinguishable_by_hand() -> None:
    # means 0.92 and 0.82, both variances 0.0004: t = 0.1 / sqrt(0.0004/3 * 2) = 6.1237, df = 4
    c = stats.welch([0.90, 0.92, 0.94], [0.80, 0.82, 0.84])
    t = 0.1 / math.sqrt(0.0004 * 2 / 3)
    assert c.t == pytest.approx(t, rel=1e-9)
    assert c.df == pytest.approx(4.0, rel=1e-9)
    assert c.p == pytest.approx(p_two_sided_df4(t), abs=1e-9)
    assert c.p == pytest.approx(0.0036022, abs=1e-7)
    assert c.distinguishable is True


def test_welch_unequal_sizes_and_variances_df_by_hand() -> None:
    # a: mean 0.82, var 0.0004, n 3; b: mean 0.76, var 0.008/3, n 4
    # se^2 = 0.0004/3 + 0.0026667/4 = 0.0008; t = 0.06 / sqrt(0.0008) = 2.1213
    # df = 0.0008^2 / ((0.0004/3)^2 / 2 + (0.0026667/4)^2 / 3) = 4.0755
    c = stats.welch([0.80, 0.82, 0.84], [0.70, 0.74, 0.78, 0.82])
    va, vb = 0.0004 / 3, (0.008 / 3) / 4
    assert c.t == pytest.approx(0.06 / math.sqrt(va + vb), rel=1e-9)
    assert c.df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 3), rel=1e-9)
    assert c.df == pytest.approx(4.0755, abs=1e-4)
    # df is barely above 4, so p is barely below the closed-form p at df 4 (0.10119)
    assert p_two_sided_df4(c.t) - 0.002 < c.p < p_two_sided_df4(c.t)


def test_welch_one_seed_says_so() -> None:
    c = stats.welch([0.9], [0.8, 0.82])
    assert (c.t, c.p, c.distinguishable) == (None, None, None)
    assert c.note.startswith("1 seed") and "this variant" in c.note
    assert stats.welch([0.8, 0.82], [0.9]).note.startswith("1 seed (the best)")


def test_welch_without_spread() -> None:
    same = stats.welch([1.0, 1.0], [1.0, 1.0])
    assert (same.p, same.distinguishable, same.note) == (None, False, "identical values")
    apart = stats.welch([0.9, 0.9], [1.0, 1.0])
    assert apart.p is None and apart.distinguishable is None and "no spread" in apart.note


# --- time to target ----------------------------------------------------------------------------


def test_first_reaching_counts_epochs_from_one_and_sums_seconds() -> None:
    history = [
        {"val_accuracy": a, "val_loss": l, "seconds": s}
        for a, l, s in [(0.5, 1.0, 1.0), (float("nan"), 0.7, 2.0), (0.95, 0.4, 3.0), (0.97, 0.3, 4.0)]
    ]
    assert stats.first_reaching(history, "val_accuracy", 0.9, "max") == stats.Reached(3, 6.0)
    assert stats.first_reaching(history, "val_loss", 0.7, "min") == stats.Reached(2, 3.0)
    assert stats.first_reaching(history, "val_accuracy", 0.99, "max") == stats.Reached(None, None)


# --- the report built on a store filled by hand ------------------------------------------------

TRIAL_SPEC = {"task": "classification", "train": {"monitor": "val_accuracy"}}
VALUES = {  # label -> [(seed, val_accuracy, val_loss, test_accuracy, val_accuracy per epoch)]
    # a and b ran different seeds, so they are compared unpaired (Welch); the paired test has its own store below.
    "a": [(0, 0.90, 0.30, 0.89, [0.5, 0.90]), (1, 0.92, 0.28, 0.91, [0.6, 0.92]), (2, 0.94, 0.25, 0.93, [0.91, 0.94])],
    "b": [(3, 0.80, 0.50, 0.79, [0.7, 0.80]), (4, 0.82, 0.45, 0.81, [0.7, 0.82]), (5, 0.84, 0.40, 0.83, [0.75, 0.84])],
    "solo": [(0, 0.85, 0.40, 0.84, [0.85, 0.85])],
}


def _filled_store(path: Path, values: dict[str, list] = VALUES) -> Store:
    store = Store.open(path)
    study_id = store.ensure_study("hand", json.dumps({"study": {"name": "hand"}}), "h", None)
    spec_json = json.dumps(TRIAL_SPEC)
    store.add_trials(
        study_id,
        [NewTrial(f"{label}{seed}", label, {}, seed, spec_json) for label, rows in values.items() for seed, *_ in rows],
    )
    ids = {t.hash: t.id for t in store.trials(study_id)}
    for label, rows in values.items():
        for seed, val, loss, test, curve in rows:
            trial_id = ids[f"{label}{seed}"]
            assert store.claim(trial_id, "me")
            for epoch, acc in enumerate(curve):
                store.record_epoch(trial_id, "me", epoch, {"val_accuracy": acc, "seconds": 1.5})
            result = {
                "best_epoch": 1,
                "best": {"val_accuracy": val, "val_loss": loss},
                "test": {"accuracy": test, "loss": 0.0},
                "epochs": 2,
                "seconds_per_epoch": 1.5,
                "stop_reason": "ran all 2 epochs",
            }
            store.finish_trial(trial_id, "me", "done", result=result)
    return store


@pytest.fixture
def hand_store(tmp_path: Path) -> Store:
    store = _filled_store(tmp_path / "hand.db")
    yield store
    store.close()


def test_report_statistics_match_hand_values(hand_store: Store) -> None:
    report = study_report(hand_store, "hand", Options(target=0.9))
    by = {v["label"]: v for v in report["variants"]}
    assert report["selection"]["chosen"] == "a"
    assert report["selection"]["chosen_trial"] == "a2"
    a = by["a"]
    half = T_975_2 * 0.02 / math.sqrt(3)
    assert a["val_accuracy"]["ci95"] == pytest.approx([0.92 - half, 0.92 + half], abs=1e-6)
    assert a["chosen"] is True and a["vs_best"]["note"] == "best"
    assert a["seconds"]["mean"] == pytest.approx(3.0)

    b = by["b"]["vs_best"]
    t = 0.1 / math.sqrt(0.0004 * 2 / 3)
    assert b["best"] == "a" and b["t"] == pytest.approx(-t) and b["df"] == pytest.approx(4.0)
    assert b["p"] == pytest.approx(p_two_sided_df4(t), abs=1e-9) and b["distinguishable"] is True

    solo = by["solo"]
    assert solo["n"] == 1 and solo["val_accuracy"]["std"] is None and solo["val_accuracy"]["ci95"] is None
    assert solo["vs_best"]["p"] is None and solo["vs_best"]["note"].startswith("1 seed")

    # time to 0.9: a reaches it at epochs 2, 2, 1 (1.5 s each); b and solo never do
    ttt = a["time_to_target"]
    assert ttt["reached"] == 3 and ttt["fraction"] == 1.0
    assert ttt["epochs"]["mean"] == pytest.approx(5 / 3) and ttt["seconds"]["mean"] == pytest.approx(2.5)
    assert by["b"]["time_to_target"]["reached"] == 0 and by["b"]["time_to_target"]["epochs"]["mean"] is None
    assert [r["epochs_to_target"] for r in a["trials"]] == [2, 2, 1]
    assert report["target"] == {"metric": "val_accuracy", "threshold": 0.9, "mode": "max"}


def test_tables_mark_one_seed_best_and_distinguishable(hand_store: Store) -> None:
    report = study_report(hand_store, "hand")
    text = render(report, "markdown")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| best |" in rows["a"]
    assert "worse (p=0.004)" in rows["b"]
    assert rows["solo"].count("1 seed") == 2  # the CI column and the vs-best column
    assert "1 seed: a single run has no spread" in text
    table = render(report, "table")
    assert "1 seed" in table and "Welch" in table


def test_test_metric_only_for_the_chosen_variant_unless_asked(hand_store: Store) -> None:
    default = study_report(hand_store, "hand")
    md = render(default, "markdown")
    header = md.splitlines()[0].split(" | ")
    col = header.index("test accuracy")
    cells = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[col]
        for line in md.splitlines()[2:]
        if line.startswith("| ")
    }
    assert cells == {"a": "0.9100 ± 0.0200", "b": "·", "solo": "·"}
    assert "only for the variant chosen on validation (a)" in md

    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(render(default, "csv")))}
    assert rows["a"]["test_accuracy_mean"] != "" and rows["b"]["test_accuracy_mean"] == ""
    assert rows["a"]["chosen"] == "true" and rows["b"]["chosen"] == "false"
    assert float(rows["b"]["p_vs_best"]) == pytest.approx(0.0036022, abs=1e-7)

    everything = study_report(hand_store, "hand", Options(all_test=True))
    md_all = render(everything, "markdown")
    assert "0.8100 ± 0.0200" in md_all and "every variant shown on request" in md_all
    assert everything["selection"]["test_shown"] == "all"

    data = json.loads(render(default, "json"))  # tools get every value, with the selection to respect
    assert data["format"] == "trainlab-report/1"
    assert data["selection"]["test_shown"] == "chosen"
    assert data["variants"][1]["test_accuracy"]["values"] == [0.79, 0.81, 0.83]


def test_target_metric_must_exist(hand_store: Store) -> None:
    with pytest.raises(TrainlabError, match="cannot use 'val_mse' as target metric"):
        study_report(hand_store, "hand", Options(target=0.5, target_metric="val_mse"))


# --- edge labels, against SciPy's distributions used directly ----------------------------------


def welch_by_formula(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's t, Welch-Satterthwaite df and the two-sided p from Student's t survival function,
    written out from the textbook formulas (not through ``scipy.stats.ttest_ind``)."""
    from scipy import stats as sps

    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df, float(2 * sps.t.sf(abs(t), df))


# A p-value from SciPy's ttest_ind and one from the formula above differ only by float rounding
# in the intermediate sums; 1e-9 relative is far above that and far below any printed digit.
P_RTOL = 1e-9
# Quantiles copied from a printed table carry 7 significant digits: a ratio of two is good to
# about 4e-7 relative.
TABLE_RTOL = 1e-6
# A value worked out by hand and written to six decimals is good to half a unit in the last place.
SIX_DECIMALS = 1e-6


@pytest.mark.parametrize(
    "a,b,small",
    [
        ([], [0.8, 0.9], "this variant"),
        ([0.8, 0.9], [None, float("nan")], "the best"),
        ([], [0.9], "this variant and the best"),
    ],
)
def test_welch_without_a_finished_seed_says_so(a: list, b: list, small: str) -> None:
    c = stats.welch(a, b)
    assert (c.t, c.df, c.p, c.distinguishable) == (None, None, None, None)
    assert c.note == f"no finished seed ({small}): no test"


def test_welch_with_no_spread_on_one_side_is_tested_with_the_other_sides_df() -> None:
    # a has variance 0: df = (vb)^2 / (vb^2 / (nb - 1)) = nb - 1 = 2 exactly; t from b's spread alone:
    # t = 0.08 / sqrt(0.0004 / 3) = 6.9282, p = 1 - t / sqrt(2 + t^2) = 0.020204.
    a, b = [0.9, 0.9], [0.80, 0.82, 0.84]
    c = stats.welch(a, b)
    t, df, p = welch_by_formula(a, b)
    assert df == pytest.approx(2.0, rel=P_RTOL)
    assert c.t == pytest.approx(t, rel=P_RTOL) and c.df == pytest.approx(df, rel=P_RTOL)
    assert c.p == pytest.approx(p, rel=P_RTOL)
    assert c.p == pytest.approx(p_two_sided_df2(t), rel=P_RTOL)  # the closed form at df 2 agrees
    assert c.p == pytest.approx(0.020204, abs=SIX_DECIMALS) and c.distinguishable is True


def test_welch_with_no_spread_on_both_sides() -> None:
    same = stats.welch([0.9, 0.9, 0.9], [0.9, 0.9])
    assert (same.t, same.p, same.distinguishable, same.note) == (None, None, False, "identical values")
    apart = stats.welch([0.9, 0.9, 0.9], [0.8, 0.8])
    assert (apart.t, apart.p, apart.distinguishable) == (None, None, None)
    assert apart.note == "no spread within either variant: no test"
    rows = [{"vs_best": same.as_dict()}, {"vs_best": apart.as_dict()}]
    assert [vs_best_text(r) for r in rows] == ["≈ best (identical)", "no spread within either variant"]


def test_a_p_value_below_one_in_a_thousand_is_printed_as_a_bound() -> None:
    a, b = [0.50, 0.51, 0.52], [0.90, 0.91, 0.92]  # t = -0.4 / sqrt(2 * 0.0001 / 3) = -48.99, df 4
    c = stats.welch(a, b)
    t, df, p = welch_by_formula(a, b)
    assert p < 0.001 and c.p == pytest.approx(p, rel=P_RTOL) and c.df == pytest.approx(4.0, rel=P_RTOL)
    assert vs_best_text({"vs_best": c.as_dict()}) == "worse (p<0.001)"
    # At and above the bound the value itself is printed, to three decimals.
    assert vs_best_text({"vs_best": {**c.as_dict(), "p": 0.001}}) == "worse (p=0.001)"
    assert vs_best_text({"vs_best": {**c.as_dict(), "p": 0.0009999}}) == "worse (p<0.001)"
    assert vs_best_text({"vs_best": {**c.as_dict(), "p": 0.4321, "distinguishable": False}}) == "≈ best (p=0.432)"


def test_a_non_default_confidence_level_and_alpha() -> None:
    from scipy import stats as sps

    values = [0.91, 0.95, 0.90, 0.96]
    s = stats.summarize(values, confidence=0.9)
    low, high = sps.t.interval(0.9, len(values) - 1, loc=sum(values) / len(values), scale=sps.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, rel=P_RTOL), pytest.approx(high, rel=P_RTOL))
    # 90% is narrower than the default 95%: t_{0.95,3} = 2.353 against t_{0.975,3} = 3.182 (printed tables).
    wide = stats.summarize(values)
    assert s.half_width / wide.half_width == pytest.approx(2.353363 / 3.182446, rel=TABLE_RTOL)
    # alpha: the same p (about 0.069 at df 4) differs at 10% but not at 5%.
    a, b = [0.90, 0.92, 0.94], [0.86, 0.88, 0.90]
    p = welch_by_formula(a, b)[2]
    assert 0.05 < p < 0.1
    assert stats.welch(a, b, alpha=0.1).note == "differs at 10%" and stats.welch(a, b, alpha=0.1).distinguishable
    assert stats.welch(a, b).note == "not distinguishable at 5%" and stats.welch(a, b).distinguishable is False


def test_a_variant_without_a_finished_seed_is_labelled_in_the_table(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        study_id = store.ensure_study("hand", json.dumps({"study": {"name": "hand"}}), "h", None)
        spec_json = json.dumps(TRIAL_SPEC)
        store.add_trials(study_id, [NewTrial(h, h[:-1], {}, int(h[-1]), spec_json) for h in ("ok0", "ok1", "broken0")])
        for trial in store.trials(study_id):
            assert store.claim(trial.id, "me")
            if trial.label == "ok":
                result = {
                    "best_epoch": 0,
                    "best": {"val_accuracy": 0.9 + trial.seed / 100, "val_loss": 0.3},
                    "epochs": 1,
                }
                store.finish_trial(trial.id, "me", "done", result=result)
            else:
                store.finish_trial(trial.id, "me", "failed", error="boom")
        report = study_report(store, "hand")
    broken = next(v for v in report["variants"] if v["label"] == "broken")
    assert broken["n"] == 0 and broken["vs_best"]["note"] == "no finished seed" and broken["vs_best"]["p"] is None
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in render(report, "markdown").splitlines()
        if line.startswith("| ")
    }
    assert "| no finished seed |" in rows["broken"] and "| best |" in rows["ok"]


# --- paired tests, Wilcoxon and the correction for many comparisons ----------------------------


def test_paired_t_by_hand_and_against_scipy() -> None:
    # differences 0.10, 0.09, 0.10: mean 0.096667, s_d = 0.0057735, t = 0.096667 / (s_d / sqrt 3) = 29.0, df 2
    from scipy import stats as sps

    a, b = [0.90, 0.92, 0.94], [0.80, 0.83, 0.84]
    c = stats.paired(a, b)
    assert c.test == "paired t" and c.pairs == 3 and c.df == 2.0
    assert c.t == pytest.approx(29.0, rel=1e-9)
    assert c.p == pytest.approx(p_two_sided_df2(29.0), rel=P_RTOL)
    assert c.p == pytest.approx(0.0011869, abs=SIX_DECIMALS) and c.distinguishable is True
    ref = sps.ttest_rel(a, b)
    assert (c.t, c.p) == (pytest.approx(float(ref.statistic), rel=P_RTOL), pytest.approx(float(ref.pvalue), rel=P_RTOL))
    assert c.wilcoxon_p is None  # three pairs: a signed-rank p could not go below 2/8


def test_welch_agrees_with_scipy_ttest_ind() -> None:
    from scipy import stats as sps

    for a, b in [([0.91, 0.95, 0.90, 0.96], [0.89, 0.90, 0.93]), ([0.5, 0.7], [0.6, 0.61, 0.62, 0.9, 0.3])]:
        ref = sps.ttest_ind(a, b, equal_var=False)
        c = stats.welch(a, b)
        assert c.t == pytest.approx(float(ref.statistic), rel=P_RTOL)
        assert c.p == pytest.approx(float(ref.pvalue), rel=P_RTOL) and c.df == pytest.approx(float(ref.df), rel=P_RTOL)


def test_paired_without_spread_in_the_differences() -> None:
    same = stats.paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert (same.p, same.distinguishable, same.note) == (None, False, "identical values")
    # 0.90 - 0.80, 0.92 - 0.82 and 0.94 - 0.84 differ only by float rounding: one difference, no test
    shifted = stats.paired([0.90, 0.92, 0.94], [0.80, 0.82, 0.84])
    assert (shifted.p, shifted.distinguishable) == (None, None)
    assert shifted.note == "the same difference at every seed: no test"


def test_wilcoxon_from_six_pairs_by_hand() -> None:
    # six positive differences: every sign +, the exact two-sided p is 2 / 2^6 = 0.03125
    a = [0.91, 0.92, 0.93, 0.94, 0.95, 0.96]
    b = [x - d for x, d in zip(a, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06])]
    assert stats.paired(a, b).wilcoxon_p == pytest.approx(2 / 64, rel=1e-12)
    # ranks 1..6 with the largest negative: W- = 6; subsets of 1..6 summing to at most 6 number
    # 1 + 1 + 1 + 2 + 2 + 3 + 4 = 14, so p = 2 * 14 / 64
    b[5] = a[5] + 0.06
    assert stats.paired(a, b).wilcoxon_p == pytest.approx(28 / 64, rel=1e-12)
    assert stats.paired(a[:5], b[:5]).wilcoxon_p is None  # 2 / 2^5 = 0.0625 could never reach 5%


def test_compare_pairs_only_on_the_same_three_or_more_seeds() -> None:
    a = {0: 0.90, 1: 0.92, 2: 0.94}
    assert stats.compare(a, {0: 0.80, 1: 0.83, 2: 0.84}).test == "paired t"
    assert stats.compare(a, {0: 0.80, 1: 0.83, 3: 0.84}).test == "welch"  # different seeds
    assert stats.compare(a, {0: 0.80, 1: 0.83, 2: None}).test == "welch"  # seed 2 did not finish
    assert stats.compare({0: 0.9, 1: 0.91}, {0: 0.8, 1: 0.83}).test == "welch"  # two seeds: 1 df paired


def test_holm_and_bonferroni_by_hand() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06
    ps = [0.01, 0.04, None, 0.03, 0.005]
    assert stats.adjust(ps) == [pytest.approx(0.03), pytest.approx(0.06), None, pytest.approx(0.06), 0.02]
    bonferroni = stats.adjust(ps, "bonferroni")
    assert bonferroni == [pytest.approx(x) if x is not None else None for x in (0.04, 0.16, None, 0.12, 0.02)]
    assert stats.adjust([0.5, 0.9], "holm") == [1.0, 1.0]  # capped at 1
    assert stats.adjust(ps, "none") == ps
    with pytest.raises(ValueError, match="allowed: holm, bonferroni, none"):
        stats.adjust(ps, "sidak")


def test_versus_best_corrects_over_every_pair_of_variants() -> None:
    # three variants on different seeds (Welch everywhere): the family is the three pairs
    samples = {
        "a": {0: 0.90, 1: 0.92, 2: 0.94},
        "b": {3: 0.80, 4: 0.82, 5: 0.84},
        "c": {6: 0.86, 7: 0.90, 8: 0.91},
    }
    raw = {
        pair: welch_by_formula(list(samples[pair[0]].values()), list(samples[pair[1]].values()))[2]
        for pair in [("a", "b"), ("a", "c"), ("b", "c")]
    }
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for rank, pair in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[pair]))
        holm[pair] = running
    result = stats.versus_best(samples, "a")
    assert set(result) == {"b", "c"}
    for label in ("b", "c"):
        got = result[label]
        assert got.family == 3 and got.correction == "holm"
        assert got.comparison.p == pytest.approx(raw[("a", label)], rel=P_RTOL)
        assert got.p_adjusted == pytest.approx(holm[("a", label)], rel=P_RTOL)
        assert got.comparison.t < 0  # this variant minus the best
        assert got.distinguishable is (holm[("a", label)] < 0.05)
    plain = stats.versus_best(samples, "a", correction="none")
    assert plain["b"].p_adjusted == pytest.approx(raw[("a", "b")], rel=P_RTOL)


def _family_false_positive_rates(studies: int, seeds: int, *, paired: bool) -> dict[str, float]:
    """Simulated A/A studies: 10 variants drawn from one distribution (validation accuracy
    0.975, spread 0.0015 over seeds, as the quickstart's variants have), the best chosen by mean
    and every other compared with it. Returns the share of studies in which some variant is
    called worse: by the report's rule (``holm``), by the same tests uncorrected (``none``), and
    under Holm over the 9 comparisons with the best alone (``best_only``)."""
    import numpy as np

    rng = np.random.default_rng(20260)
    flagged = {"holm": 0, "none": 0, "best_only": 0}
    for _ in range(studies):
        if paired:  # one seed effect shared by every variant at that seed, plus each trial's own noise
            x = 0.975 + rng.normal(0, 0.001, seeds) + rng.normal(0, 0.0011, (10, seeds))
            samples = {f"v{i}": dict(enumerate(x[i])) for i in range(10)}
        else:  # each variant on its own seeds
            x = rng.normal(0.975, 0.0015, (10, seeds))
            samples = {f"v{i}": {100 * i + s: x[i, s] for s in range(seeds)} for i in range(10)}
        result = stats.versus_best(samples, f"v{int(x.mean(axis=1).argmax())}").values()
        assert all(r.comparison.test == ("paired t" if paired else "welch") for r in result)
        raw = [r.comparison.p for r in result]
        flagged["holm"] += any(r.distinguishable for r in result)
        flagged["none"] += any(p is not None and p < stats.ALPHA for p in raw)
        flagged["best_only"] += any(p is not None and p < stats.ALPHA for p in stats.adjust(raw))
    return {k: n / studies for k, n in flagged.items()}


@pytest.mark.parametrize("seeds,paired", [(3, False), (5, True)])
def test_calibration_identical_variants_are_rarely_called_different(seeds: int, paired: bool) -> None:
    """The family-wise false-positive rate of "vs best" among 10 identical variants stays at or
    below 5% with the default correction (about 1.5-2.5% here); uncorrected tests against the
    best flag a difference in 40-60% of such studies."""
    rates = _family_false_positive_rates(1000, seeds, paired=paired)
    assert rates["holm"] <= 0.05
    assert rates["none"] >= 0.3
    if seeds == 5:  # Holm over the 9 comparisons with the best alone lets the choice of the best through (~10%)
        assert rates["best_only"] > 0.06


# Three variants on the same three seeds: compared paired. By hand, with differences per seed:
#   b - a = -0.10, -0.09, -0.10: t = -29.0, df 2, p = 1 - 29 / sqrt(843) = 0.0011869
#   c - a = -0.01, +0.01, -0.02: mean -0.02/3, s_d = sqrt(0.0021) / 3, t = -0.75593, p = 0.52860
#   b - c = -0.09, -0.10, -0.08: mean -0.09, s_d 0.01, t = -15.5885, p = 0.0040900
# Holm over the three pairs: 0.0011869 x 3 = 0.0035608; 0.0040900 x 2 = 0.0081800; 0.52860 x 1.
PAIRED_VALUES = {
    label: [(seed, val, 0.3, val - 0.01, [val]) for seed, val in enumerate(vals)]
    for label, vals in {"a": [0.90, 0.92, 0.94], "b": [0.80, 0.83, 0.84], "c": [0.89, 0.93, 0.92]}.items()
}


def test_report_pairs_shared_seeds_and_corrects_by_holm(tmp_path: Path) -> None:
    t_c = -0.02 / 3 / (math.sqrt(0.0021) / 3 / math.sqrt(3))
    p_ab, p_ac, p_bc = p_two_sided_df2(29.0), p_two_sided_df2(t_c), p_two_sided_df2(0.09 / (0.01 / math.sqrt(3)))
    assert (t_c, p_ab, p_ac, p_bc) == (
        pytest.approx(-0.75593, abs=1e-5),
        pytest.approx(0.0011869, abs=SIX_DECIMALS),
        pytest.approx(0.52860, abs=1e-5),
        pytest.approx(0.0040900, abs=SIX_DECIMALS),
    )
    with _filled_store(tmp_path / "paired.db", PAIRED_VALUES) as store:
        report = study_report(store, "hand")
        plain = study_report(store, "hand", Options(correction="none"))
        with pytest.raises(TrainlabError, match="unknown correction 'sidak'; allowed: holm, bonferroni, none"):
            study_report(store, "hand", Options(correction="sidak"))
    by = {v["label"]: v["vs_best"] for v in report["variants"]}
    assert report["selection"]["correction"] == "holm"
    assert by["b"]["test"] == "paired t" and by["b"]["pairs"] == 3 and by["b"]["df"] == 2.0
    assert by["b"]["t"] == pytest.approx(-29.0, rel=P_RTOL) and by["b"]["p"] == pytest.approx(p_ab, rel=P_RTOL)
    assert by["b"]["p_adjusted"] == pytest.approx(3 * p_ab, rel=P_RTOL) and by["b"]["distinguishable"] is True
    assert by["c"]["t"] == pytest.approx(t_c, rel=1e-6)
    assert by["c"]["p_adjusted"] == pytest.approx(max(2 * p_bc, p_ac), rel=1e-6) and by["c"]["distinguishable"] is False
    assert by["b"]["family"] == by["c"]["family"] == by["a"]["family"] == 3
    assert by["a"]["p_adjusted"] is None and by["a"]["note"] == "best"

    md = render(report, "markdown")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| worse (p=0.004) |" in rows["b"] and "| ≈ best (p=0.529) |" in rows["c"]
    assert "paired t-test over the 3 seeds both share on val accuracy against a" in md
    assert "vs best p: corrected by Holm over all 3 pairs of variants, since the best is chosen" in md
    csv_rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert float(csv_rows["b"]["p_vs_best"]) == pytest.approx(p_ab, rel=P_RTOL)
    assert float(csv_rows["b"]["p_vs_best_adjusted"]) == pytest.approx(3 * p_ab, rel=P_RTOL)
    assert csv_rows["b"]["test_vs_best"] == "paired t" and csv_rows["a"]["p_vs_best_adjusted"] == ""
    data = json.loads(render(report, "json"))
    assert data["variants"][1]["vs_best"]["p_adjusted"] == pytest.approx(3 * p_ab, rel=P_RTOL)

    plain_md = render(plain, "markdown")
    assert (
        "| worse (p=0.001) |" in plain_md
        and "p: uncorrected for the 3 pairs of variants tested (--correction none)." in plain_md
    )
    assert {v["label"]: v["vs_best"]["p_adjusted"] for v in plain["variants"]}["b"] == pytest.approx(p_ab)


def test_report_correction_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainlab.cli import main

    _filled_store(tmp_path / "paired.db", PAIRED_VALUES).close()
    assert main(["report", "hand", "--store", str(tmp_path / "paired.db"), "--format", "json"]) == 0
    holm = json.loads(capsys.readouterr().out)
    args = ["report", "hand", "--store", str(tmp_path / "paired.db"), "--format", "json", "--correction", "bonferroni"]
    assert main(args) == 0
    bonferroni = json.loads(capsys.readouterr().out)
    p_c = [v["vs_best"] for v in holm["variants"] if v["label"] == "c"][0]
    q_c = [v["vs_best"] for v in bonferroni["variants"] if v["label"] == "c"][0]
    assert bonferroni["selection"]["correction"] == "bonferroni"
    assert q_c["p_adjusted"] == pytest.approx(min(1.0, 3 * q_c["p"])) and p_c["p_adjusted"] < q_c["p_adjusted"]
    with pytest.raises(SystemExit):
        main([*args[:-1], "sidak"])
    assert "invalid choice: 'sidak'" in capsys.readouterr().err
