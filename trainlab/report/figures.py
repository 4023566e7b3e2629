"""A study's figures by name: gathers what each needs from the store (and, for the figures of
a chosen trial, the test set) and hands it to :mod:`trainlab.report.plots`.

Study figures read the store alone: learning curves, final metrics, time per epoch, learning
rate. Trial figures run the chosen weights of one trial on its test split: the confusion
matrix, the grid of test images, predicted vs true, and the t-SNE picture (which runs each
variant's best seed). The trial is the one chosen on validation unless the user names
another. A figure that does not apply (a confusion matrix of a regression, a learning-rate
chart without a schedule, a data set not on this machine) comes back as *skipped*, with the
reason, so that a report says what is missing instead of failing whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from trainlab.errors import TrainlabError
from trainlab.report import plots
from trainlab.report.catalog import FIGURES
from trainlab.report.tables import Options, current_trials, stage_views, study_report
from trainlab.report.trials import find_trial
from trainlab.store import Store, TrialRecord
from trainlab.trial import TrialSpec


@dataclass
class Made:
    """One figure of a report, or the reason it was not drawn (``figure`` is then ``None``).

    ``applies`` is False for a figure that makes no sense for this kind of study (a confusion
    matrix of a regression): a report leaves those out silently, and notes the others.
    """

    name: str
    stem: str
    title: str
    figure: Figure | None = None
    skipped: str | None = None
    applies: bool = True


@dataclass(frozen=True)
class Skip:
    """Why a figure builder drew nothing; see :attr:`Made.applies`."""

    reason: str
    applies: bool = True


class StudyFigures:
    """The figures of one study, drawing each at most once.

    ``trial`` selects the trial of the trial figures as :func:`trainlab.report.trials.find_trial`
    does (default: the one chosen on validation). ``tsne_samples`` test examples go into
    each t-SNE map; ``grid_images`` into the image grid.
    """

    def __init__(
        self,
        store: Store,
        study: str,
        *,
        report: Mapping[str, Any] | None = None,
        trial: str | None = None,
        tsne_samples: int = 500,
        grid_images: int = 32,
        options: Options | None = None,
    ) -> None:
        from trainlab.data.cache import DataCache

        self.store = store
        self.study = study
        self.report = report if report is not None else study_report(store, study, options)
        self.selector = trial
        self.tsne_samples = tsne_samples
        self.grid_images = grid_images
        self.cache = DataCache()
        self.colors = variant_colors(self.report)

    @property
    def task(self) -> str:
        return str(self.report["study"]["task"])

    @cached_property
    def trials(self) -> dict[str, TrialRecord]:
        """The study's current trials by hash."""
        return {t.hash: t for t in current_trials(self.store, self.study)}

    @cached_property
    def histories(self) -> dict[str, list[list[dict[str, float | None]]]]:
        """Per variant, the epoch metrics of each finished trial."""
        out: dict[str, list[list[dict[str, float | None]]]] = {}
        for v in self.report["variants"]:
            runs = [
                [e.metrics for e in self.store.epochs(self.trials[r["hash"]].id)]
                for r in v["trials"]
                if r["status"] == "done"
            ]
            if runs:
                out[v["label"]] = runs
        return out

    @cached_property
    def chosen_trial(self) -> TrialRecord:
        return find_trial(self.store, self.study, self.selector)

    def trial_title(self, trial: TrialRecord) -> str:
        chosen = " (chosen on validation)" if trial.hash == self.report["selection"]["chosen_trial"] else ""
        return f"{trial.label}, seed {trial.seed}, trial {trial.hash[:10]}{chosen}"

    @cached_property
    def predictions(self) -> Any:
        from trainlab.report.inspect import test_predictions

        return test_predictions(self.store, self.chosen_trial, self.cache)

    def make(self, name: str) -> Made:
        """Draw figure ``name`` (one of :data:`FIGURES`)."""
        if name not in FIGURES:
            raise TrainlabError(f"unknown figure {name!r}; choose from: {', '.join(FIGURES)}, or all")
        title = FIGURES[name]
        stem = f"{self.study}-{name}"
        if not self.histories:
            return Made(name, stem, title, skipped="no finished trial yet")
        try:
            figure = getattr(self, f"_{name}")()
        except TrainlabError as exc:
            return Made(name, stem, title, skipped=str(exc))
        if isinstance(figure, Skip):
            return Made(name, stem, title, skipped=figure.reason, applies=figure.applies)
        return Made(name, stem, title, figure=figure)

    def make_all(self, names: Sequence[str] = tuple(FIGURES)) -> list[Made]:
        return [self.make(n) for n in names]

    # --- study figures ---

    def _curves(self) -> Figure:
        rows = None
        if self.report.get("stages"):  # small multiples: one row per stage, its variants only
            rows = [
                (f"stage {section['stage']}", [v["label"] for v in section["variants"]])
                for section in self.report["stages"]
            ]
        return plots.learning_curves(self.histories, self.task, self.colors, title=f"study {self.study}", rows=rows)

    def _final(self) -> Figure:
        return plots.final_metrics(self.report, self.colors)

    def _time(self) -> Figure:
        return plots.seconds_per_epoch(self.report, self.colors)

    def _lr(self) -> Figure | Skip:
        scheduled = {
            v["label"] for v in self.report["variants"] if "optimizer.learning_rate.schedule" in v.get("settings", {})
        }
        fig = plots.learning_rate(self.histories, self.colors, scheduled)
        return (
            fig
            if fig is not None
            else Skip("the learning rate stayed constant in every trial (no decay or schedule acted)")
        )

    def _budget(self) -> Figure | Skip:
        curves, panels = [], []
        for _, view in stage_views(self.report):
            name = f"stage {view['stage']}" if view.get("stage") else self.study
            if (view.get("search") or {}).get("budget"):
                curves.append((name, view["search"]["budget"]))
                panels.append("searches")
            for tuned in (view.get("tune") or {}).get("variants", []):
                if tuned["budget"]:
                    curves.append((tuned["label"], tuned["budget"]))
                    panels.append(name)
        if not curves:
            return Skip(
                "budget curves are drawn for searches and tuned variants, and this has none with a finished point",
                applies=False,
            )
        return plots.budget_curves(curves, panels if len(set(panels)) > 1 or "searches" not in panels else None)

    # --- trial figures ---

    def _confusion(self) -> Figure | Skip:
        if self.task != "classification":
            return Skip(
                "a confusion matrix needs a classification study; this one is a regression (see scatter)", applies=False
            )
        p = self.predictions
        return plots.confusion(p.y_true, p.y_pred, p.class_names, f"Test set: {self.trial_title(p.trial)}")

    def _images(self) -> Figure | Skip:
        if self.task != "classification":
            return Skip(
                "the image grid is for image classification; this study is a regression (see scatter)", applies=False
            )
        p = self.predictions
        if p.x.ndim != 4:
            return Skip("the inputs of this study are not images", applies=False)
        n = min(self.grid_images, len(p.x))
        index = np.sort(np.random.default_rng(0).choice(len(p.x), n, replace=False))
        return plots.prediction_grid(
            p.x[index],
            p.y_true[index],
            p.y_pred[index],
            p.proba[index],
            p.class_names,
            f"Test images, {self.trial_title(p.trial)}",
        )

    def _scatter(self) -> Figure | Skip:
        if self.task != "regression":
            return Skip(
                "predicted vs true is for regression; this study is a classification (see confusion)", applies=False
            )
        p = self.predictions
        return plots.predicted_vs_true(p.y_true, p.y_pred, f"Test set: {self.trial_title(p.trial)}")

    def _tsne(self) -> Figure | Skip:
        from trainlab.report.inspect import last_hidden

        if self.task != "classification":
            return Skip(
                "the t-SNE picture colours test examples by class: it needs a classification study", applies=False
            )
        panels = []
        names: tuple[str, ...] = ()
        samples = 0
        for v in self.report["variants"]:
            if v["n"] == 0:
                continue
            trial = (
                self.chosen_trial
                if v["label"] == self.chosen_trial.label
                else find_trial(self.store, self.study, v["label"])
            )
            hidden = last_hidden(self.store, trial, self.tsne_samples, self.cache)
            if not names:
                spec = TrialSpec.from_json(trial.spec_json)
                names = tuple(self.cache.get(spec.data.to_json())[1].class_names)
            samples = len(hidden.features)
            panels.append((f"{v['label']} (seed {trial.seed})", embed(hidden.features), hidden.labels, hidden.layer))
        if samples < 5:
            return Skip(f"too few test examples ({samples}) for a t-SNE map")
        return plots.tsne_panels(panels, names, samples)


