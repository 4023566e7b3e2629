"""trainlab against its peers on the same work, in one run: medians and ratios.

    .venv/bin/python bench/run.py              # every benchmark (about 30 minutes on 2 cores)
    .venv/bin/python bench/run.py --only 1     # one of them
    .venv/bin/python bench/run.py --only 4,5   # pure SGD and full batch (about 10 minutes)

1. MLP 784-128-64-10 on MNIST (report A split: 55000 train, 5000 validation), SGD at batch 32
   and 128: seconds per trial-epoch for trainlab one model at a time, trainlab population (K=8,
   compiled), a plain PyTorch loop, Keras 3 ``fit`` on TensorFlow and on JAX; and the floor, the
   epoch's FLOPs over this machine's measured matmul peak.
2. Report A section 3 (six optimizers at Keras defaults) x 3 seeds x 5 epochs (``--six 2x3,3x5``
   for other sizes): wall time of ``trainlab run`` vs the same ``model.fit`` calls on
   Keras/TensorFlow, whole processes alternated ``--repeats`` times, and their final validation
   accuracies side by side.
3. The CNN (conv32-pool-conv64-pool-dense): seconds per epoch, trainlab (NCHW and channels_last,
   and a population of 3 per trial-epoch) vs Keras on TensorFlow.
4. Pure SGD (report B): the MLP at batch size 1, seconds per epoch of 55000 steps, extrapolated
   from ``--pure-steps`` steps: trainlab (the lowered step, the autograd loop, a population of 8),
   plain PyTorch loops, Keras on TensorFlow and on JAX; plain SGD and SGD with decay and momentum.
5. Full-batch gradient descent (report B, 1000 epochs): seconds per epoch of one step over all
   55000 images plus validation, trainlab alone and end to end through the store (checkpoints
   every 10 s, and every epoch), plain PyTorch, Keras on TensorFlow; and the 1000 epochs extrapolated.
6. Start-up: a whole ``trainlab run`` of a study that trains one step, MNIST cached, against a
   process that only imports torch; and a study whose plan compiles, run with a cold and a warm
   torch compile cache (``TORCHINDUCTOR_CACHE_DIR``).
7. Report E's MLP grid row (512-256, dropout 0.2 / 0.25 / 0.3, Adam, batch 128): ``trainlab run``
   with the three rates in one population against ``--population 1`` and against Keras on
   TensorFlow fitting the three models, whole processes alternated ``--repeats`` times; and the
   three rates one at a time against one population, per trial-epoch, for that row and report
   A's MLP (128-64) at batch 32.
8. Benchmark 2's population step by population size (the six optimizers stacked 1, 2 and 3
   times): milliseconds per member-step, and the floor they set on benchmark 2's training time.

The Keras peer runs in this Python, or in the one ``TRAINLAB_PEER_PYTHON`` names.

Every epoch includes the validation pass, for every framework (benchmark 4 times training steps
only: its validation pass is the same few hundredths of a second as in benchmark 1). Epochs that include a compile
(Keras' tracing, trainlab's ``torch.compile``) are left out of the medians and reported apart.
Results are printed and written to ``bench/results/DATE.json`` (``DATE-45.json`` for ``--only 4,5``;
``-run2`` and so on for later runs of the same day).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainlab import data as datasets  # noqa: E402
from trainlab import models, spec  # noqa: E402
from trainlab.engine import Tensors, fit  # noqa: E402
from trainlab.engine.population import Member, fit_population  # noqa: E402
from trainlab.optim import Optimizer  # noqa: E402
from trainlab.trial import TrainSettings  # noqa: E402

MLP = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
CNN = [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
SPLIT = {"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}}


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_peak() -> float:
    """Measured float32 matmul throughput of this machine, GFLOP/s: the best rate over square
    products of several sizes, each repeated for about half a second."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.rand(n, n), torch.rand(n, n)
        a @ b
        reps = max(3, int(1e10 / (2 * n**3)))
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, reps * 2 * n**3 / (time.perf_counter() - began) / 1e9)
    return best


MACS = 784 * 128 + 128 * 64 + 64 * 10


def mlp_flops(n: int, exact: bool = False) -> float:
    """FLOPs of one MLP training epoch over ``n`` examples.

    Convention (as DESIGN.md counts it): 3 x the forward pass (forward, gradient of the inputs,
    gradient of the weights). ``exact``: the first layer's input gradient is not computed, so
    2 x MACs (forward) + 2 x MACs (weights) + 2 x (MACs - 784 x 128) (inputs).
    """
    if exact:
        return 2 * (3 * MACS - 784 * 128) * n
    return 3 * 2 * MACS * n


