"""frontend/upsampling.py: nearest Resize as a broadcast and ConvTranspose (kernel == stride) as a 1x1 Conv, only
where the result is the same; compiled bundles match onnxruntime on the model as written."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.frontend.loader import load_model
from helpers import compile_and_compare


def _resize_model(shape, scales=None, sizes=None, **attrs) -> onnx.ModelProto:
    inits, inputs = [], ["x", ""]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], name="up", **attrs)
    out = list(sizes) if sizes is not None else [int(n * s) for n, s in zip(shape, scales)]
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ops(model: onnx.ModelProto, path) -> list[str]:
    onnx.save(model, path)
    return [n.op_type for n in load_model(str(path)).model.graph.node]


@pytest.mark.parametrize("scales,sizes,attrs", [
    ([1, 1, 2, 2], None, {"mode": "nearest"}),  # ONNX defaults: half_pixel, round_prefer_floor
    ([1, 1, 3, 2], None, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),  # torch
    (None, [1, 3, 10, 14], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
])
def test_repeating_nearest_resize_becomes_a_broadcast(tmp_path, scales, sizes, attrs):
    model = _resize_model([1, 3, 5, 7], scales, sizes, **attrs)
    assert _ops(model, tmp_path / "m.onnx") == ["Reshape", "Expand", "Reshape"]
    _, outputs, expected = compile_and_compare(model, tmp_path, as_written=True)
    assert np.array_equal(outputs[0], expected["y"])  # a copy: bit-exact


@pytest.mark.parametrize("scales,attrs", [
    ([1, 1, 3, 3], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}),  # round_prefer_floor at 3x: o=2 -> 1
    ([1, 1, 2, 2], {"mode": "nearest", "nearest_mode": "floor"}),  # half_pixel with floor: o=2 -> 0
    ([1, 1, 1.5, 2], {"mode": "linear"}),  # a factor that is not an integer
])
def test_other_resizes_keep_the_general_path(tmp_path, scales, attrs):
    model = _resize_model([1, 2, 4, 6], scales, **attrs)
    assert "Resize" in _ops(model, tmp_path / "m.onnx")
    compile_and_compare(model, tmp_path, as_written=True)


@pytest.mark.parametrize("shape,scales,sizes,attrs", [
    ([1, 3, 5, 7], [1, 1, 2, 2], None, {"mode": "linear"}),  # ONNX's half_pixel: torch's bilinear, align_corners=False
    ([2, 4, 6, 9], [1, 1, 2, 2], None, {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ([1, 2, 4, 6], [1, 1, 3, 2], None, {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}),
    ([1, 2, 1, 5], None, [1, 2, 4, 10], {"mode": "linear"}),  # an axis of length 1: every tap clamps to it
    ([1, 6, 8], [1, 1, 4], None, {"mode": "linear"}),  # a 1-D (Upsample of a sequence) resize by 4
])
def test_linear_resize_by_integer_factors_becomes_phases(tmp_path, shape, scales, sizes, attrs):
    """Slices, weighted sums and an interleave (no Resize left: nothing reads by computed indices) that match
    onnxruntime, the edges included (they clamp to the first and last input element)."""
    model = _resize_model(shape, scales, sizes, **attrs)
    ops = _ops(model, tmp_path / "m.onnx")
    assert "Resize" not in ops and {"Slice", "Concat", "Reshape"} <= set(ops), ops
    compile_and_compare(model, tmp_path, as_written=True)


def test_align_corners_linear_resize_is_not_phases(tmp_path):
    """align_corners weights differ from one output to the next: no phase form, the matrix form instead
    (frontend/resize_matrix.py)."""
    model = _resize_model([1, 2, 4, 6], [1, 1, 2, 2], mode="linear", coordinate_transformation_mode="align_corners")
    assert "Slice" not in _ops(model, tmp_path / "m.onnx")


def _conv_transpose_model(c, f, kernel, strides, bias=True, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(c * 10 + f)
    inits = [numpy_helper.from_array(rng.standard_normal((c, f, *kernel)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(f).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", kernel_shape=list(kernel), strides=list(strides), **attrs)
    pads, extra = attrs.get("pads", [0] * 4), attrs.get("output_padding", [0, 0])
    out = [2, f] + [(n - 1) * s + k + e - pads[i] - pads[i + 2] for i, (n, s, k, e) in enumerate(zip((6, 5), strides, kernel, extra))]
    graph = helper.make_graph([node], "deconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 6, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("c,f,kernel,bias", [(8, 4, (2, 2), True), (3, 5, (3, 2), False), (16, 32, (4, 4), True)])
def test_conv_transpose_with_kernel_equal_to_stride_becomes_a_pointwise_conv(tmp_path, c, f, kernel, bias):
    model = _conv_transpose_model(c, f, kernel, kernel, bias)
    ops = _ops(model, tmp_path / "m.onnx")
    assert ops == ["Conv", "Reshape", "Transpose", "Reshape"]
    loaded = load_model(str(tmp_path / "m.onnx")).model
    assert {i.name for i in loaded.graph.initializer} >= {"up/pixel_filters"} and "w" not in {i.name for i in loaded.graph.initializer}
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,strides,attrs", [
    ((3, 3), (2, 2), {}),                       # overlapping windows
    ((2, 2), (2, 2), {"pads": [1, 0, 1, 0]}),   # cropped
    ((2, 2), (2, 2), {"output_padding": [1, 1]}),
])
def test_other_conv_transposes_keep_the_general_path(tmp_path, kernel, strides, attrs):
    model = _conv_transpose_model(4, 6, kernel, strides, **attrs)
    assert "ConvTranspose" in _ops(model, tmp_path / "m.onnx")
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-4, atol=1e-5)


def test_a_resize_whose_operands_are_constant_nodes_becomes_a_broadcast(tmp_path):
    """paddle2onnx writes Resize's roi (empty) and scales as Constant nodes, not initializers: they are read the same
    way (PP-OCRv4's detector: its six upsamplings ran as scalar gathers, 0.81 instead of 1.03x onnxruntime)."""
    nodes = [helper.make_node("Constant", [], ["roi"], value=numpy_helper.from_array(np.zeros([0], np.float32))),
             helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32))),
             helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="up", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 10, 14])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ops = _ops(model, tmp_path / "m.onnx")
    assert "Resize" not in ops and "Expand" in ops and "Constant" not in ops, ops
    compile_and_compare(model, tmp_path, as_written=True)


