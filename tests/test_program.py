"""Control flow decided at run time (program.py, runtime/session.py, docs/control-flow.md): an If on an input's
value, Loops with a run-time trip count, an early exit and a scan output, nested control flow; each compiled as a
program of native pieces and compared with onnxruntime on inputs that take every path; the clear errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
import hcc.runtime
import program_models as pm
from hcc.errors import HccError
from hcc.options import CompileOptions, PlannerOptions

TIGHT = {"rtol": 1e-6, "atol": 1e-6}


def _compile(model: onnx.ModelProto, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    onnx.save(model, path)
    hcc.compile(path, folder / "bundle")
    return hcc.runtime.load(folder / "bundle"), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), folder / "bundle"


def _same(hcc_session, ort_session, feeds: dict) -> list[np.ndarray]:
    ours, theirs = hcc_session.run(None, feeds), ort_session.run(None, feeds)
    for name, a, b in zip(hcc_session.manifest.outputs, ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        np.testing.assert_allclose(a, b, **TIGHT, err_msg=name)
    return ours


@pytest.fixture(scope="module")
def if_bundle(tmp_path_factory):
    return _compile(pm.if_on_input(), tmp_path_factory.mktemp("if"))


@pytest.fixture(scope="module")
def trip_bundle(tmp_path_factory):
    return _compile(pm.loop_run_time_trip_count(), tmp_path_factory.mktemp("trip"))


def test_an_if_on_an_input_takes_both_branches_as_onnxruntime_does(if_bundle):
    session, reference, _ = if_bundle
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    up, down = np.abs(x) + 0.1, -np.abs(x) - 0.1  # sum > 0: Relu * 2; sum < 0: Sigmoid * 3
    (y_up,) = _same(session, reference, {"x": up})
    (y_down,) = _same(session, reference, {"x": down})
    np.testing.assert_allclose(y_up, up * 3, rtol=1e-6)  # Relu(x) * 2 + x, x > 0
    np.testing.assert_allclose(y_down, 1 / (1 + np.exp(-down)) * 3 + down, rtol=1e-5)
    assert session.manifest.format_version == 3 and [s.kind for s in session.manifest.program.main.steps] == ["segment", "if", "segment"]


def test_the_whole_bundle_passes_its_golden_check_and_inspect_shows_the_program(if_bundle):
    _, _, bundle = if_bundle
    test = subprocess.run([sys.executable, "-m", "hcc.cli", "test", str(bundle)], capture_output=True, text=True)
    assert test.returncode == 0 and "PASS y" in test.stdout, test.stdout + test.stderr
    shown = subprocess.run([sys.executable, "-m", "hcc.cli", "inspect", str(bundle)], capture_output=True, text=True).stdout
    assert "program (hcc-program-v1): 4 compiled pieces" in shown
    assert "if 'pick' on cond -> (b)" in shown and "then: returns (then_y)" in shown and "else: returns (else_y)" in shown


@pytest.mark.parametrize("trips", [0, 1, 4])
def test_a_loop_with_a_run_time_trip_count_stacks_its_scan_output(trip_bundle, trips):
    session, reference, _ = trip_bundle
    rng = np.random.default_rng(trips)
    feeds = {"n": np.array(trips, np.int64), "v0": rng.standard_normal((2, 3)).astype(np.float32),
             "x": rng.standard_normal((2, 3)).astype(np.float32)}
    y, scan = _same(session, reference, feeds)
    assert scan.shape == (trips, 2, 3)  # its length is the run-time trip count
    if trips == 0:
        np.testing.assert_array_equal(y, np.maximum(feeds["v0"], 0))


def test_a_loop_ends_early_when_its_body_says_so(tmp_path):
    session, reference, _ = _compile(pm.loop_early_exit(), tmp_path)
    ones = np.ones((2, 3), np.float32)
    results = {}
    for limit in (-1.0, 30.0, 200.0):  # -1: one iteration (the check follows the body); larger limits: more
        feeds = {"v0": ones, "x": ones, "limit": np.array(limit, np.float32), "start": np.array(True)}
        (results[limit],) = _same(session, reference, feeds)
    assert results[-1.0].sum() < results[30.0].sum() < results[200.0].sum()
    (unchanged,) = _same(session, reference, {"v0": ones, "x": ones, "limit": np.array(100.0, np.float32), "start": np.array(False)})
    np.testing.assert_array_equal(unchanged, ones)  # a false condition before the first iteration: none


def test_nested_ifs_constants_and_pass_through_branches(tmp_path):
    session, reference, _ = _compile(pm.nested_if(), tmp_path)
    x = np.random.default_rng(5).standard_normal((2, 3)).astype(np.float32)
    seen = set()
    for c1 in (True, False):
        for c2 in (True, False):
            (y,) = _same(session, reference, {"x": x, "c1": np.array(c1), "c2": np.array(c2)})
            seen.add(y.tobytes())
    assert len(seen) == 3  # tanh branch, pass-through branch, and the constant (c1 false, whatever c2)
    shown = subprocess.run([sys.executable, "-m", "hcc.cli", "inspect", str(tmp_path / "bundle")], capture_output=True, text=True).stdout
    assert "if 'inner' on c2" in shown and "constant const_y: float32 [2, 3]" in shown


def test_an_if_inside_a_loop_body(tmp_path):
    session, reference, _ = _compile(pm.if_inside_loop(), tmp_path)
    rng = np.random.default_rng(7)
    for trips in (0, 1, 2, 5):
        _same(session, reference, {"n": np.array(trips, np.int64), "v0": rng.standard_normal((2, 3)).astype(np.float32),
                                   "x": rng.standard_normal((2, 3)).astype(np.float32)})


def test_outputs_are_fresh_arrays(tmp_path):
    """A branch that returns a constant or an input must not hand out the bundle's constant or the caller's array."""
    session, _, _ = _compile(pm.nested_if(), tmp_path)
    x = np.ones((2, 3), np.float32)
    (first,) = session.run(None, {"x": x, "c1": np.array(False), "c2": np.array(False)})
    first[:] = 0
    (again,) = session.run(None, {"x": x, "c1": np.array(False), "c2": np.array(False)})
    np.testing.assert_array_equal(again, np.full((2, 3), 7.0, np.float32))


def _refusal(model: onnx.ModelProto, tmp_path, options: CompileOptions | None = None) -> str:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError) as info:
        hcc.compile(path, tmp_path / "b", options=options)
    assert not (tmp_path / "b").exists()
    return str(info.value)


def test_a_carried_value_that_changes_shape_is_refused_by_name(tmp_path):
    message = _refusal(pm.growing_carried_value(), tmp_path)
    assert "node 'grow' (Loop): loop-carried value 'v_in' enters the body as [1, 3] float32 and leaves it as 'v_out' [2, 3]" in message


def test_compiled_code_reading_a_run_time_length_is_refused_by_name(tmp_path):
    message = _refusal(pm.scan_output_consumed(), tmp_path)
    assert "node 'sum_scan' (ReduceSum) reads 'scan', whose shape is only known at run time (scan output of Loop 'counted'" in message


def _if_of_two_lengths(consumed: bool) -> onnx.ModelProto:
    """then: x ([2]); else: Concat(x, x) ([4]); the If's output is a model output, or read by a Relu."""
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "t", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["e"], axis=0)], "e", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["c"], ["b" if consumed else "y"], name="lengths", then_branch=then, else_branch=other)]
    nodes += [helper.make_node("Relu", ["b"], ["y"], name="after")] if consumed else []
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["k"])])
    return helper.make_model(graph, opset_imports=pm.OPSET)


