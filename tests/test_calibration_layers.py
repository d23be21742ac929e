"""Batch norm and max pooling timed as curves of their own (perfmodel.calibrate.layers) and read by the roofline."""
import pytest
from perfmodel.calibrate import layers

from perfmodel import hardware
from perfmodel.architectures import build_graph
from perfmodel.cost import roofline
from perfmodel.cost.op_time import op_time
from perfmodel.hardware import calibration
from perfmodel.hardware.profile import profile_from_dict


def test_input_shapes_are_nchw_planes_then_images():
    assert layers.input_shape(64 * 56 * 56 * 3) == (3, 64, 56, 56)   # beyond one 56x56 plane: more images
    assert layers.input_shape(64 * 10 * 10) == (1, 64, 10, 10)
    assert layers.input_shape(1) == (1, 64, 2, 2)                     # the smallest shape


def test_ir_bytes_of_the_timed_kernels():
    """fp32, input [2, 64, 8, 8] = 8192 elements.
    batch norm: forward reads x, writes y = 2 x 4 x 8192 = 65,536 B; backward reads x and dy, writes dx
    = 3 x 4 x 8192 = 98,304 B.  max pool 3x3/2 pad 1: 2 x 64 x 4 x 4 = 2048 outputs, each reading ~4
    inputs: forward (4 + 1) x 4 x 2048 = 40,960 B; backward reads the saved reads and dy (5), writes
    the 4 input gradients: 9 x 4 x 2048 = 73,728 B."""
    fwd, bwd = layers.ir_ops("batchnorm", (2, 64, 8, 8))
    assert (fwd.bytes, bwd.bytes, fwd.phase, bwd.phase) == (65536, 98304, "fwd", "bwd_data")
    fwd, bwd = layers.ir_ops("maxpool", (2, 64, 8, 8))
    assert (fwd.bytes, bwd.bytes) == (40960, 73728)
    assert roofline.op_curve(fwd) == "maxpool" and roofline.op_curve(bwd) == "maxpool_bwd"


def test_kernels_run_and_match_the_layer_semantics():
    import torch
    fwd, bwd = layers.layer_callables("maxpool", (1, 64, 8, 8), "cpu")
    y, idx = fwd()
    assert y.shape == (1, 64, 4, 4) and bwd().shape == (1, 64, 8, 8)
    fwd, bwd = layers.layer_callables("batchnorm", (2, 64, 4, 4), "cpu")
    y, mean, invstd = fwd()
    assert y.shape == (2, 64, 4, 4) and torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(64), atol=1e-5)
    assert [t.shape for t in bwd()] == [(2, 64, 4, 4), (64,), (64,)]


def _with_curves(points):
    d = hardware.load(hardware.DEFAULT_CPU).to_dict()
    d["calibration"] = {"memory": points, "overhead_us": {"default": 0.0, "dispatch": 0.0}}
    return profile_from_dict(d, "test.json")


def test_resnet_batchnorm_and_maxpool_read_their_own_curves():
    """A reduction curve at 1 GB/s, batch norm at 0.25 GB/s (forward) and 0.5 GB/s (backward), max
    pooling forward at 0.1 GB/s: each op's memory time is its bytes over its own curve's bandwidth;
    max pooling's backward, with no curve of its own, falls back to the reduction curve."""
    pts = []
    for op, bw in (("reduction", 1e9), ("batchnorm", 0.25e9), ("batchnorm_bwd", 0.5e9), ("maxpool", 0.1e9)):
        pts += [{"op": op, "bytes": b, "time_s": b / bw} for b in (10**3, 10**9)]
    hw = _with_curves(pts)
    ops = {(o.path, o.phase): o for o in build_graph("resnet", 16, batch=2, image_size=32).step_ops()}
    for key, bw in ((("bn1", "fwd"), 0.25e9), (("bn1", "bwd_data"), 0.5e9), (("maxpool", "fwd"), 0.1e9),
                    (("maxpool", "bwd_data"), 1e9), (("layer1/0/bn2", "fwd"), 0.25e9)):
        op = ops[key]
        assert op_time(op, hw).memory_s == pytest.approx(op.bytes / bw, rel=1e-9), key
    # the transformer's layer norms name no curve: the reduction curve
    ln = next(o for o in build_graph("transformer", 64, seq_len=8).step_ops() if o.path.endswith("ln1"))
    assert roofline.op_curve(ln) is None
    assert op_time(ln, hw).memory_s == pytest.approx(ln.bytes / 1e9, rel=1e-9)


def test_profile_schema_knows_the_layer_curves():
    with pytest.raises(Exception, match=r"calibration\.memory\[0\]\.op.*maxpool_bwd"):
        _with_curves([{"op": "avgpool", "bytes": 10, "time_s": 1e-6}])
    assert "maxpool_bwd" in calibration.CURVE_OPS
