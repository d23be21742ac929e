"""GPT-style decoder-only transformer (GPT-2 layout, Radford et al. 2019).

Token embedding (``vocab`` x width) + learned position embedding
(``seq_len`` x width), then ``layers`` pre-LayerNorm blocks::

    x = x + proj(attention(qkv(ln1(x))))       # causal multi-head self-attention
    x = x + fc2(gelu(fc1(ln2(x))))             # MLP, hidden 4 * width

a final LayerNorm and an LM head **tied** to the token embedding (logits =
x @ wte^T, no bias; the embedding matrix is counted once in ``params``).  No
dropout.  Defaults (width 768, 12 layers, 1024 positions, vocab 50257, the
GPT-2 BPE vocabulary) give GPT-2 small, 124,439,808 parameters.

Attention per block, one op per kernel of
:class:`perfmodel.torchmodels.transformer.Transformer`:

* ``qkv``: one fused ``Linear(width, 3*width)`` (addmm);
* ``split_heads``: one copy to ``[3, batch*heads, T, head_dim]``;
* ``scores``: batched GEMM ``[T x d_head] @ [d_head x T]``, batch*heads of them;
* ``scale_mask``: ``* 1/sqrt(d_head)`` then causal ``masked_fill`` (2 kernels);
* ``softmax``; ``context``: batched GEMM ``[T x T] @ [T x d_head]``;
* ``merge_heads``: one copy back to ``[batch, T, width]``; ``proj``: Linear.

Both attention GEMMs are counted over the full T x T square: the causal mask
is applied after the product, so no FLOPs are saved (as in the torch module).

Not modelled: the one extra ``vocab x width`` add that autograd launches to
sum the tied weight's two gradients (embedding + LM head).
"""
import numpy as np

from ..errors import PerfmodelError
from ..ops import OpKind
from .base import ArchSpec, Knob
from .layers import GraphBuilder

HEAD_DIM_DEFAULT = 64  # head size when ``heads`` is not given (GPT-2, GPT-3)


def resolve_heads(width, heads=None):
    """Number of heads: ``heads``, or ``width // 64`` when None; width must divide evenly."""
    divisor = HEAD_DIM_DEFAULT if heads is None else heads
    w = np.asarray(width)
    bad = w % divisor != 0
    if np.any(bad):
        value = w[bad].ravel()[0] if w.ndim else w
        why = (f"a multiple of {HEAD_DIM_DEFAULT} (head size when heads is not given)" if heads is None
               else f"divisible by heads={heads}")
        raise PerfmodelError(f"width {int(value)} is not allowed for model 'transformer'; "
                             f"width must be {why}")
    return width // HEAD_DIM_DEFAULT if heads is None else heads


def build(width, batch=8, seq_len=1024, layers=12, heads=None, vocab=50257, dtype="fp32"):
    heads = resolve_heads(width, heads)
    d_head = width // heads
    t, tokens, bh = seq_len, batch * seq_len, batch * heads
    g = GraphBuilder("transformer", dtype)
    g.embedding("wte", tokens, vocab, width)
    g.embedding("wpe", seq_len, seq_len, width)
    g.pointwise("embed_add", tokens * width, n_in=2)
    for i in range(layers):
        p = f"blocks/{i}"
        g.norm(f"{p}/ln1", tokens * width, width)
        g.linear(f"{p}/attn/qkv", tokens, width, 3 * width)
        g.op(OpKind.COPY, f"{p}/attn/split_heads", {"numel": 3 * tokens * width})
        g.gemm(f"{p}/attn/scores", t, t, d_head, batch=bh)          # q @ k^T
        # two kernels (scale, masked_fill), each reads and writes the scores
        g.pointwise(f"{p}/attn/scale_mask", bh * t * t, flops_per_elem=2, n_in=2, n_out=2,
                    kernels=2, saved=False)
        g.reduction(f"{p}/attn/softmax", bh * t * t)                 # max, sub, exp, sum, div
        g.gemm(f"{p}/attn/context", t, d_head, t, batch=bh)         # att @ v
        g.op(OpKind.COPY, f"{p}/attn/merge_heads", {"numel": tokens * width})
        g.linear(f"{p}/attn/proj", tokens, width, width)
        g.pointwise(f"{p}/attn/residual", tokens * width, n_in=2)
        g.norm(f"{p}/ln2", tokens * width, width)
        g.linear(f"{p}/mlp/fc", tokens, width, 4 * width)
        # exact GELU x/2 * (1 + erf(x/sqrt2)): div, erf, add, 2 mul (erf counted as one)
        g.pointwise(f"{p}/mlp/gelu", tokens * 4 * width, flops_per_elem=5)
        g.linear(f"{p}/mlp/proj", tokens, 4 * width, width)
        g.pointwise(f"{p}/mlp/residual", tokens * width, n_in=2)
    g.norm("ln_f", tokens * width, width)
    # LM head tied to wte: its weight is already counted under "wte"
    g.op(OpKind.GEMM, "lm_head", {"m": tokens, "n": vocab, "k": width},
         attrs={"weight": "b", "trans_b": True, "bias": False})
    g.cross_entropy("loss", tokens, vocab)
    return g.build(width=width, batch=batch, seq_len=seq_len, layers=layers, heads=heads,
                   vocab=vocab)


SPEC = ArchSpec(
    "transformer", "GPT-style decoder: pre-LN causal self-attention + 4x GELU MLP, tied LM head", build,
    {"batch": Knob(8, "sequences per step"),
     "seq_len": Knob(1024, "tokens per sequence (context length, learned positions)"),
     "layers": Knob(12, "transformer blocks"),
     "heads": Knob(None, "attention heads (default: width // 64, i.e. head size 64)"),
     "vocab": Knob(50257, "token vocabulary (default: GPT-2 BPE)")},
    "perfmodel.torchmodels.transformer:Transformer")