def tensors() -> tuple[Tensors, Any]:
    prepared = datasets.prepare(SPLIT)
    t = Tensors(
        *(torch.from_numpy(getattr(prepared, k)) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"))
    )
    return t, prepared


def trial_spec(layers: list[dict[str, Any]], optimizer: Any, batch: int | str, epochs: int) -> dict[str, Any]:
    study = spec.from_dict(
        {
            "data": SPLIT,
            "model": {"layers": layers},
            "optimizer": optimizer,
            "train": {"epochs": epochs, "batch_size": batch, "keep": "last"},
            "study": {"seeds": [0]},
        }
    )
    return study.variants[0].spec


def trainlab_single(
    t: Tensors,
    layers: list[dict[str, Any]],
    batch: int,
    epochs: int,
    channels_last: bool = False,
    optimizer: Any = "sgd",
) -> list[float]:
    """Seconds of each epoch of one model trained alone by trainlab's ``fit``."""
    s = trial_spec(layers, optimizer, batch, epochs)
    net = models.build(s["model"], (1, 28, 28), 0)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        t = Tensors(
            *(
                x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                for x in (t.x_train, t.y_train, t.x_val, t.y_val, t.x_test, t.y_test)
            )
        )
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
    result = fit(net, opt, t, TrainSettings.of(s), "classification", seed=0)
    return [h["seconds"] for h in result.history]


def trainlab_population(
    t: Tensors,
    batch: int | str,
    epochs: int,
    k: int = 8,
    layers: list[dict[str, Any]] | None = None,
    compile: bool = True,
) -> list[float]:
    """Per-member share of each epoch's seconds, K members with different learning rates."""
    lrs = [0.01 * 2 ** (i / 2 - 2) for i in range(k)]
    specs = [trial_spec(layers or MLP, {"name": "sgd", "learning_rate": lr}, batch, epochs) for lr in lrs]
    return population_seconds(t, specs, compile=compile)


def population_seconds(
    t: Tensors, specs: list[dict[str, Any]], compile: bool = True, distinct_inits: bool = False
) -> list[float]:
    """Per-member share of each epoch's seconds of ``specs`` trained as one population by
    ``fit_population``; every member starts from init seed 0, or member i from seed i with
    ``distinct_inits``."""
    members = [
        Member(models.build(s["model"], (1, 28, 28), i if distinct_inits else 0), s["optimizer"], TrainSettings.of(s))
        for i, s in enumerate(specs)
    ]
    results = fit_population(members, t, "classification", seed=0, compile=compile)
    return [h["seconds"] for h in results[0].history]


def report_b_mlp() -> nn.Module:
    """Report B's MLP 784-128-64-10 in plain PyTorch, its initial weights seeded alike in every peer run."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def plain_pytorch(t: Tensors, batch: int, epochs: int) -> list[float]:
    """The loop a PyTorch user writes: nn.Sequential, torch.optim.SGD, pre-shuffled tensor slices."""
    net = report_b_mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        order = torch.randperm(len(t.x_train))
        xs, ys = t.x_train[order], t.y_train[order]
        net.train()
        for i in range(0, len(xs), batch):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xs[i : i + batch]), ys[i : i + batch]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            (net(t.x_val).argmax(1) == t.y_val).float().mean().item()
        seconds.append(time.perf_counter() - began)
    return seconds


PEER_PYTHON = os.environ.get("TRAINLAB_PEER_PYTHON", sys.executable)
"""The Python that runs the Keras peer: this one, or another environment with TensorFlow, Keras and
JAX (``TRAINLAB_PEER_PYTHON=/path/to/python``), so that the peers need not share trainlab's."""


def keras(backend: str, data_file: Path, **kw: Any) -> dict[str, Any]:
    args = [PEER_PYTHON, str(ROOT / "bench" / "keras_peer.py"), "--data", str(data_file)]
    for key, value in kw.items():
        args += [f"--{key}", str(value)]
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    began = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"keras on {backend} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - began
    return out


def export_arrays(prepared: Any, folder: Path) -> Path:
    path = folder / "mnist.npz"
    np.savez(path, x_train=prepared.x_train, y_train=prepared.y_train, x_val=prepared.x_val, y_val=prepared.y_val)
    return path


def bench1(t: Tensors, data_file: Path, epochs: int) -> dict[str, Any]:
    peak = matmul_peak()
    print(
        f"matmul peak {peak:.0f} GFLOP/s; an MLP epoch is {mlp_flops(len(t.x_train)) / 1e9:.1f} GFLOP "
        f"(3 x forward; exactly {mlp_flops(len(t.x_train), exact=True) / 1e9:.1f})"
    )
    out: dict[str, Any] = {"matmul_peak_gflops": peak, "batches": {}}
    for batch in (32, 128):
        row: dict[str, Any] = {
            "floor": mlp_flops(len(t.x_train)) / (peak * 1e9),
            "floor (exact FLOPs)": mlp_flops(len(t.x_train), exact=True) / (peak * 1e9),
        }
        row["trainlab single"] = median(trainlab_single(t, MLP, batch, epochs))
        pop = trainlab_population(t, batch, epochs + 1)
        row["trainlab population K=8"] = median(pop[1:])
        row["compile seconds (population, once)"] = (pop[0] - median(pop[1:])) * 8
        row["plain PyTorch"] = median(plain_pytorch(t, batch, epochs))
        for backend in ("tensorflow", "jax"):
            run = keras(backend, data_file, model="mlp", batch=batch, epochs=epochs + 1)
            row[f"Keras/{backend}"] = median(run["runs"][0]["epoch_seconds"][1:])
        out["batches"][str(batch)] = row
        print_bench1(batch, row)
    return out


def print_bench1(batch: int, row: dict[str, Any]) -> None:
    base = row["trainlab population K=8"]
    print(f"\nbenchmark 1: MLP 784-128-64-10, MNIST 55000, SGD, batch {batch}: seconds per trial-epoch (median)")
    for name, value in row.items():
        if name.startswith("compile"):
            print(f"  {name:<36} {value:7.1f}")
            continue
        print(f"  {name:<36} {value:7.3f}   {value / base:6.2f}x the population")
    print(
        f"  population / floor: {base / row['floor']:.2f}x (exact FLOPs: {base / row['floor (exact FLOPs)']:.2f}x); "
        f"Keras/TF / population: {row['Keras/tensorflow'] / base:.1f}x; "
        f"Keras/JAX / population: {row['Keras/jax'] / base:.1f}x"
    )


MLP_MODEL = """[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 128, activation = "relu" },
  { type = "Dense", units = 64, activation = "relu" },
  { type = "Dense", units = 10, activation = "softmax" },
]
"""
"""The MLP 784-128-64-10 of report A, as a study's [model] table: every MNIST MLP benchmark's."""


def mlp_study(name: str, seeds: str, rest: str, data: str = "") -> str:
    """A study of report A's MLP on MNIST's first 55000 / 5000 split: its ``[study]`` head,
    ``[data]`` (with ``data``'s extra keys), :data:`MLP_MODEL`, then ``rest`` (the optimizer,
    training and variants)."""
    head = f'[study]\nname = "{name}"\nseeds = {seeds}\n\n'
    table = '[data]\nname = "mnist"\nsplit = { kind = "first", validation = 5000 }\n' + data
    return head + table + "\n" + MLP_MODEL + rest


SIX = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
SIX_STUDY = mlp_study(
    "six-optimizers",
    "{seeds}",
    """
[train]
epochs = {epochs}
batch_size = 32
keep = "last"

[[compare]]
label = "sgd"
optimizer = "sgd"
[[compare]]
label = "momentum"
optimizer = { name = "sgd", momentum = 0.9 }
[[compare]]
label = "nesterov"
optimizer = { name = "sgd", momentum = 0.9, nesterov = true }
[[compare]]
label = "adagrad"
optimizer = "adagrad"
[[compare]]
label = "rmsprop"
optimizer = "rmsprop"
[[compare]]
label = "adam"
optimizer = "adam"
""",
)


def six_study(seeds: int, epochs: int) -> str:
    """The six-optimizer study at ``seeds`` seeds and ``epochs`` epochs (TOML braces doubled in SIX_STUDY)."""
    text = SIX_STUDY.replace("{seeds}", str(list(range(seeds)))).replace("{epochs}", str(epochs))
    return text


def run_trainlab_study(
    study: Path, store: Path, env: dict[str, str] | None = None, options: tuple[str, ...] = ()
) -> float:
    """Seconds of one whole ``trainlab run`` process on a fresh store; ``env`` adds to its
    environment, ``options`` to its command line."""
    store.unlink(missing_ok=True)
    began = time.perf_counter()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "trainlab.cli", "run", str(study), "--store", str(store)),
            *("--quiet", "--format", "none", *options),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "TRAINLAB_OFFLINE": "1", **(env or {})},
    )
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return seconds


