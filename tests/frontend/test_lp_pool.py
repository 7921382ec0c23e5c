"""LpPool with dilations or SAME padding (frontend/lp_pool.py: a depthwise Conv of |x|^p), compiled and checked
against onnxruntime; the SAME padding arithmetic against ONNX's rule (odd pixel after for SAME_UPPER)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

from hcc.frontend.lp_pool import same_pads
from helpers import compile_and_compare


def test_same_pads_put_the_odd_pixel_where_onnx_says():
    assert same_pads([7, 8], [3, 2], [2, 1], [1, 2], upper=True) == [1, 1, 1, 1]
    assert same_pads([6], [4], [1], [1], upper=True) == [1, 2]
    assert same_pads([6], [4], [1], [1], upper=False) == [2, 1]


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 2], "dilations": [2, 1], "p": 2},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2], "p": 3},
    {"kernel_shape": [2, 4], "auto_pad": "SAME_LOWER", "p": 1},
])
def test_lp_pool_matches_onnxruntime(tmp_path, attrs):
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 10])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = h.make_model(h.make_graph([h.make_node("LpPool", ["x"], ["y"], name="lp", **attrs)], "g", [x], [y]),
                         opset_imports=[h.make_opsetid("", 18)])
    model = onnx.shape_inference.infer_shapes(model)
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 3, 9, 10)).astype(np.float32)}
    compile_and_compare(model, tmp_path, feeds=feeds)
