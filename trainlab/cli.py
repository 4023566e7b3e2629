"""The ``trainlab`` command: thin sub-commands over spec, executors, store, report and data.

A user's mistake (a bad study file, missing data, an unknown study) prints a message and exits
with status 2, never a traceback. ``run`` exits 1 when it finished but trials of the study
failed with an error, so that a script can tell. A machine format (JSON, CSV, Markdown) owns
standard output: progress and notes then go to standard error, so that ``> out.json`` holds
the report alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from trainlab import __version__
from trainlab.errors import DataUnavailable, TrainlabError

DEFAULT_STORE = "trainlab.db"
EXIT_TRIALS_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MACHINE_FORMATS = ("markdown", "csv", "json")
"""Report formats that other programs read: with them, standard output carries the report alone."""

RUN_EPILOG = f"""\
output:
  With --format json, csv or markdown, standard output carries the report alone: progress,
  notes and the summary line go to standard error, so `trainlab run S --format json > r.json`
  writes valid JSON. With --format table (the default) or none, everything goes to standard
  output.

exit status:
  0    every trial of the study finished: done, diverged or pruned (a diverged or pruned
       trial is a result, not an error)
  {EXIT_TRIALS_FAILED}    the run finished, but trials of the study failed with an error (recorded as
       failed; `trainlab report` shows each error, --retry-failed runs them again)
  {EXIT_USER_ERROR}    stopped with a message: a usage or study-file error, missing data or a damaged
       store (then nothing is trained), or a stage that cannot start because no trial
       of its source stage finished
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); run the same command again to resume
"""

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
  trainlab report quickstart --format html --out reports/   tables and figures in one HTML file
  trainlab plot quickstart curves final --out figs/          individual figures (PNG and SVG)
  trainlab export quickstart --out model/          the chosen model's weights and spec
  trainlab predict model/ digit.png                run an exported model on image files
  trainlab data list                               which data sets are available locally
  trainlab data show fashion_mnist --out figs/     sample images and class counts
"""


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get("TRAINLAB_STORE", DEFAULT_STORE),
        metavar="PATH",
        help=f"SQLite file holding studies, trials and epochs (default: $TRAINLAB_STORE or ./{DEFAULT_STORE})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train every unfinished trial of a study, then print its table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_EPILOG,
        description="Train every unfinished trial of STUDY, recording each epoch as it ends.\n"
        "Finished trials are skipped; a trial cut off by a crash resumes from its last\n"
        "finished epoch. Several processes may run one study on one store: each trial\n"
        "runs once. A staged study trains its stages in order, each starting from the\n"
        "variant the stage it names chose; a search samples its variants round by round.",
    )
    run.add_argument("study", metavar="STUDY", help="the study file (TOML)")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run of the whole study: one seed, 1024 training examples, 2 epochs, at most 3 "
        "search trials and 2 folds, recorded as NAME-smoke (every code path, little work)",
    )
    _store_arg(run)
    run.add_argument("--retry-failed", action="store_true", help="run failed and diverged trials again from scratch")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument(
        "--workers",
        metavar="N",
        default="auto",
        help="worker processes sharing the cores (default auto, decided from the study: one using "
        "every core where trials form populations, else one per core). Part of each trial's "
        "recorded plan: another count divides the cores otherwise, which changes results "
        "within float rounding",
    )
    run.add_argument(
        "--population",
        type=int,
        metavar="K",
        default=None,
        help="train at most K trials that can share a population at once (default: 16; 1 trains "
        "one at a time). Part of each trial's recorded plan",
    )
    run.add_argument(
        "--device",
        metavar="DEVICE",
        default="auto",
        help="where trials train: auto (default: CUDA, else MPS on a Mac, when torch sees one, else the CPU), "
        "cpu, cuda (one worker per GPU), cuda:N or mps. Part of each trial's recorded plan; a resumed "
        "trial keeps its device",
    )
    run.add_argument(
        "--format",
        choices=("table", "markdown", "csv", "json", "none"),
        default="table",
        help="how to print the results at the end (default: table)",
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: train on this machine (default); ray: train on a Ray cluster, this process "
        "recording the results (docs/CLUSTER.md; needs pip install 'trainlab[ray]')",
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        default=None,
        help="ray: the cluster to use, 'auto' (the one `ray start` runs on this machine) or HOST:PORT "
        "of its head (default: start Ray on this machine for the run)",
    )
    run.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        default=None,
        help="ray: hand a trial out again at most N times after the task training it died, "
        "resuming from its last recorded epoch (default: 2)",
    )
    run.add_argument(
        "--cpus-per-task",
        type=int,
        metavar="N",
        default=None,
        help="ray: CPUs each task holds and torch threads it uses (default: 1); tasks in flight = cluster CPUs / N",
    )
    run.add_argument(
        "--gpus-per-task",
        type=float,
        metavar="G",
        default=None,
        help="ray: GPUs each task holds (default: 0; 1 trains each population on a GPU of its own, "
        "0.5 lets two share one); with G > 0, --device auto trains on CUDA",
    )
    run.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="SECONDS",
        default=None,
        help="local: seconds of training between two checkpoints of a trial (default: 10; 0: every "
        "epoch). Every epoch's metrics are recorded; a crash loses at most this much training, "
        "which the next run re-does identically",
    )

    check = sub.add_parser("check", help="validate a study file and list its trials without training")
    check.add_argument("study", metavar="STUDY")
    check.add_argument("--smoke", action="store_true", help="check the study's smoke run (see run --smoke)")

    status = sub.add_parser(
        "status", help="studies in the store and how many trials are done, running, failed, diverged"
    )
    _store_arg(status)

    report = sub.add_parser(
        "report",
        help="one row per variant: validation and test metrics over seeds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the results of STUDY (a study name, or its file) from the store.\n"
        "Each row is a variant: n finished seeds, validation accuracy and loss at each\n"
        "trial's chosen epoch (mean ± std), the 95% Student-t CI of the selection metric,\n"
        "a t-test against the best variant (paired where both finished the same 3+ seeds,\n"
        "Welch's otherwise; p corrected by Holm over every pair of variants; '≈ best':\n"
        "not distinguishable at 5%),\n"
        "that epoch, the test metric (only for the variant chosen on validation, unless\n"
        "--all-test), epochs run, seconds per epoch and training time.\n"
        "--format html writes one self-contained file with the figures too.\n"
        "See docs/REPORTS.md; the JSON format is stable and documented in docs/REPORT-JSON.md.",
    )
    report.add_argument("study", metavar="STUDY", help="study name or study file")
    _store_arg(report)
    report.add_argument(
        "--format",
        choices=("table", "markdown", "csv", "json", "html"),
        default="table",
        help="table (terminal), markdown, csv, json, or html: one self-contained file with "
        "tables and figures (see docs/REPORTS.md)",
    )
    report.add_argument(
        "--out",
        metavar="PATH",
        help="write to FILE instead of standard output; for html a folder "
        "(the file is STUDY.html in it, default: the current folder) or a .html path",
    )
    report.add_argument(
        "--all-test",
        action="store_true",
        help="show the test metric of every variant, not only of the one chosen on validation",
    )
    report.add_argument(
        "--target",
        type=float,
        metavar="VALUE",
        help="report epochs and seconds until the validation metric first reaches VALUE, "
        "and the fraction of seeds that did",
    )
    report.add_argument(
        "--target-metric",
        metavar="NAME",
        help="the metric --target applies to (default: val_accuracy, or val_loss for regression)",
    )
    report.add_argument("--summary", action="store_true", help="also print each model's Keras-style summary")
    report.add_argument(
        "--correction",
        choices=("holm", "bonferroni", "none"),
        default="holm",
        help="how 'vs best' p-values are corrected for the number of comparisons (default: holm, "
        "over every pair of variants; see docs/REPORTS.md)",
    )
    report.add_argument(
        "--trial",
        metavar="ID",
        help="html: the trial of the test-set figures (hash prefix, "
        "variant label or LABEL:SEED; default: the one chosen on validation)",
    )
    report.add_argument(
        "--no-data",
        action="store_true",
        help="html: leave out the figures that need the data set (confusion matrix, images, t-SNE)",
    )
    report.add_argument(
        "--tsne-samples",
        type=int,
        default=500,
        metavar="N",
        help="html: test examples in each t-SNE map (default: 500)",
    )

    plot = sub.add_parser(
        "plot",
        help="draw individual figures of a study (PNG and SVG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw figures of STUDY from the store (and, for the test-set figures, the data set).\n"
        "figures:\n"
        + "\n".join(f"  {n:<10} {d}" for n, d in _figure_names().items())
        + "\n  all        every figure that applies (default)",
    )
    plot.add_argument("study", metavar="STUDY", help="study name or study file")
    plot.add_argument("figures", nargs="*", metavar="FIGURE", default=["all"], help="figures to draw (default: all)")
    _store_arg(plot)
    plot.add_argument("--out", default=".", metavar="DIR", help="folder for the files (default: the current folder)")
    plot.add_argument(
        "--formats", default="png,svg", metavar="LIST", help="comma-separated: png, svg, pdf (default: png,svg)"
    )
    plot.add_argument(
        "--trial", metavar="ID", help="trial of the test-set figures (default: the one chosen on validation)"
    )
    plot.add_argument(
        "--tsne-samples", type=int, default=500, metavar="N", help="test examples in each t-SNE map (default: 500)"
    )

    export = sub.add_parser(
        "export",
        help="write a finished trial's weights and model spec to a folder",
        description="Write the chosen weights (safetensors) and the model spec (model.json) of a "
        "finished trial, so that the model can be rebuilt from the spec alone and used "
        "with `trainlab predict`.",
    )
    export.add_argument("study", metavar="STUDY", help="study name or study file")
    _store_arg(export)
    export.add_argument(
        "--trial",
        metavar="ID",
        help="trial hash (or its first characters), variant label (its best seed) "
        "or LABEL:SEED; default: the trial chosen on validation",
    )
    export.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write model.json and model.safetensors to"
    )
    export.add_argument("--torch", action="store_true", help="also write model.pt (a torch.save state dict)")

    predict = sub.add_parser(
        "predict",
        help="run an exported model on image files or on its test set",
        description="Rebuild the model exported to MODEL (a folder) from its spec and run it: on "
        "IMAGE files (28x28 grayscale or 32x32 colour, as the model takes them), or on "
        "the first N test examples with --test N. --evaluate scores the whole test set "
        "and compares with the metrics recorded for the trial (exit 1 if they differ).",
    )
    predict.add_argument("model", metavar="MODEL", help="folder written by `trainlab export`")
    predict.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    predict.add_argument("--test", type=int, metavar="N", help="predict the first N examples of the model's test set")
    predict.add_argument(
        "--evaluate", action="store_true", help="score the whole test set and compare with the recorded metrics"
    )
    predict.add_argument(
        "--top", type=int, default=1, metavar="K", help="show the K most probable classes (default: 1)"
    )
    predict.add_argument("--resize", action="store_true", help="resize images of another size instead of refusing them")
    predict.add_argument(
        "--torch",
        action="store_true",
        help="load model.pt (written with export --torch) instead of the safetensors file",
    )

    data = sub.add_parser("data", help="data sets available locally, and their integrity checks")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.add_parser(
        "list", help="where each data set is found (cache, installed package, local file) or that it is missing"
    )
    verify = dsub.add_parser("verify", help="load each data set and check shapes, class counts and checksums")
    verify.add_argument("names", nargs="*", metavar="NAME", help="data sets to verify (default: every one found)")
    add = dsub.add_parser(
        "add", help="add a data set from a local file, e.g. `trainlab data add cifar10 cifar-10-python.tar.gz`"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("path", metavar="PATH")
    show = dsub.add_parser(
        "show",
        help="draw sample images with class names and class counts per split (feature histograms for tabular data)",
    )
    show.add_argument(
        "name", metavar="NAME", help="a data set name, or a study file (shows its train/validation/test split)"
    )
    show.add_argument("--path", metavar="FILE", help="for NAME npz: the .npz file")
    show.add_argument("--out", default=".", metavar="DIR", help="folder for the files (default: the current folder)")
    show.add_argument(
        "--formats", default="png,svg", metavar="LIST", help="comma-separated: png, svg, pdf (default: png,svg)"
    )
    return parser


def _figure_names() -> dict[str, str]:
    from trainlab.report.catalog import FIGURES

    return FIGURES


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """trainlab's own warnings (a damaged cache rebuilt, ...) as one plain line; others as Python shows them."""
    if category.__module__.startswith("trainlab."):
        return f"trainlab: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return COMMANDS[args.command](args)
    except DataUnavailable as exc:
        print(f"trainlab: {exc.summary}", file=sys.stderr)  # the sources tried: `trainlab data verify NAME`
        return EXIT_USER_ERROR
    except TrainlabError as exc:
        print(f"trainlab: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(
            "\ntrainlab: interrupted; finished epochs are kept. Run the same command again to resume.", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of the output went away (`trainlab check S | head`): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _open_store(path: str, *, create: bool) -> Any:
    from trainlab.store import Store

    if not create and not Path(path).exists():
        raise TrainlabError(f"no store at {path}; run a study first (`trainlab run STUDY`) or pass --store PATH")
    return Store.open(path)


def cmd_run(args: argparse.Namespace) -> int:
    from trainlab import orchestrate, spec
    from trainlab.data.cache import DataCache
    from trainlab.executors import CHECKPOINT_EVERY, RunSummary, check_data, register
    from trainlab.report import render, study_report

    every = CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every
    if not every >= 0:
        raise TrainlabError(f"--checkpoint-every takes seconds >= 0, got {args.checkpoint_every}")
    study = spec.load(args.study, smoke=args.smoke)
    _check_executor_options(args)
    args.device = _device(args)  # a device this machine lacks stops the run before the store is touched
    if args.workers != "auto":
        _workers(args.workers, study, args.device)  # refuse a bad value before the store is touched
    if args.population is not None and args.population < 1:
        raise TrainlabError(
            f"--population takes a number of trials >= 1 (1 trains one at a time), got {args.population}"
        )
    cache = DataCache()
    check_data(study, cache)  # what only the data can refute stops the run before the store is touched
    notes = _notes_stream(args.format)
    with _open_store(args.store, create=True) as store:
        if args.retry_failed:
            study_id, _ = register(study, store)
            store.reset_trials(study_id, ("failed", "diverged"))
        summaries: list[RunSummary] = []
        with _progress(args.quiet, notes) as reporter:

            def execute(round_study: Any, pruning: Any) -> None:
                if args.executor == "ray":
                    summaries.append(_run_ray(args, round_study, store, reporter, cache, notes, first=not summaries))
                else:
                    summaries.append(
                        _run_local(
                            args, round_study, store, reporter, pruning, cache, every, notes, first=not summaries
                        )
                    )

            orchestrate.run(study, store, execute, on_wait=lambda message: _say(notes, f"waiting: {message}"))
        report = study_report(store, study.name)
    _say(notes, _run_summary(study.name, report["trials"], summaries))
    busy = summaries[-1].busy_elsewhere if summaries else 0
    if busy:
        _say(notes, f"{busy} trials are running in another process; `trainlab status` shows progress")
    if args.format != "none":
        print(render(report, args.format), flush=True)
    failed = report["trials"]["status"].get("failed", 0)
    if failed:
        print(
            f"trainlab: the run finished, but {failed} trial{'s' if failed != 1 else ''} of study {study.name} "
            f"failed with an error; `trainlab report {study.name}` shows each error, --retry-failed runs them "
            f"again (exit status {EXIT_TRIALS_FAILED})",
            file=sys.stderr,
        )
        return EXIT_TRIALS_FAILED
    return 0


def _run_summary(name: str, counts: Mapping[str, Any], summaries: Sequence[Any]) -> str:
    """The line a run ends with: the study's trials (each counted once, as every report counts
    them), what this run did, and what was finished before it."""
    ran: dict[str, int] = {}
    for summary in summaries:
        for status, n in summary.ran.items():
            ran[status] = ran.get(status, 0) + n
    before = summaries[0].skipped_done if summaries else counts["total"]
    text = ", ".join(f"{n} {status}" for status, n in sorted(ran.items())) or "nothing to run"
    return f"study {name}: {counts['total']} trials; this run: {text}; already finished before: {before}"


def _notes_stream(fmt: str) -> TextIO:
    """Where progress and notes go: standard error when standard output carries a machine format."""
    return sys.stderr if fmt in MACHINE_FORMATS else sys.stdout


def _say(stream: TextIO, text: str) -> None:
    print(text, file=stream, flush=True)


def _check_executor_options(args: argparse.Namespace) -> None:
    """Options that belong to the other executor, and a missing Ray, stop the run before the store is touched."""
    if args.executor == "ray":
        from trainlab.cluster import import_ray

        if args.workers != "auto":
            raise TrainlabError(
                "--workers is an option of the local executor; with --executor ray the cluster's CPUs "
                "decide how many trials train at once (see --cpus-per-task)"
            )
        if args.checkpoint_every is not None:
            raise TrainlabError(
                "--checkpoint-every is an option of the local executor; on Ray every epoch carries its checkpoint"
            )
        import_ray()
        return
    for option in ("address", "max_retries", "cpus_per_task", "gpus_per_task"):
        if getattr(args, option) is not None:
            raise TrainlabError(f"--{option.replace('_', '-')} is an option of --executor ray")


def _run_local(
    args: argparse.Namespace,
    study: Any,
    store: Any,
    reporter: Any,
    pruning: Any,
    cache: Any,
    checkpoint_every: float,
    notes: TextIO,
    *,
    first: bool,
) -> Any:
    from trainlab.executors import run_local, run_pool

    workers = _workers(args.workers, study, args.device)
    if workers > 1:
        if not args.quiet and first:
            _say(notes, f"{workers} worker processes share the work; progress shows this one's trials")
        return run_pool(
            study,
            args.store,
            workers,
            reporter=reporter,
            population=args.population,
            pruning=pruning,
            store=store,
            cache=cache,
            checkpoint_every=checkpoint_every,
            device=args.device,
        )
    return run_local(
        study,
        store,
        reporter=reporter,
        population=args.population,
        pruning=pruning,
        cache=cache,
        checkpoint_every=checkpoint_every,
        device=args.device,
    )


def _run_ray(
    args: argparse.Namespace, study: Any, store: Any, reporter: Any, cache: Any, notes: TextIO, *, first: bool
) -> Any:
    """One round on Ray. Searches are not pruned there: workers cannot ask the store how others did."""
    from trainlab.cluster import DEFAULT_MAX_RETRIES, run_ray

    return run_ray(
        study,
        store,
        address=args.address,
        reporter=reporter,
        population=args.population,
        cache=cache,
        max_retries=DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries,
        cpus_per_task=1 if args.cpus_per_task is None else args.cpus_per_task,
        gpus_per_task=_gpus_per_task(args),
        device=args.device,
        announce=None if args.quiet or not first else lambda text: _say(notes, text),
    )


def _gpus_per_task(args: argparse.Namespace) -> float:
    return 0.0 if args.gpus_per_task is None else args.gpus_per_task


def _device(args: argparse.Namespace) -> str:
    """The run's device: ``--device`` resolved against this machine, or, on Ray, against the GPUs
    its tasks hold (the driver itself may have none)."""
    if args.executor == "ray":
        from trainlab.cluster import ray_device

        return ray_device(args.device, _gpus_per_task(args))
    from trainlab import devices

    return devices.resolve(args.device)


def _workers(value: str, study: Any, device: str = "cpu") -> int:
    from trainlab.executors import auto_workers

    if value == "auto":
        return auto_workers(study, device)
    if not value.isdigit() or int(value) < 1:
        raise TrainlabError(f"--workers takes a positive number or 'auto', got {value!r}")
    return int(value)


def cmd_check(args: argparse.Namespace) -> int:
    from trainlab import spec

    study = spec.load(args.study, smoke=args.smoke)
    trials = study.trials()
    if not study.dynamic:
        print(f"study {study.name}: {len(study.variants)} variants x {len(study.seeds)} seeds = {len(trials)} trials")
    else:
        print(
            f"study {study.name}: {len(study.stages)} stages; later stages and searches are resolved as results come in"
        )
    candidates = study.candidates(CHECK_SHOWN_BASES) if study.dynamic else {}
    for stage in study.stages:
        if study.staged:
            source = f" (from the best of {stage.source!r})" if stage.source else ""
            print(f"stage {stage.name}{source}: {stage.description}".rstrip(": "))
        if stage.search is not None:
            s = stage.search
            print(
                f"  search: {s.sampler}, {s.trials} variants in rounds of {s.batch}, pruning {s.prune}; "
                f"space: {', '.join(d.key for d in s.space)}"
            )
        elif stage is study.stages[0]:
            for variant in study.variants:
                _print_variant(variant.label, [variant])
        else:
            found = candidates[stage.name]
            if stage.source:
                starts = len(candidates[stage.source])
                which = (
                    f"each of the {starts}"
                    if starts <= CHECK_SHOWN_BASES
                    else f"the first {CHECK_SHOWN_BASES} of the {starts}"
                )
                print(
                    f"  resolved on {which} variants of {stage.source!r} it may start from; "
                    "a|b: depends on the one chosen"
                )
            groups: dict[str, list[Any]] = {}
            for variant in found:
                groups.setdefault(variant.label, []).append(variant)
            for label, group in groups.items():
                _print_variant(label, group)
    return 0


CHECK_SHOWN_BASES = 64
"""How many variants of an earlier stage ``check`` resolves a later stage on, to show its settings."""


def _print_variant(label: str, variants: list[Any]) -> None:
    """A variant's label and its settings (see trainlab.describe); several possible specs of it
    (a later stage's variant on each base) show the values that differ among them as a|b."""
    from trainlab import describe

    split = variants[0].spec["data"]["split"]
    folds = split.get("folds") if split["kind"] == "kfold" else None
    print(f"  {label}" + (f" ({folds} folds)" if folds else ""))
    for line in describe.lines([describe.settings(v.spec) for v in variants]):
        print(f"    {line}")


def cmd_status(args: argparse.Namespace) -> int:
    from trainlab.store import STATUSES

    with _open_store(args.store, create=False) as store:
        studies = store.studies()
        if not studies:
            print(f"no studies in {args.store}")
            return 0
        header = ["study", "trials", *STATUSES, "plan"]
        rows = []
        for study in studies:
            counts = store.status_counts(study.id)
            rows.append(
                [
                    study.name,
                    str(sum(counts.values())),
                    *(str(counts.get(s, 0)) for s in STATUSES),
                    _plans_text(store.trials(study.id)),
                ]
            )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print(
                "  ".join(
                    cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths))
                ).rstrip()
            )
    return 0


