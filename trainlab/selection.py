"""The one rule for choosing among variants, shared by staged studies and reports.

The chosen variant has the best mean of the selection metric over its finished seeds; ties go
to the better validation loss (or accuracy, when choosing by loss), then to the earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from trainlab.losses import mode_for


def tie_break(metric: str) -> str:
    """The metric that decides between equal values of ``metric``."""
    return "val_loss" if metric != "val_loss" else "val_accuracy"


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the finite values, None if there is none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def rank(value: float, second: float | None, metric: str, index: int) -> tuple[float, float, int]:
    """A sort key: lower is better, by ``metric``, then its tie-break metric, then position."""
    sign = -1.0 if mode_for(metric) == "max" else 1.0
    other = tie_break(metric)
    second_sign = -1.0 if mode_for(other) == "max" else 1.0
    known = second is not None and math.isfinite(second)
    return sign * value, second_sign * second if known and second is not None else math.inf, index


def choose(means: Sequence[tuple[float | None, float | None]], metric: str) -> int | None:
    """The index of the best (metric mean, tie-break mean) pair; None if no finite mean is known.

    A mean that is not a finite number (NaN, infinite) is never chosen, and a tie-break value that
    is not finite loses every tie."""
    ranked = [rank(m, second, metric, i) for i, (m, second) in enumerate(means) if m is not None and math.isfinite(m)]
    return min(ranked)[2] if ranked else None
