"""torch's compile caches: the folder trainlab keeps them in, and that a warm cache changes no number.

A compiled population is trained in two fresh processes that share one cache folder: the first
compiles (cold: every lookup misses), the second loads what the first stored (warm: lookups hit,
none misses). Their histories and weights must be the same bits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainlab.engine import compile_cache
from trainlab.engine.compile_cache import ENV_CACHE_DIR

ROOT = Path(__file__).resolve().parents[2]

TRAIN = """
import hashlib, json
import torch
from torch._dynamo.utils import counters
from trainlab import models
from trainlab.data.cache import Tensors
from trainlab.engine.population import Member, fit_population
from trainlab.trial import TrainSettings

generator = torch.Generator().manual_seed(0)

def split(n):
    return torch.rand(n, 1, 4, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator)

data = Tensors(*split(64), *split(16), *split(16))
layers = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 8, "activation": "relu"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]
model = models.resolve({"layers": layers}, (1, 4, 4))
settings = TrainSettings(2, 16, "sparse_categorical_crossentropy", True, "val_loss", "last", None, None)
members = [
    Member(models.build(model, (1, 4, 4), seed), {"name": "sgd", "learning_rate": lr}, settings)
    for seed, lr in ((0, 0.01), (1, 0.1))
]
results = fit_population(members, data, "classification", seed=0, compile=True)
print(json.dumps({
    "histories": [r.history for r in results],
    "weights": [
        {name: hashlib.sha256(w.contiguous().numpy().tobytes()).hexdigest() for name, w in r.weights.items()}
        for r in results
    ],
    "counters": {group: dict(counters[group]) for group in ("inductor", "aot_autograd")},
}))
"""
"""Two SGD members of a tiny MLP, compiled, two epochs of four full batches; prints their
histories (without timings), a SHA-256 of each weight tensor and torch's cache counters."""


def train_in_a_fresh_process(environ: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN], capture_output=True, text=True, timeout=900, env=environ, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for history in out["histories"]:
        for epoch in history:
            epoch.pop("seconds", None)
    return out


def lookups(counters: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(hits, misses) of the FX graph and AOTAutograd caches together."""
    inductor, aot = counters["inductor"], counters["aot_autograd"]
    hits = inductor.get("fxgraph_cache_hit", 0) + aot.get("autograd_cache_hit", 0)
    misses = inductor.get("fxgraph_cache_miss", 0) + aot.get("autograd_cache_miss", 0)
    return hits, misses


@pytest.mark.slow
def test_a_warm_compile_cache_gives_the_cold_caches_bits(tmp_path: Path) -> None:
    """Through trainlab's default folder (``$XDG_CACHE_HOME/trainlab/inductor``), no
    ``TORCHINDUCTOR_CACHE_DIR`` set."""
    environ = {k: v for k, v in os.environ.items() if k != ENV_CACHE_DIR and not k.startswith("TORCHINDUCTOR_")}
    environ.update({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)})
    cold = train_in_a_fresh_process(environ)
    folder = tmp_path / "xdg" / "trainlab" / "inductor"
    assert any((folder / "fxgraph").rglob("*")), "the cold run stored its programs in trainlab's folder"
    warm = train_in_a_fresh_process(environ)
    cold_hits, cold_misses = lookups(cold["counters"])
    warm_hits, warm_misses = lookups(warm["counters"])
    assert (cold_hits, warm_misses) == (0, 0) and cold_misses > 0 and warm_hits > 0, (cold, warm)
    assert warm["histories"] == cold["histories"]
    assert warm["weights"] == cold["weights"]
    assert cold["histories"][0] != cold["histories"][1]  # two members that trained differently


def test_the_users_own_folder_is_kept_and_torchs_default_is_not(tmp_path: Path) -> None:
    torch_default = str(tmp_path / "torchinductor_me")
    assert compile_cache.own_folder({ENV_CACHE_DIR: str(tmp_path / "mine")}, torch_default) == tmp_path / "mine"
    assert compile_cache.own_folder({ENV_CACHE_DIR: "  "}, torch_default) is None
    assert compile_cache.own_folder({}, torch_default) is None
    assert compile_cache.own_folder({ENV_CACHE_DIR: torch_default}, torch_default) is None  # torch set it


def test_the_default_folder_follows_xdg_cache_home(tmp_path: Path) -> None:
    assert compile_cache.default_folder({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "trainlab" / "inductor"
    home = Path.home() / ".cache" / "trainlab" / "inductor"
    assert compile_cache.default_folder({}) == home
    assert compile_cache.default_folder({"XDG_CACHE_HOME": "relative/cache"}) == home  # ignored, as XDG says


def test_use_compile_caches_sets_trainlabs_folder_unless_the_user_chose_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    folder = tmp_path / "xdg" / "trainlab" / "inductor"
    assert compile_cache.use_compile_caches() == folder
    assert folder.is_dir() and os.environ[ENV_CACHE_DIR] == str(folder)
    assert inductor_config.fx_graph_cache and functorch_config.enable_autograd_cache

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "mine"))
    assert compile_cache.use_compile_caches() == tmp_path / "mine"
    assert os.environ[ENV_CACHE_DIR] == str(tmp_path / "mine")

    monkeypatch.setenv(ENV_CACHE_DIR, default_cache_dir())  # what torch writes there when its compiler loads
    assert compile_cache.use_compile_caches() == folder


def test_a_folder_that_cannot_be_made_leaves_torchs_default_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    with pytest.warns(UserWarning, match=r"cannot create the compile cache folder .*TORCHINDUCTOR_CACHE_DIR"):
        assert compile_cache.use_compile_caches() is None
    assert not str(os.environ.get(ENV_CACHE_DIR, "")).startswith(str(tmp_path))
