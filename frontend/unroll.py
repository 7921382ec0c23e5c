"""Loops whose trip count is known at compile time: a `Scan` over a tensor of static length, and a `Loop` whose trip
count folds to a constant and whose condition can never end it early, are replaced by one copy of their body per
iteration.

Why: exporters write Scan for recurrences over a sequence (the LinearAttention function body, RNN-like cells) and
Loop for counted iterations; with static shapes (hcc compiles for concrete shapes) the iteration count is a number,
and the unrolled body is plain tensor code the rest of the pipeline compiles like any other. hcc generates no
data-dependent loops, so a Loop whose trip count is only known at run time, or whose condition the body computes (an
early exit), stays refused by name (frontend/control_flow.check_control_flow says why).

Each iteration's copy names its values `<value>__it<t>` (fresh, unique), its nodes `<loop node>/it<t>/<node>`; the
body's initializers become the model's once; values the body reads from the outer scope keep their names. A Scan
iteration reads its slice of each scan input with a Gather at index t (T-1-t for a reverse direction); the per-
iteration scan outputs are stacked with Unsqueeze + Concat along their axis (reversed for a reverse direction). A
Loop's iteration number and condition are constants per copy. Bodies with nested subgraphs (an If inside a loop),
and more than MAX_UNROLLED_NODES nodes of unrolled code, are refused, or, when the driver compiles run-time control
flow (control_flow.runtime_control_flow), a Loop of that kind is left for it to run as a real loop.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.attributes import attr_value
from hcc.frontend.graph_walk import names_in
from hcc.frontend.names import fresh_name


def runtime_control_flow_allowed() -> bool:
    from hcc.frontend.control_flow import runtime_control_flow_allowed as allowed  # control_flow imports this module

    return allowed()

def _map_scan(g: "_Graph", node: onnx.NodeProto, path: str) -> list[onnx.NodeProto] | None:
    from hcc.frontend.scan_map import map_scan  # scan_map imports this module

    return map_scan(g, node, path)


MAX_UNROLLED_NODES = 20000  # iterations x body nodes: beyond this the unrolled model would be too large to compile


class _Graph:
    """What unrolling needs to know about the main graph: shapes, constants, taken names."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.shapes: dict[str, list[int | None]] = {}
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
                self.shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        inputs = {v.name for v in graph.input}
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in inputs}
        for node in graph.node:  # Constant nodes folding left in place
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        for init in graph.initializer:
            self.shapes[init.name] = list(init.dims)
        self.taken = set(self.shapes) | {o for n in graph.node for o in n.output} | {n.name for n in graph.node}
        for node in graph.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    self.taken |= names_in(sub)
        self.new_inits: list[onnx.TensorProto] = []
        self.scalars: dict[tuple[str, object], str] = {}

    def scalar(self, value, dtype, base: str) -> str:
        """A shared scalar initializer (iteration numbers, slice indices, the true condition)."""
        key = (np.dtype(dtype).name, value)
        if key not in self.scalars:
            self.scalars[key] = self.constant(np.array(value, dtype), base)
        return self.scalars[key]

    def scalar1(self, value: int, base: str) -> str:
        """A shared one-element int64 vector (Slice's starts, ends, axes)."""
        key = ("int64[1]", value)
        if key not in self.scalars:
            self.scalars[key] = self.constant(np.array([value], np.int64), base)
        return self.scalars[key]

    def fresh(self, base: str) -> str:
        return fresh_name(base, self.taken)

    def constant(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name


def unroll_known_loops(model: onnx.ModelProto, path: str = "model") -> int:
    """Replace, in place, every top-level Scan and every Loop with a compile-time trip count by its unrolled body;
    returns how many. Loops that cannot be unrolled are left for check_control_flow to refuse by name."""
    g = _Graph(model)
    nodes: list[onnx.NodeProto] = []
    unrolled = 0
    budget = MAX_UNROLLED_NODES
    for node in model.graph.node:
        replacement = None
        if node.domain in ("", "ai.onnx") and node.op_type == "Scan":
            # independent iterations computed at once (frontend/scan_map.py); else one copy per iteration
            replacement = _map_scan(g, node, path) or _unroll_scan(g, node, path)
        elif node.domain in ("", "ai.onnx") and node.op_type == "Loop":
            replacement = _unroll_loop(g, node, path)
        if replacement is None:
            nodes.append(node)
            continue
        if len(replacement) > budget and node.op_type == "Loop" and runtime_control_flow_allowed():
            nodes.append(node)  # too long to unroll: the driver runs it as a real loop
            continue
        budget -= len(replacement)
        if budget < 0:
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): unrolling its iterations gives more than "
                           f"{MAX_UNROLLED_NODES} nodes in all; hcc compiles loops by unrolling them",
                           hint="export the model with fewer iterations (a shorter sequence) or without the loop")
        nodes.extend(replacement)
        unrolled += 1
    if unrolled:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(g.new_inits)
    return unrolled


