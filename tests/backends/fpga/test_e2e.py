"""FPGA subgraphs through the whole compiler and runtime: hcc.compile with an FPGA group, a bundle whose runtime
runs the csim shared object (fpga-csim driver), per-layer configuration and calibration files."""
from __future__ import annotations

import json

import numpy as np
import onnx

import fpga_testlib as lib
from helpers import compile_groups


def test_compile_and_run_bundle_on_fpga_csim(tmp_path):
    from hcc.artifacts.golden import run_onnxruntime
    from hcc.runtime import load

    model = lib.mlp()
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    groups = [{"id": "sg0", "device": "fpga:xcu250", "nodes": [n.name for n in model.graph.node], "device_index": 0}]
    manifest = compile_groups(path, tmp_path / "bundle", groups, fpga={"precision": "auto"})
    sg = manifest.subgraphs[0]
    assert sg.device == "fpga:xcu250"
    art = sg.artifacts[0]
    assert art.kind == "fpga-csim-so" and art.file in manifest.files  # checksummed like every bundle file
    assert all(p in manifest.files for p in art.meta["firmware"])
    assert sg.fallback is not None and sg.fallback.kind == "cpu-so"
    session = load(tmp_path / "bundle")
    assert any("fpga-csim" in n for n in session.notes)
    x = np.random.default_rng(7).standard_normal((2, 12)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    ref = run_onnxruntime(model, {"x": x})["out"]
    assert y.shape == ref.shape and y.dtype == np.float32
    tol = art.meta["tolerance"]
    assert np.max(np.abs(y - ref)) <= tol["atol"] * 4 + 1e-3  # bound computed on the golden sample; new data stays close
    assert np.max(np.abs(y - ref)) < 0.02
    # The golden tolerance is measured (golden + held-out inputs against onnxruntime), tight enough to fail.
    from hcc.runtime.golden_check import check_golden

    acc = manifest.golden.outputs["out"]
    assert acc.held_out_samples == 4 and 0 < acc.golden_max_abs <= acc.atol and acc.held_out_max_abs <= acc.atol
    assert acc.argmax_agreement is not None and acc.note == ""
    report = check_golden(tmp_path / "bundle")
    assert report.passed and report.outputs[0].atol == acc.atol


def test_a_too_narrow_fixed_point_type_is_flagged_not_passed(tmp_path):
    """The issue's case: a softmax output in [0, 1] whose fixed-point error is as large as its range."""
    from hcc.runtime.golden_check import check_golden

    model = lib.activations()
    path = tmp_path / "act.onnx"
    onnx.save(model, path)
    groups = [{"id": "sg0", "device": "fpga:xcu250", "nodes": [n.name for n in model.graph.node], "device_index": 0}]
    messages = []
    manifest = compile_groups(path, tmp_path / "bundle", groups, fpga={"precision": "ap_fixed<5,2>"}, progress=messages.append)
    acc = manifest.golden.outputs["softmax"]
    assert "inconclusive" in acc.note
    assert any(m.startswith("warning: output 'softmax'") for m in messages)
    report = check_golden(tmp_path / "bundle")
    assert not report.passed and report.outputs[0].status in ("INCONCLUSIVE", "FAIL")


def test_layer_config_reuse_factor_strategy_and_calibration(tmp_path):
    model = lib.mlp()
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(3).standard_normal((4, 2, 12)).astype(np.float32) * 2)  # 4 samples
    cfg = {"model": {"precision": "ap_fixed<14,5,AP_RND,AP_SAT>", "accum": "ap_fixed<24,8,AP_RND,AP_SAT>", "reuse_factor": 4},
           "node": {"fc2_mm": {"strategy": "resource", "reuse_factor": 8, "weight": "ap_fixed<10,2,AP_RND,AP_SAT>"}}}
    c = lib.compile_fpga(model, tmp_path / "w", {"config": cfg, "calibration_file": str(calib), "part": "xczu7ev-ffvc1156-2-e",
                                                  "clock_ns": 4.0})
    code = (c.root / "firmware" / "sg0.cpp").read_text()
    assert "#pragma HLS PIPELINE II=4" in code and "#pragma HLS PIPELINE II=8" in code
    assert "#pragma HLS ARRAY_RESHAPE" in code and "#pragma HLS BIND_STORAGE" in code
    assert "#pragma HLS ALLOCATION operation instances=mul limit=" in code
    prec = json.loads((c.root / "precision.json").read_text())
    assert "calib.npz (4 sample(s))" in prec["calibration"]
    macs = {tuple(o["nodes"]): o for o in prec["ops"] if o["kind"] == "mac"}
    fc2 = next(o for k, o in macs.items() if "fc2_mm" in k)
    assert fc2["reuse_factor"] == 8 and fc2["strategy"] == "resource"
    assert any(k["type"] == "ap_fixed<10,2,AP_RND,AP_SAT>" for k in fc2["constants"])
    assert all(o["types"]["acc"] == "ap_fixed<24,8,AP_RND,AP_SAT>" for o in macs.values())
    assert len((c.root / "tb" / "tb_input_features.dat").read_text().strip().splitlines()) == 4
    tcl = (c.root / "build_prj.tcl").read_text()
    assert "set_part {xczu7ev-ffvc1156-2-e}" in tcl and "create_clock -period 4" in tcl and "-flow_target vivado" in tcl
    est = json.loads((c.root / "estimate.json").read_text())
    assert est["dsp_width"] == 27 and est["utilization"]["dsp"] > 0
    # the compile-time self-check ran the .so on all 4 calibration samples bit for bit; a new input too:
    feeds = {"x": np.random.default_rng(9).standard_normal((2, 12)).astype(np.float32) * 3}
    got = lib.run_csim(c, feeds)["out"]
    ref, _ = lib.reference(c, feeds)
    np.testing.assert_array_equal(got, ref["out"].fixed.astype(np.float32).reshape(got.shape))


def test_fpga_subgraph_between_cpu_subgraphs(tmp_path):
    """The FPGA subgraph's inputs are intermediate tensors: calibration runs the model up to them."""
    from hcc.artifacts.golden import run_onnxruntime
    from hcc.runtime import load

    model = lib.tiny_cnn()
    path = tmp_path / "cnn.onnx"
    onnx.save(model, path)
    names = [n.name for n in model.graph.node]  # conv1 bn1 relu1 | pool1 conv2 bn2 relu2 pool2 flatten | fc1 ...
    groups = [{"id": "sg0", "device": "cpu", "nodes": names[:3], "device_index": 0},
              {"id": "sg1", "device": "fpga:xcu250", "nodes": names[3:9], "device_index": 0},
              {"id": "sg2", "device": "cpu", "nodes": names[9:], "device_index": 0}]
    manifest = compile_groups(path, tmp_path / "bundle", groups, fpga={"precision": "auto"})
    assert [sg.device for sg in manifest.subgraphs] == ["cpu", "fpga:xcu250", "cpu"]
    sg1 = manifest.subgraphs[1]
    assert sg1.inputs[0] == "relu1" and sg1.artifacts[0].meta["baked_inputs"] == ["conv2.weight"]
    session = load(tmp_path / "bundle")
    x = np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    assert np.max(np.abs(y - run_onnxruntime(model, {"x": x})["logits"])) < 0.02
    prec = json.loads((tmp_path / "bundle" / "fpga" / "sg1" / "precision.json").read_text())
    assert prec["inputs"]["relu1"]["range"][0] >= 0.0  # calibrated on the real intermediate tensor (after ReLU)
