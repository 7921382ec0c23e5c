"""Partitioner tests on hand-built graphs whose optimal placement is known (synthetic devices, round numbers)."""
from __future__ import annotations

import itertools
import json
import random
import time

import pytest

import graphs
from hcc.errors import HccError
from hcc.planner.cost_model import CostModel, FpgaCostConfig, analyze_model
from hcc.planner.device_catalog import parse_device_mix
from hcc.planner.placement import Override, group_subgraphs, load_placement, parse_budgets, parse_place_option, place, save_placement
from hcc.planner.placement_solver import Problem
from hcc.planner.plan import make_plan, plan_to_json
from synthetic_devices import mix


def _best_single(placement) -> float:
    return min(v for v in placement.single_device.values() if v is not None)


def test_chain_where_transfers_dominate_stays_on_one_device():
    # Cheap elementwise ops on 64 floats: moving them to the GPU costs 2 x 10 us of link latency per crossing.
    p = place(graphs.chain(["Relu", "Tanh", "Relu", "Relu"]), mix("cpu,gpu:test"))
    assert set(p.devices.values()) == {"cpu#0"}
    assert p.latency == pytest.approx(_best_single(p))
    assert all(e.reason in ("faster", "avoids transfers") for e in p.explanations.values())


def test_whole_chain_moves_when_the_gpu_wins_overall():
    p = place(graphs.chain(["MatMul", "Relu", "MatMul", "Relu"], shape=(1024, 1024)), mix("cpu,gpu:test"))
    assert set(p.devices.values()) == {"gpu:test#0"}


def test_heavy_op_is_worth_moving_between_cpu_only_ops():
    # Sigmoid runs only on the CPU; the 2 GFLOP MatMul takes 20 ms there and 0.2 ms + 2 x 4 ms of transfers on the GPU.
    p = place(graphs.chain(["Sigmoid", "MatMul", "Sigmoid"], shape=(1024, 1024)), mix("cpu,gpu:test"))
    assert p.devices == {"n0": "cpu#0", "n1": "gpu:test#0", "n2": "cpu#0"}
    assert p.explanations["n0"].reason == "only device that supports it"
    assert p.explanations["n1"].reason == "faster"
    assert p.explanations["n1"].transfer_in > 0 and p.explanations["n1"].transfer_out > 0
    # At 64x256 the GPU still runs the MatMul faster (11 us vs 84 us), but two 64 KB trips cost 150 us.
    small = place(graphs.chain(["Sigmoid", "MatMul", "Sigmoid"], shape=(64, 256)), mix("cpu,gpu:test"))
    assert small.devices["n1"] == "cpu#0"
    assert small.explanations["n1"].reason == "avoids transfers"


def test_diamond_matches_brute_force():
    model = graphs.diamond(width=512, heavy=1024)
    instances = mix("cpu,gpu:test")
    p = place(model, instances)
    assert p.devices["c"] == "cpu#0"  # Sigmoid: CPU only
    assert p.devices["b1"] == p.devices["b2"] == "gpu:test#0"
    assert p.latency == pytest.approx(_brute_force(model, instances, "latency"), rel=5e-3)


def _brute_force(model, instances, objective, budgets=None):
    from hcc.planner.placement import _limits

    prob = Problem(analyze_model(model), instances, objective, _limits(instances, budgets, []), CostModel(), {})
    best = None
    for choice in itertools.product(*[prob.allowed[n] for n in prob.names]):
        a = dict(zip(prob.names, choice))
        if prob.feasible(a):
            key = prob.key(prob.busy(a))[0]
            best = key if best is None else min(best, key)
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_solver_is_optimal_on_small_random_graphs(seed, objective):
    model = graphs.synthetic(n_ops=7, width=512, rows=256, seed=seed)
    instances = mix("cpu,gpu:test,fpga:test")
    p = place(model, instances, objective, cost_model=CostModel(fpga_config=FpgaCostConfig(variant_mults=(256,))))
    exact = _brute_force(model, instances, objective) if objective == "latency" else None
    if exact is not None:
        assert p.cost == pytest.approx(exact, rel=5e-3)
    assert p.cost <= _best_single(p) * (1 + 1e-9)


