"""com.microsoft.DynamicQuantizeLSTM (frontend/dynamic_quantize_lstm.py): LSTMs quantized by onnxruntime's own
`quantize_dynamic`, and hand-built nodes for what the tool does not write (per-column scales, uint8 weights,
peepholes, clip, input_forget, reverse), compiled and compared bit for bit with onnxruntime run with one intra-op
thread (with several, onnxruntime quantizes h by chunks of the batch; see the module docstring).

Where onnxruntime's u8 x s8 kernels saturate (CPUs without VNNI), int8 weights are kept 7-bit so that onnxruntime
stays an exact oracle (tests/frontend/test_quantized.py does the same).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import hcc
import hcc.runtime
from hcc.artifacts.golden import onnxruntime_int8_saturates
from hcc.errors import HccError
from hcc.frontend.dynamic_quantize_lstm import mlas_tanh
from hcc.frontend.loader import load_model

SATURATES = onnxruntime_int8_saturates()
F32 = np.float32


def float_lstm(steps: int, batch: int, inputs: int, hidden: int, direction: str = "forward",
               outputs: tuple[str, ...] = ("Y", "Y_h", "Y_c"), states: bool = False, seed: int = 0) -> onnx.ModelProto:
    """A float ONNX LSTM with weights of a trained layer's scale (uniform in +-1/sqrt(hidden), torch's init)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    k = 1 / np.sqrt(hidden)
    weights = {"W": (dirs, 4 * hidden, inputs), "R": (dirs, 4 * hidden, hidden), "B": (dirs, 8 * hidden)}
    inits = [numpy_helper.from_array(rng.uniform(-k, k, shape).astype(F32), name) for name, shape in weights.items()]
    state_inputs = ["h0", "c0"] if states else ["", ""]
    node = h.make_node("LSTM", ["x", "W", "R", "B", ""] + state_inputs, list(outputs), name="lstm", hidden_size=hidden,
                       direction=direction)
    shapes = {"Y": [steps, dirs, batch, hidden], "Y_h": [dirs, batch, hidden], "Y_c": [dirs, batch, hidden]}
    graph_inputs = [h.make_tensor_value_info("x", T.FLOAT, [steps, batch, inputs])]
    graph_inputs += [h.make_tensor_value_info(n, T.FLOAT, [dirs, batch, hidden]) for n in state_inputs if n]
    graph = h.make_graph([node], "lstm", graph_inputs,
                         [h.make_tensor_value_info(n, T.FLOAT, shapes[n]) for n in outputs if n], initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def quantized(model: onnx.ModelProto, tmp_path, name: str, lstms: int = 1) -> onnx.ModelProto:
    """The model as onnxruntime's `quantize_dynamic` writes it (its defaults; 7-bit weights where ORT saturates)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = tmp_path / f"{name}_float.onnx", tmp_path / f"{name}_dyn8.onnx"
    onnx.save(model, source)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, reduce_range=SATURATES)
    result = onnx.load(target)
    assert [n.op_type for n in result.graph.node].count("DynamicQuantizeLSTM") == lstms
    return result


def assert_matches_onnxruntime(model: onnx.ModelProto, tmp_path, name: str, runs: int = 4) -> None:
    """Every output equal to onnxruntime's (one intra-op thread) on inputs of several ranges."""
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / f"{name}.bundle")
    session = hcc.runtime.load(tmp_path / f"{name}.bundle")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    reference = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    rng = np.random.default_rng(5)
    for index in range(runs):
        spread = (1.0, 4.0, 0.25, 1.0)[index % 4]
        feeds = {i.name: (rng.standard_normal(i.shape) * spread).astype(F32) for i in reference.get_inputs()}
        expected = reference.run(names, feeds)
        for output, actual, wanted in zip(names, session.run(None, feeds), expected):
            np.testing.assert_array_equal(actual, wanted, err_msg=f"output '{output}', feeds #{index}")