def test_branches_of_different_shapes_may_feed_a_model_output(tmp_path):
    session, reference, _ = _compile(_if_of_two_lengths(consumed=False), tmp_path)
    x = np.array([1.5, -2.0], np.float32)
    assert [y.shape for c in (True, False) for y in _same(session, reference, {"x": x, "c": np.array(c)})] == [(2,), (4,)]


def test_branches_of_different_shapes_feeding_compiled_code_are_refused_by_name(tmp_path):
    message = _refusal(_if_of_two_lengths(consumed=True), tmp_path)
    assert ("node 'after' (Relu) reads 'b', whose shape is only known at run time (node 'lengths' (If) gives it [2] float32 in "
            "then_branch, [4] float32 in else_branch)") in message


def test_devices_other_than_the_cpu_are_refused_for_a_program(tmp_path):
    options = CompileOptions(planner=PlannerOptions(devices="cpu,gpu:sm_90"))
    message = _refusal(pm.if_on_input(), tmp_path, options)
    assert "node 'pick' (If) is only decided at run time" in message and "--devices" in message


def test_a_long_constant_loop_runs_as_a_real_loop(tmp_path, monkeypatch):
    """A constant trip count too long to unroll: the Loop stays a loop (and its scan output has its static length)."""
    from hcc.frontend import unroll

    monkeypatch.setattr(unroll, "MAX_UNROLLED_NODES", 10)
    model = pm.loop_run_time_trip_count()
    model.graph.input.pop(0)  # n becomes an initializer: 6 iterations
    model.graph.initializer.append(numpy_helper.from_array(np.array(6, np.int64), "n"))
    del model.graph.output[1].type.tensor_type.shape.dim[:]
    for d in (6, 2, 3):
        model.graph.output[1].type.tensor_type.shape.dim.add().dim_value = d
    session, reference, _ = _compile(model, tmp_path)
    rng = np.random.default_rng(2)
    y, scan = _same(session, reference, {"v0": rng.standard_normal((2, 3)).astype(np.float32), "x": rng.standard_normal((2, 3)).astype(np.float32)})
    assert scan.shape == (6, 2, 3) and [s.kind for s in session.manifest.program.main.steps] == ["loop", "segment"]