def bench2(data_file: Path, folder: Path, seeds: int, epochs: int, repeats: int) -> dict[str, Any]:
    from trainlab.store import Store

    study = folder / f"six-{seeds}x{epochs}.toml"
    study.write_text(six_study(seeds, epochs))
    store = folder / "six.db"
    ours_runs: list[float] = []
    theirs_runs: list[float] = []
    peer: dict[str, Any] = {}
    for _ in range(repeats):  # alternated, so that a change in the machine's load touches both alike
        ours_runs.append(run_trainlab_study(study, store))
        peer = keras(
            "tensorflow",
            data_file,
            model="mlp",
            batch=32,
            epochs=epochs,
            optimizers=",".join(SIX),
            seeds=",".join(str(s) for s in range(seeds)),
        )
        theirs_runs.append(peer["process_seconds"])
    ours: dict[str, list[float]] = {name: [] for name in SIX}
    populations = []
    with Store.open(store) as db:
        record = db.study("six-optimizers")
        assert record is not None
        for trial in db.trials(record.id):
            ours[trial.label].append(db.epochs(trial.id)[-1].metrics["val_accuracy"])  # type: ignore[arg-type]
            populations.append((trial.plan or {}).get("members"))
    theirs: dict[str, list[float]] = {name: [] for name in SIX}
    for run in peer["runs"]:
        theirs[run["optimizer"]].append(run["val_accuracy"][-1])
    ours_seconds, theirs_seconds = median(ours_runs), median(theirs_runs)
    out = {
        "seeds": seeds,
        "epochs": epochs,
        "trainlab_seconds": ours_runs,
        "keras_tensorflow_seconds": theirs_runs,
        "speedup": theirs_seconds / ours_seconds,
        "population_sizes": populations,
        "val_accuracy": {name: {"trainlab": ours[name], "keras": theirs[name]} for name in SIX},
    }
    print(f"\nbenchmark 2: six optimizers at Keras defaults x {seeds} seeds x {epochs} epochs, MLP on MNIST, batch 32")
    print(f"  whole processes, median of {repeats} (min-max)")
    print(
        f"  trainlab run (end to end)      {ours_seconds:7.1f} s  ({min(ours_runs):.1f}-{max(ours_runs):.1f})"
        f"   population sizes {sorted(set(map(str, populations)))}"
    )
    print(f"  Keras/TensorFlow loop           {theirs_seconds:7.1f} s  ({min(theirs_runs):.1f}-{max(theirs_runs):.1f})")
    print(f"  ratio of medians                {out['speedup']:7.2f}x")
    if seeds > 1:
        print(f"  final validation accuracy, mean ± sd over {seeds} seeds:")
        for name in SIX:
            a, b = ours[name], theirs[name]
            spread = max(statistics.stdev(a), statistics.stdev(b), 1e-9)
            diff = statistics.fmean(a) - statistics.fmean(b)
            print(
                f"    {name:<9} trainlab {statistics.fmean(a):.4f} ± {statistics.stdev(a):.4f}   "
                f"keras {statistics.fmean(b):.4f} ± {statistics.stdev(b):.4f}   "
                f"diff {diff:+.4f} ({abs(diff) / spread:.1f} sd)"
            )
    return out


