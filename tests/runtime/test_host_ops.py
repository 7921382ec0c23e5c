"""runtime/host_ops.py: the ops of value-dependent output shape that the runtime runs with numpy, against
onnxruntime on the same inputs (exact: indices and counts), including score ties, boxes given in either corner order
or as centres, absent optional inputs, and Unique in first-occurrence order along an axis."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hcc.runtime.host_ops import run_host_op


def _onnxruntime(op: str, arrays: list, attributes: dict, outputs: list[int]) -> list[np.ndarray]:
    """One-node model of `op`; a None array is an absent optional input."""
    inputs, feeds = [], {}
    for i, a in enumerate(arrays):
        if a is None:
            inputs.append("")
            continue
        inputs.append(f"i{i}")
        feeds[f"i{i}"] = a
    outs = [f"o{i}" for i in range(len(outputs))]
    graph = helper.make_graph([helper.make_node(op, inputs, outs, **attributes)], "g",
                              [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
                               for n, a in feeds.items()],
                              [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, outputs)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _same(op: str, arrays: list, attributes: dict) -> list[np.ndarray]:
    """Every output of `op` (Unique: 4, in the first input's type then int64; the others: one int64)."""
    first = helper.np_dtype_to_tensor_dtype(arrays[0].dtype)
    types = [first] + [TensorProto.INT64] * 3 if op == "Unique" else [TensorProto.INT64]
    ours = run_host_op(op, arrays, attributes, len(types))
    theirs = _onnxruntime(op, arrays, attributes, types)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_array_equal(a, b)
    return ours


def _boxes(rng, batches: int, n: int, centre: bool) -> np.ndarray:
    xy = rng.uniform(0, 8, (batches, n, 2)).astype(np.float32)
    wh = rng.uniform(0.5, 4, (batches, n, 2)).astype(np.float32)
    if centre:
        return np.concatenate([xy, wh], -1)
    corners = np.concatenate([xy, xy + wh], -1)
    flip = rng.random((batches, n)) < 0.3  # some boxes with their corners the other way round
    corners[flip] = corners[flip][:, [2, 3, 0, 1]]
    return corners


@pytest.mark.parametrize("centre", [0, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_non_max_suppression_matches_onnxruntime(seed, centre):
    rng = np.random.default_rng(seed)
    boxes = _boxes(rng, 2, 40, bool(centre))
    scores = rng.choice(np.linspace(0, 1, 9, dtype=np.float32), (2, 3, 40))  # many ties
    kept = _same("NonMaxSuppression", [boxes, scores, np.array([7], np.int64), np.array([0.3], np.float32),
                                       np.array([0.2], np.float32)], {"center_point_box": centre})
    assert 0 < len(kept[0]) <= 2 * 3 * 7


def test_non_max_suppression_optional_inputs():
    """No score threshold (every box a candidate), no IoU threshold (0: any overlap suppresses), no maximum (0:
    nothing is selected)."""
    rng = np.random.default_rng(4)
    boxes, scores = _boxes(rng, 1, 30, False), rng.random((1, 2, 30)).astype(np.float32)
    assert len(_same("NonMaxSuppression", [boxes, scores, np.array([30], np.int64)], {})[0]) > 0
    assert _same("NonMaxSuppression", [boxes, scores], {})[0].shape == (0, 3)


@pytest.mark.parametrize("attributes", [{}, {"sorted": 0}, {"axis": 0}, {"axis": 1, "sorted": 0}, {"axis": -1}])
def test_unique_matches_onnxruntime(attributes):
    x = np.random.default_rng(5).integers(0, 3, (6, 4)).astype(np.float32)
    x[3] = x[1]  # a repeated row
    _same("Unique", [x], attributes)


def test_non_zero_matches_onnxruntime():
    x = np.random.default_rng(6).integers(0, 2, (3, 4, 5)).astype(np.int32)
    _same("NonZero", [x], {})
    _same("NonZero", [np.zeros((2, 2), np.float32)], {})


def _following(op: str, arrays: list, attributes: dict, out_type: int) -> None:
    ours = run_host_op(op, arrays, attributes, 1)
    theirs = _onnxruntime(op, arrays, attributes, [out_type])
    assert ours[0].dtype == theirs[0].dtype and ours[0].shape == theirs[0].shape, (ours[0].dtype, ours[0].shape, theirs[0].shape)
    np.testing.assert_array_equal(ours[0], theirs[0])


_X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 7.5
_I = np.array([[3, -7, 5], [-2, 0, 9]], np.int64)
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


@pytest.mark.parametrize("op,arrays,attributes,out_type", [
    ("Gather", [_X, np.array([[2, -1], [0, 1]], np.int64)], {"axis": 1}, FLOAT),
    ("Slice", [_X, np.array([-1, 1]), np.array([-100, 3]), np.array([2, 1]), np.array([-2, 1])], {}, FLOAT),
    ("Slice", [_X, np.array([0]), np.array([2**62]), np.array([-1])], {}, FLOAT),
    ("Squeeze", [_X[:1, :, :1]], {}, FLOAT),
    ("Unsqueeze", [_X, np.array([-1, 0])], {}, FLOAT),
    ("Reshape", [_X, np.array([0, -1, 2])], {}, FLOAT),
    ("Concat", [_X, _X[:, :1]], {"axis": -2}, FLOAT),
    ("Cast", [_X], {"to": TensorProto.INT32}, TensorProto.INT32),
    ("Transpose", [_X], {"perm": [2, 0, 1]}, FLOAT),
    ("Flatten", [_X], {"axis": 2}, FLOAT),
    ("Shape", [_X], {"start": 1}, INT64),
    ("Div", [_I, np.array([2, -3, 4], np.int64)], {}, INT64),
    ("Add", [_X, np.array([1.5], np.float32)], {}, FLOAT),
])
def test_ops_that_follow_match_onnxruntime(op, arrays, attributes, out_type):
    """The ops a host step's result goes through (a detector's post-processing): numpy, as onnxruntime computes them
    (negative indices and axes, Slice's clamping and negative steps, Reshape's 0 and -1, C's integer division)."""
    _following(op, arrays, attributes, out_type)
