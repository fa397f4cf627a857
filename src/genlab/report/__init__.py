"""Figures (matplotlib, headless) and self-contained HTML reports (``genlab report``, ``genlab reproduce all``)."""

from genlab.report.pages import build_report, directory_kind, sections_for

__all__ = ["build_report", "directory_kind", "sections_for"]
