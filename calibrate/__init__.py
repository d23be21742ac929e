"""Microbenchmarks that calibrate a hardware profile on the user's device.

``perfmodel calibrate --cpu | --gpu`` runs them (:func:`perfmodel.calibrate.run.calibrate`)
and writes a profile JSON whose ``calibration`` section holds the raw measured
points and their provenance (schema: :mod:`perfmodel.hardware.calibration`);
:mod:`perfmodel.cost.rates` and :mod:`perfmodel.cost.residuals` turn those points
into the interpolated rates and corrections the cost model reads.

Modules, one benchmark each: :mod:`.gemm`, :mod:`.memory`, :mod:`.overhead`,
:mod:`.rnn`, :mod:`.conv` (each a list of :class:`.tasks.Probe`); timers in
:mod:`.timing`, the CUDA runtime (real or fake) in :mod:`.backend`, the noise
guard that times the probes interleaved and re-measures unstable ones in
:mod:`.interleave`, what to measure in :mod:`.plan`, device facts in
:mod:`.provenance`, atomic writes in :mod:`.atomic`.  ``deepbench`` (CSV import) and ``collectives`` are written
by other engineers and imported lazily by the CLI.
"""
