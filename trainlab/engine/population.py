"""Population training: K models of one architecture trained at once on the same batches.

The members' weights are stacked (``torch.func.stack_module_state``) and one step computes
every member's gradients with ``vmap(grad(...))``; one :class:`~trainlab.optim.PopulationOptimizer`
applies each member's own hyper-parameters, held in tensors. Members share the trial seed
(the planner groups them so), hence the batch order and the dropout noise, which makes each
member's run the same as training it alone, up to float rounding.

Members end independently: each has its own :class:`~trainlab.engine.tracker.Tracker`
(early stopping, ReduceLROnPlateau, divergence); a member that stops is taken out of the
stacked tensors, so it stops costing work. Every member's epochs and checkpoints are reported
in exactly the form single-model training produces, so either can resume the other's trial.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from trainlab.data.cache import Tensors
from trainlab.engine import checkpoint
from trainlab.engine.compile_cache import use_compile_caches
from trainlab.engine.loop import EVAL_BATCH, OnBatch, epoch_batches, timeline
from trainlab.engine.lowered import ONE_THREAD_MAX_BATCH, single_threaded
from trainlab.engine.precision import autocast
from trainlab.engine.tracker import FitResult, Tracker, Weights
from trainlab.losses import METRICS, loss_function
from trainlab.models import Net
from trainlab.optim import Optimizer, PopulationOptimizer, apply_gradients, options, resolve
from trainlab.schedules import Timeline
from trainlab.trial import TrainSettings, canonical_json

OnMemberEpoch = Callable[[int, int, dict[str, float], Callable[[], bytes]], "bool | None"]
"""Called with (member index, epoch, metrics, checkpoint maker) after each member's epoch."""
PruneMembers = Callable[[int, Mapping[int, dict[str, float]]], Collection[int]]
"""Asked once per epoch, after every live member has ended it and before any is reported, with
each of those members' metrics by member index; returns the members to stop there as pruned.
Asked with the whole epoch at once, a decision never depends on the order members report in,
and each pruned member's reported checkpoint already carries its decision."""


@dataclass
class Member:
    """One trial in a population: its freshly built model, optimizer config, settings, and
    the checkpoint to resume from (all members of a population resume at the same epoch)."""

    net: Net
    optimizer: Mapping[str, Any]
    settings: TrainSettings
    resume: bytes | None = None


def optimizer_key(config: Mapping[str, Any]) -> str:
    """Members with equal keys can share one :class:`PopulationOptimizer` (same rule and code path)."""
    opts = options(config)
    return canonical_json(
        {"name": config["name"], **{k: v for k, v in opts.items() if k not in ("momentum", "decay", "weight_decay")}}
    )


