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
* `conv` (NCHW conv/depthwise/pooling-like windowed ops whose innermost window is unit-stride along W, or whose
  window is over the outer dims only, like the column pass of a max-pooling): one output row x 16 columns x FR=6
  output channels per register tile; the window loops (c, kh, kw) are tiled to 1 and unit dims folded
  (`fold_unit_extent_dims_via_slices`) so the inner op is an FMA (or a max: compare + select, the NaN rule of
  passes/nan_semantics.py) on rows that are contiguous in the input, and the accumulators are hoisted out of all
  window loops. Rows that are not a
  multiple of 8 wide use masked 8/16-lane vectors. (Strided convs arrive as im2col + GEMM, see lowering.py.)
* `elementwise` (all-parallel generics: bias, activations, fill, transpose, broadcasts, including maps with a
  constant 0 such as an attention mask read through `(d0, 0, 0, d3)`): tiled to one vector along the innermost
  dim (up to 16 lanes; the tail loop is peeled and masked) and vectorized. A body that reads by computed indices
  (`tensor.extract`: Gather, Resize, GridSample, GatherElements) of a function argument is vectorized with
  `vectorize_nd_extract` into vector gathers (whole vectors, no tail), except where an index goes through `subi`
  (`_gathers_vectorizable` says why: the pinned MLIR misreads mirrored runs and non-contiguous sources); the rest
  stay scalar.
