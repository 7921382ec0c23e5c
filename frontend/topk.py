"""TopK as comparisons and sums: torch-mlir lowers onnx.TopK to a TMTensor sort that the linalg pipeline cannot
legalize, so the op is written here in ops every backend compiles.

With the axis moved last (length n), every element's rank is the number of elements that come before it in the
order TopK defines: larger (smaller for largest=0) values first, equal values by lower index. NaN counts as larger
than any number (numpy's and onnx.reference's order; onnxruntime leaves it unspecified), so the ranks are always a
permutation. Output r is the element whose rank is r: its value picked with Where and summed with zeros (exact),
its index likewise. The work and memory are n*n per row: refused above MAX_PAIRS comparisons. k must be a constant
(it decides the output shape).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

MAX_PAIRS = 1 << 24  # rows * n * n comparisons
FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}


class _Builder(CountedNodes):
    def __init__(self, node: onnx.NodeProto, opset: int):
        super().__init__(node)
        self.opset = opset

    def reshape(self, x: str, shape: list[int], hint: str) -> str:
        return self.op("Reshape", [x, self.const(np.array(shape, np.int64), "shape")], hint)

    def sum_last(self, x: str, hint: str, output: str | None = None) -> str:
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.const(np.array([-1], np.int64), "axes")], hint, output, keepdims=0)
        return self.op("ReduceSum", [x], hint, output, axes=[-1], keepdims=0)


def topk_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int], k: int | None, opset: int,
               path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the TopK `node` whose input has static `shape`."""
    attrs = {a.name: a.i for a in node.attribute}
    axis, largest = attrs.get("axis", -1) % len(shape), bool(attrs.get("largest", 1))
    n, rows = shape[axis], math.prod(shape) // max(shape[axis], 1)
    where = f"{path}: node '{node.name}' (TopK)"
    if k is None:
        raise HccError(f"{where}: k is not a constant (it decides the output shape)")
    if not 0 <= k <= n:
        raise HccError(f"{where}: k = {k} is outside 0..{n}")
    if rows * n * n > MAX_PAIRS:
        raise HccError(f"{where}: {rows} rows of {n} elements need {rows * n * n} comparisons; hcc compiles TopK up to {MAX_PAIRS}")
    b = _Builder(node, opset)
    perm = [d for d in range(len(shape)) if d != axis] + [axis]
    moved = [shape[d] for d in perm]
    x = node.input[0] if axis == len(shape) - 1 else b.op("Transpose", [node.input[0]], "moved", perm=perm)
    xi = b.reshape(x, moved + [1], "x_i")  # [..., n, 1]: the element ranked
    xj = b.reshape(x, moved[:-1] + [1, n], "x_j")  # [..., 1, n]: the others
    # x_j strictly first (Greater both ways: torch-mlir converts onnx.Less only from opset 13 on)
    before = b.op("Greater", [xj, xi] if largest else [xi, xj], "before")
    same = b.op("Equal", [xj, xi], "same")
    if elem_type in FLOATS:
        nan_i, nan_j = b.op("IsNaN", [xi], "nan_i"), b.op("IsNaN", [xj], "nan_j")
        first_nan = b.op("And", [nan_j, b.op("Not", [nan_i], "num_i")], "nan_first")
        if largest:  # NaN is the largest: first among the largest, last among the smallest
            before = b.op("Or", [before, first_nan], "before_nan")
        else:
            before = b.op("Or", [before, b.op("And", [nan_i, b.op("Not", [nan_j], "num_j")], "nan_last")], "before_nan")
        same = b.op("Or", [same, b.op("And", [nan_i, nan_j], "both_nan")], "same_nan")
    lower = b.const(np.tril(np.ones((n, n), bool), -1), "j_below_i")  # [i, j]: j < i
    ahead = b.op("Or", [before, b.op("And", [same, lower], "tie")], "ahead")
    rank = b.sum_last(b.op("Cast", [ahead], "ahead_i64", to=TensorProto.INT64), "rank")  # [..., n]
    wanted = b.const(np.arange(k, dtype=np.int64).reshape(k, 1), "r")
    pick = b.op("Equal", [b.reshape(rank, moved[:-1] + [1, n], "rank_j"), wanted], "pick")  # [..., k, n]
    zero = b.const(np.zeros((), helper.tensor_dtype_to_np_dtype(elem_type)), "zero")
    values = b.sum_last(b.op("Where", [pick, xj, zero], "value_at"), "values")
    index = b.const(np.arange(n, dtype=np.int64), "j")
    indices = b.sum_last(b.op("Where", [pick, index, b.const(np.zeros((), np.int64))], "index_at"), "indices")
    inverse = [perm.index(d) for d in range(len(shape))]
    for result, out in zip((values, indices), node.output):
        if out:
            b.op("Transpose" if axis != len(shape) - 1 else "Identity", [result], "out", output=out,
                 **({"perm": inverse} if axis != len(shape) - 1 else {}))
    return b.nodes, b.inits
