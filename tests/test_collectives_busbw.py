"""Measured bus bandwidth in the alpha-beta collective model (profile keys ``<scope>_busbw_GBps``).

nccl-tests define bus bandwidth so that a ring collective of S bytes over P devices takes
c(P) * S / busbw, with c = 2(P-1)/P for all-reduce and (P-1)/P for all-gather and reduce-scatter
(NVIDIA/nccl-tests doc/PERFORMANCE.md, "Bus bandwidth"); a measured busbw therefore stands in for the
link bandwidth in the ring formulas of perfmodel.parallel.collectives.

Figures, as the shipped profiles cite them: S. Bekman, Machine Learning Engineering
(github.com/stas00/ml-engineering, commit 744d01e), network/README.md:

* "Real network throughput": nccl-tests all_reduce_perf -g 8 on one 8x A100 node, 17,179,869,184 B in
  127,997 us, busbw 234.89 GB/s (datasheet NVLink 3: 300 GB/s per direction);
* "Real network throughput" (table "busbw @16GiB") and "SHARP": 8x H200, NCCL_NVLS_ENABLE=0 (ring),
  all-reduce busbw 367.61 GB/s at 16 GiB; nccl-tests all-gather 361.4 GB/s at 16 GiB (NVLink 4: 450 GB/s);
* "SHARP": 8x B200, nccl-tests all-reduce at 8 GiB with NVLS off, 682.2 GB/s (NVLink 5: 900 GB/s).
"""
from __future__ import annotations

import dataclasses

import pytest

from perfmodel import hardware
from perfmodel.errors import ProfileError
from perfmodel.hardware import profile_from_dict
from perfmodel.parallel import collectives as coll
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.step import predict_parallel
from perfmodel.parallel.whatif import scaled_profile
from perfmodel.scenario import Scenario

A100 = hardware.load("A100-SXM4-80GB")
H100 = hardware.load("H100-SXM5")
GiB = 2**30


def _without_busbw(hw):
    d = hw.to_dict()
    for k in ("intra_node_busbw_GBps", "inter_node_busbw_GBps"):
        d.pop(k, None)
        d["sources"].pop(k, None)
    return profile_from_dict(d)


@pytest.mark.parametrize("name,busbw", [("A100-SXM4-80GB", 234.89), ("A100-SXM4-40GB", 234.89),
                                        ("H100-SXM5", 367.61), ("H200", 367.61), ("B200", 682.2),
                                        ("V100-SXM2", None), ("P100-SXM2", None), ("cpu-generic", None)])
def test_shipped_profiles_carry_the_cited_ring_busbw(name, busbw):
    hw = hardware.load(name)
    assert hw.intra_node_busbw_GBps == busbw and hw.inter_node_busbw_GBps is None
    if busbw is not None:
        assert "ml-engineering" in hw.sources["intra_node_busbw_GBps"]
        assert coll.link(hw, False).beta_s_per_byte == pytest.approx(1 / (busbw * 1e9))
    else:  # no published measurement: the datasheet link, as before the key existed
        assert coll.link(hw, False).beta_s_per_byte == pytest.approx(1 / (hw.intra_node_bandwidth_GBps * 1e9))


def test_a100_ring_allreduce_reproduces_the_nccl_tests_row():
    # 16 GiB over 8 A100s: 2(P-1)/P * S / busbw + 2(P-1) alpha
    #   = 2*7/8 * 17,179,869,184 / 234.89e9 + 14 * 2e-6 = 0.127995 + 0.000028 = 0.128023 s
    s = 16 * GiB
    t = coll.ring_allreduce_s(s, 8, coll.link(A100, False))
    assert t == pytest.approx(2 * 7 / 8 * s / 234.89e9 + 14 * 2e-6, rel=1e-12)
    assert t == pytest.approx(127_997e-6, rel=1e-3)          # the measured time of that row
    # on the datasheet link it was 2*7/8 * S / 300e9 + 28 us = 0.100244 s: 22% fast
    t_datasheet = coll.ring_allreduce_s(s, 8, coll.link(_without_busbw(A100), False))
    assert t_datasheet == pytest.approx(2 * 7 / 8 * s / 300e9 + 14 * 2e-6, rel=1e-12)
    assert t_datasheet / t == pytest.approx(0.7830, abs=1e-4)


