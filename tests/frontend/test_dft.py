"""DFT (frontend/dft.py): forward and inverse, real and complex signals, one-sided (rfft) and inverse one-sided
(irfft), dft_length shorter and longer than the axis, opset 17's axis attribute and opset 20's axis input (a
run-time axis picked with Where), compared with onnx.reference (numpy's FFT) and onnxruntime; a one-sided transform
with a run-time axis is refused naming the node. STFT (the same transform of Gathered, windowed frames) likewise."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError


def _model(x_shape: list[int], opset: int, length: int | None = None, axis: int | None = None,
           run_time_axis: bool = False, **attrs) -> onnx.ModelProto:
    inputs, inits = [h.make_tensor_value_info("x", T.FLOAT, x_shape)], []
    names = ["x", "dft_length" if length is not None else ""]
    if length is not None:
        inits.append(numpy_helper.from_array(np.array(length, np.int64), "dft_length"))
    if opset >= 20:
        names.append("axis")
        if run_time_axis:
            inputs.append(h.make_tensor_value_info("axis", T.INT64, []))
        else:
            inits.append(numpy_helper.from_array(np.array(axis if axis is not None else -2, np.int64), "axis"))
    elif axis is not None:
        attrs["axis"] = axis
    node = h.make_node("DFT", names, ["y"], name="dft", **attrs)
    graph = h.make_graph([node], "dft", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=9)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _run(tmp_path, model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    return hcc.runtime.load(tmp_path / "b")


def _compare(got: np.ndarray, model: onnx.ModelProto, feeds: dict[str, np.ndarray], with_ort: bool = True) -> None:
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, feeds)[0], rtol=1e-4, atol=1e-4)
    if with_ort:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got, session.run(None, feeds)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape, opset, length, axis, attrs", [
    ([2, 12, 3, 1], 17, None, 1, {}),  # real forward
    ([2, 5, 9, 2], 20, None, -2, {"inverse": 1}),  # complex inverse
    ([3, 16, 1], 20, 11, 1, {"onesided": 1}),  # rfft of a truncated signal, odd length
    ([2, 7, 4, 2], 17, 12, 1, {"inverse": 1, "onesided": 1}),  # irfft: half spectrum of 7 for length 12
    ([1, 6, 5, 2], 20, 9, 1, {}),  # complex forward, zero-padded to 9
])
def test_transforms(tmp_path, x_shape, opset, length, axis, attrs):
    model = _model(x_shape, opset, length, axis, **attrs)
    x = np.random.default_rng(17).standard_normal(x_shape).astype(np.float32)
    got = _run(tmp_path, model, {"x": x}).run(None, {"x": x})[0]
    _compare(got, model, {"x": x})


def test_run_time_axis(tmp_path):
    model = _model([4, 4, 4, 2], 20, run_time_axis=True)
    x = np.random.default_rng(20).standard_normal((4, 4, 4, 2)).astype(np.float32)
    session = _run(tmp_path, model, {"x": x, "axis": np.array(1, np.int64)})
    for axis in (0, 1, 2, -2, -3, -4):
        feeds = {"x": x, "axis": np.array(axis, np.int64)}
        _compare(session.run(None, feeds)[0], model, feeds)


def test_one_sided_run_time_axis_is_refused(tmp_path):
    onnx.save(_model([2, 6, 6, 1], 20, run_time_axis=True, onesided=1), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'dft' \(DFT\): the axis is given at run time, but a one-sided"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")


def _stft_model(onesided: int, window: bool) -> onnx.ModelProto:
    inputs = ["signal", "frame_step"] + (["window"] if window else ["", "frame_length"])
    node = h.make_node("STFT", inputs, ["y"], name="stft", onesided=onesided)
    graph_inputs = [h.make_tensor_value_info("signal", T.FLOAT, [2, 50, 1])]
    inits = [numpy_helper.from_array(np.array(6, np.int64), "frame_step")]
    if window:
        graph_inputs.append(h.make_tensor_value_info("window", T.FLOAT, [12]))
    else:
        inits.append(numpy_helper.from_array(np.array(12, np.int64), "frame_length"))
    graph = h.make_graph([node], "stft", graph_inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    return onnx.shape_inference.infer_shapes(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8))


@pytest.mark.parametrize("onesided, window", [(1, True), (0, False)])
def test_stft(tmp_path, onesided, window):
    """Frames of 12 every 6 samples of a 50-sample signal (7 frames), with a run-time window or none."""
    model = _stft_model(onesided, window)
    rng = np.random.default_rng(5)
    feeds = {"signal": rng.standard_normal((2, 50, 1)).astype(np.float32)}
    if window:
        feeds["window"] = np.hanning(12).astype(np.float32)
    got = _run(tmp_path, model, feeds).run(None, feeds)[0]
    assert got.shape == (2, 7, 7 if onesided else 12, 2)
    _compare(got, model, feeds)


@pytest.mark.parametrize("length, dft_length", [(10, None), (12, None), (6, 15), (30, 20), (8, None)])
def test_complex_inverse_is_numpys_bit_for_bit(tmp_path, length, dft_length):
    """An inverse complex transform repeats pocketfft's passes (np.fft.ifft in float32), so it equals the reference
    exactly, also where the true value is 0 (the node suite's test_dft_inverse); 8 divides no length but the last,
    which keeps the MatMuls (numpy's radix-8 pass is not repeated) and is only close."""
    model = _model([2, length, 3, 2], 20, dft_length, 1, inverse=1)
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length, 3, 2)).astype(np.float32)
    x[1] = np.arange(length * 3 * 2).reshape(length, 3, 2)  # symmetric sums that cancel (true zeros)
    got = _run(tmp_path, model, {"x": x}).run(None, {"x": x})[0]
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    if length % 8:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_stft_default_onesided_with_declared_shape(tmp_path):
    """An STFT without the onesided attribute (default 1) whose output is declared [2, 7, 7, 2]: onnx's shape
    inference reads the missing attribute as 0 (12 bins) and would refuse the model; hcc writes the default first."""
    node = h.make_node("STFT", ["signal", "frame_step", "", "frame_length"], ["y"], name="stft")
    graph = h.make_graph([node], "stft", [h.make_tensor_value_info("signal", T.FLOAT, [2, 50, 1])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2, 7, 7, 2])],
                         initializer=[numpy_helper.from_array(np.array(6, np.int64), "frame_step"),
                                      numpy_helper.from_array(np.array(12, np.int64), "frame_length")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    feeds = {"signal": np.random.default_rng(6).standard_normal((2, 50, 1)).astype(np.float32)}
    got = _run(tmp_path, model, feeds).run(None, feeds)[0]
    assert got.shape == (2, 7, 7, 2)
    _compare(got, model, feeds)
