"""The training steps, in one table: which implementation a population trains with, and why.

A population is the trials that train together: one trial alone, or several that share their batches (see
:mod:`trainlab.planner`, which decides each trial's step and records it in its plan). Every step
trains its models to their end and reports each epoch in the same form, so that any step can
resume another's checkpoint.

``population``
    Chosen for two or more trials that share their batches. Stacked weights and
    ``vmap(grad(...))`` over the members (:mod:`.population`); compiled whole when one update
    rule covers the population and the plan compiles, the gradients only when several do.
``lowered``
    Chosen for a trial alone whose dense network, small batch and SGD the lowered step covers.
    Hand-written forward, backward and SGD update, no autograd (:mod:`.lowered`).
``autograd``
    Chosen for every other trial alone. The model's own modules, ``torch.autograd.grad`` and
    trainlab's optimizer (:mod:`.loop`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from trainlab.data.cache import Tensors
from trainlab.engine.loop import OnBatch, fit
from trainlab.engine.population import Member, OnMemberEpoch, PruneMembers, fit_population
from trainlab.engine.tracker import FitResult
from trainlab.models import Net
from trainlab.optim import Optimizer
from trainlab.trial import TrialSpec


@dataclass(frozen=True)
class Population:
    """What a step trains: the models (built, not yet trained), their specs and checkpoints to
    resume from, the data, the task and the shared seed; ``compile`` for a population's step;
    ``channels_last`` gives the data in channels_last layout (see :func:`laid_out`). ``device``:
    where it trains; the data must live there already (the data cache moves it once), the
    models are moved there by :func:`train`."""

    nets: Sequence[Net]
    specs: Sequence[TrialSpec]
    resumes: Sequence[bytes | None]
    data: Tensors
    task: str
    seed: int
    compile: bool = False
    channels_last: Callable[[], Tensors] | None = None
    device: torch.device = torch.device("cpu")


StepFn = Callable[[Population, OnMemberEpoch | None, OnBatch | None, PruneMembers | None], list[FitResult]]


def _alone(lowered: bool) -> StepFn:
    def train(
        population: Population, on_epoch: OnMemberEpoch | None, on_batch: OnBatch | None, prune: PruneMembers | None
    ) -> list[FitResult]:
        (net,), (spec,), (resume,) = population.nets, population.specs, population.resumes
        optimizer = Optimizer([p for p in net.parameters() if p.requires_grad], spec.optimizer.to_json())
        report = None if on_epoch is None else (lambda epoch, logs, make: on_epoch(0, epoch, logs, make))
        alone = None if prune is None else (lambda epoch, logs: 0 in prune(epoch, {0: logs}))
        return [
            fit(
                net,
                optimizer,
                population.data,
                spec.train,
                population.task,
                seed=population.seed,
                resume=resume,
                on_epoch=report,
                on_batch=on_batch,
                lowered=lowered,
                prune=alone,
            )
        ]

    return train


def _population(
    population: Population, on_epoch: OnMemberEpoch | None, on_batch: OnBatch | None, prune: PruneMembers | None
) -> list[FitResult]:
    members = [
        Member(net, spec.optimizer.to_json(), spec.train, resume)
        for net, spec, resume in zip(population.nets, population.specs, population.resumes)
    ]
    return fit_population(
        members,
        population.data,
        population.task,
        seed=population.seed,
        on_epoch=on_epoch,
        on_batch=on_batch,
        compile=population.compile,
        prune=prune,
    )


STEPS: dict[str, StepFn] = {
    "population": _population,
    "lowered": _alone(lowered=True),
    "autograd": _alone(lowered=False),
}
"""Each step's trainer, by the name a plan records."""


def laid_out(step: str, population: Population) -> Population:
    """``population`` in the memory layout its step trains fastest in: a convolutional model trained alone
    goes channels_last, model and data (bench/README.md, benchmark 3); populations keep the plain
    layout. Evaluate the trained models on the returned population's data, so that the test set is seen
    in the layout training used."""
    if step == "population" or population.channels_last is None or not population.specs[0].model.convolutional:
        return population
    for net in population.nets:
        net.to(memory_format=torch.channels_last)
    return replace(population, data=population.channels_last())


def train(
    step: str,
    population: Population,
    on_epoch: OnMemberEpoch | None = None,
    on_batch: OnBatch | None = None,
    prune: PruneMembers | None = None,
) -> list[FitResult]:
    """Train ``population`` with ``step`` (a key of :data:`STEPS`); results in the population's order.
    ``prune`` is asked once per epoch with every member's metrics (see :data:`PruneMembers`)."""
    if step not in STEPS:
        raise ValueError(f"unknown training step {step!r}; the steps are {', '.join(STEPS)}")
    if step != "population" and len(population.nets) != 1:
        raise ValueError(f"the {step} step trains one model, not {len(population.nets)}")
    if population.data.x_train.device != population.device:
        raise ValueError(
            f"the data is on {population.data.x_train.device}, the population trains on {population.device}"
        )
    for net in population.nets:
        net.to(population.device)
    return STEPS[step](population, on_epoch, on_batch, prune)
