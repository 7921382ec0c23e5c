"""MaxUnpool as a ScatterND of the flattened input into zeros (frontend/scatter.py's vectorized write): hcc has no
lowering for onnx.MaxUnpool.

As onnx.reference computes it: the values are written at their flat indices into a zero tensor of the inferred
shape ((in - 1) * stride - pads + kernel per spatial axis), a later duplicate index overwriting an earlier one, and
that tensor is placed at the start of a larger `output_shape` (a constant) with zeros after it (the node suite's
expected outputs follow this; onnxruntime instead reads the indices in output_shape's layout). The write compares
every output element with every index, so the output elements x input elements are limited (scatter.MAX_MASK).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes
from hcc.frontend.scatter import MAX_MASK, scatter_nd_nodes


def max_unpool_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int], output_shape: np.ndarray | None,
                     opset: int, path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the MaxUnpool `node` whose input X has static `shape`."""
    where = f"{path}: node '{node.name}' (MaxUnpool)"
    attrs = {a.name: list(helper.get_attribute_value(a)) for a in node.attribute}
    kernel = attrs.get("kernel_shape", [])
    s = len(shape) - 2
    strides, pads = attrs.get("strides", [1] * s), attrs.get("pads", [0] * 2 * s)
    if len(kernel) != s:
        raise HccError(f"{where}: kernel_shape {kernel} for an input of rank {len(shape)}")
    inferred = shape[:2] + [(shape[2 + d] - 1) * strides[d] - pads[d] - pads[s + d] + kernel[d] for d in range(s)]
    if len(node.input) > 2 and node.input[2] and output_shape is None:
        raise HccError(f"{where}: output_shape is not a constant (it decides the output shape)")
    wanted = [int(v) for v in output_shape.reshape(-1)] if output_shape is not None else inferred
    if len(wanted) != len(shape) or any(w < i for w, i in zip(wanted, inferred)):
        raise HccError(f"{where}: output_shape {wanted} is smaller than the unpooled shape {inferred}")
    total, count = math.prod(inferred), math.prod(shape)
    if total * count > MAX_MASK:
        raise HccError(f"{where}: {total} output x {count} input elements are compared to place the values; hcc "
                       f"compiles MaxUnpool up to {MAX_MASK}")
    b = CountedNodes(node)
    zeros = b.const(np.zeros([total], helper.tensor_dtype_to_np_dtype(elem_type)), "zeros")
    values = b.op("Reshape", [node.input[0], b.const(np.array([count], np.int64), "shape")], "values")
    index = b.op("Reshape", [node.input[1], b.const(np.array([count, 1], np.int64), "shape")], "index")
    flat = b.name("unpooled_flat")
    scatter = helper.make_node("ScatterND", [zeros, index, values], [flat], name=f"{node.name}/scatter")
    nodes, inits = scatter_nd_nodes(scatter, [total], [count, 1], opset, path)
    b.nodes += nodes
    b.inits += inits
    unpooled = b.op("Reshape", [flat, b.const(np.array(inferred, np.int64), "shape")], "unpooled")
    if wanted != inferred:
        pad = [0] * len(shape) + [w - i for w, i in zip(wanted, inferred)]
        b.op("Pad", [unpooled, b.const(np.array(pad, np.int64), "pads")], "padded")
    b.nodes[-1].output[0], b.nodes[-1].name = node.output[0], node.name
    return b.nodes, b.inits
