"""``perfmodel predict``: time per step of one model at one width; with a layout or a step law, total time."""
import click

from .. import hardware
from ..hardware.stability import unstable_warning
from ..predict import predict as run_predict
from .options import (
    build_options,
    collect_knobs,
    dtype_option,
    knob_options,
    optimizer_option,
    output_format,
    parallel_options,
    rows_to_csv,
    to_json,
)


@click.command()
@click.option("--model", required=True, help="architecture (see `perfmodel models`)")
@click.option("--width", required=True, type=click.IntRange(min=1), help="model-size knob (hidden size)")
@knob_options
@click.option("--hardware", "hw_name", default=hardware.DEFAULT_GPU, show_default=True,
              help="profile name (see `perfmodel hardware`) or path to a profile .json")
@dtype_option()
@optimizer_option()
@click.option("--dataset-size", type=float, default=None, help="training-set size in the step law's unit")
@click.option("--steps-law", "law_path", type=click.Path(dir_okay=False), default=None, help="fitted law.json")
@click.option("--devices", type=click.IntRange(min=1), default=None, help="devices (the rest of tp x pp go to dp)")
@click.option("--dp", type=click.IntRange(min=1), default=None, help="data-parallel degree")
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True, help="tensor-parallel degree")
@click.option("--pp", type=click.IntRange(min=1), default=1, show_default=True, help="pipeline stages")
@click.option("--micro-batches", type=click.IntRange(min=1), default=1, show_default=True,
              help="micro-batches per step per data-parallel replica")
@parallel_options
@output_format
def predict(model, width, batch, seq_len, sets, hw_name, dtype, optimizer, dataset_size, law_path, devices, dp, tp,
            pp, micro_batches, persistent_rnn, streams, recompute, schedule, allreduce, overlap, bucket_mib,
            zero, zero3_gather, recompute_every, sequence_parallel, virtual_stages, ep, as_json, as_csv):
    """Predict time per training step, with a per-layer and per-phase breakdown.

    With --dp/--tp/--pp/--devices or --dataset-size + --steps-law it also predicts the parallel
    layout's time per step, communication, bubble and memory per device, and total training time.
    """
    knobs = collect_knobs(batch, seq_len, sets)
    hw = hardware.load(hw_name)
    if unstable_warning(hw):  # a calibration the noise guard could not settle: say so once
        click.echo(unstable_warning(hw), err=True)
    p = run_predict(model, width, hw, dtype, optimizer, **knobs)
    extra = None
    layout_given = any(v is not None for v in (dataset_size, law_path, devices, dp)) or \
        max(tp, pp, micro_batches, virtual_stages, ep) > 1 or persistent_rnn or streams or recompute != "none" \
        or zero != 0 or sequence_parallel or zero3_gather != "unit" or recompute_every != 1
    if layout_given:
        from ..parallel.layout import resolve_layout
        from ..scenario import Scenario
        from ..total import load_law, predict_total
        opts = build_options(persistent_rnn, streams, recompute, schedule, allreduce, overlap, bucket_mib, zero,
                             sequence_parallel, virtual_stages, ep, zero3_gather, recompute_every)
        global_batch = knobs.pop("batch", None)
        extra = predict_total(Scenario(model, hw, knobs, dtype, optimizer, opts), width,
                              resolve_layout(devices, dp, tp, pp, micro_batches), dataset_size,
                              load_law(law_path) if law_path else None, global_batch, devices)
        if extra.get("warning"):
            click.echo(extra["warning"], err=True)
    if as_json:
        out = p.to_dict()
        if extra:
            out["single_device"] = {k: out[k] for k in ("time_per_step_s", "memory_bytes", "fits_in_memory")}
            out["breakdown_scope"] = "one device, whole batch, no parallelism"
            out.update(extra)
        click.echo(to_json(out))
    elif as_csv:
        click.echo(rows_to_csv(p.to_dict()["breakdown"]), nl=False)
    else:
        from .tables import parallel_text, prediction_text
        click.echo(prediction_text(p))
        if extra:
            click.echo()
            click.echo(parallel_text(extra))
