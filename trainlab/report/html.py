"""The whole report of a study as one self-contained HTML file.

Tables, notes and figures (PNG, base64 inline) are in the file itself; it references nothing
outside it and its Content-Security-Policy forbids the browser to fetch anything, so it opens
from disk, offline, and can be mailed or attached as is. The content is the text report's
(same rows, same notes, same rule on test metrics) plus the figures, the model summaries and
every trial.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.report import plots
from trainlab.report.catalog import STUDY_FIGURES, TRIAL_FIGURES
from trainlab.report.figures import Made, StudyFigures
from trainlab.report.summary import ModelSummary, shape_text, study_models
from trainlab.report.tables import (
    Options,
    notes,
    stage_heading,
    stage_views,
    study_report,
    table_rows,
    trials_text,
    vs_best_text,
)
from trainlab.store import Store
from trainlab.version import __version__

if TYPE_CHECKING:
    from trainlab.suite import Suite

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2rem auto;
       max-width: 1400px; padding: 0 1.5rem; color: #1a1a1a; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; margin: 0 0 1rem 0; } .meta span { margin-right: 1.4rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { padding: .28rem .7rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f6f8; border-bottom: 2px solid #ccd; }
td:first-child, th:first-child { text-align: left; }
tr.chosen td { background: #fff6d6; font-weight: 600; }
td.same { color: #1b6e20; } td.worse { color: #a12a1a; } td.withheld { color: #999; }
ul.notes { color: #333; font-size: .9rem; }
figure { margin: 1.2rem 0 2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; margin-top: .3rem; }
p.skipped { color: #8a5a00; background: #fff8e6; padding: .4rem .7rem; border-left: 3px solid #e0a800; }
pre.summary { background: #f7f7f7; padding: .8rem 1rem; font-size: .85rem; overflow-x: auto; }
td.left { text-align: left; white-space: normal; max-width: 36rem; }
.small { font-size: .85rem; color: #555; }
div.scroll { overflow-x: auto; }
"""


def render_html(
    store: Store,
    study: str,
    *,
    options: Options | None = None,
    trial: str | None = None,
    tsne_samples: int = 500,
    trial_figures: bool = True,
) -> str:
    """The HTML report of ``study``. ``trial`` picks the trial of the test-set figures (default: the
    one chosen on validation); ``trial_figures=False`` leaves out the figures that need the data set.

    A staged study has a section per stage, as the text report has a table per stage: its table,
    its comparisons with its own best, and its figures, of its variants only. The test-set
    figures and t-SNE maps are those of the last stage, whose choice is the study's."""
    report = study_report(store, study, options)
    parts = [_head(report)]
    final: StudyFigures | None = None
    for section, view in stage_views(report):
        figures = StudyFigures(store, study, report=view, trial=trial, tsne_samples=tsne_samples)
        made = figures.make_all(STUDY_FIGURES)
        if section is None:
            parts += [_results(view), _section("Learning curves and time", made)]
        else:
            parts.append(_stage(section, view, made))
        if section is None or section["variants"]:
            final = figures
    assert final is not None
    stage = f" (stage {report['stages'][-1]['stage']})" if report.get("stages") else ""
    if trial_figures:
        parts.append(_trial_section(report, final, final.make_all([n for n in TRIAL_FIGURES if n != "tsne"])))
        parts.append(_section(f"Features: t-SNE of the last hidden layer{stage}", [final.make("tsne")], level=2))
    else:
        parts.append(
            "<h2>Chosen trial on the test set</h2><p class=skipped>Not drawn: the report was made without "
            "the data set (--no-data).</p>"
        )
    parts.append(_models(study_models(store, study)))
    parts.append(_trials(report))
    parts.append(_foot(report))
    return _page(f"trainlab report: {report['study']['name']}", "\n".join(parts))


def _stage(section: Mapping[str, Any], view: Mapping[str, Any], made: Sequence[Made]) -> str:
    """One stage of a staged study: what it compared and started from, its table and its figures."""
    title = f"<h2>Stage {_e(section['stage'])}</h2>\n<p>{_e(stage_heading(section))}</p>"
    if not section["variants"]:
        return f"{title}\n<p class=skipped>{_e(section['reason'] or 'no finished trial yet')}</p>"
    return f"{title}\n{_results(view, level=3)}\n{_section('Learning curves and time', made, level=3)}"


