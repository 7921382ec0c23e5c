"""DeformConv (opset 19, 2-D) as GridSample + MatMul, the way onnx's reference defines it.

A deformable convolution samples its input at each kernel tap's position moved by a learned offset, bilinearly
with zeros outside the image (the reference calls GridSample with align_corners=1 on pixel coordinates normalized by
H-1 and W-1), scales each sample by the optional mask, and sums the samples with the weights. Here, with the shapes
static: the taps' base positions are constants, the offsets are added to them and normalized, one GridSample per
model (the offset groups folded into the batch: [N * offset_group, C / offset_group, H, W] against a grid of
kH * kW * oH rows by oW columns) gathers every sample, the mask multiplies them, and one batched MatMul per
convolution group sums taps and channels with the weights; the bias is added last. Each of these ops has its own
vector schedule or kernel.

Refused by name (the node stays, and the loader lists it as unsupported): a 1-D or 3-D DeformConv, non-float32
tensors, dynamic shapes, and an input of height or width 1 (the reference divides by H-1 and W-1).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from hcc.frontend.attributes import attr_value
from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def deform_conv_nodes(node: onnx.NodeProto, facts: GraphFacts, path: str, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The replacement of one 2-D float32 DeformConv of static shapes; the node itself otherwise. `opset`: the
    model's, for GridSample's name of bilinear sampling ("bilinear" before opset 20, "linear" from it)."""
    x_shape, w_shape, off_shape = (facts.shapes.get(_input(node, i)) for i in range(3))
    if (not all(_static(s) and len(s) == 4 for s in (x_shape, w_shape, off_shape))
            or any(facts.types.get(n) != TensorProto.FLOAT for n in node.input if n)):
        return [node], []
    n, c, h, w = x_shape
    o, cg_in = w_shape[0], w_shape[1]
    kh, kw = attr_value(node, "kernel_shape", w_shape[2:])
    group, offset_group = int(attr_value(node, "group", 1)), int(attr_value(node, "offset_group", 1))
    sh, sw = attr_value(node, "strides", [1, 1])
    dh, dw = attr_value(node, "dilations", [1, 1])
    top, left, _, _ = attr_value(node, "pads", [0, 0, 0, 0])
    oh, ow = off_shape[2:]
    k = kh * kw
    if (h == 1 or w == 1 or c != cg_in * group or o % group or c % offset_group
            or off_shape[:2] != [n, offset_group * k * 2] or [kh, kw] != list(w_shape[2:])):
        return [node], []
    b = CountedNodes(node)
    # pixel coordinates of every tap before the offsets: [kh, kw, oh, ow]
    rows = (-top + sh * np.arange(oh))[None, None, :, None] + (dh * np.arange(kh))[:, None, None, None]
    cols = (-left + sw * np.arange(ow))[None, None, None, :] + (dw * np.arange(kw))[None, :, None, None]
    offsets = b.op("Reshape", [node.input[2], b.const(np.array([n * offset_group, kh, kw, 2, oh, ow], np.int64), "offset_shape")],
                   "offsets")
    halves = []
    for axis, base, length in ((1, cols, w), (0, rows, h)):  # GridSample wants (x, y)
        picked = b.op("Gather", [offsets, b.const(np.array(axis, np.int64), "axis")], "along", axis=3)  # [N*OG, kh, kw, oh, ow]
        moved = b.op("Add", [picked, b.const(np.broadcast_to(base, (kh, kw, oh, ow)).astype(np.float32), "base")], "moved")
        scaled = b.op("Mul", [moved, b.const(np.array(2.0 / (length - 1), np.float32), "scale")], "scaled")
        normal = b.op("Sub", [scaled, b.const(np.array(1.0, np.float32), "one")], "normalized")
        halves.append(b.op("Unsqueeze", [normal, b.const(np.array([-1], np.int64), "last")], "coordinate"))
    grid = b.op("Concat", halves, "grid5", axis=-1)  # [N*OG, kh, kw, oh, ow, 2]
    grid = b.op("Reshape", [grid, b.const(np.array([n * offset_group, k * oh, ow, 2], np.int64), "grid_shape")], "grid")
    x = b.op("Reshape", [node.input[0], b.const(np.array([n * offset_group, c // offset_group, h, w], np.int64), "x_shape")], "x_groups")
    sampled = b.op("GridSample", [x, grid], "sampled", mode="linear" if opset >= 20 else "bilinear", padding_mode="zeros", align_corners=1)
    taps = b.op("Reshape", [sampled, b.const(np.array([n * offset_group, c // offset_group, k, oh * ow], np.int64), "taps_shape")],
                "taps")  # [N*OG, C/OG, K, P]
    mask = _input(node, 4)
    if mask:
        mask = b.op("Reshape", [mask, b.const(np.array([n * offset_group, 1, k, oh * ow], np.int64), "mask_shape")], "mask")
        taps = b.op("Mul", [taps, mask], "masked")
    columns = b.op("Reshape", [taps, b.const(np.array([n, group, (c // group) * k, oh * ow], np.int64), "columns_shape")], "columns")
    weights = b.op("Reshape", [node.input[1], b.const(np.array([group, o // group, cg_in * k], np.int64), "weight_shape")], "weights")
    product = b.op("MatMul", [weights, columns], "product")  # [N, G, O/G, P]
    bias = _input(node, 3)
    out = node.output[0]
    shaped = b.op("Reshape", [product, b.const(np.array([n, o, oh, ow], np.int64), "out_shape")], "unbiased",
                  output=None if bias else out)
    if bias:
        bias4 = b.op("Reshape", [bias, b.const(np.array([1, o, 1, 1], np.int64), "bias_shape")], "bias")
        b.op("Add", [shaped, bias4], "biased", output=out)
    b.nodes[-1].name = node.name
    return b.nodes, b.inits


def rewrite_deform_conv(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph 2-D float32 DeformConv of static shapes rewritten (the model itself when it has none)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return rewrite_op(model, path, "DeformConv", lambda node, facts, where: deform_conv_nodes(node, facts, where, opset))
