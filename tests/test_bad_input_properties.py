"""Property: over models x knobs x hardware x layouts, ``predict`` and ``plan`` either answer with
positive, finite counts and times or refuse with the package's own error (PerfmodelError) --
never another exception, never a negative count.  Bounded to about 30 s (settings below)."""
import math

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from perfmodel import hardware  # noqa: E402
from perfmodel.architectures import MODELS  # noqa: E402
from perfmodel.errors import PerfmodelError  # noqa: E402
from perfmodel.graph import PRICED_OPTIMIZERS  # noqa: E402
from perfmodel.ops import DTYPES  # noqa: E402

PROFILES = hardware.available()
#: widths: ordinary ones, the edges, and sizes whose counts pass int64 (refused, never wrapped)
WIDTHS = st.one_of(st.integers(1, 2048), st.sampled_from([64, 256, 1024]),
                   st.sampled_from([0, -1, 4096, 10**6, 4 * 10**9, 4 * 10**11]))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _rarely(good, bad):
    """``good`` nine times in ten, else ``bad``: most examples get far enough to be priced."""
    return st.integers(0, 99).flatmap(lambda i: bad if i % 10 == 7 else good)  # not the bounds: they come often


def _knob_value(knob):
    if knob.choices:
        return _rarely(st.sampled_from(knob.choices), st.just("bogus"))
    if knob.kind is float:
        return _rarely(st.floats(0.5, 4), st.sampled_from([-1.0, 0.0, "x", float("nan"), float("inf")]))
    return _rarely(st.integers(1, 64), st.sampled_from([-2, 0, 10**6, 10**12, "1.5", "x", 2.0]))


@st.composite
def scenarios(draw):
    model = draw(st.sampled_from(sorted(MODELS)))
    spec = MODELS[model]
    names = draw(st.lists(st.sampled_from(sorted(spec.knobs)), max_size=3, unique=True))
    knobs = {n: draw(_knob_value(spec.knobs[n])) for n in names}
    if draw(_rarely(st.just(False), st.just(True))):
        knobs["no_such_knob"] = 1
    return (model, draw(st.sampled_from(PROFILES)), knobs, draw(_rarely(st.just("fp32"), st.sampled_from(DTYPES))),
            draw(_rarely(st.sampled_from(PRICED_OPTIMIZERS), st.just("bogus"))))


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@settings(max_examples=300, **SETTINGS)
@given(scenarios(), WIDTHS)
def test_predict_answers_or_refuses(sc, width):
    from perfmodel.predict import predict
    model, hw, knobs, dtype, optimizer = sc
    try:
        p = predict(model, width, hardware.load(hw), dtype, optimizer, **knobs)
    except PerfmodelError:
        return
    assert p.params > 0 and _positive(p.time_per_step_s) and _positive(p.flops_per_step)
    assert p.memory.total_bytes > 0


LAYOUT = st.tuples(*(_rarely(st.sampled_from([1, 1, 2, 4]), st.sampled_from([0, 3, 8])) for _ in range(4)))


@settings(max_examples=150, **SETTINGS)
@given(scenarios(), WIDTHS, LAYOUT, _rarely(st.sampled_from([None, "layout's"]), st.sampled_from([1, 8, 64])))
def test_parallel_predict_answers_or_refuses(sc, width, degrees, devices):
    from perfmodel.parallel.layout import Layout
    from perfmodel.scenario import Scenario
    from perfmodel.total import predict_total
    model, hw, knobs, dtype, optimizer = sc
    knobs = {k: v for k, v in knobs.items() if k != "batch"}
    if devices == "layout's":
        devices = degrees[0] * degrees[1] * degrees[2]
    try:
        out = predict_total(Scenario(model, hardware.load(hw), knobs, dtype, optimizer), width, Layout(*degrees),
                            devices=devices)
    except PerfmodelError:
        return
    assert out["params"] > 0 and _positive(out["time_per_step_s"])


@settings(max_examples=60, **SETTINGS)
@given(scenarios(), st.lists(WIDTHS.filter(lambda w: w < 10**6 or w > 10**9), min_size=1, max_size=2),
       st.sampled_from([0, 1, 2, 3, 8]), st.sampled_from([None, (3,), (1, 6), (0,)]))
def test_plan_answers_or_refuses(sc, widths, devices, batches):
    from perfmodel.parallel.search import SearchSpace, plan
    from perfmodel.scenario import Scenario
    from perfmodel.total import load_law, shipped_law_path
    model, hw, knobs, dtype, optimizer = sc
    knobs = {k: v for k, v in knobs.items() if k != "batch"}
    try:
        p = plan(Scenario(model, hardware.load(hw), knobs, dtype, optimizer), widths,
                 SearchSpace(devices, batches, max_batch=64), 1e6, load_law(shipped_law_path("charlm")))
    except PerfmodelError:
        return
    for r in p.rows:
        assert r.params > 0
        if r.fits:
            assert _positive(r.total_time_s) and _positive(r.time_per_step_s) and r.dp * r.tp * r.pp <= devices
