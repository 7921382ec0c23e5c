"""tools/gpu_check.py, run against the stub libcuda + kernel emulation (a smoke test of the tool; real numbers need a
GPU), and against a host without a GPU (the CPU-fallback verdict)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx

TOOL = Path(__file__).resolve().parents[3] / "tools" / "gpu_check.py"


def _run_tool(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_gpu_check_passes_on_the_stub(gpu_bundles, tmp_path):
    bundle = gpu_bundles.get("cnn")
    model = tmp_path / "cnn.onnx"
    onnx.save(bundle.model, model)
    out = tmp_path / "report" / "check"
    proc = _run_tool([str(bundle.path), "--model", str(model), "--repeat", "3", "--warmup", "1", "--out", str(out)],
                     {"HCC_LIBCUDA": str(gpu_bundles.stub), "HCC_STUB_EMULATOR": ":".join(bundle.emulators), "HCC_STUB_CC": "9.0"}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["verdict"] == "PASS"
    assert all(r["ok"] for r in report["correctness"])
    names = list(report["timings"])
    assert any(n.startswith("hcc end to end") for n in names)
    assert any("synchronize + perf_counter" in n for n in names) and any("CUDA events" in n for n in names)
    assert any(n.startswith("onnxruntime CPU") for n in names)
    assert report["gpu_subgraphs"][0]["kernels"] > 0
    assert "| logits |" in Path(f"{out}.md").read_text()


def test_gpu_check_reports_cpu_fallback(gpu_bundles, tmp_path):
    bundle = gpu_bundles.get("mlp", emulate=False)
    out = tmp_path / "check"
    proc = _run_tool([str(bundle.path), "--repeat", "2", "--warmup", "0", "--out", str(out)], {"HCC_LIBCUDA": "/nonexistent/libcuda.so.1"}, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["verdict"].startswith("CPU FALLBACK")
    assert any("unavailable" in n for n in report["notes"])
    assert all(r["ok"] for r in report["correctness"]), "the fallback still agrees with the golden outputs"
