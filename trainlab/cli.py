"""The ``trainlab`` command: thin sub-commands over spec, executors, store, report and data.

A user's mistake (a bad study file, missing data, an unknown study) prints a message and exits
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainlab import __version__
from trainlab.errors import TrainlabError

DEFAULT_STORE = "trainlab.db"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Evaluate deep-learning training strategies from one study file.

A study file (TOML) names a data set and split, a base trial (model layers, optimizer,
training settings), the variants to compare and the seeds to repeat each with. `trainlab run`
trains every trial and records every epoch in a SQLite store; run it again to resume after a
crash or Ctrl-C. `trainlab report` prints the comparison. See docs/STUDY-FORMAT.md.

examples:
  trainlab run studies/quickstart.toml             train (or resume) and print the table
  trainlab status                                  studies in ./trainlab.db and their trials
  trainlab report quickstart --format markdown     the table for a README or notebook
  trainlab data list                               which data sets are available locally
"""


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", default=os.environ.get("TRAINLAB_STORE", DEFAULT_STORE), metavar="PATH",
        help=f"SQLite file holding studies, trials and epochs (default: $TRAINLAB_STORE or ./{DEFAULT_STORE})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainlab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="train every unfinished trial of a study, then print its table",
                         description="Train every unfinished trial of STUDY, recording each epoch as it ends. "
                                     "Finished trials are skipped; a trial cut off by a crash resumes from its last "
                                     "finished epoch. Several processes may run one study on one store: each trial runs once.")
    run.add_argument("study", metavar="STUDY", help="the study file (TOML)")
    _store_arg(run)
    run.add_argument("--retry-failed", action="store_true", help="run failed and diverged trials again from scratch")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--population", type=int, metavar="K", default=None,
                     help="train at most K trials of one architecture at once (default: as many as measured "
                          "throughput favours; 1 trains one at a time)")
    run.add_argument("--format", choices=("table", "markdown", "csv", "json", "none"), default="table",
                     help="how to print the results at the end (default: table)")

    check = sub.add_parser("check", help="validate a study file and list its trials without training")
    check.add_argument("study", metavar="STUDY")

    status = sub.add_parser("status", help="studies in the store and how many trials are done, running, failed, diverged")
    _store_arg(status)

    report = sub.add_parser("report", help="one row per variant: validation and test metrics over seeds",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Print the results of STUDY (a study name, or its file) from the store.\n"
                                        "Each row is a variant: n finished seeds, validation accuracy and loss at each\n"
                                        "trial's chosen epoch (mean ± std), that epoch, the test metric of the chosen\n"
                                        "weights, epochs run and seconds per epoch.\n"
                                        "The JSON format is stable and documented in docs/REPORT-JSON.md.")
    report.add_argument("study", metavar="STUDY", help="study name or study file")
    _store_arg(report)
    report.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    report.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")

    data = sub.add_parser("data", help="data sets available locally, and their integrity checks")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.add_parser("list", help="where each data set is found (cache, installed package, local file) or that it is missing")
    verify = dsub.add_parser("verify", help="load each data set and check shapes, class counts and checksums")
    verify.add_argument("names", nargs="*", metavar="NAME", help="data sets to verify (default: every one found)")
    add = dsub.add_parser("add", help="add a data set from a local file, e.g. `trainlab data add cifar10 cifar-10-python.tar.gz`")
    add.add_argument("name", metavar="NAME")
    add.add_argument("path", metavar="PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return COMMANDS[args.command](args)
    except TrainlabError as exc:
        print(f"trainlab: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ntrainlab: interrupted; finished epochs are kept. Run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _open_store(path: str, *, create: bool) -> Any:
    from trainlab.store import Store

    if not create and not Path(path).exists():
        raise TrainlabError(f"no store at {path}; run a study first (`trainlab run STUDY`) or pass --store PATH")
    return Store.open(path)


def cmd_run(args: argparse.Namespace) -> int:
    from trainlab import spec
    from trainlab.executors import register, run_local
    from trainlab.report import render, study_report

    study = spec.load(args.study)
    with _open_store(args.store, create=True) as store:
        if args.retry_failed:
            study_id, _ = register(study, store)
            store.reset_trials(study_id, ("failed", "diverged"))
        with _progress(args.quiet) as reporter:
            summary = run_local(study, store, reporter=reporter, population=args.population)
        ran = ", ".join(f"{n} {status}" for status, n in sorted(summary.ran.items())) or "nothing to run"
        print(f"study {study.name}: {summary.total} trials; this run: {ran}; already finished before: {summary.skipped_done}")
        if summary.busy_elsewhere:
            print(f"{summary.busy_elsewhere} trials are running in another process; `trainlab status` shows progress")
        if args.format != "none":
            print(render(study_report(store, study.name), args.format))
        return 0


def cmd_check(args: argparse.Namespace) -> int:
    from trainlab import spec

    study = spec.load(args.study)
    trials = study.trials()
    print(f"study {study.name}: {len(study.variants)} variants x {len(study.seeds)} seeds = {len(trials)} trials")
    for variant in study.variants:
        train = variant.spec["train"]
        print(f"  {variant.label}: optimizer {variant.spec['optimizer']['name']}, "
              f"{train['epochs']} epochs, batch {train['batch_size']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trainlab.store import STATUSES

    with _open_store(args.store, create=False) as store:
        studies = store.studies()
        if not studies:
            print(f"no studies in {args.store}")
            return 0
        header = ["study", "trials", *STATUSES]
        rows = []
        for study in studies:
            counts = store.status_counts(study.id)
            rows.append([study.name, str(sum(counts.values())), *(str(counts.get(s, 0)) for s in STATUSES)])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from trainlab.report import render, study_report

    name = args.study
    if name.endswith(".toml") or Path(name).is_file():
        from trainlab import spec

        name = spec.load(name).name
    with _open_store(args.store, create=False) as store:
        text = render(study_report(store, name), args.format)
    if args.out:
        Path(args.out).write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from trainlab import data

    if args.data_command in (None, "list"):
        for row in data.available():
            print(f"{row.name:<20} {row.where:<9} {row.path or ''}")
        return 0
    if args.data_command == "verify":
        failed = 0
        for name in args.names or [row.name for row in data.available() if row.where != "missing"]:
            result = data.verify(name)
            failed += not result.ok
            print(f"{name:<20} {'ok' if result.ok else 'FAILED'}  {result.message}")
        return 1 if failed else 0
    if args.data_command == "add":
        path = data.add_local(args.name, args.path)
        print(f"{args.name}: verified and stored in {path}")
        return 0
    return EXIT_USER_ERROR


COMMANDS = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "report": cmd_report, "data": cmd_data}


class _LineReporter:
    """Progress as one line per epoch: for logs and pipes, where bars would be noise."""

    def __init__(self) -> None:
        self.index = 0
        self.total = 0
        self.epochs = 0
        self.population = 1

    def study_started(self, total: int, done: int) -> None:
        self.total, self.index = total, done
        print(f"{total} trials, {done} already finished", flush=True)

    def unit_started(self, trials: Sequence[Any], epochs: int, resumed_at: int) -> None:
        first, self.index = self.index + 1, self.index + len(trials)
        self.epochs, self.population = epochs, len(trials)
        resumed = f" (resuming after epoch {resumed_at})" if resumed_at else ""
        span = f"{first}" if len(trials) == 1 else f"{first}-{self.index}"
        together = "" if len(trials) == 1 else f" (a population of {len(trials)}, trained together)"
        print(f"trial {span}/{self.total}: {', '.join(_label(t) for t in trials)}{together}{resumed}", flush=True)

    def batch(self, step: int, steps: int) -> None:
        pass

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        who = f"{_label(trial)}  " if self.population > 1 else ""
        print(f"  {who}epoch {epoch + 1}/{self.epochs}  {_logs_text(logs)}", flush=True)

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        if status != "done":
            print(f"  {_label(trial)}: {status}: {result.get('error') or result.get('stop_reason', '')}", flush=True)


def _label(trial: Any) -> str:
    return f"{trial.label} seed {trial.seed}"


def _logs_text(logs: Mapping[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "mse", "val_loss", "val_accuracy", "val_mse") if k in logs]
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys) + f"  {logs['seconds']:.1f}s"


class _BarReporter(_LineReporter):
    """Rich progress bars: trials of the study, and steps of the epoch with the live metrics."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.trials = self.progress.add_task("trials", total=None)
        self.steps = self.progress.add_task("", total=None, visible=False)
        self.names = ""
        self.last = ""
        self.epoch = 0

    def study_started(self, total: int, done: int) -> None:
        self.total, self.index = total, done
        self.progress.update(self.trials, total=total, completed=done)

    def unit_started(self, trials: Sequence[Any], epochs: int, resumed_at: int) -> None:
        first, self.index = self.index + 1, self.index + len(trials)
        self.epochs, self.population, self.epoch, self.last = epochs, len(trials), resumed_at, ""
        self.names = _label(trials[0]) if len(trials) == 1 else f"{len(trials)} together: {', '.join(t.label for t in trials)}"
        span = f"{first}" if len(trials) == 1 else f"{first}-{self.index}"
        self.progress.update(self.trials, description=f"trial {span}/{self.total}")
        self._describe()

    def _describe(self) -> None:
        text = f"  {self.names}  epoch {self.epoch + 1}/{self.epochs}"
        if self.last:
            text += f"  [dim]{self.last}[/dim]"
        self.progress.update(self.steps, description=text, visible=True)

    def batch(self, step: int, steps: int) -> None:
        self.progress.update(self.steps, completed=step, total=steps)

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        self.epoch = epoch + 1
        self.last = (f"{trial.label}: " if self.population > 1 else "") + _logs_text(logs)
        self._describe()

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        self.progress.advance(self.trials)
        best = result.get("best", {})
        score = best.get("val_accuracy", best.get("val_loss"))
        note = f"best {score:.4f}" if isinstance(score, float) else result.get("error", "")
        self.progress.console.print(f"{_label(trial)}: {status} {note}".rstrip())


class _progress:
    """Context manager choosing the reporter: bars on a terminal, lines otherwise, or silence."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.reporter: Any = None

    def __enter__(self) -> Any:
        from trainlab.executors import Silent

        if self.quiet:
            self.reporter = Silent()
        elif sys.stdout.isatty():
            self.reporter = _BarReporter()
            self.reporter.progress.start()
        else:
            self.reporter = _LineReporter()
        return self.reporter

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.reporter, _BarReporter):
            self.reporter.progress.stop()


if __name__ == "__main__":
    sys.exit(main())
