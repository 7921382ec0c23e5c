"""Compress with a constant condition as a Gather of the selected positions: the condition decides the output shape,
so it must be known at compile time (the node suite's backend freezes it; a run-time condition is refused).

ONNX's rules are numpy.compress's: without `axis` the input is flattened first; a condition shorter than the axis
selects among its first entries only; a condition longer than the axis may only hold false beyond it.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.errors import HccError


def compress_nodes(node: onnx.NodeProto, shape: list[int], condition: np.ndarray | None,
                   path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the Compress `node` whose input has static `shape`."""
    where = f"{path}: node '{node.name}' (Compress)"
    if condition is None:
        raise HccError(f"{where}: its condition is not a constant (it decides the output shape); hcc compiles Compress "
                       "with a constant condition")
    axis_attr = next((a for a in node.attribute if a.name == "axis"), None)
    flat = condition.reshape(-1).astype(bool)
    length = math.prod(shape) if axis_attr is None else shape[axis_attr.i % len(shape)]
    if flat[length:].any():
        raise HccError(f"{where}: its condition selects position {int(np.flatnonzero(flat)[-1])}, beyond the "
                       f"{length} positions it compresses")
    selected = numpy_helper.from_array(np.flatnonzero(flat[:length]).astype(np.int64), f"{node.name}/selected")
    x, nodes, inits = node.input[0], [], [selected]
    if axis_attr is None:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), f"{node.name}/flat_shape"))
        x = f"{node.name}/flat"
        nodes.append(helper.make_node("Reshape", [node.input[0], inits[-1].name], [x], name=f"{x}_op"))
    axis = 0 if axis_attr is None else axis_attr.i % len(shape)
    nodes.append(helper.make_node("Gather", [x, selected.name], [node.output[0]], name=node.name, axis=axis))
    return nodes, inits
