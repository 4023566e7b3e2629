"""A user's own torch module as a trainlab model: ``[model] factory = "mypkg.models:build"``.

The factory is called as ``build(input_shape, outputs, **params)``: ``input_shape`` is the
data's shape without the batch (``(C, H, W)`` for images, ``(F,)`` for tables), ``outputs``
the number of classes (one logit each) or 1 for regression, and ``params`` the study's
``[model] params``. It returns a ``torch.nn.Module`` whose ``forward`` maps a batch
``(N, *input_shape)`` to ``(N, outputs)``: logits for classification (trainlab's losses take
logits, and :meth:`~trainlab.nets.Net.predict` applies the softmax), values for regression.

:class:`FactoryNet` wraps the module in the :class:`~trainlab.nets.Net` contract the engine
trains, so nothing below knows where a model came from. A resolved factory model is the table
``{factory, params, source_sha256, outputs, task, root}``: the reference, its params, the
SHA-256 of the factory's source file (so that editing it makes new trials), what the data asks
of the output, and the folder the reference is imported from (not part of a trial's identity:
moving a project keeps its trials). :func:`check` builds the model once when a study is read, so
that a factory that does not import, raises, returns something other than a module or a module
whose output has the wrong size is a one-line error naming ``model.factory`` before anything is
trained or stored.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trainlab import factory
from trainlab.errors import SpecError
from trainlab.nets import MAX_PARAMETERS, LayerSummary, Net, Shape
from trainlab.registry import Param, check_params, join, one_of, param

TASKS = ("classification", "regression")
FACTORY_KEYS: dict[str, Param] = {
    "factory": Param(None, (str,), required=True),
    "params": param({}, dict),
    "root": Param(None, (str, type(None))),
    "source_sha256": Param(None, (str, type(None))),
    "outputs": Param(None, (int, type(None)), lambda v: None if v is None or v >= 1 else "must be >= 1"),
    "task": Param(None, (str, type(None)), lambda v: None if v is None or v in TASKS else one_of(*TASKS)(v)),
}
"""``[model]`` of a factory model. A study gives ``factory`` and ``params``; the rest is what
resolving writes (a resolved spec resolves again to itself)."""
CHECK_BATCH = 2
"""The examples of zeros a factory's module is run on when a study is read, to check its output."""

_checked: dict[str, None] = {}
_checked_lock = threading.Lock()


def is_factory(model: Any) -> bool:
    """Whether a ``[model]`` table names a factory (rather than listing layers)."""
    return isinstance(model, Mapping) and "factory" in model


def outputs_for(task: str, num_classes: int) -> int:
    """What a model's output holds per example: one logit per class, or one regression value."""
    return num_classes if task == "classification" else 1


