"""How a subgraph's buffer-level linalg ops become kernels: grouping consecutive ops into one kernel, choosing
block/thread tiles per kernel (plan_op / plan_group), and the transform-dialect scripts that tile, fuse and map
them onto a gpu.launch. The shared-memory variant of a kernel is planned in shared_tiling.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from hcc.backends.gpu.mlir_util import _op_where
from hcc.errors import HccError

MAX_THREADS = 256  # threads per block the mapper aims for
MAX_GRID_YZ = 65535


@dataclass
class SharedTiling:
    """How one contraction member of a shared-memory kernel is staged (plan_shared)."""

    k: int  # its reduction loop
    step: int  # K step
    inputs: list[int]  # the inputs copied into workgroup memory (those indexed by K)
    sequential: list[int]  # its loops of the output dimensions that run one after another in each block


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
    shared: dict[int, SharedTiling] = field(default_factory=dict)
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
    assign_member_tiles(plan, group)
    return plan


def assign_member_tiles(plan: OpPlan, group: list[OpInfo]) -> None:
    """Spread the kernel's tiles (over its output space) onto each member op's own loops."""
    plan.members = [i.index for i in group]
    for info in group:
        block, thread = [0] * len(info.sizes), [0] * len(info.sizes)
        for pos, d in enumerate(info.out_dims):
            block[d], thread[d] = plan.block_tiles[pos], plan.thread_tiles[pos]
        plan.member_block_tiles[info.index] = block
        plan.member_thread_tiles[info.index] = thread


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
            lines.append(f'%F{k} = transform.structured.match ops{{["scf.forall"]}} attributes{{hcc.wrap = {p.members[0]} : i64}} '
                         f'in %root : ({_ANY}) -> {_ANY}')
        elif p.shared:
            sync = "true"
            lines.append(f'%F{k} = transform.structured.match ops{{["scf.forall"]}} attributes{{hcc.block = {k} : i64}} '
                         f'in %root : ({_ANY}) -> {_ANY}')
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
