"""Ops newer than opset 22 rewritten into opset-22 ops before the opset conversion (onnx's version converter refuses
a model holding an op that opset 22 lacks): the graph facts such a rewrite needs, from onnx's shape inference of the
model as written (before --input-shape applies), and the loop that replaces every main-graph node of one type.
BitCast (frontend/bitcast.py), TensorScatter (frontend/tensor_scatter.py), CumProd (frontend/cumprod.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from hcc.errors import HccError


@dataclass
class GraphFacts:
    types: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, list[int | None] | None] = field(default_factory=dict)  # dims None where not static
    constants: dict[str, np.ndarray] = field(default_factory=dict)


def _facts(model: onnx.ModelProto, path: str) -> GraphFacts:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise HccError(f"{path}: shape inference failed: {str(exc).strip().splitlines()[0]}") from None
    graph, facts = inferred.graph, GraphFacts()
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        if v.type.HasField("tensor_type"):
            tensor = v.type.tensor_type
            facts.types[v.name] = tensor.elem_type
            facts.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim] \
                if tensor.HasField("shape") else None
    inputs = {v.name for v in graph.input}
    for init in graph.initializer:
        facts.types.setdefault(init.name, init.data_type)
        facts.shapes.setdefault(init.name, list(init.dims))
        if init.name not in inputs:
            facts.constants[init.name] = numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            value = n.attribute[0].t
            facts.constants[n.output[0]] = numpy_helper.to_array(value)
            facts.types[n.output[0]], facts.shapes[n.output[0]] = value.data_type, list(value.dims)
    return facts


Rewrite = Callable[[onnx.NodeProto, GraphFacts, str], tuple[list[onnx.NodeProto], list[onnx.TensorProto]]]


def rewrite_op(model: onnx.ModelProto, path: str, op_type: str, rewrite: Rewrite) -> onnx.ModelProto:
    """`model` with every main-graph `op_type` node replaced by `rewrite(node, facts, path)`'s nodes and
    initializers (the model itself when it has none). Unnamed nodes are named `<op_type>_<index>` first."""
    if not any(n.op_type == op_type and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    facts = _facts(model, path)
    nodes, inits = [], []
    for index, node in enumerate(model.graph.node):
        if node.op_type != op_type or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        if not node.name:
            node = onnx.NodeProto.FromString(node.SerializeToString())
            node.name = f"{op_type}_{index}"
        new_nodes, new_inits = rewrite(node, facts, path)
        nodes += new_nodes
        inits += new_inits
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    result.graph.initializer.extend(inits)
    return result
