"""Running a study: its options checked before the store is touched, its rounds trained by the
local or the Ray executor, its progress shown, and what the run did.

``trainlab run`` and :meth:`trainlab.Study.run` both train through :func:`run_study`, so a
study gives the same trials, plans and results from either. The two differ only in how an
option is spelt in an error message (``--workers`` on the command line, ``workers=`` in Python):
each passes its own :data:`Spelling` to :meth:`RunOptions.check`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trainlab import factory
from trainlab.api.progress import mode_of, reporter
from trainlab.errors import TrainlabError

if TYPE_CHECKING:
    from trainlab.spec import Study

DEFAULT_STORE = "trainlab.db"
"""The store a run writes to and a report reads when none is named (and ``$TRAINLAB_STORE`` is unset)."""
EXECUTORS = ("local", "ray")

Spelling = Callable[[str, Any], str]
"""How a caller writes option ``name`` (with ``value``, or ``None`` for the option alone) in a message."""


def keyword(name: str, value: Any = None) -> str:
    """An option as a Python keyword argument: ``workers=``, ``executor='ray'``."""
    return f"{name}=" + ("" if value is None else repr(value))


def default_store() -> str:
    """``$TRAINLAB_STORE``, or :data:`DEFAULT_STORE`."""
    return os.environ.get("TRAINLAB_STORE", DEFAULT_STORE)


@dataclass(frozen=True)
class RunOptions:
    """How a study is run; every field's default is what ``trainlab run`` does without the option.

    ``retry_failed``: run failed and diverged trials again from scratch. ``workers``: processes
    sharing the cores (``"auto"`` decides from the study; local executor). ``population``: at
    most this many trials train together (None: 16; 1 trains one at a time). ``checkpoint_every``:
    seconds of training between checkpoints (None: 10; 0: every epoch; local executor).
    ``executor``: ``"local"`` or ``"ray"``; ``address``, ``max_retries`` and ``cpus_per_task``
    belong to Ray (see docs/CLUSTER.md), and so does ``gpus_per_task``. ``device``: ``"auto"``
    (CUDA, or MPS on a Mac, when torch sees one; else the CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``; :meth:`check` resolves it against this machine. ``track``:
    destinations the trials are logged to while they train (``"mlflow"``, ``"mlflow:URI"``,
    ``"tensorboard:DIR"``; docs/TRACKING.md).
    """

    retry_failed: bool = False
    workers: int | str = "auto"
    population: int | None = None
    checkpoint_every: float | None = None
    executor: str = "local"
    address: str | None = None
    max_retries: int | None = None
    cpus_per_task: int | None = None
    track: tuple[str, ...] = ()
    device: str = "auto"
    gpus_per_task: float | None = None

    def check(self, spell: Spelling = keyword) -> RunOptions:
        """These options, refused with a message naming the option as ``spell`` writes it where a
        value is out of range or an option belongs to the other executor; Ray is imported for the
        Ray executor, so that its absence stops the run before anything is written."""
        every = self.checkpoint_every
        if every is not None and not (isinstance(every, (int, float)) and not isinstance(every, bool) and every >= 0):
            raise TrainlabError(f"{spell('checkpoint_every', None)} takes seconds >= 0, got {every}")
        if self.executor not in EXECUTORS:
            raise TrainlabError(
                f"{spell('executor', None)} {self.executor!r} not allowed; allowed: {', '.join(EXECUTORS)}"
            )
        if self.executor == "ray":
            self._check_ray(spell)
        else:
            for option in ("address", "max_retries", "cpus_per_task", "gpus_per_task"):
                if getattr(self, option) is not None:
                    raise TrainlabError(f"{spell(option, None)} is an option of {spell('executor', 'ray')}")
        workers = self.workers if self.workers == "auto" else worker_count(self.workers, spell)
        population = self.population
        if population is not None and not _count(population):
            raise TrainlabError(
                f"{spell('population', None)} takes a number of trials >= 1 (1 trains one at a time), got {population}"
            )
        return replace(self, workers=workers, checkpoint_every=every, device=self._device())

    def _device(self) -> str:
        """The run's device: :attr:`device` resolved against this machine (a device it lacks is
        refused), or, on Ray, against the GPUs its tasks hold (the driver itself may have none)."""
        if self.executor == "ray":
            from trainlab.cluster import ray_device

            return ray_device(self.device, self.gpus_per_task or 0.0)
        from trainlab import devices

        return devices.resolve(self.device)

    def _check_ray(self, spell: Spelling) -> None:
        from trainlab.cluster import import_ray

        if self.workers != "auto":
            raise TrainlabError(
                f"{spell('workers', None)} is an option of the local executor; with {spell('executor', 'ray')} "
                f"the cluster's CPUs decide how many trials train at once (see {spell('cpus_per_task', None)})"
            )
        if self.checkpoint_every is not None:
            raise TrainlabError(
                f"{spell('checkpoint_every', None)} is an option of the local executor; on Ray every epoch "
                "carries its checkpoint"
            )
        import_ray()


def _count(value: Any) -> bool:
    """Whether ``value`` is an int >= 1 (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def worker_count(value: int | str, spell: Spelling = keyword) -> int:
    """A worker count given as a number or its digits; anything else is refused."""
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value >= 1) or (isinstance(value, str) and value.isdigit() and int(value) >= 1)
    ):
        raise TrainlabError(f"{spell('workers', None)} takes a positive number or 'auto', got {value!r}")
    return int(value)


