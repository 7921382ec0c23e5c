"""TensorScatter (opset 24, frontend/tensor_scatter.py): rewritten before the opset conversion into a GatherElements
and a Where; linear and circular modes (writes that wrap around the cache's end), absent write_indices, several axes
and ranks, compared exactly with onnx.reference; axis 0 and a non-static cache length are refused naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.loader import load_model


def _model(cache: list, update: list, indices: bool = True, elem: int = T.FLOAT, **attrs) -> onnx.ModelProto:
    inputs = [h.make_tensor_value_info("past", elem, cache), h.make_tensor_value_info("update", elem, update)]
    if indices:
        inputs.append(h.make_tensor_value_info("w", T.INT64, [cache[0]]))
    node = h.make_node("TensorScatter", ["past", "update"] + (["w"] if indices else []), ["present"], name="kv", **attrs)
    graph = h.make_graph([node], "tensor_scatter", inputs, [h.make_tensor_value_info("present", elem, cache)])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 24)], ir_version=11)


def _check(tmp_path, model: onnx.ModelProto, feeds_list: list[dict]) -> None:
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds_list[0])
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    session, reference = hcc.runtime.load(tmp_path / "b"), ReferenceEvaluator(model)
    for feeds in feeds_list:
        np.testing.assert_array_equal(session.run(None, feeds)[0], reference.run(None, feeds)[0], err_msg=str(feeds.get("w")))


# (onnx.reference's circular mode takes every index of the write mod the cache length, the batch and head ones too:
# the cases keep those below it, where the spec and the reference agree)
@pytest.mark.parametrize("cache, update, axis", [([3, 2, 7, 4], [3, 2, 3, 4], -2), ([3, 2, 3, 6], [3, 2, 3, 2], 3),
                                                 ([2, 6, 5], [2, 2, 5], 1), ([4, 9], [4, 4], -1)])
@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_matches_reference(tmp_path, cache, update, axis, mode):
    rng = np.random.default_rng(24)
    length, seq = cache[axis], update[axis]
    high = length if mode == "circular" else length - seq + 1  # a linear write stays inside the cache
    feeds = [{"past": rng.standard_normal(cache).astype(np.float32), "update": rng.standard_normal(update).astype(np.float32),
              "w": rng.integers(0, high, cache[0]).astype(np.int64)} for _ in range(4)]
    feeds.append({**feeds[0], "w": np.full(cache[0], high - 1, np.int64)})  # circular: the write wraps around
    _check(tmp_path, _model(cache, update, axis=axis, mode=mode), feeds)


def test_without_write_indices_int64(tmp_path):
    rng = np.random.default_rng(5)
    feeds = {"past": rng.integers(-9, 9, (2, 1, 5, 3)), "update": rng.integers(100, 200, (2, 1, 2, 3))}
    _check(tmp_path, _model([2, 1, 5, 3], [2, 1, 2, 3], indices=False, elem=T.INT64), [feeds])


def test_refusals(tmp_path):
    onnx.save(_model([3, 4], [3, 4], axis=0), tmp_path / "a.onnx")
    with pytest.raises(HccError, match=r"node 'kv' \(TensorScatter\): axis 0 is not a sequence axis"):
        load_model(str(tmp_path / "a.onnx"))
    onnx.save(_model([3, "n", 4], [3, 2, 4], axis=1), tmp_path / "b.onnx")
    with pytest.raises(HccError, match=r"node 'kv' \(TensorScatter\): the cache and update lengths along axis 1 must be static"):
        load_model(str(tmp_path / "b.onnx"), {"past": [3, 6, 4]})
