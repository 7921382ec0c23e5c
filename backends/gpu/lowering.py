"""Lower one subgraph from linalg-on-tensors to GPU kernels with the xtc (upstream LLVM/MLIR 22) bindings.

Stages (all in the compiler's worker process, because a bad pipeline can abort the interpreter):
  1. tensors:   unroll static loops (LSTM time loops), drop cf.assert guards, [fp16 rewrite], elementwise ops ->
                linalg, linalg-fuse-elementwise-ops (elementwise chains become one op), one fill per consumer
  2. buffers:   one-shot-bufferize (identity layouts at the boundary) -> results become out-params; every
                remaining memref.copy becomes linalg.copy so that it runs on the GPU too; named ops are generalized
  3. kernels:   consecutive ops over the same output space with element-aligned accesses share a kernel (fill +
                matmul + bias + ReLU); a generated transform-dialect script tiles each kernel's ops twice with
                scf.forall (blocks, then threads), fuses the sibling loops and maps them to a gpu.launch; reduction
                loops stay sequential inside a thread; kernels with a large enough matmul-like contraction are
                tiled through shared memory instead (plan_shared: 16x16 blocks, K steps whose operand tiles are
                copied into workgroup buffers by the block's threads, with barriers; HCC_GPU_SHARED=0 turns it
                off); then linalg -> scf loops inside the kernels
  4. outlining: gpu-kernel-outlining -> a host function (allocs, views, gpu.launch_func) + one gpu.module per kernel;
                the kernels are renamed `<sg>_k<N>`, merged into one gpu.module, and get fastmath<contract> (FMA);
                workgroup buffers become workgroup attributions (static shared memory)
  5. codegen:   gpu.module -> NVVM (bare-pointer kernel arguments) -> PTX (nvvm-attach-target chip=sm_80 +ptx80,
                gpu-module-to-binary format=isa, libdevice linked from the pinned toolkit)
The host function is not lowered: hcc.backends.gpu.launch_table reads it and writes the launch table instead.
See docs/backends/gpu.md.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hcc.errors import HccError

PTX_CHIP = "sm_80"  # PTX `.target`: JIT-able on every GPU from Ampere on; cubins are built from it per SM
PTX_FEATURES = "+ptx80"  # PTX ISA 8.0 (<= 9.0, which the CUDA 13.0 driver/ptxas accept)
MAX_THREADS = 256  # threads per block the mapper aims for
MAX_GRID_YZ = 65535

FUSE = "convert-elementwise-to-linalg,linalg-fuse-elementwise-ops,canonicalize,cse"
BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    "canonicalize,cse,canonicalize"
)
GENERALIZE = "linalg-generalize-named-ops,canonicalize"
AFTER_MAPPING = "transform-interpreter,convert-linalg-to-loops,canonicalize,cse"
OUTLINE = "gpu-launch-sink-index-computations,gpu-kernel-outlining,canonicalize,cse"


def kernel_to_ptx_pipeline(toolkit: str | None, chip: str = PTX_CHIP, features: str = PTX_FEATURES) -> str:
    """The device half of upstream `gpu-lower-to-nvvm-pipeline`, applied to a module holding only gpu.modules."""
    toolkit_opt = f" toolkit={toolkit}" if toolkit else ""
    return (
        "convert-nvgpu-to-nvvm,convert-vector-to-scf,convert-scf-to-cf,expand-strided-metadata,"
        f"nvvm-attach-target{{chip={chip} features={features} O=3}},"
        "lower-affine,convert-arith-to-llvm,convert-index-to-llvm,canonicalize,cse,"
        "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1},canonicalize,cse,reconcile-unrealized-casts),"
        f"gpu-module-to-binary{{format=isa{toolkit_opt}}}"
    )


# -- helpers ---------------------------------------------------------------------------------------------------------
def single_threaded_context():
    """An MLIR context without its thread pool: the worker process forks later (the CPU backend lowers in a forked
    child), and a fork while pool threads hold locks can deadlock the child. The GPU pipelines are small anyway."""
    from mlir import ir

    ctx = ir.Context()
    ctx.enable_multithreading(False)
    return ctx


def _run(module, pipeline: str, stage: str) -> None:
    from mlir import ir, passmanager

    from hcc.passes.diagnostics import describe_mlir_error

    try:
        passmanager.PassManager.parse(f"builtin.module({pipeline})").run(module.operation)
    except ir.MLIRError as exc:
        raise HccError(describe_mlir_error(exc, f"GPU backend: {stage}")) from None


def _func(module, entry: str):
    from mlir import ir

    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            return op
    raise HccError(f"internal: GPU backend: function @{entry} not found")


def _top_ops(func_op) -> list:
    return list(func_op.regions[0].blocks[0].operations)


def node_names(op) -> list[str]:
    """ONNX node names an op came from (its location, fused when elementwise fusion merged several nodes)."""
    names: list[str] = []
    for name in re.findall(r'"((?:[^"\\]|\\.)*)"', str(op.location)):
        if name not in names and name not in ("-", ""):
            names.append(name)
    return names


def _op_where(op) -> str:
    """'linalg.generic (nodes "fc1/Gemm", "fc1/Relu")'."""
    names = node_names(op)
    if not names:
        return op.name
    shown = ", ".join(f'"{n}"' for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{op.name} (node{'s' if len(names) > 1 else ''} {shown})"


_COPY_LINE = re.compile(r"^(\s*)memref\.copy (%[\w.$-]+), (%[\w.$-]+) : (.*?) to (.*?)((?: loc\(.*\))?)$", re.M)


def copies_to_linalg(text: str) -> str:
    """memref.copy (from bufferization / out-params) -> linalg.copy, which the mapper turns into a kernel."""
    return _COPY_LINE.sub(r"\1linalg.copy ins(\2 : \4) outs(\3 : \5)\6", text)


# -- mapping plan ----------------------------------------------------------------------------------------------------
@dataclass
class OpPlan:
    """How one linalg op becomes one kernel launch (per loop of the op: tile sizes; mappings in forall-dim order)."""

    index: int
    where: str
    sizes: list[int]
    iterators: list[str]
    block_tiles: list[int] = field(default_factory=list)
    block_mapping: list[str] = field(default_factory=list)
    thread_tiles: list[int] = field(default_factory=list)  # tile sizes (divisor mode) or num_threads (ceil mode)
    thread_mapping: list[str] = field(default_factory=list)
    thread_mode: str = "tile_sizes"  # or "num_threads" when the block tiles do not divide the loop sizes
    block_dims: tuple[int, int, int] = (1, 1, 1)
    grid: tuple[int, int, int] = (1, 1, 1)
    wrap: bool = False  # no parallel loop at all: wrapped in single-iteration foralls (one thread)
    # ops fused into this kernel (hcc.op ids in program order) with their own per-loop tiles
    members: list[int] = field(default_factory=list)
    member_block_tiles: dict[int, list[int]] = field(default_factory=dict)
    member_thread_tiles: dict[int, list[int]] = field(default_factory=dict)
    # shared-memory tiling (see plan_shared): promoted contraction member -> SharedTiling
    shared: dict[int, "SharedTiling"] = field(default_factory=dict)
    # the operand copies into workgroup memory made by _stage_operands: (hcc.copy id, tile sizes, thread mapping)
    copies: list[tuple[int, list[int], list[str]]] = field(default_factory=list)


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def plan_op(index: int, where: str, sizes: list[int], iterators: list[str], out_dims: list[int]) -> OpPlan:
    """Choose block/thread tiles for one op.

    Parallel loops with more than one iteration are ordered innermost-first by their position in the (first) output's
    indexing map, so thread x walks the output's contiguous dimension (coalesced stores). Up to three of them get
    thread tiles (<= MAX_THREADS threads in all); up to three (the largest grid extents) are mapped to blocks; the
    remaining loops (reductions, extra parallel loops) run sequentially inside each thread.
    """
    n = len(sizes)
    plan = OpPlan(index, where, list(sizes), list(iterators))
    parallel = [d for d in range(n) if iterators[d] == "parallel"]
    if not parallel:
        plan.wrap = True
        plan.block_dims, plan.grid = (1, 1, 1), (1, 1, 1)
        return plan

    def inner_rank(d: int) -> int:
        return out_dims.index(d) if d in out_dims else -1

    par = sorted((d for d in parallel if sizes[d] > 1), key=inner_rank, reverse=True)
    work = math.prod(sizes[d] for d in par) if par else 1

    def assign(use_divisors: bool) -> dict[int, int]:
        threads: dict[int, int] = {}
        budget = MAX_THREADS
        for d in par:
            if len(threads) == 3 or budget <= 1:
                break
            cap = budget if len(threads) < 2 else min(budget, 64)
            t = _largest_divisor(sizes[d], cap) if use_divisors else min(1 << max(0, (sizes[d] - 1).bit_length()), cap)
            if t > 1:
                threads[d] = t
                budget //= t
        return threads

    threads = assign(True)
    mode = "tile_sizes"
    if math.prod(threads.values()) < min(work, 64):
        threads, mode = assign(False), "num_threads"
    grid = {d: -(-sizes[d] // threads.get(d, 1)) for d in par}
    blocked = sorted((d for d in par if grid[d] > 1), key=lambda d: grid[d], reverse=True)
    # at most 3 grid dimensions, and y/z extents below 65536: the rest stays sequential inside each thread
    while len(blocked) > 3 or (len(blocked) > 1 and any(grid[d] > MAX_GRID_YZ for d in blocked[1:])):
        drop = min((d for d in blocked[1:] if d not in threads), key=lambda d: grid[d], default=None)
        if drop is None:
            drop = min(blocked[1:], key=lambda d: grid[d])
            threads.pop(drop, None)
        blocked.remove(drop)
    if not blocked:  # the whole op fits in one block: a one-iteration block loop
        first = next(iter(threads), None)
        if first is None:
            first = next(d for d in parallel)
        blocked = [first]
        grid[first] = 1
    block_axis = {d: "xyz"[i] for i, d in enumerate(blocked)}
    thread_axis = {d: "xyz"[i] for i, d in enumerate(threads)}

    plan.thread_mode = mode
    plan.block_tiles = [0] * n
    for d in blocked:
        plan.block_tiles[d] = threads.get(d, 1) if grid[d] > 1 else sizes[d]
    plan.block_mapping = [block_axis[d] for d in range(n) if plan.block_tiles[d]]
    plan.thread_tiles = [0] * n
    for d in threads:
        plan.thread_tiles[d] = 1 if mode == "tile_sizes" else threads[d]
    if not threads:  # a single thread: tile the block loop's dim once more so that a thread forall exists
        d = blocked[0]
        plan.thread_tiles[d] = 1
        thread_axis = {d: "x"}
        threads = {d: 1}
    plan.thread_mapping = [thread_axis[d] for d in range(n) if plan.thread_tiles[d]]
    bd = [1, 1, 1]
    for d, axis in thread_axis.items():
        bd["xyz".index(axis)] = threads[d]
    gd = [1, 1, 1]
    for d, axis in block_axis.items():
        gd["xyz".index(axis)] = grid[d]
    plan.block_dims, plan.grid = tuple(bd), tuple(gd)
    if math.prod(bd) > 1024 or bd[2] > 64:
        raise HccError(f"internal: GPU backend: bad block shape {bd} for {where}")
    return plan


def _loop_sizes(op) -> tuple[list[int], list[str], list[int]]:
    """Static loop ranges, iterator kinds and the first output's loop dims of a linalg.generic on memrefs."""
    from mlir import ir

    maps = [ir.AffineMapAttr(a).value for a in op.attributes["indexing_maps"]]
    iterators = ["parallel" if "parallel" in str(a) else "reduction" for a in op.attributes["iterator_types"]]
    sizes: list[int | None] = [None] * len(iterators)
    operands = list(op.operands)
    for operand, amap in zip(operands, maps):
        shape = list(operand.type.shape) if isinstance(operand.type, (ir.MemRefType, ir.RankedTensorType)) else []
        for r, expr in enumerate(amap.results):
            if isinstance(expr, ir.AffineDimExpr) and sizes[expr.position] is None:
                if shape[r] < 0:
                    raise HccError(f"GPU backend: {_op_where(op)} has a dynamic loop range")
                sizes[expr.position] = shape[r]
    if any(s is None for s in sizes):
        raise HccError(f"GPU backend: cannot infer the loop ranges of {_op_where(op)}")
    out_map = maps[len(op.inputs)]
    out_dims = [e.position if isinstance(e, ir.AffineDimExpr) else -1 for e in out_map.results]
    return [int(s) for s in sizes], iterators, out_dims


