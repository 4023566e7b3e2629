"""Where ``torch.compile`` keeps the programs it compiles, so that a later process reuses them.

Inductor keeps compiled graphs on disk: the FX graph cache (a graph lowered to kernels) and the
AOTAutograd cache (its forward and backward traced together). A later process that compiles the
same graph, for the same shapes, torch version and configuration, loads the program instead of
compiling it again: a second ``trainlab run`` of a study whose plan compiles skips most of its
compiling (bench/README.md, benchmark 6b). torch's default folder is under the system's
temporary directory, which a reboot or a cleaner empties, so trainlab keeps the caches in the
user's cache folder, ``$XDG_CACHE_HOME/trainlab/inductor`` (``~/.cache/trainlab/inductor``
without it), unless the user set ``TORCHINDUCTOR_CACHE_DIR`` to another folder than torch's
default, which is kept.
``TORCHINDUCTOR_FX_GRAPH_CACHE=0`` and ``TORCHINDUCTOR_AUTOGRAD_CACHE=0`` still turn a cache
off: torch's forcing variables win over the settings made here.

A cache never changes the numbers: a program loaded from it is the program compiling makes
(``tests/engine/test_compile_cache.py`` trains a compiled population with a cold and with a warm
cache and compares the weights bit for bit).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

ENV_CACHE_DIR = "TORCHINDUCTOR_CACHE_DIR"
"""torch's variable for the folder of its compile caches; a value the user set is kept."""


def own_folder(environ: Mapping[str, str], torch_default: str) -> Path | None:
    """The folder the user chose for torch's compile caches (``TORCHINDUCTOR_CACHE_DIR``), or None.

    torch writes its own default folder (``torch_default``) into the environment when its
    compiler loads, so that value is taken for torch's doing, not the user's choice."""
    value = environ.get(ENV_CACHE_DIR, "").strip()
    if not value or os.path.abspath(os.path.expanduser(value)) == os.path.abspath(torch_default):
        return None
    return Path(value).expanduser()


def default_folder(environ: Mapping[str, str]) -> Path:
    """trainlab's folder for torch's compile caches: ``$XDG_CACHE_HOME/trainlab/inductor``, or
    ``~/.cache/trainlab/inductor`` where ``XDG_CACHE_HOME`` is unset, empty or relative (the XDG
    base directory specification says to ignore a relative one)."""
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "trainlab" / "inductor"


def use_compile_caches() -> Path | None:
    """Turn on torch's FX graph and AOTAutograd caches and point them at a lasting folder; call
    before ``torch.compile`` compiles. Returns the folder, or None where torch's own default is
    left in place.

    The user's ``TORCHINDUCTOR_CACHE_DIR`` is kept as it is (:func:`own_folder`; one naming
    torch's own default folder, which torch sets itself, is not kept). Otherwise trainlab's folder
    (:func:`default_folder`) is created and set in this process's environment, which the
    compiler's worker processes inherit; a folder that cannot be created leaves torch's
    default, with a warning, rather than failing the training.
    """
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    own = own_folder(os.environ, default_cache_dir())
    if own is not None:
        return own
    folder = default_folder(os.environ)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"cannot create the compile cache folder {folder} ({exc}); compiled programs go to torch's "
            f"default folder; set ${ENV_CACHE_DIR} to a writable folder to keep them",
            stacklevel=2,
        )
        return None
    os.environ[ENV_CACHE_DIR] = str(folder)
    return folder
