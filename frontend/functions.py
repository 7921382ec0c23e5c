"""Ops that ONNX defines by a function body (Attention, RMSNormalization, NegativeLogLikelihoodLoss, Swish, ...),
expanded into the body's nodes when hcc has no native lowering for them.

Why: ONNX specifies these ops *as* a graph of simpler ops (`schema.function_body`, or for a body that depends on
the node's attributes and input types, `schema.get_context_dependent_function`): the expansion is the op's
definition, so compiling the body gives the op's semantics without a hand-written lowering. It runs on the model
as written, before the opset conversion (frontend/ops.py), because ops added after opset 22 (Attention,
RMSNormalization, Swish) have bodies made of ops that opset 22 has, while the ops themselves cannot be converted.

A body is written at its own opset (the function's version, in `FunctionProto.opset_import`); when one of its ops
changed between that opset and the model's, the expanded nodes are converted to the model's opset with onnx's
version converter (refused cleanly where it cannot). Bodies may use ops that are themselves functions: expansion
repeats, at most MAX_DEPTH rounds. Expanded nodes are named `<node>/<op_type>_<k>` and their values
`<node>/<value>`, so any later error names the node they came from; `expand_functions` returns what it expanded,
for the compile's notes.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx
from onnx import helper, shape_inference

from hcc.errors import HccError
from hcc.frontend.graph_walk import subgraphs

MAX_DEPTH = 4  # rounds of expansion (a body's op that is itself a function: SoftmaxCrossEntropyLoss -> NLL loss)
# Domains whose function ops are expanded ("" is ai.onnx); a body's own nodes must be in the default domain.
DOMAINS = ("", "ai.onnx.preview")


@dataclass(frozen=True)
class Expansion:
    """One node replaced by its op's function body."""

    node: str
    op_type: str
    opset: int  # the version of the function body used
    nodes: int  # how many nodes replaced it

    def note(self) -> str:
        return f"node '{self.node}' ({self.op_type}) expanded into its ONNX function body (opset {self.opset}, {self.nodes} nodes)"


def expand_functions(model: onnx.ModelProto, path: str, native: frozenset[str]) -> tuple[onnx.ModelProto, list[Expansion]]:
    """`model` with every default-domain node whose op is not in `native` but has a function body at the model's
    opset replaced by that body (a copy when anything changed); and the expansions made."""
    opsets = {("" if imp.domain == "ai.onnx" else imp.domain): imp.version for imp in model.opset_import}
    opset = opsets.get("")
    if opset is None or not any(_expandable(n, native, opsets) for n in model.graph.node):
        return model, []
    model = onnx.ModelProto.FromString(model.SerializeToString())
    done: list[Expansion] = []
    for _ in range(MAX_DEPTH):
        if not any(_expandable(n, native, opsets) for n in model.graph.node):
            return model, done
        types = _value_types(model)
        taken = _taken_names(model)
        nodes: list[onnx.NodeProto] = []
        for index, node in enumerate(model.graph.node):
            if not _expandable(node, native, opsets):
                nodes.append(node)
                continue
            name = node.name or f"{node.op_type}_{index}"
            schema = _node_schema(node, opsets)
            body, body_opset = _body(node, name, schema, opsets, types, path)
            expanded = _instantiate(node, name, body, schema, taken, path)
            if body_opset != opset and _changed_ops(expanded, body_opset, opset):
                expanded = _convert(expanded, name, node.op_type, body_opset, opset, types, path)
            nodes.extend(expanded)
            done.append(Expansion(name, _key(node), body_opset, len(expanded)))
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    left = sorted({f"'{n.name}' ({_key(n)})" for n in model.graph.node if _expandable(n, native, opsets)})
    raise HccError(f"{path}: function bodies still contain function ops after {MAX_DEPTH} rounds of expansion: {', '.join(left)}")


def _domain(node: onnx.NodeProto) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def _key(node: onnx.NodeProto) -> str:
    """The op as SUPPORTED_OPS names it (`domain.Op` outside the default domain)."""
    return node.op_type if not _domain(node) else f"{node.domain}.{node.op_type}"


def _node_schema(node: onnx.NodeProto, opsets: dict[str, int]) -> onnx.defs.OpSchema | None:
    domain = _domain(node)
    if domain not in DOMAINS or domain not in opsets:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opsets[domain], domain)
    except onnx.defs.SchemaError:
        return None


