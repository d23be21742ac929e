"""Character LM on a Recurrent Highway Network (Zilly et al. 2017, arXiv:1607.03474).

One RHN layer of recurrence depth ``depth`` (10) unrolled over ``seq_len``
(150) characters.  Per time step t and micro-layer l (coupled carry gate,
c = 1 - t, as in the paper's language-model experiments)::

    h_l = tanh(W_H x [l=0] + R_H s_{l-1} + b_H)
    t_l = sigmoid(W_T x [l=0] + R_T s_{l-1} + b_T)
    s_l = h_l * t_l + s_{l-1} * (1 - t_l)

W_H and W_T are applied once to all time steps (one GEMM); R_H and R_T are
fused into one ``Linear(width, 2*width)`` per micro-layer.  Mirrors
:class:`perfmodel.torchmodels.charlm.CharLM` kernel for kernel.
"""
from .base import ArchSpec, Knob
from .layers import GraphBuilder


def build(width, batch=32, seq_len=150, depth=10, vocab=98, embed=None, dtype="fp32"):
    embed = width if embed is None else embed
    h, tokens = width, batch * seq_len
    g = GraphBuilder("charlm", dtype)
    g.embedding("embedding", tokens, vocab, embed)
    g.linear("rhn/input_proj", tokens, embed, 2 * h)            # W_H, W_T for all steps
    for l in range(depth):
        g.linear(f"rhn/depth{l}/recurrent", batch, h, 2 * h, repeat=seq_len)  # R_H, R_T
        if l == 0:
            g.pointwise("rhn/depth0/add_input", batch * 2 * h, n_in=2, repeat=seq_len)
        # tanh, sigmoid, (1 - t), h*t, s*(1-t), sum: six pointwise kernels
        g.pointwise(f"rhn/depth{l}/gates", batch * h, flops_per_elem=6, n_in=2, n_out=1,
                    repeat=seq_len, kernels=6)
    g.op("copy", "rhn/stack_outputs", {"numel": tokens * h}, saved=False)
    g.linear("softmax/linear", tokens, h, vocab)
    g.cross_entropy("loss", tokens, vocab)
    return g.build(width=width, batch=batch, seq_len=seq_len, depth=depth, vocab=vocab, embed=embed)


SPEC = ArchSpec(
    "charlm", "character LM: embedding, 1-layer RHN (recurrence depth 10), softmax", build,
    {"batch": Knob(32, "sequences per step"),
     "seq_len": Knob(150, "characters per sequence (BPTT length)"),
     "depth": Knob(10, "RHN recurrence depth"),
     "vocab": Knob(98, "character vocabulary size"),
     "embed": Knob(None, "embedding size (default: width)")},
    "perfmodel.torchmodels.charlm:CharLM")
