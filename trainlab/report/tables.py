"""The results table of a study, read from the store alone: one row per variant.

Each row aggregates the finished trials (one per seed) of a variant: the validation metrics at
each trial's chosen epoch, that epoch, the test metrics of the chosen weights, the epochs run
and the seconds per epoch, as mean and sample standard deviation over seeds. Epochs are
counted from 1, as Keras prints them.

The JSON form is stable (``"format": "trainlab-report/1"``) and documented in
``docs/REPORT-JSON.md``; the other formats render the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.store import Store, TrialRecord

FORMAT = "trainlab-report/1"
FORMATS = ("table", "markdown", "csv", "json")
FINISHED_OK = ("done",)


def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (None below two values) and the values themselves."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(present) if present else None,
        "std": statistics.stdev(present) if len(present) >= 2 else None,
        "values": list(values),
    }


def metric_names(task: str) -> list[str]:
    """The headline metrics of a task, in display order."""
    return ["accuracy", "loss"] if task == "classification" else ["mse", "mae", "loss"]


def study_report(store: Store, name: str) -> dict[str, Any]:
    """The report of study ``name`` as plain data (the JSON format)."""
    record = store.study(name)
    if record is None:
        known = ", ".join(s.name for s in store.studies()) or "none yet"
        raise TrainlabError(f"no study named {name!r} in this store (studies: {known}); run it first with `trainlab run`")
    spec = json.loads(record.spec_json)
    trials = store.trials(record.id)
    task = json.loads(trials[0].spec_json)["task"] if trials else "classification"
    current = _current_hashes(spec)
    variants: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        if current is None or trial.hash in current:
            variants.setdefault(trial.label, []).append(trial)
    return {
        "format": FORMAT,
        "study": {"name": record.name, "source": record.source, "spec_hash": record.spec_hash, "task": task},
        "metrics": metric_names(task),
        "variants": [_variant(label, group, task) for label, group in variants.items()],
    }


def _current_hashes(spec: Mapping[str, Any]) -> set[str] | None:
    """Hashes of the trials the stored study spec describes now (older trials are left out)."""
    from trainlab.spec import from_dict

    try:
        study = from_dict(spec, default_name=spec.get("study", {}).get("name", "study"))
    except TrainlabError:
        return None
    return {t.hash for t in study.trials()}


def _variant(label: str, trials: list[TrialRecord], task: str) -> dict[str, Any]:
    done = [t for t in trials if t.status in FINISHED_OK and t.result]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    rows = [_trial(t, task) for t in trials]
    ok = [r for r, t in zip(rows, trials) if t in done]
    out: dict[str, Any] = {
        "label": label,
        "params": trials[0].params,
        "n": len(done),
        "seeds": [t.seed for t in done],
        "status": counts,
    }
    for name in metric_names(task):
        out[f"val_{name}"] = _stat([r[f"val_{name}"] for r in ok])
        out[f"test_{name}"] = _stat([r[f"test_{name}"] for r in ok])
    for name in ("best_epoch", "epochs", "seconds_per_epoch"):
        out[name] = _stat([r[name] for r in ok])
    out["trials"] = rows
    return out


def _trial(trial: TrialRecord, task: str) -> dict[str, Any]:
    result = trial.result or {}
    best, test = result.get("best", {}), result.get("test", {})
    row: dict[str, Any] = {"hash": trial.hash, "seed": trial.seed, "status": trial.status}
    for name in metric_names(task):
        row[f"val_{name}"] = best.get(f"val_{name}")
        row[f"test_{name}"] = test.get(name)
    row["best_epoch"] = result["best_epoch"] + 1 if "best_epoch" in result else None
    row["epochs"] = result.get("epochs")
    row["seconds_per_epoch"] = result.get("seconds_per_epoch")
    row["stop_reason"] = result.get("stop_reason")
    row["error"] = trial.error
    return row


def _columns(task: str) -> list[tuple[str, str, int]]:
    """(header, key, decimals) of the human-readable table."""
    cols = []
    for name in metric_names(task):
        cols.append((f"val {name}", f"val_{name}", 4))
    cols += [("best epoch", "best_epoch", 1)]
    cols += [(f"test {name}", f"test_{name}", 4) for name in metric_names(task)[:1]]
    cols += [("epochs", "epochs", 1), ("s/epoch", "seconds_per_epoch", 2)]
    return cols


def _cell(stat: Mapping[str, Any], decimals: int) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{stat['mean']:.{decimals}f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.{decimals}f}"
    return text


def _status_note(counts: Mapping[str, int]) -> str:
    others = {k: v for k, v in counts.items() if k != "done"}
    return ", ".join(f"{v} {k}" for k, v in sorted(others.items()))


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The report in one of :data:`FORMATS` (``table`` is for a terminal, via Rich)."""
    if fmt == "json":
        return json.dumps(_finite(report), indent=2, allow_nan=False)
    cols = _columns(report["study"]["task"])
    header = ["variant", "n", *[c[0] for c in cols], "not done"]
    body = [
        [v["label"], str(v["n"]), *[_cell(v[key], d) for _, key, d in cols], _status_note(v["status"])]
        for v in report["variants"]
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
        return "\n".join(lines)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        flat_header = ["variant", "n"]
        for _, key, _ in cols:
            flat_header += [f"{key}_mean", f"{key}_std"]
        writer.writerow(flat_header + ["status"])
        for v in report["variants"]:
            row: list[Any] = [v["label"], v["n"]]
            for _, key, _ in cols:
                row += [_num(v[key]["mean"]), _num(v[key]["std"])]
            writer.writerow(row + [json.dumps(v["status"], sort_keys=True)])
        return buf.getvalue()
    if fmt == "table":
        return _rich_table(report["study"]["name"], header, body)
    raise TrainlabError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _rich_table(title: str, header: list[str], body: list[list[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"study {title}", title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i in (0, len(header) - 1) else "right")
    for row in body:
        table.add_row(*row)
    console = Console(width=200, record=True, file=io.StringIO(), force_terminal=False)
    console.print(table)
    return console.export_text().rstrip("\n")


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
