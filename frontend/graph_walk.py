"""Walks over an ONNX graph and the subgraphs nested in its nodes (If branches, Loop and Scan bodies): the few
questions several frontend rewrites ask, answered in one place."""
from __future__ import annotations

import onnx


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held by `node`'s attributes (GRAPH and GRAPHS), in attribute order."""
    found: list[onnx.GraphProto] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            found.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            found.extend(attr.graphs)
    return found


def deep_reads(graph: onnx.GraphProto) -> set[str]:
    """Every name the nodes of `graph` and of its nested subgraphs read (captured outer values among them)."""
    names = {name for node in graph.node for name in node.input}
    for node in graph.node:
        for sub in subgraphs(node):
            names |= deep_reads(sub)
    return names


def names_in(graph: onnx.GraphProto) -> set[str]:
    """Every name `graph` and its nested subgraphs declare or define (inputs, outputs, value_info, initializers,
    node outputs): a fresh name must avoid them all."""
    names = {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.output)
        for sub in subgraphs(node):
            names |= names_in(sub)
    return names
