"""Quantized models (frontend/quantized.py): the ONNX quantization ops, QDQ and QOperator models, compiled and compared
bit for bit with onnxruntime run on the model as written (never on hcc's rewrite of it).

Integer outputs must be equal; float outputs of a QDQ model (a final DequantizeLinear) too, since one quantization
step of difference inside the network would show there. The QDQ tests use scales that are not powers of two, so
that a float computation of what onnxruntime computes with integer kernels would differ (test_fusion_matters).
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnx.reference
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import hcc
import hcc.frontend.quantized as quantized
import hcc.runtime
from hcc.artifacts.golden import onnxruntime_int8_saturates
from hcc.errors import HccError
from hcc.frontend.loader import load_model

F, U8, I8, I32 = T.FLOAT, T.UINT8, T.INT8, T.INT32
ORT_INT8_EXACT = not onnxruntime_int8_saturates()  # else u8 x s8 outputs are checked against onnx.reference
RNG = np.random.default_rng(11)
# Scales that are not powers of two (as calibration produces them): rounding ties of a float path are then rare
# but real, and the integer path differs from it.
XS, WS, YS = np.float32(0.0213731), np.float32(0.00417319), np.float32(0.0391177)


def c(name: str, value, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def make(nodes, inputs, outputs, inits=(), opset: int = 13, ms: bool = False) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "quantized", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs], initializer=list(inits))
    opsets = [h.make_opsetid("", opset)] + ([h.make_opsetid("com.microsoft", 1)] if ms else [])
    return h.make_model(graph, opset_imports=opsets, ir_version=8 if opset <= 18 else 10)


def compile_model(model: onnx.ModelProto, tmp_path, name: str = "model"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / f"{name}.bundle")
    return hcc.runtime.load(tmp_path / f"{name}.bundle")


def assert_exact(session, model: onnx.ModelProto, feeds_list: list[dict], saturating: tuple[str, ...] = ()) -> None:
    """Every output equal to onnxruntime's (NaN where it has NaN) for every set of feeds. The `saturating` outputs
    (u8 x s8 products) are compared with onnx.reference instead where onnxruntime's int8 kernels are not exact on
    this CPU: the reference computes them by the specification (it rounds requantization ties otherwise than
    onnxruntime, so it is no oracle for the other outputs)."""
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    by_spec = None
    if saturating and not ORT_INT8_EXACT:
        from onnx.reference import ReferenceEvaluator

        by_spec = ReferenceEvaluator(model)
    for index, feeds in enumerate(feeds_list):
        expected = dict(zip(names, reference.run(names, feeds)))
        if by_spec is not None:
            expected.update(zip(saturating, by_spec.run(list(saturating), feeds)))
        for name, actual in zip(session.manifest.outputs, session.run(None, feeds)):
            assert actual.dtype == expected[name].dtype, name
            np.testing.assert_array_equal(actual, expected[name], err_msg=f"output '{name}', feeds #{index}")


def int8_weights(shape) -> np.ndarray:
    """int8 weights; 7-bit (-64..63, onnxruntime's reduce_range) where its u8 x s8 kernels saturate, so that it stays
    an exact oracle there: 255 * 64 * 2 < 2^15."""
    return ints(np.int8, shape) if ORT_INT8_EXACT else RNG.integers(-64, 64, shape).astype(np.int8)


def ints(dtype, shape) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, shape).astype(dtype)


# ------------------------------------------------------------------------------------------------ single ops


def _elementwise_model() -> onnx.ModelProto:
    """QuantizeLinear and DequantizeLinear: per tensor, per axis, blocked; uint8, int8, int32."""
    nodes = [
        h.make_node("QuantizeLinear", ["x", "s", "zu"], ["q_u8"], name="q_u8"),
        h.make_node("QuantizeLinear", ["x", "s", "zi"], ["q_i8"], name="q_i8"),
        h.make_node("QuantizeLinear", ["x", "s"], ["q_default"], name="q_default"),  # no zero point: uint8, zp 0
        h.make_node("QuantizeLinear", ["x4", "s_axis", "z_axis"], ["q_axis"], name="q_axis", axis=1),
        h.make_node("QuantizeLinear", ["x4", "s_block", "z_block"], ["q_block"], name="q_block", axis=2, block_size=3),
        h.make_node("DequantizeLinear", ["u", "s", "zu"], ["dq_u8"], name="dq_u8"),
        h.make_node("DequantizeLinear", ["i", "s_rows", "z_rows"], ["dq_axis"], name="dq_axis", axis=0),
        h.make_node("DequantizeLinear", ["b", "s_bias"], ["dq_i32"], name="dq_i32"),
        h.make_node("DequantizeLinear", ["u4", "s_block", "z_block"], ["dq_block"], name="dq_block", axis=2, block_size=3),
    ]
    inits = [c("s", 0.25, np.float32), c("zu", 3, np.uint8), c("zi", -5, np.int8),
             c("s_axis", [0.5, XS, 0.07], np.float32), c("z_axis", [0, 40, 250], np.uint8),
             c("s_block", RNG.uniform(0.01, 0.1, (2, 3, 2, 2)).astype(np.float32), None), c("z_block", ints(np.uint8, (2, 3, 2, 2))),
             c("s_rows", [0.1, WS, 1.5, 3e-5], np.float32), c("z_rows", [0, 3, -3, 127], np.int8), c("s_bias", XS * WS, np.float32)]
    inputs = [("x", F, [64]), ("x4", F, [2, 3, 5, 2]), ("u", U8, [64]), ("i", I8, [4, 16]), ("b", I32, [40]), ("u4", U8, [2, 3, 5, 2])]
    outputs = [("q_u8", U8, [64]), ("q_i8", I8, [64]), ("q_default", U8, [64]), ("q_axis", U8, [2, 3, 5, 2]), ("q_block", U8, [2, 3, 5, 2]),
               ("dq_u8", F, [64]), ("dq_axis", F, [4, 16]), ("dq_i32", F, [40]), ("dq_block", F, [2, 3, 5, 2])]
    return make(nodes, inputs, outputs, inits, opset=21)


def _elementwise_feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(64) * 40).astype(np.float32)
    x[:16] = (rng.integers(-400, 400, 16) + 0.5).astype(np.float32) * 0.25  # ties: x / 0.25 = k + 0.5 exactly
    x[16:24] = [np.nan, np.inf, -np.inf, 1e30, -1e30, 31.875, -32.125, -0.0]  # NaN -> qmin; saturation at both ends
    return {"x": x, "x4": (rng.standard_normal((2, 3, 5, 2)) * 5).astype(np.float32), "u": np.arange(0, 256, 4, dtype=np.uint8),
            "i": np.arange(-128, 128, 4, dtype=np.int8).reshape(4, 16), "b": rng.integers(-(1 << 30), 1 << 30, 40).astype(np.int32),
            "u4": ints(np.uint8, (2, 3, 5, 2))}


def test_quantize_and_dequantize_match_onnxruntime(tmp_path):
    model = _elementwise_model()
    assert_exact(compile_model(model, tmp_path), model, [_elementwise_feeds(seed) for seed in range(3)])


def _integer_model() -> onnx.ModelProto:
    """MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv at opset 10 (converted to 11), uint8 and int8, per tensor
    and per channel, with a bias, and a requantization scale of exactly 0.5 (ties)."""
    w_conv = RNG.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8)
    w_conv_u8 = RNG.integers(0, 256, (3, 4, 2, 2)).astype(np.uint8)
    w_mm = RNG.integers(-128, 128, (24, 10)).astype(np.int8)
    nodes = [
        h.make_node("MatMulInteger", ["a", "w_mm", "az", "wz_cols"], ["mmi"], name="mmi"),
        h.make_node("MatMulInteger", ["a", "b_rt"], ["mmi_rt"], name="mmi_runtime"),
        h.make_node("ConvInteger", ["x", "w_conv", "xz", "wz_conv"], ["convi"], name="convi", pads=[1, 1, 1, 1]),
        h.make_node("QLinearMatMul", ["a3", "as", "az", "w_mm", "ws_cols", "wz_zero", "ys", "yz"], ["qmm"], name="qmm"),
        h.make_node("QLinearMatMul", ["a_i8", "half", "z_i8", "b_i8", "one", "z_i8", "one", "z_i8"], ["qmm_ties"], name="qmm_ties"),
        h.make_node("QLinearConv", ["x", "xs", "xz", "w_conv", "ws_chan", "wz_zero6", "ys", "yz", "bias"], ["qconv"], name="qconv",
                    pads=[1, 0, 1, 0], strides=[2, 1]),
        h.make_node("QLinearConv", ["x", "half", "xz", "w_conv_u8", "one", "wz_u8", "one", "yz"], ["qconv_ties"], name="qconv_ties"),
    ]
    inits = [c("w_mm", w_mm), c("w_conv", w_conv), c("w_conv_u8", w_conv_u8), c("az", 131, np.uint8), c("wz_cols", ints(np.int8, 10)),
             c("xz", 7, np.uint8), c("wz_conv", -9, np.int8), c("as", XS, np.float32),
             c("ws_cols", RNG.uniform(1e-3, 1e-2, 10).astype(np.float32)), c("wz_zero", np.zeros(10, np.int8)), c("ys", YS, np.float32),
             c("yz", 128, np.uint8), c("half", 0.5, np.float32), c("one", 1.0, np.float32), c("z_i8", -3, np.int8), c("xs", XS, np.float32),
             c("ws_chan", RNG.uniform(1e-3, 1e-2, 6).astype(np.float32)), c("wz_zero6", np.zeros(6, np.int8)),
             c("bias", RNG.integers(-20000, 20000, 6).astype(np.int32)), c("wz_u8", 128, np.uint8)]
    inputs = [("a", U8, [5, 24]), ("b_rt", U8, [24, 7]), ("x", U8, [2, 4, 9, 7]), ("a3", U8, [2, 5, 24]), ("a_i8", I8, [5, 6]), ("b_i8", I8, [6, 4])]
    outputs = [("mmi", I32, [5, 10]), ("mmi_rt", I32, [5, 7]), ("convi", I32, [2, 6, 9, 7]), ("qmm", U8, [2, 5, 10]), ("qmm_ties", I8, [5, 4]),
               ("qconv", U8, [2, 6, 5, 5]), ("qconv_ties", U8, [2, 3, 8, 6])]
    return make(nodes, inputs, outputs, inits, opset=10)


def test_integer_ops_match_onnxruntime(tmp_path):
    model = _integer_model()
    feeds = [{"a": ints(np.uint8, (5, 24)), "b_rt": ints(np.uint8, (24, 7)), "x": ints(np.uint8, (2, 4, 9, 7)),
              "a3": ints(np.uint8, (2, 5, 24)), "a_i8": ints(np.int8, (5, 6)), "b_i8": ints(np.int8, (6, 4))} for _ in range(3)]
    assert_exact(compile_model(model, tmp_path), model, feeds, saturating=("mmi", "qmm", "qconv"))


def _qgemm_model() -> onnx.ModelProto:
    """com.microsoft.QGemm (what onnxruntime's quantizer writes for a Gemm): requantized, and scaled to float."""
    nodes = [
        h.make_node("QGemm", ["a", "as", "az", "w", "ws", "wz", "bias", "ys", "yz"], ["y_q"], name="qgemm_q", domain="com.microsoft",
                    transB=1, alpha=0.75),
        h.make_node("QGemm", ["at", "as", "az", "w", "ws", "wz"], ["y_f"], name="qgemm_f", domain="com.microsoft", transA=1, transB=1),
    ]
    inits = [c("as", XS, np.float32), c("az", 17, np.uint8), c("w", int8_weights((12, 40))),
             c("ws", RNG.uniform(1e-3, 1e-2, 12).astype(np.float32)), c("wz", np.zeros(12, np.int8)),
             c("bias", RNG.integers(-30000, 30000, 12).astype(np.int32)), c("ys", YS, np.float32), c("yz", 90, np.uint8)]
    return make(nodes, [("a", U8, [6, 40]), ("at", U8, [40, 6])], [("y_q", U8, [6, 12]), ("y_f", F, [6, 12])], inits, ms=True)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_sixteen_bit_quantize_and_dequantize_match_onnxruntime(tmp_path, dtype):
    """QuantizeLinear and DequantizeLinear alone at 16 bits (per tensor, per axis, blocked): the same float32 steps
    as at 8 bits, exact; INT16 results come from a table (torch-mlir's Cast has no INT16 target)."""
    qt = h.np_dtype_to_tensor_dtype(np.dtype(dtype))
    zp = np.array([-1200, 0, 31000] if dtype == np.int16 else [100, 32768, 65000], dtype)
    model = make([h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quantize", axis=1),
                  h.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dequantize", axis=1),
                  h.make_node("QuantizeLinear", ["xb", "sb"], ["qb"], name="blocked", axis=1, block_size=2, output_dtype=T.INT16),
                  h.make_node("DequantizeLinear", ["w", "s1", "z1"], ["dw"], name="dequantize_input")],
                 [("x", F, [2, 3, 4]), ("xb", F, [2, 3, 4]), ("w", qt, [5])], [("q", qt, [2, 3, 4]), ("dq", F, [2, 3, 4]), ("qb", T.INT16, [2, 3, 4]),
                                                         ("dw", F, [5])],
                 [c("s", [0.001, 0.5, 0.0173], np.float32), c("z", zp), c("sb", np.full((2, 2, 4), 0.002, np.float32)),
                  c("s1", 0.25, np.float32), c("z1", zp[1])], opset=21)
    session = compile_model(model, tmp_path)
    rng = np.random.default_rng(16)
    info = np.iinfo(dtype)
    feeds = [{"x": (rng.standard_normal((2, 3, 4)) * scale).astype(np.float32), "xb": rng.uniform(-60, 60, (2, 3, 4)).astype(np.float32),
              "w": rng.integers(info.min, int(info.max) + 1, 5).astype(dtype)} for scale in (1.0, 40.0, 4000.0)]
    # ties to even, saturation (not on the blocked path: onnxruntime's blocked kernel wraps out-of-range values)
    feeds[0]["x"].flat[:4] = [0.0005, -0.0015, 1e9, -1e9]
    feeds[0]["xb"].flat[:2] = [0.001, -0.003]
    assert_exact(session, model, feeds)


@pytest.mark.parametrize("activation", [np.uint8, np.int8])
def test_qlinear_matmul_float16_scales_match_onnxruntime(tmp_path, activation):
    """Opset 21's FLOAT16 scales: a's and b's constant, y's given at run time (widened to float32 exactly, as
    onnxruntime's float32 kernel sees them)."""
    weights, at = activation, helper_type(activation)  # onnxruntime's opset-21 kernel: a and b of one type
    rng = np.random.default_rng(21)  # not the module's RNG: later tests' draws stay as they were

    def own(dtype, shape):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)

    model = make([h.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="qmm16")],
                 [("a", at, [2, 3, 6]), ("ys", T.FLOAT16, [1])], [("y", at, [2, 3, 4])],
                 [c("as", [0.0213], np.float16), c("az", [3], activation), c("b", own(weights, (6, 4))),
                  c("bs", [0.00417], np.float16), c("bz", [-2 if weights == np.int8 else 130], weights),
                  c("yz", [-5 if activation == np.int8 else 120], activation)], opset=21)
    session = compile_model(model, tmp_path)
    feeds = [{"a": own(activation, (2, 3, 6)), "ys": np.array([y], np.float16)} for y in (0.0391, 0.0123, 0.25)]
    assert_exact(session, model, feeds)


