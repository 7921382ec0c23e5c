"""fp16 subgraphs (`--gpu-precision fp16`): fp16 storage and arithmetic, fp32 accumulation, fp32 at the boundary.

A rewrite of the linalg-on-tensors function, before fusion and bufferization:
  * boundary: the function keeps its fp32 signature. Each f32 tensor argument is truncated to f16 on entry
    (`arith.truncf` on the tensor, later an elementwise kernel that fusion merges into its first consumer where it
    can), each result is extended back to f32 before the return. So the runtime and the neighbouring subgraphs see
    fp32 tensors, exactly like an fp32 GPU subgraph; weights are converted on every run (a cost, documented).
  * every other f32 value (tensors, scalars, constants, elementwise bodies) becomes f16;
  * accumulating ops keep fp32 accumulators: named contractions/convolutions/poolings (matmul, batch_matmul,
    conv_*, pooling_*, ...) take f16 operands and an f32 init (a fill rebuilt in f32, else an extf of the init),
    and their result is truncated to f16 after the op; a linalg.generic with reduction iterators (softmax and
    layer-norm sums, flattened matmuls) keeps its body in f32: its f16 inputs are extended inside the body, values it
    captures from outside are extended before it, and its f32 result is truncated after it.
So products are formed from f16 operands and summed in fp32 (the usual mixed-precision recipe), and the rounding to
f16 happens once per tensor. Expected error versus fp32: about 1e-3 relative per op (f16 has an 11-bit significand).
"""
from __future__ import annotations

import numpy as np

from hcc.errors import HccError

ACCUMULATING_NAMED = (
    "linalg.matmul", "linalg.batch_matmul", "linalg.batch_reduce_matmul", "linalg.matvec", "linalg.vecmat",
    "linalg.batch_matvec", "linalg.batch_vecmat", "linalg.dot", "linalg.conv_", "linalg.depthwise_conv_",
    "linalg.pooling_", "linalg.contract", "linalg.mmt4d", "linalg.batch_mmt4d",
)
EXPLICIT_REGION_LINALG = ("linalg.generic", "linalg.map")


def _is_named_linalg(name: str) -> bool:
    return name.startswith("linalg.") and name not in EXPLICIT_REGION_LINALG and name != "linalg.yield" and name != "linalg.index"


def _is_reduction_generic(op) -> bool:
    return op.name == "linalg.generic" and any("reduction" in str(a) for a in op.attributes["iterator_types"])


def rewrite_fp16(module, entry: str) -> None:
    """In place; `module` is an xtc `mlir` Module holding func.func @entry (must be called inside its Context)."""
    block = _entry_function(module, entry).regions[0].blocks[0]
    body_ops = list(block.operations)
    boundary = _truncate_arguments(block, body_ops[0])  # 1. boundary in
    special: list = []
    for op in body_ops:  # 2. every f32 value becomes f16
        _lower_op(op.operation, boundary, special)
    for op in special:  # 3. accumulating ops
        _accumulate_in_f32(op)
    _extend_results(block)  # 4. boundary out
    _drop_trivial_casts(block)  # 5. drop casts made trivial (f16 -> f16)
    _reparse(module)  # named linalg ops rebuild their implicit regions


def _retyped(t, old, new):
    """`t` with float type `new` for `old` (a scalar or a ranked tensor's element type); any other type unchanged."""
    from mlir import ir

    if isinstance(t, old):
        return new.get()
    if isinstance(t, ir.RankedTensorType) and isinstance(t.element_type, old):
        return ir.RankedTensorType.get(list(t.shape), new.get(), t.encoding)
    return t


def _to_f16(t):
    """`t` with f16 for f32; any other type unchanged."""
    from mlir import ir

    return _retyped(t, ir.F32Type, ir.F16Type)


def _to_f32(t):
    """`t` with f32 for f16 (the inverse of `_to_f16`); any other type unchanged."""
    from mlir import ir

    return _retyped(t, ir.F16Type, ir.F32Type)


def _is_f16_tensor(t) -> bool:
    """Whether `t` is a ranked tensor of f16 (the values step 3 widens)."""
    from mlir import ir

    return isinstance(t, ir.RankedTensorType) and isinstance(t.element_type, ir.F16Type)


def _entry_function(module, entry: str):
    """func.func @entry; its absence is an internal error (the lowering named it)."""
    from mlir import ir

    func = next((op for op in module.body.operations if op.operation.name == "func.func"
                 and ir.StringAttr(op.attributes["sym_name"]).value == entry), None)
    if func is None:
        raise HccError(f"internal: fp16 rewrite: function @{entry} not found")
    return func


def _truncate_arguments(block, first) -> set:
    """Step 1, boundary in: truncate each f32 tensor argument before `first`, so the signature stays fp32 while the
    body reads f16. -> the truncations, which step 2 must leave alone."""
    from mlir import ir
    from mlir.dialects import arith

    boundary: set = set()
    for arg in block.arguments:
        if _to_f16(arg.type) != arg.type:
            with ir.InsertionPoint(first), ir.Location.unknown():
                trunc = arith.TruncFOp(_to_f16(arg.type), arg)
            arg.replace_all_uses_except(trunc.result, trunc.operation)
            boundary.add(trunc.operation)
    return boundary


