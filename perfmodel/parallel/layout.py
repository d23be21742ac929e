"""A parallel layout: data x tensor x pipeline degrees, micro-batches, and its checks.

Devices are numbered tensor-parallel rank fastest, then data-parallel, then
pipeline stage (Megatron-LM's placement: Narayanan et al. 2021, sec. 3.3), so
a tensor-parallel group sits inside one node when ``tp <= devices_per_node``.

The global batch ``B`` is split ``B = dp x micro_batches x micro_batch``:
each data-parallel replica runs ``micro_batches`` micro-batches of
``micro_batch`` examples per step (pipeline micro-batches, or gradient
accumulation when ``pp == 1``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import PerfmodelError

SCHEDULES = ("1f1b", "gpipe")


@dataclass(frozen=True)
class Layout:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    micro_batches: int = 1

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    def micro_batch(self, batch: int) -> int:
        return batch // (self.dp * self.micro_batches)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"dp={self.dp} tp={self.tp} pp={self.pp} m={self.micro_batches}"


def check_layout(layout: Layout, batch: int, devices: int | None = None) -> None:
    """Raise :class:`PerfmodelError` naming the bad value when ``layout`` cannot run ``batch``, or does not
    use exactly ``devices`` devices (when given)."""
    for name in ("dp", "tp", "pp", "micro_batches"):
        v = getattr(layout, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PerfmodelError(f"{name}={v!r} is not allowed; parallel degrees must be positive integers")
    if devices is not None and layout.devices > devices:
        raise PerfmodelError(f"layout {layout} needs dp*tp*pp = {layout.devices} devices, more than "
                             f"--devices {devices}")
    if devices is not None and layout.devices < devices:  # the devices a step runs on are dp*tp*pp
        raise PerfmodelError(f"layout {layout} runs on dp*tp*pp = {layout.devices} devices, not --devices "
                             f"{devices}: give --devices {layout.devices}, or leave out --dp to give data "
                             f"parallelism the devices tp x pp leaves")
    per = layout.dp * layout.micro_batches
    if batch % per:
        raise PerfmodelError(f"batch {batch} is not divisible by dp x micro-batches = {layout.dp} x "
                             f"{layout.micro_batches} = {per}; choose a batch that is a multiple of {per}")


def resolve_layout(devices: int | None, dp: int | None, tp: int, pp: int, micro_batches: int) -> Layout:
    """``--devices N`` with ``--dp`` left out puts the devices not used by tp x pp into data parallelism."""
    if dp is None:
        if devices is None:
            dp = 1
        else:
            if tp * pp > devices:
                raise PerfmodelError(f"tp x pp = {tp} x {pp} = {tp * pp} needs more devices than --devices "
                                     f"{devices}")
            if devices % (tp * pp):
                raise PerfmodelError(f"--devices {devices} is not divisible by tp x pp = {tp} x {pp}; "
                                     "give --dp explicitly or a multiple of tp x pp")
            dp = devices // (tp * pp)
    return Layout(dp, tp, pp, micro_batches)


def degrees(n: int) -> list[int]:
    """Parallel degrees the search tries for ``n`` devices: powers of two and divisors of n."""
    return sorted(set(powers_of_two(n)) | {d for d in range(1, n + 1) if n % d == 0})


def powers_of_two(upto: int, start: int = 1) -> list[int]:
    out, v = [], start
    while v <= upto:
        out.append(v)
        v *= 2
    return out


def batch_splits(upto: int, batches=None) -> list[int]:
    """Micro-batch sizes and counts the search tries: powers of two up to ``upto``, and the divisors
    (up to ``upto``) of each allowed global batch, so that a batch such as 3 = 1 x 3 x 1 is reachable."""
    out = set(powers_of_two(upto))
    for b in batches or ():
        out |= {d for d in range(1, min(int(b), upto) + 1) if b % d == 0}
    return sorted(out)
