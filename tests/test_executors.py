"""The executors' parts: claiming a population's members, the checkpoint clock, recording events,
a population that fails, training without a store, and the worker count.

``train_population`` is the seam between training and the store: its events, trained without a
store, are checked against what ``run_local`` records for the same trials.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import RECORD_SPEC, load_study, npz_study, tiny_study_tables, with_tiny_npz

from trainlab import executors, planner, spec
from trainlab.data.cache import DataCache
from trainlab.engine.checkpoint import unpack
from trainlab.errors import TrainlabError
from trainlab.executors import (
    CheckpointPolicy,
    EpochEnded,
    Event,
    Recorder,
    Silent,
    TrialEnded,
    UnitFailed,
    UnitJob,
    auto_workers,
    check_data,
    claim_members,
    error_text,
    register,
    release_all,
    run_local,
    run_population,
    start_epoch,
    train_population,
)
from trainlab.store import CHECKPOINT, WEIGHTS, ClaimLostError, NewTrial, Store, TrialRecord, make_owner
from trainlab.trial import TrialSpec


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "s.db") as opened:
        yield opened


class Recording(Silent):
    """A reporter that writes down what it is told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[Any, ...]] = []

    def epoch_finished(self, trial: TrialRecord, epoch: int, logs: Mapping[str, float]) -> None:
        self.told.append(("epoch", trial.hash, epoch))

    def trial_finished(self, trial: TrialRecord, status: str, result: Mapping[str, Any]) -> None:
        self.told.append(("finished", trial.hash, status, dict(result)))


# ---------------------------------------------------------------------------------------------
# claim_members: who trains with the leader


def planned_study(store: Store, plans: Mapping[str, str | None], name: str = "study") -> int:
    """A study whose trials (named by hash) carry the population ids ``plans`` gives (None: no plan)."""
    study_id = store.ensure_study(name, RECORD_SPEC, f"{name}-hash", f"{name}.toml")
    store.add_trials(study_id, [NewTrial(h, h, {}, 0, RECORD_SPEC) for h in plans])
    store.set_plans(study_id, {h: {"population": p, "members": 2} for h, p in plans.items() if p is not None})
    return study_id


def by_hash(store: Store, study_id: int) -> dict[str, TrialRecord]:
    return {t.hash: t for t in store.trials(study_id)}


def checkpoint_at(store: Store, trial: TrialRecord, epoch: int) -> None:
    """Leave ``trial`` pending with a checkpoint written with ``epoch`` (it resumes after it)."""
    owner = make_owner()
    assert store.claim(trial.id, owner)
    store.record_epoch(trial.id, owner, epoch, {"loss": 1.0}, b"state", checkpoint_format="safetensors")
    store.release(trial.id, owner)


# name: (each trial's population id, its checkpoint's epoch (None: none) and what holds it
# ("pending", "another owner" or "done"), the members claimed with the leader "a")
CLAIMS: dict[str, tuple[dict[str, tuple[str | None, int | None, str]], list[str]]] = {
    "the pending trials of the leader's population": (
        {"a": ("P", None, "pending"), "b": ("P", None, "pending"), "c": ("P", None, "pending")},
        ["b", "c"],
    ),
    "not another population's, nor an unplanned trial": (
        {"a": ("P", None, "pending"), "b": ("Q", None, "pending"), "c": (None, None, "pending")},
        [],
    ),
    "not one resuming at another epoch": (
        {"a": ("P", None, "pending"), "b": ("P", 1, "pending"), "c": ("P", None, "pending")},
        ["c"],
    ),
    "those resuming at the leader's epoch": (
        {"a": ("P", 2, "pending"), "b": ("P", 2, "pending"), "c": ("P", None, "pending")},
        ["b"],
    ),
    "not one another owner holds": ({"a": ("P", None, "pending"), "b": ("P", None, "another owner")}, []),
    "not a finished one": ({"a": ("P", None, "pending"), "b": ("P", None, "done")}, []),
}


