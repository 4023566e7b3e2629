"""Progress of a run as it trains: Rich bars on a terminal, one line per epoch elsewhere (logs,
pipes, Jupyter), or nothing.

The executors tell a :class:`~trainlab.executors.Reporter` what happens; the classes here turn
that into text on a stream. :func:`reporter` chooses one: ``"auto"`` draws bars where the stream
is a terminal and writes lines where it is not, which is what a notebook needs (its output is
not a terminal, and plain lines survive in an executed notebook's saved outputs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TextIO

from trainlab.errors import TrainlabError

Mode = Literal["auto", "bars", "lines", "none"]
MODES: tuple[str, ...] = ("auto", "bars", "lines", "none")
"""How progress is shown: bars on a terminal else lines, bars, lines, or nothing."""


class LineReporter:
    """Progress as one line per epoch, on ``stream``: for logs and pipes, where bars would be noise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.index = 0
        self.total = 0
        self.epochs: dict[int, int] = {}
        """Epoch budget of each trial in training, by trial id (the Ray executor trains several populations at once)."""

    def study_started(self, total: int, done: int) -> None:
        self.total, self.index = total, done
        print(f"{total} trials, {done} already finished", file=self.stream, flush=True)

    def unit_started(self, trials: Sequence[Any], epochs: int, resumed_at: int) -> None:
        first, self.index = self.index + 1, self.index + len(trials)
        self.epochs.update((t.id, epochs) for t in trials)
        resumed = f" (resuming after epoch {resumed_at})" if resumed_at else ""
        span = f"{first}" if len(trials) == 1 else f"{first}-{self.index}"
        together = plan_note(trials[0], len(trials))
        print(
            f"trial {span}/{self.total}: {', '.join(who(t) for t in trials)}{together}{resumed}",
            file=self.stream,
            flush=True,
        )

    def batch(self, step: int, steps: int) -> None:
        pass

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        shown = f"{who(trial)}  " if len(self.epochs) > 1 else ""
        print(
            f"  {shown}epoch {epoch + 1}/{self.epochs.get(trial.id, 0)}  {logs_text(logs)}",
            file=self.stream,
            flush=True,
        )

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        self.epochs.pop(trial.id, None)
        if status != "done":
            print(
                f"  {who(trial)}: {status}: {result.get('error') or result.get('stop_reason', '')}",
                file=self.stream,
                flush=True,
            )

    def unit_retried(self, trials: Sequence[Any], resumed_at: int, reason: str) -> None:
        after = f"after epoch {resumed_at}" if resumed_at else "from the start"
        names = ", ".join(who(t) for t in trials)
        self._say(f"  {names}: the task died ({reason}); handed out again, resuming {after}")

    def unit_split(self, trials: Sequence[Any], sizes: Sequence[int], reason: str) -> None:
        self.index -= len(trials)  # each part is started, and counted, again
        parts = " and ".join(map(str, sizes))
        self._say(
            f"  {', '.join(who(t) for t in trials)}: the population did not fit in the device's memory "
            f"({reason}); training on as populations of {parts}, each from its last checkpoint"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def plan_note(trial: Any, training: int | None = None) -> str:
    """`` (population of 3, eager, 2 threads)``: how a population trains, from its recorded plan.
    ``training``: how many of its trials train now; where fewer than the plan's (a population
    resumed without its finished members, or split for want of device memory), that many, and
    the planned size after: `` (population of 2, eager, 1 thread; 4 planned)``."""
    from dataclasses import replace

    from trainlab.planner import Plan

    if not trial.plan:
        return ""
    plan = Plan.from_json(trial.plan)
    if training is None or plan.step != "population" or training >= plan.members:
        return f" ({plan.describe()})"
    return f" ({replace(plan, members=training).describe()}; {plan.members} planned)"


def who(trial: Any) -> str:
    """A trial as progress names it: ``adam seed 1``."""
    return f"{trial.label} seed {trial.seed}"


def logs_text(logs: Mapping[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "mse", "val_loss", "val_accuracy", "val_mse") if k in logs]
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys) + f"  {logs['seconds']:.1f}s"


class BarReporter(LineReporter):
    """Rich progress bars on ``stream`` (a terminal): trials of the study, and steps of the epoch
    with the live metrics."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self.trials = self.progress.add_task("trials", total=None)
        self.steps = self.progress.add_task("", total=None, visible=False)
        self.names = ""
        self.last = ""
        self.epoch = 0
        self.budget = 0
        self.unit_size = 1

    def study_started(self, total: int, done: int) -> None:
        self.total, self.index = total, done
        self.progress.update(self.trials, total=total, completed=done)

    def unit_started(self, trials: Sequence[Any], epochs: int, resumed_at: int) -> None:
        first, self.index = self.index + 1, self.index + len(trials)
        self.epochs.update((t.id, epochs) for t in trials)
        self.epoch, self.last, self.budget, self.unit_size = resumed_at, "", epochs, len(trials)
        self.names = (
            who(trials[0]) if len(trials) == 1 else f"{len(trials)} together: {', '.join(t.label for t in trials)}"
        )
        span = f"{first}" if len(trials) == 1 else f"{first}-{self.index}"
        self.progress.update(self.trials, description=f"trial {span}/{self.total}")
        self._describe()

    def _describe(self) -> None:
        # With several populations in flight (the Ray executor), no one population's name says what trains.
        names = self.names if len(self.epochs) <= self.unit_size else f"{len(self.epochs)} trials training at once"
        text = f"  {names}  epoch {min(self.epoch + 1, self.budget)}/{self.budget}"
        if self.last:
            text += f"  [dim]{self.last}[/dim]"
        self.progress.update(self.steps, description=text, visible=True)

    def batch(self, step: int, steps: int) -> None:
        self.progress.update(self.steps, completed=step, total=steps)

    def _say(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        self.epoch, self.budget = epoch + 1, self.epochs.get(trial.id, self.budget)
        self.last = (f"{trial.label}: " if len(self.epochs) > 1 else "") + logs_text(logs)
        self._describe()

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        self.epochs.pop(trial.id, None)
        self.progress.advance(self.trials)
        best = result.get("best", {})
        score = best.get("val_accuracy", best.get("val_loss"))
        note = f"best {score:.4f}" if isinstance(score, float) else result.get("error", "")
        self.progress.console.print(f"{who(trial)}: {status} {note}".rstrip())


def mode_of(progress: bool | str) -> str:
    """``progress`` as one of :data:`MODES`: True is ``"auto"``, False ``"none"``; anything else is refused."""
    if progress is True:
        return "auto"
    if progress is False:
        return "none"
    if progress not in MODES:
        raise TrainlabError(f"progress: {progress!r} not allowed; allowed: True, False, {', '.join(map(repr, MODES))}")
    return str(progress)


@contextmanager
def reporter(progress: bool | str, stream: TextIO) -> Iterator[Any]:
    """The reporter writing to ``stream`` for ``progress`` (see :func:`mode_of`), its bars started
    for the run and stopped after it, however the run ends."""
    from trainlab.executors import Silent

    mode = mode_of(progress)
    if mode == "auto":
        mode = "bars" if stream.isatty() else "lines"
    if mode == "none":
        yield Silent()
    elif mode == "lines":
        yield LineReporter(stream)
    else:
        bars = BarReporter(stream)
        bars.progress.start()
        try:
            yield bars
        finally:
            bars.progress.stop()
