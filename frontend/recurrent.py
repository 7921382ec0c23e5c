"""Reverse and bidirectional recurrences (LSTM, GRU, RNN) as forward ones, which torch-mlir converts.

torch-mlir converts forward LSTM/GRU/RNN and bidirectional LSTM only. A reverse recurrence over x is the forward one
over x with its time steps reversed, its step outputs reversed back (the final states need nothing: the last step
of the reversed sequence is the reverse direction's last step). A bidirectional one is a forward and a reverse
recurrence on the two halves of its weights, biases and initial states, their outputs concatenated along the
direction axis (Y [T, 2, B, H], Y_h and Y_c [2, B, H]); the activation lists name both directions, first the
forward one's. The time reversal is a Gather with a constant index (the sequence length is static).

Kept as they are (and refused later by name, frontend/checks.py, if unsupported): batch-major layout (`layout=1`),
per-sequence lengths, and a sequence length that is not static.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.attributes import attr_value
from hcc.frontend.checks import static_shape
from hcc.frontend.names import fresh_name
from hcc.frontend.node_rewrite import replace_nodes

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# directions torch-mlir converts itself (frontend/checks.py FORWARD_ONLY_EXCEPT)
NATIVE = {"LSTM": ("forward", "bidirectional"), "GRU": ("forward",), "RNN": ("forward",)}
STATE_OUTPUTS = {"LSTM": 2, "GRU": 1, "RNN": 1}  # Y_h (and Y_c) after Y
PER_DIRECTION_INPUTS = {"LSTM": (1, 2, 3, 5, 6, 7), "GRU": (1, 2, 3, 5), "RNN": (1, 2, 3, 5)}  # W R B initial_h [initial_c P]


def _direction(node: onnx.NodeProto) -> str:
    value = attr_value(node, "direction", b"forward") or b"forward"
    return value.decode() if isinstance(value, bytes) else value


class _Builder:
    """New nodes and initializers for one recurrent node, with names that are unique in the graph."""

    def __init__(self, node: onnx.NodeProto, taken: set[str]):
        self.node, self.taken = node, taken
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def name(self, hint: str) -> str:
        return fresh_name(f"{self.node.name or self.node.op_type}/{hint}", self.taken)

    def add(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"{hint}/node"), **attrs))
        return out

    def constant(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def reversed_steps(self, value: str, steps: int, hint: str) -> str:
        order = self.constant(np.arange(steps - 1, -1, -1, dtype=np.int64), f"{hint}/order")
        return self.add("Gather", [value, order], hint, axis=0)

    def direction(self, inputs: list[str], attrs: dict, reverse: bool, steps: int, hint: str) -> tuple[str, list[str]]:
        """A forward recurrence (on the reversed steps when `reverse`): its Y (steps restored) and state outputs."""
        x = self.reversed_steps(inputs[0], steps, f"{hint}/x") if reverse else inputs[0]
        outs = [self.name(f"{hint}/y")] + [self.name(f"{hint}/state{i}") for i in range(STATE_OUTPUTS[self.node.op_type])]
        self.nodes.append(helper.make_node(self.node.op_type, [x] + inputs[1:], outs, name=self.name(hint),
                                           **dict(attrs, direction="forward")))
        y = self.reversed_steps(outs[0], steps, f"{hint}/y_steps") if reverse else outs[0]
        return y, outs[1:]


def _half(b: _Builder, value: str, index: int, hint: str) -> str:
    """Direction `index` of a per-direction input ([2, ...] -> [1, ...]); '' stays ''."""
    if not value:
        return ""
    start, end, axes = (b.constant(np.array([v], np.int64), f"{hint}/{what}") for v, what in ((index, "start"), (index + 1, "end"), (0, "axis")))
    return b.add("Slice", [value, start, end, axes], hint)


def _split_attrs(node: onnx.NodeProto, index: int) -> dict:
    """The node's attributes for one direction of a bidirectional node: each activation list's half."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "direction"}
    for name in ("activations", "activation_alpha", "activation_beta"):
        if name in attrs:
            values = list(attrs[name])
            half = len(values) // 2
            attrs[name] = values[index * half:(index + 1) * half]
    return attrs


def _rewrite(node: onnx.NodeProto, steps: int, taken: set[str]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    b = _Builder(node, taken)
    inputs = list(node.input)
    direction = _direction(node)
    outputs = list(node.output) + [""] * (1 + STATE_OUTPUTS[node.op_type] - len(node.output))
    if direction == "reverse":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "direction"}
        y, states = b.direction(inputs, attrs, True, steps, "reverse")
        parts = [[y]] + [[s] for s in states]
    else:  # bidirectional
        halves = []
        for index, hint in ((0, "forward"), (1, "reverse")):
            own = [_half(b, v, index, f"{hint}/in{i}") if i in PER_DIRECTION_INPUTS[node.op_type] else v for i, v in enumerate(inputs)]
            halves.append(b.direction(own, _split_attrs(node, index), index == 1, steps, hint))
        parts = [[halves[0][0], halves[1][0]]] + [[halves[0][1][i], halves[1][1][i]] for i in range(STATE_OUTPUTS[node.op_type])]
    for position, (out, values) in enumerate(zip(outputs, parts)):
        if not out:
            continue
        if len(values) == 1:
            b.nodes.append(helper.make_node("Identity", values, [out], name=b.name(f"out{position}")))
        else:
            b.nodes.append(helper.make_node("Concat", values, [out], name=b.name(f"out{position}"), axis=1 if position == 0 else 0))
    return b.nodes, b.inits


def split_directions(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every reverse or bidirectional recurrence torch-mlir does not convert; returns how many."""
    graph = model.graph
    shapes = {v.name: static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    taken = {n for node in graph.node for n in list(node.input) + list(node.output) + [node.name]}
    taken |= {init.name for init in graph.initializer} | {v.name for v in graph.input}

    def rewrite(node: onnx.NodeProto):
        direction = _direction(node)
        x_shape = shapes.get(node.input[0]) if node.input else None
        eligible = (node.op_type in RECURRENT_OPS and node.domain in ("", "ai.onnx") and direction in ("reverse", "bidirectional")
                    and direction not in NATIVE[node.op_type] and attr_value(node, "layout", 0) == 0
                    and not (len(node.input) > 4 and node.input[4]) and x_shape and x_shape[0])
        return _rewrite(node, x_shape[0], taken) if eligible else None

    return replace_nodes(graph, rewrite)
