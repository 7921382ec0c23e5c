"""ScatterElements and ScatterND (frontend/scatter.py) with run-time indices: negative and duplicate indices, indices
covering part of the data, every reduction, compared with onnx.reference and onnxruntime; oversized cases are
refused with one line naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError


def _model(op: str, data: np.ndarray, indices: np.ndarray, updates: np.ndarray, opset: int, **attrs) -> onnx.ModelProto:
    elem = h.np_dtype_to_tensor_dtype(data.dtype)
    node = h.make_node(op, ["data", "indices", "updates"], ["y"], name="scatter", **attrs)
    graph = h.make_graph([node], "scatter",
                         [h.make_tensor_value_info("data", elem, data.shape),
                          h.make_tensor_value_info("indices", h.np_dtype_to_tensor_dtype(indices.dtype), indices.shape),
                          h.make_tensor_value_info("updates", elem, updates.shape)],
                         [h.make_tensor_value_info("y", elem, data.shape)])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def _check(tmp_path, model: onnx.ModelProto, feeds: dict[str, np.ndarray], with_ort: bool = True,
           want: np.ndarray | None = None) -> None:
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, feeds)[0]
    want = ReferenceEvaluator(model).run(None, feeds)[0] if want is None else want
    np.testing.assert_array_equal(got, want)
    if with_ort:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(got, session.run(None, feeds)[0])


RNG = np.random.default_rng(21)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_middle_axis_partial_indices(tmp_path, reduction):
    """Indices [2, 3, 2] into data [3, 4, 5] along axis 1: negative indices, duplicates (summed in loop order for
    'add'; for 'none' the reference's last write wins), and a corner of the data left untouched."""
    data = RNG.integers(-9, 9, (3, 4, 5)).astype(np.float32)
    indices = np.array([[[0, -1], [3, 2], [1, 1]], [[-4, 0], [2, -2], [0, 3]]], np.int64)
    updates = RNG.integers(-9, 9, (2, 3, 2)).astype(np.float32)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    model = _model("ScatterElements", data, indices, updates, 18, axis=1, **attrs)
    _check(tmp_path, model, {"data": data, "indices": indices, "updates": updates})


def test_scatter_elements_opset11_int32_indices_int64_data(tmp_path):
    data = RNG.integers(-100, 100, (4, 3)).astype(np.int64)
    indices = np.array([[1, -1, 0], [3, 0, 2]], np.int32)
    updates = RNG.integers(-100, 100, (2, 3)).astype(np.int64)
    _check(tmp_path, _model("ScatterElements", data, indices, updates, 11), {"data": data, "indices": indices, "updates": updates})


def test_scatter_elements_passes_nan_and_inf_keeps_data_bits(tmp_path):
    """'none' fetches the update itself (NaN, inf arrive unchanged) and leaves untouched data bit for bit (-0.0)."""
    data = np.array([[1, -0.0, 2, 3], [-0.0, 4, 5, 6]], np.float32)
    indices = np.array([[3, 0], [1, 2]], np.int64)
    updates = np.array([[np.nan, 7], [8, np.inf]], np.float32)
    feeds = {"data": data, "indices": indices, "updates": updates}
    _check(tmp_path, _model("ScatterElements", data, indices, updates, 16, axis=1), feeds)
    got = hcc.runtime.load(tmp_path / "b").run(None, feeds)[0]
    assert np.isnan(got[0, 3]) and np.signbit(got[0, 1]) and np.signbit(got[1, 0])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_pairs_with_duplicates(tmp_path, reduction):
    """Index pairs into [4, 3, 2] (rows of 2 elements), with a negative and a duplicated pair."""
    data = RNG.integers(-9, 9, (4, 3, 2)).astype(np.float32)
    indices = np.array([[[0, 1], [-1, 2]], [[3, -2], [0, 1]], [[2, 0], [1, 1]]], np.int64)
    updates = RNG.integers(-9, 9, (3, 2, 2)).astype(np.float32)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    model = _model("ScatterND", data, indices, updates, 18, **attrs)
    # onnxruntime leaves duplicate indices of 'none' undefined (it may write in parallel): the reference decides;
    # onnx.reference's max/min index with a tuple's array (not the tuple) for pairs: the spec's loop, written here
    want = None
    if reduction in ("max", "min"):
        want = data.copy()
        for i in np.ndindex(indices.shape[:-1]):
            cell = tuple(indices[i])
            want[cell] = (np.maximum if reduction == "max" else np.minimum)(want[cell], updates[i])
    _check(tmp_path, model, {"data": data, "indices": indices, "updates": updates}, with_ort=reduction != "none", want=want)


def test_scatter_nd_full_index_int32_data(tmp_path):
    data = RNG.integers(-50, 50, (3, 4)).astype(np.int32)
    indices = np.array([[2, 3], [0, 0], [-1, -4]], np.int64)
    updates = np.array([7, 8, 9], np.int32)
    _check(tmp_path, _model("ScatterND", data, indices, updates, 13), {"data": data, "indices": indices, "updates": updates})


def test_oversized_reduction_is_refused(tmp_path):
    data = np.zeros((1000,), np.float32)
    indices = np.zeros((300, 1), np.int64)
    updates = np.zeros((300,), np.float32)
    onnx.save(_model("ScatterND", data, indices, updates, 18, reduction="add"), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'scatter' \(ScatterND\): a reduction over 300 update slices .* up to 256 steps"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