def _four_convs():
    """Four 64-channel 3x3 convs on 32x32 in a chain."""
    convs = graphs.Builder("convs")
    x = convs.input("x", (1, 64, 32, 32))
    for i in range(4):
        x = convs.conv(x, 64, 64, 3, f"conv{i}")
    return convs.model([x])


def test_budget_forces_a_split():
    model = _four_convs()
    cm = CostModel(fpga_config=FpgaCostConfig(variant_mults=(256,)))  # one design point: 256 DSPs per conv
    # Per conv: CPU 756 us, FPGA 554 us (369 us of MACs + 185 us copying the padded input); a 256 KB crossing costs
    # 272 us, so a run of 3+ convs is worth moving (3 x 202 us saved > 544 us of transfers), 2 are not.
    free = place(model, mix("cpu,fpga:test"), cost_model=cm)
    assert all(d == "fpga:test#0" for d in free.devices.values())
    tight = place(model, mix("cpu,fpga:test"), budgets={"fpga.dsp": 800}, cost_model=cm)
    on_fpga = [n for n, d in tight.devices.items() if d == "fpga:test#0"]
    assert len(on_fpga) == 3
    assert tight.resources["fpga:test#0"]["dsp"] <= 800
    assert any(e.reason == "budget exhausted" for e in tight.explanations.values() if e.device == "cpu#0")
    assert tight.latency > free.latency
    two = place(model, mix("cpu,fpga:test"), budgets={"fpga.dsp": 600}, cost_model=cm)
    assert set(two.devices.values()) == {"cpu#0"}
    with pytest.raises(HccError, match="forced onto fpga:test#0 need at least dsp 1024"):
        place(model, mix("cpu,fpga:test"), budgets={"fpga.dsp": 800}, cost_model=cm, overrides=[parse_place_option("Conv=fpga")])
    # A preference instead gives way: the convs that fit stay on the FPGA, the others move.
    soft = place(model, mix("cpu,fpga:test"), budgets={"fpga.dsp": 800}, cost_model=cm, overrides=[parse_place_option("Conv=fpga", soft=True)])
    assert sorted(d for d in soft.devices.values()) == ["cpu#0"] + ["fpga:test#0"] * 3
    assert {e.reason for e in soft.explanations.values() if e.device == "fpga:test#0"} == {"preferred by the user"}
    assert any("did not fit the dsp budget" in note for note in soft.notes)


def test_fpga_trades_dsps_for_speed_under_a_budget():
    model = _four_convs()
    free = place(model, mix("cpu,fpga:test"))  # 2000 DSPs: one conv at 1024 multipliers, three at 256
    p = place(model, mix("cpu,fpga:test"), budgets={"fpga.dsp": 1100})
    assert all(d == "fpga:test#0" for d in p.devices.values())  # leaner design points (256 DSPs each) fit all four
    assert p.resources["fpga:test#0"]["dsp"] <= 1100 < free.resources["fpga:test#0"]["dsp"]
    assert all(p.reuse_factors[f"conv{i}"] >= free.reuse_factors[f"conv{i}"] for i in range(4))
    assert p.latency > free.latency


def test_op_the_fpga_lacks_stays_on_the_cpu():
    b = graphs.Builder("exp")
    x = b.input("x", (64, 512))
    y = b.matmul(x, 512, 512, "mm")
    y = b.op("Exp", [y], "exp")  # the FPGA backend has no Exp layer (hcc.devices.FPGA_SUPPORTED_OPS)
    p = place(b.model([y]), mix("cpu,fpga:test"))
    assert p.devices["exp"] == "cpu#0"
    assert p.explanations["exp"].reason == "only device that supports it"
    assert p.explanations["exp"].times["fpga:test"] is None


