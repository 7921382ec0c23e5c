"""`hcc compile --save-temps DIR` and the reproducer a failing MLIR pass leaves (passes/pass_runner.py), end to end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from hcc.driver import check_save_temps
from hcc.errors import HccError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny_cnn.onnx"


def hcc(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_save_temps_keeps_every_stage_input_and_pipeline(tmp_path):
    temps = tmp_path / "new" / "temps"  # missing folders are created
    proc = hcc("compile", EXAMPLE, "-o", tmp_path / "bundle", "--input-shape", "image=1x3x32x32", "--save-temps", temps)
    assert proc.returncode == 0, proc.stderr
    assert f"keeping the input of every MLIR pass pipeline in {temps}" in proc.stderr
    names = sorted(p.name for p in temps.iterdir())
    stages = [n.removesuffix(".mlir") for n in names if n.endswith(".mlir")]
    assert names == sorted([f"{s}.mlir" for s in stages] + [f"{s}.pipeline" for s in stages])  # and nothing else
    assert [s.split("-", 1)[0] for s in stages] == [f"{i:04d}" for i in range(1, len(stages) + 1)]
    kinds = [s.split("-", 1)[1] for s in stages]
    assert kinds[:3] == ["torch-to-linalg", "nan-semantics-inline", "linalg-fuse"]  # ONNX -> linalg, then the CPU backend
    assert "cpu-bufferize" in kinds and kinds[-2:] == ["cpu-to-loops", "cpu-to-llvm"]
    first = (temps / f"{stages[0]}.mlir").read_text()
    assert first.startswith("// hcc stage: torch-to-linalg\n// pipeline: builtin.module(") and "torch.operator" in first
    bufferize = next(s for s in stages if s.endswith("cpu-bufferize"))
    assert (temps / f"{bufferize}.pipeline").read_text().startswith("builtin.module(eliminate-empty-tensors,one-shot-bufferize{")
    # a saved stage reruns with the command its header names
    rerun = (temps / f"{bufferize}.mlir").read_text().splitlines()[2].removeprefix("// rerun: ")
    replay = subprocess.run(rerun, shell=True, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert "memref" in replay.stdout


def test_an_existing_non_empty_save_temps_folder_is_refused(tmp_path):
    temps = tmp_path / "temps"
    temps.mkdir()
    (temps / "notes.txt").write_text("mine")
    proc = hcc("compile", EXAMPLE, "-o", tmp_path / "bundle", "--input-shape", "image=1x3x32x32", "--save-temps", temps)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"hcc: error: --save-temps {temps}: folder exists and is not empty; hcc writes only "
                                        "into a new or empty folder (choose another, or empty it yourself)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["temps"] and (temps / "notes.txt").read_text() == "mine"


def test_save_temps_folder_checks(tmp_path):
    check_save_temps(tmp_path / "missing", tmp_path / "bundle")
    (tmp_path / "empty").mkdir()
    check_save_temps(tmp_path / "empty", tmp_path / "bundle")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HccError, match="exists and is not a folder"):
        check_save_temps(tmp_path / "file", tmp_path / "bundle")
    for temps, bundle in [(tmp_path / "b", tmp_path / "b"), (tmp_path / "b" / "t", tmp_path / "b"), (tmp_path / "t", tmp_path / "t" / "b")]:
        with pytest.raises(HccError, match="overlaps the bundle folder"):
            check_save_temps(temps, bundle)
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(HccError, match="symbolic link"):
        check_save_temps(tmp_path / "link", tmp_path / "bundle")


def _dilated_lppool(path: Path) -> None:
    """torch-mlir cannot lower an LpPool with dilations and SAME padding, and frontend/lp_pool.py leaves that one to
    it (onnxruntime's output shape differs from ONNX's rule there): the ONNX -> linalg pipeline fails on it. (Earlier
    models used here, a ConvTranspose with auto_pad=SAME_UPPER, a cubic antialiased Resize and a dilated LpPool without
    SAME padding, compile since frontend/conv_transpose.py, frontend/resize_matrix.py and frontend/lp_pool.py.)"""
    node = helper.make_node("LpPool", ["X"], ["Y"], name="LpPool_0", kernel_shape=[2, 2], dilations=[2, 2], p=2, auto_pad="SAME_UPPER")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1, 4, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_a_failing_pass_leaves_a_reproducer_outside_the_removed_staging_folder(tmp_path):
    model, out, tmp = tmp_path / "lppool.onnx", tmp_path / "out", tmp_path / "tmp"
    _dilated_lppool(model)
    out.mkdir()
    tmp.mkdir()
    proc = hcc("compile", model, "-o", out / "bundle", "-q", env={"TMPDIR": str(tmp)})
    assert proc.returncode == 1, "this model no longer fails to lower: choose another whose ONNX -> linalg pipeline fails"
    folder = tmp / "hcc-repro-torch-to-linalg-1"
    lines = proc.stderr.splitlines()
    assert lines[0] == f"hcc: error: lowering ONNX ops to linalg failed (stage torch-to-linalg; reproducer: {folder}):"
    assert lines[1].startswith("  node 'LpPool_0': failed to legalize operation 'torch.operator'")
    assert lines[-1] == f"  hint: rerun it with: {sys.executable} -m hcc.passes.pass_runner {folder}"
    assert list(out.iterdir()) == []  # the staging folder (the worker's TMPDIR) is gone, the reproducer is not
    assert "onnx.LpPool" in (folder / "input.mlir").read_text()
    replay = subprocess.run(lines[-1].removeprefix("  hint: rerun it with: "), shell=True, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 1
    assert "LpPool_0" in replay.stderr and "failed to legalize operation 'torch.operator'" in replay.stderr
