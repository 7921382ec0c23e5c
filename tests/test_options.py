"""Typed compile options (hcc/options.py): built by the API's keywords and the CLI alike, checked on construction,
sent to the worker as versioned plain data, taken by every backend."""
from __future__ import annotations

import inspect
import json

import pytest

import hcc
import hcc.driver
import hcc.runtime
from hcc.env import HccEnv
from hcc.errors import HccError
from hcc.options import (
    KEYWORDS,
    CompileOptions,
    CpuOptions,
    DebugOptions,
    FpgaOptions,
    GoldenOptions,
    GpuOptions,
    PlannerOptions,
)
from hcc.planner import DEFAULT_TIME_LIMIT_S
from hcc.planner.placement import parse_place_option

EVERY_KEYWORD = dict(
    input_shapes={"x": [1, 3]}, golden_inputs="g.npz", seed=7, target_cpu="native", keep_ir=False, devices="cpu,fpga:xcu250",
    objective="throughput", budgets=["fpga.dsp=40"], overrides=[parse_place_option("Conv=fpga"), parse_place_option("Gemm=cpu", soft=True)],
    placement_file="p.json", save_placement="q.json", device_file="d.toml", plan_time_limit_s=2.5, gpu_precision="fp16",
    cpu_precision="auto", accuracy="max_abs=0.01",
    fpga={"precision": "ap_fixed<12,4>", "config": "f.toml", "calibration_file": "c.npz", "reuse_factor": 2, "strategy": "resource"},
    sign_key="k.key", save_temps="temps",
)


def test_every_keyword_of_hcc_compile_lands_in_its_section_and_survives_the_worker_request():
    assert set(EVERY_KEYWORD) == set(KEYWORDS)
    options = CompileOptions.from_keywords(**EVERY_KEYWORD)
    assert options.golden == GoldenOptions("g.npz", 7) and options.gpu == GpuOptions("fp16")
    assert options.cpu == CpuOptions("native", "auto", "max_abs=0.01")
    assert options.debug == DebugOptions(keep_ir=False, save_temps="temps") and options.input_shapes == {"x": [1, 3]}
    assert options.planner.objective == "throughput" and options.planner.time_limit_s == 2.5 and options.planner.budgets == ("fpga.dsp=40",)
    assert options.fpga.reuse_factor == 2 and options.fpga.config == "f.toml" and options.fpga.given
    assert options.planner.active and options.sign_key == "k.key"
    again = CompileOptions.from_dict(json.loads(json.dumps(options.to_dict())))  # the worker's side
    assert again == options and again.planner.overrides[1].soft


def test_defaults_are_the_compilers():
    options = CompileOptions.from_keywords()
    assert options == CompileOptions(env=options.env) and not options.planner.active and not options.fpga.given
    assert options.planner.time_limit_s == DEFAULT_TIME_LIMIT_S and options.cpu.target_cpu == "x86-64-v3" and options.debug.keep_ir
    from hcc import cli

    assert cli.DEFAULT_TARGET_CPU == CpuOptions().target_cpu


@pytest.mark.parametrize("build, message", [
    (lambda: GpuOptions("fp8"), r"--gpu-precision 'fp8': unsupported \(choose one of fp32, fp16, auto\)"),
    (lambda: FpgaOptions(precision="ap_fixed<200,100>"), r"--fpga-precision 'ap_fixed<200,100>'.*outside 1\.\.64"),
    (lambda: FpgaOptions(strategy="fast"), "fpga option strategy 'fast'"),
    (lambda: FpgaOptions(reuse_factor=0), "fpga option reuse_factor 0"),
    (lambda: PlannerOptions(objective="power"), "--objective 'power'"),
    (lambda: PlannerOptions(time_limit_s=0), "--time-limit 0"),
    (lambda: PlannerOptions(devices=" "), "--devices ' '"),
    (lambda: GoldenOptions(seed=-1), "--seed -1"),
    (lambda: CpuOptions("x86 64; rm"), "--target-cpu 'x86 64; rm'"),
    (lambda: DebugOptions(keep_ir="yes"), "keep_ir 'yes'"),
    (lambda: CpuOptions(precision="auto", accuracy="max_abs=1", int8_nodes=({"node": "fc", "step": -1.0, "signed": True},)),
     "cpu int8 node .*positive finite step"),
    (lambda: CompileOptions(gpu="fp16"), "compile option gpu: expected a GpuOptions"),
    (lambda: CompileOptions.from_keywords(gpu_precison="fp16"), "unknown option 'gpu_precison'"),
    (lambda: CompileOptions.from_keywords(fpga={"precison": "auto"}), "compile option fpga: unknown option.*precison"),
])
def test_a_bad_option_is_refused_on_construction_naming_it(build, message):
    with pytest.raises(HccError, match=message):
        build()


