"""make_plan on ResNet-18- and transformer-sized models, for one device and several mixes; reports and JSON."""
from __future__ import annotations

import json

import pytest

import graphs
from hcc.errors import HccError
from hcc.planner.placement import group_subgraphs
from hcc.planner.plan import format_explanation, format_plan, make_plan, plan_to_json

MIXES = ["cpu", "cpu,gpu:sm_80", "cpu,fpga:xcu250", "cpu,gpu:sm_90,fpga:xcu250", "4xgpu:sm_90+2xfpga:xcu250+cpu"]


@pytest.fixture(scope="module")
def models():
    return {"resnet18": graphs.resnet18(), "transformer": graphs.transformer(layers=2, seq=128, dim=512, heads=8)}


def _check_plan(plan, model):
    p = plan.placement
    # Subgraph times + transfers reproduce the placement model's latency.
    assert plan.predicted_latency == pytest.approx(p.latency, rel=1e-9, abs=1e-12)
    assert sum(len(s.nodes) for s in plan.subgraphs) == len(model.graph.node)
    assert plan.predicted_stage_time <= plan.predicted_latency * (1 + 1e-12)
    assert 0 < plan.critical_path <= plan.predicted_latency * (1 + 1e-9)
    best = min(v for v in plan.single_device.values() if v is not None)
    assert p.cost <= best * (1 + 1e-9)
    for inst, resources in plan.resources.items():
        for res, (used, limit) in resources.items():
            assert used <= limit * (1 + 1e-9), f"{inst} {res}"
    text = format_plan(plan)
    assert "predicted latency" in text and plan.subgraphs[0].id in text
    table = format_explanation(p)
    assert all(n in table for n in p.order[:3])
    data = plan_to_json(plan)
    json.dumps(data)
    assert len(data["placement"]) == len(p.order)
    assert [g.id for g in group_subgraphs(model, p)] == [s["id"] for s in data["subgraphs"]]


@pytest.mark.parametrize("devices", MIXES)
@pytest.mark.parametrize("name", ["resnet18", "transformer"])
def test_make_plan_latency(models, name, devices):
    plan = make_plan(models[name], devices, "latency")
    _check_plan(plan, models[name])
    if devices == "cpu":
        assert len(plan.subgraphs) == 1 and plan.transfers == []
        assert plan.subgraphs[0].device == "cpu#0"


@pytest.mark.parametrize("devices", ["cpu,gpu:sm_80", "4xgpu:sm_90+2xfpga:xcu250+cpu"])
@pytest.mark.parametrize("name", ["resnet18", "transformer"])
def test_make_plan_throughput_uses_several_instances(models, name, devices):
    plan = make_plan(models[name], devices, "throughput")
    _check_plan(plan, models[name])
    if devices.startswith("4x"):
        single = min(v for v in plan.single_device.values() if v is not None)
        assert plan.predicted_stage_time < single / 2  # the work is shared out as pipeline stages
        assert len({s.device for s in plan.subgraphs}) >= 3


def test_make_plan_with_budgets_and_a_small_fpga(models):
    plan = make_plan(models["resnet18"], "cpu,fpga:xczu7ev", "latency", ["fpga.dsp=1000"])
    _check_plan(plan, models["resnet18"])
    used, limit = plan.resources["fpga:xczu7ev#0"]["dsp"]
    assert limit == 1000 and used <= 1000
    assert "fpga:xczu7ev#0" in {s.device for s in plan.subgraphs}
    assert plan.predicted_latency < plan.single_device["cpu"]


def test_make_plan_rejects_unknown_objective(models):
    with pytest.raises(HccError, match="unknown objective"):
        make_plan(models["resnet18"], "cpu", "energy")


def test_transfers_are_counted_once_per_destination():
    b = graphs.Builder("fanout")
    x = b.input("x", (1024, 1024))
    y = b.matmul(x, 1024, 1024, "mm")  # big: goes to the GPU
    s1 = b.op("Sigmoid", [y], "s1")  # gpu:test lacks Sigmoid: back on the CPU, twice
    s2 = b.op("Sigmoid", [y], "s2")
    from synthetic_devices import mix

    plan = make_plan(b.model([s1, s2]), mix("cpu,gpu:test"))
    assert plan.placement.devices["mm"] == "gpu:test#0"
    moved = [(t.tensor, t.src, t.dst) for t in plan.transfers]
    assert moved.count(("mm", "gpu:test#0", "cpu#0")) == 1
    assert plan.predicted_latency == pytest.approx(plan.placement.latency)
