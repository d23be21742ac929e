"""Time an elementwise multiply with every operand hot (fixed buffers, as the calibration once did) and
as ``perfmodel.calibrate.memory`` times it now (first input hot, second input and output cold), from
16 KiB to 64 MiB moved; one thread, CPU clock.

    python tools/cold_memory.py

The script behind the "memory kernels, hot or cold" figures of docs/accuracy.md.
"""
from __future__ import annotations


def main() -> None:
    import torch
    from perfmodel.calibrate.memory import memory_callable
    from perfmodel.calibrate.timing import measure
    torch.set_num_threads(1)
    print(f"{'bytes moved':>12s} {'hot':>10s} {'cold':>10s}  cold/hot")
    for nbytes in (16 * 2**10, 256 * 2**10, 2**20, 4 * 2**20, 16 * 2**20, 64 * 2**20):
        numel = nbytes // 12          # a * b -> out: 3 x 4 bytes per element
        a, b, out = torch.randn(numel), torch.randn(numel), torch.empty(numel)
        hot = measure(lambda a=a, b=b, out=out: torch.mul(a, b, out=out), warmup=2, repeats=5, min_block_s=5e-3,
                      clock="cpu").seconds
        cold = measure(memory_callable("elementwise", numel, "cpu"), warmup=2, repeats=5, min_block_s=5e-3,
                       clock="cpu").seconds
        print(f"{nbytes:12d} {hot * 1e6:8.1f}us {cold * 1e6:8.1f}us  {cold / hot:.2f}")


if __name__ == "__main__":
    main()