def write_html(store: Store, study: str, out: str | Path, **kwargs: Any) -> Path:
    """Write the report to ``out``: a folder (the file is ``STUDY.html`` in it) or a path ending in ``.html``."""
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target / f"{plots.safe_stem(study)}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(store, study, **kwargs), encoding="utf-8")
    return target


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _head(report: Mapping[str, Any]) -> str:
    study = report["study"]
    seeds = sorted({s for v in report["variants"] for s in v["seeds"]})
    counts = report["trials"]
    by_status = ", ".join(f"{n} {k}" for k, n in counts["status"].items())
    trials = f"trials: {counts['total']}" + (f" ({by_status})" if by_status else "")
    if counts["reused"]:
        trials += f", {counts['reused']} reused by a later stage and counted once"
    stages = f" in {len(report['stages'])} stages" if report.get("stages") else ""
    bits = [
        f"task: {study['task']}",
        f"{len(report['variants'])} variants{stages}",
        f"seeds: {', '.join(map(str, seeds)) or '-'}",
        trials,
        f"source: {study.get('source') or '-'}",
        f"spec {study['spec_hash'][:12]}",
    ]
    desc = f"<p>{_e(study['description'])}</p>" if study.get("description") else ""
    return (
        f"<h1>Study {_e(study['name'])}</h1>{desc}\n<p class=meta>"
        + "".join(f"<span>{_e(b)}</span>" for b in bits)
        + "</p>"
    )


def _table(
    header: Sequence[str], body: Sequence[Sequence[str]], row_classes: Sequence[str] = (), cell_class: Any = None
) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
    rows = []
    for i, row in enumerate(body):
        cls = f" class={row_classes[i]}" if i < len(row_classes) and row_classes[i] else ""
        cells = []
        for j, cell in enumerate(row):
            extra = cell_class(header[j], cell) if cell_class else ""
            cells.append(f"<td{f' class={extra}' if extra else ''}>{_e(cell)}</td>")
        rows.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return (
        "<div class=scroll><table>\n<thead>"
        + head
        + "</thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table></div>"
    )


def _results(report: Mapping[str, Any], level: int = 2) -> str:
    header, body = table_rows(report)
    classes = ["chosen" if v.get("chosen") else "" for v in report["variants"]]

    def cell_class(column: str, text: str) -> str:
        if column == "vs best":
            return (
                "same"
                if text.startswith("≈") or text.startswith("best")
                else "worse"
                if text.startswith("worse")
                else ""
            )
        if column.startswith("test ") and text == "·":
            return "withheld"
        return ""

    items = "".join(f"<li>{_e(line)}</li>" for line in notes(report))
    return f"<h{level}>Results</h{level}>\n{_table(header, body, classes, cell_class)}\n<ul class=notes>{items}</ul>"


def _sentence(text: str) -> str:
    """``text`` with a capital first letter, unless it starts with a name spelled in lower case (t-SNE)."""
    return text if text.startswith("t-SNE") else text[0].upper() + text[1:]


def _img(made: Made) -> str:
    assert made.figure is not None
    data = base64.b64encode(plots.png_bytes(made.figure)).decode("ascii")
    return (
        f'<figure id="fig-{_e(made.name)}"><img alt="{_e(made.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(_sentence(made.title))}.</figcaption></figure>"
    )


def _figures(made: Sequence[Made]) -> str:
    out = []
    for m in made:
        if m.figure is not None:
            out.append(_img(m))
        elif m.applies:
            out.append(f"<p class=skipped>{_e(_sentence(m.title))}: not drawn: {_e(m.skipped)}.</p>")
    return "\n".join(out)


def _section(title: str, made: Sequence[Made], level: int = 2) -> str:
    return f"<h{level}>{_e(title)}</h{level}>\n{_figures(made)}"


