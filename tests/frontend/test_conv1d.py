"""1-D convolutions restated as 2-D ones over a height of 1 (frontend/conv1d.py): the same results as onnxruntime on
the model as written, for every attribute a 1-D Conv takes, and the 2-D convolution kernels run them instead of
plain loops (Silero VAD's STFT ran 7x slower than onnxruntime as loops)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.frontend.conv1d import restate_conv1d
from helpers import compile_and_compare


def _conv1d_model(c: int, f: int, length: int, k: int, *, stride=1, pad=(0, 0), dilation=1, group=1, bias=True,
                  constant_node=False, relu=True, opset=17, seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((f, c // group, k)) / np.sqrt(c // group * k)).astype(np.float32)
    inits, nodes = [], []
    if constant_node:  # as exporters write buffers: a Constant node, not an initializer
        nodes.append(h.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight, "w")))
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(f).astype(np.float32), "b"))
        inputs.append("b")
    nodes.append(h.make_node("Conv", inputs, ["c" if relu else "y"], name="conv", kernel_shape=[k], strides=[stride],
                             pads=list(pad), dilations=[dilation], group=group))
    if relu:
        nodes.append(h.make_node("Relu", ["c"], ["y"], name="relu"))
    out = (length + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1
    graph = h.make_graph(nodes, "conv1d", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, length])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, f, out])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("opset", [11, 17])
def test_a_1d_conv_becomes_unsqueeze_conv2d_squeeze(opset):
    model = _conv1d_model(4, 8, 32, 3, stride=2, pad=(1, 2), dilation=2, opset=opset)
    assert restate_conv1d(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze", "Conv", "Squeeze", "Relu"]
    conv = model.graph.node[1]
    attrs = {a.name: h.get_attribute_value(a) for a in conv.attribute}
    assert attrs["kernel_shape"] == [1, 3] and attrs["strides"] == [1, 2] and attrs["pads"] == [0, 1, 0, 2]
    assert attrs["dilations"] == [1, 2] and conv.name == "conv"
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    assert list(weight.dims) == [8, 4, 1, 3] and "w" not in {i.name for i in model.graph.initializer}


def test_a_2d_conv_or_a_run_time_weight_is_left_alone():
    model = _conv1d_model(4, 8, 32, 3)
    model.graph.input.append(h.make_tensor_value_info("w", TensorProto.FLOAT, [8, 4, 3]))  # the weight as an input
    assert restate_conv1d(model) == 0


@pytest.mark.parametrize("case", [
    dict(c=1, f=258, length=640, k=256, stride=128, relu=False, constant_node=True),  # an STFT front end (Silero VAD)
    dict(c=16, f=32, length=100, k=5, stride=2, pad=(2, 2)),                              # a strided encoder conv
    dict(c=16, f=16, length=64, k=3, pad=(2, 2), dilation=2, group=16),                  # depthwise, dilated
    dict(c=8, f=12, length=50, k=4, pad=(1, 2), group=4, bias=False),                    # grouped, uneven pads
])
def test_restated_1d_convs_match_onnxruntime_and_run_on_the_conv_kernels(tmp_path, case):
    model = _conv1d_model(**case)
    compile_and_compare(model, tmp_path, as_written=True)
    manifest = json.loads((tmp_path / "model.bundle" / "manifest.json").read_text())
    schedule = [e for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"]]
    conv = [e for e in schedule if e["node"] == "conv"]
    assert conv and all(e["kind"] != "loops" for e in conv), conv
