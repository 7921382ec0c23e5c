"""A Scan whose iterations are independent, computed as one map over the scanned axis (frontend/scan_map.py):
skl2onnx's pairwise-distance Scan of nearest-neighbours models, and a body with broadcasting, a reduction with
kept axes, a Transpose and a constant; it matches onnxruntime, and its node count does not grow with the
iterations. Scans that are not maps (a carried state) are unrolled as before."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.frontend import scan_map, unroll
from hcc.frontend.loader import load_model
from helpers import compile_and_compare

F = TensorProto.FLOAT


def _cdist_model(rows: int, opset: int = 17) -> onnx.ModelProto:
    """What skl2onnx writes for KNeighbors* (cdist by Scan): the query batch X passes through as the state, each
    iteration reduces (X - training_row)^2 over the features."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["next_in"], ["next_out"]), helper.make_node("Sub", ["next_in", "next"], ["diff"]),
         helper.make_node("ReduceSumSquare", ["diff"], ["reduced"], axes=[1], keepdims=0),
         helper.make_node("Identity", ["reduced"], ["scan_out"])],
        "cdist", [helper.make_tensor_value_info("next_in", F, None), helper.make_tensor_value_info("next", F, None)],
        [helper.make_tensor_value_info("next_out", F, None), helper.make_tensor_value_info("scan_out", F, None)])
    training = np.random.default_rng(0).standard_normal((rows, 5)).astype(np.float32)
    nodes = [helper.make_node("Scan", ["X", "training"], ["state", "distances"], name="cdist", body=body, num_scan_inputs=1),
             helper.make_node("Transpose", ["distances"], ["by_query"], perm=[1, 0]),
             helper.make_node("Sqrt", ["by_query"], ["y"])]
    graph = helper.make_graph(nodes, "knn", [helper.make_tensor_value_info("X", F, [8, 5])], [helper.make_tensor_value_info("y", F, [8, rows])],
                              [numpy_helper.from_array(training, "training")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_cdist_scan_is_one_map(tmp_path):
    model = _cdist_model(600)
    onnx.save(model, tmp_path / "knn.onnx")
    loaded = load_model(str(tmp_path / "knn.onnx"))
    assert len(loaded.model.graph.node) < 20  # not 600 copies of the body
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-5, atol=1e-5)


def test_a_body_with_broadcasts_reductions_and_a_transpose(tmp_path):
    """Per iteration: a [2, 3] slice, a [4, 1, 3] state and a body constant broadcast together; a kept-axis
    reduction, a Transpose and a Where; two scan outputs of different ranks."""
    scale = numpy_helper.from_array(np.array([0.5, -2.0, 1.5], np.float32), "scale")
    body = helper.make_graph(
        [helper.make_node("Mul", ["q_in", "slice"], ["prod"]), helper.make_node("Mul", ["prod", "scale"], ["scaled"]),
         helper.make_node("ReduceMax", ["scaled"], ["peak"], axes=[-1], keepdims=1),
         helper.make_node("Greater", ["scaled", "peak"], ["above"]), helper.make_node("Where", ["above", "scaled", "peak"], ["clipped"]),
         helper.make_node("Transpose", ["clipped"], ["t"], perm=[2, 0, 1]), helper.make_node("ReduceSum", ["slice", "axis"], ["row"], keepdims=0),
         helper.make_node("Identity", ["q_in"], ["q_out"])],
        "body", [helper.make_tensor_value_info("q_in", F, [4, 1, 3]), helper.make_tensor_value_info("slice", F, [2, 3])],
        [helper.make_tensor_value_info("q_out", F, [4, 1, 3]), helper.make_tensor_value_info("t", F, [3, 4, 2]),
         helper.make_tensor_value_info("row", F, [3])], [scale, numpy_helper.from_array(np.array([0], np.int64), "axis")])
    scan = helper.make_node("Scan", ["q", "s"], ["q_final", "ts", "rows"], name="map", body=body, num_scan_inputs=1)
    graph = helper.make_graph([scan], "g", [helper.make_tensor_value_info("q", F, [4, 1, 3]), helper.make_tensor_value_info("s", F, [6, 2, 3])],
                              [helper.make_tensor_value_info("q_final", F, [4, 1, 3]), helper.make_tensor_value_info("ts", F, [6, 3, 4, 2]),
                               helper.make_tensor_value_info("rows", F, [6, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    assert not any("/it" in n.name for n in load_model(str(tmp_path / "m.onnx")).model.graph.node)  # mapped, not unrolled
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 17])
def test_a_carried_state_is_unrolled(opset):
    """A running sum changes its state every iteration: not a map."""
    body = helper.make_graph([helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
                             "sum", [helper.make_tensor_value_info(n, F, [3]) for n in ("s_in", "x_t")],
                             [helper.make_tensor_value_info(n, F, [3]) for n in ("s_out", "y_t")])
    scan = helper.make_node("Scan", ["s0", "x"], ["s", "y"], name="running_sum", body=body, num_scan_inputs=1)
    graph = helper.make_graph([scan], "g", [helper.make_tensor_value_info("s0", F, [3]), helper.make_tensor_value_info("x", F, [5, 3])],
                              [helper.make_tensor_value_info("s", F, [3]), helper.make_tensor_value_info("y", F, [5, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    assert scan_map.map_scan(unroll._Graph(model), model.graph.node[0], "m.onnx") is None
    assert unroll.unroll_known_loops(model) == 1 and any("/it4/" in n.name for n in model.graph.node)
