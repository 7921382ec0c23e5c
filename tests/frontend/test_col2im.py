"""Col2Im (frontend/col2im.py) with constant image and block shapes: strides, dilations and uneven pads together, a
volume, a batch and several channels, an inf in the columns (added, never multiplied), compared with onnx.reference
and onnxruntime; a run-time image shape is refused naming the node."""
from __future__ import annotations

import math

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


def _model(image: list[int], block: list[int], n: int, c: int, constant: bool = True, **attrs) -> onnx.ModelProto:
    s = len(image)
    strides, dilations = attrs.get("strides", [1] * s), attrs.get("dilations", [1] * s)
    pads = attrs.get("pads", [0] * 2 * s)
    grid = [(image[d] + pads[d] + pads[s + d] - dilations[d] * (block[d] - 1) - 1) // strides[d] + 1 for d in range(s)]
    node = h.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["y"], name="col2im", **attrs)
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [n, c * math.prod(block), math.prod(grid)])]
    inits = [numpy_helper.from_array(np.array(block, np.int64), "block_shape")]
    if constant:
        inits.append(numpy_helper.from_array(np.array(image, np.int64), "image_shape"))
    else:
        inputs.append(h.make_tensor_value_info("image_shape", T.INT64, [s]))
    graph = h.make_graph([node], "col2im", inputs, [h.make_tensor_value_info("y", T.FLOAT, [n, c] + image)],
                         initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("image, block, attrs", [
    ([7, 8], [3, 2], {"strides": [2, 3], "dilations": [2, 1], "pads": [1, 0, 2, 3]}),
    ([4, 5, 3], [2, 3, 1], {"strides": [1, 2, 1], "pads": [0, 1, 0, 1, 0, 0]}),
])
def test_matches_reference(tmp_path, image, block, attrs):
    model = _model(image, block, n=2, c=3, **attrs)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(18).standard_normal(shape).astype(np.float32)
    x[0, :, shape[2] // 2] = np.inf  # a block in the middle of the image: it lands inside, whatever the pads
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", x=x)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    assert np.isinf(got).any() and not np.isnan(got).any()


def test_run_time_image_shape_is_refused(tmp_path):
    onnx.save(_model([4, 4], [2, 2], n=1, c=1, constant=False), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'col2im' \(Col2Im\): image_shape and block_shape must be constants"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
