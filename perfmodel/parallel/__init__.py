"""Parallel training: time per step and memory per device under data, tensor, pipeline and kernel parallelism.

One concern per module:

* ``collectives.py``  α–β model of all-reduce (ring, tree), all-gather, reduce-scatter, sends; links
* ``layout.py``       a layout (dp, tp, pp, micro-batches) and its checks
* ``options.py``      the switches: schedule, all-reduce algorithm and buckets, overlap, recompute, kernels
* ``tensor.py``       tensor parallelism applied to any op graph (Megatron's column/row split, derived)
* ``kernel_parallel.py`` kernel parallelism on one device: concurrent streams, persistent RNN kernels
* ``device.py``       one device's share of the step per layer unit, vectorized over configurations
* ``pipeline.py``     stages, micro-batches, bubble, the wavefront of stacked RNNs
* ``data.py``         gradient all-reduce, bucketed and overlapped with backward
* ``step.py``         time per step and memory per device of a layout (``StepEstimate``)
* ``search.py``       the fastest layout per width (``perfmodel plan``)
* ``whatif.py``       break-even hardware speedups (``perfmodel whatif``)

Total time (steps x time per step) is :mod:`perfmodel.total`.  Entry points, each taking a
:class:`perfmodel.scenario.Scenario`: :func:`.step.predict_parallel` (one layout) and
:func:`.search.plan` (every layout).
"""
