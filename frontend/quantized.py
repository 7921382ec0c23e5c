"""Quantized models: the ONNX quantization ops, and the QDQ groups onnxruntime fuses, rewritten into float and
integer ops that give onnxruntime's integers exactly.

Why a rewrite at the ONNX level: every backend then compiles ordinary Cast/Sub/Mul/Div/Round/Where/Conv/MatMul
nodes, and the rounding of each step is spelled out here instead of being left to a converter (torch-mlir's
quantized-tensor conversions round and saturate their own way).

What onnxruntime 1.31's CPU provider computes, and hcc with it (measured against it, ties and saturation included,
tests/frontend/test_quantized.py):
* DequantizeLinear: y = float(x - zp) * scale: an exact integer difference, one float rounding.
* QuantizeLinear (MLAS): v = x / scale (a division: multiplying by the reciprocal differs on ties), clamped to
  [qmin - zp, qmax - zp] as `maxps`/`minps` do (a NaN becomes qmin), rounded half to even, plus zp.
* ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul, com.microsoft.QGemm: the exact int32 sum of
  (x - x_zp)(w - w_zp) (plus the int32 bias), then for the QLinear ops v = float(sum) * scale with
  scale = x_scale * w_scale / y_scale computed in float in that order (QGemm: alpha * a_scale * b_scale [/ y_scale]),
  clamped, rounded half to even, plus y_zp.
* DynamicQuantizeLinear: min and max of the data (NaNs skipped) widened to include 0, scale = (max - min) / 255
  (1 when max == min), zp = round(clamp(-min / scale, 0, 255)), then QuantizeLinear.

Why the sums are exact: hcc computes them as float32 Conv/MatMul of the zero-point-shifted integers. Every partial
sum of such a product is an integer of magnitude at most max|x - x_zp| * sum|w - w_zp| over one filter (or column),
and float32 holds every integer up to 2^24 exactly, so when that bound is at most 2^24 every addition is exact in
any order (and an FMA too). The bound is known at compile time for constant weights (max|x - x_zp| follows from the
activation's type and zero point). When it is larger and the activation's zero point is one value (a constant, or
for a MatMul one known at run time: DynamicQuantizeLinear's), the activation is centered (x - 128 for uint8, x for
int8: |a'| <= 128 instead of 255) and sum(a * w) = product(a', w) + shift * rowsum(w), the per-channel integer
offset added once; where even the centered sums may pass 2^24, they are taken in
slices of the input channels (a MatMul's columns of A), each exact in float32, added in int32: the work of one
product. Otherwise the weights are split as w = 16*hi + lo and the two float32 products, each within the bound, are
added in int32 (twice the work); when even those exceed it (or the weights are not constants), the product is
computed in float64, which is exact up to 2^53. The integer sum then becomes float exactly as onnxruntime converts
it (round to nearest even): an int32 conversion, or one float32 addition of two exact integers, which rounds their
total the same way. (Measured: a QDQ ResNet-18's 3x3 convolutions of 128..512 channels had all been split in
halves; centered and sliced, it ran 63 -> 48 ms at 1 thread, onnxruntime 39 ms, 2026-12-06 on the AVX2 host.)

QDQ models: onnxruntime's graph optimizer (level 2, on by default) replaces DequantizeLinear -> Conv/MatMul/Gemm ->
QuantizeLinear groups by QLinearConv / QLinearMatMul / com.microsoft.QGemm (a DequantizeLinear -> MatMul without a
QuantizeLinear by com.microsoft.MatMulIntegerToFloat), so such a model computes the integer kernels' result, not
the one its float ops spell out, and the two differ in the last quantization step. `fuse_qdq_groups` fuses the same
groups by onnxruntime's rules for its CPU provider on x86 (qdq_selectors.cc: every input of the op from a
DequantizeLinear, its one output read only by a QuantizeLinear, a Relu/Clip in between dropped when the
QuantizeLinear saturates the same way, matching 8-bit types, int8 activations only where onnxruntime turns an int8
Q/DQ pair into uint8 (a pair whose DequantizeLinear has one reader, as EnsureUniqueDQForNodeUnit runs first, and
whose QuantizeLinear does not read a constant, which constant folding makes an int8 initializer), an int32 bias).
Add, Mul, GlobalAveragePool, AveragePool, Sigmoid, LeakyRelu and Softmax groups become com.microsoft.QLinear<op>, as in
onnxruntime: QLinearAdd and QLinearMul are Gathers from the 256 x 256 tables of its x86 kernels' results
(frontend/mlas_emulation.py; the kernel type, uint8 after that conversion, decides the rounding), QLinearSigmoid and
QLinearLeakyRelu Gathers from the 256-entry tables onnxruntime builds (MLAS's logistic polynomial emulated),
QLinearGlobalAveragePool an exact integer sum requantized like QLinearConv, QLinearAveragePool its float32 steps
(dequantize, pool, divide, add the zero point, round), QLinearSoftmax its exp table with the row sums in its order.
A group onnxruntime turns into an integer kernel hcc does not reproduce (an 8-bit linear Resize) is refused by name;
QLinearConcat's and QLinearWhere's lookup tables are the group's own float arithmetic, so Concat and Where groups
compile unfused. Ops between a DequantizeLinear and a QuantizeLinear
that onnxruntime leaves in float are compiled in float like any other (onnxruntime's float Conv sums in another
order, so a float group's quantized output can then differ from onnxruntime's in the last step).

Not supported (refused naming the node): 16-bit, 4-bit, 2-bit and float8 quantized types, scales other than float32,
float16 inputs to QuantizeLinear.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend import mlas_emulation
from hcc.frontend.attributes import attr_value
from hcc.frontend.dynamic_quantize_lstm import rewrite_dynamic_quantize_lstms, share_identical_initializers
from hcc.frontend.node_rewrite import NodeEmitter, RewriteGraph, input_at, type_name

EXACT_FLOAT32 = 1 << 24  # every integer up to this magnitude is a float32
EXACT_FLOAT64 = 1 << 53
MAX_REDUCTION_CHUNKS = 8  # a centered product split into more slices than this is split into weight halves instead
EIGHT_BIT = {TensorProto.INT8: (-128, 127), TensorProto.UINT8: (0, 255)}
# QuantizeLinear and DequantizeLinear alone also take 16-bit integers (no integer kernel fuses them in onnxruntime)
RANGES = {**EIGHT_BIT, TensorProto.INT16: (-32768, 32767), TensorProto.UINT16: (0, 65535)}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                           "MatMulInteger", "ConvInteger"})
MS_DOMAIN = "com.microsoft"
# com.microsoft ops a model may hold (QOperator format) or the QDQ fusion writes (MatMulIntegerToFloat: only fused here)
MS_QUANTIZED_OPS = frozenset({"QGemm", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
                              "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"})
MAX_SOFTMAX_ROW = 4096  # QLinearSoftmax's sequential row sum is a chain of this many Adds at most
# Not Where: onnxruntime's QLinearWhere (WhereQDQRules) maps each input through QlinearBuildLookupTable with the
# identity, MlasQuantizeLinear(scale * (x - zp)) (or copies it when its scale and zero point are the output's), and
# picks by the condition: the DequantizeLinear -> Where -> QuantizeLinear the model spells out, which hcc computes bit
# for bit, so the group compiles unfused (as Concat's, below).
# Ops whose QDQ groups onnxruntime fuses into com.microsoft kernels that hcc reproduces (as QLinear<op>)
ORT_TABLE_KERNELS = frozenset({"Add", "Mul", "GlobalAveragePool", "AveragePool", "Sigmoid", "LeakyRelu", "Softmax"})
POOL_ATTRS = ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")  # AveragePool's, kept when fused
# Not Concat: onnxruntime's QLinearConcat copies an input whose scale and zero point are the output's and maps any
# other through a 256-entry table built as MlasQuantizeLinear(x_scale * (x - x_zp)) (qlinear_concat.cc,
# qlinear_lookup_table.cc): exactly the DequantizeLinear -> Concat -> QuantizeLinear the model spells out, which hcc
# computes bit for bit (a copy included: round((x - zp) * s / s) is x - zp), so the group compiles unfused.
F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)

class _Refused(Exception):
    """A node hcc does not compile; the reason names what (the caller adds the file and node)."""


class _UnknownShape(_Refused):
    """A shape or type onnx's inference could not give: it may follow from an earlier com.microsoft op once that op
    is expanded."""


# ------------------------------------------------------------------------------------------------- parameters


def _elem(g: RewriteGraph, name: str) -> int:
    if name not in g.types:
        raise _UnknownShape(f"the element type of '{name}' is unknown")
    return g.types[name]


def _shape(g: RewriteGraph, name: str) -> list[int]:
    shape = g.shapes.get(name)
    if shape is None:
        raise _UnknownShape(f"the shape of '{name}' is unknown")
    return shape


def _param(g: RewriteGraph, name: str):
    """A quantization parameter: its constant value, or its name."""
    value = g.constant(name)
    return value if value is not None else name


def _eight_bit(g: RewriteGraph, name: str, what: str) -> tuple[int, int]:
    elem = _elem(g, name)
    if elem not in EIGHT_BIT:
        raise _Refused(f"{what} '{name}' has type {type_name(elem)}: hcc compiles 8-bit integer quantization (INT8, UINT8) only")
    return EIGHT_BIT[elem]


def _float32_scale(g: RewriteGraph, name: str, what: str = "scale") -> None:
    elem = _elem(g, name)
    if elem != TensorProto.FLOAT:
        raise _Refused(f"{what} '{name}' has type {type_name(elem)}: hcc compiles float32 scales only")


def _align(e: NodeEmitter, g: RewriteGraph, name: str, rank: int, axis: int | None, length: int, block_size: int = 0, role: str = "scale"):
    """A scale or zero point shaped to broadcast against a rank-`rank` tensor whose quantization axis `axis` has
    `length` elements: per tensor (one element), per axis (1-D), or blocked (same rank, `block_size` per block)."""
    value, shape = _param(e.g, name), _shape(g, name)
    size = int(np.prod(shape)) if shape else 1
    if block_size > 0:
        if axis is None:
            raise _Refused(f"blocked quantization needs an axis within the input's rank {rank}")
        if len(shape) != rank:
            raise _Refused(f"blocked {role} '{name}' must have the input's rank {rank}, not {len(shape)}")
        if shape[axis] != -(-length // block_size):
            raise _Refused(f"blocked {role} '{name}' has {shape[axis]} blocks on axis {axis}, expected {-(-length // block_size)}")
        return e.gather(value, np.arange(length) // block_size, axis)
    if size == 1:
        return e.reshape(value, [], f"{role.replace(' ', '_')}_scalar") if shape else value
    if axis is None or len(shape) != 1 or shape[0] != length:
        where = f"axis {axis} has {length}" if axis is not None else f"the input has rank {rank}"
        raise _Refused(f"{role} '{name}' has shape {shape}: per-axis quantization needs one value per element of the axis ({where})")
    return e.reshape(value, [length if d == axis else 1 for d in range(rank)], f"{role.replace(' ', '_')}_axis")


def _zero_point_bound(g: RewriteGraph, zp_name: str, elem: int) -> int:
    """max |x - zp| over every x of the 8-bit type `elem` (the zero point's value when it is a constant)."""
    lo, hi = EIGHT_BIT[elem]
    zp = g.constant(zp_name)
    if zp is None:
        return hi - lo if zp_name else max(hi, -lo)
    zp = zp.astype(np.int64)
    return int(max(np.max(hi - zp), np.max(zp - lo)))


def _shifted(e: NodeEmitter, x: str, zp) -> object:
    """float32(x - zp) for an 8- or 16-bit x: exact."""
    xf = e.cast(x, F32)
    return xf if zp is None else e.sub(xf, e.cast(zp, F32), "shift")


def _saturate(e: NodeEmitter, v, zp, elem: int, output: str) -> str:
    """MLAS's last steps of QuantizeLinear and of requantization: clamp v to [qmin - zp, qmax - zp] (maxps, minps),
    round half to even, add zp, store as the 8- or 16-bit type (INT16 through a Gather from the table of its values:
    torch-mlir's Cast has no INT16 target)."""
    qmin, qmax = RANGES[elem]
    zpf = e.cast(zp, F32) if zp is not None else np.float32(0)
    lo = e.sub(np.array(qmin, F32), zpf, "lo")
    hi = e.sub(np.array(qmax, F32), zpf, "hi")
    v = e.max_where(v, lo, "clamp_lo")
    v = e.min_where(v, hi, "clamp_hi")
    r = e.round_even(v)
    if zp is not None:
        r = e.add(r, zpf, "plus_zp")
    if elem == TensorProto.INT16 and not isinstance(r, np.ndarray):
        index = e.add(e.cast(r, np.int64), np.array(32768, np.int64), "table_index")
        table = np.arange(-32768, 32768).astype(np.int16)
        return e.result(e.op("Gather", [table, index], np.int16, "int16", axis=0), output)
    return e.result(e.cast(r, helper.tensor_dtype_to_np_dtype(elem)), output)


# ------------------------------------------------------------------------------------------------- exact sums


def _l1_rows(w: np.ndarray, reduce_axes: tuple[int, ...]) -> int:
    return int(np.abs(w.astype(np.int64)).sum(axis=reduce_axes).max()) if w.size else 0


@dataclass
class _Acc:
    """An exact integer product: `value` (float32 holding exact integers, or int32) plus `offset`, an integer
    constant per output channel (broadcastable; None for 0) still to be added, once, where the sum becomes float."""

    value: object
    dtype: np.dtype
    bound: int
    offset: np.ndarray | str | None = None  # a constant, or an int32 tensor (a zero point known at run time)


@dataclass
class _Centered:
    """The product with its activation centered: a' = x - mid, so |a'| <= 128 (not 255), and a = a' - shift.
    `operand` is a', `product` the op computing with it (a convolution's padding made explicit: a' there is
    zp - mid, an a of 0), `shift` = mid - zp, so sum(a * w) = product(a', w) + shift * rowsum(w). The sum may be
    split along the reduction: `part(lo, hi)` is a' restricted to reduction slices lo..hi-1 (input channels of a
    convolution, columns of a MatMul's A), which are the weights' `axis`."""

    operand: object
    product: object
    shift: int | str  # a constant, or a float32 scalar tensor
    offset_shape: list[int]
    part: object
    axis: int


def _reduction_chunks(b: np.ndarray, axis: int, reduce_axes: tuple[int, ...], limit: int) -> list[tuple[int, int]] | None:
    """Consecutive slices of `axis` (one of `reduce_axes`) whose sums |b| stay within `limit` for every output (the
    other axes), taken greedily; None if a single slice already exceeds it."""
    other = tuple(a for a in reduce_axes if a != axis)
    weights = np.abs(b.astype(np.int64))
    per_slice = np.moveaxis(weights.sum(axis=other, keepdims=True) if other else weights, axis, 0)
    per_slice = per_slice.reshape(per_slice.shape[0], -1)  # [slices, outputs]
    chunks, start, running = [], 0, np.zeros(per_slice.shape[1], np.int64)
    for index, row in enumerate(per_slice):
        if int(row.max(initial=0)) > limit:
            return None
        if int((running + row).max(initial=0)) > limit:
            chunks.append((start, index))
            start, running = index, np.zeros_like(running)
        running += row
    chunks.append((start, per_slice.shape[0]))
    return chunks


def _exact_product(e: NodeEmitter, product, a_f32, amax: int, b, bmax: int, k: int, reduce_axes: tuple[int, ...],
                   centered=None) -> _Acc:
    """The exact integer result of `product(a, b)` (a Conv or MatMul) of shifted 8-bit operands.

    `b` is an int32 constant (shifted weights) or a float32 tensor; amax/bmax bound |a| and |b|, k is the length
    of the sums; `centered` (a callable giving a _Centered, or None) offers the centered form. A float32 product
    whose partial sums may pass 2^24 is computed, in order of preference: centered (half the bound, one product),
    split into two products (w = 16 hi + lo), or in float64."""
    if isinstance(b, np.ndarray):
        bound = amax * _l1_rows(b, reduce_axes)
        if bound <= EXACT_FLOAT32:
            return _Acc(product(a_f32, b.astype(F32), "acc"), F32, bound)
        center = centered() if centered is not None else None
        if center is not None:
            chunks = _reduction_chunks(b, center.axis, reduce_axes, EXACT_FLOAT32 // 128)
            sums = b.astype(np.int64).sum(axis=reduce_axes).reshape(center.offset_shape)
            if isinstance(center.shift, int):
                offset = center.shift * sums
            else:  # a zero point known at run time (DynamicQuantizeLinear's): |shift| <= 128, int32 is exact
                offset = e.mul(e.cast(center.shift, I32), sums.astype(I32), "offset")
            if chunks is not None and len(chunks) == 1:
                return _Acc(center.product(center.operand, b.astype(F32), "acc_centered"), F32, bound, offset)
            if chunks is not None and len(chunks) <= MAX_REDUCTION_CHUNKS and center.part is not None:
                # each slice's sum exact in float32, their total in int32: the work of one product, not two
                total = None
                for lo, hi in chunks:
                    weights = np.take(b, np.arange(lo, hi), axis=center.axis).astype(F32)
                    part = e.cast(center.product(center.part(lo, hi), weights, f"acc_part{lo}"), I32)
                    total = part if total is None else e.add(total, part, f"acc_sum{lo}")
                return _Acc(e.add(total, offset.astype(I32) if isinstance(offset, np.ndarray) else offset, "acc"), I32, bound)
        hi = np.rint(b / 16.0).astype(np.int32)
        lo = b - 16 * hi
        if amax * max(_l1_rows(hi, reduce_axes), _l1_rows(lo, reduce_axes)) <= EXACT_FLOAT32:
            acc_hi = e.cast(product(a_f32, hi.astype(F32), "acc_hi"), I32)
            acc_lo = e.cast(product(a_f32, lo.astype(F32), "acc_lo"), I32)
            return _Acc(e.add(e.mul(acc_hi, np.array(16, I32), "hi_x16"), acc_lo, "acc"), I32, bound)
        if bound > EXACT_FLOAT64:
            raise _Refused(f"its integer sums can reach {bound}, beyond what hcc computes exactly")
        return _Acc(e.cast(product(e.cast(a_f32, F64), b.astype(F64), "acc64"), I32), I32, bound)
    bound = amax * bmax * k
    if bound <= EXACT_FLOAT32:
        return _Acc(product(a_f32, b, "acc"), F32, bound)
    return _Acc(e.cast(product(e.cast(a_f32, F64), e.cast(b, F64), "acc64"), I32), I32, bound)


def _integer_sum(e: NodeEmitter, acc: _Acc):
    """The int32 sum (MatMulInteger, ConvInteger): exact whatever its size, the offset added in int32."""
    value = e.cast(acc.value, I32)
    if acc.offset is None:
        return value
    return e.add(value, acc.offset.astype(I32) if isinstance(acc.offset, np.ndarray) else acc.offset, "plus_offset")


def _to_float_with_bias(e: NodeEmitter, acc: _Acc, bias):
    """float32(acc + bias) as onnxruntime forms it: the int32 sum, converted with round to nearest even. Exact float32
    integers whose total may pass 2^24 are added once, in float32, which rounds that total to nearest even too."""
    if acc.offset is not None and not isinstance(acc.offset, np.ndarray) and bias is None:
        # a run-time int32 offset, within 128 * rowsum|w| <= 2^24 (the centered product's condition): exact in float32
        return e.add(acc.value, e.cast(acc.offset, F32), "plus_offset")
    if acc.offset is not None:
        constant = None if not isinstance(acc.offset, np.ndarray) else \
            acc.offset if bias is None else acc.offset + bias.astype(np.int64) if isinstance(bias, np.ndarray) else None
        if constant is not None and int(np.abs(constant).max(initial=0)) <= EXACT_FLOAT32:
            return e.add(acc.value, constant.astype(F32), "plus_offset")
        total = _integer_sum(e, acc)
        return e.cast(total if bias is None else e.add(total, e.cast(bias, I32), "bias"), F32)
    if bias is None:
        return e.cast(acc.value, F32)
    if acc.dtype == F32 and isinstance(bias, np.ndarray) and acc.bound + int(np.abs(bias.astype(np.int64)).max(initial=0)) <= EXACT_FLOAT32:
        return e.add(acc.value, bias.astype(F32), "bias")  # every value an exact float32 integer
    return e.cast(e.add(e.cast(acc.value, I32), e.cast(bias, I32), "bias"), F32)


def _shifted_weights(e: NodeEmitter, g: RewriteGraph, w: str, zp_name: str, zp_aligned):
    """(b, bmax): the constant int32 w - zp, or float32(w - zp) as a tensor, and the bound of |w - zp|."""
    elem = _elem(g, w)
    wv = g.constant(w)
    zpv = zp_aligned if zp_aligned is None or isinstance(zp_aligned, np.ndarray) else None
    if wv is not None and (zp_aligned is None or zpv is not None):
        shifted = wv.astype(I32) - (zpv.astype(I32) if zpv is not None else 0)
        return shifted.astype(I32), 0
    return _shifted(e, w, zp_aligned), _zero_point_bound(g, zp_name, elem)


# ------------------------------------------------------------------------------------------------- the ops


def _quantize_linear(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    x, scale, zp = node.input[0], node.input[1], input_at(node, 2)
    if _elem(g, x) != TensorProto.FLOAT:
        raise _Refused(f"input '{x}' has type {type_name(_elem(g, x))}: hcc quantizes float32 inputs only")
    _float32_scale(g, scale)
    out_elem = _elem(g, node.output[0])
    if out_elem not in RANGES:
        raise _Refused(f"output type {type_name(out_elem)} is not supported: hcc compiles 8- and 16-bit integer quantization "
                       "(INT8, UINT8, INT16, UINT16) only")
    s, z = _scale_and_zero_point(e, g, node, x, scale, zp, opset)
    _saturate(e, e.div(x, s, "scaled"), z, out_elem, node.output[0])


def _axis_and_block(node: onnx.NodeProto, shape: list[int] | None, opset: int) -> tuple[int | None, int, int]:
    """(axis, block_size, the axis length): the axis is None when it is outside the input's rank (an error only for
    per-axis or blocked parameters, which need it: a per-tensor one ignores the default axis=1 of a 1-D input)."""
    block = attr_value(node, "block_size", 0) if opset >= 21 else 0
    if block < 0:
        raise _Refused(f"attribute block_size={block} is negative")
    rank = len(shape) if shape is not None else 0
    axis = attr_value(node, "axis", 1) if opset >= 13 else 1
    if shape is None or not -rank <= axis < rank:
        return None, block, 1
    return axis % rank, block, shape[axis % rank]


def _scale_and_zero_point(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, x: str, scale: str, zp: str, opset: int):
    """A (De)QuantizeLinear's scale and zero point (None when absent) aligned with `x` for its axis and block size."""
    shape = g.shapes.get(x)
    axis, block, length = _axis_and_block(node, shape, opset)
    rank = len(shape) if shape is not None else 0
    return _align(e, g, scale, rank, axis, length, block), _align(e, g, zp, rank, axis, length, block, "zero point") if zp else None


def _dequantize_linear(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    x, scale, zp = node.input[0], node.input[1], input_at(node, 2)
    elem = _elem(g, x)
    if elem not in RANGES and elem != TensorProto.INT32:
        raise _Refused(f"input '{x}' has type {type_name(elem)}: hcc dequantizes INT8, UINT8, INT16, UINT16 and INT32 only")
    _float32_scale(g, scale)
    if attr_value(node, "output_dtype", 0) not in (0, TensorProto.FLOAT):
        raise _Refused(f"attribute output_dtype={type_name(attr_value(node, 'output_dtype'))} is not supported (float32 only)")
    s, z = _scale_and_zero_point(e, g, node, x, scale, zp, opset)
    if elem == TensorProto.INT32:  # (x - zp) in int32, then one conversion, as onnxruntime does
        d = e.cast(x if z is None else e.sub(x, e.cast(z, I32), "shift"), F32)
    else:
        d = _shifted(e, x, z)
    e.result(e.mul(d, s, "dequantized"), node.output[0])


def _dynamic_quantize_linear(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    x = node.input[0]
    if _elem(g, x) != TensorProto.FLOAT:
        raise _Refused(f"input '{x}' has type {type_name(_elem(g, x))}: hcc quantizes float32 inputs only")
    zero = np.array(0, F32)
    finite = e.op("Where", [e.op("IsNaN", [x], np.bool_, "isnan"), zero, x], F32, "nan_to_zero")  # 0 is in the range anyway
    low = e.op("Min", [e.op("ReduceMin", [finite], F32, "min", keepdims=0), zero], F32, "min0")
    high = e.op("Max", [e.op("ReduceMax", [finite], F32, "max", keepdims=0), zero], F32, "max0")
    same = e.op("Equal", [high, low], np.bool_, "same")
    scale = e.op("Where", [same, np.array(1, F32), e.div(e.sub(high, low, "range"), np.array(255, F32), "step")], F32, "scale")
    initial = e.sub(zero, e.div(low, scale, "low_steps"), "initial_zp")
    clamped = e.max_where(e.min_where(initial, np.array(255, F32), "zp_hi"), zero, "zp_lo")  # std::max(0, std::min(255, v))
    zp = e.round_even(clamped)
    if len(node.output) > 1 and node.output[1]:
        e.result(scale, node.output[1], rename=False)
    if len(node.output) > 2 and node.output[2]:
        e.result(e.cast(zp, np.uint8), node.output[2])
    _saturate(e, e.div(x, scale, "scaled"), zp, TensorProto.UINT8, node.output[0])


@dataclass
class _Operand:
    """An 8-bit operand of an integer product: its tensor, zero point, and (for QLinear ops) scale."""

    name: str
    zero_point: str = ""
    scale: str = ""


def _conv_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute
            if a.name in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}


def _conv_accumulate(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, x: _Operand, w: _Operand):
    """The _Acc of the exact integer convolution sum(x - x_zp)(w - w_zp)."""
    x_elem = _elem(g, x.name)
    _eight_bit(g, x.name, "input")
    _eight_bit(g, w.name, "weight")
    w_shape = _shape(g, w.name)
    rank_w, m = len(w_shape), w_shape[0]
    x_zp = _align(e, g, x.zero_point, 0, 0, 1, role="input zero point") if x.zero_point else None
    w_zp = _align(e, g, w.zero_point, rank_w, 0, m, role="weight zero point") if w.zero_point else None
    b, bmax = _shifted_weights(e, g, w.name, w.zero_point, w_zp)
    attrs = _conv_attrs(node)

    def conv(a, weights, hint):
        return e.op("Conv", [a, weights], e.dtype(a), hint, **attrs)

    def centered() -> _Centered | None:
        zp = _scalar_constant_zero_point(g, x.zero_point)
        if zp is None or str(attrs.get("auto_pad", b"NOTSET"), "utf-8") not in ("NOTSET", ""):
            return None
        mid = 128 if x_elem == TensorProto.UINT8 else 0
        operand = e.sub(e.cast(x.name, F32), np.array(mid, F32), "centered")
        pads = list(attrs.get("pads", []))
        unpadded = {k: v for k, v in attrs.items() if k != "pads"}
        if any(pads):
            rank = len(_shape(g, x.name))
            full = [0, 0] + pads[:rank - 2] + [0, 0] + pads[rank - 2:]
            operand = e.op("Pad", [operand, np.array(full, np.int64), np.array(zp - mid, F32)], F32, "padded", mode="constant")

        def unpadded_conv(a, weights, hint):
            return e.op("Conv", [a, weights], F32, hint, **unpadded)

        def channels(lo, hi):
            return e.op("Slice", [operand, np.array([lo], np.int64), np.array([hi], np.int64), np.array([1], np.int64)], F32, f"channels{lo}")
        if int(attrs.get("group", 1)) != 1:
            channels = None  # a group's filters read their own channels: no split along them
        return _Centered(operand, unpadded_conv, mid - zp, [1, m] + [1] * (rank_w - 2), channels, 1)

    a = _shifted(e, x.name, x_zp)
    amax = _zero_point_bound(g, x.zero_point, x_elem)
    return _exact_product(e, conv, a, amax, b, bmax, int(np.prod(w_shape[1:])), tuple(range(1, rank_w)), centered)


def _matmul_accumulate(e: NodeEmitter, g: RewriteGraph, a: _Operand, b: _Operand, a_shape: list[int], b_shape: list[int]):
    """The _Acc of the exact integer MatMul sum(a - a_zp)(b - b_zp); a_zp per row, b_zp per column allowed."""
    _eight_bit(g, a.name, "input")
    _eight_bit(g, b.name, "input")
    a_zp = _row_zero_point(e, g, a.zero_point, a_shape) if a.zero_point else None
    b_zp = _param(g, b.zero_point) if b.zero_point else None
    if b_zp is not None and int(np.prod(_shape(g, b.zero_point) or [1])) == 1:
        b_zp = e.reshape(b_zp, [], "b_zp_scalar") if _shape(g, b.zero_point) else b_zp
    bm, bmax = _shifted_weights(e, g, b.name, b.zero_point, b_zp)

    def matmul(x, y, hint):
        return e.op("MatMul", [x, y], e.dtype(x), hint)

    def centered() -> _Centered | None:
        if len(b_shape) < 2:
            return None
        mid = 128 if _elem(g, a.name) == TensorProto.UINT8 else 0
        zp = _scalar_constant_zero_point(g, a.zero_point)
        if zp is not None:
            shift = mid - zp
        elif isinstance(a_zp, str) and int(np.prod(_shape(g, a.zero_point) or [1])) == 1:
            shift = e.sub(np.array(mid, F32), e.cast(a_zp, F32), "shift")  # one zero point, known at run time
        else:
            return None
        operand = e.sub(e.cast(a.name, F32), np.array(mid, F32), "centered")

        def columns(lo, hi):
            return e.op("Slice", [operand, np.array([lo], np.int64), np.array([hi], np.int64), np.array([-1], np.int64)], F32, f"columns{lo}")
        return _Centered(operand, matmul, shift, b_shape[:-2] + [1, b_shape[-1]], columns, len(b_shape) - 2)

    am = _shifted(e, a.name, a_zp)
    amax = _zero_point_bound(g, a.zero_point, _elem(g, a.name))
    reduce_axes = (len(b_shape) - 2,) if len(b_shape) >= 2 else (0,)
    return _exact_product(e, matmul, am, amax, bm, bmax, a_shape[-1], reduce_axes, centered)


def _scalar_constant_zero_point(g: RewriteGraph, name: str) -> int | None:
    """A zero point that is one constant value (0 when absent), else None."""
    if not name:
        return 0
    value = g.constant(name)
    return int(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _row_zero_point(e: NodeEmitter, g: RewriteGraph, name: str, a_shape: list[int]):
    """MatMulInteger's a_zero_point: a scalar, or one per row of a 2-D (or batched) A."""
    shape, value = _shape(g, name), _param(g, name)
    size = int(np.prod(shape)) if shape else 1
    if size == 1:
        return e.reshape(value, [], "a_zp_scalar") if shape else value
    if len(shape) == 1 and len(a_shape) >= 2 and shape[0] == a_shape[-2]:
        return e.reshape(value, [shape[0], 1], "a_zp_rows")
    return value  # already shaped to broadcast (e.g. [..., M, 1])


def _matmul_integer(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    a, b = _Operand(node.input[0], input_at(node, 2)), _Operand(node.input[1], input_at(node, 3))
    acc = _matmul_accumulate(e, g, a, b, _shape(g, a.name), _shape(g, b.name))
    e.result(_integer_sum(e, acc), node.output[0])


def _conv_integer(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    x, w = _Operand(node.input[0], input_at(node, 2)), _Operand(node.input[1], input_at(node, 3))
    acc = _conv_accumulate(e, g, node, x, w)
    e.result(_integer_sum(e, acc), node.output[0])


def _single(e: NodeEmitter, g: RewriteGraph, name: str, what: str):
    """A parameter that must hold one value, as a scalar."""
    shape = _shape(g, name)
    if int(np.prod(shape)) != 1:
        raise _Refused(f"{what} '{name}' has shape {shape}: it must be a single value")
    return e.reshape(_param(g, name), [], f"{what.replace(' ', '_')}_scalar") if shape else _param(g, name)


def _output_scale(e: NodeEmitter, g: RewriteGraph, factors: list[str], divisor: str, length: int, rank: int, axis: int, alpha: float = 1.0):
    """The requantization scale, multiplied left to right in float32 as onnxruntime does (alpha first, as QGemm
    does), divided by `divisor` (if any), shaped per output channel (`axis`, `length` channels) or a scalar."""
    for name in factors + ([divisor] if divisor else []):
        _float32_scale(g, name)
    value = np.array(alpha, F32) if alpha != 1.0 else None
    per_channel = False
    for name in factors:
        shape = _shape(g, name)
        if int(np.prod(shape) if shape else 1) == 1:
            factor = _single(e, g, name, "scale")
        elif len(shape) == 1 and shape[0] == length:
            factor, per_channel = _param(g, name), True
        else:
            raise _Refused(f"scale '{name}' has shape {shape}: expected one value or {length} (one per output channel)")
        value = factor if value is None else e.mul(value, factor, "scale_product")
    if divisor:
        value = e.div(value, _single(e, g, divisor, "output scale"), "scale")
    if per_channel:
        value = e.reshape(value, [length if i == axis else 1 for i in range(rank)], "scale_axis")
    return value


def _output_zero_point(e: NodeEmitter, g: RewriteGraph, name: str):
    return _single(e, g, name, "output zero point")


def _qlinear_conv(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    x = _Operand(node.input[0], node.input[2], node.input[1])
    w = _Operand(node.input[3], node.input[5], node.input[4])
    y_scale, y_zp, bias = node.input[6], node.input[7], input_at(node, 8)
    out_elem = _elem(g, y_zp)
    if out_elem not in EIGHT_BIT:
        raise _Refused(f"output zero point '{y_zp}' has type {type_name(out_elem)}: 8-bit only")
    w_shape = _shape(g, w.name)
    acc = _conv_accumulate(e, g, node, x, w)
    rank = len(_shape(g, x.name))
    b = None
    if bias:
        if _elem(g, bias) != TensorProto.INT32:
            raise _Refused(f"bias '{bias}' has type {type_name(_elem(g, bias))}, not INT32")
        b = _param(g, bias)
        b = e.reshape(b, [w_shape[0] if i == 1 else 1 for i in range(rank)], "bias_axis")
    v = _to_float_with_bias(e, acc, b)
    scale = _output_scale(e, g, [x.scale, w.scale], y_scale, w_shape[0], rank, 1)
    _saturate(e, e.mul(v, scale, "rescaled"), _output_zero_point(e, g, y_zp), out_elem, node.output[0])


def _widened_scale(e: NodeEmitter, g: RewriteGraph, name: str) -> str:
    """A FLOAT16 scale (QLinearMatMul allows them from opset 21) as float32, exactly: onnxruntime has no float16
    kernel and runs the float32 one on scales its graph transformer casts up (the float16 reference's rounding of
    the product differs only where a tie falls differently); any other scale is returned as it is."""
    if g.types.get(name) != TensorProto.FLOAT16:
        return name
    value = g.constant(name)
    out = e.op("Cast", [value if value is not None else name], F32, "scale_f32", to=TensorProto.FLOAT)
    g.types[out], g.shapes[out] = TensorProto.FLOAT, _shape(g, name)
    if value is not None:
        g.constants[out] = value.astype(F32)
    return out


def _qlinear_matmul(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    a_scale, b_scale, y_scale = (_widened_scale(e, g, node.input[i]) for i in (1, 4, 6))
    a = _Operand(node.input[0], node.input[2], a_scale)
    b = _Operand(node.input[3], node.input[5], b_scale)
    y_zp = node.input[7]
    out_elem = _elem(g, y_zp)
    if out_elem not in EIGHT_BIT:
        raise _Refused(f"output zero point '{y_zp}' has type {type_name(out_elem)}: 8-bit only")
    a_shape, b_shape = _shape(g, a.name), _shape(g, b.name)
    acc = _matmul_accumulate(e, g, a, b, a_shape, b_shape)
    v = _to_float_with_bias(e, acc, None)
    scale = _matmul_scale(e, g, a.scale, b.scale, y_scale, b_shape)
    _saturate(e, e.mul(v, scale, "rescaled"), _output_zero_point(e, g, y_zp), out_elem, node.output[0])


def _matmul_scale(e: NodeEmitter, g: RewriteGraph, a_scale: str, b_scale: str, y_scale: str, b_shape: list[int], alpha: float = 1.0):
    """alpha * a_scale * b_scale [/ y_scale] for a MatMul: b_scale per tensor, per column ([N]) or shaped to
    broadcast against the output (onnxruntime's [..., 1, N])."""
    shape = _shape(g, b_scale)
    if not shape or int(np.prod(shape)) == 1:
        return _output_scale(e, g, [a_scale, b_scale], y_scale, 1, 0, 0, alpha)
    for name in [a_scale, b_scale] + ([y_scale] if y_scale else []):
        _float32_scale(g, name)
    a = _single(e, g, a_scale, "scale")
    value = a if alpha == 1.0 else e.mul(np.array(alpha, F32), a, "alpha_a")
    value = e.mul(value, _param(g, b_scale), "scale_product")
    if y_scale:
        value = e.div(value, _single(e, g, y_scale, "output scale"), "scale")
    return value


def _qgemm(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QGemm: Y = alpha * A' B' + C on 8-bit A and B (C an int32 bias added to the integer sum), then
    requantized (y_zero_point given) or scaled to float32."""
    a = _Operand(node.input[0], node.input[2], node.input[1])
    b = _Operand(node.input[3], node.input[5], node.input[4])
    bias, y_scale, y_zp = input_at(node, 6), input_at(node, 7), input_at(node, 8)
    if y_zp and not y_scale:
        raise _Refused("y_zero_point without y_scale is not supported")
    alpha = float(attr_value(node, "alpha", 1.0))
    a_name, b_name = a.name, b.name
    a_shape, b_shape = list(_shape(g, a_name)), list(_shape(g, b_name))
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise _Refused("A and B must be matrices")
    if attr_value(node, "transA", 0):
        a_name, a_shape = _transposed(e, g, a_name), a_shape[::-1]
    if attr_value(node, "transB", 0):
        b_name, b_shape = _transposed(e, g, b_name), b_shape[::-1]
    acc = _matmul_accumulate(e, g, _Operand(a_name, a.zero_point), _Operand(b_name, b.zero_point), a_shape, b_shape)
    if bias and _elem(g, bias) != TensorProto.INT32:
        raise _Refused(f"bias '{bias}' has type {type_name(_elem(g, bias))}, not INT32")
    v = _to_float_with_bias(e, acc, _param(g, bias) if bias else None)
    scale = _matmul_scale(e, g, a.scale, b.scale, y_scale, b_shape, alpha)
    g.shapes[node.output[0]] = [a_shape[0], b_shape[1]]
    if not y_zp:
        e.result(e.mul(v, scale, "scaled"), node.output[0])
        return
    out_elem = _elem(g, y_zp)
    if out_elem not in EIGHT_BIT:
        raise _Refused(f"output zero point '{y_zp}' has type {type_name(out_elem)}: 8-bit only")
    _saturate(e, e.mul(v, scale, "rescaled"), _output_zero_point(e, g, y_zp), out_elem, node.output[0])


def _transposed(e: NodeEmitter, g: RewriteGraph, name: str) -> str:
    value = g.constant(name)
    out = e.tensor(np.ascontiguousarray(value.T), "transposed") if value is not None else \
        e.op("Transpose", [name], e.dtype(name), "transposed", perm=[1, 0])
    g.types[out] = g.types[name]
    g.shapes[out] = list(reversed(_shape(g, name)))
    if value is not None:
        g.constants[out] = np.ascontiguousarray(value.T)
    return out


def _matmul_integer_to_float(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.MatMulIntegerToFloat (A, B, a_scale, b_scale[, a_zp, b_zp]): float32(sum) * (a_scale * b_scale)."""
    a, b = _Operand(node.input[0], input_at(node, 4), node.input[2]), _Operand(node.input[1], input_at(node, 5), node.input[3])
    a_shape, b_shape = _shape(g, a.name), _shape(g, b.name)
    acc = _matmul_accumulate(e, g, a, b, a_shape, b_shape)
    v = _to_float_with_bias(e, acc, None)
    e.result(e.mul(v, _matmul_scale(e, g, a.scale, b.scale, "", b_shape), "scaled"), node.output[0])


# The 8-bit kernel type onnxruntime runs a QLinearAdd / QLinearMul fused here in, when its QDQS8ToU8Transformer turned int8 pairs
# into uint8 (an hcc-internal attribute of the fused node; absent on a model's own com.microsoft.QLinearAdd).
KERNEL_TYPE_ATTR = "hcc_kernel_type"


def _constant_scalar(g: RewriteGraph, name: str, what: str, default=None):
    """A quantization parameter that must be one constant value (what onnxruntime's kernel enforces)."""
    if not name:
        return default
    value = g.constant(name)
    if value is None or value.size != 1:
        raise _Refused(f"{what} '{name}' must be one constant value")
    return value.reshape(-1)[0]


def _constant_scales(g: RewriteGraph, node: onnx.NodeProto, indices: tuple[int, ...]) -> tuple[float, ...]:
    """The float32 scales at `indices` of a com.microsoft QLinear op, each one constant value."""
    for index in indices:
        _float32_scale(g, node.input[index])
    return tuple(float(_constant_scalar(g, node.input[i], "scale")) for i in indices)


def _code_index(e: NodeEmitter, x: str, elem: int):
    """int64 positions of an 8-bit tensor's codes in a table ordered like mlas_emulation.CODES (int8 from -128)."""
    index = e.cast(x, np.int64)
    return e.add(index, np.array(128, np.int64), "code") if elem == TensorProto.INT8 else index


def _kernel_shifts(node: onnx.NodeProto, types: list[int]) -> tuple[int, list[int]]:
    """The 8-bit type a fused QLinear op computes in (KERNEL_TYPE_ATTR, where onnxruntime turned int8 pairs into
    uint8; else its tensors' one type) and, per tensor of `types`, what its codes and zero point gain in that type
    (128 for an int8 tensor on a uint8 kernel)."""
    fused = attr_value(node, KERNEL_TYPE_ATTR)
    kernel = int(fused) if fused is not None else types[0]
    if any(t not in EIGHT_BIT for t in types + [kernel]) or (fused is None and len(set(types)) != 1):
        raise _Refused(f"inputs and output must share one 8-bit type, not {', '.join(type_name(t) for t in types)}")
    return kernel, [128 if t == TensorProto.INT8 and kernel == TensorProto.UINT8 else 0 for t in types]


def _pooled_input(g: RewriteGraph, node: onnx.NodeProto) -> tuple[str, int, list[int]]:
    """(name, 8-bit type, shape) of a QLinear pooling op's NCHW input."""
    if attr_value(node, "channels_last", 0):
        raise _Refused("channels_last=1 is not supported")
    x = node.input[0]
    _eight_bit(g, x, "input")
    shape = _shape(g, x)
    if len(shape) < 3:
        raise _Refused(f"input '{x}' has rank {len(shape)}: expected N x C x spatial dimensions")
    return x, _elem(g, x), shape


def _qlinear_binary(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QLinearAdd / QLinearMul: C = quantize(dequantize(A) op dequantize(B)) as onnxruntime's kernel
    rounds it, by a Gather from the 256 x 256 table of its results (frontend/mlas_emulation.py)."""
    a, b = node.input[0], node.input[3]
    raw = [_elem(g, a), _elem(g, b), _elem(g, input_at(node, 7)) if input_at(node, 7) else _elem(g, a)]
    kernel, shifts = _kernel_shifts(node, raw)
    scales = _constant_scales(g, node, (1, 4, 6))
    zero_points = tuple(int(_constant_scalar(g, input_at(node, i), "zero point", 0)) + shift for i, shift in zip((2, 5, 7), shifts))
    kernel_dtype = helper.tensor_dtype_to_np_dtype(kernel)
    if node.op_type == "QLinearAdd":
        scalar = mlas_emulation.broadcast_scalar_input(_shape(g, a), _shape(g, b))
        table = mlas_emulation.qlinear_add_table(scales, zero_points, kernel_dtype, scalar)
    else:
        table = mlas_emulation.qlinear_mul_table(scales, zero_points, kernel_dtype)
    out_dtype = helper.tensor_dtype_to_np_dtype(raw[2])
    table = (table.astype(np.int32) - shifts[2]).astype(out_dtype).reshape(-1)
    flat = e.add(e.mul(_code_index(e, a, raw[0]), np.array(256, np.int64), "a_row"), _code_index(e, b, raw[1]), "pair")
    e.result(e.op("Gather", [table, flat], out_dtype, "table", axis=0), node.output[0])


def _qlinear_global_average_pool(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QLinearGlobalAveragePool (NCHW) as MLAS computes it on x86-64 (qlgavgpool.cpp): the exact int32
    sum of x - x_zp over each image, times scale = x_scale / (y_scale * float(H*W)) in float32, then the QuantizeLinear
    steps (clamp, round half to even, plus y_zp). The sum is exact in float32 below 2^24."""
    x, elem, shape = _pooled_input(g, node)
    size = int(np.prod(shape[2:]))
    lo, hi = EIGHT_BIT[elem]
    if size * (hi - lo) >= EXACT_FLOAT32:
        raise _Refused(f"an image of {size} elements: its 8-bit sum may exceed float32's exact integers")
    x_scale, y_scale = (np.float32(v) for v in _constant_scales(g, node, (1, 3)))
    scale = np.float32(x_scale / np.float32(y_scale * np.float32(size)))
    if not (2.0**-32 <= scale < 256.0):
        raise _Refused(f"x_scale / (y_scale * {size}) = {scale} is outside onnxruntime's computable range [2^-32, 256)")
    x_zp = _constant_scalar(g, input_at(node, 2), "zero point", 0)
    flat = e.reshape(_shifted(e, x, np.array(x_zp, F32)), shape[:2] + [size], "image")
    total = e.reshape(e.reduce("ReduceSum", flat, 2, opset, "sum"), shape[:2] + [1] * (len(shape) - 2), "pooled")
    out_elem = _elem(g, input_at(node, 4)) if input_at(node, 4) else elem
    y_zp = input_at(node, 4)
    _saturate(e, e.mul(total, np.array(scale, F32), "scaled"), _single(e, g, y_zp, "output zero point") if y_zp else None,
              out_elem, node.output[0])


def _pool_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in POOL_ATTRS}


def _qlinear_average_pool(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QLinearAveragePool (NCHW) as onnxruntime computes it (qlinear_pool.cc): a window covering the
    whole image without padding is its global pool (_qlinear_global_average_pool); otherwise each code dequantized
    in float32 as x_scale * (x - x_zp), the float AveragePool of those (window sums row by row, then divided by the
    count), then round half to even of (avg / y_scale + y_zp) in float32, clamped to the 8-bit range. The zero points
    are the kernel type's (KERNEL_TYPE_ATTR: int8 tensors on a uint8 kernel are 128 higher)."""
    if attr_value(node, "ceil_mode", 0):
        raise _Refused("ceil_mode=1 is not supported (onnxruntime counts a window past the input's end differently)")
    x, elem, shape = _pooled_input(g, node)
    kernel_shape = [int(k) for k in attr_value(node, "kernel_shape", [])]
    pads = [int(p) for p in attr_value(node, "pads", [0] * 2 * len(kernel_shape))]
    auto_pad = str(attr_value(node, "auto_pad", b"NOTSET"), "utf-8")
    if len(kernel_shape) != len(shape) - 2:
        raise _Refused(f"input '{x}' of shape {shape} does not match kernel_shape {kernel_shape}")
    if kernel_shape == list(shape[2:]) and not any(pads) and auto_pad in ("NOTSET", "VALID"):
        _qlinear_global_average_pool(e, g, node, opset)
        return
    out_elem = _elem(g, input_at(node, 4)) if input_at(node, 4) else elem
    kernel, shift = _kernel_shifts(node, [elem, out_elem])
    x_scale, y_scale = (np.float32(v) for v in _constant_scales(g, node, (1, 3)))
    x_zp, y_zp = (int(_constant_scalar(g, input_at(node, i), "zero point", 0)) for i in (2, 4))
    codes = e.add(e.cast(x, I32), np.array(-x_zp, I32), "centered")  # the same for the kernel's shifted codes
    values = e.mul(e.cast(codes, F32), np.array(x_scale, F32), "dequantized")
    pooled = e.op("AveragePool", [values], F32, "pooled", **_pool_attrs(node))
    v = e.add(e.div(pooled, np.array(y_scale, F32), "scaled"), np.array(y_zp + shift[1], F32), "plus_zp")
    lo, hi = EIGHT_BIT[kernel]
    r = e.min_where(e.max_where(e.round_even(v), np.array(lo, F32), "lo"), np.array(hi, F32), "hi")
    r = e.add(e.cast(r, I32), np.array(-shift[1], I32), "unshifted") if shift[1] else e.cast(r, I32)
    e.result(e.cast(r, helper.tensor_dtype_to_np_dtype(out_elem)), node.output[0])


def _qlinear_lookup(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QLinearSigmoid / QLinearLeakyRelu: a Gather from onnxruntime's 256-entry table, built here as
    its QlinearBuildLookupTable builds it (frontend/mlas_emulation.py)."""
    x = node.input[0]
    elem = _elem(g, x)
    _eight_bit(g, x, "input")
    if input_at(node, 4) and _elem(g, node.input[4]) != elem:
        raise _Refused("input and output must share one 8-bit type")
    x_scale, y_scale = _constant_scales(g, node, (1, 3))
    x_zp, y_zp = (int(_constant_scalar(g, input_at(node, i), "zero point", 0)) for i in (2, 4))
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    table = mlas_emulation.qlinear_lookup_table(node.op_type[len("QLinear"):], x_scale, x_zp, y_scale, y_zp, dtype,
                                                float(attr_value(node, "alpha", 0.01)))
    e.result(e.op("Gather", [table, _code_index(e, x, elem)], dtype, "table", axis=0), node.output[0])


def _qlinear_softmax(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, opset: int) -> None:
    """com.microsoft.QLinearSoftmax as onnxruntime computes it (qlinear_softmax.cc): per row, the table entry
    exp((x - row max + 255 + shift) * x_scale) (mlas_emulation.qlinear_softmax_exp_table), their float32 sum taken
    left to right as its scalar loop does (a chain of Adds: any other order rounds differently), then
    round(entry * floor(1 / y_scale) / sum) + y_zp, saturated. Rows run along `axis` (opset >= 13) or over every
    axis from it on (the op's `opset` attribute < 13)."""
    x = node.input[0]
    elem = _elem(g, x)
    _eight_bit(g, x, "input")
    shape = _shape(g, x)
    kernel_opset = int(attr_value(node, "opset", opset))
    axis = int(attr_value(node, "axis", -1 if kernel_opset >= 13 else 1)) % max(len(shape), 1)
    length = int(np.prod(shape[axis:])) if kernel_opset < 13 else shape[axis]
    if length > MAX_SOFTMAX_ROW:
        raise _Refused(f"rows of {length} elements: hcc emulates onnxruntime's sequential sum for rows up to {MAX_SOFTMAX_ROW}")
    x_scale, y_scale = _constant_scales(g, node, (1, 3))
    y_zp = int(_constant_scalar(g, input_at(node, 4), "zero point", 0))
    rows = e.cast(x, I32)
    if kernel_opset < 13:
        rows, axis = e.reshape(rows, [int(np.prod(shape[:axis])), length], "rows"), 1
    table = mlas_emulation.qlinear_softmax_exp_table(x_scale, length)
    index = e.add(e.sub(rows, e.reduce("ReduceMax", rows, axis, opset, "row_max"), "below_max"), np.array(255, I32), "entry")
    entries = e.op("Gather", [table, index], F32, "exp", axis=0)
    parts = [e.fresh(f"part{k}") for k in range(length)]
    e.nodes.append(helper.make_node("Split", [entries, e.tensor(np.ones(length, np.int64), "split")] if opset >= 13 else [entries],
                                    parts, name=e.fresh("split_op"), axis=axis, **({} if opset >= 13 else {"split": [1] * length})))
    e.dtypes.update((part, F32) for part in parts)
    total = parts[0]
    for k, part in enumerate(parts[1:], 1):
        total = e.add(total, part, f"sum{k}")
    scaled = e.div(e.mul(entries, np.array(mlas_emulation.qlinear_softmax_output_scale(y_scale), F32), "scaled"), total, "ratio")
    quantized = e.add(e.cast(e.round_even(scaled), I32), np.array(y_zp, I32), "plus_zp")
    lo, hi = EIGHT_BIT[elem]
    quantized = e.min_where(e.max_where(quantized, np.array(lo, I32), "lo"), np.array(hi, I32), "hi")
    if kernel_opset < 13:
        quantized = e.reshape(quantized, shape, "unrows")
    e.result(e.cast(quantized, helper.tensor_dtype_to_np_dtype(elem)), node.output[0])


EXPANSIONS = {
    ("", "QuantizeLinear"): _quantize_linear, ("", "DequantizeLinear"): _dequantize_linear,
    ("", "DynamicQuantizeLinear"): _dynamic_quantize_linear, ("", "MatMulInteger"): _matmul_integer,
    ("", "ConvInteger"): _conv_integer, ("", "QLinearConv"): _qlinear_conv, ("", "QLinearMatMul"): _qlinear_matmul,
    (MS_DOMAIN, "QGemm"): _qgemm, (MS_DOMAIN, "MatMulIntegerToFloat"): _matmul_integer_to_float,
    (MS_DOMAIN, "QLinearAdd"): _qlinear_binary, (MS_DOMAIN, "QLinearMul"): _qlinear_binary,
    (MS_DOMAIN, "QLinearGlobalAveragePool"): _qlinear_global_average_pool, (MS_DOMAIN, "QLinearAveragePool"): _qlinear_average_pool,
    (MS_DOMAIN, "QLinearSigmoid"): _qlinear_lookup, (MS_DOMAIN, "QLinearLeakyRelu"): _qlinear_lookup,
    (MS_DOMAIN, "QLinearSoftmax"): _qlinear_softmax,
}


# ------------------------------------------------------------------------------------------------- QDQ groups


def _effective_type(g: RewriteGraph, dq: onnx.NodeProto | None = None, q: onnx.NodeProto | None = None) -> int:
    """The 8-bit type a DequantizeLinear reads (`dq`) or a QuantizeLinear writes (`q`) once onnxruntime's
    QDQS8ToU8Transformer has turned int8 Q -> DQ pairs into uint8 (qdq_s8_to_u8.cc)."""
    if dq is not None:
        elem = g.types.get(dq.input[0], 0)
        q = g.producer.get(dq.input[0])
        pair = q is not None and q.op_type == "QuantizeLinear" and _s8_pair(g, q, dq)
    else:
        assert q is not None
        elem = g.types.get(q.output[0], 0)
        readers = g.consumers.get(q.output[0], [])
        pair = len(readers) == 1 and readers[0].op_type == "DequantizeLinear" and _s8_pair(g, q, readers[0])
    return TensorProto.UINT8 if elem == TensorProto.INT8 and pair else elem


def _s8_pair(g: RewriteGraph, q: onnx.NodeProto, dq: onnx.NodeProto) -> bool:
    if q.domain not in ("", "ai.onnx") or dq.domain not in ("", "ai.onnx") or q.output[0] in g.outputs:
        return False
    if len(g.consumers.get(q.output[0], [])) != 1 or dq.input[0] != q.output[0]:
        return False
    # onnxruntime's EnsureUniqueDQForNodeUnit first gives each reader of a shared DequantizeLinear its own copy,
    # and a QuantizeLinear read by several copies is no pair (measured: a residual block's input stays int8)
    readers = len(g.consumers.get(dq.output[0], []))
    if readers > 1 or (readers == 1 and dq.output[0] in g.outputs):
        return False
    if g.constant(q.input[0]) is not None:  # constant folding first turns the QuantizeLinear into an int8 initializer
        return False
    if len(q.input) != 3 or len(dq.input) != 3 or not q.input[2] or not dq.input[2]:
        return False
    q_zp, dq_zp = g.initializer(q.input[2]), g.initializer(dq.input[2])
    if q_zp is None or dq_zp is None or q_zp.size != 1 or dq_zp.size != 1 or q_zp.dtype != np.int8 or dq_zp.dtype != np.int8:
        return False
    return int(q_zp.reshape(-1)[0]) == int(dq_zp.reshape(-1)[0])


def _clip_made_redundant(g: RewriteGraph, clip: onnx.NodeProto, q: onnx.NodeProto) -> bool:
    """onnxruntime's IsClipMadeRedundantByQ: the Q saturates where the Relu/Clip would clip."""
    scale = g.initializer(input_at(q, 1))
    if scale is None or scale.ndim != 0 or scale.dtype != np.float32:
        return False
    elem = _effective_type(g, q=q)
    if elem not in EIGHT_BIT:
        return False
    zp_name = input_at(q, 2)
    if zp_name:
        zp_value = g.initializer(zp_name)
        if zp_value is None or zp_value.ndim != 0 and not (elem != g.types.get(q.output[0]) and zp_value.size == 1):
            return False
        zp = int(zp_value.reshape(-1)[0]) + (128 if elem != g.types.get(q.output[0]) else 0)
    else:
        zp = 0
    lo, hi = EIGHT_BIT[elem]
    if clip.op_type == "Relu":
        return zp == lo
    bounds = _clip_bounds(g, clip)
    if bounds is None:
        return False
    with np.errstate(all="ignore"):
        q_lo, q_hi = (_c_int32(np.rint(np.float32(v) / scale)) + zp for v in bounds)
    return q_lo <= lo and q_hi >= hi


def _c_int32(value: np.float32) -> int:
    """static_cast<int32_t> on x86: out-of-range values (and NaN) become INT32_MIN."""
    if not np.isfinite(value) or not -2**31 <= float(value) < 2**31:
        return -2**31
    return int(value)


def _clip_bounds(g: RewriteGraph, clip: onnx.NodeProto) -> tuple[float, float] | None:
    if attr_value(clip, "min") is not None or attr_value(clip, "max") is not None:  # opset < 11
        return float(attr_value(clip, "min", np.finfo(np.float32).min)), float(attr_value(clip, "max", np.finfo(np.float32).max))
    bounds = []
    for index, default in ((1, np.finfo(np.float32).min), (2, np.finfo(np.float32).max)):
        name = input_at(clip, index)
        if not name:
            bounds.append(float(default))
            continue
        value = g.initializer(name)
        if value is None:
            return None
        bounds.append(float(value.reshape(-1)[0]))
    return bounds[0], bounds[1]


def _per_tensor(g: RewriteGraph, name: str) -> bool:
    shape = g.shapes.get(name)
    return shape is not None and int(np.prod(shape)) == 1


def _per_channel_ok(g: RewriteGraph, dq: onnx.NodeProto, axis: int) -> bool:
    """A weight DequantizeLinear whose scale is per tensor, or per channel along `axis` (what the fused op expects)."""
    if attr_value(dq, "block_size", 0):
        return False
    if _per_tensor(g, dq.input[1]) and (len(dq.input) < 3 or not dq.input[2] or _per_tensor(g, dq.input[2])):
        return True
    rank = len(g.shapes.get(dq.input[0]) or [])
    return rank > 0 and attr_value(dq, "axis", 1) % rank == axis % rank


def _dq_inputs(g: RewriteGraph, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    """The DequantizeLinear producing each (present) input of `node`, or None when one is not."""
    dqs = []
    for name in node.input:
        if not name:
            continue
        producer = g.producer.get(name)
        if producer is None or producer.op_type != "DequantizeLinear" or producer.domain not in ("", "ai.onnx"):
            return None
        dqs.append(producer)
    return dqs


def _output_group(g: RewriteGraph, node: onnx.NodeProto) -> tuple[onnx.NodeProto | None, list[onnx.NodeProto], bool]:
    """(redundant Relu/Clip, the QuantizeLinear readers, whether onnxruntime's CheckQDQNodes accepts the outputs),
    as NodeGroupSelector::GetQDQSelection finds them; the first value is False-y and the list empty when none."""
    out = node.output[0]
    readers = g.consumers.get(out, [])
    clip = None
    if len(readers) == 1 and readers[0].op_type in ("Relu", "Clip") and readers[0].domain in ("", "ai.onnx"):
        candidate = readers[0]
        if len(g.consumers.get(candidate.output[0], [])) == 1 and candidate.output[0] not in g.outputs:
            clip = candidate
    tail = clip.output[0] if clip is not None else out
    qs = [n for n in g.consumers.get(tail, []) if n.op_type == "QuantizeLinear" and n.domain in ("", "ai.onnx")]
    if clip is not None and (len(qs) != 1 or not _clip_made_redundant(g, clip, qs[0])):
        return clip, [], False
    outputs_ok = len(qs) == 1 and len(readers) == 1 and out not in g.outputs
    return clip, qs, outputs_ok


def _bias_ok(g: RewriteGraph, x_dq: onnx.NodeProto, w_dq: onnx.NodeProto, b_dq: onnx.NodeProto) -> bool:
    """Measured against onnxruntime 1.31: it fuses a group with a bias only when the bias's DequantizeLinear reads
    int32 with a zero point of 0 (or none) and a constant scale within 1e-6 + 1e-2 * |x_scale * w_scale| of
    x_scale * w_scale (what its quantizer writes); otherwise it leaves the whole group in float."""
    if g.types.get(b_dq.input[0]) != TensorProto.INT32:
        return False
    zp = g.constant(input_at(b_dq, 2)) if input_at(b_dq, 2) else np.zeros(1, np.int32)
    scales = [g.constant(x_dq.input[1]), g.constant(w_dq.input[1]), g.constant(b_dq.input[1])]
    if zp is None or np.any(zp != 0) or any(v is None or v.dtype != np.float32 for v in scales):
        return False
    xs, ws, bs = (v.reshape(-1) for v in scales)
    expected = xs * ws
    if bs.size not in (1, expected.size) and expected.size != 1:
        return False
    return bool(np.all(np.abs(bs.astype(np.float64) - expected) <= 1e-6 + 1e-2 * np.abs(expected.astype(np.float64))))


def _zero_point(g: RewriteGraph, node: onnx.NodeProto, elem: int, new_inits: list[onnx.TensorProto]) -> str:
    """A Q/DQ node's zero point, or (as onnxruntime's SetOptionalZeroPoint fills it in) a zero of type `elem`."""
    if input_at(node, 2):
        return node.input[2]
    name = f"{node.name}/zero_point"
    if name not in g.taken:
        g.taken.add(name)
        g.types[name], g.shapes[name] = elem, []
        new_inits.append(numpy_helper.from_array(np.zeros((), helper.tensor_dtype_to_np_dtype(elem)), name))
    return name


def _fused_node(g: RewriteGraph, node: onnx.NodeProto, new_inits: list[onnx.TensorProto],
                opset: int) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The QLinearConv / QLinearMatMul / QGemm / MatMulIntegerToFloat onnxruntime makes of `node` and the QDQ nodes
    around it, and the nodes it replaces; None when onnxruntime leaves the group in float."""
    dqs = _dq_inputs(g, node)
    if dqs and node.op_type in ORT_TABLE_KERNELS:
        return _fused_table_group(g, node, dqs, new_inits, opset)
    if not dqs or node.op_type not in ("Conv", "MatMul", "Gemm"):
        return None
    clip, qs, outputs_ok = _output_group(g, node)
    if clip is not None and not qs:
        return None
    if qs and not _per_tensor(g, qs[0].input[1]):
        return None
    if not _per_tensor(g, dqs[0].input[1]) or attr_value(dqs[0], "block_size", 0):
        return None
    act = _effective_type(g, dq=dqs[0])
    weight = g.types.get(dqs[1].input[0], 0) if len(dqs) > 1 else 0
    if act not in EIGHT_BIT or weight not in EIGHT_BIT:
        return None
    replaced = [node] + ([clip] if clip is not None else []) + qs[:1]
    name = node.name
    zps = [_zero_point(g, dq, g.types[dq.input[0]], new_inits) for dq in dqs[:2]]
    y_zp = _zero_point(g, qs[0], g.types.get(qs[0].output[0], TensorProto.UINT8), new_inits) if qs else ""
    if len(dqs) == 3 and not _bias_ok(g, dqs[0], dqs[1], dqs[2]):
        return None
    if node.op_type == "Conv":
        if not (qs and outputs_ok) or act == TensorProto.INT8 or act != _effective_type(g, q=qs[0]):
            return None
        if not _per_channel_ok(g, dqs[1], 0):
            return None
        x, w, q = dqs[0], dqs[1], qs[0]
        inputs = [x.input[0], x.input[1], zps[0], w.input[0], w.input[1], zps[1], q.input[1], y_zp]
        if len(dqs) == 3:
            inputs.append(dqs[2].input[0])
        fused = helper.make_node("QLinearConv", inputs, [q.output[0]], name=name, **_conv_attrs(node))
        return fused, replaced
    if node.op_type == "MatMul":
        if len(dqs) != 2 or act == TensorProto.INT8 or not _per_channel_ok(g, dqs[1], -1):
            return None
        a, b = dqs
        if qs:
            if not outputs_ok or act != _effective_type(g, q=qs[0]):
                return None
            q = qs[0]
            inputs = [a.input[0], a.input[1], zps[0], b.input[0], b.input[1], zps[1], q.input[1], y_zp]
            return helper.make_node("QLinearMatMul", inputs, [q.output[0]], name=name), replaced
        inputs = [a.input[0], b.input[0], a.input[1], b.input[1], zps[0], zps[1]]
        return helper.make_node("MatMulIntegerToFloat", inputs, [node.output[0]], name=name, domain=MS_DOMAIN), [node]
    # Gemm -> com.microsoft.QGemm (GemmNodeGroupSelector: no int8_allowed restriction)
    if qs and not outputs_ok:
        return None
    if act == TensorProto.INT8 and weight != TensorProto.INT8:
        return None
    if qs and act != _effective_type(g, q=qs[0]):
        return None
    if len(dqs) == 3 and float(attr_value(node, "beta", 1.0)) != 1.0:
        return None
    if not _per_channel_ok(g, dqs[1], 0 if attr_value(node, "transB", 0) else 1):
        return None
    a, b = dqs[0], dqs[1]
    inputs = [a.input[0], a.input[1], zps[0], b.input[0], b.input[1], zps[1], dqs[2].input[0] if len(dqs) == 3 else ""]
    if qs:
        inputs += [qs[0].input[1], y_zp]
    attrs = {k: attr_value(node, k) for k in ("alpha", "transA", "transB") if attr_value(node, k) is not None}
    output = qs[0].output[0] if qs else node.output[0]
    return helper.make_node("QGemm", inputs, [output], name=name, domain=MS_DOMAIN, **attrs), replaced if qs else [node]


def _fused_table_group(g: RewriteGraph, node: onnx.NodeProto, dqs: list[onnx.NodeProto], new_inits: list[onnx.TensorProto],
                       opset: int) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The com.microsoft.QLinear<op> (Add, Mul, [Global]AveragePool, Sigmoid, LeakyRelu, Softmax) onnxruntime makes of
    DequantizeLinear(s) -> op -> [Relu/Clip] -> QuantizeLinear (its Binary/UnaryNodeGroupSelector): every input and
    the output of one 8-bit type once its int8 pairs are uint8. The fused node records that kernel type, on which
    QLinearAdd's and QLinearMul's rounding depends (mlas_emulation)."""
    selection = _group_selection(g, node)
    if selection is None:
        return None
    clip, q, kernel = selection
    inputs = []
    for dq in dqs:
        inputs += [dq.input[0], dq.input[1], _zero_point(g, dq, g.types[dq.input[0]], new_inits)]
    inputs += [q.input[1], _zero_point(g, q, g.types.get(q.output[0], TensorProto.UINT8), new_inits)]
    attrs = {"Add": {KERNEL_TYPE_ATTR: kernel}, "Mul": {KERNEL_TYPE_ATTR: kernel}, "GlobalAveragePool": {"channels_last": 0},
             "AveragePool": {"channels_last": 0, KERNEL_TYPE_ATTR: kernel, **_pool_attrs(node)},
             "LeakyRelu": {"alpha": float(attr_value(node, "alpha", 0.01))},
             "Softmax": {"axis": int(attr_value(node, "axis", -1 if opset >= 13 else 1)), "opset": opset}}.get(node.op_type, {})
    fused = helper.make_node(f"QLinear{node.op_type}", inputs, [q.output[0]], name=node.name, domain=MS_DOMAIN, **attrs)
    return fused, [node] + ([clip] if clip is not None else []) + [q]


def _group_selection(g: RewriteGraph, node: onnx.NodeProto) -> tuple[onnx.NodeProto | None, onnx.NodeProto, int] | None:
    """(redundant Relu/Clip or None, the QuantizeLinear, the 8-bit kernel type) when onnxruntime's selector picks
    `node`'s QDQ group, else None."""
    dqs = _dq_inputs(g, node)
    clip, qs, outputs_ok = _output_group(g, node)
    if not dqs or not (qs and outputs_ok):
        return None
    kernel = _effective_type(g, q=qs[0])
    if kernel not in EIGHT_BIT or any(_effective_type(g, dq=dq) != kernel for dq in dqs):
        return None
    return clip, qs[0], kernel


def _integer_kernel_group(g: RewriteGraph, node: onnx.NodeProto) -> str | None:
    """Why `node` is refused: onnxruntime computes it and the QDQ nodes around it with an integer kernel hcc does not
    reproduce (a linear or cubic Resize, which it runs on the 8-bit codes)."""
    if node.op_type != "Resize" or str(attr_value(node, "mode", b"nearest"), "utf-8") == "nearest" or node.domain not in ("", "ai.onnx"):
        return None
    kernel = "an 8-bit Resize"
    # any DequantizeLinear -> Resize -> QuantizeLinear is refused, fused or not
    selected = any(g.producer.get(n) is not None and g.producer[n].op_type == "DequantizeLinear" for n in node.input if n) and \
        any(r.op_type == "QuantizeLinear" for r in g.consumers.get(node.output[0], []))
    if selected:
        return (f"onnxruntime computes DequantizeLinear -> {node.op_type} -> QuantizeLinear with its integer kernel {kernel}, "
                "whose rounding hcc does not reproduce (a result could differ in the last quantization step)")
    return None


def fuse_qdq_groups(model: onnx.ModelProto, path: str) -> int:
    """Replace, in place, the QDQ groups onnxruntime fuses by the fused op; returns how many. The fused node takes
    the place of the group's last node (its QuantizeLinear), where every input it reads exists."""
    g = RewriteGraph.of(model)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    placed: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        reason = _integer_kernel_group(g, node)
        if reason:
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): {reason}")
        if id(node) in removed:
            continue
        result = _fused_node(g, node, new_inits, opset)
        if result is None:
            continue
        fused, replaced = result
        placed[id(replaced[-1])] = fused
        removed.update(id(n) for n in replaced[:-1])
    if not placed:
        return 0
    nodes = [placed.get(id(n), n) for n in model.graph.node if id(n) not in removed]
    used = {name for n in nodes for name in n.input} | g.outputs
    nodes = [n for n in nodes if not (n.op_type == "DequantizeLinear" and n.output[0] not in used)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for n in nodes for name in n.input}
    model.graph.initializer.extend(i for i in new_inits if i.name in used)
    if not any(i.domain == MS_DOMAIN for i in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(placed)


# ------------------------------------------------------------------------------------------------- entry point


def expand_quantized_ops(model: onnx.ModelProto, path: str, defer_unknown_shapes: bool = False) -> tuple[int, int]:
    """Replace, in place, every quantized op by its exact float/integer expansion; returns (how many, how many were
    deferred): with `defer_unknown_shapes`, a node whose input shape is not known yet is kept for a later round."""
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    g = RewriteGraph.of(model)
    nodes, inits, replaced_inputs, count, deferred = [], [], set(), 0, 0
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        expand = EXPANSIONS.get((domain, node.op_type))
        if expand is None:
            nodes.append(node)
            continue
        e = NodeEmitter(node, g)
        try:
            expand(e, g, node, opset)
        except _UnknownShape:
            if not defer_unknown_shapes:
                raise HccError(f"{path}: node '{node.name}' ({node.op_type}): the shapes or types of its inputs are unknown") from None
            nodes.append(node)
            deferred += 1
            continue
        except _Refused as why:
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): {why}") from None
        except (ValueError, IndexError, KeyError, TypeError) as exc:  # a malformed node the checker let through
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): cannot be compiled: {type(exc).__name__}: {exc}") from None
        for name in node.output:  # outputs of ops shape inference does not know (com.microsoft) get their types here
            if name and name not in g.types and name in e.dtypes:
                g.types[name] = helper.np_dtype_to_tensor_dtype(e.dtypes[name])
        nodes.extend(e.nodes)
        inits.extend(e.inits)
        replaced_inputs.update(node.input)
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {name for n in nodes for name in n.input} | g.outputs | {v.name for v in model.graph.input}
        kept = [i for i in list(model.graph.initializer) + inits if i.name in used or i.name not in replaced_inputs | {t.name for t in inits}]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        if not any(n.domain == MS_DOMAIN for n in nodes):
            kept_opsets = [i for i in model.opset_import if i.domain != MS_DOMAIN]
            del model.opset_import[:]
            model.opset_import.extend(kept_opsets)
    return count, deferred


def _infer_value_info(model: onnx.ModelProto) -> None:
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)


def rewrite_quantized(model: onnx.ModelProto, path: str) -> int:
    """QDQ groups fused as onnxruntime fuses them, then every quantized op expanded; returns the number of nodes
    rewritten (the caller re-runs shape inference when it is not zero). onnx's shape inference knows no
    com.microsoft op, so what follows one (a QOperator model's QLinearConv after a QLinearAdd) has no shapes until the
    op is expanded into default-domain ops: such nodes wait for the next round, after inference."""
    lstms = rewrite_dynamic_quantize_lstms(model, path)  # unrolled into DynamicQuantizeLinear, MatMulInteger, float ops
    if lstms:
        _infer_value_info(model)
    count = _expand_all(model, path) if any(n.op_type in QUANTIZED_OPS or n.op_type in MS_QUANTIZED_OPS
                                            for n in model.graph.node) else 0
    if lstms:
        share_identical_initializers(model)  # the unrolled steps' copies of one constant: one bundle weight
    return lstms + count


def _expand_all(model: onnx.ModelProto, path: str) -> int:
    count = fuse_qdq_groups(model, path)
    for _ in range(len(model.graph.node)):
        done, deferred = expand_quantized_ops(model, path, defer_unknown_shapes=True)
        count += done
        if not deferred:
            return count
        if not done:
            break
        _infer_value_info(model)
    return count + expand_quantized_ops(model, path)[0]  # refuses, naming the first node whose shapes stay unknown
