"""`hcc compile --precision auto --accuracy BUDGET`: the compile runs the joint (op, device, precision) choice of
`hcc plan --precision auto` (planner/joint_precision.py) and compiles what it chose: CPU GEMMs in bf16 where chosen,
FPGA MAC layers at their chosen ap_fixed widths (through the fpga-csim backend: HLS C++ compiled with g++), the plan
kept in the bundle's plan/ folder, the golden tolerances measured on the finished bundle. On the CPU alone it is
--cpu-precision auto; per-device precisions that contradict it are errors naming both options."""
from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from hcc.artifacts.accuracy import MARGIN
from hcc.cli import main
from hcc.driver import compile_model, plan_with_precision
from hcc.errors import HccError
from hcc.frontend.loader import load_model
from hcc.options import CompileOptions, CpuOptions, FpgaOptions, GoldenOptions, PlannerOptions
from hcc.runtime.devices.cpu import cpu_low_precisions, has_bf16_tiles
from hcc.runtime.golden_check import check_golden
from hcc.runtime.inspect import describe
from test_fixed_precision import outlier_mlp  # tests/planner, on sys.path by conftest
from test_joint_precision import mlp


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """As tests/planner/conftest.py's (never the developer's CPU calibration profile: placements here depend on the cost
    model), but the CPU support objects, keyed by their sources and flags, come from the usual cache folder: building
    them again is most of a small compile's time."""
    from hcc.env import read_env

    root = tmp_path / "hcc-cache"
    root.mkdir()
    shared = read_env().cache_root / "cpu-support"
    try:
        shared.mkdir(parents=True, exist_ok=True)
        (root / "cpu-support").symlink_to(shared, target_is_directory=True)
    except OSError:
        pass  # not writable: this test builds its own
    monkeypatch.setenv("HCC_CACHE_DIR", str(root))


needs_tiles = pytest.mark.skipif(not has_bf16_tiles(), reason="this CPU has no AMX bf16 tiles")
needs_bf16 = pytest.mark.skipif(not cpu_low_precisions(), reason="this CPU has neither AMX bf16 tiles nor AVX512-BF16")


def _outlier_planner():
    from hcc.planner.placement import parse_place_option

    return PlannerOptions(devices="cpu,fpga:xcu250", overrides=(parse_place_option("outlier|relu|head=fpga"),))


def _plan_json(bundle) -> dict:
    return json.loads((bundle / "plan" / "precision.json").read_text())


