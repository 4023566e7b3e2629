"""The run plan: how each trial trains, decided from the study and the machine's fixed properties.

Everything that can change a trial's numbers is decided here, and only from the trial specs,
the options the user gave (``--population``, ``--workers``), the trainlab and torch versions
and the machine's core count: never from timing or load. So the same study on the same machine
trains the same way, and gives the same numbers, however busy the machine is.

A :class:`Plan` says, for one trial:

* ``population``: which population it trains in (an id its members share) and how many
  ``members`` that population holds; trials that share a population see the same batches and
  differ only in what lives in tensors (see :func:`batch_key`);
* ``step``: the training step: ``population`` (stacked weights, ``torch.func``), ``lowered``
  (the hand-lowered small-batch SGD step) or ``autograd`` (the plain loop);
* ``compile``: whether a population's step is compiled with ``torch.compile``;
* ``threads``: torch's intra-op threads while it trains; ``workers`` and ``cores``: the worker
  processes and the core count the threads were derived from;
* ``device``, ``precision``, ``trainlab`` and ``torch``: where, in what precision and with which
  versions; ``device_memory``: a GPU's total memory, which the population size derives from
  there (see :func:`memory_limit`);
* ``reason``: why a trial that could share a population trains alone: a convolutional model on
  the CPU without ``--population`` (:data:`CPU_CONVOLUTIONS_ALONE`), or a user's module that
  ``torch.func`` cannot batch (found by :func:`population_problem`); absent otherwise.

Plans are recorded with each trial before it first trains (:meth:`Store.set_plans`), and a
resumed trial goes on under its recorded plan.

What changes a member's numbers, and what does not (tests/test_planner.py pins each):

* within one plan, nothing: the same study trains to bit-identical epochs and weights;
* the other members of its population do not: each member's arithmetic is its own slice of the
  batched operations (and a member left alone trains beside a copy of itself, in
  :mod:`trainlab.engine.population`). A trial trained alone runs other kernels, and
  agrees with a population's member to float rounding only;
* the thread count does: a reduction split over more threads adds in another order. So
  ``--workers`` (which divides the cores among processes) and ``--population 1`` change the
  numbers within float rounding, which thousands of steps can grow into a different last digit
  of an accuracy; the defaults never change with load.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from trainlab import models
from trainlab.engine.loop import EVAL_BATCH
from trainlab.engine.lowered import ONE_THREAD_MAX_BATCH, lower
from trainlab.engine.population import dry_step
from trainlab.optim import Optimizer
from trainlab.trial import ModelSpec, TrialSpec, canonical_json
from trainlab.version import __version__

MAX_POPULATION = 16
"""The most trials one population holds on the CPU unless ``--population`` says otherwise; a
larger group is split into near-equal populations."""
GPU_MAX_POPULATION = 256
"""The most trials one population holds on a GPU of known memory unless ``--population`` says
otherwise; below it, the device's memory decides (:func:`memory_limit`)."""
MEMORY_SHARE = 0.5
"""The share of a GPU's total memory a population is planned to fill: the estimate of
:func:`member_bytes` leaves out the allocator's slack, compiled programs and temporaries."""

COMPILE_PAYS_AFTER = 30.0
"""Nominal seconds of eager stepping a population must have ahead of it for compiling to pay."""
CPU_CONVOLUTIONS_ALONE = (
    "convolutions train faster one at a time than stacked in a population on the CPU "
    "(bench/README.md, benchmark 3; --population K groups them)"
)
"""The reason a plan records for a convolutional trial on the CPU that trains alone.

Measured, not assumed: a population of three of report A's CNN trained slower than the same
trials one at a time in channels_last (bench/README.md, benchmark 3). On a GPU stacked
convolutions are where populations pay, so there they keep them."""

NOMINAL_STEP_SECONDS = 3e-4
"""A nominal machine's fixed cost of one eager population step (dispatching its operations)."""
NOMINAL_FLOPS = 2e10
"""A nominal machine's floating-point operations per second in an eager population step.

The compile decision uses these nominal figures, never a measurement, so that it is the same on
every run of a study: an estimate of the work ahead, not a timing."""