def test_h100_allgather_reducescatter_alltoall_p2p_use_the_same_busbw():
    ln = coll.link(H100, False)
    s = 16 * GiB
    # all-gather of S gathered bytes: (P-1) alpha + (P-1)/P * S / busbw
    ag = coll.allgather_s(s, 8, ln)
    assert ag == pytest.approx(7 * 2e-6 + 7 / 8 * s / 367.61e9, rel=1e-12)
    # nccl-tests all-gather at 16 GiB measured 361.4 GB/s busbw: time 7/8 * S / 361.4e9 = 41.59 ms, 1.7% above 40.89 ms
    assert ag == pytest.approx(7 / 8 * s / 361.4e9, rel=0.02)
    assert coll.reducescatter_s(s, 8, ln) == ag == coll.alltoall_s(s, 8, ln)
    assert coll.p2p_s(1e6, ln) == pytest.approx(2e-6 + 1e6 / 367.61e9, rel=1e-12)


def test_profile_without_the_key_prices_the_datasheet_link():
    hw = _without_busbw(H100)
    assert hw.intra_node_busbw_GBps is None
    assert coll.link(hw, False).beta_s_per_byte == pytest.approx(1 / 450e9, rel=1e-12)
    assert coll.link(hw, True).beta_s_per_byte == pytest.approx(1 / 50e9, rel=1e-12)
    # H100 has no inter-node measurement: both profiles price InfiniBand at the datasheet 50 GB/s
    assert coll.link(H100, True).beta_s_per_byte == coll.link(hw, True).beta_s_per_byte


def test_inter_node_busbw_prices_node_spanning_groups():
    d = H100.to_dict()
    d["inter_node_busbw_GBps"] = 40.0
    d["sources"]["inter_node_busbw_GBps"] = "planted value for this test"
    hw = profile_from_dict(d)
    # P = 16 spans two nodes: 2*15/16 * 1e9 / 40e9 + 30 * 5e-6 = 0.046875 + 0.00015 = 0.047025 s
    ln = coll.link(hw, coll.spans_nodes(hw, 16))
    assert coll.ring_allreduce_s(1e9, 16, ln) == pytest.approx(0.047025, rel=1e-12)
    # an array of groups: the intra-node ones keep the NVLink figure
    arr = coll.link(hw, coll.spans_nodes(hw, [8, 16]))
    assert list(arr.beta_s_per_byte) == pytest.approx([1 / 367.61e9, 1 / 40e9], rel=1e-12)


def test_tensor_parallel_comm_scales_by_datasheet_over_busbw():
    # latency made negligible: a tp = 8 step's tensor-parallel collectives are pure S * beta, so the
    # measured busbw makes them 450 / 367.61 = 1.2241x the datasheet link's
    tiny = {"intra_node_latency_us": 1e-9}
    with_key = dataclasses.replace(H100, **tiny)
    without = dataclasses.replace(_without_busbw(H100), **tiny)
    knobs = {"layers": 2, "heads": 16, "seq_len": 512, "vocab": 8192, "attention": "fused"}
    a, b = (predict_parallel(Scenario("transformer", hw, knobs, "bf16", "adam"), 1024, Layout(tp=8), batch=8)
            for hw in (with_key, without))
    assert a.step.tp_comm_s / b.step.tp_comm_s == pytest.approx(450 / 367.61, rel=1e-6)


def test_calibrated_fit_overrides_the_busbw_on_its_link():
    cal = {"collectives": {"allreduce": {"alpha_s": 1e-5, "beta_s_per_byte": 1e-10, "link": "intra_node"}}}
    hw = dataclasses.replace(H100, calibration=cal)
    assert coll.link(hw, False).beta_s_per_byte == 1e-10
    # the fit names the all-reduce; reduce-scatter falls back to the all-gather fit, absent: the busbw
    assert coll.link(hw, False, "reducescatter").beta_s_per_byte == pytest.approx(1 / 367.61e9)


def test_round_trip_and_interconnect_what_if_keep_the_measurement():
    again = profile_from_dict(H100.to_dict())
    assert again.intra_node_busbw_GBps == 367.61 and again == H100
    fast = scaled_profile(H100, "interconnect", 2.0)
    # both the datasheet link and its measured busbw double: beta = 1 / (2 * 367.61 GB/s)
    assert fast.intra_node_busbw_GBps == pytest.approx(2 * 367.61)
    assert coll.link(fast, False).beta_s_per_byte == pytest.approx(1 / (2 * 367.61e9))


@pytest.mark.parametrize("change,needle", [
    ({"intra_node_busbw_GBps": 480.0}, "exceeds 'intra_node_bandwidth_GBps'"),   # the NVLS figure: not a ring
    ({"intra_node_busbw_GBps": 0}, "must be a positive number"),
    ({"inter_node_busbw_GBps": 30.0}, "missing source for key 'inter_node_busbw_GBps'"),
    ({"intra_node_busbw_gbps": 300.0}, "unknown key 'intra_node_busbw_gbps'"),
])
def test_bad_busbw_keys_fail_with_one_clear_line(change, needle):
    d = H100.to_dict()
    d.update(change)
    with pytest.raises(ProfileError, match=needle):
        profile_from_dict(d, "h100.json")
