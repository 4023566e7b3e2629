"""The store contract: every backend passes :class:`TestStoreContract` (SQLite's file handling: test_sqlite.py).

A backend plugs in by adding an entry to ``BACKENDS``: a function that, given a temporary
directory, returns a factory opening another handle on one shared store location (each
handle stands for another process) with the given options (``lease``, ``clock``).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest
from factories import RECORD_SPEC as SPEC
from factories import make_study, new_trials

from trainlab.errors import StoreError
from trainlab.store import (
    CHECKPOINT,
    FINISHED_STATUSES,
    STATUSES,
    WEIGHTS,
    ClaimLostError,
    NewTrial,
    SQLiteStore,
    Status,
    Store,
    make_owner,
)


class StoreFactory(Protocol):
    def __call__(self, **options: Any) -> Store: ...


class FakeClock:
    """A settable time source for lease tests."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _sqlite_backend(tmp_path: Path) -> tuple[StoreFactory, Callable[[], None]]:
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        store = SQLiteStore.open(tmp_path / "store.db", **options)
        opened.append(store)
        return store

    def close_all() -> None:
        for store in opened:
            store.close()

    return make, close_all


BACKENDS: dict[str, Callable[[Path], tuple[StoreFactory, Callable[[], None]]]] = {
    "sqlite": _sqlite_backend,
}

# An owner on this host whose process cannot exist: beyond any pid the kernel hands out.
DEAD_OWNER = f"{socket.gethostname()}:{2**31 - 2}:dead"


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    make, close_all = BACKENDS[request.param](tmp_path)
    yield make
    close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


