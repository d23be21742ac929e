"""The shipped table of measured training runs (``runs.csv``, sourced in ``SOURCES.md``) as
scenarios: each row's model, hardware, options and layout, what it measured and in which unit, the
choices the source leaves open, and why a row cannot be modelled yet.

Per row (empty cell = the source does not state it; see SOURCES.md):

* model: ``transformer`` with the row's layers, hidden (the width), heads, K/V heads, MLP hidden,
  vocabulary, sequence, block and attention; a missing attention kernel is the trainer's default of
  the time (:data:`TRAINER_DEFAULTS`), a missing dtype 16-bit mixed precision (fp16 and bf16 price
  the same on every profile the table uses);
* cluster: where the source's network differs from the profile's, the measured figure replaces the
  profile's (:data:`CLUSTERS`, with its source);
* options: recompute, ZeRO stage, sequence parallelism, virtual stages as stated; the gradient
  all-reduce overlaps backward unless the trainer of the time did not (:data:`TRAINER_DEFAULTS`);
  all-reduces take the faster of ring and tree, as NCCL's default algorithm selection does;
  pipeline sends block (Megatron-LM and DeepSpeed, :mod:`perfmodel.parallel.pipeline`) and use
  Megatron's scatter/gather optimization unless the trainer had none (:data:`TRAINER_DEFAULTS`);
* layout: dp, tp, pp, global batch and micro-batch (m = global / (dp x micro-batch));
* left open by the source (``open_fields``): micro-batch, recompute mode, virtual stages, or the
  tp x pp split of a stated model-parallel size.  The prediction takes the fastest choice that fits
  (the runs were tuned for speed), :func:`perfmodel.published.check.predict_run`.
* measured: iteration seconds, else tokens/s per GPU, else TFLOP/s per GPU, else MFU -- the first
  the row gives, the least convention-dependent first; a row the source reports out of memory has
  none and is checked for memory only (predicted not to fit, or not).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

RUNS_CSV = Path(__file__).with_name("runs.csv")
#: measured columns in the order a row is compared on (the first one present)
MEASURED = (("measured_iteration_s", "iteration_s"), ("measured_tokens_per_s_per_gpu", "tokens_per_s_per_gpu"),
            ("measured_tflops_per_gpu", "tflops_per_gpu"), ("measured_mfu", "mfu"))
#: what a source's trainer did when the row leaves it out: attention kernel, gradient overlap
_MEGATRON_DROPOUT = (0.1, "Megatron-LM's GPT default --hidden-dropout / --attention-dropout 0.1")
TRAINER_DEFAULTS = {
    "narayanan2021": {"overlap": (False, "Megatron-LM's local DDP of 2021 all-reduces gradients after backward"),
                      "dropout": _MEGATRON_DROPOUT,
                      "zero3_gather": ("module", "Table 2's ZeRO-3 is DeepSpeed's (sec. 5.2), which gathers each "
                                                 "submodule's parameters as it runs (partitioned_param_coordinator"
                                                 ".fetch_sub_module), not whole layers")},
    "korthikanti2022": {
        "attention": ("fused", "Megatron-LM 2022: fused scale-mask-softmax (--masked-softmax-fusion, the default)"),
        "overlap": (False, "sec. 6.3: the gradient all-reduce is not overlapped"),
        "dropout": (0.1, "Megatron-LM's default 0.1; the paper's activation formulas count the dropout masks")},
    "megatron_readme_h100": {
        "attention": ("flash", "Megatron-core r0.8 with Transformer Engine: fused (flash) attention by default"),
        "dtype": ("bf16", "MFU is quoted against the bf16 peak (notes)"), "dropout": _MEGATRON_DROPOUT},
    "bloom_tr11": {
        "attention": ("fused", "Megatron-DeepSpeed: fused scale-mask-softmax"),
        "overlap": (False, "BF16_Optimizer (its own ZeRO-1) reduces gradients after backward"),
        "scatter_gather": (False, "DeepSpeed's PipelineEngine sends whole activations (no scatter/gather)"),
        "zero1_allreduce": (True, "DeepSpeed 0.6.5 pipe/engine.py _bf16_reduce_grads all-reduces the whole "
                                  "gradients; BF16_Optimizer.step then all-gathers the updated bf16 shards"),
        "tied_grad_fp32": (True, "DeepSpeed 0.6.5 pipe/engine.py _exec_reduce_tied_grads all-reduces the tied "
                                 "embedding's weight._hp_grad, its fp32 gradient, under bf16")},
}
#: where a source's cluster differs from the profile the row names: profile fields replaced, and why
CLUSTERS = {
    "bloom_tr11": ({"inter_node_busbw_GBps": 5.07},
                   "Jean Zay, 4 Omni-Path links per node (tr11 README 'Hardware'); NCCL all-reduce of 4 GB fp32 "
                   "over 4 of its A100 nodes (32 ranks): 1.53 s, busbw 40.5 Gb/s = 5.07 GB/s "
                   "(bigscience experiments/bandwidth/all_reduce_bench-a100-n4.txt, 2022-01-28)"),
}
#: FLOP conventions of measured TFLOP/s (and MFU): FLOPs per iteration of a row (:mod:`.check`)
CONVENTIONS = {
    "narayanan2021": "narayanan_eq3", "bloom_tr11": "bloom_8ps", "korthikanti2022": "megatron_model",
    "megatron_readme_h100": "megatron_model",
}
#: notes phrases of features the cost model does not have yet -> the reason printed
UNMODELLED_NOTES = (
    ("torch.compile on", "torch.compile kernel fusion"), ("compile = true", "torch.compile kernel fusion"),
    ("AsyncTP", "asynchronous tensor parallelism"), ("Async TP", "asynchronous tensor parallelism"),
    ("CP 16", "context parallelism"),
)


@dataclass(frozen=True)
class RunSetup:
    """One row as a prediction problem (``reason`` set: not modelled, the rest may be None)."""

    id: str
    source: str
    gpus: int
    hardware: str
    knobs: dict = field(default_factory=dict)
    width: int | None = None
    dtype: str = "bf16"
    options: dict = field(default_factory=dict)      # ParallelOptions keywords
    layout: dict = field(default_factory=dict)       # dp, tp, pp (tp/pp None: open), micro_batch (None: open)
    batch: int | None = None                         # global batch, sequences
    open_fields: tuple = ()                          # chosen by the prediction (module docstring)
    assumed: dict = field(default_factory=dict)      # field -> why (trainer defaults, the cluster)
    cluster: dict = field(default_factory=dict)      # profile fields the source's cluster replaces (CLUSTERS)
    measured_unit: str | None = None
    measured: float | None = None
    fits_measured: bool = True                       # False: the source reports out of memory
    convention: str | None = None
    params_b: float | None = None                    # the model size the row gives, billions
    peak_tflops: float | None = None                 # MFU denominator (the source's)
    reason: str | None = None                        # "not modelled: <reason>"


def load_rows(path: Path = RUNS_CSV) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _int(v):
    return int(float(v)) if v not in ("", None) else None


def _float(v):
    return float(v) if v not in ("", None) else None


def setup(row: dict, hardware_names) -> RunSetup:
    """The :class:`RunSetup` of one CSV row; ``hardware_names``: the profiles that exist."""
    src = row["source_id"]
    base = {"id": row["id"], "source": src, "gpus": _int(row["gpus"]), "hardware": row["hardware"],
            "fits_measured": row["fits"].strip().lower() != "false", "params_b": _float(row["params_b"])}
    unit, value = next(((u, _float(row[c])) for c, u in MEASURED if row[c] not in ("", None)), (None, None))
    base.update(measured_unit=unit, measured=value)
    why = _not_modelled(row, src, unit, hardware_names)
    if why:
        return RunSetup(**base, reason=why)
    defaults, assumed = TRAINER_DEFAULTS.get(src, {}), {}

    def pick(name, cell):
        if row.get(cell, "") not in ("", None):
            return row[cell]
        if name in defaults:
            assumed[name] = defaults[name][1]
            return defaults[name][0]
        return None

    layers, hidden, heads = _int(row["layers"]), _int(row["hidden"]), _int(row["heads"])
    block = row["block"] or "gpt2"
    knobs = {"layers": layers, "heads": heads, "seq_len": _int(row["seq_len"]), "vocab": _int(row["vocab"]),
             "block": block}
    attention = pick("attention", "attention")
    if attention:
        knobs["attention"] = attention
    dropout = pick("dropout", "__none__")
    if dropout:
        knobs["dropout"] = dropout
    ffn, kv = _int(row["ffn_hidden"]), _int(row["kv_heads"])
    if ffn and (block != "gpt2" or ffn != 4 * hidden):
        knobs["ffn"] = ffn
    if kv and kv != heads:
        knobs["kv_heads"] = kv
    if row["experts"]:
        knobs.update(experts=_int(row["experts"]), top_k=_int(row["top_k"]) or 2)
    dtype = pick("dtype", "dtype")
    if dtype is None:
        dtype, assumed["dtype"] = "bf16", "16-bit mixed precision (fp16 and bf16 price the same here)"
    open_fields = []
    recompute, every = row["recompute"] or None, 1
    if recompute is None:
        open_fields.append("recompute")
    if _every_2nd_layer(row):   # torchtitan's every-2nd-block checkpointing: full recompute on those blocks
        recompute, every = "full", 2
        assumed["recompute_every"] = "torchtitan selective_ac_option '2': blocks 0, 2, 4, ... checkpointed"
    tp, pp, dp = _int(row["tp"]), _int(row["pp"]), _int(row["dp"])
    if tp is None or pp is None:
        open_fields.append("tp x pp")
    virtual = _int(row["virtual_stages"])
    if virtual is None and (pp is None or pp > 1):
        open_fields.append("virtual_stages")
    micro = _int(row["micro_batch"])
    if micro is None:
        open_fields.append("micro_batch")
    overlap, split = pick("overlap", "__none__"), pick("scatter_gather", "__none__")
    cluster = {}
    if src in CLUSTERS:
        cluster, assumed["cluster"] = CLUSTERS[src]
    zero = _int(row["zero_stage"]) or 0
    options = {"recompute": recompute or "none", "zero": zero, "algorithm": "auto",
               "zero1_allreduce": bool(pick("zero1_allreduce", "__none__")) if zero == 1 else False,
               "recompute_every": every, "tied_grad_fp32": bool(pick("tied_grad_fp32", "__none__")),
               "zero3_gather": (pick("zero3_gather", "__none__") or "unit") if zero == 3 else "unit",
               "sequence_parallel": row["sequence_parallel"].strip().lower() == "true",
               "virtual_stages": virtual or 1, "overlap": True if overlap is None else overlap,
               "scatter_gather": True if split is None else split}
    peak = {"A100-SXM4-80GB": 312.0, "A100-SXM4-40GB": 312.0, "H100-SXM5": 989.0}.get(row["hardware"])
    return RunSetup(**base, knobs=knobs, width=hidden, dtype=dtype, options=options,
                    layout={"dp": dp, "tp": tp, "pp": pp, "micro_batch": micro}, batch=_int(row["global_batch"]),
                    open_fields=tuple(open_fields), assumed=assumed, cluster=dict(cluster),
                    convention=CONVENTIONS.get(src), peak_tflops=peak)


def _every_2nd_layer(row: dict) -> bool:
    """torchtitan's "selective layer" AC: selective_ac_option '2', a full checkpoint of every 2nd block."""
    return row["trainer"] == "torchtitan" and row["recompute"] == "selective" and "'selective layer'" in row["notes"]