def test_mlas_tanh_is_onnxruntimes():
    """The tanh the rewrite computes is onnxruntime's MlasComputeTanh (its Tanh op) on every sampled input."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(1 << 16) * 3, rng.uniform(-12, 12, 1 << 14), [0.0, -0.0, 9.0, -9.5]]).astype(F32)
    model = h.make_model(h.make_graph([h.make_node("Tanh", ["x"], ["y"])], "tanh", [h.make_tensor_value_info("x", T.FLOAT, [x.size])],
                                      [h.make_tensor_value_info("y", T.FLOAT, [x.size])]), opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(mlas_tanh(x), expected)


def test_quantize_dynamic_lstm_matches_onnxruntime(tmp_path):
    model = quantized(float_lstm(steps=5, batch=1, inputs=6, hidden=8), tmp_path, "forward")
    assert_matches_onnxruntime(model, tmp_path, "forward")


def test_bidirectional_with_initial_states_matches_onnxruntime(tmp_path):
    """Two directions on the same quantized X, initial h and c given at run time, a batch of 2 quantized together."""
    model = quantized(float_lstm(steps=4, batch=2, inputs=5, hidden=6, direction="bidirectional", states=True, seed=1),
                      tmp_path, "bidirectional")
    assert_matches_onnxruntime(model, tmp_path, "bidirectional")


def test_final_states_only(tmp_path):
    """An LSTM whose Y is not used (output ''): Y_h and Y_c, as an encoder writes it."""
    model = quantized(float_lstm(steps=6, batch=1, inputs=4, hidden=5, direction="reverse", outputs=("", "Y_h", "Y_c"), seed=2),
                      tmp_path, "states")
    assert_matches_onnxruntime(model, tmp_path, "states")


def test_stacked_layers(tmp_path):
    """Two layers (torch's num_layers=2 export): the second's X is the first's Y, whose shape is known only after the
    first is rewritten (shape inference knows no com.microsoft op)."""
    first, second = float_lstm(steps=4, batch=1, inputs=5, hidden=6), float_lstm(steps=4, batch=1, inputs=6, hidden=6, seed=3)
    graph = first.graph
    for init in second.graph.initializer:
        init.name = f"{init.name}2"
    graph.initializer.extend(second.graph.initializer)
    del graph.output[:]
    graph.node[0].output[:] = ["Y1", "", ""]
    graph.node.extend([
        h.make_node("Squeeze", ["Y1", "axis1"], ["x2"], name="squeeze"),
        h.make_node("LSTM", ["x2", "W2", "R2", "B2"], ["", "Y_h"], name="lstm2", hidden_size=6),
    ])
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    graph.output.append(h.make_tensor_value_info("Y_h", T.FLOAT, [1, 1, 6]))
    model = quantized(first, tmp_path, "stacked", lstms=2)
    assert_matches_onnxruntime(model, tmp_path, "stacked")


def hand_built(hidden: int = 4, inputs: int = 3, steps: int = 3, direction: str = "forward", weight_type=np.uint8,
               seq_lens: str = "", **attrs) -> onnx.ModelProto:
    """A DynamicQuantizeLSTM written directly: per-column scales, one zero point per direction, bias and peepholes."""
    rng = np.random.default_rng(7)
    dirs = 2 if direction == "bidirectional" else 1
    low, high = (0, 256) if weight_type == np.uint8 else ((-64, 64) if SATURATES else (-128, 128))
    zp = 131 if weight_type == np.uint8 else 0
    cols = 4 * hidden
    inits = {
        "W": rng.integers(low, high, (dirs, inputs, cols)).astype(weight_type),
        "R": rng.integers(low, high, (dirs, hidden, cols)).astype(weight_type),
        "B": rng.uniform(-0.3, 0.3, (dirs, 2 * cols)).astype(F32),
        "P": rng.uniform(-0.5, 0.5, (dirs, 3 * hidden)).astype(F32),
        "w_scale": rng.uniform(0.002, 0.006, (dirs, cols)).astype(F32),
        "w_zp": np.full((dirs, cols), zp, weight_type),
        "r_scale": rng.uniform(0.002, 0.006, (dirs,)).astype(F32),
        "r_zp": np.full((dirs,), zp, weight_type),
    }
    node = h.make_node("DynamicQuantizeLSTM", ["x", "W", "R", "B", seq_lens, "", "", "P", "w_scale", "w_zp", "r_scale", "r_zp"],
                       ["Y", "Y_h", "Y_c"], name="dq_lstm", domain="com.microsoft", hidden_size=hidden, direction=direction, **attrs)
    graph_inputs = [h.make_tensor_value_info("x", T.FLOAT, [steps, 1, inputs])]
    if seq_lens:
        graph_inputs.append(h.make_tensor_value_info(seq_lens, T.INT32, [1]))
    outputs = [h.make_tensor_value_info("Y", T.FLOAT, [steps, dirs, 1, hidden])]
    outputs += [h.make_tensor_value_info(n, T.FLOAT, [dirs, 1, hidden]) for n in ("Y_h", "Y_c")]
    graph = h.make_graph([node], "dq_lstm", graph_inputs, outputs, initializer=[numpy_helper.from_array(v, n) for n, v in inits.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)], ir_version=8)


@pytest.mark.parametrize("direction, weight_type, attrs", [
    ("forward", np.uint8, {"clip": 0.75}),
    ("bidirectional", np.int8, {"input_forget": 1}),
])
def test_hand_built_nodes_match_onnxruntime(tmp_path, direction, weight_type, attrs):
    """What quantize_dynamic does not write: per-column W scales, uint8 weights with a zero point, peepholes, clip,
    input_forget (peepholes make i, f and o separate gates, o read after the cell)."""
    model = hand_built(direction=direction, weight_type=weight_type, **attrs)
    assert_matches_onnxruntime(model, tmp_path, f"hand_{direction}")


@pytest.mark.parametrize("change, message", [
    ({"seq_lens": "lens"}, r"node 'dq_lstm' \(com.microsoft.DynamicQuantizeLSTM\): sequence_lens \('lens'\) must be absent"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, r"node 'dq_lstm' .*activations \['sigmoid', 'relu', 'tanh'\]"),
    ({"layout": 1}, r"node 'dq_lstm' .*layout=1"),
])
def test_refusals_name_the_node(tmp_path, change, message):
    path = tmp_path / "refused.onnx"
    onnx.save(hand_built(**change), path)
    with pytest.raises(HccError, match=message):
        load_model(path)
