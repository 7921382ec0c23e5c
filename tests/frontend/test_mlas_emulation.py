"""frontend/mlas_emulation.py: the lookup tables of onnxruntime's 8-bit element-wise kernels, checked against the
kernels onnxruntime runs (com.microsoft.QLinearAdd) over every pair of 8-bit inputs, for each broadcast path."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.frontend import mlas_emulation


def _onnxruntime_qlinear_binary(op: str, a: np.ndarray, b: np.ndarray, scales, zero_points, dtype) -> np.ndarray:
    """com.microsoft.QLinear<op> (Add, Mul) run by onnxruntime on one thread."""
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    inits = [numpy_helper.from_array(np.array(s, np.float32), n) for s, n in zip(scales, ("sa", "sb", "sc"))]
    inits += [numpy_helper.from_array(np.array(z, dtype), n) for z, n in zip(zero_points, ("za", "zb", "zc"))]
    node = helper.make_node(f"QLinear{op}", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain="com.microsoft")
    inputs = [helper.make_tensor_value_info("a", elem, a.shape), helper.make_tensor_value_info("b", elem, b.shape)]
    graph = helper.make_graph([node], f"qlinear_{op.lower()}", inputs, [helper.make_tensor_value_info("c", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"a": a, "b": b})[0]


def _parameters(seed: int, dtype):
    """Calibration-like scales (not powers of two; every fifth set with sC = sA + sB, as a residual add's output
    scale often is) and zero points anywhere in the type's range."""
    rng = np.random.default_rng(seed)
    scales = [np.float32(np.exp(rng.uniform(-8, 0))) for _ in range(3)]
    if seed % 5 == 0:
        scales[2] = np.float32(scales[0] + scales[1])
    info = np.iinfo(dtype)
    return scales, [int(rng.integers(info.min, int(info.max) + 1)) for _ in range(3)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("seed", range(6))
def test_qlinear_add_table_is_onnxruntimes_for_every_input_pair(dtype, seed):
    scales, zero_points = _parameters(seed, dtype)
    codes = mlas_emulation.CODES[np.dtype(dtype)].astype(dtype)
    # both inputs vary: every pair in one call
    a, b = np.repeat(codes, 256), np.tile(codes, 256)
    expected = _onnxruntime_qlinear_binary("Add", a, b, scales, zero_points, dtype).reshape(256, 256)
    np.testing.assert_array_equal(mlas_emulation.qlinear_add_table(scales, zero_points, dtype, ""), expected)
    # a [256, 1] + b [1, 256]: a is one value per span of the output's last axis, and the reverse
    column, row = codes.reshape(256, 1), codes.reshape(1, 256)
    expected_a = _onnxruntime_qlinear_binary("Add", column, row, scales, zero_points, dtype)
    np.testing.assert_array_equal(mlas_emulation.qlinear_add_table(scales, zero_points, dtype, "a"), expected_a)
    expected_b = _onnxruntime_qlinear_binary("Add", row, column, scales, zero_points, dtype)  # output[i, j] = add(a=codes[j], b=codes[i])
    np.testing.assert_array_equal(mlas_emulation.qlinear_add_table(scales, zero_points, dtype, "b"), expected_b.T)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("seed", range(4))
def test_qlinear_mul_table_is_onnxruntimes_for_every_input_pair(dtype, seed):
    scales, zero_points = _parameters(seed, dtype)
    codes = mlas_emulation.CODES[np.dtype(dtype)].astype(dtype)
    expected = _onnxruntime_qlinear_binary("Mul", np.repeat(codes, 256), np.tile(codes, 256), scales, zero_points, dtype).reshape(256, 256)
    np.testing.assert_array_equal(mlas_emulation.qlinear_mul_table(scales, zero_points, dtype), expected)


def test_the_scalar_paths_differ_from_the_vector_path():
    """The three tables are not the same function (else the path would not matter): with zero points away from 0
    the order of the fused multiply-adds changes some results."""
    tables = {}
    for seed in range(40):
        scales, zero_points = _parameters(seed, np.uint8)
        tables = {path: mlas_emulation.qlinear_add_table(scales, zero_points, np.uint8, path) for path in ("", "a")}
        if np.any(tables[""] != tables["a"]):
            return
    pytest.fail("no scale set among 40 where the span-scalar path rounds differently")


def test_fma32_rounds_once():
    """fma(x, y, z) where x * y + z lies just off a float32 rounding tie: a float32 multiply then add rounds twice."""
    x, y = np.float32(1 + 2.0**-12), np.float32(1 + 2.0**-12)  # x * y = 1 + 2^-11 + 2^-24 exactly
    z = np.float32(-1.0)
    assert mlas_emulation.fma32(x, y, z) == np.float32(2.0**-11 + 2.0**-24)
    assert np.float32(x * y) + z != np.float32(2.0**-11 + 2.0**-24)


@pytest.mark.parametrize("a_shape, b_shape, scalar", [
    ([2, 8, 5, 5], [2, 8, 5, 5], ""), ([2, 8, 5, 5], [1, 8, 1, 1], "b"), ([1, 8, 1, 1], [2, 8, 5, 5], "a"),
    ([4, 16], [16], ""), ([4, 16], [4, 1], "b"), ([1], [3, 3], "a"), ([3, 3], [], "b"), ([1, 1], [1], "a"),
    ([2, 8, 5, 1], [2, 8, 1, 1], "b"),  # the output's last axis has length 1: the span is the axis before it
])
def test_broadcast_scalar_input_follows_onnxruntimes_broadcaster(a_shape, b_shape, scalar):
    assert mlas_emulation.broadcast_scalar_input(a_shape, b_shape) == scalar


def _onnxruntime_lookup(op: str, codes: np.ndarray, params: dict, alpha: float):
    elem = TensorProto.UINT8 if codes.dtype == np.uint8 else TensorProto.INT8
    inits = [numpy_helper.from_array(np.array(params[n], np.float32 if n.endswith("s") else codes.dtype), n) for n in ("xs", "xz", "ys", "yz")]
    node = helper.make_node(f"QLinear{op}", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                            **({"alpha": alpha} if op == "LeakyRelu" else {}))
    graph = helper.make_graph([node], "lookup", [helper.make_tensor_value_info("x", elem, [256])],
                              [helper.make_tensor_value_info("y", elem, [256])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": codes})[0]


@pytest.mark.parametrize("op", ["Sigmoid", "LeakyRelu"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_lookup_tables_are_onnxruntimes(op, dtype):
    """QLinearSigmoid / QLinearLeakyRelu tables for every code, against onnxruntime's, over scale sets that include
    output scales of 2x and 0.5x the input's (ties: MlasQuantizeLinear rounds them to even)."""
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    codes = mlas_emulation.CODES[np.dtype(dtype)].astype(dtype)
    for trial in range(24):
        xs = np.float32(np.exp(rng.uniform(-6, 0)))
        ys = np.float32(xs * (2.0, 0.5, 1.0)[trial % 3]) if trial % 2 else np.float32(np.exp(rng.uniform(-9, -3)))
        params = {"xs": xs, "ys": ys, "xz": int(rng.integers(info.min, int(info.max) + 1)), "yz": int(rng.integers(info.min, int(info.max) + 1))}
        alpha = (0.01, 0.1, 0.3)[trial % 3]
        expected = _onnxruntime_lookup(op, codes, params, alpha)
        table = mlas_emulation.qlinear_lookup_table(op, params["xs"], params["xz"], params["ys"], params["yz"], dtype, alpha)
        np.testing.assert_array_equal(table, expected, err_msg=f"{op} {params} alpha={alpha}")
