"""Shared-memory tiling of matmul-like kernels and convolutions (only their weight is staged): which kernels
qualify (plan_shared), and the IR rewrites that
stage their operand tiles in workgroup buffers (_stage_operands) and turn those buffers into the kernels'
workgroup attributions (static shared memory). See docs/backends/gpu.md, "Shared-memory tiling".
"""
from __future__ import annotations

import math
import re

from hcc.backends.gpu.mapping import MAX_GRID_YZ, OpInfo, OpPlan, SharedTiling, assign_member_tiles
from hcc.backends.gpu.mlir_util import _func
from hcc.errors import HccError

# -- shared-memory tiling of contractions ----------------------------------------------------------------------------
SHARED_TM = 16  # output rows per block (thread y)
SHARED_TN = 16  # output columns per block (thread x): 256 threads, one output element each
SHARED_TK = (32, 16)  # K step: the first that divides K
SHARED_MIN_K = 32  # shorter reductions do not repay the copies and barriers
SHARED_MIN_REUSE = 8  # every staged element is read by at least this many threads of the block
SHARED_MAX_WINDOW = 9  # convolution windows up to 3 x 3 (a 5 x 5 one spilled on sm_80 when staged)
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
    """The off-switch: `lower_to_kernels(shared=False)` (the backend passes the compile's HCC_GPU_SHARED), else the
    environment variable HCC_GPU_SHARED (hcc/env.py: on unless it is off)."""
    if value is not None:
        return bool(value)
    from hcc.env import read_env

    return read_env().gpu_shared


def contraction_loops(op) -> tuple[int, dict[int, list[int]]] | None:
    """A matmul-like linalg.generic: one output, exactly one reduction loop K, at least two buffer inputs indexed by
    K, each of those through plain loop dimensions, and a body with a multiply and an add. The body may hold more:
    extf/truncf on the fp16 path, or an elementwise producer that elementwise fusion merged into the contraction (the
    LayerNorm before a transformer's fc1, the GELU before fc2). Staging inputs is correct for any body; this only
    decides which kernels are worth it. -> (K, {input index: its loop dims} for the inputs indexed by K) or None.
    A convolution (conv_loops) is the other kind: see there."""
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
            return None  # K inside an index expression (a convolution window): see conv_loops
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


def conv_loops(op) -> tuple[int, list[int], dict[int, list[int]]] | None:
    """A convolution (linalg-generalize-named-ops of linalg.conv_2d_nchw_fchw and the like): one output, at least one
    buffer input indexed by the reductions through window expressions (the image: `oh * s + kh`), which is read
    from global memory as before, and exactly one buffer input (the weight) that uses every reduction loop, each
    through a plain loop dimension; a body with a multiply and an add. Only the weight is staged. K is the outermost
    reduction loop (the input channels c; the window loops kh, kw are not tiled: each K step stages the weight
    slice [cout tile, c step, kh, kw]). -> (K, the reduction loops, {weight input index: its loop dims}) or None."""
    from mlir import ir

    if op.operation.name != "linalg.generic" or len(op.outputs) != 1:
        return None
    iterators = ["parallel" if "parallel" in str(a) else "reduction" for a in op.attributes["iterator_types"]]
    reductions = [d for d, it in enumerate(iterators) if it == "reduction"]
    if not reductions:
        return None
    maps = [ir.AffineMapAttr(a).value for a in op.attributes["indexing_maps"]]
    staged: dict[int, list[int]] = {}
    windowed = 0
    for n, (operand, amap) in enumerate(zip(list(op.inputs), maps)):
        if not isinstance(operand.type, ir.MemRefType):
            continue
        dims = set().union(*(_dims_of(e) for e in amap.results)) if amap.results else set()
        if not dims & set(reductions):
            continue
        if not all(isinstance(e, ir.AffineDimExpr) for e in amap.results):
            windowed += 1
            continue
        used = [e.position for e in amap.results]
        if len(set(used)) != len(used) or any(d < 0 for d in ir.MemRefType(operand.type).shape):
            return None
        staged[n] = used
    if windowed < 1 or len(staged) != 1 or not set(reductions) <= set(next(iter(staged.values()))):
        return None
    names = {inner.operation.name for inner in op.regions[0].blocks[0].operations}
    if not {"arith.mulf", "arith.addf"} <= names:
        return None
    return reductions[0], reductions, staged


def _dims_of(expr) -> set[int]:
    """Loop dimensions an affine expression uses."""
    return {int(d) for d in re.findall(r"d(\d+)", str(expr))}


def _promotable(group: list[OpInfo], x: int, y: int, sequential: list[int]) -> dict[int, SharedTiling]:
    """Members whose inputs are worth staging with output position x on thread x and y on thread y (plan_shared)."""
    promoted: dict[int, SharedTiling] = {}
    shared_bytes = 0
    for info in group:
        found = contraction_loops(info.op)
        window: dict[int, int] = {}  # a convolution's untiled reduction loops (kh, kw) -> their sizes
        if found is None:
            conv = conv_loops(info.op)
            if conv is None:
                continue
            k, reductions, inputs = conv
            window = {d: info.sizes[d] for d in reductions if d != k}
            found = k, inputs
        k, inputs = found
        size_k = info.sizes[k]
        if size_k * math.prod(window.values()) < SHARED_MIN_K or math.prod(window.values()) > SHARED_MAX_WINDOW:
            continue
        loop_x, loop_y = info.out_dims[x], info.out_dims[y]
        reuse = [(1 if loop_x in used else SHARED_TN) * (1 if loop_y in used else SHARED_TM) for used in inputs.values()]
        if min(reuse) < SHARED_MIN_REUSE:
            continue
        step, staged = None, 0
        for t in (t for t in SHARED_TK if size_k % t == 0):  # a convolution: the first c step whose slice fits
            tile = {loop_x: SHARED_TN, loop_y: SHARED_TM, k: t, **window}
            staged = sum(math.prod(tile.get(d, 1) for d in used) * _element_bytes(info.op.inputs[n]) for n, used in inputs.items())
            step = t
            if not window or shared_bytes + staged <= SHARED_MAX_BYTES:
                break
        if step is None or shared_bytes + staged > SHARED_MAX_BYTES:
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
    after, separated by barriers. A convolution (conv_loops) qualifies the same way with K = its input channels c
    (c x kh x kw at least SHARED_MIN_K, a window of at most SHARED_MAX_WINDOW elements, the first c step whose
    weight slice [cout or 1, c step, kh, kw] fits in SHARED_MAX_BYTES); only its weight is staged, its image is read
    from global memory. -> None when nothing qualifies (the kernel keeps the plain plan)."""
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
    assign_member_tiles(plan, group)
    plan.shared = promoted
    return plan


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
            # (only dimensions that split over the threads, when there are any: a convolution's weight slice
            # [16, c step, 3, 3] goes over cout (y) and c (x), [1, 16, 3, 3] over c, each thread copying whole
            # 3 x 3 windows)
            wide = [d for d in range(len(shape)) if shape[d] > 1]
            wide = [d for d in wide if math.gcd(shape[d], SHARED_TN) > 1 and math.gcd(shape[d], SHARED_TM) > 1] or wide
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
