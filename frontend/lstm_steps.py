"""A forward LSTM with features torch-mlir's conversion ignores (peephole weights, `clip`, other activations) as its
time steps written out in plain ops, exactly as ONNX defines the cell.

torch-mlir converts an LSTM as if P were zero, clip absent and the activations the default ones: a silently wrong
result, which frontend/checks.py refuses. With the sequence length static, each step is (gate order i, o, f, c; P
order i, o, f):

    gates = X_t W^T + H_{t-1} R^T + (Wb + Rb)                  one [B, 4H] product pair per step
    i = f(clip(g_i + P_i * C_{t-1}))    f = f(clip(g_f + P_f * C_{t-1}))    c~ = g(clip(g_c))
    C_t = f * C_{t-1} + i * c~          o = f(clip(g_o + P_o * C_t))        H_t = o * h(C_t)

Y stacks H_t ([T, 1, B, H]); Y_h and Y_c are the last H_t and C_t. Reverse LSTMs are forward ones by then
(frontend/recurrent.py); a bidirectional one is a forward and a reverse pass on its weights' halves, concatenated
(Y [T, 2, B, H]). Left as they are (and refused by name): bidirectional ones with per-sequence lengths, batch-major
layout, input_forget, activations that take alpha/beta, dynamic shapes. Per-sequence lengths (`sequence_lens`, which
torch-mlir ignores too) are honoured as onnxruntime does: past its length a batch entry keeps its states and its Y
rows are zeros; an entry of length 0 ends with zero states.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from hcc.frontend.attributes import as_text, attr_value
from hcc.frontend.checks import static_shape
from hcc.frontend.node_rewrite import CountedNodes, replace_nodes

# ONNX activation names (as an LSTM's `activations` spells them) -> op type; those without alpha/beta only
ACTIVATIONS = {"Sigmoid": "Sigmoid", "Tanh": "Tanh", "Relu": "Relu", "Softsign": "Softsign", "Softplus": "Softplus"}  # Softsign: x / (1 + |x|)
DEFAULT_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]


def _bidirectional(node: onnx.NodeProto) -> bool:
    return as_text(attr_value(node, "direction", "forward") or "forward") == "bidirectional"


def _needs_steps(node: onnx.NodeProto, constants: dict[str, np.ndarray], steps: int) -> bool:
    """Whether the LSTM has a feature torch-mlir ignores (frontend/checks.py recurrent_features refuses these)."""
    peepholes = node.input[7] if len(node.input) > 7 else ""
    nonzero_p = bool(peepholes) and (peepholes not in constants or bool(np.any(constants[peepholes] != 0)))
    lengths = node.input[4] if len(node.input) > 4 else ""
    short = bool(lengths) and (lengths not in constants or bool(np.any(constants[lengths] != steps)))
    activations = [as_text(a) for a in attr_value(node, "activations", []) or []]
    directions = 2 if _bidirectional(node) else 1
    return (nonzero_p or short or attr_value(node, "clip", None) is not None
            or (bool(activations) and activations != DEFAULT_ACTIVATIONS * directions))


def _steps(node: onnx.NodeProto, t: int, batch: int, hidden: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The node's replacement: one direction, or (bidirectional) a forward one and a reverse one on the weights',
    biases', initial states' and peepholes' two halves, their outputs concatenated along the direction axis."""
    b = CountedNodes(node)
    inputs = list(node.input) + [""] * (8 - len(node.input))
    names = [as_text(a) for a in attr_value(node, "activations", []) or []]
    bidirectional = _bidirectional(node)
    halves = []
    for index in range(2 if bidirectional else 1):
        own = list(inputs)
        if bidirectional:
            for k in (1, 2, 3, 5, 6, 7):  # W R B initial_h initial_c P: direction `index`
                own[k] = _take(b, own[k], index, index + 1, 0, f"half{index}_{k}") if own[k] else ""
        acts = names[3 * index:3 * index + 3] if names else DEFAULT_ACTIVATIONS
        halves.append(_direction(b, own, acts, attr_value(node, "clip", None), t, batch, hidden, reverse=index == 1, tag=f"d{index}"))
    outputs = list(node.output) + [""] * (3 - len(node.output))
    axis0 = b.const(np.array([0], np.int64), "axis0")
    if outputs[0]:
        b.op("Concat", [y for y, _, _ in halves], "y", output=outputs[0], axis=1)
    for position, out in ((1, outputs[1]), (2, outputs[2])):
        if out:
            states = [b.op("Unsqueeze", [half[position], axis0], "state") for half in halves]
            b.op("Concat", states, "states", output=out, axis=0)
    b.nodes[-1].name = node.name
    return b.nodes, b.inits


