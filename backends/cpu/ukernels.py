"""Contractions and convolutions run as calls into hcc's C micro-kernels (runtime/ukernels.c), on every core, with
their initial value, a following activation and a residual add fused in.

At tensor level a contraction generic (matmul, batched matmul, Gemm, attention products, an LSTM's gate GEMVs) or a
named NCHW convolution is tagged (`tag_gemm`, `tag_convolutions`), and `emit_calls` replaces it by a `func.call` on
buffers (`bufferization.to_buffer` of its operands with a fully dynamic layout, a fresh output buffer turned back
into a tensor): one-shot bufferization then passes views (transposes, slices, reshapes) in place, canonicalization
folds their strides to constants, and the output is usually computed straight into the function's out-parameter.

Fusion, decided here on tensors (after bufferization the neighbours are already vector loops):
* the init: a `linalg.fill` with a constant, or a broadcast of a bias, is read by the kernel's first K block
  instead of being materialized as a full tensor first (any other init tensor is read as a strided source);
* the epilogue: when the op's result feeds exactly one elementwise generic computing `clamp(y [+ r])` (Relu,
  Clip/ReLU6, a residual Add then Relu), or for a GEMM `GELU(y [+ r])` (a bias add then GELU: transformers' FFN),
  the kernel applies it on its last K block and writes that op's result.
  The clamp keeps the consumer's NaN rule: `maximumf` and ordered-compare selects keep a NaN, `maxnumf` and
  unordered-compare selects replace it by the bound (ukernels.c, CLAMP_*).

ABI (runtime/ukernels_dispatch.c): every argument is i64 (pointers are addresses, floats their bit patterns).
  hcc_gemm(a, b, c, B0, B1, B2, M, N, K1, K2, a strides {B0,B1,B2,M,K1,K2}, b strides {B0,B1,B2,K1,K2,N},
           c strides {B0,B1,B2,M,N}, epilogue with 5 strides per source, call site: > 0 when b is a bundle weight
           (its packed panels are kept), else 0)                                                                46
  hcc_conv2d(x, w, y, N, C, H, W, F, KH, KW, OH, OW, groups, sh, sw, dh, dw, pad top, pad left, x/w/y strides
             (NCHW), epilogue, call site: > 0 when w is a bundle weight (its packed form is kept), else 0,
             layouts)                                                                                           49
  hcc_dwconv2d(x, w, y, N, C, H, W, KH, KW, OH, OW, sh, sw, dh, dw, pad top, pad left, x (NCHW) / w (CHW) /
               y (NCHW) strides, epilogue, layouts)                                                             45
  layouts: X_BLOCKED | Y_BLOCKED, x or y in the blocked layout [N][C/16][H][W][16] that one convolution hands to
  the next (blocked_handover); the strides are then those of the same tensor in NCHW.
  A convolution reads its input unpadded: a zero `tensor.pad` in front of it is folded into the call (the kernels
  treat rows and columns outside the input as zeros), so the padded copy is never materialized.
  epilogue: init mode (0 in C, 1 constant, 2 source), init constant bits, init pointer, init strides, residual
            pointer (0: none), residual strides, lo mode (0 none, 1 keep NaN, 2 NaN to bound), lo bits, hi mode, hi bits;
            the hi mode's bits 4 and up: an activation after the residual and before the clamps (1: GELU with erf,
            GEMMs only; 2: HardSwish, 3: SiLU, any kernel): a consumer whose body computes it on y [+ r], found by running
            the body on sample values (body_eval.py)
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from hcc.backends.cpu import body_eval

GEMM = "hcc_gemm"
CONV = "hcc_conv2d"
DWCONV = "hcc_dwconv2d"
# The same ABIs with bfloat16 operands and fp32 sums (AMX tiles or AVX512-BF16 dot products where the CPU has them, else
# the fp32 kernels).
GEMM_BF16 = "hcc_gemm_bf16"
CONV_BF16 = "hcc_conv2d_bf16"
# GEMMs only: bf16x3, each operand as two bfloat16 halves (hi + lo) and three tile products (near-fp32 sums)
GEMM_BF16X3 = "hcc_gemm_bf16x3"
# GEMMs whose B is a bundle weight: int8 products (AMX-INT8), A quantized per tensor with a calibrated step, B per
# column; the GEMM ABI and two more arguments: the step (float bits) and whether A is signed (else uint8)
GEMM_INT8 = "hcc_gemm_int8"
PRECISION_VARIANT = {(GEMM, "bf16"): GEMM_BF16, (CONV, "bf16"): CONV_BF16, (GEMM, "bf16x3"): GEMM_BF16X3, (GEMM, "int8"): GEMM_INT8}
GEMM_SYMBOLS = (GEMM, GEMM_BF16, GEMM_BF16X3, GEMM_INT8)
ARITY = {GEMM: 46, CONV: 49, DWCONV: 45, GEMM_BF16: 46, CONV_BF16: 49, GEMM_BF16X3: 46, GEMM_INT8: 48}
MAX_BATCH_DIMS = 3
MAX_K_DIMS = 2  # non-unit reduction dims the kernel's offset tables take
CONV_OPS = {"linalg.conv_2d_nchw_fchw": CONV, "linalg.depthwise_conv_2d_nchw_chw": DWCONV}
MIN_CONV_CHANNELS_PER_GROUP = 4  # fewer output channels per group: the direct conv schedule does better
INIT_IN_C, INIT_CONSTANT, INIT_SOURCE = 0, 1, 2
_FOLDED = ("tensor.pad", "linalg.fill", "linalg.broadcast", "linalg.generic", "tensor.empty")  # erased once unused
CLAMP_NONE, CLAMP_KEEP_NAN, CLAMP_NAN_TO_BOUND = 0, 1, 2
ACT_NONE, ACT_GELU, ACT_HARDSWISH, ACT_SILU = 0, 1, 2, 3  # the activation after the residual (GELU: GEMMs only); hi mode bits 4+
ACT_NAMES = {ACT_GELU: "GELU", ACT_HARDSWISH: "HardSwish", ACT_SILU: "SiLU"}
ACT_SHIFT = 4


@dataclass
class GemmRoles:
    """Loop dims of a contraction: C[batch.., m, n] += A[.., m, .., k..] * B[.., k.., n]; `a`, `b`: operand indices."""

    m: int
    n: int
    ks: list[int]
    batch: list[int]
    a: int
    b: int
    # k dims read as one (outer first, the last is the one in `ks`): adjacent and in the same order in A and in B,
    # such as the C x H x W of a Gemm on a flattened NCHW tensor; the operands are collapsed along them.
    groups: list[list[int]] = field(default_factory=list)


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
    # M: the longest output dim only A carries that is not a unit dim (a [1, 128, 1, 256] view must not make 128
    # products of one row each), the innermost of equals; the others are batch dims. Longest, not innermost: torch's
    # batch_first encoder layer multiplies transpose(x) [seq 32, batch 4, 256] by its in-projection, and 32 products
    # of 4 rows streamed the weight 32 times (3x slower than onnxruntime) where 4 products of 32 rows pack it once.
    a_dims = info.dims_of(ia)
    m_like = [d for d in info.dims_of(info.num_inputs) if d in a_dims and d not in info.dims_of(ib) and info.ranges[d] > 1]
    longest = max(reversed(m_like), key=lambda d: info.ranges[d]) if m_like else None
    if longest is not None and longest != m:
        batch = [d for d in batch if d != longest] + [m]
        m = longest
    batch = [d for d in batch if info.ranges[d] > 1]
    groups = []
    if len([k for k in ks if info.ranges[k] > 1]) > MAX_K_DIMS:
        groups = [g for g in _adjacent_k_groups(info, ks, ia, ib) if len(g) > 1]
        grouped = {d for g in groups for d in g[:-1]}
        ks = [k for k in ks if k not in grouped]
    ks = [k for k in ks if info.ranges[k] > 1 or any(g[-1] == k for g in groups)] or ks[:1]
    if len(batch) > MAX_BATCH_DIMS or len(ks) > MAX_K_DIMS:
        return None
    return GemmRoles(m, n, list(ks), list(batch), ia, ib, groups)


def _adjacent_k_groups(info, ks: list[int], ia: int, ib: int) -> list[list[int]]:
    """Runs of k dims that sit next to each other, in the same order, in both A and B (outer first)."""
    pos_a = {d: i for i, d in enumerate(info.dims_of(ia))}
    pos_b = {d: i for i, d in enumerate(info.dims_of(ib))}
    groups: list[list[int]] = []
    for k in sorted(ks, key=lambda d: pos_a[d]):
        last = groups[-1][-1] if groups else None
        if last is not None and pos_a[k] == pos_a[last] + 1 and pos_b[k] == pos_b[last] + 1:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def tag_gemm(op, roles: GemmRoles, work: int) -> None:
    from mlir import ir

    op.attributes["hcc.ukernel"] = ir.StringAttr.get(GEMM)
    op.attributes["hcc.roles"] = ir.StringAttr.get(json.dumps(roles.__dict__))
    op.attributes["hcc.work"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), work)


def tag_convolutions(root) -> list[tuple[object, int]]:
    """Tag the named f32 NCHW convolutions the kernels take; returns (op, scalar ops) for each."""
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
        work = 2 * y.shape[0] * y.shape[1] * y.shape[2] * y.shape[3] * window
        op.attributes["hcc.work"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), work)
        tagged.append((op, work))
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


# ------------------------------------------------------------------------------------------ what the kernel writes

@dataclass
class Source:
    """A tensor the kernel reads per output element: `dims[j]` is the source dim that output dim j indexes, or None
    where the source is broadcast (stride 0)."""

    value: object
    dims: list[int | None]


@dataclass
class Epilogue:
    init_mode: int = INIT_CONSTANT
    init_value: float = 0.0
    init: Source | None = None
    residual: Source | None = None
    lo_mode: int = CLAMP_NONE
    lo: float = 0.0
    hi_mode: int = CLAMP_NONE
    hi: float = 0.0
    act: int = ACT_NONE
    consumer: object = None  # the elementwise op whose result the kernel writes (it is erased)
    notes: list[str] = field(default_factory=list)


def _constant_float(value) -> float | None:
    from mlir import ir

    owner = value.owner
    if isinstance(owner, ir.Block) or owner.name != "arith.constant":
        return None
    try:
        return float(ir.FloatAttr(owner.attributes["value"]).value)
    except (ValueError, TypeError):
        return None


def _maps(op) -> list:
    from mlir import ir

    return [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]


def _broadcast_source(producer, rank: int) -> Source | None:
    """The input of a broadcast (named or a copy-like generic) with the output dim -> source dim mapping."""
    from mlir import ir

    if producer.name == "linalg.broadcast":
        added = [int(d) for d in ir.DenseI64ArrayAttr(producer.attributes["dimensions"])]
        kept = iter(range(rank - len(added)))
        return Source(producer.operands[0], [None if j in added else next(kept) for j in range(rank)])
    if producer.name != "linalg.generic" or len(producer.operands) != 2:
        return None
    block = producer.regions[0].blocks[0]
    body = list(block.operations)
    if len(body) != 1 or list(body[0].operands) != [block.arguments[0]]:
        return None
    if any("reduction" in str(a) for a in ir.ArrayAttr(producer.attributes["iterator_types"])):
        return None
    in_map, out_map = _maps(producer)
    if not in_map.is_projected_permutation or not out_map.is_permutation:
        return None
    in_dims = [e.position for e in in_map.results]
    return Source(producer.operands[0], [in_dims.index(e.position) if e.position in in_dims else None for e in out_map.results])


def _identity(rank: int) -> list[int | None]:
    return list(range(rank))


def init_of(op, rank: int, epilogue: Epilogue) -> None:
    """How the op's output starts: a constant fill, a broadcast source, or the init tensor itself."""
    from mlir import ir

    init = op.operands[len(op.operands) - 1]
    owner = init.owner
    if not isinstance(owner, ir.Block):
        if owner.name == "linalg.fill":
            value = _constant_float(owner.operands[0])
            if value is not None:
                epilogue.init_mode, epilogue.init_value = INIT_CONSTANT, value
                epilogue.notes.append("constant init" if value else "zero init")
                return
        elif owner.name == "tensor.empty":
            epilogue.init_mode, epilogue.init_value = INIT_CONSTANT, 0.0
            return
        source = _broadcast_source(owner, rank)
        if source is not None:
            epilogue.init_mode, epilogue.init = INIT_SOURCE, source
            epilogue.notes.append("bias init")
            return
    epilogue.init_mode, epilogue.init = INIT_SOURCE, Source(init, _identity(rank))


