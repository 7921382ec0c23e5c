"""RoiAlign (frontend/roi_align.py): coordinate arithmetic, GatherElements and reductions; avg and max, half_pixel
and output_half_pixel, spatial_scale, regions reaching outside the image and past its last
row and column, several images picked by batch_indices, compared with onnx.reference; sampling_ratio 0 is refused
naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.loader import load_model

ROIS = np.array([[0.0, 0.0, 9.0, 9.0], [1.5, 2.25, 6.0, 4.5], [-3.0, -2.0, 4.0, 12.5], [7.0, 6.5, 12.0, 11.0],
                 [2.0, 2.0, 2.3, 2.1]], np.float32)


def _model(x_shape: list, regions: int, opset: int = 22, **attrs) -> onnx.ModelProto:
    node = h.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], name="roi", **attrs)
    oh, ow = attrs.get("output_height", 1), attrs.get("output_width", 1)
    graph = h.make_graph([node], "roi_align", [h.make_tensor_value_info("x", T.FLOAT, x_shape),
                                                h.make_tensor_value_info("rois", T.FLOAT, [regions, 4]),
                                                h.make_tensor_value_info("batch", T.INT64, [regions])],
                         [h.make_tensor_value_info("y", T.FLOAT, [regions, x_shape[1], oh, ow])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8 if opset < 19 else 10)


@pytest.mark.parametrize("attrs", [
    {"mode": "avg", "coordinate_transformation_mode": "half_pixel", "output_height": 3, "output_width": 4, "sampling_ratio": 2},
    {"mode": "max", "coordinate_transformation_mode": "output_half_pixel", "output_height": 2, "output_width": 2, "sampling_ratio": 3},
    {"mode": "avg", "coordinate_transformation_mode": "output_half_pixel", "output_height": 5, "output_width": 3,
     "sampling_ratio": 1, "spatial_scale": 0.5},
    {"mode": "max", "coordinate_transformation_mode": "half_pixel", "output_height": 4, "output_width": 4, "sampling_ratio": 2,
     "spatial_scale": 0.75},
])
def test_matches_reference(tmp_path, attrs):
    model = _model([2, 3, 10, 9], len(ROIS), **attrs)
    onnx.save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(16)
    feeds = {"x": rng.standard_normal((2, 3, 10, 9)).astype(np.float32), "rois": ROIS,
             "batch": np.array([0, 1, 1, 0, 1], np.int64)}
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    session, reference = hcc.runtime.load(tmp_path / "b"), ReferenceEvaluator(model)
    for seed in range(3):
        feeds["x"] = np.random.default_rng(seed).standard_normal((2, 3, 10, 9)).astype(np.float32)
        feeds["rois"] = ROIS + np.float32(seed * 0.37)
        np.testing.assert_allclose(session.run(None, feeds)[0], reference.run(None, feeds)[0], rtol=1e-5, atol=1e-6)


def test_adaptive_sampling_is_refused(tmp_path):
    onnx.save(_model([1, 1, 4, 4], 1, output_height=2, output_width=2), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'roi' \(RoiAlign\): sampling_ratio 0"):
        load_model(str(tmp_path / "m.onnx"))