@dataclass(frozen=True)
class Plan:
    """How one trial trains; see the module docstring for each field."""

    population: str | None
    members: int
    step: str
    compile: bool
    threads: int
    workers: int
    cores: int
    device: str = "cpu"
    precision: str = "float32"
    trainlab: str = __version__
    torch: str = torch.__version__
    reason: str | None = None
    device_memory: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["reason"] is None:
            del out["reason"]  # absent unless set, as plans recorded before it have it
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Plan:
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})

    def describe(self) -> str:
        """One line for people: ``population of 3, eager, 2 threads``."""
        how = (
            f"population of {self.members}, {'compiled' if self.compile else 'eager'}"
            if self.step == "population"
            else f"alone, {self.step} step"
        )
        why = f"; alone because {self.reason}" if self.reason else ""
        where = "" if self.device == "cpu" else f", {self.device}"
        precision = "" if self.precision == "float32" else f", {self.precision}"
        return f"{how}, {self.threads} thread{'s' * (self.threads != 1)}{where}{precision}{why}"


@dataclass(frozen=True)
class Planned:
    """What planning needs of one trial: its hash, seed, resolved spec and the epoch it starts from."""

    hash: str
    seed: int
    spec: TrialSpec
    start: int = 0


def machine_cores() -> int:
    """The core count plans derive threads from: a fixed property of the machine."""
    return os.cpu_count() or 1


IN_TENSORS: dict[str, tuple[str, ...]] = {"Dropout": ("rate",)}
"""Layer options a built model keeps in tensors rather than in its structure, by layer type:
trials that differ only in them share a population (each stacked member carries its own value),
as report E's grid of architectures x dropout rates needs."""


def architecture(model: ModelSpec) -> dict[str, Any]:
    """``model``'s layers without the options of :data:`IN_TENSORS`: what must be equal for
    models to be stacked into one population."""
    value = model.to_json()
    if "layers" not in value:
        return value
    layers = [
        {k: v for k, v in layer.items() if k not in IN_TENSORS.get(layer["type"], ())} for layer in value["layers"]
    ]
    return {**value, "layers": layers}


def batch_key(spec: TrialSpec, seed: int, start_epoch: int) -> str:
    """Trials with equal keys can train as one population.

    They see exactly the same batches and differ only in what lives in tensors: same
    architecture (:func:`architecture`), data and split, batch size, shuffling, loss (and label
    smoothing) and seed (the seed fixes the batch order and the dropout noise), and the same
    epoch to start from. Their optimizers and hyper-parameters, initializers, dropout rates,
    epoch budgets and callbacks may differ.
    """
    train = spec.train
    return canonical_json(
        {
            "model": architecture(spec.model),
            "data": spec.data.to_json(),
            "task": spec.task,
            "seed": seed,
            "start": start_epoch,
            "batch_size": train.batch_size,
            "shuffle": train.shuffle,
            "loss": train.loss,
            **({"label_smoothing": train.label_smoothing} if train.label_smoothing else {}),
            "precision": train.precision,
        }
    )


def auto_workers(trials: Iterable[Planned], cores: int | None = None) -> int:
    """Worker processes for ``trials`` (all of a study's, finished or not, so that resuming does
    not change the answer).

    Where trials form populations (two or more per group on average), one worker using every
    core is faster (bench/README.md, benchmark 2); where trials train alone, one worker per core,
    at most one per group. A group of convolutional trials counts as a group here even on the
    CPU, where its trials train one after another (:func:`alone_reason`): one worker then trains
    each on every core, as benchmark 3 measured them alone.
    """
    groups: dict[str, int] = {}
    for t in trials:
        key = batch_key(t.spec, t.seed, 0)
        groups[key] = groups.get(key, 0) + 1
    if not groups or sum(groups.values()) >= 2 * len(groups):
        return 1
    return max(1, min(cores or machine_cores(), len(groups)))


def threads_for(spec: TrialSpec, available: int) -> int:
    """Torch threads a trial trains with, given ``available`` per worker.

    Small batches of dense networks train on one thread: no operation is large enough for a
    second thread to pay, and each parallel one waits for every thread at its end
    (bench/README.md, benchmark 4). Convolutions keep every thread.
    """
    batch = spec.train.batch_size
    small = batch != "full" and int(batch) <= ONE_THREAD_MAX_BATCH
    if small and not spec.model.convolutional:
        return 1
    return max(1, available)


