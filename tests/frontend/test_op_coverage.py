"""One tiny model per op in SUPPORTED_OPS (and its important attribute variants), compiled and compared with onnxruntime.

An op belongs in `hcc.frontend.ops.SUPPORTED_OPS` only if a case here proves it; `test_every_supported_op_is_covered`
keeps the two lists in step. Ops in `BLOCKED_OPS` (converted by torch-mlir, but not compilable by the CPU backend yet)
keep their cases: those that fail are strict xfails naming the bug, so a backend fix shows up as XPASS-failures that
say which ops to move back into SUPPORTED_OPS. The whitelist is widened for them so the cases reach the backend.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from hcc.errors import HccError
from hcc.frontend import ops as ops_module
from hcc.frontend.ops import BLOCKED_OPS, SUPPORTED_OPS

F, I64, B = T.FLOAT, T.INT64, T.BOOL
RNG = np.random.default_rng(2024)


def _const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _rand(name: str, *shape: int, scale: float = 1.0) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    """inputs: [(name, elem_type, shape)]; outputs: [name] (float) or [(name, elem_type)] or [(name, elem_type, shape)];
    shapes of outputs are inferred unless given (shape inference cannot see through some ops, e.g. GroupNormalization)."""
    outs = [(o, F, None) if isinstance(o, str) else (*o, None)[:3] for o in outputs]
    graph = h.make_graph(
        nodes, "op_case",
        [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [h.make_tensor_value_info(n, t, s) for n, t, s in outs],
        initializer=list(inits),
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8 if opset <= 18 else 10)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # fills in the output shapes
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def unary(op: str, shape=(2, 3, 4), opset: int = 17, **attrs):
    return _model([h.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], [("x", F, list(shape))], ["y"], opset=opset)


def binary(op: str, a=(2, 3, 4), b=(2, 3, 4), out=F, elem=F, opset: int = 17):
    return _model([h.make_node(op, ["a", "b"], ["y"], name=op.lower())], [("a", elem, list(a)), ("b", elem, list(b))], [("y", out)], opset=opset)


def with_weights(op: str, x_shape, weights: list[onnx.TensorProto], out="y", opset: int = 17, **attrs):
    names = ["x"] + [w.name if w is not None else "" for w in weights]
    node = h.make_node(op, names, [out], name=op.lower(), **attrs)
    return _model([node], [("x", F, list(x_shape))], [out], [w for w in weights if w is not None], opset=opset)


def positive(shape=(2, 3, 4), low=0.1, high=4.0):
    return {"x": np.random.default_rng(7).uniform(low, high, shape).astype(np.float32)}


# ---------------------------------------------------------------------------------------------------------------------
# Cases: (op, id, builder, compare kwargs). Builders are called lazily so a bad case fails only its own test.
CASES: list = []


def case(op: str, variant: str, build, xfail: str | None = None, **kwargs):
    """Register a case; `xfail` is the reason it is known to fail (a strict xfail: it must fail)."""
    marks = [pytest.mark.xfail(strict=True, raises=HccError, reason=xfail)] if xfail else []
    CASES.append(pytest.param(op, build, kwargs, id=f"{op}-{variant}" if variant else op, marks=marks))


# Element-wise unary
for _op in ["Abs", "Ceil", "Cos", "Exp", "Floor", "Neg", "Relu", "Sigmoid", "Sign", "Sin", "Softplus", "Tanh", "Identity"]:
    case(_op, "", lambda op=_op: unary(op))
case("Erf", "", lambda: unary("Erf"))
case("Log", "", lambda: unary("Log"), feeds=positive())
case("Sqrt", "", lambda: unary("Sqrt"), feeds=positive())
case("Reciprocal", "", lambda: unary("Reciprocal"), feeds=positive())
case("Elu", "alpha", lambda: unary("Elu", alpha=0.7))
case("LeakyRelu", "alpha", lambda: unary("LeakyRelu", alpha=0.2))
case("HardSigmoid", "alpha-beta", lambda: unary("HardSigmoid", alpha=0.3, beta=0.4))
case("HardSwish", "", lambda: unary("HardSwish"))
case("Gelu", "erf", lambda: unary("Gelu", opset=20))
case("Gelu", "tanh", lambda: unary("Gelu", opset=20, approximate="tanh"))
case("Dropout", "inference", lambda: unary("Dropout"))
# Dropout is rewritten (frontend/rewrites.py): identity, and an all-true mask computed from x.
case("Dropout", "mask-training-false", lambda: _model(
    [h.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"], name="dropout")], [("x", F, [2, 3, 4])],
    ["y", ("mask", B)], [_const("ratio", 0.3), _const("training", False, np.bool_)]), as_written=True)
case("Dropout", "opset11-ratio", lambda: _model([h.make_node("Dropout", ["x"], ["y"], name="dropout", ratio=0.2)],
                                                [("x", F, [3, 5])], ["y"], opset=11), as_written=True)
case("Not", "", lambda: _model([h.make_node("Not", ["x"], ["y"], name="not")], [("x", B, [2, 5])], [("y", B)]))

# Element-wise binary, with broadcasting
for _op in ["Add", "Sub", "Mul", "Div", "Max", "Min"]:
    case(_op, "same", lambda op=_op: binary(op))
    case(_op, "broadcast", lambda op=_op: binary(op, (2, 3, 4), (3, 1)))
case("Add", "int64", lambda: binary("Add", (2, 3), (3,), out=I64, elem=I64))
case("Mul", "int64", lambda: binary("Mul", (2, 3), (2, 3), out=I64, elem=I64))
case("Pow", "tensor-exponent", lambda: binary("Pow", (2, 3), (2, 3)),
     feeds={"a": positive((2, 3))["x"], "b": np.random.default_rng(3).uniform(-2, 2, (2, 3)).astype(np.float32)})
case("Pow", "const-square", lambda: with_weights("Pow", (2, 3, 4), [_const("e", 2.0)]))
case("Pow", "const-half", lambda: with_weights("Pow", (2, 3, 4), [_const("e", 0.5)]), feeds=positive())
case("Sum", "three-inputs", lambda: _model([h.make_node("Sum", ["a", "b", "c"], ["y"], name="sum")],
                                           [("a", F, [2, 3]), ("b", F, [2, 3]), ("c", F, [3])], ["y"]))
for _op in ["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"]:
    case(_op, "", lambda op=_op: binary(op, (2, 3, 4), (4,), out=B))
case("Equal", "int64", lambda: binary("Equal", (4, 5), (4, 5), out=B, elem=I64))
_MOD_FEEDS = {"a": np.arange(-6, 6, dtype=np.int64).reshape(3, 4), "b": np.array([[3, -4, 5, 7]] * 3, dtype=np.int64)}
case("Mod", "int64", lambda: binary("Mod", (3, 4), (3, 4), out=I64, elem=I64), feeds=_MOD_FEEDS)
case("Mod", "fmod-float",
     lambda: _model([h.make_node("Mod", ["a", "b"], ["y"], name="mod", fmod=1)], [("a", F, [3, 4]), ("b", F, [3, 4])], [("y", F)]),
     feeds={"a": np.linspace(-5, 5, 12, dtype=np.float32).reshape(3, 4), "b": np.full((3, 4), 1.5, np.float32)})
case("And", "", lambda: binary("And", (2, 5), (2, 5), out=B, elem=B))
case("Or", "", lambda: binary("Or", (2, 5), (1, 5), out=B, elem=B))
case("Where", "bool-cond", lambda: _model([h.make_node("Where", ["c", "a", "b"], ["y"], name="where")],
                                          [("c", B, [2, 1, 4]), ("a", F, [2, 3, 4]), ("b", F, [4])], ["y"]))
case("Where", "from-compare", lambda: _model(
    [h.make_node("Greater", ["x", "zero"], ["c"], name="gt"), h.make_node("Where", ["c", "x", "zero"], ["y"], name="where")],
    [("x", F, [3, 4])], ["y"], [_const("zero", 0.0)]))

# Casts
case("Cast", "float-to-int64", lambda: _model(
    [h.make_node("Cast", ["x"], ["y"], name="cast", to=I64)], [("x", F, [3, 4])], [("y", I64)]),
     feeds={"x": np.random.default_rng(5).uniform(-20, 20, (3, 4)).astype(np.float32)})
case("Cast", "int64-to-float", lambda: _model([h.make_node("Cast", ["x"], ["y"], name="cast", to=F)], [("x", I64, [3, 4])], ["y"]))
case("Cast", "bool-to-float", lambda: _model([h.make_node("Cast", ["x"], ["y"], name="cast", to=F)], [("x", B, [3, 4])], ["y"]))
case("Cast", "float-to-bool", lambda: _model([h.make_node("Cast", ["x"], ["y"], name="cast", to=B)], [("x", F, [3, 4])], [("y", B)]))

# Clip
case("Clip", "min-max", lambda: with_weights("Clip", (2, 3, 4), [_const("lo", -0.5), _const("hi", 0.5)]))
case("Clip", "min-only", lambda: with_weights("Clip", (2, 3, 4), [_const("lo", 0.0)]))
case("Clip", "max-only", lambda: with_weights("Clip", (2, 3, 4), [None, _const("hi", 0.3)]))
case("Clip", "relu6", lambda: with_weights("Clip", (2, 3, 4), [_const("lo", 0.0), _const("hi", 6.0)]),
     feeds={"x": np.random.default_rng(1).uniform(-10, 10, (2, 3, 4)).astype(np.float32)})

# Constants and shape ops
case("Constant", "", lambda: _model([h.make_node("Constant", [], ["c"], name="const", value=_rand("c", 3, 4)),
                                     h.make_node("Add", ["x", "c"], ["y"], name="add")], [("x", F, [3, 4])], ["y"]))
case("Constant", "large", lambda: _model([h.make_node("Constant", [], ["c"], name="const", value=_rand("c", 16, 16)),
                                          h.make_node("MatMul", ["x", "c"], ["y"], name="mm")], [("x", F, [4, 16])], ["y"]))
case("ConstantOfShape", "", lambda: _model(
    [h.make_node("ConstantOfShape", ["s"], ["c"], name="cos", value=h.make_tensor("v", F, [1], [1.5])),
     h.make_node("Add", ["x", "c"], ["y"], name="add")],
    [("x", F, [2, 3])], ["y"], [_const("s", [2, 3], np.int64)]))
case("Shape", "", lambda: _model([h.make_node("Shape", ["x"], ["y"], name="shape")], [("x", F, [2, 3, 4])], [("y", I64)]))
case("Shape", "feeds-reshape", lambda: _model(
    [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Reshape", ["z", "s"], ["y"], name="reshape")],
    [("x", F, [2, 3, 4]), ("z", F, [6, 4])], ["y"]))
case("Range", "float", lambda: _model(
    [h.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"), h.make_node("Add", ["x", "r"], ["y"], name="add")],
    [("x", F, [2, 6])], ["y"], [_const("start", 1.0), _const("limit", 4.0), _const("delta", 0.5)]))
case("Range", "int64", lambda: _model(
    [h.make_node("Range", ["start", "limit", "delta"], ["y"], name="range")], [("x", F, [1])], [("y", I64)],
    [_const("start", 0, np.int64), _const("limit", 10, np.int64), _const("delta", 3, np.int64)]))
case("Reshape", "minus-one", lambda: with_weights("Reshape", (2, 3, 4), [_const("s", [4, -1], np.int64)]))
case("Reshape", "zero-copies", lambda: with_weights("Reshape", (2, 3, 4), [_const("s", [0, 12], np.int64)]))
case("Flatten", "axis1", lambda: unary("Flatten", shape=(2, 3, 4, 5)))
case("Flatten", "axis2", lambda: unary("Flatten", shape=(2, 3, 4, 5), axis=2))
case("Flatten", "axis0", lambda: unary("Flatten", shape=(2, 3, 4), axis=0))
case("Squeeze", "axes", lambda: with_weights("Squeeze", (2, 1, 4, 1), [_const("ax", [1, -1], np.int64)]))
case("Squeeze", "all", lambda: unary("Squeeze", shape=(1, 3, 1, 4)))
case("Unsqueeze", "axes", lambda: with_weights("Unsqueeze", (3, 4), [_const("ax", [0, 3], np.int64)]))
case("Unsqueeze", "negative", lambda: with_weights("Unsqueeze", (3, 4), [_const("ax", [-1], np.int64)]))
case("Transpose", "perm", lambda: unary("Transpose", shape=(2, 3, 4, 5), perm=[0, 2, 3, 1]))
case("Transpose", "default", lambda: unary("Transpose", shape=(2, 3, 4)))
case("Expand", "", lambda: with_weights("Expand", (3, 1), [_const("s", [2, 3, 4], np.int64)]))
case("Tile", "", lambda: with_weights("Tile", (2, 3), [_const("r", [2, 3], np.int64)]))
case("Concat", "axis1", lambda: _model([h.make_node("Concat", ["a", "b", "c"], ["y"], name="concat", axis=1)],
                                       [("a", F, [2, 3, 4]), ("b", F, [2, 1, 4]), ("c", F, [2, 2, 4])], ["y"]))
case("Concat", "axis-neg", lambda: _model([h.make_node("Concat", ["a", "b"], ["y"], name="concat", axis=-1)],
                                          [("a", F, [2, 3]), ("b", F, [2, 5])], ["y"]))
case("Split", "sizes", lambda: _model([h.make_node("Split", ["x", "s"], ["y0", "y1", "y2"], name="split", axis=1)],
                                      [("x", F, [2, 6, 3])], ["y0", "y1", "y2"], [_const("s", [1, 2, 3], np.int64)]))
case("Split", "equal", lambda: _model([h.make_node("Split", ["x"], ["y0", "y1"], name="split", axis=-1)],
                                      [("x", F, [2, 3, 8])], ["y0", "y1"]))
case("Split", "num-outputs-opset18", lambda: _model([h.make_node("Split", ["x"], ["y0", "y1", "y2"], name="split", axis=0, num_outputs=3)],
                                                    [("x", F, [6, 4])], ["y0", "y1", "y2"], opset=18))
# a negative step is rewritten into a Gather of the exact indices (frontend/rewrites.py), clamping included
case("Slice", "negative-steps", lambda: with_weights("Slice", (20, 10, 5), [
    _const("st", [20, 10, 4], np.int64), _const("en", [0, 0, 1], np.int64), _const("ax", [0, 1, 2], np.int64),
    _const("sp", [-1, -3, -2], np.int64)]), as_written=True)
case("Slice", "negative-step-to-start", lambda: with_weights("Slice", (6, 7), [
    _const("st", [-2], np.int64), _const("en", [-(2 ** 63)], np.int64), _const("ax", [-1], np.int64), _const("sp", [-2], np.int64)]),
     as_written=True)
case("Slice", "basic", lambda: with_weights("Slice", (4, 6), [_const("st", [1, 2], np.int64), _const("en", [3, 5], np.int64)]))
case("Slice", "axes-steps", lambda: with_weights("Slice", (4, 6, 5), [
    _const("st", [0, 1], np.int64), _const("en", [6, 5], np.int64), _const("ax", [1, 2], np.int64), _const("sp", [2, 2], np.int64)]))
case("Slice", "negative", lambda: with_weights("Slice", (4, 6), [
    _const("st", [-1], np.int64), _const("en", [-1000], np.int64), _const("ax", [1], np.int64), _const("sp", [-1], np.int64)]))
case("Slice", "clamped-end", lambda: with_weights("Slice", (4, 6), [
    _const("st", [2], np.int64), _const("en", [np.iinfo(np.int64).max], np.int64), _const("ax", [-1], np.int64)]))
# Constant negative indices: the converter folds the `idx < 0` mask into an i1 constant that the fused generic
# then reads from an i1 memref, which LLVM 22's memref-to-LLVM lowering asserts on (backends/cpu/widen_i1.py, not
# wired into the CPU pipeline yet, is the fix). Run-time indices (the embedding case) are not affected.
case("Gather", "axis0-input-indices", lambda: _model([h.make_node("Gather", ["data", "idx"], ["y"], name="gather")],
                                                     [("data", F, [5, 4]), ("idx", I64, [2, 3])], ["y"]))
case("Gather", "axis1-const", lambda: with_weights("Gather", (3, 5, 2), [_const("idx", [4, 0, 2], np.int64)], axis=1))
case("Gather", "negative-indices", lambda: with_weights("Gather", (5, 4), [_const("idx", [-1, 0, -3], np.int64)]))
case("Gather", "scalar-index", lambda: with_weights("Gather", (3, 5, 2), [_const("idx", 2, np.int64)], axis=1))

# Matrix products
case("MatMul", "2d", lambda: binary("MatMul", (3, 4), (4, 5)))
case("MatMul", "batched-broadcast", lambda: binary("MatMul", (2, 3, 4), (4, 5)))
case("MatMul", "batched-4d", lambda: binary("MatMul", (2, 2, 3, 4), (2, 1, 4, 5)))
case("MatMul", "vector", lambda: binary("MatMul", (3, 4), (4,)))
case("MatMul", "vector-times-batch", lambda: binary("MatMul", (4,), (2, 4, 5)), as_written=True)
case("MatMul", "batch-times-vector", lambda: binary("MatMul", (2, 3, 3, 4), (4,)), as_written=True)
case("MatMul", "weight", lambda: with_weights("MatMul", (3, 16), [_rand("w", 16, 8)]))
case("Gemm", "default", lambda: with_weights("Gemm", (3, 16), [_rand("w", 16, 8), _rand("b", 8)]))
case("Gemm", "transB", lambda: with_weights("Gemm", (3, 16), [_rand("w", 8, 16), _rand("b", 8)], transB=1))
case("Gemm", "transA-alpha-beta", lambda: with_weights("Gemm", (16, 3), [_rand("w", 16, 8), _rand("b", 3, 8)], transA=1, alpha=0.5, beta=2.0))
case("Gemm", "no-bias", lambda: with_weights("Gemm", (3, 16), [_rand("w", 8, 16)], transB=1))
case("Einsum", "scalar-identity", lambda: _model([h.make_node("Einsum", ["x"], ["y"], name="einsum", equation="->")],
                                                 [("x", F, [])], ["y"], opset=12), as_written=True)
case("Einsum", "batched-matmul", lambda: _model([h.make_node("Einsum", ["a", "b"], ["y"], name="einsum", equation="bij,bjk->bik")],
                                                [("a", F, [2, 3, 4]), ("b", F, [2, 4, 5])], ["y"]))
case("Einsum", "transpose", lambda: _model([h.make_node("Einsum", ["a"], ["y"], name="einsum", equation="ij->ji")],
                                           [("a", F, [3, 4])], ["y"]))
case("Einsum", "attention-scores", lambda: _model([h.make_node("Einsum", ["q", "k"], ["y"], name="einsum", equation="bhqd,bhkd->bhqk")],
                                                  [("q", F, [1, 2, 3, 4]), ("k", F, [1, 2, 5, 4])], ["y"]))

# Convolutions and pooling (NCHW)
case("Conv", "basic-bias", lambda: with_weights("Conv", (1, 3, 8, 8), [_rand("w", 4, 3, 3, 3), _rand("b", 4)]))
case("Conv", "no-bias", lambda: with_weights("Conv", (1, 3, 8, 8), [_rand("w", 4, 3, 3, 3)]))
case("Conv", "strides-pads", lambda: with_weights("Conv", (2, 3, 9, 9), [_rand("w", 4, 3, 3, 3), _rand("b", 4)], strides=[2, 2], pads=[1, 1, 1, 1]))
case("Conv", "asymmetric-pads", lambda: with_weights("Conv", (1, 2, 7, 7), [_rand("w", 3, 2, 3, 3)], pads=[0, 1, 2, 1]))
case("Conv", "dilations", lambda: with_weights("Conv", (1, 2, 9, 9), [_rand("w", 3, 2, 3, 3)], dilations=[2, 2], pads=[2, 2, 2, 2]))
case("Conv", "groups", lambda: with_weights("Conv", (1, 4, 6, 6), [_rand("w", 6, 2, 3, 3), _rand("b", 6)], group=2, pads=[1, 1, 1, 1]))
case("Conv", "depthwise",
     lambda: with_weights("Conv", (1, 4, 8, 8), [_rand("w", 4, 1, 3, 3), _rand("b", 4)], group=4, pads=[1, 1, 1, 1], strides=[2, 2]))
case("Conv", "pointwise", lambda: with_weights("Conv", (1, 8, 5, 5), [_rand("w", 4, 8, 1, 1)]))
case("Conv", "auto-pad-same", lambda: with_weights("Conv", (1, 2, 7, 7), [_rand("w", 3, 2, 3, 3)], auto_pad="SAME_UPPER", strides=[2, 2]))
case("Conv", "1d", lambda: with_weights("Conv", (1, 3, 10), [_rand("w", 4, 3, 3), _rand("b", 4)], pads=[1, 1]))
# groups and auto_pad SAME_* are rewritten (frontend/conv_transpose.py): compared with onnxruntime as written
case("ConvTranspose", "group3-bias", lambda: with_weights("ConvTranspose", (2, 6, 4, 5), [_rand("w", 6, 2, 3, 3), _rand("b", 6)],
                                                          group=3, strides=[2, 1]), as_written=True)
case("ConvTranspose", "group2-opset11", lambda: with_weights("ConvTranspose", (1, 4, 5, 5), [_rand("w", 4, 3, 2, 2)], group=2, opset=11),
     as_written=True)
case("ConvTranspose", "same-upper-stride2", lambda: with_weights("ConvTranspose", (1, 3, 5, 4), [_rand("w", 3, 2, 3, 3), _rand("b", 2)],
                                                                auto_pad="SAME_UPPER", strides=[2, 2]), as_written=True)
case("ConvTranspose", "same-lower-group2", lambda: with_weights("ConvTranspose", (1, 4, 4, 4), [_rand("w", 4, 1, 4, 3)],
                                                               auto_pad="SAME_LOWER", strides=[3, 2], group=2), as_written=True)
case("ConvTranspose", "basic", lambda: with_weights("ConvTranspose", (1, 4, 5, 5), [_rand("w", 4, 3, 3, 3), _rand("b", 3)]))
case("ConvTranspose", "stride2", lambda: with_weights("ConvTranspose", (1, 4, 4, 4), [_rand("w", 4, 2, 2, 2)], strides=[2, 2]))
case("ConvTranspose", "pads-output-padding", lambda: with_weights(
    "ConvTranspose", (1, 3, 4, 4), [_rand("w", 3, 2, 3, 3), _rand("b", 2)], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]))
case("MaxPool", "indices-batch-channels", lambda: _model(
    [h.make_node("MaxPool", ["x"], ["y", "idx"], name="maxpool", kernel_shape=[2, 3], strides=[2, 1])],
    [("x", F, [2, 3, 5, 6])], ["y", ("idx", I64)]), as_written=True)
case("MaxPool", "indices-even-pads", lambda: _model(
    [h.make_node("MaxPool", ["x"], ["y", "idx"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
    [("x", F, [2, 3, 7, 6])], ["y", ("idx", I64)]), as_written=True)
case("MaxPool", "argmax-column-major", lambda: _model(
    [h.make_node("MaxPool", ["x"], ["y", "idx"], name="maxpool", kernel_shape=[2, 3], strides=[2, 1], pads=[1, 1, 1, 1], storage_order=1)],
    [("x", F, [2, 3, 5, 6])], ["y", ("idx", I64)]), as_written=True)
case("MaxPool", "k2s2", lambda: unary("MaxPool", shape=(1, 3, 8, 8), kernel_shape=[2, 2], strides=[2, 2]))
case("MaxPool", "k3s2-pads", lambda: unary("MaxPool", shape=(1, 2, 9, 9), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
case("MaxPool", "ceil-mode", lambda: unary("MaxPool", shape=(1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
case("AveragePool", "k2s2", lambda: unary("AveragePool", shape=(1, 3, 8, 8), kernel_shape=[2, 2], strides=[2, 2]))
case("AveragePool", "pads-exclude", lambda: unary("AveragePool", shape=(1, 2, 7, 7), kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))
case("AveragePool", "pads-include", lambda: unary("AveragePool", shape=(1, 2, 7, 7), kernel_shape=[3, 3], strides=[2, 2],
                                                   pads=[1, 1, 1, 1], count_include_pad=1))
case("GlobalAveragePool", "", lambda: unary("GlobalAveragePool", shape=(2, 3, 5, 6)))
case("GlobalMaxPool", "", lambda: unary("GlobalMaxPool", shape=(2, 3, 5, 6)))

# Normalization
case("BatchNormalization", "", lambda: with_weights("BatchNormalization", (2, 3, 4, 5), [
    _rand("scale", 3), _rand("bias", 3), _rand("mean", 3), _const("var", RNG.uniform(0.5, 2.0, 3))], epsilon=1e-3))
case("BatchNormalization", "2d-input", lambda: with_weights("BatchNormalization", (4, 3), [
    _rand("scale", 3), _rand("bias", 3), _rand("mean", 3), _const("var", RNG.uniform(0.5, 2.0, 3))]))
case("InstanceNormalization", "", lambda: with_weights("InstanceNormalization", (2, 3, 4, 5), [_rand("scale", 3), _rand("bias", 3)], epsilon=1e-5))
case("LayerNormalization", "last-axis",
     lambda: with_weights("LayerNormalization", (2, 5, 16), [_rand("g", 16), _rand("b", 16)], axis=-1, epsilon=1e-5))
case("LayerNormalization", "two-axes", lambda: with_weights("LayerNormalization", (2, 3, 4, 5), [_rand("g", 4, 5), _rand("b", 4, 5)], axis=2))
case("LayerNormalization", "no-bias", lambda: with_weights("LayerNormalization", (3, 8), [_rand("g", 8)]))
case("Softmax", "last-axis", lambda: unary("Softmax", shape=(2, 3, 5)))
case("Softmax", "axis1", lambda: unary("Softmax", shape=(2, 3, 5), axis=1))
case("LogSoftmax", "last-axis", lambda: unary("LogSoftmax", shape=(2, 3, 5)))
case("LogSoftmax", "axis0", lambda: unary("LogSoftmax", shape=(2, 3, 5), axis=0))

# Reductions (opset 17: ReduceSum takes axes as an input, the others as an attribute; opset 18: all as an input)
case("ReduceMean", "keepdims", lambda: unary("ReduceMean", axes=[-1]))
case("ReduceMean", "no-keepdims", lambda: unary("ReduceMean", axes=[1, 2], keepdims=0))
case("ReduceMean", "all-axes", lambda: unary("ReduceMean", keepdims=0))
case("ReduceMean", "axes-input-opset18", lambda: with_weights("ReduceMean", (2, 3, 4), [_const("ax", [1], np.int64)], opset=18))
case("ReduceSum", "axes-input", lambda: with_weights("ReduceSum", (2, 3, 4), [_const("ax", [0, 2], np.int64)], keepdims=0))
case("ReduceSum", "keepdims", lambda: with_weights("ReduceSum", (2, 3, 4), [_const("ax", [1], np.int64)]))
case("ReduceSum", "all", lambda: unary("ReduceSum"))
case("ReduceMax", "keepdims", lambda: unary("ReduceMax", axes=[1]))
case("ReduceMax", "no-keepdims", lambda: unary("ReduceMax", axes=[-1], keepdims=0))
case("ReduceMax", "axes-input-opset18", lambda: with_weights("ReduceMax", (2, 3, 4), [_const("ax", [0], np.int64)], opset=18, keepdims=0))
case("ReduceMin", "keepdims", lambda: unary("ReduceMin", axes=[2]))
case("ReduceMin", "no-keepdims", lambda: unary("ReduceMin", axes=[0, 1], keepdims=0))
case("ArgMax", "keepdims", lambda: _model([h.make_node("ArgMax", ["x"], ["y"], name="argmax", axis=1)], [("x", F, [2, 5, 3])], [("y", I64)]))
case("ArgMax", "no-keepdims-last", lambda: _model([h.make_node("ArgMax", ["x"], ["y"], name="argmax", axis=-1, keepdims=0)],
                                                  [("x", F, [2, 5, 3])], [("y", I64)]))

# Pad
case("Pad", "constant", lambda: with_weights("Pad", (1, 2, 3, 4), [_const("p", [0, 0, 1, 2, 0, 0, 2, 1], np.int64)]))
case("Pad", "constant-value", lambda: with_weights("Pad", (2, 3), [_const("p", [1, 1, 0, 2], np.int64), _const("v", 1.5)]))
# mode 'wrap' is rewritten into Slice/Concat (frontend/rewrites.py): compared with onnxruntime on the model as written
case("Pad", "wrap", lambda: with_weights("Pad", (2, 3, 4), [_const("p", [0, 1, 4, 1, 3, 0], np.int64)], mode="wrap", opset=19),
     as_written=True)
case("Pad", "wrap-axes", lambda: with_weights("Pad", (2, 3, 4), [_const("p", [2, 0, 2, 3], np.int64), None, _const("ax", [0, -1], np.int64)],
                                              mode="wrap", opset=19), as_written=True)
case("Pad", "reflect", lambda: with_weights("Pad", (1, 2, 4, 5), [_const("p", [0, 0, 1, 2, 0, 0, 2, 1], np.int64)], mode="reflect"))
case("Pad", "edge", lambda: with_weights("Pad", (1, 2, 4, 5), [_const("p", [0, 0, 1, 2, 0, 0, 2, 1], np.int64)], mode="edge"))

# Resize (NCHW spatial)
_EMPTY = _const("roi", [], np.float32)
case("Resize", "nearest-scales", lambda: with_weights("Resize", (1, 2, 3, 4), [_EMPTY, _const("sc", [1, 1, 2, 2])], mode="nearest"))
case("Resize", "nearest-asymmetric-floor", lambda: with_weights(
    "Resize", (1, 2, 3, 4), [_EMPTY, _const("sc", [1, 1, 2, 3])], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
case("Resize", "nearest-sizes", lambda: with_weights("Resize", (1, 2, 4, 4), [_EMPTY, None, _const("sz", [1, 2, 6, 7], np.int64)], mode="nearest"))
case("Resize", "linear-half-pixel", lambda: with_weights("Resize", (1, 2, 3, 4), [_EMPTY, _const("sc", [1, 1, 2, 2])], mode="linear"))
case("Resize", "linear-align-corners", lambda: with_weights(
    "Resize", (1, 2, 3, 4), [_EMPTY, _const("sc", [1, 1, 2, 2])], mode="linear", coordinate_transformation_mode="align_corners"))
case("Resize", "linear-downsample", lambda: with_weights("Resize", (1, 2, 8, 8), [_EMPTY, _const("sc", [1, 1, 0.5, 0.5])], mode="linear"))
# LpPool: torch-mlir converts it from opset 18 on (earlier, a lowering error names the node)
case("LpPool", "p2-pads", lambda: unary("LpPool", shape=(1, 3, 9, 9), opset=18, kernel_shape=[3, 3], pads=[1, 1, 1, 1], p=2))
case("LpPool", "p3-strides-1d", lambda: unary("LpPool", shape=(2, 3, 17), opset=22, kernel_shape=[4], strides=[2], p=3))
case("LpPool", "p1-3d", lambda: unary("LpPool", shape=(1, 2, 5, 6, 4), opset=22, kernel_shape=[2, 3, 2], p=1))
# opset 18's axes and keep_aspect_ratio_policy: rewritten into full-rank scales/sizes (frontend/rewrites.py)
case("Resize", "axes-scales", lambda: with_weights("Resize", (1, 2, 3, 4), [None, _const("sc", [2.0, 1.5])], opset=19,
                                                   axes=[3, 2], mode="nearest"), as_written=True)
case("Resize", "axes-sizes-linear", lambda: with_weights("Resize", (1, 2, 3, 4), [None, None, _const("sz", [6, 5], np.int64)],
                                                         opset=19, axes=[2, 3], mode="linear"), as_written=True)
case("Resize", "not-larger", lambda: with_weights("Resize", (1, 2, 4, 4), [None, None, _const("sz", [6, 9], np.int64)], opset=19,
                                                  axes=[2, 3], keep_aspect_ratio_policy="not_larger", mode="linear"), as_written=True)

# Recurrent
def _lstm(direction="forward", seq=4, batch=2, inp=3, hidden=5, full=True, layout_outputs=("Y", "Y_h", "Y_c")):
    dirs = 2 if direction == "bidirectional" else 1
    weights = [_rand("W", dirs, 4 * hidden, inp, scale=0.5), _rand("R", dirs, 4 * hidden, hidden, scale=0.5)]
    names = ["x", "W", "R"]
    if full:
        weights += [_rand("B", dirs, 8 * hidden, scale=0.5), _rand("h0", dirs, batch, hidden), _rand("c0", dirs, batch, hidden)]
        names += ["B", "", "h0", "c0"]
    node = h.make_node("LSTM", names, list(layout_outputs), name="lstm", hidden_size=hidden, direction=direction)
    return _model([node], [("x", F, [seq, batch, inp])], list(layout_outputs), weights)


case("LSTM", "forward-full", lambda: _lstm())
case("LSTM", "forward-no-bias-state", lambda: _lstm(full=False))
case("LSTM", "bidirectional", lambda: _lstm(direction="bidirectional"))
case("LSTM", "reverse", lambda: _lstm(direction="reverse"))  # a forward LSTM on reversed steps (frontend/recurrent.py)


# Ops added with the widened whitelist. Inputs stay inside each op's domain (explicit feeds where normals would not).
def uniform(low: float, high: float, shape=(2, 3, 4), seed: int = 11, name: str = "x"):
    return {name: np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)}


def _recurrent(op: str, direction="forward", seq=4, batch=2, inp=3, hidden=5, full=True, **attrs):
    gates, dirs = {"GRU": 3, "RNN": 1}[op], 2 if direction == "bidirectional" else 1
    weights = [_rand("W", dirs, gates * hidden, inp, scale=0.5), _rand("R", dirs, gates * hidden, hidden, scale=0.5)]
    names = ["x", "W", "R"]
    if full:
        weights += [_rand("B", dirs, 2 * gates * hidden, scale=0.5), _rand("h0", dirs, batch, hidden)]
        names += ["B", "", "h0"]
    node = h.make_node(op, names, ["Y", "Y_h"], name=op.lower(), hidden_size=hidden, direction=direction, **attrs)
    return _model([node], [("x", F, [seq, batch, inp])], ["Y", "Y_h"], weights)


_ROUND_FEEDS = {"x": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -1.7, -0.2, 0.3, 0.7, 1.2, 3.51], np.float32).reshape(3, 4)}
_SPECIALS = {"x": np.array([[np.inf, -np.inf, np.nan, 0.0, 1.5], [-2.0, np.nan, 3e38, -np.inf, np.inf]], np.float32)}
_INT_FEEDS = {"a": np.array([[-7, -1, 0, 5, 12], [3, 255, -256, 9, 1 << 40]], np.int64),
              "b": np.array([[3, -1, 6, 5, 10], [-4, 15, 7, 8, 1 << 33]], np.int64)}
_U8_FEEDS = {"a": np.array([[1, 2, 17, 128, 255], [0, 64, 3, 200, 9]], np.uint8), "b": np.array([[0, 1, 2, 3, 7], [4, 1, 1, 2, 5]], np.uint8)}
U8 = T.UINT8

_WIDENED_FROM = len(CASES)

# Trigonometric and hyperbolic
case("Acos", "", lambda: unary("Acos"), feeds=uniform(-0.95, 0.95))
case("Asin", "", lambda: unary("Asin"), feeds=uniform(-0.95, 0.95))
case("Atan", "", lambda: unary("Atan"), feeds=uniform(-5, 5))
case("Tan", "", lambda: unary("Tan"), feeds=uniform(-1.2, 1.2))
case("Acosh", "", lambda: unary("Acosh"), feeds=uniform(1.05, 5))
case("Asinh", "", lambda: unary("Asinh"), feeds=uniform(-5, 5))
case("Atanh", "", lambda: unary("Atanh"), feeds=uniform(-0.95, 0.95))
case("Cosh", "", lambda: unary("Cosh"), feeds=uniform(-3, 3))
case("Sinh", "", lambda: unary("Sinh"), feeds=uniform(-3, 3))

# Other element-wise unary ops
case("Round", "half-to-even", lambda: unary("Round", shape=(3, 4)), feeds=_ROUND_FEEDS)
case("Celu", "alpha", lambda: unary("Celu", alpha=0.8))
case("Selu", "default", lambda: unary("Selu"))
case("Selu", "alpha-gamma", lambda: unary("Selu", alpha=1.5, gamma=1.2))
case("Mish", "", lambda: unary("Mish", opset=18), feeds=uniform(-4, 4))
case("Shrink", "lambd-bias", lambda: unary("Shrink", lambd=0.5, bias=0.2))
case("Shrink", "hard", lambda: unary("Shrink"))
case("ThresholdedRelu", "alpha", lambda: unary("ThresholdedRelu", alpha=0.3))
case("IsNaN", "", lambda: _model([h.make_node("IsNaN", ["x"], ["y"], name="isnan")], [("x", F, [2, 5])], [("y", B)]), feeds=_SPECIALS)
case("IsInf", "both", lambda: _model([h.make_node("IsInf", ["x"], ["y"], name="isinf")], [("x", F, [2, 5])], [("y", B)]), feeds=_SPECIALS)
case("IsInf", "negative-only", lambda: _model([h.make_node("IsInf", ["x"], ["y"], name="isinf", detect_positive=0)], [("x", F, [2, 5])], [("y", B)]),
     feeds=_SPECIALS)
case("PRelu", "channel-slope", lambda: with_weights("PRelu", (2, 3, 4, 5), [_rand("slope", 3, 1, 1)]))
case("PRelu", "input-slope", lambda: binary("PRelu", (2, 3, 4), (4,)))
case("CastLike", "float-to-int64", lambda: _model([h.make_node("CastLike", ["x", "t"], ["y"], name="castlike")], [("x", F, [3, 4])], [("y", I64)],
                                                  [_const("t", [0], np.int64)]), feeds=uniform(-20, 20, (3, 4)))
case("CastLike", "int64-to-float", lambda: _model([h.make_node("CastLike", ["x", "t"], ["y"], name="castlike")], [("x", I64, [3, 4])], ["y"],
                                                  [_const("t", [1.0])]))

# Logical and bitwise
case("Xor", "", lambda: binary("Xor", (2, 5), (1, 5), out=B, elem=B))
for _op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]:
    case(_op, "int64", lambda op=_op: binary(op, (2, 5), (2, 5), out=I64, elem=I64, opset=18), feeds=_INT_FEEDS)
    case(_op, "uint8", lambda op=_op: binary(op, (2, 5), (2, 5), out=U8, elem=U8, opset=18), feeds=_U8_FEEDS)
_I16_FEEDS = {"a": np.array([[-32768, -300, 7, 1000, 32767], [0, 5, -5, 123, -1]], np.int16),
              "b": np.array([[1, 3, -2, 7, -1], [9, 5, 4, -3, 2]], np.int16)}
for _op in ["Add", "Sub", "Mul"]:  # int16 crosses the runtime boundary; wrapping at the extremes (onnxruntime has no int16 Max/Min)
    case(_op, "int16", lambda op=_op: binary(op, (2, 5), (2, 5), out=T.INT16, elem=T.INT16), feeds=_I16_FEEDS)
case("BitwiseNot", "int64", lambda: _model([h.make_node("BitwiseNot", ["a"], ["y"], name="not")], [("a", I64, [2, 5])], [("y", I64)], opset=18),
     feeds={"a": _INT_FEEDS["a"]})
case("BitwiseNot", "uint8", lambda: _model([h.make_node("BitwiseNot", ["a"], ["y"], name="not")], [("a", U8, [2, 5])], [("y", U8)], opset=18),
     feeds={"a": _U8_FEEDS["a"]})
for _dir in ["LEFT", "RIGHT"]:
    case("BitShift", _dir.lower(), lambda d=_dir: _model([h.make_node("BitShift", ["a", "b"], ["y"], name="shift", direction=d)],
                                                          [("a", U8, [2, 5]), ("b", U8, [2, 5])], [("y", U8)]), feeds=_U8_FEEDS)

# Variadic
case("Mean", "three-inputs", lambda: _model([h.make_node("Mean", ["a", "b", "c"], ["y"], name="mean")],
                                            [("a", F, [2, 3]), ("b", F, [2, 3]), ("c", F, [3])], ["y"]))

# More reductions (opset 17: axes as an attribute; opset 18: as an input)
case("ReduceL1", "keepdims", lambda: unary("ReduceL1", axes=[-1]))
case("ReduceL2", "no-keepdims", lambda: unary("ReduceL2", axes=[1], keepdims=0))
case("ReduceLogSum", "keepdims", lambda: unary("ReduceLogSum", axes=[1, 2]), feeds=positive())
case("ReduceLogSumExp", "no-keepdims", lambda: unary("ReduceLogSumExp", axes=[-1], keepdims=0), feeds=uniform(-10, 10))
case("ReduceProd", "keepdims", lambda: unary("ReduceProd", axes=[1]))
case("ReduceSumSquare", "all-axes", lambda: unary("ReduceSumSquare", keepdims=0))
case("ReduceSumSquare", "axes-input-opset18", lambda: with_weights("ReduceSumSquare", (2, 3, 4), [_const("ax", [0], np.int64)], opset=18))
case("ArgMin", "keepdims", lambda: _model([h.make_node("ArgMin", ["x"], ["y"], name="argmin", axis=1)], [("x", F, [2, 5, 3])], [("y", I64)]))
case("ArgMin", "no-keepdims-last", lambda: _model([h.make_node("ArgMin", ["x"], ["y"], name="argmin", axis=-1, keepdims=0)],
                                                  [("x", F, [2, 5, 3])], [("y", I64)]))
case("Hardmax", "last-axis", lambda: unary("Hardmax", shape=(2, 3, 5)))
case("Hardmax", "axis1", lambda: unary("Hardmax", shape=(2, 3, 5), axis=1))

# Normalization and pooling
case("LpNormalization", "p2", lambda: unary("LpNormalization", shape=(2, 3, 4)))
case("LpNormalization", "p1-axis1", lambda: unary("LpNormalization", shape=(2, 3, 4), axis=1, p=1))
case("LRN", "", lambda: unary("LRN", shape=(1, 5, 3, 3), size=3, alpha=1e-3, beta=0.75, bias=1.5))
case("GlobalLpPool", "p2", lambda: unary("GlobalLpPool", shape=(2, 3, 4, 5)))
case("GlobalLpPool", "p1", lambda: unary("GlobalLpPool", shape=(2, 3, 4, 5), p=1))
case("GroupNormalization", "opset21", lambda: _model(
    [h.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], name="groupnorm", num_groups=3, epsilon=1e-5)],
    [("x", F, [2, 6, 3, 4])], [("y", F, [2, 6, 3, 4])], [_rand("scale", 6), _rand("bias", 6)], opset=21))

# Layout and indexing
case("DepthToSpace", "dcr", lambda: unary("DepthToSpace", shape=(1, 8, 2, 3), blocksize=2))
case("DepthToSpace", "crd", lambda: unary("DepthToSpace", shape=(1, 8, 2, 3), blocksize=2, mode="CRD"))
case("SpaceToDepth", "", lambda: unary("SpaceToDepth", shape=(1, 2, 4, 6), blocksize=2))
case("CenterCropPad", "crop-and-pad", lambda: with_weights("CenterCropPad", (4, 5), [_const("s", [3, 8], np.int64)], opset=18))
case("CenterCropPad", "axes", lambda: with_weights("CenterCropPad", (2, 5, 6), [_const("s", [2, 9], np.int64)], opset=18, axes=[1, 2]))
case("Trilu", "upper", lambda: unary("Trilu", shape=(2, 3, 4)))
case("Trilu", "lower-k", lambda: with_weights("Trilu", (3, 5), [_const("k", 1, np.int64)], upper=0))
case("Trilu", "upper-negative-k", lambda: with_weights("Trilu", (4, 3), [_const("k", -1, np.int64)]))
case("EyeLike", "k", lambda: _model([h.make_node("EyeLike", ["x"], ["e"], name="eyelike", k=1), h.make_node("Add", ["x", "e"], ["y"], name="add")],
                                    [("x", F, [3, 4])], ["y"]))
case("Size", "", lambda: _model([h.make_node("Size", ["x"], ["n"], name="size"), h.make_node("Cast", ["n"], ["nf"], name="cast", to=F),
                                 h.make_node("Add", ["x", "nf"], ["y"], name="add")], [("x", F, [2, 3, 4])], ["y"]))
case("GatherElements", "axis1-const", lambda: with_weights("GatherElements", (3, 4), [_const("idx", [[3, 0], [1, -1], [2, 2]], np.int64)], axis=1))
case("GatherElements", "axis0-input", lambda: _model([h.make_node("GatherElements", ["x", "idx"], ["y"], name="ge")],
                                                     [("x", F, [3, 4]), ("idx", I64, [2, 4])], ["y"]),
     feeds={"x": uniform(-1, 1, (3, 4))["x"], "idx": np.array([[2, 0, 1, 1], [0, 2, 2, 0]], np.int64)})
case("GatherND", "", lambda: with_weights("GatherND", (2, 3, 4), [_const("idx", [[0, 1], [1, 2], [1, 0]], np.int64)]))
case("GatherND", "batch-dims", lambda: with_weights("GatherND", (2, 3, 4), [_const("idx", [[[2], [0]], [[1], [1]]], np.int64)], batch_dims=1))
case("OneHot", "", lambda: _model([h.make_node("OneHot", ["idx", "depth", "vals"], ["y"], name="onehot", axis=-1)],
                                  [("idx", I64, [2, 3])], ["y"], [_const("depth", 5, np.int64), _const("vals", [-1.0, 2.0])]),
     feeds={"idx": np.array([[0, 4, 2], [-1, 3, 7]], np.int64)})
case("OneHot", "axis0", lambda: _model([h.make_node("OneHot", ["idx", "depth", "vals"], ["y"], name="onehot", axis=0)],
                                       [("idx", I64, [4])], ["y"], [_const("depth", 3, np.int64), _const("vals", [0.0, 1.0])]),
     feeds={"idx": np.array([0, 2, 1, -3], np.int64)})
case("ReverseSequence", "time-major", lambda: with_weights("ReverseSequence", (4, 3, 2), [_const("lens", [4, 2, 1], np.int64)],
                                                           time_axis=0, batch_axis=1))
case("ReverseSequence", "batch-major", lambda: with_weights("ReverseSequence", (3, 4, 2), [_const("lens", [1, 3, 4], np.int64)],
                                                            time_axis=1, batch_axis=0))
# CumSum is rewritten into a log-step scan (frontend/cumsum.py): compared with onnxruntime on the model as written.
case("CumSum", "axis2-37", lambda: with_weights("CumSum", (2, 3, 37), [_const("axis", 2, np.int64)]), as_written=True)
case("CumSum", "exclusive-reverse-axis0", lambda: with_weights("CumSum", (5, 4), [_const("axis", 0, np.int32)], exclusive=1,
                                                                reverse=1), as_written=True)
case("CumSum", "int64-negative-axis", lambda: _model([h.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum", exclusive=1)],
                                                      [("x", I64, [3, 9])], [("y", I64)], [_const("axis", -1, np.int64)]),
     as_written=True, feeds={"x": np.random.default_rng(8).integers(-1000, 1000, (3, 9)).astype(np.int64)})
# TopK is rewritten into ranks from pairwise comparisons (frontend/topk.py): ties (integer-valued floats) resolved
# by lower index, compared with onnxruntime on the model as written.
_TIES = {"x": np.random.default_rng(10).integers(-3, 4, (4, 10)).astype(np.float32)}


def _topk(shape, k, elem=F, opset=17, **attrs):
    node = h.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", **attrs)
    return _model([node], [("x", elem, list(shape))], [("values", elem), ("indices", I64)], [_const("k", [k], np.int64)], opset=opset)


case("TopK", "largest-ties", lambda: _topk((4, 10), 4), as_written=True, feeds=_TIES)
case("TopK", "smallest-ties-opset11", lambda: _topk((4, 10), 7, opset=11, largest=0), as_written=True, feeds=_TIES)
case("TopK", "axis0-int64-smallest", lambda: _topk((6, 3, 2), 6, elem=I64, axis=0, largest=0), as_written=True,
     feeds={"x": np.random.default_rng(11).integers(-5, 5, (6, 3, 2)).astype(np.int64)})
case("TopK", "axis1-random", lambda: _topk((2, 33, 3), 5, axis=1), as_written=True)
# CumProd (opset 26) is rewritten into a log-step scan of Slice, Pad and Mul before the opset conversion
# (frontend/cumprod.py).
case("CumProd", "axis1-exclusive", lambda: with_weights("CumProd", (3, 7), [_const("axis", 1, np.int64)], opset=26,
                                                        exclusive=1), as_written=True)
# BitCast (opset 26) is exact bit arithmetic of opset-22 ops (frontend/bitcast.py); TensorScatter (opset 24) a
# GatherElements of the update and a Where (frontend/tensor_scatter.py); both rewritten before the opset conversion.
case("BitCast", "float-to-int32", lambda: _model([h.make_node("BitCast", ["x"], ["y"], name="bitcast", to=T.INT32)],
                                                 [("x", F, [3, 5])], [("y", T.INT32)], opset=26), as_written=True)
case("TensorScatter", "circular", lambda: _model(
    [h.make_node("TensorScatter", ["cache", "update", "w"], ["y"], name="tensorscatter", mode="circular")],
    [("cache", F, [2, 3, 6, 4]), ("update", F, [2, 3, 2, 4])], ["y"], [_const("w", [5, 1], np.int64)], opset=24), as_written=True)
# Compress with a constant condition is a Gather of the selected positions (frontend/compress.py).
case("Compress", "axis1", lambda: with_weights("Compress", (3, 4), [_const("condition", [True, False, True, True], np.bool_)],
                                               axis=1), as_written=True)
# GridSample is rewritten into coordinate arithmetic, GatherElements and weighted sums (frontend/grid_sample.py).
case("GridSample", "linear-reflection", lambda: with_weights(
    "GridSample", (1, 2, 4, 5), [numpy_helper.from_array(RNG.uniform(-1.5, 1.5, (1, 3, 4, 2)).astype(np.float32), "grid")],
    opset=20, padding_mode="reflection"), as_written=True)
# Col2Im with constant image and block shapes: strided placements of each kernel tap, added (frontend/col2im.py).
case("Col2Im", "strides-pads", lambda: with_weights(
    "Col2Im", (1, 8, 6), [_const("image_shape", [5, 5], np.int64), _const("block_shape", [2, 2], np.int64)],
    opset=18, strides=[2, 2], pads=[0, 0, 1, 0]), as_written=True)
# DFT is rewritten into MatMuls with constant cosine and sine matrices (frontend/dft.py).
case("DFT", "rfft-axis1", lambda: with_weights("DFT", (2, 8, 1), [None, _const("axis", 1, np.int64)], opset=20, onesided=1),
     as_written=True)
# MaxUnpool is rewritten into a ScatterND of the flattened input into zeros (frontend/max_unpool.py).
case("MaxUnpool", "after-maxpool", lambda: _model(
    [h.make_node("MaxPool", ["x"], ["p", "i"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
     h.make_node("MaxUnpool", ["p", "i"], ["y"], name="unpool", kernel_shape=[2, 2], strides=[2, 2])],
    [("x", F, [1, 2, 4, 6])], [("y", F, [1, 2, 4, 6])]), as_written=True)
case("STFT", "onesided-frames", lambda: _model(
    [h.make_node("STFT", ["x", "step", "", "frame"], ["y"], name="stft", onesided=1)], [("x", F, [1, 40, 1])], ["y"],
    [_const("step", 5, np.int64), _const("frame", 10, np.int64)]), as_written=True)
# ScatterElements and ScatterND are rewritten into Equal masks, Where and Gather (frontend/scatter.py).
case("ScatterElements", "axis1-duplicates-add", lambda: with_weights(
    "ScatterElements", (3, 5), [_const("indices", [[0, 4], [-1, 4], [2, 2]], np.int64), _rand("updates", 3, 2)],
    axis=1, reduction="add", opset=18), as_written=True)
case("ScatterElements", "axis0-partial", lambda: with_weights(
    "ScatterElements", (4, 3), [_const("indices", [[3, -4]], np.int64), _rand("updates", 1, 2)]), as_written=True)
case("ScatterND", "pairs", lambda: with_weights(
    "ScatterND", (4, 3, 2), [_const("indices", [[0, 1], [3, -1]], np.int64), _rand("updates", 2, 2)]), as_written=True)
# NonZero is compiled only when its input is a constant (frontend/checks.py): here it computes the coordinates that a
# GatherND then reads from the real input.
case("NonZero", "constant-folded", lambda: _model(
    [h.make_node("NonZero", ["mask"], ["nz"], name="nonzero"), h.make_node("Transpose", ["nz"], ["idx"], name="transpose"),
     h.make_node("GatherND", ["x", "idx"], ["y"], name="gathernd")],
    [("x", F, [3, 4])], ["y"], [_const("mask", [[1, 0, 0, 2], [0, 0, 3, 0], [4, 5, 0, 0]])]))

# Recurrent. torch-mlir converts GRU and RNN only for direction=forward; hcc runs the others as forward ones.
case("GRU", "forward-full", lambda: _recurrent("GRU"))
case("GRU", "linear-before-reset", lambda: _recurrent("GRU", linear_before_reset=1))
case("GRU", "forward-no-bias-state", lambda: _recurrent("GRU", full=False))
case("GRU", "bidirectional", lambda: _recurrent("GRU", direction="bidirectional"))  # as forward ones (frontend/recurrent.py)
case("GRU", "reverse", lambda: _recurrent("GRU", direction="reverse"))  # as forward ones (frontend/recurrent.py)
case("RNN", "forward-full", lambda: _recurrent("RNN"))
case("RNN", "relu", lambda: _recurrent("RNN", activations=["Relu"]))
case("RNN", "bidirectional", lambda: _recurrent("RNN", direction="bidirectional"))  # as forward ones (frontend/recurrent.py)
case("RNN", "reverse", lambda: _recurrent("RNN", direction="reverse"))  # as forward ones (frontend/recurrent.py)

# Quantized ops (frontend/quantized.py rewrites them): compared bit for bit with onnxruntime on the model as written
# (`as_written`), since onnxruntime on hcc's rewrite would only check the rewrite against itself.
I8, I32 = T.INT8, T.INT32
_TIES = {"x": (np.arange(-48, 48, dtype=np.float32) * 0.25).reshape(2, 3, 16)}  # x / 0.5 = k / 2: every other one a tie
_U8_IN = {"x": np.arange(0, 256, 4, dtype=np.uint8).reshape(2, 4, 8)}
_I8_IN = {"x": np.arange(-128, 128, 4, dtype=np.int8).reshape(2, 4, 8)}


def _qmodel(node, inputs, outputs, inits, opset: int = 13, ms: bool = False):
    graph = h.make_graph([node], "op_case", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs], initializer=list(inits))
    opsets = [h.make_opsetid("", opset)] + ([h.make_opsetid("com.microsoft", 1)] if ms else [])
    return h.make_model(graph, opset_imports=opsets, ir_version=8)


def _qgemm():
    # 7-bit weights: onnxruntime's u8 x s8 kernels saturate pairs of products on CPUs without VNNI (AVX2 only)
    w = numpy_helper.from_array(np.random.default_rng(4).integers(-64, 64, (6, 16)).astype(np.int8), "w")
    node = h.make_node("QGemm", ["x", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"], ["y"], name="qgemm", domain="com.microsoft",
                       transB=1, alpha=0.75)
    inits = [_const("xs", 0.02), _const("xz", 7, np.uint8), w, _const("ws", [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]),
             _const("wz", [0] * 6, np.int8), _const("b", [-900, -300, 0, 300, 900, 2000], np.int32), _const("ys", 0.3), _const("yz", 100, np.uint8)]
    return _qmodel(node, [("x", U8, [4, 16])], [("y", U8, [4, 6])], inits, ms=True)


case("QuantizeLinear", "uint8-ties", lambda: _qmodel(h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q"),
                                                     [("x", F, [2, 3, 16])], [("y", U8, [2, 3, 16])], [_const("s", 0.5), _const("z", 3, np.uint8)]),
     feeds=_TIES, as_written=True)
case("QuantizeLinear", "int8-per-axis", lambda: _qmodel(h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q", axis=1),
                                                        [("x", F, [2, 3, 16])], [("y", I8, [2, 3, 16])],
                                                        [_const("s", [0.5, 0.03, 0.07]), _const("z", [0, -5, 9], np.int8)]),
     feeds=_TIES, as_written=True)
case("DequantizeLinear", "uint8", lambda: _qmodel(h.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], name="dq"),
                                                  [("x", U8, [2, 4, 8])], [("y", F, [2, 4, 8])], [_const("s", 0.0371), _const("z", 131, np.uint8)]),
     feeds=_U8_IN, as_written=True)
case("DequantizeLinear", "int8-per-axis", lambda: _qmodel(h.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], name="dq", axis=1),
                                                          [("x", I8, [2, 4, 8])], [("y", F, [2, 4, 8])],
                                                          [_const("s", [0.1, 0.02, 0.3, 0.0071]), _const("z", [0, 3, -3, 127], np.int8)]),
     feeds=_I8_IN, as_written=True)
case("DynamicQuantizeLinear", "", lambda: _qmodel(h.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"], name="dql"),
                                                  [("x", F, [3, 20])], [("y", U8, [3, 20]), ("ys", F, []), ("yz", U8, [])], [], opset=11),
     feeds=uniform(-2.5, 7.0, (3, 20)), as_written=True)
case("MatMulInteger", "uint8-int8", lambda: _qmodel(h.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="mmi"),
                                                    [("x", U8, [2, 4, 8])], [("y", I32, [2, 4, 5])],
                                                    [numpy_helper.from_array(np.arange(-20, 20, dtype=np.int8).reshape(8, 5) * 3, "w"),
                                                     _const("xz", 100, np.uint8), _const("wz", [0, 1, 2, 3, -4], np.int8)], opset=10),
     feeds=_U8_IN, as_written=True)
case("ConvInteger", "pads", lambda: _qmodel(h.make_node("ConvInteger", ["x", "w", "xz"], ["y"], name="convi", pads=[1, 1, 1, 1]),
                                            [("x", U8, [1, 2, 4, 8])], [("y", I32, [1, 3, 4, 8])],
                                            [numpy_helper.from_array(np.arange(-27, 27, dtype=np.int8).reshape(3, 2, 3, 3) * 4, "w"),
                                             _const("xz", 128, np.uint8)], opset=10),
     feeds={"x": _U8_IN["x"].reshape(1, 2, 4, 8)}, as_written=True)
case("QLinearMatMul", "int8-per-column", lambda: _qmodel(
    h.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qmm"),
    [("x", I8, [2, 4, 8])], [("y", I8, [2, 4, 3])],
    [_const("xs", 0.05), _const("xz", -3, np.int8), numpy_helper.from_array(np.arange(-12, 12, dtype=np.int8).reshape(8, 3) * 9, "w"),
     _const("ws", [0.01, 0.002, 0.03]), _const("wz", [0, 0, 0], np.int8), _const("ys", 0.2), _const("yz", 5, np.int8)]),
     feeds=_I8_IN, as_written=True)
# weights within 7 bits: onnxruntime's u8 x s8 kernels saturate pairs of products on CPUs without VNNI
case("QLinearConv", "per-channel-bias", lambda: _qmodel(
    h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="qconv", pads=[1, 1, 1, 1], strides=[1, 2]),
    [("x", U8, [1, 2, 4, 8])], [("y", U8, [1, 3, 4, 4])],
    [_const("xs", 0.05), _const("xz", 120, np.uint8), numpy_helper.from_array(np.arange(-27, 27, dtype=np.int8).reshape(3, 2, 3, 3) * 2, "w"),
     _const("ws", [0.01, 0.02, 0.005]), _const("wz", [0, 0, 0], np.int8), _const("ys", 0.25), _const("yz", 128, np.uint8),
     _const("b", [-500, 0, 700], np.int32)], opset=10),
     feeds={"x": _U8_IN["x"].reshape(1, 2, 4, 8)}, as_written=True)
case("com.microsoft.QGemm", "transB-alpha-bias", _qgemm, feeds={"x": _U8_IN["x"].reshape(4, 16)}, as_written=True)
case("com.microsoft.QLinearAdd", "uint8-per-row-operand", lambda: _qmodel(  # b is one value per span: the kernel's scalar path
    h.make_node("QLinearAdd", ["x", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["y"], name="qadd", domain="com.microsoft"),
    [("x", U8, [2, 4, 8])], [("y", U8, [2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", 131, np.uint8), numpy_helper.from_array(np.array([[[3], [250], [128], [77]]], np.uint8), "b"),
     _const("bs", 0.0213), _const("bz", 100, np.uint8), _const("ys", 0.0519), _const("yz", 120, np.uint8)], ms=True),
     feeds=_U8_IN, as_written=True)
case("com.microsoft.QLinearMul", "int8", lambda: _qmodel(
    h.make_node("QLinearMul", ["x", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["y"], name="qmul", domain="com.microsoft"),
    [("x", I8, [2, 4, 8])], [("y", I8, [2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", -3, np.int8), numpy_helper.from_array(np.arange(-64, 64, 4, dtype=np.int8).reshape(4, 8), "b"),
     _const("bs", 0.0213), _const("bz", 10, np.int8), _const("ys", 0.0519), _const("yz", 7, np.int8)], ms=True),
     feeds=_I8_IN, as_written=True)
case("com.microsoft.QLinearSigmoid", "uint8", lambda: _qmodel(
    h.make_node("QLinearSigmoid", ["x", "xs", "xz", "ys", "yz"], ["y"], name="qsig", domain="com.microsoft"),
    [("x", U8, [2, 4, 8])], [("y", U8, [2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", 131, np.uint8), _const("ys", 1 / 256), _const("yz", 0, np.uint8)],
    ms=True), feeds=_U8_IN, as_written=True)
case("com.microsoft.QLinearLeakyRelu", "int8", lambda: _qmodel(
    h.make_node("QLinearLeakyRelu", ["x", "xs", "xz", "ys", "yz"], ["y"], name="qleaky", domain="com.microsoft", alpha=0.1),
    [("x", I8, [2, 4, 8])], [("y", I8, [2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", -3, np.int8), _const("ys", 0.0189), _const("yz", -40, np.int8)],
    ms=True), feeds=_I8_IN, as_written=True)
case("com.microsoft.QLinearSoftmax", "uint8-opset13", lambda: _qmodel(
    h.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"], name="qsoftmax", domain="com.microsoft", axis=-1, opset=13),
    [("x", U8, [2, 4, 8])], [("y", U8, [2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", 131, np.uint8), _const("ys", 1 / 256), _const("yz", 0, np.uint8)], ms=True),
     feeds=_U8_IN, as_written=True)
def _dynamic_quantize_lstm():
    # what quantize_dynamic writes for an LSTM (frontend/dynamic_quantize_lstm.py); 7-bit weights, as _qgemm's
    rng = np.random.default_rng(6)
    inits = [numpy_helper.from_array(rng.integers(-64, 64, shape).astype(np.int8), name)
             for name, shape in (("w", (1, 5, 16)), ("r", (1, 4, 16)))]
    inits += [numpy_helper.from_array(rng.uniform(-0.5, 0.5, (1, 32)).astype(np.float32), "b"), _const("ws", [0.01]),
              _const("wz", [0], np.int8), _const("rs", [0.02]), _const("rz", [0], np.int8)]
    node = h.make_node("DynamicQuantizeLSTM", ["x", "w", "r", "b", "", "", "", "", "ws", "wz", "rs", "rz"], ["y", "y_h", "y_c"],
                       name="dq_lstm", domain="com.microsoft", hidden_size=4)
    return _qmodel(node, [("x", F, [3, 1, 5])], [("y", F, [3, 1, 1, 4]), ("y_h", F, [1, 1, 4]), ("y_c", F, [1, 1, 4])],
                   inits, ms=True)


case("com.microsoft.DynamicQuantizeLSTM", "forward", _dynamic_quantize_lstm, as_written=True, rtol=0, atol=0)
case("com.microsoft.QLinearGlobalAveragePool", "int8", lambda: _qmodel(
    h.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], name="qgap", domain="com.microsoft", channels_last=0),
    [("x", I8, [2, 4, 8])], [("y", I8, [2, 4, 1])], [_const("xs", 0.0371), _const("xz", -3, np.int8), _const("ys", 0.0077), _const("yz", 9, np.int8)],
    ms=True), feeds=_I8_IN, as_written=True)
case("com.microsoft.QLinearAveragePool", "uint8-3x3-padded", lambda: _qmodel(
    h.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], name="qap", domain="com.microsoft", channels_last=0,
                kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    [("x", U8, [1, 2, 4, 8])], [("y", U8, [1, 2, 4, 8])],
    [_const("xs", 0.0371), _const("xz", 3, np.uint8), _const("ys", 0.0371), _const("yz", 9, np.uint8)],
    ms=True), feeds={"x": np.arange(64, dtype=np.uint8).reshape(1, 2, 4, 8) * 4}, as_written=True)
# torch-mlir casts float -> uint8 with fptosi to i8 (127 for 128..255 in vector code); frontend/rewrites.py goes via int32
case("Cast", "float-to-uint8", lambda: _model([h.make_node("Cast", ["x"], ["y"], name="cast", to=U8)], [("x", F, [4, 64])], [("y", U8)]),
     feeds={"x": np.concatenate([np.arange(0, 252) + 0.25, [-1.0, 300.0, 255.9, -0.5]]).astype(np.float32).reshape(4, 64)})

# Classical ML (ai.onnx.ml, frontend/classical_ml.py rewrites it; tests/frontend/test_classical_ml.py tests it in depth)
def _ml(node, inputs, outputs):
    graph = h.make_graph([node], "op_case", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("ai.onnx.ml", 3)], ir_version=8)


def _ml_trees(kind: str):
    """Two trees over 3 features: tree 0 (x1 <= 0.2 ? (x0 < -0.5 ? a : b) : c), tree 1 (x2 > 0.1 ? d : e)."""
    nodes = dict(nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2], nodes_featureids=[1, 0, 0, 0, 0, 2, 0, 0],
                 nodes_values=[0.2, -0.5, 0, 0, 0, 0.1, 0, 0], nodes_truenodeids=[1, 3, 0, 0, 0, 1, 0, 0],
                 nodes_falsenodeids=[2, 4, 0, 0, 0, 2, 0, 0],
                 nodes_modes=["BRANCH_LEQ", "BRANCH_LT", "LEAF", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"])
    leaves = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    outputs = 1 if kind == "TreeEnsembleRegressor" else 3
    weights = [(t, n, k, 0.25 * (i + 1) - 0.5 * k) for i, (t, n) in enumerate(leaves) for k in range(outputs)]
    prefix, extra = ("target", {"n_targets": 1}) if outputs == 1 else ("class", {"classlabels_int64s": [3, 5, 9]})
    node = h.make_node(kind, ["x"], ["y"] if outputs == 1 else ["label", "y"], name="trees", domain="ai.onnx.ml", **nodes, **extra,
                       **{f"{prefix}_treeids": [w[0] for w in weights], f"{prefix}_nodeids": [w[1] for w in weights],
                          f"{prefix}_ids": [w[2] for w in weights], f"{prefix}_weights": [w[3] for w in weights]})
    outs = [("y", F, [8, 1])] if outputs == 1 else [("label", T.INT64, [8]), ("y", F, [8, 3])]
    return _ml(node, [("x", F, [8, 3])], outs)


_ML_X = [("x", F, [8, 3])]
case("ai.onnx.ml.Scaler", "", lambda: _ml(h.make_node("Scaler", ["x"], ["y"], name="scaler", domain="ai.onnx.ml", offset=[0.5, -1, 2],
                                                      scale=[2, 0.5, -3]), _ML_X, [("y", F, [8, 3])]), as_written=True)
case("ai.onnx.ml.Binarizer", "", lambda: _ml(h.make_node("Binarizer", ["x"], ["y"], name="binarizer", domain="ai.onnx.ml", threshold=0.1),
                                             _ML_X, [("y", F, [8, 3])]), as_written=True)
case("ai.onnx.ml.Normalizer", "L2", lambda: _ml(h.make_node("Normalizer", ["x"], ["y"], name="normalizer", domain="ai.onnx.ml", norm="L2"),
                                                _ML_X, [("y", F, [8, 3])]), as_written=True)
case("ai.onnx.ml.ArrayFeatureExtractor", "", lambda: _ml(h.make_node("ArrayFeatureExtractor", ["x", "i"], ["y"], name="extract", domain="ai.onnx.ml"),
                                                         _ML_X + [("i", T.INT64, [2])], [("y", F, [8, 2])]),
     feeds={"x": np.arange(24, dtype=np.float32).reshape(8, 3), "i": np.array([2, 0], np.int64)}, as_written=True)
case("ai.onnx.ml.LinearRegressor", "", lambda: _ml(h.make_node("LinearRegressor", ["x"], ["y"], name="linreg", domain="ai.onnx.ml",
                                                               coefficients=[1, -2, 0.5, 3, 0, -1], intercepts=[0.25, -1], targets=2),
                                                   _ML_X, [("y", F, [8, 2])]), as_written=True)
_ML_LINEAR = dict(coefficients=[1, -2, 0.5, 3, 0, -1, 0.5, 0.5, 0.5], intercepts=[0.25, -1, 0], classlabels_ints=[4, 2, 7], post_transform="SOFTMAX")
case("ai.onnx.ml.LinearClassifier", "softmax", lambda: _ml(h.make_node("LinearClassifier", ["x"], ["label", "y"], name="linclass",
                                                                       domain="ai.onnx.ml", **_ML_LINEAR),
                                                           _ML_X, [("label", T.INT64, [8]), ("y", F, [8, 3])]), as_written=True)
case("ai.onnx.ml.OneHotEncoder", "", lambda: _ml(h.make_node("OneHotEncoder", ["i"], ["y"], name="one_hot", domain="ai.onnx.ml",
                                                               cats_int64s=[0, 2, 5]), [("i", T.INT64, [4, 2])], [("y", F, [4, 2, 3])]),
     feeds={"i": np.array([[0, 1], [2, 5], [5, 5], [7, 0]], np.int64)}, as_written=True)
case("ai.onnx.ml.TreeEnsembleRegressor", "", lambda: _ml_trees("TreeEnsembleRegressor"), as_written=True)


def _ml_tree_v5():
    """Opset 5: tree 0 (x1 <= 0.2 ? (x0 < -0.5 ? l0 : l1) : l2), tree 1 (x2 > 0.1 ? l3 : l4)."""
    node = h.make_node("TreeEnsemble", ["x"], ["y"], name="trees", domain="ai.onnx.ml", n_targets=1, tree_roots=[0, 2],
                       nodes_featureids=[1, 0, 2], nodes_splits=numpy_helper.from_array(np.array([0.2, -0.5, 0.1], np.float32)),
                       nodes_modes=numpy_helper.from_array(np.array([0, 1, 3], np.uint8)), nodes_truenodeids=[1, 0, 3],
                       nodes_trueleafs=[0, 1, 1], nodes_falsenodeids=[2, 1, 4], nodes_falseleafs=[1, 1, 1], leaf_targetids=[0] * 5,
                       leaf_weights=numpy_helper.from_array(np.array([0.25, -1.0, 0.5, 2.0, -0.75], np.float32)))
    graph = h.make_graph([node], "op_case", [h.make_tensor_value_info("x", F, [8, 3])], [h.make_tensor_value_info("y", F, [8, 1])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 21), h.make_opsetid("ai.onnx.ml", 5)], ir_version=10)


case("ai.onnx.ml.TreeEnsemble", "opset5", _ml_tree_v5, as_written=True)
case("ai.onnx.ml.TreeEnsembleClassifier", "", lambda: _ml_trees("TreeEnsembleClassifier"), as_written=True)


def _ml_svm(kind: str):
    """Five support vectors over 3 features (classes of 2 and 3 vectors, or one regression), libsvm's layout."""
    rng = np.random.default_rng(11)
    common = dict(support_vectors=rng.standard_normal(15).tolist(), kernel_params=[0.4, 0.5, 2.0])
    if kind == "SVMRegressor":
        node = h.make_node(kind, ["x"], ["y"], name="svr", domain="ai.onnx.ml", n_supports=5, kernel_type="POLY", rho=[0.3],
                           coefficients=rng.uniform(-1, 1, 5).tolist(), **common)
        return _ml(node, [("x", F, [8, 3])], [("y", F, [8, 1])])
    node = h.make_node(kind, ["x"], ["label", "y"], name="svc", domain="ai.onnx.ml", classlabels_ints=[4, 9], vectors_per_class=[2, 3],
                       kernel_type="RBF", rho=[0.1], coefficients=rng.uniform(-1, 1, 5).tolist(), **common)
    return _ml(node, [("x", F, [8, 3])], [("label", T.INT64, [8]), ("y", F, [8, 2])])


