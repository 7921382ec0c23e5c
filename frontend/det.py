"""Det as Gaussian elimination with partial pivoting, unrolled over the static matrix size: hcc has no lowering for
onnx.Det (numpy's det, the reference, is LAPACK's LU factorization with the same pivoting).

The input [..., n, n] is flattened to [batch, n, n]. Each of the n steps works on the trailing m x m matrix: the
pivot row is the first row of largest |a[:, 0]| (ArgMax), swapped with row 0 by a GatherElements (the values move
exactly), the sign flips when it moved, and the rows below lose their multiple of the pivot row, leaving the
(m-1) x (m-1) trailing matrix. The determinant is the sign times the product of the pivots (a zero pivot, a
singular matrix, gives 0: its column below is zero too, so no division by zero reaches the result). Work is
n^3 / 3 multiply-adds per matrix, in the input's type, in LAPACK's order of eliminations (numpy then takes the
logarithms of the pivots and exponentiates, which rounds differently in the last bits). Matrices above MAX_N rows
are refused.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}
MAX_N = 64


class _Builder(CountedNodes):
    def i64(self, value) -> str:
        return self.const(np.asarray(value, np.int64), "c")

    def slice(self, x: str, starts: list[int], ends: list[int], axes: list[int], hint: str) -> str:
        return self.op("Slice", [x, self.i64(starts), self.i64(ends), self.i64(axes)], hint)


def det_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int],
              path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the Det `node` whose input has static `shape`."""
    where = f"{path}: node '{node.name}' (Det)"
    if elem_type not in FLOATS:
        raise HccError(f"{where}: input of type {TensorProto.DataType.Name(elem_type)}; hcc compiles Det of floats")
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise HccError(f"{where}: input {shape} is not a (batch of) square matrices")
    n, batch = shape[-1], int(np.prod(shape[:-2], dtype=np.int64))
    if n > MAX_N:
        raise HccError(f"{where}: {n} x {n} matrices; hcc compiles Det up to {MAX_N} x {MAX_N}")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    b = _Builder(node)
    a = b.op("Reshape", [node.input[0], b.i64([batch, n, n])], "matrices")
    minus_one, one = b.const(np.asarray(-1, dtype), "minus_one"), b.const(np.asarray(1, dtype), "one")
    sign, result = None, None
    for m in range(n, 0, -1):  # `a` is the trailing m x m matrix
        pivot_row = None
        if m > 1:
            column = b.op("Reshape", [b.slice(a, [0], [1], [2], "column"), b.i64([batch, m])], "column_rows")
            pivot_row = b.op("ArgMax", [b.op("Abs", [column], "magnitude")], "pivot_row", axis=1, keepdims=1)
            rows = b.i64(np.arange(m).reshape(1, m))
            first = b.const(np.arange(m).reshape(1, m) == 0, "first")
            order = b.op("Where", [first, pivot_row,
                                   b.op("Where", [b.op("Equal", [rows, pivot_row], "is_pivot"), b.i64(0), rows], "rest")],
                         "order")  # rows 0 and pivot_row swapped
            index = b.op("Expand", [b.op("Unsqueeze", [order, b.i64([2])], "order_column"), b.i64([batch, m, m])], "index")
            a = b.op("GatherElements", [a, index], "swapped", axis=1)
            flip = b.op("Where", [b.op("Equal", [pivot_row, b.i64(0)], "kept"), one, minus_one], "flip")  # [batch, 1]
            sign = flip if sign is None else b.op("Mul", [sign, flip], "sign")
        pivot = b.slice(a, [0, 0], [1, 1], [1, 2], "pivot")  # [batch, 1, 1]
        result = pivot if result is None else b.op("Mul", [result, pivot], "product")
        if m > 1:
            below = b.slice(a, [1, 0], [m, 1], [1, 2], "below")  # [batch, m-1, 1]
            safe = b.op("Where", [b.op("Equal", [pivot, b.const(np.zeros((), dtype), "zero")], "singular"), one, pivot],
                        "safe_pivot")  # a zero pivot has zeros below it: 0 / 1
            factor = b.op("Div", [below, safe], "factor")
            pivot_rest = b.slice(a, [0, 1], [1, m], [1, 2], "pivot_rest")  # [batch, 1, m-1]
            trailing = b.slice(a, [1, 1], [m, m], [1, 2], "trailing")
            a = b.op("Sub", [trailing, b.op("Mul", [factor, pivot_rest], "multiple")], "eliminated")
    if sign is not None:
        result = b.op("Mul", [result, b.op("Unsqueeze", [sign, b.i64([2])], "sign_matrix")], "signed")
    b.op("Reshape", [result, b.i64(shape[:-2])], "det", output=node.output[0])
    b.nodes[-1].name = node.name
    return b.nodes, b.inits
