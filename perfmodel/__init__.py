"""perfmodel: predict neural-network training time = steps to converge x time per step.

Map of the package (one concern per folder):

* ``ops.py``, ``graph.py``         the op IR, FLOP/byte convention, backward rules
* ``architectures/``               analytic op-graph builders per reference model
* ``torchmodels/``                 the same models as real ``torch.nn.Module`` s
* ``hardware/``                    hardware profiles (JSON, units in keys)
* ``cost/``                        rates -> roofline -> residuals -> op_time; waves, Winograd, memory
* ``predict.py``, ``sweep.py``     time per step, one config or vectorized sweeps
* ``validate.py``, ``kernels.py``  prediction vs real training steps / published kernel timings
* ``steps/``                       step-law measurement, gradient statistics, fitting
* ``parallel/``                    data, tensor, pipeline and kernel parallelism; layout search
* ``total.py``                     total time = steps x time per step
* ``report/``                      self-contained HTML reports
* ``diagnostics/``                 why wider models need fewer steps
* ``cli/``                         thin click commands
"""
__version__ = "0.1.0"
