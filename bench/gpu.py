"""trainlab on one GPU, in one prepared run of under 8 minutes: populations, CNN epochs, mixed precision.

    .venv/bin/python bench/gpu.py            # on a CUDA machine (--device auto takes the GPU)
    .venv/bin/python bench/gpu.py --smoke    # anywhere, the CPU too: every part on little data

(a) SGD MLP 784-128-64-10 on MNIST (55000 train, 5000 validation), batch 32: seconds per
    trial-epoch of a trainlab population at K = 1, 8, 64 and 256 members (eager), against a
    plain PyTorch loop (nn.Sequential, torch.optim.SGD) on the same device; the ratio is the
    population's trial throughput over the plain loop's.
(b) Report A's CNN (conv32-pool-conv64-pool-dense), SGD at batch 32: seconds per epoch.
(c) Report E's largest CNN (3 blocks of Conv2D 3x3 + BatchNormalization + MaxPooling + Dropout
    from 128 filters, SGD with Nesterov momentum, batch 256): one epoch in float32 and one in
    bfloat16 (on MNIST, which has Fashion-MNIST's shapes and is present wherever trainlab is).
(d) A small CNN trained with Adam (batch 128) until its MNIST test accuracy reaches 99%: the
    training time, and the whole process (a fresh Python: imports, CUDA start, data loading,
    training) timed from outside.

Every epoch includes the validation pass. Each figure is the median of the epochs after the
first (which carries CUDA's and cuDNN's start-up), and the first is shown apart. Everything runs
under trainlab's deterministic GPU settings (:func:`trainlab.devices.deterministic`), the plain
loop too, so that both do the same arithmetic. Results are printed and written to
``bench/results/gpu-DATE.json`` (not with ``--smoke``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainlab import devices, models, spec  # noqa: E402
from trainlab.data.cache import DataCache, Tensors  # noqa: E402
from trainlab.engine import evaluate, fit  # noqa: E402
from trainlab.engine.population import Member, fit_population  # noqa: E402
from trainlab.optim import Optimizer  # noqa: E402
from trainlab.trial import TrainSettings  # noqa: E402

MLP = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
CNN_A = [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def block(filters: int) -> list[dict[str, Any]]:
    return [
        {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "BatchNormalization"},
        {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
        {"type": "Dropout", "rate": 0.2},
    ]


CNN_E = [
    *block(128),
    *block(256),
    *block(512),
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
NESTEROV = {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True}
CNN_D = [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Dropout", "rate": 0.25},
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dropout", "rate": 0.5},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
TARGET = 0.99

FULL = {"ks": [1, 8, 64, 256], "epochs": 3, "limits": {}, "max_epochs_d": 15}
SMOKE = {
    "ks": [1, 2],
    "epochs": 2,
    "limits": {"train_limit": 256, "val_limit": 64, "test_limit": 64},
    "max_epochs_d": 1,
}


def data_spec(limits: dict[str, int]) -> dict[str, Any]:
    return {"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}, **limits}


def trial(layers: list[dict[str, Any]], optimizer: Any, batch: int, epochs: int, **train: Any) -> dict[str, Any]:
    """A resolved trial spec, as a study file gives it."""
    study = spec.from_dict(
        {
            "data": {"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}},
            "model": {"layers": layers},
            "optimizer": optimizer,
            "train": {"epochs": epochs, "batch_size": batch, "keep": "last", **train},
            "study": {"seeds": [0]},
        }
    )
    return study.variants[0].spec


def steady(seconds: list[float]) -> dict[str, float]:
    """The first epoch apart, the median of the others."""
    later = seconds[1:] or seconds
    return {"first": seconds[0], "median": statistics.median(later)}


def population(t: Tensors, device: torch.device, k: int, epochs: int) -> dict[str, float]:
    """Seconds per trial-epoch of K SGD MLPs (learning rates spread over two octaves), trained together."""
    lrs = [0.01 * 2 ** (4 * i / max(k - 1, 1) - 2) for i in range(k)]
    specs = [trial(MLP, {"name": "sgd", "learning_rate": lr}, 32, epochs) for lr in lrs]
    members = [
        Member(models.build(s["model"], (1, 28, 28), 0).to(device), s["optimizer"], TrainSettings.of(s)) for s in specs
    ]
    results = fit_population(members, t, "classification", seed=0)
    return steady([h["seconds"] for h in results[0].history])  # already each member's share


def plain_loop(t: Tensors, device: torch.device, epochs: int) -> dict[str, float]:
    """The MLP as a plain PyTorch user writes it: nn.Sequential, torch.optim.SGD, a shuffled epoch
    and a validation pass, data resident on the device."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    ).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    n, seconds = len(t.x_train), []
    for _ in range(epochs):
        began = time.perf_counter()
        order = torch.randperm(n, device=device)
        xs, ys = t.x_train[order], t.y_train[order]
        for i in range(0, n, 32):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xs[i : i + 32]), ys[i : i + 32]).backward()
            opt.step()
        with torch.no_grad():
            float((net(t.x_val).argmax(1) == t.y_val).float().mean())
        seconds.append(time.perf_counter() - began)
    return steady(seconds)


