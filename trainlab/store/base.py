"""The store interface: what every backend promises, and the records it hands out.

A store holds studies, their trials, one row per finished epoch, and opaque artifacts
(checkpoints, final weights). It knows nothing about torch, models or data: specs are
JSON text, weights and checkpoints are bytes.

The contract that makes crash-and-resume work:

* A trial is run by at most one *owner* at a time. Owners take trials with
  :meth:`Store.claim_next` / :meth:`Store.claim`; every later write names the owner and
  is refused with :class:`ClaimLostError` if that owner no longer holds the trial.
* One finished epoch is one transaction: the epoch row, the checkpoint if one comes with
  it, and the heartbeat are committed together, so nothing committed is lost. A writer may
  send a checkpoint with some epochs only (trainlab's executors do so every few seconds of
  training): the stored checkpoint is then that of the newest epoch that had one, at or
  before the newest epoch row.
* A running trial whose owner died is handed to the next claimer, which resumes from the
  checkpoint and re-does the epochs after it; each re-done epoch replaces its row and drops
  the rows after it that the dead owner left, so the stored history is always that of the
  run now writing.
* A finished trial (done, failed, diverged, pruned) is never claimed again unless
  :meth:`Store.reset_trials` puts it back to pending (and forgets its plan).
* A trial's run plan (what it trains with: population, step, compile, threads) is written
  once, before it first trains, and kept through every resume, so a resumed trial goes on
  exactly as it began.
"""

from __future__ import annotations

import abc
import json
import math
import numbers
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from trainlab.errors import StoreError

Clock = Callable[[], float]
"""A time source returning seconds since the epoch, like ``time.time``."""

Status = Literal["pending", "running", "done", "failed", "diverged", "pruned"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "running", "done", "failed", "diverged", "pruned")
FINISHED_STATUSES: Final[frozenset[str]] = frozenset({"done", "failed", "diverged", "pruned"})

CHECKPOINT: Final = "checkpoint"
"""Artifact kind of the resumable state written with each epoch; dropped when the trial finishes."""
WEIGHTS: Final = "weights"
"""Artifact kind of the final model weights written by :meth:`Store.finish_trial`."""

DEFAULT_LEASE: Final = 600.0
"""Seconds without a heartbeat after which an owner on another host is presumed dead."""
DEFAULT_TIMEOUT: Final = 60.0
"""Seconds a write waits for other processes' writes before giving up."""


class ClaimLostError(StoreError):
    """A write by an owner that no longer holds the trial.

    Raised when another process took the trial over (the lease ran out, or this process
    was presumed dead) or the trial was finished or released meanwhile. The caller should
    stop working on the trial: whatever it would write belongs to someone else now.
    """


@dataclass(frozen=True, slots=True)
class NewTrial:
    """A trial to add to a study; its ``hash`` identifies it within the study."""

    hash: str
    label: str
    params: Mapping[str, Any]
    seed: int
    spec_json: str


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """A stored study. ``created`` is seconds since the epoch (``time.time()``)."""

    id: int
    name: str
    spec_json: str
    spec_hash: str
    source: str | None
    created: float


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """A stored trial: one training run of ``spec_json`` with ``seed``.

    ``owner``/``heartbeat`` describe the current (or last) holder; ``attempts`` counts
    claims, so a trial resumed after one crash has 2. ``started`` is when the trial was
    first claimed, ``finished`` when it reached a finished status. Times are seconds since
    the epoch. ``plan`` is how the trial trains (see :mod:`trainlab.planner`), once planned.
    """

    id: int
    study_id: int
    hash: str
    label: str
    params: dict[str, Any]
    seed: int
    spec_json: str
    status: Status
    owner: str | None
    heartbeat: float | None
    attempts: int
    started: float | None
    finished: float | None
    error: str | None
    result: dict[str, Any] | None
    plan: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """The metrics of one finished epoch; NaN and infinities come back as floats."""

    trial_id: int
    epoch: int
    metrics: dict[str, float | None]
    recorded: float


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """Opaque bytes attached to a trial, with the ``format`` the writer named.

    ``epoch`` is the epoch a checkpoint was written with (resume after it), ``None`` for
    artifacts not tied to an epoch.
    """

    trial_id: int
    kind: str
    data: bytes
    format: str
    epoch: int | None
    created: float


SQLITE: Final = "sqlite"
"""The kind of location :meth:`Store.open` opens today: a SQLite file."""

_BACKENDS: dict[str, type[Store]] = {}


