"""Scenario in, StepEstimate / PlanRow out; cost_ops is the one place ops are priced."""
import numpy as np
import pytest

from perfmodel import hardware
from perfmodel.architectures import build_graph
from perfmodel.cost.step_cost import cost_ops, op_costs
from perfmodel.errors import PerfmodelError
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.step import predict_parallel
from perfmodel.predict import predict, predict_arrays, predict_step
from perfmodel.scenario import Scenario, check_precision

H100 = hardware.load("H100-SXM5")


def test_scenario_loads_hardware_by_name_and_keeps_its_own_knobs():
    knobs = {"depth": 2}
    s = Scenario("charlm", "H100-SXM5", knobs)
    knobs["depth"] = 3
    assert s.hardware == H100 and s.knobs == {"depth": 2}
    assert predict_step(s, 64).to_dict() == predict("charlm", 64, H100, depth=2).to_dict()


def test_precision_checks_are_one_line_errors():
    with pytest.raises(PerfmodelError, match="unknown optimizer 'lamb'; allowed: sgd, momentum, adam"):
        check_precision(H100, "fp32", "lamb")
    with pytest.raises(PerfmodelError, match="dtype 'bf16' is not supported on TitanX-Maxwell"):
        Scenario("mlp", "TitanX-Maxwell", dtype="bf16").check()


def test_step_estimate_comm_time_is_its_three_parts():
    p = predict_parallel(Scenario("mlp", H100), 1024, Layout(dp=2, tp=2, pp=2, micro_batches=4), batch=256)
    e = p.step
    assert e.comm_time_s == e.tp_comm_s + e.pp_p2p_s + e.dp_exposed_s
    assert p.to_dict()["comm_time_s"] == e.comm_time_s and isinstance(e.fits_in_memory, bool)


def test_cost_ops_columns_sum_to_the_predictions():
    ops = build_graph("wordlm", 128).step_ops()
    c = cost_ops(ops, H100)
    p = predict("wordlm", 128, H100)
    assert c.total("time_s") == p.time_per_step_s and c.total("flops") == p.flops_per_step
    assert [r.bound for r in p.breakdown] == [str(b) for b in c.bound]
    # the vectorized path merges identical ops and prices them once: same totals
    arr = predict_arrays("wordlm", [128], H100)
    assert arr["time_per_step_s"][0] == pytest.approx(p.time_per_step_s, rel=1e-12)
    # every op's time is the most of compute and memory plus overhead, times its repeat
    for op, one in zip(ops, op_costs(ops, H100), strict=True):
        t = one.per_execution
        assert one.time_s == t.time_s * op.repeat
        assert np.all(np.asarray(t.time_s) >= np.asarray(t.overhead_s))
