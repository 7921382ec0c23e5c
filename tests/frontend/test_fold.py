"""Constant folding (frontend/fold.py): what is computed from constants alone is evaluated at compile time."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

from hcc.frontend.loader import load_model
from helpers import compile_and_compare


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "fold", [h.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                         [h.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], list(inits))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


@pytest.mark.parametrize("op, identity", [("ReduceSum", 0.0), ("ReduceMax", -np.inf), ("ReduceProd", 1.0), ("ReduceLogSumExp", -np.inf)])
def test_a_reduction_over_an_empty_input_is_its_identity(tmp_path, op, identity):
    """A graph input of a zero-size static shape has one possible value, so a reduction over its empty axis is a
    constant, the reduction's identity element: folded, where compiling it used to be refused (zero-size tensors
    crash the backend). Both as a graph output and feeding further arithmetic on a real input."""
    axes = onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [h.make_node(op, ["x", "axes"], ["y"]), h.make_node(op, ["x", "axes"], ["r"]), h.make_node("Add", ["r", "w"], ["z"])]
    model = _model(nodes, [("x", [2, 0, 4]), ("w", [2, 1, 4])], [("y", [2, 1, 4]), ("z", [2, 1, 4])], [axes])
    path = tmp_path / "empty.onnx"
    onnx.save(model, path)
    loaded = load_model(str(path))
    assert [n.op_type for n in loaded.model.graph.node] == ["Identity", "Add"]  # nothing reads the empty input any more
    _session, outputs, _expected = compile_and_compare(model, tmp_path)
    assert np.all(outputs[0] == identity)
