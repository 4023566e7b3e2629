"""Training state <-> bytes, with safetensors: tensors and JSON only, nothing is ever unpickled."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from trainlab.errors import TrainlabError


def pack(groups: Mapping[str, Mapping[str, torch.Tensor]], meta: Mapping[str, Any]) -> bytes:
    """Tensors grouped by prefix (``model``, ``optimizer``, ``best``...) plus JSON metadata."""
    flat = {f"{group}/{name}": t.detach().contiguous().clone() for group, tensors in groups.items() for name, t in tensors.items()}
    return st_save(flat, metadata={"trainlab": json.dumps(meta, allow_nan=True)})


def unpack(blob: bytes) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The inverse of :func:`pack`; a damaged blob is a TrainlabError, not a crash."""
    try:
        flat = st_load(blob)
        meta = _metadata(blob)
    except Exception as exc:  # safetensors raises several kinds for damaged input
        raise TrainlabError(f"a stored checkpoint or weights file is damaged and cannot be read: {exc}") from None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = tensor
    return groups, meta


def _metadata(blob: bytes) -> dict[str, Any]:
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    return json.loads(header.get("__metadata__", {}).get("trainlab", "{}"))