def test_memory_budget_parsing_and_limits():
    assert parse_budgets(["gpu.mem=16GB", "fpga.dsp=4000"]) == {"gpu.mem": 16e9, "fpga.dsp": 4000.0}
    assert parse_budgets("cpu.mem=512MiB") == {"cpu.mem": 512 * 2**20}
    # as --budget passes them
    assert parse_budgets(["gpu.mem=16GB,fpga.dsp=40", "fpga.bram=8"]) == {"gpu.mem": 16e9, "fpga.dsp": 40.0, "fpga.bram": 8.0}
    with pytest.raises(HccError, match="unknown resource"):
        parse_budgets(["gpu.watts=3"])
    with pytest.raises(HccError, match="DEVICE.RESOURCE"):
        parse_budgets(["16GB"])
    model = graphs.chain(["MatMul", "MatMul"], shape=(1024, 1024))  # 4 MB of weights per MatMul
    p = place(model, mix("cpu,gpu:test"), budgets={"gpu.mem": "10MB"})
    assert sum(d == "gpu:test#0" for d in p.devices.values()) == 1
    assert p.resources["gpu:test#0"]["mem"] <= 10e6


def test_deterministic_plans_and_json():
    model = graphs.resnet18()
    for objective in ("latency", "throughput"):
        a = make_plan(model, "cpu,gpu:sm_90,fpga:xcu250", objective)
        b = make_plan(model, "cpu,gpu:sm_90,fpga:xcu250", objective)
        assert a.placement.devices == b.placement.devices
        assert json.dumps(plan_to_json(a), sort_keys=True) == json.dumps(plan_to_json(b), sort_keys=True)


def test_overrides_by_type_and_name():
    model = graphs.resnet18(image=64)
    instances = parse_device_mix("cpu,gpu:sm_90,fpga:xcu250")
    p = place(model, instances, overrides=[parse_place_option("Conv|Gemm=cpu")])
    info = analyze_model(model)
    for node in info.nodes:
        if node.op_type in ("Conv", "Gemm"):
            assert p.devices[node.name] == "cpu#0"
            assert p.explanations[node.name].reason == "forced by the user"
    q = place(model, instances, overrides=[Override(r"layer1\..*", "fpga")])
    assert all(d == "fpga:xcu250#0" for n, d in q.devices.items() if n.startswith("layer1."))
    # Later overrides win.
    r = place(model, instances, overrides=[parse_place_option("Conv=cpu"), parse_place_option("conv1=gpu:sm_90#0")])
    assert r.devices["conv1"] == "gpu:sm_90#0" and r.devices["layer1.0/conv1"] == "cpu#0"
    with pytest.raises(HccError, match=r"forced onto fpga:xcu250#0 need (bram|lut) .* leanest design point"):
        place(model, instances, overrides=[parse_place_option("Conv=fpga")])  # ResNet-18's weights exceed its BRAM and LUTs


def test_impossible_override_names_the_node_and_op():
    b = graphs.Builder("exp")
    x = b.input("x", (4, 8))
    y = b.op("Exp", [x], "my_exp")
    with pytest.raises(HccError, match=r"my_exp.*Exp"):
        place(b.model([y]), mix("cpu,fpga:test"), overrides=[parse_place_option("Exp=fpga")])
    with pytest.raises(HccError, match="not in the device mix"):
        place(b.model([y]), mix("cpu"), overrides=[parse_place_option("Exp=gpu")])
    with pytest.raises(HccError, match="REGEX=DEVICE"):
        parse_place_option("Conv")


