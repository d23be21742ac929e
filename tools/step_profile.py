"""One training step under ``torch.profiler`` next to the op graph's prices, kind by kind.

    python tools/step_profile.py PROFILE.json --model transformer --width 256 [--batch 2] [--seq-len 512]
        [--set block=llama --set attention=flash ...] [--steps 3] [--top 25]

Prices each op of the step's graph on PROFILE (``perfmodel.cost.op_time.op_time``, in-step) and
sums them per (kind, phase); then runs the torch module's training step as ``perfmodel validate``
does (SGD, one thread), two warm-up steps, then ``--steps`` steps under the profiler, and prints
the ``--top`` aten ops by self time per step.  The priced total is ``perfmodel predict``'s step
time (overheads included).  Matching aten names to op kinds is left to the reader; the script
behind the per-kernel figures of docs/accuracy.md ("Llama blocks").  Nothing is written.
"""
from __future__ import annotations

import argparse
import collections


def _knobs(pairs):
    out = {}
    for p in pairs:
        k, _, v = p.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def priced(profile: str, model: str, width: int, knobs: dict):
    """(step seconds from predict, {(kind, phase): seconds}, [(seconds, op)] largest first)."""
    from perfmodel import hardware
    from perfmodel.architectures import build_graph
    from perfmodel.cost.op_time import op_time
    from perfmodel.predict import predict
    hw = hardware.load(profile)
    g = build_graph(model, width, **knobs)
    per_kind: dict = collections.defaultdict(float)
    ops = []
    for o in g.step_ops():
        t = float(op_time(o, hw).time_s) * o.repeat
        per_kind[(str(o.kind), o.phase)] += t
        ops.append((t, o))
    step = predict(model, width, hw, **knobs).time_per_step_s
    return step, dict(per_kind), sorted(ops, key=lambda x: -x[0])


def profiled(model: str, width: int, knobs: dict, steps: int):
    """(median wall seconds per step, key averages of the profiled steps)."""
    import torch
    from perfmodel.calibrate.timing import measure
    from torch.profiler import ProfilerActivity, profile

    from perfmodel.torchmodels import build_module
    torch.set_num_threads(1)
    module = build_module(model, width, **knobs).train()
    opt = torch.optim.SGD(module.parameters(), lr=1e-3)
    inputs, targets = module.example_batch("cpu", generator=torch.Generator().manual_seed(0))

    def step():
        opt.zero_grad(set_to_none=True)
        module.loss(inputs, targets).backward()
        opt.step()

    wall = measure(step, "cpu", warmup=2, repeats=steps, min_block_s=0.0).seconds   # median, wall clock
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return wall, prof.key_averages()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--model", default="transformer")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    knobs = _knobs(args.sets)
    knobs.update({k: v for k, v in (("batch", args.batch), ("seq_len", args.seq_len)) if v})
    step_s, per_kind, ops = priced(args.profile, args.model, args.width, knobs)
    wall, avg = profiled(args.model, args.width, knobs, args.steps)
    print(f"{args.model} width {args.width} {knobs}: measured {wall:.4f} s per step (median of {args.steps}, "
          f"no profiler), predicted {step_s:.4f} s ({100 * (step_s / wall - 1):+.1f}%)")
    print("priced per (kind, phase), s per step:")
    for (kind, phase), t in sorted(per_kind.items(), key=lambda x: -x[1]):
        print(f"  {kind:12s} {phase:10s} {t:9.4f}")
    print("largest priced ops:")
    for t, o in ops[:12]:
        print(f"  {t:9.4f}  {o.kind!s:10s} {o.phase:10s} {o.path:28s} {o.dims}")
    print("profiled aten ops by self time, s per step (count per step):")
    rows = sorted(avg, key=lambda e: -e.self_cpu_time_total)[:args.top]
    for e in rows:
        print(f"  {e.self_cpu_time_total / 1e6 / args.steps:9.4f}  ({e.count / args.steps:5.0f})  {e.key}")
    total = sum(e.self_cpu_time_total for e in avg) / 1e6 / args.steps
    print(f"  {total:9.4f}  all ops (profiled; the profiler adds a few us per op)")


if __name__ == "__main__":
    main()
