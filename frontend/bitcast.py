"""BitCast (opset 26) before the opset conversion: opset 22 lacks it, and hcc has no reinterpreting cast.

A constant input is folded with numpy's `.view`. Otherwise the bits are computed with exact arithmetic of opset-22
ops, through the source's two's-complement pattern S (a signed integer of the common width w, held in int32 for
w <= 16 and in int64 above):
  float -> S: the biased exponent e is found by a binary search (E steps of Gather + GreaterOrEqual + Where) over
  the table of the powers 2^(k - bias); the mantissa is |x| times 2^(bias - e) (a power of two: exact) times 2^M,
  minus the hidden bit for normal numbers, cast to integer (exact below 2^(M+1)); S = e * 2^M + m, minus 2^(w-1)
  when the sign is set (x < 0, or x == 0 with 1/x < 0: -0.0).
  S -> float: the magnitude bits split into e and m by integer division; the value is (m + 2^M for normal numbers)
  times 2^(e - bias - M) from a table: exact products, subnormals included.
  integer <-> integer: S wraps into the target's range with Where and exact adds of 2^w (an INT16 result is a
  Gather from the table of the 65,536 patterns: torch-mlir's Cast has no INT16 target).
Floats are worked on in float32 (float16 widens exactly) or float64. Differences: a NaN becomes the canonical quiet
NaN (its sign and payload are not carried through the arithmetic), and its bits read as 0x7FC00000-style patterns.
Refused by name: UINT64 (hcc holds it as int64 without a wider type to wrap through), bfloat16, the float8/4-bit
types and strings.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes

T = TensorProto
# float type: (exponent bits, mantissa bits, work type)
FLOATS = {T.FLOAT: (8, 23, T.FLOAT), T.DOUBLE: (11, 52, T.DOUBLE), T.FLOAT16: (5, 10, T.FLOAT)}
# integer type: (width, signed)
INTS = {T.INT8: (8, True), T.UINT8: (8, False), T.INT16: (16, True), T.UINT16: (16, False), T.INT32: (32, True),
        T.UINT32: (32, False), T.INT64: (64, True), T.BOOL: (8, False)}
WIDTH = {T.FLOAT: 32, T.DOUBLE: 64, T.FLOAT16: 16, **{k: v[0] for k, v in INTS.items()}}


def _np(elem: int) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem))


class _Builder(CountedNodes):
    def i(self, value, elem: int) -> str:
        return self.const(np.asarray(value, _np(elem)), "c")

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", [x], "cast", to=to)


def _float_to_pattern(b: _Builder, x: str, src: int, wide: int) -> str:
    """S (in `wide`) of the float tensor x."""
    exp_bits, man_bits, work = FLOATS[src]
    bias, top = (1 << (exp_bits - 1)) - 1, (1 << exp_bits) - 1
    wnp = _np(work)
    if work != src:
        x = b.cast(x, work)
    a = b.op("Abs", [x], "abs")
    zero = b.const(np.zeros((), wnp), "zero")
    neg = b.op("Or", [b.op("Less", [x, zero], "lt0"),
                      b.op("And", [b.op("Equal", [x, zero], "eq0"),
                                   b.op("Less", [b.op("Reciprocal", [x], "inv"), zero], "neg_zero")], "minus_zero")],
               "sign")
    ks = np.arange(top + 1, dtype=np.float64)
    with np.errstate(over="ignore"):
        thresholds = np.ldexp(1.0, (ks - bias).astype(int)).astype(wnp)  # k = top: 2^(bias+1) is inf in the type
    thresholds[top] = np.inf
    thresholds_name = b.const(thresholds, "thresholds")
    e = b.const(np.zeros((), np.int64), "e0")
    e = b.op("Expand", [e, b.op("Shape", [a], "shape")], "e")
    for bit in reversed(range(exp_bits)):
        candidate = b.op("Add", [e, b.i(1 << bit, T.INT64)], "cand")
        ge = b.op("GreaterOrEqual", [a, b.op("Gather", [thresholds_name, candidate], "thr", axis=0)], "ge")
        e = b.op("Where", [ge, candidate, e], "e")
    scales = np.ldexp(1.0, (bias - np.maximum(ks, 1)).astype(int)).astype(wnp)  # 2^(bias - e); subnormals e = 1
    scales[top] = 0
    frac = b.op("Mul", [b.op("Mul", [a, b.op("Gather", [b.const(scales, "scales"), e], "scale", axis=0)], "unit"),
                        b.const(np.asarray(2.0 ** man_bits, wnp), "two_m")], "frac")
    normal = b.op("Greater", [e, b.i(0, T.INT64)], "normal")
    frac = b.op("Where", [normal, b.op("Sub", [frac, b.const(np.asarray(2.0 ** man_bits, wnp), "hidden")], "m"), frac],
                "mantissa")
    finite = b.op("Less", [e, b.i(top, T.INT64)], "finite")
    frac = b.op("Where", [finite, frac, zero], "mantissa_finite")  # inf: mantissa 0 (0 * inf would be NaN)
    bits = b.op("Add", [b.op("Mul", [b.cast(e, wide), b.i(1 << man_bits, wide)], "exp_bits"), b.cast(frac, wide)], "bits")
    nan_bits = (top << man_bits) | (1 << (man_bits - 1))
    bits = b.op("Where", [b.op("IsNaN", [x], "nan"), b.i(nan_bits, wide), bits], "bits_nan")
    width = WIDTH[src]
    return b.op("Where", [neg, b.op("Add", [bits, b.i(-(1 << (width - 1)), wide)], "signed"), bits], "pattern")


def _pattern_to_float(b: _Builder, s: str, dst: int, wide: int) -> str:
    exp_bits, man_bits, work = FLOATS[dst]
    bias, top = (1 << (exp_bits - 1)) - 1, (1 << exp_bits) - 1
    wnp, width = _np(work), WIDTH[dst]
    neg = b.op("Less", [s, b.i(0, wide)], "neg")
    if width == 64:  # S + 2^63 in two steps, each in range
        half = b.i(1 << 62, wide)
        cleared = b.op("Add", [b.op("Add", [s, half], "half"), half], "cleared")
    else:
        cleared = b.op("Add", [s, b.i(1 << (width - 1), wide)], "cleared")
    mag = b.op("Where", [neg, cleared, s], "magnitude")
    e = b.op("Div", [mag, b.i(1 << man_bits, wide)], "e")
    m = b.op("Sub", [mag, b.op("Mul", [e, b.i(1 << man_bits, wide)], "e_bits")], "m")
    normal = b.op("Greater", [e, b.i(0, wide)], "normal")
    significand = b.op("Where", [normal, b.op("Add", [m, b.i(1 << man_bits, wide)], "hidden"), m], "significand")
    ks = np.arange(top + 1)
    powers = np.ldexp(1.0, np.maximum(ks, 1) - bias - man_bits).astype(wnp)  # 2^(e - bias - M), exact in the type
    e64 = b.cast(e, T.INT64) if wide != T.INT64 else e
    value = b.op("Mul", [b.cast(significand, work), b.op("Gather", [b.const(powers, "powers"), e64], "power", axis=0)],
                 "value")
    special = b.op("Where", [b.op("Equal", [m, b.i(0, wide)], "m0"), b.const(np.asarray(np.inf, wnp), "inf"),
                             b.const(np.asarray(np.nan, wnp), "nan")], "special")
    value = b.op("Where", [b.op("Equal", [e, b.i(top, wide)], "top"), special, value], "value_special")
    sign = b.op("Where", [neg, b.const(np.asarray(-1.0, wnp), "minus"), b.const(np.asarray(1.0, wnp), "plus")], "sign")
    value = b.op("Mul", [value, sign], "signed")  # not Where(neg, -value, value): Where makes a selected -0.0 +0.0
    return b.cast(value, dst) if work != dst else value


def bitcast_nodes(node: onnx.NodeProto, src: int, constant: np.ndarray | None,
                  path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the BitCast `node` whose input has element type `src`."""
    where = f"{path}: node '{node.name}' (BitCast)"
    dst = next((a.i for a in node.attribute if a.name == "to"), None)
    name = T.DataType.Name
    if dst is None:
        raise HccError(f"{where}: the attribute 'to' is missing")
    for elem in (src, dst):
        if elem not in WIDTH:
            raise HccError(f"{where}: type {name(elem)}; hcc compiles BitCast between float16/float/double, bool and "
                           "8- to 64-bit integers other than UINT64")
    if WIDTH[src] != WIDTH[dst]:
        raise HccError(f"{where}: {name(src)} and {name(dst)} differ in width")
    b = _Builder(node)
    x, out = node.input[0], node.output[0]
    if constant is not None:
        b.nodes.append(helper.make_node("Constant", [], [out], name=node.name,
                                        value=numpy_helper.from_array(np.ascontiguousarray(constant).view(_np(dst)), out)))
        return b.nodes, b.inits
    width = WIDTH[src]
    if src == dst:
        result = x
    elif T.BOOL in (src, dst):  # a bool byte is 0 or 1 (any other byte is no bool)
        result = b.cast(x, dst)
    else:
        wide = T.INT64 if width > 16 else T.INT32
        if src in FLOATS:
            s = _float_to_pattern(b, x, src, wide)
        else:
            v = b.cast(x, wide) if src != wide else x
            if not INTS[src][1]:  # unsigned: values from 2^(w-1) up are negative patterns
                big = b.op("GreaterOrEqual", [v, b.i(1 << (width - 1), wide)], "big")
                v = b.op("Where", [big, b.op("Sub", [v, b.i(1 << width, wide)], "wrapped"), v], "pattern")
            s = v
        if dst in FLOATS:
            result = _pattern_to_float(b, s, dst, wide)
        elif dst == T.INT16:  # torch-mlir's Cast has no INT16 target: a Gather from the table of the patterns
            table = b.const(np.arange(-(1 << 15), 1 << 15).astype(np.int16), "int16_patterns")
            index = b.cast(b.op("Add", [s, b.i(1 << 15, wide)], "index"), T.INT64)
            result = b.op("Gather", [table, index], "int16", axis=0)
        elif INTS[dst][1]:
            result = b.cast(s, dst) if dst != wide else s
        else:
            s64 = b.cast(s, T.INT64) if wide != T.INT64 else s
            wrapped = b.op("Add", [s64, b.i(1 << width, T.INT64)], "unsigned")
            result = b.cast(b.op("Where", [b.op("Less", [s64, b.i(0, T.INT64)], "neg"), wrapped, s64], "u"), dst)
    if b.nodes and b.nodes[-1].output[0] == result:
        b.nodes[-1].output[0], b.nodes[-1].name = out, node.name
    else:
        b.nodes.append(helper.make_node("Identity", [result], [out], name=node.name))
    return b.nodes, b.inits


def _rewrite(node: onnx.NodeProto, facts: GraphFacts, path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    src = facts.types.get(node.input[0])
    if src is None:
        raise HccError(f"{path}: node '{node.name}' (BitCast): the type of its input is not known")
    return bitcast_nodes(node, src, facts.constants.get(node.input[0]), path)


def rewrite_bitcast(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph BitCast replaced (the model itself when it has none)."""
    return rewrite_op(model, path, "BitCast", _rewrite)
