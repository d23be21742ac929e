"""``perfmodel models`` and ``perfmodel hardware``: what exists."""
import click
from tabulate import tabulate

from .. import hardware as hw_mod
from ..architectures import MODELS
from ..errors import ProfileError


@click.command()
def models():
    """List architectures and their knobs (set with --batch, --seq-len, --set NAME=VALUE)."""
    for spec in MODELS.values():
        click.echo(f"{spec.name:12s} {spec.description}")
        for name, k in spec.knobs.items():
            choices = f" (choices: {', '.join(map(str, k.choices))})" if k.choices else ""
            click.echo(f"    {name:10s} default {k.default!s:8s} {k.help}{choices}")


@click.command()
def hardware():
    """List hardware profiles with their key figures."""
    rows = []
    for name in hw_mod.available():
        try:
            p = hw_mod.load(name)
        except ProfileError as e:
            rows.append([name, "INVALID", str(e), "", "", "", ""])
            continue
        peaks = " ".join(f"{d}:{v:g}" for d, v in p.peak_tflops.items())
        rows.append([name, p.kind, peaks, f"{p.memory_bandwidth_GBps:g}", f"{p.memory_capacity_GiB:g}",
                     p.sm_count, "calibrated" if p.calibrated else "datasheet"])
    click.echo(tabulate(rows, headers=["name", "kind", "peak TFLOP/s", "mem GB/s", "mem GiB", "SMs/cores",
                                       "source"], disable_numparse=True))