# ------------------------------------------------------------------------------------------ the consumer's body

_SWAP = {"olt": "ogt", "ole": "oge", "ogt": "olt", "oge": "ole", "ult": "ugt", "ule": "uge", "ugt": "ult", "uge": "ule"}


def _predicate(op) -> str:
    from mlir import ir

    return body_eval.CMPF_PREDICATES[ir.IntegerAttr(op.attributes["predicate"]).value]


def _clamp_of(name: str, value: float | None) -> tuple[str, int, float] | None:
    """("lo"|"hi", NaN mode, bound) for a max/min op of the accumulated value and a constant, or None."""
    if value is None:
        return None
    if name in ("arith.maximumf", "arith.maxnumf"):
        return "lo", CLAMP_KEEP_NAN if name == "arith.maximumf" else CLAMP_NAN_TO_BOUND, value
    if name in ("arith.minimumf", "arith.minnumf"):
        return "hi", CLAMP_KEEP_NAN if name == "arith.minimumf" else CLAMP_NAN_TO_BOUND, value
    return None


def match_activation(consumer, y_index: int, gelu: bool) -> tuple[int | None, int] | None:
    """(residual input index or None, ACT_*) when the consumer's body computes HardSwish(y [+ r]) or SiLU(y [+ r]), or with `gelu`
    GELU(y [+ r]) (body_eval.py runs it on sample values), else None."""
    block = consumer.regions[0].blocks[0]
    inputs = len(list(block.arguments)) - 1
    others = [i for i in range(inputs) if i != y_index]
    if len(others) > 1:
        return None
    other = others[0] if others else None
    if gelu and body_eval.computes_gelu(block, y_index, other):
        return other, ACT_GELU
    if body_eval.computes_hardswish(block, y_index, other):
        return other, ACT_HARDSWISH
    return (other, ACT_SILU) if body_eval.computes_silu(block, y_index, other) else None


