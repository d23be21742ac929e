"""Step-count laws: how many optimizer steps training takes to reach minimum validation loss.

* :mod:`.data`      tasks: corpora, the built-in Markov teacher, mlp teacher-student (torch)
* :mod:`.train`     one run to minimum validation loss, with early stopping (torch)
* :mod:`.gradstats` per-example gradients, gradient diversity, noise scale (torch)
* :mod:`.sweep`     the measurement sweep: CSV rows, resume, parallel workers
* :mod:`.fit`       fitting S = a·D^γ·M^(−k) + b and the batch law S_min(1 + B_noise/B) (no torch)
* :mod:`.law`       the fitted law, ``law.steps(M, D, B)``, JSON load/save (no torch)

Importing this package imports no torch; the torch-using modules load on use.
"""
