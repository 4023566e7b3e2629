"""Which trials can train together, and how many at once pays.

Trials share a population when they would see exactly the same batches and differ only in
what lives in tensors: same architecture, data and split, batch size, shuffling, loss and seed
(the seed fixes the batch order and the dropout noise), and the same epoch to start from.
Their optimizers and hyper-parameters, initializers, epoch budgets and callbacks may differ.

How many members one population should hold is measured, not assumed: :func:`measure_k`
times a few steps of the real model on the real batch size at growing K and keeps the K with
the best throughput per member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from trainlab import models
from trainlab.spec import canonical_json

CANDIDATE_K = (1, 2, 4, 8, 16)


def group_key(spec: Mapping[str, Any], seed: int, start_epoch: int) -> str:
    """Trials with equal keys can train as one population."""
    train = spec["train"]
    return canonical_json({
        "model": spec["model"], "data": spec["data"], "task": spec["task"], "seed": seed, "start": start_epoch,
        "batch_size": train["batch_size"], "shuffle": train["shuffle"], "loss": train["loss"],
    })


_rates: dict[str, dict[int, float]] = {}


def measure_k(spec: Mapping[str, Any], input_shape: Sequence[int], x: torch.Tensor, y: torch.Tensor,
              *, limit: int, budget_seconds: float = 0.8) -> int:
    """The population size with the best measured member-steps per second, at most ``limit``.

    Times a few training steps of this architecture at this batch size for growing K (the
    candidates in :data:`CANDIDATE_K` and ``limit``), and stops growing once a larger K gains
    less than 10%. The rates are remembered per architecture and batch size for the life of
    the process, so later groups of the same kind choose without measuring.
    """
    if limit <= 1:
        return 1
    from trainlab.engine.population import Member, step_rate

    batch = spec["train"]["batch_size"]
    key = canonical_json({"model": spec["model"], "batch": batch, "shape": list(input_shape), "loss": spec["train"]["loss"]})
    rates = _rates.setdefault(key, {})
    n = len(x) if batch == "full" else min(int(batch), len(x))
    candidates = sorted({k for k in CANDIDATE_K if k < limit} | {limit})
    best_k, best_rate = 1, 0.0
    for k in candidates:
        if k not in rates:
            members = [Member(models.build(spec["model"], input_shape, i), spec["optimizer"], None) for i in range(k)]  # type: ignore[arg-type]
            rates[k] = step_rate(members, x[:n], y[:n], spec["train"]["loss"], seconds=budget_seconds / len(candidates)) * k
        if rates[k] < best_rate * 1.1:
            break
        best_k, best_rate = k, rates[k]
    return best_k
