"""Where training runs: the ``--device`` choice resolved against what torch sees, and CUDA's
deterministic settings.

A run's device is decided once, before anything is written, and recorded in each trial's plan
(:mod:`trainlab.planner`): ``cpu``, ``cuda`` (the GPU its worker process holds: one worker per
GPU), ``cuda:N`` (that GPU) or ``mps`` (Apple's GPU). ``auto`` takes CUDA, else MPS, else the CPU.
A device the machine lacks is a :class:`~trainlab.errors.TrainlabError` saying what torch found.

On CUDA, the same GPU type gives the same numbers only with deterministic kernels:
:func:`deterministic` sets them (docs/REPRODUCIBILITY.md, "On a GPU").
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from trainlab.errors import TrainlabError

CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
"""What ``--device`` accepts (N: a CUDA device's index)."""
CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS's workspace setting that makes its matrix products deterministic (CUDA's own docs)."""

_SYNTAX = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def cuda_count() -> int:
    """How many CUDA devices torch sees (0 on a CPU-only build or a machine without a GPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    """Whether torch sees Apple's Metal GPU."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def found() -> str:
    """What torch sees, in words, for an error that refuses a device."""
    count = cuda_count()
    if count:
        names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
        gpus = f"{count} CUDA device{'s' * (count != 1)} ({', '.join(names)})"
    elif torch.version.cuda is None:
        gpus = f"no CUDA: torch {torch.__version__} is built without it"
    else:
        gpus = f"no CUDA device (torch {torch.__version__} is built for CUDA {torch.version.cuda})"
    return gpus + ("; MPS available" if mps_available() else "")


def resolve(value: str) -> str:
    """The device a run trains on, from ``--device``: ``auto`` made concrete, the others checked
    against this machine. ``cuda`` stays ``cuda`` (each worker then takes its own GPU)."""
    if not _SYNTAX.match(value):
        raise TrainlabError(f"--device takes {', '.join(CHOICES)}, got {value!r}")
    if value == "auto":
        return "cuda" if cuda_count() else ("mps" if mps_available() else "cpu")
    if value.startswith("cuda"):
        count = cuda_count()
        index = int(value.partition(":")[2] or 0)
        if count == 0 or index >= count:
            raise TrainlabError(f"--device {value}: this machine has {found()}; use --device cpu or auto")
    if value == "mps" and not mps_available():
        raise TrainlabError(f"--device mps: torch sees no MPS device here ({found()}); use --device cpu or auto")
    if value.startswith("cuda"):
        use_deterministic_cublas()
    return value


def available(device: str) -> bool:
    """Whether this machine has ``device`` (a planned device: ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    if device == "cpu":
        return True
    if device == "mps":
        return mps_available()
    if device.startswith("cuda"):
        return int(device.partition(":")[2] or 0) < cuda_count()
    return False


def placed(planned: str, fallback: str, gpu: int = 0) -> torch.device:
    """The torch device a trial planned for ``planned`` trains on here.

    ``cuda`` is this worker's GPU (``gpu``, modulo the GPUs present). A trial resumed on a
    machine without its planned device (a GPU trial continued on a laptop) trains on
    ``fallback``, with a warning: its numbers then agree with the planned device's within float
    rounding, not bit for bit.
    """
    if not available(planned):
        warnings.warn(
            f"a trial planned on {planned} goes on on {fallback}: this machine has {found()}; "
            "its numbers agree with the planned device's within float rounding",
            stacklevel=2,
        )
        planned = fallback
    if planned == "cuda":
        return torch.device("cuda", gpu % max(cuda_count(), 1))
    return torch.device(planned)


def total_memory(device: str) -> int | None:
    """A CUDA device's total memory in bytes (a fixed property, unlike free memory); None elsewhere."""
    if not device.startswith("cuda") or not available(device):
        return None
    return int(torch.cuda.get_device_properties(int(device.partition(":")[2] or 0)).total_memory)


def use_deterministic_cublas() -> None:
    """Ask cuBLAS for its deterministic workspace: effective only before cuBLAS first starts in
    this process (so it is set when the device is resolved, and inherited by worker processes)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """On CUDA: deterministic algorithms, cuDNN without autotuning and without TF32, for the
    block; elsewhere nothing. Restores the previous settings after it.

    ``use_deterministic_algorithms`` runs with ``warn_only``: an operation without a
    deterministic CUDA kernel warns (the run is then not bit-reproducible) rather than failing
    the trial. TF32 is off so that ``precision = "float32"`` means float32 products.
    """
    if device.type != "cuda":
        yield
        return
    use_deterministic_cublas()
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
        cudnn.allow_tf32,
        matmul.allow_tf32,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = True, False, False, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before[2:]
