"""Reports of a staged study: each stage's choice, a trial shared by two stages counted once in
every format, the HTML page with a section per stage, and figures that stay readable with many
variants (at most eight lines in colour per panel, a legend inside the figure)."""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import STAGED_STUDY, write_tiny_study_text
from matplotlib.colors import to_hex

from trainlab.cli import main
from trainlab.report import plots, render, study_report
from trainlab.report.figures import StudyFigures
from trainlab.report.tables import stage_views
from trainlab.store import Store


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three-stage study of test_stages, run through the command line once; its store, the
    JSON the run printed and the run's progress and summary (standard error)."""
    folder = tmp_path_factory.mktemp("staged")
    study = write_tiny_study_text(folder, STAGED_STUDY)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                "run",
                str(study),
                "--store",
                str(folder / "s.db"),
                "--workers",
                "1",
                "--population",
                "1",
                "--format",
                "json",
            ]
        )
    assert code == 0, err.getvalue()
    return {"store": folder / "s.db", "json": json.loads(out.getvalue()), "stderr": err.getvalue(), "folder": folder}


def test_every_stage_marks_its_own_choice(staged: dict[str, Any]) -> None:
    report = staged["json"]
    assert [s["stage"] for s in report["stages"]] == ["first", "second", "third"]
    for section in report["stages"]:
        chosen = [v["label"] for v in section["variants"] if v["chosen"]]
        assert chosen == [section["selection"]["chosen"]], section["stage"]
        assert all(v["stage"] == section["stage"] for v in section["variants"])
    # The same flags on the study's list of every variant, each against its own stage's choice.
    by_stage = {s["stage"]: s["selection"]["chosen"] for s in report["stages"]}
    assert [v["chosen"] for v in report["variants"]] == [v["label"] == by_stage[v["stage"]] for v in report["variants"]]
    assert report["selection"] == report["stages"][-1]["selection"]
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert sorted((r["stage"], r["variant"]) for r in rows if r["chosen"] == "true") == sorted(by_stage.items())


def test_a_trial_two_stages_share_is_counted_once_and_marked_where_it_reappears(staged: dict[str, Any]) -> None:
    report = staged["json"]
    first_choice = report["stages"][1]["started_from"]
    as_chosen = report["stages"][1]["variants"][0]
    assert as_chosen["label"] == "second: as chosen"
    assert as_chosen["reused_from"] == {"stage": "first", "variant": first_choice, "trials": 2}
    source = next(v for v in report["stages"][0]["variants"] if v["label"] == first_choice)
    assert [t["hash"] for t in as_chosen["trials"]] == [t["hash"] for t in source["trials"]]
    assert [t["reused_from"] for t in as_chosen["trials"]] == ["first", "first"]
    assert source["reused_from"] is None and all(t["reused_from"] is None for t in source["trials"])
    with Store.open(staged["store"]) as store:
        stored = store.trials(store.study("staged").id)  # the store holds each trial once
    appearances = sum(len(v["trials"]) for v in report["variants"])
    assert appearances == 12 and len(stored) == 10
    assert report["trials"] == {"total": len(stored), "status": {"done": 10}, "reused": appearances - len(stored)}
    by_status = sum(n for v in report["variants"] for n in v["status"].values())
    assert by_status == report["trials"]["total"] + report["trials"]["reused"]


def test_trial_counts_agree_across_formats(staged: dict[str, Any]) -> None:
    report = staged["json"]
    total = report["trials"]["total"]
    assert f"study staged: {total} trials; this run: {total} done; already finished before: 0" in staged["stderr"]
    line = f"{total} trials: 10 done; 2 appear again in a later stage (marked 'reused from') and are counted once."
    markdown, table = render(report, "markdown"), render(report, "table")
    assert line in markdown and line in table.replace("\n", " ")
    assert "| second: as chosen (reused from first) |" in markdown
    assert "second: as chosen (reused from first)" in table
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    counted = sum(sum(json.loads(r["status"]).values()) - int(r["reused_trials"]) for r in rows)
    assert counted == total
    assert [r["reused_from"] for r in rows if r["variant"] == "second: as chosen"] == ["first"]

    out = staged["folder"] / "html"
    assert (
        main(["report", "staged", "--store", str(staged["store"]), "--format", "html", "--out", str(out), "--no-data"])
        == 0
    )
    page = (out / "staged.html").read_text(encoding="utf-8")
    assert f"<span>trials: {total} (10 done), 2 reused by a later stage and counted once</span>" in page
    trials_table = page.split("<h2>Trials</h2>")[1]
    assert len(re.findall(r"<td>[0-9a-f]{10}</td>", trials_table)) == total, "every trial listed once"


