"""A forward LSTM with features torch-mlir's conversion ignores (peephole weights, `clip`, other activations) as its
time steps written out in plain ops, exactly as ONNX defines the cell.

torch-mlir converts an LSTM as if P were zero, clip absent and the activations the default ones: a silently wrong
result, which frontend/checks.py refuses. With the sequence length static, each step is (gate order i, o, f, c; P
order i, o, f):

    gates = X_t W^T + H_{t-1} R^T + (Wb + Rb)                  one [B, 4H] product pair per step
    i = f(clip(g_i + P_i * C_{t-1}))    f = f(clip(g_f + P_f * C_{t-1}))    c~ = g(clip(g_c))
    C_t = f * C_{t-1} + i * c~          o = f(clip(g_o + P_o * C_t))        H_t = o * h(C_t)

Y stacks H_t ([T, 1, B, H]); Y_h and Y_c are the last H_t and C_t. Reverse LSTMs are forward ones by then
(frontend/recurrent.py). Left as they are (and refused by name): bidirectional ones with such features, batch-major
layout, input_forget, activations that take alpha/beta, dynamic shapes. Per-sequence lengths (`sequence_lens`, which
torch-mlir ignores too) are honoured as onnxruntime does: past its length a batch entry keeps its states and its Y
rows are zeros; an entry of length 0 ends with zero states.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from hcc.frontend.checks import static_shape
from hcc.frontend.node_rewrite import CountedNodes, attr_value, replace_nodes

# ONNX activation names (as an LSTM's `activations` spells them) -> op type; those without alpha/beta only
ACTIVATIONS = {"Sigmoid": "Sigmoid", "Tanh": "Tanh", "Relu": "Relu", "Softsign": "Softsign", "Softplus": "Softplus"}  # Softsign: x / (1 + |x|)
DEFAULT_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _needs_steps(node: onnx.NodeProto, constants: dict[str, np.ndarray], steps: int) -> bool:
    """Whether the LSTM has a feature torch-mlir ignores (frontend/checks.py recurrent_features refuses these)."""
    peepholes = node.input[7] if len(node.input) > 7 else ""
    nonzero_p = bool(peepholes) and (peepholes not in constants or bool(np.any(constants[peepholes] != 0)))
    lengths = node.input[4] if len(node.input) > 4 else ""
    short = bool(lengths) and (lengths not in constants or bool(np.any(constants[lengths] != steps)))
    activations = [_text(a) for a in attr_value(node, "activations", []) or []]
    return (nonzero_p or short or attr_value(node, "clip", None) is not None
            or (bool(activations) and activations != DEFAULT_ACTIVATIONS))


def _steps(node: onnx.NodeProto, t: int, batch: int, hidden: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    b = CountedNodes(node)
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x, w, r, bias, lengths, h0, c0, p = inputs
    names = [_text(a) for a in attr_value(node, "activations", []) or []] or DEFAULT_ACTIVATIONS
    gate_act, cell_act, out_act = (ACTIVATIONS[n] for n in names)
    clip = attr_value(node, "clip", None)

    def act(op: str, value: str, hint: str, clipped: bool = True) -> str:
        if clip is not None and clipped:
            value = b.op("Clip", [value, b.const(np.array(-clip, np.float32), "lo"), b.const(np.array(clip, np.float32), "hi")], f"{hint}_clipped")
        if op == "Softsign":  # no lowering of its own; ONNX's function body, written here
            return b.op("Div", [value, b.op("Add", [b.op("Abs", [value], f"{hint}_abs"), b.const(np.array(1.0, np.float32), "one")],
                                              f"{hint}_den")], hint)
        return b.op(op, [value], hint)

    def take(value: str, start: int, end: int, axis: int, hint: str) -> str:
        return b.op("Slice", [value, b.const(np.array([start], np.int64), "s"), b.const(np.array([end], np.int64), "e"),
                              b.const(np.array([axis], np.int64), "a")], hint)

    squeeze0 = b.const(np.array([0], np.int64), "axis0")
    w_t = b.op("Transpose", [b.op("Squeeze", [w, squeeze0], "w")], "w_t", perm=[1, 0])  # [I, 4H]
    r_t = b.op("Transpose", [b.op("Squeeze", [r, squeeze0], "r")], "r_t", perm=[1, 0])  # [H, 4H]
    gate_bias = ""
    if bias:
        both = b.op("Squeeze", [bias, squeeze0], "bias")  # [8H]
        gate_bias = b.op("Add", [take(both, 0, 4 * hidden, 0, "wb"), take(both, 4 * hidden, 8 * hidden, 0, "rb")], "gate_bias")
    zeros = b.const(np.zeros([batch, hidden], np.float32), "zeros")
    h = b.op("Squeeze", [h0, squeeze0], "h0") if h0 else zeros
    c = b.op("Squeeze", [c0, squeeze0], "c0") if c0 else zeros
    peep = [take(b.op("Squeeze", [p, squeeze0], "p"), k * hidden, (k + 1) * hidden, 0, f"p{k}") for k in range(3)] if p else []
    xs = [b.op("Squeeze", [take(x, step, step + 1, 0, f"x{step}"), squeeze0], f"x{step}_2d") for step in range(t)]
    ys = []
    lengths = b.op("Unsqueeze", [lengths, b.const(np.array([1], np.int64), "axis1")], "lengths") if lengths else ""  # [B, 1]
    for step in range(t):
        h_before, c_before = h, c
        gates = b.op("Add", [b.op("MatMul", [xs[step], w_t], f"xw{step}"), b.op("MatMul", [h, r_t], f"hr{step}")], f"gates{step}")
        if gate_bias:
            gates = b.op("Add", [gates, gate_bias], f"gates{step}_b")
        g_i, g_o, g_f, g_c = (take(gates, k * hidden, (k + 1) * hidden, 1, f"g{k}_{step}") for k in range(4))
        if peep:
            g_i = b.op("Add", [g_i, b.op("Mul", [peep[0], c], f"pi{step}")], f"gi{step}")
            g_f = b.op("Add", [g_f, b.op("Mul", [peep[2], c], f"pf{step}")], f"gf{step}")
        i = act(gate_act, g_i, f"i{step}")
        f = act(gate_act, g_f, f"f{step}")
        cand = act(cell_act, g_c, f"cand{step}")
        c = b.op("Add", [b.op("Mul", [f, c], f"keep{step}"), b.op("Mul", [i, cand], f"write{step}")], f"c{step}")
        if peep:
            g_o = b.op("Add", [g_o, b.op("Mul", [peep[1], c], f"po{step}")], f"go{step}")
        o = act(gate_act, g_o, f"o{step}")
        h = b.op("Mul", [o, act(out_act, c, f"hc{step}", clipped=False)], f"h{step}")
        y = h
        if lengths:  # a batch entry past its length keeps its states and outputs zeros (onnxruntime's rule)
            running = b.op("Less", [b.const(np.array(step, np.int32), f"t{step}"), lengths], f"running{step}")
            h = b.op("Where", [running, h, h_before], f"h{step}_kept")
            c = b.op("Where", [running, c, c_before], f"c{step}_kept")
            y = b.op("Where", [running, y, zeros], f"y{step}_masked")
        ys.append(b.op("Unsqueeze", [y, b.const(np.array([0, 1], np.int64), "axes01")], f"y{step}"))
    if lengths:  # an entry of length 0 ends with zero states, not its initial ones (onnxruntime's rule)
        started = b.op("Less", [b.const(np.array(0, np.int32), "t0"), lengths], "started")
        h, c = b.op("Where", [started, h, zeros], "h_final"), b.op("Where", [started, c, zeros], "c_final")
    outputs = list(node.output) + [""] * (3 - len(node.output))
    if outputs[0]:
        b.op("Concat", ys, "y", output=outputs[0], axis=0)
    for out, value in ((outputs[1], h), (outputs[2], c)):
        if out:
            b.op("Unsqueeze", [value, squeeze0], "state", output=out)
    return b.nodes, b.inits


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
        names = [_text(a) for a in attr_value(node, "activations", []) or []] or DEFAULT_ACTIVATIONS
        if (_text(attr_value(node, "direction", "forward") or "forward") != "forward" or attr_value(node, "layout", 0) != 0
                or attr_value(node, "input_forget", 0) or not r_shape
                or len(names) != 3 or any(n not in ACTIVATIONS for n in names) or node.input[0] not in floats
                or attr_value(node, "activation_alpha", None) or attr_value(node, "activation_beta", None)):
            return None
        return _steps(node, x_shape[0], x_shape[1], r_shape[2])

    return replace_nodes(graph, rewrite)
