"""Sequence and optional graph inputs/outputs (frontend/boundary.py): a sequence input compiled for a declared length
and run with a list (against onnxruntime), a sequence output returned as a list, an optional input present and
absent, the `--input-shape` forms, and the errors for an undeclared or mis-declared sequence."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.loader import load_model, parse_shape_options
from hcc.runtime.golden_check import check_golden


def _sequence_model() -> onnx.ModelProto:
    """xs: a sequence of [?, 3] tensors, concatenated and scaled by b (y); its element 1 scaled by b and split into a
    sequence of its rows (rows)."""
    xs = h.make_tensor_sequence_value_info("xs", T.FLOAT, ["n", 3])
    b = h.make_tensor_value_info("b", T.FLOAT, [3])
    one = h.make_tensor("one", T.INT64, [], [1])
    nodes = [
        h.make_node("ConcatFromSequence", ["xs"], ["cat"], name="concat", axis=0),
        h.make_node("Mul", ["cat", "b"], ["y"], name="scale"),
        h.make_node("SequenceAt", ["xs", "one"], ["second"], name="at"),
        h.make_node("Mul", ["second", "b"], ["scaled"], name="scale_second"),
        h.make_node("SplitToSequence", ["scaled"], ["rows"], name="split", axis=0, keepdims=0),
    ]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, None), h.make_tensor_sequence_value_info("rows", T.FLOAT, None)]
    graph = h.make_graph(nodes, "sequences", [xs, b], outputs, initializer=[one])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def _optional_model() -> onnx.ModelProto:
    """o: an optional [3] tensor; has = OptionalHasElement(o), z = Identity(o) (an optional output), y = x + x."""
    o = h.make_value_info("o", h.make_optional_type_proto(h.make_tensor_type_proto(T.FLOAT, [3])))
    x = h.make_tensor_value_info("x", T.FLOAT, [3])
    nodes = [
        h.make_node("OptionalHasElement", ["o"], ["has"], name="has"),
        h.make_node("Identity", ["o"], ["z"], name="pass"),
        h.make_node("Add", ["x", "x"], ["y"], name="double"),
    ]
    outputs = [h.make_tensor_value_info("has", T.BOOL, []), h.make_tensor_value_info("y", T.FLOAT, [3]),
               h.make_value_info("z", h.make_optional_type_proto(h.make_tensor_type_proto(T.FLOAT, [3])))]
    graph = h.make_graph(nodes, "optionals", [o, x], outputs)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)


def test_sequence_input_and_output(tmp_path):
    model = _sequence_model()
    onnx.save(model, tmp_path / "m.onnx")
    manifest = hcc.compile(tmp_path / "m.onnx", tmp_path / "b", input_shapes={"xs": [[3, 3], [3, 3]]})
    assert manifest.format_version == 4
    assert manifest.inputs == ["xs[0]", "xs[1]", "b"]
    assert manifest.outputs == ["y", "rows[0]", "rows[1]", "rows[2]"]
    assert manifest.boundary.values == {"xs": {"sequence": ["xs[0]", "xs[1]"]}, "rows": {"sequence": ["rows[0]", "rows[1]", "rows[2]"]}}
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 3)).astype(np.float32) for _ in range(2)]
    b = rng.standard_normal(3).astype(np.float32)
    y, rows = hcc.runtime.load(tmp_path / "b").run(None, {"xs": xs, "b": b})
    want_y, want_rows = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"xs": xs, "b": b})
    assert y.shape == want_y.shape == (6, 3)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    assert isinstance(rows, list) and len(rows) == len(want_rows) == 3
    for got, want in zip(rows, want_rows):
        assert got.shape == want.shape == (3,)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    report = check_golden(tmp_path / "b")  # `hcc test`: the golden data holds the flat tensors of the list output
    assert report.passed and {c.name for c in report.outputs} >= {"rows[0]", "rows[2]"}


def test_wrong_list_length_names_the_input(tmp_path):
    onnx.save(_sequence_model(), tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", input_shapes={"xs": [[2, 3]] * 3})
    session = hcc.runtime.load(tmp_path / "b")
    b = np.ones(3, np.float32)
    with pytest.raises(HccError, match=r"input 'xs': a list of 2 tensors, the bundle was compiled for a sequence of 3"):
        session.run(None, {"xs": [np.ones((2, 3), np.float32)] * 2, "b": b})
    with pytest.raises(HccError, match=r"input 'xs'\[1\]: shape \[1, 3\], expected \[2, 3\]"):
        session.run(None, {"xs": [np.ones((2, 3), np.float32), np.ones((1, 3), np.float32), np.ones((2, 3), np.float32)], "b": b})
    with pytest.raises(HccError, match=r"input 'xs': a ndarray, expected a list of 3 tensors"):
        session.run(None, {"xs": np.ones((6, 3), np.float32), "b": b})


@pytest.mark.parametrize("present", [True, False])
def test_optional_input_present_and_absent(tmp_path, present):
    onnx.save(_optional_model(), tmp_path / "m.onnx")
    manifest = hcc.compile(tmp_path / "m.onnx", tmp_path / "b", input_shapes={"o": [3] if present else None})
    assert manifest.boundary.values["o"] == {"optional": "o" if present else None}
    assert manifest.inputs == (["o", "x"] if present else ["x"])
    session = hcc.runtime.load(tmp_path / "b")
    o = np.array([1.5, -2.0, 3.0], np.float32) if present else None
    x = np.array([1.0, 2.0, 3.0], np.float32)
    has, y, z = session.run(None, {"o": o, "x": x})
    assert bool(has) is present
    np.testing.assert_array_equal(y, x + x)
    if present:
        np.testing.assert_array_equal(z, o)
    else:
        assert z is None
    assert check_golden(tmp_path / "b").passed
    wrong = None if present else x
    with pytest.raises(HccError, match=r"input 'o'"):
        session.run(None, {"o": wrong, "x": x})


def test_sequence_input_needs_its_length(tmp_path):
    onnx.save(_sequence_model(), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"input 'xs' is a sequence: hcc compiles it for one length") as info:
        load_model(str(tmp_path / "m.onnx"))
    assert "--input-shape" in info.value.hint
    with pytest.raises(HccError, match=r"input 'xs'\[0\]: shape \[2, 4\] does not fit the model's element shape \['\?', 3\]"):
        load_model(str(tmp_path / "m.onnx"), {"xs": [[2, 4]]})
    with pytest.raises(HccError, match=r"'b' is a tensor input"):
        load_model(str(tmp_path / "m.onnx"), {"xs": [[2, 3]] * 2, "b": [[3]]})


def test_shape_options():
    assert parse_shape_options(["x=1x3", "s=[2x3,4x3]", "r=[2x3]*3", "e=[]", "k=[(),()]", "o=none", "t="]) == {
        "x": [1, 3], "s": [[2, 3], [4, 3]], "r": [[2, 3]] * 3, "e": [], "k": [[], []], "o": None, "t": []}
    with pytest.raises(HccError, match="NAME=\\[2x3,4x3\\]"):
        parse_shape_options(["s=[2x3"])
