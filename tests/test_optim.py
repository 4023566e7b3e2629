"""Optimizers: Keras' update rules and defaults, checked against numbers computed here.

Expected values come from ``keras_reference``, a plain-float transcription of Keras 3's
``update_step`` formulas (and Keras 2's legacy decay), and from the golden trajectories that
Keras' own tests publish; never from trainlab's functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import safetensors.torch
import torch

from trainlab import optim
from trainlab.errors import SpecError

Vectors = list[list[float]]

# Two tensors, so per-tensor and global clipping differ; zeros in the gradients exercise
# epsilon, and the zero after -1.5 makes Adam's second moment shrink (AMSGrad then differs).
P0: Vectors = [[1.0, -2.0, 3.0, 0.5], [0.25, -0.75]]
G1: Vectors = [[0.5, -1.5, 2.0, 0.0], [1.0, -0.5]]
G2: Vectors = [[-0.25, 0.0, 1.0, 3.0], [0.5, 2.0]]


# ---------------------------------------------------------------------------------------------
# The reference: Keras' formulas in plain Python floats


def keras_reference(config: Mapping[str, Any], params: Vectors, grads_seq: Sequence[Vectors]) -> list[Vectors]:
    """Parameters after each update, following keras/src/optimizers/*.py line by line."""
    name = config["name"].lower()
    c = {**COMMON, **KERAS_DEFAULTS[name], **config}
    p = [list(t) for t in params]
    zeros = lambda: [[0.0] * len(t) for t in p]
    s: dict[str, Any] = {k: zeros() for k in ("m", "v", "vhat", "avg", "acc_d")}
    s["acc"] = [[c.get("initial_accumulator_value", 0.0)] * len(t) for t in p]
    u_product = 1.0
    history = []
    for iterations, grads in enumerate(grads_seq):
        g = [list(t) for t in grads]
        # base_optimizer._clip_gradients
        if c.get("clipnorm"):
            cn = c["clipnorm"]
            g = [[x * cn / max(math.sqrt(sum(y * y for y in t)), cn) for x in t] for t in g]
        elif c.get("global_clipnorm"):
            cn = c["global_clipnorm"]
            norm = math.sqrt(sum(x * x for t in g for x in t))
            g = [[x * cn * min(1 / norm, 1 / cn) for x in t] for t in g]
        elif c.get("clipvalue"):
            cv = c["clipvalue"]
            g = [[min(max(x, -cv), cv) for x in t] for t in g]
        # Keras 2 optimizer_v2._decayed_lr
        lr = c["learning_rate"] / (1.0 + c.get("decay", 0.0) * iterations)
        # base_optimizer._apply_weight_decay
        if c.get("weight_decay") is not None:
            p = [[x - x * c["weight_decay"] * lr for x in t] for t in p]
        t_ = iterations + 1
        if name == "nadam":
            u_product *= c["beta_1"] * (1 - 0.5 * 0.96**t_)
        for i, (pt, gt) in enumerate(zip(p, g)):
            for j, gx in enumerate(gt):
                pt[j] = _reference_element(name, c, pt[j], gx, s, i, j, lr, t_, u_product)
        history.append([list(t) for t in p])
    return history


def _reference_element(
    name: str,
    c: Mapping[str, Any],
    x: float,
    g: float,
    s: dict[str, Any],
    i: int,
    j: int,
    lr: float,
    t: int,
    u_product: float,
) -> float:
    m, v = s["m"][i], s["v"][i]
    if name == "sgd":
        if c["momentum"] == 0:
            return x - lr * g
        m[j] = m[j] * c["momentum"] - g * lr
        return x + (c["momentum"] * m[j] - g * lr if c["nesterov"] else m[j])
    if name == "rmsprop":
        rho = c["rho"]
        v[j] = rho * v[j] + (1 - rho) * g * g
        if c["centered"]:
            avg = s["avg"][i]
            avg[j] = rho * avg[j] + (1 - rho) * g
            denominator = v[j] - avg[j] ** 2 + c["epsilon"]
        else:
            denominator = v[j] + c["epsilon"]
        increment = lr * g / math.sqrt(denominator)
        if c["momentum"] > 0:
            m[j] = c["momentum"] * m[j] + increment
            return x - m[j]
        return x - increment
    if name in ("adam", "adamw"):
        b1, b2 = c["beta_1"], c["beta_2"]
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m[j] += (g - m[j]) * (1 - b1)
        v[j] += (g * g - v[j]) * (1 - b2)
        vv = v[j]
        if c["amsgrad"]:
            s["vhat"][i][j] = max(s["vhat"][i][j], v[j])
            vv = s["vhat"][i][j]
        return x - m[j] * alpha / (math.sqrt(vv) + c["epsilon"])
    if name == "adagrad":
        acc = s["acc"][i]
        acc[j] += g * g
        return x - lr * g / math.sqrt(acc[j] + c["epsilon"])
    if name == "adamax":
        b1, b2 = c["beta_1"], c["beta_2"]
        m[j] += (g - m[j]) * (1 - b1)
        v[j] = max(b2 * v[j], abs(g))  # v plays Keras' u
        return x - lr * m[j] / ((1 - b1**t) * (v[j] + c["epsilon"]))
    if name == "nadam":
        b1, b2 = c["beta_1"], c["beta_2"]
        u_t = b1 * (1 - 0.5 * 0.96**t)
        u_t_1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product_t_1 = u_product * u_t_1
        m[j] += (g - m[j]) * (1 - b1)
        v[j] += (g * g - v[j]) * (1 - b2)
        m_hat = u_t_1 * m[j] / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v[j] / (1 - b2**t)
        return x - m_hat * lr / (math.sqrt(v_hat) + c["epsilon"])
    if name == "adadelta":
        rho, eps = c["rho"], c["epsilon"]
        acc_g, acc_d = s["acc"][i], s["acc_d"][i]  # acc starts at 0 for Adadelta (no initial value)
        acc_g[j] = rho * acc_g[j] + (1 - rho) * g * g
        delta = -math.sqrt(acc_d[j] + eps) * g / math.sqrt(acc_g[j] + eps)
        acc_d[j] = rho * acc_d[j] + (1 - rho) * delta * delta
        return x + lr * delta
    raise AssertionError(name)


def run(config: Mapping[str, Any], params: Vectors = P0, grads_seq: Sequence[Vectors] = (G1, G2)) -> list[Vectors]:
    tensors = [torch.tensor(t) for t in params]
    opt = optim.Optimizer(tensors, config)
    history = []
    for grads in grads_seq:
        opt.step([torch.tensor(t) for t in grads])
        history.append([t.tolist() for t in tensors])
    return history


def assert_matches(got: list[Vectors], expected: list[Vectors], rtol: float = 2e-6, atol: float = 1e-6) -> None:
    for step, (g_step, e_step) in enumerate(zip(got, expected, strict=True)):
        for g, e in zip(g_step, e_step, strict=True):
            torch.testing.assert_close(
                torch.tensor(g, dtype=torch.float64),
                torch.tensor(e, dtype=torch.float64),
                rtol=rtol,
                atol=atol,
                msg=lambda m, step=step: f"update {step + 1}: {m}",
            )


# ---------------------------------------------------------------------------------------------
# Two updates of every rule and option against the reference


CASES: dict[str, dict[str, Any]] = {
    "sgd": {"name": "sgd", "learning_rate": 0.1},
    "sgd_momentum": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    "sgd_nesterov": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
    "sgd_decay": {"name": "sgd", "learning_rate": 0.1, "decay": 0.5},
    "sgd_decay_momentum": {"name": "sgd", "learning_rate": 0.1, "decay": 0.5, "momentum": 0.9},
    "sgd_weight_decay": {"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.2},
    "sgd_clipnorm": {"name": "sgd", "learning_rate": 0.1, "clipnorm": 1.0},
    "sgd_global_clipnorm": {"name": "sgd", "learning_rate": 0.1, "global_clipnorm": 1.0},
    "sgd_clipvalue": {"name": "sgd", "learning_rate": 0.1, "clipvalue": 0.6},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.01},
    "rmsprop_centered": {"name": "rmsprop", "learning_rate": 0.01, "centered": True},
    "rmsprop_momentum": {"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5},
    "rmsprop_centered_momentum": {"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True},
    "rmsprop_epsilon": {"name": "rmsprop", "learning_rate": 0.01, "epsilon": 0.5},
    "adam": {"name": "adam", "learning_rate": 0.1},
    "adam_epsilon": {"name": "adam", "learning_rate": 0.1, "epsilon": 0.5},
    "adam_amsgrad": {"name": "adam", "learning_rate": 0.1, "amsgrad": True},
    "adam_decay_weight_decay": {"name": "adam", "learning_rate": 0.1, "decay": 0.5, "weight_decay": 0.1},
    "adam_clipnorm": {"name": "adam", "learning_rate": 0.1, "clipnorm": 0.5},
    "adamw": {"name": "adamw", "learning_rate": 0.1},
    "adagrad": {"name": "adagrad", "learning_rate": 0.1},
    "adagrad_no_initial": {"name": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.0},
    "adagrad_epsilon": {"name": "adagrad", "learning_rate": 0.1, "epsilon": 0.5},
    "adamax": {"name": "adamax", "learning_rate": 0.1},
    "adamax_epsilon": {"name": "adamax", "learning_rate": 0.1, "epsilon": 0.5},
    "nadam": {"name": "nadam", "learning_rate": 0.1},
    "nadam_epsilon": {"name": "nadam", "learning_rate": 0.1, "epsilon": 0.5},
    "nadam_betas": {"name": "nadam", "learning_rate": 0.1, "beta_1": 0.5, "beta_2": 0.67},
    "adadelta": {"name": "adadelta", "learning_rate": 1.0},
    "adadelta_rho": {"name": "adadelta", "learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-3},
}


@pytest.mark.parametrize("case", CASES)
def test_two_updates_match_keras_formulas(case: str) -> None:
    config = CASES[case]
    expected = keras_reference(config, P0, [G1, G2])
    assert_matches(run(config), expected)
    # Where the rule has state, the case is strong enough to see it: the second update differs
    # from a fresh optimizer's first update from the same point.
    if config["name"] != "sgd" or config.get("momentum") or config.get("decay"):
        fresh = keras_reference(config, expected[0], [G2])[0]
        flat = lambda vs: [x for t in vs for x in t]
        assert flat(fresh) != pytest.approx(flat(expected[1]), rel=1e-4, abs=1e-5)


def test_literal_single_steps() -> None:
    """Numbers one can check by hand (and Keras' tests state)."""
    # SGD: p - lr g with lr 0.5.
    assert run({"name": "sgd", "learning_rate": 0.5}, [[1.0, 2.0, 3.0, 4.0]], [[[1.0, 6.0, 7.0, 2.0]]]) == [
        [[0.5, -1.0, -0.5, 3.0]]
    ]
    # Momentum 0.9, lr 0.1, g 1 then 1: m = -0.1 then -0.19; p = 0.9 then 0.71.
    got = run({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, [[1.0]], [[[1.0]], [[1.0]]])
    assert got[0][0][0] == pytest.approx(0.9) and got[1][0][0] == pytest.approx(0.71)
    # Nesterov: p += 0.9 m - 0.1 g: 1 - 0.09 - 0.1 = 0.81, then 0.81 - 0.171 - 0.1 = 0.539.
    got = run({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, [[1.0]], [[[1.0]], [[1.0]]])
    assert got[0][0][0] == pytest.approx(0.81) and got[1][0][0] == pytest.approx(0.539)
    # Adam's first step moves each coordinate by about lr (m/sqrt(v) = sign(g)).
    got = run({"name": "adam", "learning_rate": 0.5}, [[1.0, 2.0, 3.0, 4.0]], [[[1.0, 6.0, 7.0, 2.0]]])
    assert got[0][0] == pytest.approx([0.5, 1.5, 2.5, 3.5], abs=1e-5)
    # Legacy decay 0.5: the updates use 0.01, 0.01 / 1.5 and 0.01 / 2.
    got = run({"name": "sgd", "decay": 0.5}, [[0.0]], [[[1.0]]] * 3)
    assert [step[0][0] for step in got] == pytest.approx([-0.01, -0.01 - 0.01 / 1.5, -0.01 - 0.01 / 1.5 - 0.005])


# Golden trajectories from keras/src/optimizers/*_test.py (test_correctness_with_golden): x = ones(10),
# one update with gradient 0.01, then updates with gradient (0.1, 0.2, ..., 1.0); rows are x before
# each of those.
KERAS_GOLDEN: dict[str, tuple[dict[str, Any], list[list[float]]]] = {
    "sgd": (
        {"name": "SGD", "nesterov": True},
        [
            [0.9999] * 10,
            [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
            [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
            [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
            [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599],
        ],
    ),
    "adam_amsgrad": ({"name": "Adam", "amsgrad": True}, [[x] * 10 for x in (0.999, 0.9982, 0.9974, 0.9965, 0.9955)]),
    "rmsprop_centered": (
        {"name": "RMSprop", "centered": True},
        [[x] * 10 for x in (0.9967, 0.9933, 0.9908, 0.9885, 0.9864)],
    ),
    "adagrad": (
        {"name": "Adagrad", "learning_rate": 0.2, "initial_accumulator_value": 0.3, "epsilon": 1e-6},
        [
            [0.9963] * 10,
            [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
            [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
            [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
            [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825],
        ],
    ),
    "adamax": (
        {"name": "Adamax", "learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6},
        [
            [0.8] * 10,
            [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
            [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
            [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
            [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126],
        ],
    ),
    "nadam": (
        {"name": "Nadam", "learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
        [
            [0.4281] * 10,
            [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717],
            [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084],
            [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299],
            [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455, -1.7454],
        ],
    ),
    "adadelta": (
        {"name": "Adadelta", "learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-6},
        [[x] * 10 for x in (0.9978, 0.9947, 0.9915, 0.9882, 0.9849)],
    ),
}


@pytest.mark.parametrize("case", KERAS_GOLDEN)
def test_matches_keras_golden_trajectories(case: str) -> None:
    config, golden = KERAS_GOLDEN[case]
    x = torch.ones(10)
    opt = optim.Optimizer([x], config)
    opt.step([torch.full((10,), 0.01)])
    for row in golden:
        torch.testing.assert_close(x, torch.tensor(row), rtol=5e-4, atol=5e-4)
        opt.step([torch.arange(1, 11, dtype=torch.float32) / 10])


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adagrad", "adamax", "nadam", "adadelta"])
def test_keras_weight_decay_golden(name: str) -> None:
    """Keras' test_weight_decay: three fresh optimizers (lr 1, wd 0.004) on a zero gradient -> 2 * 0.996^3."""
    v = torch.tensor(2.0)
    for _ in range(3):
        optim.Optimizer([v], {"name": name, "learning_rate": 1.0, "weight_decay": 0.004}).step([torch.zeros(())])
    assert v.item() == pytest.approx(1.9760959, abs=1e-6)


def test_clipping_literals() -> None:
    """Keras' test_clip_norm / test_clip_value on [100, 100], seen through an SGD step with lr 1."""
    got = run({"name": "sgd", "learning_rate": 1.0, "clipnorm": 1.0}, [[0.0, 0.0]], [[[100.0, 100.0]]])
    assert got[0][0] == pytest.approx([-(2**0.5) / 2, -(2**0.5) / 2])
    got = run({"name": "sgd", "learning_rate": 1.0, "clipvalue": 1.0}, [[0.0, 0.0]], [[[100.0, -100.0]]])
    assert got[0][0] == pytest.approx([-1.0, 1.0])
    # Global: norm of (3, 4) and (12,) is 13 -> scale 1/13.
    got = run(
        {"name": "sgd", "learning_rate": 1.0, "global_clipnorm": 1.0}, [[0.0, 0.0], [0.0]], [[[3.0, 4.0], [12.0]]]
    )
    assert got[0] == [pytest.approx([-3 / 13, -4 / 13]), pytest.approx([-12 / 13])]


def test_global_clipnorm_of_a_non_finite_gradient_is_nan_as_in_keras() -> None:
    """Keras adds (norm - norm) to the scale so that an inf or NaN norm poisons every gradient."""
    got = run({"name": "sgd", "global_clipnorm": 1.0}, [[0.0], [0.0]], [[[math.inf], [1.0]]])
    assert all(math.isnan(x) for t in got[0] for x in t)


def test_gradients_are_not_modified() -> None:
    params = [torch.tensor(t) for t in P0]
    grads = [torch.tensor(t) for t in G1]
    before = [g.clone() for g in grads]
    for config in ({"name": "adam", "clipnorm": 0.1}, {"name": "sgd", "clipvalue": 0.1}, {"name": "adadelta"}):
        optim.Optimizer(params, config).step(grads)
    assert all(torch.equal(a, b) for a, b in zip(grads, before))


def test_iterations_and_current_lr_follow_legacy_decay() -> None:
    opt = optim.Optimizer([torch.zeros(3)], {"name": "sgd", "learning_rate": 0.1, "decay": 0.01})
    assert opt.iterations == 0 and opt.current_lr() == pytest.approx(0.1)
    for _ in range(5):
        opt.step([torch.ones(3)])
    assert opt.iterations == 5
    assert opt.current_lr() == pytest.approx(0.1 / (1 + 0.01 * 5), rel=1e-6)
    assert opt.learning_rate == pytest.approx(0.1)
    opt.learning_rate = 0.05
    assert opt.current_lr() == pytest.approx(0.05 / (1 + 0.01 * 5), rel=1e-6)


def test_updates_made_outside_step_are_counted_by_advance() -> None:
    """A hand-written step that updates the parameters itself counts its updates with
    ``advance``: legacy decay then goes on as Keras' ``lr / (1 + decay * iterations)``."""
    opt = optim.Optimizer([torch.zeros(3)], {"name": "sgd", "learning_rate": 0.1, "decay": 0.01})
    opt.advance(7)
    assert opt.iterations == 7 and opt.state_dict()["iterations"].item() == 7
    assert opt.current_lr() == pytest.approx(0.1 / (1 + 0.01 * 7), rel=1e-6)
    params = opt.params[0].clone()
    opt.step([torch.ones(3)])  # the 8th update uses the rate after 7
    assert torch.allclose(opt.params[0], params - 0.1 / (1 + 0.01 * 7))
    assert opt.iterations == 8
    with pytest.raises(ValueError, match="negative"):
        opt.advance(-1)


def test_the_step_counter_is_the_live_count_that_functional_updates_advance() -> None:
    """``apply_gradients`` called with an optimizer's own tensors (as a compiled population step
    does) counts in ``iterations`` and in the next update's decayed rate."""
    params = [torch.zeros(3)]
    opt = optim.Optimizer(params, {"name": "sgd", "learning_rate": 0.1, "decay": 0.5})
    for _ in range(3):
        optim.apply_gradients(
            opt.definition, opt.params, [torch.ones(3)], opt.state, opt.hp, opt.step_counter, opt.opts
        )
    assert opt.iterations == 3
    assert opt.current_lr() == pytest.approx(0.1 / (1 + 0.5 * 3), rel=1e-6)
    expected = -sum(0.1 / (1 + 0.5 * k) for k in range(3))
    assert torch.allclose(params[0], torch.full((3,), expected))


def test_wrong_number_of_gradients_is_refused() -> None:
    opt = optim.Optimizer([torch.zeros(2), torch.zeros(3)], "sgd")
    with pytest.raises(ValueError, match="2 parameters"):
        opt.step([torch.zeros(2)])


# ---------------------------------------------------------------------------------------------
# One table of every optimizer drives the shared contract


TABLE: dict[str, dict[str, Any]] = {
    "sgd": {"name": "sgd", "learning_rate": 0.1},
    "sgd_momentum": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "sgd_nesterov": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.02},
    "rmsprop_centered_momentum": {"name": "rmsprop", "learning_rate": 0.01, "centered": True, "momentum": 0.5},
    "adam": {"name": "adam", "learning_rate": 0.05},
    "adam_amsgrad": {"name": "adam", "learning_rate": 0.05, "amsgrad": True},
    "adamw": {"name": "adamw", "learning_rate": 0.05},
    "adagrad": {"name": "adagrad", "learning_rate": 0.5},
    "adamax": {"name": "adamax", "learning_rate": 0.05},
    "nadam": {"name": "nadam", "learning_rate": 0.05},
    "adadelta": {"name": "adadelta", "learning_rate": 1.0, "epsilon": 1e-3},
    "sgd_all_extras": {"name": "sgd", "learning_rate": 0.1, "decay": 0.01, "weight_decay": 0.001, "clipnorm": 5.0},
}


def test_table_covers_every_optimizer() -> None:
    assert {c["name"] for c in TABLE.values()} == set(optim.OPTIMIZERS)


def _quadratic() -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Parameters, targets and curvatures of f(x) = sum a (x - c)^2 / 2 over two tensors."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (4,)]
    params = [torch.randn(s, generator=gen) for s in shapes]
    targets = [torch.randn(s, generator=gen) for s in shapes]
    curvature = [torch.rand(s, generator=gen) + 0.5 for s in shapes]
    return params, targets, curvature


def _loss_and_grads(
    params: list[torch.Tensor], targets: list[torch.Tensor], curvature: list[torch.Tensor]
) -> tuple[float, list[torch.Tensor]]:
    loss = sum(float((a * (p - c) ** 2).sum()) / 2 for p, c, a in zip(params, targets, curvature))
    return loss, [a * (p - c) for p, c, a in zip(params, targets, curvature)]


@pytest.mark.parametrize("case", TABLE)
def test_minimizes_a_quadratic(case: str) -> None:
    params, targets, curvature = _quadratic()
    opt = optim.Optimizer(params, TABLE[case])
    initial, _ = _loss_and_grads(params, targets, curvature)
    for _ in range(300):
        loss, grads = _loss_and_grads(params, targets, curvature)
        opt.step(grads)
    assert loss < 0.05 * initial, f"loss {initial:.3g} -> {loss:.3g}"


@pytest.mark.parametrize("case", TABLE)
def test_state_dict_round_trip_continues_bit_identically(case: str) -> None:
    params, targets, curvature = _quadratic()
    opt = optim.Optimizer(params, TABLE[case])
    for _ in range(4):
        opt.step(_loss_and_grads(params, targets, curvature)[1])
    opt.learning_rate = opt.learning_rate * 0.5  # a ReduceLROnPlateau change must survive the round trip
    saved = safetensors.torch.load(safetensors.torch.save(opt.state_dict()))
    assert all(isinstance(v, torch.Tensor) for v in saved.values()) and saved["iterations"].item() == 4
    resumed_params = [p.clone() for p in params]
    resumed = optim.Optimizer(resumed_params, TABLE[case])
    resumed.load_state_dict(saved)
    assert resumed.iterations == 4 and resumed.learning_rate == opt.learning_rate
    for _ in range(4):
        opt.step(_loss_and_grads(params, targets, curvature)[1])
        resumed.step(_loss_and_grads(resumed_params, targets, curvature)[1])
    assert all(torch.equal(a, b) for a, b in zip(params, resumed_params))


def test_load_state_dict_refuses_another_optimizer() -> None:
    params, _, _ = _quadratic()
    adam = optim.Optimizer(params, "adam").state_dict()
    with pytest.raises(ValueError, match="does not match"):
        optim.Optimizer(params, "sgd").load_state_dict(adam)
    amsgrad = optim.Optimizer(params, {"name": "adam", "amsgrad": True})
    with pytest.raises(ValueError, match="velocity_hat"):
        amsgrad.load_state_dict(adam)


@pytest.mark.parametrize("case", TABLE)
def test_learning_rate_change_takes_effect_without_rebuilding(case: str) -> None:
    """Setting learning_rate mid-run equals resuming the same state with the new rate, and differs from not setting it."""
    params, targets, curvature = _quadratic()
    opt = optim.Optimizer(params, TABLE[case])
    for _ in range(3):
        opt.step(_loss_and_grads(params, targets, curvature)[1])
    snapshot = opt.state_dict()
    unchanged_params = [p.clone() for p in params]
    unchanged = optim.Optimizer(unchanged_params, TABLE[case])
    unchanged.load_state_dict(snapshot)
    new_lr = opt.learning_rate / 10
    opt.learning_rate = new_lr
    assert opt.learning_rate == pytest.approx(new_lr)
    expected_params = [p.clone() for p in params]
    expected = optim.Optimizer(expected_params, {**TABLE[case], "learning_rate": new_lr})
    expected.load_state_dict({**snapshot, "hp.learning_rate": torch.tensor(new_lr)})
    for _ in range(3):
        opt.step(_loss_and_grads(params, targets, curvature)[1])
        expected.step(_loss_and_grads(expected_params, targets, curvature)[1])
        unchanged.step(_loss_and_grads(unchanged_params, targets, curvature)[1])
    assert all(torch.equal(a, b) for a, b in zip(params, expected_params))
    assert not all(torch.equal(a, b) for a, b in zip(params, unchanged_params))


# ---------------------------------------------------------------------------------------------
# resolve()

KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "adamw": {
        "learning_rate": 0.001,
        "weight_decay": 0.004,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
    },
    "adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
}
COMMON = {"decay": 0.0, "weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None}


@pytest.mark.parametrize("name", KERAS_DEFAULTS)
def test_resolve_fills_keras_defaults_exactly(name: str) -> None:
    expected = {"name": name, **COMMON, **KERAS_DEFAULTS[name]}
    assert optim.resolve(name) == expected
    assert optim.resolve({"name": name}) == expected
    assert list(optim.resolve(name)) == [
        "name",
        *KERAS_DEFAULTS[name],
        *(k for k in COMMON if k not in KERAS_DEFAULTS[name]),
    ]


@pytest.mark.parametrize("case", TABLE)
def test_resolve_is_idempotent_and_json_able(case: str) -> None:
    resolved = optim.resolve(TABLE[case])
    assert optim.resolve(resolved) == resolved
    assert json.loads(json.dumps(resolved)) == resolved


def test_keras_defaults_table_covers_every_optimizer() -> None:
    assert set(KERAS_DEFAULTS) == set(optim.OPTIMIZERS)


@pytest.mark.parametrize(
    "spelling,name", [("SGD", "sgd"), ("RMSprop", "rmsprop"), ("Adam", "adam"), (" Nadam ", "nadam")]
)
def test_resolve_names_are_case_insensitive(spelling: str, name: str) -> None:
    assert optim.resolve(spelling)["name"] == name


def test_resolve_normalizes_values() -> None:
    got = optim.resolve({"name": "SGD", "lr": 1, "momentum": 0.9, "nesterov": True, "decay": 1e-6})
    assert got["learning_rate"] == 1.0 and isinstance(got["learning_rate"], float)
    assert (got["momentum"], got["nesterov"], got["decay"]) == (0.9, True, 1e-6)


@pytest.mark.parametrize(
    "config,path,fragment",
    [
        ("adamm", "optimizer", "did you mean 'adam'"),
        ({"name": "rmsprob"}, "optimizer.name", "did you mean 'rmsprop'"),
        ("momentum", "optimizer", "momentum = 0.9"),
        ({"name": "adam", "beta1": 0.9}, "optimizer.beta1", "did you mean 'beta_1'"),
        ({"name": "adam", "momentum": 0.9}, "optimizer.momentum", "allowed: amsgrad, beta_1"),
        ({"name": "sgd", "momentum": 1.5}, "optimizer.momentum", "[0, 1]"),
        ({"name": "adam", "beta_2": 1.0}, "optimizer.beta_2", "[0, 1)"),
        ({"name": "adam", "learning_rate": 0.0}, "optimizer.learning_rate", "(0, inf)"),
        ({"name": "adam", "learning_rate": "fast"}, "optimizer.learning_rate", "must be a number"),
        ({"name": "sgd", "nesterov": 1}, "optimizer.nesterov", "true or false"),
        ({"name": "sgd", "clipnorm": 1.0, "clipvalue": 1.0}, "optimizer.clipvalue", "only one of"),
        ({"name": "adamw", "weight_decay": None}, "optimizer.weight_decay", "number"),
        ({"name": "adam", "use_ema": True}, "optimizer.use_ema", "does not support"),
        ({"name": "adam", "lr": 0.1, "learning_rate": 0.1}, "optimizer.lr", "not both"),
        ({"learning_rate": 0.1}, "optimizer.name", "needs a name"),
    ],
)
def test_resolve_refuses_with_the_path(config: Any, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        optim.resolve(config)
    assert info.value.path == path
    assert fragment in str(info.value)


def test_resolve_uses_the_given_path_and_lists_allowed_keys() -> None:
    with pytest.raises(SpecError) as info:
        optim.resolve({"name": "sgd", "momentun": 0.9}, path="variants[2].optimizer")
    assert info.value.path == "variants[2].optimizer.momentun"
    assert info.value.allowed is not None and "momentum" in info.value.allowed
    assert "did you mean 'momentum'" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Population form: K members stacked, one hyper-parameter value each

POPULATIONS: dict[str, list[dict[str, Any]]] = {
    "sgd_momentum_mixed": [
        {"name": "sgd", "learning_rate": 0.1},
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "decay": 0.1},
        {"name": "sgd", "learning_rate": 0.2, "momentum": 0.5, "weight_decay": 0.01},
    ],
    "sgd_nesterov": [
        {"name": "sgd", "learning_rate": lr, "momentum": 0.9, "nesterov": True} for lr in (0.1, 0.01, 0.3)
    ],
    "rmsprop_centered_momentum": [
        {"name": "rmsprop", "learning_rate": 0.01, "rho": rho, "momentum": mom, "centered": True}
        for rho, mom in ((0.9, 0.0), (0.8, 0.5), (0.95, 0.9))
    ],
    "adam_amsgrad": [
        {"name": "adam", "learning_rate": lr, "beta_1": b1, "amsgrad": True}
        for lr, b1 in ((0.1, 0.9), (0.01, 0.5), (0.05, 0.0))
    ],
    "adam_clipnorm": [{"name": "adam", "clipnorm": c} for c in (0.1, 1.0, 10.0)],
    "adam_global_clipnorm": [{"name": "adam", "global_clipnorm": c} for c in (0.1, 1.0, 10.0)],
    "sgd_clipvalue": [{"name": "sgd", "clipvalue": c} for c in (0.1, 0.5, 10.0)],
    "adamw": [{"name": "adamw", "weight_decay": wd} for wd in (0.004, 0.1, 0.0)],
    "adagrad": [{"name": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": v} for v in (0.1, 0.0, 1.0)],
    "adamax": [{"name": "adamax", "learning_rate": 0.1, "beta_2": b2} for b2 in (0.999, 0.9, 0.5)],
    "nadam": [{"name": "nadam", "learning_rate": 0.1, "beta_1": b1} for b1 in (0.9, 0.5, 0.99)],
    "adadelta": [{"name": "adadelta", "learning_rate": 1.0, "rho": rho} for rho in (0.95, 0.5, 0.9)],
}


def test_populations_cover_every_optimizer() -> None:
    assert {m[0]["name"] for m in POPULATIONS.values()} == set(optim.OPTIMIZERS)


@pytest.mark.parametrize("case", POPULATIONS)
def test_population_update_equals_each_member_alone(case: str) -> None:
    configs = POPULATIONS[case]
    k = len(configs)
    gen = torch.Generator().manual_seed(1)
    shapes = [(5, 3), (5,), (2, 3, 2, 2)]
    members = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(k)]
    grads_seq = [[[torch.randn(s, generator=gen) for s in shapes] for _ in range(k)] for _ in range(3)]

    stacked = [torch.stack([members[i][j] for i in range(k)]) for j in range(len(shapes))]
    population = optim.PopulationOptimizer(stacked, configs)
    singles = [optim.Optimizer([p.clone() for p in member], cfg) for member, cfg in zip(members, configs)]
    for grads in grads_seq:
        population.step([torch.stack([grads[i][j] for i in range(k)]) for j in range(len(shapes))])
        for i, single in enumerate(singles):
            single.step(grads[i])
    for i, single in enumerate(singles):
        for j, p in enumerate(single.params):
            torch.testing.assert_close(stacked[j][i], p, rtol=1e-6, atol=1e-7)


def test_population_functions_take_per_member_tensors() -> None:
    """The update rule itself (no wrapper): (K,) hyper-parameters against stacked parameters."""
    configs = [optim.resolve({"name": "adam", "learning_rate": lr}) for lr in (0.1, 0.2, 0.3)]
    params = [torch.zeros(3, 4)]
    hp = optim.hyperparameters(configs)
    assert hp["learning_rate"].shape == (3,)
    opts = optim.merge_options(configs)
    definition = optim.OPTIMIZERS["adam"]
    state = definition.init(params, hp, opts)
    step = torch.zeros((), dtype=torch.int64)
    optim.apply_gradients(definition, params, [torch.ones(3, 4)], state, hp, step, opts)
    # Adam's first step with a constant gradient moves each member by its learning rate.
    torch.testing.assert_close(params[0], -torch.tensor([[0.1], [0.2], [0.3]]).expand(3, 4), rtol=1e-5, atol=1e-6)
    assert step.item() == 1


def test_population_learning_rates_are_per_member() -> None:
    population = optim.PopulationOptimizer([torch.zeros(2, 3)], [{"name": "sgd", "decay": 1.0}, "sgd"])
    population.step([torch.ones(2, 3)])
    population.set_learning_rate(1, 0.5)
    assert population.learning_rates == pytest.approx([0.01, 0.5])
    assert population.current_lrs() == pytest.approx([0.01 / 2, 0.5])


def test_population_members_must_share_the_code_path() -> None:
    with pytest.raises(ValueError, match="amsgrad"):
        optim.merge_options([optim.resolve("adam"), optim.resolve({"name": "adam", "amsgrad": True})])
    with pytest.raises(ValueError, match="one optimizer"):
        optim.merge_options([optim.resolve("adam"), optim.resolve("sgd")])
    with pytest.raises(ValueError, match="clipnorm"):
        optim.merge_options([optim.resolve("adam"), optim.resolve({"name": "adam", "clipnorm": 1.0})])