def test_fixed_point_widths_per_layer_from_the_budget_compiled_and_within_it(tmp_path):
    """The outlier model on the FPGA under max_abs=1e-1: the layer whose outlier column takes its integer bits needs
    16 bits, the benign one gets 12; the bundle compiles those widths, records them per layer, and its own csim
    (measured, not emulated) stays within the budget on held-out inputs."""
    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    options = CompileOptions(precision="auto", accuracy="max_abs=1e-1", planner=_outlier_planner())
    manifest = compile_model(tmp_path / "m.onnx", tmp_path / "b", options)
    bundle = tmp_path / "b"
    plan = _plan_json(bundle)
    widths = {lw["node"]: lw["width"] for lw in plan["fpga"]["layers"]}
    assert widths == {"outlier": 16, "head": 12}  # different widths per layer, from the same sensitivity analysis
    compiled = json.loads((bundle / "plan" / "fpga_config.json").read_text())
    assert compiled["node"]["outlier"]["weight"].startswith("ap_fixed<16,") and compiled["node"]["head"]["result"].startswith("ap_fixed<12,")
    assert all(compiled["node"][lw["node"]] == lw["types"] for lw in plan["fpga"]["layers"])
    (sg,) = manifest.subgraphs
    assert sg.device == "fpga:xcu250" and "outlier 16b" in sg.precision and "head 12b" in sg.precision
    # the FPGA project itself was generated with those types (the backend's per-tensor report)
    report = json.loads((bundle / "fpga" / sg.id / "precision.json").read_text())
    assert "ap_fixed<12," in json.dumps(report) and "ap_fixed<16,7" in json.dumps(report)
    # predicted (composed) and emulated errors in the plan; measured on the compiled bundle in the manifest
    assert plan["fpga"]["predicted"]["y"]["max_abs"] >= plan["fpga"]["calibration"]["y"]["max_abs"]
    assert plan["fpga"]["calibration_ok"] and plan["fpga"]["held_out_ok"] is True
    assert any(n.startswith("compiled bundle, measured against onnxruntime fp32") for n in plan["notes"])
    measured = manifest.golden.outputs["y"]
    assert measured.golden_max_abs <= 0.1 and measured.held_out_max_abs <= 0.1 and measured.held_out_samples == 4
    # the golden inputs are the choice's first calibration input and the emulation is the backend's arithmetic
    assert 0 < measured.golden_max_abs <= plan["fpga"]["calibration"]["y"]["max_abs"] * (1 + 1e-6)
    # hcc test's tolerance is derived from what the bundle measured, and the check passes
    assert measured.atol == pytest.approx(max(1e-4, MARGIN * max(measured.golden_max_abs, measured.held_out_max_abs)))
    assert check_golden(bundle).passed
    text = describe(bundle)
    assert "outlier 16b, head 12b" in text and "budget max_abs=0.1" in text
    # the same joint choice as `hcc plan --precision auto` makes
    loaded = load_model(str(tmp_path / "m.onnx"), None)
    _, planned = plan_with_precision(loaded, CompileOptions(golden=GoldenOptions(seed=0), cpu=CpuOptions(precision="auto", accuracy="max_abs=1e-1"),
                                                            fpga=FpgaOptions(accuracy="max_abs=1e-1"), planner=_outlier_planner()))
    assert planned.fpga.widths() == widths


@needs_tiles
def test_cpu_bf16_and_fpga_widths_chosen_together_and_compiled(tmp_path):
    """tests/planner/test_joint_precision.mlp on cpu + FPGA with a DSP budget, max_abs=1e-1: the sensitive layer and
    the head on the CPU (AMX kernels: the sensitive layer in bf16, the head in bf16x3), the benign layer at 12 bits on
    the FPGA; held-out error within budget."""
    onnx.save(mlp(), tmp_path / "mlp.onnx")
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "b"), "--devices", "cpu,fpga:xcu250",
                                       "--budget", "fpga.dsp=300", "--precision", "auto", "--accuracy", "max_abs=1e-1", "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    rows = [(s["device"], s["precision"], s["nodes"]) for s in manifest["subgraphs"]]
    assert [(d, n) for d, _, n in rows] == [("cpu", ["sensitive", "relu1"]), ("fpga:xcu250", ["benign", "relu2"]), ("cpu", ["head"])]
    assert rows[0][1] == "bf16" and rows[2][1] == "bf16x3" and "benign 12b" in rows[1][1]
    low = [(a["meta"].get("bf16_nodes"), a["meta"].get("bf16x3_nodes")) for s in manifest["subgraphs"] for a in s["artifacts"]
           if s["device"] == "cpu"]
    assert low == [(["sensitive"], None), (None, ["head"])]
    plan = _plan_json(tmp_path / "b")
    assert {c["node"]: c["precision"] for c in plan["choices"]} == {"sensitive": "bf16", "benign": "fp32", "head": "bf16x3"}
    assert {lw["node"]: lw["width"] for lw in plan["fpga"]["layers"]} == {"benign": 12}
    measured = manifest["golden"]["outputs"]["y"]
    assert 0 < measured["golden_max_abs"] <= 0.1 and measured["held_out_max_abs"] <= 0.1
    plan_text = (tmp_path / "b" / "plan" / "plan.txt").read_text()
    assert plan_text.count("fp32+bf16 1/1") == 1 and plan_text.count("fp32+bf16x3 1/1") == 1


