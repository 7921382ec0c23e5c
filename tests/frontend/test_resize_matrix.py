"""Resize modes torch-mlir does not convert, as one interpolation matrix per axis (frontend/resize_matrix.py): the
rewritten graph gives the ONNX reference's outputs, and a compiled bundle matches the reference."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

from hcc.frontend.resize_matrix import restate_resizes


def resize_model(shape, out_shape, scales=None, sizes=None, roi=None, **attrs) -> onnx.ModelProto:
    inits, names = [], ["x", "", "", ""]
    for i, (name, value) in enumerate((("roi", roi), ("scales", scales), ("sizes", sizes)), start=1):
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, np.int64 if name == "sizes" else np.float32), name))
            names[i] = name
    node = h.make_node("Resize", names, ["y"], name="resize", **attrs)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 19)])


CASES = [
    dict(shape=[1, 2, 4, 4], out_shape=[1, 2, 8, 8], scales=[1, 1, 2, 2], mode="cubic"),
    dict(shape=[1, 1, 8, 8], out_shape=[1, 1, 3, 5], sizes=[1, 1, 3, 5], mode="linear", antialias=1),
    dict(shape=[1, 1, 8, 8], out_shape=[1, 1, 4, 4], scales=[1, 1, 0.5, 0.5], mode="cubic", antialias=1, exclude_outside=1),
    dict(shape=[1, 1, 4, 4], out_shape=[1, 1, 3, 3], sizes=[1, 1, 3, 3], roi=[0, 0, 0.4, 0.6, 1, 1, 1.2, 1.7],
         mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=10.0),
    dict(shape=[1, 1, 2, 4], out_shape=[1, 1, 1, 2], scales=[1, 1, 0.6, 0.6], mode="linear",
         coordinate_transformation_mode="align_corners"),
    dict(shape=[1, 1, 3, 3], out_shape=[1, 1, 3, 3], scales=[1, 1, 1.1, 1.2], mode="cubic"),  # same lengths, scale != 1
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for k, v in c.items() if k not in ("shape", "out_shape")))
def test_rewritten_graph_gives_the_reference_outputs(case):
    model = resize_model(**case)
    x = np.random.default_rng(0).standard_normal(case["shape"]).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert restate_resizes(model) == 1
    assert all(n.op_type != "Resize" for n in model.graph.node)
    np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_converted_modes_are_kept():
    """Nearest and linear without cropping or align_corners stay Resize nodes (torch-mlir converts them)."""
    for mode in ("nearest", "linear"):
        model = resize_model([1, 1, 4, 4], [1, 1, 8, 8], scales=[1, 1, 2, 2], mode=mode)
        assert restate_resizes(model) == 0


def test_compiled_matches_the_reference(tmp_path):
    import hcc
    from hcc.runtime import load

    model = resize_model(**CASES[2])
    onnx.save(model, tmp_path / "r.onnx")
    hcc.compile(tmp_path / "r.onnx", tmp_path / "r.bundle")
    x = np.random.default_rng(1).standard_normal(CASES[2]["shape"]).astype(np.float32)
    (y,) = load(tmp_path / "r.bundle").run(None, {"x": x})
    np.testing.assert_allclose(y, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
