"""Mixed-precision analysis (planner/precision.py): measured sensitivities, a budgeted choice confirmed end to end
and verified on held-out inputs, and the plan's JSON form. Small models built in code with random weights."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.errors import HccError
from hcc.planner.precision import (
    AccuracyBudget,
    PrecisionPlan,
    analyze,
    choose,
    compare,
    emulate,
    fake_quantize_weight,
    measure_sensitivity,
    node_keys,
    run_model,
)


def _model(nodes, inits, inputs, outputs) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "g", inputs, outputs, initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv(3->8) Relu Conv(8->16, stride 2) Relu GlobalAveragePool Flatten Gemm(16->10): class scores for a batch of 8."""
    rng = np.random.default_rng(seed)
    he = lambda *s: (rng.standard_normal(s) * math.sqrt(2.0 / math.prod(s[1:]))).astype(np.float32)  # noqa: E731
    inits = {"w1": he(8, 3, 3, 3), "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
             "w2": he(16, 8, 3, 3), "b2": rng.standard_normal(16).astype(np.float32) * 0.1,
             "wf": he(10, 16), "bf": rng.standard_normal(10).astype(np.float32) * 0.1}
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4, strides=[2, 2]),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             h.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             h.make_node("Flatten", ["p"], ["f"], name="flatten"),
             h.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [8, 3, 16, 16])],
                  [h.make_tensor_value_info("y", TensorProto.FLOAT, [8, 10])])


def small_mlp(seed: int = 1) -> onnx.ModelProto:
    """MatMul(32->64) + bias, Relu, MatMul(64->64), Tanh, MatMul(64->8): per-token regression on [2, 4, 32] (an output with no class axis)."""
    rng = np.random.default_rng(seed)
    lecun = lambda *s: (rng.standard_normal(s) / math.sqrt(s[0])).astype(np.float32)  # noqa: E731
    inits = {"w1": lecun(32, 64), "b1": np.full(64, 0.05, np.float32), "w2": lecun(64, 64), "w3": lecun(64, 8)}
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"), h.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
             h.make_node("Relu", ["a1"], ["r1"], name="relu1"), h.make_node("MatMul", ["r1", "w2"], ["m2"], name="mm2"),
             h.make_node("Tanh", ["m2"], ["t2"], name="tanh2"), h.make_node("MatMul", ["t2", "w3"], ["y"], name="mm3")]
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 32])],
                  [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8])])


def _inputs(model: onnx.ModelProto, seeds) -> list[dict[str, np.ndarray]]:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return [{model.graph.input[0].name: np.random.default_rng(s).standard_normal(shape).astype(np.float32)} for s in seeds]


CALIB, HELD_OUT = range(0, 6), range(100, 106)


@pytest.fixture(scope="module")
def cnn_sens():
    model = small_cnn()
    return model, measure_sensitivity(model, _inputs(model, CALIB))


@pytest.fixture(scope="module")
def mlp_sens():
    model = small_mlp()
    return model, measure_sensitivity(model, _inputs(model, CALIB))


def test_sensitivities_are_measured(cnn_sens, mlp_sens):
    for model, sens in (cnn_sens, mlp_sens):
        ops = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        assert [s.node for s in sens] == ops
        for s in sens:
            assert s.flops > 0
            bf16, fp16, int8 = (s.errors[p]["y"] for p in ("bf16", "fp16", "int8"))
            # every lowered op changes the output, bf16 (8 bits of mantissa) by less than int8, fp16 (11) by less still
            assert 0 < fp16.max_abs < bf16.max_abs < int8.max_abs, (s.node, fp16, bf16, int8)
            assert 1.0 > bf16.cosine > int8.cosine > 0.9
            assert 0 < bf16.max_rel < 1e-2
    conv1 = cnn_sens[1][0]
    assert conv1.flops == 2 * (8 * 8 * 16 * 16) * (3 * 3 * 3)
    assert cnn_sens[1][2].flops == 2 * 8 * 10 * 16
    assert cnn_sens[1][0].errors["bf16"]["y"].top1 is not None and mlp_sens[1][0].errors["bf16"]["y"].top1 is None
    assert set(conv1.act_quant) == {"x"} and conv1.act_quant["x"].signed and not cnn_sens[1][1].act_quant["r1"].signed


