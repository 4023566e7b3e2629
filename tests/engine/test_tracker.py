"""The Tracker: a trial's callback decisions, chosen epoch, divergence and pruning, as resumable state.

Each table row is traced by hand through Keras 3's callbacks (keras/src/callbacks/early_stopping.py,
reduce_lr_on_plateau.py and monitor_callback.py, Keras 3.11 and later), whose rules are:

* improvement: ``current - min_delta > best`` in ``max`` mode, ``current + min_delta < best`` in
  ``min`` mode (``min_delta`` is an absolute value; a change of exactly ``min_delta`` is no
  improvement); the first monitored epoch always improves (``best`` starts as None);
* EarlyStopping: every monitored epoch adds one to ``wait``; an improvement sets the best (and its
  weights) and resets ``wait`` only if it also improves on ``baseline``, then returns; otherwise
  training stops once ``wait >= patience`` (after epoch 0). Epochs before ``start_from_epoch`` are
  not monitored. ``restore_best_weights`` restores the best epoch's weights when training ends,
  stopped early or not;
* ReduceLROnPlateau: while cooling down, each epoch counts the cooldown down and clears ``wait``;
  an improvement resets ``wait``; otherwise, out of cooldown, ``wait`` grows and at ``patience``
  the rate becomes ``max(lr * factor, min_lr)`` if it is above ``min_lr``, starting a cooldown.

Beside the tables, a transliteration of those Keras methods (below) is run against the Tracker on
drawn sequences, and every case resumes from a checkpoint at every epoch to the decisions an
uninterrupted tracker makes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainlab.engine import checkpoint
from trainlab.engine.tracker import FitResult, Tracker, Weights
from trainlab.spec.resolve import resolve_train
from trainlab.trial import TrainSettings

EPOCHS = 8
LR = 1.0
CONSTANT = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
"""Every metric an epoch records for a classification trial; a case changes the one it watches."""


def train_settings(epochs: int = EPOCHS, **train: Any) -> TrainSettings:
    """A ``[train]`` table resolved as a study's is: callback defaults and ``auto`` modes filled in."""
    return TrainSettings.from_json(resolve_train({"epochs": epochs, **train}, "classification"))


def weights_of(epoch: int) -> Weights:
    """The model's weights at the end of ``epoch``: a tensor holding the epoch, so a choice can be read back."""
    return {"w": torch.tensor([float(epoch)])}


def epoch_of(weights: Weights) -> int:
    return int(weights["w"].item())


def watching(monitor: str, values: Sequence[float]) -> list[dict[str, float]]:
    """One epoch's logs per value, ``monitor`` taking the value and every other metric constant."""
    return [{**CONSTANT, monitor: v} for v in values]


@dataclass
class Trace:
    """What feeding epochs to a tracker gave: the rate each epoch trained at, the epochs whose
    weights the tracker took, and the rate for the epoch after the last."""

    used: list[float]
    taken: list[int]
    lr: float


def feed(tracker: Tracker, logs: Sequence[Mapping[str, float]], lr: float = LR) -> Trace:
    """Epochs as the training loop runs them: from the tracker's next epoch until it is finished
    (or the logs run out), each ending with ``end_epoch`` and the rate it returns used next."""
    trace = Trace([], [], lr)
    while not tracker.finished and tracker.next_epoch < len(logs):
        epoch = tracker.next_epoch

        def snapshot(epoch: int = epoch) -> Weights:
            trace.taken.append(epoch)
            return weights_of(epoch)

        trace.used.append(trace.lr)
        trace.lr = tracker.end_epoch(logs[epoch], snapshot, trace.lr)
    return trace


def finish(tracker: Tracker) -> FitResult:
    """The tracker's result, the model holding the weights of the last epoch it trained."""
    return tracker.result(weights_of(tracker.next_epoch - 1))


def first_best(values: Sequence[float], higher: bool) -> int:
    """The first epoch holding the best value: what a strict "better than the best so far" keeps."""
    best = max(values) if higher else min(values)
    return list(values).index(best)