def test_save_load_round_trip(tmp_path):
    model = graphs.transformer(layers=1, seq=32, dim=64, heads=4)
    instances = parse_device_mix("cpu,2xgpu:sm_80")
    p = place(model, instances, "throughput")
    path = tmp_path / "placement.json"
    save_placement(path, p)
    records = json.loads(path.read_text())["placement"]
    assert len(records) == len(p.order)
    overrides = load_placement(path)
    q = place(model, instances, "latency", overrides=overrides)
    assert q.devices == p.devices
    assert all(e.reason == "forced by the user" for n, e in q.explanations.items() if q.info.by_name[n].op_type not in ("Constant", "Shape"))
    (tmp_path / "bad.json").write_text('{"placement": [{"device": "cpu"}]}')
    with pytest.raises(HccError, match="record 0"):
        load_placement(tmp_path / "bad.json")
    (tmp_path / "soft.json").write_text('{"placement": [{"node_type": "MatMul", "device": "gpu", "prefer": true}]}')
    (soft,) = load_placement(tmp_path / "soft.json")
    assert soft.soft and soft.matches("any", "MatMul") and not soft.matches("any", "Add")


def _assert_groups_valid(model, p, groups):
    info = analyze_model(model)
    group_of = {n: g.id for g in groups for n in g.node_names}
    assert sorted(group_of) == sorted(p.devices)
    order = [g.id for g in groups]
    for g in groups:
        assert all(p.devices[n] == g.device for n in g.node_names)
        for t in g.inputs:  # produced earlier (or a graph input / weight)
            src = info.producer.get(t)
            assert src is None or order.index(group_of[src]) < order.index(g.id)
        # Convexity: nothing reachable from the group through outside nodes comes back into it.
        inside = set(g.node_names)
        frontier = [s for n in inside for s in info.successors(n) if s not in inside]
        seen = set()
        while frontier:
            n = frontier.pop()
            if n in seen:
                continue
            seen.add(n)
            assert n not in inside, f"{g.id} is not convex: a path leaves it and re-enters at {n}"
            frontier.extend(s for s in info.successors(n))
        for t in g.outputs:
            assert t in info.graph_outputs or any(group_of[c] != g.id for c in info.consumers.get(t, []))


@pytest.mark.parametrize("seed", range(5))
def test_group_subgraphs_convex_under_random_placements(seed):
    model = graphs.synthetic(n_ops=40, seed=seed)
    rng = random.Random(seed)
    info = analyze_model(model)
    forced = [Override(n.name, rng.choice(["cpu", "gpu"]), "name") for n in info.nodes]
    p = place(model, parse_device_mix("cpu,gpu:sm_80"), overrides=forced)
    groups = group_subgraphs(model, p)
    _assert_groups_valid(model, p, groups)


def test_group_subgraphs_on_a_diamond_split():
    model = graphs.diamond(width=512, heavy=1024)
    p = place(model, mix("cpu,gpu:test"))
    groups = group_subgraphs(model, p)
    _assert_groups_valid(model, p, groups)
    assert [g.device for g in groups].count("gpu:test#0") == 1  # b1 -> b2 is one GPU subgraph
    assert groups[0].inputs == ["x"]
    assert groups[-1].outputs == ["d"]


@pytest.mark.parametrize("objective", ["latency", "throughput"])
@pytest.mark.parametrize("devices", ["cpu,gpu:sm_80", "cpu,fpga:xcu250", "cpu,2xfpga:xczu7ev", "2xgpu:sm_90+fpga:xcu250+cpu"])
def test_never_worse_than_best_single_device(devices, objective):
    p = place(graphs.resnet18(image=112), parse_device_mix(devices), objective)
    assert p.cost <= _best_single(p) * (1 + 1e-9)


@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_200_op_model_is_planned_in_seconds(objective):
    model = graphs.synthetic(n_ops=240)
    started = time.perf_counter()
    p = place(model, parse_device_mix("cpu,gpu:sm_90,fpga:xcu250"), objective, time_limit_s=10)
    elapsed = time.perf_counter() - started
    assert len(p.order) == 240
    assert elapsed < 5.0, f"planning took {elapsed:.1f}s ({p.solver})"