@pytest.mark.parametrize("case", CLAIMS)
def test_claim_members_takes_the_leaders_population_at_its_epoch(store: Store, case: str) -> None:
    trials, expected = CLAIMS[case]
    study_id = planned_study(store, {h: p for h, (p, _, _) in trials.items()})
    records = by_hash(store, study_id)
    other = make_owner()
    for h, (_, epoch, state) in trials.items():
        if epoch is not None:
            checkpoint_at(store, records[h], epoch)
        if state != "pending":
            assert store.claim(records[h].id, other)
        if state == "done":
            store.finish_trial(records[h].id, other, "done", result={})
    owner = make_owner()
    leader = store.claim_next(study_id, owner)
    assert leader is not None and leader.hash == "a"
    members = claim_members(leader, store, study_id, set(trials), owner)
    assert [m.hash for m in members] == expected
    now = by_hash(store, study_id)
    held = sorted(h for h, t in now.items() if t.status == "running" and t.owner == owner)
    assert held == sorted(["a", *expected]), "the members are claimed for the owner, nothing else is"


def test_claim_members_stays_within_the_study_and_the_wanted_trials(store: Store) -> None:
    first = planned_study(store, {"a": "P", "b": "P", "c": "P"}, name="first")
    second = planned_study(store, {"x": "P", "y": "P"}, name="second")
    owner = make_owner()
    leader = store.claim_next(first, owner)
    assert leader is not None
    assert [m.hash for m in claim_members(leader, store, first, {"a", "b"}, owner)] == ["b"]
    assert all(t.status == "pending" for t in store.trials(second)), "a population never crosses studies"
    assert by_hash(store, first)["c"].status == "pending", "a trial outside the run's trials is left"


def test_a_leader_without_a_population_trains_alone(store: Store) -> None:
    study_id = planned_study(store, {"a": None, "b": None})
    owner = make_owner()
    leader = store.claim_next(study_id, owner)
    assert leader is not None and claim_members(leader, store, study_id, {"a", "b"}, owner) == []


def test_start_epoch_is_after_the_stored_checkpoint(store: Store) -> None:
    study_id = planned_study(store, {"a": "P", "b": "P"})
    records = by_hash(store, study_id)
    checkpoint_at(store, records["b"], 3)
    assert (start_epoch(store, records["a"]), start_epoch(store, records["b"])) == (0, 4)


def test_release_all_gives_back_only_the_owners_trials(store: Store) -> None:
    study_id = planned_study(store, {"a": "P", "b": "P", "c": "P"})
    records = by_hash(store, study_id)
    mine, theirs = make_owner(), make_owner()
    assert store.claim(records["a"].id, mine) and store.claim(records["b"].id, theirs)
    release_all(store, study_id, mine)
    now = by_hash(store, study_id)
    assert (now["a"].status, now["b"].status, now["b"].owner) == ("pending", "running", theirs)


# ---------------------------------------------------------------------------------------------
# CheckpointPolicy


def test_policy_writes_a_checkpoint_when_the_interval_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks: Iterator[float] = itertools.count()
    monkeypatch.setattr(executors, "_monotonic", lambda: float(next(ticks)))
    policy = CheckpointPolicy(2.5)  # created at t=0
    assert [policy.due(e) for e in range(6)] == [False, False, True, False, False, True]  # t = 1..6
    assert policy.due(5) and not policy.due(6)  # one decision per epoch, whoever asks (t = 7)
    assert all(CheckpointPolicy(0).due(e) for e in range(3))
    with pytest.raises(ValueError):
        CheckpointPolicy(-1)


