"""Measure all-reduce and all-gather over message sizes and fit the α–β model into a profile.

``perfmodel calibrate --collectives`` calls :func:`main`.  It starts
``world_size`` processes with ``torch.multiprocessing`` (or runs inside
``torchrun``, which sets RANK / WORLD_SIZE / MASTER_ADDR), joins them with
``torch.distributed`` (NCCL on GPUs, one GPU per process; gloo on CPU over
loopback), and times each collective per message size: warm-up calls, then
``reps`` calls each bracketed by a barrier (and CUDA synchronization), the
slowest rank's time taken per call (``all_reduce(MAX)``), median and
inter-quartile spread recorded.

Fit (ring model of :mod:`perfmodel.parallel.collectives`, non-negative least
squares on relative error) of the per-hop latency α and per-byte time β::

    all-reduce  t = 2(P-1)·α + 2(P-1)/P · S·β       (S: bytes reduced)
    all-gather  t =  (P-1)·α +  (P-1)/P · S·β       (S: bytes gathered)

The result goes into ``calibration["collectives"]`` of the output profile:
``{"allreduce": {"alpha_s", "beta_s_per_byte", "link", "world_size", "points",
"median_rel_error"}, "allgather": {...}, "provenance": {...}}``, written
atomically; the output file's other calibration sections are kept.
:func:`import_deepbench` fills the same section from DeepBench's published
all-reduce table (``gpu, floats, devices, time_ms``).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

#: default message sizes in bytes: 4 KiB .. 16 MiB, x4 steps
DEFAULT_SIZES = tuple(4096 * 4 ** i for i in range(7))
BACKENDS = ("gloo", "nccl")
COLLECTIVES = ("allreduce", "allgather")
#: a DeepBench (gpu, devices) group whose times vary less than this while sizes span >= 10x is rejected
FLAT_TIME_SPREAD = 0.05


# -- fitting --------------------------------------------------------------------------------------
def features(collective: str, nbytes, p):
    """(hops, bytes per link) multiplying α and β in the ring model."""
    nbytes, p = np.asarray(nbytes, float), np.asarray(p, float)
    if collective == "allreduce":
        return 2 * (p - 1), 2 * (p - 1) / p * nbytes
    if collective == "allgather":
        return p - 1, (p - 1) / p * nbytes
    raise ValueError(f"unknown collective {collective!r}; allowed: {', '.join(COLLECTIVES)}")


def fit_alpha_beta(collective: str, points: list[dict]) -> dict:
    """Non-negative least squares of the ring model on relative error; points have bytes, world_size, time_s."""
    from scipy.optimize import nnls

    from perfmodel.errors import PerfmodelError
    if len({p["bytes"] for p in points}) < 2:
        raise PerfmodelError(f"{collective}: need at least two message sizes to fit latency and bandwidth")
    t = np.array([p["time_s"] for p in points])
    hops, per_link = features(collective, [p["bytes"] for p in points], [p["world_size"] for p in points])
    a = np.stack([hops / t, per_link / t], axis=1)
    (alpha, beta), _ = nnls(a, np.ones_like(t))
    pred = alpha * hops + beta * per_link
    rel = np.abs(pred - t) / t
    return {"alpha_s": float(alpha), "beta_s_per_byte": float(beta),
            "bandwidth_GBps": float(1 / beta / 1e9) if beta > 0 else None,
            "median_rel_error": float(np.median(rel)), "max_rel_error": float(np.max(rel))}


# -- measuring ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_collective(dist, torch, collective, nbytes, world, device, warmup, reps):
    numel = max(nbytes // 4, world)
    numel -= numel % world
    if collective == "allreduce":
        x = torch.ones(numel, device=device)
        op = lambda: dist.all_reduce(x)  # noqa: E731
    else:
        part = torch.ones(numel // world, device=device)
        if device.type == "cuda":
            out = torch.empty(numel, device=device)
            op = lambda: dist.all_gather_into_tensor(out, part)  # noqa: E731
        else:
            outs = [torch.empty_like(part) for _ in range(world)]
            op = lambda: dist.all_gather(outs, part)  # noqa: E731
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    import time
    for _ in range(warmup):
        op()
    sync()
    times = []
    for _ in range(reps):
        dist.barrier()
        sync()
        t0 = time.perf_counter()
        op()
        sync()
        dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=device)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        times.append(float(dt.item()))
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"bytes": int(numel * 4), "world_size": world, "time_s": statistics.median(times),
            "spread_s": q[2] - q[0], "reps": reps}


def worker(rank: int, world: int, backend: str, sizes, result_path: str | None, warmup: int = 3,
           reps: int = 10, port: int | None = None):
    """One rank: join the group, time every collective and size; rank 0 writes the points as JSON."""
    import torch
    import torch.distributed as dist
    if port is not None:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
    device = torch.device("cpu")
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        points = {c: [_time_collective(dist, torch, c, s, world, device, warmup, reps) for s in sizes]
                  for c in COLLECTIVES}
    finally:
        dist.destroy_process_group()
    if rank == 0 and result_path:
        Path(result_path).write_text(json.dumps(points))
    return points


def _spawn_entry(rank, world, backend, sizes, result_path, warmup, reps, port):
    worker(rank, world, backend, sizes, result_path, warmup, reps, port)


def measure(world_size: int, sizes=DEFAULT_SIZES, backend: str = "gloo", warmup: int = 3, reps: int = 10) -> dict:
    """Spawn ``world_size`` processes on this machine and return rank 0's points per collective."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "points.json")
        mp.spawn(_spawn_entry, args=(world_size, backend, list(sizes), out, warmup, reps, _free_port()),
                 nprocs=world_size, join=True)
        return json.loads(Path(out).read_text())


