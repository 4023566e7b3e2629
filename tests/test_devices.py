"""The --device choice against what torch sees, and CUDA's deterministic settings.

What a machine has is faked through ``devices.cuda_count`` and ``devices.mps_available`` (the two
questions the module asks torch), so that every branch runs on a CPU-only machine; the tests
marked ``gpu`` ask a real GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

from trainlab import devices
from trainlab.errors import TrainlabError


def machine(monkeypatch: pytest.MonkeyPatch, *, gpus: int = 0, mps: bool = False) -> None:
    monkeypatch.setattr(devices, "cuda_count", lambda: gpus)
    monkeypatch.setattr(devices, "mps_available", lambda: mps)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))


@pytest.mark.parametrize(
    ("gpus", "mps", "expected"), [(0, False, "cpu"), (0, True, "mps"), (1, False, "cuda"), (2, True, "cuda")]
)
def test_auto_takes_cuda_then_mps_then_the_cpu(
    monkeypatch: pytest.MonkeyPatch, gpus: int, mps: bool, expected: str
) -> None:
    machine(monkeypatch, gpus=gpus, mps=mps)
    assert devices.resolve("auto") == expected


def test_named_devices_are_checked_against_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, gpus=2)
    assert [devices.resolve(d) for d in ("cpu", "cuda", "cuda:0", "cuda:1")] == ["cpu", "cuda", "cuda:0", "cuda:1"]
    with pytest.raises(TrainlabError, match=r"^--device cuda:2: this machine has 2 CUDA devices \(Fake GPU\)"):
        devices.resolve("cuda:2")
    with pytest.raises(TrainlabError, match="--device mps: torch sees no MPS device here"):
        devices.resolve("mps")


def test_cuda_on_a_machine_without_it_is_one_line_saying_what_was_found(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, gpus=0)
    with pytest.raises(TrainlabError) as caught:
        devices.resolve("cuda")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--device cuda: this machine has no CUDA")
    assert message.endswith("use --device cpu or auto")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:-1", ""])
def test_a_malformed_device_names_the_choices(bad: str) -> None:
    with pytest.raises(TrainlabError, match=r"--device takes auto, cpu, cuda, cuda:N, mps"):
        devices.resolve(bad)


def test_a_planned_device_the_machine_lacks_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, gpus=0)
    with pytest.warns(UserWarning, match="a trial planned on cuda goes on on cpu"):
        assert devices.placed("cuda", "cpu") == torch.device("cpu")
    assert devices.placed("cpu", "cpu") == torch.device("cpu")


def test_cuda_is_each_workers_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, gpus=2)
    assert [devices.placed("cuda", "cpu", gpu) for gpu in range(3)] == [
        torch.device("cuda", 0),
        torch.device("cuda", 1),
        torch.device("cuda", 0),
    ]
    assert devices.placed("cuda:1", "cpu", gpu=0) == torch.device("cuda", 1)


def test_total_memory_is_known_for_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, gpus=0)
    assert devices.total_memory("cpu") is None and devices.total_memory("cuda") is None


def test_the_cpu_keeps_torchs_settings() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with devices.deterministic(torch.device("cpu")):
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


@pytest.mark.gpu
def test_cuda_trains_with_deterministic_kernels_and_restores_the_settings() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32)
    with devices.deterministic(torch.device("cuda", 0)):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32) == before


@pytest.mark.gpu
def test_a_real_gpu_resolves_and_reports_its_memory() -> None:
    assert devices.resolve("auto") == "cuda"
    memory = devices.total_memory("cuda")
    assert memory is not None and memory == torch.cuda.get_device_properties(0).total_memory
