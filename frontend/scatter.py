"""ScatterElements and ScatterND as Equal masks against index ramps, Where and Gather: torch-mlir lowers both ops to
TMTensor scatters that the linalg pipeline cannot legalize, so they are written here in ops every backend compiles.

Indices are run-time values; negative ones are counted from the end (index + length), as the spec says.
* reduction 'none' (a plain write), vectorized: every output position compares its own coordinate with every
  update's index (a one-hot mask of output x updates elements) and takes the update of the *last* match, as a
  sequential loop over the updates would (onnx.reference and onnxruntime write in order; the spec leaves duplicates
  undefined for 'none'). The update is fetched with a Gather at that position, so values pass exactly (NaN
  included; an update -0.0 arrives as +0.0, by the rule hcc's Where keeps from onnxruntime: a selected first
  operand -0.0 becomes +0.0, passes/nan_semantics.py); positions nothing matches keep the data bit for bit. Refused above MAX_MASK mask elements.
* reduction add/mul/max/min: one Where step per update slice in the order of a sequential loop,
  out = Where(hit_k, f(out, update_k), out), so duplicate indices combine exactly as the reference's loop does
  (float additions in the same order). Refused above MAX_STEPS steps or MAX_WORK elements touched in all.
Out-of-range indices (an error in the spec) write nothing.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

MAX_MASK = 1 << 24  # output positions x updates compared by the vectorized write
MAX_STEPS = 256  # update slices combined one after the other by a reduction
MAX_WORK = 1 << 26  # elements computed by all those steps together
REDUCE_OPS = {"add": "Add", "mul": "Mul", "max": "Max", "min": "Min"}


class _Builder(CountedNodes):
    """Nodes and constants for one scatter, named after it."""

    def __init__(self, node: onnx.NodeProto, opset: int):
        super().__init__(node)
        self.opset = opset

    def i64(self, value, hint: str) -> str:
        return self.const(np.asarray(value, np.int64), hint)

    def reshape(self, x: str, shape: list[int], hint: str) -> str:
        return self.op("Reshape", [x, self.i64(shape, "shape")], hint)

    def slice(self, x: str, axis: int, k: int, hint: str) -> str:
        return self.op("Slice", [x, self.i64([k], "start"), self.i64([k + 1], "end"), self.i64([axis], "axis")], hint)

    def reduce_sum_last(self, x: str, hint: str) -> str:
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.i64([-1], "axes")], hint, keepdims=0)
        return self.op("ReduceSum", [x], hint, axes=[-1], keepdims=0)

    def wrap_negative(self, index: str, lengths: np.ndarray) -> str:
        """int64 indices with a negative index counted from the end (`lengths` broadcasts against them)."""
        index = self.op("Cast", [index], "index", to=TensorProto.INT64)
        negative = self.op("Greater", [self.i64(0, "zero"), index], "negative")  # Greater: no onnx.Less before 13
        return self.op("Where", [negative, self.op("Add", [index, self.i64(lengths, "length")], "wrapped"), index],
                       "index_norm")

    def last_match(self, mask: str, count: int) -> tuple[str, str]:
        """(hit, position): whether any of the `count` entries along the mask's last axis is true, and the last true
        one's position (0 where none is), both with the last axis dropped. ArgMax of the matching positions (distinct
        values, so no ties): torch-mlir converts ReduceMax of integers only with opset 18's axes input."""
        ramp = self.i64(np.arange(count), "k")
        position = self.op("ArgMax", [self.op("Where", [mask, ramp, self.i64(-1, "none")], "k_at")], "last",
                           axis=-1, keepdims=0)
        matches = self.reduce_sum_last(self.op("Cast", [mask], "mask_i64", to=TensorProto.INT64), "matches")
        return self.op("Greater", [matches, self.i64(0, "zero")], "hit"), position

    def finish(self, result: str, output: str) -> None:
        """Let the node computing `result` write the scatter's output under the scatter's name."""
        if self.nodes and self.nodes[-1].output[0] == result:
            self.nodes[-1].output[0], self.nodes[-1].name = output, self.node.name
        else:
            self.nodes.append(helper.make_node("Identity", [result], [output], name=self.node.name))


def _reduction(node: onnx.NodeProto, where: str) -> str | None:
    attr = next((a for a in node.attribute if a.name == "reduction"), None)
    value = attr.s.decode() if attr is not None else "none"
    if value != "none" and value not in REDUCE_OPS:
        raise HccError(f"{where}: unknown reduction '{value}'")
    return None if value == "none" else value


def _check_steps(where: str, steps: int, elements: int) -> None:
    if steps > MAX_STEPS or steps * elements > MAX_WORK:
        raise HccError(f"{where}: a reduction over {steps} update slices of {elements} elements is compiled as one step "
                       f"per slice; hcc compiles up to {MAX_STEPS} steps and {MAX_WORK} elements in all")


