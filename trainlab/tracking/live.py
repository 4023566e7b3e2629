"""Tracking while a study trains: a listener on the :class:`~trainlab.executors.Recorder` that
hands each recorded trial to a thread of its own, which brings the backend up to the store.

Training never waits for a tracker: :meth:`Follower.recorded` only puts the trial's id on a
queue. The thread reads the trial back from the store (its own connection) and syncs it, so
what the backend gets is exactly what the store holds, by the same path as ``trainlab track``.
When the destination cannot be reached, or a write to it fails, the follower says so once and
stops trying; ``trainlab track`` catches up from the store later.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any, Self

from trainlab.executors import Event, listening
from trainlab.store import Store, TrialRecord
from trainlab.tracking.base import Backend, TrackingUnavailable, backend_for, sync_study, trial_views

Note = Callable[[str], None]
"""Where a follower says what went wrong: one line for a person."""

CLOSE_SECONDS = 60.0
"""How long the end of a run waits for a follower to bring its backend up to date."""

_STOP = -1


class Follower:
    """Syncs each trial it is told of, in a thread, from the store at ``store_path`` to ``backend``.

    ``catch_up``: sync the whole study when closed (the process that drives a run does, so that
    trials trained by other processes arrive too). ``backend`` must be opened already when
    ``opened``; otherwise the thread opens it.
    """

    def __init__(
        self, backend: Backend, store_path: str, note: Note, *, opened: bool = False, catch_up: bool = False
    ) -> None:
        self.backend = backend
        self.store_path = store_path
        self.note = note
        self.opened = opened
        self.catch_up = catch_up
        self.failed = False
        self.queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=f"trainlab-{backend.scheme}", daemon=True)
        self.thread.start()

    def recorded(self, trial: TrialRecord, event: Event) -> None:
        """A trial's epoch or end is in the store: sync it soon (never blocks, never raises)."""
        if not self.failed:
            self.queue.put(trial.id)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Sync what is left (the whole study with ``catch_up``) and stop, waiting at most ``timeout``
        seconds; past that the thread is left behind, and the note says how to catch up."""
        self.queue.put(_STOP)
        self.thread.join(timeout)
        if self.thread.is_alive() and not self.failed:
            self.failed = True
            self.note(
                f"tracking to {self.backend.target} is not up to date after {timeout:.0f} s; "
                f"`trainlab track {self.backend.study} --to {self.backend.target}` catches up"
            )

    def _run(self) -> None:
        try:
            if not self.opened:
                self.backend.open()
            with Store.open(self.store_path, check=False) as store:
                stop = False
                while not stop:
                    ids = self._next()
                    stop = _STOP in ids
                    self._sync(store, ids - {_STOP})
                if self.catch_up:
                    sync_study(store, self.backend.study, self.backend)
        except Exception as exc:  # whatever the destination raised: training goes on without it
            self.failed = True
            self.note(
                f"tracking to {self.backend.target} stopped ({_reason(exc)}); training goes on, and "
                f"`trainlab track {self.backend.study} --to {self.backend.target}` catches up later"
            )
        finally:
            self.backend.close()

    def _next(self) -> set[int]:
        """The ids of the trials told of since the last sync, waiting for one (``_STOP`` among them
        once closed): a burst of epochs makes one sync per trial."""
        ids = {self.queue.get()}
        while not self.queue.empty():
            ids.add(self.queue.get())
        return ids

    def _sync(self, store: Store, ids: set[int]) -> None:
        """Sync the trials of ``ids``, without their models: writing one builds a torch model, whose
        modules draw their default initial weights from torch's global generator, the one the
        training thread's noise (dropout) is drawn from; a model written meanwhile would change the
        trained numbers. Models are written by the catch-up once training has ended, and by
        ``trainlab track``."""
        trials = [t for t in (store.trial(i) for i in ids) if t is not None]
        if trials:
            for view in trial_views(store, self.backend.study, hashes=[t.hash for t in trials], models=False):
                self.backend.sync(view)


class LiveTracking:
    """Makes the follower of one process for ``target`` (see :func:`~trainlab.executors.listening`).

    In the process that drives the run it wraps the ``backend`` opened there, and catches the
    whole study up when the run ends. Pickled for a worker process of ``run_pool``, it leaves the
    backend behind: the worker's follower opens its own, and syncs the trials it trains.
    """

    def __init__(self, target: str, study: str, store_path: str, backend: Backend | None = None) -> None:
        self.target = target
        self.study = study
        self.store_path = store_path
        self.backend = backend

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "backend": None}

    def __call__(self) -> Follower:
        if self.backend is not None:
            return Follower(self.backend, self.store_path, say, opened=True, catch_up=True)
        return Follower(backend_for(self.target, self.study), self.store_path, say)


def say(text: str) -> None:
    """A tracking note for a person, on standard error (standard output may carry a report)."""
    print(f"trainlab: {text}", file=sys.stderr, flush=True)


def check_targets(targets: Sequence[str], study: str) -> None:
    """Refuse a destination ``--track`` cannot take, before anything is trained."""
    for target in targets:
        backend_for(target, study)


@contextmanager
def following(targets: Sequence[str], study: str, store_path: str, note: Note = say) -> Iterator[None]:
    """While the block trains ``study`` into the store at ``store_path``, follow it to each of
    ``targets``. A destination that cannot be reached is said once with ``note`` and left out:
    training goes on, and ``trainlab track`` copies the study there later."""
    with ExitStack() as stack:
        for target in targets:
            backend = backend_for(target, study)
            try:
                backend.open()
            except TrackingUnavailable as exc:
                note(f"{exc}; training goes on without it, and `trainlab track {study} --to {target}` copies it later")
                continue
            stack.enter_context(listening(LiveTracking(target, study, store_path, backend)))
        yield


def copy_study(store: Store, study: str, target: str, *, option: str = "--to") -> list[Any]:
    """Bring ``target`` up to the store's record of ``study`` (``trainlab track``); returns the trials'
    views. An unreachable destination is a :class:`TrackingUnavailable`."""
    backend = backend_for(target, study, option=option)
    backend.open()
    try:
        return sync_study(store, study, backend)
    finally:
        backend.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
