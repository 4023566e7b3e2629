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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from trainlab.errors import DataUnavailable, TrainlabError
from trainlab.version import __version__

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
  trainlab run studies/suite_optimizers.toml       a suite: its studies in turn, then their ranking
  trainlab export quickstart --out model/          the chosen model's weights and spec
  trainlab predict model/ digit.png                run an exported model on image files
  trainlab data list                               which data sets are available locally
  trainlab data show fashion_mnist --out figs/     sample images and class counts
"""


def _store_arg(parser: argparse.ArgumentParser) -> None:
    from trainlab.api.run import DEFAULT_STORE, default_store

    parser.add_argument(
        "--store",
        default=default_store(),
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
    run.add_argument("study", metavar="STUDY", help="the study file (TOML), or a suite file: its studies in turn")
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

    _tracking_parsers(sub, run)

    check = sub.add_parser("check", help="validate a study file and list its trials without training")
    check.add_argument("study", metavar="STUDY", help="a study file, or a suite file")
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
    report.add_argument(
        "study", metavar="STUDY", help="study name or study file; a suite file prints its ranking (docs/REPORTS.md)"
    )
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


def _open_store(path: str) -> Any:
    """The store a reading command reads: one that exists."""
    from trainlab.store import Store

    if not Path(path).exists():
        raise TrainlabError(f"no store at {path}; run a study first (`trainlab run STUDY`) or pass --store PATH")
    return Store.open(path)


def cmd_run(args: argparse.Namespace) -> int:
    from trainlab.api.result import Result
    from trainlab.api.run import RunOptions, run_study
    from trainlab.api.study import Study
    from trainlab.report import render

    options = RunOptions(
        retry_failed=args.retry_failed,
        workers=args.workers,
        population=args.population,
        checkpoint_every=args.checkpoint_every,
        executor=args.executor,
        address=args.address,
        max_retries=args.max_retries,
        cpus_per_task=args.cpus_per_task,
        track=tuple(args.track or ()),
        device=args.device,
        gpus_per_task=args.gpus_per_task,
    )
    if _is_suite(args.study):
        return _run_suite(args, options)
    study = Study.load(args.study, smoke=args.smoke)
    options = options.check(_flag)  # every option refused before the store is touched
    notes = _notes_stream(args.format)
    outcome = run_study(study.spec, args.store, options, progress=not args.quiet, stream=notes)
    report = Result(args.store, study.name, outcome).report()
    _say(notes, outcome.text(study.name, report["trials"]))
    if outcome.busy_elsewhere:
        _say(notes, f"{outcome.busy_elsewhere} trials are running in another process; `trainlab status` shows progress")
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


def _is_suite(path: str) -> bool:
    """Whether ``path`` is a suite file (a TOML file with a ``[suite]`` table) rather than a study."""
    from trainlab.suite import is_suite_file

    return is_suite_file(path)


def _run_suite(args: argparse.Namespace, options: Any) -> int:
    """``trainlab run SUITE``: every study of the suite in turn, then the ranking."""
    from trainlab import suite as suites
    from trainlab.api.suite import failed_studies, run_suite, suite_text

    suite = suites.load(args.study, smoke=args.smoke)
    options = options.check(_flag)
    notes = _notes_stream(args.format)
    runs = run_suite(suite, args.store, options, progress=not args.quiet, stream=notes)
    if args.format != "none":
        print(suite_text(args.store, suite, args.format), flush=True)
    failed = failed_studies(runs)
    if failed:
        which = ", ".join(f"{r.study} ({r.failed})" for r in failed)
        print(
            f"trainlab: the run finished, but trials of suite {suite.name} failed with an error: {which}; "
            f"`trainlab report STUDY` shows each error, --retry-failed runs them again (exit status "
            f"{EXIT_TRIALS_FAILED})",
            file=sys.stderr,
        )
        return EXIT_TRIALS_FAILED
    return 0


def _report_suite(args: argparse.Namespace) -> int:
    """``trainlab report SUITE``: the ranking of the suite's variants across its studies."""
    from trainlab import suite as suites
    from trainlab.api.suite import suite_text, write_suite_html

    given = {"all_test": args.all_test, "target": args.target is not None, "summary": args.summary}
    given |= {"target_metric": bool(args.target_metric), "trial": bool(args.trial)}
    given["correction"] = args.correction != "holm"
    for option, used in given.items():
        if used:
            raise TrainlabError(
                f"{_flag(option)} applies to a study's report, not to a suite's ranking (a suite's targets are "
                "set in its file, [suite.targets]); report one of its studies by name for it"
            )
    suite = suites.load(args.study)
    if args.format == "html":
        print(f"wrote {write_suite_html(args.store, suite, args.out or '.')}")
        return 0
    text = suite_text(args.store, suite, args.format)
    if args.out:
        Path(args.out).write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
    else:
        print(text)
    return 0


def _flag(name: str, value: Any = None) -> str:
    """An option as the command line spells it in a message: ``--workers``, ``--executor ray``."""
    return f"--{name.replace('_', '-')}" + ("" if value is None else f" {value}")


def _notes_stream(fmt: str) -> TextIO:
    """Where progress and notes go: standard error when standard output carries a machine format."""
    return sys.stderr if fmt in MACHINE_FORMATS else sys.stdout


def _say(stream: TextIO, text: str) -> None:
    print(text, file=stream, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    from trainlab.api.study import Study

    if _is_suite(args.study):
        from trainlab import suite as suites

        print("\n".join(suites.describe(suites.load(args.study, smoke=args.smoke))))
        return 0
    print(Study.load(args.study, smoke=args.smoke).check())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trainlab.api.stores import status_rows

    with _open_store(args.store) as store:
        found = status_rows(store)
    if not found:
        print(f"no studies in {args.store}")
        return 0
    header = list(found[0])
    rows = [[str(value) for value in row.values()] for row in found]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )
    return 0


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise TrainlabError(
            f"--formats: {', '.join(bad) or 'nothing'} not allowed; give a comma-separated list of png, svg, pdf"
        )
    return formats


