"""Shipped hardware profiles: they load, they match published figures, and bad files fail clearly.

Expected values are written as the datasheet arithmetic (units x rate x clock), with the document
cited beside each, never copied from the JSON files.  FLOP = 2 per fused multiply-add.
"""
from __future__ import annotations

import json
import math

import pytest

from perfmodel.errors import ProfileError
from perfmodel.hardware import PROFILES_DIR, available, load, load_profile_file
from perfmodel.hardware.profile import NUMERIC_KEYS

SHIPPED = ("TitanX-Maxwell", "M40", "P100-SXM2", "V100-SXM2", "A100-SXM4-80GB",
           "H100-SXM5", "H200", "B200", "cpu-generic")
GHz = 1e9
TFLOP = 1e12


def tflops(units, flop_per_clk_per_unit, clock_hz):
    return units * flop_per_clk_per_unit * clock_hz / TFLOP


# -- every shipped profile ------------------------------------------------------------------------

def test_all_expected_profiles_are_shipped():
    assert set(SHIPPED) <= set(available())


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_loads_and_is_self_consistent(name):
    hw = load(name)
    assert hw.name == name == (PROFILES_DIR / f"{name}.json").stem
    assert hw.kind == ("cpu" if name.startswith("cpu") else "gpu")
    assert "fp32" in hw.peak_tflops
    for key in ("peak_tflops", *NUMERIC_KEYS, "efficiency", "gemm_tile"):
        assert hw.sources.get(key), f"{name}: no source for {key}"
    # tensor dtypes are at least as fast as plain fp32 wherever they exist
    for dt, rate in hw.peak_tflops.items():
        assert rate >= hw.peak_tflops["fp32"], (name, dt)


def test_load_is_case_insensitive():
    assert load("h100-sxm5").name == "H100-SXM5"


# -- published figures ----------------------------------------------------------------------------

def test_maxwell_fp32_only():
    # GeForce GTX TITAN X specifications (2015): 3072 cores x 2 FLOP x 1.075 GHz boost = 6.60
    assert load("TitanX-Maxwell").peak_tflops["fp32"] == pytest.approx(tflops(3072, 2, 1.075 * GHz), abs=0.01)
    # Tesla M40 datasheet (2015): 3072 cores x 2 FLOP x 1.114 GHz boost = 6.84 ("7 TFLOPS")
    assert load("M40").peak_tflops["fp32"] == pytest.approx(tflops(3072, 2, 1.114 * GHz), abs=0.01)
    for name in ("TitanX-Maxwell", "M40"):
        assert set(load(name).peak_tflops) == {"fp32"}


def test_p100_fp16_is_twice_fp32():
    hw = load("P100-SXM2")
    # Tesla P100 whitepaper (2016), Table 1: 56 SMs x 64 cores x 2 FLOP x 1.480 GHz = 10.6 TFLOP/s
    assert hw.peak_tflops["fp32"] == pytest.approx(tflops(56 * 64, 2, 1.480 * GHz), abs=0.05)
    # half2 FMA: two fp16 FMAs per fp32 core per clock -> 21.2 TFLOP/s, no tensor cores
    assert hw.peak_tflops["fp16"] == pytest.approx(2 * hw.peak_tflops["fp32"])
    assert set(hw.peak_tflops) == {"fp32", "fp16"}
    # NVLink 1.0: 4 links x 20 GB/s per direction
    assert hw.intra_node_bandwidth_GBps == 4 * 20


def test_v100_whitepaper_table_1():
    hw = load("V100-SXM2")
    # NVIDIA Tesla V100 GPU Architecture whitepaper (2017), Table 1:
    # fp32 = 80 SMs x 64 FP32 cores x 2 FLOP x 1.530 GHz = 15.67 TFLOP/s
    assert hw.peak_tflops["fp32"] == pytest.approx(tflops(80 * 64, 2, 1.530 * GHz), abs=0.05)
    # tensor = 640 tensor cores x 64 FMA x 2 FLOP x 1.530 GHz = 125.3 TFLOP/s
    assert hw.peak_tflops["fp16"] == pytest.approx(tflops(640, 64 * 2, 1.530 * GHz), abs=0.5)
    assert "bf16" not in hw.peak_tflops and "tf32" not in hw.peak_tflops
    assert hw.memory_bandwidth_GBps == 900
    assert hw.sm_count == 80
    # NVLink 2.0: 6 links x 25 GB/s per direction
    assert hw.intra_node_bandwidth_GBps == 6 * 25
    with pytest.raises(ProfileError, match="bf16"):
        hw.peak_flops("bf16")