class TestStoreContract:
    """What every backend promises; see :class:`trainlab.store.Store`."""

    # --- studies and trials -------------------------------------------------------------

    def test_new_store_is_empty(self, store: Store) -> None:
        assert store.studies() == []
        assert store.study("nope") is None

    def test_study_round_trip(self, store: Store) -> None:
        study_id = store.ensure_study("mnist", SPEC, "abc", "studies/mnist.toml")
        record = store.study("mnist")
        assert record is not None
        assert (record.id, record.name, record.spec_json, record.spec_hash, record.source) == (
            study_id,
            "mnist",
            SPEC,
            "abc",
            "studies/mnist.toml",
        )
        assert record.created > 0
        assert store.ensure_study("mnist", SPEC, "abc", "studies/mnist.toml") == study_id
        other = store.ensure_study("cifar", "{}", "def", None)
        assert [s.name for s in store.studies()] == ["mnist", "cifar"]
        assert other != study_id

    def test_changed_spec_updates_study_and_keeps_trials(self, store: Store) -> None:
        study_id = make_study(store, 2)
        assert store.ensure_study("study", '{"model": "cnn"}', "new-hash", "elsewhere.toml") == study_id
        record = store.study("study")
        assert record is not None
        assert (record.spec_json, record.spec_hash, record.source) == ('{"model": "cnn"}', "new-hash", "elsewhere.toml")
        assert [t.hash for t in store.trials(study_id)] == ["h0", "h1"]

    def test_trial_round_trip(self, store: Store) -> None:
        study_id = store.ensure_study("s", SPEC, "x", None)
        params = {"optimizer": {"name": "adam", "beta_1": 0.9}, "layers": [128, 64], "bn": True}
        store.add_trials(study_id, [NewTrial("t1", "adam/bn", params, 2**62 + 7, '{"resolved": 1}')])
        (trial,) = store.trials(study_id)
        assert (trial.study_id, trial.hash, trial.label, trial.params, trial.seed, trial.spec_json) == (
            study_id,
            "t1",
            "adam/bn",
            params,
            2**62 + 7,
            '{"resolved": 1}',
        )
        assert (trial.status, trial.owner, trial.heartbeat, trial.attempts) == ("pending", None, None, 0)
        assert (trial.started, trial.finished, trial.error, trial.result) == (None, None, None, None)
        assert store.trial(trial.id) == trial
        assert store.trial(trial.id + 1000) is None

    def test_add_trials_is_idempotent(self, store: Store) -> None:
        study_id = make_study(store, 3)
        owner = make_owner()
        claimed = store.claim_next(study_id, owner)
        assert claimed is not None
        changed = [NewTrial("h0", "relabelled", {"other": 1}, 99, "{}"), *new_trials(5)[3:]]
        store.add_trials(study_id, changed)
        store.add_trials(study_id, changed)
        trials = store.trials(study_id)
        assert [t.hash for t in trials] == ["h0", "h1", "h2", "h3", "h4"]
        assert (trials[0].label, trials[0].seed, trials[0].status, trials[0].owner) == ("lr=0", 0, "running", owner)

    def test_add_trials_to_unknown_study_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="no study"):
            store.add_trials(12345, new_trials(1))

    def test_trials_filters(self, store: Store) -> None:
        study_id = make_study(store, 4)
        owner = make_owner()
        store.claim_next(study_id, owner)
        assert [t.hash for t in store.trials(study_id, status="running")] == ["h0"]
        assert [t.hash for t in store.trials(study_id, status="pending")] == ["h1", "h2", "h3"]
        assert [t.hash for t in store.trials(study_id, hashes={"h3", "h0"})] == ["h0", "h3"]
        assert [t.hash for t in store.trials(study_id, status="pending", hashes=["h0", "h2"])] == ["h2"]

    def test_status_counts(self, store: Store) -> None:
        study_id = make_study(store, 5)
        owner = make_owner()
        for status in ("done", "failed", "diverged"):
            trial = store.claim_next(study_id, owner)
            assert trial is not None
            store.finish_trial(trial.id, owner, status)
        store.claim_next(study_id, owner)
        expected = {"pending": 1, "running": 1, "done": 1, "failed": 1, "diverged": 1, "pruned": 0}
        assert store.status_counts(study_id) == expected
        assert list(store.status_counts(study_id)) == list(STATUSES)
        assert store.status_counts(study_id, hashes={"h0", "h4"}) == {
            **dict.fromkeys(STATUSES, 0),
            "done": 1,
            "pending": 1,
        }

    # --- claiming -----------------------------------------------------------------------

    def test_claim_next_in_insertion_order(self, store: Store) -> None:
        study_id = store.ensure_study("s", SPEC, "x", None)
        store.add_trials(study_id, [NewTrial(h, h, {}, 0, "{}") for h in ("zz", "aa", "mm")])
        owner = make_owner()
        claimed = [store.claim_next(study_id, owner) for _ in range(3)]
        assert [t.hash for t in claimed if t is not None] == ["zz", "aa", "mm"]
        assert store.claim_next(study_id, owner) is None
        for trial in claimed:
            assert trial is not None
            assert (trial.status, trial.owner, trial.attempts) == ("running", owner, 1)
            assert trial.heartbeat is not None and trial.started == trial.heartbeat

    def test_claim_next_restricted_to_hashes(self, store: Store) -> None:
        study_id = make_study(store, 4)
        owner = make_owner()
        trial = store.claim_next(study_id, owner, hashes={"h2", "h3"})
        assert trial is not None and trial.hash == "h2"
        assert store.claim_next(study_id, owner, hashes=set()) is None
        assert store.claim_next(study_id, owner, hashes={"h2"}) is None

    def test_claims_are_exclusive_across_handles(self, store_factory: StoreFactory) -> None:
        first, second = store_factory(), store_factory()
        study_id = make_study(first, 6)
        owners = [make_owner(), make_owner()]
        taken: list[int] = []
        for i in range(6):
            trial = (first, second)[i % 2].claim_next(study_id, owners[i % 2])
            assert trial is not None
            taken.append(trial.id)
        assert len(set(taken)) == 6
        assert first.claim_next(study_id, owners[0]) is None
        assert second.claim(taken[0], owners[1]) is False
        assert second.trial(taken[0]).owner == owners[0]  # type: ignore[union-attr]

    def test_claim_specific_trial(self, store: Store) -> None:
        study_id = make_study(store, 2)
        owner, other = make_owner(), make_owner()
        trial_id = store.trials(study_id)[1].id
        assert store.claim(trial_id, owner) is True
        assert store.claim(trial_id, owner) is True
        assert store.trial(trial_id).attempts == 1  # type: ignore[union-attr]
        assert store.claim(trial_id, other) is False
        assert store.claim(10_000, owner) is False
        assert store.claim_next(study_id, other).hash == "h0"  # type: ignore[union-attr]

    def test_trial_of_dead_local_process_is_reclaimed(self, store: Store) -> None:
        study_id = make_study(store, 2)
        assert store.claim(store.trials(study_id)[0].id, DEAD_OWNER)
        store.record_epoch(store.trials(study_id)[0].id, DEAD_OWNER, 0, {"loss": 1.0}, b"state-0")
        before = store.trials(study_id)[0]
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None and trial.id == before.id
        assert (trial.owner, trial.attempts, trial.started) == (owner, 2, before.started)
        checkpoint = store.artifact(trial.id, CHECKPOINT)
        assert checkpoint is not None and (checkpoint.data, checkpoint.epoch) == (b"state-0", 0)
        with pytest.raises(ClaimLostError, match=str(trial.id)):
            store.record_epoch(trial.id, DEAD_OWNER, 1, {"loss": 0.5})
        assert len(store.epochs(trial.id)) == 1

    def test_live_local_owner_keeps_trial_despite_old_heartbeat(self, store_factory: StoreFactory) -> None:
        clock = FakeClock()
        store = store_factory(lease=60.0, clock=clock)
        study_id = make_study(store, 1)
        owner = make_owner()
        assert store.claim_next(study_id, owner) is not None
        clock.now += 10 * 60.0
        assert store.claim_next(study_id, make_owner()) is None

    def test_trial_of_silent_remote_owner_is_reclaimed_after_lease(self, store_factory: StoreFactory) -> None:
        clock = FakeClock()
        store = store_factory(lease=60.0, clock=clock)
        study_id = make_study(store, 1)
        remote = "other-host.example:4242:abcd"
        trial_id = store.trials(study_id)[0].id
        assert store.claim(trial_id, remote)
        clock.now += 50.0
        assert store.claim_next(study_id, make_owner()) is None
        store.heartbeat(trial_id, remote)
        clock.now += 50.0
        assert store.claim_next(study_id, make_owner()) is None
        clock.now += 11.0
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None and (trial.id, trial.owner, trial.attempts) == (trial_id, owner, 2)
        with pytest.raises(ClaimLostError):
            store.heartbeat(trial_id, remote)

    @pytest.mark.parametrize("status", sorted(FINISHED_STATUSES))
    def test_finished_trials_are_never_reclaimed(self, store: Store, status: str) -> None:
        study_id = make_study(store, 1)
        trial = store.claim_next(study_id, DEAD_OWNER)
        assert trial is not None
        store.finish_trial(trial.id, DEAD_OWNER, status)  # type: ignore[arg-type]
        owner = make_owner()
        assert store.claim_next(study_id, owner) is None
        assert store.claim(trial.id, owner) is False
        assert store.trial(trial.id).status == status  # type: ignore[union-attr]

    def test_reset_trials_reruns_from_scratch(self, store: Store) -> None:
        study_id = make_study(store, 3)
        owner = make_owner()
        statuses: list[Status] = ["failed", "done", "diverged"]
        for status in statuses:
            trial = store.claim_next(study_id, owner)
            assert trial is not None
            store.record_epoch(trial.id, owner, 0, {"loss": 1.0}, b"ck")
            store.finish_trial(trial.id, owner, status, result={"acc": 0.5}, weights=b"w", error="boom")
        assert store.reset_trials(study_id, ["failed", "diverged"]) == 2
        assert store.reset_trials(study_id, ["pruned"]) == 0
        failed, done, diverged = store.trials(study_id)
        for trial in (failed, diverged):
            assert (trial.status, trial.owner, trial.result, trial.error, trial.finished) == (
                "pending",
                None,
                None,
                None,
                None,
            )
            assert trial.attempts == 1
            assert store.epochs(trial.id) == []
            assert store.artifact(trial.id, WEIGHTS) is None
        assert done.status == "done" and store.artifact(done.id, WEIGHTS) is not None
        again = store.claim_next(study_id, owner)
        assert again is not None and (again.id, again.attempts) == (failed.id, 2)
        with pytest.raises(ValueError, match="running"):
            store.reset_trials(study_id, ["running"])

    # --- running a trial ----------------------------------------------------------------

    def test_epoch_and_checkpoint_round_trip(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        blob = bytes(range(256)) * 4096
        for epoch in range(3):
            metrics = {"train_loss": 1.0 / (epoch + 1), "val_accuracy": 0.5 + epoch / 10, "seconds": 0.25}
            store.record_epoch(trial.id, owner, epoch, metrics, blob + bytes([epoch]), checkpoint_format="torch.save")
        epochs = store.epochs(trial.id)
        assert [e.epoch for e in epochs] == [0, 1, 2]
        assert epochs[1].metrics == {"train_loss": 0.5, "val_accuracy": 0.6, "seconds": 0.25}
        assert all(e.trial_id == trial.id and e.recorded > 0 for e in epochs)
        checkpoint = store.artifact(trial.id, CHECKPOINT)
        assert checkpoint is not None
        assert (checkpoint.data, checkpoint.format, checkpoint.epoch, checkpoint.kind) == (
            blob + b"\x02",
            "torch.save",
            2,
            CHECKPOINT,
        )
        assert store.artifact(trial.id, WEIGHTS) is None

    def test_record_epoch_refreshes_heartbeat(self, store_factory: StoreFactory) -> None:
        clock = FakeClock()
        store = store_factory(clock=clock)
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        clock.now += 5.0
        store.record_epoch(trial.id, owner, 0, {"loss": 1.0})
        assert store.trial(trial.id).heartbeat == clock.now  # type: ignore[union-attr]
        clock.now += 5.0
        store.heartbeat(trial.id, owner)
        assert store.trial(trial.id).heartbeat == clock.now  # type: ignore[union-attr]

    def test_writes_by_a_non_owner_are_refused(self, store: Store) -> None:
        study_id = make_study(store, 2)
        owner, intruder = make_owner(), make_owner()
        trial = store.claim_next(study_id, owner)
        pending = store.trials(study_id, status="pending")[0]
        assert trial is not None
        with pytest.raises(ClaimLostError, match=intruder):
            store.record_epoch(trial.id, intruder, 0, {"loss": 1.0}, b"x")
        with pytest.raises(ClaimLostError):
            store.record_epoch(pending.id, owner, 0, {"loss": 1.0})
        with pytest.raises(ClaimLostError):
            store.heartbeat(trial.id, intruder)
        with pytest.raises(ClaimLostError):
            store.finish_trial(trial.id, intruder, "done")
        with pytest.raises(ClaimLostError):
            store.record_epoch(10_000, owner, 0, {"loss": 1.0})
        assert store.epochs(trial.id) == [] and store.artifact(trial.id, CHECKPOINT) is None
        store.finish_trial(trial.id, owner, "done")
        with pytest.raises(ClaimLostError, match="done"):
            store.record_epoch(trial.id, owner, 1, {"loss": 1.0})
        assert isinstance(ClaimLostError("x"), StoreError)

    def test_re_recording_an_epoch_after_resume_does_not_duplicate(self, store: Store) -> None:
        study_id = make_study(store, 1)
        trial = store.claim_next(study_id, DEAD_OWNER)
        assert trial is not None
        store.record_epoch(trial.id, DEAD_OWNER, 0, {"loss": 3.0}, b"ck0")
        store.record_epoch(trial.id, DEAD_OWNER, 1, {"loss": 2.0}, b"ck1")
        store.record_epoch(trial.id, DEAD_OWNER, 2, {"loss": 1.9})  # no checkpoint this epoch
        owner = make_owner()
        assert store.claim_next(study_id, owner) is not None
        checkpoint = store.artifact(trial.id, CHECKPOINT)
        assert checkpoint is not None and checkpoint.epoch == 1
        store.record_epoch(trial.id, owner, 2, {"loss": 1.5}, b"ck2")
        store.record_epoch(trial.id, owner, 2, {"loss": 1.4}, b"ck2b")
        store.record_epoch(trial.id, owner, 3, {"loss": 1.0}, b"ck3")
        assert [(e.epoch, e.metrics["loss"]) for e in store.epochs(trial.id)] == [
            (0, 3.0),
            (1, 2.0),
            (2, 1.4),
            (3, 1.0),
        ]

    def test_recording_an_earlier_epoch_discards_later_history(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        for epoch in range(5):
            store.record_epoch(trial.id, owner, epoch, {"loss": float(epoch)}, b"ck" if epoch == 3 else None)
        store.record_epoch(trial.id, owner, 0, {"loss": 9.0})
        assert [(e.epoch, e.metrics["loss"]) for e in store.epochs(trial.id)] == [(0, 9.0)]
        assert store.artifact(trial.id, CHECKPOINT) is None

    def test_finish_keeps_weights_and_drops_checkpoint(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        store.record_epoch(trial.id, owner, 0, {"loss": 1.0}, b"checkpoint")
        result = {"test_accuracy": 0.97, "chosen_epoch": 0, "stopped": "early_stopping"}
        store.finish_trial(trial.id, owner, "done", result=result, weights=b"weights", weights_format="safetensors")
        assert store.artifact(trial.id, CHECKPOINT) is None
        weights = store.artifact(trial.id, WEIGHTS)
        assert weights is not None and (weights.data, weights.format, weights.epoch) == (
            b"weights",
            "safetensors",
            None,
        )
        finished = store.trial(trial.id)
        assert finished is not None
        assert (finished.status, finished.result, finished.error) == ("done", result, None)
        assert finished.finished is not None and finished.finished >= finished.started  # type: ignore[operator]
        assert [e.epoch for e in store.epochs(trial.id)] == [0]

    def test_failed_trial_keeps_error_text(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        store.finish_trial(trial.id, owner, "failed", error="Traceback ...\nRuntimeError: boom")
        failed = store.trial(trial.id)
        assert failed is not None and (failed.status, failed.error) == ("failed", "Traceback ...\nRuntimeError: boom")

    def test_finish_with_unfinished_status_is_refused(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        for status in ("running", "pending", "succeeded"):
            with pytest.raises(ValueError, match="status"):
                store.finish_trial(trial.id, owner, status)  # type: ignore[arg-type]
        assert store.trial(trial.id).status == "running"  # type: ignore[union-attr]

    def test_release_gives_trial_back_with_its_progress(self, store: Store) -> None:
        study_id = make_study(store, 2)
        owner, other = make_owner(), make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        store.record_epoch(trial.id, owner, 0, {"loss": 1.0}, b"ck")
        store.release(trial.id, other)
        assert store.trial(trial.id).owner == owner  # type: ignore[union-attr]
        store.release(trial.id, owner)
        released = store.trial(trial.id)
        assert released is not None and (released.status, released.owner, released.heartbeat) == ("pending", None, None)
        assert store.artifact(trial.id, CHECKPOINT) is not None and len(store.epochs(trial.id)) == 1
        with pytest.raises(ClaimLostError):
            store.record_epoch(trial.id, owner, 1, {"loss": 0.5})
        resumed = store.claim_next(study_id, other)
        assert resumed is not None and (resumed.id, resumed.attempts) == (trial.id, 2)

    def test_non_finite_metrics_round_trip(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        metrics = {"loss": math.nan, "val_loss": math.inf, "grad": -math.inf, "val_accuracy": None, "lr": 1}
        store.record_epoch(trial.id, owner, 0, metrics)
        (epoch,) = store.epochs(trial.id)
        got = epoch.metrics
        assert set(got) == set(metrics)
        assert math.isnan(got["loss"])  # type: ignore[arg-type]
        assert (got["val_loss"], got["grad"], got["val_accuracy"], got["lr"]) == (math.inf, -math.inf, None, 1.0)
        assert isinstance(got["lr"], float)
        store.finish_trial(trial.id, owner, "diverged", result={"test_loss": math.nan, "per_class": [math.inf, 0.5]})
        result = store.trial(trial.id).result  # type: ignore[union-attr]
        assert result is not None and math.isnan(result["test_loss"]) and result["per_class"] == [math.inf, 0.5]

    def test_metrics_must_be_numbers(self, store: Store) -> None:
        study_id = make_study(store, 1)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        with pytest.raises(TypeError, match="'note'"):
            store.record_epoch(trial.id, owner, 0, {"loss": 1.0, "note": "fast"})  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            store.record_epoch(trial.id, owner, -1, {"loss": 1.0})
        assert store.epochs(trial.id) == []

    def test_data_survives_reopening(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        study_id = make_study(store, 2)
        owner = make_owner()
        trial = store.claim_next(study_id, owner)
        assert trial is not None
        store.record_epoch(trial.id, owner, 0, {"loss": 1.0}, b"ck")
        store.close()
        reopened = store_factory()
        again = reopened.trial(trial.id)
        assert again is not None and again == replace(trial, heartbeat=again.heartbeat)
        assert [e.epoch for e in reopened.epochs(trial.id)] == [0]
        assert reopened.artifact(trial.id, CHECKPOINT).data == b"ck"  # type: ignore[union-attr]

    def test_closed_store_refuses_use(self, store_factory: StoreFactory) -> None:
        with store_factory() as store:
            store.ensure_study("s", SPEC, "x", None)
        with pytest.raises(StoreError, match="closed"):
            store.studies()
        store.close()
