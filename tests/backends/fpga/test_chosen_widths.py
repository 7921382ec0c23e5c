"""FPGA widths chosen from measured sensitivity (planner/fixed_precision.py) reach the backend as per-layer types, and
the emulation the choice measured is what the backend computes: compared with hcc's own bit-exact fixed-point
reference evaluator (backends/fpga/fixed_point.Evaluator, the csim's reference) on held-out inputs."""
from __future__ import annotations

import numpy as np
import pytest

from fpga_testlib import lower, mlp, tiny_cnn
from hcc.backends.fpga import backend, fixed_point
from hcc.frontend.loader import load_model
from hcc.options import CompileOptions, ModelFiles
from hcc.planner import fixed_precision as fp
from hcc.planner.precision import AccuracyBudget, run_model


def _feeds(shape, seeds):
    return [{"x": np.random.default_rng(s).standard_normal(shape).astype(np.float32)} for s in seeds]


@pytest.mark.parametrize("make, shape", [(mlp, (2, 12)), (tiny_cnn, (1, 3, 8, 8))])
@pytest.mark.parametrize("budget", ["max_abs=1e-1", "max_abs=1e-2"])
def test_backend_computes_what_the_choice_measured(tmp_path, make, shape, budget):
    spec, linalg, _ = lower(make(), tmp_path)
    model = load_model(str(tmp_path / "model.onnx"), None).model  # as hcc compiles it (BatchNorm folded)
    region = {n.name for n in model.graph.node}
    plan = fp.analyze_widths(model, _feeds(shape, range(4)), budget, _feeds(shape, range(100, 104)), regions=[region])
    assert plan.calibration_ok and plan.held_out_ok
    options = CompileOptions.from_keywords(fpga={"config": plan.fpga_config()})
    state = backend.build(linalg, spec, options, ModelFiles(model=str(tmp_path / "lifted.onnx"), weights=str(tmp_path / "weights.npz")))
    prog = state["prog"]
    # the chosen types are the program's: each MAC layer's weights and result, each subgraph input
    layers = {lw.node: lw for lw in plan.layers}
    for op in prog.ops:
        if op.kind == "mac":
            lw = layers[fp.mac_layers(model, op.nodes)[0][1]]
            assert str(op.types["result"]) == lw.types["result"]
            assert {str(o.type) for o in op.ins if o.kind == "const" and o.role == "weight"} == {lw.types["weight"]}
    assert {b.tensor: str(b.type) for b in prog.inputs} == plan.inputs
    worst = 0.0
    for x in _feeds(shape, range(200, 204)):  # held out from both the choice and its verification
        vals = fixed_point.Evaluator(prog, state["cfg"].table_size).run({b.id: x[b.tensor] for b in prog.inputs})
        out = next(vals[b.id] for b in prog.outputs)
        ref = run_model(model, [x])[0]
        name = next(iter(ref))
        emulated = run_model(fp.emulate_widths(model, *plan.fixed()), [x])[0][name]
        got = out.fixed.reshape(ref[name].shape)
        # bit for bit (measured: equal on every input here); onnxruntime sums in fp32 and the backend exactly, so a
        # value exactly on a rounding edge could round the other way: at most one output LSB, on few elements
        diff = np.abs(got - emulated)
        assert diff.max() <= out.t.lsb and np.mean(diff > 0) <= 0.05
        worst = max(worst, float(np.abs(got - ref[name]).max()))
    assert worst <= AccuracyBudget.parse(budget).max_abs  # the backend's own arithmetic within the budget
