"""``perfmodel calibrate``: measure this device and write a calibrated profile
(library: ``perfmodel.calibrate.run``)."""
import sys

import click

#: ``calibrate --cpu`` without --threads: one thread, on the CPU clock.  On a shared 2-core VM this gave
#: the lower validation MAPE on configurations not tuned to (docs/accuracy.md, "Calibration defaults").
CPU_DEFAULT_THREADS = 1


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _delegate_collectives(output, base):
    """``perfmodel.calibrate.collectives.main`` (another engineer's module), given -o (and --base when set)."""
    import inspect

    from ..calibrate import collectives
    params = inspect.signature(collectives.main).parameters
    kw = {"base_profile": base} if base and "base_profile" in params else {}
    for name in ("output_path", "output", "out", "path"):
        if name in params:
            return collectives.main(**{name: output}, **kw)
    return collectives.main(output, **kw)


@click.command()
@click.option("--gpu", "use_gpu", is_flag=True, help="calibrate a CUDA GPU")
@click.option("--cpu", "use_cpu", is_flag=True, help="calibrate this CPU")
@click.option("--device", default=None, help="CUDA device with --gpu, e.g. cuda:1 (default cuda:0)")
@click.option("--quick", is_flag=True, help="coarser grids (about a minute on a 2-core CPU)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="profile to write (default: ~/.perfmodel/profiles/local-cpu.json or local-gpu.json)")
@click.option("--base", default=None, help="datasheet profile to extend (default: cpu-generic, or the "
                                           "shipped profile matching the GPU's name, else H100-SXM5)")
@click.option("--name", default=None, help="profile name (default: local-cpu / local-gpu)")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads to measure with (default 1: steadiest on a shared machine; validate uses the "
                   "same; give the count your training will use to model a multi-threaded run)")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default=None,
              help="CPU clock: wall, or this process's CPU time (default: cpu with 1 thread, else wall)")
@click.option("--stat", type=click.Choice(["median", "min"]), default="median", show_default=True,
              help="statistic over repeats (min: least-disturbed sample, for a busy machine)")
@click.option("--from-csv", "csv_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="import DeepBench-style CSV results instead of measuring (needs --base)")
@click.option("--gpu-name", default=None, help="with --from-csv: use the rows whose gpu column is NAME "
                                               "(default: the rows of --base's GPU family, e.g. V100)")
@click.option("--collectives", is_flag=True, help="measure collective communication (perfmodel.calibrate.collectives)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.argument("more_csv", nargs=-1, type=click.Path(exists=True, dir_okay=False))
def calibrate(use_gpu, use_cpu, device, quick, output, base, name, threads, clock, stat, csv_files, gpu_name,
              collectives, no_progress, more_csv):
    """Measure GEMMs, memory bandwidth, per-op overhead, RNN cells and convs; write a profile JSON."""
    from perfmodel import hardware
    from perfmodel.errors import PerfmodelError

    from ..outputs import check_output
    if more_csv and not csv_files:
        _fail(f"unexpected argument {more_csv[0]!r}; CSV files go after --from-csv")
    if gpu_name is not None and not csv_files:
        _fail("--gpu-name is allowed only with --from-csv (it picks the CSV rows of that GPU)")
    try:
        if collectives:
            if output is not None:
                check_output(output, [hardware.load(base).path] if base else [], "profile")
            path = _delegate_collectives(output, base)
            if path:
                click.echo(f"wrote {path}")
            return
        if csv_files:
            if not base:
                _fail("--from-csv needs --base PROFILE (the datasheet profile of the GPU the CSV measured)")
            from ..calibrate.deepbench import profile_from_csv
            from ..calibrate.run import write_profile
            files, base_prof = [*csv_files, *more_csv], hardware.load(base)
            name = name or f"{base_prof.name}-calibrated"
            out = check_output(output if output is not None else hardware.user_profiles_dir() / f"{name}.json",
                               [*files, base_prof.path], "profile")
            prof = profile_from_csv(files, base_prof, gpu_name, name)
            click.echo(f"wrote {write_profile(prof, out)}")
            return
        if use_gpu == use_cpu:
            _fail("choose one of --gpu or --cpu")
        if use_cpu and device is not None:
            _fail(f"--device {device!r} is not allowed with --cpu (it measures this CPU); use --gpu --device {device}")
        from ..calibrate import run
        from ..calibrate.plan import plan_for
        try:
            kind, dev = run.resolve_device(use_gpu, device)
        except run.NoGpuError as e:
            _fail(str(e))
        if kind == "cpu":  # the flagless default: 1 thread on the process's CPU clock (docs/accuracy.md)
            threads = threads or CPU_DEFAULT_THREADS
            clock = clock or ("cpu" if threads == 1 else "wall")
        clock = clock or "wall"
        base_prof = hardware.load(base or run.default_base(kind, dev))
        out = check_output(output if output is not None else run.default_output(kind), [base_prof.path], "profile")
        prof, warnings = run.calibrate(base_prof, plan_for(kind, quick), kind, dev, name,
                                       command=" ".join(["perfmodel", *sys.argv[1:]]),
                                       progress=not no_progress, threads=threads, clock=clock, stat=stat)
        for w in warnings:
            click.echo(w, err=True)
        path = run.write_profile(prof, out)
        prov = prof["calibration"]["provenance"]
        click.echo(f"wrote {path} ({prov['device']}, {prov['wall_time_s']} s); use --hardware "
                   f"{prof['name'] if not output else path}")
    except PerfmodelError as e:
        _fail(str(e))