def helper_type(dtype) -> int:
    return h.np_dtype_to_tensor_dtype(np.dtype(dtype))


def test_qgemm_matches_onnxruntime(tmp_path):
    model = _qgemm_model()
    assert_exact(compile_model(model, tmp_path), model, [{"a": ints(np.uint8, (6, 40)), "at": ints(np.uint8, (40, 6))} for _ in range(3)])


def test_dynamic_quantize_linear_matches_onnxruntime(tmp_path):
    model = make([h.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zp"], name="dql")], [("x", F, [3, 50])],
                 [("y", U8, [3, 50]), ("scale", F, []), ("zp", U8, [])], opset=11)
    rng = np.random.default_rng(5)
    feeds = [{"x": (rng.standard_normal((3, 50)) * 3 + shift).astype(np.float32)} for shift in (-1.0, 0.5, 20.0, -20.0)]
    feeds.append({"x": np.zeros((3, 50), np.float32)})  # max == min: scale 1
    assert_exact(compile_model(model, tmp_path), model, feeds)


def _products(model: onnx.ModelProto, tmp_path) -> list[tuple[str, int]]:
    """(op, element type of its result) of every Conv/MatMul in hcc's rewrite of `model`."""
    path = tmp_path / "products.onnx"
    onnx.save(model, path)
    loaded = load_model(str(path)).model
    types = {v.name: v.type.tensor_type.elem_type for v in list(loaded.graph.value_info) + list(loaded.graph.output)}
    return sorted((n.op_type, types.get(n.output[0], 0)) for n in loaded.graph.node if n.op_type in ("Conv", "MatMul"))


def test_sums_are_exact_beyond_float32(tmp_path):
    """A float32 product when every partial sum stays within 2^24 (bound from the constant weights), two halves of the
    weights (w = 16*hi + lo) added in int32 when each half does, float64 otherwise; all equal onnxruntime's int32."""
    k = 3000
    small, large = RNG.integers(-3, 4, (k, 4)).astype(np.int8), RNG.integers(-128, 128, (k, 4)).astype(np.int8)
    nodes = [h.make_node("MatMulInteger", ["a", "small"], ["y_f32"], name="fits"),
             h.make_node("MatMulInteger", ["a", "large"], ["y_split"], name="split"),
             h.make_node("MatMulInteger", ["a", "b"], ["y_f64"], name="runtime")]
    model = make(nodes, [("a", U8, [3, k]), ("b", I8, [k, 4])], [("y_f32", I32, [3, 4]), ("y_split", I32, [3, 4]), ("y_f64", I32, [3, 4])],
                 [c("small", small), c("large", large)])
    assert _products(model, tmp_path) == [("MatMul", F), ("MatMul", F), ("MatMul", F), ("MatMul", T.DOUBLE)]
    feeds = [{"a": np.full((3, k), 255, np.uint8), "b": np.full((k, 4), -128, np.int8)},  # the extremes: |sum| = 97,920,000
             {"a": ints(np.uint8, (3, k)), "b": ints(np.int8, (k, 4))}]
    assert_exact(compile_model(model, tmp_path), model, feeds, saturating=("y_f32", "y_split", "y_f64"))


@pytest.mark.parametrize("activation, k, channels, parts", [(np.uint8, 1500, 128, 1), (np.int8, 1500, 128, 1), (np.uint8, 6000, 512, 3)])
def test_centered_activations_cost_one_product(tmp_path, activation, k, channels, parts):
    """Weights whose sums could pass 2^24 with |x - zp| up to 255: the activation centered (|x - 128| or |x| <= 128),
    a padded convolution's padding made explicit, the per-channel offset shift * rowsum(w) added once; where the
    centered sums could still pass 2^24, they go in slices of the input channels / A's columns (each exact in float32,
    added in int32): the work of one product, where the weight halves did it twice. Exact at the extremes, where the
    int32 sums pass 2^24."""
    t = U8 if activation == np.uint8 else I8
    zp = 7 if activation == np.uint8 else -100  # far from the middle: a large shift
    w_mm = RNG.integers(-128, 128, (k, 4)).astype(np.int8)
    w_conv = RNG.integers(-128, 128, (6, channels, 3, 3)).astype(np.int8)
    nodes = [h.make_node("MatMulInteger", ["a", "w_mm", "zp"], ["mmi"], name="mmi"),
             h.make_node("QLinearConv", ["x", "xs", "zp", "w_conv", "ws", "wz", "ys", "yz", "bias"], ["qconv"], name="qconv", pads=[1, 1, 1, 1])]
    inits = [c("w_mm", w_mm), c("w_conv", w_conv), c("zp", zp, activation), c("xs", np.float32(1e-3)), c("ws", np.float32(1e-3)),
             c("wz", 0, np.int8), c("ys", np.float32(7e-3)), c("yz", 0 if activation == np.uint8 else -128, activation),
             c("bias", RNG.integers(-20000, 20000, 6).astype(np.int32))]
    model = make(nodes, [("a", t, [3, k]), ("x", t, [1, channels, 5, 5])], [("mmi", I32, [3, 4]), ("qconv", t, [1, 6, 5, 5])], inits)
    assert _products(model, tmp_path) == [("Conv", F)] * parts + [("MatMul", F)] * parts
    info = np.iinfo(activation)
    feeds = [{"a": np.full((3, k), info.max, activation), "x": np.full((1, channels, 5, 5), info.max, activation)},
             {"a": np.full((3, k), info.min, activation), "x": np.full((1, channels, 5, 5), info.min, activation)},
             {"a": ints(activation, (3, k)), "x": ints(activation, (1, channels, 5, 5))}]
    assert_exact(compile_model(model, tmp_path), model, feeds, saturating=("mmi", "qconv") if activation == np.uint8 else ())


def test_centered_with_a_zero_point_known_at_run_time(tmp_path):
    """DynamicQuantizeLinear -> MatMulInteger (what quantize_dynamic writes): the activation's zero point is computed at
    run time, so the offset (128 - zp) * rowsum(w) is too (an int32 tensor); one float32 product, exact."""
    k = 1500
    w = RNG.integers(-128, 128, (k, 4)).astype(np.int8)
    nodes = [h.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
             h.make_node("MatMulInteger", ["xq", "w", "xz"], ["mmi"], name="mmi"),
             h.make_node("Cast", ["mmi"], ["mmi_f"], name="to_float", to=F),
             h.make_node("Mul", ["mmi_f", "xs"], ["y"], name="scaled")]
    model = make(nodes, [("x", F, [3, k])], [("mmi", I32, [3, 4]), ("y", F, [3, 4])], [c("w", w)], opset=13)
    assert _products(model, tmp_path) == [("MatMul", F)]
    rng = np.random.default_rng(6)
    feeds = [{"x": rng.uniform(lo, hi, (3, k)).astype(np.float32)} for lo, hi in ((-1, 3), (0, 5), (-7, -0.5), (-2, 2))]
    assert_exact(compile_model(model, tmp_path), model, feeds, saturating=("mmi", "y"))


def test_float_to_uint8_cast_keeps_128_to_255(tmp_path):
    """Every uint8 result goes through a float -> uint8 cast, which torch-mlir converts with `fptosi` to i8 (127 for
    128..255 in vector code); frontend/rewrites.py (user Casts) and quantized.py cast through int32 instead."""
    model = make([h.make_node("Cast", ["x"], ["y"], name="cast", to=U8)], [("x", F, [4, 64])], [("y", U8, [4, 64])])
    x = np.arange(0, 256, dtype=np.float32) + 0.25
    x[-4:] = [-1.0, 300.0, 255.9, -0.5]  # outside 0..255: wrapped as onnxruntime's static_cast on x86 does
    assert_exact(compile_model(model, tmp_path), model, [{"x": x.reshape(4, 64)}])


# ------------------------------------------------------------------------------------------------ QDQ models


def _qdq_conv(activation=np.uint8, weights=np.int8, relu=False, per_channel=False, bias_scale=1.0, channels=32,
              rng=RNG) -> onnx.ModelProto:
    """Q -> DQ -> Conv(DQ weights, DQ int32 bias) [-> Relu] -> Q -> DQ, as onnxruntime's quantizer writes it."""
    m = 16
    w = rng.integers(-60, 60, (m, channels, 3, 3)) if weights == np.int8 else rng.integers(60, 200, (m, channels, 3, 3))
    ws = rng.uniform(0.002, 0.012, m).astype(np.float32) if per_channel else WS
    wz = np.zeros(m, weights) if weights == np.int8 else np.full(m, 128, weights)
    xz, yz = (128, 0) if activation == np.uint8 else (0, -128)
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             h.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w", axis=0),
             h.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="dq_b", axis=0),
             h.make_node("Conv", ["xd", "wd", "bd"], ["conv"], name="conv", pads=[1, 1, 1, 1])]
    if relu:
        nodes.append(h.make_node("Relu", ["conv"], ["relu"], name="relu"))
    nodes += [h.make_node("QuantizeLinear", ["relu" if relu else "conv", "ys", "yz"], ["yq"], name="quant_y"),
              h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_y")]
    inits = [c("xs", XS), c("xz", xz, activation), c("w", w.astype(weights)), c("ws", ws if per_channel else ws.reshape(())),
             c("wz", wz if per_channel else wz[0]), c("b", rng.integers(-2000, 2000, m).astype(np.int32)),
             c("bs", (XS * ws * bias_scale).astype(np.float32) if per_channel else np.float32(XS * ws * bias_scale)),
             c("bz", np.zeros(m, np.int32) if per_channel else np.int32(0)), c("ys", YS), c("yz", yz, activation)]
    return make(nodes, [("x", F, [1, channels, 16, 16])], [("y", F, [1, m, 16, 16])], inits)


@pytest.mark.parametrize("options", [{}, {"relu": True, "activation": np.int8, "per_channel": True}], ids=["u8", "s8-relu-per-channel"])
def test_fusion_matters(tmp_path, options, monkeypatch):
    """onnxruntime computes a QDQ Conv as QLinearConv (integer sums, one requantization); so does hcc. The float
    computation the QDQ nodes spell out differs from it in the last quantization step of some outputs."""
    # its own generators: whether the weights and inputs hit a differing rounding must not depend on test order
    model = _qdq_conv(**options, channels=64, rng=np.random.default_rng(15))
    rng = np.random.default_rng(5)
    feeds = [{"x": (rng.standard_normal((1, 64, 16, 16)) * 1.5).astype(np.float32)} for _ in range(40)]
    assert_exact(compile_model(model, tmp_path, "fused"), model, feeds)
    monkeypatch.setattr(quantized, "fuse_qdq_groups", lambda model, path: 0)
    unfused = compile_model(model, tmp_path, "unfused")
    with pytest.raises(AssertionError, match="Mismatched elements"):
        assert_exact(unfused, model, feeds)


def _fused_ops(model: onnx.ModelProto) -> list[str]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy = onnx.shape_inference.infer_shapes(copy)
    quantized.fuse_qdq_groups(copy, "m.onnx")
    return sorted(n.op_type for n in copy.graph.node if n.op_type in FUSED)


def _onnxruntime_fused_ops(model: onnx.ModelProto, tmp_path) -> list[str]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sorted(n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node if n.op_type in FUSED)


FUSED = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
         "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"}