def test_hcc_compile_reports_a_program_by_its_pieces(tmp_path):
    """The CLI's summary line of a program bundle counts its compiled pieces (it has no top-level subgraphs)."""
    from click.testing import CliRunner

    from hcc.cli import main

    path = tmp_path / "if.onnx"
    onnx.save(pm.if_on_input(), path)
    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "b"), "--quiet"])
    assert result.exit_code == 0, result.output
    parts = hcc.runtime.load(tmp_path / "b").manifest.program.parts()
    assert f"a program of {len(parts)} compiled piece(s)" in result.output and len(parts) >= 3, result.output


def test_a_branch_that_cannot_hold_the_shapes_is_an_error_only_when_taken(tmp_path):
    """An If branch whose shape inference fails at the compiled input shapes, once its own shape arithmetic is folded
    (Silero VAD's 8 kHz branch at 16 kHz shapes), does not stop the compile: the bundle computes the other branch,
    and taking this one raises a clear error naming the node and branch. hcc inspect says so. (onnxruntime refuses
    this small model at session creation, its constant folding reaching the MatMul; it loads Silero and fails only
    in the branch.)"""
    x = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)
    path, bundle = tmp_path / "m.onnx", tmp_path / "bundle"
    onnx.save(pm.if_with_a_branch_for_other_shapes(), path)
    np.savez(tmp_path / "golden.npz", x=x, flag=np.array(True))  # random golden inputs could take the other branch
    hcc.compile(path, bundle, golden_inputs=str(tmp_path / "golden.npz"))
    session = hcc.runtime.load(bundle)
    (y,) = session.run(None, {"x": x, "flag": np.array(True)})
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    with pytest.raises(HccError, match=r"node 'rate': its else_branch was not compiled .*shape inference failed"):
        session.run(None, {"x": x, "flag": np.array(False)})
    from hcc.runtime.inspect import describe

    assert "not compiled, an error if taken" in describe(bundle)


