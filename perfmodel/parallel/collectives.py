"""Collective communication time: the α–β (latency–bandwidth) model.

One message of S bytes over one link costs ``α + S·β`` (α: seconds of
latency per hop; β: seconds per byte, the inverse of the link's bandwidth
per direction).  For a group of P devices (Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH", IJHPCA 19(1),
sec. 4; Patarasuk & Yuan 2009 for the ring's bandwidth optimality)::

    ring all-reduce       2(P-1)·α + 2(P-1)/P · S·β     (reduce-scatter, then all-gather)
    tree all-reduce       2·ceil(log2 P)·α + 2·S·β      (NCCL double binary tree: Sanders, Speck &
                                                         Träff 2009; Jeaugey, "Massively scale your deep
                                                         learning training with NCCL 2.4", NVIDIA 2019)
    ring all-gather       (P-1)·α + (P-1)/P · S·β       (S = the gathered, full size)
    ring reduce-scatter   (P-1)·α + (P-1)/P · S·β       (S = the full input size)
    all-to-all            (P-1)·α + (P-1)/P · S·β       (pairwise exchange, sec. 4.6 there; S = the bytes
                                                         one device scatters, 1/P of them stay local)
    point-to-point        α + S·β

Every function takes scalars or NumPy arrays (broadcast) and returns 0 where
``P == 1`` or ``S == 0``: no collective is launched then.

Links come from the profile: ``intra_node_*`` inside a node of
``devices_per_node`` devices, ``inter_node_*`` (per device) for a group that
spans nodes, whose ring is paced by its slowest hop.  β is, first found:

1. a fit in ``calibration["collectives"]`` (``calibrate/collectives.py``) for the
   link it was measured on (``link``: "intra_node" or "inter_node"), α with it;
2. ``1 / <scope>_busbw_GBps``: the bus bandwidth NCCL's ring reached on that link
   in a published measurement (nccl-tests ``busbw``, large messages).  busbw is
   defined so that a ring collective takes ``c(P) · S / busbw`` with the
   correction factors c(P) of the formulas above (2(P-1)/P for all-reduce,
   (P-1)/P for all-gather and reduce-scatter: nccl-tests ``doc/PERFORMANCE.md``,
   "Bus bandwidth"), so it stands in for the link bandwidth in every formula;
   the ring is a chain of neighbour sends, so point-to-point sends use it too;
3. ``1 / <scope>_bandwidth_GBps``, the datasheet figure.

α is the profile's ``<scope>_latency_us`` unless a fit replaces it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import HardwareProfile

ALGORITHMS = ("ring", "tree", "auto")
COLLECTIVES = ("allreduce", "allgather", "reducescatter", "alltoall", "p2p")


@dataclass(frozen=True)
class Link:
    """α (s per hop) and β (s per byte); scalars or arrays."""

    alpha_s: object
    beta_s_per_byte: object


def spans_nodes(hw: HardwareProfile, group_size, stride=1):
    """Whether a group of ``group_size`` devices, ``stride`` apart, crosses a node boundary.

    Devices are numbered node by node; with power-of-two sizes a group stays
    inside one node exactly when it covers at most ``devices_per_node`` ids.
    """
    return np.asarray(group_size) * np.asarray(stride) > hw.devices_per_node


def _calibrated(hw: HardwareProfile, collective: str, scope: str):
    """(α, β) fitted for ``collective`` on the ``scope`` link, if the profile holds one.

    Keys: ``<collective>`` (its ``link`` says which scope) or ``<collective>_<scope>``;
    reduce-scatter and all-to-all use the all-gather fit, point-to-point the all-reduce fit.
    """
    cal = (hw.calibration or {}).get("collectives") or {}
    base = {"reducescatter": "allgather", "alltoall": "allgather", "p2p": "allreduce"}.get(collective, collective)
    for key in (f"{base}_{scope}", base):
        fit = cal.get(key)
        if isinstance(fit, dict) and fit.get("link", "intra_node") == scope and \
                "alpha_s" in fit and "beta_s_per_byte" in fit:
            return fit["alpha_s"], fit["beta_s_per_byte"]
    return None


def bandwidth_GBps(hw: HardwareProfile, scope: str) -> float:
    """GB/s a collective moves per device on the ``scope`` link ("intra_node" | "inter_node"):
    the measured bus bandwidth where the profile has one, else the datasheet figure."""
    return getattr(hw, f"{scope}_busbw_GBps") or getattr(hw, f"{scope}_bandwidth_GBps")


def link(hw: HardwareProfile, inter_node, collective: str = "allreduce") -> Link:
    """The link a collective runs over: intra- or inter-node (``inter_node`` may be a bool array)."""
    params = {}
    for scope, lat in (("intra_node", hw.intra_node_latency_us), ("inter_node", hw.inter_node_latency_us)):
        params[scope] = _calibrated(hw, collective, scope) or (lat * 1e-6, 1.0 / (bandwidth_GBps(hw, scope) * 1e9))
    (a_in, b_in), (a_out, b_out) = params["intra_node"], params["inter_node"]
    if np.ndim(inter_node) == 0:
        return Link(a_out, b_out) if inter_node else Link(a_in, b_in)
    return Link(np.where(inter_node, a_out, a_in), np.where(inter_node, b_out, b_in))


def _active(p, nbytes, t):
    return np.where((np.asarray(p) > 1) & (np.asarray(nbytes) > 0), t, 0.0)[()]  # [()]: scalar in, scalar out


def ring_allreduce_s(nbytes, p, ln: Link):
    p = np.asarray(p, dtype=float)
    return _active(p, nbytes, 2 * (p - 1) * ln.alpha_s + 2 * (p - 1) / p * nbytes * ln.beta_s_per_byte)


def tree_allreduce_s(nbytes, p, ln: Link):
    p = np.asarray(p, dtype=float)
    hops = np.ceil(np.log2(np.maximum(p, 1)))
    return _active(p, nbytes, 2 * hops * ln.alpha_s + 2 * np.asarray(nbytes) * ln.beta_s_per_byte)


def allreduce_s(nbytes, p, ln: Link, algorithm: str = "ring"):
    """All-reduce of ``nbytes`` over ``p`` devices; ``auto`` takes the faster of ring and tree."""
    if algorithm == "ring":
        return ring_allreduce_s(nbytes, p, ln)
    if algorithm == "tree":
        return tree_allreduce_s(nbytes, p, ln)
    if algorithm == "auto":
        return np.minimum(ring_allreduce_s(nbytes, p, ln), tree_allreduce_s(nbytes, p, ln))
    from ..errors import PerfmodelError
    raise PerfmodelError(f"unknown all-reduce algorithm {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")


def allgather_s(nbytes, p, ln: Link):
    """Ring all-gather; ``nbytes`` is the full gathered size (each device contributes nbytes/p)."""
    p = np.asarray(p, dtype=float)
    return _active(p, nbytes, (p - 1) * ln.alpha_s + (p - 1) / p * nbytes * ln.beta_s_per_byte)


def reducescatter_s(nbytes, p, ln: Link):
    """Ring reduce-scatter; ``nbytes`` is the full input size (each device keeps nbytes/p)."""
    return allgather_s(nbytes, p, ln)


def alltoall_s(nbytes, p, ln: Link):
    """Pairwise-exchange all-to-all; ``nbytes`` is what one device scatters over the group (expert
    parallelism: its tokens x bytes per token), of which (P-1)/P leave the device."""
    return allgather_s(nbytes, p, ln)


def p2p_s(nbytes, ln: Link):
    """One point-to-point send (pipeline stage boundary)."""
    nbytes = np.asarray(nbytes, dtype=float)
    return np.where(nbytes > 0, ln.alpha_s + nbytes * ln.beta_s_per_byte, 0.0)[()]


def collective_s(kind: str, nbytes, p, ln: Link, algorithm: str = "ring"):
    if kind == "allreduce":
        return allreduce_s(nbytes, p, ln, algorithm)
    if kind == "allgather":
        return allgather_s(nbytes, p, ln)
    if kind == "reducescatter":
        return reducescatter_s(nbytes, p, ln)
    if kind == "alltoall":
        return alltoall_s(nbytes, p, ln)
    raise ValueError(f"unknown collective {kind!r}; allowed: {', '.join(COLLECTIVES)}")