ONE_STEP_STUDY = mlp_study(
    "one-step",
    "[0]",
    """
[optimizer]
name = "sgd"

[train]
epochs = 1
batch_size = 32
""",
    data="""train_limit = 32
val_limit = 32
test_limit = 32
""",
)


def bench6(folder: Path, repeats: int) -> dict[str, Any]:
    """Start-up: a whole ``trainlab run`` of a study that trains one step (32 images, one epoch),
    with MNIST already cached, against a Python process that only imports torch. The run's time
    bounds the time to its first finished training step from above."""
    study = folder / "one-step.toml"
    study.write_text(ONE_STEP_STUDY)
    store = folder / "one-step.db"
    run_trainlab_study(study, store)  # fills the data cache
    ours, torch_only = [], []
    for _ in range(repeats):
        ours.append(run_trainlab_study(study, store))
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        torch_only.append(time.perf_counter() - began)
    out = {"trainlab_one_step_seconds": ours, "import_torch_seconds": torch_only}
    print(f"\nbenchmark 6: start-up, whole processes, median of {repeats} (min-max)")
    print(f"  trainlab run, one training step  {median(ours):6.2f} s  ({min(ours):.2f}-{max(ours):.2f})")
    low, high = min(torch_only), max(torch_only)
    print(f"  python -c 'import torch'         {median(torch_only):6.2f} s  ({low:.2f}-{high:.2f})")
    return out


COMPILED_STUDY = mlp_study(
    "compiled-sweep",
    "[0]",
    """
[train]
epochs = 6
batch_size = 128

[[compare]]
label = "sgd 0.003"
optimizer = { name = "sgd", learning_rate = 0.003 }
[[compare]]
label = "sgd 0.01"
optimizer = { name = "sgd", learning_rate = 0.01 }
[[compare]]
label = "sgd 0.03"
optimizer = { name = "sgd", learning_rate = 0.03 }
""",
)
"""Three SGD learning rates at one seed: one population of three, whose plan compiles its step
(the nominal eager work ahead, six epochs of MNIST, passes the plan's threshold)."""


def first_epoch_seconds(store: Path) -> float:
    """The population's first epoch, which includes compiling its step: the members' recorded
    seconds of epoch 1 (each a share of the population's time) added up."""
    from trainlab.store import Store

    with Store.open(store) as db:
        record = db.study("compiled-sweep")
        assert record is not None
        return sum(float(db.epochs(t.id)[0].metrics["seconds"]) for t in db.trials(record.id))  # type: ignore[arg-type]


def compiled_results(store: Path) -> tuple[list[bool], dict[str, float]]:
    """Each trial's planned ``compile`` and its final validation accuracy, by label."""
    from trainlab.store import Store

    with Store.open(store) as db:
        record = db.study("compiled-sweep")
        assert record is not None
        trials = db.trials(record.id)
        compiled = [bool((t.plan or {}).get("compile")) for t in trials]
        accuracy = {t.label: float(db.epochs(t.id)[-1].metrics["val_accuracy"]) for t in trials}  # type: ignore[arg-type]
    return compiled, accuracy