def test_a100_80gb():
    hw = load("A100-SXM4-80GB")
    # NVIDIA A100 whitepaper (2020): fp32 = 108 SMs x 64 x 2 FLOP x 1.410 GHz = 19.5 TFLOP/s
    assert hw.peak_tflops["fp32"] == pytest.approx(tflops(108 * 64, 2, 1.410 * GHz), abs=0.05)
    # dense fp16/bf16 = 108 SMs x 4 tensor cores x 256 FMA x 2 FLOP x 1.410 GHz = 311.9 ~ 312
    dense16 = tflops(108 * 4, 256 * 2, 1.410 * GHz)
    assert hw.peak_tflops["fp16"] == hw.peak_tflops["bf16"] == pytest.approx(dense16, abs=0.5)
    # tf32 runs at half the fp16 tensor rate: 156
    assert hw.peak_tflops["tf32"] == pytest.approx(dense16 / 2, abs=0.5)
    assert "fp8" not in hw.peak_tflops
    # A100 datasheet (80 GB SXM): 2,039 GB/s = 5 HBM2e stacks x 1024 bit x 3.186 Gb/s / 8
    assert hw.memory_bandwidth_GBps == pytest.approx(5 * 1024 * 3.186 / 8, rel=1e-3)
    # "80GB" = 80 GiB (nvidia-smi: 81920 MiB)
    assert hw.memory_capacity_bytes == 81920 * 2**20
    # NVLink 3.0: 12 links x 25 GB/s per direction; DGX A100: one HDR 200 Gb/s NIC per GPU
    assert hw.intra_node_bandwidth_GBps == 12 * 25
    assert hw.inter_node_bandwidth_GBps == 200 / 8


def test_h100_sxm5_dense_tensor_rates():
    hw = load("H100-SXM5")
    # NVIDIA H100 whitepaper (2022), SXM5 dense: fp16 989.4 = 132 SMs x 4096 FLOP/clk x 1.83 GHz
    assert hw.peak_tflops["fp16"] == pytest.approx(989.4)
    assert hw.peak_tflops["fp16"] == pytest.approx(tflops(132, 4096, 1.83 * GHz), abs=0.1)
    assert hw.peak_tflops["bf16"] == hw.peak_tflops["fp16"]
    # tf32 is half and fp8 twice the fp16 rate (494.7 and 1978.9; the whitepaper rounds
    # 989.43 and 1978.86, hence the 0.2 tolerance)
    assert hw.peak_tflops["tf32"] == pytest.approx(hw.peak_tflops["fp16"] / 2, abs=0.2)
    assert hw.peak_tflops["fp8"] == pytest.approx(hw.peak_tflops["fp16"] * 2, abs=0.2)
    # H100 datasheet: fp32 67 = 132 SMs x 128 cores x 2 FLOP x 1.98 GHz
    assert hw.peak_tflops["fp32"] == pytest.approx(tflops(132 * 128, 2, 1.98 * GHz), abs=0.2)
    assert hw.memory_bandwidth_GBps == 3350
    # NVLink 4.0: 18 links x 25 GB/s per direction; DGX H100: one NDR 400 Gb/s NIC per GPU
    assert hw.intra_node_bandwidth_GBps == 18 * 25
    assert hw.inter_node_bandwidth_GBps == 400 / 8


def test_h200_is_h100_compute_with_more_memory():
    h100, h200 = load("H100-SXM5"), load("H200")
    # NVIDIA H200 datasheet (2024): same GH100 compute, 141 GB HBM3e at 4.8 TB/s
    assert dict(h200.peak_tflops) == dict(h100.peak_tflops)
    assert h200.sm_count == h100.sm_count
    assert h200.memory_bandwidth_GBps == 4800
    # nvidia-smi reports 143771 MiB = 140.4 GiB, i.e. NVIDIA's "141GB" is binary
    assert h200.memory_capacity_GiB == pytest.approx(143771 / 1024, abs=1)


def test_b200_published_dense():
    hw = load("B200")
    # NVIDIA HGX B200 spec table, per GPU with 2:4 sparsity: fp8 9, fp16/bf16 4.5, tf32 2.2 PFLOPS;
    # dense = half of each
    assert hw.peak_tflops["fp8"] == 9000 / 2
    assert hw.peak_tflops["bf16"] == hw.peak_tflops["fp16"] == 4500 / 2
    assert hw.peak_tflops["tf32"] == 2200 / 2
    # DGX B200 datasheet: 72 PFLOPS fp8 (sparse) for 8 GPUs = 9 PFLOPS per GPU
    assert hw.peak_tflops["fp8"] * 2 * 8 == 72_000
    # NVLink 5.0: 18 links x 50 GB/s per direction = 1.8 TB/s bidirectional
    assert hw.intra_node_bandwidth_GBps * 2 == 1800
    assert "HGX B200" in hw.sources["peak_tflops"]


def test_cpu_generic_peak():
    hw = load("cpu-generic")
    # 2 cores x 2 FMA units x 8 fp32 lanes (AVX2) x 2 FLOP x 3.0 GHz = 192 GFLOP/s
    assert hw.peak_tflops["fp32"] == pytest.approx(tflops(2 * 2 * 8, 2, 3.0 * GHz))
    assert hw.devices_per_node == 1
    # 10 GbE = 1.25 GB/s
    assert hw.inter_node_bandwidth_GBps == 10 / 8
    assert "perfmodel calibrate --cpu" in hw.description


