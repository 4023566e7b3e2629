"""Study files: TOML in, a validated :class:`Study` out; every trial spec resolved and hashed.

A study file has a base trial (``[data]``, ``[model]``, ``[optimizer]``, ``[train]``), the
variations to compare (``[[compare]]`` entries and a ``[grid]`` over key paths) and the seeds
to repeat each variant with (``[study] seeds``). See ``docs/STUDY-FORMAT.md``.

Everything is checked here, before any training: an unknown key, name or value is a
:class:`~trainlab.errors.SpecError` naming the file, the key path, the allowed values and the
nearest match. A trial is identified by :func:`~trainlab.trial.trial_hash` of its fully
resolved spec and seed, which is what resuming matches on.

Modules, each with one job: ``study`` (reading a file into a :class:`Study`), ``stages`` (one
stage table checked), ``space`` (a ``[search]`` table and its space), ``tune`` (a stage's
``tune`` table), ``keypaths`` (key paths and how overrides merge onto a base), ``variants`` (a
stage's variants built and resolved),
``resolve`` (one trial's tables resolved; ``[data]`` through :mod:`trainlab.data.params`),
``records`` (the frozen records), ``sections`` (the file's sections and the shared shape checks).
This face re-exports the names the rest of trainlab uses.
"""

from trainlab.spec.keypaths import set_path
from trainlab.spec.records import Stage, Trial, Variant
from trainlab.spec.resolve import dataset_info, fold_specs, monitorable, resolve_train, resolve_trial
from trainlab.spec.space import Dimension, SearchSpec
from trainlab.spec.study import Study, from_dict, load, parse
from trainlab.spec.tune import TuneSpec
from trainlab.spec.variants import base_of, expand, search_variant
from trainlab.trial import canonical_json

__all__ = [
    "Dimension",
    "SearchSpec",
    "Stage",
    "Study",
    "Trial",
    "TuneSpec",
    "Variant",
    "base_of",
    "canonical_json",
    "dataset_info",
    "expand",
    "fold_specs",
    "from_dict",
    "load",
    "monitorable",
    "parse",
    "resolve_train",
    "resolve_trial",
    "search_variant",
    "set_path",
]