def _has_subgraph(body: onnx.GraphProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for inner in body.node for a in inner.attribute)


def _body_of(node: onnx.NodeProto, path: str) -> onnx.GraphProto:
    body = attr_value(node, "body")
    for inner in body.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in inner.attribute):
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): its body has a nested subgraph "
                           f"(node '{inner.name or inner.op_type}' ({inner.op_type})); hcc unrolls loops with flat bodies only")
    return body


class _Bodies:
    """Copies of one loop body, one per iteration, with the body's initializers hoisted into the model once."""

    def __init__(self, g: _Graph, node: onnx.NodeProto, body: onnx.GraphProto):
        self.g, self.node, self.body = g, node, body
        self.hoisted: dict[str, str] = {}
        for init in body.initializer:
            name = g.fresh(f"{node.name}/{init.name}")
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = name
            g.new_inits.append(copy)
            self.hoisted[init.name] = name

    def copy(self, t: int, bound: dict[str, str]) -> tuple[list[onnx.NodeProto], list[str]]:
        """Iteration t's nodes, with the body inputs bound to `bound`'s values; returns them and the values of the
        body's outputs."""
        rename = dict(self.hoisted)
        rename.update(bound)
        nodes = []
        for inner in self.body.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            copy.input[:] = [rename.get(name, name) for name in inner.input]
            for k, out in enumerate(inner.output):
                if out:
                    rename[out] = self.g.fresh(f"{out}__it{t}")
                    copy.output[k] = rename[out]
            copy.name = self.g.fresh(f"{self.node.name}/it{t}/{inner.name or inner.op_type}")
            nodes.append(copy)
        return nodes, [rename.get(o.name, o.name) for o in self.body.output]


def _stack(g: _Graph, node: onnx.NodeProto, values: list[str], axis: int, out: str) -> list[onnx.NodeProto]:
    """out = the per-iteration values stacked along a new `axis`: each reshaped to have it (its size 1), then
    Concat (torch-mlir converts no attribute-form Unsqueeze, so not that before opset 13)."""
    shape = g.shapes.get(out)
    if shape is not None and None not in shape:
        piece = np.array(shape[:axis] + [1] + shape[axis + 1:], np.int64)
        target = g.constant(piece, f"{node.name}/stack_shape")
        make = lambda value, name, t: helper.make_node("Reshape", [value, target], [name], name=g.fresh(f"{node.name}/stack{t}"))  # noqa: E731
    elif g.opset >= 13:
        axes = g.constant(np.array([axis], np.int64), f"{node.name}/stack_axis")
        make = lambda value, name, t: helper.make_node("Unsqueeze", [value, axes], [name], name=g.fresh(f"{node.name}/stack{t}"))  # noqa: E731
    else:
        raise HccError(f"node '{node.name}' ({node.op_type}): output '{out}' has no static shape to stack its iterations into")
    nodes, pieces = [], []
    for t, value in enumerate(values):
        pieces.append(g.fresh(f"{value}__stacked"))
        nodes.append(make(value, pieces[-1], t))
    nodes.append(helper.make_node("Concat", pieces, [out], name=g.fresh(f"{node.name}/concat"), axis=axis))
    return nodes


