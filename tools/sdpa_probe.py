"""Time one transformer layer's flash attention on this CPU against its price on a profile.

    python tools/sdpa_probe.py PROFILE.json [--widths 128,512] [--batch 8] [--seq-len 1024]

For each width, the Llama block's ``OpKind.ATTENTION`` op of layer 0 (``perfmodel.architectures``,
``block=llama, attention=flash``) is priced on PROFILE (``perfmodel.cost.op_time.op_time``), and the
kernel it stands for, ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` on
``[batch, width/64, seq, 64]`` fp32 tensors, is timed forward and backward (``torch.autograd.grad``
with the graph kept), one torch thread, CPU clock, one warm-up and the median of 5.  Nothing is
written; the script behind the attention figures of docs/accuracy.md ("Llama blocks").
"""
from __future__ import annotations

import argparse
import time


def _median_s(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return sorted(times)[repeats // 2]


def time_attention(batch: int, heads: int, seq: int) -> dict:
    """Median CPU seconds of causal SDPA forward and backward on ``[batch, heads, seq, 64]`` fp32."""
    import torch
    import torch.nn.functional as F
    q, k, v = (torch.randn(batch, heads, seq, 64, requires_grad=True) for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    dy = torch.randn_like(out)
    return {"fwd": _median_s(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
            "bwd": _median_s(lambda: torch.autograd.grad(out, (q, k, v), dy, retain_graph=True))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--widths", default="128,512")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args(argv)
    import torch

    from perfmodel import hardware
    from perfmodel.architectures import build_graph
    from perfmodel.cost.op_time import op_time
    torch.set_num_threads(1)
    hw = hardware.load(args.profile)
    for w in map(int, args.widths.split(",")):
        g = build_graph("transformer", w, batch=args.batch, seq_len=args.seq_len, block="llama", attention="flash")
        ops = [o for o in g.step_ops() if o.kind == "attention" and "blocks/0/" in o.path]
        priced = {"fwd" if o.phase == "fwd" else "bwd": float(op_time(o, hw).time_s) * o.repeat for o in ops}
        timed = time_attention(args.batch, w // 64, args.seq_len)
        print(f"width {w}: " + ", ".join(f"{p} timed {timed[p]:.4f} s priced {priced[p]:.4f} s "
                                          f"({100 * (priced[p] / timed[p] - 1):+.0f}%)" for p in ("fwd", "bwd")))


if __name__ == "__main__":
    main()
