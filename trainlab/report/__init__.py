"""Reports read only the store (and, for the figures of one trial on the test set, its data).

``tables`` builds the report rows with their statistics (``stats``: confidence intervals,
Welch's test, time-to-target) and renders them as table, Markdown, CSV or JSON; ``plots``
draws figures from plain data; ``figures`` gathers that data per figure (``inspect`` runs a
trial's weights on its test split); ``summary`` gives Keras-style model summaries; ``html``
puts everything into one self-contained file. Only ``tables`` is imported here: the rest
loads matplotlib and scikit-learn, which a plain table does not need.
"""

from trainlab.report.tables import FORMATS, Options, render, study_report

__all__ = ["FORMATS", "Options", "render", "study_report"]