@needs_bf16
def test_on_the_cpu_alone_it_is_cpu_precision_auto(tmp_path):
    onnx.save(mlp(128, 64), tmp_path / "m.onnx")
    auto = compile_model(tmp_path / "m.onnx", tmp_path / "a", CompileOptions(precision="auto", accuracy="max_abs=1e-2"))
    cpu = compile_model(tmp_path / "m.onnx", tmp_path / "c", CompileOptions(cpu=CpuOptions(precision="auto", accuracy="max_abs=1e-2")))
    assert _plan_json(tmp_path / "a")["choices"] == _plan_json(tmp_path / "c")["choices"]
    assert any(c["precision"] == "bf16" for c in _plan_json(tmp_path / "a")["choices"])
    assert [s.precision for s in auto.subgraphs] == [s.precision for s in cpu.subgraphs] == ["bf16"]
    assert auto.golden.outputs["y"].atol == cpu.golden.outputs["y"].atol
    assert not (tmp_path / "a" / "plan" / "fpga_config.json").exists()


def test_on_the_cpu_alone_without_tiles_it_is_refused_by_name(tmp_path, monkeypatch):
    import hcc.runtime.devices.cpu as cpu

    monkeypatch.setattr(cpu, "host_cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"--precision auto \(CPU only\): this CPU has neither AMX bf16 tiles"):
        compile_model(tmp_path / "m.onnx", tmp_path / "b", CompileOptions(precision="auto", accuracy="max_abs=1e-1"))
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("flags,message", [
    (["--cpu-precision", "bf16"], "--precision auto and --cpu-precision bf16 contradict"),
    (["--cpu-precision", "fp32"], "--precision auto and --cpu-precision fp32 contradict"),
    (["--gpu-precision", "fp16"], "--precision auto and --gpu-precision fp16 contradict"),
    (["--fpga-precision", "ap_fixed<16,6>"], "--precision auto and --fpga-precision ap_fixed<16,6> contradict"),
    ([], "--precision auto needs --accuracy"),
])
def test_contradicting_precision_flags_are_one_error_naming_both(tmp_path, flags, message):
    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    accuracy = ["--accuracy", "max_abs=1e-1"] if flags else []
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "b"), "--devices", "cpu,fpga:xcu250",
                                       "--precision", "auto", *accuracy, *flags])
    assert result.exit_code == 1 and f"hcc: error: {message}" in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("hcc: error:")]) == 1
    assert not (tmp_path / "b").exists()


def test_the_options_record_and_a_configuration_file_check_the_same(tmp_path):
    with pytest.raises(HccError, match="--precision auto and --cpu-precision bf16 contradict"):
        CompileOptions(precision="auto", accuracy="max_abs=1e-2", cpu=CpuOptions(precision="bf16"))
    with pytest.raises(HccError, match="contradict: a compile has one budget"):
        CompileOptions(precision="auto", accuracy="max_abs=1e-2", fpga=FpgaOptions(accuracy="max_abs=1e-1"))
    with pytest.raises(HccError, match="needs --precision auto"):
        CompileOptions(accuracy="max_abs=1e-2")
    config = tmp_path / "hcc.toml"
    config.write_text('precision = "auto"\naccuracy = "max_abs=1e-2"\n[gpu]\nprecision = "fp16"\n')
    with pytest.raises(HccError, match="hcc.toml: --precision auto and --gpu-precision fp16 contradict"):
        CompileOptions.from_file(config)
    config.write_text('precision = "auto"\naccuracy = "max_abs=1e-2"\n[planner]\ndevices = "cpu,fpga:xcu250"\n')
    options = CompileOptions.from_file(config)
    assert options.precision == "auto" and options.accuracy == "max_abs=0.01"
    assert CompileOptions.from_dict(options.to_dict()) == options  # what the compile worker receives


