"""Learning-rate schedules with Keras' names and formulas, and PyTorch's one-cycle schedule.

A study gives a schedule in place of a constant learning rate::

    [optimizer]
    name = "sgd"
    learning_rate = { schedule = "cosine_decay", initial_learning_rate = 0.1, decay_steps = 10000,
                      warmup_target = 0.2, warmup_steps = 500 }

:func:`resolve` turns such a table into a complete config (every parameter explicit, so the trial
hash changes when a default would), refusing unknown schedules and parameters with the key path,
the allowed values and the nearest match. :data:`SCHEDULES` has one row per schedule: its
parameters, the cross-parameter checks and the formula, written over a vector of step counts.

A schedule is a function of the optimizer's step counter, Keras' ``iterations``: the number of
updates already applied, so the first update uses the rate at step 0. With ``per = "epoch"`` it is
a function of the epoch instead (0-based, ``iterations // steps_per_epoch``), as Keras'
``LearningRateScheduler`` callback sets the rate at each epoch's start: the schedule's step
parameters (``decay_steps``, ``boundaries``, ``warmup_steps``...) then count epochs.

Rates are computed in float32, as Keras computes them (it casts every parameter to the dtype of
``initial_learning_rate``). :class:`RateTable` evaluates one model's or a population's schedules a
block of steps at a time, for the optimizers (:mod:`trainlab.optim`) to read per update; the
blocks start at fixed multiples of :data:`BLOCK`, so that the rate of a step is the same number
however the run was interrupted and resumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trainlab.errors import SpecError
from trainlab.registry import Entry, Param, Registry, check_params, join, non_negative, one_of, param, positive

__all__ = [
    "BLOCK",
    "SCHEDULES",
    "RateTable",
    "ScheduleDef",
    "Timeline",
    "is_schedule",
    "rates",
    "resolve",
    "scale",
]

BLOCK = 512
"""Steps evaluated at once; blocks start at multiples of it (see the module docstring)."""

Formula = Callable[[Tensor, Mapping[str, Any], "int | None"], Tensor]
"""A schedule's rates at float32 step counts ``t``, given its resolved config and the length of
training in the schedule's unit (steps, or epochs with ``per = "epoch"``)."""


@dataclass(frozen=True)
class Timeline:
    """How long a trial trains: optimizer steps per epoch, and epochs (the most it may run).

    Per-epoch schedules divide the step counter by ``steps_per_epoch``; ``one_cycle`` without
    ``total_steps`` spans the whole training, ``steps_per_epoch * epochs`` steps (or ``epochs``)."""

    steps_per_epoch: int
    epochs: int

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or self.epochs < 1:
            raise ValueError(f"a timeline needs at least one step and one epoch, got {self}")


@dataclass(frozen=True)
class ScheduleDef:
    """One schedule: its name (snake_case), the class it follows, its parameters, which of them
    are learning rates (``edit.scale_lr`` multiplies those), the checks that span several
    parameters, and its formula."""

    name: str
    source: str
    """The class whose formula it follows, e.g. ``keras.optimizers.schedules.CosineDecay``."""
    params: Mapping[str, Param]
    rates: tuple[str, ...]
    formula: Formula
    check: Callable[[dict[str, Any], str], None] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def class_name(self) -> str:
        return self.source.rpartition(".")[2]


# ---------------------------------------------------------------------------------------------
# Checks


def _integer_list(value: Any) -> str | None:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return "must be a non-empty list of integers >= 0"
    if any(b <= a for a, b in zip(value, value[1:])):
        return "must be strictly increasing"
    return None


def _rate_list(value: Any) -> str | None:
    if not value or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in value
    ):
        return "must be a non-empty list of numbers >= 0"
    return None