* `reduction` (softmax's max/sum, LayerNorm's mean/variance, ReduceMean/Sum, GlobalAveragePool): over the
  contiguous innermost dim, one output at a time with 8/16 partial results in a vector and one tree combine
  (add, maximumf, minimumf only: their order does not matter, NaN included); over an outer dim, a vector of
  outputs along the contiguous output dim with the reduction loops inside (any combiner: each output keeps its
  order, so compare + select folds with onnxruntime's NaN rule are exact).
* `elementwise` and `reduction` ops of at least PARALLEL_MIN_WORK first have their outermost parallel loop (not the
  vector dim) tiled by 1 with `tile_using_forall`: the lowering makes it an OpenMP worksharing loop that the
  bundle's pool runs (runtime/openmp_abi.c), every iteration in its own order.
* anything else (strided pooling, gathers such as im2col, inner reductions with an order-dependent combiner,
  dynamic shapes, non-f32): left alone; `convert-linalg-to-loops` lowers it to scalar loops.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

VECTOR = 16          # output lanes per register tile (2 x ymm)
MR = 6               # register tile rows: 6 x 16 = 12 ymm accumulators + 2 for B + 1 broadcast
KC = 256             # k-panel (cache tile) of the contraction
NC_BYTES = 256 * 1024  # the packed B block one k-panel touches (NCB panels x KC x 16 x 4 bytes) stays in L2
ELEMENTWISE_MAX_LANES = 16
# An elementwise op or reduction of at least this much work (iterations x body ops) runs its outer loop on every
# thread. Measured on the 2-core Zen 4 (tanh + add, interleaved, 2 threads against 1): 4,096 elements (32 K ops)
# 8.3 -> 7.3 us a call, 16,384 17.7 -> 12.7, 65,536 67.1 -> 39.4; a fork costs about a microsecond when the workers
# spin, and the caller never waits for a worker that is late (threadpool.c), so smaller ops stay on one thread only
# because they would gain nothing.
PARALLEL_MIN_WORK = 1 << 14
MIN_PACKED_FLOPS = 2 * 16 * 16 * 16  # smaller contractions are not worth packing


@dataclass
class LinalgOp:
    """What the schedule needs to know about one `linalg.generic` (after generalization)."""
    index: int
    iterators: list[str]                 # "parallel" / "reduction" per loop dim
    maps: list[list]                     # per operand: result exprs as ("dim", d), ("const", c) or ("expr", text)
    shapes: list[list[int]]              # per operand: static shape ([] for scalars)
    num_inputs: int
    body: list[str]                      # op names in the body (without the terminator)
    element: str                         # element type of the output
    ranges: list[int] = field(default_factory=list)  # static size of each loop dim (-1: unknown)
    row_gather: bool = False  # its one tensor.extract reads a contiguous run along the innermost loop (_is_row_gather)
    vector_gather: bool = False  # its tensor.extracts may become vector gathers (_gathers_vectorizable)

    @property
    def num_loops(self) -> int:
        return len(self.iterators)

    def dims_of(self, operand: int) -> list[int | None]:
        return [e[1] if e[0] == "dim" else None for e in self.maps[operand]]


@dataclass
class Plan:
    kind: str      # "contraction" | "conv" | "elementwise" | "reduction" | "loops"
    script: str = ""
    note: str = ""
    threads: bool = False  # its outer loop runs across the pool's threads (_across_threads)


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
            elif isinstance(expr, ir.AffineConstantExpr):
                exprs.append(("const", expr.value))
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
    maps = [_broadcasts_only(exprs, shape) for exprs, shape in zip(maps, shapes)]
    num_inputs = len(op.operands) - len(op.results)
    body = [o.operation.name for o in op.regions[0].blocks[0].operations][:-1]
    element = str(op.results[0].type.element_type) if len(op.results) == 1 else "?"
    info = LinalgOp(index, iterators, maps, shapes, num_inputs, body, element)
    info.row_gather = _is_row_gather(op, maps, len(iterators))
    info.vector_gather = not info.row_gather and _gathers_vectorizable(op)
    ranges = [-1] * len(iterators)
    for exprs, shape in zip(maps, shapes):
        for (kind, d), size in zip(exprs, shape):
            if kind == "dim" and size >= 0:
                ranges[d] = size
    info.ranges = ranges
    return info


def _is_row_gather(op, maps: list, loops: int) -> bool:
    """Whether one `tensor.extract` of the body reads element [r..., j] of a function argument (a weight or an input:
    see _gathers_vectorizable for why not an intermediate) where j is the innermost loop index itself
    (`linalg.index` of the last dim) and no other index varies along that dim: an embedding lookup / Gather along an
    outer axis, out[i, j] = table[row(i), j]. Its reads along the innermost dim are contiguous, so it vectorizes into
    plain vector loads (_plan_elementwise); any other computed index (Pad(reflect), Resize) stays scalar. Other
    extracts are allowed when none of their indices varies along that dim (one value per vector: the row number
    read from the indices tensor, which the fusion pass moved into the body of a torch Embedding's gather)."""
    from mlir import ir

    block = op.regions[0].blocks[0]
    extracts = [o.operation for o in block.operations if o.operation.name == "tensor.extract"]
    if not extracts or loops < 1:
        return False
    inner, args = loops - 1, list(block.arguments)

    def in_body(value) -> bool:
        owner = value.owner
        if isinstance(owner, ir.Block):
            return owner == block  # else an argument of the enclosing function (a weight such as the table)
        return owner.parent is not None and owner.parent.name == "linalg.generic"

    def source_varies(value) -> bool | None:
        """A source of the innermost dim (a block argument read along it, the innermost linalg.index): True; another
        block argument or index, or a value defined outside the op (the same for every iteration): False."""
        if not in_body(value):
            return False
        if isinstance(value.owner, ir.Block):
            position = next(i for i, a in enumerate(args) if a == value)
            return any(kind != "dim" or d == inner for kind, d in maps[position])
        if value.owner.name == "linalg.index":
            return ir.IntegerAttr(value.owner.attributes["dim"]).value == inner
        return None

    def varies(value) -> bool:
        """Whether `value` may change along the innermost loop dim."""
        return _reached_from(value, source_varies)

    def reads_row(extract) -> bool:
        source, *indices = list(extract.operands)
        if not indices or in_body(source):
            return False
        trailing = indices[-1]
        if isinstance(trailing.owner, ir.Block) or trailing.owner.name != "linalg.index" or \
                ir.IntegerAttr(trailing.owner.attributes["dim"]).value != inner:
            return False
        return not any(varies(v) for v in indices[:-1])

    if not all(_function_argument(e.operands[0]) for e in extracts):
        return False  # a gather from an intermediate may read a strided buffer (_gathers_vectorizable)
    rows = [e for e in extracts if reads_row(e)]
    uniform = [e for e in extracts if e not in rows and not in_body(e.operands[0]) and not any(varies(v) for v in e.operands[1:])]
    return len(rows) == 1 and len(rows) + len(uniform) == len(extracts)


def _reached_from(value, source) -> bool:
    """Whether a value for which `source(v)` is True reaches `value` through the ops of a generic's body. `source`
    returns True or False for a value that ends a path (a block argument, an outside value, a leaf op) and None
    for an op to look through. Each op is visited once: the body is a DAG, and walking every path of shared index
    arithmetic took minutes (a bitcast's, tests/frontend/test_bitcast.py)."""
    pending, seen = [value], set()
    while pending:
        value = pending.pop()
        verdict = source(value)
        if verdict is not None:
            if verdict:
                return True
            continue
        op = getattr(value.owner, "operation", value.owner)
        if op not in seen:
            seen.add(op)
            pending.extend(value.owner.operands)
    return False


def _function_argument(value) -> bool:
    """Whether `value` is an argument of the enclosing function: a buffer of identity layout once bufferized."""
    from mlir import ir

    owner = value.owner
    return isinstance(owner, ir.Block) and owner.owner is not None and owner.owner.operation.name == "func.func"


def _gathers_vectorizable(op) -> bool:
    """Whether `vectorize_nd_extract` may turn every `tensor.extract` of the body into a vector gather. Two limits of
    the pinned MLIR decide it:
    * a gather's element offsets are linearized from the source *tensor's* shape, which is right only when its
      buffer is contiguous; a function argument is (identity layouts at the boundary), an intermediate may not be (a
      slice, or a value bufferized into its slice of a concatenation: tests/backends/cpu/test_codegen.py caught
      Pad(reflect)'s slices read with the wrong strides), so only extracts from function arguments qualify;
    * an extract whose trailing index reaches the loop index through constants, `addi` and `subi` only is taken for
      a contiguous load, which reads `c - i` (mirrored runs) forwards: no index may go through an `arith.subi`.
    Anything else (index_cast of a float coordinate: Resize, GridSample; a clamp; an index read from a tensor:
    Gather along the innermost axis, GatherElements) becomes a gather, which is right for any index pattern."""
    from mlir import ir

    block = op.regions[0].blocks[0]
    extracts = [o.operation for o in block.operations if o.operation.name == "tensor.extract"]

    def subi(value) -> bool | None:
        owner = value.owner
        if isinstance(owner, ir.Block) or owner.parent is None or owner.parent.name != "linalg.generic":
            return False  # a block argument or a value from outside the op
        return True if owner.name == "arith.subi" else None

    return bool(extracts) and all(_function_argument(e.operands[0]) for e in extracts) and \
        not any(_reached_from(index, subi) for e in extracts for index in list(e.operands)[1:])


def _broadcasts_only(exprs: list, shape: list[int]) -> list:
    """A constant result on a dim of size 1 is a broadcast (keepdim output, `x - max` reading the max); one that
    picks an element of a longer dim is a slice (a gather for the schedule: the vectorizer rejects it)."""
    return [("expr", str(v)) if k == "const" and (i >= len(shape) or shape[i] != 1) else (k, v)
            for i, (k, v) in enumerate(exprs)]


def _is_static(op: LinalgOp) -> bool:
    return all(r > 0 for r in op.ranges) and all(s >= 0 for shape in op.shapes for s in shape)


def _is_mul_add_body(op: LinalgOp) -> bool:
    return op.body in (["arith.mulf", "arith.addf"],)


# Max-pooling bodies: `arith.maximumf`, or the compare + select with onnxruntime's NaN rule (passes/nan_semantics.py)
WINDOW_BODIES = (["arith.maximumf"], ["arith.addf"], ["arith.cmpf", "arith.select"])


def _is_window_reduction(op: LinalgOp) -> bool:
    """Pooling: one windowed input (plus the window-shape operand) reduced with max or add."""
    return op.body in WINDOW_BODIES and any(k == "expr" for m in op.maps for k, _ in m)


# --------------------------------------------------------------------------------------------- planning

def plan(op: LinalgOp) -> Plan:
    if op.element != "f32" or not _is_static(op) or len(op.shapes) - op.num_inputs != 1:
        return Plan("loops", note="not a static f32 op with one result")
    if op.num_loops == 0:  # a scalar op (a comparison of a full reduction): nothing to tile or vectorize
        return Plan("loops", note="scalar op (no loops)")
    if all(it == "parallel" for it in op.iterators):
        if any(kind == "expr" for m in op.maps for kind, _ in m):
            return Plan("loops", note="gather (non-affine-projection access, e.g. im2col): scalar loops")
        return _plan_elementwise(op)
    if op.num_inputs == 2 and _is_mul_add_body(op):
        if all(kind == "dim" for m in op.maps for kind, _ in m):
            return _plan_contraction(op)
        return _plan_conv(op)
    if _is_window_reduction(op):
        global_window = _without_unit_windows(op)  # GlobalAveragePool: the window covers the whole image
        reduction = _plan_reduction(global_window) if global_window else None
        return reduction if reduction and reduction.kind != "loops" else _plan_conv(op)
    if not any(kind == "expr" for m in op.maps for kind, _ in m):
        return _plan_reduction(op)
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


def _vector_dim(op: LinalgOp) -> int:
    """The loop dim an elementwise op's vectors run along: the innermost one longer than 1 (torch-mlir's channels-last
    MatMul leaves a trailing unit dim on ConvNeXt's [1, 160, 14, 14, 1] residual adds: vectors of 1 along it ran them
    as scalar loops, 7x onnxruntime), the innermost one for an op that gathers (its row reads need that dim)."""
    dim = op.num_loops - 1
    if "tensor.extract" in op.body:
        return dim
    while dim > 0 and op.ranges[dim] == 1:  # only known unit dims are skipped
        dim -= 1
    return dim if op.ranges[dim] != 1 else op.num_loops - 1


def _elementwise_tiles(op: LinalgOp) -> tuple[list[int], int]:
    """Tile sizes that leave one vector along the vector dim (_vector_dim; the unit dims inside it untiled); the vector
    width."""
    vd = _vector_dim(op)
    inner = op.ranges[vd]
    if inner <= ELEMENTWISE_MAX_LANES:
        lanes = inner
    elif inner % ELEMENTWISE_MAX_LANES == 0:
        lanes = ELEMENTWISE_MAX_LANES
    elif inner % 8 == 0:
        lanes = 8
    else:
        lanes = ELEMENTWISE_MAX_LANES
    return [1] * vd + [lanes] + [0] * (op.num_loops - 1 - vd), lanes


def _vectorize(target: str, sizes: list[int] | None, op: LinalgOp) -> str:
    """`transform.structured.vectorize`, masked to `sizes` when given; a row gather's extract as a vector load."""
    masked = f" vector_sizes {sizes}" if sizes else ""
    extract = " {vectorize_nd_extract}" if op.row_gather or op.vector_gather else ""
    return f"    transform.structured.vectorize {target}{masked}{extract} : !transform.any_op\n"


def _plan_elementwise(op: LinalgOp) -> Plan:
    gathers = op.row_gather or op.vector_gather
    if "tensor.extract" in op.body and not (gathers and op.ranges[-1] % _elementwise_tiles(op)[1] == 0):
        # Gathers from intermediates or through `subi` (_gathers_vectorizable) stay scalar, and so do those with a
        # tail along the innermost dim (whole vectors only).
        why = "a tail along the innermost dim" if gathers else "indices or a source MLIR would misread"
        return Plan("loops", note=f"gather (reads by computed indices) with {why}: scalar loops")
    sizes, lanes = _elementwise_tiles(op)
    vd = _vector_dim(op)
    text, target, threads = _across_threads(op, exclude=vd)
    tiled, loops = _tile(target, "%t", sizes)
    text += tiled
    if op.ranges[vd] % lanes:
        # Peel the tail of the innermost loop so that both halves have a static vector shape.
        text += (f'    %inner = transform.cast {loops[-1]} : !transform.any_op to !transform.op<"scf.for">\n'
                 '    %main, %tail = transform.loop.peel %inner : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)\n')
        text += _canonicalize("%main") + _canonicalize("%tail")
        text += ('    %vm = transform.structured.match ops{["linalg.generic"]} in %main : (!transform.any_op) -> !transform.any_op\n'
                 + _vectorize("%vm", None, op) +
                 '    %vt = transform.structured.match ops{["linalg.generic"]} in %tail : (!transform.any_op) -> !transform.any_op\n'
                 + _vectorize("%vt", [size or op.ranges[d] for d, size in enumerate(sizes)], op) +
                 # Fold the vector.mask regions into masked transfers before anything canonicalizes them.
                 "    transform.apply_patterns to %tail {\n"
                 "      transform.apply_patterns.vector.lower_masked_transfers\n"
                 "    } : !transform.any_op\n")
    else:
        text += _vectorize("%t", None, op)
    what = "row gather: contiguous vector loads" if op.row_gather else \
        "gather: vector gathers" if op.vector_gather else "vector"
    return Plan("elementwise", _wrap(text), f"{what} <{lanes}> over the innermost dim{threads}", bool(threads))


def _parallel_dim(op: LinalgOp, exclude: int | None = None) -> int | None:
    """The loop dim whose iterations the threads share: the outermost parallel dim longer than 1, other than the
    innermost loop and `exclude` (the vector dims), of an op of at least PARALLEL_MIN_WORK; None: one thread."""
    work = max(len(op.body), 1)
    for r in op.ranges:
        work *= r
    if work < PARALLEL_MIN_WORK:
        return None
    for d in range(op.num_loops - 1):
        if op.iterators[d] == "parallel" and op.ranges[d] > 1 and d != exclude:
            return d
    return None


def _across_threads(op: LinalgOp, exclude: int | None = None) -> tuple[str, str, str]:
    """The script's header and, for an op worth it (_parallel_dim), `tile_using_forall` by 1 along that dim: an
    `scf.forall` that the lowering turns into an OpenMP worksharing loop (lowering.TO_LOOPS), run by the bundle's
    own pool (runtime/openmp_abi.c). Returns the text, the handle to schedule further (the op, or its tile inside
    the forall) and a note for the plan. Each iteration still runs in its own order: the bits do not change."""
    text = _header(op)
    dim = _parallel_dim(op, exclude)
    if dim is None:
        return text, "%op", ""
    sizes = [1 if d == dim else 0 for d in range(op.num_loops)]
    text += (f"    %par, %par_forall = transform.structured.tile_using_forall %op tile_sizes {sizes} "
             ": (!transform.any_op) -> (!transform.any_op, !transform.any_op)\n")
    return text, "%par", f", dim {dim} across threads"


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
                 ': (!transform.op<"linalg.pack">, !transform.op<"linalg.generic">) '
                 '-> (!transform.op<"linalg.generic">, !transform.op<"linalg.pack">, !transform.any_op)\n')
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
    input's innermost dim with stride 1 (`d_ow + d_kw`, plus a constant when the op covers a band of the output),
    or reads it directly (`d_ow`: a window over the outer dims only, e.g. the column pass of a max-pooling), or None."""
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
    if kind == "dim":
        if last != ow:
            return None
    else:
        match = re.fullmatch(r"d(\d+) \+ d(\d+)(?: [+-] \d+)?", last)
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


# --------------------------------------------------------------------------------------------- reductions

# Combiners whose partial results may be combined in any order: a sum (rounding differs, as in onnxruntime's own
# vector kernels) and IEEE maximum/minimum (`maximumf` returns NaN for a NaN on either side, so a NaN propagates
# whatever the order). A compare + select fold keeps or drops a NaN by position: its order is kept.
REASSOCIABLE = ("arith.addf", "arith.maximumf", "arith.minimumf")
REDUCTION_LANES = 16
SMALL_REDUCTION = 64  # a reduction of at most this many elements per output is vectorized whole


def _contiguous_in_all(op: LinalgOp, d: int) -> bool:
    """Every operand that reads loop dim `d` has it as its innermost index (unit stride in memory)."""
    return all(m and m[-1] == ("dim", d) for m in op.maps if ("dim", d) in m)


def _without_unit_windows(op: LinalgOp) -> LinalgOp | None:
    """`op` with every window expr `d_out * s + d_k` whose output dims all have size 1 read as `d_k` (what the
    schedule's unit-dim folding makes of it), or None when some window slides (or has an offset)."""
    maps = []
    for m in op.maps:
        exprs = []
        for kind, value in m:
            if kind == "expr":
                kind, value = "dim", _single_sliding_dim(op, str(value))
                if value is None:
                    return None
            exprs.append((kind, value))
        maps.append(exprs)
    return replace(op, maps=maps)


def _single_sliding_dim(op: LinalgOp, expr: str) -> int | None:
    """The one dim of `d_a * s + d_b + ...` that is not of size 1, when it has coefficient 1 (else None)."""
    terms = expr.split(" + ")
    if not all(re.fullmatch(r"d\d+( \* \d+)?", t) for t in terms):
        return None
    moving = [t for t in terms if op.ranges[int(t.split(" * ")[0][1:])] != 1]
    return int(moving[0][1:]) if len(moving) == 1 and " * " not in moving[0] else None


def _plan_reduction(op: LinalgOp) -> Plan:
    """Reductions (softmax's max and sum, LayerNorm's mean and variance, ReduceMean, GlobalAveragePool): along the
    reduced input's contiguous innermost dim with partial results in a vector, or, when that dim is one of the
    output's, along it with a vector of outputs (the reduction loops outside it)."""
    if "tensor.extract" in op.body:
        return Plan("loops", note="reduction that reads by computed indices")
    source = max(range(op.num_inputs), key=lambda i: len(op.maps[i]))  # the reduced input
    kind, inner = op.maps[source][-1] if op.maps[source] else ("const", 0)
    if kind != "dim" or not _contiguous_in_all(op, inner):
        return Plan("loops", note="reduction without a contiguous innermost dim")
    if op.iterators[inner] == "parallel":
        return _plan_outer_reduction(op, inner)
    if not op.body or op.body[-1] not in REASSOCIABLE:
        return Plan("loops", note="inner reduction with an order-dependent combiner (NaN rule): scalar loops")
    return _plan_inner_reduction(op, inner)


def _reduction_lanes(size: int) -> int:
    """16 lanes, or 8 when that leaves no tail and 16 would."""
    return 8 if size % REDUCTION_LANES and size % 8 == 0 else REDUCTION_LANES


def _plan_inner_reduction(op: LinalgOp, r: int) -> Plan:
    """One output at a time: every dim but `r` tiled to 1 and the unit dims folded away, so the tile is a 1-D
    reduction into a scalar (upstream's reduction tiling cannot handle a keepdim output map `(d0, d1, 0)`). A long
    reduction keeps `lanes` partial results in a vector (`tile_reduction_using_for`: one vector add/max per
    `lanes` elements), combined once per output; the tail that is not a multiple of `lanes` is split off and
    vectorized at its exact length. A short one (at most one vector) is vectorized at its length, together with
    the outer reduction dims when an output reduces at most SMALL_REDUCTION elements (GlobalAveragePool on 7x7)."""
    size = op.ranges[r]
    reductions = [d for d, it in enumerate(op.iterators) if it == "reduction"]
    volume = 1
    for d in reductions:
        volume *= op.ranges[d]
    whole = size <= REDUCTION_LANES and volume <= SMALL_REDUCTION
    if size <= REDUCTION_LANES and not whole and reductions[-1] == r:
        return _short_rows_reduction(op, reductions, size)
    sizes = [0 if d == r or (whole and d in reductions) else 1 for d in range(op.num_loops)]
    text, target, threads = _across_threads(op)
    t, loops = _fold_tile(target, "%g", sizes)
    text += t
    if size <= REDUCTION_LANES:
        text += "    transform.structured.vectorize %g : !transform.any_op\n"
        return Plan("reduction", _wrap(text), f"vector<{volume if whole else size}> per output{threads}", bool(threads))
    lanes = _reduction_lanes(size)
    t, parts = _split_parts("%g", [(0, (size // lanes) * lanes, size)], "%s")
    text += t
    for j, (handle, part_sizes) in enumerate(parts):
        if part_sizes.get(0, size) % lanes:  # the tail: shorter than one vector
            text += f"    transform.structured.vectorize {handle} : !transform.any_op\n"
            continue
        text += _partial_results(handle, [lanes], str(j))
    if loops:
        text += _tree_combine(loops[0])
    return Plan("reduction", _wrap(text), f"{lanes} partial results per output, combined once{threads}", bool(threads))


def _short_rows_reduction(op: LinalgOp, reductions: list[int], size: int) -> Plan:
    """A reduction over many short rows (an average pooling over a whole 25 x 5 map: rows of 5): one output at a
    time, the row's `size` lanes kept as partial results across the outer reduction loops (`size` independent
    chains of adds instead of one chain through every element), combined once per output."""
    sizes = [0 if d in reductions else 1 for d in range(op.num_loops)]
    text, target, threads = _across_threads(op)
    t, loops = _fold_tile(target, "%g", sizes)
    tiles = [1] * (len(reductions) - 1) + [size]
    text += t
    text += _partial_results("%g", tiles, "_rows")  # a tag: `%par` is the threads' tile (_across_threads)
    if loops:
        text += _tree_combine(loops[0])
    return Plan("reduction", _wrap(text),
                f"{size} partial results per output over {len(reductions)} reduction dims, combined once{threads}", bool(threads))


def _partial_results(handle: str, tiles: list[int], tag: str) -> str:
    """`tile_reduction_using_for` of `handle` by `tiles` (partial results of that shape), its pieces vectorized; the
    partial vector becomes a loop-carried value, so no buffer is allocated for it per output."""
    return (f"    %fill{tag}, %par{tag}, %comb{tag}, %loop{tag} = transform.structured.tile_reduction_using_for {handle} "
            f"by tile_sizes = {tiles} : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)\n"
            f"    transform.structured.vectorize %fill{tag} : !transform.any_op\n"
            f"    transform.structured.vectorize %par{tag} : !transform.any_op\n"
            f"    transform.structured.vectorize %comb{tag} : !transform.any_op\n"
            + _canonicalize(f"%loop{tag}") + f"    transform.apply_cse to %loop{tag} : !transform.any_op\n" + _hoist_chain([f"%loop{tag}"]))


def _tree_combine(scope: str) -> str:
    """Combine the partial results with one `vector.reduction` (a shuffle tree) instead of the lane-by-lane chain
    that the global `innerparallel` lowering makes of a 1-D multi_reduction; `reassoc` lets LLVM use a tree for a
    sum too (the order of a vectorized sum is not the sequential one anyway)."""
    return (f"    transform.apply_patterns to {scope} {{\n"
            '      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"\n'
            "    } : !transform.any_op\n"
            f'    %reds = transform.structured.match ops{{["vector.reduction"]}} in {scope} : (!transform.any_op) -> !transform.any_op\n'
            "    %reassoc = transform.param.constant #arith.fastmath<reassoc> -> !transform.any_param\n"
            '    transform.annotate %reds "fastmath" = %reassoc : !transform.any_op, !transform.any_param\n')


def _fold_tile(target: str, result: str, sizes: list[int], interchange: list[int] | None = None) -> tuple[str, list[str]]:
    """Tile `target` by `sizes`, fold the unit dims of the tile away and name the folded op `result`; returns the
    text and the loops, outermost first (none when nothing is tiled). The folded op's dims are the dims whose
    tile is larger than 1, in order."""
    if not any(sizes):
        return f"    {result} = transform.merge_handles {target} : !transform.any_op\n", []
    t, loops = _tile(target, f"{result}_t", sizes, interchange)
    return t + (f"    transform.apply_patterns to {loops[0]} {{\n"
                "      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices\n"
                "      transform.apply_patterns.canonicalization\n"
                "    } : !transform.any_op\n"
                f'    {result} = transform.structured.match ops{{["linalg.generic"]}} in {loops[0]} '
                ': (!transform.any_op) -> !transform.any_op\n'), loops


def _plan_outer_reduction(op: LinalgOp, p: int) -> Plan:
    """The reduced input's innermost dim `p` is an output dim: a vector of up to 16 outputs along it, every other dim
    tiled to 1 with the reduction loops innermost, so that each output folds its elements in their original order (any combiner,
    compare + select included) and the accumulator vector stays in registers across the reduction loops."""
    size = op.ranges[p]
    vec = min(VECTOR, size)
    parallel = [d for d, it in enumerate(op.iterators) if it == "parallel"]
    reductions = [d for d, it in enumerate(op.iterators) if it == "reduction"]
    text, target, threads = _across_threads(op, exclude=p)
    t, parts = _split_parts(target, [(p, (size // vec) * vec, size)], "%s")
    text += t
    for j, (handle, part_sizes) in enumerate(parts):
        sizes = [1] * op.num_loops
        sizes[p] = min(vec, part_sizes.get(p, size))
        t, loops = _fold_tile(handle, f"%o{j}", sizes, parallel + reductions)
        text += t + _vectorize_row(f"%o{j}", loops[0], sizes[p])
        text += _hoist_chain(loops[len(parallel):])
    return Plan("reduction", _wrap(text), f"vector<{vec}> of outputs along the innermost dim, reduction loops inside{threads}",
                bool(threads))


def _vectorize_row(target: str, scope: str, width: int) -> str:
    """Vectorize a row of `width` elements: an odd row (14, 7, 6...) as an odd-length vector legalizes into
    shuffles, so it becomes a masked 8/16-lane vector instead (masked loads/stores, full-width arithmetic)."""
    if width <= 1 or width % 8 == 0:
        return f"    transform.structured.vectorize {target} : !transform.any_op\n"
    lanes = 8 if width < 8 else VECTOR
    return (f"    transform.structured.vectorize {target} vector_sizes [{lanes}] : !transform.any_op\n"
            f"    transform.apply_patterns to {scope} {{\n"
            "      transform.apply_patterns.vector.lower_masked_transfers\n"
            "    } : !transform.any_op\n")