# ---------------------------------------------------------------------------------------------
# EarlyStopping


@dataclass(frozen=True)
class Stopping:
    """An ``early_stopping`` table, the watched metric's values, the epoch training stops after
    (None: it runs all the values) and early stopping's best epoch (None: it never watched one)."""

    config: dict[str, Any]
    values: tuple[float, ...]
    stops_after: int | None
    best: int | None

    @property
    def monitor(self) -> str:
        return str(self.config.get("monitor", "val_loss"))


STOPPING = {
    # e0 best; e1 better; e2 wait 1; e3 wait 2 = patience: stop.
    "patience counts the epochs without improvement": Stopping({"patience": 2}, (1.0, 0.5, 0.75, 0.625, 0.25), 3, 1),
    # e1 wait 1; e2 better, wait 0; e3 wait 1; e4 wait 2: stop.
    "an improvement resets the wait": Stopping({"patience": 2}, (1.0, 1.0, 0.5, 1.0, 1.0, 0.25), 4, 2),
    # 0.75 + 0.25 < 1.0 is false: a change of exactly min_delta is no improvement.
    "a change of exactly min_delta is no improvement": Stopping(
        {"patience": 1, "min_delta": 0.25}, (1.0, 0.75, 0.5), 1, 0
    ),
    # 0.625 + 0.25 < 1.0: better; 0.5 + 0.25 < 0.625 is false: wait 1, stop.
    "a change larger than min_delta is one": Stopping(
        {"patience": 1, "min_delta": 0.25}, (1.0, 0.625, 0.5, 0.25), 2, 1
    ),
    # val_accuracy: auto mode is max; the tie at e2 does not improve.
    "accuracy is maximised and a tie is no improvement": Stopping(
        {"monitor": "val_accuracy", "patience": 1}, (0.5, 0.75, 0.75, 1.0), 2, 1
    ),
    # max mode subtracts min_delta: 0.5 - 0.25 > 0.25 is false.
    "min_delta in max mode": Stopping(
        {"monitor": "val_accuracy", "patience": 1, "min_delta": 0.25}, (0.25, 0.5, 0.75), 1, 0
    ),
    "an explicit max mode on a loss": Stopping({"mode": "max", "patience": 1}, (1.0, 2.0, 1.5, 3.0), 2, 1),
    "an explicit min mode on accuracy": Stopping(
        {"monitor": "val_accuracy", "mode": "min", "patience": 1}, (0.5, 0.25, 0.5, 0.125), 2, 1
    ),
    # Keras' default patience 0: the first epoch without improvement stops.
    "patience 0 stops at the first epoch without improvement": Stopping({}, (1.0, 0.5, 0.25, 0.25, 0.125), 3, 2),
    # e0 and e1 improve without beating the baseline (wait 1, 2); e2 does not improve: wait 3 >= 2.
    "a baseline not beaten keeps the wait growing": Stopping(
        {"patience": 2, "baseline": 0.5}, (1.0, 0.875, 0.9375, 0.9375), 2, 1
    ),
    "the same values without a baseline": Stopping({"patience": 2}, (1.0, 0.875, 0.9375, 0.9375, 0.9375), 3, 1),
    # Keras returns on every improvement before it looks at the wait: improving epochs never stop.
    "improving epochs never stop, baseline or not": Stopping(
        {"patience": 1, "baseline": 0.25}, (1.0, 0.875, 0.75, 0.625, 0.5), None, 4
    ),
    # e1 beats the baseline: wait 0; e2 wait 1; e3 wait 2: stop.
    "beating the baseline resets the wait": Stopping(
        {"patience": 2, "baseline": 0.5}, (1.0, 0.25, 0.5, 0.5, 0.5), 3, 1
    ),
    # e0 and e1 are not watched (their low values are not early stopping's best); e3 waits 1.
    "start_from_epoch leaves the first epochs unwatched": Stopping(
        {"patience": 1, "start_from_epoch": 2}, (0.125, 0.125, 1.0, 1.5, 2.0), 3, 2
    ),
    "a start_from_epoch beyond the run never watches": Stopping(
        {"start_from_epoch": 10}, (1.0, 2.0, 3.0, 4.0), None, None
    ),
}


