"""CumProd (opset 26, frontend/cumprod.py): rewritten into a scan of opset-22 ops before the opset conversion; a
constant and a run-time axis (every value, both signs), exclusive/reverse, wrapping int64 products, compared with
onnx.reference; an axis whose length is not static is refused naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError


def _model(elem: int, shape: list, axis: int | None = None, **attrs) -> onnx.ModelProto:
    node = h.make_node("CumProd", ["x", "axis"], ["y"], name="cumprod", **attrs)
    inputs = [h.make_tensor_value_info("x", elem, shape)]
    inits = []
    if axis is None:
        inputs.append(h.make_tensor_value_info("axis", T.INT32, []))
    else:
        inits.append(numpy_helper.from_array(np.array(axis, np.int64), "axis"))
    graph = h.make_graph([node], "cumprod", inputs, [h.make_tensor_value_info("y", elem, shape)], initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 26)], ir_version=13)


def _compile(tmp_path, model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    return hcc.runtime.load(tmp_path / "b")


@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_run_time_axis(tmp_path, exclusive, reverse):
    x = np.random.default_rng(26).uniform(0.5, 1.5, (3, 4, 6)).astype(np.float32)
    model = _model(T.FLOAT, [3, 4, 6], exclusive=exclusive, reverse=reverse)
    session = _compile(tmp_path, model, {"x": x, "axis": np.array(1, np.int32)})
    reference = ReferenceEvaluator(model)
    for axis in range(-3, 3):
        feeds = {"x": x, "axis": np.array(axis, np.int32)}
        np.testing.assert_allclose(session.run(None, feeds)[0], reference.run(None, feeds)[0], rtol=1e-5,
                                   err_msg=f"axis {axis}")


def test_constant_axis_int64_wraps(tmp_path):
    """Integer products are exact, wrapping as the reference's numpy loop does (a length not a power of two)."""
    x = np.random.default_rng(27).integers(-40, 40, (2, 13)).astype(np.int64)
    model = _model(T.INT64, [2, 13], axis=-1, exclusive=1)
    got = _compile(tmp_path, model, {"x": x}).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])


def test_dynamic_axis_length_is_refused(tmp_path):
    onnx.save(_model(T.FLOAT, [2, "n"], axis=1), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'cumprod' \(CumProd\): the length of axis 1 is not static"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", input_shapes={"x": [2, 5]})