def variant_colors(report: Mapping[str, Any]) -> dict[str, str]:
    """A colour per variant, the same in every figure of the report: within each stage (or the
    whole of a plain study) the chosen variant and the next best get distinct colours, at most
    :data:`plots.HIGHLIGHT` of them, and the rest light grey."""
    colors: dict[str, str] = {}
    for _, view in stage_views(report):
        labels = [v["label"] for v in view["variants"]]
        colors.update(plots.palette(labels, plots.highlighted(view) if len(labels) > plots.HIGHLIGHT else None))
    return colors


def embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE embedding (scikit-learn) of ``features``; wide features are first reduced to
    50 dimensions by PCA, the usual practice, which keeps t-SNE fast on flattened conv maps.

    t-SNE runs on one OpenMP thread: with torch's OpenMP runtime loaded beside scikit-learn's,
    their thread pools contend on a busy machine and slow the map many times over
    (bench/README.md, "Smaller measurements").
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    with threadpool_limits(limits=1, user_api="openmp"):
        if x.shape[1] > 50 and n > 50:
            x = PCA(n_components=50, random_state=seed).fit_transform(x)
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
        return tsne.fit_transform(x)


def write(made: Sequence[Made], folder: str | Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Save every drawn figure of ``made`` to ``folder``; returns the files written."""
    paths: list[Path] = []
    for m in made:
        if m.figure is not None:
            paths += plots.save(m.figure, folder, m.stem, formats)
    return paths


# --- the data set at a glance ---------------------------------------------------------------


def data_figures(name: str, *, path: str | None = None, per_class: int = 8) -> list[Made]:
    """Figures of a data set: sample images per class and class counts per split (images), or
    feature histograms (tabular). ``name`` is a data set name, or a study file whose ``[data]``
    table (with its split into training, validation and test) is shown."""
    from trainlab import data

    if name.endswith(".toml") or Path(name).is_file():
        from trainlab import spec

        study = spec.load(name)
        data_spec = study.variants[0].spec["data"]
        prepared = data.prepare(data_spec)
        info = prepared.info
        shown_name = Path(data_spec["path"]).name if data_spec.get("path") else info.name
        title = f"{shown_name} as study {study.name} splits it"
        stem = f"{study.name}-data"
        splits = {
            "train": (prepared.x_train, prepared.y_train),
            "validation": (prepared.x_val, prepared.y_val),
            "test": (prepared.x_test, prepared.y_test),
        }
        images = prepared.x_train
        scaled = True
    else:
        raw = data.load_raw(name, path=path)
        info = raw.info
        title = f"{info.name if name != 'npz' else Path(raw.origin).name}"
        stem = f"{Path(raw.origin).stem if name == 'npz' else name}-data"
        splits = {"train": (raw.x_train, raw.y_train)}
        if raw.has_test:
            splits["test"] = (raw.x_test, raw.y_test)
        images = _nchw(raw.x_train, raw.layout)
        scaled = False
    made: list[Made] = []
    x_train, y_train = splits["train"]
    if info.task == "classification" and len(info.input_shape) == 3:
        shown = images if scaled else images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
        made.append(
            Made(
                "samples",
                f"{stem}-samples",
                "sample images per class",
                figure=plots.sample_grid(
                    shown,
                    np.asarray(y_train),
                    info.class_names,
                    f"{title}: the first {per_class} training images of each class",
                    per_class,
                ),
            )
        )
    if info.task == "classification":
        k = len(info.class_names)
        counts = {
            split: np.bincount(np.asarray(y, dtype=np.int64), minlength=k)[:k] for split, (_, y) in splits.items()
        }
        made.append(
            Made(
                "counts",
                f"{stem}-counts",
                "class counts per split",
                figure=plots.class_counts(counts, info.class_names, f"{title}: examples per class and split"),
            )
        )
    else:
        features = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
        names = list(info.feature_names) or [f"x{i}" for i in range(features.shape[1])]
        note = "standardized on the training split" if scaled else "as stored"
        made.append(
            Made(
                "features",
                f"{stem}-features",
                "feature histograms",
                figure=plots.feature_histograms(
                    features,
                    np.asarray(y_train, dtype=np.float64),
                    names,
                    f"{title}: training features ({note}) and target",
                ),
            )
        )
    return made


def _nchw(x: np.ndarray, layout: str) -> np.ndarray:
    """Raw images laid out N, C, H, W."""
    if layout == "NHW":
        return x[:, None, :, :]
    if layout == "NHWC":
        return x.transpose(0, 3, 1, 2)
    return x
