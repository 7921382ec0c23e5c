"""The ONNX backend node suite as a regression test (tools/conformance.py, hcc/onnx_backend.py).

The default run (`make test`) runs a fixed sample of the cases tests/conformance_baseline.txt lists as passing and
fails when one of them no longer passes; `make conformance` (and `make test-all`, through the `slow` test here) runs
the whole suite. The other tests check the harness itself: that a wrong result is a FAIL, never a pass, that
errors are classified, and that hcc.onnx_backend works with onnx's own test runner.
"""
from __future__ import annotations

import io
import shutil
import unittest

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.onnx_backend import HccBackend, shape_inputs
from helpers import load_tool

SAMPLE_SIZE = 30  # 2 at a time, about 1.5 s each: 37 s for 40 on a quiet Xeon, 60+ s on a loaded AMD; the budget is 90 s
SAMPLE_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def conformance():
    """tools/conformance.py imported by path (tools/ is not a package)."""
    return load_tool("conformance")


def _case(conformance, name: str):
    return next(c for c in conformance.discover_cases() if c.name == name)


@pytest.mark.conformance
def test_baseline_sample_still_passes(conformance):
    baseline = conformance.read_baseline(conformance.DEFAULT_BASELINE)
    names = conformance.evenly_spaced(sorted(baseline), SAMPLE_SIZE)
    cases = conformance.select_cases(conformance.discover_cases(), names=names)
    assert len(cases) == SAMPLE_SIZE, "tests/conformance_baseline.txt lists too few cases (or cases this onnx lacks)"
    results = conformance.run_cases(cases, jobs=2, timeout=SAMPLE_TIMEOUT_S, report=lambda result, done: None)
    lost = conformance.regressions(baseline, results)
    assert not lost, "baseline cases that no longer pass:\n" + "\n".join(f"  {r.name}: {r.status}: {r.reason}" for r in lost)


@pytest.mark.slow
@pytest.mark.conformance
def test_whole_suite_against_the_baseline(conformance):
    assert conformance.main(["--check-baseline", "--quiet"]) == 0


def test_a_wrong_result_is_a_fail(conformance, tmp_path):
    """The expected output of test_relu, tampered with: hcc's right answer must now count as a FAIL."""
    case = _case(conformance, "test_relu")
    folder = tmp_path / "test_relu_tampered"
    shutil.copytree(case.model_dir, folder)
    expected_path = folder / "test_data_set_0" / "output_0.pb"
    expected = numpy_helper.to_array(onnx.load_tensor(str(expected_path))).copy()
    expected.flat[0] += 1.0
    onnx.save_tensor(numpy_helper.from_array(expected, "y"), str(expected_path))
    tampered = conformance.Case("test_relu_tampered", str(folder), "Relu", case.opset, case.rtol, case.atol)
    result = conformance.run_case(tampered, timeout=SAMPLE_TIMEOUT_S)
    assert result.status == "fail", result
    assert result.reason.startswith("output 0: 1/60 elements differ")


def test_mismatch_checks_shape_dtype_values_and_nans(conformance):
    e = np.array([1.0, np.nan, 3.0], np.float32)
    assert conformance.mismatch(e, e.copy(), 1e-3, 1e-7) is None
    assert "shape" in conformance.mismatch(e, e[:2], 1e-3, 1e-7)
    assert "dtype" in conformance.mismatch(e, e.astype(np.float64), 1e-3, 1e-7)
    assert "1/3 elements differ" in conformance.mismatch(e, np.array([1.0, 2.0, 3.0], np.float32), 1e-3, 1e-7)
    assert "1/3 elements differ" in conformance.mismatch(e, np.array([1.0, np.nan, 3.01], np.float32), 1e-3, 1e-7)
    assert conformance.compare_outputs([e], [e, e], 1e-3, 1e-7) == "2 outputs, expected 1"


def test_errors_are_classified(conformance):
    unsupported = HccError("/tmp/x/model.onnx: 2 unsupported op type(s):\n  Acos: n0\n  Asin: n1", hint="`hcc ops`")
    assert conformance.classify_error(unsupported)[:2] == ("unsupported", "unsupported op: Acos, Asin")
    refused = HccError("/tmp/x/model.onnx: opset 9 is outside the supported range 11..27")
    assert conformance.classify_error(refused)[:2] == ("unsupported", "model.onnx: opset 9 is outside the supported range 11..27")
    worker = HccError("code generation crashed: the compiler worker was killed by signal 6. Last messages:\nabort")
    assert conformance.classify_error(worker)[0] == "crash"
    assert conformance.classify_error(HccError("internal compiler error: KeyError: 'x'"))[0] == "crash"
    assert conformance.classify_error(ValueError("boom"))[:2] == ("crash", "ValueError: boom")
    assert conformance.reason_key("model.onnx: opset 25 is outside the supported range 11..22") == \
        conformance.reason_key("model.onnx: opset 23 is outside the supported range 11..22")