# Imputer: Where(IsNaN) per column (frontend/classical_ml.py); random inputs hold no NaN, the replaced value 0 is
# checked against real NaN rows in tests/frontend/test_classical_ml.py
case("ai.onnx.ml.Imputer", "", lambda: _ml(h.make_node("Imputer", ["x"], ["y"], name="imputer", domain="ai.onnx.ml",
                                                        imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=float("nan")),
                                          [("x", F, [8, 3])], [("y", F, [8, 3])]), as_written=True)
# SVMs: the kernel matrix (one GEMM, or RBF's differences), one-vs-one decisions and votes (frontend/svm.py)
case("ai.onnx.ml.SVMClassifier", "rbf", lambda: _ml_svm("SVMClassifier"), as_written=True)
case("ai.onnx.ml.SVMRegressor", "poly", lambda: _ml_svm("SVMRegressor"), as_written=True)
# Det is Gaussian elimination with partial pivoting, unrolled over the matrix size (frontend/det.py).
case("Det", "batch-4x4", lambda: unary("Det", shape=(2, 3, 4, 4), opset=22), as_written=True)
# RoiAlign is coordinate arithmetic, GatherElements of the corner pixels and reductions (frontend/roi_align.py).
case("RoiAlign", "avg-half-pixel", lambda: with_weights(
    "RoiAlign", (2, 3, 8, 8), [_const("rois", [[0.5, 1.0, 6.0, 7.5], [-1.0, 2.0, 3.0, 9.0], [2.0, 2.0, 2.5, 3.0]]),
                               _const("batch_indices", [1, 0, 1], np.int64)],
    opset=16, output_height=3, output_width=2, sampling_ratio=2), as_written=True)


