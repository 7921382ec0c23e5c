"""DeformConv as GridSample + MatMul (frontend/deform_conv.py), compiled and checked against onnxruntime: groups,
offset groups, strides, dilations, padding, mask and bias, offsets that move samples off the image, both of
GridSample's names for bilinear sampling (before and from opset 20)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from helpers import compile_and_compare


def _model(opset: int, group: int, offset_group: int, stride: int, dilation: int, pad: int, mask: bool, bias: bool):
    n, c, size, o, k = 2, 4, 9, 6, 3
    out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    rng = np.random.default_rng(group * 10 + offset_group)
    inits = [numpy_helper.from_array(rng.standard_normal((o, c // group, k, k)).astype(np.float32), "w")]
    inputs = ["x", "w", "offset", "b" if bias else "", "mask" if mask else ""]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(o).astype(np.float32), "b"))
    values = [h.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, size, size]),
              h.make_tensor_value_info("offset", TensorProto.FLOAT, [n, offset_group * k * k * 2, out, out])]
    if mask:
        values.append(h.make_tensor_value_info("mask", TensorProto.FLOAT, [n, offset_group * k * k, out, out]))
    node = h.make_node("DeformConv", [i for i in inputs if i] if not mask else inputs, ["y"], name="deform", group=group,
                       offset_group=offset_group, strides=[stride, stride], dilations=[dilation, dilation], pads=[pad] * 4,
                       kernel_shape=[k, k])
    graph = h.make_graph([node], "g", values, [h.make_tensor_value_info("y", TensorProto.FLOAT, [n, o, out, out])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model, out


@pytest.mark.parametrize("opset,group,offset_group,stride,dilation,pad,mask,bias", [
    (19, 1, 1, 1, 1, 0, False, False),
    (19, 2, 2, 2, 1, 1, True, True),
    (22, 1, 2, 1, 2, 2, True, False),
])
def test_deform_conv_matches_onnxruntime(tmp_path, opset, group, offset_group, stride, dilation, pad, mask, bias):
    model, out = _model(opset, group, offset_group, stride, dilation, pad, mask, bias)
    rng = np.random.default_rng(7)
    feeds = {"x": rng.standard_normal((2, 4, 9, 9)).astype(np.float32),
             "offset": (rng.standard_normal((2, offset_group * 18, out, out)) * 2).astype(np.float32)}  # some samples off the image
    if mask:
        feeds["mask"] = rng.random((2, offset_group * 9, out, out)).astype(np.float32)
    compile_and_compare(model, tmp_path, feeds=feeds, rtol=1e-4, atol=1e-4)
    from hcc.frontend.loader import load_model

    ops = {n.op_type for n in load_model(str(tmp_path / "model.onnx")).model.graph.node}
    assert "DeformConv" not in ops and "MatMul" in ops  # (GridSample itself is restated further)