def test_large_graph_uses_the_heuristic():
    model = graphs.synthetic(n_ops=120, seed=3)
    instances = parse_device_mix("cpu,gpu:sm_90,fpga:xcu250")
    exact = place(model, instances)
    heuristic = place(model, instances, max_milp_nodes=50)
    assert heuristic.solver in ("heuristic", "single device")
    assert heuristic.latency <= _best_single(heuristic) * (1 + 1e-9)
    assert heuristic.latency <= exact.latency * 1.10


def test_unnamed_nodes_get_stable_names():
    b = graphs.Builder("unnamed")
    x = b.input("x", (4, 8))
    y = b.op("Relu", [x], "r")
    b.nodes[-1].name = ""
    z = b.op("Relu", [y], "s")
    b.nodes[-1].name = "Relu_0"  # collides with the generated name of the first node
    model = b.model([z])
    p = place(model, parse_device_mix("cpu"))
    # The loader's naming (frontend/names.py), which placement files and bundles use: graph order decides, so the
    # generated name comes first and the later node with the same name becomes <name>__2.
    assert p.order == ["Relu_0", "Relu_0__2"]


def test_constants_and_shape_ops_follow_their_users():
    import numpy as np
    from onnx import helper as h
    from onnx import numpy_helper

    b = graphs.Builder("static")
    x = b.input("x", (256, 1024))
    y = b.matmul(x, 1024, 1024, "mm")
    b.nodes.append(h.make_node("Constant", [], ["shape"], name="", value=numpy_helper.from_array(np.array([1024, 256], np.int64))))
    z = b.op("Reshape", [y, "shape"], "reshape")
    b.op("Shape", [z], "shape_of")
    w = b.op("Sigmoid", [z], "sig")
    model = b.model([w])
    p = place(model, mix("cpu,gpu:test"))
    assert p.devices["Constant_1"] == p.devices["reshape"]
    assert p.explanations["Constant_1"].transfer_in == 0.0
    groups = group_subgraphs(model, p)
    _assert_groups_valid(model, p, groups)


def test_group_subgraphs_on_the_weight_lifted_model():
    from hcc.frontend.names import name_nodes
    from hcc.frontend.weights import lift_weights

    model = graphs.transformer(layers=1, seq=16, dim=64, heads=4)
    name_nodes(model)
    # Forced, so the split does not depend on this host's CPU figures (on a tiny model the cost model may keep all on it).
    overrides = [parse_place_option(".*=gpu"), parse_place_option("Softmax=cpu")]
    p = place(model, parse_device_mix("cpu,gpu:sm_80"), overrides=overrides)
    lifted = lift_weights(model).model
    groups = group_subgraphs(lifted, p)
    assert sorted(n for g in groups for n in g.node_names) == sorted(n.name for n in lifted.graph.node)
    assert len(groups) >= 3  # gpu -> cpu (softmax) -> gpu
    assert any("block0/fc1.w" in g.inputs for g in groups)  # lifted weights are subgraph inputs


def test_an_override_or_budget_that_names_nothing_is_an_error():
    """Issue 9, item 8: a typo in --place/--prefer/a placement record or --budget used to be ignored in silence."""
    model = graphs.chain(["MatMul", "Relu"], shape=(64, 64))
    for text, soft in (("NoSuchOp=gpu", False), ("no_such_node=gpu", True)):
        with pytest.raises(HccError, match=rf"{text} \(or a placement-file record\) matches no node"):
            place(model, mix("cpu,gpu:test"), overrides=[parse_place_option(text, soft=soft)])
    with pytest.raises(HccError, match="'tpu' names no device of the mix"):
        place(model, mix("cpu,gpu:test"), budgets={"tpu.mem": "1GB"})


def test_device_count_is_bounded():
    """Issue 9, item 7: `100000xgpu` ran for minutes; more than 64 instances is refused at once."""
    with pytest.raises(HccError, match="100001 devices; the planner places on at most 64"):
        parse_device_mix("100000xgpu:sm_90+cpu")
    assert len(parse_device_mix("63xgpu:sm_90+cpu")) == 64