def _plans_text(trials: Sequence[Any]) -> str:
    """The recorded plans of a study's trials, most common first: ``4 x population of 3, eager, 2 threads``."""
    from trainlab.planner import Plan

    counts: dict[str, int] = {}
    for trial in trials:
        text = Plan.from_json(trial.plan).describe() if trial.plan else "not planned"
        counts[text] = counts.get(text, 0) + 1
    return "; ".join(f"{n} x {text}" for text, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _study_name(arg: str) -> str:
    """A study name, or the name of the study in the file ``arg``."""
    if arg.endswith(".toml") or Path(arg).is_file():
        from trainlab import spec

        return spec.load(arg).name
    return arg


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise TrainlabError(
            f"--formats: {', '.join(bad) or 'nothing'} not allowed; give a comma-separated list of png, svg, pdf"
        )
    return formats


def cmd_report(args: argparse.Namespace) -> int:
    from trainlab.report import render, study_report
    from trainlab.report.tables import Options

    name = _study_name(args.study)
    options = Options(
        all_test=args.all_test, target=args.target, target_metric=args.target_metric, correction=args.correction
    )
    if args.target_metric and args.target is None:
        raise TrainlabError("--target-metric needs --target VALUE, the value to reach")
    if args.summary and args.format in ("json", "csv"):
        raise TrainlabError(
            f"--summary prints model summaries as text, which would break --format {args.format}; "
            "use it with --format table, markdown or html (html always has them)"
        )
    with _open_store(args.store, create=False) as store:
        if args.format == "html":
            from trainlab.report.html import write_html

            path = write_html(
                store,
                name,
                args.out or ".",
                options=options,
                trial=args.trial,
                tsne_samples=args.tsne_samples,
                trial_figures=not args.no_data,
            )
            print(f"wrote {path}")
            return 0
        text = render(study_report(store, name, options), args.format)
        if args.summary:
            from trainlab.report.summary import study_models
            from trainlab.report.summary import text as summary_text

            summaries = [summary_text(m) for m in study_models(store, name)]
            if args.format == "markdown":  # a code block keeps the columns of each summary aligned
                summaries = [f"```\n{t}\n```" for t in summaries]
            text += "\n\n" + "\n\n".join(summaries)
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
    if args.data_command == "show":
        from trainlab.report.figures import data_figures, write

        if args.name == "npz" and not args.path:
            raise TrainlabError("data show npz needs the file: pass --path FILE.npz")

        for path in write(data_figures(args.name, path=args.path), args.out, _formats(args.formats)):
            print(f"wrote {path}")
        return 0
    return EXIT_USER_ERROR


def cmd_plot(args: argparse.Namespace) -> int:
    from trainlab.report.catalog import FIGURES
    from trainlab.report.figures import StudyFigures, write

    names = list(FIGURES) if "all" in args.figures else args.figures
    formats = _formats(args.formats)
    for name in names:
        if name not in FIGURES:
            raise TrainlabError(f"unknown figure {name!r}; choose from: {', '.join(FIGURES)}, all")
    with _open_store(args.store, create=False) as store:
        figures = StudyFigures(store, _study_name(args.study), trial=args.trial, tsne_samples=args.tsne_samples)
        made = figures.make_all(names)
        for path in write(made, args.out, formats):
            print(f"wrote {path}")
    named = "all" not in args.figures
    missing = [m for m in made if m.figure is None and (named or m.applies)]
    for m in missing:
        print(f"{m.name}: not drawn: {m.skipped}", file=sys.stderr if named else sys.stdout)
    return EXIT_USER_ERROR if named and missing else 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainlab.export import export_trial

    with _open_store(args.store, create=False) as store:
        exported = export_trial(store, _study_name(args.study), args.trial, args.out, torch_file=args.torch)
    meta = exported.meta
    test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(meta["recorded"]["test"].items()) if isinstance(v, (int, float)))
    print(f"exported trial {meta['trial'][:10]} ({meta['label']}, seed {meta['seed']}; test: {test or '-'})")
    for path in exported.files:
        print(f"wrote {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from trainlab import export

    model = export.load_model(args.model, prefer="torch" if args.torch else "safetensors")
    if not args.images and args.test is None and not args.evaluate:
        raise TrainlabError("nothing to predict: give IMAGE files, --test N (the first N test examples) or --evaluate")
    if args.images:
        x = export.load_images(args.images, model.input_shape, resize=args.resize)
        print("\n".join(export.prediction_lines(model, args.images, export.predict(model, x), args.top)))
    if args.test is not None:
        print("\n".join(export.test_lines(model, args.test)))
    if args.evaluate:
        lines, same = export.evaluation_lines(model)
        print("\n".join(lines))
        return 0 if same else 1
    return 0


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "status": cmd_status,
    "report": cmd_report,
    "data": cmd_data,
    "plot": cmd_plot,
    "export": cmd_export,
    "predict": cmd_predict,
}


