"""The ranking of a suite: its variants across its studies, read from the store.

For each study (workload) of the suite, every finished trial's epochs give the first epoch at
which its validation metric (the study's ``train.monitor``) reached the study's target, and its
best validation value. :mod:`trainlab.report.profiles` turns those into the performance
profiles, their scores and the interquartile mean with its bootstrap interval. The report is
plain data (the JSON format, ``"format": "trainlab-suite/1"``, docs/REPORTS.md "Suites"),
rendered here as a terminal table, Markdown or CSV.

A trial counts when it finished with a result: done, diverged or pruned (a diverged run that
never reached the target is a failure, as AlgoPerf counts one). A failed trial (an error) and
one not finished yet are left out, and the notes say so.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import TrainlabError
from trainlab.jsonio import finite
from trainlab.report import profiles
from trainlab.report.stats import first_reaching
from trainlab.report.tables import current_trials
from trainlab.store import Store, TrialRecord

if TYPE_CHECKING:
    from trainlab.suite import Suite, Workload

FORMAT = "trainlab-suite/1"
FORMATS = ("table", "markdown", "csv", "json")
RESULTS = ("done", "diverged", "pruned")
"""Trial statuses that are results: their epochs count (a failed trial's do not)."""


@dataclass(frozen=True)
class Run:
    """One finished trial of a workload: its best validation value and when it reached the target."""

    label: str
    seed: int
    status: str
    history: tuple[Mapping[str, float | None], ...]
    best: float


def suite_report(store: Store, suite: Suite) -> dict[str, Any]:
    """The ranking of ``suite`` as plain data (the JSON format); infinite times and ratios are
    ``math.inf`` here (``null`` in the JSON, beside ``reached``)."""
    workloads = [_workload(store, suite, w) for w in suite.workloads]
    ratio = _ratios(suite, workloads)
    rows = [_row(label, ratio[i], workloads, suite.cutoff) for i, label in enumerate(suite.labels)]
    return {
        "format": FORMAT,
        "suite": _head(suite),
        "labels": list(suite.labels),
        "left_out": {k: list(v) for k, v in suite.left_out.items()},
        "workloads": workloads,
        "ranking": ranked(rows),
    }


def _head(suite: Suite) -> dict[str, Any]:
    return {
        "name": suite.name,
        "description": suite.description,
        "source": suite.source,
        "cutoff": suite.cutoff,
        "time": suite.time,
        "reference": suite.reference,
        "iqm": {
            "trim": profiles.TRIM,
            "resamples": profiles.RESAMPLES,
            "confidence": profiles.CONFIDENCE,
            "seed": profiles.SEED,
        },
    }


def _ratios(suite: Suite, workloads: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each ranked variant's ratio to the fastest on each workload (variants x workloads), written
    into the workloads too, with each workload's fastest variants."""
    times = np.array(
        [[w["variants"][label][f"median_{suite.time}"] for w in workloads] for label in suite.labels], dtype=np.float64
    ).reshape(len(suite.labels), len(workloads))
    ratio = profiles.ratios(times)
    for j, w in enumerate(workloads):
        for i, label in enumerate(suite.labels):
            w["variants"][label]["ratio"] = float(ratio[i, j])
        w["fastest"] = [label for i, label in enumerate(suite.labels) if ratio[i, j] == 1.0]
    return ratio


def _row(label: str, ratio: np.ndarray, workloads: Sequence[Mapping[str, Any]], cutoff: float) -> dict[str, Any]:
    """One variant's line of the ranking: its profile and score from its ``ratio`` per workload,
    and the IQM of its normalised scores with the bootstrap interval."""
    strata = [w["variants"][label]["normalised"] for w in workloads if w["normalisation"] is not None]
    strata = [s for s in strata if s]
    pooled = [x for s in strata for x in s]
    interval = profiles.bootstrap_iqm(strata)
    return {
        "label": label,
        "score": profiles.score(ratio, cutoff),
        "profile": [list(p) for p in profiles.profile_steps(ratio, cutoff)],
        "within_cutoff": int(np.count_nonzero(ratio <= cutoff)),
        "reached": int(np.count_nonzero(np.isfinite(ratio))),
        "ratios": {w["name"]: float(r) for w, r in zip(workloads, ratio)},
        "iqm": profiles.iqm(pooled) if pooled else None,
        "iqm_ci95": None if interval is None else list(interval),
        "runs": len(pooled),
    }


def ranked(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` best first, by score, then IQM (none last), then the suite's order, each with its ``rank``."""
    order = sorted(
        range(len(rows)),
        key=lambda i: (-rows[i]["score"], -(rows[i]["iqm"] if rows[i]["iqm"] is not None else -math.inf), i),
    )
    return [{"rank": rank, **rows[i]} for rank, i in enumerate(order, start=1)]


def _workload(store: Store, suite: Suite, workload: Workload) -> dict[str, Any]:
    """One study's part of the report: its target, and each ranked variant's seeds, times and scores."""
    from trainlab.losses import mode_for

    study = workload.study
    metric = study.variants[0].spec["train"]["monitor"]
    mode = mode_for(metric)
    trials = current_trials(store, study.name) if store.study(study.name) is not None else []
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    wanted = set(suite.labels) | {workload.reference}
    runs = [_run(store, t, metric, mode) for t in trials if t.status in RESULTS and t.label in wanted]
    target, target_from = _target(workload, runs, mode)
    out: dict[str, Any] = {
        "name": workload.name,
        "study": study.name,
        "file": workload.file,
        "metric": metric,
        "mode": mode,
        "target": target,
        "target_from": target_from,
        "reference": workload.reference,
        "trials": {"total": len(study.trials()), "status": dict(sorted(counts.items()))},
        "variants": {},
    }
    for label in suite.labels:
        mine = [r for r in runs if r.label == label]
        reached = [first_reaching(r.history, metric, target, mode) if target is not None else None for r in mine]
        epochs = [math.inf if h is None or h.epoch is None else float(h.epoch) for h in reached]
        seconds = [math.inf if h is None or h.seconds is None else float(h.seconds) for h in reached]
        out["variants"][label] = {
            "seeds": [r.seed for r in mine],
            "status": [r.status for r in mine],
            "best": [r.best for r in mine],
            "epochs_to_target": epochs,
            "seconds_to_target": seconds,
            "reached": sum(math.isfinite(e) for e in epochs),
            "median_epochs": profiles.median_time(epochs),
            "median_seconds": profiles.median_time(seconds),
        }
    values = {label: out["variants"][label]["best"] for label in suite.labels}
    normal = profiles.normalised(values, mode)
    out["normalisation"] = None if normal is None else {"best": normal[1], "worst": normal[2]}
    for label in suite.labels:
        out["variants"][label]["normalised"] = [] if normal is None else normal[0][label]
    return out


def _run(store: Store, trial: TrialRecord, metric: str, mode: str) -> Run:
    history = tuple(e.metrics for e in store.epochs(trial.id))
    values = [v for v in (h.get(metric) for h in history) if v is not None and math.isfinite(v)]
    best = (max(values) if mode == "max" else min(values)) if values else math.nan
    return Run(trial.label, trial.seed, trial.status, history, best)


def _target(workload: Workload, runs: Sequence[Run], mode: str) -> tuple[float | None, str]:
    """The workload's target and where it came from: ``"suite"`` (the suite file gives it) or
    ``"reference"`` (the reference variant's median best over its finished seeds, as
    :func:`profiles.median_best` takes it; None before any finished)."""
    if workload.target is not None:
        return workload.target, "suite"
    best = [r.best for r in runs if r.label == workload.reference and math.isfinite(r.best)]
    return (profiles.median_best(best, mode) if best else None), "reference"


# --- rendering ------------------------------------------------------------------------------


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The ranking in one of :data:`FORMATS`."""
    if fmt == "json":
        return json.dumps(finite(report), indent=2, allow_nan=False)
    if fmt == "csv":
        return _csv(report)
    if fmt not in FORMATS:
        raise TrainlabError(f"unknown report format {fmt!r} for a suite; allowed: {', '.join(FORMATS)}")
    header, body = table_rows(report)
    if fmt == "markdown":
        lines = [
            f"### suite {report['suite']['name']}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---:", "---"] + ["---:"] * (len(header) - 2)) + "|",
        ]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
        lines += [""] + [f"- {line}" for line in notes(report)]
        return "\n".join(lines)
    return _rich_table(f"suite {report['suite']['name']}", header, body, notes(report))


def time_cell(time: float, ratio: float, unit: str) -> str:
    """A variant's median time on a workload with its ratio to the fastest: ``3 (1.00)``,
    ``12.4s (1.52)``; ``never`` for an infinite time, ``-`` for no finished seed."""
    if math.isnan(time):
        return "-"
    if math.isinf(time):
        return "never"
    shown = f"{time:g}" if unit == "epochs" else f"{time:.1f}s"
    return f"{shown} ({ratio:.2f})"


def table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the human-readable ranking (terminal, Markdown and HTML)."""
    unit = report["suite"]["time"]
    workloads = report["workloads"]
    header = ["rank", "variant", "score", "IQM", "95% CI", *[f"{w['name']} ({unit})" for w in workloads]]
    body = []
    for row in report["ranking"]:
        ci = row["iqm_ci95"]
        cells = [
            str(row["rank"]),
            row["label"],
            f"{row['score']:.3f}",
            "-" if row["iqm"] is None else f"{row['iqm']:.3f}",
            "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
        ]
        for w in workloads:
            v = w["variants"][row["label"]]
            cells.append(time_cell(v[f"median_{unit}"], v["ratio"], unit))
        body.append(cells)
    return header, body


def target_text(w: Mapping[str, Any]) -> str:
    """One workload's target in words: ``mnist-mlp: val accuracy ≥ 0.97 (given in the suite)``."""
    metric = w["metric"].replace("val_", "val ").replace("_", " ")
    if w["target"] is None:
        return f"{w['name']}: no target yet (the median best of {w['reference']}, which has no finished trial)"
    rel = "≥" if w["mode"] == "max" else "≤"
    origin = "given in the suite" if w["target_from"] == "suite" else f"median best of {w['reference']}"
    return f"{w['name']}: {metric} {rel} {w['target']:.4g} ({origin})"


def notes(report: Mapping[str, Any]) -> list[str]:
    """The sentences a reader needs to read the ranking right, in this report's terms."""
    head = report["suite"]
    cutoff, unit = head["cutoff"], head["time"]
    out = [
        f"score: area under the performance profile on [1, {cutoff:g}], over {cutoff:g} − 1 (AlgoPerf): 1 = fastest "
        f"on every study, 0 = never within {cutoff:g}x the fastest.",
        f"Each study: median over seeds of the {unit} until the validation metric first reached the target, and "
        "(in brackets) its ratio to the fastest variant; never = the median seed never reached it (infinite time).",
        "Targets: " + "; ".join(target_text(w) for w in report["workloads"]) + ".",
        f"IQM: interquartile mean over studies and seeds of each run's best validation value, normalised per study "
        f"between the worst (0) and best (1) variant's mean; 95% CI: stratified percentile bootstrap (rliable), "
        f"{head['iqm']['resamples']} resamples, seed {head['iqm']['seed']}.",
    ]
    for w in report["workloads"]:
        if w["target"] is not None and not w["fastest"]:
            out.append(f"{w['name']}: no variant reached the target; a failure for every variant.")
        if w["normalisation"] is None:
            out.append(f"{w['name']}: fewer than two variants differ in best value; left out of the IQM.")
        status = w["trials"]["status"]
        finished = sum(status.get(s, 0) for s in RESULTS)
        if finished < w["trials"]["total"]:
            missing = w["trials"]["total"] - finished
            failed = status.get("failed", 0)
            why = f" ({failed} failed with an error)" if failed else ""
            out.append(
                f"{w['name']}: {missing} of {w['trials']['total']} trials have no result yet{why}; "
                f"the ranking uses the seeds that finished (`trainlab run` the suite to finish it)."
            )
    for name, labels in report["left_out"].items():
        out.append(f"Left out of the ranking (not in every study): {name}: {', '.join(labels)}.")
    return out


def _rich_table(title: str, header: list[str], body: list[list[str]], caption: list[str]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption="\n".join(caption), caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 1 else "right")
    for row in body:
        table.add_row(*row)
    console = Console(width=220, record=True, file=io.StringIO(), force_terminal=False)
    console.print(table)
    return console.export_text().rstrip("\n")


def csv_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the CSV format: one row per variant, best first, with its score, IQM and
    interval, and per study its median time and ratio (``inf`` where it never reached the target)."""
    unit = report["suite"]["time"]
    header = ["rank", "variant", "score", "iqm", "iqm_ci_low", "iqm_ci_high"]
    for w in report["workloads"]:
        header += [f"{w['name']}_{unit}", f"{w['name']}_ratio"]
    rows = []
    for row in report["ranking"]:
        ci = row["iqm_ci95"] or [None, None]
        cells: list[Any] = [row["rank"], row["label"], row["score"], row["iqm"], ci[0], ci[1]]
        for w in report["workloads"]:
            v = w["variants"][row["label"]]
            cells += [v[f"median_{unit}"], v["ratio"]]
        rows.append(cells)
    return header, rows


def _csv(report: Mapping[str, Any]) -> str:
    header, rows = csv_rows(report)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if x is None or (isinstance(x, float) and math.isnan(x)) else _cell(x) for x in row])
    return buf.getvalue()


def _cell(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value
