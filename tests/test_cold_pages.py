"""Cold first-touch pages: pages that sat freed past the host's reporting delay cost more to fault in
(perfmodel.calibrate.allocation, perfmodel.cost.rates.cold_pages)."""
from dataclasses import replace

import numpy as np
import pytest
from perfmodel.calibrate.allocation import cold_bytes, cold_touch_from, fresh_write, time_cold_touch
from perfmodel.calibrate.plan import FULL_CPU, QUICK

from perfmodel.cost import rates
from perfmodel.errors import PerfmodelError
from perfmodel.predict import predict, predict_arrays
from tests.test_calibration_tables import with_cal

WARM, COLD = 2e-9, 10e-9


def profile(overhead_us: float, cold_at: int | None):
    alloc = {"first_touch_s_per_byte": WARM, "always_fresh_bytes": 2**20}
    if cold_at is not None:
        alloc.update(first_touch_cold_s_per_byte=COLD, cold_bytes=cold_at)
    return with_cal({"allocation": alloc, "overhead_us": {"default": overhead_us}})


def test_cold_rate_is_the_idle_buffer_less_a_reused_write():
    # median of 2.0, 2.4, 2.2 s over 2 GiB = 1.0245 ns/B, less 0.05 ns/B for the write itself
    out = cold_touch_from([2.0, 2.4, 2.2], 0.05e-9, 2**31)
    assert out == {"first_touch_cold_s_per_byte": pytest.approx(2.2 / 2**31 - 0.05e-9), "cold_bytes": 2**31}
    assert cold_touch_from([0.1], 1e-9, 2**31)["first_touch_cold_s_per_byte"] == 0.0   # never negative


def test_the_fresh_buffer_faults_in_every_page_whatever_the_heap_holds():
    """The probe's fresh write goes to a new anonymous mapping: 4 MiB = 1,024 pages of 4 KiB, each faulted
    in on its first write (getrusage's minor faults), even right after a heap of the same size was freed,
    which ``torch.empty`` could have reused without a fault."""
    resource = pytest.importorskip("resource")
    import torch
    heap = [torch.ones(2**18) for _ in range(4)]            # 4 x 1 MiB through the allocator, then freed
    del heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fresh_write(4 * 2**20)
    try:   # transparent huge pages "always": 2 MiB pages, 2 faults
        huge = "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        huge = False
    pages = 4 * 2**20 // (2**21 if huge else resource.getpagesize())
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before >= pages


def test_only_the_full_plans_measure_it_and_never_beyond_an_eighth_of_memory():
    assert QUICK.cold_touch_repeats == 0 and FULL_CPU.cold_touch_repeats == 2
    n = cold_bytes(FULL_CPU)
    assert 0 < n <= FULL_CPU.cold_touch_bytes and n % 4 == 0
    assert cold_bytes(replace(FULL_CPU, cold_touch_bytes=2**70)) < 2**70   # capped by physical memory
    tries = time_cold_touch(2**16, repeats=2, idle_s=0.0, clock="cpu")
    assert len(tries) == 2 and all(t >= 0 for t in tries)


def test_a_long_step_that_frees_enough_pays_the_cold_rate():
    # mlp width 512, batch 128, input 1024: 5 MiB of weight gradients land on fresh pages each step
    # (tests/test_calibration_tables.py).  With 0.1 s per kernel the step is over the 2 s reporting
    # delay, so with a cold buffer of 4 MiB (<= 5 MiB freed) every fresh byte costs COLD, not WARM:
    # the step grows by exactly 5 MiB x (10 - 2) ns.
    warm = predict("mlp", 512, profile(1e5, None))
    cold = predict("mlp", 512, profile(1e5, 4 * 2**20))
    assert warm.time_per_step_s > rates.PAGE_REPORTING_DELAY_S and warm.fresh_bytes_per_step == 5 * 2**20
    assert cold.cold_pages and not warm.cold_pages
    assert cold.time_per_step_s - warm.time_per_step_s == pytest.approx(5 * 2**20 * (COLD - WARM))
    # freeing less than the calibration's cold buffer (8 MiB > 5 MiB), or a short step: the warm rate
    assert predict("mlp", 512, profile(1e5, 8 * 2**20)).time_per_step_s == pytest.approx(warm.time_per_step_s)
    short = predict("mlp", 512, profile(1.0, 4 * 2**20))
    assert not short.cold_pages
    assert short.time_per_step_s == pytest.approx(predict("mlp", 512, profile(1.0, None)).time_per_step_s)


def test_sweeps_price_each_configuration_as_predict_does():
    hw = profile(1e5, 4 * 2**20)
    sweep = predict_arrays("mlp", [64, 512], hw)     # width 64 frees too little to be cold
    one = [predict("mlp", w, hw) for w in (64, 512)]
    assert [p.cold_pages for p in one] == [False, True]
    np.testing.assert_allclose(sweep["time_per_step_s"], [p.time_per_step_s for p in one])
    assert rates.cold_pages(hw, np.array([1.9, 2.0, 3.0]), np.array([8, 8, 1]) * 2**20).tolist() == \
        [False, True, False]
    assert rates.cold_pages(profile(1e5, None), 5.0, 2**40) is False


@pytest.mark.parametrize("alloc, key", [
    ({"first_touch_cold_s_per_byte": -1e-9, "cold_bytes": 2**31}, "allocation.first_touch_cold_s_per_byte"),
    ({"first_touch_cold_s_per_byte": 1e-9}, "allocation.cold_bytes"),
])
def test_bad_cold_fields_are_refused_naming_the_key(alloc, key):
    with pytest.raises(PerfmodelError, match=key.replace(".", r"\.")):
        with_cal({"allocation": {"first_touch_s_per_byte": 1e-9, **alloc}})


def test_flash_attention_allocations_are_tested_tensor_by_tensor():
    # batch 8, 2 heads (2 kv heads), seq 1024, head dim 64, fp32: forward O = 8*2*1024*64*4 B = 4 MiB and
    # L = 8*2*1024*4 B = 64 KiB; backward dQ, dK, dV 4 MiB each.  Threshold 1 MiB: 4 and 12 MiB fresh (the
    # backward's tiled traffic, which rewrites dQ per key tile, allocates nothing)
    from perfmodel.cost.roofline import fresh_output_bytes
    from perfmodel.ops import Op, OpKind
    from perfmodel.ops_flash import flash_output_tensors
    dims = {"batch": 8, "heads": 2, "kv_heads": 2, "seq": 1024, "head_dim": 64, "tile": 128}
    fwd = Op(OpKind.ATTENTION, "attn", dims, "fp32", "fwd", attrs={"causal": True})
    bwd = Op(OpKind.ATTENTION, "attn", dims, "fp32", "bwd_data", attrs={"causal": True})
    assert flash_output_tensors(fwd) == [4 * 2**20, 64 * 2**10]
    assert flash_output_tensors(bwd) == [4 * 2**20] * 3
    hw = profile(1.0, None)
    assert fresh_output_bytes(fwd, hw) == 4 * 2**20 and fresh_output_bytes(bwd, hw) == 12 * 2**20
    assert bwd.out_bytes > 12 * 2**20      # what the threshold used to see as one allocation
