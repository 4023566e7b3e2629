"""A study's results in a store, as data: the report, its table, every trial and every epoch,
its figures and its HTML page.

Everything here is read from the store by the report's own code (:mod:`trainlab.report`): the
table's rows are the CSV format's rows, the figures are those ``trainlab plot`` draws, the page
is the one ``trainlab report --format html`` writes. Nothing is printed; every call opens the
store, reads, and closes it, so a result stays valid while another process trains into it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.api.run import RunOutcome, Spelling, keyword
from trainlab.errors import TrainlabError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from trainlab.report.figures import Made
    from trainlab.report.tables import Options
    from trainlab.store import Store

TEXT_FORMATS = ("table", "markdown", "csv", "json")
"""What :meth:`Result.render` writes (the HTML page is :meth:`Result.html`)."""


def report_options(
    all_test: bool = False,
    target: float | None = None,
    target_metric: str | None = None,
    correction: str = "holm",
    spell: Spelling = keyword,
) -> Options:
    """The report's options, ``target_metric`` refused without the ``target`` it applies to."""
    from trainlab.report.tables import Options

    if target_metric and target is None:
        raise TrainlabError(f"{spell('target_metric', None)} needs {spell('target', None)} VALUE, the value to reach")
    return Options(all_test=all_test, target=target, target_metric=target_metric, correction=correction)


@contextmanager
def opened(path: Path, *, check: bool = True) -> Iterator[Store]:
    """The store at ``path``, which must exist: reading never creates one."""
    from trainlab.store import Store

    if not path.exists():
        raise TrainlabError(f"no store at {path}; run a study into it first")
    with Store.open(path, check=check) as store:
        yield store