def test_without_precision_auto_the_options_are_unchanged():
    options = CompileOptions()
    assert options.precision == "fp32" and options.accuracy is None
    assert CompileOptions.from_keywords(cpu_precision="auto", accuracy="max_abs=1e-2").cpu.accuracy == "max_abs=0.01"


def test_a_users_per_layer_fpga_types_stay_and_the_chosen_widths_fill_the_rest(tmp_path):
    """--fpga-config with --precision auto: a layer whose types the user's config fixes gets no width options (it is
    not chosen), and the configuration compiled keeps the user's sections while adding the chosen layers' types."""
    from hcc.planner.joint_precision import fpga_config_with_widths

    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    user = tmp_path / "fpga.toml"
    user.write_text('[node."head"]\nprecision = "ap_fixed<18,6>"\n\n[node."outlier"]\nreuse_factor = 2\n')
    loaded = load_model(str(tmp_path / "m.onnx"), None)
    options = CompileOptions(golden=GoldenOptions(seed=0), cpu=CpuOptions(precision="auto", accuracy="max_abs=1e-1"),
                             fpga=FpgaOptions(accuracy="max_abs=1e-1", config=str(user)), planner=_outlier_planner())
    _, planned = plan_with_precision(loaded, options)
    assert set(planned.fpga.widths()) == {"outlier"}
    merged = fpga_config_with_widths(str(user), planned.fpga, loaded.model)
    assert merged["node"]["head"] == {"precision": "ap_fixed<18,6>"}
    assert merged["node"]["outlier"] == {"reuse_factor": 2, **planned.fpga.layers[0].types}
    assert merged["tensor"] == {name: {"precision": t} for name, t in planned.fpga.inputs.items()}


def test_with_a_gpu_the_per_subgraph_fp16_step_follows_the_joint_choice(tmp_path):
    """cpu + GPU: the joint choice (CPU bf16 options in the placement), then each GPU subgraph's fp16 choice under the
    same budget; the bundle records it (precision.json's gpu part) and its golden atol covers the emulated fp16 error."""
    onnx.save(mlp(), tmp_path / "m.onnx")
    options = CompileOptions(precision="auto", accuracy="max_abs=1e-1", planner=PlannerOptions(devices="cpu,gpu:sm_90"))
    manifest = compile_model(tmp_path / "m.onnx", tmp_path / "b", options)
    assert [(s.device, s.precision) for s in manifest.subgraphs] == [("gpu:sm_90", "fp16")]
    plan = _plan_json(tmp_path / "b")
    assert [c["precision"] for c in plan["gpu"]["choices"]] == ["fp16"] and plan["gpu"]["held_out_ok"] is True
    assert "not measured on a GPU" in manifest.golden.outputs["y"].note
    assert "fp16 alone, emulated in onnxruntime" in describe(tmp_path / "b")


def test_refused_where_the_choice_cannot_apply(tmp_path):
    """Subgraphs fixed by hand on another device, and a model with run-time control flow (a program of fp32 CPU pieces)."""
    import program_models as pm  # tests/, on sys.path by tests/conftest.py
    from hcc.driver import compile_groups

    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    options = CompileOptions(precision="auto", accuracy="max_abs=1e-1")
    groups = [{"id": "sg0", "device": "fpga:xcu250", "nodes": ["outlier", "relu", "head"], "device_index": 0}]
    with pytest.raises(HccError, match="subgraphs fixed by hand on other devices"):
        compile_groups(tmp_path / "m.onnx", tmp_path / "b", groups, options)
    onnx.save(pm.if_on_input(), tmp_path / "if.onnx")
    # without bf16 kernels it is refused before that, for the host (test_on_the_cpu_alone_without_tiles_it_is_refused_by_name)
    with pytest.raises(HccError, match="--precision auto cannot apply" if cpu_low_precisions() else "this CPU has neither AMX bf16 tiles"):
        compile_model(tmp_path / "if.onnx", tmp_path / "b", options)
    assert not (tmp_path / "b").exists()
