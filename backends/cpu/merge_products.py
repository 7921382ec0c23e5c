"""Merge contractions that share their A operand and read adjacent row blocks of one weight into one contraction.

torch-mlir lowers an ONNX LSTM (GRU, RNN) gate by gate: each time step multiplies the hidden state h by four
128 x 128 slices of the recurrent weight R [4H, H], four matrix-vector products into four buffers; the input
products, once hoist_projections.py has moved them before the loop, are four GEMMs over the same x. Each product
is a kernel call with its own set-up, and a 128-column product streams its weights less well than a wide one
(a 1 x 128 x 128 product 0.76 us against 2.65 us for one 1 x 128 x 512, C harness on an EPYC Zen 4). onnxruntime
multiplies by the whole R once per step. Here, within one block, contractions of one ONNX node with the same A,
the same init (a fill of one value) and the same indexing maps, whose B operands are static slices of one tensor
that differ only in their offset along the dim the output's columns come from, and that together cover a
contiguous range of it, become one contraction over the slice of the whole range; each former result is a column
slice of the merged one (a view after bufferization: no copy). Each output element is the same sum as before.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Member:
    op: object           # the linalg.generic
    source: object       # the tensor its B slices
    offsets: list[int]   # the slice's static offsets, sizes
    sizes: list[int]
    axis: int            # the B dim that the output's column dim (n) reads


def merge_shared_operand_products(root) -> int:
    """Merge every qualifying group of contractions in each block under `root`; returns how many groups."""
    merged = 0
    for block in _blocks(root):
        groups: dict[tuple, list[_Member]] = {}
        for op in list(block.operations):
            member = _member(op.operation)
            if member is not None:
                groups.setdefault(_group_key(member), []).append(member)
        for members in groups.values():
            if len(members) > 1 and _contiguous(members) and _one_block([m.op.operands[1].owner.operation for m in members]):
                _merge(members)
                merged += 1
    return merged


def _blocks(root) -> list:
    """Every block that may hold contractions (not the bodies of linalg ops: merging erases some of those)."""
    found = []

    def visit(op) -> None:
        for region in op.regions:
            for block in region.blocks:
                found.append(block)
                for child in block.operations:
                    if not child.operation.name.startswith("linalg."):
                        visit(child.operation)

    visit(root)
    return found


def _member(op) -> _Member | None:
    """The facts of a plain f32 contraction C[m, n] = fill + sum_k A[m, k] B whose B is a static 2-D slice."""
    from mlir import ir

    from hcc.backends.cpu import schedule, ukernels

    if op.name != "linalg.generic" or len(op.results) != 1 or len(op.operands) != 3:
        return None
    roles = ukernels.gemm_roles(schedule.analyze(op, -1))
    if roles is None or roles.batch or roles.a != 0 or roles.b != 1:
        return None
    f32 = ir.F32Type.get()
    if not all(ir.RankedTensorType(v.type).element_type == f32 for v in (*op.operands, op.results[0])):
        return None
    out_type = ir.RankedTensorType(op.results[0].type)
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if out_type.rank != 2 or not out_type.has_static_shape or [e.position for e in maps[2].results] != [roles.m, roles.n]:
        return None
    b, init = op.operands[1], op.operands[2]
    if isinstance(init, ir.BlockArgument) or init.owner.name != "linalg.fill":
        return None
    if isinstance(b, ir.BlockArgument) or b.owner.name != "tensor.extract_slice" or len(b.owner.operands) != 1:
        return None  # B a slice at static offsets, sizes and strides
    b_dims = [e.position for e in maps[1].results]
    source = b.owner.operands[0]
    if len(b_dims) != 2 or roles.n not in b_dims or ir.RankedTensorType(source.type).rank != 2 \
            or ir.RankedTensorType(b.type).rank != 2:
        return None
    extract = b.owner
    if any(s != 1 for s in ir.DenseI64ArrayAttr(extract.attributes["static_strides"])):
        return None
    return _Member(op, source, list(ir.DenseI64ArrayAttr(extract.attributes["static_offsets"])),
                   list(ir.DenseI64ArrayAttr(extract.attributes["static_sizes"])), b_dims.index(roles.n))


def _group_key(m: _Member) -> tuple:
    """Members of one group: the same A, init value, source, maps, iterators and location (one ONNX node: its
    precision and profile entry are the node's); slices equal but along `axis`."""
    from hcc.backends.cpu.lowering import node_name

    op, other = m.op, 1 - m.axis
    return (op.operands[0], op.operands[2].owner.operands[0], m.source, str(op.attributes["indexing_maps"]),
            str(op.attributes["iterator_types"]), node_name(op), m.axis, m.offsets[other], m.sizes[other])


def _contiguous(members: list[_Member]) -> bool:
    """The slices, ordered by offset along the axis, tile one range without gaps or overlaps."""
    ordered = sorted(members, key=lambda m: m.offsets[m.axis])
    return all(a.offsets[a.axis] + a.sizes[a.axis] == b.offsets[b.axis] for a, b in zip(ordered, ordered[1:]))


def _one_block(ops: list) -> bool:
    return all(op.block == ops[0].block for op in ops)


def _earliest(ops: list):
    """The first of `ops`, all in one block."""
    first = ops[0]
    for op in ops[1:]:
        if op.is_before_in_block(first):
            first = op
    return first


def _merge(members: list[_Member]) -> None:
    from mlir import ir
    from mlir.dialects import linalg, tensor

    from hcc.backends.cpu import ukernels
    from hcc.backends.cpu.hoist_projections import contraction_like

    ordered = sorted(members, key=lambda m: m.offsets[m.axis])
    template, axis = ordered[0], ordered[0].axis
    low = template.offsets[axis]
    offsets, sizes = list(template.offsets), list(template.sizes)
    offsets[axis], sizes[axis] = low, sum(m.sizes[axis] for m in ordered)
    source_type = ir.RankedTensorType(template.source.type)
    f32 = source_type.element_type
    slices = [m.op.operands[1].owner.operation for m in members]
    earliest_slice = _earliest(slices)
    with ir.InsertionPoint(earliest_slice), earliest_slice.location:  # beside the members' slices (before a time loop)
        whole_b = template.source if offsets == [0, 0] and sizes == list(source_type.shape) else tensor.ExtractSliceOp(
            ir.RankedTensorType.get(sizes, f32), template.source, [], [], [], ir.DenseI64ArrayAttr.get(offsets),
            ir.DenseI64ArrayAttr.get(sizes), ir.DenseI64ArrayAttr.get([1, 1])).result
    first = _earliest([m.op for m in members])
    rows = ir.RankedTensorType(first.results[0].type).shape[0]
    init = first.operands[2]
    columns = []
    fill = init.owner.operation
    with ir.InsertionPoint(fill), fill.location:  # beside the members' init (before a time loop)
        merged_type = ir.RankedTensorType.get([rows, sizes[axis]], f32)
        filled = linalg.fill(fill.operands[0], outs=[tensor.EmptyOp(merged_type.shape, f32).result])
    with ir.InsertionPoint(first), first.location:
        product = contraction_like(first, merged_type, [first.operands[0], whole_b], filled)
        product.operation.attributes[ukernels.MERGED] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), len(members))
        if all(ukernels.HOISTED in m.op.attributes for m in members):
            product.operation.attributes[ukernels.HOISTED] = ir.UnitAttr.get()
        for m in members:
            shape = list(ir.RankedTensorType(m.op.results[0].type).shape)
            columns.append(tensor.ExtractSliceOp(ir.RankedTensorType.get(shape, f32), product.result, [], [], [],
                                                 ir.DenseI64ArrayAttr.get([0, m.offsets[axis] - low]), ir.DenseI64ArrayAttr.get(shape),
                                                 ir.DenseI64ArrayAttr.get([1, 1])).result)
    for m, column in zip(members, columns):
        m.op.results[0].replace_all_uses_with(column)
        m.op.erase()
