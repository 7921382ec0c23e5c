"""Hoist a time loop's input projections out of the loop: one GEMM over every step instead of a GEMV per step.

torch-mlir lowers an ONNX LSTM/GRU/RNN to an `scf.for` over the time steps whose body multiplies the step's input
x[t] by each gate's input weights (`x[t] @ W_g^T`) as well as the hidden state by the recurrent ones. The input
products do not depend on the recurrence: onnxruntime computes them for all steps at once before its loop. Here a
contraction in the loop body whose A operand is the loop's slice x[t] of a tensor defined before the loop, whose B
and init are defined before the loop too, becomes one contraction over x (T x rows) before the loop, and the body
reads its row block t. Measured on a 2-layer LSTM (hidden 128, 100 steps): the per-step GEMVs read half the weight
bytes they read before.

The slice index must be the loop counter itself: torch-mlir wraps it in negative-index normalisation and clamping
(`select(t < 0, t + T, t)`, `max`, `min`), so the index is evaluated for every step (small integer arithmetic only)
and must equal t for all of them.
"""
from __future__ import annotations

from collections.abc import Callable

# arith ops the index evaluator understands, with their integer semantics
_BINARY: dict[str, Callable[[int, int], int]] = {
    "arith.addi": lambda a, b: a + b, "arith.subi": lambda a, b: a - b, "arith.muli": lambda a, b: a * b,
    "arith.maxsi": max, "arith.minsi": min,
}
_CMPI = {0: lambda a, b: a == b, 1: lambda a, b: a != b, 2: lambda a, b: a < b, 3: lambda a, b: a <= b,
         4: lambda a, b: a > b, 5: lambda a, b: a >= b}  # eq ne slt sle sgt sge
_MAX_STEPS = 1 << 16  # a longer loop is not evaluated step by step (and not hoisted)


def hoist_loop_projections(root) -> int:
    """Hoist every qualifying contraction out of the `scf.for` loops under `root`; returns how many."""
    hoisted = 0
    for loop in _for_loops(root):
        trip = _static_trip(loop)
        if trip is None:
            continue
        body = loop.regions[0].blocks[0]
        for op in [o for o in body.operations if o.operation.name == "linalg.generic"]:
            if _hoist(op.operation, loop, trip):
                hoisted += 1
    return hoisted


def _for_loops(root) -> list:
    found = []

    def visit(op) -> None:
        for region in op.regions:
            for block in region.blocks:
                for child in block.operations:
                    if child.operation.name == "scf.for":
                        found.append(child.operation)
                    visit(child.operation)

    visit(root)
    return found


def _constant_int(value) -> int | None:
    from mlir import ir

    if isinstance(value, ir.BlockArgument) or value.owner.name != "arith.constant":
        return None
    attr = value.owner.attributes["value"]
    return ir.IntegerAttr(attr).value if isinstance(attr, ir.IntegerAttr) or ir.IntegerAttr.isinstance(attr) else None


def _static_trip(loop) -> int | None:
    """The step count of `for t = 0 to T step 1` with a constant T; None for any other loop."""
    lower, upper, step = (_constant_int(loop.operands[i]) for i in range(3))
    if lower != 0 or step != 1 or upper is None or not 0 < upper <= _MAX_STEPS:
        return None
    return upper


def _evaluate(value, counter, t: int, cache: dict) -> int | None:
    """The integer `value` takes at step t (`counter` is the loop's induction variable); None if not computable."""
    from mlir import ir

    if value == counter:
        return t
    if isinstance(value, ir.BlockArgument):
        return None
    op = value.owner
    key = (op, t)
    if key in cache:
        return cache[key]
    name = op.name
    args = [_evaluate(v, counter, t, cache) for v in op.operands] if name != "arith.constant" else []
    result = None
    if name == "arith.constant":
        result = _constant_int(value)
    elif None in args:
        result = None
    elif name in _BINARY:
        result = _BINARY[name](args[0], args[1])
    elif name in ("arith.index_cast", "arith.extui", "arith.extsi"):
        result = args[0]
    elif name == "arith.cmpi":
        predicate = ir.IntegerAttr(op.attributes["predicate"]).value
        result = int(_CMPI[predicate](args[0], args[1])) if predicate in _CMPI else None
    elif name == "arith.select":
        result = args[1] if args[0] else args[2]
    cache[key] = result
    return result


def _defined_outside(value, loop) -> bool:
    """Whether `value` is available before `loop`: neither defined inside it nor one of its block's arguments."""
    from mlir import ir

    node = value.owner.owner if isinstance(value, ir.BlockArgument) else value.owner
    while node is not None:
        node = node.operation
        if node == loop:
            return False
        if node.name == "func.func":
            return True
        node = node.parent
    return True


