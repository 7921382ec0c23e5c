"""`hcc plan --precision auto`: FPGA MAC layers get ap_fixed widths from their measured sensitivity, shown per
subgraph with their errors, written as an fpga.toml for `hcc compile --fpga-config`; a budget too tight keeps wide
types and says so; the same command gives the same plan. Model: test_fixed_precision.outlier_mlp."""
from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from hcc.backends.fpga.config import load
from test_fixed_precision import outlier_mlp  # tests/planner, on sys.path by conftest

FPGA = ["--devices", "cpu,gpu:sm_90,fpga:xcu250", "--place", "outlier|relu|head=fpga"]


def hcc(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def model(tmp_path):
    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_plan_chooses_fpga_widths_by_sensitivity_and_writes_them_for_compile(model, tmp_path):
    proc = hcc("plan", model, *FPGA, "--precision", "auto", "--accuracy", "max_abs=1e-1", "--json", tmp_path / "p.json",
               "--save-fpga-config", tmp_path / "w.toml")
    sg = json.loads((tmp_path / "p.json").read_text())["subgraphs"][0]
    assert sg["kind"] == "fpga" and sg["precision"] == "ap_fixed 12-16b"
    assert "outlier 16b" in sg["precision_note"] and "head 12b" in sg["precision_note"]
    assert "held-out y max_abs" in sg["precision_note"] and "over budget" not in sg["precision_note"]
    assert "ap_fixed 12-16b" in proc.stdout and "at the chosen widths" in sg["precision_note"] and "LUT" in sg["precision_note"]
    cfg = load(tmp_path / "w.toml")
    assert cfg.node["outlier"]["weight"].startswith("ap_fixed<16,") and cfg.node["head"]["result"].startswith("ap_fixed<12,")
    again = hcc("plan", model, *FPGA, "--precision", "auto", "--accuracy", "max_abs=1e-1", "--json", tmp_path / "q.json", "-q")
    assert again.stdout.replace("\n", "") and json.loads((tmp_path / "q.json").read_text())["subgraphs"] == [sg]


def test_budget_too_tight_keeps_wide_fpga_types_and_says_so(model, tmp_path):
    hcc("plan", model, *FPGA, "--precision", "auto", "--accuracy", "max_abs=1e-6", "--json", tmp_path / "p.json", "-q")
    sg = json.loads((tmp_path / "p.json").read_text())["subgraphs"][0]
    assert sg["precision"] == "ap_fixed 32b" and "too tight for any candidate width" in sg["precision_note"]


def test_precision_flags_are_checked(model, tmp_path):
    proc = hcc("plan", model, *FPGA, "--precision", "auto", check=False)
    assert proc.returncode == 1 and "--precision auto needs --accuracy" in proc.stderr
    proc = hcc("plan", model, *FPGA, "--save-fpga-config", tmp_path / "w.toml", check=False)
    assert proc.returncode == 1 and "--save-fpga-config needs --precision auto" in proc.stderr


def test_compile_refuses_an_fpga_budget_alone_and_says_how(model, tmp_path):
    from hcc.driver import compile_model
    from hcc.errors import HccError
    from hcc.options import CompileOptions, FpgaOptions, PlannerOptions

    options = CompileOptions(fpga=FpgaOptions(accuracy="max_abs=1e-2"), planner=PlannerOptions(devices="cpu,fpga:xcu250"))
    with pytest.raises(HccError, match="an FPGA accuracy budget alone .* --precision auto --accuracy BUDGET"):
        compile_model(model, tmp_path / "b", options)
    with pytest.raises(HccError, match="accuracy budget 'bogus'"):
        FpgaOptions(accuracy="bogus")


@pytest.mark.slow  # two minutes (plan, compile, csim); the steps have their own quicker tests above
def test_widths_written_by_plan_compile_and_hold_the_budget(model, tmp_path):
    """The loop the issue asks for: widths chosen by `hcc plan`, compiled by the FPGA backend through --fpga-config,
    and the bundle's own fixed-point code (csim) within the budget on the golden and held-out inputs."""
    hcc("plan", model, *FPGA, "--precision", "auto", "--accuracy", "max_abs=1e-1", "--save-fpga-config", tmp_path / "w.toml",
        "--json", tmp_path / "p.json", "-q")
    hcc("compile", model, "-o", tmp_path / "b", *FPGA, "--fpga-config", tmp_path / "w.toml", "-q")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    fpga = [s for s in manifest["subgraphs"] if s["device"].startswith("fpga")]
    assert len(fpga) == 1 and fpga[0]["nodes"] == ["outlier", "relu", "head"]
    measured = manifest["golden"]["outputs"]["y"]
    assert measured["golden_max_abs"] <= 0.1 and measured["held_out_max_abs"] <= 0.1
    # the plan's emulation predicted the bundle's golden error: the golden inputs are its first calibration input
    note = json.loads((tmp_path / "p.json").read_text())["subgraphs"][0]["precision_note"]
    emulated = float(note.split("calibration y max_abs ")[1].split(",")[0])
    assert measured["golden_max_abs"] <= emulated * 1.005  # the note prints 3 significant digits
