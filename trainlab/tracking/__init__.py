"""A study's trials where MLflow and TensorBoard users look, while it trains and afterwards.

The store stays the one record: a backend (:mod:`~trainlab.tracking.mlflow_backend`,
:mod:`~trainlab.tracking.tensorboard_backend`) is only ever brought up to date from it, one trial
at a time (see :mod:`trainlab.tracking.base`). :func:`copy_study` does so for a whole study
(``trainlab track``, ``trainlab tensorboard``); :func:`following` does so while a run trains,
from a listener on the executors' ``Recorder`` (see :mod:`trainlab.tracking.live`).

Backends are registered here by scheme name, as the store registers its backends; each imports
its own package (an optional extra: ``trainlab[mlflow]``, ``trainlab[tensorboard]``) only when
it is opened.
"""

from trainlab.tracking.base import (
    DESTINATIONS,
    Backend,
    TrackingUnavailable,
    TrialView,
    backend_for,
    register_backend,
    schemes,
    sync_study,
    trial_views,
)
from trainlab.tracking.live import Follower, LiveTracking, check_targets, copy_study, following
from trainlab.tracking.mlflow_backend import MlflowBackend
from trainlab.tracking.tensorboard_backend import TensorBoardBackend

register_backend(MlflowBackend)
register_backend(TensorBoardBackend)

__all__ = [
    "DESTINATIONS",
    "Backend",
    "Follower",
    "LiveTracking",
    "MlflowBackend",
    "TensorBoardBackend",
    "TrackingUnavailable",
    "TrialView",
    "backend_for",
    "check_targets",
    "copy_study",
    "following",
    "schemes",
    "sync_study",
    "trial_views",
]
