"""Data sets for trainlab: found, verified against facts recorded in code, split and scaled.

``prepare(data)`` is the entry point; ``available``, ``verify`` and ``add_local`` back the
``trainlab data`` commands. Nothing this face imports loads torch: ``cache``, which turns the
arrays into tensors for training and for reading a trial's test split, is imported from
:mod:`trainlab.data.cache` by those who need it.

Modules: ``sources`` (cache dir, package copies, downloads), ``formats`` (file decoders),
``datasets`` (one definition and its facts per data set, and the checks of a user's arrays),
``user`` (the user's tables, image folders and data factories), ``loader`` (the source chain),
``params`` (the ``[data]`` keys, their types, defaults and checks, for the study parser and
``prepare`` alike), ``splits`` (train / validation splits), ``prepare`` (the public entry point), ``cache``
(prepared data sets as tensors, once per process).
"""

from trainlab.data.datasets import DATASETS, DataInfo, Raw
from trainlab.data.loader import (
    Availability,
    DataWarning,
    VerifyResult,
    add_local,
    available,
    clear_memory,
    load_data,
    load_raw,
    verify,
)
from trainlab.data.prepare import Prepared, prepare
from trainlab.data.sources import cache_dir

__all__ = [
    "DATASETS",
    "Availability",
    "DataInfo",
    "DataWarning",
    "Prepared",
    "Raw",
    "VerifyResult",
    "add_local",
    "available",
    "cache_dir",
    "clear_memory",
    "load_data",
    "load_raw",
    "prepare",
    "verify",
]