def _unit_interval(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be in [0, 1]"


def _at_least_one(value: Any) -> str | None:
    return (
        None
        if value >= 1
        else "must be >= 1 (a factor below 1 shortens the periods to a finite total, after which Keras' formula is NaN)"
    )


def _optional_positive(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be > 0"


def _check_piecewise(config: dict[str, Any], path: str) -> None:
    boundaries, values = config["boundaries"], config["values"]
    if len(values) != len(boundaries) + 1:
        raise SpecError(
            f"needs one more value than boundaries (Keras' rule): {len(boundaries)} boundaries, {len(values)} values",
            path=join(path, "values"),
        )
    config["values"] = [float(v) for v in values]


def _check_cosine(config: dict[str, Any], path: str) -> None:
    if config["warmup_steps"] > 0 and config["warmup_target"] is None:
        raise SpecError(
            "has no effect without warmup_target (Keras ignores it): set warmup_target, the rate the "
            "warmup rises to from initial_learning_rate",
            path=join(path, "warmup_steps"),
        )


def _check_one_cycle(config: dict[str, Any], path: str) -> None:
    if config["cycle_momentum"]:
        raise SpecError(
            "trainlab's one_cycle schedules the learning rate alone (PyTorch's cycle_momentum = False); "
            "it must be false",
            path=join(path, "cycle_momentum"),
        )
    if config["total_steps"] is not None:
        _one_cycle_phases(config, config["total_steps"], join(path, "total_steps"))


# ---------------------------------------------------------------------------------------------
# Formulas: each follows the ``__call__`` of the class its row names, over a vector of steps.


def _exponential(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, the exponent floored if ``staircase``."""
    p = t / float(c["decay_steps"])
    if c["staircase"]:
        p = torch.floor(p)
    return c["initial_learning_rate"] * torch.pow(torch.tensor(c["decay_rate"], dtype=t.dtype), p)


def _inverse_time(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``, the ratio floored if ``staircase``."""
    p = t / float(c["decay_steps"])
    if c["staircase"]:
        p = torch.floor(p)
    return c["initial_learning_rate"] / (1.0 + c["decay_rate"] * p)


def _piecewise(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while ``boundaries[i-1] < step <=
    boundaries[i]``, ``values[-1]`` after the last boundary."""
    boundaries = torch.tensor(c["boundaries"], dtype=t.dtype)
    values = torch.tensor(c["values"], dtype=t.dtype)
    return values[(t.unsqueeze(-1) > boundaries).sum(-1)]


def _polynomial(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """``(initial - end) * (1 - step / decay_steps) ** power + end`` with ``step`` held at
    ``decay_steps``; with ``cycle``, ``decay_steps`` grows to the first multiple not below the
    step (1 at step 0)."""
    decay_steps = float(c["decay_steps"])
    if c["cycle"]:
        multiplier = torch.where(t == 0, torch.ones_like(t), torch.ceil(t / decay_steps))
        steps = decay_steps * multiplier
    else:
        t = torch.clamp(t, max=decay_steps)
        steps = torch.full_like(t, decay_steps)
    p = t / steps
    start, end = c["initial_learning_rate"], c["end_learning_rate"]
    return (start - end) * torch.pow(1 - p, c["power"]) + end


def _cosine_part(t: Tensor, decay_steps: float, start: float, alpha: float) -> Tensor:
    cosine = 0.5 * (1.0 + torch.cos(math.pi * (t / decay_steps)))
    return start * ((1 - alpha) * cosine + alpha)


def _cosine(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """Without ``warmup_target``: ``initial * ((1 - alpha) * 0.5 (1 + cos(pi min(step, decay_steps)
    / decay_steps)) + alpha)``. With it: a linear rise from ``initial_learning_rate`` to
    ``warmup_target`` over ``warmup_steps``, then that cosine from ``warmup_target``."""
    decay_steps, alpha = float(c["decay_steps"]), c["alpha"]
    if c["warmup_target"] is None:
        return _cosine_part(torch.clamp(t, max=decay_steps), decay_steps, c["initial_learning_rate"], alpha)
    warmup_steps, target, start = float(c["warmup_steps"]), c["warmup_target"], c["initial_learning_rate"]
    t = torch.clamp(t, max=decay_steps + warmup_steps)
    decayed = _cosine_part(t - warmup_steps, decay_steps, target, alpha)
    if warmup_steps == 0:
        return decayed
    warming = (target - start) * (t / warmup_steps) + start
    return torch.where(t < warmup_steps, warming, decayed)


def _cosine_restarts(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """SGDR: period ``i`` lasts ``first_decay_steps * t_mul ** i`` steps and starts at
    ``initial * m_mul ** i``; within it the cosine of :func:`_cosine` without warmup."""
    fraction = t / float(c["first_decay_steps"])
    t_mul = c["t_mul"]
    if t_mul == 1.0:
        restart = torch.floor(fraction)
        fraction = fraction - restart
    else:
        restart = torch.floor(torch.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
        power = torch.pow(torch.tensor(t_mul, dtype=t.dtype), restart)
        done = (1.0 - power) / (1.0 - t_mul)
        fraction = (fraction - done) / power
    factor = torch.pow(torch.tensor(c["m_mul"], dtype=t.dtype), restart)
    cosine = 0.5 * factor * (1.0 + torch.cos(math.pi * fraction))
    return c["initial_learning_rate"] * ((1 - c["alpha"]) * cosine + c["alpha"])


def _one_cycle_phases(c: Mapping[str, Any], total: int, path: str) -> list[tuple[float, float, float]]:
    """PyTorch's phases as (end step, start rate, end rate), refused where a phase has no steps
    (PyTorch divides by its length)."""
    top = c["max_lr"]
    initial = top / c["div_factor"]
    least = initial / c["final_div_factor"]
    rise = float(c["pct_start"] * total) - 1
    if c["three_phase"]:
        phases = [
            (rise, initial, top),
            (float(2 * c["pct_start"] * total) - 2, top, initial),
            (total - 1, initial, least),
        ]
    else:
        phases = [(rise, initial, top), (float(total - 1), top, least)]
    start = 0.0
    for end, _, _ in phases:
        if end <= start:
            raise SpecError(
                f"one_cycle over {total} steps with pct_start {c['pct_start']} leaves a phase without steps "
                "(PyTorch divides by its length): lengthen it or move pct_start",
                path=path,
            )
        start = end
    return phases


def _one_cycle(t: Tensor, c: Mapping[str, Any], span: int | None) -> Tensor:
    """``torch.optim.lr_scheduler.OneCycleLR``'s rate at step ``t``: from ``max_lr / div_factor`` up
    to ``max_lr`` over the first ``pct_start`` of the steps, then down to ``initial /
    final_div_factor`` (three phases: back to the initial rate first), cosine or linear. Past
    ``total_steps`` (where PyTorch raises) the last step's rate holds."""
    total = c["total_steps"] if c["total_steps"] is not None else span
    if total is None:
        raise ValueError("one_cycle without total_steps needs the trial's timeline (steps per epoch and epochs)")
    phases = _one_cycle_phases(c, total, "learning_rate.total_steps")
    t = torch.clamp(t, max=float(total - 1))
    out = torch.empty_like(t)
    start = 0.0
    for i, (end, first, last) in enumerate(phases):
        pct = (t - start) / (end - start)
        if c["anneal_strategy"] == "cos":
            value = last + (first - last) / 2.0 * (torch.cos(math.pi * pct) + 1)
        else:
            value = (last - first) * pct + first
        inside = (t > start) if i else torch.ones_like(t, dtype=torch.bool)
        if i < len(phases) - 1:
            inside = inside & (t <= end)
        out = torch.where(inside, value, out)
        start = end
    return out


# ---------------------------------------------------------------------------------------------
# The table


def _required(*types: type, check: Callable[[Any], str | None] | None = None) -> Param:
    return Param(None, types, check, required=True)


_RATE = _required(float, check=positive)
_STEPS = _required(int, check=positive)

SCHEDULES: dict[str, ScheduleDef] = {
    d.name: d
    for d in [
        ScheduleDef(
            "exponential_decay",
            "keras.optimizers.schedules.ExponentialDecay",
            {
                "initial_learning_rate": _RATE,
                "decay_steps": _STEPS,
                "decay_rate": _required(float, check=positive),
                "staircase": param(False, bool),
            },
            ("initial_learning_rate",),
            _exponential,
        ),
        ScheduleDef(
            "inverse_time_decay",
            "keras.optimizers.schedules.InverseTimeDecay",
            {
                "initial_learning_rate": _RATE,
                "decay_steps": _STEPS,
                "decay_rate": _required(float, check=non_negative),
                "staircase": param(False, bool),
            },
            ("initial_learning_rate",),
            _inverse_time,
        ),
        ScheduleDef(
            "piecewise_constant_decay",
            "keras.optimizers.schedules.PiecewiseConstantDecay",
            {"boundaries": _required(list, check=_integer_list), "values": _required(list, check=_rate_list)},
            ("values",),
            _piecewise,
            _check_piecewise,
        ),
        ScheduleDef(
            "polynomial_decay",
            "keras.optimizers.schedules.PolynomialDecay",
            {
                "initial_learning_rate": _RATE,
                "decay_steps": _STEPS,
                "end_learning_rate": param(0.0001, float, check=non_negative),
                "power": param(1.0, float, check=positive),
                "cycle": param(False, bool),
            },
            ("initial_learning_rate", "end_learning_rate"),
            _polynomial,
        ),
        ScheduleDef(
            "cosine_decay",
            "keras.optimizers.schedules.CosineDecay",
            {
                "initial_learning_rate": _required(float, check=non_negative),
                "decay_steps": _STEPS,
                "alpha": param(0.0, float, check=_unit_interval),
                "warmup_target": Param(None, (float, type(None)), _optional_positive),
                "warmup_steps": param(0, int, check=non_negative),
            },
            ("initial_learning_rate", "warmup_target"),
            _cosine,
            _check_cosine,
        ),
        ScheduleDef(
            "cosine_decay_restarts",
            "keras.optimizers.schedules.CosineDecayRestarts",
            {
                "initial_learning_rate": _RATE,
                "first_decay_steps": _STEPS,
                "t_mul": param(2.0, float, check=_at_least_one),
                "m_mul": param(1.0, float, check=non_negative),
                "alpha": param(0.0, float, check=_unit_interval),
            },
            ("initial_learning_rate",),
            _cosine_restarts,
            aliases=("sgdr_decay",),
        ),
        ScheduleDef(
            "one_cycle",
            "torch.optim.lr_scheduler.OneCycleLR",
            {
                "max_lr": _RATE,
                "total_steps": Param(None, (int, type(None)), _optional_positive),
                "pct_start": param(0.3, float, check=_unit_interval),
                "anneal_strategy": param("cos", str, check=one_of("cos", "linear")),
                "div_factor": param(25.0, float, check=positive),
                "final_div_factor": param(1e4, float, check=positive),
                "three_phase": param(False, bool),
                "cycle_momentum": param(False, bool),
            },
            ("max_lr",),
            _one_cycle,
            _check_one_cycle,
            aliases=("one_cycle_lr",),
        ),
    ]
}
"""Every schedule by its snake_case name; Keras' and PyTorch's class names are accepted too."""

PER = ("step", "epoch")
"""What a schedule's step counts: optimizer updates (Keras) or epochs (``per = "epoch"``)."""

_NAMES = Registry(
    "learning-rate schedule", {d.name: Entry(aliases=(d.class_name, *d.aliases)) for d in SCHEDULES.values()}
)


# ---------------------------------------------------------------------------------------------
# Configuration


def is_schedule(value: Any) -> bool:
    """Whether a learning rate (given or resolved) is a schedule table rather than a number."""
    return isinstance(value, Mapping)


def resolve(config: Any, *, path: str = "optimizer.learning_rate") -> dict[str, Any]:
    """A schedule table -> ``{"schedule": name, every parameter, "per": "step"|"epoch"}``.

    Refuses anything else with the key path: a table without ``schedule``, an unknown schedule
    or parameter (with the allowed ones and the nearest match), wrongly typed or out-of-range
    values, and combinations the schedule's class refuses."""
    if not isinstance(config, Mapping):
        raise SpecError(f"expected a number or a schedule table, got {config!r}", path=path)
    if "schedule" not in config:
        raise SpecError(
            'a learning-rate table needs its schedule, e.g. { schedule = "cosine_decay", ... }',
            path=join(path, "schedule"),
            allowed=SCHEDULES,
        )
    written = config["schedule"]
    if not isinstance(written, str):
        raise SpecError(f"expected a schedule name, got {written!r}", path=join(path, "schedule"), allowed=SCHEDULES)
    name = _NAMES.canonical(written, join(path, "schedule"))
    definition = SCHEDULES[name]
    rest = {k: v for k, v in config.items() if k not in ("schedule", "per")}
    out: dict[str, Any] = {"schedule": name, **check_params(rest, definition.params, path)}
    per = config.get("per", "step")
    if per not in PER:
        raise SpecError(f"must be one of {', '.join(map(repr, PER))}, got {per!r}", path=join(path, "per"), allowed=PER)
    out["per"] = per
    if definition.check is not None:
        definition.check(out, path)
    return out


def scale(config: Mapping[str, Any], factor: float, *, path: str = "optimizer.learning_rate") -> dict[str, Any]:
    """The schedule with every rate it holds multiplied by ``factor`` (its steps unchanged)."""
    out = resolve(config, path=path)
    for key in SCHEDULES[out["schedule"]].rates:
        value = out[key]
        if isinstance(value, list):
            out[key] = [v * factor for v in value]
        elif value is not None:
            out[key] = value * factor
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation


def span(config: Mapping[str, Any], timeline: Timeline | None) -> int | None:
    """The length of training in the schedule's unit (steps, or epochs), if the timeline is known."""
    if timeline is None:
        return None
    return timeline.epochs if config["per"] == "epoch" else timeline.epochs * timeline.steps_per_epoch


def rates(config: Mapping[str, Any], steps: Tensor, timeline: Timeline | None = None) -> Tensor:
    """The float32 rates of a resolved schedule at the optimizer step counts ``steps`` (int64)."""
    if config["per"] == "epoch":
        if timeline is None:
            raise ValueError("a per-epoch schedule needs the trial's timeline (steps per epoch and epochs)")
        steps = torch.div(steps, timeline.steps_per_epoch, rounding_mode="floor")
    t = steps.to(torch.float32)
    return SCHEDULES[config["schedule"]].formula(t, config, span(config, timeline)).to(torch.float32)


class RateTable:
    """The learning rates of one model's schedule, or of a population's (one column per member,
    NaN for a member without one), a block of steps at a time.

    ``row(step)`` is the rates of the update after ``step`` updates; blocks start at multiples
    of :data:`BLOCK` and each member's column is computed alone, so that a member's rate at a
    step is the same number alone, in any population, and after any resume.
    """

    def __init__(self, configs: Sequence[Mapping[str, Any] | None], *, population: bool) -> None:
        if not any(c is not None for c in configs):
            raise ValueError("a rate table needs at least one schedule")
        if not population and len(configs) != 1:
            raise ValueError("one model has one schedule")
        self.configs = list(configs)
        self.population = population
        self.timelines: list[Timeline | None] = [None] * len(self.configs)
        self.scheduled = torch.tensor([c is not None for c in configs])
        """Which members follow a schedule (the others keep their own rate)."""
        self._start = -1
        self._block: Tensor | None = None

    def set_timelines(self, timelines: Sequence[Timeline | None]) -> None:
        """Each member's length of training, which its schedule counts in; forgets the rates computed so far."""
        if len(timelines) != len(self.configs):
            raise ValueError(f"{len(self.configs)} schedules need as many timelines, got {len(timelines)}")
        self.timelines = list(timelines)
        self._start, self._block = -1, None

    def _block_at(self, step: int) -> tuple[int, Tensor]:
        start = step - step % BLOCK
        if start != self._start or self._block is None:
            steps = torch.arange(start, start + BLOCK, dtype=torch.int64)
            columns = [
                rates(c, steps, timeline) if c is not None else torch.full((BLOCK,), math.nan)
                for c, timeline in zip(self.configs, self.timelines)
            ]
            self._block = torch.stack(columns, dim=1) if self.population else columns[0]
            self._start = start
        return start, self._block

    def row(self, step: int) -> Tensor:
        """The rates at ``step``: 0-d for one model, ``(K,)`` for a population."""
        if step < 0:
            raise ValueError(f"a step count cannot be negative, got {step}")
        start, block = self._block_at(step)
        return block[step - start]

    def span_of(self, first: int, count: int) -> list[float]:
        """One model's rates at ``first .. first + count - 1``, as Python floats."""
        if self.population:
            raise ValueError("span_of reads one model's schedule")
        out: list[float] = []
        step = first
        while step < first + count:
            start, block = self._block_at(step)
            stop = min(start + BLOCK, first + count)
            out.extend(block[step - start : stop - start].tolist())
            step = stop
        return out