def stopping_tracker(case: Stopping, **train: Any) -> Tracker:
    settings_ = train_settings(epochs=len(case.values), early_stopping=case.config, **train)
    return Tracker(settings_, weights_of(-1))


@pytest.mark.parametrize("name", STOPPING)
def test_early_stopping_ends_the_trial_where_keras_does(name: str) -> None:
    case = STOPPING[name]
    tracker = stopping_tracker(case)
    feed(tracker, watching(case.monitor, case.values))
    result = finish(tracker)
    assert tracker.finished and result.status == "done"
    if case.stops_after is None:
        assert result.epochs == len(case.values)
        assert result.stop_reason == f"ran all {len(case.values)} epochs"
    else:
        assert result.epochs == case.stops_after + 1
        patience = case.config.get("patience", 0)
        assert result.stop_reason == f"early stopping: {case.monitor} did not improve for {patience} epochs"
    assert tracker.early is not None
    assert tracker.early.best_epoch == (-1 if case.best is None else case.best)


@pytest.mark.parametrize("name", STOPPING)
def test_restore_best_weights_with_keep_last_chooses_early_stoppings_best(name: str) -> None:
    """``keep = "last"`` is Keras' model after ``fit``: its last weights, which early stopping
    with ``restore_best_weights`` replaces by its best epoch's, stopped early or not."""
    case = STOPPING[name]
    restoring = stopping_tracker(
        Stopping({**case.config, "restore_best_weights": True}, case.values, case.stops_after, case.best),
        keep="last",
    )
    feed(restoring, watching(case.monitor, case.values))
    result = finish(restoring)
    last = result.epochs - 1
    chosen = last if case.best is None else case.best
    assert (epoch_of(result.weights), result.best_epoch) == (chosen, chosen)
    assert result.best == {**CONSTANT, case.monitor: case.values[chosen]}

    plain = stopping_tracker(case, keep="last")
    feed(plain, watching(case.monitor, case.values))
    result = finish(plain)
    assert (epoch_of(result.weights), result.best_epoch) == (last, last), "without restoring: the last weights"


@pytest.mark.parametrize("name", STOPPING)
def test_keep_best_chooses_the_monitors_best_whatever_early_stopping_restores(name: str) -> None:
    case = STOPPING[name]
    tracker = stopping_tracker(
        Stopping({**case.config, "restore_best_weights": True}, case.values, case.stops_after, case.best),
        monitor=case.monitor,
    )
    feed(tracker, watching(case.monitor, case.values))
    result = finish(tracker)
    trained = case.values[: result.epochs]
    best = first_best(trained, higher=case.monitor == "val_accuracy")
    assert (epoch_of(result.weights), result.best_epoch, result.best[case.monitor]) == (best, best, trained[best])


# ---------------------------------------------------------------------------------------------
# ReduceLROnPlateau

