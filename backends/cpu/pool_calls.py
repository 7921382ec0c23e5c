"""Strided pooling windows as calls into runtime/pool.c, instead of scalar loops.

A max pooling arrives as one `linalg.generic` per band of its output (passes/nan_semantics.py: the interior and the
clipped borders, each folding its in-bounds taps with onnxruntime's NaN rule), an average pooling as a sum over its
window. When the window slides two columns per output (ResNet's 3x3/2 stem pooling, LeNet's 2x2/2),
schedule.py has no vector schedule for it and it fell to scalar loops (ResNet-18: 0.34 ms on one core, onnxruntime
0.09 ms). Such a fold over a 4-D view, from a constant, becomes `hcc_pool2d` (ABI in runtime/pool.c): the kernel
folds every output's taps in the generic's order with the generic's own step (`acc > v ? acc : v`,
`acc < v ? v : acc` or `acc + v`), so the results are the same bits, on every core.

The op is tagged on tensors (`tag`) and replaced after bufferization (`emit_calls`): by then each band's output is a
view of the pooled map (a concat's pieces are computed into its slices), so the kernel writes it in place; emitted on
tensors, every band had its own buffer, copied into the map afterwards.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from hcc.backends.cpu import schedule, ukernels

POOL = "hcc_pool2d"
TAG = "hcc.pool"  # on a generic that becomes a call after bufferization: the call's parameters
ARITY = 22
FOLD_GT, FOLD_LT, FOLD_ADD = 0, 1, 2  # runtime/pool.c
MAX_COLUMN_STRIDE = 2  # what the vector paths of pool.c take; a wider stride stays on the generated loops, as before
_WINDOW = re.compile(r"d(\d+)(?: \* (\d+))? \+ d(\d+)(?: \* (\d+))?")


@dataclass
class Window:
    """One spatial dim of the output: its taps (1: no window), stride and dilation."""

    taps: int = 1
    stride: int = 1
    dilation: int = 1


@dataclass
class PoolFold:
    """A generic the kernel takes: its windowed input (operand index), the window per spatial dim, the fold."""

    source: int
    windows: tuple[Window, Window]
    fold: int
    init: float


@dataclass
class PoolCall:
    """One op tagged to become a call, for the schedule report."""

    location: object  # the generic's MLIR location (names its ONNX node)
    pool: PoolFold
    work: int  # taps folded


def _window(expr: tuple, out_dim: int, info: schedule.LinalgOp, reductions: set[int]) -> Window | None:
    """The window along `out_dim` of the input map's result `expr`: `dO * s + dK * d`, or `dO` alone (no window)."""
    kind, value = expr
    if kind == "dim":
        return Window() if value == out_dim else None
    match = _WINDOW.fullmatch(value) if kind == "expr" else None
    if not match:
        return None
    terms = [(int(match.group(1)), int(match.group(2) or 1)), (int(match.group(3)), int(match.group(4) or 1))]
    if terms[0][0] != out_dim:
        terms.reverse()
    (outer, stride), (tap, dilation) = terms
    if outer != out_dim or tap not in reductions or info.ranges[tap] < 1:
        return None
    reductions.discard(tap)  # each tap dim slides one spatial dim only
    return Window(info.ranges[tap], stride, dilation)


def _fold_kind(op, source: int) -> int | None:
    """FOLD_GT / FOLD_LT / FOLD_ADD when the body is that step on (acc = the output, v = the source), else None."""
    block = op.regions[0].blocks[0]
    args = list(block.arguments)
    v, acc = args[source], args[-1]
    body = list(block.operations)
    result = body[-1].operands[0] if len(body[-1].operands) == 1 else None
    names = [o.operation.name for o in body[:-1]]
    if names == ["arith.addf"]:
        return FOLD_ADD if list(body[0].operands) in ([v, acc], [acc, v]) and result == body[0].result else None
    if names != ["arith.cmpf", "arith.select"] or result != body[1].result:
        return None
    cmp, sel = body[0], body[1]
    if list(cmp.operands) != [acc, v] or sel.operands[0] != cmp.result:
        return None
    predicate, picks = ukernels._predicate(cmp), list(sel.operands[1:])
    if predicate == "ogt" and picks == [acc, v]:
        return FOLD_GT
    if predicate == "olt" and picks == [v, acc]:
        return FOLD_LT
    return None