def _qdq_matmul(op="MatMul", activation=np.uint8, q=True, relu_zp=None, graph_input=False, trans_b=0) -> onnx.ModelProto:
    n, k = 8, 16
    w = RNG.integers(-60, 60, (n, k) if trans_b else (k, n)).astype(np.int8)
    xz, yz = (128, 0) if activation == np.uint8 else (0, -128)
    t_act = U8 if activation == np.uint8 else I8
    nodes = [] if graph_input else [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x")]
    nodes += [h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
              h.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w"),
              h.make_node(op, ["xd", "wd"], ["mm"], name="mm", **({"transB": trans_b} if op == "Gemm" else {}))]
    last = "mm"
    if relu_zp is not None:
        nodes.append(h.make_node("Relu", ["mm"], ["relu"], name="relu"))
        last, yz = "relu", relu_zp
    outputs = [("mm_out", F, [4, n])]
    if q:
        nodes += [h.make_node("QuantizeLinear", [last, "ys", "yz"], ["yq"], name="quant_y"),
                  h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["mm_out"], name="dq_y")]
    else:
        nodes.append(h.make_node("Identity", [last], ["mm_out"], name="out"))
    inputs = [("xq", t_act, [4, k])] if graph_input else [("x", F, [4, k])]
    inits = [c("xs", XS), c("xz", xz, activation), c("w", w), c("ws", WS), c("wz", 0, np.int8), c("ys", YS), c("yz", yz, activation)]
    return make(nodes, inputs, outputs, inits)


