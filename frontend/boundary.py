"""Sequence and optional graph inputs/outputs compiled by flattening them into tensors (bundle format version 4).

Why: hcc compiles static-shape tensor graphs; sequences inside a model are already list bookkeeping around tensors
(frontend/sequences.py). At the model's boundary a sequence of a length and element shapes known at compile time is
N tensors, and an optional whose presence is known at compile time is its element or nothing. So, at load time:

- a sequence input `x` becomes the tensor inputs `x[0]`, ..., `x[N-1]` (shapes as declared: `--input-shape
  x=[2x3,4x3]`, or the ONNX backend's concrete list) and a SequenceConstruct named `x`, which sequences.py then
  eliminates like any sequence made in the graph;
- a present optional input is its element under the same name (a tensor input, or a sequence as above); an absent one
  (`--input-shape x=none`) is an `Optional` node with no input; Optional / OptionalGetElement / OptionalHasElement /
  Identity are then resolved at compile time (`resolve_optionals`), OptionalHasElement folding to a constant;
- a sequence output becomes its element tensors `y[0]`, ... (sequences.py knows them once the lists are tracked), a
  present optional output its element, an absent one nothing.

`Boundary.record` says which flat tensors form which model value (artifacts/manifest.BoundaryRecord); the runtime
(runtime/boundary.py) takes lists / None and returns lists. In `input_shapes`, a sequence's declaration is a list of
element shapes (a list of lists of ints) and an absent optional's is None.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.artifacts.manifest import BoundaryRecord, Layout
from hcc.errors import HccError
from hcc.frontend.constant_outputs import identity_of_constant
from hcc.frontend.graph_walk import deep_reads, subgraphs

HINT = ("declare it with --input-shape: NAME=[2x3,4x3] for a sequence of two tensors ([2x3]*4 for four alike, [] for "
        "none, () for a scalar element), NAME=2x3 for a present optional tensor, NAME=none for an absent optional")


def element_name(name: str, index: int) -> str:
    """The flat tensor of element `index` of the sequence `name` (an input or output of the bundle)."""
    return f"{name}[{index}]"


@dataclass
class Boundary:
    """What flattening did to the model's inputs and outputs, until `record` can say which tensors form which value."""

    inputs: list[str]  # the model's input names, in its order (initializers excluded)
    outputs: list[str]
    input_layouts: dict[str, Layout] = field(default_factory=dict)
    optional_outputs: dict[str, bool] = field(default_factory=dict)  # output -> present
    sequence_outputs: dict[str, list[str]] = field(default_factory=dict)  # filled by sequences.rewrite_sequences

    def record(self) -> BoundaryRecord | None:
        """The manifest's record; None when every input and output is a plain tensor."""
        values: dict[str, Layout] = dict(self.input_layouts)
        for name in self.outputs:
            layout: Layout = {"sequence": list(self.sequence_outputs[name])} if name in self.sequence_outputs else name
            if name in self.optional_outputs:
                values[name] = {"optional": layout if self.optional_outputs[name] else None}
            elif name in self.sequence_outputs:
                values[name] = layout
        return BoundaryRecord(list(self.inputs), list(self.outputs), values) if values else None


def _dims(value: Any) -> list[int] | None:
    return list(value) if isinstance(value, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in value) else None


def _tensor_input(name: str, tensor_type: onnx.TypeProto.Tensor, dims: list[int], what: str) -> onnx.ValueInfoProto:
    """A tensor input of the declared element type and the given shape, checked against the declared one."""
    if tensor_type.HasField("shape"):
        declared = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if len(declared) != len(dims) or any(d is not None and d != g for d, g in zip(declared, dims)):
            shown = [d if d is not None else "?" for d in declared]
            raise HccError(f"{what}: shape {dims} does not fit the model's element shape {shown}", hint=HINT)
    if any(d < 0 for d in dims):
        raise HccError(f"{what}: shape {dims} has a negative dimension")
    return helper.make_tensor_value_info(name, tensor_type.elem_type, dims)