def bench6_compile_cache(folder: Path, repeats: int) -> dict[str, Any]:
    """Compiled programs reused across processes: whole ``trainlab run`` processes of a study whose
    plan compiles (:data:`COMPILED_STUDY`), each with torch's compile caches (FX graph and
    AOTAutograd, in ``TORCHINDUCTOR_CACHE_DIR``) in a fresh folder (cold) and in the folder an
    earlier run filled (warm), alternated so that a change in the machine's load touches both
    alike; the one-minute load average is recorded before each process. Every run's final
    validation accuracies are compared: a cache must not change the numbers."""
    study = folder / "compiled.toml"
    study.write_text(COMPILED_STUDY)
    store = folder / "compiled.db"
    warm_dir = folder / "inductor-warm"
    run_trainlab_study(study, store, {"TORCHINDUCTOR_CACHE_DIR": str(warm_dir)})  # fills the warm cache
    compiled, first = compiled_results(store)
    cold: list[float] = []
    warm: list[float] = []
    loads: list[float] = []
    firsts: dict[str, list[float]] = {"cold": [], "warm": []}
    same = True
    for i in range(repeats):
        for runs, cache in ((cold, folder / f"inductor-cold-{i}"), (warm, warm_dir)):
            loads.append(os.getloadavg()[0])
            runs.append(run_trainlab_study(study, store, {"TORCHINDUCTOR_CACHE_DIR": str(cache)}))
            same = same and compiled_results(store)[1] == first
            kind = "cold" if runs is cold else "warm"
            firsts[kind].append(first_epoch_seconds(store))
            print(
                f"  run {i + 1} {kind}: {runs[-1]:.2f} s, first epoch {firsts[kind][-1]:.2f} s "
                f"(load average {loads[-1]:.2f})",
                file=sys.stderr,
                flush=True,
            )
    out = {
        "cold_seconds": cold,
        "warm_seconds": warm,
        "saved_seconds": median(cold) - median(warm),
        "first_epoch_seconds": firsts,
        "load_average_1min": loads,
        "planned_compile": compiled,
        "val_accuracy": first,
        "identical_across_runs": same,
    }
    print(f"\nbenchmark 6b: a study whose plan compiles, whole processes, median of {repeats} (min-max)")
    print(f"  planned compile: {compiled}; final val accuracies identical in every run: {same}")
    print(f"  trainlab run, cold compile cache   {median(cold):6.2f} s  ({min(cold):.2f}-{max(cold):.2f})")
    print(f"  trainlab run, warm compile cache   {median(warm):6.2f} s  ({min(warm):.2f}-{max(warm):.2f})")
    print(f"  saved by the warm cache            {out['saved_seconds']:6.2f} s")
    for kind, values in firsts.items():
        print(f"  first epoch (compiles), {kind}      {median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})")
    print(f"  load average (1 min) before each run: {min(loads):.2f}-{max(loads):.2f}")
    return out


def bench3(t: Tensors, data_file: Path, epochs: int) -> dict[str, Any]:
    row = {
        "trainlab single (NCHW)": median(trainlab_single(t, CNN, 32, epochs)),
        "trainlab single (channels_last)": median(trainlab_single(t, CNN, 32, epochs, channels_last=True)),
        "trainlab population K=3, per trial": median(
            trainlab_population(t, 32, epochs, k=3, layers=CNN, compile=False)
        ),
    }
    run = keras("tensorflow", data_file, model="cnn", batch=32, epochs=epochs + 1)
    row["Keras/tensorflow"] = median(run["runs"][0]["epoch_seconds"][1:])
    print("\nbenchmark 3: CNN conv32-pool-conv64-pool-dense, MNIST 55000, SGD, batch 32: seconds per epoch (median)")
    for name, value in row.items():
        print(f"  {name:<34} {value:7.2f}   Keras/TF is {row['Keras/tensorflow'] / value:4.2f}x this")
    single = min(row["trainlab single (NCHW)"], row["trainlab single (channels_last)"])
    together = row["trainlab population K=3, per trial"]
    print(f"  population of 3 per trial-epoch against the faster single: {single / together:.2f}x")
    return row


def subset(t: Tensors, n: int, val: int) -> Tensors:
    return Tensors(t.x_train[:n], t.y_train[:n], t.x_val[:val], t.y_val[:val], t.x_test, t.y_test)


def trainlab_steps(t: Tensors, optimizer: Any, batch: int | str, epochs: int, *, lowered: bool = True) -> list[float]:
    """Seconds of each epoch of ``fit`` on ``t`` (whatever subset it holds)."""
    s = trial_spec(MLP, optimizer, batch, epochs)  # type: ignore[arg-type]
    net = models.build(s["model"], (1, 28, 28), 0)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
    result = fit(net, opt, t, TrainSettings.of(s), "classification", seed=0, lowered=lowered)
    return [h["seconds"] for h in result.history]