def _qdq_residual(activation=np.uint8, b_shape=(1, 8, 6, 6), shared=False, dq_output=False, relu=False, op="Add",
                  constant_y=False) -> onnx.ModelProto:
    """x, y -> QuantizeLinear -> DequantizeLinear -> Add [-> Relu] -> Q -> DQ -> GlobalAveragePool -> Q -> DQ: what a
    residual block's end and a classifier's pooling look like in a QDQ model. `shared`: y's DequantizeLinear also
    feeds the output `y_too` (two readers); `dq_output`: it is also a graph output; `constant_y`: y is a constant
    (a GELU's 0.5), whose QuantizeLinear onnxruntime folds before it looks for int8 pairs."""
    zeros = {"x": 3, "y": 250, "s": 0, "p": 17} if activation == np.uint8 else {"x": -5, "y": 100, "s": -128, "p": -20}
    scales = {"x": XS, "y": WS * 3, "s": YS, "p": np.float32(YS / 7)}
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             h.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"], name="quant_y"),
             h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["yd"], name="dq_y"),
             h.make_node(op, ["xd", "yd"], ["sum"], name="residual")]
    last = "sum"
    if relu:
        nodes.append(h.make_node("Relu", ["sum"], ["relu"], name="relu"))
        last = "relu"
    nodes += [h.make_node("QuantizeLinear", [last, "ss", "sz"], ["sq"], name="quant_sum"),
              h.make_node("DequantizeLinear", ["sq", "ss", "sz"], ["sd"], name="dq_sum"),
              h.make_node("GlobalAveragePool", ["sd"], ["pool"], name="pool"),
              h.make_node("QuantizeLinear", ["pool", "ps", "pz"], ["pq"], name="quant_pool"),
              h.make_node("DequantizeLinear", ["pq", "ps", "pz"], ["pooled"], name="dq_pool")]
    outputs = [("pooled", F, [1, 8, 1, 1])]
    if shared:
        nodes.append(h.make_node("Identity", ["yd"], ["y_too"], name="y_too"))
        outputs.append(("y_too", F, list(b_shape)))
    if dq_output:
        outputs.append(("yd", F, list(b_shape)))
    inits = [t for k in "xysp" for t in (c(f"{k}s", scales[k], np.float32), c(f"{k}z", zeros[k], activation))]
    inputs = [("x", F, [1, 8, 6, 6])]
    if constant_y:
        inits.append(c("y", np.full(b_shape, 0.5, np.float32)))
    else:
        inputs.append(("y", F, list(b_shape)))
    return make(nodes, inputs, outputs, inits)