def _detector(consumed: bool) -> onnx.ModelProto:
    """Sigmoid scores (compiled) -> NonMaxSuppression (host) -> the selected indices, the boxes' NonZero mask and the
    Unique of the classes as model outputs; with `consumed` an Abs of the selection, which neither compiled code (a
    run-time shape) nor the host (not one of its ops) runs."""
    nodes = [helper.make_node("Sigmoid", ["logits"], ["scores"], name="scores"),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "keep", "iou", "min_score"], ["selected"], name="nms"),
             helper.make_node("Greater", ["logits", "zero"], ["positive"], name="positive"),
             helper.make_node("NonZero", ["positive"], ["where"], name="where"),
             helper.make_node("Unique", ["classes"], ["kinds", "first", "inverse", "counts"], name="kinds", sorted=0)]
    if consumed:  # Abs: not an op the host runs (runtime/host_ops.py)
        nodes.append(helper.make_node("Abs", ["selected"], ["selected_abs"], name="after"))
    inits = [numpy_helper.from_array(np.array([30], np.int64), "keep"), numpy_helper.from_array(np.array([0.2], np.float32), "iou"),
             numpy_helper.from_array(np.array([0.3], np.float32), "min_score"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outputs = [("selected_abs" if consumed else "selected", TensorProto.INT64, ["n", 3]),
               ("where", TensorProto.INT64, [3, "m"]), ("kinds", TensorProto.INT64, ["k"]), ("first", TensorProto.INT64, ["k"]),
               ("inverse", TensorProto.INT64, [12]), ("counts", TensorProto.INT64, ["k"])]
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 30, 4]),
                                                  helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 3, 30]),
                                                  helper.make_tensor_value_info("classes", TensorProto.INT64, [12])],
                              [helper.make_tensor_value_info(*o) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=pm.OPSET)


def test_ops_of_value_dependent_shape_run_on_the_host_between_compiled_pieces(tmp_path):
    """NonMaxSuppression, NonZero and Unique (runtime/host_ops.py) as host steps after compiled pieces: exactly
    onnxruntime's indices and counts on inputs that select different numbers of boxes; program format v2."""
    session, reference, bundle = _compile(_detector(consumed=False), tmp_path)
    lengths = set()
    for seed in range(4):
        rng = np.random.default_rng(seed)
        corner = rng.uniform(0, 5, (2, 30, 2)).astype(np.float32)  # crowded: overlaps decide
        feeds = {"boxes": np.concatenate([corner, corner + rng.uniform(1, 4, (2, 30, 2)).astype(np.float32)], -1),
                 "logits": rng.standard_normal((2, 3, 30)).astype(np.float32), "classes": rng.integers(0, 5, 12)}
        for name, ours, theirs in zip(session.manifest.outputs, session.run(None, feeds), reference.run(None, feeds)):
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
        lengths.add(len(session.run(["selected"], feeds)[0]))
    assert len(lengths) > 1  # the number of kept boxes does change with the inputs
    program = session.manifest.program
    assert program.format == "hcc-program-v2"
    assert [(s.kind, s.op) for s in program.main.steps if s.kind == "host"] == [("host", "NonMaxSuppression"), ("host", "NonZero"),
                                                                                 ("host", "Unique")]
    shown = subprocess.run([sys.executable, "-m", "hcc.cli", "inspect", str(bundle)], capture_output=True, text=True).stdout
    assert "host (numpy) NonMaxSuppression 'nms': (boxes, scores, keep, iou, min_score) -> (selected)" in shown


def test_compiled_code_reading_a_host_ops_output_is_refused_by_name(tmp_path):
    message = _refusal(_detector(consumed=True), tmp_path)
    assert ("node 'after' (Abs) reads 'selected', whose shape is only known at run time (output of node 'nms' "
            "(NonMaxSuppression), run on the host") in message


