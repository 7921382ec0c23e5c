"""--gpu-precision auto on the GPU backend: each GPU subgraph compiled at its own precision, and the planner's fp16
emulation (planner/subgraph_precision.py) checked against the compiled fp16 kernels run on the host (emulate.py
through the stub libcuda, cuda_stub.py). No GPU is needed; what a real GPU adds (its summation order, its fp16
transcendentals) is not covered here."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import cuda_stub
from helpers import compile_groups

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "planner"))  # graphs.py: two_branches
from graphs import two_branches  # noqa: E402


def _kernel_outputs(bundle_path: Path, stub: Path, emulators: list[str], feeds: dict) -> list[np.ndarray]:
    import hcc.runtime

    with cuda_stub.stub_environment(stub, None, emulators):
        session = hcc.runtime.load(bundle_path)
        outputs = session.run(None, feeds)
        notes = list(session.notes) + [n for d in session.devices.values() for n in getattr(d, "notes", [])]
        del session
    assert not any("fallback" in n for n in notes), notes  # the kernels ran (on the host emulator), not the CPU code
    return outputs


@pytest.mark.parametrize("name", ["mlp", "cnn", "attention"])
def test_the_fp16_emulation_bounds_the_kernels_error_within_its_factor(gpu_bundles, stub_lib, name):
    """The compiled fp16 kernels' error against onnxruntime fp32 is at most KERNEL_ERROR_FACTOR times what the
    planner's emulation of the same subgraph predicts, and not far below it (the emulation is not vacuous)."""
    from hcc.artifacts.golden import random_inputs
    from hcc.frontend.loader import load_model
    from hcc.planner.precision import run_model
    from hcc.planner.subgraph_precision import KERNEL_ERROR_FACTOR, round_subgraphs

    bundle = gpu_bundles.get(name, "fp16")
    loaded = load_model(str(gpu_bundles.root / f"{name}.fp16.onnx"), None)
    emulation = round_subgraphs(loaded.model, {"sg0": ([n.name for n in loaded.model.graph.node], "fp16")})
    for seed in (321, 5, 6):
        feeds = random_inputs(loaded.model, loaded.inputs, seed=seed)
        reference, emulated = run_model(loaded.model, [feeds])[0], run_model(emulation, [feeds])[0]
        kernels = _kernel_outputs(bundle.path, stub_lib, bundle.emulators, feeds)
        for (out, ref), actual in zip(reference.items(), kernels):
            kernel_error = float(np.abs(actual - ref).max())
            emulated_error = float(np.abs(emulated[out] - ref).max())
            assert emulated_error > 0, (name, seed, out)
            assert 0.5 * emulated_error <= kernel_error <= KERNEL_ERROR_FACTOR * emulated_error, (name, seed, out, kernel_error, emulated_error)


GROUPS = [{"id": "sg0", "device": "cpu", "nodes": ["fc0"], "device_index": 0},
          {"id": "sg1", "device": "gpu:sm_90", "nodes": ["mm1", "add1", "relu1"], "device_index": 0},
          {"id": "sg2", "device": "cpu", "nodes": ["tanh"], "device_index": 0},
          {"id": "sg3", "device": "gpu:sm_90", "nodes": ["mm2", "shift"], "device_index": 0},
          {"id": "sg4", "device": "cpu", "nodes": ["unshift"], "device_index": 0}]


def test_auto_compiles_each_gpu_subgraph_at_its_own_precision(gpu_bundles, stub_lib, tmp_path):
    from hcc.artifacts.golden import random_inputs
    from hcc.frontend.loader import load_model
    from hcc.planner.precision import run_model
    from hcc.runtime.inspect import describe

    onnx.save(two_branches(), tmp_path / "m.onnx")
    manifest = compile_groups(tmp_path / "m.onnx", tmp_path / "b", GROUPS, keep_ir=True, gpu_precision="auto", accuracy="max_abs=5e-2")
    assert {s.id: s.precision for s in manifest.subgraphs} == {"sg0": "fp32", "sg1": "fp16", "sg2": "fp32", "sg3": "fp32", "sg4": "fp32"}
    for sg, precision in (("sg1", "fp16"), ("sg3", "fp32")):
        table = json.loads((tmp_path / "b" / "gpu" / sg / "launch.json").read_text())
        ptx = (tmp_path / "b" / table["module"]["ptx"]).read_text()
        assert table["precision"] == precision
        assert bool(re.search(r"\b(add|mul|fma|max)\.(rn\.)?f16\b", ptx)) == (precision == "fp16"), sg
    plan = json.loads((tmp_path / "b" / "plan" / "precision.json").read_text())
    reasons = {c["id"]: c["reason"] for c in plan["gpu"]["choices"]}
    assert "over 0.5 x the budget" in reasons["sg3"] and "within 0.5 x the budget" in reasons["sg1"]
    text = describe(tmp_path / "b")
    assert "precision auto: fp16" in text and "precision auto: fp32" in text and "not measured on a GPU" in text
    # the fp16 kernels, run on the host: within the budget, and the recorded emulated error x the factor bounds them
    loaded = load_model(str(tmp_path / "m.onnx"), None)
    emulators = list(cuda_stub.build_emulators(tmp_path / "b", tmp_path / "emu").values())
    feeds = random_inputs(loaded.model, loaded.inputs, seed=200)  # a held-out input of the choice (driver: seed + 200)
    error = float(np.abs(_kernel_outputs(tmp_path / "b", stub_lib, emulators, feeds)[0] - run_model(loaded.model, [feeds])[0]["y"]).max())
    assert 0 < error <= plan["gpu"]["error_factor"] * max(plan["gpu"]["held_out"]["y"]["max_abs"], plan["gpu"]["calibration"]["y"]["max_abs"])
    assert error < 5e-2
    # the golden tolerance comes from that emulated error (x the factor, x 1.5), not from the fp16 table (3e-2)
    from hcc.runtime.golden_check import check_golden

    golden = json.loads((tmp_path / "b" / "manifest.json").read_text())["golden"]
    assert golden["outputs"]["y"]["atol"] < 1e-2 and "not measured on a GPU" in golden["outputs"]["y"]["note"]
    with cuda_stub.stub_environment(stub_lib, None, emulators):
        report = check_golden(tmp_path / "b")
    assert report.passed and "kernels.sm_90.cubin" in " ".join(report.notes), "\n".join(report.lines())