VIEW_OPS = ("memref.subview", "memref.expand_shape", "memref.collapse_shape", "memref.reinterpret_cast", "memref.cast")


@dataclass
class OpInfo:
    """What kernel fusion needs to know about one linalg.generic on buffers."""

    index: int
    op: object
    where: str
    sizes: list[int]
    iterators: list[str]
    out_dims: list[int]
    out_map: str
    space: tuple[int, ...] | None  # the output's shape when the op can share a kernel (see fusion_space)
    accesses: list[tuple[object, object, str, bool]]  # (root buffer, view value, indexing map, written?)


def _root(value):
    """The buffer a view is taken of (function argument, memref.alloc or memref.get_global result)."""
    from mlir import ir

    while True:
        owner = value.owner
        if isinstance(owner, ir.Block):
            return value
        op = owner.operation if hasattr(owner, "operation") else owner
        if op.name not in VIEW_OPS:
            return value
        value = op.operands[0]


def fusion_space(sizes: list[int], iterators: list[str], out_dims: list[int], n_outputs: int) -> tuple[int, ...] | None:
    """An op can share a kernel with others when it has one output whose indexing map lists every parallel loop
    once, in increasing loop order (so its block/thread foralls are the output's dimensions, in order)."""
    parallel = [d for d, it in enumerate(iterators) if it == "parallel"]
    if n_outputs != 1 or not parallel or any(d < 0 for d in out_dims):
        return None
    if sorted(out_dims) != parallel or out_dims != sorted(out_dims):
        return None
    return tuple(sizes[d] for d in out_dims)


