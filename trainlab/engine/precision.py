"""Mixed precision: ``train.precision`` as an autocast context, and loss scaling for float16.

``float32`` (the default) runs every operation in float32. ``bfloat16`` and ``float16`` run the
forward pass under ``torch.autocast``: matrix products and convolutions in the low precision,
reductions and losses in float32, weights and optimizer state kept in float32. float16's narrow
range makes small gradients underflow to zero, so its loss is scaled up before the backward pass
and the gradients scaled back before the update (:class:`LossScaler`); bfloat16 has float32's
range and needs no scaling. Autocast works on the CPU too (bfloat16 and float16), which is how
the tests exercise it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from trainlab.trial import PRECISIONS

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """The context a forward pass of ``precision`` runs in on ``device`` (nothing for float32)."""
    if precision == "float32":
        return nullcontext()
    if precision not in _DTYPES:
        raise ValueError(f"unknown precision {precision!r}; the precisions are {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=_DTYPES[precision])


class LossScaler:
    """Dynamic loss scaling for float16, with ``torch.amp.GradScaler``'s rule and defaults.

    The loss is multiplied by ``scale`` before the gradients are taken; :meth:`unscale` divides
    them back and says whether all are finite. A step with an infinite or NaN gradient is
    skipped (the optimizer is not called) and the scale halves; after ``growth_interval``
    finite steps in a row it doubles. trainlab's optimizers take gradients as arguments rather
    than reading ``.grad``, which GradScaler's ``unscale_``/``step`` need, hence this class;
    tests/engine/test_precision.py holds its scale and skipped steps to GradScaler's.
    Its state goes into checkpoints, so that a resumed trial scales as the uninterrupted one.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        self.scale = init_scale
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0
        """Finite steps in a row since the scale last changed."""

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    def unscale(self, grads: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], bool]:
        """The gradients divided by the scale, and whether every one is finite (one host sync)."""
        inverse = 1.0 / self.scale
        out = [g.float() * inverse for g in grads]
        finite = bool(torch.stack([torch.isfinite(g).all() for g in out]).all()) if out else True
        return out, finite

    def update(self, finite: bool) -> None:
        """After a step: back off on a skipped one, grow after ``growth_interval`` finite ones."""
        if not finite:
            self.scale *= self.backoff_factor
            self.growth_tracker = 0
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            grown = self.scale * self.growth_factor
            if math.isfinite(grown):
                self.scale = grown
            self.growth_tracker = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "scale": torch.tensor(self.scale, dtype=torch.float64),
            "growth_tracker": torch.tensor(self.growth_tracker, dtype=torch.int64),
        }

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.scale = float(state["scale"])
        self.growth_tracker = int(state["growth_tracker"])