def _qdq_unary(op: str, activation=np.uint8, opset: int = 13, shape=(4, 64)) -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> Sigmoid / LeakyRelu / Softmax -> QuantizeLinear -> DequantizeLinear."""
    zeros = (3, 0) if activation == np.uint8 else (-5, -128)
    attrs = {"alpha": 0.1} if op == "LeakyRelu" else {"axis": 1} if op == "Softmax" and opset < 13 else {}
    out_scale = np.float32(XS / 2) if op == "LeakyRelu" else np.float32(1 / 256)  # LeakyRelu: ties at every odd code
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"), h.make_node(op, ["xd"], ["f"], name="op", **attrs),
             h.make_node("QuantizeLinear", ["f", "ys", "yz"], ["yq"], name="quant_y"),
             h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_y")]
    inits = [c("xs", XS), c("xz", zeros[0], activation), c("ys", out_scale), c("yz", zeros[0] if op == "LeakyRelu" else zeros[1], activation)]
    return make(nodes, [("x", F, list(shape))], [("y", F, list(shape))], inits, opset=opset)


def _qdq_average_pool(activation=np.uint8, shape=(1, 3, 9, 10), out_scale=XS, **attrs) -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> AveragePool -> QuantizeLinear -> DequantizeLinear. out_scale = the
    input's: an average of 4 codes lands on .5 ties, which only the same float steps round the same way."""
    zero = 3 if activation == np.uint8 else -5
    ref = onnx.reference.ReferenceEvaluator(make([h.make_node("AveragePool", ["x"], ["y"], **attrs)], [("x", F, list(shape))],
                                                 [("y", F, None)], []))
    out_shape = list(ref.run(None, {"x": np.zeros(shape, np.float32)})[0].shape)
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             h.make_node("AveragePool", ["xd"], ["f"], name="pool", **attrs),
             h.make_node("QuantizeLinear", ["f", "ys", "yz"], ["yq"], name="quant_y"),
             h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_y")]
    inits = [c("xs", XS), c("xz", zero, activation), c("ys", np.float32(out_scale)), c("yz", zero + 1, activation)]
    return make(nodes, [("x", F, list(shape))], [("y", F, out_shape)], inits)


def _residual_feeds(model: onnx.ModelProto, count: int) -> list[dict]:
    rng = np.random.default_rng(3)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    return [{name: (rng.standard_normal(shape) * (1 + k % 3)).astype(np.float32) for name, shape in shapes.items()} for k in range(count)]