# name: (reduce_lr_on_plateau table, watched metric, its values, the rate returned after each epoch)
PLATEAU: dict[str, tuple[dict[str, Any], str, tuple[float, ...], tuple[float, ...]]] = {
    # e1 wait 1; e2 wait 2: halve; e3 wait 1; e4 halve; e5 wait 1.
    "patience epochs without improvement cut the rate": (
        {"factor": 0.5, "patience": 2, "min_delta": 0.0},
        "val_loss",
        (1.0,) * 6,
        (1.0, 1.0, 0.5, 0.5, 0.25, 0.25),
    ),
    # e1 cuts (cooldown 2); e2 counts it down to 1; e3 to 0 and, out of cooldown, waits 1: cut.
    "a cooldown holds the rate after a cut": (
        {"factor": 0.5, "patience": 1, "min_delta": 0.0, "cooldown": 2},
        "val_loss",
        (1.0,) * 7,
        (1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125),
    ),
    # 0.875 + 0.125 < 1.0 is false: cut; 0.75 + 0.125 < 1.0: better; 0.5 + 0.125 < 0.75: better.
    "a change of exactly min_delta is no improvement": (
        {"factor": 0.5, "patience": 1, "min_delta": 0.125},
        "val_loss",
        (1.0, 0.875, 0.75, 0.5),
        (1.0, 0.5, 0.5, 0.5),
    ),
    # Keras 3 adds min_delta to the value (0.3 + 0.1 == 0.4, no improvement: cut), as early stopping
    # does; subtracting it from the best instead (0.4 - 0.1 == 0.30000000000000004) would call it one.
    "min_delta is added to the value, as in early stopping": (
        {"factor": 0.5, "patience": 1, "min_delta": 0.1},
        "val_loss",
        (0.4, 0.3),
        (1.0, 0.5),
    ),
    "the rate stops at min_lr": (
        {"factor": 0.5, "patience": 1, "min_delta": 0.0, "min_lr": 0.25},
        "val_loss",
        (1.0,) * 4,
        (1.0, 0.5, 0.25, 0.25),
    ),
    "a cut below min_lr lands on it": (
        {"factor": 0.5, "patience": 1, "min_delta": 0.0, "min_lr": 0.3},
        "val_loss",
        (1.0,) * 4,
        (1.0, 0.5, 0.3, 0.3),
    ),
    "accuracy is maximised": (
        {"monitor": "val_accuracy", "factor": 0.5, "patience": 1, "min_delta": 0.0},
        "val_accuracy",
        (0.5, 0.5, 0.75, 0.75),
        (1.0, 0.5, 0.5, 0.25),
    ),
    "an improvement resets the wait": (
        {"factor": 0.5, "patience": 2, "min_delta": 0.0},
        "val_loss",
        (1.0, 1.0, 0.5, 0.5, 0.5),
        (1.0, 1.0, 1.0, 1.0, 0.5),
    ),
    "the training loss can be watched": (
        {"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 0.0},
        "loss",
        (1.0, 0.5, 0.5),
        (1.0, 1.0, 0.5),
    ),
    # Keras' defaults: factor 0.1, patience 10, min_delta 1e-4 (steps of 1e-5 are no improvement).
    "Keras' defaults": ({}, "val_loss", tuple(1.0 - 1e-5 * i for i in range(12)), (1.0,) * 10 + (0.1, 0.1)),
}


@pytest.mark.parametrize("name", PLATEAU)
def test_reduce_lr_on_plateau_sets_the_rate_keras_does(name: str) -> None:
    config, monitor, values, after = PLATEAU[name]
    tracker = Tracker(train_settings(epochs=len(values), reduce_lr_on_plateau=config), weights_of(-1))
    trace = feed(tracker, watching(monitor, values))
    assert (*trace.used[1:], trace.lr) == after
    assert trace.used[0] == LR


def test_without_a_plateau_callback_the_rate_is_handed_back_unchanged() -> None:
    tracker = Tracker(train_settings(epochs=4), weights_of(-1))
    trace = feed(tracker, watching("val_loss", (1.0, 1.0, 1.0, 1.0)), lr=0.0625)
    assert trace.used == [0.0625] * 4 and trace.lr == 0.0625


# ---------------------------------------------------------------------------------------------
# The chosen epoch (Keras' ModelCheckpoint with save_best_only)

# name: (train.monitor, its values, the chosen epoch, the epochs whose weights are taken)
BEST: dict[str, tuple[str, tuple[float, ...], int, list[int]]] = {
    "accuracy: the first of equal bests": ("val_accuracy", (0.5, 0.75, 0.75, 0.625, 0.75), 1, [0, 1]),
    "loss: lower is better": ("val_loss", (1.0, 0.5, 0.5, 0.75, 0.25), 4, [0, 1, 4]),
    "training accuracy": ("accuracy", (0.25, 0.5, 0.125), 1, [0, 1]),
}


@pytest.mark.parametrize("name", BEST)
def test_the_chosen_epoch_is_the_first_best_and_only_best_epochs_are_copied(name: str) -> None:
    monitor, values, chosen, taken = BEST[name]
    tracker = Tracker(train_settings(epochs=len(values), monitor=monitor), weights_of(-1))
    trace = feed(tracker, watching(monitor, values))
    result = finish(tracker)
    assert trace.taken == taken, "weights are copied only when the epoch is the best so far"
    assert (result.best_epoch, epoch_of(result.weights)) == (chosen, chosen)
    assert result.best == {**CONSTANT, monitor: values[chosen]}
    assert result.history == watching(monitor, values)


def test_keep_last_chooses_the_final_weights() -> None:
    values = (0.5, 0.75, 0.25)
    tracker = Tracker(train_settings(epochs=3, keep="last"), weights_of(-1))
    feed(tracker, watching("val_accuracy", values))
    result = tracker.result(weights_of(42))
    assert (result.best_epoch, epoch_of(result.weights)) == (2, 42)
    assert result.best == {**CONSTANT, "val_accuracy": 0.25}


# ---------------------------------------------------------------------------------------------
# Divergence

# name: (the diverging epoch's changes to the logs, the stop reason)
DIVERGING: dict[str, tuple[dict[str, float], str]] = {
    "NaN loss": ({"loss": math.nan}, "loss became nan at epoch 3"),
    "infinite loss": ({"loss": math.inf}, "loss became inf at epoch 3"),
    "loss at minus infinity": ({"loss": -math.inf}, "loss became -inf at epoch 3"),
    "NaN validation loss": ({"val_loss": math.nan, "loss": 0.5}, "val_loss became nan at epoch 3"),
    "infinite validation loss": ({"val_loss": math.inf, "loss": 0.5}, "val_loss became inf at epoch 3"),
    "both: the training loss is named": ({"loss": math.inf, "val_loss": math.nan}, "loss became inf at epoch 3"),
}


@pytest.mark.parametrize("name", DIVERGING)
def test_a_non_finite_loss_ends_the_trial_as_diverged_before_any_callback(name: str) -> None:
    changes, reason = DIVERGING[name]
    # Were the third epoch seen, it would be the best so far, and both callbacks' best and wait would change.
    train = {
        "early_stopping": {"monitor": "val_accuracy", "patience": 3},
        "reduce_lr_on_plateau": {"monitor": "val_accuracy", "patience": 3, "factor": 0.5},
    }
    tracker = Tracker(train_settings(epochs=5, **train), weights_of(-1))
    logs = watching("val_accuracy", (0.5, 0.5, 1.0, 1.0, 1.0))
    logs[2] |= changes
    assert tracker.early is not None and tracker.plateau is not None
    head = feed(tracker, logs[:2])
    before = (tracker.early.state(), tracker.plateau.state())
    trace = feed(tracker, logs, lr=head.lr)
    result = finish(tracker)
    assert (result.status, result.stop_reason, result.epochs) == ("diverged", reason, 3)
    assert tracker.finished and trace.used == [LR] and trace.taken == [] and trace.lr == LR
    assert (tracker.early.state(), tracker.plateau.state()) == before, "no callback sees a diverged epoch"
    assert (result.best_epoch, epoch_of(result.weights)) == (0, 0), "the chosen epoch is one before it"
    assert result.history[2] == logs[2]


def test_non_finite_metrics_other_than_the_losses_do_not_diverge() -> None:
    tracker = Tracker(train_settings(epochs=2), weights_of(-1))
    feed(tracker, [{**CONSTANT, "accuracy": math.nan}, {**CONSTANT, "val_accuracy": 0.75}])
    result = finish(tracker)
    assert (result.status, result.epochs, result.best_epoch) == ("done", 2, 1)


# ---------------------------------------------------------------------------------------------
# Pruning


def test_pruning_ends_the_trial_after_its_last_epoch_with_its_chosen_weights() -> None:
    tracker = Tracker(train_settings(epochs=EPOCHS), weights_of(-1))
    feed(tracker, watching("val_accuracy", (0.75, 0.5)))
    assert not tracker.finished
    tracker.prune()
    result = finish(tracker)
    assert tracker.finished and feed(tracker, watching("val_accuracy", (1.0,) * EPOCHS)).used == []
    assert (result.status, result.epochs, result.best_epoch, epoch_of(result.weights)) == ("pruned", 2, 0, 0)
    assert result.stop_reason == "pruned after epoch 2: val_accuracy was behind the other trials of the search"


# name: (train table, logs): a trial that ended by itself before it is pruned.
ENDED: dict[str, tuple[dict[str, Any], list[dict[str, float]]]] = {
    "ran all its epochs": ({"epochs": 2}, watching("val_accuracy", (0.5, 0.75))),
    "stopped early": ({"early_stopping": {"patience": 0}}, watching("val_loss", (1.0, 1.0))),
    "diverged": ({}, [CONSTANT, {**CONSTANT, "loss": math.nan}]),
}


@pytest.mark.parametrize("name", ENDED)
def test_pruning_a_trial_that_already_ended_changes_nothing(name: str) -> None:
    train, logs = ENDED[name]
    tracker = Tracker(train_settings(**{"epochs": EPOCHS, **train}), weights_of(-1))
    feed(tracker, logs)
    assert tracker.finished
    ended = (tracker.status, tracker.stop_reason)
    tracker.prune()
    assert (tracker.status, tracker.stop_reason) == ended and ended[0] != "pruned"


# ---------------------------------------------------------------------------------------------
# Resuming: meta() and snapshots() through a checkpoint, restore() into a fresh tracker

# name: (train table, logs): one of each ending and every callback.
RESUMED: dict[str, tuple[dict[str, Any], list[dict[str, float]]]] = {
    "early stopping restoring its best, with a baseline": (
        {"keep": "last", "early_stopping": {"patience": 2, "baseline": 0.5, "restore_best_weights": True}},
        watching("val_loss", (1.0, 0.875, 0.9375, 0.75, 0.8, 0.9, 0.95, 0.99)),
    ),
    "early stopping from epoch 3": (
        {"early_stopping": {"patience": 1, "min_delta": 0.125, "start_from_epoch": 3}},
        watching("val_loss", (0.25, 0.5, 1.0, 1.0, 0.75, 0.7, 0.7, 0.7)),
    ),
    "a plateau with cooldown, and min_lr": (
        {"reduce_lr_on_plateau": {"factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.2}},
        watching("val_loss", (1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)),
    ),
    "both callbacks on accuracy, running all epochs": (
        {
            "early_stopping": {"monitor": "val_accuracy", "patience": 3, "restore_best_weights": True},
            "reduce_lr_on_plateau": {"monitor": "val_accuracy", "factor": 0.5, "patience": 1},
        },
        watching("val_accuracy", (0.5, 0.5, 0.625, 0.625, 0.75, 0.5, 0.875, 0.875)),
    ),
    "diverging at epoch 5": (
        {"reduce_lr_on_plateau": {"factor": 0.5, "patience": 0}},
        [*watching("val_loss", (1.0, 0.5, 0.75, 0.25)), {**CONSTANT, "loss": math.inf}, *[CONSTANT] * 3],
    ),
}


def checkpointed(tracker: Tracker, model: Weights) -> bytes:
    """What the training loop stores to resume from: the model and the tracker's snapshots and meta."""
    return checkpoint.pack({"model": model, **tracker.snapshots()}, tracker.meta())


def resumed(settings_: TrainSettings, blob: bytes) -> Tracker:
    """A fresh tracker (of a fresh model) continuing from ``blob``, as a resumed run builds it."""
    groups, meta = checkpoint.unpack(blob)
    tracker = Tracker(settings_, weights_of(-99))
    tracker.restore(meta, groups)
    return tracker


def assert_same_results(a: FitResult, b: FitResult) -> None:
    assert (a.status, a.epochs, a.best_epoch, a.stop_reason) == (b.status, b.epochs, b.best_epoch, b.stop_reason)
    assert json.dumps([a.best, a.history]) == json.dumps([b.best, b.history])
    assert a.weights.keys() == b.weights.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def assert_resumes_at_every_epoch(settings_: TrainSettings, logs: Sequence[Mapping[str, float]]) -> None:
    """Stopping after any epoch and resuming from its checkpoint gives the uninterrupted run's
    rates, decisions, meta and result."""
    whole = Tracker(settings_, weights_of(-1))
    reference = feed(whole, logs)
    expected = finish(whole)
    for cut in range(1, len(reference.used) + 1):
        first = Tracker(settings_, weights_of(-1))
        head = feed(first, logs[:cut])
        second = resumed(settings_, checkpointed(first, weights_of(cut - 1)))
        assert (second.next_epoch, second.finished) == (first.next_epoch, first.finished)
        tail = feed(second, logs, lr=head.lr)
        assert head.used + tail.used == reference.used, f"resumed after epoch {cut}"
        assert tail.lr == reference.lr
        assert json.dumps(second.meta()) == json.dumps(whole.meta())
        assert_same_results(finish(second), expected)


@pytest.mark.parametrize("name", RESUMED)
def test_a_tracker_resumed_from_any_epoch_decides_as_an_uninterrupted_one(name: str) -> None:
    train, logs = RESUMED[name]
    assert_resumes_at_every_epoch(train_settings(epochs=len(logs), **train), logs)


def test_meta_is_json_and_names_the_last_epoch() -> None:
    """Before early stopping has watched an epoch its best is infinite: the meta survives JSON
    that allows it (as checkpoints write it), and restores to the same state."""
    settings_ = train_settings(early_stopping={"start_from_epoch": 5, "restore_best_weights": True})
    tracker = Tracker(settings_, weights_of(-1))
    feed(tracker, watching("val_loss", (1.0, 0.5)))
    meta = tracker.meta()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["epoch"] == 1 and meta["early_stopping"]["best"] == math.inf
    assert set(tracker.snapshots()) == {"best"}, "early stopping has no best weights before it watches"
    again = Tracker(settings_, weights_of(-1))
    again.restore(json.loads(json.dumps(meta)), tracker.snapshots())
    assert again.meta() == meta


def test_a_pruned_tracker_stays_pruned_after_restoring() -> None:
    settings_ = train_settings()
    tracker = Tracker(settings_, weights_of(-1))
    feed(tracker, watching("val_accuracy", (0.5, 0.75)))
    tracker.prune()
    again = resumed(settings_, checkpointed(tracker, weights_of(1)))
    assert again.finished and feed(again, watching("val_accuracy", (1.0,) * EPOCHS)).used == []
    assert_same_results(finish(again), finish(tracker))


# ---------------------------------------------------------------------------------------------
# Keras 3's callbacks, transliterated, against the Tracker on drawn sequences


class KerasEarlyStopping:
    """``EarlyStopping.on_train_begin``/``on_epoch_end`` and ``MonitorCallback._is_improvement``
    of Keras 3, statement for statement; weights are represented by the epoch they were taken at."""

    def __init__(
        self, mode: str, patience: int, min_delta: float, baseline: float | None, restore: bool, start: int
    ) -> None:
        self.less = mode == "min"
        self.min_delta = -abs(min_delta) if self.less else abs(min_delta)
        self.patience = patience
        self.baseline = baseline
        self.restore_best_weights = restore
        self.start_from_epoch = start
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = None
        self.best_weights: int | None = None

    def _is_improvement(self, monitor_value: float, reference_value: float | None) -> bool:
        if reference_value is None:
            return True
        shifted = monitor_value - self.min_delta
        return shifted < reference_value if self.less else shifted > reference_value

    def on_epoch_end(self, epoch: int, current: float) -> bool:
        """Returns ``model.stop_training``."""
        if epoch < self.start_from_epoch:
            return False
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = epoch, epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = epoch
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False


class KerasReduceLROnPlateau:
    """``ReduceLROnPlateau.on_epoch_end`` of Keras 3 (3.11 and later), statement for statement, on
    Python floats (Keras compares backend tensors, in float32)."""

    def __init__(self, mode: str, factor: float, patience: int, min_delta: float, cooldown: int, min_lr: float) -> None:
        self.less = mode == "min"
        self.min_delta = -abs(min_delta) if self.less else abs(min_delta)
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.best: float | None = None
        self.wait = self.cooldown_counter = 0

    def on_epoch_end(self, current: float, lr: float) -> float:
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        shifted = current - self.min_delta
        if self.best is None or (shifted < self.best if self.less else shifted > self.best):
            self.best = current
            self.wait = 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                lr = max(lr * self.factor, self.min_lr)
                self.cooldown_counter = self.cooldown
                self.wait = 0
        return lr


DRAWN = settings(max_examples=250, derandomize=True, deadline=None, database=None)
# Values on a grid of tenths and eighths, with min_deltas of the same steps: ties and changes of
# exactly min_delta are common, and tenths do not add exactly in binary.
VALUES = st.lists(st.sampled_from([i / 10 for i in range(11)] + [i / 8 for i in range(9)]), min_size=1, max_size=9)
MIN_DELTAS = st.sampled_from([0.0, 0.1, 0.125, 0.2, 0.25, 0.3])
MONITORS = st.sampled_from(["val_loss", "val_accuracy"])


@DRAWN
@given(
    values=VALUES,
    monitor=MONITORS,
    flip=st.booleans(),
    patience=st.integers(0, 3),
    min_delta=MIN_DELTAS,
    baseline=st.none() | st.sampled_from([0.3, 0.5, 0.75]),
    restore=st.booleans(),
    start=st.integers(0, 3),
)
def test_early_stopping_matches_keras_on_drawn_sequences(
    values: list[float],
    monitor: str,
    flip: bool,
    patience: int,
    min_delta: float,
    baseline: float | None,
    restore: bool,
    start: int,
) -> None:
    natural = "max" if monitor == "val_accuracy" else "min"
    mode = {"min": "max", "max": "min"}[natural] if flip else natural
    keras = KerasEarlyStopping(mode, patience, min_delta, baseline, restore, start)
    trained = len(values)
    for epoch, value in enumerate(values):
        if keras.on_epoch_end(epoch, value):
            trained = epoch + 1
            break
    keras_weights = keras.best_weights if restore and keras.best_weights is not None else trained - 1

    config = {
        "monitor": monitor,
        "mode": mode,
        "patience": patience,
        "min_delta": min_delta,
        "baseline": baseline,
        "restore_best_weights": restore,
        "start_from_epoch": start,
    }
    settings_ = train_settings(epochs=len(values), keep="last", early_stopping=config)
    tracker = Tracker(settings_, weights_of(-1))
    logs = watching(monitor, values)
    feed(tracker, logs)
    result = finish(tracker)
    assert (result.epochs, epoch_of(result.weights)) == (trained, keras_weights)
    assert_resumes_at_every_epoch(settings_, logs)


@DRAWN
@given(
    values=VALUES,
    monitor=MONITORS,
    factor=st.sampled_from([0.1, 0.5, 0.25]),
    patience=st.integers(0, 3),
    min_delta=MIN_DELTAS,
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 0.01, 0.3]),
)
def test_reduce_lr_on_plateau_matches_keras_on_drawn_sequences(
    values: list[float], monitor: str, factor: float, patience: int, min_delta: float, cooldown: int, min_lr: float
) -> None:
    mode = "max" if monitor == "val_accuracy" else "min"
    keras = KerasReduceLROnPlateau(mode, factor, patience, min_delta, cooldown, min_lr)
    lrs = [LR]
    for value in values:
        lrs.append(keras.on_epoch_end(value, lrs[-1]))

    config = {
        "monitor": monitor,
        "factor": factor,
        "patience": patience,
        "min_delta": min_delta,
        "cooldown": cooldown,
        "min_lr": min_lr,
    }
    settings_ = train_settings(epochs=len(values), reduce_lr_on_plateau=config)
    logs = watching(monitor, values)
    trace = feed(Tracker(settings_, weights_of(-1)), logs)
    assert [*trace.used, trace.lr] == lrs
    assert_resumes_at_every_epoch(settings_, logs)
