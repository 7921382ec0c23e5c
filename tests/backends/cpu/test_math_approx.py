"""The CPU backend's polynomial exp, tanh and erf (backends/cpu/math_approx.py) are accurate in *relative* terms.

Why: the ONNX node suite compares with atol 1e-7, and onnxruntime returns tanh(x) = x and erf(x) = 2x/sqrt(pi) for
tiny x. The closed forms the approximations use for large |x| cancel near 0 (test_gelu_tanh_2 was one element off,
tanh(1e-30) came out 0), so the small-|x| branches are checked here against float64 references, with the branch
boundaries, zeros of both signs, infinities and NaN.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

import hcc
from hcc.runtime import load

REL_TOL = 3e-7


def _grid() -> np.ndarray:
    tiny = np.array([1e-30, 1e-20, 1e-10, 1e-7, 3e-5, 1e-3, 0.01, 0.1], np.float64)
    edges = np.array([0.6249, 0.625, 0.6251, 0.999, 1.0, 1.001], np.float64)
    dense = np.linspace(0.0, 6.0, 1201)
    positive = np.concatenate([tiny, edges, dense])
    return np.concatenate([positive, -positive]).astype(np.float32)


def _reference(op: str, x: np.ndarray) -> np.ndarray:
    as64 = x.astype(np.float64)
    values = np.tanh(as64) if op == "Tanh" else np.array([math.erf(v) for v in as64])
    return values.astype(np.float32)


def test_tanh_and_erf_keep_relative_accuracy_near_zero(tmp_path):
    x = _grid()
    nodes = [h.make_node("Tanh", ["x"], ["tanh"], name="tanh"), h.make_node("Erf", ["x"], ["erf"], name="erf")]
    graph = h.make_graph(nodes, "math_approx", [h.make_tensor_value_info("x", T.FLOAT, [x.size])],
                         [h.make_tensor_value_info(n, T.FLOAT, [x.size]) for n in ("tanh", "erf")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "math.onnx"
    path.write_bytes(model.SerializeToString())
    hcc.compile(path, tmp_path / "bundle")
    tanh, erf = load(tmp_path / "bundle").run(None, {"x": x})
    for op, actual in (("Tanh", tanh), ("Erf", erf)):
        expected = _reference(op, x)
        np.testing.assert_allclose(actual, expected, rtol=REL_TOL, atol=0, err_msg=op)
        assert np.array_equal(np.signbit(actual), np.signbit(expected)), f"{op}: sign of a zero or tiny value lost"
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    tanh, erf = load(tmp_path / "bundle").run(None, {"x": np.resize(special, x.size).astype(np.float32)})
    for actual in (tanh, erf):
        head = actual[:5]
        assert head[0] == 0 and not np.signbit(head[0]) and head[1] == 0 and np.signbit(head[1])
        assert head[2] == 1.0 and head[3] == -1.0 and np.isnan(head[4])


def test_exp_within_two_ulp_over_its_range(tmp_path):
    """exp's products fuse with their sums where the target has FMA (the `contract` flag): still within 2 ulp of the
    float64 reference wherever the result is a normal float, +inf above the overflow threshold, 0 far below."""
    x = np.concatenate([np.linspace(-87.3, 88.72, 100001), [-1e-30, 0.0, 1e-30, 0.5, 1.0, 20.0]]).astype(np.float32)
    special = np.array([88.7229, 89.0, -88.4, -100.0, np.inf, -np.inf, np.nan], np.float32)
    node = h.make_node("Exp", ["x"], ["y"], name="exp")
    graph = h.make_graph([node], "exp", [h.make_tensor_value_info("x", T.FLOAT, [x.size + special.size])],
                         [h.make_tensor_value_info("y", T.FLOAT, [x.size + special.size])])
    path = tmp_path / "exp.onnx"
    path.write_bytes(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8).SerializeToString())
    hcc.compile(path, tmp_path / "bundle")
    y = load(tmp_path / "bundle").run(None, {"x": np.concatenate([x, special])})[0]
    expected = np.exp(x.astype(np.float64)).astype(np.float32)
    ulp = np.abs(y[: x.size].view(np.int32).astype(np.int64) - expected.view(np.int32).astype(np.int64))
    assert ulp.max() <= 2, f"exp({x[ulp.argmax()]}) = {y[ulp.argmax()]}, expected {expected[ulp.argmax()]}"
    tail = y[x.size:]
    assert np.isposinf(tail[:2]).all() and (tail[2:4] == 0).all(), tail
    assert np.isposinf(tail[4]) and tail[5] == 0 and np.isnan(tail[6]), tail
