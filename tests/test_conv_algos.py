"""Winograd F(4x4, 3x3) as the GPU library's alternative to the implicit GEMM (perfmodel.cost.conv_algos).

Counts follow Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): a 4x4
output tile of a 3x3 filter needs a 6x6 input tile and 36 multiplies per (tile, c, k) instead of 144.
"""
import pytest

from perfmodel.cost import roofline
from perfmodel.cost.conv_algos import winograd_applies, winograd_parts
from perfmodel.cost.op_time import op_time
from perfmodel.cost.waves import gemm_wave_efficiency
from perfmodel.hardware import load
from perfmodel.ops import Op, OpKind


def conv(r=3, stride=1, phase="fwd", n=16, c=64, hw=56, k=64, pad=1, dtype="fp32"):
    return Op(OpKind.CONV2D, "conv", {"n": n, "c": c, "h": hw, "w": hw, "k": k, "r": r, "s": r,
                                      "stride_h": stride, "stride_w": stride, "pad_h": pad, "pad_w": pad},
              dtype, phase)


def test_winograd_gemm_and_transform_arithmetic():
    # 56x56x64, n16, k64, 3x3/1 pad 1 (a ResNet conv2_x layer, DeepBench's conv set):
    # output 56x56 -> tiles = 16 * 14 * 14 = 3136; 36 GEMMs [3136 x 64] @ [64 x 64]
    gemm, nbytes = winograd_parts(conv())
    assert (gemm.dims["m"], gemm.dims["n"], gemm.dims["k"]) == (36 * 3136, 64, 64)
    assert gemm.flops == 2 * 36 * 3136 * 64 * 64 == 924_844_032  # vs direct 2*16*56*56*64*64*9 = 3.70e9
    # input 16*64*56*56 = 3,211,264; its transform 36*3136*64 = 7,225,344; filter 64*64*9 = 36,864 and
    # 36*64*64 = 147,456; product 7,225,344; output 3,211,264 -> 21,057,536 floats x 4 bytes
    assert nbytes == 4 * 21_057_536


def test_backward_phases_swap_the_channel_roles():
    g_data, _ = winograd_parts(conv(phase="bwd_data", c=32, k=128))
    g_weight, _ = winograd_parts(conv(phase="bwd_weight", c=32, k=128))
    assert (g_data.dims["m"], g_data.dims["n"], g_data.dims["k"]) == (36 * 3136, 32, 128)
    assert (g_weight.dims["m"], g_weight.dims["n"], g_weight.dims["k"]) == (36 * 32, 128, 3136)


def test_only_stride_one_3x3_filters():
    assert winograd_applies(conv().dims)
    assert not winograd_applies(conv(stride=2).dims)
    assert not winograd_applies(conv(r=1, pad=0).dims)
    assert not winograd_applies(conv(r=5, pad=2).dims)


def implicit_s(op, hw):
    """Datasheet implicit GEMM: conv_max x the wave factor of the [n*p*q x c*r*s] @ [c*r*s x k] GEMM."""
    m, n, k = roofline.conv_gemm_dims(op)
    return op.flops / (hw.peak_flops(op.dtype) * hw.efficiency["conv_max"] * gemm_wave_efficiency(hw, m, n, 1, k))


def test_gpu_takes_the_faster_algorithm_cpu_keeps_implicit_gemm():
    gpu, cpu = load("V100-SXM2"), load("cpu-generic")
    op = conv()
    implicit = implicit_s(op, gpu)
    gemm, nbytes = winograd_parts(op)
    winograd = op_time(gemm, gpu).compute_s + roofline.memory_time(gpu, nbytes)
    assert winograd < implicit  # 4x fewer multiplies outweigh the transforms here
    assert roofline.compute_time(op, gpu) == pytest.approx(min(implicit, winograd))
    one_by_one = conv(r=1, pad=0)
    assert roofline.compute_time(one_by_one, gpu) == pytest.approx(implicit_s(one_by_one, gpu))
    assert roofline.compute_time(op, cpu) == pytest.approx(
        op.flops / (cpu.peak_flops("fp32") * cpu.efficiency["conv_max"]))