FUSION_CASES = {
    "conv": lambda: _qdq_conv(),
    "conv-s8": lambda: _qdq_conv(activation=np.int8),  # an int8 Q -> DQ pair becomes uint8 in onnxruntime, then fuses
    "conv-u8-weights": lambda: _qdq_conv(weights=np.uint8),
    "conv-relu-redundant": lambda: _qdq_conv(relu=True),  # uint8 output zero point 0: the Q clips as the Relu would
    "conv-relu-s8-per-channel": lambda: _qdq_conv(relu=True, activation=np.int8, per_channel=True),
    "conv-bias-scale-off": lambda: _qdq_conv(bias_scale=2.0),  # the bias's scale is not x_scale * w_scale: left in float
    "matmul": lambda: _qdq_matmul(),
    "matmul-float-output": lambda: _qdq_matmul(q=False),  # MatMulIntegerToFloat
    "matmul-s8-graph-input": lambda: _qdq_matmul(activation=np.int8, graph_input=True),  # int8 activations stay float
    "matmul-relu-not-redundant": lambda: _qdq_matmul(relu_zp=5),
    "gemm": lambda: _qdq_matmul("Gemm"),
    "gemm-transb-float-output": lambda: _qdq_matmul("Gemm", q=False, trans_b=1),
    "gemm-s8-graph-input": lambda: _qdq_matmul("Gemm", activation=np.int8, graph_input=True),  # QGemm takes int8
    "add-gap": lambda: _qdq_residual(),  # QLinearAdd and QLinearGlobalAveragePool
    "add-s8-pairs": lambda: _qdq_residual(activation=np.int8),  # int8 pairs become uint8, then fuse
    "add-s8-relu-broadcast": lambda: _qdq_residual(activation=np.int8, b_shape=(1, 8, 1, 1), relu=True),
    "add-s8-shared-dq": lambda: _qdq_residual(activation=np.int8, shared=True),  # y stays int8, x is uint8: Add stays float
    "add-s8-dq-graph-output": lambda: _qdq_residual(activation=np.int8, dq_output=True),  # a pair all the same
    "add-u8-shared-dq": lambda: _qdq_residual(shared=True),  # uint8 throughout: fused although the DQ is shared
    "mul-s8-pairs": lambda: _qdq_residual(activation=np.int8, op="Mul"),
    "mul-s8-constant-operand": lambda: _qdq_residual(activation=np.int8, op="Mul", b_shape=(1, 8, 1, 1), constant_y=True),  # stays float
    "sigmoid": lambda: _qdq_unary("Sigmoid"),
    "softmax-s8": lambda: _qdq_unary("Softmax", np.int8),
    "leaky-relu-s8": lambda: _qdq_unary("LeakyRelu", np.int8),
    "average-pool": lambda: _qdq_average_pool(kernel_shape=[2, 2], strides=[2, 2]),
    "average-pool-s8": lambda: _qdq_average_pool(np.int8, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
}


@pytest.mark.parametrize("case", FUSION_CASES)
def test_fusion_decisions_are_onnxruntimes(case, tmp_path):
    model = FUSION_CASES[case]()
    assert _fused_ops(model) == _onnxruntime_fused_ops(model, tmp_path)


RESIDUAL_VARIANTS = {
    "u8": {}, "s8-pairs": {"activation": np.int8}, "s8-relu-broadcast": {"activation": np.int8, "b_shape": (1, 8, 1, 1), "relu": True},
    "u8-broadcast-first": {"b_shape": (1, 1, 6, 6)}, "s8-shared-dq": {"activation": np.int8, "shared": True},
    "mul-u8": {"op": "Mul"}, "mul-s8-pairs-broadcast": {"op": "Mul", "activation": np.int8, "b_shape": (1, 8, 1, 1)},
}


@pytest.mark.parametrize("variant", RESIDUAL_VARIANTS)
def test_qdq_add_and_pooling_match_onnxruntime(tmp_path, variant):
    """QDQ Add (or Mul) and GlobalAveragePool: where onnxruntime fuses them into QLinearAdd (a fused multiply-add per
    element, rounded as its AVX2 kernel rounds), QLinearMul and QLinearGlobalAveragePool, hcc computes the same
    integers; where it leaves them in float (an int8 DequantizeLinear with two readers), hcc does too."""
    model = _qdq_residual(**RESIDUAL_VARIANTS[variant])
    assert_exact(compile_model(model, tmp_path), model, _residual_feeds(model, 30))


LOOKUP_CASES = {"sigmoid-u8": ("Sigmoid", np.uint8, 13, (4, 64)), "sigmoid-s8": ("Sigmoid", np.int8, 13, (4, 64)),
                "leaky-relu-u8": ("LeakyRelu", np.uint8, 13, (4, 64)), "leaky-relu-s8": ("LeakyRelu", np.int8, 13, (4, 64)),
                "softmax-u8": ("Softmax", np.uint8, 13, (4, 64)), "softmax-s8": ("Softmax", np.int8, 13, (2, 3, 40)),
                "softmax-opset12-flattened-rows": ("Softmax", np.uint8, 12, (2, 3, 40))}


@pytest.mark.parametrize("case", LOOKUP_CASES)
def test_qdq_lookup_ops_match_onnxruntime(tmp_path, case):
    """QDQ Sigmoid, LeakyRelu and Softmax, which onnxruntime runs with tables (QLinearSigmoid, QLinearLeakyRelu,
    QLinearSoftmax: exp entries summed left to right per row, times floor(1 / y_scale)): hcc gets its integers, on
    inputs spanning every code."""
    op, activation, opset, shape = LOOKUP_CASES[case]
    model = _qdq_unary(op, activation, opset, shape)
    rng = np.random.default_rng(9)
    feeds = [{"x": (rng.uniform(-160, 160, shape) * XS * (1 + k % 3) / 3).astype(np.float32)} for k in range(10)]
    assert_exact(compile_model(model, tmp_path), model, feeds)


POOL_CASES = {
    "2x2-stride-2": (np.uint8, (1, 3, 9, 10), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "3x3-padded-s8": (np.int8, (2, 3, 9, 10), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "3x3-stride-2-count-pad": (np.uint8, (1, 4, 11, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 2], "count_include_pad": 1}),
    "1d-5-same-upper": (np.int8, (1, 4, 23), {"kernel_shape": [5], "auto_pad": "SAME_UPPER"}),
    "whole-image": (np.uint8, (1, 6, 5, 7), {"kernel_shape": [5, 7]}),  # onnxruntime's global pool: an integer sum
}


@pytest.mark.parametrize("case", POOL_CASES)
def test_qdq_average_pool_matches_onnxruntime(tmp_path, case):
    """QDQ AveragePool, which onnxruntime runs as QLinearAveragePool (dequantized codes averaged in float32, divided by
    the output scale, plus the zero point, rounded): hcc gets its integers, ties included (the output scale is the
    input's, so averages of 2 or 4 codes land on .5)."""
    activation, shape, attrs = POOL_CASES[case]
    model = _qdq_average_pool(activation, shape, **attrs)
    rng = np.random.default_rng(5)
    feeds = [{"x": (rng.uniform(-130, 130, shape) * XS).astype(np.float32)} for _ in range(12)]
    assert_exact(compile_model(model, tmp_path), model, feeds)
    odd = _qdq_average_pool(activation, shape, out_scale=XS * 0.37, **attrs)
    assert_exact(compile_model(odd, tmp_path, "odd"), odd, feeds)


@pytest.mark.parametrize("activation", [np.uint8, np.int8])
def test_qdq_where_matches_onnxruntimes_qlinear_where(tmp_path, activation):
    """QDQ Where, which onnxruntime runs as QLinearWhere (each input through a table of MlasQuantizeLinear(x_scale *
    (x - x_zp)), then picked): hcc compiles the group unfused, and those are its float steps, so the integers agree;
    the three scales differ, so every code is requantized."""
    zeros = (3, 250, 1) if activation == np.uint8 else (-5, 100, -128)
    t = U8 if activation == np.uint8 else I8
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x"),
             h.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"], name="quant_y"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["yd"], name="dq_y"),
             h.make_node("Where", ["cond", "xd", "yd"], ["w"], name="pick"),
             h.make_node("QuantizeLinear", ["w", "zs", "zz"], ["out"], name="quant_out")]
    inits = [c("xs", XS), c("xz", zeros[0], activation), c("ys", np.float32(XS * 1.7)), c("yz", zeros[1], activation),
             c("zs", np.float32(XS * 0.6)), c("zz", zeros[2], activation)]
    model = make(nodes, [("cond", T.BOOL, [4, 64]), ("x", F, [4, 64]), ("y", F, [1, 64])], [("out", t, [4, 64])], inits)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = "QLinearWhere" in [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert fused == (activation == np.uint8)  # onnxruntime leaves this int8 group (graph inputs, no Q/DQ pair) in float
    rng = np.random.default_rng(4)
    feeds = [{"cond": rng.random((4, 64)) < 0.5, "x": (rng.uniform(-300, 300, (4, 64)) * XS).astype(np.float32),
              "y": (rng.uniform(-300, 300, (1, 64)) * XS).astype(np.float32)} for _ in range(10)]
    assert_exact(compile_model(model, tmp_path), model, feeds)


@pytest.mark.parametrize("activation", [np.uint8, np.int8])
def test_qlinear_add_rounding_matters(tmp_path, monkeypatch, activation):
    """Every pair of 8-bit inputs through DequantizeLinear x 2 -> Add -> QuantizeLinear (graph inputs and output:
    no pair, so onnxruntime runs its kernel in the model's own type): hcc gives QLinearAdd's integers, and the group
    computed in float as written differs from them in the last step of some outputs."""
    t = U8 if activation == np.uint8 else I8
    zeros = (3, 250, 1) if activation == np.uint8 else (-5, 100, -128)
    nodes = [h.make_node("DequantizeLinear", ["a", "as", "az"], ["ad"], name="dq_a"),
             h.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="dq_b"),
             h.make_node("Add", ["ad", "bd"], ["sum"], name="residual"),
             h.make_node("QuantizeLinear", ["sum", "ys", "yz"], ["y"], name="quant_y")]
    inits = [c("as", XS), c("bs", np.float32(WS * 3)), c("ys", YS)] + [c(n, z, activation) for n, z in zip(("az", "bz", "yz"), zeros)]
    model = make(nodes, [("a", t, [256, 256]), ("b", t, [256, 256])], [("y", t, [256, 256])], inits)
    codes = np.arange(np.iinfo(activation).min, int(np.iinfo(activation).max) + 1).astype(activation)
    feeds = [{"a": np.repeat(codes, 256).reshape(256, 256), "b": np.tile(codes, 256).reshape(256, 256)}]
    assert_exact(compile_model(model, tmp_path, "fused"), model, feeds)
    monkeypatch.setattr(quantized, "_fused_table_group", lambda *args: None)
    with pytest.raises(AssertionError, match="Mismatched elements"):
        assert_exact(compile_model(model, tmp_path, "unfused"), model, feeds)


def _float_cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b1": rng.standard_normal(8) * 0.1, "w2": rng.standard_normal((16, 8, 3, 3)) * 0.2,
               "b2": rng.standard_normal(16) * 0.1, "wg": rng.standard_normal((10, 256)) * 0.1, "bg": rng.standard_normal(10) * 0.1}
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"), h.make_node("Flatten", ["r2"], ["f"], name="flatten"),
             h.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="gemm", transB=1)]
    return make(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, [1, 10])], [c(k, v.astype(np.float32)) for k, v in weights.items()], opset=17)


