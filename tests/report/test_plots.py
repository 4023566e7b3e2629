"""Figures: every one is written, non-empty and readable for a small trained study; the data
behind them is the right data (the chosen trial's test predictions, the last hidden layer);
figures that do not apply are left out, or refused when asked for by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from trained_study import trained_store

from trainlab.cli import main
from trainlab.report import plots
from trainlab.report.figures import FIGURES, StudyFigures, data_figures
from trainlab.store import Store


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_store(tmp_path_factory.getbasetemp())


def _check_png(path: Path, min_side: int = 250) -> tuple[int, int]:
    assert path.stat().st_size > 5000, f"{path} is nearly empty"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint32)
        colours = len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))
    assert min(width, height) >= min_side and colours > 20, f"{path}: {width}x{height}, {colours} colours"
    return width, height


def _check_svg(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "<svg" in text and text.rstrip().endswith("</svg>") and len(text) > 5000


def test_plot_command_writes_every_applicable_figure(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", "small", "--store", str(small), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    drawn = ["curves", "final", "time", "lr", "confusion", "images", "tsne"]
    for name in drawn:
        _check_png(tmp_path / f"small-{name}.png")
        _check_svg(tmp_path / f"small-{name}.svg")
        assert f"wrote {tmp_path / f'small-{name}.png'}" in out
    assert not (tmp_path / "small-scatter.png").exists()
    assert "scatter" not in out, "a figure that cannot apply to a classification is left out silently under 'all'"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"small-{n}.{f}" for n in drawn for f in ("png", "svg"))


def test_a_figure_named_that_does_not_apply_is_an_error(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["plot", "small", "scatter", "curves", "--store", str(small), "--out", str(tmp_path), "--formats", "png"])
        == 2
    )
    err = capsys.readouterr().err
    assert "scatter: not drawn: predicted vs true is for regression" in err
    assert (tmp_path / "small-curves.png").exists() and not (tmp_path / "small-curves.svg").exists()
    assert main(["plot", "small", "pie", "--store", str(small)]) == 2
    assert "unknown figure 'pie'" in capsys.readouterr().err


def test_trial_figures_use_the_chosen_trials_test_predictions(small: Path) -> None:
    with Store.open(small) as store:
        figures = StudyFigures(store, "small")
        chosen = figures.report["selection"]["chosen_trial"]
        p = figures.predictions
        assert p.trial.hash == chosen
        recorded = p.trial.result["test"]["accuracy"]
        assert float(np.mean(p.y_true == p.y_pred)) == pytest.approx(recorded, abs=1e-6)  # recorded as a float32 mean
        assert p.proba.shape == (120, 4) and np.allclose(p.proba.sum(1), 1, atol=1e-5)

        grid = figures.make("images").figure
        titles = [ax.title for ax in grid.axes if ax.get_visible()]
        assert len(titles) == 32

        def wrong(text: str) -> bool:  # "PREDICTED 0.42\ntrue: TRUE"
            first, second = text.split("\n")
            return first.rsplit(" ", 1)[0] != second.removeprefix("true: ")

        assert [t.get_color() == plots.WRONG for t in titles] == [wrong(t.get_text()) for t in titles]
        assert any(wrong(t.get_text()) for t in titles), "this study misclassifies some of the 32 images"

        cm = figures.make("confusion").figure
        values = cm.axes[0].images[0].get_array()
        assert int(values.sum()) == 120 and int(np.trace(values)) == int(round(recorded * 120))


def test_tsne_uses_the_last_hidden_layer_of_each_variant(small: Path) -> None:
    from trainlab.report.inspect import last_hidden
    from trainlab.report.trials import find_trial

    with Store.open(small) as store:
        mlp = last_hidden(store, find_trial(store, "small", "mlp adam"), 50)
        cnn = last_hidden(store, find_trial(store, "small", "cnn"), 50)
        assert mlp.features.shape == (50, 24) and mlp.layer == "output of dense_1, 24 features"
        assert cnn.features.shape == (50, 96) and cnn.layer == "output of flatten_1, 96 features"
        assert np.array_equal(mlp.labels, cnn.labels), "both maps show the same test images"
        assert (mlp.features >= 0).all(), "activations after relu"
        fig = StudyFigures(store, "small", tsne_samples=60).make("tsne").figure
        assert [ax.get_title().split("\n")[0].split(" (")[0] for ax in fig.axes if ax.get_visible()] == [
            "mlp sgd",
            "mlp adam",
            "cnn",
        ]


def test_final_metrics_are_sorted_best_first(small: Path) -> None:
    with Store.open(small) as store:
        figures = StudyFigures(store, "small")
        fig = figures.make("final").figure
        report = figures.report
    labels = [t.get_text().split("  (")[0] for t in fig.axes[0].get_yticklabels()]
    means = {v["label"]: v["val_accuracy"]["mean"] for v in report["variants"]}
    assert labels == sorted(means, key=lambda k: -means[k])
    assert labels[0] == report["selection"]["chosen"]


def test_mean_band_over_runs_of_different_lengths() -> None:
    epochs, mean, low, high, count = plots.mean_band([[1.0, 2.0, 3.0], [3.0, None], [2.0, 4.0, float("nan")]])
    assert epochs.tolist() == [1, 2, 3]
    assert mean.tolist() == [2.0, 3.0, 3.0]
    assert low.tolist() == [1.0, 2.0, 3.0] and high.tolist() == [3.0, 4.0, 3.0]
    assert count.tolist() == [3, 2, 1]


def test_learning_rate_chart_only_where_a_schedule_acted() -> None:
    flat = {"a": [[{"learning_rate": 0.01}, {"learning_rate": 0.01}]]}
    moved = {**flat, "b": [[{"learning_rate": 0.01}, {"learning_rate": 0.001}]]}
    colors = plots.palette(["a", "b"])
    assert plots.learning_rate(flat, colors) is None
    fig = plots.learning_rate(moved, colors)
    assert fig is not None and [line.get_label() for line in fig.axes[0].get_lines()] == ["b"]


def test_learning_rate_chart_draws_every_schedule_even_one_that_held_its_rate() -> None:
    held = {"a": [[{"learning_rate": 0.01}, {"learning_rate": 0.01}]], "c": [[{"learning_rate": 0.1}] * 2]}
    colors = plots.palette(["a", "c"])
    fig = plots.learning_rate(held, colors, scheduled={"c"})
    assert fig is not None and [line.get_label() for line in fig.axes[0].get_lines()] == ["c"]


def test_data_show_writes_samples_and_counts(small: Path, tmp_path: Path) -> None:
    folder = small.parent
    assert main(["data", "show", "npz", "--path", str(folder / "small.npz"), "--out", str(tmp_path / "raw")]) == 0
    w, h = _check_png(tmp_path / "raw" / "small-data-samples.png")
    assert h > 300, "one row per class (4)"
    _check_png(tmp_path / "raw" / "small-data-counts.png")
    made = data_figures(str(folder / "small.toml"))
    counts = made[1].figure.axes[0]
    assert [t.get_text() for t in counts.get_legend().get_texts()] == ["train (240)", "validation (80)", "test (120)"]
    assert main(["data", "show", "npz", "--out", str(tmp_path)]) == 2


REGRESSION = """
[study]
name = "reg"
seeds = [0, 1]
[data]
name = "npz"
path = "reg.npz"
split = { kind = "random", validation = 0.2 }
[model]
layers = [ { type = "Dense", units = 8, activation = "relu" }, { type = "Dense", units = 1 } ]
[train]
epochs = 3
batch_size = 16
loss = "mse"
[[compare]]
label = "sgd"
[[compare]]
label = "adam"
optimizer = "adam"
"""


def test_regression_study_gets_scatter_and_feature_histograms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)).astype(np.float32)
    x[0, 0] = 1000.0  # one extreme value: its histogram shows the central 99%
    np.savez(tmp_path / "reg.npz", x_train=x, y_train=y, feature_names=np.array(["rooms", "age", "income"]))
    (tmp_path / "reg.toml").write_text(REGRESSION)
    store = str(tmp_path / "r.db")
    assert (
        main(
            [
                "run",
                str(tmp_path / "reg.toml"),
                "--store",
                store,
                "--quiet",
                "--format",
                "none",
                "--workers",
                "1",
                "--population",
                "1",
            ]
        )
        == 0
    )
    assert main(["plot", "reg", "--store", store, "--out", str(tmp_path / "f")]) == 0
    written = sorted(p.name for p in (tmp_path / "f").glob("*.png"))
    assert written == ["reg-curves.png", "reg-final.png", "reg-scatter.png", "reg-time.png"]
    assert "lr: not drawn: the learning rate stayed constant" in capsys.readouterr().out
    _check_png(tmp_path / "f" / "reg-scatter.png")
    assert main(["plot", "reg", "confusion", "--store", store]) == 2

    made = data_figures(str(tmp_path / "reg.toml"))
    assert [m.name for m in made] == ["features"]
    assert (
        made[0].figure.get_suptitle()
        == "reg.npz as study reg splits it: training features (standardized on the training split) and target"
    )
    raw = data_figures("npz", path=str(tmp_path / "reg.npz"))[0].figure
    titles = [ax.get_title() for ax in raw.axes if ax.get_visible()]
    assert titles == ["rooms (central 99%)", "age", "income", "target"]


def test_every_figure_has_a_description() -> None:
    assert list(FIGURES) == ["curves", "final", "time", "lr", "budget", "confusion", "images", "scatter", "tsne"]
    assert all(len(text) > 20 for text in FIGURES.values())
