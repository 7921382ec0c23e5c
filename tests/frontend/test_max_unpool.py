"""MaxUnpool (frontend/max_unpool.py): the indices of a MaxPool in the same graph (a batch, several channels,
strides, pads), with and without a larger constant output_shape, compared with onnx.reference and onnxruntime; an
output_shape given at run time is refused naming the node."""
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


def _model(output_shape: list[int] | None, constant: bool = True) -> onnx.ModelProto:
    pool = h.make_node("MaxPool", ["x"], ["pooled", "indices"], name="pool", kernel_shape=[2, 3], strides=[2, 2])
    inputs = ["pooled", "indices"] + (["output_shape"] if output_shape is not None else [])
    unpool = h.make_node("MaxUnpool", inputs, ["y"], name="unpool", kernel_shape=[2, 3], strides=[2, 2])
    graph_inputs, inits = [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 6, 7])], []
    if output_shape is not None and constant:
        inits.append(numpy_helper.from_array(np.array(output_shape, np.int64), "output_shape"))
    elif output_shape is not None:
        graph_inputs.append(h.make_tensor_value_info("output_shape", T.INT64, [4]))
    y_shape = output_shape or [2, 3, 6, 7]  # (3 - 1) * 2 + 2 rows, (3 - 1) * 2 + 3 columns
    graph = h.make_graph([pool, unpool], "unpool", graph_inputs, [h.make_tensor_value_info("y", T.FLOAT, y_shape)],
                         initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("output_shape", [None, [2, 3, 8, 9]])
def test_unpools_max_pool_indices(tmp_path, output_shape):
    model = _model(output_shape)
    x = np.random.default_rng(13).standard_normal((2, 3, 6, 7)).astype(np.float32)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", x=x)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])
    if output_shape is None:  # with output_shape onnxruntime reads the indices in its layout, the reference (and the
        # node suite's expected output) in the inferred shape's, padded after: hcc follows the reference
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(got, session.run(None, {"x": x})[0])


def test_run_time_output_shape_is_refused(tmp_path):
    onnx.save(_model([2, 3, 8, 9], constant=False), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'unpool' \(MaxUnpool\): output_shape is not a constant"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