def _trial_section(report: Mapping[str, Any], figures: StudyFigures, made: Sequence[Made]) -> str:
    sel = report["selection"]
    try:
        trial = figures.chosen_trial
    except Exception as exc:  # no finished trial, or a trial the user named that does not exist
        return f"<h2>Chosen trial on the test set</h2><p class=skipped>{_e(exc)}</p>"
    result = trial.result or {}
    test = result.get("test", {})
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(test.items()) if isinstance(v, float))
    chosen = trial.hash == sel["chosen_trial"]
    why = (
        f"chosen on validation: the best seed of the variant with the best mean {sel['metric'].replace('_', ' ')}"
        if chosen
        else "named on the command line (not the one chosen on validation)"
    )
    intro = (
        f"<p>Trial <b>{_e(trial.hash[:10])}</b>: variant <b>{_e(trial.label)}</b>, seed {trial.seed}, {_e(why)}. "
        f"Its chosen weights (epoch {result.get('best_epoch', -1) + 1}) on the test set: <b>{_e(metrics)}</b>, "
        "evaluated once, after training; nothing was chosen by it.</p>"
    )
    return f"<h2>Chosen trial on the test set</h2>\n{intro}\n{_figures(made)}"


def _models(models: Sequence[ModelSummary]) -> str:
    out = ["<h2>Models</h2>"]
    for m in models:
        if m.skipped is not None:
            out.append(f"<h3>{_e(', '.join(m.labels))}</h3><p class=skipped>No summary: {_e(m.skipped)}</p>")
            continue
        header = ["Layer (type)", "Output Shape", "Param #", "Trainable"]
        body = [
            [f"{r.name} ({r.type})", shape_text(r.output_shape), f"{r.params:,}", f"{r.trainable:,}"] for r in m.layers
        ]
        out.append(f"<h3>{_e(', '.join(m.labels))}</h3><p class=small>input {_e(shape_text(m.input_shape))}</p>")
        out.append(_table(header, body))
        out.append(
            f"<p class=small>Total params: <b>{m.total:,}</b> &middot; Trainable params: {m.trainable:,} "
            f"&middot; Non-trainable params: {m.non_trainable:,}</p>"
        )
    if len(out) == 1:
        out.append(
            "<p class=skipped>No model summary: no trial has finished and the data set's input shape is unknown.</p>"
        )
    return "\n".join(out)


def _trials(report: Mapping[str, Any]) -> str:
    sel = report["selection"]
    metric = sel["metric"]
    show_test = sel["test_shown"] == "all"
    test_key = f"test_{report['metrics'][0]}"
    header = ["variant", "seed", "trial", "status", metric.replace("_", " "), "best epoch", "epochs", "s/epoch"]
    if show_test:
        header.append(test_key.replace("_", " "))
    header.append("stop reason / error")
    body, classes = [], []
    for v in report["variants"]:
        for t in v["trials"]:
            if t.get("reused_from"):
                continue  # listed once, under the stage that trained it
            value = t.get(metric)
            row = [
                v["label"],
                str(t["seed"]),
                t["hash"][:10],
                t["status"],
                f"{value:.4f}" if isinstance(value, float) else "-",
                str(t["best_epoch"] or "-"),
                str(t["epochs"] or "-"),
                f"{t['seconds_per_epoch']:.2f}" if isinstance(t["seconds_per_epoch"], float) else "-",
            ]
            if show_test:
                tv = t.get(test_key)
                row.append(f"{tv:.4f}" if isinstance(tv, float) else "-")
            lines = (t.get("error") or t.get("stop_reason") or "").strip().splitlines()
            row.append(lines[-1] if lines else "")
            body.append(row)
            classes.append("chosen" if t["hash"] == sel["chosen_trial"] else "")
    table = _table(header, body, classes, lambda col, _: "left" if col.startswith("stop") else "")
    once = (
        " (a trial a later stage reuses is listed once, under the stage that trained it)"
        if report.get("stages")
        else ""
    )
    return (
        f"<h2>Trials</h2><p class=small>{_e(trials_text(report['trials']))} Every trial of the study's current "
        f"variants{_e(once)}; the highlighted one is chosen on validation. Export one with "
        f"<code>trainlab export {_e(report['study']['name'])} --trial HASH --out DIR</code>.</p>\n{table}"
    )


