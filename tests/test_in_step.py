"""The profiles' ``in_step_fraction``: GEMM and attention compute inside a training step at that fraction
of the isolated-kernel rate; isolated kernels, other ops and calibrated copies untouched.

Expected values are the arithmetic of :mod:`perfmodel.cost.op_time`'s docstring.
"""
import pytest
from test_core import toy_gpu

from perfmodel.cost.op_time import op_time
from perfmodel.errors import ProfileError
from perfmodel.hardware import load, profile_from_dict
from perfmodel.hardware.profile import calibration_base_dict
from perfmodel.ops import Op, OpKind
from perfmodel.published.check import check_published

F = 0.8


def _toy(f=F):
    return toy_gpu(in_step_fraction=f, sources={**load("V100-SXM2").sources, "in_step_fraction": "test"})


def test_gemm_compute_is_divided_by_the_fraction_in_a_step_but_not_isolated():
    hw = _toy()
    op = Op(OpKind.GEMM, "g", {"m": 1024, "n": 1024, "k": 1024})
    # 64 tiles of 128x128 on 80 SMs: one wave at 64/80 of the 10 TFLOP/s (test_core)
    isolated = 2 * 1024**3 / (10e12 * 64 / 80)
    memory = 3 * 1024 * 1024 * 4 / 1000e9
    alone, in_step = op_time(op, hw, isolated=True), op_time(op, hw)
    assert float(alone.compute_s) == pytest.approx(isolated)
    assert float(in_step.compute_s) == pytest.approx(isolated / F)
    assert float(in_step.memory_s) == pytest.approx(memory)
    assert float(in_step.time_s) == pytest.approx(max(isolated / F, memory) + 5e-6)
    # a profile without the key: the step is priced as the isolated kernel
    plain = op_time(op, toy_gpu())
    assert float(plain.time_s) == pytest.approx(float(alone.time_s))


def test_flash_attention_compute_is_divided_too():
    hw = _toy()
    op = Op(OpKind.ATTENTION, "a", {"batch": 4, "heads": 8, "kv_heads": 8, "seq": 1024, "head_dim": 64,
                                   "tile": 128}, attrs={"causal": True})
    alone, in_step = op_time(op, hw, isolated=True), op_time(op, hw)
    assert float(in_step.compute_s) == pytest.approx(float(alone.compute_s) / F)


def test_memory_bound_and_pointwise_ops_keep_their_time():
    hw = _toy()
    copy = Op(OpKind.COPY, "c", {"numel": 1 << 20})
    act = Op(OpKind.ELEMENTWISE, "gelu", {"numel": 1 << 20, "n_in": 1, "n_out": 1, "flops_per_elem": 8})
    for op in (copy, act):
        assert float(op_time(op, hw).time_s) == pytest.approx(float(op_time(op, hw, isolated=True).time_s))


def test_a_memory_bound_gemm_only_moves_when_its_compute_passes_the_memory_time():
    # [8 x 4096] @ [4096 x 4096]: the 64 MiB fp32 weight read takes 67 us at 1000 GB/s; the kernel's time
    # is max(compute / F, memory) + launch, so the fraction moves it only as far as compute / F passes memory
    hw = _toy()
    op = Op(OpKind.GEMM, "skinny", {"m": 8, "n": 4096, "k": 4096})
    alone, in_step = op_time(op, hw, isolated=True), op_time(op, hw)
    assert float(in_step.time_s) == pytest.approx(
        max(float(alone.compute_s) / F, float(alone.memory_s)) + float(alone.overhead_s))


@pytest.mark.parametrize("bad", [0, -0.5, 1.2, "0.8"])
def test_a_fraction_outside_0_1_is_refused_with_its_key(bad):
    d = load("H100-SXM5").to_dict()
    d["in_step_fraction"] = bad
    with pytest.raises(ProfileError, match="in_step_fraction"):
        profile_from_dict(d, "p.json")


def test_a_fraction_needs_a_source():
    d = load("H100-SXM5").to_dict()
    del d["sources"]["in_step_fraction"]
    with pytest.raises(ProfileError, match="missing source for key 'in_step_fraction'"):
        profile_from_dict(d, "p.json")


def test_shipped_fraction_round_trips_and_calibration_drops_it():
    hw = load("H100-SXM5")
    assert 0 < hw.in_step_fraction <= 1
    assert profile_from_dict(hw.to_dict(), "x").in_step_fraction == hw.in_step_fraction
    base = calibration_base_dict(hw)
    assert "in_step_fraction" not in base and "in_step_fraction" not in base["sources"]
    assert profile_from_dict(base, "x").in_step_fraction is None


def test_published_rows_scale_with_the_fraction():
    """One compute-bound published row (llm.c GPT-2 124M, 8 A100s, data parallel): its predicted step
    with the shipped fraction is between the isolated-kernel step and that step / f."""
    from dataclasses import replace

    from perfmodel import hardware
    from perfmodel.published.check import predict_run
    from perfmodel.published.runs import load_rows, setup
    row = next(r for r in load_rows() if r["id"] == "llmc-gpt2-124m-8xa100")
    run = setup(row, set(hardware.available()))
    hw = hardware.load(run.hardware)
    with_f = predict_run(run, hw).time_per_step_s
    without = predict_run(run, replace(hw, in_step_fraction=None)).time_per_step_s
    assert without < with_f <= without / hw.in_step_fraction * (1 + 1e-9)
    # the check itself uses the shipped profile
    assert check_published(ids={run.id})["results"][0].time_per_step_s == pytest.approx(with_f)