def _captured_buffers(op) -> list:
    """Buffers an op's body reads directly (memref.load of a value defined outside the op: tensor.extract gathers)."""
    from mlir import ir

    inside: set = set()
    blocks: list = []

    def collect(o) -> None:
        for region in o.regions:
            for block in region.blocks:
                blocks.append(block)
                for inner in block.operations:
                    inside.add(inner.operation)
                    collect(inner.operation)

    collect(op.operation)
    found = []
    for inner in list(inside):
        for value in inner.operands:
            if not isinstance(value.type, ir.MemRefType):
                continue
            owner = value.owner
            if isinstance(owner, ir.Block):
                if any(owner == b for b in blocks):
                    continue
            else:
                owner_op = owner.operation if hasattr(owner, "operation") else owner
                if owner_op in inside:
                    continue
            if all(value != f for f in found):
                found.append(value)
    return found


def _op_info(index: int, op) -> OpInfo:
    from mlir import ir

    sizes, iterators, out_dims = _loop_sizes(op)
    maps = [str(ir.AffineMapAttr(a).value) for a in op.attributes["indexing_maps"]]
    n_in = len(op.inputs)
    accesses = []
    for i, operand in enumerate(op.operands):
        if isinstance(operand.type, ir.MemRefType):
            accesses.append((_root(operand), operand, maps[i], i >= n_in))
    for value in _captured_buffers(op):  # read inside the body (a gather): never element-aligned
        accesses.append((_root(value), value, "captured", False))
    space = fusion_space(sizes, iterators, out_dims, len(op.outputs))
    return OpInfo(index, op, _op_where(op.operation), sizes, iterators, out_dims, maps[n_in], space, accesses)


def can_join(group: list[OpInfo], cand: OpInfo) -> bool:
    """May `cand` run in the same kernel as `group`, right after it? Same output space, and every buffer that one
    side writes and the other touches is accessed element-aligned (the same view, through the op's output map), so
    each thread only touches what it produced itself: no barrier is needed."""
    if cand.space is None or group[0].space != cand.space:
        return False
    for member in group:
        for root_m, view_m, map_m, write_m in member.accesses:
            for root_c, view_c, map_c, write_c in cand.accesses:
                if root_m != root_c or not (write_m or write_c):
                    continue
                same_view = view_m == view_c or str(view_m.type) == str(view_c.type)
                if not (same_view and map_m == member.out_map and map_c == cand.out_map):
                    return False
    return True


def group_ops(infos: list[OpInfo], fuse: bool = True) -> list[list[OpInfo]]:
    """Consecutive ops -> kernels (greedy: an op joins the previous kernel when can_join allows it)."""
    groups: list[list[OpInfo]] = []
    for info in infos:
        if fuse and groups and can_join(groups[-1], info):
            groups[-1].append(info)
        else:
            groups.append([info])
    return groups


def plan_group(kernel: int, group: list[OpInfo]) -> OpPlan:
    """One kernel: a single op planned on its own loops, or fused ops planned on their shared output space."""
    where = group[0].where if len(group) == 1 else "; ".join(dict.fromkeys(i.where for i in group))
    if len(group) == 1:
        info = group[0]
        plan = plan_op(kernel, where, info.sizes, info.iterators, info.out_dims)
        plan.members = [info.index]
        plan.member_block_tiles = {info.index: plan.block_tiles}
        plan.member_thread_tiles = {info.index: plan.thread_tiles}
        return plan
    space = list(group[0].space)
    plan = plan_op(kernel, where, space, ["parallel"] * len(space), list(range(len(space))))
    plan.members = [i.index for i in group]
    for info in group:
        block, thread = [0] * len(info.sizes), [0] * len(info.sizes)
        for k, d in enumerate(info.out_dims):
            block[d], thread[d] = plan.block_tiles[k], plan.thread_tiles[k]
        plan.member_block_tiles[info.index] = block
        plan.member_thread_tiles[info.index] = thread
    return plan


# -- shared-memory tiling of contractions ----------------------------------------------------------------------------
SHARED_TM = 16  # output rows per block (thread y)
SHARED_TN = 16  # output columns per block (thread x): 256 threads, one output element each
SHARED_TK = (32, 16)  # K step: the first that divides K
SHARED_MIN_K = 32  # shorter reductions do not repay the copies and barriers
SHARED_MIN_REUSE = 8  # every staged element is read by at least this many threads of the block
SHARED_MAX_BYTES = 32 * 1024  # static shared memory per kernel (48 KiB is the static limit); further members stay plain


