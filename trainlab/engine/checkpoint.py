"""Training state <-> bytes, with safetensors: tensors and JSON only, nothing is ever unpickled.

Each blob carries a SHA-256 of its tensors and metadata: SQLite checks the structure of the
store's pages but not the bytes of a blob, so a flipped bit inside a checkpoint or the final
weights would otherwise be loaded as if it were the trained state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from trainlab.errors import TrainlabError


def pack(groups: Mapping[str, Mapping[str, torch.Tensor]], meta: Mapping[str, Any]) -> bytes:
    """Tensors grouped by prefix (``model``, ``optimizer``, ``best``...) plus JSON metadata.

    The tensors are saved from CPU copies, whatever device they live on, so that a checkpoint
    or weights blob written on a GPU loads on any machine."""
    flat = {
        f"{group}/{name}": t.detach().to("cpu").contiguous().clone()
        for group, tensors in groups.items()
        for name, t in tensors.items()
    }
    text = json.dumps(meta, allow_nan=True)
    return st_save(flat, metadata={"trainlab": text, "sha256": _digest(flat, text)})


def unpack(blob: bytes) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The inverse of :func:`pack`; a damaged blob is a TrainlabError, not a crash."""
    try:
        flat = st_load(blob)
        header = _header(blob)
        text = header.get("trainlab", "{}")
        meta = json.loads(text)
    except Exception as exc:  # safetensors raises several kinds for damaged input
        raise TrainlabError(f"a stored checkpoint or weights file is damaged and cannot be read: {exc}") from None
    expected = header.get("sha256")
    if expected is not None and expected != _digest(flat, text):
        raise TrainlabError(
            "a stored checkpoint or weights file is damaged: its bytes do not match its SHA-256, so it was not used"
        )
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = tensor
    return groups, meta


def _header(blob: bytes) -> dict[str, str]:
    size = int.from_bytes(blob[:8], "little")
    return dict(json.loads(blob[8 : 8 + size]).get("__metadata__", {}))


def _digest(flat: Mapping[str, torch.Tensor], meta_text: str) -> str:
    """SHA-256 of the metadata and of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(meta_text.encode())
    for name in sorted(flat):
        tensor = flat[name].detach().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(cast(bytes, tensor.reshape(-1).view(torch.uint8).numpy()))  # a buffer, not copied
    return digest.hexdigest()
