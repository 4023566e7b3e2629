"""Prepared data sets as torch tensors, made once per process and device, and shared by whoever asks.

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

    def get(
        self, spec: Mapping[str, Any], *, channels_last: bool = False, device: torch.device | str = "cpu"
    ) -> tuple[Tensors, DataInfo, dict[str, Any]]:
        """The tensors of a data spec; ``channels_last`` lays images out N, H, W, C in memory (same shape).

        ``device``: where the tensors live. Data is moved to a device once, from the CPU copy,
        and stays there for every trial that asks for it (training, evaluation and the test
        split all read it there)."""
        device = torch.device(device)
        key = _key(spec, channels_last, str(device))
        if key not in self._cache:
            if device.type != "cpu":
                plain, info, split = self.get(spec, channels_last=channels_last)
                tensors = Tensors(*(t.to(device) for t in _fields(plain)))
            elif channels_last:
                plain, info, split = self.get(spec)
                tensors = Tensors(
                    *(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in _fields(plain))
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


def _fields(tensors: Tensors) -> tuple[torch.Tensor, ...]:
    return (tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, tensors.x_test, tensors.y_test)


def _key(spec: Mapping[str, Any], channels_last: bool, device: str) -> str:
    """The same text for equal data specs, whatever their key order."""
    return json.dumps(
        {"data": spec, "channels_last": channels_last, "device": device},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