def _not_modelled(row: dict, src: str, unit, hardware_names) -> str | None:
    """Why a row cannot be modelled yet (None: it can)."""
    missing = [c for c in ("layers", "hidden", "heads", "seq_len", "vocab") if not row[c]]
    if missing:
        return f"the row gives no {', '.join(missing)}"
    if not row["global_batch"]:
        return "global batch not stated"
    if row["hardware"] not in hardware_names:
        return f"no hardware profile {row['hardware']}"
    if "HARDWARE CAVEAT" in row["notes"]:
        return "hardware differs from the profile (see the row's HARDWARE CAVEAT)"
    if row["dtype"] == "fp8":
        return "fp8 linears with 16-bit attention (per-op precision)"
    for phrase, what in UNMODELLED_NOTES:
        if phrase in row["notes"]:
            return what
    if row["trainer"] == "torchtitan" and row["recompute"] == "selective" and not _every_2nd_layer(row):
        return "torchtitan's op-level selective AC (every 2nd matmul saved) is neither selective nor full"
    dims = [_int(row[c]) for c in ("tp", "pp", "dp")]
    if None not in dims and dims[0] * dims[1] * dims[2] != _int(row["gpus"]):
        return f"tp x pp x dp = {dims[0] * dims[1] * dims[2]} is not the {row['gpus']} GPUs"
    if unit is None and row["fits"] != "false":
        return "no measured throughput"
    if unit in ("tflops_per_gpu", "mfu") and src not in CONVENTIONS:
        return "measured TFLOP/s or MFU with a FLOP convention the source does not state"
    return None
