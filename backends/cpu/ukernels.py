"""Contractions and convolutions run as calls into hcc's C micro-kernels (runtime/ukernels.c), on every core.

At tensor level (`tag_*`), a contraction generic (matmul, batched matmul, Gemm, attention products, im2col-free
GEMMs) or a named NCHW convolution is tagged `hcc.ukernel` with the roles of its loop dims; it gets no transform
script. After bufferization (`replace_with_calls`), each tagged op, now on memrefs with static strides, becomes one
`func.call` to `hcc_gemm` / `hcc_conv2d` with its buffers' addresses and every size and stride as constants: the
strided views of transposes, reshapes and slices are read in place, and the kernel accumulates into the output
(which holds the op's init: zeros or the broadcast bias). An op whose strides do not fit the kernel's ABI stays a
generic and is reported (it then lowers to plain loops).

ABI (runtime/ukernels_dispatch.c): all arguments are i64; pointers are aligned base + offset in bytes.
  hcc_gemm(a, b, c, B0, B1, B2, M, N, K1, K2, a strides {B0,B1,B2,M,K1,K2}, b strides {B0,B1,B2,K1,K2,N},
           c strides {B0,B1,B2,M,N})                                      27 arguments
  hcc_conv2d(x, w, y, N, C, H, W, F, KH, KW, OH, OW, groups, sh, sw, dh, dw, x/w/y strides in NCHW order)   29
  hcc_dwconv2d(x, w, y, N, C, KH, KW, OH, OW, sh, sw, dh, dw, x strides NCHW, w strides CHW, y strides NCHW)  24
"""
from __future__ import annotations

import json
from dataclasses import dataclass

GEMM = "hcc_gemm"
CONV = "hcc_conv2d"
DWCONV = "hcc_dwconv2d"
ARITY = {GEMM: 27, CONV: 29, DWCONV: 24}
MAX_BATCH_DIMS = 3
MAX_K_DIMS = 3  # merged to at most 2 after bufferization when the strides allow
CONV_OPS = {"linalg.conv_2d_nchw_fchw": CONV, "linalg.depthwise_conv_2d_nchw_chw": DWCONV}
MIN_CONV_CHANNELS_PER_GROUP = 4  # fewer output channels per group (depthwise): the direct conv schedule does better


@dataclass
class GemmRoles:
    """Loop dims of a contraction: C[batch.., m, n] += A[.., m, .., k..] * B[.., k.., n]; `a`, `b`: operand indices."""

    m: int
    n: int
    ks: list[int]
    batch: list[int]
    a: int
    b: int


def gemm_roles(info) -> GemmRoles | None:
    """Roles of a `schedule.LinalgOp` that the GEMM kernel can take, or None."""
    from hcc.backends.cpu import schedule

    if info.element != "f32" or info.num_inputs != 2 or not schedule._is_static(info) or not schedule._is_mul_add_body(info):
        return None
    if any(kind != "dim" for m in info.maps for kind, _ in m):
        return None
    roles = schedule._contraction_roles(info)
    if roles is None:
        return None
    m, n, ks, batch, ia, ib = roles
    # M: the innermost output dim only A carries that is not a unit dim (a [1, 128, 1, 256] view must not make
    # 128 products of one row each); the others are batch dims.
    a_dims = info.dims_of(ia)
    m_like = [d for d in info.dims_of(info.num_inputs) if d in a_dims and d not in info.dims_of(ib) and info.ranges[d] > 1]
    if m_like and m_like[-1] != m:
        batch = [d for d in batch if d != m_like[-1]] + [m]
        m = m_like[-1]
    batch = [d for d in batch if info.ranges[d] > 1]
    if len(batch) > MAX_BATCH_DIMS or len(ks) > MAX_K_DIMS:
        return None
    return GemmRoles(m, n, list(ks), list(batch), ia, ib)


def tag_gemm(op, roles: GemmRoles) -> None:
    from mlir import ir

    op.attributes["hcc.ukernel"] = ir.StringAttr.get(GEMM)
    op.attributes["hcc.roles"] = ir.StringAttr.get(json.dumps(roles.__dict__))