def resolve(
    model: Mapping[str, Any],
    input_shape: Shape | None = None,
    path: str = "model",
    *,
    task: str | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The resolved table of a factory model: the factory imported, its source hashed, the
    output the data asks for written in; with ``input_shape``, the model built once and checked
    (:func:`check`). ``task`` and ``num_classes`` come from the data; a resolved table that
    states them already may leave them out."""
    if "layers" in model:
        raise SpecError(
            "a model is either a list of layers or a factory, not both (a [[compare]] entry's model table "
            "merges into the base's: give the factory in the base's [model])",
            path=join(path, "layers"),
        )
    table = check_params(model, FACTORY_KEYS, path)
    found = factory.load(table["factory"], table["root"], join(path, "factory"))
    if table["source_sha256"] is not None and table["source_sha256"] != found.sha256:
        raise _changed(found, table["source_sha256"], join(path, "factory"))
    if task is not None:
        want = outputs_for(task, num_classes or 0)
        for key, value in (("task", task), ("outputs", want)):
            if table[key] is not None and table[key] != value:
                raise SpecError(f"is set by the data: {value!r}, got {table[key]!r}", path=join(path, key))
        table["task"], table["outputs"] = task, want
    if table["task"] is None or table["outputs"] is None:
        raise SpecError("a factory model's task and outputs come from the data; none was given", path=path)
    out = {
        "factory": found.reference,
        "params": copy.deepcopy(table["params"]),
        "source_sha256": found.sha256,
        "outputs": table["outputs"],
        "task": table["task"],
        "root": table["root"],
    }
    if input_shape is not None:
        check(out, tuple(input_shape), path)
    return out


def check(model: Mapping[str, Any], input_shape: Shape, path: str = "model") -> None:
    """Build the model once and run it on :data:`CHECK_BATCH` examples of zeros: the factory must
    return a ``torch.nn.Module`` of at most :data:`~trainlab.nets.MAX_PARAMETERS` parameters
    (counted on the meta device first, where that works, so that an absurd width allocates
    nothing) whose output is ``(N, outputs)``. Each model and input shape is checked once per
    process."""
    key = json.dumps({"model": model, "shape": list(input_shape)}, sort_keys=True)
    with _checked_lock:
        if key in _checked:
            return
    where = join(path, "factory")
    found = factory.load(model["factory"], model.get("root"), where)
    _check_size_on_meta(found, model, input_shape, where)
    net = build(model, input_shape, seed=0, path=path)
    count = sum(p.numel() for p in net.parameters())
    if count > MAX_PARAMETERS:
        raise SpecError(_too_big(found.reference, count), path=where)
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros((CHECK_BATCH, *input_shape)))
    except Exception as exc:  # the user's forward may raise anything
        raise SpecError(
            f"{found.reference}: the module's forward raised {_one_line(exc)} on a batch of shape "
            f"{(CHECK_BATCH, *input_shape)}; expected it to take (N, {', '.join(map(str, input_shape))})",
            path=where,
        ) from None
    want = (CHECK_BATCH, model["outputs"])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        what = "one logit per class" if model["task"] == "classification" else "one value per example"
        raise SpecError(
            f"{found.reference}: the module's output for a batch of {CHECK_BATCH} is {got}; expected a tensor of "
            f"shape {want} ({what})",
            path=where,
        )
    with _checked_lock:
        _checked[key] = None


def _check_size_on_meta(found: factory.Factory, model: Mapping[str, Any], input_shape: Shape, where: str) -> None:
    """Refuse a module above the parameter limit before allocating it, where the factory can
    build on the meta device (where it cannot, the real build is counted instead)."""
    try:
        with torch.device("meta"):
            module = found.function(tuple(input_shape), model["outputs"], **model["params"])
    except Exception:  # not every factory builds on the meta device; the real build reports its errors
        return
    if isinstance(module, nn.Module):
        count = sum(p.numel() for p in module.parameters())
        if count > MAX_PARAMETERS:
            raise SpecError(_too_big(found.reference, count), path=where)


def _changed(found: factory.Factory, wanted: str, where: str) -> SpecError:
    return SpecError(
        f"{found.reference}: {found.source} has changed since this model was resolved "
        f"(sha256 {found.sha256[:12]}..., expected {wanted[:12]}...); an edited factory makes new trials: "
        "run the study again",
        path=where,
    )


def _too_big(reference: str, count: int) -> str:
    return (
        f"{reference} builds a model of {count:,} parameters; trainlab builds at most {MAX_PARAMETERS:,} "
        "(400 MB of float32 weights); change its params"
    )


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class FactoryNet(Net):
    """A user's module in the :class:`~trainlab.nets.Net` contract: no kernel penalties, a
    softmax output activation for classification (the module gives logits), and ``stochastic``
    always true, since trainlab cannot see whether a module's forward draws noise (so a full batch
    is shuffled, which changes only float rounding)."""

    def __init__(self, module: nn.Module, model: Mapping[str, Any]) -> None:
        output: nn.Module = nn.Softmax(dim=-1) if model["task"] == "classification" else nn.Identity()
        super().__init__(nn.Sequential(module), output, [])
        self.identity = json.dumps(
            {k: model[k] for k in ("factory", "params", "source_sha256", "outputs")}, sort_keys=True
        )
        """What the module is; in its ``repr``, so that two factories never share compiled steps."""

    def extra_repr(self) -> str:
        return self.identity

    @property
    def stochastic(self) -> bool:
        return True


def build(model: Mapping[str, Any], input_shape: Shape, seed: int, path: str = "model") -> FactoryNet:
    """The resolved factory model built, its default initialization seeded by ``seed`` alone
    (torch's global generator is forked, so nothing else is disturbed).

    The factory's source must be the one the model was resolved with: a trial planned with one
    version of the file never trains, resumes or predicts with another.
    """
    where = join(path, "factory")
    found = factory.load(model["factory"], model.get("root"), where)
    wanted = model.get("source_sha256")
    if wanted and found.sha256 != wanted:
        raise _changed(found, wanted, where)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory.call(found, where, tuple(input_shape), model["outputs"], **model["params"])
    if not isinstance(module, nn.Module):
        raise SpecError(f"{found.reference} returned a {type(module).__name__}; expected a torch.nn.Module", path=where)
    return FactoryNet(module, model)


def summary(model: Mapping[str, Any], input_shape: Shape) -> list[LayerSummary]:
    """One row per child of the user's module (its output shape seen by a forward hook on one
    example of zeros, its parameters counted), then the module's output."""
    net = build(model, input_shape, seed=0)
    module = net.body[0]
    shapes: dict[str, Shape] = {}
    hooks = [
        child.register_forward_hook(
            lambda _m, _i, out, name=name: (
                shapes.__setitem__(name, tuple(out.shape[1:])) if isinstance(out, torch.Tensor) else None
            )
        )
        for name, child in module.named_children()
    ]
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros((1, *input_shape)))
    finally:
        for hook in hooks:
            hook.remove()
    rows = [_row(name, child, shapes.get(name, ())) for name, child in module.named_children()]
    own = list(module.parameters(recurse=False))
    if not rows:
        rows.append(_row(type(module).__name__.lower(), module, tuple(out.shape[1:])))
    elif own:
        count = sum(p.numel() for p in own)
        trainable = sum(p.numel() for p in own if p.requires_grad)
        rows.append(LayerSummary("(own parameters)", type(module).__name__, tuple(out.shape[1:]), count, trainable))
    return rows


def _row(name: str, module: nn.Module, shape: Shape) -> LayerSummary:
    params = list(module.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return LayerSummary(name, type(module).__name__, shape, sum(p.numel() for p in params), trainable)