class _Stack:
    """The live members' weights, stacked, and one optimizer per run of members sharing an update rule.

    Members arrive sorted by :func:`optimizer_key`, so each optimizer updates a contiguous slice
    of every stacked tensor, in place, through views.
    """

    def __init__(
        self,
        nets: Sequence[Net],
        configs: Sequence[Mapping[str, Any]],
        opt_states: Sequence[Mapping[str, torch.Tensor]] | None,
        timelines: Sequence[Timeline],
    ) -> None:
        params, buffers = stack_module_state(list(nets))
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.saved = set(nets[0].state_dict())
        """The names a member's weights hold: its state dict's (a rate buffer, say, is left out)."""
        self.names = list(self.params)
        self.groups: list[tuple[int, int, PopulationOptimizer]] = []
        keys = [optimizer_key(c) for c in configs]
        a = 0
        while a < len(keys):
            b = a + 1
            while b < len(keys) and keys[b] == keys[a]:
                b += 1
            group = PopulationOptimizer([self.params[n][a:b] for n in self.names], configs[a:b])
            if opt_states is not None:
                group.load_state_dict(_stack_states(opt_states[a:b], group))
            group.set_timeline(timelines[a:b])
            self.groups.append((a, b, group))
            a = b
        self.static = tuple((a, b, g.definition, tuple(sorted(g.opts.items()))) for a, b, g in self.groups)
        """What a compiled step specialises on: each group's slice, update rule and options."""
        self.states = [(g.state, g.hp, g.step_counter) for _, _, g in self.groups]
        """Each group's mutable tensors (state slots, hyper-parameters, step counter), updated in place."""
        self.size = len(nets)
        """How many models are stacked."""
        self.timelines = list(timelines)
        """Each stacked member's length of training, which its learning-rate schedule counts in."""

    def prepare_updates(self) -> None:
        """Each optimizer's scheduled learning rates for the next update, for a compiled step that
        applies the updates itself (:meth:`step` does it for the eager one)."""
        for _, _, group in self.groups:
            group.prepare_update()

    def step(self, grads: Mapping[str, torch.Tensor]) -> None:
        """Each optimizer updates its members' slices."""
        for a, b, group in self.groups:
            group.step([grads[n][a:b] for n in self.names])

    def _group(self, j: int) -> tuple[int, PopulationOptimizer]:
        for a, b, group in self.groups:
            if a <= j < b:
                return j - a, group
        raise IndexError(j)

    def learning_rate(self, j: int) -> float:
        i, group = self._group(j)
        return group.learning_rates[i]

    def set_learning_rate(self, j: int, value: float) -> None:
        i, group = self._group(j)
        group.set_learning_rate(i, value)

    def current_lrs(self) -> list[float]:
        return [lr for _, _, group in self.groups for lr in group.current_lrs()]

    def member_optimizer_state(self, j: int, keys: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
        """Member ``j``'s optimizer state in the single-model layout."""
        i, group = self._group(j)
        return group.member_state_dict(i, keys)

    def member_weights(self, j: int) -> Weights:
        """Member ``j``'s state dict: its weights and the buffers it saves."""
        return {
            **{k: v[j].clone() for k, v in self.params.items()},
            **{k: v[j].clone() for k, v in self.buffers.items() if k in self.saved},
        }


def _single_keys(net: Net, config: Mapping[str, Any]) -> dict[str, torch.Size]:
    """The state-dict keys and shapes a single-model optimizer of ``config`` has for ``net``."""
    probe = Optimizer([torch.zeros_like(p) for p in net.parameters() if p.requires_grad], config)
    return {k: v.shape for k, v in probe.state_dict().items()}


def _stack_states(states: Sequence[Mapping[str, torch.Tensor]], target: PopulationOptimizer) -> dict[str, torch.Tensor]:
    """Single-model optimizer states stacked into the population's layout (missing slots are zeros)."""
    out = {}
    for key, tensor in target.state_dict().items():
        if key == "iterations":
            out[key] = states[0][key]
            continue
        out[key] = torch.stack([s[key] if key in s else torch.zeros_like(tensor[0]) for s in states])
    return out


def fit_population(
    members: Sequence[Member],
    data: Tensors,
    task: str,
    *,
    seed: int,
    on_epoch: OnMemberEpoch | None = None,
    on_batch: OnBatch | None = None,
    compile: bool = False,
    prune: PruneMembers | None = None,
) -> list[FitResult]:
    """Train every member to its end; results in member order.

    ``compile``: compile the step with ``torch.compile`` (see :class:`_Programs` for what is
    compiled). Compiled and eager steps round differently, so the choice is the run plan's
    (:mod:`trainlab.planner`), never a timing. The members' nets and ``data`` live on one
    device, where the population trains; the members share ``train.precision``, and bfloat16
    runs the gradients and the forward pass under autocast. float16 trains alone: its loss
    scaling skips one trial's steps, which a stacked update cannot do for one member.
    """
    if not members:
        return []
    if members[0].settings.precision == "float16":
        raise ValueError("float16 trials train alone, not in a population (their loss scaling skips steps per trial)")
    batch_size = members[0].settings.batch_size
    small = batch_size != "full" and int(batch_size) <= ONE_THREAD_MAX_BATCH
    on_cpu = data.x_train.device.type == "cpu"
    if on_cpu and small and not any(isinstance(m, torch.nn.Conv2d) for m in members[0].net.modules()):
        with single_threaded():  # as single models do: see trainlab.engine.lowered.single_threaded
            return _fit_population(
                members, data, task, seed=seed, on_epoch=on_epoch, on_batch=on_batch, compile=compile, prune=prune
            )
    return _fit_population(
        members, data, task, seed=seed, on_epoch=on_epoch, on_batch=on_batch, compile=compile, prune=prune
    )


def _fit_population(
    members: Sequence[Member],
    data: Tensors,
    task: str,
    *,
    seed: int,
    on_epoch: OnMemberEpoch | None,
    on_batch: OnBatch | None,
    compile: bool,
    prune: PruneMembers | None = None,
) -> list[FitResult]:
    settings0 = members[0].settings
    loss_fn = loss_function(settings0.loss, settings0.label_smoothing)
    configs = [resolve(m.optimizer) for m in members]
    single_keys = [_single_keys(m.net, c) for m, c in zip(members, configs)]
    trackers, opt_states = _restored(members, data.x_train.device)
    base, step_fn, forward = _functions(members[0].net, settings0.loss, settings0.label_smoothing)
    compiled = _compiled(base, step_fn, task) if compile else None

    alive = sorted((i for i, t in enumerate(trackers) if not t.finished), key=lambda i: optimizer_key(configs[i]))
    timelines = [timeline(data, m.settings) for m in members]
    stack = (
        _stacked(
            [members[i].net for i in alive],
            [configs[i] for i in alive],
            [opt_states[i] for i in alive] if opt_states else None,
            [timelines[i] for i in alive],
        )
        if alive
        else None
    )

    while stack is not None and alive:
        epoch = trackers[alive[0]].next_epoch
        began = time.perf_counter()
        lrs_used = stack.current_lrs()
        train_logs = _train_epoch(stack, members[0], base, data, task, seed, epoch, step_fn, compiled, on_batch)[
            : len(alive)
        ]
        val = _evaluate(forward, base, stack, data.x_val, data.y_val, task, loss_fn, settings0.precision)
        seconds = (time.perf_counter() - began) / len(alive)
        logs = {
            i: {
                **train_logs[j],
                **{f"val_{n}": v[j] for n, v in val.items()},
                "learning_rate": lrs_used[j],
                "seconds": seconds,
            }
            for j, i in enumerate(alive)
        }
        lrs = {i: _end_member_epoch(stack, j, trackers[i], logs[i]) for j, i in enumerate(alive)}
        for i in prune(epoch, logs) if prune is not None else ():
            trackers[i].prune()
        leaving = []
        for j, i in enumerate(alive):
            if _report_member_epoch(stack, j, trackers[i], single_keys[i], lrs[i], logs[i], on_epoch, i, epoch):
                leaving.append(j)
        if leaving:
            stack = _shrink(stack, members, alive, leaving, configs, single_keys)
            alive = [i for j, i in enumerate(alive) if j not in leaving]
    # Every member left the stack through _shrink, which put its final weights back in its net.
    return [t.result({k: v.detach().clone() for k, v in m.net.state_dict().items()}) for m, t in zip(members, trackers)]


def dry_step(nets: Sequence[Net], loss: str, task: str, input_shape: Sequence[int]) -> None:
    """One stacked gradient step and one stacked evaluation of ``nets`` (copies of one model) on
    a batch of two examples of zeros, written nowhere: it raises what a population of them would
    raise (a module whose forward ``torch.func.vmap`` cannot batch), and returns otherwise. The
    same nets on the same zeros: the same answer every time."""
    base, step_fn, forward = _functions(nets[0], loss)
    params, buffers = stack_module_state([copy.deepcopy(net) for net in nets])
    params = {k: v.detach() for k, v in params.items()}
    buffers = {k: v.detach().clone() for k, v in buffers.items()}
    device = next(iter(params.values())).device  # where the nets live: the planner's are on the CPU
    x = torch.zeros((2, *input_shape), device=device)
    y = torch.zeros(2, dtype=torch.long if task == "classification" else torch.float32, device=device)
    base.train()
    step_fn(params, buffers, x, y)
    base.eval()
    with torch.no_grad():
        forward(params, buffers, x)
    base.train()


def _restored(
    members: Sequence[Member], device: torch.device
) -> tuple[list[Tracker], list[Mapping[str, torch.Tensor]] | None]:
    """Each member's tracker, and the optimizer states to stack (moved to ``device``): the
    members' checkpoints loaded into their nets and trackers where they resume (all of them or
    none), None where they start."""
    trackers = [Tracker(m.settings, {k: v.detach().clone() for k, v in m.net.state_dict().items()}) for m in members]
    opt_states = None
    if any(m.resume is not None for m in members):
        opt_states = []
        for member, tracker in zip(members, trackers):
            assert member.resume is not None, "a population resumes all its members or none"
            groups, meta = checkpoint.unpack(member.resume)
            member.net.load_state_dict(groups["model"])
            tracker.restore(meta, groups)
            opt_states.append({k: v.to(device) for k, v in groups["optimizer"].items()})
    if len({t.next_epoch for t in trackers}) != 1:
        raise ValueError("the members of a population must be at the same epoch")
    return trackers, opt_states


def _train_epoch(
    stack: _Stack,
    first: Member,
    base: Net,
    data: Tensors,
    task: str,
    seed: int,
    epoch: int,
    step_fn: Callable[..., Any],
    compiled: _Programs | None,
    on_batch: OnBatch | None,
) -> list[dict[str, float]]:
    """One epoch of steps over the stack, in training mode (``base`` is the weightless module the
    stacked weights run through); each stacked member's mean training loss and metrics."""
    xs, ys, batch, steps = epoch_batches(data, first.settings, seed, epoch, stochastic=first.net.stochastic)
    report_every = max(1, steps // 50)
    base.train()
    sums = {name: torch.zeros(stack.size, dtype=_sum_dtype(xs.device), device=xs.device) for name in METRICS[task]}
    precision = first.settings.precision
    for step in range(steps):
        xb, yb = xs[step * batch : (step + 1) * batch], ys[step * batch : (step + 1) * batch]
        # A short last batch runs eagerly: compiled programs are specialised to the batch size.
        if compiled is not None and len(xb) == batch and len(stack.groups) == 1:
            stack.prepare_updates()
            with autocast(xb.device, precision):
                total, metrics = compiled.whole(stack.params, stack.buffers, stack.static, stack.states, xb, yb)
        else:
            grad_fn = compiled.grads if compiled is not None and len(xb) == batch else step_fn
            with autocast(xb.device, precision):
                grads, (total, out) = grad_fn(stack.params, stack.buffers, xb, yb)
            stack.step(grads)
            metrics = _member_metrics(out.float(), yb, task)
        sums["loss"].add_(total, alpha=len(yb))
        for name, value in metrics.items():
            sums[name].add_(value, alpha=len(yb))
        if on_batch is not None and (step + 1) % report_every == 0:
            on_batch(step + 1, steps)
    host = {name: s.cpu().double() for name, s in sums.items()}
    return [{name: float(s[j]) / len(xs) for name, s in host.items()} for j in range(stack.size)]


def _sum_dtype(device: torch.device) -> torch.dtype:
    """What an epoch's metrics are summed in: float64, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _end_member_epoch(stack: _Stack, j: int, tracker: Tracker, logs: dict[str, float]) -> float:
    """Stacked member ``j`` ends its epoch with ``logs``: its callbacks decide; returns the learning
    rate they choose for the next epoch."""
    return tracker.end_epoch(logs, lambda: stack.member_weights(j), stack.learning_rate(j))


def _report_member_epoch(
    stack: _Stack,
    j: int,
    tracker: Tracker,
    single_keys: Mapping[str, torch.Size],
    new_lr: float,
    logs: dict[str, float],
    on_epoch: OnMemberEpoch | None,
    index: int,
    epoch: int,
) -> bool:
    """Stacked member ``j`` (member ``index`` of the population) has ended ``epoch`` with ``logs``
    (its callbacks chose ``new_lr``): its learning rate follows them, and ``on_epoch`` is told
    (and may prune it). True if the member is finished."""
    if new_lr != stack.learning_rate(j):
        stack.set_learning_rate(j, new_lr)
    if on_epoch is not None:

        def make() -> bytes:
            """The member's checkpoint, made only if the callback asks for it, before anything changes."""
            groups = {
                "model": stack.member_weights(j),
                "optimizer": stack.member_optimizer_state(j, single_keys),
                **tracker.snapshots(),
            }
            return checkpoint.pack(groups, tracker.meta())

        if on_epoch(index, epoch, logs, make):
            tracker.prune()
    return tracker.finished


_FUNCTIONS: dict[str, tuple[Net, Callable[..., Any], Callable[..., torch.Tensor]]] = {}
_COMPILED: dict[int, _Programs] = {}


@dataclass
class _Programs:
    """The compiled forms of a population's step, made lazily by ``torch.compile``.

    ``whole``: gradients, every optimizer group's update and the metrics in one program; it
    pays when one update rule covers the population. With several groups, each group updating
    a slice of the compiled program's inputs costs a full copy per group, which made the whole
    compiled step slower than the eager one (bench/README.md, benchmark 2, "What closed the
    gap"), so there only the gradients are compiled (``grads``) and the updates run eagerly.
    """

    whole: Callable[..., Any]
    grads: Callable[..., Any]


def _compiled(base: Net, step_fn: Callable[..., Any], task: str) -> _Programs:
    """The compiled step programs of an architecture, made once per process (a new K, batch size
    or optimizer mix recompiles). Optimizer state is passed in, not captured, so that every
    population of the architecture reuses the programs. torch's on-disk compile caches are on
    and kept in a lasting folder (:mod:`.compile_cache`), so that a later process loads the
    programs instead of compiling them again."""
    if id(base) not in _COMPILED:

        def train_step(
            params: dict[str, torch.Tensor],
            buffers: dict[str, torch.Tensor],
            groups: tuple[Any, ...],
            states: list[Any],
            x: torch.Tensor,
            y: torch.Tensor,
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            grads, (total, out) = step_fn(params, buffers, x, y)
            names = list(params)
            for (a, b, definition, opts), (state, hp, iterations) in zip(groups, states):
                apply_gradients(
                    definition,
                    [params[n][a:b] for n in names],
                    [grads[n][a:b] for n in names],
                    state,
                    hp,
                    iterations,
                    dict(opts),
                )
            return total, _member_metrics(out.float(), y, task)

        use_compile_caches()
        _noise_outside_compiled(base)
        _COMPILED[id(base)] = _Programs(torch.compile(train_step, dynamic=False), torch.compile(step_fn, dynamic=False))
    return _COMPILED[id(base)]


def _noise_outside_compiled(base: Net) -> None:
    """The layers of ``base`` that draw their own noise (``draws_noise``: augmentation,
    SpatialDropout2D) run outside the compiled programs: a compiled program draws its random
    numbers from its own generator, so a compiled step would otherwise augment differently from
    the same step run eagerly. Done here, where compiling starts, so that a process that never
    compiles never loads torch's compiler."""
    for module in base.modules():
        if getattr(module, "draws_noise", False):
            module.forward = torch.compiler.disable(module.forward)  # type: ignore[method-assign]


def _functions(
    net: Net, loss: str, label_smoothing: float = 0.0
) -> tuple[Net, Callable[..., Any], Callable[..., torch.Tensor]]:
    """A weightless copy of ``net``, and the population's gradient step and forward pass over
    stacked weights, made once per architecture and loss so that compiled steps are reused.

    ``randomness="same"`` gives every member the noise a single model with the shared seed
    would draw, which is what makes population and single training agree.
    """
    key = canonical_json({"net": repr(net), "penalties": net.penalties, "loss": loss, "smoothing": label_smoothing})
    if key not in _FUNCTIONS:
        base = copy.deepcopy(net).to("meta")
        _FUNCTIONS[key] = (base, *_make_functions(base, loss_function(loss, label_smoothing)))
    return _FUNCTIONS[key]


def _make_functions(
    base: Net, loss_fn: Callable[..., torch.Tensor]
) -> tuple[Callable[..., Any], Callable[..., torch.Tensor]]:

    def loss_of(
        params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out = functional_call(base, (params, buffers), (x,), strict=True)
        total = loss_fn(out, y)
        penalty = base.penalty(params)
        if penalty is not None:
            total = total + penalty
        return total, (total.detach(), out.detach())

    step_fn = vmap(grad(loss_of, has_aux=True), in_dims=(0, 0, None, None), randomness="same")
    forward = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None), randomness="same")
    return step_fn, forward


def _shrink(
    stack: _Stack,
    members: Sequence[Member],
    alive: list[int],
    leaving: list[int],
    configs: Sequence[Mapping[str, Any]],
    single_keys: Sequence[Mapping[str, torch.Size]],
) -> _Stack | None:
    """The stack without the members at positions ``leaving``; their final weights go back to their nets."""
    for j in leaving:
        members[alive[j]].net.load_state_dict(stack.member_weights(j))
    keep = [j for j in range(len(alive)) if j not in leaving]
    if not keep:
        return None
    for j in keep:
        members[alive[j]].net.load_state_dict(stack.member_weights(j))
    states = [stack.member_optimizer_state(j, single_keys[alive[j]]) for j in keep]
    return _stacked(
        [members[alive[j]].net for j in keep],
        [configs[alive[j]] for j in keep],
        states,
        [stack.timelines[j] for j in keep],
    )


def _stacked(
    nets: Sequence[Net],
    configs: Sequence[Mapping[str, Any]],
    opt_states: Sequence[Mapping[str, torch.Tensor]] | None,
    timelines: Sequence[Timeline],
) -> _Stack:
    """The members stacked; a lone member with a copy of itself behind it.

    A stack of one runs other kernels than a stack of several (a batched matrix product of one
    is split over the threads inside the product, of several across the members), which rounds
    differently. So that a member's numbers never depend on its population's other members,
    even once they have all stopped, a lone member trains beside a copy of itself, whose
    results are never read.
    """
    if len(nets) == 1:
        nets, configs, timelines = [nets[0], nets[0]], [configs[0], configs[0]], [timelines[0], timelines[0]]
        opt_states = None if opt_states is None else [opt_states[0], opt_states[0]]
    return _Stack(nets, configs, opt_states, timelines)


def _member_metrics(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    """Per-member batch means of the task's metrics other than the loss; ``out`` is (K, B, ...)."""
    if task == "classification":
        return {"accuracy": (out.argmax(-1) == y).float().mean(-1)}
    err = out.reshape(out.shape[0], -1) - y
    return {"mse": err.square().mean(-1), "mae": err.abs().mean(-1)}


def _evaluate(
    forward: Callable[..., torch.Tensor],
    base: Net,
    stack: _Stack,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    loss_fn: Callable[..., torch.Tensor],
    precision: str = "float32",
) -> dict[str, list[float]]:
    """Every live member's loss and metrics on (x, y), in eval mode, the forward pass in ``precision``."""
    base.eval()
    k = next(iter(stack.params.values())).shape[0]
    totals = {name: torch.zeros(k, dtype=_sum_dtype(x.device), device=x.device) for name in METRICS[task]}
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH):
            xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
            with autocast(xb.device, precision):
                out = forward(stack.params, stack.buffers, xb)
            out = out.float()  # bfloat16 outputs of a mixed-precision pass: metrics in float32
            losses = torch.stack([loss_fn(out[j], yb) for j in range(k)])
            totals["loss"].add_(losses, alpha=len(yb))
            for name, value in _member_metrics(out, yb, task).items():
                totals[name].add_(value, alpha=len(yb))
        if base.penalties:
            penalties = torch.stack([base.penalty({n: p[j] for n, p in stack.params.items()}) for j in range(k)])  # type: ignore[misc]
            totals["loss"].add_(penalties.to(totals["loss"].dtype), alpha=len(x))
    base.train()
    return {name: (t.cpu().double() / max(len(x), 1)).tolist() for name, t in totals.items()}
