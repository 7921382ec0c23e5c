"""Model outputs that are constants (a Constant node's value, an initializer), which onnxruntime returns and hcc
refused before: constant_outputs.materialize_constant_outputs makes each an Identity of an initializer, which the compiled code
writes; other readers of the same constant still read it. Compiled and checked against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from helpers import compile_and_compare


def test_constant_outputs_beside_computed_ones(tmp_path):
    anchors = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    nodes = [h.make_node("Constant", [], ["anchors"], name="anchors", value=numpy_helper.from_array(anchors, "anchors")),
             h.make_node("Add", ["x", "anchors"], ["shifted"], name="shift"),
             h.make_node("Mul", ["x", "scale"], ["scaled"], name="scale_x")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                         [h.make_tensor_value_info(n, TensorProto.FLOAT, [3, 4]) for n in ("shifted", "anchors", "scaled")]
                         + [h.make_tensor_value_info("scale", TensorProto.FLOAT, [4]),
                            h.make_tensor_value_info("labels", TensorProto.INT64, [2])],
                         [numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale"),
                          numpy_helper.from_array(np.array([7, -1], np.int64), "labels")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session, outputs, _ = compile_and_compare(model, tmp_path)
    named = dict(zip(session.manifest.outputs, outputs))
    np.testing.assert_array_equal(named["anchors"], anchors)
    np.testing.assert_array_equal(named["labels"], [7, -1])