@dataclass
class RunOutcome:
    """What one run did: the trials it finished, by status; those finished before it; and those
    another process was still training when it ended."""

    ran: dict[str, int] = field(default_factory=dict)
    finished_before: int | None = None
    busy_elsewhere: int = 0

    def text(self, name: str, counts: Mapping[str, Any]) -> str:
        """The line a run ends with: the study's trials (``counts``, the report's ``trials``
        block, each counted once), what this run did, and what was finished before it."""
        before = counts["total"] if self.finished_before is None else self.finished_before
        done = ", ".join(f"{n} {status}" for status, n in sorted(self.ran.items())) or "nothing to run"
        return f"study {name}: {counts['total']} trials; this run: {done}; already finished before: {before}"


def run_study(
    study: Study,
    store_path: str | Path,
    options: RunOptions,
    *,
    progress: bool | str = "auto",
    stream: TextIO,
) -> RunOutcome:
    """Train every unfinished trial of ``study`` into the store at ``store_path`` (created if
    missing), round by round for a staged study or a search; returns what this run did.

    ``options`` must have been checked (:meth:`RunOptions.check`). The data is checked before
    the store is opened. ``progress`` (see :func:`trainlab.api.progress.reporter`) and notes
    (worker processes, waiting on another process) go to ``stream``.

    A study naming a factory defined in a notebook or a script (:func:`defined_here`) trains in
    this process alone: ``workers="auto"`` is one, more workers or the Ray executor are refused.
    """
    from trainlab import orchestrate
    from trainlab.data.cache import DataCache
    from trainlab.executors import CHECKPOINT_EVERY, RunSummary, check_data, register
    from trainlab.store import Store

    if options.workers != "auto":
        worker_count(options.workers)
    if in_this_process(study, options):
        options = replace(options, workers=1)
    quiet = mode_of(progress) == "none"
    if options.track:
        from trainlab.tracking import check_targets

        check_targets(options.track, study.name)
    cache = DataCache()
    check_data(study, cache)  # what only the data can refute stops the run before the store is touched
    every = CHECKPOINT_EVERY if options.checkpoint_every is None else options.checkpoint_every
    summaries: list[RunSummary] = []
    tracked = _tracked(options.track, study, store_path)
    with Store.open(store_path) as store, reporter(progress, stream) as shown, tracked:
        if options.retry_failed:
            study_id, _ = register(study, store)
            store.reset_trials(study_id, ("failed", "diverged"))

        def execute(round_study: Study, pruning: Any) -> None:
            announce = None if quiet or summaries else lambda text: say(stream, text)
            if options.executor == "ray":
                summaries.append(_run_ray(options, round_study, store, shown, cache, announce))
            else:
                summaries.append(
                    _run_local(options, round_study, str(store_path), store, shown, pruning, cache, every, announce)
                )

        orchestrate.run(study, store, execute, on_wait=lambda message: say(stream, f"waiting: {message}"))
    return outcome(summaries)