def scatter_elements_nodes(node: onnx.NodeProto, data_shape: list[int], index_shape: list[int], opset: int,
                           path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the ScatterElements `node` (static data and indices shapes)."""
    where = f"{path}: node '{node.name}' (ScatterElements)"
    rank = len(data_shape)
    if len(index_shape) != rank or rank == 0:
        raise HccError(f"{where}: indices of rank {len(index_shape)} for data of rank {rank}")
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % rank
    reduction = _reduction(node, where)
    if any(i > d for k, (i, d) in enumerate(zip(index_shape, data_shape)) if k != axis):
        raise HccError(f"{where}: indices {index_shape} are larger than data {data_shape} off the axis")
    b = _Builder(node, opset)
    data, indices, updates = node.input[:3]
    count = index_shape[axis]
    length = data_shape[axis]
    if count == 0 or math.prod(index_shape) == 0:
        b.finish(b.op("Identity", [data], "copy"), node.output[0])
        return b.nodes, b.inits
    index = b.wrap_negative(indices, np.array(length, np.int64))
    # indices and updates cover a corner of the data off the axis: padded to the data's extent, index -1 (no match)
    padding = [0] * rank + [0 if k == axis else d - i for k, (i, d) in enumerate(zip(index_shape, data_shape))]
    if any(padding):
        pads = b.i64(padding, "pads")
        index = b.op("Pad", [index, pads, b.i64(-1, "no_index")], "index_padded")
        updates = b.op("Pad", [updates, pads], "updates_padded")
    if reduction is None:
        if math.prod(data_shape) * count > MAX_MASK:
            raise HccError(f"{where}: {math.prod(data_shape)} output positions x {count} updates along the axis need a "
                           f"mask of {math.prod(data_shape) * count} elements; hcc compiles ScatterElements up to {MAX_MASK}")
        perm = [d for d in range(rank) if d != axis] + [axis]
        moved = b.op("Transpose", [index], "index_last", perm=perm) if axis != rank - 1 else index
        # [..., 1 (the output's axis), ..., count]: each output position against every update along the axis
        shape = data_shape[:axis] + [1] + data_shape[axis + 1:] + [count]
        ramp = b.i64(np.arange(length).reshape([length] + [1] * (rank - axis)), "j")
        mask = b.op("Equal", [b.reshape(moved, shape, "index_k"), ramp], "mask")
        hit, position = b.last_match(mask, count)
        # the update at `position` along the axis, as a Gather from the flat updates (torch-mlir converts
        # GatherElements only from opset 13 on): offset of the position's other coordinates + position * stride
        padded = data_shape[:axis] + [count] + data_shape[axis + 1:]
        strides = np.array([math.prod(padded[k + 1:]) for k in range(rank)], np.int64)
        grid = np.indices(data_shape, dtype=np.int64)
        offsets = sum(grid[k] * strides[k] for k in range(rank) if k != axis) + np.zeros(data_shape, np.int64)
        flat_index = b.op("Add", [b.i64(offsets, "offsets"), b.op("Mul", [position, b.i64(strides[axis], "stride")],
                                                                  "step")], "flat_index")
        picked = b.op("Gather", [b.reshape(updates, [-1], "updates_flat"), flat_index], "picked", axis=0)
        b.finish(b.op("Where", [hit, picked, data], "scattered"), node.output[0])
        return b.nodes, b.inits
    _check_steps(where, count, math.prod(data_shape))
    ramp = b.i64(np.arange(length).reshape([length] + [1] * (rank - 1 - axis)), "j")
    out = data
    for k in range(count):  # the reference's loop order: along the axis last (it runs over np.ndindex(indices))
        hit = b.op("Equal", [b.slice(index, axis, k, "index_k"), ramp], "hit")
        combined = b.op(REDUCE_OPS[reduction], [out, b.slice(updates, axis, k, "update_k")], "combined")
        out = b.op("Where", [hit, combined, out], "scattered")
    b.finish(out, node.output[0])
    return b.nodes, b.inits


def scatter_nd_nodes(node: onnx.NodeProto, data_shape: list[int], index_shape: list[int], opset: int,
                     path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the ScatterND `node` (static data and indices shapes)."""
    where = f"{path}: node '{node.name}' (ScatterND)"
    if not index_shape:
        raise HccError(f"{where}: indices must have rank >= 1")
    depth = index_shape[-1]
    if not 1 <= depth <= len(data_shape):
        raise HccError(f"{where}: index tuples of length {depth} for data of rank {len(data_shape)} (hcc compiles 1..rank)")
    reduction = _reduction(node, where)
    b = _Builder(node, opset)
    data, indices, updates = node.input[:3]
    count = math.prod(index_shape[:-1])
    cells, row = math.prod(data_shape[:depth]), math.prod(data_shape[depth:])
    if count == 0:
        b.finish(b.op("Identity", [data], "copy"), node.output[0])
        return b.nodes, b.inits
    index = b.wrap_negative(indices, np.array(data_shape[:depth], np.int64))
    strides = np.array([math.prod(data_shape[k + 1:depth]) for k in range(depth)], np.int64)
    flat = b.reduce_sum_last(b.op("Mul", [index, b.i64(strides, "strides")], "scaled"), "cell")  # index_shape[:-1]
    rows = b.reshape(data, [cells, row], "data_rows")
    update_rows = b.reshape(updates, [count, row], "update_rows")
    ramp = b.i64(np.arange(cells).reshape(cells, 1), "cells")
    if reduction is None:
        if cells * count > MAX_MASK:
            raise HccError(f"{where}: {cells} cells x {count} updates need a mask of {cells * count} elements; "
                           f"hcc compiles ScatterND up to {MAX_MASK}")
        mask = b.op("Equal", [ramp, b.reshape(flat, [1, count], "cell_row")], "mask")  # [cells, count]
        hit, position = b.last_match(mask, count)  # [cells]
        picked = b.op("Gather", [update_rows, position], "picked", axis=0)  # [cells, row]
        hit = b.reshape(hit, [cells, 1], "hit_column")
        out = b.op("Where", [hit, picked, rows], "scattered")
    else:
        _check_steps(where, count, cells * row)
        flat = b.reshape(flat, [count], "cells_flat")
        out = rows
        for k in range(count):
            hit = b.op("Equal", [ramp, b.slice(flat, 0, k, "cell_k")], "hit")  # [cells, 1]
            combined = b.op(REDUCE_OPS[reduction], [out, b.slice(update_rows, 0, k, "update_k")], "combined")
            out = b.op("Where", [hit, combined, out], "scattered")
    b.finish(b.reshape(out, data_shape, "out"), node.output[0])
    return b.nodes, b.inits