# -- the profile's calibration section -------------------------------------------------------------
def collectives_section(points: dict, link: str, provenance: dict) -> dict:
    sec = {}
    for c, pts in points.items():
        fit = fit_alpha_beta(c, pts)
        sec[c] = {**fit, "link": link, "world_size": sorted({p["world_size"] for p in pts}), "points": pts}
    sec["provenance"] = provenance
    return sec


def _base_dict(output_path: Path, base_profile) -> dict:
    from perfmodel import hardware
    if output_path.exists():  # keep what other calibrations already wrote there
        return json.loads(output_path.read_text())
    base = base_profile if base_profile is not None else hardware.local_cpu_profile()
    return hardware.load(base).to_dict() if isinstance(base, str) else base.to_dict()


def write_section(output_path, base_profile, section: dict) -> Path:
    """Put ``section`` at ``calibration["collectives"]`` of the output profile (atomic write)."""
    from perfmodel.hardware import profile_from_dict

    from .atomic import write_json_atomic
    output_path = Path(output_path)
    d = _base_dict(output_path, base_profile)
    d.setdefault("calibration", {})
    d["calibration"] = {**(d["calibration"] or {}), "collectives": section}
    profile_from_dict(d, str(output_path))  # refuse to write a profile that would not load
    return write_json_atomic(output_path, d)