def match_epilogue(consumer, y_index: int, gelu: bool = False) -> tuple[int | None, list[tuple[str, int, float]], int] | None:
    """(residual input index or None, clamps, activation) when the consumer's body is `clamp(y [+ r])` with constant
    bounds, HardSwish(y [+ r]), or with `gelu` GELU(y [+ r]). The clamp is matched first: it reads the ops, where the
    activations run the body on sample values (body_eval.py), for every consumer of every kernel."""
    clamped = _match_clamps(consumer, y_index)
    if clamped is not None:
        return clamped
    matched = match_activation(consumer, y_index, gelu)
    return (matched[0], [], matched[1]) if matched is not None else None


def _match_clamps(consumer, y_index: int) -> tuple[int | None, list[tuple[str, int, float]], int] | None:
    """(residual input index or None, clamps, ACT_NONE) when the consumer's body is `clamp(y [+ r])` with constant
    bounds (a bare residual add included), else None."""
    from mlir import ir

    block = consumer.regions[0].blocks[0]
    args = list(block.arguments)
    acc, residual, clamps = args[y_index], None, []

    def constant_of(value):
        if isinstance(value.owner, ir.Block):
            return None
        return _constant_float(value)

    for op in list(block.operations)[:-1]:
        operands = list(op.operands)
        if op.name == "arith.constant":
            continue
        if op.name == "arith.addf" and residual is None and not clamps and acc in operands:
            other = operands[1] if operands[0] == acc else operands[0]
            if other not in args or args.index(other) in (y_index, len(args) - 1):
                return None
            residual, acc = args.index(other), op.results[0]
            continue
        if op.name == "arith.cmpf" and acc in operands and len(list(op.results[0].uses)) == 1:
            continue  # judged with its select
        if op.name == "arith.select":
            clamp = _select_clamp(op, acc, constant_of)
        elif acc in operands and len(operands) == 2:
            clamp = _clamp_of(op.name, constant_of(operands[1] if operands[0] == acc else operands[0]))
        else:
            return None
        if clamp is None:
            return None
        clamps.append(clamp)
        acc = op.results[0]
    terminator = list(block.operations)[-1]
    if list(terminator.operands) != [acc] or (residual is None and not clamps):
        return None
    return residual, clamps, ACT_NONE


