"""Reports read only the store: tables now; statistics and plots build on the same rows."""

from trainlab.report.tables import FORMATS, render, study_report

__all__ = ["FORMATS", "render", "study_report"]