def _take(b: CountedNodes, value: str, start: int, end: int, axis: int, hint: str) -> str:
    return b.op("Slice", [value, b.const(np.array([start], np.int64), "s"), b.const(np.array([end], np.int64), "e"),
                          b.const(np.array([axis], np.int64), "a")], hint)


def _direction(b: CountedNodes, inputs: list[str], names: list[str], clip, t: int, batch: int, hidden: int, reverse: bool,
               tag: str) -> tuple[str, str, str]:
    """One direction's steps (the reverse one over the steps in reverse order); returns Y [T, 1, B, H] in step order
    and the last H and C [B, H]."""
    x, w, r, bias, lengths, h0, c0, p = inputs
    gate_act, cell_act, out_act = (ACTIVATIONS[n] for n in names)

    def act(op: str, value: str, hint: str, clipped: bool = True) -> str:
        if clip is not None and clipped:
            value = b.op("Clip", [value, b.const(np.array(-clip, np.float32), "lo"), b.const(np.array(clip, np.float32), "hi")], f"{hint}_clipped")
        if op == "Softsign":  # no lowering of its own; ONNX's function body, written here
            return b.op("Div", [value, b.op("Add", [b.op("Abs", [value], f"{hint}_abs"), b.const(np.array(1.0, np.float32), "one")],
                                              f"{hint}_den")], hint)
        return b.op(op, [value], hint)

    squeeze0 = b.const(np.array([0], np.int64), "axis0")
    w_t = b.op("Transpose", [b.op("Squeeze", [w, squeeze0], f"{tag}_w")], f"{tag}_w_t", perm=[1, 0])  # [I, 4H]
    r_t = b.op("Transpose", [b.op("Squeeze", [r, squeeze0], f"{tag}_r")], f"{tag}_r_t", perm=[1, 0])  # [H, 4H]
    gate_bias = ""
    if bias:
        both = b.op("Squeeze", [bias, squeeze0], f"{tag}_bias")  # [8H]
        gate_bias = b.op("Add", [_take(b, both, 0, 4 * hidden, 0, "wb"), _take(b, both, 4 * hidden, 8 * hidden, 0, "rb")], f"{tag}_gate_bias")
    zeros = b.const(np.zeros([batch, hidden], np.float32), "zeros")
    h = b.op("Squeeze", [h0, squeeze0], f"{tag}_h0") if h0 else zeros
    c = b.op("Squeeze", [c0, squeeze0], f"{tag}_c0") if c0 else zeros
    peep = [_take(b, b.op("Squeeze", [p, squeeze0], f"{tag}_p"), k * hidden, (k + 1) * hidden, 0, f"{tag}_p{k}") for k in range(3)] if p else []
    order = range(t - 1, -1, -1) if reverse else range(t)
    ys: dict[int, str] = {}
    lengths = b.op("Unsqueeze", [lengths, b.const(np.array([1], np.int64), "axis1")], f"{tag}_lengths") if lengths else ""  # [B, 1]
    for step in order:
        x_t = b.op("Squeeze", [_take(b, x, step, step + 1, 0, f"{tag}_x{step}"), squeeze0], f"{tag}_x{step}_2d")
        h_before, c_before = h, c
        gates = b.op("Add", [b.op("MatMul", [x_t, w_t], f"{tag}_xw{step}"), b.op("MatMul", [h, r_t], f"{tag}_hr{step}")], f"{tag}_gates{step}")
        if gate_bias:
            gates = b.op("Add", [gates, gate_bias], f"{tag}_gates{step}_b")
        g_i, g_o, g_f, g_c = (_take(b, gates, k * hidden, (k + 1) * hidden, 1, f"{tag}_g{k}_{step}") for k in range(4))
        if peep:
            g_i = b.op("Add", [g_i, b.op("Mul", [peep[0], c], f"{tag}_pi{step}")], f"{tag}_gi{step}")
            g_f = b.op("Add", [g_f, b.op("Mul", [peep[2], c], f"{tag}_pf{step}")], f"{tag}_gf{step}")
        i = act(gate_act, g_i, f"{tag}_i{step}")
        f = act(gate_act, g_f, f"{tag}_f{step}")
        cand = act(cell_act, g_c, f"{tag}_cand{step}")
        c = b.op("Add", [b.op("Mul", [f, c], f"{tag}_keep{step}"), b.op("Mul", [i, cand], f"{tag}_write{step}")], f"{tag}_c{step}")
        if peep:
            g_o = b.op("Add", [g_o, b.op("Mul", [peep[1], c], f"{tag}_po{step}")], f"{tag}_go{step}")
        o = act(gate_act, g_o, f"{tag}_o{step}")
        h = b.op("Mul", [o, act(out_act, c, f"{tag}_hc{step}", clipped=False)], f"{tag}_h{step}")
        y = h
        if lengths:  # a batch entry past its length keeps its states and outputs zeros (onnxruntime's rule)
            running = b.op("Less", [b.const(np.array(step, np.int32), f"t{step}"), lengths], f"{tag}_running{step}")
            h = b.op("Where", [running, h, h_before], f"{tag}_h{step}_kept")
            c = b.op("Where", [running, c, c_before], f"{tag}_c{step}_kept")
            y = b.op("Where", [running, y, zeros], f"{tag}_y{step}_masked")
        ys[step] = b.op("Unsqueeze", [y, b.const(np.array([0, 1], np.int64), "axes01")], f"{tag}_y{step}")
    if lengths:  # an entry of length 0 ends with zero states, not its initial ones (onnxruntime's rule)
        started = b.op("Less", [b.const(np.array(0, np.int32), "t0"), lengths], f"{tag}_started")
        h, c = b.op("Where", [started, h, zeros], f"{tag}_h_final"), b.op("Where", [started, c, zeros], f"{tag}_c_final")
    y_all = b.op("Concat", [ys[step] for step in range(t)], f"{tag}_y", axis=0) if t > 1 else ys[0]
    return y_all, h, c