def test_emulation_rounds_exactly_the_operands():
    """One MatMul with bf16 / int8 emulation equals numpy's rounding of its operands, then an fp32 product."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 4)).astype(np.float32)
    model = _model([h.make_node("MatMul", ["x", "w"], ["y"], name="mm")], {"w": w},
                   [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    x = rng.standard_normal((2, 16)).astype(np.float32)
    bits = lambda a: (((a.view(np.uint32).astype(np.uint64) + 0x7FFF + ((a.view(np.uint32) >> 16) & 1)) >> 16) << 16)  # noqa: E731
    bf16 = lambda a: bits(a).astype(np.uint32).view(np.float32)  # noqa: E731
    (y,) = run_model(emulate(model, {"mm": "bf16"}, {}), [{"x": x}])[0].values()
    np.testing.assert_allclose(y, bf16(x) @ bf16(w), rtol=1e-6, atol=1e-6)
    wq = fake_quantize_weight(w, 1)
    assert np.abs(wq - w).max() <= np.abs(w).max(axis=0).max() / 127 / 2 + 1e-7
    from hcc.planner.precision import ActQuant
    scale = float(np.abs(x).max() / 127)
    (y,) = run_model(emulate(model, {"mm": "int8"}, {"x": ActQuant(scale, 0, True)}), [{"x": x}])[0].values()
    xq = (np.clip(np.rint(x / np.float32(scale)), -128, 127) * np.float32(scale)).astype(np.float32)
    np.testing.assert_allclose(y, xq @ wq, rtol=1e-5, atol=1e-5)


def test_bf16x3_emulation_is_the_three_split_products():
    """A Gemm (alpha, beta and a bias) in bf16x3: hi*hi + hi*lo + lo*hi of the split operands, the bias added once,
    as the CPU kernel sums them; far closer to the fp32 product than bf16's emulation."""
    rng = np.random.default_rng(4)
    w, c = rng.standard_normal((64, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    model = _model([h.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", alpha=0.5, beta=2.0)], {"w": w, "c": c},
                   [h.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])
    x = rng.standard_normal((4, 64)).astype(np.float32)

    def bf16(a):
        bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)

    (xh, xl), (wh, wl) = ((bf16(a), bf16(a - bf16(a))) for a in (x, w))
    d = np.float64
    split = 0.5 * (xh.astype(d) @ wh + xh.astype(d) @ wl + xl.astype(d) @ wh) + 2.0 * c
    exact = 0.5 * (x.astype(d) @ w) + 2.0 * c
    (y,) = run_model(emulate(model, {"fc": "bf16x3"}, {}), [{"x": x}])[0].values()
    (y16,) = run_model(emulate(model, {"fc": "bf16"}, {}), [{"x": x}])[0].values()
    np.testing.assert_allclose(y, split, rtol=1e-6, atol=1e-5)
    assert np.abs(y - exact).max() * 50 < np.abs(y16 - exact).max()


def test_cpu_kernels_take_int8_for_gemms_of_a_2d_weight_only():
    """What the compiler measures (cpu_kernel_applies): bf16 everywhere, bf16x3 for GEMMs, int8 for GEMMs whose B is a
    2-D initializer (the kernel quantizes a kept weight per column), not for a product of two activations."""
    from hcc.planner.precision import cpu_kernel_applies

    rng = np.random.default_rng(1)
    inits = {"w": rng.standard_normal((8, 4)).astype(np.float32), "k": rng.standard_normal((2, 1, 3, 3)).astype(np.float32)}
    nodes = [h.make_node("Conv", ["x", "k"], ["c"], name="conv"), h.make_node("Flatten", ["c"], ["f"], name="flat"),
             h.make_node("MatMul", ["f", "w"], ["y"], name="fc"), h.make_node("MatMul", ["y", "t"], ["z"], name="act")]
    model = _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 2]),
                                  h.make_tensor_value_info("t", TensorProto.FLOAT, [4, 4])],
                   [h.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    conv, _, fc, act = model.graph.node
    assert [cpu_kernel_applies(model, n, "bf16") for n in (conv, fc, act)] == [True, True, True]
    assert [cpu_kernel_applies(model, n, "bf16x3") for n in (conv, fc, act)] == [False, True, True]
    assert [cpu_kernel_applies(model, n, "int8") for n in (conv, fc, act)] == [False, True, False]


@pytest.mark.parametrize("which, budget", [("cnn", "top1=0.99"), ("cnn", "max_abs=5e-3"), ("mlp", "max_abs=2e-2"),
                                           ("mlp", "cosine=0.9999,rel=5e-3")])
def test_plan_meets_budget_on_calibration_and_held_out(which, budget, cnn_sens, mlp_sens):
    model, sens = cnn_sens if which == "cnn" else mlp_sens
    plan = choose(sens, budget, model, _inputs(model, CALIB), _inputs(model, HELD_OUT))
    parsed = AccuracyBudget.parse(budget)
    assert plan.assignment(), "a budget this loose lowers at least one op"
    assert plan.calibration_ok and not parsed.violations(plan.calibration)
    assert plan.held_out_ok and not parsed.violations(plan.held_out)
    # the confirmed error is the measured one of the chosen set: nonzero, and within the composed prediction's budget
    assert all(e.max_abs > 0 for e in plan.calibration.values())
    assert parsed.cost(plan.predicted) <= 1.0


def test_tight_budget_keeps_fp32(cnn_sens):
    model, sens = cnn_sens
    plan = choose(sens, "max_abs=0", model, _inputs(model, CALIB), _inputs(model, HELD_OUT))
    assert plan.assignment() == {} and {c.precision for c in plan.choices} == {"fp32"}
    assert plan.calibration_ok and plan.held_out_ok and plan.calibration["y"].max_abs == 0.0


def test_confirmation_widens_until_within_budget(cnn_sens):
    """Sensitivities that claim zero error make the greedy lower everything; the end-to-end run must then put ops
    back to fp32, most sensitive first, until the measured error fits."""
    model, sens = cnn_sens
    liar = [type(s)(**{**s.__dict__, "errors": {p: {k: type(e)(0.0, 0.0, 1.0, 1.0) for k, e in errs.items()}
                                                 for p, errs in s.errors.items()}}) for s in sens]
    plan = choose(liar, "max_abs=1e-3", model, _inputs(model, CALIB))
    assert plan.reverted and plan.confirm_runs >= 2 and plan.calibration_ok
    assert plan.calibration["y"].max_abs <= 1e-3


def test_json_round_trip(mlp_sens):
    model, sens = mlp_sens
    plan = choose(sens, "max_abs=2e-2", model, _inputs(model, CALIB), _inputs(model, HELD_OUT))
    again = PrecisionPlan.from_json(plan.to_json())
    assert again == plan and again.to_json() == plan.to_json()
    with pytest.raises(HccError, match="not a precision plan"):
        PrecisionPlan.from_json('{"format": "other"}')


def test_deterministic_and_budget_parsing():
    model = small_mlp()
    a = analyze(model, _inputs(model, CALIB[:3]), "rel=1e-2", _inputs(model, HELD_OUT[:3]))
    b = analyze(model, _inputs(model, CALIB[:3]), "rel=1e-2", _inputs(model, HELD_OUT[:3]))
    assert a.to_json() == b.to_json()
    assert AccuracyBudget.parse("max_abs=1e-2, top1=0.99") == AccuracyBudget(max_abs=1e-2, top1=0.99)
    for bad in ("", "speed=2", "max_abs=x", "top1=2", "max_abs=nan", "rel=-1"):
        with pytest.raises(HccError):
            AccuracyBudget.parse(bad)


def test_compare_metrics():
    ref = [{"y": np.array([[1.0, 0.0, -1.0]], np.float32)}]
    out = [{"y": np.array([[1.0, 0.5, -1.0]], np.float32)}]
    e = compare(ref, out)["y"]
    assert e.max_abs == 0.5 and e.max_rel == 0.25 and e.top1 == 1.0
    assert e.cosine == pytest.approx(2 / math.sqrt(2 * 2.25))
    assert compare(ref, [{"y": np.array([[0.0, 2.0, 0.0]], np.float32)}])["y"].top1 == 0.0


def test_nan_reference_is_refused():
    """A model whose fp32 output is NaN on the given inputs (an additive mask of +inf) has no error to measure."""
    model = _model([h.make_node("MatMul", ["x", "w"], ["m"], name="mm"), h.make_node("Mul", ["m", "inf"], ["y"], name="mask")],
                   {"w": np.ones((4, 2), np.float32), "inf": np.array(np.inf, np.float32)},
                   [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(HccError, match="output 'y' is not finite on calibration input 0"):
        measure_sensitivity(model, {"x": np.zeros((1, 4), np.float32)})


def test_report_tool(tmp_path, capsys):
    from helpers import load_tool

    onnx.save(small_cnn(), tmp_path / "cnn.onnx")
    tool = load_tool("precision_report")
    rc = tool.main([str(tmp_path / "cnn.onnx"), "--accuracy", "top1=0.99", "--calib", "3", "--held-out", "3", "--json", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "| conv2 " in out and "held-out (3 inputs):  within budget" in out
    plan = PrecisionPlan.from_json((tmp_path / "p.json").read_text())
    assert [c.node for c in plan.choices] == ["conv1", "conv2", "fc"] and plan.held_out_ok
    assert tool.main([str(tmp_path / "cnn.onnx"), "--fill", "nope=1"]) == 1
    assert "--fill 'nope=1'" in capsys.readouterr().err


def test_conv_transpose_and_gemm_without_transpose():
    """FLOPs and per-output-channel axes of the other layouts: ConvTranspose's weight is [C, M/g, k, k] (axis 1),
    a Gemm without transB reads B as [K, N] (axis 1)."""
    from hcc.planner.precision import _weight_axis

    rng = np.random.default_rng(5)
    inits = {"wt": rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "wg": rng.standard_normal((98, 3)).astype(np.float32)}
    nodes = [h.make_node("ConvTranspose", ["x", "wt"], ["ct"], name="up"), h.make_node("Flatten", ["ct"], ["f"], name="flat"),
             h.make_node("Gemm", ["f", "wg"], ["y"], name="fc")]
    model = _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                   [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    sens = measure_sensitivity(model, _inputs(model, range(2)))
    assert [(s.node, s.flops) for s in sens] == [("up", 2 * 100 * 18), ("fc", 2 * 98 * 3)]
    assert all(0 < s.errors["bf16"]["y"].max_abs < s.errors["int8"]["y"].max_abs for s in sens)
    # bf16x3 is measured for the GEMM only (the CPU has no split-bf16 convolution kernel), far below bf16's error
    assert "bf16x3" not in sens[0].errors and 0 < sens[1].errors["bf16x3"]["y"].max_abs < sens[1].errors["bf16"]["y"].max_abs / 20
    assert _weight_axis(nodes[0], 1, 4) == 1 and _weight_axis(nodes[2], 1, 2) == 1 and _weight_axis(nodes[2], 0, 2) is None
    w = inits["wg"]
    assert np.array_equal(fake_quantize_weight(w, 1), np.stack([fake_quantize_weight(w[:, j], None) for j in range(3)], axis=1))


@pytest.mark.parametrize("which, budget", [("cnn", "max_abs=2e-2"), ("mlp", "max_abs=2e-2")])
def test_measured_growth_saves_more_and_still_meets_budget(which, budget, cnn_sens, mlp_sens):
    """extend=True starts from the conservative choice and keeps only steps an end-to-end run accepts (bf16 and int8
    only, a CPU's choice: the summed bf16 errors exceed the budget that the measured set fits in)."""
    model, sens = cnn_sens if which == "cnn" else mlp_sens
    sens = [replace(s, errors={p: s.errors[p] for p in ("bf16", "int8")}) for s in sens]
    base = choose(sens, budget, model, _inputs(model, CALIB), _inputs(model, HELD_OUT))
    grown = choose(sens, budget, model, _inputs(model, CALIB), _inputs(model, HELD_OUT), extend=True)
    saved = lambda plan: sum(c.flops_saved for c in plan.choices)  # noqa: E731
    assert grown.extended and saved(grown) > saved(base)
    assert all(grown.assignment().get(k) for k in base.assignment())
    parsed = AccuracyBudget.parse(budget)
    assert not parsed.violations(grown.calibration, grown.margin) and grown.held_out_ok


def test_node_keys_are_unique():
    nodes = [h.make_node("Relu", ["x"], ["a"], name="Relu_1"), h.make_node("Relu", ["a"], ["b"]),
             h.make_node("Relu", ["b"], ["c"], name="Relu_1"), h.make_node("Relu", ["c"], ["y"], name="last")]
    model = _model(nodes, {}, [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    assert node_keys(model) == ["Relu_1", "Relu_1_", "Relu_2", "last"]