# Every case compiles a model (about 2.5 s on 2 cores). To keep the default run (`make test`) inside its 20-minute
# budget, it runs the first case of each op listed before the widening; `make test-all` (slow) runs every case: the
# further variants and all cases of the widening. The strict xfails (a fast, clear refusal) run in both.
_first_seen: set[str] = set()
for _i, _param in enumerate(CASES):
    default = _i < _WIDENED_FROM and _param.values[0] not in _first_seen
    _first_seen.add(_param.values[0])
    if not default and not any(m.name == "xfail" for m in _param.marks):
        CASES[_i] = pytest.param(*_param.values, id=_param.id, marks=[*_param.marks, pytest.mark.slow])


@pytest.mark.parametrize("op, build, kwargs", CASES)
def test_op(op, build, kwargs, compile_check, monkeypatch):
    model = build()
    used = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.graph.node}
    assert op in used
    # Let blocked ops through the whitelist so that their cases exercise the real failure (or pass).
    monkeypatch.setattr(ops_module, "SUPPORTED_OPS", SUPPORTED_OPS | (used & BLOCKED_OPS.keys()))
    compile_check(model, **kwargs)


def _is_xfail(param) -> bool:
    return any(m.name == "xfail" for m in param.marks)


def test_every_supported_op_is_covered():
    proven = {p.values[0] for p in CASES if not _is_xfail(p)}
    with_cases = {p.values[0] for p in CASES}
    assert sorted(SUPPORTED_OPS - proven) == [], "supported ops without a passing coverage case"
    assert sorted(with_cases - SUPPORTED_OPS - BLOCKED_OPS.keys()) == [], "coverage cases for ops listed nowhere"
    assert sorted(SUPPORTED_OPS & BLOCKED_OPS.keys()) == [], "ops both supported and blocked"
    assert sorted(BLOCKED_OPS.keys() - {p.values[0] for p in CASES if _is_xfail(p)}) == [], "blocked ops without a failing case"