class _LineReporter:
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
        together = _plan_note(trials[0])
        print(
            f"trial {span}/{self.total}: {', '.join(_label(t) for t in trials)}{together}{resumed}",
            file=self.stream,
            flush=True,
        )

    def batch(self, step: int, steps: int) -> None:
        pass

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        who = f"{_label(trial)}  " if len(self.epochs) > 1 else ""
        print(
            f"  {who}epoch {epoch + 1}/{self.epochs.get(trial.id, 0)}  {_logs_text(logs)}", file=self.stream, flush=True
        )

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        self.epochs.pop(trial.id, None)
        if status != "done":
            print(
                f"  {_label(trial)}: {status}: {result.get('error') or result.get('stop_reason', '')}",
                file=self.stream,
                flush=True,
            )

    def unit_retried(self, trials: Sequence[Any], resumed_at: int, reason: str) -> None:
        after = f"after epoch {resumed_at}" if resumed_at else "from the start"
        print(
            f"  {', '.join(_label(t) for t in trials)}: the task died ({reason}); handed out again, resuming {after}",
            file=self.stream,
            flush=True,
        )


def _plan_note(trial: Any) -> str:
    """`` (population of 3, eager, 2 threads)``: how a population trains, from its recorded plan."""
    from trainlab.planner import Plan

    return f" ({Plan.from_json(trial.plan).describe()})" if trial.plan else ""