def test_html_has_a_section_per_stage_with_its_own_comparisons_and_figures(staged: dict[str, Any]) -> None:
    out = staged["folder"] / "html-sections"
    assert (
        main(
            [
                "report",
                "staged",
                "--store",
                str(staged["store"]),
                "--format",
                "html",
                "--out",
                str(out),
                "--tsne-samples",
                "40",
            ]
        )
        == 0
    )
    page = (out / "staged.html").read_text(encoding="utf-8")
    assert "<h2>Features: t-SNE of the last hidden layer (stage third)</h2>" in page and 'id="fig-tsne"' in page
    assert page.count('id="fig-confusion"') == 1, "the test-set figures once, for the study's choice"
    parts = re.split(r"<h2>Stage (\w+)</h2>", page.split("<h2>Chosen trial")[0])
    sections = dict(zip(parts[1::2], parts[2::2]))
    assert list(sections) == ["first", "second", "third"]
    for name, html in sections.items():
        labels = re.findall(r"<tr(?: class=chosen)?><td>([^<]+)</td>", html)
        assert labels and all(label.startswith(f"{name}: ") for label in labels), (name, labels)
        assert len(re.findall(r"<td class=same>best", html)) == 1, "one best per stage, tested within it"
        assert html.count("<tr class=chosen>") == 1
        assert html.count('<figure id="fig-curves">') == 1 and html.count('<figure id="fig-final">') == 1
    with Store.open(staged["store"]) as store:
        report = study_report(store, "staged")
        for section, view in stage_views(report):
            assert section is not None
            fig = StudyFigures(store, "staged", report=view).make("curves").figure
            legend = (
                [t.get_text() for t in fig.legends[0].get_texts()]
                if fig.legends
                else [t.get_text() for sub in fig.subfigs for t in sub.legends[0].get_texts()]
            )
            expected = [v["label"].split(": ", 1)[1] for v in section["variants"]]
            assert legend == [*expected, "training", "validation"], section["stage"]


# --- figures with many variants -------------------------------------------------------------


def _histories(n: int, seeds: int = 2, epochs: int = 6) -> dict[str, list[list[dict[str, float]]]]:
    """Curves of ``n`` variants whose final validation accuracy rises with the index."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        runs = []
        for _ in range(seeds):
            runs.append(
                [
                    {
                        "accuracy": 0.5 + 0.4 * e / epochs + 0.004 * i,
                        "val_accuracy": 0.5 + 0.35 * e / epochs + 0.004 * i,
                        "loss": 1.0 / (e + 1) + rng.random() * 0.01,
                        "val_loss": 1.1 / (e + 1),
                    }
                    for e in range(epochs)
                ]
            )
        out[f"architecture: variant number {i} with a long label, activation=tanh, init=he_normal"] = runs
    return out


def _coloured_lines(ax: Any) -> int:
    return sum(1 for line in ax.get_lines() if to_hex(line.get_color()) != plots.OTHER)


def _check_legends_fit(fig: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    figure_box = fig.bbox
    legends = list(fig.legends) + [leg for sub in fig.subfigs for leg in sub.legends]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, "the legend is wider than the figure"
        assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, "the legend leaves the figure"
        panels = sum(ax.get_window_extent(renderer).height for ax in fig.axes) / max(len(fig.axes), 1)
        assert box.height < panels, "the legend is taller than a panel"


def test_learning_curves_highlight_at_most_eight_lines_per_panel(tmp_path: Path) -> None:
    histories = _histories(24)
    labels = list(histories)
    report = {
        "selection": {"metric": "val_accuracy", "mode": "max", "chosen": labels[-1]},
        "variants": [
            {
                "label": label,
                "val_accuracy": {"mean": runs[0][-1]["val_accuracy"]},
                "val_loss": {"mean": runs[0][-1]["val_loss"]},
            }
            for label, runs in histories.items()
        ],
    }
    chosen = plots.highlighted(report)
    assert chosen == labels[-8:], "the chosen variant and the seven next best, in study order"
    colors = plots.palette(labels, chosen)
    assert sum(c != plots.OTHER for c in colors.values()) == 8 and len(set(colors[label] for label in chosen)) == 8
    fig = plots.learning_curves(histories, "classification", colors)
    assert len(fig.axes) == 4, "training and validation in panels of their own"
    for ax in fig.axes:
        assert 1 <= _coloured_lines(ax) <= 8, ax.get_title()
        assert len(ax.get_lines()) == 24
    _check_legends_fit(fig)
    texts = [t.get_text() for t in fig.subfigs[0].legends[0].get_texts()]
    assert "16 other variants" in texts and not any(t.startswith("architecture:") for t in texts)


def test_learning_curves_of_a_staged_study_have_one_row_per_stage() -> None:
    one = next(iter(_histories(1).values()))
    big, small = _histories(12), {f"second: v{i}": one for i in range(3)}
    histories = {**big, **small}
    colors = {**plots.palette(list(big), list(big)[:8]), **plots.palette(list(small))}
    fig = plots.learning_curves(
        histories, "classification", colors, rows=[("stage first", list(big)), ("stage second", list(small))]
    )
    assert len(fig.subfigs) == 2
    assert [len(sub.axes) for sub in fig.subfigs] == [4, 2], "many variants: one panel per split; few: both in one"
    for sub in fig.subfigs:
        for ax in sub.axes:
            assert _coloured_lines(ax) <= 8
    assert all(_coloured_lines(ax) == 6 for ax in fig.subfigs[1].axes), "three variants, training and validation"
    _check_legends_fit(fig)