def test_int8_choices_survive_the_worker_request():
    """--cpu-precision auto's int8 GEMMs (node, calibrated step, sign) go to the compile worker as plain data and back."""
    from hcc.options import Int8Gemm

    options = CompileOptions(cpu=CpuOptions(precision="auto", accuracy="max_abs=1", int8_nodes=(Int8Gemm("fc", 0.02, False),)))
    back = CompileOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert back.cpu == options.cpu and back.cpu.int8() == (("fc", 0.02, False),)


def test_the_groups_hook_is_not_public(tmp_path):
    """`groups` (subgraphs fixed by hand) left hcc.compile: tests and tools use hcc.driver.compile_groups."""
    assert "groups" not in inspect.signature(hcc.compile).parameters
    assert "groups" not in inspect.signature(hcc.driver.compile_model).parameters
    with pytest.raises(HccError, match="unknown option 'groups'") as info:
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", groups=[])
    assert "compile_groups" in info.value.hint
    with pytest.raises(HccError, match="not both"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", CompileOptions(), seed=1)


def test_every_backend_takes_compile_options():
    from hcc.backends import backend_for
    from hcc.devices import KINDS

    for kind in KINDS:
        parameters = inspect.signature(backend_for(kind).compile_subgraph).parameters
        assert parameters["options"].annotation in ("CompileOptions", CompileOptions), kind
        assert parameters["files"].annotation in ("ModelFiles | None",), kind


def test_the_worker_uses_the_compiles_environment_record_and_the_manifest_records_it(tmp_path):
    """The knobs are read once, in the driver: a record saying HCC_CPU_SCHEDULE=loops (the variable itself unset)
    gives plain-loop code in the worker, and the manifest says so."""
    import onnx

    from models import mlp

    onnx.save(mlp(batch=2, features=8, hidden=8, classes=4), tmp_path / "m.onnx")
    plain = hcc.compile(tmp_path / "m.onnx", tmp_path / "default", keep_ir=False)
    assert plain.toolchain["HCC_CPU_SCHEDULE"] == "auto" and plain.toolchain["HCC_GPU_SHARED"] == "on"
    assert plain.subgraphs[0].artifacts[0].meta["schedule"]  # micro-kernels and vector schedules, per op
    loops = hcc.compile(tmp_path / "m.onnx", tmp_path / "loops", CompileOptions(debug=DebugOptions(keep_ir=False), env=HccEnv(cpu_schedule="loops")))
    assert loops.toolchain["HCC_CPU_SCHEDULE"] == "loops"
    assert loops.subgraphs[0].artifacts[0].meta["schedule"] == []  # plain loops: no schedule applied
    session = hcc.runtime.load(tmp_path / "loops")  # old runtimes ignore the extra toolchain keys; this one loads it
    assert session.manifest.toolchain["HCC_CPU_SCHEDULE"] == "loops"


def test_a_compile_configuration_file_builds_the_same_record(tmp_path):
    """`CompileOptions.from_file` (hcc compile --config): the sections as TOML tables; errors name the file."""
    path = tmp_path / "hcc.toml"
    path.write_text('input_shapes = { x = [1, 3] }\nsign_key = "k.key"\n[golden]\nseed = 7\n[cpu]\ntarget_cpu = "native"\n'
                    'precision = "auto"\naccuracy = "max_abs=0.01"\n[planner]\ndevices = "cpu,fpga:xcu250"\nbudgets = ["fpga.dsp=40"]\n'
                    '[debug]\nkeep_ir = false\n')
    options = CompileOptions.from_file(path)
    expected = CompileOptions.from_keywords(input_shapes={"x": [1, 3]}, sign_key="k.key", seed=7, target_cpu="native", cpu_precision="auto",
                                            accuracy="max_abs=0.01", devices="cpu,fpga:xcu250", budgets=["fpga.dsp=40"], keep_ir=False)
    assert options.to_dict() == expected.to_dict()
    path.write_text("[cpu]\nbogus = 1\n")
    with pytest.raises(HccError, match=r"hcc.toml: compile option cpu: unknown option\(s\) bogus"):
        CompileOptions.from_file(path)
    path.write_text("[env]\ncpu_fork = false\n")
    with pytest.raises(HccError, match="'env' cannot be set in a compile configuration file"):
        CompileOptions.from_file(path)
    with pytest.raises(HccError, match="no such compile configuration file"):
        CompileOptions.from_file(tmp_path / "missing.toml")
