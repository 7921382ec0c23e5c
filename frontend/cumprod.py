"""CumProd (opset 26) as a log-step scan of Slice, Pad and Mul, written before the opset conversion: hcc compiles
opset 22 semantics, and onnx's version converter refuses a model holding an op that opset 22 lacks.

Hillis-Steele scan along the axis (length n): for k = 1, 2, 4, ... < n, y *= y shifted by k (ones shifted in, with
Pad's constant value, so only the axis length must be static). Integer products are exact (they wrap as the
reference's loop does); float products are multiplied in another order than a sequential loop (ceil(log2 n)
roundings per element instead of up to n). `exclusive` shifts x by one first; `reverse` shifts the other way. A
run-time axis (the node suite's cases) gets a scan per axis, picked with Where. The shapes come from onnx's shape
inference of the model as written, before --input-shape applies: an axis length that is not static there is refused.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes


class _Builder(CountedNodes):
    """Nodes and constants for one CumProd, named after it."""

    def __init__(self, node: onnx.NodeProto, dtype: np.dtype, rank: int):
        super().__init__(node)
        self.dtype, self.rank = dtype, rank

    def i64(self, value, hint: str) -> str:
        return self.const(np.asarray(value, np.int64), hint)

    def shift(self, y: str, axis: int, n: int, k: int, forward: bool) -> str:
        """y moved k places along `axis` (towards higher indices when `forward`), ones shifted in."""
        start, end = (0, n - k) if forward else (k, n)
        kept = self.op("Slice", [y, self.i64([start], "start"), self.i64([end], "end"), self.i64([axis], "axis")], "kept")
        pads = [0] * (2 * self.rank)
        pads[axis if forward else self.rank + axis] = k
        return self.op("Pad", [kept, self.i64(pads, "pads"), self.const(np.ones((), self.dtype), "one")], "shifted")

    def scan(self, x: str, axis: int, n: int, exclusive: bool, reverse: bool) -> str:
        forward = not reverse
        if n <= 1 and not exclusive:
            return x
        y = self.shift(x, axis, n, 1, forward) if exclusive else x
        k = 1
        while k < n:
            y = self.op("Mul", [y, self.shift(y, axis, n, k, forward)], "product")
            k *= 2
        return y


def _constant_int(name: str, constants: dict[str, np.ndarray]) -> int | None:
    value = constants.get(name)
    return int(value.reshape(-1)[0]) if value is not None and value.size == 1 and value.dtype.kind in "iu" else None


def cumprod_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int | None], axis: int | None,
                  path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the CumProd `node` (input dims, None where not static); `axis` is None
    when it is a run-time input."""
    where = f"{path}: node '{node.name}' (CumProd)"
    rank = len(shape)
    if rank == 0:
        raise HccError(f"{where}: its input must have rank >= 1")
    if axis is not None and not -rank <= axis < rank:
        raise HccError(f"{where}: axis {axis} is outside -{rank}..{rank - 1}")
    axes = [axis % rank] if axis is not None else list(range(rank))
    unknown = [a for a in axes if shape[a] is None]
    if unknown:
        raise HccError(f"{where}: the length of axis {unknown[0]} is not static in the model, and the scan needs it "
                       "(CumProd is newer than opset 22 and is rewritten before --input-shape applies)")
    attrs = {a.name: a.i for a in node.attribute}
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))
    b = _Builder(node, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)), rank)
    x, out = node.input[0], node.output[0]
    result = b.scan(x, axes[0], shape[axes[0]], exclusive, reverse)
    if axis is None and rank > 1:
        wanted = b.op("Cast", [node.input[1]], "axis", to=TensorProto.INT64)
        for a in axes[1:]:
            hit = b.op("Or", [b.op("Equal", [wanted, b.i64(a, "a")], "is_a"),
                              b.op("Equal", [wanted, b.i64(a - rank, "a_neg")], "is_a_neg")], "hit")
            result = b.op("Where", [hit, b.scan(x, a, shape[a], exclusive, reverse), result], "pick")
    if b.nodes and b.nodes[-1].output[0] == result:
        b.nodes[-1].output[0], b.nodes[-1].name = out, node.name
    else:
        b.nodes.append(helper.make_node("Identity", [result], [out], name=node.name))
    return b.nodes, b.inits


def rewrite_cumprod(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph CumProd replaced by its scan (the model itself when it has none)."""
    def rewrite(node: onnx.NodeProto, facts: GraphFacts, path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
        shape = facts.shapes.get(node.input[0])
        if shape is None:
            raise HccError(f"{path}: node '{node.name}' (CumProd): the rank of its input is not known")
        return cumprod_nodes(node, facts.types[node.input[0]], shape, _constant_int(node.input[1], facts.constants), path)

    return rewrite_op(model, path, "CumProd", rewrite)