def lowered_applies(spec: TrialSpec, input_shape: Sequence[int]) -> bool:
    """Whether a trial trained alone takes the hand-lowered step: the engine's own rule
    (:func:`trainlab.engine.lowered.lower`), asked of the model the trial builds."""
    if spec.train.full_batch or spec.optimizer.name != "sgd" or spec.train.precision != "float32":
        return False  # lower() refuses these before looking at the model; skip building it
    net = models.build(spec.model.to_json(), tuple(input_shape), 0)
    optimizer = Optimizer([p for p in net.parameters() if p.requires_grad], spec.optimizer.to_json())
    return lower(net, optimizer, spec.train, spec.task) is not None


_problems: dict[str, str | None] = {}


def population_problem(spec: TrialSpec, input_shape: Sequence[int]) -> str | None:
    """Why trials of ``spec``'s model cannot train as a population, or None when they can.

    A layer model always can. A user's module (a factory model) is tried once, the same way
    every time: two copies built from fixed seeds, one stacked gradient step and one stacked
    evaluation on a batch of zeros (:func:`trainlab.engine.population.dry_step`). A module that
    ``torch.func.functional_call`` and ``vmap`` cannot run (a forward that reads ``.item()``,
    torch's own BatchNorm updating its running statistics) trains one trial at a time, and this
    is the reason recorded in its plan.
    """
    factory = spec.model.factory
    if factory is None:
        return None
    key = canonical_json({"model": spec.model.to_json(), "shape": list(input_shape), "loss": spec.train.loss})
    if key not in _problems:
        nets = [models.build(spec.model.to_json(), tuple(input_shape), seed) for seed in (0, 1)]
        try:
            dry_step(nets, spec.train.loss, spec.task, input_shape)
            _problems[key] = None
        except Exception as exc:  # the user's module may raise anything under vmap
            first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:120]
            what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            _problems[key] = f"{factory.reference} does not run under torch.func.vmap ({what})"
    return _problems[key]


def alone_reason(spec: TrialSpec, input_shape: Sequence[int], device: str, population: int | None) -> str | None:
    """Why trials of ``spec`` that share their batches train one at a time, or None when they
    can train as a population.

    On the CPU a model with convolutions (:attr:`~trainlab.trial.ModelSpec.convolutional`: a
    layer model's Conv2D, DepthwiseConv2D or SeparableConv2D; a user's module is not looked
    into) trains alone unless the user gave ``population`` (``--population K``), which is
    respected: :data:`CPU_CONVOLUTIONS_ALONE`. Any other device keeps populations. A user's
    module that ``torch.func`` cannot batch trains alone everywhere (:func:`population_problem`).
    From the spec, the device and the option alone, never a timing.
    """
    if device == "cpu" and population is None and spec.model.convolutional:
        return CPU_CONVOLUTIONS_ALONE
    return population_problem(spec, input_shape)


def eager_seconds(spec: TrialSpec, input_shape: Sequence[int], train_size: int, members: int) -> float:
    """Nominal seconds of eager stepping ahead of a population of ``members`` trials of ``spec``."""
    batch = train_size if spec.train.full_batch else min(int(spec.train.batch_size), train_size)
    params = sum(row.params for row in models.summary(spec.model.to_json(), tuple(input_shape)))
    steps = spec.train.epochs * math.ceil(train_size / max(batch, 1))
    return steps * (NOMINAL_STEP_SECONDS + 6 * params * batch * members / NOMINAL_FLOPS)


def member_bytes(spec: TrialSpec, input_shape: Sequence[int], train_size: int) -> int:
    """A nominal count of the device memory one member of a population of ``spec`` takes.

    Float32 weights, their gradients, up to two optimizer slots and the best-epoch and
    early-stopping snapshots (six copies of the parameters), and every layer's output and its
    gradient for a training batch, plus the outputs of an evaluation batch. From the model's
    shapes alone, so that it is the same on every run.
    """
    rows = models.summary(spec.model.to_json(), tuple(input_shape))
    params = sum(row.params for row in rows)
    per_example = sum(math.prod(row.output_shape) for row in rows)
    batch = train_size if spec.train.full_batch else min(int(spec.train.batch_size), train_size)
    return 4 * (6 * params + per_example * (2 * batch + min(EVAL_BATCH, train_size)))


def data_bytes(input_shape: Sequence[int], train_size: int) -> int:
    """A nominal count of the device memory the data takes: the training inputs twice (the
    split and an epoch's shuffled copy) and as much again for validation and test."""
    return 4 * 3 * train_size * math.prod(input_shape)