def plain_pure_sgd(t: Tensors, steps: int, *, manual: bool, threads: int | None = None) -> float:
    """Seconds for ``steps`` batch-1 steps of the simple PyTorch loop: torch.optim.SGD (its
    for-loop form, the fastest of its forms here at batch 1), or a hand-written ``p -= lr grad``;
    on ``threads`` intra-op threads (default: as set)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return _plain_pure_sgd(t, steps, manual=manual)
    finally:
        torch.set_num_threads(previous)


def _plain_pure_sgd(t: Tensors, steps: int, *, manual: bool) -> float:
    net = report_b_mlp()
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.01, foreach=False)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = t.x_train[:steps], t.y_train[:steps]
    began = time.perf_counter()
    for i in range(steps):
        loss_fn(net(xs[i : i + 1]), ys[i : i + 1]).backward()
        if manual:
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-0.01)
                    p.grad = None
        else:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return time.perf_counter() - began


def bench4(t: Tensors, data_file: Path, steps: int, reps: int) -> dict[str, Any]:
    """Pure SGD: batch size 1. Each figure is seconds per 55000-step epoch, extrapolated from
    ``steps`` steps (median over ``reps`` interleaved repetitions), validation excluded."""
    n = len(t.x_train)
    part = subset(t, steps, 1)
    scale = n / steps
    momentum = {"name": "sgd", "momentum": 0.9, "decay": 1e-6}
    rows: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds * scale)

    for _ in range(reps):
        add("trainlab, lowered step (default)", median(trainlab_steps(part, "sgd", 1, 2)))
        add("trainlab, autograd loop", median(trainlab_steps(part, "sgd", 1, 2, lowered=False)))
        add("trainlab, decay + momentum, lowered", median(trainlab_steps(part, momentum, 1, 2)))
        add("trainlab, decay + momentum, autograd", median(trainlab_steps(part, momentum, 1, 2, lowered=False)))
        add("plain PyTorch, torch.optim.SGD", plain_pure_sgd(t, steps, manual=False))
        add("plain PyTorch, p -= lr * grad", plain_pure_sgd(t, steps, manual=True))
        add("plain PyTorch, p -= lr * grad, 1 thread", plain_pure_sgd(t, steps, manual=True, threads=1))
    out: dict[str, Any] = {name: median(values) for name, values in rows.items()}
    out["runs"] = rows
    pop = trainlab_population(part, 1, 3)
    out["trainlab population K=8, per trial"] = median(pop[1:]) * scale
    out["compile seconds (population, once)"] = (pop[0] - median(pop[1:])) * 8
    for backend in ("tensorflow", "jax"):
        run = keras(backend, data_file, model="mlp", batch=1, epochs=2, **{"train-limit": steps, "val-limit": 1})
        out[f"Keras/{backend}"] = run["runs"][0]["epoch_seconds"][-1] * scale
    print_bench4(out, steps, reps)
    return out


def print_bench4(out: dict[str, Any], steps: int, reps: int) -> None:
    base = out["trainlab, lowered step (default)"]
    print(
        f"\nbenchmark 4: pure SGD (batch 1), MLP 784-128-64-10, MNIST: seconds per 55000-step epoch, "
        f"extrapolated from {steps} steps (median of {reps}; Keras and the population: one run)"
    )
    for name, value in out.items():
        if name == "runs":
            continue
        if name.startswith("compile"):
            print(f"  {name:<44} {value:8.1f}")
            continue
        print(f"  {name:<44} {value:8.2f}   {value / base:6.2f}x the lowered step")


FULL_STUDY = """
[study]
name = "full-batch"
seeds = [0]

[data]
name = "mnist"
split = {{ kind = "first", validation = 5000 }}

[model]
layers = [
  {{ type = "Flatten" }},
  {{ type = "Dense", units = 128, activation = "relu" }},
  {{ type = "Dense", units = 64, activation = "relu" }},
  {{ type = "Dense", units = 10, activation = "softmax" }},
]

[optimizer]
name = "sgd"

[train]
epochs = {epochs}
batch_size = "full"
"""


def plain_full_batch(t: Tensors, epochs: int) -> list[float]:
    """Full-batch gradient descent as a PyTorch user writes it: one step over the training set,
    then the validation accuracy, per epoch."""
    net = report_b_mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        net.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(t.x_train), t.y_train).backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            (net(t.x_val).argmax(1) == t.y_val).float().mean().item()
        seconds.append(time.perf_counter() - began)
    return seconds


def trainlab_full_run(folder: Path, epochs: int, checkpoint_every: float) -> tuple[float, int]:
    """Wall seconds per epoch of ``run_local`` on the full-batch study, from the store's own
    timestamps (first to last epoch recorded: training, validation, recording and checkpoints),
    and the number of checkpoints written."""
    from trainlab import executors
    from trainlab.store import Store

    study_file = folder / "full.toml"
    study_file.write_text(FULL_STUDY.format(epochs=epochs))
    written = 0
    policy = executors.CheckpointPolicy

    class Counting(policy):  # type: ignore[misc, valid-type]
        def due(self, epoch: int) -> bool:
            nonlocal written
            due = super().due(epoch)
            written += due
            return due

    store_file = folder / f"full-{checkpoint_every}.db"
    store_file.unlink(missing_ok=True)
    executors.CheckpointPolicy = Counting  # type: ignore[misc]
    try:
        with Store.open(store_file) as store:
            executors.run_local(spec.load(study_file), store, checkpoint_every=checkpoint_every)
            record = store.study("full-batch")
            assert record is not None
            stamps = [e.recorded for e in store.epochs(store.trials(record.id)[0].id)]
    finally:
        executors.CheckpointPolicy = policy  # type: ignore[misc]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), written


def bench5(t: Tensors, data_file: Path, folder: Path, epochs: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trainlab fit": median(trainlab_steps(t, "sgd", "full", epochs)[1:]),
        "plain PyTorch": median(plain_full_batch(t, epochs)[1:]),
    }
    for every in (10.0, 0.0):
        per_epoch, written = trainlab_full_run(folder, epochs, every)
        row[f"trainlab run, checkpoint every {every:g} s"] = per_epoch
        row[f"checkpoints written (every {every:g} s, {epochs} epochs)"] = written
    run = keras("tensorflow", data_file, model="mlp", batch=0, epochs=epochs)
    row["Keras/tensorflow"] = median(run["runs"][0]["epoch_seconds"][1:])
    base = row["trainlab run, checkpoint every 10 s"]
    print(
        f"\nbenchmark 5: full-batch gradient descent, MLP 784-128-64-10, MNIST 55000 + 5000 validation: "
        f"seconds per epoch (median of {epochs - 1} epochs after the first)"
    )
    for name, value in row.items():
        if name.startswith("checkpoints"):
            print(f"  {name:<48} {value:8d}")
            continue
        print(
            f"  {name:<48} {value:8.3f}   {value / base:5.2f}x trainlab run   1000 epochs: {value * 1000 / 60:6.1f} min"
        )
    return row


DROPOUTS = [0.2, 0.25, 0.3]
GRID_ROW_STUDY = mlp_study(
    "report-e-row",
    "[0]",
    "",
).replace(
    MLP_MODEL,
    """[model]
