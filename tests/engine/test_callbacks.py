"""EarlyStopping and ReduceLROnPlateau decisions, hand-traced through Keras 3's rules."""

from __future__ import annotations

import pytest

from trainlab.engine.callbacks import EarlyStopping, ReduceLROnPlateau


def early(**kw: object) -> EarlyStopping:
    cfg = {
        "monitor": "val_loss",
        "mode": "min",
        "patience": 2,
        "min_delta": 0.0,
        "baseline": None,
        "restore_best_weights": False,
        "start_from_epoch": 0,
        **kw,
    }
    return EarlyStopping.of(cfg)


def run(cb: EarlyStopping, values: list[float]) -> tuple[int | None, int]:
    for epoch, value in enumerate(values):
        _, stop = cb.update(epoch, {cb.monitor: value})
        if stop:
            return epoch, cb.best_epoch
    return None, cb.best_epoch


def test_patience_counts_epochs_without_improvement() -> None:
    # best at epoch 1; epochs 2 and 3 do not improve; patience 2 stops at epoch 3
    assert run(early(), [1.0, 0.9, 0.95, 0.96, 0.5]) == (3, 1)


def test_min_delta_requires_a_large_enough_improvement() -> None:
    # report C: min_delta 0.02 — 0.99 and 0.985 are not improvements on 1.0
    assert run(early(min_delta=0.02), [1.0, 0.99, 0.985, 0.5]) == (2, 0)


def test_max_mode_for_accuracy_and_zero_patience() -> None:
    assert run(early(monitor="val_accuracy", mode="max", patience=0), [0.5, 0.6, 0.6]) == (2, 1)


def test_baseline_keeps_waiting_until_beaten() -> None:
    # improvements that do not beat the baseline do not reset the wait: the stop comes one epoch sooner
    values = [1.0, 0.9, 0.95, 0.96, 0.97]
    assert run(early(), values) == (3, 1)
    assert run(early(baseline=0.5), values) == (2, 1)


def test_start_from_epoch_ignores_early_epochs() -> None:
    assert run(early(start_from_epoch=2, patience=1), [0.1, 0.1, 1.0, 1.1, 1.2]) == (3, 2)


def test_state_round_trip_continues_identically() -> None:
    a = early()
    a.update(0, {"val_loss": 1.0})
    a.update(1, {"val_loss": 1.1})
    b = early()
    b.load(a.state())
    assert a.update(2, {"val_loss": 1.2}) == b.update(2, {"val_loss": 1.2}) == (False, True)


def plateau(**kw: object) -> ReduceLROnPlateau:
    cfg = {
        "monitor": "val_loss",
        "mode": "min",
        "factor": 0.5,
        "patience": 2,
        "min_delta": 1e-4,
        "cooldown": 1,
        "min_lr": 0.0,
        **kw,
    }
    return ReduceLROnPlateau.of(cfg)


def test_reduce_lr_with_cooldown_follows_keras() -> None:
    cb, lr, lrs = plateau(), 1.0, []
    for _ in range(7):
        lr = cb.update({"val_loss": 1.0}, lr)
        lrs.append(lr)
    # e0 best; e1 wait 1; e2 wait 2 -> 0.5, cooldown 1; e3 cooldown ends (wait 0) and counts (wait 1);
    # e4 wait 2 -> 0.25; e5 like e3; e6 -> 0.125
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    cb, lr, lrs = plateau(cooldown=3), 1.0, []
    for _ in range(7):
        lr = cb.update({"val_loss": 1.0}, lr)
        lrs.append(lr)
    # cooldown 3: after the cut at e2, e3 and e4 are cooling down, e5 ends it and counts, e6 cuts
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_reduce_lr_respects_min_lr_and_improvement() -> None:
    cb, lr = plateau(min_lr=0.3, cooldown=0, patience=1), 1.0
    lr = cb.update({"val_loss": 1.0}, lr)
    lr = cb.update({"val_loss": 0.5}, lr)
    assert lr == 1.0
    lrs = [lr := cb.update({"val_loss": 0.6}, lr) for _ in range(3)]
    assert lrs == [0.5, pytest.approx(0.3), pytest.approx(0.3)]
