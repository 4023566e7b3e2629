"""Reports read only the store (and, for the figures of one trial on the test set, its data).

``tables`` builds the report rows with their statistics (``stats``: confidence intervals,
Welch's test, time-to-target) and renders them as table, Markdown, CSV or JSON; ``plots``
draws figures from plain data; ``figures`` gathers that data per figure (``inspect`` runs a
trial's weights on its test split); ``summary`` gives Keras-style model summaries; ``html``
puts everything into one self-contained file. ``tables``' names below are loaded on first use,
so that a light module of the package (``catalog``, the figure names ``--help`` lists) does not
bring in torch; the rest loads matplotlib and scikit-learn, which a plain table does not need.
"""

from typing import Any

__all__ = ["FORMATS", "Options", "render", "study_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainlab.report import tables

        return getattr(tables, name)
    raise AttributeError(f"module 'trainlab.report' has no attribute {name!r}")
