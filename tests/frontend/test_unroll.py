"""Scan and Loop with a trip count known at compile time (frontend/unroll.py): unrolled, they match onnxruntime;
state, scan inputs and outputs in both directions and on other axes, iteration numbers; loops that need a run-time
decision (a run-time trip count, an early exit) and oversized unrollings are refused by node name where the caller
cannot run them as loops (the loader outside `runtime_control_flow()`; `hcc.compile` does: tests/test_program.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend import unroll
from helpers import compile_and_compare

F = TensorProto.FLOAT


def _scan_model(opset: int) -> onnx.ModelProto:
    """State s (running sum of a's rows scaled by the state p) and p (running product); scan inputs a (rows,
    forward) and b (columns, axis 1, reverse); outputs: per step s (reverse direction) and s * b_t (axis 1)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "a_t"], ["sum"]), helper.make_node("Mul", ["sum", "p_in"], ["s_out"]),
         helper.make_node("Mul", ["p_in", "b_t"], ["p_out"]), helper.make_node("Identity", ["s_out"], ["y_t"]),
         helper.make_node("Mul", ["s_out", "b_t"], ["z_t"])],
        "step", [helper.make_tensor_value_info(n, F, [3]) for n in ("s_in", "p_in", "a_t", "b_t")],
        [helper.make_tensor_value_info(n, F, [3]) for n in ("s_out", "p_out", "y_t", "z_t")])
    scan = helper.make_node("Scan", ["s0", "p0", "a", "b"], ["s", "p", "y", "z"], name="recurrence", body=body, num_scan_inputs=2,
                            scan_input_axes=[0, 1], scan_input_directions=[0, 1], scan_output_axes=[0, -1], scan_output_directions=[1, 0])
    graph = helper.make_graph([scan], "scan", [helper.make_tensor_value_info("s0", F, [3]), helper.make_tensor_value_info("a", F, [4, 3]),
                                               helper.make_tensor_value_info("b", F, [3, 4])],
                              [helper.make_tensor_value_info(n, F, shape) for n, shape in (("s", [3]), ("p", [3]), ("y", [4, 3]), ("z", [3, 4]))],
                              [numpy_helper.from_array(np.array([1.0, 0.5, -1.0], np.float32), "p0")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 11])  # 11: slices by Gather (torch-mlir converts Slice from opset 13 on)
def test_scan_matches_onnxruntime(tmp_path, opset):
    session, outputs, _ = compile_and_compare(_scan_model(opset), tmp_path, as_written=True, rtol=1e-5, atol=1e-6)
    shapes = {name: out.shape for name, out in zip(session.manifest.outputs, outputs)}
    assert shapes == {"s": (3,), "p": (3,), "y": (4, 3), "z": (3, 4)}


def _loop_model(trips_node: list, cond_out: onnx.NodeProto | None = None, trips_input: bool = False) -> onnx.ModelProto:
    """v <- v * 2 + i per iteration i; scan output: v after each iteration."""
    body = helper.make_graph(
        [cond_out or helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["i_f"], to=F), helper.make_node("Add", ["v_in", "v_in"], ["twice"]),
         helper.make_node("Add", ["twice", "i_f"], ["v_out"]), helper.make_node("Identity", ["v_out"], ["trace"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", F, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", F, [2]),
         helper.make_tensor_value_info("trace", F, [2])])
    nodes = trips_node + [helper.make_node("Loop", ["trips", "", "x"], ["y", "steps"], name="doubling", body=body)]
    inputs = [helper.make_tensor_value_info("x", F, [2])] + ([helper.make_tensor_value_info("trips", TensorProto.INT64, [])] if trips_input else [])
    outputs = [helper.make_tensor_value_info("y", F, [2]), helper.make_tensor_value_info("steps", F, ["n", 2])]
    graph = helper.make_graph(nodes, "loop", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_with_a_constant_trip_count_matches_onnxruntime(tmp_path):
    model = _loop_model([helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(3, np.int64)))])
    session, outputs, _ = compile_and_compare(model, tmp_path, as_written=True)
    assert outputs[1].shape == (3, 2)


def test_loop_trip_count_from_a_shape_is_unrolled(tmp_path):
    """trips = x.shape[0] + 2: folded from shapes, then unrolled."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("ReduceSum", ["shape"], ["n"], keepdims=0),
             helper.make_node("Add", ["n", "two"], ["trips"])]
    model = _loop_model(nodes)
    model.graph.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "two"))
    _, outputs, _ = compile_and_compare(model, tmp_path, as_written=True)
    assert outputs[1].shape == (4, 2)


def _refusal(model: onnx.ModelProto, tmp_path) -> str:
    from hcc.frontend.loader import load_model

    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError) as info:
        load_model(str(path))
    return str(info.value)


def test_loop_with_a_run_time_trip_count_is_refused(tmp_path):
    assert "'doubling' (Loop): its trip count 'trips' is only known at run time" in _refusal(_loop_model([], trips_input=True), tmp_path)


def test_loop_whose_body_computes_its_condition_is_refused(tmp_path):
    early_exit = helper.make_node("Less", ["i", "limit"], ["cond_out"])
    model = _loop_model([helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(5, np.int64)))], cond_out=early_exit)
    model.graph.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "limit"))
    assert "'doubling' (Loop): its body computes its condition" in _refusal(model, tmp_path)


def test_too_large_an_unrolling_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(unroll, "MAX_UNROLLED_NODES", 10)
    assert "'recurrence' (Scan): unrolling its iterations gives more than 10 nodes" in _refusal(_scan_model(17), tmp_path)
