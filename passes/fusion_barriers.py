"""Keep elementwise producers out of contractions on the CPU: fusion there recomputes them once per output column.

`linalg-fuse-elementwise-ops` fuses any single-use elementwise producer into its consumer. When the consumer is a
contraction and the fused operand's indexing map omits a parallel loop (A[m, k] in C[m, n] += A[m, k] * B[k, n]
omits n), the producer's body is re-evaluated for every value of the omitted loop: a LayerNorm fused into the
following MatMul normalizes each activation N times, and the contraction is no longer a plain multiply-add that the
packed GEMM schedule (or a micro-kernel) can take. Measured: a BERT-style layer at seq 128 ran 113x slower than
onnxruntime with its LayerNorm and softmax division fused into matmuls.

A `linalg.copy` between such a producer and the contraction is a barrier the fusion pass does not cross (it fuses
generic into generic only); the CPU backend later folds the copy away (lowering.fold_copies_into_consumers), so
it costs nothing at run time. The GPU backend tiles contractions with fused producers on purpose and is left as is.

The same holds for an elementwise consumer that broadcasts an input (its map omits a parallel loop longer than 1)
when the producer is costly (a transcendental or a division in its body): a YOLO's SiLU fused into the nearest 2x
upsampling after it ran four times per value (0.23 ms where onnxruntime takes 0.02), a LayerNorm's rsqrt(var + eps)
fused into its normalization ran once per element instead of once per row. With the barrier the producer runs once
per value (and a convolution before a SiLU takes it into its write-out); a cheap producer (a bias add, a scale)
still fuses, as a separate pass over its output would cost more than recomputing it.
"""
from __future__ import annotations


def _omitted_parallel_loops(consumer, operand_index: int) -> list[int]:
    """The parallel loops of `consumer` that input `operand_index`'s indexing map does not use."""
    from torch_mlir import ir

    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(consumer.attributes["indexing_maps"])]
    iterators = [str(a) for a in ir.ArrayAttr(consumer.attributes["iterator_types"])]
    used = {e.position for e in maps[operand_index].results if isinstance(e, ir.AffineDimExpr)}
    return [d for d, it in enumerate(iterators) if "parallel" in it and d not in used]


def _omits_a_parallel_loop(consumer, operand_index: int) -> bool:
    return bool(_omitted_parallel_loops(consumer, operand_index))


def _is_elementwise_generic(op) -> bool:
    from torch_mlir import ir

    return op.name == "linalg.generic" and all("parallel" in str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"]))


# Named ops that read each input element many times (every input of these would be recomputed if fused into).
_NAMED_CONTRACTIONS = ("linalg.matmul", "linalg.batch_matmul", "linalg.matvec", "linalg.vecmat", "linalg.batch_matvec",
                       "linalg.batch_vecmat", "linalg.conv_", "linalg.depthwise_conv_", "linalg.contract", "linalg.batch_reduce_matmul")


def _elementwise_producer(value):
    """The elementwise generic whose result `value` is, seen through reshapes (the fusion pass moves those too), or
    None."""
    from torch_mlir import ir

    for _ in range(4):
        owner = value.owner
        if isinstance(owner, ir.Block):
            return None
        if owner.name in ("tensor.collapse_shape", "tensor.expand_shape"):
            value = owner.operands[0]
            continue
        return owner if _is_elementwise_generic(owner) else None
    return None


def _fed_by_elementwise(value) -> bool:
    return _elementwise_producer(value) is not None


# Body ops that make an elementwise producer worth a barrier in front of a broadcasting elementwise consumer.
_COSTLY = ("arith.divf", "math.")


def _costly_elementwise(value, depth: int = 3) -> bool:
    """Is `value` (seen through reshapes) an elementwise generic's result that computes a transcendental or a division,
    itself or in the elementwise producers the fusion pass would fold into it (torch's SiLU: a Sigmoid generic, then
    a Mul), up to `depth` producers up?"""
    producer = _elementwise_producer(value)
    if producer is None:
        return False
    if any(o.operation.name.startswith(_COSTLY) for o in producer.regions[0].blocks[0].operations):
        return True
    inputs = list(producer.operands)[: len(producer.operands) - len(producer.results)]
    return depth > 0 and any(_costly_elementwise(v, depth - 1) for v in inputs)


def _broadcasts(op, operand_index: int) -> bool:
    """Does the all-parallel generic `op` read input `operand_index` through a map that omits a loop longer than 1?"""
    from torch_mlir import ir

    try:
        shape = ir.RankedTensorType(op.results[0].type).shape
    except ValueError:  # not a ranked tensor
        return False
    output_map = ir.AffineMapAttr(ir.ArrayAttr(op.attributes["indexing_maps"])[len(op.operands) - 1]).value
    size = {e.position: n for e, n in zip(output_map.results, shape) if isinstance(e, ir.AffineDimExpr)}
    return any(size.get(d, 1) > 1 for d in _omitted_parallel_loops(op, operand_index))


def _recomputing_inputs(op) -> list[int]:
    """Indices of the inputs of `op` that a fused producer would be re-evaluated for: every input of a contraction
    that omits a parallel loop, and the broadcast inputs of an elementwise generic whose producer is costly."""
    from torch_mlir import ir

    name = op.operation.name
    if name.startswith(_NAMED_CONTRACTIONS):
        return list(range(len(op.operands) - len(op.results)))
    if name != "linalg.generic":
        return []
    iterators = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    inputs = range(len(op.operands) - len(op.results))
    if not any("reduction" in it for it in iterators):
        if len(op.results) != 1:
            return []
        return [i for i in inputs if _broadcasts(op, i) and _costly_elementwise(op.operands[i])]
    return [i for i in inputs if _omits_a_parallel_loop(op, i)]


def insert_contraction_barriers(module) -> int:
    """Put a linalg.copy between each elementwise generic and a contraction operand that would recompute it.
    Returns how many barriers were inserted."""
    from torch_mlir import ir
    from torch_mlir.dialects import linalg, tensor

    inserted = 0
    for func_op in module.body.operations:
        if func_op.operation.name != "func.func":
            continue
        for op in list(func_op.regions[0].blocks[0].operations):
            for index in _recomputing_inputs(op):
                value = op.operands[index]
                if not _fed_by_elementwise(value):
                    continue
                with ir.InsertionPoint(op), op.location:
                    ranked = ir.RankedTensorType(value.type)
                    empty = tensor.empty(list(ranked.shape), ranked.element_type)
                    copied = linalg.copy(value, outs=[empty])
                op.operands[index] = copied
                inserted += 1
    return inserted
