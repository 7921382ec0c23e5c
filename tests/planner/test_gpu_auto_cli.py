"""--gpu-precision auto end to end: `hcc plan` and `hcc compile --explain` showing per-subgraph devices and
precisions, the options that carry the choice, and the bundle built from it (driver._choose_gpu_precision).
The model: graphs.two_branches, placed FPGA | GPU | CPU | GPU | CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from graphs import two_branches  # tests/planner, on sys.path by conftest

PLACE = ["--place", "fc0=fpga", "--place", "mm1|add1|relu1|mm2|shift=gpu", "--place", "tanh|unshift=cpu"]


# -- hcc plan -------------------------------------------------------------------------------------------------------

def hcc(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_hcc_plan_shows_precision_per_subgraph_by_device_and_sensitivity(tmp_path):
    onnx.save(two_branches(), tmp_path / "m.onnx")
    proc = hcc("plan", tmp_path / "m.onnx", "--devices", "cpu,gpu:sm_90,fpga:xcu250", *PLACE, "--gpu-precision", "auto",
               "--accuracy", "max_abs=5e-2", "--json", tmp_path / "p.json")
    plan = json.loads((tmp_path / "p.json").read_text())
    rows = [(s["device"].split("#")[0], s["precision"]) for s in plan["subgraphs"]]
    assert rows == [("fpga:xcu250", "ap_fixed<16,6>"), ("gpu:sm_90", "fp16"), ("cpu", "fp32"), ("gpu:sm_90", "fp32"), ("cpu", "fp32")]
    assert "over 0.5 x the budget" in plan["subgraphs"][3]["precision_note"]
    assert "fp16" in proc.stdout and "ap_fixed<16,6>" in proc.stdout and "emulated" in proc.stdout
    assert "--gpu-precision auto: the placement priced every GPU subgraph at fp16; sg3 stayed fp32" in proc.stdout
    # re-priced: sg3 (back to fp32) costs more than in the all-fp16 plan, sg1 (fp16 in both) the same
    hcc("plan", tmp_path / "m.onnx", "--devices", "cpu,gpu:sm_90,fpga:xcu250", *PLACE, "--gpu-precision", "fp16", "--json", tmp_path / "f.json")
    all_fp16 = json.loads((tmp_path / "f.json").read_text())
    assert [s["precision"] for s in all_fp16["subgraphs"] if s["kind"] == "gpu"] == ["fp16", "fp16"]
    times = lambda p: [s["predicted_time_s"] for s in p["subgraphs"]]  # noqa: E731
    assert times(plan)[1] == pytest.approx(times(all_fp16)[1]) and times(plan)[3] > times(all_fp16)[3]
    hcc("plan", tmp_path / "m.onnx", "--devices", "cpu,gpu:sm_90,fpga:xcu250", *PLACE, "--gpu-precision", "auto",
        "--accuracy", "max_abs=2", "--json", tmp_path / "q.json", "-q")
    loose = json.loads((tmp_path / "q.json").read_text())
    assert [s["precision"] for s in loose["subgraphs"] if s["kind"] == "gpu"] == ["fp16", "fp16"]


def test_accuracy_flag_needs_an_auto_precision():
    proc = hcc("plan", "/nonexistent.onnx", "--accuracy", "max_abs=1", check=False)
    assert proc.returncode == 1 and "--accuracy needs --cpu-precision auto or --gpu-precision auto" in proc.stderr
    proc = hcc("plan", "/nonexistent.onnx", "--gpu-precision", "auto", check=False)
    assert proc.returncode == 1 and "--gpu-precision auto needs --accuracy" in proc.stderr


# -- options --------------------------------------------------------------------------------------------------------

def test_gpu_options_auto_needs_a_budget_and_records_per_subgraph_precisions():
    from hcc.errors import HccError
    from hcc.options import CompileOptions, GpuOptions

    with pytest.raises(HccError, match="--gpu-precision auto needs --accuracy"):
        GpuOptions("auto")
    with pytest.raises(HccError, match="accuracy budget 'max_abz=1'"):
        GpuOptions("auto", "max_abz=1")
    gpu = GpuOptions("auto", "max_abs=1e-2", ("sg1",))
    assert (gpu.precision_of("sg1"), gpu.precision_of("sg3"), GpuOptions("fp16").precision_of("sg3")) == ("fp16", "fp32", "fp16")
    # hcc.compile's one `accuracy` keyword goes to each auto precision
    both = CompileOptions.from_keywords(gpu_precision="auto", cpu_precision="auto", accuracy="max_abs=1e-2")
    assert both.gpu.accuracy == both.cpu.accuracy == "max_abs=0.01"
    gpu_only = CompileOptions.from_keywords(gpu_precision="auto", accuracy="rel=1e-3")
    assert (gpu_only.gpu.accuracy, gpu_only.cpu.accuracy) == ("rel=0.001", None)
    options = CompileOptions(gpu=gpu)
    assert CompileOptions.from_dict(json.loads(json.dumps(options.to_dict()))).gpu == gpu


@pytest.mark.slow  # 90-130 s (sensitivity runs, then a GPU and CPU build); `hcc plan`'s side runs by default above
def test_hcc_compile_auto_builds_the_plan_it_explains(tmp_path):
    """FPGA | GPU fp16 | CPU | GPU fp32 | CPU: --explain shows each subgraph's device and precision; the bundle
    compiles each GPU subgraph at its own precision, the FPGA layer at the design point of the (re-priced) plan,
    and its golden check passes with a tolerance derived from the emulated fp16 error."""
    onnx.save(two_branches(), tmp_path / "m.onnx")
    out = hcc("compile", tmp_path / "m.onnx", "-o", tmp_path / "b", "--devices", "cpu,gpu:sm_90,fpga:xcu250", *PLACE,
              "--gpu-precision", "auto", "--accuracy", "max_abs=5e-2", "--fpga-precision", "auto", "--explain", "-q").stdout
    lines = [line.split() for line in out.splitlines() if line.startswith("  sg")]
    assert [(row[1].split("#")[0], row[2]) for row in lines] == [
        ("fpga:xcu250", "ap_fixed"), ("gpu:sm_90", "fp16"), ("cpu", "fp32"), ("gpu:sm_90", "fp32"), ("cpu", "fp32")]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [s["precision"] for s in manifest["subgraphs"]][1:] == ["fp16", "fp32", "fp32", "fp32"]
    plan = json.loads((tmp_path / "b" / "plan" / "plan.json").read_text())
    planned = {r["node"]: (r["reuse_factor"], r["strategy"]) for r in plan["placement"] if "reuse_factor" in r}
    estimate = json.loads((tmp_path / "b" / "fpga" / "sg0" / "estimate.json").read_text())
    assert {n: (layer["reuse_factor"], layer["strategy"]) for layer in estimate["layers"] for n in layer["nodes"] if n in planned} == planned
    y = manifest["golden"]["outputs"]["y"]
    assert y["atol"] < 1e-2 and "2.5 x their emulated error" in y["note"]
    assert "1 passed, 0 failed" in hcc("test", tmp_path / "b").stdout
    assert "GPU: 1 of 2 subgraph(s) in fp16 (sg1)" in hcc("inspect", tmp_path / "b").stdout
