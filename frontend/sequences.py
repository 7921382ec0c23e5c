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
refused naming it; a position that is not a constant is refused naming the node.
Control flow that carries, captures, makes or returns a sequence (or an optional) is removed here, since the lists
are only known once it is: a Loop of a compile-time trip count (a constant, or a SequenceLength: SequenceMap's
function body is `Loop(SequenceLength(xs))` over SequenceAt / SequenceInsert) whose body never ends it early becomes
one copy of its body per iteration, as frontend/unroll.py unrolls tensor loops, and an If whose condition is known
(a constant, or Not / Identity of an OptionalHasElement decided here) becomes its branch; the copies are tracked like
any node, optionals as lists or absent values. A run-time trip count or condition is refused naming it (the ONNX
backend freezes those inputs: they decide a sequence's length or an optional's presence). A model whose sequences
reach anything else is left as it is and refused as before, naming the value or op.
Likewise OptionalGetElement of a plain tensor is an Identity, and an Optional made in the graph and only read by
OptionalGetElement / OptionalHasElement is its tensor / a constant.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from hcc.errors import HccError
from hcc.frontend.boundary import Boundary, constant_node, element_name
from hcc.frontend.graph_walk import deep_reads, names_in, subgraphs
from hcc.frontend.names import fresh_name
from hcc.frontend.unroll import MAX_UNROLLED_NODES, always_true

BUILDERS = {"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence"}
READERS = {"SequenceInsert", "SequenceErase", "SequenceAt", "SequenceLength", "ConcatFromSequence", "Identity"}
SEQUENCE_OPS = BUILDERS | READERS - {"Identity"}


CONTROL = {"Loop", "If"}
OPTIONAL_OPS = {"Optional", "OptionalGetElement", "OptionalHasElement"}


def _has_sequence_ops(graph: onnx.GraphProto) -> bool:
    return any((n.op_type in SEQUENCE_OPS and n.domain in ("", "ai.onnx")) or any(_has_sequence_ops(g) for g in subgraphs(n))
               for n in graph.node)


def _is_listlike(value: onnx.TypeProto) -> bool:
    """A sequence or an optional: values that this rewrite tracks (a list of tensor names, or absent)."""
    return value.WhichOneof("value") in ("sequence_type", "optional_type")


def _involves(node: onnx.NodeProto, tracked: set[str]) -> bool:
    """Whether a Loop / If carries, captures, makes or returns a sequence (or an optional): then this rewrite unrolls
    or inlines it, since the sequences in it are lists of compile-time positions only once it is gone."""
    graphs = subgraphs(node)
    return (any(name in tracked for name in node.input) or any(deep_reads(g) & tracked for g in graphs)
            or any(_has_sequence_ops(g) for g in graphs)
            or any(_is_listlike(v.type) for g in graphs for v in list(g.input) + list(g.output)))