def cmd_report(args: argparse.Namespace) -> int:
    from trainlab.api.result import report_options, report_text
    from trainlab.api.stores import study_name

    if _is_suite(args.study):
        return _report_suite(args)
    name = study_name(args.study)
    options = report_options(args.all_test, args.target, args.target_metric, args.correction, spell=_flag)
    with _open_store(args.store) as store:
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
        text = report_text(store, name, args.format, options, summary=args.summary, spell=_flag)
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
    from trainlab.api.result import make_figures
    from trainlab.api.stores import study_name
    from trainlab.report.figures import write

    names = [] if "all" in args.figures else args.figures
    formats = _formats(args.formats)
    with _open_store(args.store) as store:
        made = make_figures(store, study_name(args.study), names, trial=args.trial, tsne_samples=args.tsne_samples)
        for path in write(made, args.out, formats):
            print(f"wrote {path}")
    named = "all" not in args.figures
    missing = [m for m in made if m.figure is None and (named or m.applies)]
    for m in missing:
        print(f"{m.name}: not drawn: {m.skipped}", file=sys.stderr if named else sys.stdout)
    return EXIT_USER_ERROR if named and missing else 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainlab.api.stores import study_name
    from trainlab.export import export_trial

    with _open_store(args.store) as store:
        exported = export_trial(store, study_name(args.study), args.trial, args.out, torch_file=args.torch)
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


TRACK_EPILOG = """\
destinations:
  mlflow                 MLflow's default tracking URI ($MLFLOW_TRACKING_URI, else its local default)
  mlflow:URI             a tracking server (mlflow:http://host:5000) or store (mlflow:sqlite:///mlflow.db)
  tensorboard:DIR        event files under DIR, one folder per trial (`tensorboard --logdir DIR`)

MLflow: an experiment named after the study, a parent run for the study and one nested run per
trial: its settings as params, tags study, stage, variant, seed, trial and status, every epoch's
metrics (step = epoch, from 0), the outcome (best/NAME, test/NAME, best_epoch), spec.json, and the
chosen model (model/, as `trainlab export` writes it) once done. TensorBoard: scalars per epoch and
the HParams table. Copying again adds only what is missing: never a second run or a doubled epoch.
See docs/TRACKING.md (needs pip install 'trainlab[mlflow]' or 'trainlab[tensorboard]').
"""


def _tracking_parsers(sub: Any, run: argparse.ArgumentParser) -> None:
    """``run --track``, ``track`` and ``tensorboard``: a study's trials in MLflow or TensorBoard."""
    run.add_argument(
        "--track",
        action="append",
        metavar="DEST",
        default=[],
        help="also log every trial while it trains to DEST: mlflow, mlflow:URI or tensorboard:DIR "
        "(repeat for several). An unreachable server never stops training: it is said once, and "
        "`trainlab track` catches up later (docs/TRACKING.md)",
    )
    track = sub.add_parser(
        "track",
        help="copy a study's trials from the store to MLflow or TensorBoard (finished or half-finished)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=TRACK_EPILOG,
        description="Copy every trial of STUDY that has started, from the store to each --to\n"
        "destination, adding only what it does not hold yet. Run it after a study, while\n"
        "one trains, or after `run --track` could not reach its server.\n\n"
        "examples:\n"
        "  trainlab track quickstart --to mlflow:sqlite:///mlflow.db\n"
        "  trainlab track quickstart --to mlflow:http://127.0.0.1:5000\n"
        "  trainlab track quickstart --to tensorboard:tb/quickstart",
    )
    track.add_argument("study", metavar="STUDY", help="study name or study file")
    _store_arg(track)
    track.add_argument(
        "--to", action="append", required=True, metavar="DEST", help="mlflow, mlflow:URI or tensorboard:DIR; repeatable"
    )
    tensorboard = sub.add_parser(
        "tensorboard",
        help="write a study's trials as TensorBoard event files (scalars and the HParams table)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write every trial of STUDY that has started as a folder of TensorBoard event files\n"
        "under --logdir: its metrics per epoch as scalars (step = epoch, from 0), and its\n"
        "settings and outcome in the HParams dashboard's table. The same as\n"
        "`trainlab track STUDY --to tensorboard:DIR`; then `tensorboard --logdir DIR`.",
    )
    tensorboard.add_argument("study", metavar="STUDY", help="study name or study file")
    _store_arg(tensorboard)
    tensorboard.add_argument("--logdir", required=True, metavar="DIR", help="folder of the event files")


def cmd_track(args: argparse.Namespace, targets: Sequence[str] | None = None) -> int:
    from trainlab.api.stores import study_name
    from trainlab.tracking import copy_study

    name = study_name(args.study)
    with _open_store(args.store) as store:
        for target in targets or args.to:
            views = copy_study(store, name, target)
            shown = sum(v.worth_showing() for v in views)
            waiting = f" ({len(views) - shown} not started yet)" if shown < len(views) else ""
            print(f"study {name}: {shown} of {len(views)} trials in {target}{waiting}")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    code = cmd_track(args, [f"tensorboard:{args.logdir}"])
    print(f"view them with: tensorboard --logdir {args.logdir}")
    return code


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "status": cmd_status,
    "report": cmd_report,
    "data": cmd_data,
    "plot": cmd_plot,
    "export": cmd_export,
    "predict": cmd_predict,
    "track": cmd_track,
    "tensorboard": cmd_tensorboard,
}


if __name__ == "__main__":
    sys.exit(main())
