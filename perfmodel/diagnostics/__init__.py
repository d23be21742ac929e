"""Convergence diagnostics: why wider models take fewer steps (issue #7).

* ``traversal.py``  weight-space distance, path length, step size, angle per layer group
* ``confusion.py``  gradient confusion from per-example gradients
* ``ntk.py``        teacher-student convergence rate, NTK Gram matrix, depth as momentum
* ``trends.py``     log-log / semilog slopes with confidence intervals (no torch)
* ``run.py``        one ``perfmodel diagnose`` run: train, measure, CSV/JSON
* ``plots.py``      ``plot_diagnostics(rows)`` figure for the report (no torch)

Per-example gradients and gradient diversity come from
:mod:`perfmodel.steps.gradstats`, training from :mod:`perfmodel.steps.train`.
Importing this package imports nothing heavy.
"""