def _sequence_values(graph: onnx.GraphProto, outer: set[str] | None = None) -> set[str] | None:
    """The names of the sequence (and optional) values the nodes make, also inside the Loops and Ifs that carry or
    return them (`outer`: those the enclosing graph tracks); None when one is used where this rewrite cannot follow."""
    sequences: set[str] = set(outer or ())
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        op, first = node.op_type, (node.input[0] if node.input else "")
        if op in BUILDERS or (op in ("Identity", "Optional", "OptionalGetElement") and first in sequences):
            sequences.add(node.output[0])
        elif op == "Optional" and not first:  # an absent optional (frontend/boundary.py keeps one a Loop reads)
            sequences.add(node.output[0])
        elif op in CONTROL and _involves(node, sequences):
            for sub in subgraphs(node):
                local = {v.name for v in sub.input if _is_listlike(v.type)}
                if op == "Loop":
                    local |= {v.name for v, given in zip(sub.input[2:], node.input[2:]) if given in sequences}
                inner = _sequence_values(sub, sequences | local)
                if inner is None:
                    return None
                sequences |= inner
                offset = 1 if op == "Loop" else 0  # a Loop body's first output is its condition
                for out, value in zip(node.output, sub.output[offset:]):
                    if out and (value.name in inner or _is_listlike(value.type)):
                        sequences.add(out)
            if op == "Loop":
                sequences.update(out for out, given in zip(node.output, node.input[2:]) if out and given in sequences)
    for node in graph.node:
        reads = [name for name in node.input if name in sequences]
        default = node.domain in ("", "ai.onnx")
        if reads and (not default or node.op_type not in READERS | CONTROL | OPTIONAL_OPS):
            return None
        if not (default and node.op_type in CONTROL) and any(deep_reads(g) & sequences for g in subgraphs(node)):
            return None  # a subgraph of another op that captures a sequence
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
        self.absent: set[str] = set()  # optionals known to be absent
        self.bound: set[str] = set()  # tensors a rewritten Loop / If returns
        self.taken = names_in(self.graph) | {n.name for n in self.graph.node}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def where(self, node: onnx.NodeProto) -> str:
        return f"{self.path}: node '{node.name}' ({node.op_type})"

    def i64(self, node: onnx.NodeProto, value, hint: str) -> str:
        name = f"{node.name}/{hint}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def position(self, node: onnx.NodeProto, index: int, length: int, default: int, insert: bool = False) -> int:
        name, value = self.given_scalar(node, index)
        if not name:
            return default
        if value is None:
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

    def rewrite(self) -> None:
        for index, node in enumerate(self.graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{index}"
            self.visit(node)

    def visit(self, node: onnx.NodeProto) -> None:
        """Track or rewrite one node (of the graph, or a copy from an unrolled Loop body or an inlined If branch)."""
        lists, absent = self.lists, self.absent
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        first = node.input[0] if node.input else ""
        if op == "SequenceEmpty":
            lists[node.output[0]] = []
        elif op == "SequenceConstruct":
            lists[node.output[0]] = list(node.input)
        elif op in ("Identity", "Optional", "OptionalGetElement") and first in lists:
            lists[node.output[0]] = list(lists[first])
        elif (op == "Identity" and first in absent) or (op == "Optional" and not first):
            absent.add(node.output[0])
        elif op == "OptionalGetElement" and first in absent:
            raise HccError(f"{self.where(node)}: the optional '{first}' it reads is absent")
        elif op == "OptionalHasElement" and (not first or first in lists or first in absent):
            present = np.asarray(bool(first) and first not in absent)
            self.constants[node.output[0]] = present
            self.add("Constant", [], node.output[0], node.name, value=numpy_helper.from_array(present, node.output[0]))
        elif op == "SequenceInsert":
            items = list(lists[first])
            items.insert(self.position(node, 2, len(items), len(items), insert=True), node.input[1])
            lists[node.output[0]] = items
        elif op == "SequenceErase":
            items = list(lists[first])
            if not items:
                raise HccError(f"{self.where(node)}: erasing from an empty sequence")
            del items[self.position(node, 1, len(items), len(items) - 1)]
            lists[node.output[0]] = items
        elif op == "SplitToSequence":
            lists[node.output[0]] = self.split(node)
        elif op == "SequenceAt":
            items = lists[first]
            if not items:
                raise HccError(f"{self.where(node)}: reading from an empty sequence")
            self.add("Identity", [items[self.position(node, 1, len(items), 0)]], node.output[0], node.name)
        elif op == "SequenceLength":
            length = np.asarray(len(lists[first]), np.int64)
            self.constants[node.output[0]] = length
            self.add("Constant", [], node.output[0], node.name, value=numpy_helper.from_array(length, node.output[0]))
        elif op == "ConcatFromSequence":
            self.concat(node, lists[first])
        elif op == "Loop" and _involves(node, set(lists) | absent):
            self.unroll(node)
        elif op == "If" and _involves(node, set(lists) | absent):
            self.branch(node)
        else:
            if op == "Constant" and node.attribute and node.attribute[0].name == "value":  # a copied body's positions
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            if op in ("Not", "Identity") and first in self.constants:  # an If's condition, from OptionalHasElement
                value = self.constants[first]
                self.constants[node.output[0]] = np.logical_not(value) if op == "Not" else value
            self.nodes.append(node)

    def given_scalar(self, node: onnx.NodeProto, index: int) -> tuple[str, np.ndarray | None]:
        """(name, its compile-time scalar value or None) of input `index` of `node`; ("", None) when not given."""
        name = node.input[index] if len(node.input) > index else ""
        value = self.constants.get(name) if name else None
        return name, (value if value is not None and value.size == 1 else None)

    def scalar(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """Input `index` of `node` as a compile-time scalar (None when not given); refused when only known at run time."""
        name, value = self.given_scalar(node, index)
        if not name:
            return None
        if value is None:
            raise HccError(f"{self.where(node)}: its {what} '{name}' is not known at compile time; a {node.op_type} that "
                           "carries, reads or returns a sequence or an optional is compiled by unrolling (inlining) it, "
                           "so that every sequence position is known when the model is compiled")
        return value.reshape(-1)[0]

    def unroll(self, node: onnx.NodeProto) -> None:
        """A Loop of a compile-time trip count whose body never ends it early: one copy of the body per iteration
        (as frontend/unroll.py does for tensor loops), the copies visited like any node, so that a carried sequence
        is a list of known positions at every iteration (SequenceMap's function body is such a Loop)."""
        body = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "body")
        trip, cond = self.scalar(node, 0, "trip count"), self.scalar(node, 1, "condition")
        if trip is None:
            raise HccError(f"{self.where(node)}: it has no trip count (a while loop); a Loop that carries a sequence "
                           "is compiled by unrolling it, for a trip count known at compile time")
        if not always_true(body):
            raise HccError(f"{self.where(node)}: its body computes its condition (it may end early at run time); a "
                           "Loop that carries a sequence is compiled by unrolling it")
        steps = int(trip) if cond is None or bool(cond) else 0
        n = len(node.input) - 2
        k = len(body.output) - 1 - n
        if max(steps, 0) * len(body.node) > MAX_UNROLLED_NODES:
            raise HccError(f"{self.where(node)}: unrolling its {steps} iterations gives more than {MAX_UNROLLED_NODES} "
                           "nodes; a Loop that carries a sequence is compiled by unrolling it")
        if steps <= 0 and k:
            raise HccError(f"{self.where(node)}: 0 iterations, so its scan outputs are empty; hcc compiles no empty tensors")
        hoisted = {}
        for init in body.initializer:
            hoisted[init.name] = self.fresh(f"{node.name}/{init.name}")
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = hoisted[init.name]
            self.inits.append(copy)
            self.constants[copy.name] = numpy_helper.to_array(copy)
        carried = list(node.input[2:])
        scanned: list[list[str]] = [[] for _ in range(k)]
        true = self.constant(np.asarray(True), f"{node.name}/cond")
        for t in range(max(steps, 0)):
            names = dict(hoisted)
            names[body.input[0].name] = self.constant(np.asarray(t, np.int64), f"{node.name}/iteration_{t}")
            names[body.input[1].name] = true
            names.update(zip([v.name for v in body.input[2:]], carried))
            outputs = self.inline(body, names, f"{node.name}/it{t}", f"__it{t}")
            carried = outputs[1:1 + n]
            for i in range(k):
                scanned[i].append(outputs[1 + n + i])
        for out, value in zip(node.output[:n], carried):
            if out:
                self.bind(out, value, node)
        for i, out in enumerate(node.output[n:n + k]):
            if out:
                pieces = []
                for t, value in enumerate(scanned[i]):
                    pieces.append(self.fresh(f"{value}__stacked"))
                    self.axes_op("Unsqueeze", node, value, 0, pieces[-1], self.fresh(f"{node.name}/stack{t}"))
                self.add("Concat", pieces, out, self.fresh(f"{node.name}/concat"), axis=0)

    def branch(self, node: onnx.NodeProto) -> None:
        """An If whose condition is known at compile time (a constant, or computed from an OptionalHasElement that
        this rewrite decided) as its taken branch; one that chooses a sequence or optional at run time is refused."""
        condition = self.constants.get(node.input[0])
        if condition is None:
            raise HccError(f"{self.where(node)}: its condition '{node.input[0]}' is only known at run time, and its "
                           "branches make, read or return a sequence or an optional; hcc compiles sequences and "
                           "optionals whose every element and presence is known when the model is compiled")
        taken = "then_branch" if bool(np.asarray(condition).reshape(-1)[0]) else "else_branch"
        graph = next(helper.get_attribute_value(a) for a in node.attribute if a.name == taken)
        for init in graph.initializer:
            self.inits.append(init)
            self.constants[init.name] = numpy_helper.to_array(init)
        outputs = self.inline(graph, {}, f"{node.name}/{taken}", "")
        for out, value in zip(node.output, outputs):
            if out:
                self.bind(out, value, node)

    def inline(self, graph: onnx.GraphProto, names: dict[str, str], prefix: str, suffix: str) -> list[str]:
        """The nodes of a Loop body / If branch copied with fresh value and node names (`names`: the bound inputs
        and the copies' values so far; values read from outer scopes keep theirs, also inside nested subgraphs)
        and visited in order; returns the values of the graph's outputs."""
        for inner in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            copy.input[:] = [names.get(name, name) for name in inner.input]
            for sub in subgraphs(copy):
                _rename_reads(sub, names)
            for k, out in enumerate(inner.output):
                if out:
                    names[out] = self.fresh(f"{out}{suffix}")
                    copy.output[k] = names[out]
            copy.name = self.fresh(f"{prefix}/{inner.name or inner.op_type}")
            self.visit(copy)
        return [names.get(v.name, v.name) for v in graph.output]

    def bind(self, out: str, value: str, node: onnx.NodeProto) -> None:
        """`out` (a Loop's or If's output) takes `value`: its list, its absence, or the tensor (an Identity)."""
        if value in self.lists:
            self.lists[out] = list(self.lists[value])
        elif value in self.absent:
            self.absent.add(out)
        else:
            if value in self.constants:
                self.constants[out] = self.constants[value]
            self.bound.add(out)
            self.add("Identity", [value], out, self.fresh(f"{node.name}/{out}"))

    def fresh(self, base: str) -> str:
        return fresh_name(base, self.taken)

    def constant(self, value: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name


def _rename_reads(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """In place: the outer values a subgraph (and its nested ones) reads, renamed as `names` says."""
    local = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    for node in graph.node:
        node.input[:] = [names.get(name, name) if name not in local else name for name in node.input]
        for sub in subgraphs(node):
            _rename_reads(sub, {k: v for k, v in names.items() if k not in local})
    for value in graph.output:  # a branch may return an outer value directly
        if value.name not in local and value.name in names:
            value.name = names[value.name]


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


def _resolve_optional_outputs(result: onnx.ModelProto, rewriter: _Rewriter, boundary: Boundary) -> None:
    """Optional graph outputs whose presence the rewrite decided (an inlined If's, an unrolled Loop's), in place: an
    absent one is dropped, a present one takes its element's type (a sequence's, flattened next); both are recorded
    in `boundary.optional_outputs` (frontend/boundary.py resolved those known before)."""
    graph = result.graph
    kept = []
    for value in graph.output:
        decided = value.name in rewriter.absent or value.name in rewriter.lists or value.name in rewriter.bound
        if not value.type.HasField("optional_type") or not decided:
            kept.append(value)
            continue
        boundary.optional_outputs[value.name] = value.name not in rewriter.absent
        if value.name not in rewriter.absent:
            flat = onnx.ValueInfoProto()
            flat.name = value.name
            flat.type.CopyFrom(value.type.optional_type.elem_type)
            kept.append(flat)
    del graph.output[:]
    graph.output.extend(kept)


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
    if any(v.type.HasField("sequence_type") or v.type.HasField("optional_type") for v in graph.input):
        return model
    sequences = _sequence_values(graph)
    if not sequences:
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
    rewriter.rewrite()
    del result.graph.node[:]
    result.graph.node.extend(rewriter.nodes)
    result.graph.initializer.extend(rewriter.inits)
    if boundary is not None:
        _resolve_optional_outputs(result, rewriter, boundary)
    for output in result.graph.output:
        if output.name in rewriter.absent:
            raise HccError(f"{path}: output '{output.name}' is an absent optional here, where the model declares a "
                           f"{output.type.WhichOneof('value').replace('_type', '')} (e.g. a Loop of 0 iterations that "
                           "carries an absent optional); hcc compiles outputs whose value exists at compile time")
    if boundary is not None:
        _flatten_outputs(result, rewriter.lists, {o.name for o in graph.output if o.name in sequences}, boundary)
    kept = [v for v in result.graph.value_info if v.name not in sequences]
    del result.graph.value_info[:]
    result.graph.value_info.extend(kept)
    return result
