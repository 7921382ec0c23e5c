"""Graph clean-up before import: unique node names, and folding of computations on constants.

Names: the partitioner, placement files and diagnostics address nodes by name, so every node gets a unique one
(unnamed nodes become `<OpType>_<index>`; a repeated name gets a `__<n>` suffix).
Folding: with concrete input shapes, `Shape` and everything computed only from constants (shape arithmetic of
Reshape/Expand/Slice chains in exported transformers, for instance) is evaluated once here with onnx's reference
evaluator. That keeps shape operands compile-time constants even when the partitioner cuts the graph between
their producer and their consumer.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.constant_outputs import identity_of_constant

# Ops never folded: random, or with subgraphs.
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "If", "Loop", "Scan"}
MAX_FOLDED_ELEMENTS = 1 << 22


def _static_shape(value: onnx.ValueInfoProto) -> list[int] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return None if any(d is None for d in dims) else dims


def evaluate_node(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: list[onnx.OperatorSetIdProto]) -> list[np.ndarray] | None:
    """The outputs of `node` on the constant `values`, by onnx.reference at the given opsets; None where it cannot run."""
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(values[n].dtype), values[n].shape) for n in node.input if n]
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    try:
        evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=opset))
        return [np.asarray(v) for v in evaluator.run(None, {n: values[n] for n in node.input if n})]
    except Exception:
        return None  # leave the node for the compiler; folding is an optimisation, never a requirement


def _reads(node: onnx.NodeProto) -> set[str]:
    """The values `node` reads: its inputs and, for If/Loop/Scan, every name its subgraphs' nodes read (a branch
    reads outer values by name; keeping those alive is what keeps the branch valid)."""
    names = set(node.input)
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                names |= _reads(inner)
    return names


def _reads_empty_input(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> bool:
    """Every input known, one of them a zero-size tensor."""
    known = [n for n in node.input if n]
    return bool(known) and all(n in values for n in known) and any(values[n].size == 0 for n in known)


def _folded_output_node(node: onnx.NodeProto, values: dict[str, np.ndarray], model: onnx.ModelProto,
                        new_initializers: list[onnx.TensorProto]) -> onnx.NodeProto | None:
    """A node computing a graph output from constants and an empty input, as an Identity of its folded value (a graph
    output stays the output of a node); None when it does not fold to one non-empty output."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDABLE or len(node.output) != 1:
        return None
    result = evaluate_node(node, values, list(model.opset_import))
    if result is None or result[0].size == 0 or result[0].size > MAX_FOLDED_ELEMENTS:
        return None
    identity = identity_of_constant(result[0], node.output[0], node.name, new_initializers)
    values[identity.input[0]] = result[0]
    return identity


def fold_constants(model: onnx.ModelProto) -> int:
    """Fold in place; returns how many nodes were folded away."""
    graph = model.graph
    shapes = {v.name: _static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    elem_types = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.value_info) + list(graph.output)
                  if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    values: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer
                                     if int(np.prod(init.dims)) <= MAX_FOLDED_ELEMENTS}
    # A graph input of a zero-size static shape has one possible value (no elements), so what is computed from it and
    # constants is a constant too: a reduction over an empty axis is its identity element (the ONNX node suite's
    # *_empty_set cases), which the compiled code never has to compute from an empty tensor.
    initializer_names = {init.name for init in graph.initializer}
    for value in graph.input:
        shape = shapes.get(value.name)
        if value.name not in initializer_names and shape is not None and 0 in shape and elem_types.get(value.name):
            values[value.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(elem_types[value.name]))
    graph_outputs = {o.name for o in graph.output}
    kept, new_initializers, folded = [], [], 0
    for node in graph.node:
        if any(o in graph_outputs for o in node.output) and _reads_empty_input(node, values):
            replacement = _folded_output_node(node, values, model, new_initializers)
            if replacement is not None:
                kept.append(replacement)
                folded += 1
                continue
        if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDABLE or any(o in graph_outputs for o in node.output):
            kept.append(node)
            continue
        result = None
        if node.op_type == "Constant":
            result = evaluate_node(node, values, list(model.opset_import))
            if result is not None:
                values[node.output[0]] = result[0]
            kept.append(node)  # stays a node; removed below if nothing uses it any more
            continue
        if node.op_type == "Shape" and shapes.get(node.input[0]) is not None:
            dims = np.array(shapes[node.input[0]], dtype=np.int64)
            start = next((a.i for a in node.attribute if a.name == "start"), 0)
            end = next((a.i for a in node.attribute if a.name == "end"), len(dims))
            result = [dims[start:end]]
        elif node.op_type == "CastLike" and node.input[0] in values and len(node.input) > 1 and node.input[1] in elem_types:
            # the target is read for its type only: a constant cast like a run-time value is a constant (function
            # bodies, AffineGrid's among them, cast every constant like their input)
            cast = helper.make_node("Cast", [node.input[0]], list(node.output), to=elem_types[node.input[1]],
                                    **{a.name: helper.get_attribute_value(a) for a in node.attribute if a.name == "saturate"})
            result = evaluate_node(cast, values, list(model.opset_import))
        elif all(n == "" or n in values for n in node.input) and any(node.input):
            result = evaluate_node(node, values, list(model.opset_import))
        if result is None or any(r.size > MAX_FOLDED_ELEMENTS for r in result):
            kept.append(node)
            continue
        for name, value in zip(node.output, result):
            values[name] = value
            new_initializers.append(numpy_helper.from_array(value, name))
        folded += 1
    # Drop nodes (Constants included) and initializers that nothing uses any more.
    used = set(graph_outputs)
    for node in kept:
        used.update(_reads(node))
    live = [n for n in kept if any(o in used for o in n.output)]
    used = set(graph_outputs) | {v.name for v in graph.input}  # old exporters list initializers as inputs too
    for node in live:
        used.update(_reads(node))
    initializers = [i for i in list(graph.initializer) + new_initializers if i.name in used]
    del graph.node[:]
    graph.node.extend(live)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return folded