def register_backend(kind: str, store_class: type[Store]) -> None:
    """Make ``store_class`` the backend :meth:`Store.open` uses for locations of ``kind``.

    Backends build on this module, so it cannot import them: :mod:`trainlab.store` registers
    the backends trainlab ships when it is imported, which Python does before any of its
    modules, so they are registered before any store can be opened.
    """
    _BACKENDS[kind] = store_class


def backend(kind: str) -> type[Store]:
    """The backend registered for locations of ``kind``; a :class:`StoreError` naming the
    registered kinds if there is none."""
    try:
        return _BACKENDS[kind]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS)) or "none"
        raise StoreError(f"no store backend for {kind!r} locations (registered: {known})") from None


class Store(abc.ABC):
    """Where studies, trials, epochs and artifacts live; see the module docstring.

    A store object is for one thread of one process: open another one for a heartbeat
    thread or in a child process (each backend may check this). Any number of store
    objects, in any number of processes, may share one location.
    """

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        lease: float = DEFAULT_LEASE,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        clock: Clock = time.time,
    ) -> Store:
        """Open (creating if missing) the store at ``path``.

        Called on :class:`Store` itself it picks the backend for the location from those
        registered with :func:`register_backend`; today every location is a SQLite file.
        ``lease``: seconds without a heartbeat after which an owner on another host is presumed
        dead. ``timeout``: seconds a write waits for
        other processes' writes. ``check``: verify the store's integrity first.
        ``clock``: the time source, replaceable in tests.

        Raises :class:`StoreError` naming the file when it cannot be used (not a trainlab
        store, newer schema, damaged).
        """
        if cls is Store:
            return backend(SQLITE).open(path, lease=lease, timeout=timeout, check=check, clock=clock)
        raise NotImplementedError(f"{cls.__name__} does not implement open()")

    @abc.abstractmethod
    def close(self) -> None:
        """Release the underlying resources; the store cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- studies and trials -------------------------------------------------------------

    @abc.abstractmethod
    def ensure_study(self, name: str, spec_json: str, spec_hash: str, source: str | None) -> int:
        """The id of study ``name``, creating it if missing.

        If the study exists with another spec hash, its stored spec and source are
        replaced and its trials kept: trials are keyed by their own hash, so unchanged
        variants keep their results and changed ones arrive as new trials.
        """

    @abc.abstractmethod
    def add_trials(self, study_id: int, trials: Sequence[NewTrial]) -> None:
        """Add trials as pending, in order. Idempotent: a hash already in the study is left untouched."""

    @abc.abstractmethod
    def set_plans(self, study_id: int, plans: Mapping[str, Mapping[str, Any]]) -> None:
        """Record the run plan of trials by hash, for those that have none yet.

        A trial's plan is written once: a second writer's plan (another process planning the
        same study) leaves the first in place, and a trial keeps its plan when it resumes.
        :meth:`reset_trials` clears it. Unknown hashes are ignored.
        """

    @abc.abstractmethod
    def studies(self) -> list[StudyRecord]:
        """All studies, oldest first."""

    @abc.abstractmethod
    def study(self, name: str) -> StudyRecord | None:
        """The study called ``name``, or ``None``."""

    @abc.abstractmethod
    def trial(self, trial_id: int) -> TrialRecord | None:
        """The trial with this id, or ``None``."""

    @abc.abstractmethod
    def trials(
        self,
        study_id: int,
        *,
        status: Status | None = None,
        hashes: Collection[str] | None = None,
    ) -> list[TrialRecord]:
        """The study's trials in insertion order, optionally only those with ``status``
        and/or whose hash is in ``hashes``."""

    @abc.abstractmethod
    def status_counts(self, study_id: int, *, hashes: Collection[str] | None = None) -> dict[str, int]:
        """Number of trials per status, every status present (zero if none)."""

    # --- running trials -----------------------------------------------------------------

    @abc.abstractmethod
    def claim_next(self, study_id: int, owner: str, *, hashes: Collection[str] | None = None) -> TrialRecord | None:
        """Atomically take the first trial (insertion order) that is pending or running
        under a dead owner, mark it running for ``owner`` and return it; ``None`` if there
        is none. ``hashes`` restricts the choice to those trials (the study's current ones).
        """

    @abc.abstractmethod
    def claim(self, trial_id: int, owner: str) -> bool:
        """Take this trial if it is pending, running under a dead owner, or already held by
        ``owner``; return whether ``owner`` now holds it. Finished trials are never taken."""

    @abc.abstractmethod
    def heartbeat(self, trial_id: int, owner: str) -> None:
        """Tell other processes ``owner`` is still working on the trial.

        Raises :class:`ClaimLostError` if ``owner`` no longer holds it.
        """

    @abc.abstractmethod
    def record_epoch(
        self,
        trial_id: int,
        owner: str,
        epoch: int,
        metrics: Mapping[str, float | None],
        checkpoint: bytes | None = None,
        *,
        checkpoint_format: str = "bytes",
    ) -> None:
        """Commit one finished epoch in one transaction.

        Writes (or replaces) the epoch row, deletes rows of later epochs (left by an
        earlier attempt that got further than its last checkpoint, so the stored history
        is always that of the run now writing), replaces the checkpoint artifact if one is
        given, and refreshes the heartbeat. Raises :class:`ClaimLostError` if ``owner``
        no longer holds the trial; nothing is written then.
        """

    @abc.abstractmethod
    def finish_trial(
        self,
        trial_id: int,
        owner: str,
        status: Status,
        *,
        result: Mapping[str, Any] | None = None,
        weights: bytes | None = None,
        weights_format: str = "bytes",
        error: str | None = None,
    ) -> None:
        """Give the trial its finished ``status`` (done, failed, diverged or pruned), in one
        transaction: stores ``result``/``error``, stores ``weights`` if given and drops the
        checkpoint (a finished trial is never resumed). Raises :class:`ClaimLostError` if
        ``owner`` no longer holds the trial, ``ValueError`` for a status that is not finished.
        """

    @abc.abstractmethod
    def release(self, trial_id: int, owner: str) -> None:
        """Give a running trial back (status pending, no owner), keeping its epochs and
        checkpoint so the next claimer resumes it. Used on Ctrl-C. Does nothing if
        ``owner`` does not hold the trial."""

    @abc.abstractmethod
    def reset_trials(self, study_id: int, statuses: Collection[str]) -> int:
        """Put the study's trials with one of the finished ``statuses`` back to pending so
        they run again from scratch: their epochs, artifacts, result, error and plan are deleted
        (the attempt count is kept). Returns how many trials were reset. Raises
        ``ValueError`` for a status that is not finished: resetting a running trial could
        make two processes run it."""

    # --- reading results ----------------------------------------------------------------

    @abc.abstractmethod
    def epochs(self, trial_id: int) -> list[EpochRecord]:
        """The trial's epochs in epoch order."""

    @abc.abstractmethod
    def artifact(self, trial_id: int, kind: str) -> ArtifactRecord | None:
        """The trial's artifact of ``kind`` (e.g. :data:`CHECKPOINT`, :data:`WEIGHTS`), or ``None``."""


# --- owners ---------------------------------------------------------------------------------


def make_owner() -> str:
    """A fresh owner string for this process: ``"hostname:pid:token"``.

    The random token tells apart two owners in one process (e.g. after a release) and a
    later process that happens to get the same pid.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_alive(owner: str, heartbeat: float | None, now: float, lease: float) -> bool:
    """Whether the owner of a running trial should be presumed alive.

    On this host the answer is exact: alive while its pid exists, however old the
    heartbeat (a long epoch is not a death). For another host (or an owner string not in
    ``hostname:pid:token`` form) it is alive while its heartbeat is younger than ``lease``.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit():
        return pid_exists(int(parts[1]))
    return heartbeat is not None and now - heartbeat < lease


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie still counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


# --- JSON that keeps NaN and infinities -----------------------------------------------------

_NONFINITE_TO_TEXT: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_TEXT_TO_NONFINITE: Final = {text: float(key) for key, text in _NONFINITE_TO_TEXT.items()}


def dumps(value: Any) -> str:
    """Strict JSON text for ``value``; NaN and infinities become the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (strict JSON has no such numbers, and SQLite's JSON
    functions reject the bare tokens). Numeric scalars of other libraries become int/float.
    """
    return json.dumps(_to_json(value), sort_keys=True, allow_nan=False, separators=(",", ":"))


def loads(text: str) -> Any:
    """The inverse of :func:`dumps`: the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``
    come back as floats (so a result string spelled exactly so does too)."""
    return _from_json(json.loads(text))


def encode_metrics(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    """Metrics as plain floats (or ``None``); ``TypeError`` naming the metric otherwise."""
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        if value is None:
            out[str(name)] = None
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metric {name!r} must be a number or None, got {value!r}") from exc
    return out


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else _NONFINITE_TO_TEXT[repr(number)]
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _from_json(value: Any) -> Any:
    if isinstance(value, str):
        return _TEXT_TO_NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value
