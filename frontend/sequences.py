"""Sequences whose every position is known at compile time, rewritten into tensor ops at load time.

An exporter's SequenceConstruct / SplitToSequence feeding SequenceAt or ConcatFromSequence is list bookkeeping
around tensors: each sequence value is tracked as the list of tensor names it holds, node by node in graph order.
SequenceEmpty, SequenceConstruct, SequenceInsert and SequenceErase (at constant positions; none: the end) and
Identity build the lists; SplitToSequence becomes a Split (the input's length along the axis and the split sizes must
be static: they decide how many tensors there are), with a Squeeze per piece for keepdims=0; SequenceAt (constant
position) becomes an Identity of the tensor, SequenceLength a constant, ConcatFromSequence a Concat (new_axis: of
Unsqueezed tensors). Positions are constants (initializers or Constant nodes), negative ones counted from the end.
A sequence graph output becomes its element tensors `y[0]`, ... when the loader flattens the model's boundary
(frontend/boundary.py; a sequence graph input arrives here as a SequenceConstruct of its elements), else it is
refused naming it; a model whose sequences reach anything else (a Loop, If or SequenceMap, an optional) is left as it
is and refused as before, naming the value or op; a position that is not a constant is refused naming the node.
Likewise OptionalGetElement of a plain tensor is an Identity, and an Optional made in the graph and only read by
OptionalGetElement / OptionalHasElement is its tensor / a constant.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from hcc.errors import HccError
from hcc.frontend.boundary import Boundary, constant_node, element_name

BUILDERS = {"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence"}
READERS = {"SequenceInsert", "SequenceErase", "SequenceAt", "SequenceLength", "ConcatFromSequence", "Identity"}
SEQUENCE_OPS = BUILDERS | READERS - {"Identity"}


def _sequence_values(graph: onnx.GraphProto) -> set[str] | None:
    """The names of the sequence values the nodes make, or None when one is used where this rewrite cannot follow."""
    sequences: set[str] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in BUILDERS or (node.op_type == "Identity" and node.input[0] in sequences):
            sequences.add(node.output[0])
    for node in graph.node:
        reads = [name for name in node.input if name in sequences]
        if reads and (node.op_type not in READERS or node.domain not in ("", "ai.onnx")):
            return None
        for attr in node.attribute:  # a subgraph that captures a sequence
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                if any(name in sequences for n in sub.node for name in n.input):
                    return None
    return sequences


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, path: str):
        self.path, self.graph = path, model.graph
        self.opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
        inferred = shape_inference.infer_shapes(model)
        self.shapes = {}
        for v in list(inferred.graph.input) + list(inferred.graph.value_info):
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
                self.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        inputs = {v.name for v in self.graph.input}
        self.constants = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer if i.name not in inputs}
        for init in self.graph.initializer:
            self.shapes.setdefault(init.name, list(init.dims))
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.lists: dict[str, list[str]] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def where(self, node: onnx.NodeProto) -> str:
        return f"{self.path}: node '{node.name}' ({node.op_type})"

    def i64(self, node: onnx.NodeProto, value, hint: str) -> str:
        name = f"{node.name}/{hint}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def position(self, node: onnx.NodeProto, index: int, length: int, default: int, insert: bool = False) -> int:
        name = node.input[index] if len(node.input) > index else ""
        if not name:
            return default
        value = self.constants.get(name)
        if value is None or value.size != 1:
            raise HccError(f"{self.where(node)}: position '{name}' is not a compile-time constant; hcc compiles "
                           "sequences whose positions are known when the model is compiled")
        position = int(value.reshape(-1)[0])
        limit = length + (1 if insert else 0)
        if not -length <= position < limit:
            raise HccError(f"{self.where(node)}: position {position} is outside a sequence of {length} tensors")
        return position + length if position < 0 else position

    def add(self, op_type: str, inputs: list[str], output: str, name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))

    def split(self, node: onnx.NodeProto) -> list[str]:
        x = node.input[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = self.shapes.get(x)
        rank = len(shape) if shape is not None else 0
        axis = int(attrs.get("axis", 0))
        if shape is None or not -rank <= axis < rank or shape[axis % rank] is None:
            raise HccError(f"{self.where(node)}: the length of '{x}' along axis {axis} is not static in the model; it "
                           "decides how many tensors the sequence holds")
        axis %= rank
        length = shape[axis]
        split_name = node.input[1] if len(node.input) > 1 else ""
        if split_name:
            value = self.constants.get(split_name)
            if value is None:
                raise HccError(f"{self.where(node)}: split '{split_name}' is not a compile-time constant")
            if value.ndim == 0:
                piece = int(value)
                if piece < 1:
                    raise HccError(f"{self.where(node)}: split {piece}")
                sizes = [piece] * (length // piece) + ([length % piece] if length % piece else [])
            else:
                sizes = [int(v) for v in value.reshape(-1)]
                if sum(sizes) != length or min(sizes, default=0) < 0:
                    raise HccError(f"{self.where(node)}: split sizes {sizes} for a length of {length}")
            squeeze = False
        else:
            sizes, squeeze = [1] * length, not int(attrs.get("keepdims", 1))
        outputs = [f"{node.output[0]}/{k}" for k in range(len(sizes))]
        if len(sizes) == 1:
            self.add("Identity", [x], outputs[0], node.name)
        elif self.opset >= 13:
            self.add("Split", [x, self.i64(node, sizes, "split")], outputs[0], node.name, axis=axis)
            self.nodes[-1].output[:] = outputs
        else:
            self.add("Split", [x], outputs[0], node.name, axis=axis, split=sizes)
            self.nodes[-1].output[:] = outputs
        if squeeze:
            squeezed = []
            for k, piece in enumerate(outputs):
                out = f"{piece}/squeezed"
                self.axes_op("Squeeze", node, piece, axis, out, f"{node.name}/squeeze_{k}")
                squeezed.append(out)
            outputs = squeezed
        return outputs

    def axes_op(self, op: str, node: onnx.NodeProto, x: str, axis: int, out: str, name: str) -> None:
        """Squeeze / Unsqueeze of `x` along `axis`: axes as an input from opset 13, as an attribute before."""
        if self.opset >= 13:
            self.add(op, [x, self.i64(node, [axis], "axes")], out, name)
        else:
            self.add(op, [x], out, name, axes=[axis])

    def concat(self, node: onnx.NodeProto, tensors: list[str]) -> None:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, new_axis = int(attrs.get("axis", 0)), int(attrs.get("new_axis", 0))
        if not tensors:
            raise HccError(f"{self.where(node)}: the sequence is empty")
        if new_axis:
            stacked = []
            for k, tensor in enumerate(tensors):
                out = f"{node.output[0]}/item_{k}"
                self.axes_op("Unsqueeze", node, tensor, axis, out, f"{node.name}/unsqueeze_{k}")
                stacked.append(out)
            tensors = stacked
        self.add("Concat", tensors, node.output[0], node.name, axis=axis)

    def rewrite(self, sequences: set[str]) -> None:
        lists = self.lists
        for index, node in enumerate(self.graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{index}"
            op = node.op_type if node.domain in ("", "ai.onnx") else ""
            if op == "SequenceEmpty":
                lists[node.output[0]] = []
            elif op == "SequenceConstruct":
                lists[node.output[0]] = list(node.input)
            elif op == "Identity" and node.input[0] in sequences:
                lists[node.output[0]] = list(lists[node.input[0]])
            elif op == "SequenceInsert":
                items = list(lists[node.input[0]])
                items.insert(self.position(node, 2, len(items), len(items), insert=True), node.input[1])
                lists[node.output[0]] = items
            elif op == "SequenceErase":
                items = list(lists[node.input[0]])
                if not items:
                    raise HccError(f"{self.where(node)}: erasing from an empty sequence")
                del items[self.position(node, 1, len(items), len(items) - 1)]
                lists[node.output[0]] = items
            elif op == "SplitToSequence":
                lists[node.output[0]] = self.split(node)
            elif op == "SequenceAt":
                items = lists[node.input[0]]
                if not items:
                    raise HccError(f"{self.where(node)}: reading from an empty sequence")
                self.add("Identity", [items[self.position(node, 1, len(items), 0)]], node.output[0], node.name)
            elif op == "SequenceLength":
                value = numpy_helper.from_array(np.asarray(len(lists[node.input[0]]), np.int64), node.output[0])
                self.add("Constant", [], node.output[0], node.name, value=value)
            elif op == "ConcatFromSequence":
                self.concat(node, lists[node.input[0]])
            else:
                self.nodes.append(node)


def _rewrite_optionals(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """OptionalGetElement of a plain tensor (an Identity), and Optional values made in the graph and only read by
    OptionalGetElement (the tensor) or OptionalHasElement (a constant): the model itself when there are none, or when
    an optional goes anywhere else (then the usual refusal names it)."""
    graph = model.graph
    if not any(n.op_type in ("Optional", "OptionalGetElement", "OptionalHasElement") and n.domain in ("", "ai.onnx")
               for n in graph.node):
        return model
    if any(v.type.HasField("optional_type") or v.type.HasField("sequence_type") for v in list(graph.input) + list(graph.output)):
        return model
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the loader's own inference reports it
        return model
    tensors = {v.name for v in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
               if v.type.HasField("tensor_type")} | {i.name for i in graph.initializer}
    held: dict[str, str | None] = {}  # an Optional's output -> the tensor it holds (None: empty)
    for node in graph.node:
        if node.op_type == "Optional" and node.domain in ("", "ai.onnx"):
            held[node.output[0]] = node.input[0] if node.input and node.input[0] else None
    for node in graph.node:
        reads = [name for name in node.input if name in held]
        if reads and node.op_type not in ("OptionalGetElement", "OptionalHasElement"):
            return model
        if node.op_type in ("OptionalGetElement", "OptionalHasElement") and node.input and node.input[0] \
                and node.input[0] not in held and node.input[0] not in tensors:
            return model
    nodes, initializers = [], []
    graph_outputs = {o.name for o in graph.output}
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        source = node.input[0] if node.input else ""
        if node.op_type == "Optional" and node.domain in ("", "ai.onnx"):
            continue
        if node.op_type == "OptionalGetElement":
            tensor = held[source] if source in held else source
            if tensor is None:
                raise HccError(f"{path}: node '{name}' (OptionalGetElement): the optional it reads is empty")
            nodes.append(helper.make_node("Identity", [tensor], [node.output[0]], name=name))
        elif node.op_type == "OptionalHasElement":
            present = bool(source) and (held.get(source) is not None if source in held else True)
            nodes.append(constant_node(np.asarray(present), node.output[0], name, graph_outputs, initializers))
        else:
            nodes.append(node)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    result.graph.initializer.extend(initializers)
    return result


def _flatten_outputs(result: onnx.ModelProto, lists: dict[str, list[str]], outputs: set[str], boundary: Boundary) -> None:
    """Each sequence graph output in `outputs` replaced, in place and in order, by its element tensors (Identity nodes
    named `<output>[k]`), recorded in `boundary.sequence_outputs`."""
    graph = result.graph
    flat = []
    for value in graph.output:
        if value.name not in outputs:
            flat.append(value)
            continue
        element = value.type.sequence_type.elem_type.tensor_type.elem_type
        names = [element_name(value.name, k) for k in range(len(lists[value.name]))]
        for k, (item, name) in enumerate(zip(lists[value.name], names)):
            graph.node.append(helper.make_node("Identity", [item], [name], name=f"{value.name}/element_{k}"))
            flat.append(helper.make_tensor_value_info(name, element, None))
        boundary.sequence_outputs[value.name] = names
    del graph.output[:]
    graph.output.extend(flat)
    try:  # the elements' shapes (a graph output needs one): what inference gives the new outputs
        inferred = {v.name: v for v in shape_inference.infer_shapes(result).graph.output}
    except Exception:  # noqa: BLE001 - the loader's own inference reports it
        return
    for value in graph.output:
        known = inferred.get(value.name)
        if known is not None and known.type.tensor_type.HasField("shape") and not value.type.tensor_type.HasField("shape"):
            value.type.CopyFrom(known.type)


def rewrite_sequences(model: onnx.ModelProto, path: str, boundary: Boundary | None = None) -> onnx.ModelProto:
    """`model` with its compile-time sequences turned into tensor ops (the model itself when it has none, or when a
    sequence goes where this rewrite cannot follow it: then the usual refusal names it). With `boundary` (the loader
    flattens the model's inputs and outputs), sequence graph outputs become their element tensors, recorded there."""
    model = _rewrite_optionals(model, path)
    graph = model.graph
    if not any(n.op_type in SEQUENCE_OPS and n.domain in ("", "ai.onnx") for n in graph.node):
        return model
    if any(v.type.HasField("sequence_type") or v.type.HasField("optional_type") for v in graph.input):
        return model
    sequences = _sequence_values(graph)
    if sequences is None:
        return model
    for output in graph.output:
        if output.name in sequences and boundary is None:
            index, maker = next((i, n) for i, n in enumerate(graph.node) if output.name in n.output)
            name = maker.name or f"{maker.op_type}_{index}"
            raise HccError(f"{path}: output '{output.name}' is a sequence (made by node '{name}' ({maker.op_type})): "
                           "hcc compiles tensor outputs only; sequences inside the model are compiled when every "
                           "position is known at compile time")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    rewriter = _Rewriter(result, path)
    rewriter.rewrite(sequences)
    del result.graph.node[:]
    result.graph.node.extend(rewriter.nodes)
    result.graph.initializer.extend(rewriter.inits)
    if boundary is not None:
        _flatten_outputs(result, rewriter.lists, {o.name for o in graph.output if o.name in sequences}, boundary)
    kept = [v for v in result.graph.value_info if v.name not in sequences]
    del result.graph.value_info[:]
    result.graph.value_info.extend(kept)
    return result