layers = [
  { type = "Flatten" },
  { type = "Dense", units = 512, activation = "relu" },
  { type = "Dropout", rate = 0.2 },
  { type = "Dense", units = 256, activation = "relu" },
  { type = "Dropout", rate = 0.2 },
  { type = "Dense", units = 10, activation = "softmax" },
]

[optimizer]
name = "adam"

[train]
epochs = {epochs}
batch_size = 128
"""
    + "".join(
        f'\n[[compare]]\nlabel = "dropout {r}"\n"model.layers[2].rate" = {r}\n"model.layers[4].rate" = {r}\n'
        for r in DROPOUTS
    ),
)
"""Report E's MLP grid row: 512-256 with dropout 0.2 / 0.25 / 0.3 after each hidden layer, Adam,
batch 128, on MNIST's shapes (Fashion-MNIST's are the same)."""


def bench7(t: Tensors, data_file: Path, folder: Path, epochs: int, repeats: int) -> dict[str, Any]:
    """Report E's MLP grid row: its three dropout rates as one population (the plan's default, the
    rates living in tensors) against the same trials one at a time (``--population 1``) and
    against Keras on TensorFlow fitting the three models in one process; whole processes,
    alternated. Then the same three rates' seconds per trial-epoch in one process, for that
    row and for report A's smaller MLP at batch 32 (:func:`dropout_trial_epochs`)."""
    from trainlab.store import Store

    study = folder / "report-e-row.toml"
    study.write_text(GRID_ROW_STUDY.replace("{epochs}", str(epochs)))
    together, alone, theirs = [], [], []
    accuracy: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        together.append(run_trainlab_study(study, folder / "row-together.db"))
        alone.append(run_trainlab_study(study, folder / "row-alone.db", options=("--population", "1")))
        peer = keras(
            "tensorflow",
            data_file,
            model="mlp-e",
            batch=128,
            epochs=epochs,
            optimizers="adam",
            dropouts=",".join(map(str, DROPOUTS)),
        )
        theirs.append(peer["process_seconds"])
    for name in ("together", "alone"):
        with Store.open(folder / f"row-{name}.db") as db:
            record = db.study("report-e-row")
            assert record is not None
            for trial in db.trials(record.id):
                plan = trial.plan or {}
                accuracy.setdefault(trial.label, {})[f"trainlab {name}"] = db.epochs(trial.id)[-1].metrics[
                    "val_accuracy"
                ]  # type: ignore[assignment]
                accuracy[trial.label][f"members {name}"] = plan.get("members", 0)
    for run in peer["runs"]:
        accuracy[f"dropout {run['dropout']}"]["keras"] = run["val_accuracy"][-1]
    out = {
        "epochs": epochs,
        "trainlab_population_seconds": together,
        "trainlab_alone_seconds": alone,
        "keras_tensorflow_seconds": theirs,
        "population_over_alone": median(alone) / median(together),
        "keras_over_population": median(theirs) / median(together),
        "by_variant": accuracy,
    }
    print(
        f"\nbenchmark 7: report E's MLP grid row (512-256, dropout {DROPOUTS}, Adam, batch 128), "
        f"{epochs} epochs, whole processes, median of {repeats} (min-max)"
    )
    for name, runs in (
        ("trainlab run, one population of 3", together),
        ("trainlab run --population 1", alone),
        ("Keras/TensorFlow, 3 fits", theirs),
    ):
        print(f"  {name:<36} {median(runs):7.1f} s  ({min(runs):.1f}-{max(runs):.1f})")
    print(f"  population over one at a time      {out['population_over_alone']:7.2f}x")
    print(f"  Keras/TF over the population       {out['keras_over_population']:7.2f}x")
    for label, row in accuracy.items():
        print(f"  {label:<14} " + "  ".join(f"{k} {v:.4f}" if v < 1 else f"{k} {v:g}" for k, v in row.items()))
    out["trial_epochs"] = dropout_trial_epochs(t, epochs + 1)
    return out


def dropout_layers(units: tuple[int, int], rate: float) -> list[dict[str, Any]]:
    """An MLP with two hidden layers of ``units``, each followed by Dropout ``rate``."""
    return [
        {"type": "Flatten"},
        {"type": "Dense", "units": units[0], "activation": "relu"},
        {"type": "Dropout", "rate": rate},
        {"type": "Dense", "units": units[1], "activation": "relu"},
        {"type": "Dropout", "rate": rate},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]