def _flatten(name: str, type_proto: onnx.TypeProto, spec: Any, where: str, inputs: list, nodes: list) -> Layout:
    """Flat tensor inputs (appended to `inputs`) and nodes rebuilding the value `name` (to `nodes`); its layout."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        dims = _dims(spec)
        if dims is None:
            raise HccError(f"{where}: expected a tensor shape, got {spec!r}", hint=HINT)
        inputs.append(_tensor_input(name, type_proto.tensor_type, dims, where))
        return name
    if kind == "sequence_type":
        element = type_proto.sequence_type.elem_type
        if element.WhichOneof("value") != "tensor_type":
            raise HccError(f"{where}: a sequence of {element.WhichOneof('value')}; hcc compiles sequences of tensors")
        if not isinstance(spec, (list, tuple)) or any(_dims(s) is None for s in spec):
            raise HccError(f"{where} is a sequence: its length and element shapes must be given at compile time, got {spec!r}", hint=HINT)
        names = [element_name(name, k) for k in range(len(spec))]
        for k, (item, dims) in enumerate(zip(names, spec)):
            inputs.append(_tensor_input(item, element.tensor_type, list(dims), f"{where}[{k}]"))
        if names:
            nodes.append(helper.make_node("SequenceConstruct", names, [name], name=f"{name}/construct"))
        else:
            nodes.append(helper.make_node("SequenceEmpty", [], [name], name=f"{name}/construct", dtype=element.tensor_type.elem_type))
        return {"sequence": names}
    if kind == "optional_type":
        if spec is None:
            return {"optional": None}
        return {"optional": _flatten(name, type_proto.optional_type.elem_type, spec, where, inputs, nodes)}
    raise HccError(f"{where} is a {kind}; hcc compiles tensors, and sequences / optionals of tensors")


MISSING = object()  # an input --input-shape does not name


def flatten_inputs(model: onnx.ModelProto, path: str, shapes: dict[str, Any]) -> tuple[Boundary, dict[str, Any]]:
    """Replace the sequence / optional inputs of `model` (in place) by tensor inputs; returns the boundary so far and
    the shapes left for the tensor inputs. Absent optionals are `Optional` nodes without input, for resolve_optionals."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real = [v for v in graph.input if v.name not in initializers]
    boundary = Boundary([v.name for v in real], [v.name for v in graph.output])
    if all(v.type.HasField("tensor_type") for v in real):
        return boundary, shapes
    taken = {v.name for v in list(graph.input) + list(graph.output)} | initializers | {o for n in graph.node for o in n.output}
    remaining = dict(shapes)
    new_inputs: list[onnx.ValueInfoProto] = []
    nodes: list[onnx.NodeProto] = []
    for value in graph.input:
        if value.name in initializers or value.type.HasField("tensor_type"):
            new_inputs.append(value)
            continue
        spec = remaining.pop(value.name, MISSING)
        where = f"{path}: input '{value.name}'"
        if spec is MISSING:
            kind = value.type.WhichOneof("value").replace("_type", "")
            raise HccError(f"{where} is a{'n' if kind[0] in 'aeiou' else ''} {kind}: hcc compiles it for one length and element "
                           "shapes (a sequence) or one presence (an optional), which must be given", hint=HINT)
        before = len(new_inputs)
        layout = _flatten(value.name, value.type, spec, where, new_inputs, nodes)
        clash = [v.name for v in new_inputs[before:] if v.name != value.name and v.name in taken]
        if clash:
            raise HccError(f"{where}: its element tensor name '{clash[0]}' is already a value of the model")
        if isinstance(layout, dict) and "optional" in layout and layout["optional"] is None:
            nodes.append(helper.make_node("Optional", [], [value.name], name=f"{value.name}/absent", type=value.type.optional_type.elem_type))
        boundary.input_layouts[value.name] = layout
    del graph.input[:]
    graph.input.extend(new_inputs)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return boundary, remaining


def constant_node(value: np.ndarray, output: str, name: str, graph_outputs: set[str],
                  initializers: list[onnx.TensorProto]) -> onnx.NodeProto:
    """A node giving `output` the constant `value`: a Constant, or for a graph output an Identity of an initializer
    (a bundle output is computed by a node of compiled code; frontend/constant_outputs.py, which does the same for
    the model's own constant outputs)."""
    if output in graph_outputs:
        return identity_of_constant(value, output, name, initializers)
    return helper.make_node("Constant", [], [output], name=name, value=numpy_helper.from_array(np.asarray(value), output))


