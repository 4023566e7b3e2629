"""trainlab: evaluate deep-learning training strategies from one study file.

The flow runs one way: ``spec`` -> ``search`` -> ``executors`` -> ``engine`` ->
``store`` -> ``report``. The names in ``__all__`` are the supported Python API
(docs/PYTHON.md)::

    import trainlab as tl
    result = tl.Study.load("studies/quickstart.toml").run(store="runs.db")
    result.table()

They are imported on first use, so that ``import trainlab`` loads neither torch nor pandas.
"""

from __future__ import annotations

from trainlab.version import __version__

TYPE_CHECKING = False  # typing itself is not imported: `import trainlab` stays as light as it was
if TYPE_CHECKING:
    from typing import Any

    from trainlab.api.result import Result
    from trainlab.api.run import RunOptions, RunOutcome
    from trainlab.api.stores import StoreView, open_store
    from trainlab.api.study import Check, Study
    from trainlab.errors import DataError, SpecError, StoreError, TrainlabError

__all__ = [
    "Check",
    "DataError",
    "Result",
    "RunOptions",
    "RunOutcome",
    "SpecError",
    "StoreError",
    "StoreView",
    "Study",
    "TrainlabError",
    "__version__",
    "open_store",
]


def __getattr__(name: str) -> Any:
    """The API's names, imported when first read (PEP 562)."""
    if name in ("DataError", "SpecError", "StoreError", "TrainlabError"):
        from trainlab import errors as home
    elif name in ("Check", "Study"):
        from trainlab.api import study as home
    elif name == "Result":
        from trainlab.api import result as home
    elif name in ("RunOptions", "RunOutcome"):
        from trainlab.api import run as home
    elif name in ("StoreView", "open_store"):
        from trainlab.api import stores as home
    else:
        raise AttributeError(f"module 'trainlab' has no attribute {name!r}")
    return getattr(home, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
