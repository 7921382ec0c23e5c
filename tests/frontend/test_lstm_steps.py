"""LSTMs with features torch-mlir's conversion ignores (frontend/lstm_steps.py writes their steps out): peephole
weights, clip, other activations, per-sequence lengths given at run time, a reverse direction, both directions;
compiled and checked against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

import hcc
from hcc.runtime import load
from helpers import compile_and_compare

T, B, IN, H = 5, 3, 4, 6


def _lstm(direction: str = "forward", lengths: bool = False, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    d = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array((rng.standard_normal((d, 4 * H, IN)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((d, 4 * H, H)) * 0.5).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((d, 8 * H)) * 0.3).astype(np.float32), "B"),
             numpy_helper.from_array((rng.standard_normal((d, 3 * H)) * 0.5).astype(np.float32), "P")]
    inputs = [h.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, IN]), h.make_tensor_value_info("h0", TensorProto.FLOAT, [d, B, H]),
              h.make_tensor_value_info("c0", TensorProto.FLOAT, [d, B, H])]
    if lengths:
        inputs.append(h.make_tensor_value_info("lens", TensorProto.INT32, [B]))
    node = h.make_node("LSTM", ["X", "W", "R", "B", "lens" if lengths else "", "h0", "c0", "P"], ["Y", "Y_h", "Y_c"], name="lstm",
                       hidden_size=H, direction=direction, **attrs)
    outputs = [h.make_tensor_value_info("Y", TensorProto.FLOAT, [T, d, B, H]), h.make_tensor_value_info("Y_h", TensorProto.FLOAT, [d, B, H]),
               h.make_tensor_value_info("Y_c", TensorProto.FLOAT, [d, B, H])]
    model = h.make_model(h.make_graph([node], "g", inputs, outputs, inits), opset_imports=[h.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("direction,lengths,attrs", [
    ("forward", False, {}),                                                   # peepholes only
    ("forward", True, {"clip": 0.7}),                                         # + clip, lengths at run time
    ("forward", False, {"activations": ["Sigmoid", "Relu", "Softsign"]}),     # + other activations
    ("reverse", False, {}),                                                   # split into a forward one first
    ("bidirectional", False, {"clip": 0.9}),                                  # both halves, concatenated
    ("bidirectional", False, {"activations": ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Softsign"]}),
])
def test_lstm_features_match_onnxruntime(tmp_path, direction, lengths, attrs):
    rng = np.random.default_rng(12)
    d = 2 if direction == "bidirectional" else 1
    feeds = {"X": rng.standard_normal((T, B, IN)).astype(np.float32), "h0": rng.standard_normal((d, B, H)).astype(np.float32) * 0.3,
             "c0": rng.standard_normal((d, B, H)).astype(np.float32) * 0.3}
    if not lengths:
        compile_and_compare(_lstm(direction, lengths, **attrs), tmp_path, feeds=feeds, rtol=1e-4, atol=1e-5)
        return
    feeds["lens"] = np.array([5, 2, 3], np.int32)  # valid lengths for the golden run too (random ones are not)
    model = _lstm(direction, lengths, **attrs)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=tmp_path / "golden.npz")
    reference = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for lens in ([5, 2, 3], [1, 5, 4], [0, 3, 5]):
        feeds["lens"] = np.array(lens, np.int32)
        for ours, theirs in zip(load(tmp_path / "b").run(None, feeds), reference.run(None, feeds)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
