"""The names of the figures ``trainlab plot`` draws, with one line each: kept apart from the
drawing code so that the command line can list them without importing matplotlib."""

from __future__ import annotations

FIGURES: dict[str, str] = {
    "curves": "learning curves: accuracy and loss per epoch, mean over seeds with their range",
    "final": "final validation metrics per variant: mean, 95% CI and seeds, best first",
    "time": "seconds per epoch per variant",
    "lr": "learning rate per epoch, where a schedule acted",
    "budget": "budget curves: a search's expected best validation score against the points sampled, with a band",
    "confusion": "confusion matrix of the chosen trial on the test set (classification)",
    "images": "test images with predicted and true classes, red where wrong (image classification)",
    "scatter": "predicted vs true values of the chosen trial on the test set (regression)",
    "tsne": "t-SNE of the last hidden layer's activations on test images, one map per variant",
}
"""Every figure ``trainlab plot`` can draw, in report order."""
STUDY_FIGURES = ("curves", "final", "time", "lr", "budget")
"""Figures drawn from the store alone."""
TRIAL_FIGURES = ("confusion", "images", "scatter", "tsne")
"""Figures that run a trial's chosen weights on its test split."""
