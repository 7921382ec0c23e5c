"""CumSum (frontend/cumsum.py) with its axis given at run time: the scan is built for every axis and the result
picked by the axis value; every axis value of a rank-3 input, both signs, matches onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import hcc
import hcc.runtime


@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 1)])
def test_run_time_axis(tmp_path, exclusive, reverse):
    node = h.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum", exclusive=exclusive, reverse=reverse)
    graph = h.make_graph([node], "cumsum", [h.make_tensor_value_info("x", T.FLOAT, [3, 4, 6]),
                                            h.make_tensor_value_info("axis", T.INT32, [])],
                         [h.make_tensor_value_info("y", T.FLOAT, [3, 4, 6])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)], ir_version=8)
    x = np.random.default_rng(9).standard_normal((3, 4, 6)).astype(np.float32)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", x=x, axis=np.array(1, np.int32))
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    session = hcc.runtime.load(tmp_path / "b")
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for axis in range(-3, 3):
        feeds = {"x": x, "axis": np.array(axis, np.int32)}
        got, want = session.run(None, feeds)[0], reference.run(None, feeds)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"axis {axis}")