def _step_slice(a, loop, trip: int):
    """(x, rows, reassociation) when `a` is collapse_shape(extract_slice(x, [t, 0..], [1, rest of x])) with x
    defined before the loop and t the loop counter; rows: the rows one step contributes. Else None."""
    from mlir import ir

    if isinstance(a, ir.BlockArgument) or a.owner.name != "tensor.collapse_shape":
        return None
    collapse = a.owner
    sliced = collapse.operands[0]
    if isinstance(sliced, ir.BlockArgument) or sliced.owner.name != "tensor.extract_slice":
        return None
    extract = sliced.owner
    x = extract.operands[0]
    if len(extract.operands) != 2 or not _defined_outside(x, loop):
        return None  # exactly one dynamic offset (the step), static sizes and strides
    x_type, s_type = ir.RankedTensorType(x.type), ir.RankedTensorType(sliced.type)
    offsets = list(ir.DenseI64ArrayAttr(extract.attributes["static_offsets"]))
    strides = list(ir.DenseI64ArrayAttr(extract.attributes["static_strides"]))
    if x_type.shape[0] != trip or list(s_type.shape) != [1] + list(x_type.shape[1:]) or any(s != 1 for s in strides):
        return None
    if offsets[1:] != [0] * (len(offsets) - 1) or offsets[0] != ir.ShapedType.get_dynamic_stride_or_offset():
        return None
    counter, cache = loop.regions[0].blocks[0].arguments[0], {}
    if any(_evaluate(extract.operands[1], counter, t, cache) != t for t in range(trip)):
        return None
    groups = [list(ir.ArrayAttr(g)) for g in ir.ArrayAttr(collapse.attributes["reassociation"])]
    groups = [[ir.IntegerAttr(d).value for d in g] for g in groups]
    if not groups or groups[0][0] != 0:
        return None
    rows = ir.RankedTensorType(a.type).shape[0]
    return x, rows, groups


def _hoist(op, loop, trip: int) -> bool:
    from mlir import ir
    from mlir.dialects import arith, linalg, tensor

    from hcc.backends.cpu import schedule, ukernels

    roles = ukernels.gemm_roles(schedule.analyze(op, -1))
    if roles is None or roles.batch or len(op.results) != 1:
        return False
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    a, b, init = op.operands[roles.a], op.operands[roles.b], op.operands[2]
    a_dims = [e.position for e in maps[roles.a].results]
    out_dims = [e.position for e in maps[2].results]
    if out_dims != [roles.m, roles.n] or not a_dims or a_dims[0] != roles.m:
        return False
    if not _defined_outside(b, loop) or isinstance(init, ir.BlockArgument) or init.owner.name != "linalg.fill" \
            or not _defined_outside(init, loop):
        return False
    step = _step_slice(a, loop, trip)
    if step is None:
        return False
    x, rows, groups = step
    out_type = ir.RankedTensorType(op.results[0].type)
    f32 = out_type.element_type
    with ir.InsertionPoint(loop), op.location:
        x_rows = ir.RankedTensorType.get([trip * rows] + list(ir.RankedTensorType(a.type).shape[1:]), f32)
        all_a = tensor.CollapseShapeOp(x_rows, x, ir.ArrayAttr.get([
            ir.ArrayAttr.get([ir.IntegerAttr.get(ir.IntegerType.get_signless(64), d) for d in g]) for g in groups])).result
        all_type = ir.RankedTensorType.get([trip * rows, out_type.shape[1]], f32)
        filled = linalg.fill(init.owner.operands[0], outs=[tensor.EmptyOp(all_type.shape, f32).result])
        product = contraction_like(op, all_type, [all_a, b] if roles.a == 0 else [b, all_a], filled)
        product.operation.attributes[ukernels.HOISTED] = ir.UnitAttr.get()
    with ir.InsertionPoint(op), op.location:
        counter = loop.regions[0].blocks[0].arguments[0]
        start = counter if rows == 1 else arith.MulIOp(counter, arith.ConstantOp(ir.IndexType.get(), rows).result).result
        dynamic = ir.ShapedType.get_dynamic_stride_or_offset()
        row_block = tensor.ExtractSliceOp(out_type, product.result, [start], [], [], ir.DenseI64ArrayAttr.get([dynamic, 0]),
                                          ir.DenseI64ArrayAttr.get(list(out_type.shape)), ir.DenseI64ArrayAttr.get([1, 1])).result
    op.results[0].replace_all_uses_with(row_block)
    op.erase()
    return True


def contraction_like(op, result_type, inputs: list, init):
    """A new f32 contraction `init + a * b` with `op`'s indexing maps and iterators, at the current insertion point
    (what hoisting and merge_products.py make of one or several contractions)."""
    from mlir import ir
    from mlir.dialects import arith, linalg

    f32 = result_type.element_type
    product = linalg.GenericOp([result_type], inputs, [init], op.attributes["indexing_maps"], op.attributes["iterator_types"])
    block = product.regions[0].blocks.append(f32, f32, f32)
    with ir.InsertionPoint(block):
        linalg.YieldOp([arith.AddFOp(block.arguments[2], arith.MulFOp(block.arguments[0], block.arguments[1]).result).result])
    return product
