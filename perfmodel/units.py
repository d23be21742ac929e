"""Quantities: integer ceiling division, and human-readable SI rates (base 1000) and binary sizes
(base 1024, 'iB')."""


def ceil_div(a, b):
    """``ceil(a / b)`` for positive integers (or integer arrays): tiles, waves, shards of a split."""
    return -(-a // b)


def fmt_si(x: float, unit: str = "") -> str:
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def fmt_bytes(n: float) -> str:
    for p, s in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= p:
            return f"{n / p:.3g} {s}"
    return f"{n:.0f} B"


def fmt_seconds(t: float) -> str:
    if t >= 86400:
        return f"{t / 86400:.3g} days"
    if t >= 3600:
        return f"{t / 3600:.3g} h"
    if t >= 60:
        return f"{t / 60:.3g} min"
    if t >= 1:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} us"
