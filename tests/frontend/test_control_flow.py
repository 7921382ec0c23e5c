"""`If` decided at compile time (frontend/control_flow.py): a condition that folds to a constant from shapes or
initializers compiles to the taken branch and matches onnxruntime; a run-time condition, and a Loop with a run-time
trip count, are refused by name with the reason where the caller cannot run them (the loader outside
`runtime_control_flow()`, as `hcc plan` loads); `hcc.compile` makes them program steps (tests/test_program.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.control_flow import runtime_control_flow
from hcc.frontend.loader import load_model
from helpers import compile_and_compare

OPSET = [helper.make_opsetid("", 17)]


def _branch(name: str, op: str, scale: float) -> onnx.GraphProto:
    """y = op(x) * scale, reading x from the outer scope; its own initializer."""
    s = numpy_helper.from_array(np.array([scale], np.float32), f"{name}_scale")
    return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_t"]), helper.make_node("Mul", [f"{name}_t", s.name], [f"{name}_y"])],
                             name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None)], [s])


def _if_on_batch(batch_for_then: int) -> onnx.ModelProto:
    """cond = (x.shape[0] == batch_for_then): Relu * 2 if true, else Sigmoid * 3; then + 1 outside the If."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Equal", ["batch", "want"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch_out"], name="pick", then_branch=_branch("then", "Relu", 2.0),
                         else_branch=_branch("else", "Sigmoid", 3.0)),
        helper.make_node("Add", ["branch_out", "one"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(batch_for_then, np.int64), "want"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    graph = helper.make_graph(nodes, "if_on_batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], inits)
    return helper.make_model(graph, opset_imports=OPSET)


@pytest.mark.parametrize("batch", [1, 3])
def test_an_if_on_a_shape_compiles_to_the_branch_it_takes(tmp_path, batch):
    """Batch 1 takes the Relu branch, batch 3 the Sigmoid one; both match onnxruntime (run on the model as written)."""
    _, outputs, _ = compile_and_compare(_if_on_batch(1), tmp_path, input_shapes={"x": [batch, 8]}, as_written=True)
    assert outputs[0].shape == (batch, 8)


def test_the_taken_branch_is_the_only_code(tmp_path):
    """Batch 1 takes the Relu branch: the loaded graph holds its nodes, not the other branch's, and no If."""
    from hcc.frontend.loader import load_model

    path = tmp_path / "m.onnx"
    onnx.save(_if_on_batch(1), path)
    ops = [n.op_type for n in load_model(str(path), {"x": [1, 8]}).model.graph.node]
    assert "Relu" in ops and "Sigmoid" not in ops and "If" not in ops
    ops = [n.op_type for n in load_model(str(path), {"x": [2, 8]}).model.graph.node]
    assert "Sigmoid" in ops and "Relu" not in ops and "If" not in ops


def test_an_if_on_an_input_value_is_refused_by_name(tmp_path):
    nodes = [
        helper.make_node("Greater", ["rate", "limit"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], name="by_rate", then_branch=_branch("then", "Relu", 2.0),
                         else_branch=_branch("else", "Sigmoid", 3.0)),
    ]
    graph = helper.make_graph(nodes, "if_on_input", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
                                                     helper.make_tensor_value_info("rate", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
                              [numpy_helper.from_array(np.array(8000, np.int64), "limit")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    with pytest.raises(HccError) as info:
        load_model(str(path))
    assert "'by_rate' (If)" in str(info.value) and "'rate'" in str(info.value)
    assert "`hcc compile` runs such If and Loop nodes as host-side branches and loops" in info.value.hint
    with runtime_control_flow():  # the driver's way: the If stays, for a program step
        assert [n.op_type for n in load_model(str(path)).model.graph.node] == ["Greater", "If"]


def test_a_loop_with_a_run_time_trip_count_is_refused_by_name(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "v_in"], ["v_out"])],
                             "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                      helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                                      helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [2])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2])])
    graph = helper.make_graph([helper.make_node("Loop", ["trips", "", "x"], ["y"], name="doubling", body=body)], "loop",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("trips", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    with pytest.raises(HccError) as info:  # a trip count known at compile time is unrolled (tests/frontend/test_unroll.py)
        load_model(str(path))
    assert "'doubling' (Loop): its trip count 'trips' is only known at run time" in str(info.value)


def test_a_branch_reading_a_folded_outer_value(tmp_path):
    """The branch reads `c`, computed outside the If from initializers only: folding turns it into an initializer
    that no top-level node reads, and must keep it (it removed it before, and the inlined branch lost its input)."""
    then = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["then_y"])], "then", [],
                             [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Sub", ["x", "c"], ["else_y"])], "else", [],
                              [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("If", ["cond"], ["y"], name="pick", then_branch=then, else_branch=other)]
    inits = [numpy_helper.from_array(np.array(True), "cond"), numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "a"),
             numpy_helper.from_array(np.array([0.25, 4.0], np.float32), "b")]
    graph = helper.make_graph(nodes, "outer_read", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], inits)
    x = np.arange(6, dtype=np.float32).reshape(3, 2) - 2
    _, outputs, _ = compile_and_compare(helper.make_model(graph, opset_imports=OPSET), tmp_path, feeds={"x": x}, as_written=True)
    np.testing.assert_array_equal(outputs[0], x * np.array([1.75, 2.0], np.float32))
