"""TensorScatter (opset 24, a KV-cache update) as a gather, written before the opset conversion (opset 22 lacks it).

present[b, ..., p, ...] = update[b, ..., p - w[b], ...] where 0 <= p - w[b] < seq_len (circular mode: p - w[b]
taken mod max_seq), past_cache[b, ..., p, ...] elsewhere; w = write_indices (zeros when absent), p runs over the
cache's axis (`axis`, default -2; axis 0 is the batch). One GatherElements of the update along the axis with the
clamped offsets, broadcast to the cache's shape, and one Where: the values are moved, never computed, so the result
is exact. The reference fails on a linear write past the cache's end; hcc drops what falls outside. The cache and
update lengths along the axis must be static.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes


def _i64(b: CountedNodes, value) -> str:
    return b.const(np.asarray(value, np.int64), "c")


def tensor_scatter_nodes(node: onnx.NodeProto, facts: GraphFacts,
                         path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    where = f"{path}: node '{node.name}' (TensorScatter)"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = attrs.get("mode", b"linear")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("linear", "circular"):
        raise HccError(f"{where}: mode '{mode}' (the spec defines linear and circular)")
    if len(node.input) < 2 or not node.input[0] or not node.input[1]:
        raise HccError(f"{where}: it needs the inputs past_cache and update")
    cache, update = node.input[0], node.input[1]
    indices = node.input[2] if len(node.input) > 2 else ""
    shape, update_shape = facts.shapes.get(cache), facts.shapes.get(update)
    if shape is None or update_shape is None or len(shape) != len(update_shape):
        raise HccError(f"{where}: the ranks of past_cache and update must be known and equal")
    rank = len(shape)
    axis = attrs.get("axis", -2)
    if not -rank <= axis < rank or axis % rank == 0:
        raise HccError(f"{where}: axis {axis} is not a sequence axis of a rank-{rank} cache (axis 0 is the batch)")
    axis %= rank
    length, seq = shape[axis], update_shape[axis]
    if length is None or seq is None:
        raise HccError(f"{where}: the cache and update lengths along axis {axis} must be static (they are "
                       f"{length} and {seq}); TensorScatter is newer than opset 22 and is rewritten before "
                       "--input-shape applies")
    if seq > length:
        raise HccError(f"{where}: an update of {seq} positions for a cache of {length}")
    b = CountedNodes(node)
    position = np.arange(length, dtype=np.int64).reshape([length if d == axis else 1 for d in range(rank)])
    offset = _i64(b, position)
    if indices:
        w = b.op("Cast", [indices], "write_indices", to=TensorProto.INT64)
        w = b.op("Reshape", [w, _i64(b, [-1] + [1] * (rank - 1))], "per_batch")
        offset = b.op("Sub", [offset, w], "offset")  # [batch, 1.., length, 1..]
        if mode == "circular":
            offset = b.op("Mod", [offset, _i64(b, length)], "wrapped")  # Mod takes the divisor's sign: 0..length-1
    valid = b.op("And", [b.op("GreaterOrEqual", [offset, _i64(b, 0)], "from_start"),
                         b.op("Less", [offset, _i64(b, seq)], "before_end")], "written")
    clamped = b.op("Min", [b.op("Max", [offset, _i64(b, 0)], "low"), _i64(b, seq - 1)], "clamped")
    cache_shape = b.op("Shape", [cache], "cache_shape")
    target = b.op("Concat", [b.op("Slice", [cache_shape, _i64(b, [0]), _i64(b, [axis])], "before"), _i64(b, [length]),
                             b.op("Slice", [b.op("Shape", [update], "update_shape"), _i64(b, [axis + 1]),
                                            _i64(b, [rank])], "after")], "index_shape", axis=0)
    # the update's own dims around the axis (equal to the cache's), so GatherElements reads it in bounds
    gathered = b.op("GatherElements", [update, b.op("Expand", [clamped, target], "index")], "moved", axis=axis)
    b.op("Where", [valid, gathered, cache], "present", output=node.output[0])
    b.nodes[-1].name = node.name
    return b.nodes, b.inits


def rewrite_tensor_scatter(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph TensorScatter replaced (the model itself when it has none)."""
    return rewrite_op(model, path, "TensorScatter", tensor_scatter_nodes)
