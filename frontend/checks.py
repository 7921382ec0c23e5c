"""Refuse, before any code is generated, the node patterns that hcc would compile into a wrong result or a crash.

Why: torch-mlir converts each of these without complaint, and then the result is wrong (LSTM peepholes, activations
and sequence lengths are ignored) or the compiler worker crashes or hangs (zero-size tensors, Pad mode=wrap, a
scalar Einsum). The ONNX node suite found them (docs/conformance.md, tools/conformance.py). A wrong answer is never
acceptable and a crash says nothing, so each pattern is one `hcc: error:` line naming the node and the reason.

`check_patterns` runs in `loader.load_model` after shape inference and constant folding, so every shape is concrete
and constant operands (initializers, frozen shape inputs) have known values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from hcc.errors import HccError
from hcc.frontend.attributes import as_text, attr_value
from hcc.frontend.control_flow import runtime_control_flow_allowed

# Zero-size (empty) tensors crash the CPU backend or come out wrong in most ops (a Transpose, Reshape or elementwise
# op on a [3, 0] tensor kills the worker; ReduceMax over an empty axis returns garbage instead of -inf), so they are
# refused except where the node suite proves them: Split and ConstantOfShape producing empty outputs
# (test_split_zero_size_splits_*, test_constantofshape_int_shape_zero), and empty operands of Concat, which drops them
# (the RotaryEmbedding expansions slice off an empty part and concatenate it back).
ZERO_SIZE_OUTPUT_OK = frozenset({"Split", "ConstantOfShape"})
ZERO_SIZE_INPUT_OK = frozenset({"Split", "Concat"})
# Inputs where an empty constant means "not given": Resize's roi and scales (paddle2onnx writes empty Constants there
# instead of leaving the name out: PP-OCR's text detector).
EMPTY_MEANS_ABSENT = frozenset({("Resize", 1), ("Resize", 2)})
# Ops that read only their input's shape, which is known at compile time even for a zero-size tensor.
SHAPE_READERS = frozenset({"Shape", "Size"})
# Inputs read only for their element type (CastLike's `target_type`, often an empty tensor in exported graphs).
TYPE_ONLY_INPUTS: dict[str, tuple[int, ...]] = {"CastLike": (1,)}
# The directions torch-mlir's recurrent conversions handle (others fail in legalization with a raw MLIR message).
FORWARD_ONLY_EXCEPT: dict[str, tuple[str, ...]] = {"LSTM": ("forward", "bidirectional"), "GRU": ("forward",), "RNN": ("forward",)}
# Per recurrent op: its default activations (per direction) and the activations its conversion gets right.
RECURRENT_ACTIVATIONS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "LSTM": (("Sigmoid", "Tanh", "Tanh"), frozenset({"Sigmoid", "Tanh"})),
    "GRU": (("Sigmoid", "Tanh"), frozenset({"Sigmoid", "Tanh"})),
    "RNN": (("Tanh",), frozenset({"Tanh", "Relu"})),
}


@dataclass
class GraphFacts:
    """What the checks need to know about the graph: static shapes and the values of constant tensors."""

    shapes: dict[str, list[int] | None] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    consumers: dict[str, list[str]] = field(default_factory=dict)  # tensor -> op types of the nodes reading it
    slots: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # tensor -> (op type, input index) reading it
    outputs: set[str] = field(default_factory=set)  # the model's outputs

    def shape(self, name: str) -> list[int] | None:
        return self.shapes.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)


def static_shape(value: onnx.ValueInfoProto) -> list[int] | None:
    """The value's shape when every dimension is a number, else None."""
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return None if any(d is None for d in dims) else dims


def constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's constant tensors by name: initializers that are not also inputs, and the values of Constant nodes
    (exporters write weights, Resize scales and shape operands either way)."""
    inputs = {v.name for v in graph.input}
    found = {init.name: init for init in graph.initializer if init.name not in inputs}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 and \
                node.attribute[0].name == "value":
            found[node.output[0]] = node.attribute[0].t
    return found


def graph_facts(model: onnx.ModelProto) -> GraphFacts:
    graph = model.graph
    facts = GraphFacts()
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        facts.shapes[value.name] = static_shape(value)
    for init in graph.initializer:
        facts.shapes[init.name] = list(init.dims)
        facts.constants[init.name] = numpy_helper.to_array(init)
    facts.outputs = {o.name for o in graph.output}
    for node in graph.node:
        for index, name in enumerate(node.input):
            facts.consumers.setdefault(name, []).append(node.op_type)
            facts.slots.setdefault(name, []).append((node.op_type, index))
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                facts.constants[node.output[0]] = numpy_helper.to_array(value)
                facts.shapes[node.output[0]] = list(value.dims)
    return facts


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


# ------------------------------------------------------------------------------------------------ the checks
# Each returns the reason the node is refused, or None.


def zero_size(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """Empty tensors, outside the uses ZERO_SIZE_OUTPUT_OK / ZERO_SIZE_INPUT_OK allow."""
    if node.op_type in SHAPE_READERS:
        return None
    type_only = TYPE_ONLY_INPUTS.get(node.op_type, ())
    for index, name in enumerate(node.input):
        shape = facts.shape(name) if name and name not in facts.constants and index not in type_only else None
        if shape is not None and 0 in shape and node.op_type not in ZERO_SIZE_INPUT_OK:
            return f"input '{name}' has shape {shape}: hcc does not compile zero-size (empty) tensors"
    for name in node.output:
        shape = facts.shape(name) if name else None
        if shape is not None and 0 in shape and not _empty_output_ok(node, name, facts):
            return f"output '{name}' would have shape {shape}: hcc does not compile zero-size (empty) tensors"
    return None


def _empty_output_ok(node: onnx.NodeProto, name: str, facts: GraphFacts) -> bool:
    if node.op_type in ZERO_SIZE_OUTPUT_OK:
        return True
    readers = facts.consumers.get(name, [])
    if name in facts.constants and name not in facts.outputs and readers and \
            all(slot in EMPTY_MEANS_ABSENT for slot in facts.slots.get(name, [])):
        return True
    return name not in facts.outputs and bool(readers) and all(op in ZERO_SIZE_INPUT_OK for op in readers)


def pad_wrap(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    if node.op_type == "Pad" and as_text(attr_value(node, "mode", "constant")) == "wrap":
        return "mode 'wrap' is not supported (modes constant, reflect and edge are)"
    return None


def recurrent_features(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """torch-mlir's LSTM/GRU/RNN conversions ignore peepholes, `clip`, per-sequence lengths and most activation
    choices (and their alpha/beta): each gives a silently wrong result, measured against onnxruntime."""
    if node.op_type not in RECURRENT_ACTIVATIONS:
        return None
    direction = as_text(attr_value(node, "direction", "forward"))
    if direction not in FORWARD_ONLY_EXCEPT.get(node.op_type, ("forward",)):
        return (f"direction '{direction}' is not supported here: torch-mlir converts only "
                f"{' and '.join(FORWARD_ONLY_EXCEPT.get(node.op_type, ('forward',)))} {node.op_type}, and hcc rewrites "
                "the others (frontend/recurrent.py) only with layout 0, no sequence_lens and a static sequence length")
    peepholes = _input(node, 7) if node.op_type == "LSTM" else ""
    if peepholes:
        value = facts.constant(peepholes)
        if value is None or np.any(value != 0):
            return "peephole weights (input P) are not supported: torch-mlir's LSTM ignores them"
    if attr_value(node, "clip") is not None:
        return "the clip attribute is not supported: torch-mlir's conversion ignores it"
    return _recurrent_activations(node) or _recurrent_sequence_lengths(node, facts)


def _recurrent_activations(node: onnx.NodeProto) -> str | None:
    default, allowed = RECURRENT_ACTIVATIONS[node.op_type]
    directions = 2 if as_text(attr_value(node, "direction", "forward")) == "bidirectional" else 1
    activations = [as_text(a) for a in attr_value(node, "activations", [])]
    if not activations or activations == list(default) * directions:
        return None
    if node.op_type == "RNN" and set(activations) <= allowed and attr_value(node, "activation_alpha") is None:
        return None
    return f"activations {activations} are not supported (only {', '.join(sorted(allowed))} as in the default)"


def _recurrent_sequence_lengths(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    lengths = _input(node, 4)
    if not lengths:
        return None
    x_shape = facts.shape(node.input[0])
    steps = None if x_shape is None else x_shape[1 if attr_value(node, "layout", 0) == 1 else 0]
    value = facts.constant(lengths)
    if value is None or steps is None or np.any(value != steps):
        return ("sequence_lens is supported only as a constant equal to the sequence length "
                f"({steps}) for every batch entry: torch-mlir's conversion runs every sequence to the end")
    return None


def resize_align_corners(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """align_corners with fractional output lengths: onnxruntime (and torch-mlir) align on the rounded-down output
    size, the ONNX reference on input size x scale; the two give different results, so neither can be promised."""
    if node.op_type != "Resize" or as_text(attr_value(node, "coordinate_transformation_mode", "half_pixel")) != "align_corners":
        return None
    scales, x_shape = facts.constant(_input(node, 2)) if _input(node, 2) else None, facts.shape(node.input[0])
    if scales is None or scales.size == 0 or x_shape is None:
        return None
    axes = list(attr_value(node, "axes", [])) or list(range(len(x_shape)))
    for axis, scale in zip(axes, scales.tolist()):
        length = x_shape[axis] * scale
        if abs(length - round(length)) > 1e-6:
            return (f"coordinate_transformation_mode 'align_corners' with scale {scale:g} on axis {axis} "
                    f"(output length {length:g} is not a whole number) is not supported: give `sizes` instead of `scales`")
    return None


def scalar_einsum(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    if node.op_type != "Einsum":
        return None
    scalar = next((name for name in node.input if facts.shape(name) == []), None)
    return None if scalar is None else f"operand '{scalar}' is a scalar (rank 0), which Einsum is not compiled for"


def dynamic_nonzero(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """A NonZero left after constant folding has an output shape that depends on run-time values (`hcc compile` runs
    it on the host: control_flow.runtime_control_flow)."""
    if node.op_type == "NonZero" and not runtime_control_flow_allowed():
        return "the output shape depends on the input's values (NonZero is compiled only when its input is a constant)"
    return None


def axis_range(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """An `axis`/`axes` attribute far outside the tensors' ranks (shape inference lets some through, and the
    converter then never finishes). The bound is loose, rank+1 of the largest operand, so each op's own rule
    (Flatten's axis may equal the rank, Unsqueeze's axes count the output's) is left to its converter."""
    ranks = [len(s) for s in (facts.shape(n) for n in list(node.input) + list(node.output) if n) if s is not None]
    if not ranks:
        return None
    bound = max(ranks) + 1
    for name in ("axis", "axes"):
        value = attr_value(node, name)
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if isinstance(v, int) and not -bound <= v <= bound]
        if bad:
            return f"attribute {name}={bad[0]} is outside the rank of its tensors (at most {max(ranks)})"
    return None


NODE_CHECKS: tuple[Callable[[onnx.NodeProto, GraphFacts], str | None], ...] = (
    axis_range, zero_size, pad_wrap, recurrent_features, resize_align_corners, scalar_einsum, dynamic_nonzero,
)


def check_patterns(model: onnx.ModelProto, path: str) -> None:
    """Raise an HccError (one line, naming the node) for the first node hcc is known to mishandle."""
    facts = graph_facts(model)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        for check in NODE_CHECKS:
            reason = check(node, facts)
            if reason:
                raise HccError(f"{path}: node '{node.name}' ({node.op_type}): {reason}")