def memory_limit(spec: TrialSpec, input_shape: Sequence[int], train_size: int, device_memory: int) -> int:
    """The most members of ``spec`` a population may hold on a GPU of ``device_memory`` bytes in
    total: :data:`MEMORY_SHARE` of it, less the data, over :func:`member_bytes`; at least one.

    Total memory, not free memory: free memory changes with whatever else runs, and the plan
    must not. A group larger than this is split into several populations, never refused."""
    budget = MEMORY_SHARE * device_memory - data_bytes(input_shape, train_size)
    return max(1, min(GPU_MAX_POPULATION, int(budget // member_bytes(spec, input_shape, train_size))))


def split_group(hashes: Sequence[str], limit: int) -> list[list[str]]:
    """``hashes`` (in study order) in consecutive populations of at most ``limit``, as equal in
    size as possible (18 at a limit of 16: 9 and 9, not 16 and 2)."""
    n = len(hashes)
    if n == 0:
        return []
    parts = math.ceil(n / max(limit, 1))
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    out, at = [], 0
    for size in sizes:
        out.append(list(hashes[at : at + size]))
        at += size
    return out


def population_id(hashes: Iterable[str]) -> str:
    """An id its members share: a digest of their hashes."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]


def plan_trials(
    trials: Sequence[Planned],
    *,
    input_shape: Callable[[TrialSpec], Sequence[int]],
    train_size: Callable[[TrialSpec], int],
    population: int | None = None,
    workers: int = 1,
    threads: int | None = None,
    cores: int | None = None,
    device: str = "cpu",
    device_memory: int | None = None,
) -> dict[str, Plan]:
    """The plan of each of ``trials`` (in study order), by hash.

    ``population``: the most members a population may hold (1: every trial alone; default
    :data:`MAX_POPULATION`; :data:`GPU_MAX_POPULATION` on a GPU of known memory). ``workers``:
    worker processes sharing the cores; ``threads``: the threads each has (default: the cores
    divided among the workers). ``input_shape`` and ``train_size``: of a trial's data, by its
    spec. ``device``: where the trials train (:func:`trainlab.devices.resolve`);
    ``device_memory``: a GPU's total memory, which caps each population's size
    (:func:`memory_limit`). float16 trials train alone: their loss scaling skips steps one
    trial at a time; so do convolutional trials on the CPU unless ``population`` is given, and
    a user's module ``torch.func`` cannot batch (:func:`alone_reason`, recorded as the plan's
    ``reason``).
    """
    cores = cores or machine_cores()
    available = threads if threads is not None else max(1, cores // max(workers, 1))
    # A GPU whose memory is known sizes populations by it; elsewhere (the CPU, MPS, a Ray driver
    # that cannot see its tasks' GPUs) the CPU's limit holds.
    default = MAX_POPULATION if device_memory is None else GPU_MAX_POPULATION
    by_hash = {t.hash: t for t in trials}
    groups: dict[str, list[str]] = {}
    for t in trials:
        groups.setdefault(batch_key(t.spec, t.seed, t.start), []).append(t.hash)
    plans: dict[str, Plan] = {}
    for hashes in groups.values():
        first = by_hash[hashes[0]].spec
        shape = input_shape(first)
        limit = default if population is None else population
        if device_memory is not None:
            limit = min(limit, memory_limit(first, shape, train_size(first), device_memory))
        if first.train.precision == "float16":
            limit = 1
        problem = alone_reason(first, shape, device, population) if len(hashes) > 1 and limit > 1 else None
        for part in [[h] for h in hashes] if problem else split_group(hashes, limit):
            first = by_hash[part[0]].spec
            together = len(part) > 1
            pid = population_id(part) if together else None
            compiled = together and eager_seconds(first, shape, train_size(first), len(part)) > COMPILE_PAYS_AFTER
            for h in part:
                spec = by_hash[h].spec
                step = "population" if together else ("lowered" if lowered_applies(spec, shape) else "autograd")
                plans[h] = Plan(
                    pid,
                    len(part),
                    step,
                    compiled,
                    threads_for(spec, available),
                    workers,
                    cores,
                    device=device,
                    precision=spec.train.precision,
                    device_memory=device_memory,
                    reason=problem,
                )
    return plans