def dropout_trial_epochs(t: Tensors, epochs: int, examples: int = 16000) -> dict[str, Any]:
    """Seconds per trial-epoch of three dropout rates trained one at a time and as one compiled
    population, in this process, for report E's row (512-256, batch 128) and report A's MLP
    (128-64, batch 32), Adam; ``examples`` training images and 32 validation images (medians of
    the epochs after the first)."""
    data = Tensors(t.x_train[:examples], t.y_train[:examples], t.x_val[:32], t.y_val[:32], t.x_test, t.y_test)
    out: dict[str, Any] = {}
    print(f"  seconds per trial-epoch in one process ({examples} images, medians of {epochs - 1} epochs):")
    for units, batch in (((512, 256), 128), ((128, 64), 32)):
        layers = [dropout_layers(units, r) for r in DROPOUTS]
        alone = [median(trainlab_single(data, one, batch, epochs, optimizer="adam")[1:]) for one in layers]
        together = population_seconds(data, [trial_spec(one, "adam", batch, epochs) for one in layers])
        row = {"alone": statistics.fmean(alone), "population of 3": median(together[1:])}
        name = f"{units[0]}-{units[1]}, batch {batch}"
        out[name] = row
        print(
            f"    {name:<20} alone {row['alone']:6.3f}   population of 3 {row['population of 3']:6.3f}   "
            f"population is {row['alone'] / row['population of 3']:4.2f}x as fast"
        )
    return out


SIX_OPTIMIZERS: list[Any] = [
    "sgd",
    {"name": "sgd", "momentum": 0.9},
    {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "adagrad",
    "rmsprop",
    "adam",
]
"""Benchmark 2's six optimizers as optimizer configs, in its order."""


def bench8(t: Tensors, epochs: int, examples: int = 16000) -> dict[str, Any]:
    """Benchmark 2's step by population size: the six optimizers stacked once, twice and three
    times (K = 6, 12, 18, as one population per seed or, were seeds stacked too, one per study
    at 2 or 3 seeds), compiled as the run plan compiles them, on ``examples`` training images at
    batch 32 and 32 validation images (so that the epoch is nearly all steps). Prints each
    size's milliseconds per step and per member-step (medians of the epochs after the first),
    and what benchmark 2's work costs at that rate: the floor of its training time."""
    data = Tensors(t.x_train[:examples], t.y_train[:examples], t.x_val[:32], t.y_val[:32], t.x_test, t.y_test)
    steps = -(-examples // 32)
    out: dict[str, Any] = {"examples": examples, "sizes": {}}
    print(f"\nbenchmark 8: benchmark 2's population step, six optimizers x r, batch 32, compiled, {examples} images")
    for copies in (1, 2, 3):
        specs = [trial_spec(MLP, o, 32, epochs) for o in SIX_OPTIMIZERS * copies]
        k = len(specs)
        per_member = median(population_seconds(data, specs, distinct_inits=True)[1:]) / steps
        row = {"members": k, "ms_per_step": per_member * k * 1000, "ms_per_member_step": per_member * 1000}
        for seeds, six_epochs in ((2, 3), (3, 5)):
            row[f"{seeds}x{six_epochs} training floor s"] = per_member * 6 * seeds * six_epochs * 1719
        out["sizes"][str(k)] = row
        print(
            f"  K = {k:2d}: {row['ms_per_step']:6.2f} ms a step, {row['ms_per_member_step']:5.3f} ms a member-step; "
            f"benchmark 2's steps at this rate: 2x3 {row['2x3 training floor s']:5.1f} s, "
            f"3x5 {row['3x5 training floor s']:5.1f} s"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8", help="which benchmarks, e.g. 1,3")
    parser.add_argument(
        "--six", default="3x5", metavar="SEEDSxEPOCHS[,...]", help="sizes of benchmark 2, e.g. 2x3,3x5 (default 3x5)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="whole-process repetitions in benchmarks 2 and 6")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement in benchmarks 1 and 3")
    parser.add_argument("--pure-steps", type=int, default=5000, help="batch-1 steps per measurement in benchmark 4")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement in benchmark 4")
    parser.add_argument("--full-epochs", type=int, default=30, help="full-batch epochs per measurement in benchmark 5")
    args = parser.parse_args()
    which = {int(x) for x in args.only.split(",")}
    t, prepared = tensors()
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data_file = export_arrays(prepared, folder)
        if 1 in which:
            results["benchmark 1"] = bench1(t, data_file, args.epochs)
        if 2 in which:
            for size in args.six.split(","):
                seeds, epochs = (int(x) for x in size.split("x"))
                results[f"benchmark 2 ({size})"] = bench2(data_file, folder, seeds, epochs, args.repeats)
        if 3 in which:
            results["benchmark 3"] = bench3(t, data_file, max(2, args.epochs // 2))
        if 4 in which:
            results["benchmark 4"] = bench4(t, data_file, args.pure_steps, args.reps)
        if 5 in which:
            results["benchmark 5"] = bench5(t, data_file, folder, args.full_epochs)
        if 6 in which:
            results["benchmark 6"] = bench6(folder, args.repeats)
            results["benchmark 6b"] = bench6_compile_cache(folder, args.repeats)
        if 7 in which:
            results["benchmark 7"] = bench7(t, data_file, folder, max(2, args.epochs - 1), args.repeats)
        if 8 in which:
            results["benchmark 8"] = bench8(t, args.epochs)
    suffix = "" if which == {1, 2, 3, 4, 5, 6, 7, 8} else "-" + "".join(str(b) for b in sorted(which))
    out = ROOT / "bench" / "results" / f"{results['date']}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    run = 2
    while out.exists():  # a second run of the same benchmarks on one day keeps the first's file
        out = out.with_name(f"{results['date']}{suffix}-run{run}.json")
        run += 1
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