def tag_convolutions(root) -> list[tuple[object, int]]:
    """Tag the named f32 NCHW convolutions with enough output channels per group; returns (op, scalar ops)."""
    from mlir import ir

    tagged = []
    for op in _all_ops(root):
        if op.name not in CONV_OPS:
            continue
        x, w = (ir.RankedTensorType(v.type) for v in op.operands[:2])
        if str(x.element_type) != "f32" or not x.has_static_shape or not w.has_static_shape:
            continue
        symbol = CONV_OPS[op.name]
        if symbol == CONV and w.shape[0] < MIN_CONV_CHANNELS_PER_GROUP:
            continue
        op.attributes["hcc.ukernel"] = ir.StringAttr.get(symbol)
        y = ir.RankedTensorType(op.operands[2].type)
        window = w.shape[1] * w.shape[2] * w.shape[3] if symbol == CONV else w.shape[1] * w.shape[2]
        macs = y.shape[0] * y.shape[1] * y.shape[2] * y.shape[3] * window
        tagged.append((op, 2 * macs))
    return tagged


def _all_ops(root) -> list:
    """Every op nested in `root`, children before their parent (so erasing a visited op is safe)."""
    from mlir import ir

    found = []

    def visit(op):
        found.append(op)
        return ir.WalkResult.ADVANCE

    root.walk(visit, ir.WalkOrder.POST_ORDER)
    return found


# ------------------------------------------------------------------------------------------ after bufferization

def _layout(value) -> tuple[list[int], list[int], int | None]:
    """Static shape and strides of a memref, and its offset (None when only known at run time: a slice at a
    loop-dependent position, such as an LSTM's time step)."""
    from mlir import ir

    t = ir.MemRefType(value.type)
    strides, offset = t.get_strides_and_offset()
    if not t.has_static_shape or any(t.is_dynamic_stride_or_offset(s) for s in strides):
        raise ValueError("dynamic shape or strides")
    return list(t.shape), list(strides), None if t.is_dynamic_stride_or_offset(offset) else offset


def _loop_strides(op, operand: int, num_loops: int) -> list[int]:
    """Element stride of each loop dim in `operand` (0 for dims it does not index)."""
    from mlir import ir

    amap = ir.AffineMapAttr(ir.ArrayAttr(op.attributes["indexing_maps"])[operand]).value
    _, strides, _ = _layout(op.operands[operand])
    out = [0] * num_loops
    for position, expr in enumerate(amap.results):
        out[ir.AffineDimExpr(expr).position] += strides[position]
    return out


def _ranges(op, num_loops: int) -> list[int]:
    from mlir import ir

    ranges = [1] * num_loops
    for i, attr in enumerate(ir.ArrayAttr(op.attributes["indexing_maps"])):
        shape, _, _ = _layout(op.operands[i])
        for position, expr in enumerate(ir.AffineMapAttr(attr).value.results):
            ranges[ir.AffineDimExpr(expr).position] = shape[position]
    return ranges


def _merge_k_dims(ks: list[int], ranges: list[int], sa: list[int], sb: list[int]) -> list[tuple[int, int, int]] | None:
    """(size, a stride, b stride) per k dim after merging neighbours that are contiguous in both operands; at most 2."""
    dims = [(ranges[k], sa[k], sb[k]) for k in ks if ranges[k] != 1] or [(1, 0, 0)]
    merged = [dims[0]]
    for size, a, b in dims[1:]:
        psize, pa, pb = merged[-1]
        if pa == a * size and pb == b * size:
            merged[-1] = (psize * size, a, b)
        else:
            merged.append((size, a, b))
    return merged if len(merged) <= 2 else None


def gemm_arguments(op) -> list[int]:
    """The 24 integer arguments of hcc_gemm after the three pointers; ValueError when the layout does not fit."""
    roles = GemmRoles(**json.loads(op.attributes["hcc.roles"].value))
    from mlir import ir

    num_loops = len(ir.ArrayAttr(op.attributes["iterator_types"]))
    ranges = _ranges(op, num_loops)
    sa, sb, sc = (_loop_strides(op, i, num_loops) for i in (roles.a, roles.b, 2))
    ks = _merge_k_dims(roles.ks, ranges, sa, sb)
    if ks is None:
        raise ValueError("more than two reduction dims that are not contiguous")
    (k1, a_k1, b_k1), (k2, a_k2, b_k2) = ks[0], ks[1] if len(ks) > 1 else (1, 0, 0)
    batch = [(ranges[d], sa[d], sb[d], sc[d]) for d in roles.batch] + [(1, 0, 0, 0)] * (MAX_BATCH_DIMS - len(roles.batch))
    sizes = [b[0] for b in batch] + [ranges[roles.m], ranges[roles.n], k1, k2]
    a_strides = [b[1] for b in batch] + [sa[roles.m], a_k1, a_k2]
    b_strides = [b[2] for b in batch] + [b_k1, b_k2, sb[roles.n]]
    c_strides = [b[3] for b in batch] + [sc[roles.m], sc[roles.n]]
    return sizes + a_strides + b_strides + c_strides


