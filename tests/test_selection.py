"""The one rule for choosing the best variant (trainlab/selection.py), against expectations worked
out by hand: the direction of each metric (Keras' ``mode="auto"``: max for accuracy, min for
losses and errors), ties between equal means broken by the other validation metric and then by
position, and variants without a finite mean (diverged, nothing finished) never chosen. The last
test checks that a report built from a store applies the same rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainlab import selection
from trainlab.report import study_report
from trainlab.store import NewTrial, Store

NAN = float("nan")


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric,other",
    [("val_accuracy", "val_loss"), ("val_loss", "val_accuracy"), ("val_mse", "val_loss"), ("val_mae", "val_loss")],
)
def test_the_tie_break_metric_is_the_other_validation_metric(metric: str, other: str) -> None:
    assert selection.tie_break(metric) == other


def test_mean_drops_missing_and_non_finite_values() -> None:
    assert selection.mean([0.25, None, NAN, math.inf, 0.75, -math.inf]) == 0.5  # (0.25 + 0.75) / 2
    assert selection.mean([NAN, NAN]) is None  # every seed diverged
    assert selection.mean([]) is None


def test_rank_puts_better_first_in_each_direction() -> None:
    # Accuracy is maximised: its key is negated; the tie-break (val_loss) is minimised: kept as is.
    assert selection.rank(0.9, 0.3, "val_accuracy", 2) == (-0.9, 0.3, 2)
    # Loss is minimised; its tie-break (val_accuracy) is maximised: negated.
    assert selection.rank(0.3, 0.9, "val_loss", 0) == (0.3, -0.9, 0)
    # An unknown tie-break value sorts after every known one.
    assert selection.rank(0.9, None, "val_accuracy", 1) == (-0.9, math.inf, 1)


# --- choose ----------------------------------------------------------------------------------


def test_accuracy_is_maximised() -> None:
    means = [(0.90, 0.30), (0.95, 0.40), (0.80, 0.10)]
    assert selection.choose(means, "val_accuracy") == 1  # 0.95 is the highest accuracy, whatever its loss


@pytest.mark.parametrize("metric", ["val_loss", "val_mse"])
def test_losses_and_errors_are_minimised(metric: str) -> None:
    means = [(0.30, 0.95), (0.20, 0.10), (0.25, 0.99)]
    assert selection.choose(means, metric) == 1  # 0.20 is the lowest, whatever the tie-break says


def test_equal_accuracy_goes_to_the_lower_validation_loss() -> None:
    means = [(0.9, 0.30), (0.9, 0.25), (0.8, 0.01)]
    assert selection.choose(means, "val_accuracy") == 1


def test_equal_loss_goes_to_the_higher_validation_accuracy() -> None:
    means = [(0.2, 0.80), (0.2, 0.90), (0.3, 0.99)]
    assert selection.choose(means, "val_loss") == 1


def test_a_full_tie_goes_to_the_earlier_variant() -> None:
    means = [(0.7, 0.5), (0.9, 0.25), (0.9, 0.25)]
    assert selection.choose(means, "val_accuracy") == 1
    assert selection.choose([(0.9, None), (0.9, None)], "val_accuracy") == 0


def test_a_known_tie_break_value_beats_an_unknown_one() -> None:
    assert selection.choose([(0.9, None), (0.9, 5.0)], "val_accuracy") == 1


def test_variants_without_a_mean_are_never_chosen() -> None:
    assert selection.choose([(None, 0.1), (0.5, 0.9), (None, None)], "val_accuracy") == 1
    assert selection.choose([(None, 0.1), (None, None)], "val_accuracy") is None
    assert selection.choose([], "val_loss") is None


def test_a_diverged_variant_is_not_chosen_even_first() -> None:
    """Every seed of the first variant diverged (NaN); its mean is unknown, so the worse but finite
    second variant is chosen, as callers build the means with :func:`selection.mean`."""
    seeds = {"diverged": ([NAN, NAN], [NAN, NAN]), "finite": ([0.4, 0.6], [1.0, 1.2])}
    means = [(selection.mean(acc), selection.mean(loss)) for acc, loss in seeds.values()]
    assert means[0] == (None, None)
    assert selection.choose(means, "val_accuracy") == 1
    by_loss = [(loss, acc) for acc, loss in means]  # (selection metric, tie-break) when choosing by loss
    assert selection.choose(by_loss, "val_loss") == 1


def test_a_partly_diverged_variant_is_ranked_on_its_finite_seeds() -> None:
    # Seeds 0.8 and NaN -> mean 0.8, which beats 0.7; a NaN counted as 0 would give 0.4 and lose.
    means = [(selection.mean([0.7, 0.7]), None), (selection.mean([0.8, NAN]), None)]
    assert selection.choose(means, "val_accuracy") == 1


def test_a_raw_nan_mean_is_not_chosen() -> None:
    assert selection.choose([(NAN, 0.1), (0.9, 0.2)], "val_accuracy") == 1
    assert selection.choose([(NAN, 0.1)], "val_accuracy") is None


# --- the report applies the same rule ---------------------------------------------------------

SPEC = json.dumps({"task": "classification", "train": {"monitor": "val_accuracy"}})
# label -> [(status, val_accuracy, val_loss)] per seed, in binary fractions so that the means are
# exact. "tied-worse" and "tied-better" have the same mean accuracy (0.875); the lower mean loss
# (0.1875 < 0.375) decides. "wild" diverged on every seed; "high-solo" finished one seed, with the
# lowest loss of all but a lower accuracy (0.8125).
SEEDS = {
    "wild": [("diverged", NAN, NAN), ("diverged", NAN, NAN)],
    "tied-worse": [("done", 0.75, 0.25), ("done", 1.0, 0.5)],
    "tied-better": [("done", 0.8125, 0.125), ("done", 0.9375, 0.25)],
    "high-solo": [("done", 0.8125, 0.0625), ("failed", None, None)],
}


def test_a_report_chooses_by_the_same_rule(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        study_id = store.ensure_study("sel", json.dumps({"study": {"name": "sel"}}), "h", None)
        store.add_trials(
            study_id,
            [
                NewTrial(f"{label}{seed}", label, {}, seed, SPEC)
                for label, rows in SEEDS.items()
                for seed in range(len(rows))
            ],
        )
        ids = {t.hash: t.id for t in store.trials(study_id)}
        for label, rows in SEEDS.items():
            for seed, (status, acc, loss) in enumerate(rows):
                trial_id = ids[f"{label}{seed}"]
                assert store.claim(trial_id, "me")
                result = (
                    None
                    if status == "failed"
                    else {"best_epoch": 0, "best": {"val_accuracy": acc, "val_loss": loss}, "epochs": 1}
                )
                store.finish_trial(trial_id, "me", status, result=result, error="boom" if status == "failed" else None)
        report = study_report(store, "sel")
    assert report["selection"]["chosen"] == "tied-better"
    # Within the chosen variant, its best trial by the same rule: accuracy 0.9375 beats 0.8125.
    assert report["selection"]["chosen_trial"] == "tied-better1"
    by = {v["label"]: v for v in report["variants"]}
    assert by["wild"]["n"] == 0 and by["wild"]["val_accuracy"]["mean"] is None
    assert by["tied-worse"]["val_accuracy"]["mean"] == by["tied-better"]["val_accuracy"]["mean"] == 0.875
