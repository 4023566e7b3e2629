"""A suite run and reported: each of its studies trained in turn into one store, then the
ranking of its variants across them (docs/REPORTS.md, "Suites").

Each study trains through :func:`trainlab.api.run.run_study`, exactly as ``trainlab run STUDY``
trains it alone: the same trials, plans and results, resumable the same way. Every study file
and every data set is checked before the first trial trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from trainlab.api.result import Result, opened
from trainlab.api.run import RunOptions, RunOutcome, run_study, say
from trainlab.suite import Suite


@dataclass(frozen=True)
class StudyRun:
    """What a suite's run did to one of its studies, and the line that says so."""

    study: str
    outcome: RunOutcome
    text: str
    failed: int


def check_suite_data(suite: Suite) -> None:
    """Every data set of every study of ``suite`` prepared and checked against its batch sizes,
    so that a missing data set stops the run before the first study trains."""
    from trainlab.data.cache import DataCache
    from trainlab.executors import check_data

    cache = DataCache()
    for workload in suite.workloads:
        check_data(workload.study, cache)


def run_suite(
    suite: Suite, store_path: str | Path, options: RunOptions, *, progress: bool | str, stream: TextIO
) -> list[StudyRun]:
    """Train every unfinished trial of every study of ``suite`` into the store at ``store_path``,
    one study after another; returns what the run did to each. ``options`` must have been
    checked (:meth:`RunOptions.check`); progress and notes go to ``stream``."""
    check_suite_data(suite)
    done: list[StudyRun] = []
    count = len(suite.workloads)
    for i, workload in enumerate(suite.workloads, start=1):
        name = workload.study.name
        say(stream, f"suite {suite.name}: study {i} of {count}: {name} ({workload.file})")
        outcome = run_study(workload.study, store_path, options, progress=progress, stream=stream)
        counts = Result(store_path, name, outcome).report()["trials"]
        text = outcome.text(name, counts)
        if outcome.busy_elsewhere:
            text += f"; {outcome.busy_elsewhere} trials are running in another process"
        say(stream, text)
        done.append(StudyRun(name, outcome, text, counts["status"].get("failed", 0)))
    return done


def suite_report(store_path: str | Path, suite: Suite) -> dict[str, Any]:
    """The ranking of ``suite`` from the store at ``store_path`` as plain data (the JSON format)."""
    from trainlab.report.ranking import suite_report as build

    with opened(Path(store_path)) as store:
        return build(store, suite)


def suite_text(store_path: str | Path, suite: Suite, fmt: str) -> str:
    """The ranking as ``trainlab report SUITE --format FMT`` prints it (table, markdown, csv, json)."""
    from trainlab.report.ranking import render

    return render(suite_report(store_path, suite), fmt)


def write_suite_html(store_path: str | Path, suite: Suite, out: str | Path) -> Path:
    """The ranking as one self-contained HTML page, written to ``out`` (a folder, where the file is
    ``SUITE.html``, or a ``.html`` path); returns the file."""
    from trainlab.report.html import write_suite_html as write

    with opened(Path(store_path)) as store:
        return write(store, suite, out)


def failed_studies(runs: Sequence[StudyRun]) -> list[StudyRun]:
    """The studies of a suite's run with trials that failed with an error."""
    return [run for run in runs if run.failed]
