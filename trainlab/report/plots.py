"""The pictures users used to draw by hand, drawn from plain data with matplotlib.

Every function takes numbers (report dicts, epoch histories, arrays) and returns a
:class:`matplotlib.figure.Figure`; none reads the store or the data set (``figures`` does
that). Figures are made with the object API: nothing needs a display, nothing touches
pyplot's global figure list, and saving renders through Agg (PNG) and matplotlib's SVG writer
without selecting a backend, so importing this module changes nothing for a notebook that
uses its own. Conventions kept throughout: one colour per variant, the same in every figure
of a report; training solid, validation dashed; a band is the range over seeds around their
mean; every axis says what it shows. Many variants stay readable: at most :data:`HIGHLIGHT`
lines per panel are in colour (the chosen variant and the next best), the rest thin and light
grey beneath them, and a legend goes below its panels with as many columns as fit the width.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
from matplotlib import rc_context
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from trainlab.report.budget import SOURCES

History = Sequence[Mapping[str, float | None]]
"""One trial's epochs, each a dict of Keras-named metrics."""
Histories = Mapping[str, Sequence[History]]
"""Per variant label, the histories of its finished trials (one per seed)."""

WRONG = "#d62728"
RIGHT = "#1a1a1a"
HIGHLIGHT = 8
"""At most this many lines of a panel are drawn in colour; past that a reader can no longer
match colours to names, so the others are drawn in :data:`OTHER`."""
OTHER = "#c8c8c8"
"""The light grey of the variants not highlighted."""
STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "svg.fonttype": "path",
}


@contextmanager
def style() -> Iterator[None]:
    """The report's matplotlib settings, for the figures made inside the block."""
    with rc_context(cast(Any, STYLE)):
        yield


