"""TopK as comparisons and sums: torch-mlir lowers onnx.TopK to a TMTensor sort that the linalg pipeline cannot
legalize, so the op is written here in ops every backend compiles.

With the axis moved last (length n), every element's rank is the number of elements that come before it in the
order TopK defines: larger (smaller for largest=0) values first, equal values by lower index. NaN counts as larger
than any number (numpy's and onnx.reference's order; onnxruntime leaves it unspecified), so the ranks are always a
permutation. Output r is the element whose rank is r: its value picked with Where and summed with zeros (exact),
its index likewise. The work and memory are n*n per row. When k is small against n (k * ROUNDS_PER_PAIR_PASS <= n),
or n*n per row is over MAX_PAIRS comparisons in all, the op is k rounds of selection instead (`_select_by_rounds`:
k*n per row, the same order; a nearest-neighbours model's top 5 of its training set), up to MAX_ROUNDS. k must be a
constant (it decides the output shape).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

MAX_PAIRS = 1 << 24  # rows * n * n comparisons
ROUNDS_PER_PAIR_PASS = 8  # rounds of selection (about 12 ops on n elements each) when k * this <= n: cheaper than n*n
MAX_ROUNDS = 256
FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}


class _Builder(CountedNodes):
    def __init__(self, node: onnx.NodeProto, opset: int):
        super().__init__(node)
        self.opset = opset

    def reshape(self, x: str, shape: list[int], hint: str) -> str:
        return self.op("Reshape", [x, self.const(np.array(shape, np.int64), "shape")], hint)

    def reduce_kept(self, op_type: str, x: str, axis: int, hint: str) -> str:
        """ReduceMax/ReduceMin over a (positive) axis, kept (axes an input from opset 18 on)."""
        if self.opset >= 18:
            return self.op(op_type, [x, self.const(np.array([axis], np.int64), "axes")], hint, keepdims=1)
        return self.op(op_type, [x], hint, axes=[axis], keepdims=1)

    def sum_last(self, x: str, hint: str, output: str | None = None, keepdims: int = 0) -> str:
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.const(np.array([-1], np.int64), "axes")], hint, output, keepdims=keepdims)
        return self.op("ReduceSum", [x], hint, output, axes=[-1], keepdims=keepdims)


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
    # integer ReduceMax/Min have no torch-mlir conversion before opset 13: such a TopK keeps the pairs
    by_rounds = 0 < k and (k * ROUNDS_PER_PAIR_PASS <= n or rows * n * n > MAX_PAIRS) and (elem_type in FLOATS or opset >= 13)
    if not by_rounds and rows * n * n > MAX_PAIRS:
        raise HccError(f"{where}: {rows} rows of {n} elements need {rows * n * n} comparisons; hcc compiles TopK up to {MAX_PAIRS}"
                       " (of integers at opset 11-12)")
    if by_rounds and k > MAX_ROUNDS:
        raise HccError(f"{where}: {rows} rows of {n} elements need {rows * n * n} comparisons for all ranks, more than "
                       f"{MAX_PAIRS}, and k = {k} is more than the {MAX_ROUNDS} rounds of selection hcc unrolls")
    b = _Builder(node, opset)
    perm = [d for d in range(len(shape)) if d != axis] + [axis]
    moved = [shape[d] for d in perm]
    x = node.input[0] if axis == len(shape) - 1 else b.op("Transpose", [node.input[0]], "moved", perm=perm)
    if by_rounds:
        values, indices = _select_by_rounds(b, x, elem_type, moved, k, largest)
        _write_outputs(b, node, (values, indices), perm, axis, len(shape))
        return b.nodes, b.inits
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
    _write_outputs(b, node, (values, indices), perm, axis, len(shape))
    return b.nodes, b.inits


def _write_outputs(b: _Builder, node: onnx.NodeProto, results: tuple[str, str], perm: list[int], axis: int, rank: int) -> None:
    """The [..., k] values and indices, the axis moved back, as the node's outputs."""
    inverse = [perm.index(d) for d in range(rank)]
    for result, out in zip(results, node.output):
        if out:
            b.op("Transpose" if axis != rank - 1 else "Identity", [result], "out", output=out,
                 **({"perm": inverse} if axis != rank - 1 else {}))


def _select_by_rounds(b: _Builder, x: str, elem_type: int, shape: list[int], k: int, largest: bool) -> tuple[str, str]:
    """k rounds of selection over the last axis (k*n work per row instead of n*n): each round takes, among the
    elements not yet taken, the first of the best remaining value, NaN before any number for largest=1 and after
    every number for largest=0: the order of the ranks above. Returns the [..., k] values and indices."""
    n, last = shape[-1], len(shape) - 1  # a positive axis: torch-mlir legalizes GatherElements only with one
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    limits = np.finfo(dtype) if elem_type in FLOATS else np.iinfo(dtype)
    sentinel = b.const(np.array(-np.inf if elem_type in FLOATS else limits.min, dtype) if largest else
                       np.array(np.inf if elem_type in FLOATS else limits.max, dtype), "sentinel")
    positions = b.const(np.arange(n, dtype=np.int64), "j")
    zero = b.const(np.zeros((), dtype), "zero")
    nan = b.op("IsNaN", [x], "nan") if elem_type in FLOATS else None
    number = b.op("Not", [nan], "number") if nan else None
    taken, values, indices = None, [], []
    for r in range(k):
        free = b.op("Not", [taken], f"free{r}") if taken else None
        free_number = b.op("And", [free, number], f"free_number{r}") if free and number else (free or number)
        masked = b.op("Where", [free_number, x, sentinel], f"masked{r}") if free_number else x
        best = b.reduce_kept("ReduceMax" if largest else "ReduceMin", masked, last, f"best{r}")
        hit = b.op("Equal", [x, best], f"hit{r}")
        candidates = b.op("And", [hit, free_number], f"candidates{r}") if free_number else hit
        priority = b.op("Cast", [candidates], f"priority{r}", to=TensorProto.FLOAT)
        if nan:  # NaN before numbers for largest, after them for smallest: a NaN scores 2 or 0.5 against a number's 1
            free_nan = b.op("And", [free, nan], f"free_nan{r}") if free else nan
            weight = b.const(np.array(2.0 if largest else 0.5, np.float32), "nan_weight")
            nan_priority = b.op("Mul", [b.op("Cast", [free_nan], f"nan_float{r}", to=TensorProto.FLOAT), weight], f"nan_priority{r}")
            priority = b.op("Max", [priority, nan_priority], f"priority_nan{r}")
        index = b.op("ArgMax", [priority], f"index{r}", axis=last, keepdims=1)  # the first of the highest priority
        chosen = b.op("Equal", [positions, index], f"chosen{r}")
        # picked as the pairs above pick it (GatherElements has no torch-mlir conversion before opset 13)
        values.append(b.sum_last(b.op("Where", [chosen, x, zero], f"value_at{r}"), f"value{r}", keepdims=1))
        indices.append(index)
        taken = b.op("Or", [taken, chosen], f"taken{r}") if taken else chosen
    if k == 1:
        return values[0], indices[0]
    return b.op("Concat", values, "values", axis=last), b.op("Concat", indices, "indices", axis=last)
