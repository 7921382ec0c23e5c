"""Det (frontend/det.py): Gaussian elimination with partial pivoting, unrolled; compared with numpy's det (the
reference's) for sizes 1..7, batches, pivoting that must swap (zero leading entries, permutation matrices: exact
signs), singular matrices (exactly 0) and float64; matrices above 64 x 64 are refused naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.loader import load_model


def _model(shape: list, elem: int = T.FLOAT) -> onnx.ModelProto:
    graph = h.make_graph([h.make_node("Det", ["x"], ["y"], name="det")], "det", [h.make_tensor_value_info("x", elem, shape)],
                         [h.make_tensor_value_info("y", elem, shape[:-2])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 22)], ir_version=10)


def _session(tmp_path, shape: list, elem: int = T.FLOAT):
    onnx.save(_model(shape, elem), tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    return hcc.runtime.load(tmp_path / "b")


@pytest.mark.parametrize("shape", [[1, 1], [2, 2], [3, 3], [4, 5, 5], [2, 3, 7, 7]])
def test_random_matrices(tmp_path, shape):
    session, rng = _session(tmp_path, shape), np.random.default_rng(len(shape) * 10 + shape[-1])
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        got = session.run(None, {"x": x})[0]
        assert got.shape == tuple(shape[:-2])
        np.testing.assert_allclose(got, np.linalg.det(x), rtol=2e-5, atol=1e-6)


def test_pivoting_signs_and_singular(tmp_path):
    session = _session(tmp_path, [6, 3, 3])
    x = np.array([
        [[0, 1, 0], [1, 0, 0], [0, 0, 1]],  # one swap: -1
        [[0, 0, 1], [1, 0, 0], [0, 1, 0]],  # a cycle of three: +1
        [[0, 2, 3], [4, 5, 6], [7, 8, 10]],  # a zero leading entry
        [[1, 2, 3], [2, 4, 6], [1, 0, 1]],  # singular: two dependent rows
        [[0, 0, 0], [1, 2, 3], [4, 5, 6]],  # singular: a zero row
        [[2, 0, 0], [0, 3, 0], [0, 0, -4]],
    ], np.float32)
    got = session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got[[0, 1, 4, 5]], [-1, 1, 0, -24])
    np.testing.assert_allclose(got, np.linalg.det(x.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_double(tmp_path):
    x = np.random.default_rng(3).standard_normal((5, 4, 4))
    np.testing.assert_allclose(_session(tmp_path, [5, 4, 4], T.DOUBLE).run(None, {"x": x})[0], np.linalg.det(x), rtol=1e-12)


def test_large_matrices_are_refused(tmp_path):
    onnx.save(_model([65, 65]), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'det' \(Det\): 65 x 65 matrices; hcc compiles Det up to 64 x 64"):
        load_model(str(tmp_path / "m.onnx"))