def _select_clamp(select, acc, constant_of) -> tuple[str, int, float] | None:
    """`select(cmpf(p, acc, k), T, F)` with {T, F} = {acc, k}: which bound, and what a NaN becomes."""
    from mlir import ir

    cond, true, false = select.operands
    if isinstance(cond.owner, ir.Block) or cond.owner.name != "arith.cmpf":
        return None
    lhs, rhs = cond.owner.operands
    predicate = _predicate(cond.owner)
    if lhs == acc:
        bound_value = rhs
    elif rhs == acc:
        bound_value, predicate = lhs, _SWAP.get(predicate, "")
    else:
        return None
    bound = constant_of(bound_value)
    if bound is None or predicate not in _SWAP or {true, false} != {acc, bound_value}:
        return None
    less = predicate[1] == "l"  # acc < bound (ordered: false for NaN; unordered: true)
    ordered = predicate[0] == "o"
    picks_bound = true == bound_value  # the bound when the compare holds
    side = "lo" if less == picks_bound else "hi"
    nan_gives_bound = (not ordered) == picks_bound  # a NaN makes the compare (un)ordered-true/false
    return side, CLAMP_NAN_TO_BOUND if nan_gives_bound else CLAMP_KEEP_NAN, bound


def consumer_of(op, epilogue: Epilogue, rank: int, gelu: bool = False) -> None:
    """Fuse the single elementwise consumer of `op`'s result when its body is clamp(y [+ r]) or HardSwish(y [+ r]),
    or with `gelu` (the GEMM kernels) GELU(y [+ r])."""
    from mlir import ir

    uses = list(op.results[0].uses)
    if len(uses) != 1:
        return
    consumer, index = uses[0].owner, uses[0].operand_number
    if consumer.name != "linalg.generic" or len(consumer.results) != 1:
        return
    num_inputs = len(consumer.operands) - 1
    if index >= num_inputs or any("reduction" in str(a) for a in ir.ArrayAttr(consumer.attributes["iterator_types"])):
        return
    maps = _maps(consumer)
    identity = ir.AffineMap.get_identity(rank)
    if maps[index] != identity or maps[-1] != identity or consumer.results[0].type != op.results[0].type:
        return
    matched = match_epilogue(consumer, index, gelu)
    if matched is None:
        return
    residual, clamps, act = matched
    if residual is not None:
        r_map = maps[residual]
        if not r_map.is_projected_permutation:
            return
        r_dims = [e.position for e in r_map.results]
        epilogue.residual = Source(consumer.operands[residual], [r_dims.index(d) if d in r_dims else None for d in range(rank)])
        epilogue.notes.append("residual add")
    for side, mode, bound in clamps:
        if side == "lo" and epilogue.lo_mode == CLAMP_NONE:
            epilogue.lo_mode, epilogue.lo = mode, bound
        elif side == "hi" and epilogue.hi_mode == CLAMP_NONE:
            epilogue.hi_mode, epilogue.hi = mode, bound
        else:
            epilogue.residual = None
            return
    if clamps:
        epilogue.notes.append("activation")
    if act != ACT_NONE:
        epilogue.act = act
        epilogue.notes.append(ACT_NAMES[act])
    epilogue.consumer = consumer


# ------------------------------------------------------------------------------------------ emitting the call

def _index(value: int):
    from mlir import ir
    from mlir.dialects import arith

    return arith.constant(ir.IndexType.get(), value)


def _bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def address_and_strides(view) -> tuple:
    """A float32 memref's address (its aligned pointer plus its offset) and its per-dim strides (SSA index values)."""
    from mlir.dialects import arith, memref

    meta = memref.ExtractStridedMetadataOp(view)
    base = memref.extract_aligned_pointer_as_index(view)
    return arith.addi(base, arith.muli(meta.offset, _index(4))), list(meta.strides)


class _Buffer:
    """A tensor seen as a buffer of any layout: its address and its per-dim strides (SSA index values)."""

    def __init__(self, tensor):
        from mlir import ir
        from mlir.dialects import bufferization

        ranked = ir.RankedTensorType(tensor.type)
        dynamic = ir.ShapedType.get_dynamic_stride_or_offset()
        layout = ir.StridedLayoutAttr.get(dynamic, [dynamic] * ranked.rank)
        view = bufferization.ToBufferOp(ir.MemRefType.get(ranked.shape, ranked.element_type, layout), tensor, read_only=True).result
        self.address, self.strides = address_and_strides(view)

    def along(self, dims: list[int | None]) -> list:
        """Strides per output dim for a source read through `dims` (0 where broadcast)."""
        return [self.strides[d] if d is not None else _index(0) for d in dims]


def _output(result_type):
    """A fresh buffer for the kernel to write, its address, and its (static) row-major strides."""
    from mlir import ir
    from mlir.dialects import memref

    ranked = ir.RankedTensorType(result_type)
    alloc = memref.AllocOp(ir.MemRefType.get(ranked.shape, ranked.element_type), [], [], alignment=64).result
    strides, running = [], 1
    for size in reversed(ranked.shape):
        strides.insert(0, running)
        running *= size
    return alloc, memref.extract_aligned_pointer_as_index(alloc), [_index(s) for s in strides]