def match(op) -> PoolFold | None:
    """The pooling fold `op` computes, when the kernel can take it and no vector schedule does; else None."""
    from mlir import ir

    info = schedule.analyze(op, -1)
    if info.element != "f32" or not schedule._is_static(info) or len(op.results) != 1 or info.num_loops < 5:
        return None
    if schedule.plan(info).kind != "loops":
        return None
    if info.iterators[:4] != ["parallel"] * 4 or any(it != "reduction" for it in info.iterators[4:]):
        return None
    if info.maps[info.num_inputs] != [("dim", d) for d in range(4)]:
        return None
    windowed = [i for i in range(info.num_inputs) if any(kind == "expr" for kind, _ in info.maps[i])]
    if len(windowed) != 1 or len(info.maps[windowed[0]]) != 4 or info.maps[windowed[0]][:2] != [("dim", 0), ("dim", 1)]:
        return None
    source = windowed[0]
    reductions = set(range(4, info.num_loops))
    shape_operands = [i for i in range(info.num_inputs) if i != source]
    block_args = list(op.regions[0].blocks[0].arguments)
    if any(any(kind != "dim" or d < 4 for kind, d in info.maps[i]) or list(block_args[i].uses) for i in shape_operands):
        return None  # other inputs: only the window's shape (a pooling op's unread operand)
    windows = tuple(_window(info.maps[source][2 + k], 2 + k, info, reductions) for k in range(2))
    if None in windows or reductions or windows[1].stride > MAX_COLUMN_STRIDE:
        return None
    fold = _fold_kind(op, source)
    init = op.operands[len(op.operands) - 1].owner
    if fold is None or isinstance(init, ir.Block) or init.name != "linalg.fill":
        return None
    value = ukernels._constant_float(init.operands[0])
    return PoolFold(source, windows, fold, value) if value is not None else None


def tag(module) -> list[PoolCall]:
    """Mark every pooling fold `match` takes (the `hcc.pool` attribute: the call's parameters); the op stays until
    bufferization, so that a band of a concat is still computed into its slice of the result (eliminate-empty-tensors),
    then `emit_calls` replaces it."""
    import json

    from mlir import ir

    from hcc.backends.cpu.lowering import _linalg_generics

    calls = []
    for op in _linalg_generics(module.operation):
        pool = match(op)
        if pool is None:
            continue
        (wh, ww) = pool.windows
        params = [pool.source, wh.taps, ww.taps, wh.stride, ww.stride, wh.dilation, ww.dilation, pool.fold, ukernels._bits(pool.init)]
        op.attributes[TAG] = ir.StringAttr.get(json.dumps(params))
        n, c, oh, ow = ir.RankedTensorType(op.results[0].type).shape
        calls.append(PoolCall(op.location, pool, n * c * oh * ow * wh.taps * ww.taps))
    return calls


def emit_calls(module) -> int:
    """After bufferization: replace every tagged op (now on buffers: views of its input and of its output) by its
    `hcc_pool2d` call. Returns the count. (The fill of the output before it stays: by then it is vector code, and the
    kernel writes every output from the init anyway.)"""
    import json

    from mlir import ir
    from mlir.dialects import func

    tagged = [op for op in ukernels._all_ops(module.operation) if op.name == "linalg.generic" and TAG in op.attributes]
    for op in tagged:
        source, kh, kw, sh, sw, dh, dw, fold, init_bits = json.loads(ir.StringAttr(op.attributes[TAG]).value)
        out = op.operands[len(op.operands) - 1]
        with ir.InsertionPoint(op), op.location:
            ukernels._declare(module, POOL, ARITY)
            x, x_strides = ukernels.address_and_strides(op.operands[source])
            y, y_strides = ukernels.address_and_strides(out)
            sizes = list(ir.MemRefType(out.type).shape) + [kh, kw, sh, sw, dh, dw]
            args = [x, y] + [ukernels._index(v) for v in sizes] + x_strides + y_strides
            func.call([], ir.FlatSymbolRefAttr.get(POOL), args + [ukernels._index(fold), ukernels._index(init_bits)])
        op.erase()
    return len(tagged)