def test_every_member_of_a_population_gets_the_epochs_one_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members ask in turn; the clock is read once per epoch, so they checkpoint the same epochs."""
    ticks: Iterator[float] = itertools.count()
    monkeypatch.setattr(executors, "_monotonic", lambda: float(next(ticks)))
    policy = CheckpointPolicy(2)  # t=0
    asked = [[policy.due(epoch) for _member in range(3)] for epoch in range(4)]  # epochs at t = 1, 2, 3, 4
    assert asked == [[False] * 3, [True] * 3, [False] * 3, [True] * 3]


def test_a_policy_refuses_an_interval_that_is_not_a_number_of_seconds() -> None:
    with pytest.raises(ValueError, match="must be >= 0 seconds, got nan"):
        CheckpointPolicy(float("nan"))
    assert CheckpointPolicy().every == executors.CHECKPOINT_EVERY == 10.0


# ---------------------------------------------------------------------------------------------
# Recorder: events to the store, in order


def claimed(store: Store, study_id: int, owner: str) -> list[TrialRecord]:
    trials = []
    while (trial := store.claim_next(study_id, owner)) is not None:
        trials.append(trial)
    return trials


def test_recorder_writes_each_event_as_it_comes(store: Store) -> None:
    study_id = planned_study(store, {"a": "P", "b": "P"})
    owner = make_owner()
    trials = claimed(store, study_id, owner)
    reporter = Recording()
    recorder = Recorder(trials, store, owner, reporter)
    a, b = trials

    recorder.record(EpochEnded(0, 0, {"loss": 1.5}, b"a after 0"))
    recorder.record(EpochEnded(1, 0, {"loss": 2.5}, None))
    saved = store.artifact(a.id, CHECKPOINT)
    assert saved is not None and (saved.epoch, saved.data) == (0, b"a after 0")
    assert store.artifact(b.id, CHECKPOINT) is None, "an epoch without a checkpoint leaves none"
    recorder.record(EpochEnded(0, 1, {"loss": 0.5}, None))
    recorder.record(TrialEnded(0, "done", {"best_epoch": 1}, b"a's weights"))
    assert recorder.unfinished == [b] and recorder.statuses() == ["done", "lost"]
    recorder.record(UnitFailed("Traceback (most recent call last):\n  ...\nRuntimeError: boom\n"))

    assert [(e.epoch, e.metrics["loss"]) for e in store.epochs(a.id)] == [(0, 1.5), (1, 0.5)]
    assert [(e.epoch, e.metrics["loss"]) for e in store.epochs(b.id)] == [(0, 2.5)]
    done, failed = store.trial(a.id), store.trial(b.id)
    assert done is not None and (done.status, done.result) == ("done", {"best_epoch": 1})
    weights = store.artifact(a.id, WEIGHTS)
    assert weights is not None and weights.data == b"a's weights"
    assert failed is not None and failed.status == "failed"
    assert failed.error == "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n", "the whole error is kept"
    assert reporter.told == [
        ("epoch", "a", 0),
        ("epoch", "b", 0),
        ("epoch", "a", 1),
        ("finished", "a", "done", {"best_epoch": 1}),
        ("finished", "b", "failed", {"error": "RuntimeError: boom"}),
    ], "the reporter hears each event in order; a failure by its last line"
    assert recorder.statuses() == ["done", "failed"] and recorder.unfinished == []


def test_recorder_release_gives_back_the_unfinished_with_their_epochs(store: Store) -> None:
    study_id = planned_study(store, {"a": "P", "b": "P"})
    owner = make_owner()
    recorder = Recorder(claimed(store, study_id, owner), store, owner, Silent())
    recorder.record(EpochEnded(1, 0, {"loss": 1.0}, b"b after 0"))
    recorder.record(TrialEnded(0, "pruned", {}, b"w"))
    recorder.release()
    now = by_hash(store, study_id)
    assert (now["a"].status, now["b"].status, now["b"].owner) == ("pruned", "pending", None)
    assert [e.epoch for e in store.epochs(now["b"].id)] == [0] and start_epoch(store, now["b"]) == 1


def test_a_recorder_that_lost_its_claim_writes_nothing(store: Store) -> None:
    study_id = planned_study(store, {"a": "P"})
    owner = make_owner()
    recorder = Recorder(claimed(store, study_id, owner), store, owner, Silent())
    store.release(recorder.trials[0].id, owner)
    with pytest.raises(ClaimLostError):
        recorder.record(EpochEnded(0, 0, {"loss": 1.0}, None))
    assert store.epochs(recorder.trials[0].id) == []


# ---------------------------------------------------------------------------------------------
# run_population: a population that fails, is interrupted or loses its claim


@pytest.fixture
def tiny(tmp_path: Path) -> spec.Study:
    """SGD against Adam on the tiny data set, one seed, three epochs: one population of two."""
    with_tiny_npz(tmp_path)
    return load_study(tmp_path, tiny_study_tables(epochs=3, seeds=[0]), name="tiny")


def population_of(study: spec.Study, store: Store, cache: DataCache) -> tuple[str, list[TrialRecord]]:
    """The study registered and planned in ``store``, and its population claimed by a new owner."""
    study_id, hashes = register(study, store)
    executors.plan_unplanned(store, study_id, hashes, cache)
    owner = make_owner()
    leader = store.claim_next(study_id, owner)
    assert leader is not None
    return owner, [leader, *claim_members(leader, store, study_id, set(hashes), owner)]


LOGS = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "learning_rate": 0.1, "seconds": 0.1}


def breaking(exc: BaseException, before: Callable[[], None] = lambda: None) -> Callable[..., None]:
    """A ``train_population`` that ends the first member, records an epoch of the second, then raises ``exc``."""

    def train(job: UnitJob, cache: DataCache, emit: Callable[[Event], None], *args: Any, **kwargs: Any) -> None:
        emit(EpochEnded(0, 0, LOGS, None))
        emit(TrialEnded(0, "done", {"best": LOGS}, b"weights"))
        before()
        emit(EpochEnded(1, 0, LOGS, None))
        raise exc

    return train


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (RuntimeError("boom: the step broke"), "RuntimeError: boom: the step broke"),
        (TrainlabError("the data set is damaged"), "the data set is damaged"),
    ],
)
def test_a_population_that_raises_fails_its_unfinished_trials_with_the_error(
    tiny: spec.Study, store: Store, monkeypatch: pytest.MonkeyPatch, exc: Exception, error: str
) -> None:
    cache = DataCache()
    owner, trials = population_of(tiny, store, cache)
    assert len(trials) == 2
    monkeypatch.setattr(executors, "train_population", breaking(exc))
    reporter = Recording()
    assert run_population(trials, store, owner, cache, reporter) == ["done", "failed"]
    first, second = (store.trial(t.id) for t in trials)
    assert first is not None and (first.status, first.error) == ("done", None)
    assert second is not None and second.status == "failed" and second.error is not None
    if isinstance(exc, TrainlabError):
        assert second.error == error, "a user's problem is recorded as its message"
    else:
        assert second.error.startswith("Traceback") and second.error.rstrip().endswith(error)
    assert [e.epoch for e in store.epochs(second.id)] == [0], "its recorded epochs stay"
    assert reporter.told[-1] == ("finished", second.hash, "failed", {"error": error})


def test_an_interrupted_population_gives_its_unfinished_trials_back(
    tiny: spec.Study, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DataCache()
    owner, trials = population_of(tiny, store, cache)
    monkeypatch.setattr(executors, "train_population", breaking(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_population(trials, store, owner, cache, Silent())
    first, second = (store.trial(t.id) for t in trials)
    assert first is not None and second is not None
    assert (first.status, second.status, second.owner) == ("done", "pending", None)
    assert [e.epoch for e in store.epochs(second.id)] == [0]


def test_a_population_that_lost_its_claim_leaves_the_trial_to_its_new_holder(
    tiny: spec.Study, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DataCache()
    owner, trials = population_of(tiny, store, cache)
    successor = make_owner()

    def taken_over() -> None:
        store.release(trials[1].id, owner)
        assert store.claim(trials[1].id, successor)

    monkeypatch.setattr(executors, "train_population", breaking(RuntimeError("never reached"), taken_over))
    assert run_population(trials, store, owner, cache, Silent()) == ["done", "lost"]
    second = store.trial(trials[1].id)
    assert second is not None and (second.status, second.owner, second.error) == ("running", successor, None)
    assert store.epochs(second.id) == [], "nothing is written for a trial another process holds"


def test_error_text_is_a_users_message_or_the_whole_traceback() -> None:
    assert error_text(TrainlabError("no such data set")) == "no such data set"
    try:
        raise ValueError("bad shape")
    except ValueError as exc:
        text = error_text(exc)
    assert text.startswith("Traceback (most recent call last):") and text.endswith("ValueError: bad shape\n")
    assert "test_error_text_is_a_users_message_or_the_whole_traceback" in text


# ---------------------------------------------------------------------------------------------
# train_population without a store, against run_local


def without_metadata(weights: bytes) -> dict[str, torch.Tensor]:
    return unpack(weights)[0]["model"]


def timeless(logs: Mapping[str, Any]) -> dict[str, Any]:
    """Logs or a result without the wall times, which differ from run to run."""
    return {
        k: timeless(v) if isinstance(v, Mapping) else v
        for k, v in logs.items()
        if k not in ("seconds", "seconds_per_epoch")
    }


def job_of(study: spec.Study, cache: DataCache) -> UnitJob:
    """The study's trials as one job, planned as ``run_local`` plans them but without a store."""
    trials = study.trials()
    specs = tuple(TrialSpec.from_json(t.spec) for t in trials)
    plans = planner.plan_trials(
        [planner.Planned(t.hash, t.seed, s) for t, s in zip(trials, specs)],
        input_shape=lambda s: cache.get(s.data.to_json())[1].input_shape,
        train_size=lambda s: len(cache.get(s.data.to_json())[0].x_train),
    )
    plan = plans[trials[0].hash]
    assert all(p == plan for p in plans.values()) and plan.members == len(trials), "the trials form one population"
    return UnitJob(
        tuple(t.hash for t in trials), tuple(t.seed for t in trials), specs, (None,) * len(trials), plan=plan
    )


