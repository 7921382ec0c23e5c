"""TopK (frontend/topk.py) where onnxruntime's order is unspecified: NaN inputs, compared with onnx.reference
(NaN is the largest value: first for largest=1, last for largest=0; ties by lower index). And its refusals."""
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
from hcc.frontend import topk


def _model(k: int, shape=(3, 8), elem: int = T.FLOAT, opset: int = 17, **attrs) -> onnx.ModelProto:
    node = h.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", **attrs)
    out = [None] * len(shape)
    graph = h.make_graph([node], "topk", [h.make_tensor_value_info("x", elem, list(shape))],
                         [h.make_tensor_value_info("values", elem, out), h.make_tensor_value_info("indices", T.INT64, out)],
                         [numpy_helper.from_array(np.array([k], np.int64), "k")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("largest", [1, 0])
def test_nan_order_matches_the_reference(tmp_path, largest):
    model = _model(5, largest=largest)
    onnx.save(model, tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    x = np.array([[1, np.nan, 3, 3, -np.inf, np.nan, 0, 2],
                  [np.inf, 2, 2, np.nan, -1, 2, 5, -0.0],
                  [4, 3, 2, 1, 0, -1, -2, -3]], np.float32)
    got = hcc.runtime.load(tmp_path / "b").run(None, {"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])  # NaN == NaN for assert_array_equal


def test_too_many_comparisons_is_refused(tmp_path, monkeypatch):
    """Where rounds cannot be used (integers at opset 11-12), the pairs' limit holds."""
    monkeypatch.setattr(topk, "MAX_PAIRS", 100)
    onnx.save(_model(2, (3, 8), T.INT64, 11), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'topk' \(TopK\): 3 rows of 8 elements need 192 comparisons"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")


def _grid_values(shape, elem: int, rng) -> np.ndarray:
    """Few distinct values (ties everywhere); floats with NaN and +-inf mixed in."""
    x = rng.integers(-3, 4, shape)
    if elem != T.FLOAT:
        return x.astype(np.int64)
    x = x.astype(np.float32)
    flat = x.reshape(-1)
    for value, share in ((np.nan, 0.1), (np.inf, 0.05), (-np.inf, 0.05)):
        flat[rng.random(flat.size) < share] = value
    return x


@pytest.mark.parametrize("shape,k,axis,largest,elem,opset", [
    ((3, 40), 3, -1, 1, T.FLOAT, 11), ((3, 40), 3, -1, 0, T.FLOAT, 18), ((2, 50, 3), 4, 1, 1, T.FLOAT, 13),
    ((4, 64), 2, -1, 0, T.INT64, 13), ((4, 64), 5, -1, 1, T.INT64, 18), ((2, 33), 1, -1, 0, T.FLOAT, 17),
    ((1, 5000), 5, -1, 1, T.FLOAT, 17),  # 25M comparisons as pairs: over MAX_PAIRS, rounds only
])
def test_small_k_by_rounds_matches_the_reference(tmp_path, shape, k, axis, largest, elem, opset):
    """k much smaller than the axis (a nearest-neighbours model's top 5 of its training set): k rounds of selection,
    the same order as the pairs (NaN first for largest, last for smallest; ties by lower index)."""
    model = _model(k, shape, elem, opset, axis=axis, largest=largest)
    nodes, _ = topk.topk_nodes(model.graph.node[0], elem, list(shape), k, opset, "m.onnx")
    assert not any(n.op_type == "ReduceSum" and "ahead" in n.input[0] for n in nodes)  # not the n*n ranks
    onnx.save(model, tmp_path / "m.onnx")
    x = _grid_values(shape, elem, np.random.default_rng(k))
    np.savez(tmp_path / "x.npz", x=x)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "x.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, {"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_integer_topk_at_opset_11_keeps_the_pairs():
    """Integer ReduceMax has no torch-mlir conversion before opset 13, so rounds are not used there."""
    model = _model(2, (4, 64), T.INT64, 11)
    nodes, _ = topk.topk_nodes(model.graph.node[0], T.INT64, [4, 64], 2, 11, "m.onnx")
    assert not any(n.op_type == "ReduceMax" for n in nodes)


def test_too_many_rounds_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(topk, "MAX_PAIRS", 100)
    monkeypatch.setattr(topk, "MAX_ROUNDS", 1)
    onnx.save(_model(2), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"k = 2 is more than the 1 rounds"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