def test_generations_get_faster():
    order = ("TitanX-Maxwell", "P100-SXM2", "V100-SXM2", "A100-SXM4-80GB", "H100-SXM5", "B200")
    best = [max(load(n).peak_tflops.values()) for n in order]
    bw = [load(n).memory_bandwidth_GBps for n in order]
    assert best == sorted(best) and bw == sorted(bw)


# -- malformed files ------------------------------------------------------------------------------

def _write(tmp_path, d, name="bad.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def _base():
    return json.loads((PROFILES_DIR / "V100-SXM2.json").read_text())


def _raises_naming(path, key):
    with pytest.raises(ProfileError) as exc:
        load_profile_file(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    assert key in msg, msg
    return msg


def test_round_trip_of_a_copy_loads(tmp_path):
    p = _write(tmp_path, _base(), "copy.json")
    assert load(str(p)).peak_tflops["fp16"] == load("V100-SXM2").peak_tflops["fp16"]


def test_missing_key(tmp_path):
    d = _base()
    del d["memory_bandwidth_GBps"]
    _raises_naming(_write(tmp_path, d), "memory_bandwidth_GBps")


def test_missing_nested_key(tmp_path):
    d = _base()
    del d["efficiency"]["memory_max"]
    _raises_naming(_write(tmp_path, d), "efficiency.memory_max")


def test_unknown_key(tmp_path):
    d = _base()
    d["memory_bandwidth_GiBps"] = 900
    _raises_naming(_write(tmp_path, d), "memory_bandwidth_GiBps")


def test_unknown_dtype(tmp_path):
    d = _base()
    d["peak_tflops"]["int8"] = 250
    _raises_naming(_write(tmp_path, d), "peak_tflops.int8")


@pytest.mark.parametrize("key,value", [("sm_count", 0), ("l2_cache_MiB", -6),
                                       ("memory_capacity_GiB", "32"), ("devices_per_node", True),
                                       ("inter_node_latency_us", math.inf)])
def test_non_positive_or_non_numeric_value(tmp_path, key, value):
    d = _base()
    d[key] = value
    _raises_naming(_write(tmp_path, d), key)


def test_non_positive_peak(tmp_path):
    d = _base()
    d["peak_tflops"]["fp32"] = 0
    _raises_naming(_write(tmp_path, d), "peak_tflops.fp32")


def test_efficiency_above_one(tmp_path):
    d = _base()
    d["efficiency"]["gemm_max"] = 1.2
    _raises_naming(_write(tmp_path, d), "efficiency.gemm_max")


@pytest.mark.parametrize("key", ["peak_tflops", "memory_bandwidth_GBps", "intra_node_latency_us"])
def test_missing_source(tmp_path, key):
    d = _base()
    del d["sources"][key]
    msg = _raises_naming(_write(tmp_path, d), key)
    assert "source" in msg


def test_empty_source(tmp_path):
    d = _base()
    d["sources"]["sm_count"] = ""
    _raises_naming(_write(tmp_path, d), "sm_count")


def test_invalid_json_names_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x",')
    with pytest.raises(ProfileError, match="broken.json"):
        load_profile_file(p)


def test_unknown_name_lists_choices():
    with pytest.raises(ProfileError, match="H100-SXM5"):
        load("no-such-gpu")


# -- efficiency.elementwise_max ---------------------------------------------------------------------

def test_pointwise_work_runs_at_elementwise_max_which_defaults_to_gemm_max():
    import copy

    from perfmodel.cost.op_time import op_time
    from perfmodel.hardware import profile_from_dict
    from perfmodel.ops import Op, OpKind

    for name in SHIPPED:  # shipped at the fraction pointwise ops were priced at before the key existed
        eff = load(name).efficiency
        assert eff["elementwise_max"] == eff["gemm_max"], name
    d = load("V100-SXM2").to_dict()
    old = copy.deepcopy(d)
    del old["efficiency"]["elementwise_max"]
    assert profile_from_dict(old).efficiency["elementwise_max"] == old["efficiency"]["gemm_max"]
    d["efficiency"]["elementwise_max"] = 0.25
    hw, before = profile_from_dict(d), profile_from_dict(old)
    relu = Op(OpKind.ELEMENTWISE, "relu", {"numel": 10**6, "n_in": 1, "n_out": 1, "flops_per_elem": 1})
    # 1e6 FLOPs at 0.25 of the fp32 peak
    assert op_time(relu, hw).compute_s == pytest.approx(1e6 / (hw.peak_flops("fp32") * 0.25), rel=1e-12)
    gemm = Op(OpKind.GEMM, "g", {"m": 512, "n": 512, "k": 512})
    assert op_time(gemm, hw).compute_s == op_time(gemm, before).compute_s  # GEMMs keep gemm_max
