"""Compress (frontend/compress.py) with a constant condition: an axis, a negative axis, no axis (flattened), a
condition shorter than the axis, compared with onnx.reference and onnxruntime; a run-time condition and one selecting
beyond the axis are refused naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError


def _model(condition: np.ndarray | None, out_shape: list[int], **attrs) -> onnx.ModelProto:
    node = h.make_node("Compress", ["x", "condition"], ["y"], name="compress", **attrs)
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [3, 4, 5])]
    inits = []
    if condition is None:
        inputs.append(h.make_tensor_value_info("condition", T.BOOL, [4]))
    else:
        inits.append(numpy_helper.from_array(condition, "condition"))
    graph = h.make_graph([node], "compress", inputs, [h.make_tensor_value_info("y", T.FLOAT, out_shape)], initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 11)], ir_version=8)


@pytest.mark.parametrize("condition, out_shape, attrs", [
    ([True, False, True, True], [3, 3, 5], {"axis": 1}),
    ([False, True, False], [3, 4, 1], {"axis": -1}),  # shorter than the axis: its first positions only
    ([True, False, False, True, True, False, True], [4], {}),  # no axis: the flattened input
])
def test_constant_condition(tmp_path, condition, out_shape, attrs):
    model = _model(np.array(condition), out_shape, **attrs)
    x = np.random.default_rng(11).standard_normal((3, 4, 5)).astype(np.float32)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", x=x)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(got, session.run(None, {"x": x})[0])


@pytest.mark.parametrize("condition, message", [
    (None, r"node 'compress' \(Compress\): its condition is not a constant"),
    (np.array([True, False, False, False, True]), r"node 'compress' \(Compress\): its condition selects position 4, beyond the 4"),
])
def test_refused(tmp_path, condition, message):
    onnx.save(_model(condition, [3, 2, 5], axis=1), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=message):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
