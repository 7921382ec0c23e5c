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


def _model(k: int, shape=(3, 8), **attrs) -> onnx.ModelProto:
    node = h.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", **attrs)
    graph = h.make_graph([node], "topk", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                         [h.make_tensor_value_info("values", T.FLOAT, [shape[0], k]), h.make_tensor_value_info("indices", T.INT64, [shape[0], k])],
                         [numpy_helper.from_array(np.array([k], np.int64), "k")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


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
    monkeypatch.setattr(topk, "MAX_PAIRS", 100)
    onnx.save(_model(2), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'topk' \(TopK\): 3 rows of 8 elements need 192 comparisons"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