class Result:
    """The results of study ``name`` in the store at ``store``.

    :meth:`trainlab.Study.run` returns one, with ``outcome`` (what that run did); so does
    :meth:`trainlab.StoreView.result`, without. Report options (``all_test``, ``target``,
    ``target_metric``) mean what ``trainlab report``'s options of those names mean.
    """

    def __init__(self, store: str | Path, name: str, outcome: RunOutcome | None = None) -> None:
        self.store = Path(store)
        self.name = name
        self.outcome = outcome

    def __repr__(self) -> str:
        return f"Result({str(self.store)!r}, {self.name!r})"

    @contextmanager
    def _open(self) -> Iterator[Store]:
        # The store was checked when the run or open_store() opened it; a read need not check it again.
        with opened(self.store, check=False) as store:
            yield store

    # --- the report -----------------------------------------------------------------------

    def report(
        self,
        *,
        all_test: bool = False,
        target: float | None = None,
        target_metric: str | None = None,
        correction: str = "holm",
    ) -> dict[str, Any]:
        """The report as plain data: the JSON format (docs/REPORT-JSON.md). ``correction``: how the
        "vs best" p-values are corrected for the number of comparisons (``holm``, ``bonferroni``,
        ``none``), as ``trainlab report --correction``."""
        from trainlab.report.tables import study_report

        options = report_options(all_test, target, target_metric, correction)
        with self._open() as store:
            return study_report(store, self.name, options)

    def render(
        self,
        format: str = "table",
        *,
        all_test: bool = False,
        target: float | None = None,
        target_metric: str | None = None,
        correction: str = "holm",
        summary: bool = False,
    ) -> str:
        """The report as ``trainlab report --format FORMAT`` prints it: ``table`` (as a terminal
        shows it), ``markdown``, ``csv`` or ``json``. ``summary``: each model's Keras-style summary
        after the table (not with csv or json, which it would break)."""
        options = report_options(all_test, target, target_metric, correction)
        with self._open() as store:
            return report_text(store, self.name, format, options, summary=summary)

    def table(
        self,
        *,
        text: bool = False,
        all_test: bool = False,
        target: float | None = None,
        target_metric: str | None = None,
        correction: str = "holm",
    ) -> pd.DataFrame:
        """One row per variant (a staged study: per stage and variant, with a ``stage`` column).

        The columns are the CSV format's: ``variant``, ``n``, then the mean, standard deviation and
        95% CI bounds of each of the report's statistics (``val_accuracy_mean``, ...), the trial
        ``status`` counts, whether the variant is ``chosen``, ``vs_best`` and its ``p_vs_best``.
        A test metric is missing (NaN) except for the chosen variant, as in the report, unless
        ``all_test``. ``text=True``: the cells as the terminal table shows them instead
        (``0.9774 ± 0.0017``)."""
        import pandas as pd

        from trainlab.report.tables import csv_rows, stage_views, table_rows

        report = self.report(all_test=all_test, target=target, target_metric=target_metric, correction=correction)
        if not text:
            header, rows = csv_rows(report)
            return pd.DataFrame(rows, columns=header)
        frames = []
        for section, view in stage_views(report):
            header, body = table_rows(view)
            frame = pd.DataFrame(body, columns=header)
            if section is not None:
                frame.insert(0, "stage", section["stage"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def trials(self) -> pd.DataFrame:
        """One row per trial, in report order: its ``variant`` (and ``stage``), ``seed``, ``hash``,
        ``status``, the metrics at its chosen epoch (validation and test), ``best_epoch`` (from 1),
        ``epochs`` run, its timing, why it stopped, its ``error`` if it failed and its run ``plan``:
        the report JSON's trial rows. A trial a later stage shows again appears once."""
        import pandas as pd

        return pd.DataFrame(_trial_rows(self.report()))

    def epochs(self) -> pd.DataFrame:
        """Every recorded epoch of every trial, long format: one row per trial, epoch and metric,
        with the columns ``variant`` (and ``stage``), ``seed``, ``hash``, ``epoch`` (from 1, as
        Keras prints it), ``metric`` (``loss``, ``val_accuracy``, ``seconds``, ``lr``, ...) and
        ``value``."""
        import pandas as pd

        from trainlab.report.tables import current_trials, study_report

        rows: list[dict[str, Any]] = []
        with self._open() as store:
            trials = _trial_rows(study_report(store, self.name))
            ids = {t.hash: t.id for t in current_trials(store, self.name)}
            for trial in trials:
                who = {k: trial[k] for k in ("stage", "variant", "seed", "hash") if k in trial}
                for record in store.epochs(ids[trial["hash"]]):
                    rows += [
                        {**who, "epoch": record.epoch + 1, "metric": metric, "value": value}
                        for metric, value in record.metrics.items()
                    ]
        columns = [*(["stage"] if any("stage" in t for t in trials) else []), "variant", "seed", "hash"]
        return pd.DataFrame(rows, columns=[*columns, "epoch", "metric", "value"])

    # --- figures and the page ---------------------------------------------------------------

    def figures(self, names: Sequence[str] = (), *, trial: str | None = None, tsne_samples: int = 500) -> list[Made]:
        """Figures ``names`` (default: every one), each drawn or with the reason it was not, as
        ``trainlab plot`` makes them (see :data:`trainlab.report.catalog.FIGURES`)."""
        with self._open() as store:
            return make_figures(store, self.name, names, trial=trial, tsne_samples=tsne_samples)

    def plot(self, name: str = "curves", *, trial: str | None = None, tsne_samples: int = 500) -> Figure:
        """Figure ``name`` as a matplotlib Figure (shown inline by Jupyter), as ``trainlab plot``
        draws it: ``curves``, ``final``, ``time``, ``lr`` from the store; ``confusion``,
        ``images``, ``scatter``, ``tsne`` run ``trial`` (default: the one chosen on validation) on
        the test set. One that does not apply to this study is refused with the reason."""
        (made,) = self.figures([name], trial=trial, tsne_samples=tsne_samples)
        if made.figure is None:
            raise TrainlabError(f"figure {name!r} of study {self.name}: not drawn: {made.skipped}")
        inline_figures()
        return made.figure

    def html(
        self,
        path: str | Path = ".",
        *,
        trial: str | None = None,
        tsne_samples: int = 500,
        data: bool = True,
        all_test: bool = False,
        target: float | None = None,
        target_metric: str | None = None,
        correction: str = "holm",
    ) -> Path:
        """Write the self-contained HTML report (docs/REPORTS.md) to ``path``, a ``.html`` file or a
        folder (the file is ``NAME.html`` in it); returns the file. ``data=False`` leaves out the
        figures that need the data set."""
        from trainlab.report.html import write_html

        options = report_options(all_test, target, target_metric, correction)
        with self._open() as store:
            return write_html(
                store, self.name, path, options=options, trial=trial, tsne_samples=tsne_samples, trial_figures=data
            )


def report_text(
    store: Store, name: str, fmt: str, options: Options, *, summary: bool, spell: Spelling = keyword
) -> str:
    """The report of study ``name`` in text format ``fmt``, with the models' summaries after it
    where ``summary`` (in a code block each for Markdown; refused for csv and json)."""
    from trainlab.report.tables import render, study_report

    if fmt not in TEXT_FORMATS:
        raise TrainlabError(f"{spell('format', None)} {fmt!r} not allowed; allowed: {', '.join(TEXT_FORMATS)}")
    if summary and fmt in ("json", "csv"):
        raise TrainlabError(
            f"{spell('summary', None)} prints model summaries as text, which would break {spell('format', fmt)}; "
            "use it with the table or markdown format (html always has them)"
        )
    text = render(study_report(store, name, options), fmt)
    if summary:
        from trainlab.report.summary import study_models
        from trainlab.report.summary import text as summary_text

        summaries = [summary_text(m) for m in study_models(store, name)]
        if fmt == "markdown":  # a code block keeps the columns of each summary aligned
            summaries = [f"```\n{t}\n```" for t in summaries]
        text += "\n\n" + "\n\n".join(summaries)
    return text


def make_figures(
    store: Store, name: str, names: Sequence[str] = (), *, trial: str | None = None, tsne_samples: int = 500
) -> list[Made]:
    """Figures ``names`` of study ``name`` (default: every one); an unknown name is refused first."""
    from trainlab.report.catalog import FIGURES
    from trainlab.report.figures import StudyFigures

    names = list(names) or list(FIGURES)
    for figure in names:
        if figure not in FIGURES:
            raise TrainlabError(f"unknown figure {figure!r}; choose from: {', '.join(FIGURES)}, all")
    return StudyFigures(store, name, trial=trial, tsne_samples=tsne_samples).make_all(names)


def inline_figures() -> None:
    """In IPython (a Jupyter kernel), have a Figure that a cell returns shown as a PNG, where
    nothing shows Figures yet. trainlab draws its figures without pyplot (no global figure list),
    and importing pyplot is what otherwise sets this up; a format the user chose is kept."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    formatters = shell.display_formatter.formatters
    for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
        try:
            formatters[mime].lookup_by_type(Figure)
            return
        except KeyError:
            pass
    formatters["image/png"].for_type(Figure, lambda figure: print_figure(figure, "png", bbox_inches="tight"))


def _trial_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's trial rows, each with its variant (and stage), a trial shown again by a later stage left out."""
    rows = []
    for v in report["variants"]:
        where = {"stage": v["stage"]} if "stage" in v else {}
        for row in v["trials"]:
            if row.get("reused_from") is None:
                rows.append({**where, "variant": v["label"], **{k: x for k, x in row.items() if k != "reused_from"}})
    return rows