def _float_residual_cnn() -> onnx.ModelProto:
    """conv, relu, conv, + input, relu, global average pool, flatten, gemm: a residual block and a classifier."""
    rng = np.random.default_rng(2)
    weights = {"w1": rng.standard_normal((3, 3, 3, 3)) * 0.3, "b1": rng.standard_normal(3) * 0.1, "w2": rng.standard_normal((3, 3, 3, 3)) * 0.3,
               "b2": rng.standard_normal(3) * 0.1, "wg": rng.standard_normal((10, 3)) * 0.5, "bg": rng.standard_normal(10) * 0.1}
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             h.make_node("Add", ["c2", "x"], ["s"], name="residual"),
             h.make_node("Relu", ["s"], ["r2"], name="relu2"), h.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             h.make_node("Flatten", ["p"], ["f"], name="flatten"), h.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="gemm", transB=1)]
    return make(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, [1, 10])], [c(k, v.astype(np.float32)) for k, v in weights.items()], opset=17)


def _quantize_static(tmp_path, quant_format: str, activation: str = "QUInt8", weights: str = "QInt8", per_channel: bool = False,
                     float_model=None) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.data, None)

    source, target = tmp_path / "float.onnx", tmp_path / f"{quant_format}.onnx"
    onnx.save(float_model if float_model is not None else _float_cnn(), source)
    quantize_static(str(source), str(target), Reader(), quant_format=getattr(QuantFormat, quant_format), per_channel=per_channel,
                    activation_type=getattr(QuantType, activation), weight_type=getattr(QuantType, weights),
                    reduce_range=not ORT_INT8_EXACT)  # 7-bit weights where onnxruntime's int8 kernels saturate
    return onnx.load(target)


def _cnn_feeds(count: int) -> list[dict]:
    return [{"x": (RNG.standard_normal((1, 3, 8, 8)) * (1 + i % 3)).astype(np.float32)} for i in range(count)]


