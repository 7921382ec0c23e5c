"""Reverse and bidirectional LSTM/GRU/RNN as forward recurrences (frontend/recurrent.py): the rewritten graph gives
onnxruntime's outputs for the original one (onnx's reference evaluator ignores `direction` for GRU and LSTM, so it
cannot be the judge here), and compiled bundles match onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.frontend.recurrent import split_directions
from helpers import compile_and_compare

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(op: str, direction: str, seq: int = 5, batch: int = 2, features: int = 6, hidden: int = 8,
                    initial: bool = True, **attrs) -> onnx.ModelProto:
    """One recurrent node with W, R, B (and initial states) as weights; every output is a model output."""
    rng = np.random.default_rng(len(op) + len(direction))
    nd, g = (2 if direction == "bidirectional" else 1), GATES[op]
    inits = [numpy_helper.from_array(rng.uniform(-0.4, 0.4, shape).astype(np.float32), name) for name, shape in
             (("W", (nd, g * hidden, features)), ("R", (nd, g * hidden, hidden)), ("B", (nd, 2 * g * hidden)),
              ("h0", (nd, batch, hidden)), ("c0", (nd, batch, hidden)))]
    inputs = ["x", "W", "R", "B", "", "h0" if initial else ""] + (["c0" if initial else ""] if op == "LSTM" else [])
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = h.make_node(op, inputs, outputs, name="rnn", hidden_size=hidden, direction=direction, **attrs)
    shapes = {"y": [seq, nd, batch, hidden], "y_h": [nd, batch, hidden], "y_c": [nd, batch, hidden]}
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, features])],
                         [h.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


CASES = [("LSTM", "reverse"), ("GRU", "reverse"), ("GRU", "bidirectional"), ("RNN", "reverse"), ("RNN", "bidirectional")]


@pytest.mark.parametrize("op,direction", CASES)
@pytest.mark.parametrize("initial", [True, False])
def test_rewritten_graph_gives_the_original_outputs(op, direction, initial):
    model = recurrent_model(op, direction, initial=initial)
    x = np.random.default_rng(3).standard_normal((5, 2, 6)).astype(np.float32)
    expected = _run(model, x)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert split_directions(rewritten) == 1
    assert all(n.op_type not in GATES or h.get_attribute_value(next(a for a in n.attribute if a.name == "direction")) == b"forward"
               for n in rewritten.graph.node)
    onnx.checker.check_model(rewritten)
    for got, want in zip(_run(rewritten, x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bidirectional_activation_lists_are_split_per_direction():
    """A bidirectional GRU naming its activations per direction: each direction gets its own pair."""
    model = recurrent_model("GRU", "bidirectional", activations=["Sigmoid", "Tanh", "Sigmoid", "Tanh"])
    split_directions(model)
    lists = [h.get_attribute_value(a) for n in model.graph.node if n.op_type == "GRU" for a in n.attribute if a.name == "activations"]
    assert lists == [[b"Sigmoid", b"Tanh"], [b"Sigmoid", b"Tanh"]]


def test_native_directions_and_batch_major_layouts_are_kept():
    """torch-mlir's own directions are left to it; a batch-major (layout=1) recurrence is kept (and refused later)."""
    for model in (recurrent_model("LSTM", "bidirectional"), recurrent_model("GRU", "forward"),
                  recurrent_model("GRU", "reverse", layout=1)):
        before = [n.op_type for n in model.graph.node]
        assert split_directions(model) == 0 and [n.op_type for n in model.graph.node] == before


@pytest.mark.parametrize("op,direction", [("LSTM", "reverse"), ("GRU", "bidirectional"), ("RNN", "reverse")])
def test_compiled_matches_onnxruntime(tmp_path, op, direction):
    compile_and_compare(recurrent_model(op, direction), tmp_path, name=f"{op}_{direction}")
