"""A ``steps measure`` sweep on a real local Ray instance (the optional ``ray`` extra).

``ray_address="local"`` makes ``ray.init`` start a one-machine cluster, so the remote runs go
through Ray's scheduler, object store and worker processes for real.  Skipped without Ray,
except under ``CI=true``: ``.ci/run`` installs the extra, and a missing Ray is then a failure.
"""
import csv
import os

import pytest

from perfmodel.steps import sweep

pytestmark = pytest.mark.ray


def _ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ray is missing under CI=true; .ci/run should have installed perfmodel[ray]")
        pytest.skip("ray is not installed (pip install 'perfmodel[ray]')")
    return ray


def test_sweep_on_a_local_ray_instance(tmp_path):
    ray = _ray()
    out = tmp_path / "runs.csv"
    cfg = sweep.SweepConfig.with_defaults("mlp", widths=[8, 16], data_sizes=[256], seeds=1,
                                          max_epochs=1, eval_every=4, patience=2, grad_probe=0)
    try:
        counts = sweep.run_sweep(cfg, out, ray_address="local", progress=False)
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert counts == {"done": 2, "skipped": 0}
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["width"]) for r in rows) == [8, 16]
    assert all(float(r["min_val_loss"]) > 0 and int(r["steps_to_min"]) >= 0 for r in rows)
    # the CSV is the same resumable file as with local processes: a rerun skips both
    assert sweep.run_sweep(cfg, out, progress=False) == {"done": 0, "skipped": 2}
