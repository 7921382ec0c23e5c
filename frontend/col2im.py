"""Col2Im with constant image_shape and block_shape (they decide the output shape; the node suite's backend freezes
them) as placements and sums: hcc has no lowering for onnx.Col2Im.

The columns [N, C*K, L] (K = prod(block), L = the blocks' grid) are viewed as [N, C, K, grid...]. The grid is spread
by the strides (every axis interleaved with stride-1 zeros: Reshape, Pad, Reshape, Slice), then each kernel tap's
slice is padded to its offset (tap * dilation) in the padded image, and the K slices are added. Only the data and
zeros are added, so finite values, inf and NaN come out as the reference's sums give them (no multiplication by a
0/1 matrix, which would turn an inf into NaN).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes


def col2im_nodes(node: onnx.NodeProto, shape: list[int], image: np.ndarray | None, block: np.ndarray | None,
                 path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the Col2Im `node` whose input has static `shape` [N, C*K, L]."""
    where = f"{path}: node '{node.name}' (Col2Im)"
    if image is None or block is None:
        raise HccError(f"{where}: image_shape and block_shape must be constants (they decide the output shape)")
    image_dims, block_dims = [int(v) for v in image.reshape(-1)], [int(v) for v in block.reshape(-1)]
    s = len(image_dims)
    attrs = {a.name: list(helper.get_attribute_value(a)) for a in node.attribute}
    dilations, strides = attrs.get("dilations", [1] * s), attrs.get("strides", [1] * s)
    pads = attrs.get("pads", [0] * 2 * s)
    kernel = math.prod(block_dims)
    if len(shape) != 3 or len(block_dims) != s or kernel == 0 or shape[1] % kernel:
        raise HccError(f"{where}: input {shape} does not fit image_shape {image_dims} and block_shape {block_dims}")
    grid = [(image_dims[d] + pads[d] + pads[s + d] - dilations[d] * (block_dims[d] - 1) - 1) // strides[d] + 1
            for d in range(s)]
    if math.prod(grid) != shape[2] or min(grid) < 1:
        raise HccError(f"{where}: {shape[2]} blocks, but image_shape {image_dims}, block_shape {block_dims}, pads, "
                       f"strides and dilations give a grid of {grid}")
    batch, channels = shape[0], shape[1] // kernel
    b = CountedNodes(node)

    def i64(value) -> str:
        return b.const(np.asarray(value, np.int64), "c")

    x = b.op("Reshape", [node.input[0], i64([batch, channels, kernel] + grid)], "columns")  # [N, C, K, grid...]
    spread = list(grid)
    for d in range(s):  # interleave grid axis d with stride-1 zeros
        if strides[d] == 1:
            continue
        axis = 3 + d
        dims = [batch, channels, kernel] + spread
        x = b.op("Reshape", [x, i64(dims[:axis + 1] + [1] + dims[axis + 1:])], "unsqueezed")
        pad = [0] * (2 * (len(dims) + 1))
        pad[len(dims) + 1 + axis + 1] = strides[d] - 1
        x = b.op("Pad", [x, i64(pad)], "strided")
        dims[axis] *= strides[d]
        x = b.op("Reshape", [x, i64(dims)], "spread")
        spread[d] = (grid[d] - 1) * strides[d] + 1
        x = b.op("Slice", [x, i64([0]), i64([spread[d]]), i64([axis])], "trimmed")
    total = None
    for k, tap in enumerate(np.ndindex(*block_dims)):
        piece = b.op("Slice", [x, i64([k]), i64([k + 1]), i64([2])], "tap")
        piece = b.op("Reshape", [piece, i64([batch, channels] + spread)], "tap_flat")
        pad = [0] * (2 * (2 + s))
        for d in range(s):
            begin = tap[d] * dilations[d]
            pad[2 + d] = begin
            pad[2 + s + 2 + d] = image_dims[d] + pads[d] + pads[s + d] - begin - spread[d]
        piece = b.op("Pad", [piece, i64(pad)], "placed")
        total = piece if total is None else b.op("Add", [total, piece], "sum")
    if any(pads):
        starts, ends = pads[:s], [pads[d] + image_dims[d] for d in range(s)]
        total = b.op("Slice", [total, i64(starts), i64(ends), i64(list(range(2, 2 + s)))], "cropped")
    b.nodes[-1].output[0], b.nodes[-1].name = node.output[0], node.name
    return b.nodes, b.inits