def _epilogue_args(epilogue: Epilogue, pick) -> list:
    """The epilogue arguments; `pick(strides per output dim)` orders them as the entry wants."""
    values = [_index(epilogue.init_mode), _index(_bits(epilogue.init_value))]
    if epilogue.init is not None:
        buffer = _Buffer(epilogue.init.value)
        values += [buffer.address] + pick(buffer.along(epilogue.init.dims))
    else:
        values += [_index(0)] + pick(None)
    if epilogue.residual is not None:
        buffer = _Buffer(epilogue.residual.value)
        values += [buffer.address] + pick(buffer.along(epilogue.residual.dims))
    else:
        values += [_index(0)] + pick(None)
    hi_mode = epilogue.hi_mode | (epilogue.act << ACT_SHIFT)
    return values + [_index(epilogue.lo_mode), _index(_bits(epilogue.lo)), _index(hi_mode), _index(_bits(epilogue.hi))]


def _loop_strides(dims: list[int], position_strides: list, num_loops: int) -> list:
    """Stride of each loop dim in an operand whose position i is indexed by loop dim dims[i] (0 for the others)."""
    from mlir.dialects import arith

    out = [None] * num_loops
    for position, d in enumerate(dims):
        out[d] = position_strides[position] if out[d] is None else arith.addi(out[d], position_strides[position])
    return [s if s is not None else _index(0) for s in out]


def _collapse_groups(tensor, dims: list[int], groups: list[list[int]]):
    """(tensor collapsed along each group's positions, loop dim per new position). On tensors a collapse is always
    valid; bufferization makes it a view of a contiguous buffer, or a copy when the source's strides do not allow."""
    from mlir import ir
    from mlir.dialects import tensor as tensor_d

    firsts = {g[0]: g for g in groups}
    if not any(d in firsts for d in dims):
        return tensor, dims
    ranked = ir.RankedTensorType(tensor.type)
    reassociation, new_dims, shape, position = [], [], [], 0
    while position < len(dims):
        group = firsts.get(dims[position])
        width = len(group) if group else 1
        reassociation.append(list(range(position, position + width)))
        new_dims.append(group[-1] if group else dims[position])
        size = 1
        for i in range(position, position + width):
            size *= ranked.shape[i]
        shape.append(size)
        position += width
    result = ir.RankedTensorType.get(shape, ranked.element_type)
    return tensor_d.CollapseShapeOp(result, tensor, reassociation).result, new_dims


def _gemm_call(op, epilogue: Epilogue, out_address, out_strides, site: int = 0) -> list:
    from mlir import ir

    roles = GemmRoles(**json.loads(ir.StringAttr(op.attributes["hcc.roles"]).value))
    maps = _maps(op)
    num_loops = maps[0].n_dims
    ranges = [1] * num_loops
    for operand, amap in enumerate(maps):
        for position, expr in enumerate(amap.results):
            ranges[expr.position] = ir.RankedTensorType(op.operands[operand].type).shape[position]
    operand_dims = [[e.position for e in amap.results] for amap in maps]
    for group in roles.groups:  # a group reads as its last dim, over the product of their sizes
        size = 1
        for d in group:
            size *= ranges[d]
        ranges[group[-1]] = size
    a_value, a_dims = _collapse_groups(op.operands[roles.a], operand_dims[roles.a], roles.groups)
    b_value, b_dims = _collapse_groups(op.operands[roles.b], operand_dims[roles.b], roles.groups)
    a, b = _Buffer(a_value), _Buffer(b_value)
    sa = _loop_strides(a_dims, a.strides, num_loops)
    sb = _loop_strides(b_dims, b.strides, num_loops)
    sc = _loop_strides(operand_dims[2], out_strides, num_loops)
    batch = roles.batch + [None] * (MAX_BATCH_DIMS - len(roles.batch))
    ks = roles.ks + [None] * (MAX_K_DIMS - len(roles.ks))
    zero = _index(0)

    def per(strides, dims):
        return [strides[d] if d is not None else zero for d in dims]

    sizes = [_index(ranges[d] if d is not None else 1) for d in batch + [roles.m, roles.n] + ks]  # B0 B1 B2 M N K1 K2
    out_dims = [e.position for e in maps[2].results]

    def pick(strides):  # init/residual strides per output position -> {b0, b1, b2, m, n}
        if strides is None:
            return [zero] * 5
        return [strides[out_dims.index(d)] if d is not None else zero for d in batch + [roles.m, roles.n]]

    args = [a.address, b.address, out_address] + sizes
    args += per(sa, batch) + per(sa, [roles.m]) + per(sa, ks)
    args += per(sb, batch) + per(sb, ks) + per(sb, [roles.n])
    args += per(sc, batch) + per(sc, [roles.m, roles.n])
    return args + _epilogue_args(epilogue, pick) + [_index(site)]


def _dense_ints(op, name: str, default: list[int]) -> list[int]:
    from mlir import ir

    if name not in op.attributes:
        return default
    return [int(v) for v in ir.DenseIntElementsAttr(op.attributes[name])]


def zero_padding(value) -> tuple[object, int, int] | None:
    """(unpadded source, pad top, pad left) when `value` is a `tensor.pad` of an NCHW tensor with zeros, padding
    only H and W by static amounts; None otherwise."""
    from mlir import ir

    pad = value.owner
    if isinstance(pad, ir.Block) or pad.name != "tensor.pad" or len(pad.operands) != 1:
        return None
    low = [int(v) for v in ir.DenseI64ArrayAttr(pad.attributes["static_low"])]
    high = [int(v) for v in ir.DenseI64ArrayAttr(pad.attributes["static_high"])]
    if len(low) != 4 or low[:2] != [0, 0] or high[:2] != [0, 0] or min(low + high) < 0:
        return None
    body = list(pad.regions[0].blocks[0].operations)
    if len(body) != 1 or _constant_float(body[0].operands[0]) != 0.0:
        return None
    return pad.operands[0], low[2], low[3]


