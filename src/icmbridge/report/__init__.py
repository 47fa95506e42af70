"""Static HTML reports of a results folder: tables, plots, zoomed crops and a compare slider.

``build_report(RESULTS_DIR, REPORT_DIR)`` reads ``results.json``, ``originals/`` and
``decoded/LABEL/`` as written by ``icmbridge demo`` / ``icmbridge ablate`` and writes a page that
works offline (``icmbridge report RESULTS_DIR -o REPORT_DIR``).
"""

from icmbridge.report.crops import pick_crop
from icmbridge.report.html import build_report

__all__ = ["build_report", "pick_crop"]
