"""CumSum as a log-step scan of Slice, Concat and Add: torch-mlir lowers onnx.CumSum to a TMTensor scan that the
linalg pipeline cannot legalize, so the op is written here in ops every backend compiles.

Hillis-Steele scan along the axis (length n): for k = 1, 2, 4, ... < n, y += y shifted by k (zeros shifted in).
Integer sums are exact (they wrap as the op's own loop would); float sums are added in another order than a
sequential loop, which stays within a few ulps of the sum of |x| (ceil(log2 n) additions per element instead of
up to n). `exclusive` shifts x by one first; `reverse` shifts the other way. The axis is normally a constant; when
it is a run-time input (the node suite's cases) the scan is built for every axis and the result picked with Where
(all candidates have the input's shape).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.frontend.node_rewrite import CountedNodes


class _Builder(CountedNodes):
    """Nodes and constants for one CumSum, named after it."""

    def __init__(self, node: onnx.NodeProto, elem_type: int, shape: list[int]):
        super().__init__(node)
        self.shape = shape
        self.dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))

    def shift(self, y: str, axis: int, k: int, forward: bool) -> str:
        """y moved k places along `axis` (towards higher indices when `forward`), zeros shifted in."""
        n = self.shape[axis]
        zeros_shape = list(self.shape)
        zeros_shape[axis] = k
        zeros = self.const(np.zeros(zeros_shape, self.dtype), "zeros")
        start, end = (0, n - k) if forward else (k, n)
        kept = self.op("Slice", [y, self.const(np.array([start], np.int64), "start"),
                                 self.const(np.array([end], np.int64), "end"),
                                 self.const(np.array([axis], np.int64), "axis")], "kept")
        return self.op("Concat", [zeros, kept] if forward else [kept, zeros], "shifted", axis=axis)

    def scan(self, x: str, axis: int, exclusive: bool, reverse: bool) -> str:
        n, forward = self.shape[axis], not reverse
        if n == 0:
            return x
        y = self.shift(x, axis, 1, forward) if exclusive else x
        k = 1
        while k < n:
            y = self.op("Add", [y, self.shift(y, axis, k, forward)], "sum")
            k *= 2
        return y


def cumsum_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int],
                 axis: int | None) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing `node` (CumSum of a tensor of `shape`); `axis` is None when the axis is
    a run-time input."""
    attrs = {a.name: a.i for a in node.attribute}
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))
    b = _Builder(node, elem_type, shape)
    rank, x, out = len(shape), node.input[0], node.output[0]
    if axis is not None:
        result = b.scan(x, axis % rank, exclusive, reverse)
    else:
        result = b.scan(x, 0, exclusive, reverse)
        wanted = b.op("Cast", [node.input[1]], "axis", to=TensorProto.INT64) if rank > 1 else ""
        for a in range(1, rank):
            hit = b.op("Or", [b.op("Equal", [wanted, b.const(np.array(a, np.int64), "a")], "is_a"),
                              b.op("Equal", [wanted, b.const(np.array(a - rank, np.int64), "a_neg")], "is_a_neg")], "hit")
            result = b.op("Where", [hit, b.scan(x, a, exclusive, reverse), result], "pick")
    if b.nodes and b.nodes[-1].output[0] == result:
        b.nodes[-1].output[0] = out
        b.nodes[-1].name = node.name
    else:
        b.nodes.append(helper.make_node("Identity", [result], [out], name=node.name))
    return b.nodes, b.inits
