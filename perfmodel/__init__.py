"""perfmodel: predict neural-network training time = steps to converge x time per step.

Map of the package (one concern per folder):

* ``ops.py``, ``graph.py``         the op IR, FLOP/byte convention, backward rules
* ``architectures/``               analytic op-graph builders per reference model
* ``torchmodels/``                 the same models as real ``torch.nn.Module`` s
* ``hardware/``                    hardware profiles (JSON, units in keys)
* ``cost/``                        rates -> roofline -> residuals -> op_time; waves, Winograd, memory
* ``scenario.py``                  what a prediction is about: model, knobs, hardware, dtype, optimizer
* ``predict.py``, ``grid.py``      time per step, one config or a vectorized configuration grid
* ``validate.py``                 prediction vs real training steps
* ``kernel_check.py``             prediction vs published kernel timings (DeepBench rows)
* ``steps/``                       step-law measurement, gradient statistics, fitting
* ``parallel/``                    data, tensor, pipeline and kernel parallelism; layout search
* ``total.py``                     total time = steps x time per step
* ``report/``                      self-contained HTML reports
* ``diagnostics/``                 why wider models need fewer steps
* ``cli/``                         thin click commands

The Python API, importable from here (each name is loaded on first use, so ``perfmodel predict``
pays only for what it runs): :class:`~perfmodel.scenario.Scenario` -- what to predict -- and
:func:`~perfmodel.predict.predict_step` (one device, per-op breakdown),
:func:`~perfmodel.parallel.step.predict_parallel` (a layout),
:func:`~perfmodel.parallel.search.plan` (the fastest layout per width),
:func:`~perfmodel.total.predict_total`, :func:`~perfmodel.parallel.whatif.break_even`; with
``Layout``, ``ParallelOptions``, ``KernelOptions``, ``SearchSpace``, ``load_law`` and
``shipped_law_path``.  The vectorized grid is :func:`perfmodel.grid.sweep`; model-level
predictions without a scenario :func:`perfmodel.predict.predict` and ``predict_arrays``.
"""
import importlib

__version__ = "0.1.0"

#: public name -> the module (under perfmodel) that defines it
_API = {
    "Scenario": "scenario", "check_precision": "scenario",
    "predict_step": "predict",
    "Layout": "parallel.layout", "ParallelOptions": "parallel.options", "KernelOptions": "parallel.kernel_parallel",
    "predict_parallel": "parallel.step", "SearchSpace": "parallel.search", "plan": "parallel.search",
    "break_even": "parallel.whatif",
    "predict_total": "total", "load_law": "total", "shipped_law_path": "total",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