def _convert_constant(op) -> None:
    """An f32 constant (scalar, splat or dense) rewritten as the f16 constant of the same values."""
    from mlir import ir

    f16 = ir.F16Type.get()
    attr = op.attributes["value"]
    result_type = op.result.type
    new_type = _to_f16(result_type)
    if new_type == result_type:
        return
    if isinstance(attr, ir.FloatAttr):
        op.attributes["value"] = ir.FloatAttr.get(f16, float(attr.value))
    elif isinstance(attr, ir.DenseElementsAttr) or isinstance(attr, (ir.DenseFPElementsAttr,)):
        dense = ir.DenseElementsAttr(attr)
        if dense.is_splat:
            value = float(ir.FloatAttr(dense.get_splat_value()).value)
            op.attributes["value"] = ir.DenseElementsAttr.get_splat(new_type, ir.FloatAttr.get(f16, value))
        else:
            data = np.array(ir.DenseFPElementsAttr(attr), dtype=np.float32).astype(np.float16)
            op.attributes["value"] = ir.DenseElementsAttr.get(data, type=new_type)
    else:
        raise HccError(f"fp16 rewrite: unsupported f32 constant {str(attr)[:80]}")
    op.result.set_type(new_type)


def _lower_op(op, boundary: set, special: list) -> None:
    """Step 2: `op`'s f32 results (and those of the ops in its regions) become f16. Accumulating ops are appended to
    `special` for step 3 and their regions left alone (reduction generics keep an f32 body; named ops rebuild theirs)."""
    name = op.name
    if op in boundary:
        return
    if name == "arith.bitcast":
        raise HccError("fp16 rewrite: a bitcast of f32 values cannot be lowered to fp16; compile this subgraph with fp32")
    if name == "linalg.reduce":
        raise HccError("fp16 rewrite: linalg.reduce is not supported; compile this subgraph with fp32")
    if name == "arith.constant":
        _convert_constant(op)
        return
    for result in op.results:
        result.set_type(_to_f16(result.type))
    if _is_reduction_generic(op) or name.startswith(ACCUMULATING_NAMED):
        special.append(op)
        return
    if _is_named_linalg(name):
        return
    for region in op.regions:
        for blk in region.blocks:
            for arg in blk.arguments:
                arg.set_type(_to_f16(arg.type))
            for inner in blk.operations:
                _lower_op(inner, boundary, special)


def _accumulate_in_f32(op) -> None:
    """Step 3: an accumulating op gets f32 inits and results (truncated to f16 after it), and a reduction generic an
    f32 body, so sums are accumulated in fp32."""
    from mlir import ir

    n_inputs = len(op.opview.inputs)
    _widen_inits(op, n_inputs)
    _widen_results(op)
    if op.name == "linalg.generic":
        _extend_body_inputs(op, n_inputs)
        _extend_gathers(op, ir.F32Type.get())
        _extend_captured(op, ir.F32Type.get())


def _widen_inits(op, n_inputs: int) -> None:
    """Each f16 init of `op` replaced by an f32 one: a fill of a constant is rebuilt as an f32 fill (no rounding of
    the start value), any other init is extended."""
    from mlir import ir
    from mlir.dialects import arith, linalg, tensor

    f32 = ir.F32Type.get()
    for i, init in enumerate(list(op.opview.outputs)):
        if not _is_f16_tensor(init.type):
            continue
        wide = _to_f32(init.type)
        producer = _defining_op(init)
        scalar = _defining_op(producer.operands[0]) if producer is not None and producer.name == "linalg.fill" else None
        with ir.InsertionPoint(op), op.location:
            if scalar is not None and scalar.name == "arith.constant":
                value = float(ir.FloatAttr(scalar.attributes["value"]).value)
                cst = arith.ConstantOp(f32, value)
                empty = tensor.EmptyOp(list(wide.shape), f32)
                new_init = linalg.fill(cst.result, outs=[empty.result])
            else:
                new_init = arith.ExtFOp(wide, init).result
        op.operands[n_inputs + i] = new_init


def _widen_results(op) -> None:
    """Each f16 tensor result of `op` becomes f32, truncated to f16 right after `op` for its users (one rounding)."""
    from mlir import ir
    from mlir.dialects import arith

    for result in op.results:
        if not _is_f16_tensor(result.type):
            continue
        narrow = result.type
        result.set_type(_to_f32(narrow))
        with ir.InsertionPoint(op), op.location:
            trunc = arith.TruncFOp(narrow, result)
        trunc.operation.move_after(op)
        result.replace_all_uses_except(trunc.result, trunc.operation)


