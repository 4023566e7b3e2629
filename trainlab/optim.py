"""Optimizers with Keras' update rules and defaults, written over lists of tensors.

Users compare our numbers with their Keras notebooks, so every rule, default and edge case
follows Keras 3 (``keras/src/optimizers``), plus Keras 2's legacy ``decay`` argument, which
the notebooks use and Keras 3 ignores.

Each optimizer is one update rule, a function over lists of tensors
(``params``, ``grads``, ``state``) whose hyper-parameters are tensors too. The same rule
serves two shapes of training:

* one model: every hyper-parameter is a 0-d tensor;
* a population of K models trained at once (``torch.func``): each parameter is stacked with a
  leading K dimension and each hyper-parameter has shape ``(K,)``, one value per member.
  Rules broadcast a ``(K,)`` value against each parameter as ``(K, 1, ..., 1)``.

Hyper-parameters live in tensors so that changing the learning rate mid-run (as
ReduceLROnPlateau does) is one ``fill_`` and rebuilds nothing. Rules use in-place ``torch._foreach_*``
ops and fold scalars into as few passes over memory as they can, because at batch size 32 an
epoch is ~1700 updates and the per-update cost is visible.

The pieces:

* ``resolve(config)``: a name or mapping -> a plain dict with every hyper-parameter explicit;
* ``OPTIMIZERS``: name -> ``OptimizerDef`` (defaults, ``init``, ``update``);
* ``apply_gradients(...)``: one Keras update (clip, legacy decay, weight decay, rule,
  iteration += 1), for one model or a population;
* ``Optimizer`` (one model) and ``PopulationOptimizer`` (K stacked models): thin stateful
  wrappers with ``step``, ``learning_rate`` and a flat ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import torch
from torch import Tensor

from trainlab import schedules
from trainlab.errors import SpecError
from trainlab.registry import split_name
from trainlab.schedules import RateTable, Timeline

__all__ = [
    "OPTIMIZERS",
    "Optimizer",
    "OptimizerDef",
    "PopulationOptimizer",
    "apply_gradients",
    "clip_gradients",
    "decayed_learning_rate",
    "hyperparameters",
    "merge_options",
    "options",
    "resolve",
]

State: TypeAlias = dict[str, list[Tensor]]
"""Optimizer slots by name, one tensor per parameter (Nadam's ``u_product`` is a one-item list)."""

Hyper: TypeAlias = Tensor | list[Tensor]
"""A hyper-parameter ready for ``torch._foreach_*``: a 0-d tensor, or one broadcastable view per parameter."""


class InitFn(Protocol):
    """Creates an optimizer's slots for ``params`` (zeros, or Adagrad's initial accumulator)."""

    def __call__(self, params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State: ...


class UpdateFn(Protocol):
    """One optimizer's rule: updates ``params`` and ``state`` in place; ``step`` counts updates already applied."""

    def __call__(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        state: State,
        hp: Mapping[str, Tensor],
        step: Tensor,
        opts: Mapping[str, bool],
    ) -> None: ...


# ---------------------------------------------------------------------------------------------
# Broadcasting helpers


def _spread(x: Tensor, params: Sequence[Tensor]) -> Hyper:
    """``x`` shaped to combine with each parameter: itself if 0-d, else one (K,1,..,1) view per parameter."""
    if x.dim() == 0:
        return x
    k = x.shape[0]
    return [x.view((k,) + (1,) * (p.dim() - 1)) for p in params]


def _listed(h: Hyper, n: int) -> list[Tensor]:
    """``h`` as a list, for the foreach ops (lerp, maximum, addcmul) that have no tensor-scalar form."""
    return [h] * n if isinstance(h, Tensor) else h


def _zeros(params: Sequence[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]


def _float_step(step: Tensor, like: Tensor) -> Tensor:
    """Keras' ``local_step``: iterations + 1, in the hyper-parameters' dtype."""
    return (step + 1).to(like.dtype)


# ---------------------------------------------------------------------------------------------
# Update rules. Each mirrors ``update_step`` of the Keras class named in its docstring; the
# foreach forms fold scalars into divisors (``p -= m / (den / alpha)``) to save passes, which
# changes results only by rounding.


def sgd_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """Keras SGD keeps a velocity slot only when momentum is non-zero."""
    return {"momentum": _zeros(params)} if opts["momentum"] else {}


def sgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.SGD``.

    Without momentum ``p -= lr g``; with it ``m = momentum m - lr g`` then ``p += m``, or with
    Nesterov ``p += momentum m - lr g``. A population member whose momentum is 0 in a group
    that keeps velocities gets exactly the plain rule: ``0 m - lr g == -lr g``.
    """
    n = len(params)
    lr = _listed(_spread(hp["learning_rate"], params), n)
    if "momentum" not in state:
        torch._foreach_addcmul_(params, grads, lr, value=-1.0)
        return
    m = state["momentum"]
    momentum = _spread(hp["momentum"], params)
    torch._foreach_mul_(m, momentum)
    torch._foreach_addcmul_(m, grads, lr, value=-1.0)
    if opts["nesterov"]:
        torch._foreach_addcmul_(params, m, _listed(momentum, n), value=1.0)
        torch._foreach_addcmul_(params, grads, lr, value=-1.0)
    else:
        torch._foreach_add_(params, m)


def rmsprop_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """Velocities always; momentums if momentum > 0; average gradients if centered."""
    state: State = {"velocity": _zeros(params)}
    if opts["momentum"]:
        state["momentum"] = _zeros(params)
    if opts["centered"]:
        state["average_gradient"] = _zeros(params)
    return state


def rmsprop_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.RMSprop``.

    ``v = rho v + (1 - rho) g^2``; ``increment = lr g / sqrt(v + eps)`` (epsilon inside the
    root; centered: ``sqrt(v - avg^2 + eps)`` with ``avg = rho avg + (1 - rho) g``); with
    momentum ``m = momentum m + increment`` and ``p -= m``, else ``p -= increment``.
    """
    n = len(params)
    rho = hp["rho"]
    one_minus_rho = _listed(_spread(1 - rho, params), n)
    v = state["velocity"]
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), one_minus_rho)
    if "average_gradient" in state:
        avg = state["average_gradient"]
        torch._foreach_lerp_(avg, grads, one_minus_rho)
        denominator = torch._foreach_addcmul(v, avg, avg, value=-1.0)
        torch._foreach_add_(denominator, _spread(hp["epsilon"], params))
    else:
        denominator = torch._foreach_add(v, _spread(hp["epsilon"], params))
    torch._foreach_sqrt_(denominator)
    torch._foreach_div_(denominator, _spread(hp["learning_rate"], params))
    if "momentum" in state:
        m = state["momentum"]
        torch._foreach_mul_(m, _spread(hp["momentum"], params))
        torch._foreach_addcdiv_(m, grads, denominator, value=1.0)
        torch._foreach_sub_(params, m)
    else:
        torch._foreach_addcdiv_(params, grads, denominator, value=-1.0)


def adam_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """First and second moments, and the running maximum of the second moment for AMSGrad."""
    state: State = {"momentum": _zeros(params), "velocity": _zeros(params)}
    if opts["amsgrad"]:
        state["velocity_hat"] = _zeros(params)
    return state


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.Adam`` (and AdamW, which is Adam with weight decay on by default).

    ``t = iterations + 1``; ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``;
    ``m += (g - m)(1 - b1)``; ``v += (g^2 - v)(1 - b2)``; AMSGrad uses ``vhat = max(vhat, v)``
    in place of ``v``; ``p -= alpha m / (sqrt(v) + eps)`` (epsilon outside the root).
    """
    n = len(params)
    b1, b2, lr = hp["beta_1"], hp["beta_2"], hp["learning_rate"]
    t = _float_step(step, lr)
    alpha = lr * torch.sqrt(1 - torch.pow(b2, t)) / (1 - torch.pow(b1, t))
    m, v = state["momentum"], state["velocity"]
    torch._foreach_lerp_(m, grads, _listed(_spread(1 - b1, params), n))
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), _listed(_spread(1 - b2, params), n))
    if "velocity_hat" in state:
        torch._foreach_maximum_(state["velocity_hat"], v)
        v = state["velocity_hat"]
    denominator = torch._foreach_sqrt(v)
    torch._foreach_add_(denominator, _spread(hp["epsilon"], params))
    torch._foreach_div_(denominator, _spread(alpha, params))
    torch._foreach_addcdiv_(params, m, denominator, value=-1.0)


def adagrad_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """Accumulators start at ``initial_accumulator_value``, as Keras' Constant initializer sets them."""
    initial = _spread(hp["initial_accumulator_value"], params)
    accumulators = _zeros(params)
    torch._foreach_add_(accumulators, initial)
    return {"accumulator": accumulators}


def adagrad_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.Adagrad``: ``acc += g^2``; ``p -= lr g / sqrt(acc + eps)``."""
    acc = state["accumulator"]
    torch._foreach_addcmul_(acc, grads, grads, value=1.0)
    denominator = torch._foreach_add(acc, _spread(hp["epsilon"], params))
    torch._foreach_sqrt_(denominator)
    torch._foreach_div_(denominator, _spread(hp["learning_rate"], params))
    torch._foreach_addcdiv_(params, grads, denominator, value=-1.0)


def adamax_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """First moment and exponentially weighted infinity norm."""
    return {"momentum": _zeros(params), "norm": _zeros(params)}


def adamax_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.Adamax``.

    ``m += (g - m)(1 - b1)``; ``u = max(b2 u, |g|)``;
    ``p -= lr m / ((1 - b1^t)(u + eps))`` with ``t = iterations + 1``.
    """
    n = len(params)
    b1, lr = hp["beta_1"], hp["learning_rate"]
    t = _float_step(step, lr)
    m, u = state["momentum"], state["norm"]
    torch._foreach_lerp_(m, grads, _listed(_spread(1 - b1, params), n))
    torch._foreach_mul_(u, _spread(hp["beta_2"], params))
    torch._foreach_maximum_(u, torch._foreach_abs(grads))
    denominator = torch._foreach_add(u, _spread(hp["epsilon"], params))
    torch._foreach_mul_(denominator, _spread((1 - torch.pow(b1, t)) / lr, params))
    torch._foreach_addcdiv_(params, m, denominator, value=-1.0)


def nadam_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """Moments, and the running product of the momentum schedule (1.0, one per member)."""
    u_product = torch.ones_like(hp["learning_rate"])
    return {"momentum": _zeros(params), "velocity": _zeros(params), "u_product": [u_product]}


def nadam_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.Nadam`` (Dozat's momentum schedule, as Keras 3 implements it).

    With ``t = iterations + 1``: ``u_t = b1 (1 - 0.5 * 0.96^t)``, ``u_{t+1}`` likewise,
    ``u_product *= u_t`` (once per update, before the parameters);
    ``m += (g - m)(1 - b1)``; ``v += (g^2 - v)(1 - b2)``;
    ``m_hat = u_{t+1} m / (1 - u_product u_{t+1}) + (1 - u_t) g / (1 - u_product)``;
    ``v_hat = v / (1 - b2^t)``; ``p -= lr m_hat / (sqrt(v_hat) + eps)``.
    """
    n = len(params)
    b1, b2, lr = hp["beta_1"], hp["beta_2"], hp["learning_rate"]
    t = _float_step(step, lr)
    u_t = b1 * (1.0 - 0.5 * torch.pow(0.96, t))
    u_next = b1 * (1.0 - 0.5 * torch.pow(0.96, t + 1))
    u_product = state["u_product"][0]
    u_product.mul_(u_t)
    # lr m_hat / (sqrt(v / c) + eps) == (lr sqrt(c) m_hat) / (sqrt(v) + eps sqrt(c)), c = 1 - b2^t:
    # folding the scalars into m_hat's coefficients saves two passes over the parameters.
    root_c = torch.sqrt(1 - torch.pow(b2, t))
    scale = lr * root_c
    momentum_coef = scale * u_next / (1 - u_product * u_next)
    gradient_coef = scale * (1 - u_t) / (1 - u_product)
    m, v = state["momentum"], state["velocity"]
    torch._foreach_lerp_(m, grads, _listed(_spread(1 - b1, params), n))
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), _listed(_spread(1 - b2, params), n))
    step_ = torch._foreach_mul(m, _spread(momentum_coef, params))
    torch._foreach_addcmul_(step_, grads, _listed(_spread(gradient_coef, params), n), value=1.0)
    denominator = torch._foreach_sqrt(v)
    torch._foreach_add_(denominator, _spread(hp["epsilon"] * root_c, params))
    torch._foreach_addcdiv_(params, step_, denominator, value=-1.0)


def adadelta_init(params: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> State:
    """Running averages of squared gradients and of squared updates."""
    return {"accumulated_grad": _zeros(params), "accumulated_delta_var": _zeros(params)}


def adadelta_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """``keras.optimizers.Adadelta``.

    ``acc_g = rho acc_g + (1 - rho) g^2``; ``delta = sqrt(acc_d + eps) g / sqrt(acc_g + eps)``
    (with the new ``acc_g`` and the old ``acc_d``); ``acc_d = rho acc_d + (1 - rho) delta^2``;
    ``p -= lr delta``.
    """
    n = len(params)
    eps = _spread(hp["epsilon"], params)
    one_minus_rho = _listed(_spread(1 - hp["rho"], params), n)
    acc_g, acc_d = state["accumulated_grad"], state["accumulated_delta_var"]
    torch._foreach_lerp_(acc_g, torch._foreach_mul(grads, grads), one_minus_rho)
    # sqrt(a) / sqrt(b) as sqrt(a / b): one square root instead of two.
    delta = torch._foreach_add(acc_d, eps)
    torch._foreach_div_(delta, torch._foreach_add(acc_g, eps))
    torch._foreach_sqrt_(delta)
    torch._foreach_mul_(delta, grads)
    torch._foreach_lerp_(acc_d, torch._foreach_mul(delta, delta), one_minus_rho)
    torch._foreach_addcmul_(params, delta, _listed(_spread(hp["learning_rate"], params), n), value=-1.0)


# ---------------------------------------------------------------------------------------------
# The table


COMMON_DEFAULTS: dict[str, Any] = {
    "decay": 0.0,
    "weight_decay": None,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
}
"""Hyper-parameters every optimizer takes (Keras' base optimizer, plus Keras 2's ``decay``)."""

_UNIT = (0.0, 1.0, True, True)  # closed [0, 1]
_UNIT_OPEN = (0.0, 1.0, True, False)  # [0, 1): a beta of 1 divides by zero in the bias correction
_POSITIVE = (0.0, math.inf, False, False)
_NONNEGATIVE = (0.0, math.inf, True, False)

_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": _POSITIVE,
    "momentum": _UNIT,
    "rho": _UNIT,
    "beta_1": _UNIT_OPEN,
    "beta_2": _UNIT_OPEN,
    "epsilon": _POSITIVE,
    "initial_accumulator_value": _NONNEGATIVE,
    "decay": _NONNEGATIVE,
    "weight_decay": _NONNEGATIVE,
    "clipnorm": _POSITIVE,
    "clipvalue": _POSITIVE,
    "global_clipnorm": _POSITIVE,
}
"""(low, high, low included, high included) for each float hyper-parameter."""

_OPTIONAL = frozenset({"weight_decay", "clipnorm", "clipvalue", "global_clipnorm"})
"""Hyper-parameters whose absence (None) switches the feature off, as in Keras."""

_NEUTRAL_WHEN_ZERO = frozenset({"momentum", "decay", "weight_decay"})
"""Options a population may switch on for all members: a member's value 0 reproduces the off rule exactly."""

_KERAS_ONLY = frozenset(
    {"use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps"}
)


@dataclass(frozen=True)
class OptimizerDef:
    """One optimizer: its Keras name, defaults, state initializer and update rule.

    ``flags`` are boolean hyper-parameters that change the code path (Nesterov, AMSGrad,
    centered); ``switches`` are float hyper-parameters whose slots exist only when non-zero
    (momentum). Both are fixed for the life of an optimizer; every other hyper-parameter is a
    tensor that may change between updates.
    """

    name: str
    keras_class: str
    defaults: Mapping[str, Any]
    init: InitFn
    update: UpdateFn
    flags: tuple[str, ...] = ()
    switches: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    def all_defaults(self) -> dict[str, Any]:
        """Rule-specific defaults followed by the common ones, in Keras' argument order."""
        return {**self.defaults, **{k: v for k, v in COMMON_DEFAULTS.items() if k not in self.defaults}}


OPTIMIZERS: dict[str, OptimizerDef] = {
    d.name: d
    for d in [
        OptimizerDef(
            "sgd",
            "SGD",
            {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
            sgd_init,
            sgd_update,
            flags=("nesterov",),
            switches=("momentum",),
        ),
        OptimizerDef(
            "rmsprop",
            "RMSprop",
            {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
            rmsprop_init,
            rmsprop_update,
            flags=("centered",),
            switches=("momentum",),
        ),
        OptimizerDef(
            "adam",
            "Adam",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
            adam_init,
            adam_update,
            flags=("amsgrad",),
        ),
        OptimizerDef(
            "adamw",
            "AdamW",
            {
                "learning_rate": 0.001,
                "weight_decay": 0.004,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": 1e-7,
                "amsgrad": False,
            },
            adam_init,
            adam_update,
            flags=("amsgrad",),
            required=("weight_decay",),
        ),
        OptimizerDef(
            "adagrad",
            "Adagrad",
            {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
            adagrad_init,
            adagrad_update,
        ),
        OptimizerDef(
            "adamax",
            "Adamax",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            adamax_init,
            adamax_update,
        ),
        OptimizerDef(
            "nadam",
            "Nadam",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            nadam_init,
            nadam_update,
        ),
        OptimizerDef(
            "adadelta",
            "Adadelta",
            {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
            adadelta_init,
            adadelta_update,
        ),
    ]
}
"""Every optimizer by its canonical (lower-case Keras) name."""

_NAME_HINTS = {
    "momentum": 'Keras has no "momentum" optimizer: write {name = "sgd", momentum = 0.9}',
    "nesterov": 'Keras has no "nesterov" optimizer: write {name = "sgd", momentum = 0.9, nesterov = true}',
    "gd": 'plain gradient descent is {name = "sgd"}; full-batch GD is SGD with the batch size of the training set',
}


# ---------------------------------------------------------------------------------------------
# Configuration


def resolve(config: str | Mapping[str, Any], *, path: str = "optimizer") -> dict[str, Any]:
    """A name or ``{name = ..., hyper-parameters}`` -> a plain dict with every hyper-parameter explicit.

    Names are matched case-insensitively ("SGD", "RMSprop", "Adam"); missing hyper-parameters
    take Keras' defaults; ``lr`` is accepted for ``learning_rate`` as Keras 2 did. Floats are
    stored as floats (``learning_rate = 1`` -> ``1.0``) so equal settings hash equally.
    Raises ``SpecError`` naming ``path`` (e.g. ``optimizer.beta_1``) and what is allowed.
    """
    name, raw = split_name(config, path, "optimizer", OPTIMIZERS)
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        hint = _NAME_HINTS.get(key)
        message = hint if hint else f"unknown optimizer {name!r}"
        where = path if isinstance(config, str) else f"{path}.name"
        raise SpecError(message, path=where, allowed=OPTIMIZERS, got=key)
    definition = OPTIMIZERS[key]
    defaults = definition.all_defaults()

    if "lr" in raw:
        if "learning_rate" in raw:
            raise SpecError("give learning_rate or its Keras 2 alias lr, not both", path=f"{path}.lr")
        raw["learning_rate"] = raw.pop("lr")

    for k in raw:
        if k not in defaults:
            if k in _KERAS_ONLY:
                message = f"{k!r} is a Keras option trainlab does not support"
            elif k == "seed":
                message = "optimizers take no seed"
            else:
                message = f"{definition.keras_class} has no hyper-parameter {k!r}"
            raise SpecError(message, path=f"{path}.{k}", allowed=defaults, got=k)

    out: dict[str, Any] = {"name": key}
    for k, default in defaults.items():
        value = raw.get(k, default)
        if k == "learning_rate" and schedules.is_schedule(value):
            out[k] = schedules.resolve(value, path=f"{path}.{k}")
            continue
        out[k] = _check_value(k, value, default, path=f"{path}.{k}", required=k in definition.required)
    clips = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if out[k] is not None]
    if len(clips) > 1:
        raise SpecError(
            f"only one of clipnorm, clipvalue and global_clipnorm can be set (Keras rule), got {', '.join(clips)}",
            path=f"{path}.{clips[1]}",
        )
    return out


def _check_value(key: str, value: Any, default: Any, *, path: str, required: bool) -> Any:
    """``value`` validated for ``key``: bools stay bools, numbers become floats within range."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"must be true or false, got {value!r}", path=path)
        return value
    if value is None:
        if key in _OPTIONAL and not required:
            return None
        raise SpecError("must be a number", path=path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"must be a number, got {value!r}", path=path)
    number = float(value)
    low, high, low_ok, high_ok = _RANGES[key]
    inside = (low < number or (low_ok and number == low)) and (number < high or (high_ok and number == high))
    if not math.isfinite(number) or not inside:
        interval = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
        raise SpecError(f"must be in {interval}, got {value!r}", path=path)
    return number


def options(config: Mapping[str, Any]) -> dict[str, bool]:
    """The structural choices of a resolved config: which slots exist and which code path runs.

    Keys: the optimizer's flags (e.g. ``nesterov``), its switches (``momentum`` is on when
    non-zero), ``decay`` (legacy decay non-zero) and, for ``weight_decay`` and the three
    clipping options, whether they are set.
    """
    definition = OPTIMIZERS[config["name"]]
    out = {k: bool(config[k]) for k in definition.flags}
    out.update({k: config[k] > 0 for k in definition.switches})
    out["decay"] = config["decay"] > 0
    out.update({k: config[k] is not None for k in sorted(_OPTIONAL)})
    return out


def merge_options(configs: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """The options one population update uses for all of ``configs`` (resolved, one optimizer).

    Momentum, legacy decay and weight decay are switched on for everyone if anyone uses them
    (a value of 0 then reproduces the plain rule exactly); every other option must agree,
    since it selects a different code path.
    """
    if not configs:
        raise ValueError("a population needs at least one member")
    names = {c["name"] for c in configs}
    if len(names) != 1:
        raise ValueError(f"a population shares one optimizer, got {sorted(names)}")
    each = [options(c) for c in configs]
    merged: dict[str, bool] = {}
    for key in each[0]:
        values = {o[key] for o in each}
        if key in _NEUTRAL_WHEN_ZERO:
            merged[key] = any(values)
        elif len(values) > 1:
            raise ValueError(f"members of a population must agree on {key!r}; group them apart")
        else:
            merged[key] = values.pop()
    return merged


def hyperparameters(
    configs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """The float hyper-parameters of resolved config(s) as tensors: 0-d for one config, ``(K,)`` for K.

    Unset optional hyper-parameters are left out for one model; in a population a member
    without weight decay gets 0, which leaves its parameters untouched. A member whose learning
    rate is a schedule gets NaN until its optimizer fills in the scheduled rate (before every
    update: see ``_Stateful.prepare_update``), so that a rate read before it shows as NaN.
    """
    single = isinstance(configs, Mapping)
    members: list[Mapping[str, Any]] = [configs] if single else list(configs)  # type: ignore[list-item]
    definition = OPTIMIZERS[members[0]["name"]]
    hp: dict[str, Tensor] = {}
    for key, default in definition.all_defaults().items():
        if isinstance(default, bool):
            continue
        values = [math.nan if schedules.is_schedule(m[key]) else m[key] for m in members]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values):
            if key not in _NEUTRAL_WHEN_ZERO:
                raise ValueError(f"members of a population must all set {key!r} or none of them")
            values = [0.0 if v is None else v for v in values]
        tensor = torch.tensor(values, dtype=dtype, device=device)
        hp[key] = tensor[0].clone() if single else tensor
    return hp


# ---------------------------------------------------------------------------------------------
# One update


def _member_norms(g: Tensor, population: bool) -> Tensor:
    """L2 norm of ``g`` (per member, shaped (K,1,..,1), when ``population``)."""
    if not population:
        return torch.linalg.vector_norm(g)
    return torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim())), keepdim=True) if g.dim() > 1 else g.abs()


def clip_gradients(grads: list[Tensor], hp: Mapping[str, Tensor], opts: Mapping[str, bool]) -> list[Tensor]:
    """Keras' gradient clipping, returning new tensors when clipping is set.

    ``clipnorm``: each tensor ``g * c / max(||g||, c)``; ``global_clipnorm``: every tensor
    times ``c * min(1 / norm, 1 / c)`` with ``norm`` over all tensors (NaN if it is not
    finite, as in Keras); ``clipvalue``: ``clip(g, -c, c)``. In a population, norms are per member.
    """
    population = hp["learning_rate"].dim() > 0
    if opts["clipnorm"]:
        c = hp["clipnorm"]
        out = []
        for g, ci in zip(grads, _listed(_spread(c, grads), len(grads))):
            out.append(g * ci / torch.maximum(_member_norms(g, population), ci))
        return out
    if opts["global_clipnorm"]:
        c = hp["global_clipnorm"]
        if population:
            squares = sum(g.reshape(g.shape[0], -1).square().sum(dim=1) for g in grads)
        else:
            squares = sum(g.square().sum() for g in grads)
        norm = torch.sqrt(squares)  # type: ignore[arg-type]
        scale = c * torch.minimum(1.0 / norm, 1.0 / c) + (norm - norm)
        return torch._foreach_mul(grads, _spread(scale, grads))
    if opts["clipvalue"]:
        c = hp["clipvalue"]
        return [torch.clamp(g, min=-ci, max=ci) for g, ci in zip(grads, _listed(_spread(c, grads), len(grads)))]
    return grads


def decayed_learning_rate(hp: Mapping[str, Tensor], step: Tensor, opts: Mapping[str, bool]) -> Tensor:
    """Keras 2's legacy decay: ``lr / (1 + decay * iterations)``, iterations = updates already applied.

    Keras 3 ignores ``decay`` with a warning; its equivalent is
    ``InverseTimeDecay(lr, decay_steps=1, decay_rate=decay)``.
    """
    lr = hp["learning_rate"]
    return lr / (1 + hp["decay"] * step) if opts["decay"] else lr


@torch.no_grad()
def apply_gradients(
    definition: OptimizerDef,
    params: list[Tensor],
    grads: list[Tensor],
    state: State,
    hp: Mapping[str, Tensor],
    step: Tensor,
    opts: Mapping[str, bool],
) -> None:
    """One Keras update, in place: clip ``grads``, decay the learning rate, apply decoupled
    weight decay ``p *= 1 - wd * lr`` (Keras' torch backend form of ``p -= p wd lr``), run the
    rule, then ``step += 1``.

    ``step`` is the 0-d integer count of updates already applied. With ``(K,)``
    hyper-parameters every tensor in ``params``, ``grads`` and ``state`` carries a leading K
    dimension. Weight decay uses the decayed learning rate, as Keras uses a schedule's current value.
    """
    if len(grads) != len(params):
        raise ValueError(f"got {len(grads)} gradients for {len(params)} parameters")
    grads = clip_gradients(grads, hp, opts)
    lr = decayed_learning_rate(hp, step, opts)
    if opts["weight_decay"]:
        torch._foreach_mul_(params, _spread(1 - hp["weight_decay"] * lr, params))
    if lr is not hp["learning_rate"]:
        hp = {**hp, "learning_rate": lr}
    definition.update(params, grads, state, hp, step, opts)
    step.add_(1)


# ---------------------------------------------------------------------------------------------
# Stateful wrappers


class _Stateful:
    """What ``Optimizer`` and ``PopulationOptimizer`` share: the update call and the flat state dict."""

    definition: OptimizerDef
    params: list[Tensor]
    hp: dict[str, Tensor]
    state: State
    opts: dict[str, bool]
    _iterations: Tensor

    _rates: RateTable | None

    def _setup(
        self,
        params: Iterable[Tensor],
        hp_source: Any,
        opts: dict[str, bool],
        name: str,
        learning_rates: Sequence[Any],
        population: bool,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("an optimizer needs at least one parameter")
        ref = self.params[0]
        if any(p.dtype != ref.dtype or p.device != ref.device for p in self.params):
            raise ValueError("all parameters must share one dtype and device")
        self.definition = OPTIMIZERS[name]
        self.opts = opts
        self.hp = hyperparameters(hp_source, dtype=ref.dtype, device=ref.device)
        self.state = self.definition.init(self.params, self.hp, self.opts)
        self._iterations = torch.zeros((), dtype=torch.int64, device=ref.device)
        scheduled = [lr if schedules.is_schedule(lr) else None for lr in learning_rates]
        self._rates = RateTable(scheduled, population=population) if any(scheduled) else None

    @property
    def scheduled(self) -> bool:
        """Whether a learning-rate schedule sets the rate (of any member, in a population)."""
        return self._rates is not None

    def set_timeline(self, timeline: Timeline | Sequence[Timeline]) -> None:
        """How long training runs (one per member in a population), for per-epoch schedules and
        ``one_cycle`` without ``total_steps`` (see :class:`trainlab.schedules.Timeline`); then the
        scheduled rate of the next update is filled in."""
        if self._rates is None:
            return
        timelines = [timeline] * len(self._rates.configs) if isinstance(timeline, Timeline) else list(timeline)
        self._rates.set_timelines(timelines)
        self.prepare_update()

    def prepare_update(self) -> None:
        """Set the learning-rate tensor to the schedule's rate for the next update (members
        without a schedule keep theirs); nothing without a schedule.

        :meth:`step` calls it before each update; a caller that applies updates itself (a compiled
        population step) calls it before each one, as Keras reads ``learning_rate(iterations)``.
        """
        if self._rates is None:
            return
        row = self._rates.row(int(self._iterations)).to(self.hp["learning_rate"].dtype)
        lr = self.hp["learning_rate"]
        if lr.dim() == 0 or bool(self._rates.scheduled.all()):
            lr.copy_(row)
        else:
            lr.copy_(torch.where(self._rates.scheduled, row, lr))

    def scheduled_rates(self, count: int) -> list[float] | None:
        """One model's scheduled rates for the next ``count`` updates (before legacy decay), as
        floats for a hand-written step; None without a schedule."""
        if self._rates is None:
            return None
        return self._rates.span_of(int(self._iterations), count)

    def step(self, grads: Sequence[Tensor]) -> None:
        """Apply one update from ``grads`` (one per parameter, same shapes); increments ``iterations``."""
        self.prepare_update()
        apply_gradients(
            self.definition,
            self.params,
            grads if isinstance(grads, list) else list(grads),
            self.state,
            self.hp,
            self._iterations,
            self.opts,
        )

    @property
    def iterations(self) -> int:
        """Number of updates applied so far."""
        return int(self._iterations)

    @property
    def step_counter(self) -> Tensor:
        """The count of updates applied, as the live 0-d int64 tensor the updates read and advance.

        For a caller that applies updates through :func:`apply_gradients` itself (a compiled
        population step passes each optimizer's tensors into the program): handing it this
        tensor keeps ``iterations``, legacy decay and ``state_dict`` true. Advance it only
        through those updates or :meth:`advance`.
        """
        return self._iterations

    def advance(self, steps: int) -> None:
        """Count ``steps`` updates applied to the parameters outside :meth:`step`.

        For a hand-written training step that updates the parameters and state in place (the
        lowered small-batch step): legacy decay, ``iterations`` and ``state_dict`` then go on
        as if :meth:`step` had made those updates.
        """
        if steps < 0:
            raise ValueError(f"an optimizer cannot count a negative number of updates, got {steps}")
        self._iterations.add_(steps)

    def state_dict(self) -> dict[str, Tensor]:
        """A flat ``name -> tensor`` snapshot: ``iterations``, ``hp.<name>`` and ``state.<slot>.<i>``.

        Loading it into an optimizer built on the same parameters and config continues
        bit-identically, including a learning rate changed during the run.
        """
        out = {"iterations": self._iterations.clone()}
        out.update({f"hp.{k}": v.clone() for k, v in self.hp.items()})
        for slot, tensors in self.state.items():
            out.update({f"state.{slot}.{i}": t.clone() for i, t in enumerate(tensors)})
        return out

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore a ``state_dict()`` in place; refuses one from another optimizer or shape."""
        own = self._named_tensors()
        missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or extra:
            raise ValueError(f"optimizer state does not match: missing {missing}, unexpected {extra}")
        for key, target in own.items():
            source = state[key]
            if source.shape != target.shape or source.dtype != target.dtype:
                raise ValueError(
                    f"optimizer state {key!r}: expected {tuple(target.shape)} {target.dtype}, "
                    f"got {tuple(source.shape)} {source.dtype}"
                )
        with torch.no_grad():
            for key, target in own.items():
                target.copy_(state[key])

    def _named_tensors(self) -> dict[str, Tensor]:
        out = {"iterations": self._iterations}
        out.update({f"hp.{k}": v for k, v in self.hp.items()})
        for slot, tensors in self.state.items():
            out.update({f"state.{slot}.{i}": t for i, t in enumerate(tensors)})
        return out


class Optimizer(_Stateful):
    """A Keras optimizer for one model's parameters.

    ``config`` is anything ``resolve`` accepts. The parameters are updated in place by
    ``step(grads)``; gradients are read, never written.
    """

    def __init__(self, params: Iterable[Tensor], config: str | Mapping[str, Any]) -> None:
        self.config = resolve(config)
        self._setup(
            params, self.config, options(self.config), self.config["name"], [self.config["learning_rate"]], False
        )

    @property
    def learning_rate(self) -> float:
        """The base learning rate (before legacy decay); settable, e.g. by ReduceLROnPlateau."""
        return float(self.hp["learning_rate"])

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.scheduled:
            raise ValueError("the learning rate follows a schedule and cannot be set (as in Keras)")
        _check_value("learning_rate", value, 0.0, path="learning_rate", required=True)
        self.hp["learning_rate"].fill_(value)

    def current_lr(self) -> float:
        """The learning rate the next update uses: the base (or scheduled) rate after legacy decay."""
        self.prepare_update()
        return float(decayed_learning_rate(self.hp, self._iterations, self.opts))


class PopulationOptimizer(_Stateful):
    """One Keras optimizer per member of a population trained as K stacked models.

    Every parameter carries a leading K dimension; member ``k`` gets ``configs[k]`` (same
    optimizer; options that change the code path must agree, see ``merge_options``). Member
    ``k`` follows exactly the updates a single-model ``Optimizer`` with ``configs[k]`` would
    make on its slice, except for rounding where the group switches on momentum, decay or
    weight decay that a member sets to zero (where the results are identical anyway).
    """

    def __init__(self, params: Iterable[Tensor], configs: Sequence[str | Mapping[str, Any]]) -> None:
        self.configs = [resolve(c, path=f"optimizer[{i}]") for i, c in enumerate(configs)]
        self._setup(
            params,
            self.configs,
            merge_options(self.configs),
            self.configs[0]["name"],
            [c["learning_rate"] for c in self.configs],
            True,
        )
        k = len(self.configs)
        for p in self.params:
            if p.dim() == 0 or p.shape[0] != k:
                raise ValueError(f"population parameters need a leading dimension of {k}, got {tuple(p.shape)}")

    @property
    def learning_rates(self) -> list[float]:
        """Each member's base learning rate."""
        return self.hp["learning_rate"].tolist()

    def set_learning_rate(self, member: int, value: float) -> None:
        """Change one member's base learning rate (ReduceLROnPlateau acts per member)."""
        if schedules.is_schedule(self.configs[member]["learning_rate"]):
            raise ValueError(f"member {member}'s learning rate follows a schedule and cannot be set (as in Keras)")
        _check_value("learning_rate", value, 0.0, path="learning_rate", required=True)
        self.hp["learning_rate"][member] = value

    def member_state_dict(self, member: int, keys: Iterable[str]) -> dict[str, Tensor]:
        """Member ``member``'s slice of the entries ``keys`` (a single-model ``state_dict``'s
        keys), cloned: the state a single-model ``Optimizer`` of its config would have."""
        own = self._named_tensors()
        return {k: own[k].clone() if k == "iterations" else own[k][member].clone() for k in keys}

    def current_lrs(self) -> list[float]:
        """Each member's learning rate for the next update (base or scheduled), after legacy decay."""
        self.prepare_update()
        return decayed_learning_rate(self.hp, self._iterations, self.opts).tolist()
