"""CPU schedules: classify each linalg op of a function and write the transform-dialect script that tiles and
vectorizes it (upstream MLIR only; the transform interpreter runs the scripts in `lowering.py`).

Every op gets its own script, matched through a unique `hcc.id` attribute, so `lowering.py` can apply the
scripts one at a time and fall back to plain loops for an op whose script fails.

Strategies (AVX2: 16 ymm registers of 8 x f32):

* `contraction` (matmul, batch_matmul, Gemm with a transposed weight, im2col GEMMs; any generic whose body is
  `out + a * b`, several reduction dims allowed): the operand that carries the output's innermost dim N ("B")
  is packed with `transform.structured.pack` + `pack_transpose` into panels `[.., N/16, K.., 16]` (zero
  padded), so the micro-kernel reads 16 contiguous floats per k. The packed op is tiled for the caches (equal k
  panels of about `KC`, blocks of panels that fit L2), split along M into a multiple of the register tile and a
  remainder (`transform.structured.split`, so every tile has a static shape), tiled to MR x 16 register tiles
  and one k step, vectorized, and the MR x 16 accumulator is hoisted out of the k loops
  (`transform.loop.hoist_loop_invariant_subsets`): 12 FMAs per 6 broadcasts + 2 loads.
* contraction with at most 2 rows and an N x K weight (classifier Gemm): dot products along k with 8 partial
  sums per output (`tile_reduction_using_for`), no packing.
* `conv` (NCHW conv/depthwise/pooling-like windowed ops whose innermost window is unit-stride along W): one
  output row x 16 columns x FR=6 output channels per register tile; the window loops (c, kh, kw) are tiled to 1
  and unit dims folded (`fold_unit_extent_dims_via_slices`) so the inner op is an FMA on rows that are
  contiguous in the input, and the accumulators are hoisted out of all window loops. Rows that are not a
  multiple of 8 wide use masked 8/16-lane vectors. (Strided convs arrive as im2col + GEMM, see lowering.py.)
* `elementwise` (all-parallel generics: bias, activations, fill, broadcast, transpose): tiled to one vector along
  the innermost dim (up to 16 lanes; the tail loop is peeled and masked) and vectorized.
* anything else (strided pooling, gathers such as im2col, general reductions, dynamic shapes, non-f32): left
  alone; `convert-linalg-to-loops` lowers it to scalar loops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

VECTOR = 16          # output lanes per register tile (2 x ymm)
MR = 6               # register tile rows: 6 x 16 = 12 ymm accumulators + 2 for B + 1 broadcast
KC = 256             # k-panel (cache tile) of the contraction
NC_BYTES = 256 * 1024  # the packed B block one k-panel touches (NCB panels x KC x 16 x 4 bytes) stays in L2
ELEMENTWISE_MAX_LANES = 16
MIN_PACKED_FLOPS = 2 * 16 * 16 * 16  # smaller contractions are not worth packing


@dataclass
class LinalgOp:
    """What the schedule needs to know about one `linalg.generic` (after generalization)."""
    index: int
    iterators: list[str]                 # "parallel" / "reduction" per loop dim
    maps: list[list]                     # per operand: result exprs as ("dim", d) or ("expr", text)
    shapes: list[list[int]]              # per operand: static shape ([] for scalars)
    num_inputs: int
    body: list[str]                      # op names in the body (without the terminator)
    element: str                         # element type of the output
    ranges: list[int] = field(default_factory=list)  # static size of each loop dim (-1: unknown)

    @property
    def num_loops(self) -> int:
        return len(self.iterators)

    def dims_of(self, operand: int) -> list[int | None]:
        return [e[1] if e[0] == "dim" else None for e in self.maps[operand]]


@dataclass
class Plan:
    kind: str      # "contraction" | "conv" | "elementwise" | "loops"
    script: str = ""
    note: str = ""


# --------------------------------------------------------------------------------------------- analysis

def analyze(op, index: int) -> LinalgOp:
    """Read a linalg.generic through the Python bindings."""
    from mlir import ir

    iterators = ["reduction" if "reduction" in str(a) else "parallel" for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    maps = []
    for attr in ir.ArrayAttr(op.attributes["indexing_maps"]):
        amap = ir.AffineMapAttr(attr).value
        exprs = []
        for expr in amap.results:
            if isinstance(expr, ir.AffineDimExpr):
                exprs.append(("dim", expr.position))
            else:
                exprs.append(("expr", str(expr)))
        maps.append(exprs)
    shapes = []
    for value in op.operands:
        t = value.type
        if isinstance(t, ir.RankedTensorType):
            rt = t
            shapes.append([d if not rt.is_dynamic_dim(i) else -1 for i, d in enumerate(rt.shape)])
        else:
            shapes.append([])
    num_inputs = len(op.operands) - len(op.results)
    body = [o.operation.name for o in op.regions[0].blocks[0].operations][:-1]
    element = str(op.results[0].type.element_type) if len(op.results) == 1 else "?"
    info = LinalgOp(index, iterators, maps, shapes, num_inputs, body, element)
    ranges = [-1] * len(iterators)
    for exprs, shape in zip(maps, shapes):
        for (kind, d), size in zip(exprs, shape):
            if kind == "dim" and size >= 0:
                ranges[d] = size
    info.ranges = ranges
    return info


def _is_static(op: LinalgOp) -> bool:
    return all(r > 0 for r in op.ranges) and all(s >= 0 for shape in op.shapes for s in shape)


def _is_mul_add_body(op: LinalgOp) -> bool:
    return op.body in (["arith.mulf", "arith.addf"],)


def _is_window_reduction(op: LinalgOp) -> bool:
    """Pooling: one windowed input (plus the window-shape operand) reduced with max or add."""
    return op.body in (["arith.maximumf"], ["arith.addf"]) and any(k == "expr" for m in op.maps for k, _ in m)


# --------------------------------------------------------------------------------------------- planning

def plan(op: LinalgOp) -> Plan:
    if op.element != "f32" or not _is_static(op) or len(op.shapes) - op.num_inputs != 1:
        return Plan("loops", note="not a static f32 op with one result")
    if all(it == "parallel" for it in op.iterators):
        if any(kind == "expr" for m in op.maps for kind, _ in m):
            return Plan("loops", note="gather (non-affine-projection access, e.g. im2col): scalar loops")
        return _plan_elementwise(op)
    if op.num_inputs == 2 and _is_mul_add_body(op):
        if all(kind == "dim" for m in op.maps for kind, _ in m):
            return _plan_contraction(op)
        return _plan_conv(op)
    if _is_window_reduction(op):
        return _plan_conv(op)
    return Plan("loops", note="no vector schedule for this op")


def _header(op: LinalgOp) -> str:
    return (f'    %op = transform.structured.match ops{{["linalg.generic"]}} attributes {{hcc.id = {op.index} : i64}} in %root '
            f": (!transform.any_op) -> !transform.any_op\n")


def _wrap(body: str) -> str:
    return (
        "module attributes {transform.with_named_sequence} {\n"
        "  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {\n"
        f"{body}"
        "    transform.yield\n"
        "  }\n"
        "}\n"
    )


def _tile(target: str, result: str, sizes: list[int], interchange: list[int] | None = None) -> tuple[str, list[str]]:
    """`tile_using_for`; returns the text and the names of the loop handles (one per non-zero size)."""
    nloops = sum(1 for s in sizes if s)
    loops = [f"{result}_l{i}" for i in range(nloops)]
    lhs = ", ".join([result] + loops)
    inter = f" interchange = {interchange}" if interchange else ""
    types = ", ".join(["!transform.any_op"] * (nloops + 1))
    text = f"    {lhs} = transform.structured.tile_using_for {target} tile_sizes {sizes}{inter} : (!transform.any_op) -> ({types})\n"
    return text, loops


def _canonicalize(target: str) -> str:
    return (f"    transform.apply_patterns to {target} {{\n"
            "      transform.apply_patterns.canonicalization\n"
            "      transform.apply_patterns.linalg.tiling_canonicalization\n"
            "      transform.apply_patterns.scf.for_loop_canonicalization\n"
            f"    }} : !transform.any_op\n")


def _elementwise_tiles(op: LinalgOp) -> tuple[list[int], int]:
    """Tile sizes that leave one vector along the innermost loop dim; the vector width."""
    inner = op.ranges[-1]
    if inner <= ELEMENTWISE_MAX_LANES:
        lanes = inner
    elif inner % ELEMENTWISE_MAX_LANES == 0:
        lanes = ELEMENTWISE_MAX_LANES
    elif inner % 8 == 0:
        lanes = 8
    else:
        lanes = ELEMENTWISE_MAX_LANES
    return [1] * (op.num_loops - 1) + [lanes], lanes


def _plan_elementwise(op: LinalgOp) -> Plan:
    sizes, lanes = _elementwise_tiles(op)
    text = _header(op)
    tiled, loops = _tile("%op", "%t", sizes)
    text += tiled
    if op.ranges[-1] % lanes:
        # Peel the tail of the innermost loop so that both halves have a static vector shape.
        text += (f'    %inner = transform.cast {loops[-1]} : !transform.any_op to !transform.op<"scf.for">\n'
                 '    %main, %tail = transform.loop.peel %inner : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)\n')
        text += _canonicalize("%main") + _canonicalize("%tail")
        text += ('    %vm = transform.structured.match ops{["linalg.generic"]} in %main : (!transform.any_op) -> !transform.any_op\n'
                 "    transform.structured.vectorize %vm : !transform.any_op\n"
                 '    %vt = transform.structured.match ops{["linalg.generic"]} in %tail : (!transform.any_op) -> !transform.any_op\n'
                 f"    transform.structured.vectorize %vt vector_sizes {sizes} : !transform.any_op\n"
                 # Fold the vector.mask regions into masked transfers before anything canonicalizes them.
                 "    transform.apply_patterns to %tail {\n"
                 "      transform.apply_patterns.vector.lower_masked_transfers\n"
                 "    } : !transform.any_op\n")
    else:
        text += "    transform.structured.vectorize %t : !transform.any_op\n"
    return Plan("elementwise", _wrap(text), f"vector<{lanes}> over the innermost dim")


def _contraction_roles(op: LinalgOp):
    """(m, n, k dims, outer dims, index of A, index of B) or None.

    N is the output's innermost dim (the vector dim); B is the input that carries it, A the other; M is the
    innermost output dim that only A carries. Every other output dim (batch dims, and extra M- or N-like dims
    such as the image dim of an im2col GEMM) is an outer dim, tiled by 1. Several reduction dims are allowed
    (a Gemm whose input was flattened from NCHW reads it as C x H x W)."""
    a_dims, b_dims, c_dims = (op.dims_of(i) for i in range(3))
    ks = [d for d, it in enumerate(op.iterators) if it == "reduction"]
    if not ks or None in a_dims + b_dims + c_dims or not c_dims:
        return None
    if any(k in c_dims for k in ks) or len(set(a_dims)) != len(a_dims) or len(set(b_dims)) != len(b_dims):
        return None
    n = c_dims[-1]
    if n in a_dims and n in b_dims:
        return None
    ia, ib = (0, 1) if n in b_dims else (1, 0)
    a, b = (a_dims, b_dims) if ia == 0 else (b_dims, a_dims)
    if n in a or any(k not in a or k not in b for k in ks):
        return None
    ms = [d for d in c_dims if d in a and d not in b]
    if not ms:
        return None
    m = ms[-1]
    outer = [d for d in c_dims if d not in (m, n)]
    if set(a) | set(b) != set(c_dims) | set(ks):
        return None
    return m, n, ks, outer, ia, ib


def _hoist_chain(loops: list[str]) -> str:
    """Hoist the accumulator out of `loops` (outermost first), innermost loop first. Each loop first hoists the
    tile's extract_slice/insert_slice pair, then the vector transfers on the now loop-carried tile. No
    canonicalization in between: it would fold the slice into the read and break the pairs."""
    text = ""
    for loop in reversed(loops):
        text += (f"    transform.apply_licm to {loop} : !transform.any_op\n"
                 f"    transform.loop.hoist_loop_invariant_subsets {loop} : !transform.any_op\n"
                 f"    transform.apply_licm to {loop} : !transform.any_op\n"
                 f"    transform.loop.hoist_loop_invariant_subsets {loop} : !transform.any_op\n")
    return text


GEMV_NR = 8     # output columns per tile of the dot-product kernel (8 accumulators of 8 lanes)
GEMV_LANES = 8


def _plan_gemv(op: LinalgOp, m: int, n: int, ks: list[int], batch: list[int], ib: int) -> Plan | None:
    """Few rows and a weight stored N x K (Gemm transB / flattened classifier): packing the weight would cost
    more than the product itself. Dot products along the contiguous k dim instead: each output keeps 8 partial
    sums in a vector (`tile_reduction_using_for`), reduced once at the end."""
    b_dims = op.dims_of(ib)
    a_dims = op.dims_of(1 - ib)
    k_in = b_dims[-1]
    if k_in not in ks or a_dims[-1] != k_in or op.ranges[k_in] % GEMV_LANES:
        return None
    N = op.ranges[n]
    nr = min(GEMV_NR, N)
    text = _header(op)
    t, parts = _split_parts("%op", [(n, (N // nr) * nr, N)], "%s")
    text += t
    for j, (handle, part_sizes) in enumerate(parts):
        sizes = [0] * op.num_loops
        for d in batch:
            sizes[d] = 1
        sizes[n] = min(nr, part_sizes.get(n, N))
        sizes[m] = op.ranges[m]
        t, _ = _tile(handle, f"%g{j}", sizes)
        text += t
        red = [0] * op.num_loops
        for k in ks:
            red[k] = 1
        red[k_in] = GEMV_LANES
        text += (f"    %fill{j}, %par{j}, %comb{j}, %loop{j} = transform.structured.tile_reduction_using_for %g{j} "
                 f"by tile_sizes = {red} : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)\n"
                 f"    transform.structured.vectorize %par{j} : !transform.any_op\n"
                 f"    transform.structured.vectorize %fill{j} : !transform.any_op\n"
                 f"    transform.structured.vectorize %comb{j} : !transform.any_op\n"
                 # (hoist_loop_invariant_subsets on this loop nest breaks dominance in LLVM 22; the partial
                 # sums are hoisted after bufferization by hoist_redundant_vector_transfers instead.)
                 f"    transform.apply_licm to %loop{j} : !transform.any_op\n")
    return Plan("contraction", _wrap(text), f"dot products along k ({GEMV_LANES} lanes), {nr} outputs per tile")


def _plan_contraction(op: LinalgOp) -> Plan:
    roles = _contraction_roles(op)
    if roles is None:
        return Plan("loops", note="contraction with an unsupported dim layout")
    m, n, ks, batch, ia, ib = roles
    M, N = op.ranges[m], op.ranges[n]
    if M <= 2:
        gemv = _plan_gemv(op, m, n, ks, batch, ib)
        if gemv is not None:
            return gemv
    K = 1
    for k in ks:
        K *= op.ranges[k]
    if 2 * M * N * K < MIN_PACKED_FLOPS or N < 8:
        return Plan("loops", note="contraction too small to pack")
    text = _header(op)
    packed = [0] * op.num_loops
    packed[n] = VECTOR
    text += f"    %p = transform.structured.pack %op packed_sizes = {packed} : (!transform.any_op) -> !transform.op<\"linalg.generic\">\n"
    text += f"    %pb = transform.get_producer_of_operand %p[{ib}] : (!transform.op<\"linalg.generic\">) -> !transform.op<\"linalg.pack\">\n"
    # B's packed outer dims are B's dims in its own order; panels want [batch.., n, k..] (k dims in B's order).
    b_dims = op.dims_of(ib)
    want = [d for d in b_dims if d != n and d not in ks] + [n] + [d for d in b_dims if d in ks]
    outer_perm = [b_dims.index(d) for d in want]
    pack_op = "%pb"
    compute = "%p"
    if outer_perm != list(range(len(outer_perm))):
        text += (f"    %p2, %pb2, %u2 = transform.structured.pack_transpose %pb with_compute_op(%p) outer_perm = {outer_perm} "
                 ': (!transform.op<"linalg.pack">, !transform.op<"linalg.generic">) -> (!transform.op<"linalg.generic">, !transform.op<"linalg.pack">, !transform.any_op)\n')
        pack_op, compute = "%pb2", "%p2"
    text += f"    %cc = transform.cast {compute} : !transform.op<\"linalg.generic\"> to !transform.any_op\n"
    # Lower B's pack now: pad + expand_shape + transpose; tile the transpose to 16-float rows (or 8x16 blocks).
    text += (f"    %lp_pad, %lp_exp, %lp_tr = transform.structured.lower_pack {pack_op} : (!transform.op<\"linalg.pack\">) -> "
             '(!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)\n'
             '    %lp_tr2 = transform.cast %lp_tr : !transform.op<"linalg.transpose"> to !transform.any_op\n')
    nb_rank = len(want) + 1
    if b_dims[-1] == n:
        # Expanded B is [.., K.., N/16, 16]: the transpose moves whole 16-float rows.
        tr_sizes = [1] * (nb_rank - 1) + [0]
    else:
        # Expanded B is [.., N/16, 16, .., K]: a real transpose, in 8 (k) x 16 (n) blocks.
        inner_k = op.ranges[b_dims[-1]]
        tr_sizes = [1] * (nb_rank - 2) + [8 if inner_k % 8 == 0 else 1, 0]
    t, _ = _tile("%lp_tr2", "%trt", tr_sizes)
    text += t + "    transform.structured.vectorize %trt : !transform.any_op\n"

    # The packed compute op: loops are the original dims + the new inner n dim (last).
    ni = op.num_loops
    nloops = op.num_loops + 1
    NB = -(-N // VECTOR)
    k_outer = [d for d in b_dims if d in ks][0]       # the k dim the cache tiling cuts
    k_inner = K // op.ranges[k_outer]
    kc_outer = op.ranges[k_outer]
    if K > KC * 3 // 2:
        # Equal k panels (784 -> 4 x 196, not 3 x 256 + 16): a short last panel reloads the accumulators
        # for few FMAs.
        panels = -(-K // KC)
        kc_outer = max(1, -(-op.ranges[k_outer] // panels))
    kc = kc_outer * k_inner
    ncb = max(1, min(NB, NC_BYTES // (min(K, kc) * VECTOR * 4)))
    blocks = -(-NB // ncb)
    ncb = -(-NB // blocks)  # equal blocks of panels too
    sizes = [0] * nloops
    for d in batch:
        sizes[d] = 1
    sizes[n] = ncb if ncb < NB else 0
    sizes[k_outer] = kc_outer if kc_outer < op.ranges[k_outer] else 0
    order = batch + [n, k_outer] + [d for d in range(nloops) if d not in batch and d not in (n, k_outer)]
    t, _ = _tile("%cc", "%c1", sizes, order)
    text += t
    main = (M // MR) * MR
    if main and main < M:
        text += (f"    %c1s = transform.structured.split %c1 after {main} {{dimension = {m}}} : !transform.any_op\n"
                 "    %c1a, %c1b = transform.split_handle %c1s : (!transform.any_op) -> (!transform.any_op, !transform.any_op)\n")
        parts = [("%c1a", MR), ("%c1b", M - main)]
    else:
        parts = [("%c1", MR if main else M)]
    for j, (part, mr) in enumerate(parts):
        s2 = [0] * nloops
        s2[m] = mr
        s2[n] = 1
        t, _ = _tile(part, f"%r{j}", s2, [n, m] + [d for d in range(nloops) if d not in (n, m)])
        text += t
        # One k step per iteration of the k loops (in dim order: the last one is innermost).
        s3 = [0] * nloops
        for k in ks:
            s3[k] = 1
        t, kloops = _tile(f"%r{j}", f"%u{j}", s3)
        text += t
        text += f"    transform.structured.vectorize %u{j} : !transform.any_op\n" + _hoist_chain(kloops)
    return Plan("contraction", _wrap(text), f"packed B, {MR}x{VECTOR} register tiles, kc={kc}, {ncb} panels per block")


def _split_parts(target: str, splits: list[tuple[int, int, int]], prefix: str) -> tuple[str, list[tuple[str, dict]]]:
    """Split `target` along each (dim, main size, full size); returns the text and (handle, {dim: part size})."""
    text = ""
    parts = [(target, {})]
    for dim, main, full in splits:
        if main == 0 or main == full:
            continue
        new_parts = []
        for j, (handle, sizes) in enumerate(parts):
            name = f"{prefix}{dim}_{j}"
            text += (f"    {name} = transform.structured.split {handle} after {main} {{dimension = {dim}}} : !transform.any_op\n"
                     f"    {name}a, {name}b = transform.split_handle {name} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)\n")
            new_parts += [(f"{name}a", {**sizes, dim: main}), (f"{name}b", {**sizes, dim: full - main})]
        parts = new_parts
    return text, parts


def _conv_roles(op: LinalgOp):
    """(input operand, ow dim, f dim or None) for a windowed op whose innermost output dim slides over the
    input's innermost dim with stride 1 (`d_ow + d_kw`), or None."""
    import re

    out = op.dims_of(op.num_inputs)
    if None in out or not out:
        return None
    ow = out[-1]
    windowed = [i for i in range(op.num_inputs) if any(kind == "expr" for kind, _ in op.maps[i])]
    if len(windowed) != 1:
        return None
    inp = windowed[0]
    kind, last = op.maps[inp][-1]
    if kind != "expr":
        return None
    match = re.fullmatch(r"d(\d+) \+ d(\d+)", last)
    if not match:
        return None
    a, b = int(match.group(1)), int(match.group(2))
    if ow not in (a, b) or op.iterators[b if a == ow else a] != "reduction":
        return None
    in_dims = {d for k, d in op.maps[inp] if k == "dim"}
    for k, e in op.maps[inp]:
        if k == "expr":
            in_dims |= {int(x) for x in re.findall(r"d(\d+)", e)}
    fs = [d for d in out if d not in in_dims and d != ow]
    return inp, ow, (fs[0] if len(fs) == 1 else None)


