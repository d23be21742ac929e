"""ModelGraph: forward ops, backward-only ops apart, one optimizer op."""
import pytest

from perfmodel.architectures import MODELS, build_graph
from perfmodel.graph import PRICED_OPTIMIZERS, ModelGraph, optimizer_op
from perfmodel.ops import Op, OpKind


@pytest.mark.parametrize("model", sorted(MODELS))
def test_forward_ops_are_forward_and_backward_only_ops_are_not(model):
    g = build_graph(model, 64)
    assert {op.phase for op in g.fwd} == {"fwd"}
    fwd_paths = [op.path for op in g.fwd]
    for path, ops in g.backward_only.items():
        assert fwd_paths.count(path) == 1
        assert all(op.phase in ("bwd_data", "bwd_weight") and not op.saved for op in ops)


def test_charlm_lists_each_backward_only_op_after_the_forward_op_it_serves():
    depth = 3
    g = build_graph("charlm", 64, depth=depth)
    # per micro-layer: the recurrent weight's gradient accumulation, the chunk's backward copy,
    # the gradient add of s and t; plus the input projection's unbind: 3 x depth + 1
    assert sum(len(v) for v in g.backward_only.values()) == 3 * depth + 1
    assert [o.path for o in g.backward_only["rhn/input_proj"]] == ["rhn/input_proj/unbind_grad"]
    assert [o.path for o in g.backward_only["rhn/depth1/recurrent"]] == \
        ["rhn/depth1/recurrent/grad_accumulate", "rhn/depth1/chunk_grad"]
    listed = [o.path for o in g.listed_ops()]
    assert listed[listed.index("rhn/input_proj") + 1] == "rhn/input_proj/unbind_grad"
    assert g.step_ops()[:len(listed)] == g.listed_ops()


def test_backward_only_keys_must_name_one_forward_op():
    op = Op(OpKind.COPY, "a", {"numel": 4})
    extra = Op(OpKind.COPY, "a/grad", {"numel": 4}, phase="bwd_data", saved=False)
    with pytest.raises(ValueError, match="backward-only ops of b"):
        ModelGraph("m", [op], 0, {}, {}, {"b": [extra]})


@pytest.mark.parametrize("optimizer", PRICED_OPTIMIZERS)
def test_the_step_ends_with_one_optimizer_op(optimizer):
    g = build_graph("mlp", 32)
    assert g.step_ops(optimizer)[-1] == optimizer_op(g.params, len(g.param_groups), optimizer)