def _element_bytes(value) -> int:
    from mlir import ir

    element = ir.MemRefType(value.type).element_type
    width = getattr(element, "width", None)
    if width is None:
        width = ir.IntegerType(element).width if ir.IntegerType.isinstance(element) else 64
    return max(1, int(width) // 8)


_WG_TYPE = re.compile(r"(%[\w.$-]+) : memref<((?:\d+x)*)[a-z]+(\d+), #gpu\.address_space<workgroup>>")


def workgroup_bytes(kernels_text: str) -> dict[str, int]:
    """Static shared memory of each kernel: the total size of its gpu.func's workgroup attributions."""
    sizes: dict[str, int] = {}
    for line in kernels_text.splitlines():
        match = re.match(r"^\s*gpu\.func @([\w$.]+)\(", line)
        if not match:
            continue
        total = 0
        cut = line.find(") workgroup(")
        if cut >= 0:
            for _value, dims, bits in _WG_TYPE.findall(line[cut:]):
                total += math.prod(int(d) for d in dims.split("x") if d) * max(1, int(bits) // 8)
        sizes[match.group(1)] = total
    return sizes


def shared_enabled(value: bool | None = None) -> bool:
    """The off-switch: `lower_to_kernels(shared=False)` or the environment variable HCC_GPU_SHARED=0."""
    import os

    if value is not None:
        return bool(value)
    return os.environ.get("HCC_GPU_SHARED", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class SharedTiling:
    """How one contraction member of a shared-memory kernel is staged (plan_shared)."""

    k: int  # its reduction loop
    step: int  # K step
    inputs: list[int]  # the inputs copied into workgroup memory (those indexed by K)
    sequential: list[int]  # its loops of the output dimensions that run one after another in each block


def contraction_loops(op) -> tuple[int, dict[int, list[int]]] | None:
    """A matmul-like linalg.generic: one output, exactly one reduction loop K, at least two buffer inputs indexed by
    K, each of those through plain loop dimensions, and a body with a multiply and an add. The body may hold more:
    extf/truncf on the fp16 path, or an elementwise producer that elementwise fusion merged into the contraction (the
    LayerNorm before a transformer's fc1, the GELU before fc2). Staging inputs is correct for any body; this only
    decides which kernels are worth it. -> (K, {input index: its loop dims} for the inputs indexed by K) or None."""
    from mlir import ir

    if op.operation.name != "linalg.generic" or len(op.outputs) != 1:
        return None
    iterators = ["parallel" if "parallel" in str(a) else "reduction" for a in op.attributes["iterator_types"]]
    reductions = [d for d, it in enumerate(iterators) if it == "reduction"]
    if len(reductions) != 1:
        return None
    k = reductions[0]
    maps = [ir.AffineMapAttr(a).value for a in op.attributes["indexing_maps"]]
    staged: dict[int, list[int]] = {}
    for n, (operand, amap) in enumerate(zip(list(op.inputs), maps)):
        if not isinstance(operand.type, ir.MemRefType):
            continue
        if not any(k in _dims_of(e) for e in amap.results):
            continue
        if not all(isinstance(e, ir.AffineDimExpr) for e in amap.results):
            return None  # K inside an index expression (a convolution window): not staged
        used = [e.position for e in amap.results]
        if len(set(used)) != len(used) or any(d < 0 for d in ir.MemRefType(operand.type).shape):
            return None
        staged[n] = used
    if len(staged) < 2:
        return None
    names = {inner.operation.name for inner in op.regions[0].blocks[0].operations}
    if not {"arith.mulf", "arith.addf"} <= names:
        return None
    return k, staged


def _dims_of(expr) -> set[int]:
    """Loop dimensions an affine expression uses."""
    return {int(d) for d in re.findall(r"d(\d+)", str(expr))}


def _promotable(group: list[OpInfo], x: int, y: int, sequential: list[int]) -> dict[int, SharedTiling]:
    """Members whose inputs are worth staging with output position x on thread x and y on thread y (plan_shared)."""
    promoted: dict[int, SharedTiling] = {}
    shared_bytes = 0
    for info in group:
        found = contraction_loops(info.op)
        if found is None:
            continue
        k, inputs = found
        size_k = info.sizes[k]
        step = next((t for t in SHARED_TK if size_k % t == 0), None)
        if step is None or size_k < SHARED_MIN_K:
            continue
        loop_x, loop_y = info.out_dims[x], info.out_dims[y]
        reuse = [(1 if loop_x in used else SHARED_TN) * (1 if loop_y in used else SHARED_TM) for used in inputs.values()]
        if min(reuse) < SHARED_MIN_REUSE:
            continue
        tile = {loop_x: SHARED_TN, loop_y: SHARED_TM, k: step}
        staged = sum(math.prod(tile.get(d, 1) for d in used) * _element_bytes(info.op.inputs[n]) for n, used in inputs.items())
        if shared_bytes + staged > SHARED_MAX_BYTES:
            continue
        shared_bytes += staged
        promoted[info.index] = SharedTiling(k, step, sorted(inputs), [info.out_dims[d] for d in sequential])
    return promoted


def plan_shared(kernel: int, group: list[OpInfo]) -> OpPlan | None:
    """Shared-memory tiling for a kernel holding a matmul-like contraction, when it pays.

    The kernel's output space (every member shares it) is tiled onto SHARED_TM x SHARED_TN blocks of as many threads,
    one output element per thread: the innermost output dimension goes to x, the largest other one that leaves a
    contraction to stage to y, the largest remaining one to the grid's z; further dimensions larger than 1 (batch
    and heads) run one after another inside each block. A contraction member qualifies when its reduction loop K is
    at least SHARED_MIN_K and a multiple of the K step, and when each input tile it stages (TM x TK and TK x TN in
    the plain matmul) is reused by at least SHARED_MIN_REUSE threads, i.e. the input does not index both x and y
    (and the kernel's buffers stay within SHARED_MAX_BYTES). Its K loop is then tiled by the K step, and each step
    copies the input tiles into workgroup memory (the block's threads cooperatively, then a barrier) before
    accumulating from there. Other members (the fill, a fused bias + ReLU) are tiled the same way and run before or
    after, separated by barriers. -> None when nothing qualifies (the kernel keeps the plain plan)."""
    space = list(group[0].space or ())
    if not space or any(info.space != group[0].space for info in group):
        return None
    n = len(space)
    x = n - 1
    if space[x] < SHARED_TN or space[x] % SHARED_TN:
        return None
    ys = [d for d in range(x) if SHARED_TM <= space[d] <= SHARED_TM * MAX_GRID_YZ and space[d] % SHARED_TM == 0]
    for y in sorted(ys, key=lambda d: (space[d], d), reverse=True):  # the largest y with a contraction to stage
        others = sorted((d for d in range(n) if d not in (x, y) and space[d] > 1), key=lambda d: (space[d], d), reverse=True)
        z = next((d for d in others if space[d] <= MAX_GRID_YZ), None)
        sequential = [d for d in others if d != z]
        promoted = _promotable(group, x, y, sequential)
        if promoted:
            break
    else:
        return None
    where = group[0].where if len(group) == 1 else "; ".join(dict.fromkeys(i.where for i in group))
    plan = OpPlan(kernel, where, space, ["parallel"] * n)
    plan.block_tiles = [0] * n
    plan.block_tiles[x], plan.block_tiles[y] = SHARED_TN, SHARED_TM
    axis = {x: "x", y: "y"}
    if z is not None:
        plan.block_tiles[z] = 1
        axis[z] = "z"
    plan.block_mapping = [axis[d] for d in range(n) if plan.block_tiles[d]]
    plan.thread_tiles = [0] * n
    plan.thread_tiles[x] = plan.thread_tiles[y] = 1
    plan.thread_mapping = [axis[d] for d in range(n) if plan.thread_tiles[d]]
    plan.block_dims = (SHARED_TN, SHARED_TM, 1)
    plan.grid = (space[x] // SHARED_TN, space[y] // SHARED_TM, space[z] if z is not None else 1)
    plan.members = [i.index for i in group]
    for info in group:
        block, thread = [0] * len(info.sizes), [0] * len(info.sizes)
        for pos, d in enumerate(info.out_dims):
            block[d], thread[d] = plan.block_tiles[pos], plan.thread_tiles[pos]
        plan.member_block_tiles[info.index] = block
        plan.member_thread_tiles[info.index] = thread
    plan.shared = promoted
    return plan


def _mapping_attr(kind: str, axes: list[str]) -> str:
    return "[" + ", ".join(f"#gpu.{kind}<{a}>" for a in axes) + "]"


def _wrap_in_foralls(op) -> None:
    """An op without parallel loops runs in one thread: nest it in one-iteration block and thread foralls."""
    from mlir import ir
    from mlir.dialects import scf

    with ir.InsertionPoint(op), op.location:
        outer = scf.ForallOp([0], [1], [1], mapping=ir.ArrayAttr.get([ir.Attribute.parse("#gpu.block<x>")]))
        outer.attributes["hcc.wrap"] = op.attributes["hcc.op"]
        with ir.InsertionPoint(outer.body):
            inner = scf.ForallOp([0], [1], [1], mapping=ir.ArrayAttr.get([ir.Attribute.parse("#gpu.thread<x>")]))
            scf.InParallelOp()
        with ir.InsertionPoint(inner.body):
            term = scf.InParallelOp()
    op.move_before(term)


_ANY = "!transform.any_op"


def _script(body: list[str]) -> str:
    return "\n".join(["module attributes {transform.with_named_sequence} {",
                      f"transform.named_sequence @__transform_main(%root: {_ANY} {{transform.readonly}}) {{",
                      *body, "transform.yield", "}", "}"])


def _match(lines: list[str], name: str, i: int, scope: str) -> None:
    lines.append(f"%{name} = transform.structured.match attributes{{hcc.op = {i} : i64}} in %{scope} : ({_ANY}) -> {_ANY}")


def _fuse(lines: list[str], handles: list[str], result: str) -> None:
    current = handles[0]
    for n, nxt in enumerate(handles[1:]):
        fused = f"{result}_{n}"
        lines.append(f"%{fused} = transform.loop.fuse_sibling %{current} into %{nxt} : ({_ANY}, {_ANY}) -> {_ANY}")
        current = fused
    lines.append(f"%{result} = transform.merge_handles %{current} : {_ANY}")


def _block_tiling(lines: list[str], p: OpPlan) -> None:
    k = p.index
    block_loops = []
    for i in p.members:
        _match(lines, f"o{i}", i, "root")
        tiles = ", ".join(str(t) for t in p.member_block_tiles[i])
        lines.append(f"%t{i}, %f{i} = transform.structured.tile_using_forall %o{i} tile_sizes [{tiles}] "
                     f"(mapping = {_mapping_attr('block', p.block_mapping)}) : ({_ANY}) -> ({_ANY}, {_ANY})")
        block_loops.append(f"f{i}")
    _fuse(lines, block_loops, f"F{k}")


def _thread_tiling(lines: list[str], p: OpPlan, i: int, scope: str) -> str:
    _match(lines, f"m{i}", i, scope)
    tiles = ", ".join(str(t) for t in p.member_thread_tiles[i])
    lines.append(f"%u{i}, %g{i} = transform.structured.tile_using_forall %m{i} {p.thread_mode} [{tiles}] "
                 f"(mapping = {_mapping_attr('thread', p.thread_mapping)}) : ({_ANY}) -> ({_ANY}, {_ANY})")
    return f"g{i}"


def shared_block_script(plans: list[OpPlan]) -> str | None:
    """First half of the mapping of shared-memory kernels: block tiling (as transform_script does), then each
    promoted contraction's K loop is tiled by its K step (`tile_using_for`) inside the block loop (inside loops
    over its sequential output dimensions, one index at a time). _stage_operands
    then adds the workgroup buffers and copies, and transform_script finishes the mapping. None: no such kernel."""
    lines: list[str] = []
    for p in plans:
        if not p.shared:
            continue
        _block_tiling(lines, p)
        for i, staging in sorted(p.shared.items()):
            _match(lines, f"c{i}", i, f"F{p.index}")
            tiles = [0] * len(p.member_block_tiles[i])
            for d in staging.sequential:
                tiles[d] = 1
            tiles[staging.k] = staging.step
            loops = sum(1 for t in tiles if t)
            results = ", ".join([f"%ct{i}"] + [f"%cl{i}_{j}" for j in range(loops)])
            lines.append(f"{results} = transform.structured.tile_using_for %c{i} tile_sizes [{', '.join(map(str, tiles))}] "
                         f": ({_ANY}) -> ({', '.join([_ANY] * (loops + 1))})")
    return _script(lines) if lines else None


def transform_script(plans: list[OpPlan]) -> str:
    """Per kernel: tile every member op to block foralls and fuse them (`transform.loop.fuse_sibling` puts the
    target's body first, so program order is kept), then the same to thread foralls, then map to gpu.launch.
    Shared-memory kernels (already block-tiled, see shared_block_script) get one thread forall per member and per
    operand copy, and a barrier after each (`sync_after_distribute`)."""
    lines: list[str] = []
    for p in plans:
        k = p.index
        bd = ", ".join(str(x) for x in p.block_dims)
        sync = "false"
        if p.wrap:
            lines.append(f'%F{k} = transform.structured.match ops{{["scf.forall"]}} attributes{{hcc.wrap = {p.members[0]} : i64}} in %root : ({_ANY}) -> {_ANY}')
        elif p.shared:
            sync = "true"
            lines.append(f'%F{k} = transform.structured.match ops{{["scf.forall"]}} attributes{{hcc.block = {k} : i64}} in %root : ({_ANY}) -> {_ANY}')
            for i in p.members:
                _thread_tiling(lines, p, i, f"F{k}")
            for c, tiles, mapping in p.copies:
                lines.append(f"%cp{c} = transform.structured.match attributes{{hcc.copy = {c} : i64}} in %F{k} : ({_ANY}) -> {_ANY}")
                lines.append(f"%cpt{c}, %cpf{c} = transform.structured.tile_using_forall %cp{c} tile_sizes [{', '.join(map(str, tiles))}] "
                             f"(mapping = {_mapping_attr('thread', mapping)}) : ({_ANY}) -> ({_ANY}, {_ANY})")
        else:
            _block_tiling(lines, p)
            _fuse(lines, [_thread_tiling(lines, p, i, f"F{k}") for i in p.members], f"G{k}")
        lines.append(f"%l{k} = transform.gpu.map_forall_to_blocks %F{k} generate_gpu_launch : ({_ANY}) -> {_ANY}")
        lines.append(f"transform.gpu.map_nested_forall_to_threads %l{k} block_dims = [{bd}] sync_after_distribute = {sync} : ({_ANY}) -> {_ANY}")
    return _script(lines)


def _walk(op, visit) -> None:
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                visit(inner.operation)
                _walk(inner.operation, visit)


def _stage_operands(module, entry: str, plans: list[OpPlan]) -> None:
    """After shared_block_script: in each promoted contraction (now one K step inside the block loop), the input
    tiles indexed by K are copied into workgroup buffers (`memref.alloc` in #gpu.address_space<workgroup> at the
    top of the block loop; they become the kernel's workgroup attributions after outlining) by a linalg.copy right
    before it, which transform_script distributes over the block's threads; the contraction then reads the buffers."""
    from mlir import ir
    from mlir.dialects import linalg, memref

    i64 = ir.IntegerType.get_signless(64)
    wanted = {i: p for p in plans for i in p.shared}
    found: dict[int, object] = {}

    def visit(op) -> None:
        if op.name == "linalg.generic" and "hcc.op" in op.attributes:
            i = ir.IntegerAttr(op.attributes["hcc.op"]).value
            if i in wanted:
                found[i] = op

    _walk(_func(module, entry).operation, visit)
    workgroup = ir.Attribute.parse("#gpu.address_space<workgroup>")
    copy_id = 0
    for i, plan in sorted(wanted.items()):
        op = found.get(i)
        if op is None or op.parent.name not in ("scf.for", "scf.forall"):
            raise HccError(f"internal: GPU backend: the K loop of {plan.where} was not tiled")
        forall = op.parent
        while forall.name != "scf.forall":
            forall = forall.parent
        forall.attributes["hcc.block"] = ir.IntegerAttr.get(i64, plan.index)
        for n in plan.shared[i].inputs:
            view = op.operands[n]
            vtype = ir.MemRefType(view.type)
            shape = list(vtype.shape)
            if any(d < 0 for d in shape):
                raise HccError(f"internal: GPU backend: dynamic operand tile in {plan.where}")
            with ir.InsertionPoint.at_block_begin(forall.regions[0].blocks[0]), op.location:
                buffer = memref.AllocOp(ir.MemRefType.get(shape, vtype.element_type, memory_space=workgroup), [], []).result
            with ir.InsertionPoint(op), op.location:
                linalg.copy(view, outs=[buffer])
            ops = list(op.parent.regions[0].blocks[0].operations)
            copy = next(o.operation for o, nxt in zip(ops, ops[1:]) if nxt.operation == op)
            copy.attributes["hcc.copy"] = ir.IntegerAttr.get(i64, copy_id)
            op.operands[n] = buffer
            # the block's threads share the copy: the innermost dimension of the tile on x, the next on y
            wide = [d for d in range(len(shape)) if shape[d] > 1]
            tiles, mapping = [0] * len(shape), []
            for d, (axis, threads) in zip(reversed(wide[-2:]), (("x", plan.block_dims[0]), ("y", plan.block_dims[1]))):
                count = math.gcd(shape[d], threads)
                tiles[d] = shape[d] // count
                mapping.insert(0, axis)
            if not wide:
                tiles[0], mapping = 1, ["x"]
            plan.copies.append((copy_id, tiles, mapping))
            copy_id += 1


_WG_ALLOC = re.compile(r"^\s*(%[\w.$-]+) = memref\.alloc\(\) : (memref<.*#gpu\.address_space<workgroup>>)\s*$")


def workgroup_attributions(kernels_text: str) -> str:
    """The workgroup buffers that _stage_operands allocated inside a kernel become workgroup attributions of its
    gpu.func (static shared memory in the PTX)."""
    out: list[str] = []
    header: int | None = None
    found: list[str] = []

    def close() -> None:
        if header is not None and found:
            line = out[header]
            cut = line.index(") kernel")
            out[header] = line[:cut + 1] + f" workgroup({', '.join(found)})" + line[cut + 1:]

    for line in kernels_text.splitlines():
        if line.lstrip().startswith("gpu.func @"):
            close()
            header, found = len(out), []
        match = _WG_ALLOC.match(line)
        if match and header is not None:
            found.append(f"{match.group(1)} : {match.group(2)}")
            continue
        out.append(line)
    close()
    return "\n".join(out) + "\n"


# -- the stages ------------------------------------------------------------------------------------------------------
@dataclass
class Lowered:
    host_text: str  # the outlined module: host function + gpu.modules (for the launch table)
    kernels_text: str  # one gpu.module holding every kernel, renamed <sg>_k<N> (input of NVVM codegen)
    kernel_names: dict[str, str]  # "<module>::<func>" in host_text -> final kernel name
    plans: list[OpPlan]
    stages: dict[str, str] = field(default_factory=dict)  # IR after each stage (kept with --keep-ir)


MAX_UNROLL = 1024


def _drop_asserts(module) -> None:
    """torch-mlir guards some ops with `cf.assert` (Reciprocal: "tensor with zero element"). A kernel cannot report
    an assertion (it would trap the whole context), and ONNX defines these cases (1/0 = inf, as onnxruntime gives), so
    the GPU code drops the checks."""
    doomed = []

    def visit(block) -> None:
        for op in block.operations:
            if op.operation.name == "cf.assert":
                doomed.append(op.operation)
            for region in op.regions:
                for inner in region.blocks:
                    visit(inner)

    for top in module.body.operations:
        for region in top.regions:
            for block in region.blocks:
                visit(block)
    for op in doomed:
        op.erase()


def _unroll_loops(module, entry: str) -> None:
    """Loops on tensors (an LSTM's time loop) are unrolled completely: a launch table is straight-line, and every
    iteration becomes its own kernels. Only loops with constant bounds, up to MAX_UNROLL iterations in all."""
    from mlir import ir

    loops = []

    def visit(block) -> None:
        for op in block.operations:
            if op.operation.name.startswith("linalg."):  # loops inside an op's body run inside its kernel
                continue
            for region in op.regions:
                for inner in region.blocks:
                    visit(inner)
            if op.operation.name == "scf.for":
                loops.append(op)

    visit(_func(module, entry).regions[0].blocks[0])
    if not loops:
        return
    i64 = ir.IntegerType.get_signless(64)
    lines = ["module attributes {transform.with_named_sequence} {",
             "transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {"]
    total = 0
    for n, loop in enumerate(loops):  # innermost first (post-order)
        bounds = []
        for value in list(loop.operands)[:3]:
            owner = value.owner
            op = None if isinstance(owner, ir.Block) else (owner.operation if hasattr(owner, "operation") else owner)
            if op is None or op.name != "arith.constant":
                raise HccError(f"GPU backend: {_op_where(loop.operation)} has non-constant bounds; the GPU backend only unrolls static loops")
            bounds.append(int(ir.IntegerAttr(op.attributes["value"]).value))
        lb, ub, step = bounds
        trips = max(0, -(-(ub - lb) // step))
        total += trips
        if total > MAX_UNROLL:
            raise HccError(f"GPU backend: {_op_where(loop.operation)} would unroll to more than {MAX_UNROLL} iterations; place it on the CPU")
        loop.attributes["hcc.loop"] = ir.IntegerAttr.get(i64, n)
        if trips > 1:
            lines.append(f'%l{n} = transform.structured.match ops{{["scf.for"]}} attributes{{hcc.loop = {n} : i64}} in %root : (!transform.any_op) -> !transform.any_op')
            lines.append(f"transform.loop.unroll %l{n} {{ factor = {trips} }} : !transform.any_op")
    lines += ["transform.yield", "}", "}"]
    script = ir.Module.parse("\n".join(lines))
    module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
    for op in script.body.operations:
        module.body.append(op.operation.clone())
    _run(module, "transform-interpreter,canonicalize,cse", "unrolling loops")
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    del module.operation.attributes["transform.with_named_sequence"]


def _duplicate_shared_fills(module, entry: str) -> None:
    """A fill feeding several consumers (the zero init of two matmuls) would bufferize to one buffer plus a copy
    kernel per extra consumer; one fill per consumer writes each init in place instead."""
    from mlir import ir

    for op in _top_ops(_func(module, entry)):
        if op.operation.name != "linalg.fill" or len(op.results) != 1:
            continue
        uses = [(use.owner, use.operand_number) for use in op.results[0].uses]
        for owner, index in uses[1:]:
            with ir.InsertionPoint(op):
                clone = op.operation.clone()
            owner.operands[index] = clone.results[0]


def _sanitize(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"k_{cleaned}"


def _hoist_buffers_and_views(func_op) -> None:
    """Move allocations, constant buffers and views to the top of the function (they have no data effects), so that
    the linalg ops are adjacent and consecutive ones can be fused into one kernel."""
    ops = _top_ops(func_op)
    movable = [op for op in ops if op.operation.name in ("memref.alloc", "memref.alloca", "memref.get_global", "arith.constant") + VIEW_OPS]
    anchor = next((op for op in ops if op not in movable), None)
    if anchor is None:
        return
    for op in movable:
        op.operation.move_before(anchor.operation)


def _apply_script(module, script_text: str, pipeline: str, stage: str) -> None:
    """Run a transform-dialect script (text) on `module` with `pipeline` (which holds transform-interpreter)."""
    from mlir import ir

    script = ir.Module.parse(script_text)
    module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
    for op in script.body.operations:
        module.body.append(op.operation.clone())
    _run(module, pipeline, stage)
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    del module.operation.attributes["transform.with_named_sequence"]


def lower_to_kernels(linalg_text: str, entry: str, precision: str = "fp32", keep: bool = False, fuse_kernels: bool = True,
                     shared: bool | None = None) -> Lowered:
    """linalg-on-tensors text -> outlined host + kernel modules. `shared`: shared-memory tiling of matmul-like
    kernels (plan_shared); None follows HCC_GPU_SHARED (on unless it is 0)."""
    from mlir import ir

    stages: dict[str, str] = {}
    with single_threaded_context(), ir.Location.unknown():
        module = ir.Module.parse(linalg_text)
        if precision == "fp16":
            from hcc.backends.gpu.precision import rewrite_fp16

            rewrite_fp16(module, entry)
            if keep:
                stages["fp16"] = str(module)
        elif precision != "fp32":
            raise HccError(f"GPU backend: unsupported precision '{precision}' (use fp32 or fp16)")
        _unroll_loops(module, entry)
        _drop_asserts(module)
        _run(module, FUSE, "elementwise fusion")
        _duplicate_shared_fills(module, entry)
        _run(module, BUFFERIZE, "bufferization")
        text = copies_to_linalg(module.operation.get_asm(large_elements_limit=None, enable_debug_info=True))
        module = ir.Module.parse(text)
        _run(module, GENERALIZE, "generalizing named ops")
        if keep:
            stages["bufferized"] = module.operation.get_asm(large_elements_limit=16)

        func_op = _func(module, entry)
        _hoist_buffers_and_views(func_op)
        infos: list[OpInfo] = []
        i64 = ir.IntegerType.get_signless(64)
        for op in _top_ops(func_op):
            name = op.operation.name
            if not name.startswith("linalg."):
                continue
            if name != "linalg.generic":
                raise HccError(f"GPU backend: cannot map {_op_where(op.operation)} to the GPU (not generalizable)")
            if not len(op.outputs):
                raise HccError(f"GPU backend: {_op_where(op.operation)} has no output (a side effect only); it cannot become a kernel")
            op.attributes["hcc.op"] = ir.IntegerAttr.get(i64, len(infos))
            infos.append(_op_info(len(infos), op))
        for op in _top_ops(func_op):  # what else the host function holds must be expressible in a launch table
            name = op.operation.name
            if name.startswith(("scf.", "affine.", "tensor.", "vector.")):
                raise HccError(f"GPU backend: {_op_where(op.operation)} outside any kernel is not supported")
        use_shared = shared_enabled(shared)
        plans = []
        for k, group in enumerate(group_ops(infos, fuse=fuse_kernels)):
            plans.append((plan_shared(k, group) if use_shared else None) or plan_group(k, group))
        for plan in plans:
            if plan.wrap:
                _wrap_in_foralls(infos[plan.members[0]].op.operation)

        first = shared_block_script(plans)
        if first is not None:
            _apply_script(module, first, "transform-interpreter", "tiling shared-memory kernels onto blocks")
            _stage_operands(module, entry, plans)
        script = transform_script(plans)
        if keep:
            stages["mapping_script"] = script if first is None else first + "\n// then, after _stage_operands:\n" + script
        _apply_script(module, script, AFTER_MAPPING, "mapping linalg ops to GPU blocks and threads")
        for op in _top_ops(_func(module, entry)):
            if op.operation.name.startswith(("linalg.", "scf.")):
                raise HccError(f"GPU backend: {_op_where(op.operation)} was not mapped to a kernel")
        _run(module, OUTLINE, "kernel outlining")
        host_text = module.operation.get_asm(large_elements_limit=None, enable_debug_info=True)

        # One gpu.module for all kernels, with predictable names.
        kernel_names: dict[str, str] = {}
        merged = ir.Module.parse(f"module attributes {{gpu.container_module}} {{ gpu.module @{_sanitize(entry)}_kernels {{ }} }}")
        target_body = merged.body.operations[0].regions[0].blocks[0]
        prefix = _sanitize(entry)
        for op in module.body.operations:
            if op.operation.name != "gpu.module":
                continue
            mod_name = ir.StringAttr(op.attributes["sym_name"]).value
            for inner in op.regions[0].blocks[0].operations:
                if inner.operation.name != "gpu.func":
                    continue
                fn = ir.StringAttr(inner.attributes["sym_name"]).value
                new_name = f"{prefix}_k{len(kernel_names)}"
                kernel_names[f"{mod_name}::{fn}"] = new_name
                clone = inner.operation.clone()
                clone.attributes["sym_name"] = ir.StringAttr.get(new_name)
                target_body.append(clone)
        kernels_text = workgroup_attributions(_widen_i1(allow_fma(merged.operation.get_asm(large_elements_limit=None))))
        return Lowered(host_text, kernels_text, kernel_names, plans, stages)


_FP_ARITH = re.compile(r"^(\s*%[\w.$-]+ = arith\.(?:addf|subf|mulf) %[\w.$-]+, %[\w.$-]+) : ", re.M)


def allow_fma(text: str) -> str:
    """`fastmath<contract>` on float add/sub/mul in the kernels: NVPTX then fuses multiply-adds into `fma.rn`, as
    nvcc does by default (-fmad=true). Without it every product and sum is rounded separately (`mul.rn`/`add.rn`)."""
    return _FP_ARITH.sub(r"\1 fastmath<contract> : ", text)


def _widen_i1(text: str) -> str:
    """Bool buffers are bytes: LLVM 22's memref-to-LLVM lowering asserts on i1 loads/stores (shared with the CPU
    backend: hcc.backends.cpu.widen_i1)."""
    try:
        from hcc.backends.cpu.widen_i1 import widen_i1_memrefs
    except ImportError:  # pragma: no cover - older trees
        return text
    return widen_i1_memrefs(text)


def kernels_to_ptx(kernels_text: str, toolkit: str | None) -> str:
    """The merged gpu.module -> PTX text (in-process NVPTX backend of the xtc LLVM)."""
    from mlir import ir

    with single_threaded_context():
        module = ir.Module.parse(kernels_text)
        _run(module, kernel_to_ptx_pipeline(toolkit), "NVVM/PTX code generation")
        for op in module.body.operations:
            if op.operation.name == "gpu.binary":
                objects = op.attributes["objects"]
                for obj in objects:
                    text = str(obj)
                    # #gpu.object<#nvvm.target<...>, properties = {...}, assembly = "...">  or  "..." at the end
                    match = re.search(r'"((?:[^"\\]|\\.)*)"\s*>\s*$', text, re.S)
                    if match:
                        return _unescape_mlir_string(match.group(1))
        raise HccError("GPU backend: NVVM code generation produced no PTX")


def _unescape_mlir_string(s: str) -> str:
    out = bytearray()
    i = 0
    raw = s.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):  # backslash
            nxt = raw[i + 1]
            if nxt in b"0123456789abcdefABCDEF" and i + 2 < len(raw) and raw[i + 2] in b"0123456789abcdefABCDEF":
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            mapping = {ord("n"): 10, ord("t"): 9, ord('"'): 34, ord("\\"): 92}
            out.append(mapping.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8").rstrip("\x00")
