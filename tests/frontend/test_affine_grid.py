"""AffineGrid with a constant size: one MatMul against a constant coordinate grid (frontend/affine_grid.py), the same
values as onnx's reference, compiled and checked against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h
from onnx.reference.ops.op_affine_grid import construct_original_grid

from hcc.frontend.affine_grid import base_grid
from helpers import compile_and_compare


@pytest.mark.parametrize("spatial", [[3, 4], [5, 2], [2, 3, 4]])
@pytest.mark.parametrize("align", [0, 1])
def test_base_grid_is_the_references(spatial, align):
    ref = construct_original_grid(spatial, align)
    np.testing.assert_allclose(base_grid(spatial, align), ref.reshape(-1, ref.shape[-1]).T, rtol=0, atol=1e-12)


def _model(size: list[int], align: int) -> onnx.ModelProto:
    rank = len(size) - 2
    theta = h.make_tensor_value_info("theta", TensorProto.FLOAT, [size[0], rank, rank + 1])
    grid = h.make_tensor_value_info("grid", TensorProto.FLOAT, [size[0], *size[2:], rank])
    node = h.make_node("AffineGrid", ["theta", "size"], ["grid"], name="affine", align_corners=align)
    graph = h.make_graph([node], "g", [theta], [grid], [numpy_helper.from_array(np.array(size, np.int64), "size")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 20)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("size,align", [([2, 3, 5, 6], 0), ([2, 3, 5, 6], 1), ([1, 1, 3, 4, 5], 0)])
def test_affine_grid_matches_onnxruntime(tmp_path, size, align):
    session, outputs, expected = compile_and_compare(_model(size, align), tmp_path)
    grid = outputs[0] if isinstance(outputs, list) else next(iter(outputs.values()))
    assert grid.shape == (size[0], *size[2:], len(size) - 2)


def test_run_time_size_keeps_the_node():
    from hcc.frontend.affine_grid import rewrite_affine_grid

    model = _model([2, 3, 5, 6], 0)
    model.graph.input.append(h.make_tensor_value_info("size", TensorProto.INT64, [4]))
    del model.graph.initializer[:]
    assert [n.op_type for n in rewrite_affine_grid(model, "m.onnx").graph.node] == ["AffineGrid"]