def alone(
    t: Tensors,
    device: torch.device,
    layers: list[dict[str, Any]],
    optimizer: Any,
    batch: int,
    epochs: int,
    **train: Any,
) -> dict[str, float]:
    """Seconds per epoch of one trainlab model trained alone (the autograd loop)."""
    s = trial(layers, optimizer, batch, epochs, **train)
    net = models.build(s["model"], (1, 28, 28), 0).to(device)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
    result = fit(net, opt, t, TrainSettings.of(s), "classification", seed=0, lowered=False)
    return {**steady([h["seconds"] for h in result.history]), "val_accuracy": result.history[-1]["val_accuracy"]}


def part_a(t: Tensors, device: torch.device, conf: dict[str, Any]) -> dict[str, Any]:
    plain = plain_loop(t, device, conf["epochs"])
    rows = {k: population(t, device, k, conf["epochs"]) for k in conf["ks"]}
    print("\n(a) SGD MLP 784-128-64-10, batch 32: seconds per trial-epoch (median after the first epoch)")
    print(f"    plain PyTorch loop        {plain['median']:9.4f}   (first epoch {plain['first']:.3f})")
    for k, row in rows.items():
        ratio = plain["median"] / row["median"]
        print(f"    trainlab population K={k:<4}{row['median']:9.4f}   {ratio:7.1f}x the plain loop's trial throughput")
    return {"plain": plain, "population": {str(k): v for k, v in rows.items()}}


def part_b(t: Tensors, device: torch.device, conf: dict[str, Any]) -> dict[str, Any]:
    row = alone(t, device, CNN_A, "sgd", 32, conf["epochs"])
    print("\n(b) report A's CNN conv32-pool-conv64-pool-dense, SGD, batch 32: seconds per epoch")
    print(f"    trainlab alone            {row['median']:9.3f}   (first epoch {row['first']:.3f})")
    return row


def part_c(t: Tensors, device: torch.device, conf: dict[str, Any]) -> dict[str, Any]:
    out = {p: alone(t, device, CNN_E, NESTEROV, 256, 2, precision=p) for p in ("float32", "bfloat16")}
    print("\n(c) report E's 3 blocks from 128 filters, BatchNormalization, batch 256: seconds per epoch")
    for p, row in out.items():
        print(f"    {p:<26}{row['median']:9.3f}   (first epoch {row['first']:.3f})")
    return out


def part_d_child(conf: dict[str, Any], device: torch.device) -> None:
    """In a fresh process: load the data, train the small CNN until 99% test accuracy; one JSON line out."""
    tensors, _, _ = DataCache().get(data_spec(conf["limits"]), device=device)
    s = trial(CNN_D, "adam", 128, conf["max_epochs_d"])
    net = models.build(s["model"], (1, 28, 28), 0).to(device)
    opt = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
    accuracies: list[float] = []

    def on_epoch(epoch: int, logs: dict[str, float], make: Callable[[], bytes]) -> bool:
        accuracies.append(
            evaluate(net, tensors.x_test, tensors.y_test, "classification", s["train"]["loss"])["accuracy"]
        )
        return accuracies[-1] >= TARGET

    began = time.perf_counter()
    with devices.deterministic(device):
        fit(net, opt, tensors, TrainSettings.of(s), "classification", seed=0, on_epoch=on_epoch)
    training = time.perf_counter() - began
    reached = bool(accuracies) and accuracies[-1] >= TARGET
    print(json.dumps({"training": training, "epochs": len(accuracies), "accuracy": accuracies[-1], "reached": reached}))


def part_d(device: torch.device, smoke: bool) -> dict[str, Any]:
    began = time.perf_counter()
    command = [sys.executable, __file__, "--part-d", "--device", str(device), *(["--smoke"] if smoke else [])]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    whole = time.perf_counter() - began
    row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "whole_process": whole}
    print(f"\n(d) small CNN, Adam, batch 128, until {TARGET:.0%} MNIST test accuracy")
    state = "reached" if row["reached"] else "NOT reached"
    print(f"    {state} after {row['epochs']} epochs (test accuracy {row['accuracy']:.4f})")
    print(f"    training {row['training']:.2f} s; whole process (imports, CUDA, data, training) {whole:.2f} s")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every part on little data (runs on the CPU too)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--part-d", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    conf = SMOKE if args.smoke else FULL
    device = devices.placed(devices.resolve(args.device), "cpu")
    if args.part_d:
        part_d_child(conf, device)
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"trainlab bench/gpu.py on {device} ({name}), torch {torch.__version__}{' [smoke]' if args.smoke else ''}")
    if device.type != "cuda" and not args.smoke:
        print("note: no CUDA device: the figures below are this machine's CPU, not a GPU's", file=sys.stderr)
    tensors, _, _ = DataCache().get(data_spec(conf["limits"]), device=device)
    results: dict[str, Any] = {"device": str(device), "name": name, "torch": torch.__version__, "smoke": args.smoke}
    with devices.deterministic(device):
        results["a"] = part_a(tensors, device, conf)
        results["b"] = part_b(tensors, device, conf)
        results["c"] = part_c(tensors, device, conf)
    results["d"] = part_d(device, args.smoke)
    results["seconds"] = time.perf_counter() - STARTED
    print(f"\nbench/gpu.py took {results['seconds']:.0f} s")
    if not args.smoke:
        out = ROOT / "bench" / "results" / f"gpu-{datetime.date.today().isoformat()}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
