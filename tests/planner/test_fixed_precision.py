"""FPGA fixed-point widths per layer from measured sensitivity (planner/fixed_precision.py): the emulation is the
backend's arithmetic, the widths follow sensitivity, the budget holds on held-out inputs, the choice is deterministic,
a budget too tight keeps wide types and says so, and the chosen types reach the FPGA config and cost model."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.backends.fpga import fixed_point as fx
from hcc.backends.fpga.config import from_dict
from hcc.planner import fixed_precision as fp
from hcc.planner.cost_model import analyze_model, estimate_fpga
from hcc.planner.device_catalog import builtin_catalog, resolve_spec
from hcc.planner.precision import run_model


def outlier_mlp() -> onnx.ModelProto:
    """Gemm(32->33) whose last column is 100x the others (its result type spends its integer bits on a column nobody
    reads: the sensitive layer), Relu, MatMul(33->8) that ignores that column (the benign layer)."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((32, 33)) / math.sqrt(32)).astype(np.float32)
    w1[:, 32] *= 100
    w2 = (rng.standard_normal((33, 8)) / math.sqrt(32)).astype(np.float32)
    w2[32, :] = 0
    inits = {"w1": w1, "b1": np.full(33, 0.1, np.float32), "w2": w2}
    nodes = [h.make_node("Gemm", ["x", "w1", "b1"], ["m1"], name="outlier"), h.make_node("Relu", ["m1"], ["r1"], name="relu"),
             h.make_node("MatMul", ["r1", "w2"], ["y"], name="head")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [8, 32])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])],
                         initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _feeds(seeds) -> list[dict[str, np.ndarray]]:
    return [{"x": np.random.default_rng(s).standard_normal((8, 32)).astype(np.float32)} for s in seeds]


CALIB, HELD = _feeds(range(4)), _feeds(range(1000, 1008))


@pytest.fixture(scope="module")
def sensitivities():
    return fp.measure_widths(outlier_mlp(), CALIB)


def test_emulation_is_the_backends_fixed_point_arithmetic():
    """Weights and bias rounded by the backend's own conversion; the result rounded (AP_RND) and saturated at the end
    of the fused epilogue (here the ReLU), as the backend stores it. tests/backends/fpga/test_chosen_widths.py
    compares whole models with the backend's bit-exact reference evaluator."""
    model = outlier_mlp()
    ranges = fp.calibrate_ranges(model, fp.mac_layers(model), CALIB)
    assert ranges["outlier"].out_lo >= 0  # calibrated after the ReLU, the end of the layer's epilogue
    types = fp.layer_types(ranges["outlier"], 8)
    one = onnx.ModelProto()
    one.CopyFrom(model)
    one.graph.output.append(h.make_tensor_value_info("r1", TensorProto.FLOAT, None))
    out = run_model(fp.emulate_widths(one, {"outlier": 8}, ranges), CALIB[:1], outputs=["r1"])[0]["r1"]
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    q = lambda v, t: fx.to_float(fx.from_float(v, fx.FixedType.parse(t)), fx.FixedType.parse(t).frac)  # noqa: E731
    exact = CALIB[0]["x"].astype(np.float64) @ q(inits["w1"], types["weight"]) + q(inits["b1"], types["bias"])
    expected = q(np.maximum(exact, 0.0), types["result"])
    result = fx.FixedType.parse(types["result"])
    assert result.width == 8 and result.o == "AP_SAT" and result.q == "AP_RND"
    # fp32 products and sums vs exact ones can move a value across a rounding edge: at most one LSB, and rarely
    diff = np.abs(out - expected)
    assert diff.max() <= result.lsb and np.mean(diff > 0) < 0.01
    assert len(np.unique(out)) >= 4 and np.all(np.abs(out) <= result.max_value)  # 8 bits over [0, 256): LSB 2
    assert np.all(np.abs(out / result.lsb - np.round(out / result.lsb)) < 1e-9)  # every value is a code of the type


def test_widths_follow_sensitivity(sensitivities):
    plan = fp.choose_widths(sensitivities, "max_abs=1e-1", outlier_mlp(), CALIB, HELD)
    widths = plan.widths()
    assert widths["outlier"] > widths["head"], widths
    by = {s.node: s for s in sensitivities}
    # the measurement says why: at 8 bits the outlier layer alone costs > 10x the head layer's error
    assert by["outlier"].errors["8"]["y"].max_abs > 10 * by["head"].errors["8"]["y"].max_abs
    assert plan.calibration_ok and plan.calibration["y"].max_abs <= 0.5 * 0.1


def test_budget_holds_on_held_out_inputs(sensitivities):
    for budget in ("max_abs=1e-2", "max_abs=1e-1", "rel=1e-3"):
        plan = fp.choose_widths(sensitivities, budget, outlier_mlp(), CALIB, HELD)
        assert plan.held_out_ok is True, (budget, plan.held_out)
        assert any(w < fp.WIDE_WIDTH for w in plan.widths().values()), budget


def test_choice_is_deterministic(sensitivities):
    again = fp.measure_widths(outlier_mlp(), CALIB)
    first = fp.choose_widths(sensitivities, "max_abs=1e-2", outlier_mlp(), CALIB, HELD)
    second = fp.choose_widths(again, "max_abs=1e-2", outlier_mlp(), CALIB, HELD)
    assert first.to_json() == second.to_json()
    assert fp.WidthPlan.from_json(first.to_json()).to_json() == first.to_json()


def test_budget_too_tight_keeps_wide_types_and_says_so(sensitivities):
    plan = fp.choose_widths(sensitivities, "max_abs=1e-6", outlier_mlp(), CALIB, HELD)
    assert set(plan.widths().values()) == {fp.WIDE_WIDTH}
    assert any("too tight" in n for n in plan.notes)
    assert all("no candidate width fits" in lw.reason for lw in plan.layers)
    assert plan.held_out_ok  # 32-bit words: below fp32's own resolution at these magnitudes


def test_chosen_types_reach_the_fpga_config_and_cost_model(sensitivities):
    model = outlier_mlp()
    plan = fp.choose_widths(sensitivities, "max_abs=10", model, CALIB, HELD)
    assert plan.widths() == {"outlier": 8, "head": 8}
    cfg = from_dict(plan.fpga_config(), "chosen widths")
    op_types = {"outlier": "Gemm", "head": "MatMul"}
    for lw in plan.layers:
        for role, text in lw.types.items():
            assert cfg.lookup(role, [lw.node], op_types) == (text, f"node {lw.node}")
    configs = fp.cost_configs(plan, model)
    assert (configs["outlier"].weight_bits, configs["outlier"].act_bits) == (8, 16)  # reads the subgraph input (default)
    assert (configs["head"].weight_bits, configs["head"].act_bits) == (8, 8)  # reads the outlier layer's 8-bit result
    spec = resolve_spec("fpga:xcu250", builtin_catalog())
    info = analyze_model(onnx.shape_inference.infer_shapes(model))
    head8 = estimate_fpga(info.by_name["head"], spec, configs["head"])
    head16 = estimate_fpga(info.by_name["head"], spec)
    assert head8.dsp == 0 < head16.dsp  # 8 x 8 products map to LUTs (backends/fpga/resources.dsp_per_mult)
