"""Smoke tests of the CPU benchmark suite (tools/bench_suite.py, tools/bench_models.py), so that it cannot rot
between the rare full runs: every model builds, passes onnx.checker and runs in onnxruntime with finite, non-constant
outputs (hcc does not compile them here: that is the suite's job and slow), and the runner goes end to end on one
tiny model. The full suite is `make bench`."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from helpers import TOOLS, load_tool


@pytest.fixture(scope="module")
def suite():
    """tools/bench_suite.py imported by path (tools/ is not a package); it loads tools/bench_models.py itself."""
    return load_tool("bench_suite")


def _ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_every_model_builds_checks_and_runs(suite):
    models = suite.bench_models.suite()
    assert {"mlp_b1", "mlp_b64", "resnet18", "mobilenet_v2", "bert_h256", "lstm_kws", "unet", "recsys"} <= {m.name for m in models}
    for spec in models:
        model = spec.build()
        onnx.checker.check_model(model)
        for output in _ort_run(model, spec.make_feeds(model, 0)):
            assert np.all(np.isfinite(output)), spec.name
            assert output.size == 1 or float(np.std(output)) > 1e-3, f"{spec.name}: constant output tells nothing"
        assert suite.bench_models.model_flops(model) > 0, spec.name


def test_flops_and_model_selection(suite):
    bm = suite.bench_models
    assert bm.model_flops(bm.mlp(64)) == 2 * 64 * (784 * 1024 + 1024 * 512 + 512 * 10)
    assert [m.name for m in bm.by_name(["lenet5", "mlp_b1"])] == ["mlp_b1", "lenet5"]  # suite order
    with pytest.raises(ValueError, match="unknown model"):
        bm.by_name(["no_such_model"])


def test_threads_compare_and_error_cells(suite, tmp_path):
    assert suite.parse_threads("1,all", 8) == [1, 8]
    assert suite.parse_threads("all,1,1", 1) == [1]
    expected = {"y": np.array([1.0, 2.0], np.float32)}
    assert suite.compare({"y": np.array([1.0, 2.0005], np.float32)}, expected, 1e-3, 1e-4)[1] is None
    worst, problem = suite.compare({"y": np.array([1.0, np.nan], np.float32)}, expected, 1e-3, 1e-4)
    assert np.isnan(worst) and "1/2 elements" in problem

    from hcc.errors import HccError
    from hcc.frontend.ops import check_supported

    node = onnx.helper.make_node("DeformConv", ["x"], ["y"], name="nz")  # an op hcc does not compile
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = tmp_path / "m.onnx"
    with pytest.raises(HccError) as info:
        check_supported(onnx.helper.make_model(graph), str(path))
    cell = suite.error_summary(info.value, path)
    assert cell.startswith("hcc: unsupported (") and "DeformConv: nz" in cell and str(tmp_path) not in cell


def test_runner_end_to_end_on_a_tiny_model(tmp_path):
    out, js = tmp_path / "report.md", tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_suite.py"), "--models", "mlp_b1", "--quick", "--repeat", "2",
                           "--threads", "1,all", "--out", str(out), "--json", str(js)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert "| mlp_b1 |" in report and "geomean" in report and "SGEMM" in report and "--repeat 2" in report
    result = json.loads(js.read_text())["results"][0]
    assert result["name"] == "mlp_b1" and all(t["iterations"] == 2 and t["ort"]["median"] > 0 for t in result["timings"])
    if result["error"] is None:  # hcc compiled it: numbers, a checked output, no mismatch
        assert all(t["hcc"] and t["ratio"] > 0 for t in result["timings"])
        assert result["max_abs_err"] is not None and result["mismatch"] is None


def test_onnx_files_replace_the_built_in_models(suite, tmp_path, capsys):
    """`--onnx FILE` times a user's file (e.g. a torch export no test has seen) with the same method; it needs its own
    --out so that the committed suite report is not overwritten, and a missing file is one clear error."""
    path = tmp_path / "exported.onnx"
    onnx.save(suite.bench_models.mlp(1), path)
    s = suite.parse_args(["--onnx", str(path), "--out", str(tmp_path / "r.md")])
    (spec,) = s.models
    assert spec.name == "exported" and spec.family == "file"
    model = spec.build()
    assert model.graph.input[0].name == suite.bench_models.mlp(1).graph.input[0].name
    assert set(spec.make_feeds(model, 0)) == {i.name for i in model.graph.input}
    for argv, message in ([["--onnx", str(path)], "need --out"],
                          [["--onnx", str(tmp_path / "none.onnx"), "--out", "r.md"], "no such file"],
                          [["--onnx", str(path), "--models", "mlp_b1", "--out", "r.md"], "cannot be combined"]):
        with pytest.raises(SystemExit):
            suite.parse_args(argv)
        assert message in capsys.readouterr().err


def test_production_models_are_pinned_and_fed_valid_inputs(suite):
    """tools/production_models.py: every model names a pinned wheel and an .onnx inside it, and its inputs get the
    shapes it is compiled for (Silero's sample rate a valid 16 kHz)."""
    prod = suite.production_models
    assert set(prod.WHEELS.values()) and all(v.count(".") == 2 for v in prod.WHEELS.values())
    for name, (package, member, shapes) in prod.MODELS.items():
        assert package in prod.WHEELS and member.endswith(".onnx") and shapes, name
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["input"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", "n"]),
                                    onnx.helper.make_tensor_value_info("sr", onnx.TensorProto.INT64, [])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    feeds = prod.feeds(onnx.helper.make_model(graph), 0, {"input": [1, 512]})
    assert feeds["input"].shape == (1, 512) and feeds["input"].dtype == np.float32 and int(feeds["sr"]) == 16000


def test_sklearn_models_are_fed_their_data_rows(suite, tmp_path, capsys):
    """`--sklearn DIR` (tools/sklearn_models.py): every .onnx file of DIR is an entry, fed and compiled for the rows
    of its NAME.npy (shared by NAME_nozipmap.onnx); an empty folder is one clear error."""
    rows = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    np.save(tmp_path / "clf.npy", rows)
    for name in ("clf", "clf_nozipmap"):
        onnx.save(suite.bench_models.mlp(1), tmp_path / f"{name}.onnx")
    s = suite.parse_args(["--sklearn", str(tmp_path), "--out", str(tmp_path / "r.md")])
    assert [m.name for m in s.models] == ["clf", "clf_nozipmap"] and {m.family for m in s.models} == {"scikit-learn"}
    for spec in s.models:
        feeds = spec.make_feeds(spec.build(), 0)
        (name,) = feeds
        np.testing.assert_array_equal(feeds[name], rows)
        assert spec.input_shapes == {name: [64, 16]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        suite.parse_args(["--sklearn", str(tmp_path / "empty"), "--out", "r.md"])
    assert "no .onnx files" in capsys.readouterr().err