def _constant_operand(op, index: int, constant_args: frozenset[int]) -> bool:
    """Whether operand `index` is one of the function's arguments that are bundle weights (the same values on every
    call, so the kernel may keep a packed copy)."""
    return is_constant_weight(op.operands[index], constant_args)


def is_constant_weight(value, constant_args: frozenset[int]) -> bool:
    """Whether `value` is a bundle weight (a function argument in `constant_args`) or a fixed part of one: a reshape,
    or a slice at static offsets (an LSTM's gate matrices), reads the same elements on every call."""
    from mlir import ir

    while not isinstance(value, ir.BlockArgument) and (value.owner.name in _VIEWS or _static_slice(value.owner)):
        value = value.owner.operands[0]
    return isinstance(value, ir.BlockArgument) and value.arg_number in constant_args and \
        value.owner.owner.operation.name == "func.func"


def _shared_site_key(op, symbol: str, index: int) -> tuple:
    """What makes two GEMM calls pack the same B: the entry, the bundle weight and the views of it that B reads (with
    their static offsets and shapes), every operand's type and the roles. Calls with the same key share one packed
    copy: the steps of an unrolled recurrence (a DynamicQuantizeLSTM's 49 products by R) each kept their own copy of
    R's panels, 49 x 256 KiB streamed from memory instead of one from L2."""
    from mlir import ir

    value, chain = op.operands[index], []
    while not isinstance(value, ir.BlockArgument):
        owner = value.owner
        chain.append((owner.name, str(value.type), tuple((name, str(owner.attributes[name])) for name in owner.attributes)))
        value = owner.operands[0]
    roles = str(op.attributes["hcc.roles"]) if "hcc.roles" in op.attributes else ""
    return symbol, value.arg_number, tuple(chain), tuple(str(v.type) for v in op.operands), roles


def _static_slice(op) -> bool:
    """A tensor.extract_slice whose offsets, sizes and strides are all constants (no SSA operands but its source)."""
    return op.name == "tensor.extract_slice" and len(op.operands) == 1


HOISTED = "hcc.hoisted"  # marks a contraction hoist_projections.py moved out of its time loop
MERGED = "hcc.merged"  # on a contraction merge_products.py made of several (their count)

_VIEWS = ("tensor.expand_shape", "tensor.collapse_shape", "tensor.cast")  # the same elements, in the same order


def _packed_operand(op, base: str) -> int | None:
    """The operand a kernel packs and may keep: a GEMM's B (for a product of few rows, a matrix-vector product,
    ukernels.c keeps it as panels it streams), a convolution's filters; None for other kernels."""
    if base == CONV:
        return 1
    if base != GEMM:
        return None
    from mlir import ir

    return json.loads(ir.StringAttr(op.attributes["hcc.roles"]).value)["b"]