def _resize_conv_model(kernel: int = 1, also_read: bool = False, stride: int = 1) -> onnx.ModelProto:
    """x [1, 8, 5, 7] -> nearest Resize x2 -> Conv (8 -> 4 filters, bias) -> y; `also_read`: the Resize's output is
    a second output too."""
    rng = np.random.default_rng(kernel * 10 + stride)
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(rng.standard_normal((4, 8, kernel, kernel)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["up"], name="resize", mode="nearest"),
             helper.make_node("Conv", ["up", "w", "b"], ["y"], name="conv", pads=[kernel // 2] * 4, strides=[stride] * 2)]
    side = 10 // stride, 14 // stride
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, *side])]
    if also_read:
        outputs.append(helper.make_tensor_value_info("up", TensorProto.FLOAT, [1, 8, 10, 14]))
    graph = helper.make_graph(nodes, "resize_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 7])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_pointwise_conv_after_a_broadcasting_resize_runs_before_it(tmp_path):
    """Resize(x2) -> 1x1 Conv becomes Conv -> broadcast: the Conv on the small map, the same values."""
    model = _resize_conv_model()
    assert _ops(model, tmp_path / "m.onnx") == ["Conv", "Reshape", "Expand", "Reshape"]
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,also_read,stride", [(3, False, 1), (1, True, 1), (1, False, 2)])
def test_other_convs_after_a_resize_stay_after_it(tmp_path, kernel, also_read, stride):
    """A 3x3 Conv, a Resize output read elsewhere too, a strided 1x1 Conv: the Resize is still a broadcast, first."""
    model = _resize_conv_model(kernel, also_read, stride)
    assert _ops(model, tmp_path / "m.onnx") == ["Reshape", "Expand", "Reshape", "Conv"]
    compile_and_compare(model, tmp_path, as_written=True, rtol=1e-5, atol=1e-5)
