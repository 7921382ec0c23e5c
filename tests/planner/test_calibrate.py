"""CPU calibration: the fitting code on synthetic timings (fast) and a real quick run (slow)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hcc.errors import HccError
from hcc.planner.calibrate import ClassFit, benchmarks, calibrate_cpu, fit_linear, write_profile
from hcc.planner.cost_model import analyze_model
from hcc.planner.device_catalog import OP_CLASSES, host_cpu_spec


def test_fit_recovers_a_line_with_noise():
    rng = np.random.default_rng(0)
    work = np.logspace(5, 9, 12)
    times = (2e-10 * work + 3e-5) * (1 + 0.02 * rng.standard_normal(work.size))
    a, b, r2, err = fit_linear(work, times)
    assert a == pytest.approx(2e-10, rel=0.05) and b == pytest.approx(3e-5, rel=0.2)
    assert r2 > 0.99 and err < 0.1


def test_fit_keeps_coefficients_non_negative_and_reports_bad_fits():
    a, b, r2, err = fit_linear([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])  # decreasing: no non-negative line fits
    assert a >= 0 and b >= 0 and r2 < 0.5 and err > 0.3
    with pytest.raises(HccError):
        fit_linear([1.0], [1.0])


def test_benchmarks_cover_the_classes_and_count_work():
    quick = benchmarks(quick=True)
    classes = {c for c, _, _ in quick}
    assert {"matmul", "conv", "elementwise", "softmax", "reduction", "pool"} <= classes <= set(OP_CLASSES)
    assert {c for c, _, _ in benchmarks(quick=False)} >= classes | {"normalization", "data"}
    import onnx

    for cls, name, model in quick:
        node = analyze_model(onnx.shape_inference.infer_shapes(model)).nodes[0]
        assert node.op_class == cls and node.work() > 0, name


def test_profile_round_trip(tmp_path):
    path = tmp_path / "profile.json"
    fits = {"matmul": ClassFit("matmul", 1e-10, 1e-6, "flops", 0.99, 0.05, [("MatMul 64", 5e5, 5e-5)])}
    write_profile(path, fits, "Test CPU", {"cores": 2})
    data = json.loads(path.read_text())
    assert data["format"] == "hcc-cpu-profile" and data["classes"]["matmul"]["r2"] == 0.99
    assert host_cpu_spec(path).linear == {"matmul": (1e-10, 1e-6), "conv": (1e-10, 1e-6), "rnn": (1e-10, 1e-6)}


@pytest.mark.slow
def test_quick_calibration_writes_a_profile_the_catalog_loads(tmp_path):
    path = tmp_path / "cpu-profile.json"
    report = calibrate_cpu(path, quick=True)
    assert path.exists() and "matmul" in report.fits
    assert report.fits["matmul"].a > 0
    spec = host_cpu_spec(path)
    assert set(report.fits) <= set(spec.linear)
    assert "matmul" in report.format()
