"""Training: one model at a time (``loop``), with Keras-semantics callbacks and resumable state."""

from trainlab.data.cache import Tensors
from trainlab.engine.loop import FitResult, evaluate, fit, weights_bytes

__all__ = ["FitResult", "Tensors", "evaluate", "fit", "weights_bytes"]