def _conv_call(op, symbol: str, epilogue: Epilogue, out_address, out_strides, site: int = 0, layouts: int = 0) -> list:
    from mlir import ir

    w_type, y_type = (ir.RankedTensorType(v.type) for v in op.operands[1:3])
    source, top, left = zero_padding(op.operands[0]) or (op.operands[0], 0, 0)
    x, w = _Buffer(source), _Buffer(op.operands[1])
    (n, c, h, wd), (oh, ow) = ir.RankedTensorType(source.type).shape, y_type.shape[2:]
    strides = _dense_ints(op, "strides", [1, 1]) + _dense_ints(op, "dilations", [1, 1]) + [top, left]
    if symbol == CONV:
        f, cw, kh, kw = w_type.shape
        sizes = [n, c, h, wd, f, kh, kw, oh, ow, c // cw]
    else:
        _, kh, kw = w_type.shape
        sizes = [n, c, h, wd, kh, kw, oh, ow]
    args = [x.address, w.address, out_address] + [_index(v) for v in sizes + strides] + x.strides + w.strides + out_strides
    args += _epilogue_args(epilogue, lambda s: s if s is not None else [_index(0)] * 4)
    return args + ([_index(site)] if symbol == CONV else []) + [_index(layouts)]


X_BLOCKED, Y_BLOCKED = 1, 2  # ukernels.c: the input / the output in the blocked layout
BLOCK_CHANNELS = 16  # ukernels.c CBLOCK: channels per block
# When the filter-vector kernel takes a convolution (ukernels.c conv_entry, at 16 lanes): it then reads and writes the
# blocked layout in place; a convolution that another kernel takes converts (correct, but no faster). 16 filters, not
# 32: ukernels.c runs every convolution with a blocked input or output on that kernel, and a depthwise-separable
# block's 96->24 or 96->16 projection reading the depthwise output blocked made the block 11-16% faster (AVX2, EPYC).
FV_MIN_TAPS, FV_MIN_TAPS_UNPLAIN, FV_MIN_FILTERS, FV_NARROW_ROWS = 64, 16, 16, 16


def _conv_shape(op, base: str) -> tuple[int, int, int, int, int, int]:
    """(C, F, KH, KW, groups, OW) of a tagged convolution."""
    from mlir import ir

    w = ir.RankedTensorType(op.operands[1].type).shape
    x = ir.RankedTensorType(op.operands[0].type).shape
    ow = ir.RankedTensorType(op.results[0].type).shape[3]
    if base == DWCONV:
        return x[1], x[1], w[1], w[2], x[1], ow
    return x[1], w[0], w[2], w[3], x[1] // w[1], ow


def _filter_vector_kernel(op, base: str, blocked_output: bool = False, blocked_input: bool = False) -> bool:
    """Whether ukernels.c runs this fp32 convolution on the filter-vector kernel (conv_fv), or the depthwise one;
    `blocked_output` / `blocked_input`: if it writes / reads the blocked layout (fewer taps do: no transposed write-out,
    or no im2col, to pay for)."""
    if base == DWCONV:
        return True
    c, f, kh, kw, groups, ow = _conv_shape(op, base)
    plain = kh == kw == 1 and _dense_ints(op, "strides", [1, 1]) == [1, 1] and zero_padding(op.operands[0]) is None
    taps = c // groups * kh * kw
    return groups == 1 and (taps >= FV_MIN_TAPS or ((not plain or blocked_output or blocked_input) and taps >= FV_MIN_TAPS_UNPLAIN)) and \
        (f >= FV_MIN_FILTERS or ow < FV_NARROW_ROWS)


def _base(op) -> str | None:
    """The micro-kernel a tagged op calls (GEMM, CONV, DWCONV), else None."""
    from mlir import ir

    return ir.StringAttr(op.attributes["hcc.ukernel"]).value if "hcc.ukernel" in op.attributes else None


def _takes_blocked_input(op) -> bool:
    """A tagged fp32 convolution that reads a blocked input in place: a depthwise one, or an unpadded 1x1 stride-1
    one that the filter-vector kernel takes."""
    base = _base(op)
    if base is None:
        return False
    if base == DWCONV:
        return True
    if base != CONV or zero_padding(op.operands[0]) is not None or _dense_ints(op, "strides", [1, 1]) != [1, 1]:
        return False
    _c, _f, kh, kw, _groups, _ow = _conv_shape(op, base)
    return kh == kw == 1 and _filter_vector_kernel(op, base, blocked_input=True)


def blocked_handover(op, base: str, result, epilogue: Epilogue, precision_of=None) -> bool:
    """Whether a convolution writes `result` (its output after the fused epilogue) in the blocked layout: its kernel
    writes that layout in place (filter-vector or depthwise), the epilogue is a per-channel bias and a clamp, and
    every reader is a convolution that reads the layout in place (_takes_blocked_input). Then neither converts:
    onnxruntime's NCHWc between convolutions, for the chains of depthwise-separable CNNs. `precision_of` (as for
    emit_calls): a dense convolution asked for bf16 or int8, on either side, keeps NCHW for its tiles."""
    from mlir import ir

    shape = ir.RankedTensorType(result.type).shape
    if len(shape) != 4 or shape[1] % BLOCK_CHANNELS or not _filter_vector_kernel(op, base, blocked_output=True):
        return False
    if epilogue.residual is not None or epilogue.init_mode == INIT_IN_C:
        return False
    if epilogue.init is not None and any(d in (2, 3) for d in epilogue.init.dims):
        return False
    reduced = base != DWCONV and precision_of is not None and precision_of(op) is not None  # depthwise: fp32 always
    return _read_blocked_only(result, None if reduced else precision_of, dense_readers=not reduced)


def _read_blocked_only(value, precision_of=None, dense_readers: bool = True) -> bool:
    """Every reader of `value` reads it as a blocked input: a convolution's input, or the zero padding of a
    convolution's input (its kernel pads implicitly: a depthwise one, or one on the filter-vector kernel, which
    copies the blocked input into a blocked padded buffer) read by nothing else; `dense_readers`: whether a dense
    (not depthwise) convolution may be one, padded or not (see blocked_handover: a bf16 convolution's output goes
    blocked to depthwise readers only, as it stays fp32 then; U-Net's 128-channel 3x3 bottleneck, read by its
    up-convolution's 1x1 pieces, ran fp32 for the hand-over: 0.71 ms, 0.4 in bf16 on dot products)."""
    uses = list(value.uses)
    if not uses:
        return False
    for use in uses:
        owner = use.owner
        if use.operand_number != 0:
            return False
        if owner.name == "tensor.pad":
            readers = list(owner.results[0].uses)
            if not readers or not all(r.operand_number == 0 and _pads_blocked_input(r.owner, precision_of, dense_readers)
                                      for r in readers):
                return False
        elif not _takes_blocked_input(owner) or (not dense_readers and _base(owner) != DWCONV):
            return False
    return True


def _pads_blocked_input(op, precision_of=None, dense: bool = True) -> bool:
    """A tagged fp32 convolution whose kernel zero-pads a blocked input itself: a depthwise one, or one that the
    filter-vector kernel takes (ukernels.c padded_block_copy; measured on the EPYC at 1 thread: 3x3 convolutions
    of 16..256 channels 1-5% faster reading blocked than NCHW, and the convolution writing it 4-19% faster). Not a
    dense one asked for bf16 (`precision_of`): the tiles read NCHW, and a blocked input would keep it in fp32."""
    base = _base(op)
    if base is None or zero_padding(op.operands[0]) is None:
        return False
    if base == DWCONV:
        return True
    reduced = precision_of is not None and precision_of(op) is not None
    return dense and base == CONV and not reduced and _filter_vector_kernel(op, base, blocked_input=True)


def _input_source(op):
    """A convolution's input tensor, before the zero padding its kernel folds."""
    padding = zero_padding(op.operands[0])
    return padding[0] if padding is not None else op.operands[0]


@dataclass
class Emitted:
    """One kernel call, for the schedule report."""

    location: object  # the original op's MLIR location (names its ONNX node)
    symbol: str
    work: int
    fused: list[str]
    packed_weights: bool = False  # its B / filters are a bundle weight: the kernel packs them at its first call only
    layouts: int = 0  # X_BLOCKED / Y_BLOCKED: input / output in the blocked layout
    hoisted: bool = False  # a time loop's input products, computed for every step before the loop (hoist_projections)
    merged: int = 0  # the count of products of one A over adjacent slices of one weight it computes (merge_products)
    kept_fp32: bool = False  # asked for bf16, kept in fp32 for the blocked layout hand-over
    int8_not_constant: bool = False  # asked for int8, kept in fp32: its B is not a bundle weight


def emit_calls(module, precision_of=None, constant_args: frozenset[int] = frozenset(), int8_step=None) -> list[Emitted]:
    """Replace every tagged op by its kernel call, fusing its init and epilogue. `precision_of(op)`: "bf16",
    "bf16x3" or "int8" when a GEMM or convolution calls that entry of its kernel (PRECISION_VARIANT; a precision its
    kernel lacks stays fp32), None for fp32; None: every op in fp32. `int8_step(op)`: an int8 GEMM's (step, signed)
    for its A operand. `constant_args`: the function's arguments that are bundle weights (a convolution over one gets
    a call-site number: packed once)."""
    from mlir import ir
    from mlir.dialects import bufferization, func

    emitted, sites = [], 0
    shared_sites: dict = {}  # GEMMs of one weight view and one shape share a call site: one packed copy (_shared_site_key)
    blocked = []  # kernel results in the blocked layout (their readers were checked to take it)
    tagged = [op for op in _all_ops(module.operation) if "hcc.ukernel" in op.attributes]  # before erasing anything
    for op in tagged:
        base = ir.StringAttr(op.attributes["hcc.ukernel"]).value
        symbol = PRECISION_VARIANT.get((base, precision_of(op) if precision_of is not None else None), base)
        rank = ir.RankedTensorType(op.results[0].type).rank
        epilogue = Epilogue()
        init_of(op, rank, epilogue)
        consumer_of(op, epilogue, rank, gelu=base == GEMM)
        target = epilogue.consumer or op
        init_producer = op.operands[len(op.operands) - 1].owner
        input_producer = op.operands[0].owner
        with ir.InsertionPoint(target), op.location:
            alloc, address, strides = _output(target.results[0].type)
            site = 0
            packed = _packed_operand(op, base)
            if packed is not None and _constant_operand(op, packed, constant_args):
                key = _shared_site_key(op, symbol, packed) if base == GEMM else None
                if key is None or key not in shared_sites:
                    sites += 1
                    shared_sites[key] = sites
                site = shared_sites[key] if key is not None else sites
            layouts = 0
            if base != GEMM:
                layouts |= X_BLOCKED if any(_input_source(op) == value for value in blocked) else 0
                layouts |= Y_BLOCKED if blocked_handover(op, base, target.results[0], epilogue, precision_of) else 0
            kept_fp32 = bool(layouts) and symbol != base
            int8_not_constant = symbol == GEMM_INT8 and site == 0
            if int8_not_constant:  # int8 quantizes a kept weight per column, once
                symbol = base
            if kept_fp32:
                # The bf16 entries read and write NCHW: a convolution of a blocked hand-over stays fp32 (leaving
                # the chain for the tiles made DS-CNN 0.80x and MobileNetV2 0.97x as fast as fp32).
                symbol = base
            _declare(module, symbol)
            if base == GEMM:
                args = _gemm_call(op, epilogue, address, strides, site)
                if symbol == GEMM_INT8:
                    step, signed = int8_step(op)
                    args += [_index(_bits(step)), _index(int(signed))]
            else:
                args = _conv_call(op, base, epilogue, address, strides, site, layouts)
            func.call([], ir.FlatSymbolRefAttr.get(symbol), args)
            result = bufferization.ToTensorOp(target.results[0].type, alloc, restrict=True, writable=True).result
        target.results[0].replace_all_uses_with(result)
        if layouts & Y_BLOCKED:
            blocked.append(result)
        emitted.append(Emitted(op.location, symbol, ir.IntegerAttr(op.attributes["hcc.work"]).value, epilogue.notes, site > 0,
                               layouts=layouts, hoisted=HOISTED in op.attributes, kept_fp32=kept_fp32, int8_not_constant=int8_not_constant,
                               merged=ir.IntegerAttr(op.attributes[MERGED]).value if MERGED in op.attributes else 0))
        if epilogue.consumer is not None:
            epilogue.consumer.erase()
        op.erase()
        for producer in (init_producer, input_producer):  # a fused init / padding nothing else reads
            if not isinstance(producer, ir.Block) and producer.name in _FOLDED and not list(producer.results[0].uses):
                producer.erase()
    return emitted


def _declare(module, symbol: str, arity: int | None = None) -> None:
    """A private declaration of `symbol` taking `arity` (default: ARITY[symbol]) index arguments, once."""
    from mlir import ir
    from mlir.dialects import func

    body = module.body
    for op in body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == symbol:
            return
    index = ir.IndexType.get()
    with ir.InsertionPoint.at_block_begin(body), ir.Location.unknown():
        decl = func.FuncOp(symbol, ir.FunctionType.get([index] * (ARITY[symbol] if arity is None else arity), []))
        decl.attributes["sym_visibility"] = ir.StringAttr.get("private")