def _label(trial: Any) -> str:
    return f"{trial.label} seed {trial.seed}"


def _logs_text(logs: Mapping[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "mse", "val_loss", "val_accuracy", "val_mse") if k in logs]
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys) + f"  {logs['seconds']:.1f}s"


class _BarReporter(_LineReporter):
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
            _label(trials[0]) if len(trials) == 1 else f"{len(trials)} together: {', '.join(t.label for t in trials)}"
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

    def epoch_finished(self, trial: Any, epoch: int, logs: Mapping[str, float]) -> None:
        self.epoch, self.budget = epoch + 1, self.epochs.get(trial.id, self.budget)
        self.last = (f"{trial.label}: " if len(self.epochs) > 1 else "") + _logs_text(logs)
        self._describe()

    def trial_finished(self, trial: Any, status: str, result: Mapping[str, Any]) -> None:
        self.epochs.pop(trial.id, None)
        self.progress.advance(self.trials)
        best = result.get("best", {})
        score = best.get("val_accuracy", best.get("val_loss"))
        note = f"best {score:.4f}" if isinstance(score, float) else result.get("error", "")
        self.progress.console.print(f"{_label(trial)}: {status} {note}".rstrip())


class _progress:
    """Context manager choosing the reporter writing to ``stream``: bars on a terminal, lines
    otherwise, or silence."""

    def __init__(self, quiet: bool, stream: TextIO) -> None:
        self.quiet = quiet
        self.stream = stream
        self.reporter: Any = None

    def __enter__(self) -> Any:
        from trainlab.executors import Silent

        if self.quiet:
            self.reporter = Silent()
        elif self.stream.isatty():
            self.reporter = _BarReporter(self.stream)
            self.reporter.progress.start()
        else:
            self.reporter = _LineReporter(self.stream)
        return self.reporter

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.reporter, _BarReporter):
            self.reporter.progress.stop()


if __name__ == "__main__":
    sys.exit(main())