def _slice(g: _Graph, node: onnx.NodeProto, source: str, index: int, axis: int, out: str, name: str) -> list[onnx.NodeProto]:
    """out = source[..., index, ...] along `axis` (the axis removed): a Slice of one, then a Reshape to the static
    shape. (With a Gather, the LinearAttention delta cases used to give wrong results: a CPU bufferization bug, since
    fixed in backends/cpu/lowering.py `_split_shared_empties`; opsets below 13 still use the Gather.)"""
    shape = g.shapes[source]
    if g.opset < 13 or None in shape:  # torch-mlir converts Slice from opset 13 on
        return [helper.make_node("Gather", [source, g.scalar(index, np.int64, f"{node.name}/index")], [out], name=g.fresh(name), axis=axis)]
    starts, ends = g.scalar1(index, f"{node.name}/start"), g.scalar1(index + 1, f"{node.name}/end")
    one = g.fresh(f"{out}__one")
    target = g.constant(np.array(shape[:axis] + shape[axis + 1:], np.int64), f"{node.name}/slice_shape")
    return [helper.make_node("Slice", [source, starts, ends, g.scalar1(axis, f"{node.name}/axis")], [one], name=g.fresh(name)),
            helper.make_node("Reshape", [one, target], [out], name=g.fresh(f"{name}_reshape"))]


def _unroll_scan(g: _Graph, node: onnx.NodeProto, path: str) -> list[onnx.NodeProto] | None:
    if g.opset < 9:
        return None  # Scan-8 has a batch axis and sequence lengths: left refused
    body = _body_of(node, path)
    m = attr_value(node, "num_scan_inputs")
    n = len(node.input) - m
    k = len(body.output) - n
    in_axes = list(attr_value(node, "scan_input_axes", [0] * m))
    in_dirs = list(attr_value(node, "scan_input_directions", [0] * m))
    out_axes = list(attr_value(node, "scan_output_axes", [0] * k))
    out_dirs = list(attr_value(node, "scan_output_directions", [0] * k))
    lengths = set()
    for j, name in enumerate(node.input[n:]):
        shape = g.shapes.get(name)
        if shape is None:
            return None
        in_axes[j] = in_axes[j] + len(shape) if in_axes[j] < 0 else in_axes[j]
        lengths.add(shape[in_axes[j]])
    if len(lengths) != 1 or None in lengths:
        return None  # a length only known at run time (or inconsistent: onnxruntime refuses it too)
    steps = lengths.pop()
    if steps == 0:
        raise HccError(f"{path}: node '{node.name}' (Scan): its scan inputs are empty (0 iterations); hcc compiles no empty tensors")
    bodies = _Bodies(g, node, body)
    nodes: list[onnx.NodeProto] = []
    states = list(node.input[:n])
    scanned: list[list[str]] = [[] for _ in range(k)]
    for t in range(steps):
        bound = dict(zip([i.name for i in body.input[:n]], states))
        for j, name in enumerate(node.input[n:]):
            index = steps - 1 - t if in_dirs[j] else t
            piece = g.fresh(f"{body.input[n + j].name}__it{t}")
            nodes += _slice(g, node, name, index, in_axes[j], piece, f"{node.name}/it{t}/slice{j}")
            bound[body.input[n + j].name] = piece
        copied, outs = bodies.copy(t, bound)
        nodes.extend(copied)
        states = outs[:n]
        for i in range(k):
            scanned[i].append(outs[n + i])
    nodes += [helper.make_node("Identity", [state], [out], name=g.fresh(f"{node.name}/final{i}"))
              for i, (state, out) in enumerate(zip(states, node.output[:n])) if out]
    for i, out in enumerate(node.output[n:n + k]):
        if not out:
            continue
        axis = out_axes[i]
        if axis < 0:
            rank = len(g.shapes[out]) if out in g.shapes else None
            if rank is None:
                raise HccError(f"{path}: node '{node.name}' (Scan): scan output '{out}' has a negative axis and no known rank")
            axis += rank
        nodes += _stack(g, node, scanned[i][::-1] if out_dirs[i] else scanned[i], axis, out)
    return nodes


