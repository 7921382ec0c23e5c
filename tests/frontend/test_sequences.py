"""Sequences of compile-time positions (frontend/sequences.py): SequenceConstruct/Insert/Erase/At/Length,
SplitToSequence (scalar, list and absent split, keepdims 0) and ConcatFromSequence (new_axis 0 and 1) rewritten into
tensor ops, and Optional / OptionalGetElement / OptionalHasElement inside the graph, compared with onnxruntime; a
run-time position is refused naming the node; a sequence graph output becomes its elements."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.loader import load_model

F = T.FLOAT


def _i64(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.int64), name)


def _check(tmp_path, model: onnx.ModelProto, feeds: dict) -> None:
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    got = hcc.runtime.load(tmp_path / "b").run(None, feeds)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


def test_construct_insert_erase_at_length_concat(tmp_path):
    nodes = [
        h.make_node("SequenceConstruct", ["a", "b"], ["s0"], name="construct"),
        h.make_node("SequenceInsert", ["s0", "c", "one"], ["s1"], name="insert"),  # a, c, b
        h.make_node("SequenceLength", ["s1"], ["length"], name="length"),
        h.make_node("SequenceAt", ["s1", "minus_one"], ["last"], name="at"),  # b
        h.make_node("Identity", ["s1"], ["s1_copy"], name="alias"),
        h.make_node("SequenceErase", ["s1_copy", "zero"], ["s2"], name="erase"),  # c, b
        h.make_node("SequenceInsert", ["s2", "a"], ["s3"], name="append"),  # c, b, a
        h.make_node("SequenceErase", ["s3"], ["s4"], name="erase_last"),  # c, b
        h.make_node("SequenceEmpty", [], ["empty"], name="empty", dtype=F),
        h.make_node("SequenceInsert", ["empty", "b"], ["s5"], name="first"),
        h.make_node("ConcatFromSequence", ["s4"], ["cat"], name="concat", axis=0),
        h.make_node("SequenceAt", ["s5", "zero"], ["only"], name="at_only"),
        h.make_node("Mul", ["cat", "cat"], ["y"], name="square"),
        h.make_node("Cast", ["length"], ["length_f"], name="length_float", to=F),
        h.make_node("Mul", ["a", "length_f"], ["scaled"], name="scale"),  # (a constant output is refused on its own)
    ]
    graph = h.make_graph(nodes, "sequences", [h.make_tensor_value_info(n, F, s) for n, s in (("a", [2, 3]), ("b", [2, 3]), ("c", [4, 3]))],
                         [h.make_tensor_value_info("y", F, [6, 3]), h.make_tensor_value_info("last", F, [2, 3]),
                          h.make_tensor_value_info("scaled", F, [2, 3]), h.make_tensor_value_info("only", F, [2, 3])],
                         initializer=[_i64("one", 1), _i64("minus_one", -1), _i64("zero", 0)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(11)
    _check(tmp_path, model, {n: rng.standard_normal(s).astype(np.float32) for n, s in (("a", (2, 3)), ("b", (2, 3)), ("c", (4, 3)))})


@pytest.mark.parametrize("opset", [13, 17])
def test_split_to_sequence_and_stack(tmp_path, opset):
    nodes = [
        h.make_node("SplitToSequence", ["x", "two"], ["pairs"], name="split_pairs", axis=1),
        h.make_node("ConcatFromSequence", ["pairs"], ["stacked"], name="stack", axis=0, new_axis=1),  # [3, 3, 2]
        h.make_node("SplitToSequence", ["x", "sizes"], ["parts"], name="split_sizes", axis=-1),
        h.make_node("SequenceAt", ["parts", "one"], ["middle"], name="middle_part"),  # [3, 4]
        h.make_node("SplitToSequence", ["x"], ["rows"], name="split_rows", axis=0, keepdims=0),
        h.make_node("SequenceAt", ["rows", "two"], ["row"], name="third_row"),  # [6]
    ]
    graph = h.make_graph(nodes, "split", [h.make_tensor_value_info("x", F, [3, 6])],
                         [h.make_tensor_value_info("stacked", F, [3, 3, 2]), h.make_tensor_value_info("middle", F, [3, 4]),
                          h.make_tensor_value_info("row", F, [6])],
                         initializer=[_i64("two", 2), _i64("sizes", [1, 4, 1]), _i64("one", 1)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8)
    _check(tmp_path, model, {"x": np.arange(18, dtype=np.float32).reshape(3, 6)})


def test_optionals_made_and_read_in_the_graph(tmp_path):
    nodes = [
        h.make_node("Optional", ["a"], ["opt"], name="wrap"),
        h.make_node("OptionalGetElement", ["opt"], ["got"], name="unwrap"),
        h.make_node("OptionalHasElement", ["opt"], ["has"], name="has"),
        h.make_node("Optional", [], ["none"], name="empty", type=h.make_tensor_type_proto(F, [2])),
        h.make_node("OptionalHasElement", ["none"], ["has_none"], name="has_none"),
        h.make_node("OptionalGetElement", ["b"], ["plain"], name="plain_tensor"),
        h.make_node("Cast", ["has"], ["one"], name="one", to=F),
        h.make_node("Cast", ["has_none"], ["zero"], name="zero", to=F),
        h.make_node("Sum", ["got", "one", "zero", "plain"], ["y"], name="sum"),
    ]
    graph = h.make_graph(nodes, "optionals", [h.make_tensor_value_info("a", F, [2]), h.make_tensor_value_info("b", F, [2])],
                         [h.make_tensor_value_info("y", F, [2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)
    _check(tmp_path, model, {"a": np.array([1.5, -2.0], np.float32), "b": np.array([10.0, 20.0], np.float32)})


def test_run_time_position_is_refused(tmp_path):
    nodes = [h.make_node("SequenceConstruct", ["a", "a"], ["s"], name="construct"),
             h.make_node("SequenceAt", ["s", "i"], ["y"], name="pick")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("a", F, [2]), h.make_tensor_value_info("i", T.INT64, [])],
                         [h.make_tensor_value_info("y", F, [2])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'pick' \(SequenceAt\): position 'i' is not a compile-time constant"):
        load_model(str(tmp_path / "m.onnx"))


def test_sequence_output_becomes_its_elements(tmp_path):
    """Without a boundary to record them in, a sequence output is refused naming it; the loader flattens it into its
    element tensors (frontend/boundary.py)."""
    from hcc.frontend.sequences import rewrite_sequences

    node = h.make_node("SplitToSequence", ["x"], ["seq"], name="split", axis=0)
    seq = h.make_tensor_sequence_value_info("seq", F, None)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", F, [2, 3])], [seq])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(HccError, match=r"output 'seq' is a sequence \(made by node 'split' \(SplitToSequence\)\): hcc compiles tensor outputs only"):
        rewrite_sequences(model, "m.onnx")
    onnx.save(model, tmp_path / "m.onnx")
    loaded = load_model(str(tmp_path / "m.onnx"))
    assert [(o.name, o.shape) for o in loaded.outputs] == [("seq[0]", [1, 3]), ("seq[1]", [1, 3])]
    assert loaded.boundary.values == {"seq": {"sequence": ["seq[0]", "seq[1]"]}}
