"""FPGA backend end to end on small models: the csim shared object equals hcc's numpy fixed-point reference bit for
bit, stays within the propagated error bound of onnxruntime, and the project (firmware, testbench, estimates,
precision report, build script) is complete, lint-clean, -Werror-clean and sanitizer-clean.

Each model is compiled once per module (g++ on ap_fixed code takes seconds).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fpga_testlib as lib
from hcc.backends.fpga import lint, toolchain
from hcc.devices import FPGA_SUPPORTED_OPS
from hcc.errors import HccError

MODELS = {
    "tiny_cnn": (lib.tiny_cnn, {"precision": "auto"}),
    "mlp": (lib.mlp, {"precision": "ap_fixed<16,6>"}),
    "depthwise": (lib.depthwise, {"precision": "auto", "config": {"model": {"auto_mode": "observed"}}}),
    "activations": (lib.activations, {"precision": "ap_fixed<18,6>"}),
    "shapes": (lib.shapes, {"precision": "ap_fixed<18,8>"}),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    cache = {}

    def get(name: str) -> lib.Compiled:
        if name not in cache:
            build, fpga = MODELS[name]
            cache[name] = lib.compile_fpga(build(), tmp_path_factory.mktemp(name), fpga)
        return cache[name]

    return get


def _inputs(c: lib.Compiled, seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: (rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]) * scale).astype(np.float32)
            for i in c.model.graph.input if i.name not in c.weights}


@pytest.mark.parametrize("name", list(MODELS))
def test_csim_is_bit_exact_and_within_bound(compiled, name):
    c = compiled(name)
    for seed, scale in ((1, 1.0), (2, 0.5)):
        feeds = _inputs(c, seed, scale)
        got = lib.run_csim(c, feeds)
        ref, _ = lib.reference(c, feeds)
        ort = lib.onnxruntime_outputs(c, feeds)
        for out in c.spec.outputs:
            fixed = ref[out].fixed.astype(np.float32).reshape(got[out].shape)
            np.testing.assert_array_equal(got[out], fixed, err_msg=f"{name}/{out}: csim != fixed-point reference")
            # the float track of the reference is the float model (onnxruntime) up to float32 rounding
            np.testing.assert_allclose(ref[out].flt.reshape(got[out].shape), ort[out], rtol=1e-4, atol=1e-5)
            # tolerance rule: |csim - onnxruntime| <= propagated bound + float32 slack
            dev = np.abs(got[out].astype(np.float64) - ort[out].astype(np.float64)).ravel()
            bound = ref[out].err + 1e-5 * np.abs(ort[out]).ravel() + 1e-6
            assert np.all(dev <= bound), f"{name}/{out}: |csim - ort| {dev.max():.3g} exceeds the bound at {np.argmax(dev - bound)}"


def test_accuracy_with_sixteen_bit_types(compiled):
    """Beyond the worst-case bound: the actual deviation from the float model is small at 16-18 bits."""
    for name, limit in (("tiny_cnn", 0.05), ("mlp", 0.05), ("depthwise", 0.02), ("activations", 0.02)):
        c = compiled(name)
        feeds = _inputs(c, 3)
        got, ort = lib.run_csim(c, feeds), lib.onnxruntime_outputs(c, feeds)
        for out in c.spec.outputs:
            assert np.max(np.abs(got[out] - ort[out])) < limit, name


def test_project_layout_and_reports(compiled):
    c = compiled("tiny_cnn")
    root = c.root
    for rel in ("firmware/sg0.cpp", "firmware/sg0.h", "firmware/defines.h", "firmware/parameters.h", "firmware/hcc_fixed.h",
                "tb/sg0_test.cpp", "tb/tb_input_features.dat", "tb/tb_output_predictions.dat", "tb/tb_output_float.dat",
                "build_prj.tcl", "precision.json", "estimate.json", "csim/sg0_bridge.cpp", "csim/libsg0_csim.so"):
        assert (root / rel).is_file(), rel
    assert list((root / "firmware" / "weights").glob("*.h"))
    meta = c.artifact.meta
    assert c.artifact.kind == "fpga-csim-so" and c.artifact.abi == "bare-ptr-v1" and c.artifact.entry == "sg0_csim"
    for key in ("firmware", "testbench", "build_script", "precision", "estimate_file"):
        paths = meta[key] if isinstance(meta[key], list) else [meta[key]]
        assert all((c.bundle / p).is_file() for p in paths), key
    est = json.loads((root / "estimate.json").read_text())
    assert {"dsp", "bram18k", "lut", "ff", "latency_cycles", "ii_cycles"} <= set(est["total"])
    assert est["total"]["dsp"] > 0 and est["total"]["latency_cycles"] > 0
    assert all(layer["kind"] in ("mac", "reduce", "eltwise", "pad", "concat", "softmax") for layer in est["layers"])
    assert meta["estimate"] == est["total"]
    prec = json.loads((root / "precision.json").read_text())
    assert prec["inputs"]["x"]["type"].startswith("ap_")
    mac_ops = [o for o in prec["ops"] if o["kind"] == "mac"]
    assert len(mac_ops) == 4  # two convolutions (BatchNorm folded in) and two Gemms
    assert all("accum" not in o["types"] or True for o in mac_ops)
    assert all({"acc", "result", "product"} <= set(o["types"]) for o in mac_ops)
    assert all(o["reuse_factor"] >= 1 and o["strategy"] == "latency" for o in mac_ops)
    # BatchNorm and ReLU disappear into the convolutions
    assert not any(o["kind"] == "eltwise" for o in prec["ops"])
    # precision auto: no overflow on the calibration data, nothing wider than the cap
    assert prec["overflow_events_on_samples"] == {}
    widths = [int(re.match(r"ap_u?fixed<(\d+)", t["type"]).group(1)) for t in prec["tensors"].values()]
    assert max(widths) <= 32
    tcl = (root / "build_prj.tcl").read_text()
    assert "set_part {xcu250-figd2104-2L-e}" in tcl and f"create_clock -period {meta['clock_ns']:g}" in tcl
    assert meta["clock_ns"] == 3.333  # hcc.devices' 300 MHz for fpga:xcu250 when no clock is given
    assert all(s in tcl for s in ("csim_design", "csynth_design", "cosim_design", "export_design"))


def test_weights_are_exact_integer_codes(compiled):
    c = compiled("mlp")
    header = next((c.root / "firmware" / "weights").glob("*w*.h")).read_text()
    assert re.search(r"static const int(8|16|32|64)_t \w+\[\d+\] = \{-?\d+", header)
    assert "__SYNTHESIS__" not in (c.root / "firmware" / "sg0.cpp").read_text()


def test_lint_clean(compiled):
    for name in MODELS:
        c = compiled(name)
        files = {str(p.relative_to(c.root)): p.read_text() for p in (c.root / "firmware").rglob("*") if p.is_file()}
        assert lint.lint_project(files, "sg0") == []
        text = files["firmware/sg0.cpp"]
        assert "#pragma HLS INTERFACE" in text and "#pragma HLS PIPELINE" in text


def _tb_build(c: lib.Compiled, out, extra: list[str], opt: str = "-O1", std: str = "c++17"):
    return lib.gxx([opt, f"-std={std}", "-pthread", *extra, "-isystem", str(toolchain.ap_types_dir()), "-I", str(c.root / "firmware"),
                    str(c.root / "firmware" / "sg0.cpp"), str(c.root / "tb" / "sg0_test.cpp"), "-o", str(out)])


@pytest.mark.parametrize("name", ["activations"])
def test_testbench_builds_with_werror_and_passes(compiled, name, tmp_path):
    c = compiled(name)
    exe = tmp_path / "tb"
    proc = _tb_build(c, exe, toolchain.WARNING_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = lib.subprocess.run([str(exe), str(c.root / "tb")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "CSIM PASS" in run.stdout, run.stdout + run.stderr
    assert (c.root / "tb" / "csim_results.log").read_text().strip()


def test_testbench_under_sanitizers(compiled, tmp_path):
    # C++20: Xilinx's ap_fixed_base(double) left-shifts negative values, undefined before C++20 (defined since);
    # under -std=c++17 UBSan reports that line of the vendor header, not hcc's code.
    c = compiled("tiny_cnn")
    exe = tmp_path / "tb_asan"
    proc = _tb_build(c, exe, [*toolchain.WARNING_FLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                              "-fno-omit-frame-pointer"], opt="-O1", std="c++20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(lib.subprocess.os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    run = lib.subprocess.run([str(exe), str(c.root / "tb")], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0 and "CSIM PASS" in run.stdout, run.stdout + run.stderr[-3000:]
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr


def test_models_cover_exactly_the_ops_the_fpga_supports():
    """hcc.devices' FPGA op set is what the planner scores and what the backend's gate lets through; the models
    above, each compiled and checked bit for bit, use every op of it and nothing else: the set claims no op the
    backend cannot build (and an op added to the backend needs a model here)."""
    used = {n.op_type for build, _ in MODELS.values() for n in build().graph.node}
    assert sorted(FPGA_SUPPORTED_OPS - used) == [], "FPGA ops no model compiles"
    assert sorted(used - FPGA_SUPPORTED_OPS) == [], "models use ops outside the FPGA set"


def test_unsupported_op_is_named(tmp_path):
    with pytest.raises(HccError, match=r"'exp' \(Exp\)"):
        lib.compile_fpga(lib.with_exp(), tmp_path)