def _foot(report: Mapping[str, Any]) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    comparisons = []
    for section, view in stage_views(report):
        within = f" within stage {section['stage']}" if section is not None else ""
        if view["variants"]:
            pairs = "; ".join(f"{v['label']}: {vs_best_text(v)}" for v in view["variants"])
            comparisons.append(f"Comparisons with the best{within}: {pairs}.")
    return (
        f"<p class=small>Made by trainlab {_e(__version__)} on {_e(when)} from the store alone "
        "(the test-set figures also "
        f"read the test split). {_e(' '.join(comparisons))}</p>"
    )


# --- suites ------------------------------------------------------------------------------------


def render_suite_html(store: Store, suite: Suite) -> str:
    """The ranking of ``suite`` as one page: the ranking table and its notes, the performance
    profiles, and each study's target and per-seed times (docs/REPORTS.md, "Suites")."""
    from trainlab.report.ranking import notes as suite_notes
    from trainlab.report.ranking import suite_report
    from trainlab.report.ranking import table_rows as suite_rows

    report = suite_report(store, suite)
    head = report["suite"]
    header, body = suite_rows(report)
    items = "".join(f"<li>{_e(line)}</li>" for line in suite_notes(report))
    top = [row["label"] for row in report["ranking"][:1]]
    classes = ["chosen" if row["label"] in top else "" for row in report["ranking"]]
    figure = plots.performance_profiles(report["ranking"], head["cutoff"], head["time"])
    data = base64.b64encode(plots.png_bytes(figure)).decode("ascii")
    studies = ", ".join(w["study"] for w in report["workloads"])
    parts = [
        f"<h1>Suite {_e(head['name'])}</h1>" + (f"<p>{_e(head['description'])}</p>" if head["description"] else ""),
        f"<p class=meta><span>studies: {_e(studies)}</span><span>source: {_e(head['source'] or '-')}</span></p>",
        f"<h2>Ranking</h2>\n{_table(header, body, classes)}\n<ul class=notes>{items}</ul>",
        '<h2>Performance profiles</h2>\n<figure id="fig-profiles"><img alt="performance profiles" '
        f'src="data:image/png;base64,{data}"><figcaption>For each variant, the fraction of studies on which '
        f"its {_e(head['time'])} to target are within a factor tau of the fastest variant's.</figcaption></figure>",
        "<h2>Studies</h2>",
    ]
    for w in report["workloads"]:
        parts.append(_suite_study(w, head["time"]))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class=small>Made by trainlab {_e(__version__)} on {_e(when)} from the store alone.</p>")
    return _page(f"trainlab suite: {head['name']}", "\n".join(parts))


def _suite_study(w: Mapping[str, Any], unit: str) -> str:
    """One study of a suite: its target, and each variant's seeds with their times and best values."""
    from trainlab.report.ranking import target_text, time_cell

    header = ["variant", "seeds", f"{unit} to target per seed", f"median {unit} (ratio)", f"best {w['metric']}"]
    body = []
    for label, v in w["variants"].items():
        shown = ", ".join(_seed_time(x, unit) for x in v[f"{unit}_to_target"])
        best = ", ".join(f"{x:.4f}" for x in v["best"])
        body.append(
            [
                label,
                ", ".join(map(str, v["seeds"])) or "-",
                shown or "-",
                time_cell(v[f"median_{unit}"], v["ratio"], unit),
                best or "-",
            ]
        )
    status = ", ".join(f"{n} {s}" for s, n in w["trials"]["status"].items()) or "none recorded yet"
    return (
        f"<h3>{_e(w['study'])}</h3>\n<p>{_e(target_text(w))}. Trials: {_e(w['trials']['total'])} ({_e(status)}); "
        f"file {_e(w['file'])}.</p>\n{_table(header, body)}"
    )


def write_suite_html(store: Store, suite: Suite, out: str | Path) -> Path:
    """Write the suite's page to ``out``: a folder (the file is ``SUITE.html`` in it) or a ``.html`` path."""
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target / f"{plots.safe_stem(suite.name)}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_suite_html(store, suite), encoding="utf-8")
    return target


def _seed_time(value: float, unit: str) -> str:
    """One seed's time to target: ``never`` where it did not reach it."""
    if value == float("inf"):
        return "never"
    return f"{value:g}" if unit == "epochs" else f"{value:.1f}s"
