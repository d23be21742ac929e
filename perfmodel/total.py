"""Total time to train = steps to converge x time per step.

    total_time_s = law.steps(M, D, B) x time_per_step_s(model, width, B, hardware, layout)

``M`` is the model's trainable-parameter count, ``D`` the dataset size in the
law's unit, ``B`` the global batch in the law's examples: a model example of
``seq_len`` tokens counts as seq_len / law.tokens_per_example of them (equal
tokens per step, :func:`law_batch_factor`).  The step law is the
fitted :class:`perfmodel.steps.law.StepLaw` (JSON, ``steps(M, D, B)`` with the
batch law S_min(1 + B_noise/B), which sets the step-count penalty past the
critical batch size); time per step comes from :mod:`perfmodel.parallel`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import PerfmodelError
from .parallel.layout import Layout
from .parallel.step import predict_parallel
from .scenario import Scenario


def load_law(path):
    """A step law from ``law.json``: any object with a vectorized ``steps(M, D, B)``."""
    from .steps.law import load_law as _load
    return _load(Path(path))


def shipped_law_path(model: str) -> Path:
    """The step law shipped for ``model`` (``perfmodel/steps/default_laws``); one-line error if there is none."""
    from .steps.law import default_law_path
    path = default_law_path(model)
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.json"))
        raise PerfmodelError(f"no step law is shipped for model {model!r} (shipped: {', '.join(shipped)}); "
                             f"measure one (`perfmodel steps measure`, `perfmodel steps fit`) and pass --steps-law")
    return path


def check_dataset_size(dataset_size) -> float:
    try:
        d = float(dataset_size)
    except (TypeError, ValueError):
        raise PerfmodelError(f"dataset size {dataset_size!r} is not allowed; it must be a positive number") \
            from None
    if not np.isfinite(d) or d <= 0:
        raise PerfmodelError(f"dataset size {dataset_size!r} is not allowed; it must be a positive number")
    return d


def total_time_s(steps, time_per_step_s):
    """The issue's product, broadcast over arrays."""
    return np.asarray(steps) * np.asarray(time_per_step_s)


def tokens_per_example(model: str, knobs: dict) -> float:
    """Tokens in one example of ``model`` as configured: its ``seq_len`` knob, else 1."""
    from .architectures import get_spec
    cfg = get_spec(model).resolve({k: v for k, v in knobs.items() if k != "batch"})
    return float(cfg.get("seq_len") or 1)


def law_batch_factor(law, model: str, knobs: dict) -> float:
    """Examples of the law per example of the model: equal tokens per step.

    A law measured with ``tokens_per_example`` = 32 (sequences of 32 characters) and a model run on
    sequences of 150 see a global batch of B sequences as B x 150 / 32 of the law's examples.
    """
    law_tokens = float(getattr(law, "tokens_per_example", 1.0) or 1.0)
    return tokens_per_example(model, knobs) / law_tokens


def law_task_note(law, model: str, knobs: dict) -> str | None:
    """One sentence when the model's knobs differ from those every run of the law shared
    (``law.measured_task["knobs"]``, recorded by ``steps fit``): its steps are that task's.
    None when they agree, or for a law that does not record them."""
    measured = ((getattr(law, "measured_task", None) or {}).get("knobs")) or {}
    if not measured or getattr(law, "model", model) != model:
        return None
    from .architectures import get_spec
    cfg = get_spec(model).resolve({k: v for k, v in knobs.items() if k != "batch"})
    differ = [k for k, v in sorted(measured.items()) if k in cfg and cfg[k] != v]
    if not differ:
        return None
    return (f"the step law's runs used {', '.join(f'{k}={measured[k]}' for k in differ)}; this model has "
            f"{', '.join(f'{k}={cfg[k]}' for k in differ)}: the steps are those of the measured task, "
            f"not measured at these settings")


def law_fields(law, model: str, factor: float = 1.0, knobs: dict | None = None) -> dict:
    """What the report says about the law it used."""
    out = {"steps_law_model": getattr(law, "model", None),
           "critical_batch": getattr(law, "b_noise", None),
           "law_examples_per_model_example": factor}
    if out["critical_batch"]:
        out["critical_batch_model_examples"] = out["critical_batch"] / factor
    if out["steps_law_model"] not in (None, model):
        out["steps_law_note"] = (f"step law fitted for {out['steps_law_model']!r} applied to {model!r}")
    task = law_task_note(law, model, knobs or {})
    if task:
        out["steps_law_task_note"] = task
    return out


def predict_total(scenario: Scenario, width: int, layout: Layout, dataset_size=None, law=None,
                  batch: int | None = None, devices: int | None = None) -> dict:
    """Time per step under ``layout`` (:func:`perfmodel.parallel.step.predict_parallel`) plus, with a
    law and a dataset size, steps and total time.

    Keys added to the parallel prediction's ``to_dict()``: ``dataset_size, steps, total_time_s``
    and the law's provenance (:func:`law_fields`).
    """
    if (dataset_size is None) != (law is None):
        raise PerfmodelError("--dataset-size and --steps-law go together: give both or neither")
    p = predict_parallel(scenario, width, layout, batch, devices)
    out = p.to_dict()
    if law is not None:
        d = check_dataset_size(dataset_size)
        factor = law_batch_factor(law, scenario.model, scenario.knobs)
        steps = float(np.asarray(law.steps(p.params, d, p.batch * factor)))
        out.update({"dataset_size": d, "steps": steps,
                    "total_time_s": float(total_time_s(steps, p.time_per_step_s)),
                    **law_fields(law, scenario.model, factor, scenario.knobs)})
        from .total_interval import single_interval
        out.update(single_interval(law, p.params, d, p.batch * factor, p.time_per_step_s, scenario.hardware))
    return out