def palette(labels: Sequence[str], highlight: Sequence[str] | None = None) -> dict[str, str]:
    """A distinct colour per highlighted variant (every one when ``highlight`` is None), in study
    order (tab10, tab20 beyond ten, then a ramp); :data:`OTHER` for the rest."""
    import matplotlib as mpl

    shown = [label for label in labels if highlight is None or label in highlight]
    n = len(shown)
    if n <= 9:  # tab10 without its grey, which would read as one of the variants drawn in OTHER
        colors = [mpl.colormaps["tab10"](i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)[:n]]
    elif n <= 10:
        colors = [mpl.colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        colors = [mpl.colormaps["tab20"](i) for i in range(n)]
    else:
        colors = [mpl.colormaps["viridis"](i / max(n - 1, 1)) for i in range(n)]
    out = {label: OTHER for label in labels}
    out.update((label, to_hex(c)) for label, c in zip(shown, colors))
    return out


def highlighted(report: Mapping[str, Any], limit: int = HIGHLIGHT) -> list[str]:
    """The variants a figure of ``report`` (a plain study, or one stage) draws in colour: the
    chosen one and the next best by the selection metric, ``limit`` in all, in study order."""
    chosen = report["selection"]["chosen"]
    ranked = [v["label"] for v in _order(report)]
    keep = set(([chosen] if chosen else []) + [label for label in ranked if label != chosen][: limit - bool(chosen)])
    return [v["label"] for v in report["variants"] if v["label"] in keep]


def _root(container: Any) -> Figure:
    """The figure a (sub)figure belongs to, with an Agg canvas to measure text on (attaching one
    selects no backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = container.get_figure(root=True) if hasattr(container, "get_figure") else container
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return cast(Figure, fig)


def legend_below(container: Any, handles: Sequence[Any], max_columns: int = 6) -> Any:
    """A legend under the panels of ``container`` (a figure or subfigure), with as many columns
    (at most ``max_columns``) as fit its width, so that it never grows wider than its plot."""
    if not handles:
        return None
    renderer = _root(container).canvas.get_renderer()
    width = container.bbox.width * 0.97
    legend = None
    for columns in range(min(len(handles), max_columns), 0, -1):
        if legend is not None:
            legend.remove()
        legend = container.legend(handles=handles, loc="outside lower center", ncol=columns)
        if legend.get_window_extent(renderer).width <= width:
            break
    return legend


def _short_labels(labels: Sequence[str], width: int = 38) -> dict[str, str]:
    """Legend text per label: without the ``stage: `` prefix every label shares, wrapped at ``width``."""
    import textwrap

    prefix = labels[0].split(": ", 1)[0] + ": " if labels and ": " in labels[0] else ""
    strip = bool(prefix) and all(label.startswith(prefix) for label in labels)
    return {label: textwrap.fill(label[len(prefix) :] if strip else label, width) for label in labels}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def safe_stem(name: str) -> str:
    """A file name made from ``name`` (a study or figure name) that stays in the folder it is
    written to: every character but letters, digits, '_', '-' and '.' becomes '_', and so does
    a leading '.', so that a name like ``../../x`` or ``/etc/x`` (from a store written elsewhere)
    can neither leave the folder the user named nor hide the file."""
    stem = _UNSAFE.sub("_", name)[:200] or "_"
    return "_" + stem[1:] if stem.startswith(".") else stem


def save(fig: Figure, folder: str | Path, stem: str, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``folder/stem.<format>`` for each format (``stem`` made safe); returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{safe_stem(stem)}.{fmt}"
        fig.savefig(path, format=fmt, dpi=110, bbox_inches="tight", facecolor="white")
        paths.append(path)
    return paths


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (for embedding in HTML)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _label(metric: str) -> str:
    return metric.replace("val_", "validation ").replace("_", " ")


# --- curves over epochs ---------------------------------------------------------------------


def mean_band(
    runs: Sequence[Sequence[float | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch (from 1): the mean over the runs that have a finite value there, the min, the
    max, and how many runs contributed. Runs of different lengths (early stopping) are
    averaged over the runs still going."""
    length = max((len(r) for r in runs), default=0)
    epochs = np.arange(1, length + 1)
    mean, low, high, count = (np.full(length, np.nan) for _ in range(4))
    for e in range(length):
        values = [float(v) for r in runs if e < len(r) and (v := r[e]) is not None and math.isfinite(v)]
        if values:
            mean[e], low[e], high[e], count[e] = float(np.mean(values)), min(values), max(values), len(values)
    return epochs, mean, low, high, count


def curve_metrics(task: str) -> list[str]:
    """The panels of the learning-curve figure: accuracy and loss, or loss and MAE."""
    return ["accuracy", "loss"] if task == "classification" else ["loss", "mae"]


def learning_curves(
    histories: Histories,
    task: str,
    colors: Mapping[str, str],
    title: str = "",
    rows: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> Figure:
    """Accuracy and loss per epoch (regression: loss and MAE), the mean over seeds with the
    range over seeds shaded: training solid, validation dashed.

    ``rows`` gives one row of panels per group of variants, with its heading (a staged study:
    one per stage); default: one row of every variant. Variants whose colour is :data:`OTHER`
    are drawn thin and grey, without band or legend entry. A row of up to ``HIGHLIGHT / 2``
    variants draws training and validation in the same panel; a larger row has a panel for
    each, so that no panel holds more than :data:`HIGHLIGHT` coloured lines.
    """
    metrics = curve_metrics(task)
    groups = [
        (heading, [label for label in labels if label in histories])
        for heading, labels in (rows or [("", list(histories))])
    ]
    groups = [(heading, labels) for heading, labels in groups if labels]
    together = [len(labels) <= HIGHLIGHT // 2 for _, labels in groups]
    heights = [4.6 if one else 7.4 for one in together]
    with style():
        fig = Figure(figsize=(6.2 * len(metrics), sum(heights) + 0.4), layout="constrained")
        subs = fig.subfigures(len(groups), 1, height_ratios=heights, squeeze=False).ravel() if groups else []
        for sub, (heading, labels), one in zip(subs, groups, together):
            if one:
                axes = np.atleast_2d(sub.subplots(1, len(metrics)))
                panels = [
                    (axes[0, i], metric, [(metric, "-"), (f"val_{metric}", "--")], f"{metric.capitalize()} per epoch")
                    for i, metric in enumerate(metrics)
                ]
            else:
                axes = np.atleast_2d(sub.subplots(len(metrics), 2, sharex=True))
                panels = [
                    (axes[i, j], metric, [(key, dash)], f"{name} {metric} per epoch")
                    for i, metric in enumerate(metrics)
                    for j, (key, dash, name) in enumerate(
                        ((metric, "-", "Training"), (f"val_{metric}", "--", "Validation"))
                    )
                ]
            for ax, metric, keys, panel_title in panels:
                _curve_panel(ax, histories, labels, colors, keys)
                if one or metric == metrics[-1]:
                    ax.set_xlabel("epoch")
                ax.set_ylabel(metric)
                ax.set_title(panel_title)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if metric == "loss" and _spans_decades(ax):
                    ax.set_yscale("log")
            shown = [label for label in labels if colors[label] != OTHER]
            names = _short_labels(shown)
            handles: list[Any] = [
                Line2D([], [], color=colors[label], linewidth=3, label=names[label]) for label in shown
            ]
            others = len(labels) - len(shown)
            if others:
                handles.append(
                    Line2D([], [], color=OTHER, linewidth=2, label=f"{others} other variant{'s' * (others > 1)}")
                )
            handles += [
                Line2D([], [], color="grey", linestyle="-", label="training"),
                Line2D([], [], color="grey", linestyle="--", label="validation"),
            ]
            legend_below(sub, handles)
            if heading:
                sub.suptitle(heading, fontsize=11, fontweight="bold")
        seeds = {len(t) for t in histories.values()}
        band = "shaded: range over seeds" if max(seeds, default=0) > 1 else "one seed per variant: no band"
        fig.suptitle(f"{title + ': ' if title else ''}mean over seeds ({band})")
    return fig


def _curve_panel(
    ax: Any, histories: Histories, labels: Sequence[str], colors: Mapping[str, str], keys: Sequence[tuple[str, str]]
) -> None:
    """The curves of ``labels`` for each (metric key, line style): grey ones first, beneath."""
    order = sorted(labels, key=lambda label: colors[label] != OTHER)
    for label in order:
        grey = colors[label] == OTHER
        trials = histories[label]
        for key, dash in keys:
            epochs, mean, low, high, count = mean_band([[h.get(key) for h in t] for t in trials])
            if not len(epochs):
                continue
            ax.plot(
                epochs,
                mean,
                dash,
                color=colors[label],
                linewidth=1.0 if grey else 1.8,
                zorder=1 if grey else 3,
                marker="o" if len(epochs) <= 12 and not grey else None,
                markersize=3,
                label="_nolegend_" if grey else label,
            )
            if len(trials) > 1 and not grey:
                ax.fill_between(epochs, low, high, color=colors[label], alpha=0.15, linewidth=0, zorder=2)


def _spans_decades(ax: Any, ratio: float = 30) -> bool:
    """Whether the positive data of ``ax`` spans more than ``ratio`` (then a log axis reads better)."""
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.array([])])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    return bool(len(ys)) and ys.max() / ys.min() > ratio


def learning_rate(histories: Histories, colors: Mapping[str, str], scheduled: Collection[str] = ()) -> Figure | None:
    """The learning rate each trial used per epoch (the rate of the epoch's first update), for
    every variant whose rate follows a learning-rate schedule (the labels in ``scheduled``) and
    every other whose rate changed (legacy decay, ReduceLROnPlateau); ``None`` when there is none."""
    moved = {
        label: trials
        for label, trials in histories.items()
        if label in scheduled
        or any(len({h.get("learning_rate") for h in t if h.get("learning_rate") is not None}) > 1 for t in trials)
    }
    if not moved:
        return None
    with style():
        fig = Figure(figsize=(8, 4.4), layout="constrained")
        ax = fig.subplots()
        for label in sorted(moved, key=lambda label: colors[label] != OTHER):  # grey ones beneath
            grey = colors[label] == OTHER
            for i, t in enumerate(moved[label]):
                ys = [float("nan") if (lr := h.get("learning_rate")) is None else lr for h in t]
                ax.plot(
                    range(1, len(ys) + 1),
                    ys,
                    color=colors[label],
                    linewidth=1.0 if grey else 1.5,
                    alpha=0.85,
                    label=label if i == 0 and not grey else "_nolegend_",
                    zorder=1 if grey else 3,
                    marker="o" if len(ys) <= 30 and not grey else None,
                    markersize=3,
                )
        if _spans_decades(ax, 10):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate (at the epoch's start)")
        ax.set_title("Learning rate per epoch: schedules, decay and plateaus (one line per seed)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shown = [label for label in moved if colors[label] != OTHER]
        names = _short_labels(shown)
        handles: list[Any] = [Line2D([], [], color=colors[label], linewidth=3, label=names[label]) for label in shown]
        others = len(moved) - len(shown)
        if others:
            handles.append(
                Line2D([], [], color=OTHER, linewidth=2, label=f"{others} other variant{'s' * (others > 1)}")
            )
        legend_below(fig, handles)
    return fig


# --- final metrics --------------------------------------------------------------------------


def _order(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Finished variants, best first by the selection metric (a staged report: stage by stage,
    best first within each, since variants of different stages were never compared)."""
    if report.get("stages"):
        return [v for section in report["stages"] for v in _order({**section, "stages": None})]
    from trainlab import selection

    metric = report["selection"]["metric"]
    other = selection.tie_break(metric)
    done = [(i, v) for i, v in enumerate(report["variants"]) if v[metric]["mean"] is not None]
    ranked = sorted(
        done,
        key=lambda item: selection.rank(item[1][metric]["mean"], item[1].get(other, {}).get("mean"), metric, item[0]),
    )
    return [v for _, v in ranked]


def final_metrics(report: Mapping[str, Any], colors: Mapping[str, str]) -> Figure:
    """Validation metrics at each trial's chosen epoch: mean (dot), 95% CI (bar) and each seed
    (small ring), variants sorted best first by the selection metric."""
    from trainlab.report.tables import vs_best_text

    task, metric = report["study"]["task"], report["selection"]["metric"]
    keys = [f"val_{m}" for m in (["accuracy", "loss"] if task == "classification" else ["loss", "mae"])]
    if metric not in keys:
        keys.insert(0, metric)
    variants = _order(report)
    n = len(variants)
    with style():
        fig = Figure(figsize=(5.0 * len(keys) + 1.8, 1.2 + 0.48 * max(n, 2)), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(keys), sharey=True))
        ys = np.arange(n)[::-1]
        for ax, key in zip(axes, keys):
            for y, v in zip(ys, variants):
                stat, color = v[key], colors[v["label"]]
                seeds = [x for x in stat["values"] if x is not None and math.isfinite(x)]
                ax.scatter(seeds, [y] * len(seeds), s=22, facecolors="none", edgecolors=color, alpha=0.7, zorder=2)
                if stat.get("ci95"):
                    low, high = stat["ci95"]
                    ax.errorbar(
                        stat["mean"],
                        y,
                        xerr=[[stat["mean"] - low], [high - stat["mean"]]],
                        fmt="none",
                        ecolor=color,
                        elinewidth=2.2,
                        capsize=4,
                        zorder=3,
                    )
                ax.scatter(
                    [stat["mean"]],
                    [y],
                    s=60,
                    color=color,
                    zorder=4,
                    marker="D" if v.get("chosen") else "o",
                    edgecolors="black" if v.get("chosen") else color,
                )
            ax.set_title(_label(key) + (" (selection)" if key == metric else ""))
            ax.set_xlabel(key)
            ax.grid(axis="y", visible=False)
        names = _short_labels([v["label"] for v in variants], width=1000)
        axes[0].set_yticks(ys, [f"{names[v['label']]}  (n={v['n']})\n{vs_best_text(v)}" for v in variants])
        fig.suptitle(
            "Final validation metrics: mean (filled; diamond = chosen), 95% CI (bar), seeds (rings); best first"
        )
    return fig


def budget_curves(curves: Sequence[tuple[str, Mapping[str, Any]]], panels: Sequence[str] | None = None) -> Figure:
    """Each search's expected best validation score against the number of points sampled
    (``n = 1 .. N``, a log axis), with its bootstrap band: ``curves`` are (search name, the
    report's ``budget`` block). Where the curves of two searches cross, their ranking depends
    on the budget. ``panels`` (one per curve) puts the curves of each panel name on a panel of
    its own, side by side with a shared axis (a tuned stage's variants each); a curve's colour
    follows its name without the panel's prefix, so one variant has one colour in every panel.
    The title names the estimator of each curve (each distinct one once)."""
    groups = list(panels) if panels is not None else [""] * len(curves)
    names = list(dict.fromkeys(groups))
    short = [_without_prefix(name, group) for (name, _), group in zip(curves, groups, strict=True)]
    colors = palette(list(dict.fromkeys(short)))
    metric = curves[0][1]["metric"]
    with style():
        fig = Figure(figsize=(7.5 if len(names) == 1 else 5.2 * len(names), 4.6), layout="constrained")
        axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
        for (_, budget), group, label in zip(curves, groups, short, strict=True):
            ax = axes[names.index(group)]
            n = np.arange(1, budget["points"] + 1)
            low, high = np.asarray(budget["band"]).T
            color = colors[label]
            ax.fill_between(n, low, high, color=color, alpha=0.18, linewidth=0)
            ax.plot(n, budget["expected_best"], color=color, marker="o", markersize=3, label=f"{label} (N={n[-1]})")
        for ax, group in zip(axes, names, strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("points sampled (n)")
            if group:
                ax.set_title(group)
            ax.legend(loc="lower right" if curves[0][1]["mode"] == "max" else "upper right", fontsize="small")
        axes[0].set_ylabel(f"expected best {_label(metric)}")
        confidence = curves[0][1]["confidence"]
        source = " / ".join(dict.fromkeys(SOURCES[budget["estimator"]] for _, budget in curves))
        fig.suptitle(f"Budget curves: expected best of n points ({source}), {confidence:.0%} bootstrap band")
    return fig


def _without_prefix(name: str, panel: str) -> str:
    """A curve's name without its panel's name in front (``stage a: adam`` on panel ``stage a``)."""
    for prefix in (f"{panel}: ", f"{panel.removeprefix('stage ')}: "):
        if panel and name.startswith(prefix):
            return name[len(prefix) :]
    return name


def performance_profiles(ranking: Sequence[Mapping[str, Any]], cutoff: float, unit: str) -> Figure:
    """A suite's performance profiles: for each variant (``ranking`` rows of the suite report, best
    first), the fraction of studies on which its time to target is within a factor tau of the
    fastest variant's, a step function of tau on [1, ``cutoff``]; the legend gives each score."""
    labels = [row["label"] for row in ranking]
    colors = palette(labels, labels[:HIGHLIGHT])
    with style():
        fig = Figure(figsize=(7.5, 4.6), layout="constrained")
        ax = fig.subplots()
        for row in reversed(ranking):  # the best drawn last, on top
            taus, rhos = zip(*row["profile"])
            color = colors[row["label"]]
            ax.step(
                taus,
                rhos,
                where="post",
                color=color,
                linewidth=2.0 if color != OTHER else 1.0,
                label=f"{row['label']} (score {row['score']:.3f})",
            )
        ax.set_xlim(1.0, cutoff)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(f"tau: {unit} to target / the fastest variant's")
        ax.set_ylabel("fraction of studies within tau")
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], loc="lower right")
        fig.suptitle("Performance profiles (AlgoPerf): score = area under the profile / (tau max - 1)")
    return fig


def seconds_per_epoch(report: Mapping[str, Any], colors: Mapping[str, str]) -> Figure:
    """Seconds per epoch per variant (mean, 95% CI, seeds), fastest first; total time in the labels."""
    variants = sorted(
        (v for v in report["variants"] if v["seconds_per_epoch"]["mean"] is not None),
        key=lambda v: v["seconds_per_epoch"]["mean"],
    )
    n = len(variants)
    with style():
        fig = Figure(figsize=(8.5, 1.2 + 0.45 * max(n, 2)), layout="constrained")
        ax = fig.subplots()
        ys = np.arange(n)[::-1]
        for y, v in zip(ys, variants):
            stat = v["seconds_per_epoch"]
            ax.barh(y, stat["mean"], color=colors[v["label"]], alpha=0.85, height=0.6)
            if stat.get("ci95"):
                low, high = stat["ci95"]
                ax.errorbar(
                    stat["mean"],
                    y,
                    xerr=[[stat["mean"] - max(low, 0)], [high - stat["mean"]]],
                    fmt="none",
                    ecolor="black",
                    capsize=3,
                    elinewidth=1,
                )
            seeds = [x for x in stat["values"] if x is not None]
            ax.scatter(seeds, [y] * len(seeds), s=14, color="black", zorder=3)
        total = [v["seconds"]["mean"] for v in variants]
        names = _short_labels([v["label"] for v in variants], width=1000)
        ax.set_yticks(
            ys,
            [
                f"{names[v['label']]}  ({t:.1f} s total)" if t is not None else names[v["label"]]
                for v, t in zip(variants, total)
            ],
        )
        ax.set_xlabel("seconds per epoch (training and validation)")
        ax.set_xlim(left=0)
        ax.grid(axis="y", visible=False)
        ax.set_title("Time per epoch: mean, 95% CI and seeds (dots); fastest first")
    return fig


# --- one trial on the test set --------------------------------------------------------------


def confusion(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """The confusion matrix of a classifier on the test set (rows: true class, columns: predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(class_names)
    with style():
        size = max(4.5, 0.55 * k + 2.5)
        fig = Figure(figsize=(size + 0.8, size), layout="constrained")
        ax = fig.subplots()
        ConfusionMatrixDisplay.from_predictions(
            y_true,
            y_pred,
            labels=list(range(k)),
            display_labels=list(class_names),
            ax=ax,
            colorbar=True,
            cmap="Blues",
            xticks_rotation="vertical" if k > 5 and max(len(c) for c in class_names) > 2 else "horizontal",
        )
        ax.grid(False)
        accuracy = float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
        ax.set_title(f"{title}\naccuracy {accuracy:.4f} on {len(y_true)} test examples")
    return fig


def _show(ax: Any, image: np.ndarray) -> None:
    """Draw one (C, H, W) image with values in [0, 1]."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image[:3].transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def prediction_grid(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    title: str,
    columns: int = 8,
) -> Figure:
    """Test images with the predicted class, its probability and the true class; red where wrong."""
    n = len(x)
    rows = max(1, -(-n // columns))
    wrong = int(np.sum(y_true != y_pred))
    with style():
        fig = Figure(figsize=(1.55 * columns, 1.85 * rows + 0.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
        for i, ax in enumerate(axes):
            if i >= n:
                ax.set_visible(False)
                continue
            _show(ax, x[i])
            ok = y_true[i] == y_pred[i]
            ax.set_title(
                f"{class_names[y_pred[i]]} {proba[i, y_pred[i]]:.2f}\ntrue: {class_names[y_true[i]]}",
                fontsize=8,
                color=RIGHT if ok else WRONG,
            )
            if not ok:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color(WRONG)
                    spine.set_linewidth(2)
        fig.suptitle(f"{title}: predicted class and probability, true class below; {wrong} of {n} wrong (red)")
    return fig


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, title: str, target: str = "target") -> Figure:
    """Regression on the test set: predicted against true values, with the identity line."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    with style():
        fig = Figure(figsize=(5.6, 5.4), layout="constrained")
        ax = fig.subplots()
        ax.scatter(y_true, y_pred, s=8, alpha=0.35, color="#1f77b4", linewidths=0)
        low = float(min(np.min(y_true), np.min(y_pred)))
        high = float(max(np.max(y_true), np.max(y_pred)))
        ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--", label="predicted = true")
        ax.set_xlabel(f"true {target}")
        ax.set_ylabel(f"predicted {target}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="upper left")
        ax.set_title(
            f"{title}\nMSE {mean_squared_error(y_true, y_pred):.4f}, MAE {mean_absolute_error(y_true, y_pred):.4f}, "
            f"R² {r2_score(y_true, y_pred):.3f} on {len(y_true)} test examples"
        )
    return fig


def class_colors(k: int) -> list[str]:
    """A colour per class (tab10 up to ten classes, tab20 up to twenty)."""
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10" if k <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(k)]


def tsne_panels(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, str]], class_names: Sequence[str], samples: int
) -> Figure:
    """One t-SNE map per (title, 2-D points, labels, layer description), coloured by class."""
    n = len(panels)
    columns = min(n, 3)
    rows = -(-n // columns)
    colors = class_colors(max(len(class_names), 1))
    with style():
        fig = Figure(figsize=(4.6 * columns, 4.4 * rows + 0.8), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
        for ax, (name, points, labels, layer) in zip(axes, panels):
            for k, cname in enumerate(class_names):
                mask = labels == k
                ax.scatter(points[mask, 0], points[mask, 1], s=9, color=colors[k], alpha=0.8, linewidths=0, label=cname)
            ax.set_title(f"{name}\n{layer}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_color("#cccccc")
                spine.set_visible(True)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [
            Line2D([], [], marker="o", linestyle="", color=colors[k], label=c) for k, c in enumerate(class_names)
        ]
        legend_below(fig, handles, max_columns=10)
        fig.suptitle(f"t-SNE of the last hidden layer's activations on {samples} test examples, coloured by true class")
    return fig


# --- the data set ---------------------------------------------------------------------------


def sample_grid(x: np.ndarray, y: np.ndarray, class_names: Sequence[str], title: str, per_class: int = 8) -> Figure:
    """The first ``per_class`` images of each class, one row per class, named on the left."""
    k = len(class_names)
    with style():
        fig = Figure(figsize=(1.1 * per_class + 1.6, 1.1 * k + 0.6), layout="constrained")
        axes = np.atleast_2d(fig.subplots(k, per_class))
        for c in range(k):
            idx = np.flatnonzero(y == c)[:per_class]
            for j in range(per_class):
                ax = axes[c, j]
                if j < len(idx):
                    _show(ax, x[idx[j]])
                else:
                    ax.set_visible(False)
            axes[c, 0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=10)
        fig.suptitle(title)
    return fig


def class_counts(counts: Mapping[str, np.ndarray], class_names: Sequence[str], title: str) -> Figure:
    """Examples per class in each split, side by side."""
    k = len(class_names)
    splits = list(counts)
    width = 0.8 / max(len(splits), 1)
    with style():
        fig = Figure(figsize=(max(6.0, 0.7 * k + 2), 4.2), layout="constrained")
        ax = fig.subplots()
        xs = np.arange(k)
        for i, split in enumerate(splits):
            ax.bar(
                xs + (i - (len(splits) - 1) / 2) * width,
                counts[split],
                width=width * 0.95,
                label=f"{split} ({int(np.sum(counts[split]))})",
            )
        ax.set_xticks(
            xs,
            list(class_names),
            rotation=30 if max(len(c) for c in class_names) > 4 else 0,
            ha="right" if k > 5 else "center",
        )
        ax.set_ylabel("examples")
        ax.grid(axis="x", visible=False)
        ax.legend()
        ax.set_title(title)
    return fig


def feature_histograms(
    x: np.ndarray, y: np.ndarray, feature_names: Sequence[str], title: str, target: str = "target"
) -> Figure:
    """A histogram of each feature and of the target (tabular data); a long-tailed one shows its
    central 99% (0.5th to 99.5th percentile), and says so."""
    columns = list(feature_names) + [target]
    data = [x[:, i] for i in range(x.shape[1])] + [y]
    ncols = 3
    nrows = -(-len(columns) // ncols)
    with style():
        fig = Figure(figsize=(4.0 * ncols, 2.6 * nrows + 0.5), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
        for ax, name, values in zip(axes, columns, data):
            values = np.asarray(values, dtype=np.float64)
            values = values[np.isfinite(values)]
            low, high = np.percentile(values, [0.5, 99.5]) if len(values) else (0.0, 1.0)
            # A few extreme values (AveOccup in California housing reaches 1243) squash the rest into one bar.
            clipped = len(values) and values.max() - values.min() > 3 * (high - low) > 0
            ax.hist(
                values,
                bins=50,
                range=(low, high) if clipped else None,
                color="#ff7f0e" if name == target else "#1f77b4",
                alpha=0.85,
            )
            ax.set_title(f"{name} (central 99%)" if clipped else name)
            ax.grid(axis="x", visible=False)
        for ax in axes[len(columns) :]:
            ax.set_visible(False)
        fig.suptitle(title)
    return fig