def _dense_ints(attr, default: list[int]) -> list[int]:
    from mlir import ir

    if attr is None:
        return default
    return [int(v) for v in ir.DenseIntElementsAttr(attr)]


def conv_arguments(op) -> list[int]:
    """The 26 integer arguments of hcc_conv2d after the three pointers."""
    (n, c, h, w), xs, _ = _layout(op.operands[0])
    (f, cw, kh, kw), ws, _ = _layout(op.operands[1])
    (_, _, oh, ow), ys, _ = _layout(op.operands[2])
    strides = _dense_ints(op.attributes["strides"] if "strides" in op.attributes else None, [1, 1])
    dilations = _dense_ints(op.attributes["dilations"] if "dilations" in op.attributes else None, [1, 1])
    if ys[2] != ow * ys[3]:
        raise ValueError("output rows are not contiguous")
    groups = c // cw
    return [n, c, h, w, f, kh, kw, oh, ow, groups, *strides, *dilations, *xs, *ws, *ys]


def dwconv_arguments(op) -> list[int]:
    """The 21 integer arguments of hcc_dwconv2d after the three pointers (rows must be unit-stride)."""
    (n, c, _, _), xs, _ = _layout(op.operands[0])
    (_, kh, kw), ws, _ = _layout(op.operands[1])
    (_, _, oh, ow), ys, _ = _layout(op.operands[2])
    strides = _dense_ints(op.attributes["strides"] if "strides" in op.attributes else None, [1, 1])
    dilations = _dense_ints(op.attributes["dilations"] if "dilations" in op.attributes else None, [1, 1])
    if xs[3] != 1 or ys[3] != 1 or ws[2] != 1:
        raise ValueError("rows are not unit-stride")
    return [n, c, kh, kw, oh, ow, *strides, *dilations, *xs, *ws, *ys]


def _declare(module, symbol: str) -> None:
    from mlir import ir
    from mlir.dialects import func

    body = module.body
    for op in body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == symbol:
            return
    index = ir.IndexType.get()
    with ir.InsertionPoint.at_block_begin(body), ir.Location.unknown():
        decl = func.FuncOp(symbol, ir.FunctionType.get([index] * ARITY[symbol], []))
        decl.attributes["sym_visibility"] = ir.StringAttr.get("private")


def _pointer(value):
    """Address of the first element: aligned base + offset x 4 bytes (the offset read at run time if dynamic)."""
    from mlir import ir
    from mlir.dialects import arith, memref

    _, _, offset = _layout(value)
    index = ir.IndexType.get()
    base = memref.extract_aligned_pointer_as_index(value)
    if offset is None:
        dynamic = memref.ExtractStridedMetadataOp(value).offset
        return arith.addi(base, arith.muli(dynamic, arith.constant(index, 4)))
    if offset:
        base = arith.addi(base, arith.constant(index, offset * 4))
    return base


def replace_with_calls(module) -> list[tuple[object, str]]:
    """Turn every tagged op into a kernel call. Returns (op, reason) for ops left as they were."""
    from mlir import ir
    from mlir.dialects import arith, func

    left: list[tuple[str, str]] = []
    for op in _all_ops(module.operation):
        if "hcc.ukernel" not in op.attributes:
            continue
        symbol = ir.StringAttr(op.attributes["hcc.ukernel"]).value
        try:
            operands = [op.operands[0], op.operands[1], op.operands[2]]
            if symbol == GEMM:
                roles = GemmRoles(**json.loads(ir.StringAttr(op.attributes["hcc.roles"]).value))
                operands = [op.operands[roles.a], op.operands[roles.b], op.operands[2]]
                numbers = gemm_arguments(op)
            else:
                numbers = conv_arguments(op) if symbol == CONV else dwconv_arguments(op)
        except (ValueError, TypeError) as exc:
            left.append((op, str(exc)))
            del op.attributes["hcc.ukernel"]
            continue
        _declare(module, symbol)
        index = ir.IndexType.get()
        with ir.InsertionPoint(op), op.location:
            args = [_pointer(v) for v in operands] + [arith.constant(index, v) for v in numbers]
            func.call([], ir.FlatSymbolRefAttr.get(symbol), args)
        op.erase()
    return left