def _provenance(backend: str, world: int, source: str) -> dict:
    import platform

    import torch
    p = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "source": source,
         "backend": backend, "world_size": world, "torch": torch.__version__, "python": platform.python_version(),
         "platform": platform.platform(), "command": " ".join(sys.argv),
         "method": "barrier-bracketed calls, slowest rank per call, median of reps; fit: NNLS on relative error"}
    if backend == "nccl" and torch.cuda.is_available():
        p["device"] = torch.cuda.get_device_name(0)
        p["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        p["cuda"] = torch.version.cuda
    else:
        from .provenance import cpu_model_name
        p["device"] = cpu_model_name()
    return p


def _default_backend_world():
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ("nccl", n) if n >= 2 else ("gloo", 2)


def main(output_path=None, base_profile=None, world_size: int | None = None, sizes=None, backend: str | None = None,
         warmup: int = 5, reps: int = 10) -> Path:
    """Measure, fit and write; returns the profile path.  Defaults: NCCL over every GPU when there are
    two or more, else gloo with 2 processes; output ``~/.perfmodel/profiles/local-{gpu,cpu}.json``."""
    from perfmodel import hardware
    from perfmodel.errors import PerfmodelError
    dflt_backend, dflt_world = _default_backend_world()
    backend = backend or dflt_backend
    if backend not in BACKENDS:
        raise PerfmodelError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    world = world_size or (dflt_world if backend == dflt_backend else 2)
    if world < 2:
        raise PerfmodelError(f"world size {world} is not allowed; collectives need at least 2 processes")
    sizes = sorted(int(s) for s in (sizes or DEFAULT_SIZES))
    if output_path is None:
        local = hardware.LOCAL_GPU if backend == "nccl" else hardware.LOCAL_CPU
        output_path = hardware.user_profiles_dir() / f"{local}.json"
    if base_profile is None and backend == "nccl":
        base_profile = hardware.DEFAULT_GPU
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun: this process is one rank
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        points = worker(rank, world, backend, sizes, None, warmup, reps)
        if rank != 0:
            return Path(output_path)
    else:
        points = measure(world, sizes, backend, warmup, reps)
    # spawned processes share this machine; under torchrun the group spans nodes when it has more
    # ranks than one node runs
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    link = "intra_node" if world <= local else "inter_node"
    sec = collectives_section(points, link, _provenance(backend, world, "microbenchmark"))
    path = write_section(output_path, base_profile, sec)
    ar = sec["allreduce"]
    print(f"wrote {path}: all-reduce alpha {ar['alpha_s'] * 1e6:.3g} us/hop, "
          f"{ar['bandwidth_GBps'] or float('inf'):.3g} GB/s per link ({backend}, {world} processes)")
    return path


# -- DeepBench's published all-reduce table --------------------------------------------------------
def read_deepbench_allreduce(path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"gpu", "floats", "devices", "time_ms"}
    if not rows or not need <= set(rows[0]):
        from perfmodel.errors import PerfmodelError
        raise PerfmodelError(f"{path}: expected columns {', '.join(sorted(need))}")
    return [{"gpu": r["gpu"], "bytes": int(r["floats"]) * 4, "world_size": int(r["devices"]),
             "time_s": float(r["time_ms"]) * 1e-3} for r in rows]


def reject_flat_groups(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, rejected): a (gpu, devices) group whose time does not grow with message size is not a measurement."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["gpu"], r["world_size"]), []).append(r)
    kept, rejected = [], []
    for g in groups.values():
        sizes = [r["bytes"] for r in g]
        times = [r["time_s"] for r in g]
        flat = len(g) >= 2 and max(sizes) >= 10 * min(sizes) and \
            (max(times) - min(times)) <= FLAT_TIME_SPREAD * max(times)
        for r in g:
            (rejected if flat else kept).append({**r, **({"why": f"time flat at {times[0] * 1e3:g} ms over "
                                                                  f"{min(sizes)}..{max(sizes)} bytes"}
                                                         if flat else {})})
    return kept, rejected


def import_deepbench(csv_path, gpu: str, base_profile: str | None = None, output_path=None) -> dict:
    """Fit the all-reduce rows of ``gpu`` into a collectives section (and write it when ``output_path``)."""
    from perfmodel import hardware
    from perfmodel.errors import PerfmodelError
    rows = [r for r in read_deepbench_allreduce(csv_path) if r["gpu"].lower() == gpu.lower()]
    if not rows:
        raise PerfmodelError(f"no all-reduce rows for GPU {gpu!r} in {csv_path}")
    kept, rejected = reject_flat_groups(rows)
    if base_profile is None:
        cands = [n for n in hardware.available() if n.lower().startswith(gpu.lower())]
        if not cands:
            raise PerfmodelError(f"no profile for GPU {gpu!r}; give base_profile")
        base_profile = cands[0]
    dpn = hardware.load(base_profile).devices_per_node
    sec: dict = {}
    for scope, pts in (("intra_node", [r for r in kept if r["world_size"] <= dpn]),
                       ("inter_node", [r for r in kept if r["world_size"] > dpn])):
        if len({r["bytes"] for r in pts}) < 2:
            continue
        pts = [{k: r[k] for k in ("bytes", "world_size", "time_s")} for r in pts]
        key = "allreduce" if scope == "intra_node" else "allreduce_inter_node"
        sec[key] = {**fit_alpha_beta("allreduce", pts), "link": scope,
                    "world_size": sorted({p["world_size"] for p in pts}), "points": pts}
    if not sec:
        raise PerfmodelError(f"DeepBench all-reduce rows for {gpu!r}: none usable ({len(rejected)} rejected: "
                             f"{rejected[0]['why'] if rejected else 'too few sizes'})")
    sec["provenance"] = {"source": "DeepBench all-reduce results (Baidu Research), NCCL/MPI ring all-reduce",
                         "file": Path(csv_path).name, "gpu": gpu, "base_profile": base_profile,
                         "rows_used": len(kept), "rows_rejected": len(rejected),
                         "rejected": [{k: r[k] for k in ("world_size", "bytes", "time_s", "why")} for r in rejected],
                         "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if output_path is not None:
        write_section(output_path, base_profile, sec)
    return sec


def _cli(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output")
    ap.add_argument("--base")
    ap.add_argument("--world-size", type=int)
    ap.add_argument("--sizes", help="comma-separated bytes")
    ap.add_argument("--backend", choices=BACKENDS)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--deepbench", help="import this allreduce.csv instead of measuring")
    ap.add_argument("--gpu", help="with --deepbench: the GPU rows to import")
    a = ap.parse_args(argv)
    from perfmodel.errors import PerfmodelError
    try:
        if a.deepbench:
            if not a.gpu:
                raise PerfmodelError("--deepbench needs --gpu NAME (e.g. P100)")
            sec = import_deepbench(a.deepbench, a.gpu, a.base, a.output)
            print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("points", "rejected")}
                              for k, v in sec.items()}, indent=2))
            return
        main(a.output, a.base, a.world_size, [int(s) for s in a.sizes.split(",")] if a.sizes else None, a.backend,
             reps=a.reps)
    except PerfmodelError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # torchrun --nproc-per-node N -m perfmodel.calibrate.collectives -o out.json
    _cli()