def write_out_lstm_steps(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every forward float32 LSTM with peepholes, clip or non-default parameterless activations
    (and static shapes, layout 0, no sequence lengths, no input_forget) as its time steps; returns how many."""
    graph = model.graph
    shapes = {v.name: static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    shapes.update({i.name: list(i.dims) for i in graph.initializer})
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    floats = {v.name for v in list(graph.input) + list(graph.value_info) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    floats |= {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}

    def rewrite(node: onnx.NodeProto):
        x_shape = shapes.get(node.input[0]) if node.input else None
        if node.op_type != "LSTM" or node.domain not in ("", "ai.onnx") or not x_shape or not _needs_steps(node, constants, x_shape[0]):
            return None
        r_shape = shapes.get(node.input[2]) if len(node.input) > 2 else None
        direction = as_text(attr_value(node, "direction", "forward") or "forward")
        directions = 2 if direction == "bidirectional" else 1
        names = [as_text(a) for a in attr_value(node, "activations", []) or []] or DEFAULT_ACTIVATIONS * directions
        lengths = node.input[4] if len(node.input) > 4 else ""
        if (direction not in ("forward", "bidirectional") or (direction == "bidirectional" and lengths)
                or attr_value(node, "layout", 0) != 0 or attr_value(node, "input_forget", 0) or not r_shape
                or len(names) != 3 * directions or any(n not in ACTIVATIONS for n in names) or node.input[0] not in floats
                or attr_value(node, "activation_alpha", None) or attr_value(node, "activation_beta", None)):
            return None
        return _steps(node, x_shape[0], x_shape[1], r_shape[2])

    return replace_nodes(graph, rewrite)
