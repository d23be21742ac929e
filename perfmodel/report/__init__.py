"""Self-contained HTML reports: one file, plots inline as SVG data URIs, tables behind every plot.

Map (one module per section, plus the assembler):

* ``inputs.py``      what a report reads (:class:`ReportInputs`) and file readers
* ``context.py``     everything computed once: predictions, law, layouts, files
* ``summary.py``     question, inputs, answer, provenance
* ``step_time.py``   time per step versus model size; breakdown by phase and bound
* ``step_law.py``    steps to converge: runs, fitted law, band, plateau
* ``layouts.py``     total time per width and layout (plan file or one device)
* ``total_time.py``  total time versus model size with the optimum
* ``calibration.py`` GEMM efficiency heat map, bandwidth versus size, per-op overhead
* ``validation.py``  predicted versus measured time per step; kernel errors
* ``diagnostics.py`` training diagnostics versus width
* ``blocks.py``, ``figures.py``, ``html.py``, ``build.py``   content model, plotting, HTML, assembly

matplotlib is imported only here, never on the prediction path.
"""
from .build import build_report, write_report
from .inputs import ReportInputs

__all__ = ["ReportInputs", "build_report", "write_report"]
