"""Training: one model at a time (``loop``), with Keras-semantics callbacks and resumable state."""

from trainlab.engine.loop import FitResult, Tensors, evaluate, fit, weights_bytes

__all__ = ["FitResult", "Tensors", "evaluate", "fit", "weights_bytes"]