def _postprocessed_detector(relu_after: bool = False) -> onnx.ModelProto:
    """NonMaxSuppression, then what a detector's export does with the selection on the host: the selected boxes and
    scores gathered by the box column, concatenated, the indices cast and scaled; with `relu_after` a Relu of the
    result, which neither compiled code (run-time shape) nor the host (not one of its ops) may run."""
    n = 40
    nodes = [helper.make_node("Sigmoid", ["logits"], ["scores"], name="scores"),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "keep", "iou"], ["selected"], name="nms"),
             helper.make_node("Gather", ["selected", "two"], ["box_index"], name="box_index", axis=1),
             helper.make_node("Squeeze", ["boxes", "zero_axis"], ["boxes2d"], name="boxes2d"),
             helper.make_node("Gather", ["boxes2d", "box_index"], ["kept_boxes"], name="kept_boxes", axis=0),
             helper.make_node("Reshape", ["scores", "flat"], ["scores1d"], name="scores1d"),
             helper.make_node("Gather", ["scores1d", "box_index"], ["kept_scores"], name="kept_scores", axis=0),
             helper.make_node("Unsqueeze", ["kept_scores", "one_axis"], ["score_column"], name="score_column"),
             helper.make_node("Concat", ["kept_boxes", "score_column"], ["detections"], name="detections", axis=1),
             helper.make_node("Cast", ["box_index"], ["index_f"], name="index_f", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["index_f", "half"], ["half_index"], name="half_index")]
    if relu_after:
        nodes.append(helper.make_node("Relu", ["detections"], ["relu"], name="relu"))
    inits = [numpy_helper.from_array(np.array([n], np.int64), "keep"), numpy_helper.from_array(np.array([0.3], np.float32), "iou"),
             numpy_helper.from_array(np.array(2, np.int64), "two"), numpy_helper.from_array(np.array([0], np.int64), "zero_axis"),
             numpy_helper.from_array(np.array([n], np.int64), "flat"), numpy_helper.from_array(np.array([1], np.int64), "one_axis"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    outputs = [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["k", 5]),
               helper.make_tensor_value_info("half_index", TensorProto.FLOAT, ["k"])]
    if relu_after:
        outputs.append(helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["k", 5]))
    graph = helper.make_graph(nodes, "postprocess", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, n, 4]),
                                                     helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, n])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=pm.OPSET)


def test_a_detectors_post_processing_runs_on_the_host_after_nms(tmp_path):
    """Nodes that read a value of run-time shape (Gather, Squeeze, Reshape, Unsqueeze, Concat, Cast, Mul here) run as
    host steps too (runtime/host_ops.py FOLLOWING_OPS); the same nodes on static values stay compiled (Squeeze,
    Reshape of the inputs). onnxruntime's selection, scores within an ulp (hcc's compiled Sigmoid)."""
    session, reference, _ = _compile(_postprocessed_detector(), tmp_path)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        corner = rng.uniform(0, 6, (1, 40, 2)).astype(np.float32)
        feeds = {"boxes": np.concatenate([corner, corner + rng.uniform(1, 4, (1, 40, 2)).astype(np.float32)], -1),
                 "logits": rng.standard_normal((1, 1, 40)).astype(np.float32)}
        for name, ours, theirs in zip(session.manifest.outputs, session.run(None, feeds), reference.run(None, feeds)):
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name  # the same boxes selected
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0, err_msg=name)  # scores: compiled Sigmoid, 1 ulp
    host = [s.node for s in session.manifest.program.main.steps if s.kind == "host"]
    assert host == ["nms", "box_index", "kept_boxes", "kept_scores", "score_column", "detections", "index_f", "half_index"]


def test_an_op_the_host_cannot_run_on_a_run_time_shape_is_refused_by_name(tmp_path):
    message = _refusal(_postprocessed_detector(relu_after=True), tmp_path)
    assert "node 'relu' (Relu) reads 'detections', whose shape is only known at run time (output of node 'detections' (Concat)" in message


def test_a_host_step_given_bad_values_says_which_node(tmp_path):
    """An index out of range in a host step's Gather is one HccError naming the node, not a numpy traceback."""
    gather = helper.make_node("Gather", ["table", "where"], ["picked"], name="pick", axis=0)
    nz = helper.make_node("NonZero", ["mask"], ["where"], name="where")
    graph = helper.make_graph([nz, gather], "g", [helper.make_tensor_value_info("mask", TensorProto.BOOL, [6]),
                                                  helper.make_tensor_value_info("table", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, "n"])])
    table = np.array([1.0, 2.0, 3.0], np.float32)
    ok = {"mask": np.array([1, 0, 1, 0, 0, 0], bool), "table": table}
    onnx.save(helper.make_model(graph, opset_imports=pm.OPSET), tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **ok)  # random masks would select rows the table does not have
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=tmp_path / "golden.npz")
    session = hcc.runtime.load(tmp_path / "b")
    reference = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, ok)[0], reference.run(None, ok)[0])
    with pytest.raises(HccError, match="node 'pick' \\(Gather\\) on the host: index 5 is out of bounds"):
        session.run(None, {"mask": np.array([0, 0, 0, 0, 0, 1], bool), "table": table})
