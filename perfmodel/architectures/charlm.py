"""Character LM on a Recurrent Highway Network (Zilly et al. 2017, arXiv:1607.03474).

One RHN layer of recurrence depth ``depth`` (10) unrolled over ``seq_len``
(150) characters.  Per time step t and micro-layer l (coupled carry gate,
c = 1 - t, as in the paper's language-model experiments)::

    h_l = tanh(W_H x [l=0] + R_H s_{l-1} + b_H)
    t_l = sigmoid(W_T x [l=0] + R_T s_{l-1} + b_T)
    s_l = h_l * t_l + s_{l-1} * (1 - t_l)

W_H and W_T are applied once to all time steps (one GEMM); R_H and R_T are
fused into one ``Linear(width, 2*width)`` per micro-layer.  Mirrors
:class:`perfmodel.torchmodels.charlm.CharLM` kernel for kernel: each
pointwise function is its own op (tanh, sigmoid, 1 - t, h*t, s*(1-t), sum),
with its own inputs and outputs.

Backward kernels that autograd launches but :func:`perfmodel.ops.derive_backward`
cannot see (it derives each op's backward alone, without knowing which
tensors are reused) are listed as explicit backward-phase ops (``ModelGraph.backward_only``):

* each recurrent weight (and bias) is used at every time step, so autograd
  adds ``seq_len - 1`` weight-sized gradients into its accumulator;
* ``s`` (next micro-layer's input and the carry product) and ``t`` (gate
  product and ``1 - t``) are used twice per micro-layer: one gradient add each;
* ``chunk`` of the fused pre-activation: its backward concatenates the two
  halves (one copy of ``batch x 2*width``);
* ``unbind`` of the input projection over time: its backward stacks the
  ``seq_len`` step gradients (one copy of ``tokens x 2*width``).
"""
from ..ops import OpKind
from .base import MAX_LAYERS, ArchSpec, Knob
from .layers import GraphBuilder


def build(width, batch=32, seq_len=150, depth=10, vocab=98, embed=None, dtype="fp32"):
    embed = width if embed is None else embed
    h, tokens = width, batch * seq_len
    g = GraphBuilder("charlm", dtype)
    g.embedding("embedding", tokens, vocab, embed)
    g.linear("rhn/input_proj", tokens, embed, 2 * h)            # W_H, W_T for all steps
    g.backward_only_op(OpKind.COPY, "rhn/input_proj/unbind_grad", {"numel": tokens * 2 * h}, "bwd_data")
    bh = batch * h
    for layer in range(depth):
        p = f"rhn/depth{layer}"
        g.linear(f"{p}/recurrent", batch, h, 2 * h, repeat=seq_len)  # R_H, R_T
        g.backward_only_op(OpKind.ELEMENTWISE, f"{p}/recurrent/grad_accumulate",
                             {"numel": 2 * h * h + 2 * h, "n_in": 2, "n_out": 1}, "bwd_weight", seq_len - 1,
                             kernels=2)
        if layer == 0:
            g.pointwise(f"{p}/add_input", batch * 2 * h, n_in=2, repeat=seq_len)
        g.backward_only_op(OpKind.COPY, f"{p}/chunk_grad", {"numel": batch * 2 * h}, "bwd_data", seq_len)
        g.pointwise(f"{p}/tanh", bh, repeat=seq_len)
        g.pointwise(f"{p}/sigmoid", bh, repeat=seq_len)
        g.pointwise(f"{p}/one_minus_t", bh, repeat=seq_len)
        g.pointwise(f"{p}/h_times_t", bh, n_in=2, repeat=seq_len)
        g.pointwise(f"{p}/s_times_carry", bh, n_in=2, repeat=seq_len)
        g.pointwise(f"{p}/sum", bh, n_in=2, repeat=seq_len)
        g.backward_only_op(OpKind.ELEMENTWISE, f"{p}/grad_accumulate_s_t", {"numel": bh, "n_in": 2, "n_out": 1},
                             "bwd_data", seq_len, kernels=2)
    g.op("copy", "rhn/stack_outputs", {"numel": tokens * h}, saved=False)
    g.linear("softmax/linear", tokens, h, vocab)
    g.cross_entropy("loss", tokens, vocab)
    return g.build(width=width, batch=batch, seq_len=seq_len, depth=depth, vocab=vocab, embed=embed)


SPEC = ArchSpec(
    "charlm", "character LM: embedding, 1-layer RHN (recurrence depth 10), softmax", build,
    {"batch": Knob(32, "sequences per step"),
     "seq_len": Knob(150, "characters per sequence (BPTT length)"),
     "depth": Knob(10, "RHN recurrence depth", maximum=MAX_LAYERS),
     "vocab": Knob(98, "character vocabulary size"),
     "embed": Knob(None, "embedding size (default: width)")},
    "perfmodel.torchmodels.charlm:CharLM")
