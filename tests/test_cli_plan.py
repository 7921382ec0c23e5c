"""`hcc plan`, `hcc devices` and the placement options of `hcc compile`, through the console entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny_cnn.onnx"
SHAPE = ["--input-shape", "image=1x3x32x32"]


def hcc(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_devices_lists_host_and_catalog():
    out = hcc("devices").stdout
    assert "this host:" in out and "cpu:" in out and "gpu" in out
    from hcc.runtime.devices.cpu import cpu_low_precisions  # which bf16/int8 kernels this CPU runs, named

    line = next(x for x in out.splitlines() if "cpu precisions below fp32" in x)
    assert all(p in line for p in cpu_low_precisions()) and (cpu_low_precisions() or "none (fp32 only)" in line)
    for name in ("gpu:sm_80", "gpu:sm_90", "fpga:xcu250", "fpga:xczu7ev"):
        assert name in out


def test_plan_what_if_is_deterministic_and_compares_single_devices(tmp_path):
    mix = "4xgpu:sm_90+2xfpga:xcu250+cpu"
    # A generous limit: on a loaded machine the default 10 s can cut the search short, and plans may then differ.
    first = hcc("plan", EXAMPLE, *SHAPE, "--devices", mix, "--time-limit", 600, "--json", tmp_path / "a.json", "--explain").stdout
    hcc("plan", EXAMPLE, *SHAPE, "--devices", mix, "--time-limit", 600, "--json", tmp_path / "b.json")
    assert "all on one device" in first and "subgraphs (execution order)" in first
    assert "stem/conv" in first  # the per-op explanation names nodes
    a, b = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert a == b
    best_single = min(v for v in a["single_device"].values() if v is not None)
    assert a["predicted"]["latency_s"] <= best_single * (1 + 1e-9)


def test_plan_respects_an_fpga_dsp_budget(tmp_path):
    # Conv/Gemm preferred on the FPGA: at their leanest (16 multipliers each) the four need 64 DSPs, so under 40 some move.
    out = hcc("plan", EXAMPLE, *SHAPE, "--devices", "cpu,fpga:xczu7ev", "--prefer", "Conv|Gemm=fpga", "--budget", "fpga.dsp=40",
              "--json", tmp_path / "p.json").stdout
    plan = json.loads((tmp_path / "p.json").read_text())
    fpga = plan["devices_detail"]["fpga:xczu7ev#0"]["resources"]
    assert fpga["dsp"]["used"] <= fpga["dsp"]["limit"] == 40
    assert plan["single_device"]["fpga:xczu7ev"] is None  # the whole model cannot fit that budget
    macs = {r["node"]: r for r in plan["placement"] if r["op_type"] in ("Conv", "Gemm")}
    assert {r["device"] for r in macs.values()} == {"cpu#0", "fpga:xczu7ev#0"}  # some layers moved
    assert all(r["reason"] == "preferred by the user" and r["reuse_factor"] >= 1 for r in macs.values() if r["device"] != "cpu#0")
    assert "did not fit the dsp budget" in out


def test_forcing_beyond_a_budget_is_a_clear_error():
    proc = hcc("plan", EXAMPLE, *SHAPE, "--devices", "cpu,fpga:xczu7ev", "--place", "Conv=fpga", "--budget", "fpga.dsp=40", check=False)
    assert proc.returncode == 1 and "allows dsp 40" in proc.stderr and "Traceback" not in proc.stderr


def test_budgeted_fpga_layers_are_built_as_planned(tmp_path):
    """The reuse factor and strategy the partitioner picked under a DSP budget are the ones the HLS project uses,
    and the project's own estimate.json stays within the budget."""
    hcc("compile", EXAMPLE, *SHAPE, "-o", tmp_path / "b", "--devices", "cpu,fpga:xczu7ev", "--prefer", "Conv|Gemm=fpga",
        "--budget", "fpga.dsp=40", "-q")
    plan = json.loads((tmp_path / "b" / "plan" / "plan.json").read_text())
    planned = {r["node"]: r for r in plan["placement"] if "reuse_factor" in r}
    estimates = [json.loads(p.read_text()) for p in sorted((tmp_path / "b" / "fpga").glob("*/estimate.json"))]
    assert estimates and sum(e["total"]["dsp"] for e in estimates) <= 40
    # a MAC layer may carry fused neighbours (GlobalAveragePool + Gemm): key it by its planned MAC node
    built = {next(n for n in layer["nodes"] if n in planned): layer for e in estimates for layer in e["layers"] if layer["kind"] == "mac"}
    assert set(built) == set(planned)
    for node, layer in built.items():
        assert (layer["reuse_factor"], layer["strategy"]) == (planned[node]["reuse_factor"], planned[node]["strategy"]), node
    assert plan["devices_detail"]["fpga:xczu7ev#0"]["resources"]["dsp"]["used"] >= sum(e["total"]["dsp"] for e in estimates)
    assert "1 passed, 0 failed" in hcc("test", tmp_path / "b").stdout


def test_unknown_override_device_is_a_clear_error():
    proc = hcc("plan", EXAMPLE, *SHAPE, "--devices", "cpu,fpga", "--place", "Conv=tpu", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "tpu" in proc.stderr


def test_compile_saves_and_reuses_a_placement(tmp_path):
    hcc("compile", EXAMPLE, *SHAPE, "-o", tmp_path / "b1", "--devices", "cpu", "--save-placement", tmp_path / "place.json", "-q")
    records = json.loads((tmp_path / "place.json").read_text())
    assert records and "stem/conv" in json.dumps(records)
    out = hcc("compile", EXAMPLE, *SHAPE, "-o", tmp_path / "b2", "--placement", tmp_path / "place.json", "--explain", "-q").stdout
    assert "sg0@cpu#0" in out
    assert "1 passed" in hcc("test", tmp_path / "b2").stdout
    manifest = json.loads((tmp_path / "b2" / "manifest.json").read_text())
    assert manifest["plan_report"] == "plan/plan.json" and "plan/explain.txt" in manifest["files"]


def test_forced_fpga_split_runs_on_csim_and_matches_onnxruntime(tmp_path):
    """A forced split (FPGA + CPU subgraphs): csim runs the HLS kernel, the run says so, golden data matches."""
    # --fpga-precision auto: the default 16-bit type's measured error would make the check inconclusive (exit 2)
    out = hcc("compile", EXAMPLE, *SHAPE, "-o", tmp_path / "b", "--devices", "cpu,fpga:xcu250", "--place", "stem/.*|block.*=fpga",
              "--fpga-precision", "auto", "-q").stdout
    assert "sg0@fpga:xcu250#0" in out and "sg1@cpu#0" in out
    proc = hcc("test", tmp_path / "b")
    assert "1 passed, 0 failed" in proc.stdout and "fpga-csim" in proc.stdout
    project = tmp_path / "b" / "fpga" / "sg0"
    for name in ("build_prj.tcl", "precision.json", "estimate.json"):
        assert (project / name).is_file()
    assert list((project / "firmware").glob("*.cpp")) and list((project / "tb").glob("*.cpp"))
