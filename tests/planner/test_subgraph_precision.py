"""Precision per GPU subgraph (planner/subgraph_precision.py, --gpu-precision auto): the fp16 emulation of a whole
subgraph, the budgeted choice with its reasons, the plan's JSON and its re-pricing, the cost model's fp16 GPU times.
Small models built in code (the end-to-end CLI tests: test_gpu_auto_cli.py)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from graphs import two_branches  # tests/planner, on sys.path by conftest
from hcc.planner.cost_model import CostModel, analyze_model, predict, predict_gpu_fp16
from hcc.planner.device_catalog import builtin_catalog
from hcc.planner.precision import PrecisionPlan, emulate, run_model
from hcc.planner.subgraph_precision import (
    KERNEL_ERROR_FACTOR,
    SubgraphCandidate,
    choose_gpu_subgraphs,
    emulate_plan,
    inflate,
    round_subgraphs,
)

SG_BENIGN, SG_SENSITIVE = ["mm1", "add1", "relu1"], ["mm2", "shift"]


def _feeds(seeds) -> list[dict[str, np.ndarray]]:
    return [{"x": np.random.default_rng(s).standard_normal((8, 64)).astype(np.float32)} for s in seeds]


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.extend(h.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return out


def _is_f16(a: np.ndarray) -> bool:
    return bool(np.array_equal(a.astype(np.float16).astype(np.float32), a))


# -- emulation ------------------------------------------------------------------------------------------------------

def test_round_subgraphs_rounds_what_the_fp16_rewrite_stores_and_nothing_else():
    model = _with_outputs(two_branches(), ["g0", "m1", "a1", "r1", "t", "m2"])
    lowered = round_subgraphs(model, {"sg1": (SG_BENIGN, "fp16")})
    feeds = _feeds([0])
    ref, out = run_model(model, feeds)[0], run_model(lowered, feeds)[0]
    for name in ("m1", "a1", "r1"):  # produced in the subgraph: stored as f16
        assert _is_f16(out[name]) and not _is_f16(ref[name]), name
    assert not _is_f16(out["g0"]) and np.array_equal(out["g0"], ref["g0"])  # produced outside: untouched for others
    # the product reads f16-rounded operands (the rewrite's truncf at entry, weights included), accumulates in fp32
    x16 = ref["g0"].astype(np.float16).astype(np.float64)
    w16 = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1")).astype(np.float16).astype(np.float64)
    np.testing.assert_allclose(out["m1"], (x16 @ w16).astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-3)
    assert not _is_f16(out["t"]) and not _is_f16(out["m2"])  # later subgraphs stay fp32


def test_round_subgraphs_reproduces_fp16_overflow():
    model = two_branches()
    model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array(70000.0, np.float32), "offset"))  # > 65504
    out = run_model(round_subgraphs(model, {"sg2": (SG_SENSITIVE, "fp16")}), _feeds([0]))[0]
    assert np.isinf(out["y"]).all() or np.isnan(out["y"]).all()


def test_emulate_plan_combines_per_op_and_per_subgraph_precisions_and_refuses_overlap():
    model = two_branches()
    both = emulate_plan(model, {"fc0": "bf16"}, {"sg1": (SG_BENIGN, "fp16")})
    types = [n.op_type for n in both.graph.node]
    assert types.count("Cast") == 2 * 2 + 2 * 3 + 2 * 3  # a pair each: fc0's operands; sg1's inputs g0, w1, b1 and outputs m1, a1, r1
    with pytest.raises(Exception, match="both in a per-op and in a per-subgraph"):
        emulate_plan(model, {"mm1": "bf16"}, {"sg1": (SG_BENIGN, "fp16")})


# -- the choice -----------------------------------------------------------------------------------------------------

def _candidates(saving: float = 1e-6) -> list[SubgraphCandidate]:
    return [SubgraphCandidate("sg1", "gpu:sm_90#0", SG_BENIGN, 10e-6, 10e-6 - saving),
            SubgraphCandidate("sg3", "gpu:sm_90#0", SG_SENSITIVE, 10e-6, 10e-6 - saving)]


def test_choice_lowers_the_insensitive_subgraph_and_says_why_the_other_stays_fp32():
    result = choose_gpu_subgraphs(two_branches(), _candidates(), "max_abs=5e-2", _feeds(range(4)), _feeds(range(100, 104)))
    by = {c.id: c for c in result.choices}
    assert result.precisions() == {"sg1": "fp16", "sg3": "fp32"}
    assert by["sg1"].errors["y"].max_abs < 1e-2 < 0.1 < by["sg3"].errors["y"].max_abs  # emulated, each alone
    assert "over 0.5 x the budget" in by["sg3"].reason and "max_abs" in by["sg3"].reason
    assert by["sg3"].budget_cost == pytest.approx(KERNEL_ERROR_FACTOR * by["sg3"].errors["y"].max_abs / 5e-2, rel=1e-6)
    assert result.calibration_ok and result.held_out_ok
    assert 0 < result.held_out["y"].max_abs < 5e-2 / KERNEL_ERROR_FACTOR
    # a budget that allows the sensitive subgraph too lowers both
    loose = choose_gpu_subgraphs(two_branches(), _candidates(), "max_abs=2", _feeds(range(4)), _feeds(range(100, 104)))
    assert loose.lowered() == ["sg1", "sg3"]


def test_the_kernel_error_factor_decides_at_the_boundary():
    """Without the factor the benign subgraph fits a budget that, counted x2.5, it does not."""
    calib = _feeds(range(4))
    alone = choose_gpu_subgraphs(two_branches(), _candidates()[:1], "max_abs=1", calib).choices[0].errors["y"].max_abs
    budget = f"max_abs={alone * 2 * 1.5:g}"  # margin 0.5: fits at factor 1 (1.5x headroom), not at 2.5
    assert choose_gpu_subgraphs(two_branches(), _candidates()[:1], budget, calib, error_factor=1.0).lowered() == ["sg1"]
    kept = choose_gpu_subgraphs(two_branches(), _candidates()[:1], budget, calib)
    assert kept.lowered() == [] and "x 2.5" in kept.choices[0].reason


def test_no_predicted_saving_keeps_fp32_whatever_the_error():
    result = choose_gpu_subgraphs(two_branches(), _candidates(saving=0.0), "max_abs=2", _feeds(range(2)))
    assert result.lowered() == [] and {c.reason for c in result.choices} == {"no predicted saving at fp16"}


def test_cpu_bf16_ops_count_and_can_use_up_the_margin():
    model, calib = two_branches(), _feeds(range(4))
    # the CPU's bf16 Gemm (fc0) alone: its exact emulated error against a budget it already fills
    own = run_model(emulate(model, {"fc0": "bf16"}, {}), calib)
    ref = run_model(model, calib)
    cpu_error = max(float(np.abs(a["y"] - r["y"]).max()) for a, r in zip(own, ref))
    full = choose_gpu_subgraphs(model, _candidates(), f"max_abs={cpu_error * 1.5:g}", calib, op_assignment={"fc0": "bf16"})
    assert full.lowered() == [] and all("CPU's bf16 ops alone already use the margin" in c.reason for c in full.choices)
    roomy = choose_gpu_subgraphs(model, _candidates(), "max_abs=5e-2", calib, op_assignment={"fc0": "bf16"})
    assert roomy.lowered() == ["sg1"]
    assert roomy.calibration["y"].max_abs >= cpu_error * 0.5  # the recorded figure runs both together


def test_precision_plan_json_round_trip_keeps_the_gpu_choice():
    result = choose_gpu_subgraphs(two_branches(), _candidates(), "max_abs=5e-2", _feeds(range(2)), _feeds([100]))
    plan = PrecisionPlan("max_abs=0.05", 0.5, [], {}, result.calibration, result.held_out, True, True, [], 0, 0, [], gpu=result)
    back = PrecisionPlan.from_json(plan.to_json())
    assert back == plan and back.gpu.choices[1].reason == result.choices[1].reason
    assert json.loads(plan.to_json())["gpu"]["error_factor"] == KERNEL_ERROR_FACTOR


def test_inflate_scales_distances_from_fp32():
    from hcc.planner.precision import OutputError

    e = inflate({"y": OutputError(0.1, 0.01, 0.99, 1.0, 0.5)}, 2.0)["y"]
    assert (e.max_abs, e.max_rel, e.top1, e.top1_certain) == (0.2, 0.02, 1.0, 0.5) and e.cosine == pytest.approx(0.96)


# -- cost model -----------------------------------------------------------------------------------------------------

def _node(info, name):
    return info.by_name[name]


def test_gpu_fp16_halves_activation_traffic_but_not_compute():
    """hcc's fp16 kernels use no tensor cores: a compute-bound product is priced as at fp32; a memory-bound
    elementwise op moves half the activation bytes."""
    spec = builtin_catalog()["gpu:sm_90"]
    b = onnx.shape_inference.infer_shapes(h.make_model(h.make_graph(
        [h.make_node("MatMul", ["a", "w"], ["m"], name="mm"), h.make_node("Relu", ["m"], ["y"], name="relu")], "g",
        [h.make_tensor_value_info("a", TensorProto.FLOAT, [4096, 4096])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [4096, 4096])],
        initializer=[numpy_helper.from_array(np.zeros((4096, 4096), np.float32), "w")]), opset_imports=[h.make_opsetid("", 17)]))
    info = analyze_model(b)
    mm, relu = _node(info, "mm"), _node(info, "relu")
    assert relu.float_activation_bytes == relu.bytes == 2 * 4096 * 4096 * 4
    eff, overhead = spec.efficiency["elementwise"]
    assert predict_gpu_fp16(relu, spec) == pytest.approx(relu.bytes / 2 / (spec.mem_bandwidth * spec.mem_efficiency) + overhead)
    assert predict_gpu_fp16(relu, spec) < predict(relu, spec)
    assert predict_gpu_fp16(mm, spec) == pytest.approx(predict(mm, spec))  # compute-bound: fp32 SIMT rate either way
    assert predict(mm, spec, "fp16") < predict(mm, spec) / 10  # what the tensor-core peak would (wrongly) promise
    cm = CostModel(gpu_precision="fp16")
    assert cm.predict(relu, spec) == predict_gpu_fp16(relu, spec)
    assert replace(cm, gpu_dtypes={"relu": "fp32"}).predict(relu, spec) == predict(relu, spec)
    assert CostModel().predict(relu, spec) == predict(relu, spec)
    assert CostModel(gpu_precision="fp16").predict(relu, builtin_catalog()["cpu"]) == predict(relu, builtin_catalog()["cpu"])


def test_reprice_keeps_the_placement_and_its_reasons_and_prices_the_final_precisions():
    from hcc.planner.placement import parse_place_option
    from hcc.planner.plan import make_plan, reprice

    model = two_branches()
    forced = [parse_place_option("mm1|add1|relu1|mm2|shift=gpu"), parse_place_option("fc0|tanh|unshift=cpu")]
    fp16 = make_plan(model, "cpu,gpu:sm_90", overrides=forced, cost_model=CostModel(gpu_precision="fp16"))
    final = reprice(model, fp16, CostModel(gpu_dtypes={n: "fp16" for n in ("mm1", "add1", "relu1")}))
    assert [(s.id, s.device, s.nodes) for s in final.subgraphs] == [(s.id, s.device, s.nodes) for s in fp16.subgraphs]
    assert {n: e.reason for n, e in final.placement.explanations.items()} == {n: e.reason for n, e in fp16.placement.explanations.items()}
    times = lambda p: {s.id: s.predicted_time for s in p.subgraphs}  # noqa: E731
    gpu = [s.id for s in fp16.subgraphs if s.kind == "gpu"]
    assert times(final)[gpu[0]] == pytest.approx(times(fp16)[gpu[0]]) and times(final)[gpu[1]] > times(fp16)[gpu[1]]
    assert final.predicted_latency > fp16.predicted_latency