def resolve_optionals(model: onnx.ModelProto, path: str, boundary: Boundary, declared_outputs: dict[str, onnx.TypeProto]) -> None:
    """With every optional's presence known at compile time (the boundary's, and those made by Optional nodes), in
    place: Optional(x) and OptionalGetElement(x) become Identity(x) (x a tensor or a sequence), OptionalHasElement a
    constant, an absent optional disappears; optional graph outputs take their element's type or are dropped
    (`boundary.optional_outputs`). A node that reads an absent optional otherwise is refused by name."""
    graph = model.graph
    absent = {n for n, layout in boundary.input_layouts.items() if isinstance(layout, dict) and layout.get("optional", 0) is None}
    present = {n for n, layout in boundary.input_layouts.items() if isinstance(layout, dict) and layout.get("optional") is not None}
    graph_outputs = {o.name for o in graph.output}
    initializers: list[onnx.TensorProto] = []
    nodes = []
    makers: dict[str, onnx.NodeProto] = {}  # an absent optional -> an `Optional` node without input making it
    kept_absent: set[str] = set()
    for index, node in enumerate(graph.node):
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        name = node.name or f"{node.op_type}_{index}"
        source = node.input[0] if node.input else ""
        if op == "Optional":
            if not source:
                absent.add(node.output[0])
                makers[node.output[0]] = node
                continue
            present.add(node.output[0])
            nodes.append(helper.make_node("Identity", [source], [node.output[0]], name=name))
        elif op == "OptionalGetElement":
            if not source or source in absent:
                raise HccError(f"{path}: node '{name}' (OptionalGetElement): the optional '{source}' it reads is absent")
            nodes.append(helper.make_node("Identity", [source], [node.output[0]], name=name))
        elif op == "OptionalHasElement":
            nodes.append(constant_node(np.asarray(bool(source) and source not in absent), node.output[0], name, graph_outputs, initializers))
        elif op == "Identity" and source in absent:
            absent.add(node.output[0])
            if source in makers:
                maker = helper.make_node("Optional", [], [node.output[0]], name=name)
                maker.attribute.extend(makers[source].attribute)  # its element type
                makers[node.output[0]] = maker
        elif op == "Identity" and source in present:
            present.add(node.output[0])
            nodes.append(node)
        else:
            # a Loop that carries an absent optional, or a Loop body / If branch that reads one, keeps it as an
            # `Optional` without input: frontend/sequences.py unrolls (inlines) these and decides what reads it
            kept = (set(node.input) if op == "Loop" else set()) | (set().union(*map(deep_reads, subgraphs(node))) if op in ("Loop", "If") else set())
            for value in sorted(kept & absent & set(makers) - kept_absent):
                nodes.append(makers[value])
                kept_absent.add(value)
            read = next((n for n in node.input if n in absent and op != "Loop"), None)
            if read is not None:
                raise HccError(f"{path}: node '{name}' ({node.op_type}) reads the absent optional '{read}'; hcc compiles "
                               "absent optionals read by Identity, OptionalHasElement, Loops (unrolled) and model outputs only")
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    outputs = []
    for value in graph.output:
        declared = declared_outputs[value.name]
        if not declared.HasField("optional_type") or (value.name not in absent and value.name not in present):
            outputs.append(value)  # an optional of run-time presence (an If's) stays, and is refused as before
            continue
        boundary.optional_outputs[value.name] = value.name in present
        if value.name in present:
            flat = onnx.ValueInfoProto()
            flat.name = value.name
            flat.type.CopyFrom(declared.optional_type.elem_type)
            outputs.append(flat)
    del graph.output[:]
    graph.output.extend(outputs)


def flatten_boundary(model: onnx.ModelProto, path: str, shapes: dict[str, Any]) -> tuple[Boundary, dict[str, Any]]:
    """Sequence / optional inputs flattened and optionals resolved, in place (see the module docstring); returns the
    boundary (its sequence outputs are filled in by sequences.rewrite_sequences) and the tensor inputs' shapes."""
    declared = {v.name: v.type for v in model.graph.output}
    boundary, remaining = flatten_inputs(model, path, shapes)
    if boundary.input_layouts or any(t.HasField("optional_type") for t in declared.values()):
        resolve_optionals(model, path, boundary, declared)  # also OptionalGetElement of a sequence input: an Identity
    return boundary, remaining


_SHAPE = r"\d+(?:x\d+)*|\(\)"


def parse_input_spec(name: str, text: str, spec: str) -> Any:
    """One `--input-shape` value: `2x3` (a tensor; empty: a scalar), `[2x3,4x3]` (a sequence's element shapes; `()` a
    scalar element, `[]` an empty sequence), `[2x3]*4` (four alike), `none` (an absent optional)."""
    def dims(token: str) -> list[int]:
        return [] if token in ("", "()") else [int(d) for d in token.split("x")]

    text = text.replace(" ", "")
    if text.lower() == "none":
        return None
    if re.fullmatch(r"\d+(x\d+)*|", text):
        return dims(text)
    repeated = re.fullmatch(rf"\[({_SHAPE})\]\*(\d+)", text)
    if repeated:
        return [dims(repeated.group(1)) for _ in range(int(repeated.group(2)))]
    listed = re.fullmatch(rf"\[((?:{_SHAPE})(?:,(?:{_SHAPE}))*)?\]", text)
    if listed:
        return [dims(t) for t in listed.group(1).split(",")] if listed.group(1) else []
    raise HccError(f"--input-shape {spec!r}: expected NAME=D1xD2x... (e.g. x=1x3x224x224; NAME= for a scalar), "
                   f"NAME=[2x3,4x3] or NAME=[2x3]*4 for a sequence, NAME=none for an absent optional")
