"""Prepared data sets as torch tensors, made once per process and shared by whoever asks.

The executors train on these tensors, and the report and export read a trial's test split
from them, so each gets exactly the split the trial trained on. This is the one module of
:mod:`trainlab.data` that imports torch; the package's face does not import it, so that
``trainlab data`` and the rest of the package stay free of torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from trainlab.data.datasets import DataInfo
from trainlab.data.prepare import prepare


@dataclass(frozen=True)
class Tensors:
    """A prepared data set as tensors: float inputs, int64 classes or float targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class DataCache:
    """Prepared data sets as tensors, by their resolved ``data`` spec, loaded once per process."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Tensors, DataInfo, dict[str, Any]]] = {}

    def get(self, spec: Mapping[str, Any], *, channels_last: bool = False) -> tuple[Tensors, DataInfo, dict[str, Any]]:
        """The tensors of a data spec; ``channels_last`` lays images out N, H, W, C in memory (same shape)."""
        key = _key(spec, channels_last)
        if key not in self._cache:
            if channels_last:
                plain, info, split = self.get(spec)
                tensors = Tensors(
                    *(
                        t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                        for t in (plain.x_train, plain.y_train, plain.x_val, plain.y_val, plain.x_test, plain.y_test)
                    )
                )
            else:
                prepared = prepare(spec)
                tensors = Tensors(
                    *(
                        torch.from_numpy(getattr(prepared, name))
                        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
                    )
                )
                info, split = prepared.info, prepared.split
            self._cache[key] = (tensors, info, split)
        return self._cache[key]


def _key(spec: Mapping[str, Any], channels_last: bool) -> str:
    """The same text for equal data specs, whatever their key order."""
    return json.dumps(
        {"data": spec, "channels_last": channels_last}, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