def test_core_subset_and_op_attribution(conformance):
    cases = {c.name: c for c in conformance.discover_cases()}
    assert len(cases) == 1765  # onnx 1.22.0's node suite
    assert cases["test_softmax_axis_0_expanded"].op == "Softmax" and cases["test_softmax_axis_0_expanded"].core
    assert cases["test_acos"].op == "Acos" and not cases["test_acos"].core
    assert conformance.evenly_spaced([f"c{i:02}" for i in range(10)], 3) == ["c00", "c03", "c06"]


def reshape_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d0", "d1"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_shape_inputs_follow_chains_but_not_shape_of():
    model = reshape_model()
    assert shape_inputs(model) == {"shape"}
    model.graph.node.insert(0, helper.make_node("Shape", ["x"], ["s"]))  # only x's shape reaches the Reshape
    model.graph.node[1].input[1] = "s"
    assert shape_inputs(model) == set()


def test_shape_inputs_follow_what_control_flow_branches_read():
    """An If whose output is a shape operand depends on the outer values its branches read (AffineGrid's function
    body picks its sizes from `size` inside an If)."""
    branch = lambda out: helper.make_graph([helper.make_node("Identity", ["n"], [out])], "b", [],  # noqa: E731
                                            [helper.make_tensor_value_info(out, TensorProto.INT64, [2])])
    choose = helper.make_node("If", ["c"], ["picked"], then_branch=branch("t"), else_branch=branch("e"))
    graph = helper.make_graph([choose, helper.make_node("Reshape", ["x", "picked"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                               helper.make_tensor_value_info("n", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d0", "d1"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert shape_inputs(model) == {"c", "n"}


def test_a_constant_cast_like_a_run_time_value_is_folded():
    from hcc.frontend.fold import fold_constants

    graph = helper.make_graph([helper.make_node("CastLike", ["k", "x"], ["kf"]), helper.make_node("Add", ["x", "kf"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    assert fold_constants(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add"]
    folded = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}["kf"]
    assert folded.dtype == np.float32 and folded.tolist() == [1.0, 2.0]


def test_backend_compiles_once_per_shape_values():
    rep = HccBackend.prepare(reshape_model(), "CPU", threads=1)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    try:
        (y,) = rep.run([x, np.array([3, 2], np.int64)])
        np.testing.assert_array_equal(y, x.reshape(3, 2))
        (y,) = rep.run({"x": x + 1, "shape": np.array([6, 1], np.int64)})
        np.testing.assert_array_equal(y, (x + 1).reshape(6, 1))
        (y,) = rep.run([x + 2, np.array([3, 2], np.int64)])  # the first bundle again
        np.testing.assert_array_equal(y, (x + 2).reshape(3, 2))
        assert len(rep._bundles) == 2
    finally:
        rep.close()
    assert HccBackend.supports_device("CPU") and not HccBackend.supports_device("CUDA")
    with pytest.raises(NotImplementedError):
        HccBackend.run_node(reshape_model().graph.node[0], [x])


def test_dropout_mode_inputs_are_frozen_and_training_with_a_ratio_refused():
    """Dropout's ratio and training_mode select what it computes (MODE_OPERANDS): a training-mode Dropout with
    ratio 0 is the identity with an all-true mask; with a non-zero ratio it is random, refused by name."""
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], name="drop")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                            helper.make_tensor_value_info("r", TensorProto.FLOAT, []),
                                            helper.make_tensor_value_info("t", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    assert shape_inputs(model) == {"r", "t"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    rep = HccBackend.prepare(model, "CPU", threads=1)
    try:
        y, mask = rep.run([x, np.array(0.0, np.float32), np.array(True)])
        np.testing.assert_array_equal(y, x)
        assert mask.dtype == np.bool_ and mask.all()
        with pytest.raises(HccError, match="node 'drop' \\(Dropout\\): training_mode is true with ratio 0.5"):
            rep.run([x, np.array(0.5, np.float32), np.array(True)])
    finally:
        rep.close()


def test_onnx_backend_test_runner_accepts_the_backend():
    """onnx's own runner (BackendTest) drives hcc.onnx_backend like any backend."""
    import onnx.backend.test

    runner = onnx.backend.test.BackendTest(HccBackend, __name__)
    runner.include(r"^test_relu_cpu$")
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(runner.test_cases["OnnxBackendNodeModelTest"])
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    assert result.testsRun - len(result.skipped) == 1, "the include pattern selects test_relu only"
    assert result.wasSuccessful(), result.failures + result.errors
