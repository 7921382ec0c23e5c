"""Split a graph at its run-time `If` / `Loop` nodes, and make standalone ONNX models of the pieces.

Why: hcc compiles static tensor programs; a decision only known at run time stays on the host (as onnxruntime's
If/Loop kernels keep it), and everything between decisions, each If branch and each Loop body is plain tensor code
the existing pipeline compiles. The driver (driver.py, `_build_block`) turns what this module cuts into a program
(artifacts/manifest.ProgramRecord, docs/control-flow.md). Graph surgery only: no compiling, no golden data.

A *segment* is a maximal run of nodes between control-flow nodes (the graph is in topological order, as ONNX
requires). Its inputs are the names it reads that it does not compute and that are not initializers (those it
carries itself); its outputs are the names it computes that a later step or the graph's outputs read. A subgraph
(branch, body) reads its enclosing scopes by name: those *free names* become inputs of its standalone model, or
initializers when the enclosing graph holds them as constants.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from hcc.frontend.control_flow import is_runtime_control_flow
from hcc.frontend.graph_walk import subgraphs


@dataclass
class Segment:
    """Plain nodes between two control-flow nodes, in graph order."""

    nodes: list[onnx.NodeProto]


@dataclass
class Control:
    """One run-time If or Loop node."""

    node: onnx.NodeProto


def free_names(graph: onnx.GraphProto) -> list[str]:
    """Names the graph (its nodes, nested subgraphs and outputs) reads from enclosing scopes, in first-use order."""
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    found: list[str] = []
    for node in graph.node:
        for name in reads(node):
            if name not in defined and name not in found:
                found.append(name)
        defined.update(o for o in node.output if o)
    for out in graph.output:
        if out.name not in defined and out.name not in found:
            found.append(out.name)
    return found


def reads(node: onnx.NodeProto) -> list[str]:
    """Every name a node reads: its inputs, then what its subgraphs read from the scope around the node."""
    names = [n for n in node.input if n]
    for sub in subgraphs(node):
        names += [n for n in free_names(sub) if n not in names]
    return names


def split_steps(graph: onnx.GraphProto) -> list[Segment | Control]:
    """The graph's nodes as segments and run-time control-flow nodes, in order."""
    steps: list[Segment | Control] = []
    for node in graph.node:
        if is_runtime_control_flow(node):
            steps.append(Control(node))
        elif steps and isinstance(steps[-1], Segment):
            steps[-1].nodes.append(node)
        else:
            steps.append(Segment([node]))
    return steps


def needed_after(steps: list[Segment | Control], graph: onnx.GraphProto) -> list[set[str]]:
    """Per step, the names a later step or the graph's outputs read."""
    needed = {o.name for o in graph.output}
    result: list[set[str]] = [set() for _ in steps]
    for i in range(len(steps) - 1, -1, -1):
        result[i] = set(needed)
        step = steps[i]
        for node in (step.nodes if isinstance(step, Segment) else [step.node]):
            needed.update(reads(node))
    return result


def segment_io(segment: Segment, constants: set[str], needed: set[str]) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a segment: what it reads from outside (constants excluded) and what is read after it."""
    defined: list[str] = []
    inputs: list[str] = []
    for node in segment.nodes:
        for name in reads(node):
            if name not in defined and name not in constants and name not in inputs:
                inputs.append(name)
        defined += [o for o in node.output if o]
    return inputs, [n for n in defined if n in needed]


def value_info(name: str, elem_type: int, shape: list[int] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def standalone_model(parent: onnx.ModelProto, name: str, nodes, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
                     initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A model of `nodes` with the parent's opsets, IR version and functions (so it loads and checks on its own)."""
    graph = helper.make_graph(list(nodes), name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=list(parent.opset_import))
    model.ir_version = parent.ir_version
    model.functions.extend(parent.functions)
    return model