def always_true(body: onnx.GraphProto) -> bool:
    """Whether the body's condition output is its condition input (through Identity nodes) or a true constant."""
    producers = {o: n for n in body.node for o in n.output}
    constants = {i.name: numpy_helper.to_array(i) for i in body.initializer}
    name = body.output[0].name
    while True:
        if name == body.input[1].name:
            return True
        if name in constants:
            return bool(np.all(constants[name]))
        node = producers.get(name)
        if node is None:
            return False
        if node.op_type == "Identity":
            name = node.input[0]
        elif node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return bool(np.all(numpy_helper.to_array(node.attribute[0].t)))
        else:
            return False


def _unroll_loop(g: _Graph, node: onnx.NodeProto, path: str) -> list[onnx.NodeProto] | None:
    trip, cond = (list(node.input) + ["", ""])[:2]
    if not trip or trip not in g.constants:
        return None  # no trip count, or one only known at run time: refused by check_control_flow
    if cond and cond not in g.constants:
        return None
    if runtime_control_flow_allowed() and _has_subgraph(attr_value(node, "body")):
        return None  # an If inside the body: the driver runs the loop with its body compiled as a program
    body = _body_of(node, path)
    if not always_true(body):
        return None  # the body computes its condition: an early exit at run time
    steps = int(np.asarray(g.constants[trip]).reshape(-1)[0])
    if cond and not bool(np.asarray(g.constants[cond]).reshape(-1)[0]):
        steps = 0
    n = len(node.input) - 2
    k = len(body.output) - 1 - n
    if steps <= 0 and k:
        raise HccError(f"{path}: node '{node.name}' (Loop): 0 iterations, so its scan outputs are empty; hcc compiles no empty tensors")
    bodies = _Bodies(g, node, body)
    nodes: list[onnx.NodeProto] = []
    carried = list(node.input[2:])
    scanned: list[list[str]] = [[] for _ in range(k)]
    true = g.scalar(True, np.bool_, f"{node.name}/cond")
    for t in range(max(steps, 0)):
        bound = {body.input[0].name: g.scalar(t, np.int64, f"{node.name}/iteration"), body.input[1].name: true}
        bound.update(zip([i.name for i in body.input[2:]], carried))
        copied, outs = bodies.copy(t, bound)
        nodes.extend(copied)
        carried = outs[1:1 + n]
        for i in range(k):
            scanned[i].append(outs[1 + n + i])
    nodes += [helper.make_node("Identity", [value], [out], name=g.fresh(f"{node.name}/final{i}"))
              for i, (value, out) in enumerate(zip(carried, node.output[:n])) if out]
    for i, out in enumerate(node.output[n:n + k]):
        if out:
            nodes += _stack(g, node, scanned[i], 0, out)
    return nodes



def why_not_unrolled(node: onnx.NodeProto, model: onnx.ModelProto) -> str:
    """Why unroll_known_loops left this Scan or Loop (for check_control_flow's refusal)."""
    g = _Graph(model)
    if node.op_type == "Scan":
        if g.opset < 9:
            return "an opset-8 Scan (batch axis, sequence lengths) is not unrolled"
        return "its scan length is not static"
    trip, cond = (list(node.input) + ["", ""])[:2]
    if not trip:
        return "it has no trip count (a while loop): its iteration count is only known at run time"
    if trip not in g.constants:
        return f"its trip count '{trip}' is only known at run time"
    if cond and cond not in g.constants:
        return f"its condition '{cond}' is only known at run time"
    return "its body computes its condition (it may end early at run time)"