def _expandable(node: onnx.NodeProto, native: frozenset[str], opsets: dict[str, int]) -> bool:
    if _key(node) in native:
        return False
    schema = _node_schema(node, opsets)
    return schema is not None and bool(_versions(schema, opsets[_domain(node)]))


def _schema(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _versions(schema: onnx.defs.OpSchema, opset: int) -> list[tuple[int, bool]]:
    """(version, context-dependent?) of the schema's function bodies usable at `opset`, newest last."""
    found = [(v, False) for v in schema.function_opset_versions if v <= opset]
    found += [(v, True) for v in schema.context_dependent_function_opset_versions if v <= opset]
    return sorted(found)


def _body(node: onnx.NodeProto, name: str, schema: onnx.defs.OpSchema, opsets: dict[str, int],
          types: dict[str, onnx.TypeProto], path: str) -> tuple[onnx.FunctionProto, int]:
    """The function body of `node`'s op for the model's opset of its domain, and the default opset it is written at."""
    version, context_dependent = _versions(schema, opsets[_domain(node)])[-1]
    if not context_dependent:
        body = onnx.FunctionProto.FromString(schema.get_function_with_opset_version(version))
    else:
        missing = [i for i in node.input if i and i not in types]
        if missing:
            raise HccError(f"{path}: node '{name}' ({node.op_type}): the type of input '{missing[0]}' is unknown, "
                           "and the op's function body depends on its input types")
        input_types = [(types[i] if i else onnx.TypeProto()).SerializeToString() for i in node.input]
        try:
            data = schema.get_context_dependent_function_with_opset_version(version, node.SerializeToString(), input_types)
        except Exception as exc:  # onnx raises for attribute/type combinations its function builder rejects
            raise HccError(f"{path}: node '{name}' ({node.op_type}): onnx cannot build its function body: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        body = onnx.FunctionProto.FromString(data)
    for imp in body.opset_import:
        if imp.domain not in ("", "ai.onnx", node.domain):
            raise HccError(f"{path}: node '{name}' ({node.op_type}): its function body uses domain '{imp.domain}', "
                           "which hcc does not expand")
    written_at = version if not _domain(node) else opsets[""]  # when the body declares no default opset
    body_opset = next((imp.version for imp in body.opset_import if imp.domain in ("", "ai.onnx")), written_at)
    return body, body_opset


def _instantiate(node: onnx.NodeProto, name: str, body: onnx.FunctionProto, schema: onnx.defs.OpSchema,
                 taken: set[str], path: str) -> list[onnx.NodeProto]:
    """The body's nodes wired to `node`'s inputs and outputs, attribute references resolved, names made fresh."""
    for inner in body.node:
        if inner.domain not in ("", "ai.onnx"):
            raise HccError(f"{path}: node '{name}' ({node.op_type}): its function body has a node of domain "
                           f"'{inner.domain}' ({inner.op_type}), which hcc does not expand")
    renamer = _Renamer(name, taken, _attributes(node, body, schema))
    for index, formal in enumerate(body.input):
        renamer.names[formal] = node.input[index] if index < len(node.input) else ""
    for index, formal in enumerate(body.output):
        if index < len(node.output) and node.output[index]:
            renamer.names[formal] = node.output[index]
    defined = set(body.input) | set(body.output) | _defined(body.node)
    for outer in _read(body.node) - defined:  # a subgraph attribute's capture of the model's value (SequenceMap's
        renamer.names.setdefault(outer, outer)  # body reading an outer tensor): not the body's, so not renamed
    return [renamer.node(inner, k) for k, inner in enumerate(body.node)]


def _defined(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """The values `nodes` and their subgraphs define (outputs, subgraph inputs and initializers)."""
    names = {o for n in nodes for o in n.output}
    for node in nodes:
        for sub in subgraphs(node):
            names |= {v.name for v in sub.input} | {i.name for i in sub.initializer} | _defined(sub.node)
    return names


def _read(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """The values `nodes` and their subgraphs read."""
    names = {i for n in nodes for i in n.input if i}
    for node in nodes:
        for sub in subgraphs(node):
            names |= _read(sub.node) | {v.name for v in sub.output}
    return names


@dataclass
class _Renamer:
    """Copies body nodes (and the subgraphs of their If/Loop attributes) into the model's namespace: ONNX names are
    unique across a graph and its subgraphs, so one map serves every level."""

    prefix: str
    taken: set[str]
    attributes: dict[str, onnx.AttributeProto]
    names: dict[str, str] = field(default_factory=lambda: {"": ""})

    def value(self, formal: str) -> str:
        if formal not in self.names:
            self.names[formal] = _fresh(f"{self.prefix}/{formal}", self.taken)
        return self.names[formal]

    def node(self, inner: onnx.NodeProto, k: int) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.op_type, new.domain = inner.op_type, inner.domain
        new.name = _fresh(f"{self.prefix}/{inner.op_type}_{k}", self.taken)
        new.input.extend(self.value(i) for i in inner.input)
        new.output.extend(self.value(o) for o in inner.output)
        for attr in inner.attribute:
            if attr.ref_attr_name:
                if attr.ref_attr_name in self.attributes:  # else unset: the inner op's default applies
                    resolved = onnx.AttributeProto()
                    resolved.CopyFrom(self.attributes[attr.ref_attr_name])
                    resolved.name = attr.name
                    new.attribute.append(resolved)
                continue
            copied = onnx.AttributeProto()
            copied.CopyFrom(attr)
            if attr.type == onnx.AttributeProto.GRAPH:
                copied.g.CopyFrom(self.graph(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                del copied.graphs[:]
                copied.graphs.extend(self.graph(g) for g in attr.graphs)
            new.attribute.append(copied)
        return new

    def graph(self, graph: onnx.GraphProto) -> onnx.GraphProto:
        new = onnx.GraphProto()
        new.CopyFrom(graph)
        for value in list(new.input) + list(new.output) + list(new.value_info):
            value.name = self.value(value.name)
        for init in new.initializer:
            init.name = self.value(init.name)
        del new.node[:]
        new.node.extend(self.node(inner, k) for k, inner in enumerate(graph.node))
        return new


def _attributes(node: onnx.NodeProto, body: onnx.FunctionProto, schema: onnx.defs.OpSchema) -> dict[str, onnx.AttributeProto]:
    """The node's attributes, with the body's and the schema's defaults for those it does not set."""
    attributes = {a.name: a for a in node.attribute}
    for default in body.attribute_proto:
        attributes.setdefault(default.name, default)
    for attr_name, attr in schema.attributes.items():
        if attr_name not in attributes and attr.default_value.name:
            attributes[attr_name] = attr.default_value
    return attributes


def _changed_ops(nodes: list[onnx.NodeProto], old: int, new: int) -> bool:
    """Whether an op of `nodes` has another definition at opset `new` than at `old`."""
    for node in nodes:
        before, after = _schema(node.op_type, old), _schema(node.op_type, new)
        if before is None or after is None or before.since_version != after.since_version:
            return True
    return False


def _convert(nodes: list[onnx.NodeProto], name: str, op_type: str, old: int, new: int,
             types: dict[str, onnx.TypeProto], path: str) -> list[onnx.NodeProto]:
    """`nodes`, written at opset `old`, converted to opset `new` with onnx's version converter."""
    from onnx import version_converter

    produced = {o for n in nodes for o in n.output if o}
    consumed = list(dict.fromkeys(i for n in nodes for i in n.input if i and i not in produced))
    inputs = [helper.make_value_info(i, types.get(i, onnx.TypeProto())) for i in consumed]
    outputs = [helper.make_value_info(o, types.get(o, onnx.TypeProto())) for o in produced]
    graph = helper.make_graph(nodes, f"{name}_body", inputs, outputs)
    snippet = helper.make_model(graph, opset_imports=[helper.make_opsetid("", old)])
    try:
        converted = version_converter.convert_version(snippet, new)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HccError(f"{path}: node '{name}' ({op_type}): its function body (opset {old}) cannot be converted to "
                       f"the model's opset {new}: {reason}") from None
    return list(converted.graph.node)


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Every value's type that onnx's shape inference finds (what context-dependent bodies are built from)."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # the loader's strict inference reports a broken graph later, with its own message
        inferred = model
    graph = inferred.graph
    types = {v.name: v.type for v in list(graph.input) + list(graph.value_info) + list(graph.output)
             if v.type.WhichOneof("value") is not None}
    for init in graph.initializer:
        types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type, list(init.dims)))
    return types


def _taken_names(model: onnx.ModelProto) -> set[str]:
    taken = {v.name for v in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)}
    taken.update(init.name for init in model.graph.initializer)
    for node in model.graph.node:
        taken.add(node.name)
        taken.update(node.input)
        taken.update(node.output)
    return taken


def _fresh(base: str, taken: set[str]) -> str:
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    taken.add(name)
    return name