CNN_VARIANTS = [
    pytest.param("QDQ", "QUInt8", "QInt8", False, id="qdq-u8-s8"),
    pytest.param("QDQ", "QInt8", "QInt8", True, id="qdq-s8-s8-per-channel"),
    pytest.param("QOperator", "QUInt8", "QInt8", False, id="qoperator-u8-s8"),
    pytest.param("QDQ", "QUInt8", "QUInt8", False, id="qdq-u8-u8", marks=pytest.mark.slow),
    pytest.param("QDQ", "QUInt8", "QInt8", True, id="qdq-u8-s8-per-channel", marks=pytest.mark.slow),
    pytest.param("QDQ", "QInt8", "QInt8", False, id="qdq-s8-s8", marks=pytest.mark.slow),
    pytest.param("QOperator", "QUInt8", "QInt8", True, id="qoperator-u8-s8-per-channel", marks=pytest.mark.slow),
    pytest.param("QOperator", "QUInt8", "QUInt8", False, id="qoperator-u8-u8", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("quant_format, activation, weights, per_channel", CNN_VARIANTS)
def test_quantized_cnn_matches_onnxruntime(tmp_path, quant_format, activation, weights, per_channel):
    """A float CNN (conv, relu, conv, relu, flatten, gemm) quantized by onnxruntime.quantization.quantize_static."""
    model = _quantize_static(tmp_path, quant_format, activation, weights, per_channel)
    if quant_format == "QDQ":
        assert _fused_ops(model) == ["QGemm", "QLinearConv", "QLinearConv"]
    else:
        assert {n.op_type for n in model.graph.node} >= {"QLinearConv", "QGemm"}
    assert_exact(compile_model(model, tmp_path), model, _cnn_feeds(40))


@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_quantized_residual_cnn_matches_onnxruntime(tmp_path, quant_format):
    """A residual CNN with a global average pool quantized by quantize_static (uint8 activations): QLinearConv,
    QLinearAdd, QLinearGlobalAveragePool and QGemm, fused from QDQ groups or written by the quantizer."""
    model = _quantize_static(tmp_path, quant_format, float_model=_float_residual_cnn())
    ops = _fused_ops(model) if quant_format == "QDQ" else sorted(n.op_type for n in model.graph.node if n.op_type in FUSED)
    assert ops == ["QGemm", "QLinearAdd", "QLinearConv", "QLinearConv", "QLinearGlobalAveragePool"]
    assert_exact(compile_model(model, tmp_path), model, _cnn_feeds(40))


# ------------------------------------------------------------------------------------------------ refusals


def _load_error(model: onnx.ModelProto, tmp_path) -> str:
    path = tmp_path / "refused.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError) as info:
        load_model(str(path))
    return info.value.message


@pytest.mark.parametrize("build, message", [
    (lambda: make([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q16")], [("x", T.FLOAT16, [4])], [("y", T.INT16, [4])],
                  [c("s", 0.1, np.float16), c("z", 0, np.int16)], opset=21),
     r"node 'q16' \(QuantizeLinear\): input 'x' has type FLOAT16: hcc quantizes float32 inputs only"),
    (lambda: make([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_axis", axis=1)], [("x", F, [2, 3])], [("y", U8, [2, 3])],
                  [c("s", [0.1, 0.2], np.float32), c("z", [0, 0], np.uint8)]),
     r"node 'q_axis' \(QuantizeLinear\): scale 's' has shape \[2\]: per-axis quantization needs one value per element of the axis"),
    (lambda: make([h.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dq_block", axis=1, block_size=2)], [("x", U8, [2, 6])],
                  [("y", F, [2, 6])], [c("s", np.ones((2, 2), np.float32))], opset=21),
     r"node 'dq_block' \(DequantizeLinear\): blocked scale 's' has 2 blocks on axis 1, expected 3"),
    (lambda: make([h.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], name="dq16")],
                  [("x", U8, [2, 3])], [("y", T.FLOAT16, [2, 3])], [c("s", 0.1, np.float16), c("z", 0, np.uint8)], opset=21),
     r"node 'dq16' \(DequantizeLinear\): scale 's' has type FLOAT16: hcc compiles float32 scales only"),
    (lambda: make([h.make_node("DequantizeLinear", ["a", "s", "z"], ["ad"], name="dq_a"),
                   h.make_node("Resize", ["ad", "", "scales"], ["big"], name="resize", mode="linear"),
                   h.make_node("QuantizeLinear", ["big", "s", "z"], ["y"], name="q")],
                  [("a", U8, [1, 1, 4, 4])], [("y", U8, [1, 1, 8, 8])],
                  [c("s", 0.1, np.float32), c("z", 0, np.uint8), c("scales", [1, 1, 2, 2], np.float32)]),
     r"node 'resize' \(Resize\): onnxruntime computes DequantizeLinear -> Resize -> QuantizeLinear with its integer kernel "
     r"an 8-bit Resize"),
    (lambda: make([h.make_node("DequantizeLinear", ["a", "s", "z"], ["ad"], name="dq_a"),
                   h.make_node("AveragePool", ["ad"], ["pooled"], name="pool", kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2]),
                   h.make_node("QuantizeLinear", ["pooled", "s", "z"], ["y"], name="q")],
                  [("a", U8, [1, 1, 5, 5])], [("y", U8, [1, 1, 3, 3])], [c("s", 0.1, np.float32), c("z", 0, np.uint8)]),
     r"node 'pool' \(QLinearAveragePool\): ceil_mode=1 is not supported"),
], ids=["float16-input", "axis-length", "blocks", "float16-dequantize-scale", "qdq-linear-resize", "qdq-average-pool-ceil"])
def test_unsupported_quantization_is_refused_by_name(build, message, tmp_path):
    error = _load_error(build(), tmp_path)
    assert re.search(message, error), error


def test_compile_warns_where_onnxruntime_golden_data_saturates(tmp_path, monkeypatch):
    """On a CPU where onnxruntime's 8-bit kernels saturate, the golden outputs of a quantized model may be
    onnxruntime's saturated sums: `hcc compile` says so (and says nothing for a float model)."""
    import hcc.driver

    monkeypatch.setattr(hcc.driver, "onnxruntime_int8_saturates", lambda: True)
    messages: list[str] = []
    for name, model in (("quantized", _qdq_conv(channels=8)), ("float", _float_cnn())):
        onnx.save(model, tmp_path / f"{name}.onnx")
        hcc.compile(tmp_path / f"{name}.onnx", tmp_path / f"{name}.bundle", progress=messages.append)
        warned = any("onnxruntime's 8-bit kernels saturate on this CPU" in m for m in messages)
        assert warned == (name == "quantized"), name
        messages.clear()


@pytest.mark.parametrize("activation", [np.uint8, np.int8])
def test_qdq_concat_is_onnxruntimes_qlinear_concat(tmp_path, activation):
    """DequantizeLinear -> Concat -> QuantizeLinear, which onnxruntime runs as QLinearConcat (a copy for the input
    with the output's scale and zero point, a 256-entry table for the others): hcc computes the group as written and
    gets its integers bit for bit, on every one of the 256 codes of each input, ties included (scale ratios 2 and 0.5)."""
    q_type = U8 if activation == np.uint8 else I8
    info = np.iinfo(activation)
    signed = activation == np.int8
    params = [(XS, 7), (np.float32(YS), 2 if signed else 130), (np.float32(2 * YS), 0), (np.float32(YS / 2), -1 if signed else 1)]
    nodes = [h.make_node("DequantizeLinear", [f"x{i}", f"s{i}", f"z{i}"], [f"d{i}"], name=f"dq{i}") for i in range(4)]
    nodes += [h.make_node("Concat", [f"d{i}" for i in range(4)], ["cat"], name="concat", axis=1),
              h.make_node("QuantizeLinear", ["cat", "s1", "z1"], ["y"], name="q")]  # the output takes input 1's parameters: a copy
    inits = [t for i, (scale, zp) in enumerate(params) for t in (c(f"s{i}", scale, np.float32), c(f"z{i}", zp, activation))]
    model = make(nodes, [(f"x{i}", q_type, [2, 128]) for i in range(4)], [("y", q_type, [2, 512])], inits)
    codes = np.arange(info.min, int(info.max) + 1, dtype=np.int64).astype(activation).reshape(2, 128)
    feeds = [{f"x{i}": np.roll(codes, 7 * i) for i in range(4)}, {f"x{i}": ints(activation, (2, 128)) for i in range(4)}]
    _onnxruntime_fused_ops(model, tmp_path)  # writes onnxruntime's optimized graph: what it runs
    assert [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node] == ["QLinearConcat"]
    session = compile_model(model, tmp_path)
    assert_exact(session, model, feeds)