def stored(study: spec.Study, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """What ``run_local`` records for each trial, by hash: plan, epochs, status, result and weights."""
    with Store.open(tmp_path / "reference.db") as store:
        run_local(study, store, checkpoint_every=0)
        record = store.study(study.name)
        assert record is not None
        out = {}
        for t in store.trials(record.id):
            weights = store.artifact(t.id, WEIGHTS)
            assert weights is not None
            out[t.hash] = {
                "plan": t.plan,
                "epochs": [timeless(e.metrics) for e in store.epochs(t.id)],
                "status": t.status,
                "result": timeless(t.result or {}),
                "weights": without_metadata(weights.data),
            }
    return out


def collect(job: UnitJob, cache: DataCache, **options: Any) -> list[Event]:
    events: list[Event] = []
    train_population(job, cache, events.append, **options)
    return events


def test_train_population_emits_what_run_local_records(tiny: spec.Study, tmp_path: Path) -> None:
    cache = DataCache()
    job = job_of(tiny, cache)
    events = collect(job, cache)
    reference = stored(tiny, tmp_path)
    assert set(reference) == set(job.hashes)

    epochs = [(e.index, e.epoch) for e in events if isinstance(e, EpochEnded)]
    # Epoch by epoch, each member once per epoch (in the order the population stacks them).
    assert [epoch for _, epoch in epochs] == [0, 0, 1, 1, 2, 2]
    assert all(sorted(i for i, epoch in epochs if epoch == k) == [0, 1] for k in range(3))
    assert [type(e) for e in events[len(epochs) :]] == [TrialEnded, TrialEnded], "then each trial's end"
    for i, h in enumerate(job.hashes):
        want = reference[h]
        assert job.plan is not None and want["plan"] == job.plan.to_json(), "the store recorded the same plan"
        assert [timeless(e.logs) for e in events if isinstance(e, EpochEnded) and e.index == i] == want["epochs"]
        [end] = [e for e in events if isinstance(e, TrialEnded) and e.index == i]
        assert (end.status, timeless(end.outcome)) == (want["status"], want["result"])
        got = without_metadata(end.weights)
        assert got.keys() == want["weights"].keys()
        assert all(torch.equal(got[k], want["weights"][k]) for k in got)
    for event in events:
        if isinstance(event, EpochEnded):
            assert event.checkpoint is not None and unpack(event.checkpoint)[1]["epoch"] == event.epoch


def test_train_population_checkpoints_only_the_epochs_it_is_told_and_prunes_a_member_alone(tiny: spec.Study) -> None:
    cache = DataCache()
    job = job_of(tiny, cache)
    whole = collect(job, cache)
    events = collect(
        job,
        cache,
        checkpoint_due=lambda epoch: epoch == 1,
        prune=lambda epoch, logs: {1} if epoch == 0 else set(),
    )
    epochs = [(e.index, e.epoch, e.checkpoint is not None) for e in events if isinstance(e, EpochEnded)]
    assert sorted(epochs[:2]) == [(0, 0, False), (1, 0, False)]
    assert epochs[2:] == [(0, 1, True), (0, 2, False)]
    ends = {e.index: e for e in events if isinstance(e, TrialEnded)}
    assert (ends[1].status, ends[1].outcome["epochs"]) == ("pruned", 1)
    assert ends[1].outcome["stop_reason"].startswith("pruned after epoch 1")

    def logs_of(run: Sequence[Event], index: int) -> list[dict[str, Any]]:
        return [timeless(e.logs) for e in run if isinstance(e, EpochEnded) and e.index == index]

    assert logs_of(events, 0) == logs_of(whole, 0), "the other member trains as if nothing happened"
    assert logs_of(events, 1) == logs_of(whole, 1)[:1]


def test_train_population_asks_about_an_epoch_once_with_every_member_and_checkpoints_the_decision(
    tiny: spec.Study,
) -> None:
    cache = DataCache()
    job = job_of(tiny, cache)
    asked: list[tuple[int, list[int]]] = []

    def prune(epoch: int, logs: Mapping[int, dict[str, float]]) -> set[int]:
        asked.append((epoch, sorted(logs)))
        return {0} if epoch == 1 else set()

    events = collect(job, cache, prune=prune)
    # Epoch 0 and 1 with both members, then member 1 alone: one question per epoch, never per member.
    assert asked[:2] == [(0, [0, 1]), (1, [0, 1])] and all(members == [1] for _, members in asked[2:])
    pruned_epoch = next(e for e in events if isinstance(e, EpochEnded) and (e.index, e.epoch) == (0, 1))
    assert pruned_epoch.checkpoint is not None
    assert unpack(pruned_epoch.checkpoint)[1]["status"] == "pruned", "a trial resumed from it stays pruned"


# ---------------------------------------------------------------------------------------------
# Study-wide: registering, checking the data, choosing the worker count


def test_register_is_idempotent(tiny: spec.Study, store: Store) -> None:
    first = register(tiny, store)
    again = register(tiny, store)
    assert first == again and len(first[1]) == 2
    assert [t.hash for t in store.trials(first[0])] == first[1] == [t.hash for t in tiny.trials()]


def test_a_batch_larger_than_the_training_split_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    with_tiny_npz(tmp_path)
    study = load_study(tmp_path, tiny_study_tables(seeds=[0], batch_size=500), name="tiny")
    # 240 training images, a stratified quarter of them kept for validation: 180 train.
    with pytest.raises(TrainlabError) as info:
        check_data(study, DataCache())
    assert str(info.value) == (
        f"{tmp_path / 'tiny.toml'}: train.batch_size (variant 'sgd'): 500 is larger than the training split "
        '(180 examples); use at most 180, or "full" for full-batch gradient descent'
    )
    check_data(load_study(tmp_path, tiny_study_tables(seeds=[0], batch_size=180), name="tiny"), DataCache())


# name: (the study's variants and seeds, the machine's cores, the workers chosen)
WORKERS: dict[str, tuple[dict[str, Any], int, int]] = {
    # Two seeds, two optimizers each: two populations of two; one worker uses every core.
    "populations: one worker": (tiny_study_tables(seeds=[0, 1]), 2, 1),
    # Three seeds of one variant: three trials alone; one worker per core.
    "trials alone: a worker per core": (npz_study(seeds=[0, 1, 2]), 2, 2),
    # ... but never more workers than trials to train alone.
    "trials alone: no more workers than trials": (npz_study(seeds=[0, 1, 2]), 8, 3),
    "one trial: one worker": (npz_study(seeds=[0]), 8, 1),
}


@pytest.mark.parametrize("case", WORKERS)
def test_auto_workers_counts_the_studys_populations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    tables, cores, workers = WORKERS[case]
    monkeypatch.setattr(planner, "machine_cores", lambda: cores)
    with_tiny_npz(tmp_path)
    assert auto_workers(load_study(tmp_path, tables)) == workers
