"""Sequences of compile-time positions (frontend/sequences.py): SequenceConstruct/Insert/Erase/At/Length,
SplitToSequence (scalar, list and absent split, keepdims 0) and ConcatFromSequence (new_axis 0 and 1) rewritten into
tensor ops, and Optional / OptionalGetElement / OptionalHasElement inside the graph, compared with onnxruntime; a
run-time position is refused naming the node; a sequence graph output becomes its elements. Sequences through
control flow: SequenceMap (an outer-scope capture; two sequences, two outputs), a Loop carrying an optional sequence
with an If decided per iteration, a run-time trip count (refused; frozen by the ONNX backend), an If returning a
sequence or an optional (likewise), against onnxruntime or onnx.reference."""
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
        h.make_node("Mul", ["a", "length_f"], ["scaled"], name="scale"),  # (a constant output alone would be an Identity of a constant)
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


# ---- sequences through Loops and Ifs: SequenceMap (its function body is a Loop), carried sequences, decided Ifs


def _compile_and_run(tmp_path, model: onnx.ModelProto, feeds: dict, shapes: dict) -> list:
    onnx.save(model, tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", input_shapes=shapes)
    return hcc.runtime.load(tmp_path / "b").run(None, feeds)


def _assert_lists_equal(got: list, want: list) -> None:
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_sequence_map_with_an_outer_tensor(tmp_path):
    """SequenceMap over a 3-element sequence of different lengths, its body reading a per-call input b and the outer
    tensor w (a capture, which the function expansion must leave the model's): the unrolled loop against onnxruntime."""
    body = h.make_graph([h.make_node("Mul", ["x", "w"], ["xw"]), h.make_node("Add", ["xw", "b"], ["y"])], "body",
                        [h.make_tensor_value_info("x", F, ["n", 3]), h.make_tensor_value_info("b", F, [3])],
                        [h.make_tensor_value_info("y", F, ["n", 3])])
    graph = h.make_graph([h.make_node("SequenceMap", ["xs", "b"], ["ys"], name="map", body=body)], "m",
                         [h.make_tensor_sequence_value_info("xs", F, ["n", 3]), h.make_tensor_value_info("b", F, [3]),
                          h.make_tensor_value_info("w", F, [3])],
                         [h.make_tensor_sequence_value_info("ys", F, None)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(5)
    feeds = {"xs": [rng.standard_normal((k, 3)).astype(np.float32) for k in (1, 2, 4)],
             "b": rng.standard_normal(3).astype(np.float32), "w": rng.standard_normal(3).astype(np.float32)}
    (got,) = _compile_and_run(tmp_path, model, feeds, {"xs": [[1, 3], [2, 3], [4, 3]], "b": [3], "w": [3]})
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    _assert_lists_equal(got, want)


def test_sequence_map_of_two_sequences_with_two_outputs(tmp_path):
    """Two input sequences mapped element by element into two output sequences (a sum and a shape), against
    onnx.reference."""
    from onnx.reference import ReferenceEvaluator

    body = h.make_graph([h.make_node("Add", ["a", "b"], ["s"]), h.make_node("Shape", ["a"], ["shape"])], "body",
                        [h.make_tensor_value_info("a", F, ["n"]), h.make_tensor_value_info("b", F, ["n"])],
                        [h.make_tensor_value_info("s", F, ["n"]), h.make_tensor_value_info("shape", T.INT64, [1])])
    graph = h.make_graph([h.make_node("SequenceMap", ["xs", "zs"], ["sums", "shapes"], name="map", body=body)], "m",
                         [h.make_tensor_sequence_value_info("xs", F, ["n"]), h.make_tensor_sequence_value_info("zs", F, ["n"])],
                         [h.make_tensor_sequence_value_info("sums", F, None), h.make_tensor_sequence_value_info("shapes", T.INT64, None)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(6)
    feeds = {name: [rng.standard_normal(k).astype(np.float32) for k in (3, 5)] for name in ("xs", "zs")}
    got = _compile_and_run(tmp_path, model, feeds, {"xs": [[3], [5]], "zs": [[3], [5]]})
    want = ReferenceEvaluator(model).run(None, feeds)
    assert len(got) == 2
    for g, w in zip(got, want):
        _assert_lists_equal(g, w)


def _loop_model(trip: int | None) -> onnx.ModelProto:
    """A Loop that appends x[:t+1] to a carried optional sequence (started with [0] when the optional is absent, as
    onnx's test_loop16_seq_none); the trip count a constant, or (None) a graph input."""
    body = h.make_graph([
        h.make_node("Identity", ["cond_in"], ["cond_out"]),
        h.make_node("OptionalHasElement", ["opt_in"], ["has"]),
        h.make_node("Not", ["has"], ["none"]),
        h.make_node("If", ["none"], ["seq"],
                    then_branch=h.make_graph([h.make_node("Constant", [], ["zero"], value=h.make_tensor("z", F, [], [0.0])),
                                              h.make_node("SequenceConstruct", ["zero"], ["started"])], "then", [],
                                             [h.make_tensor_sequence_value_info("started", F, None)]),
                    else_branch=h.make_graph([h.make_node("OptionalGetElement", ["opt_in"], ["kept"])], "else", [],
                                             [h.make_tensor_sequence_value_info("kept", F, None)])),
        h.make_node("Add", ["i", "one"], ["end"]),
        h.make_node("Unsqueeze", ["end", "axes"], ["ends"]),
        h.make_node("Slice", ["x", "starts", "ends"], ["piece"]),
        h.make_node("SequenceInsert", ["seq", "piece"], ["seq_out"]),
    ], "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                h.make_value_info("opt_in", h.make_optional_type_proto(h.make_sequence_type_proto(h.make_tensor_type_proto(F, None))))],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_sequence_value_info("seq_out", F, None)])
    inputs = [h.make_tensor_value_info("x", F, [5]),
              h.make_value_info("opt", h.make_optional_type_proto(h.make_sequence_type_proto(h.make_tensor_type_proto(F, None))))]
    inits = [_i64("one", 1), _i64("axes", [0]), _i64("starts", [0]), numpy_helper.from_array(np.array(True), "cond")]
    if trip is None:
        inputs.insert(0, h.make_tensor_value_info("trip", T.INT64, []))
    else:
        inits.append(_i64("trip", trip))
    graph = h.make_graph([h.make_node("Loop", ["trip", "cond", "opt"], ["out"], name="loop", body=body)], "loop",
                         inputs, [h.make_tensor_sequence_value_info("out", F, None)], initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("opt", [None, [np.float32(7.0), np.float32(-2.5)]], ids=["absent", "present"])
def test_loop_carrying_an_optional_sequence(tmp_path, opt):
    """The Loop is unrolled (3 iterations), the If decided per copy from OptionalHasElement (absent at the first
    iteration only when the input is absent), the carried list grows by one element per copy: against onnxruntime."""
    model = _loop_model(3)
    x = np.arange(1, 6, dtype=np.float32)
    opt = None if opt is None else [np.asarray(v) for v in opt]
    feeds = {"x": x, "opt": opt}
    (got,) = _compile_and_run(tmp_path, model, feeds, {"x": [5], "opt": None if opt is None else [[], []]})
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    _assert_lists_equal(got, want)
    assert len(got) == (4 if opt is None else 5)


def test_run_time_trip_count_of_a_sequence_loop(tmp_path):
    """A trip count given at run time is refused naming it; the ONNX backend freezes it (with the condition), since
    it decides the sequence's length, and compiles once per value."""
    from hcc.onnx_backend import HccBackend, shape_inputs

    model = _loop_model(None)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'loop' \(Loop\): its trip count 'trip' is not known at compile time"):
        load_model(str(tmp_path / "m.onnx"), {"trip": [], "x": [5], "opt": None})
    assert shape_inputs(model) == {"trip"}  # the condition is an initializer here
    rep = HccBackend.prepare(model, "CPU", threads=1)
    x = np.arange(1, 6, dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    try:
        for trip in (2, 4, 2):
            feeds = {"trip": np.array(trip, np.int64), "x": x, "opt": [np.array(1.5, np.float32)]}
            (got,) = rep.run(feeds)
            _assert_lists_equal(got, session.run(None, feeds)[0])
        assert len(rep._bundles) == 2
    finally:
        rep.close()


def test_if_returning_a_sequence(tmp_path):
    """An If that returns a sequence or an optional of a run-time condition is refused; the ONNX backend freezes the
    condition (it decides the list, or the optional's presence) and gets onnxruntime's result for each value."""
    from hcc.onnx_backend import HccBackend, shape_inputs

    def branch(name: str, values: list[float], optional: bool) -> onnx.GraphProto:
        nodes = [h.make_node("Constant", [], [f"{name}_c"], value=h.make_tensor(f"{name}_t", F, [len(values)], values)),
                 h.make_node("SequenceConstruct", [f"{name}_c", "x"], [f"{name}_s"])]
        out = h.make_tensor_sequence_value_info(f"{name}_s", F, None)
        if optional:
            nodes.append(h.make_node("Optional", [f"{name}_s"], [f"{name}_o"]))
            out = h.make_value_info(f"{name}_o", h.make_optional_type_proto(h.make_sequence_type_proto(h.make_tensor_type_proto(F, None))))
        return h.make_graph(nodes, name, [], [out])

    for optional in (False, True):
        kind = (h.make_optional_type_proto(h.make_sequence_type_proto(h.make_tensor_type_proto(F, None))) if optional
                else h.make_sequence_type_proto(h.make_tensor_type_proto(F, None)))
        node = h.make_node("If", ["c"], ["res"], name="choose", then_branch=branch("a", [1.0, 2.0], optional),
                           else_branch=branch("b", [3.0, 4.0, 5.0], optional))
        graph = h.make_graph([node], "if", [h.make_tensor_value_info("c", T.BOOL, []), h.make_tensor_value_info("x", F, [2])],
                             [h.make_value_info("res", kind)])
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)
        onnx.save(model, tmp_path / "m.onnx")
        with pytest.raises(HccError, match=r"node 'choose' \(If\): its condition 'c' is only known at run time"):
            load_model(str(tmp_path / "m.onnx"), {"c": [], "x": [2]})
        assert shape_inputs(model) == {"c"}
        rep = HccBackend.prepare(model, "CPU", threads=1)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        try:
            for c in (True, False):
                feeds = {"c": np.array(c), "x": np.array([-1.0, 0.5], np.float32)}
                _assert_lists_equal(rep.run(feeds)[0], session.run(None, feeds)[0])
        finally:
            rep.close()
