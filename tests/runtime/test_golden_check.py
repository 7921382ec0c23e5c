"""Golden checks that can fail (issue 9, item 3): tolerances are validated, and a tolerance too loose to tell the
output from zeros or from a constant is INCONCLUSIVE, never PASS."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.errors import HccError
from hcc.runtime.golden_check import check_golden, check_tolerance, compare, inconclusive_reason


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A classifier: Gemm + Softmax, whose output lies in [0, 1]."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32) * 2, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"), helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1)],
        "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [4, 10])], [w])
    root = tmp_path_factory.mktemp("golden")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "m.onnx")
    hcc.compile(root / "m.onnx", root / "bundle")
    return root / "bundle"


@pytest.fixture
def bundle(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "bundle")


def _reseal(bundle, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    text = json.dumps(manifest, indent=2)
    (bundle / "manifest.json").write_text(text)
    (bundle / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e-3, "abc"])
def test_a_tolerance_must_be_finite_and_non_negative(value):
    with pytest.raises(HccError, match="finite number >= 0"):
        check_tolerance(value, "--atol")


def test_cli_rejects_a_nan_tolerance(bundle):
    proc = _cli("test", bundle, "--atol", "nan")
    assert proc.returncode == 1
    assert proc.stderr.startswith("hcc: error: --atol nan: a tolerance must be a finite number >= 0")


def test_a_nan_tolerance_in_a_resealed_manifest_is_refused(bundle):
    _reseal(bundle, lambda m: m["golden"].update(rtol=float("nan")))
    with pytest.raises(HccError, match="golden.rtol"):
        check_golden(bundle)


def test_the_stored_golden_check_passes_and_can_fail(bundle, tmp_path):
    assert check_golden(bundle).passed
    with np.load(bundle / "golden" / "golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output:probs"] = np.zeros_like(arrays["output:probs"])  # a wrong expectation must fail
    np.savez(tmp_path / "zeros.npz", **arrays)
    report = check_golden(bundle, str(tmp_path / "zeros.npz"))
    assert report.failed and report.outputs[0].status == "FAIL"


def test_a_tolerance_wider_than_the_output_is_inconclusive(bundle):
    report = check_golden(bundle, atol=1.07)  # the FPGA bundle's old worst-case bound for a softmax in [0, 1]
    assert not report.failed and not report.passed
    assert report.outputs[0].status == "INCONCLUSIVE"
    assert "all-zero output would pass" in report.outputs[0].inconclusive
    proc = _cli("test", bundle, "--atol", "1.07")
    assert proc.returncode == 2 and "INCONCLUSIVE probs" in proc.stdout


def test_a_per_output_tolerance_from_the_manifest_is_used(bundle):
    _reseal(bundle, lambda m: m["golden"].update(outputs={"probs": {"rtol": 0.0, "atol": 2.0}}))
    report = check_golden(bundle)
    assert report.outputs[0].atol == 2.0 and report.outputs[0].status == "INCONCLUSIVE"


def test_inconclusive_reason_rules():
    probs = np.array([0.1, 0.2, 0.7], np.float32)
    assert inconclusive_reason(probs, 1e-3, 1e-4) == ""
    assert "all-zero" in inconclusive_reason(probs, 0.0, 0.7)
    assert "constant output" in inconclusive_reason(probs + 10, 0.0, 0.31)  # zeros fail, the midpoint 10.4 passes
    assert inconclusive_reason(np.array([3.0]), 1e-3, 1e-4) == ""  # a scalar has no range: only zeros count
    assert inconclusive_reason(np.array([1, 2, 3]), 0, 100) == ""  # integers are compared exactly
    assert "NaN or infinite" in inconclusive_reason(np.full((2, 3), np.nan, np.float32), 1e-3, 1e-4)  # a NaN output proves little
    assert inconclusive_reason(np.array([np.nan, 1.0], np.float32), 1e-3, 1e-4) == ""
    assert inconclusive_reason(np.zeros((0,), np.float32), 1e-3, 1e-4) == ""
    assert compare("y", probs, np.zeros(3, np.float32), 1e-3, 1e-4).status == "FAIL"
