"""What augmenting a batch costs beside a training step of report A's CNN; prints a table of medians.

    PYTHONPATH=. .venv/bin/python bench/augment.py [--repeats 300] [--batch 32] [--threads N]

The CNN is report A's section 4 (studies/report_a_mnist.toml, stage "convolution"): Conv2D 32
3x3 relu and MaxPooling2D inserted before the 128-unit MLP, trained alone with SGD at batch 32,
as trainlab trains a convolutional trial alone (channels_last). A step is the forward pass,
the gradients and the SGD update; an augmentation is one layer's training-mode forward pass on
the same batch (MNIST-shaped images in [0, 1]). Each figure is the median over ``--repeats``
timings of one call, after a warm-up; the ratio is the augmentation's median over the step's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from trainlab import models
from trainlab.losses import LOSSES
from trainlab.optim import Optimizer, resolve

CNN: list[dict[str, Any]] = [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
AUGMENTATIONS: dict[str, list[dict[str, Any]]] = {
    "RandomFlip (horizontal)": [{"type": "RandomFlip", "mode": "horizontal"}],
    "RandomTranslation 0.1": [{"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1}],
    "RandomRotation 0.05": [{"type": "RandomRotation", "factor": 0.05}],
    "RandomZoom 0.1": [{"type": "RandomZoom", "height_factor": 0.1}],
    "RandomCrop 26x26": [{"type": "RandomCrop", "height": 26, "width": 26}],
    "RandomContrast 0.2": [{"type": "RandomContrast", "factor": 0.2, "value_range": [0, 1]}],
}
AUGMENTATIONS["all six, chained"] = [layer for layers in AUGMENTATIONS.values() for layer in layers]
SHAPE = (1, 28, 28)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(max(5, repeats // 10)):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def step_function(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    net = models.build(models.resolve({"layers": CNN}, SHAPE), SHAPE, seed=0).to(memory_format=torch.channels_last)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = Optimizer(params, resolve("sgd"))
    loss_fn = LOSSES.build({"name": "sparse_categorical_crossentropy"})
    xc = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = loss_fn(net(xc), y)
        optimizer.step(list(torch.autograd.grad(loss, params)))

    return step


def augment_function(layers: list[dict[str, Any]], x: torch.Tensor) -> Callable[[], None]:
    net = models.build(models.resolve({"layers": layers}, SHAPE), SHAPE, seed=0).train()

    def run() -> None:
        with torch.no_grad():
            net(x)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, *SHAPE)
    y = torch.randint(0, 10, (args.batch,))
    step = median_seconds(step_function(x, y), args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.repeats} repeats")
    print(
        f"| | median ms | of a training step |\n|---|---:|---:|\n| training step of the CNN | {step * 1e3:.3f} | 100% |"
    )
    for name, layers in AUGMENTATIONS.items():
        seconds = median_seconds(augment_function(layers, x), args.repeats)
        print(f"| {name} | {seconds * 1e3:.3f} | {100 * seconds / step:.1f}% |")


if __name__ == "__main__":
    main()