def defined_here(study: Study) -> list[str]:
    """The factories of ``__main__`` (functions of a notebook or a script) that ``study`` names,
    which only this process can import."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                named = key == "factory" or str(key).endswith(".factory")
                if named and isinstance(value, str) and factory.in_process(value) and value not in found:
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(study.raw)
    return found


def in_this_process(study: Study, options: RunOptions) -> bool:
    """Whether ``study`` must train in this process, as it names a factory of ``__main__``; where
    ``options`` ask for worker processes or the Ray executor, a TrainlabError saying so and why."""
    here = defined_here(study)
    if not here:
        return False
    what = (
        f"study {study.name} trains {', '.join(here)}, defined in this notebook or script ({factory.MAIN}), which "
        "no other process can import"
    )
    fix = "move the function into a .py file and import it from there to train it"
    if options.executor == "ray":
        raise TrainlabError(f"{keyword('executor', 'ray')}: {what}; {fix} on a cluster")
    if options.workers not in ("auto", 1):
        raise TrainlabError(
            f"{keyword('workers', options.workers)}: {what}, so it trains in this process (workers=1, or 'auto'); "
            f"{fix} in worker processes"
        )
    return True


def _tracked(targets: Sequence[str], study: Study, store_path: str | Path) -> Any:
    """While the run trains, its trials logged to each of ``targets`` (or nothing)."""
    if not targets:
        from contextlib import nullcontext

        return nullcontext()
    from trainlab.tracking import following

    return following(list(targets), study.name, str(store_path))


def outcome(summaries: Sequence[Any]) -> RunOutcome:
    """The executors' summaries of a run's rounds as one :class:`RunOutcome`."""
    ran: dict[str, int] = {}
    for summary in summaries:
        for status, n in summary.ran.items():
            ran[status] = ran.get(status, 0) + n
    return RunOutcome(
        ran,
        summaries[0].skipped_done if summaries else None,
        summaries[-1].busy_elsewhere if summaries else 0,
    )


def say(stream: TextIO, text: str) -> None:
    """One note on ``stream``, flushed at once (progress lines interleave with it)."""
    print(text, file=stream, flush=True)


def _run_local(
    options: RunOptions,
    study: Study,
    store_path: str,
    store: Any,
    shown: Any,
    pruning: Any,
    cache: Any,
    checkpoint_every: float,
    announce: Callable[[str], None] | None,
) -> Any:
    from trainlab.executors import auto_workers, run_local, run_pool

    workers = auto_workers(study, options.device) if options.workers == "auto" else worker_count(options.workers)
    if workers > 1:
        if announce is not None:
            announce(f"{workers} worker processes share the work; progress shows this one's trials")
        return run_pool(
            study,
            store_path,
            workers,
            reporter=shown,
            population=options.population,
            pruning=pruning,
            store=store,
            cache=cache,
            checkpoint_every=checkpoint_every,
            device=options.device,
        )
    return run_local(
        study,
        store,
        reporter=shown,
        population=options.population,
        pruning=pruning,
        cache=cache,
        checkpoint_every=checkpoint_every,
        device=options.device,
    )


def _run_ray(
    options: RunOptions,
    study: Study,
    store: Any,
    shown: Any,
    cache: Any,
    announce: Callable[[str], None] | None,
) -> Any:
    """One round on Ray. Searches are not pruned there: workers cannot ask the store how others did."""
    from trainlab.cluster import DEFAULT_MAX_RETRIES, run_ray

    return run_ray(
        study,
        store,
        address=options.address,
        reporter=shown,
        population=options.population,
        cache=cache,
        max_retries=DEFAULT_MAX_RETRIES if options.max_retries is None else options.max_retries,
        cpus_per_task=1 if options.cpus_per_task is None else options.cpus_per_task,
        gpus_per_task=options.gpus_per_task or 0.0,
        device=options.device,
        announce=announce,
    )