def _extend_body_inputs(op, n_inputs: int) -> None:
    """A reduction generic's body stays f32: the block arguments of its f16 inputs become f16 and are extended at
    the top of the body."""
    from mlir import ir
    from mlir.dialects import arith

    f16, f32 = ir.F16Type.get(), ir.F32Type.get()
    body = op.regions[0].blocks[0]
    first_inner = list(body.operations)[0]
    for i, arg in enumerate(list(body.arguments)[:n_inputs]):
        operand_type = op.operands[i].type
        element = operand_type.element_type if isinstance(operand_type, ir.ShapedType) else operand_type
        if isinstance(element, ir.F16Type) and isinstance(arg.type, ir.F32Type):
            arg.set_type(f16)
            with ir.InsertionPoint(first_inner), op.location:
                ext = arith.ExtFOp(f32, arg)
            arg.replace_all_uses_except(ext.result, ext.operation)


def _extend_results(block) -> None:
    """Step 4, boundary out: the returned f16 values are extended back to f32 (the signature stays fp32)."""
    from mlir import ir
    from mlir.dialects import arith

    ret = list(block.operations)[-1]
    for i, value in enumerate(list(ret.operands)):
        if _to_f32(value.type) != value.type:
            with ir.InsertionPoint(ret), ret.location:
                ext = arith.ExtFOp(_to_f32(value.type), value)
            ret.operands[i] = ext.result


def _drop_trivial_casts(block) -> None:
    """Step 5: extf/truncf made f16 -> f16 by the rewrite (casts of values that were f32 before) are removed."""
    for op in _all_ops(block):
        if op.name in ("arith.extf", "arith.truncf") and op.operands[0].type == op.results[0].type:
            op.results[0].replace_all_uses_with(op.operands[0])
            op.erase()


def _reparse(module) -> None:
    """Print and parse `module` again: named linalg ops rebuild their implicit regions (with the right casts) for
    their new operand types. Then verify: invalid IR here is a bug of this rewrite."""
    from mlir import ir

    text = module.operation.get_asm(large_elements_limit=None, enable_debug_info=True, assume_verified=True)
    reparsed = ir.Module.parse(text)
    body = module.body
    for op in list(body.operations):
        op.operation.erase()
    for op in reparsed.body.operations:
        body.append(op.operation.clone())
    try:
        module.operation.verify()
    except ir.MLIRError as exc:
        raise HccError(f"internal: fp16 rewrite produced invalid IR: {exc}") from None
def _defining_op(value):
    """The Operation defining `value`, or None for a block argument."""
    from mlir import ir

    owner = value.owner
    if isinstance(owner, ir.Block):
        return None
    return owner.operation if hasattr(owner, "operation") else owner


def _all_ops(block) -> list:
    out = []
    for op in block.operations:
        out.append(op.operation)
        for region in op.regions:
            for blk in region.blocks:
                out.extend(_all_ops(blk))
    return out


def _extend_gathers(op, f32) -> None:
    """An element a `tensor.extract` inside a reduction generic's (f32) body reads from a tensor that became f16 is
    f16 (its result type still says f32 until the module is printed and parsed again): say so, and extend it to f32
    right after the read. (A BERT pooler's GEMV read its activation this way; the reparse failed on a type clash.)"""
    from mlir import ir
    from mlir.dialects import arith

    f16 = ir.F16Type.get()
    for inner in _all_ops(op.regions[0].blocks[0]):
        if inner.name != "tensor.extract" or not isinstance(inner.results[0].type, ir.F32Type):
            continue
        if not isinstance(ir.RankedTensorType(inner.operands[0].type).element_type, ir.F16Type):
            continue
        value = inner.results[0]
        value.set_type(f16)
        following = list(inner.operation.block.operations)
        after = following[following.index(inner.operation) + 1]
        with ir.InsertionPoint(after), op.location:
            ext = arith.ExtFOp(f32, value)
        value.replace_all_uses_except(ext.result, ext.operation)


def _extend_captured(op, f32) -> None:
    """Values of f16 type defined outside a reduction generic's (f32) body and used inside it: extend before it."""
    from mlir import ir
    from mlir.dialects import arith

    body = op.regions[0].blocks[0]
    inside = set()
    for inner in _all_ops(body):
        inside.add(inner)
    replaced: dict = {}
    for inner in _all_ops(body):
        for index, operand in enumerate(list(inner.operands)):
            owner = operand.owner
            if not isinstance(owner, ir.Block) and hasattr(owner, "operation"):
                owner = owner.operation
            defined_inside = (isinstance(owner, ir.Block) and _block_in(owner, op)) or (not isinstance(owner, ir.Block) and owner in inside)
            if defined_inside or not isinstance(operand.type, ir.F16Type):
                continue
            if inner.name == "arith.extf":
                continue
            key = operand
            if key not in replaced:
                with ir.InsertionPoint(op), op.location:
                    replaced[key] = arith.ExtFOp(f32, operand).result
            inner.operands[index] = replaced[key]


def _block_in(block, op) -> bool:
    for region in op.regions:
        for blk in region.blocks:
            if blk == block:
                return True
    return False