CONV_FR = 6


def _plan_conv(op: LinalgOp) -> Plan:
    """Direct convolution: register tile = FR output channels x 16 output columns of one output row; the
    reduction loops (c, kh, kw) run inside with the accumulators hoisted out of all of them."""
    roles = _conv_roles(op)
    if roles is None:
        return Plan("loops", note="windowed op without a unit-stride innermost window")
    _, ow, f = roles
    OW = op.ranges[ow]
    vec = VECTOR if OW >= VECTOR else OW
    splits = [(ow, (OW // vec) * vec, OW)]
    fr = 1
    if f is not None:
        F = op.ranges[f]
        fr = CONV_FR if F >= CONV_FR else F
        splits.append((f, (F // fr) * fr, F))
    text = _header(op)
    t, parts = _split_parts("%op", splits, "%s")
    text += t
    reductions = [d for d, it in enumerate(op.iterators) if it == "reduction"]
    for j, (handle, part_sizes) in enumerate(parts):
        sizes = [1] * op.num_loops
        sizes[ow] = min(vec, part_sizes.get(ow, OW))
        if f is not None:
            sizes[f] = min(fr, part_sizes.get(f, op.ranges[f]))
        t, loops = _tile(handle, f"%c{j}", sizes)
        text += t
        red_loops = [loops[d] for d in reductions]  # one loop per dim: sizes are all non-zero
        inner = loops[-1]
        text += (f"    transform.apply_patterns to {inner} {{\n"
                 "      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices\n"
                 "      transform.apply_patterns.canonicalization\n"
                 "    } : !transform.any_op\n"
                 f'    %g{j} = transform.structured.match ops{{["linalg.generic"]}} in {inner} : (!transform.any_op) -> !transform.any_op\n')
        width = sizes[ow]
        if width > 1 and width % 8:
            # An odd row (14, 7, 6 columns...) as an odd-length vector legalizes into shuffles; use a masked
            # 8/16-lane vector instead (masked loads/stores, full-width FMAs).
            lanes = 8 if width < 8 else VECTOR
            vsizes = ([sizes[f]] if f is not None and sizes[f] > 1 else []) + [lanes]
            text += (f"    transform.structured.vectorize %g{j} vector_sizes {vsizes} : !transform.any_op\n"
                     f"    transform.apply_patterns to {inner} {{\n"
                     "      transform.apply_patterns.vector.lower_masked_transfers\n"
                     "    } : !transform.any_op\n")
        else:
            text += f"    transform.structured.vectorize %g{j} : !transform.any_op\n"
        text += _hoist_chain(red_loops)
    return Plan("conv", _wrap(text), f"direct convolution, {fr}x{vec} register tiles")
