"""LpPool with dilations or `auto_pad` SAME_UPPER / SAME_LOWER, which torch-mlir's lowering refuses, as
(sum over the window of |x|^p)^(1/p) written with ops hcc compiles: Pow(Abs(x), p), a depthwise Conv with a kernel of
ones (its pads, strides and dilations), Pow(., 1/p). SAME padding is made explicit from the static input shape as
ONNX defines it (the odd pixel at the end for SAME_UPPER, at the start for SAME_LOWER). Other LpPools keep
torch-mlir's lowering; float32 only, static shapes, ceil_mode 0, and not SAME padding with dilations, where
onnxruntime's output shape differs from ONNX's rule (else the node stays and is reported as before).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from hcc.frontend.attributes import attr_value
from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes


def same_pads(spatial: list[int], kernel: list[int], strides: list[int], dilations: list[int], upper: bool) -> list[int]:
    """ONNX's SAME padding: output length ceil(in / stride); the odd pixel after (SAME_UPPER) or before."""
    begins, ends = [], []
    for length, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(length / s) - 1) * s + (k - 1) * d + 1 - length, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return begins + ends


def lp_pool_nodes(node: onnx.NodeProto, facts: GraphFacts, path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The replacement of one LpPool that torch-mlir cannot lower; the node itself otherwise."""
    shape = facts.shapes.get(node.input[0])
    kernel = list(attr_value(node, "kernel_shape", []))
    rank = len(kernel)
    dilations = list(attr_value(node, "dilations", [1] * rank))
    auto_pad = attr_value(node, "auto_pad", b"NOTSET").decode()
    if all(d == 1 for d in dilations) and auto_pad in ("NOTSET", "VALID"):
        return [node], []  # torch-mlir lowers these
    if (facts.types.get(node.input[0]) != TensorProto.FLOAT or shape is None or len(shape) != rank + 2
            or not all(isinstance(d, int) and d > 0 for d in shape) or int(attr_value(node, "ceil_mode", 0))):
        return [node], []
    if auto_pad.startswith("SAME") and any(d != 1 for d in dilations):
        return [node], []  # onnxruntime pads for the undilated window there (output 7 wide where ONNX says 10)
    strides = list(attr_value(node, "strides", [1] * rank))
    pads = list(attr_value(node, "pads", [0] * (2 * rank)))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    p = float(attr_value(node, "p", 2))
    channels = shape[1]
    b = CountedNodes(node)
    powered = b.op("Pow", [b.op("Abs", [node.input[0]], "magnitude"), b.const(np.array(p, np.float32), "p")], "powered")
    ones = b.const(np.ones([channels, 1, *kernel], np.float32), "window")
    summed = b.op("Conv", [powered, ones], "window_sum", group=channels, kernel_shape=kernel, pads=pads, strides=strides,
                  dilations=dilations)
    b.op("Pow", [summed, b.const(np.array(1.0 / p, np.float32), "inverse_p")], "root", output=node.output[0])
    b.nodes[-1].name = node.name
    return b.nodes, b.inits


def rewrite_lp_pool(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph LpPool that torch-mlir cannot lower rewritten (the model itself when none)."""
    return rewrite_op(model, path, "LpPool", lp_pool_nodes)
