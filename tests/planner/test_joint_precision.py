"""Device and precision chosen together (planner/joint_precision.py, `hcc plan --precision auto`): the accuracy budget
changes where layers run and at what precision, the budget holds on held-out inputs, a confirming run over the margin
widens the most sensitive choice and solves again, the plan is deterministic, a budget too tight keeps fp32 and
32-bit words and says so. Model: a 3-layer MLP whose first layer is sensitive (an outlier column), on cpu + FPGA with
a DSP budget, so that a 32-bit layer (4 DSPs per multiplier) is slow on the FPGA."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.driver import plan_with_precision
from hcc.frontend.loader import load_model
from hcc.options import CompileOptions, CpuOptions, FpgaOptions, GoldenOptions, PlannerOptions
from hcc.planner import fixed_precision, joint_precision
from hcc.planner.cost_model import CostModel, analyze_model
from hcc.planner.device_catalog import builtin_catalog, resolve_spec
from hcc.planner.plan import plan_to_json
from hcc.runtime.devices.cpu import has_bf16_dot, has_bf16_tiles


def mlp(n: int = 256, batch: int = 64) -> onnx.ModelProto:
    """sensitive (MatMul n->n, last column x100), Relu, benign (MatMul n->n ignoring that column), Relu, head (n->16)."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((n, n)) / math.sqrt(n)).astype(np.float32)
    w1[:, -1] *= 100
    w2 = (rng.standard_normal((n, n)) / math.sqrt(n)).astype(np.float32)
    w2[-1, :] = 0
    w3 = (rng.standard_normal((n, 16)) / math.sqrt(n)).astype(np.float32)
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m1"], name="sensitive"), h.make_node("Relu", ["m1"], ["r1"], name="relu1"),
             h.make_node("MatMul", ["r1", "w2"], ["m2"], name="benign"), h.make_node("Relu", ["m2"], ["r2"], name="relu2"),
             h.make_node("MatMul", ["r2", "w3"], ["y"], name="head")]
    graph = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16])],
                         initializer=[numpy_helper.from_array(v, k) for k, v in {"w1": w1, "w2": w2, "w3": w3}.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("joint") / "mlp.onnx"
    onnx.save(mlp(), path)
    return load_model(str(path), None)


def _plan(loaded, budget: str):
    options = CompileOptions(golden=GoldenOptions(seed=0), cpu=CpuOptions(precision="auto", accuracy=budget), fpga=FpgaOptions(accuracy=budget),
                             planner=PlannerOptions(devices="cpu,fpga:xcu250", budgets=("fpga.dsp=300",)))
    return plan_with_precision(loaded, options)


def _rows(plan) -> dict[str, tuple[str, str]]:
    return {n: (s.kind, s.precision) for s in plan.subgraphs for n in s.nodes}


@pytest.mark.skipif(not has_bf16_tiles(), reason="the CPU's bf16 and bf16x3 options exist only on a host with AMX bf16 tiles: "
                                                "without them the expected placements differ by design")
def test_accuracy_budget_changes_device_and_precision(loaded):
    loose, lp = _plan(loaded, "max_abs=1e-1")
    mid, mp = _plan(loaded, "max_abs=1e-2")
    tight, tp = _plan(loaded, "max_abs=1e-3")
    none, np_ = _plan(loaded, "max_abs=1e-6")
    # loose: the sensitive layer (its outlier column takes a fixed-point word's integer bits; bf16 rounds relative to
    # each value and does not care) and the head on the CPU in bf16, the benign layer on the FPGA at 12 bits
    assert _rows(loose)["sensitive"] == ("cpu", "fp32+bf16 1/1") and _rows(loose)["benign"] == ("fpga", "ap_fixed 12b")
    assert lp.fpga.widths() == {"benign": 12} and sorted(lp.assignment()) == ["head", "sensitive"]
    # 10x tighter: no bf16 fits; the FPGA keeps the one layer whose input converts cheaply (the graph input, not the
    # outlier activations), at 18 bits; the CPU's two GEMMs take bf16x3 (split bf16, near-fp32 error)
    assert _rows(mid)["sensitive"] == ("fpga", "ap_fixed 18b") and _rows(mid)["benign"] == ("cpu", "fp32+bf16x3 2/2")
    assert mp.assignment() == {"benign": "bf16x3", "head": "bf16x3"}
    # tighter: no fixed-point width fits; everything on the CPU in bf16x3
    assert {k for k, _ in _rows(tight).values()} == {"cpu"} and set(tp.assignment().values()) == {"bf16x3"} and len(tp.assignment()) == 3
    # tighter still: nothing fits; everything on the CPU at fp32, and the plan says why
    assert {k for k, _ in _rows(none).values()} == {"cpu"} and np_.assignment() == {}
    assert any("too tight for any lower precision" in n for n in none.notes)
    for p in (lp, mp):
        assert p.fpga.calibration_ok and p.fpga.held_out_ok is True  # the whole budget on inputs the choice never saw
        assert p.fpga.calibration["y"].max_abs <= 0.5 * (1e-1 if p is lp else 1e-2)
    # the notes carry the predicted saving and the measured error
    cpu_note = next(s.precision_note for s in loose.subgraphs if s.kind == "cpu")
    assert "saved (cost model)" in cpu_note and "of the budget" in cpu_note
    assert next(c.time_saved_s for c in lp.choices if c.node == "sensitive") > 0
    assert "at the chosen widths" in next(s.precision_note for s in loose.subgraphs if s.kind == "fpga")


@pytest.mark.skipif(has_bf16_tiles() or not has_bf16_dot(), reason="the CPU's options on AVX512-BF16 dot products without AMX: "
                                                                    "bf16, no bf16x3")
def test_accuracy_budget_changes_device_and_precision_on_dot_products(loaded):
    """Without tiles the CPU offers bf16 alone: the loose budget places as on AMX (the sensitive layer and the head in
    bf16 on the CPU, the benign layer on the FPGA at 12 bits); at 1e-2, where AMX takes bf16x3, the CPU's layers stay
    fp32 and the benign layer keeps the FPGA at a wider 16-bit word; at 1e-3 everything runs on the CPU at fp32."""
    loose, lp = _plan(loaded, "max_abs=1e-1")
    mid, mp = _plan(loaded, "max_abs=1e-2")
    tight, tp = _plan(loaded, "max_abs=1e-3")
    assert _rows(loose)["sensitive"] == ("cpu", "fp32+bf16 1/1") and _rows(loose)["benign"] == ("fpga", "ap_fixed 12b")
    assert lp.assignment() == {"sensitive": "bf16", "head": "bf16"} and lp.fpga.widths() == {"benign": 12}
    assert _rows(mid)["sensitive"] == ("cpu", "fp32") and _rows(mid)["benign"] == ("fpga", "ap_fixed 16b") and mp.assignment() == {}
    assert {k for k, _ in _rows(tight).values()} == {"cpu"} and tp.assignment() == {}
    assert lp.fpga.held_out_ok is True and mp.fpga.held_out_ok is True


def test_fixed_point_sensitivity_differs_by_layer():
    calib = [{"x": np.random.default_rng(s).standard_normal((64, 256)).astype(np.float32)} for s in range(2)]
    sens = {s.node: s for s in fixed_precision.measure_widths(mlp(), calib, nodes=["sensitive", "benign"], widths=(12,))}
    assert sens["sensitive"].errors["12"]["y"].max_abs > 10 * sens["benign"].errors["12"]["y"].max_abs


def test_joint_plan_is_deterministic(loaded):
    first, second = _plan(loaded, "max_abs=1e-2")[0], _plan(loaded, "max_abs=1e-2")[0]
    keep = lambda p: [{k: v for k, v in s.items()} for s in plan_to_json(p)["subgraphs"]]  # noqa: E731
    assert keep(first) == keep(second)


def test_budget_too_tight_keeps_fp32_and_wide_words(loaded):
    plan, pp = _plan(loaded, "max_abs=1e-7")
    assert pp.assignment() == {} and all(w == fixed_precision.WIDE_WIDTH for w in (pp.fpga.widths().values() if pp.fpga else []))
    assert any("too tight for any lower precision" in n for n in plan.notes)
    assert all(s.precision in ("fp32", f"ap_fixed {fixed_precision.WIDE_WIDTH}b") for s in plan.subgraphs)


def test_confirming_run_over_the_margin_widens_and_solves_again(loaded, monkeypatch):
    """Sensitivities that understate the error 30x (as a composition could, for errors that do not add): the confirming
    run measures the truth, widens the most sensitive choice, and the final choice is within the margin."""
    real = fixed_precision.measure_widths

    def understated(*args, **kwargs):
        found = real(*args, **kwargs)
        for s in found:
            for w, errors in s.errors.items():
                s.errors[w] = {k: type(e)(e.max_abs / 30, e.max_rel / 30, 1 - (1 - e.cosine) / 900, e.top1, e.top1_certain)
                               for k, e in errors.items()}
        return found

    monkeypatch.setattr(joint_precision.fxp, "measure_widths", understated)
    plan, pp = _plan(loaded, "max_abs=1e-2")
    assert pp.fpga is not None and pp.fpga.widened, "the confirming run should have widened something"
    assert all("the placement solved again" in r for r in pp.fpga.widened)
    assert pp.fpga.calibration["y"].max_abs <= 0.5 * 1e-2 and pp.fpga.held_out_ok


def test_cost_model_prices_each_width_with_its_error():
    model = onnx.shape_inference.infer_shapes(mlp())
    node = analyze_model(model).by_name["sensitive"]
    spec = resolve_spec("fpga:xcu250", builtin_catalog())
    cm = CostModel(fpga_width_choices={"sensitive": {8: 0.9, 16: 0.1, 32: 0.0}})
    by_width = {}
    for est in cm.fpga_variants(node, spec):
        by_width.setdefault(est.width, []).append(est)
    assert sorted(by_width) == [8, 16, 32] and {e.accuracy for e in by_width[16]} == {0.1}
    fastest = {w: min(es, key=lambda e: e.latency_cycles) for w, es in by_width.items()}
    # same design point, 32-bit words: 4 DSPs per multiplier (ceil(32/27) x ceil(32/18)) instead of 1
    assert fastest[32].dsp == 4 * fastest[16].dsp and fastest[8].dsp == fastest[16].dsp  # 8-bit weights x >= 16-bit inputs
