"""Splitting a training set into training and validation parts, reproducibly.

Kinds (:data:`trainlab.data.params.KINDS`):
  ``first``       the first N examples are validation (report A: the first 5000 of MNIST)
  ``random``      a seeded random subset
  ``stratified``  a seeded random subset taking each class in proportion (report E)
  ``kfold``       fold ``fold`` of ``folds`` seeded folds validates (stratified by class for
                  classification); a study trains each variant once per fold

``validation`` is a count (int >= 1) or a fraction in (0, 1). Both parts come back as sorted
index arrays, so the examples keep their original order and a split is identified by the
sha256 of its validation indices. The test set is never an input here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainlab.data.params import check_split
from trainlab.errors import SpecError
from trainlab.seeding import derive


@dataclass(frozen=True)
class SplitSpec:
    """A validated ``[data.split]`` table."""

    kind: str
    validation: int | float
    seed: int = 0
    folds: int = 0
    fold: int = 0

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "kfold":
            return {"kind": self.kind, "folds": self.folds, "fold": self.fold, "seed": self.seed}
        return {"kind": self.kind, "validation": self.validation, "seed": self.seed}


def parse_split(table: Any, *, path: str = "data.split") -> SplitSpec:
    """Validate a resolved split table (every key a resolved table states, stated; see
    :mod:`trainlab.data.params`); SpecError names the key path and the allowed values."""
    return as_split_spec(check_split(table, path=path, stated=True))


def as_split_spec(split: Mapping[str, Any]) -> SplitSpec:
    """The :class:`SplitSpec` of a split table already checked by :func:`check_split` with ``stated``."""
    if split["kind"] == "kfold":
        return SplitSpec("kfold", 0, split["seed"], split["folds"], split["fold"])
    return SplitSpec(split["kind"], split["validation"], split["seed"])


def count_of(amount: int | float, n: int, *, path: str, what: str) -> int:
    """The number of examples ``amount`` asks for out of ``n``: a count as is, a fraction
    rounded half up; at least 1 must be taken and at least 1 must remain."""
    count = amount if isinstance(amount, int) else int(math.floor(amount * n + 0.5))
    if not 1 <= count <= n - 1:
        asked = f"{amount}" if isinstance(amount, int) else f"{amount} of {n} = {count}"
        raise SpecError(
            f"{what} of {asked} examples leaves no room: there are {n} examples, "
            f"so between 1 and {n - 1} can be held out",
            path=path,
            got=amount,
        )
    return count


def split_indices(
    spec: SplitSpec, n: int, labels: np.ndarray | None = None, *, path: str = "data.split"
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) index arrays over ``range(n)``, disjoint, together all of it, sorted.

    ``labels`` are needed for ``stratified`` (integer classes).
    """
    if spec.kind == "kfold":
        return _kfold(spec, n, labels, path=path)
    n_val = count_of(spec.validation, n, path=f"{path}.validation", what="a validation set")
    everything = np.arange(n, dtype=np.int64)
    if spec.kind == "first":
        return everything[n_val:], everything[:n_val]
    rng = np.random.default_rng(derive(spec.seed, "data.split", spec.kind))
    if spec.kind == "random":
        val = np.sort(rng.permutation(n)[:n_val]).astype(np.int64)
    else:
        if labels is None or labels.dtype.kind not in "iu":
            raise SpecError(
                "stratified splitting needs class labels; this data set is a regression task",
                path=f"{path}.kind",
                allowed=("first", "random"),
                got=spec.kind,
            )
        val = _stratified(np.asarray(labels), n_val, rng)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return everything[mask], val


def _kfold(spec: SplitSpec, n: int, labels: np.ndarray | None, *, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``spec.fold`` of scikit-learn's seeded (stratified, for class labels) k-fold split."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if n < spec.folds:
        raise SpecError(f"{spec.folds} folds need at least {spec.folds} examples, there are {n}", path=f"{path}.folds")
    seed = derive(spec.seed, "data.split", "kfold") % 2**32
    classes = labels is not None and labels.dtype.kind in "iu"
    if classes and np.unique(labels, return_counts=True)[1].min() >= spec.folds:
        folds = StratifiedKFold(spec.folds, shuffle=True, random_state=seed).split(np.zeros(n), labels)
    else:
        folds = KFold(spec.folds, shuffle=True, random_state=seed).split(np.zeros(n))
    train, val = list(folds)[spec.fold]
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def _stratified(labels: np.ndarray, n_val: int, rng: np.random.Generator) -> np.ndarray:
    """Each class gives its proportional share of ``n_val``, rounded by largest remainder, so
    every class is within one example of its exact share and the total is exactly ``n_val``."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n_val / len(labels))
    take = np.floor(exact).astype(np.int64)
    short = n_val - int(take.sum())
    # Largest remainder first; ties go to the lower class for determinism.
    order = np.lexsort((classes, -(exact - take)))
    take[order[:short]] += 1
    chosen = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def carve_test(
    n: int, fraction: float, seed: int, *, path: str = "data.test_fraction"
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, test) for a data set without an official test split: a seeded random fraction,
    drawn from its own stream so the validation split cannot overlap or influence it."""
    n_test = count_of(fraction, n, path=path, what="a test set")
    rng = np.random.default_rng(derive(seed, "data.test"))
    test = np.sort(rng.permutation(n)[:n_test]).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.arange(n, dtype=np.int64)[mask], test


def index_sha256(indices: np.ndarray) -> str:
    """The sha256 of indices as little-endian int64: a short identity for a split."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()
