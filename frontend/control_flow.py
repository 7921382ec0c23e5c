"""Control flow decided at compile time: an `If` whose condition folding has made a constant is replaced by the
nodes of the branch it takes.

Why: exporters write `If` for decisions that depend only on shapes or constants (a batch of one, a sample rate
fixed by an initializer); after shape inference and constant folding (frontend/fold.py) the condition is a
known scalar, and the branch is plain tensor code that the rest of the pipeline compiles like any other.

An `If` whose condition still depends on an input at run time, and a `Loop` that frontend/unroll.py could not unroll
(a run-time trip count, an early exit), become host-side control flow when the caller can compile it: the driver
(`hcc.compile`) splits the graph into steps (frontend/segments.py, docs/control-flow.md) and says so by loading the
model inside `runtime_control_flow()`. Elsewhere (`hcc plan`, tools that need one tensor program), and always for a
`Scan` that is not static, `check_control_flow` refuses them by name with the reason.

ONNX names are unique across a graph and all its subgraphs, so a branch's nodes move into the main graph under
their own output names; the branch's outputs reach the `If`'s outputs through Identity nodes, and the branch's
initializers become the model's. Nested `If`s become top-level nodes and are decided in the next round.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.unroll import why_not_unrolled
from hcc.runtime.host_ops import HOST_OPS

CONTROL_FLOW = ("If", "Loop", "Scan")
RUNTIME_CONTROL_FLOW = ("If", "Loop")  # what the driver turns into program steps (Scan: static lengths only, unrolled)
HOST_STEP_OPS = tuple(HOST_OPS)  # ops of value-dependent output shapes: program steps the runtime runs with numpy

_runtime_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("hcc_runtime_control_flow", default=False)


@contextlib.contextmanager
def runtime_control_flow() -> Iterator[None]:
    """Within this block the loader leaves a run-time If/Loop in the graph instead of refusing it: the caller (the
    driver) compiles each into a program step."""
    token = _runtime_allowed.set(True)
    try:
        yield
    finally:
        _runtime_allowed.reset(token)


def runtime_control_flow_allowed() -> bool:
    return _runtime_allowed.get()


def is_runtime_control_flow(node: onnx.NodeProto) -> bool:
    """A top-level If or Loop left after folding and unrolling (its decision is only known at run time), or an op
    whose output shape depends on input values (runtime/host_ops.py), left after folding: a program step."""
    return (node.op_type in RUNTIME_CONTROL_FLOW or is_host_op(node)) and node.domain in ("", "ai.onnx")


def is_host_op(node: onnx.NodeProto) -> bool:
    """NonMaxSuppression, Unique, NonZero: the runtime runs them on the host (runtime/host_ops.py)."""
    return node.op_type in HOST_STEP_OPS and node.domain in ("", "ai.onnx")


def inline_known_ifs(model: onnx.ModelProto) -> int:
    """Replace, in place, every top-level `If` with a constant condition by its taken branch; returns how many."""
    inlined = 0
    while True:
        constants = {init.name: init for init in model.graph.initializer}
        index = next((i for i, node in enumerate(model.graph.node) if _is_decided(node, constants)), None)
        if index is None:
            return inlined
        _inline(model, index, constants)
        inlined += 1


def _is_decided(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> bool:
    return node.op_type == "If" and node.domain in ("", "ai.onnx") and node.input[0] in constants


def _inline(model: onnx.ModelProto, index: int, constants: dict[str, onnx.TensorProto]) -> None:
    node = model.graph.node[index]
    condition = numpy_helper.to_array(constants[node.input[0]])
    if condition.size != 1:
        raise HccError(f"node '{node.name}' (If): its condition has {condition.size} elements; ONNX requires one")
    taken = "then_branch" if bool(np.asarray(condition).reshape(-1)[0]) else "else_branch"
    branch = next(helper.get_attribute_value(a) for a in node.attribute if a.name == taken)
    if len(branch.output) != len(node.output):
        raise HccError(f"node '{node.name}' (If): its {taken} has {len(branch.output)} outputs, the node {len(node.output)}")
    replacement = list(branch.node)
    for inner in replacement:  # keep names unique and say where the node came from
        inner.name = f"{node.name}/{taken}/{inner.name or inner.op_type}"
    for branch_out, out in zip(branch.output, node.output):
        if out:
            replacement.append(helper.make_node("Identity", [branch_out.name], [out], name=f"{node.name}/{taken}/{out}"))
    model.graph.initializer.extend(branch.initializer)
    model.graph.value_info.extend(branch.value_info)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes[:index] + replacement + nodes[index + 1:])


def check_control_flow(model: onnx.ModelProto, path: str) -> None:
    """Refuse, naming every node, the control flow left after folding: If on a run-time condition, Loop, Scan."""
    left = [node for node in model.graph.node if node.op_type in CONTROL_FLOW and node.domain in ("", "ai.onnx")]
    if runtime_control_flow_allowed():
        left = [node for node in left if not is_runtime_control_flow(node)]
    if not left:
        return
    producers = {out: node for node in model.graph.node for out in node.output}
    inputs = {value.name for value in model.graph.input} - {init.name for init in model.graph.initializer}
    lines = []
    for node in left:
        if node.op_type == "If":
            sources = sorted(_graph_inputs_behind(node.input[0], producers, inputs))
            origin = f"computed from input(s) {', '.join(repr(s) for s in sources)}" if sources else "not a constant after folding"
            lines.append(f"  '{node.name}' (If): its condition is only known at run time ({origin})")
        else:
            lines.append(f"  '{node.name}' ({node.op_type}): {why_not_unrolled(node, model)}")
    if runtime_control_flow_allowed():
        raise HccError(f"{path}: {len(left)} control-flow node(s) hcc cannot compile:\n" + "\n".join(lines),
                       hint="hcc unrolls a Scan of static length; fix the scanned input's shape (--input-shape), or export "
                            "the model for one fixed case")
    raise HccError(f"{path}: {len(left)} control-flow node(s) decided only at run time, which here would need a constant:\n"
                   + "\n".join(lines),
                   hint="`hcc compile` runs such If and Loop nodes as host-side branches and loops (docs/control-flow.md, CPU "
                        "only); everything else needs the condition or trip count to fold to a constant (from shapes and "
                        "initializers): make those inputs initializers, or export the model for one fixed case")


def _graph_inputs_behind(name: str, producers: dict[str, onnx.NodeProto], inputs: set[str]) -> set[str]:
    found, stack, seen = set(), [name], set()
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        if value in inputs:
            found.add(value)
        elif value in producers:
            stack.extend(i for i in producers[value].input if i)
    return found
