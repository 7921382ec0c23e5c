"""Shared-memory tiling of matmul-like kernels (hcc.backends.gpu.shared_tiling.plan_shared), without a GPU.

* the tiled path is taken where the heuristic says it pays (MLP at 64x64x64, the attention block at seq 32 / width
  64: Q/K/V projections and scores), and not for sizes that are not multiples of the tile or too small;
* the PTX of a tiled kernel stages its operands in `.shared` memory with `bar.sync`, the launch table records the
  static shared memory that ptxas reports, and launches pass no dynamic shared memory;
* the emulation runs such kernels with one POSIX thread per GPU thread and real barriers (the outputs are compared
  with onnxruntime in test_gpu_backend.py); as a negative control, running the same threads one after another
  without barriers reads unstaged (NaN-poisoned) shared memory;
* convolutions stage only their weight slices [cout tile, c step, kh, kw] (the image is read from global memory),
  and their emulated outputs match onnxruntime;
* HCC_GPU_SHARED=0 restores the plain kernels.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import cuda_stub  # tests/backends/gpu/cuda_stub.py (conftest puts this folder on sys.path)
from hcc.backends.gpu import lowering, shared_tiling
from helpers import compile_groups


def _table(path: Path) -> dict:
    manifest = json.loads((path / "manifest.json").read_text())
    return json.loads((path / manifest["subgraphs"][0]["artifacts"][0]["file"]).read_text())


def _entry_bodies(ptx: str) -> dict[str, str]:
    parts = re.split(r"\.visible \.entry (\w+)\(", ptx)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _tiled(table: dict) -> dict[str, dict]:
    """{kernel: launch step} of the kernels with workgroup (shared) buffers."""
    return {s["kernel"]: s for s in table["steps"] if table["kernels"][s["kernel"]]["static_shared_bytes"]}


# which ONNX nodes' contractions take the tiled path
EXPECTED = {
    "mlp_tiled": ["fc1/Gemm", "fc1/Relu", "fc2/MatMul", "logits"],  # fc1's bias + ReLU fused into the tiled kernel
    # the context MatMul has the softmax division fused in (three inputs; the row sums are not staged)
    "attention_tiled": ["attn/query/MatMul", "attn/key/MatMul", "attn/value/MatMul", "attn/scores", "attn/context"],
    # a Relu fused into a batched MatMul (2 x 3 x 32 x 32: heads on blockIdx.z, batches in turn), a LayerNorm into a
    # projection
    "fused_matmuls": ["batched/MatMul", "batched", "proj/MatMul", "projected"],
    # convolutions (bias + ReLU fused): only the weight slices are staged (conv_loops)
    "conv_tiled": ["conv", "relu", "deep/conv", "deep", "strided/conv", "strided"],
}


@pytest.mark.parametrize("name", ["mlp_tiled", "attention_tiled", "attention_tiled:fp16", "fused_matmuls", "conv_tiled"])
def test_tiled_path_is_taken(gpu_bundles, name):
    model, _, precision = name.partition(":")
    bundle = gpu_bundles.get(model, precision or "fp32", emulate=False)
    table = _table(bundle.path)
    ptx = (bundle.path / table["module"]["ptx"]).read_text()
    bodies = _entry_bodies(ptx)
    assert set(bodies) == set(table["kernels"])
    tiled = _tiled(table)
    sources = " ".join(step["source"] for step in tiled.values())
    expected = EXPECTED[model]
    for node in expected:
        assert f'"{node}"' in sources, (node, sources)
    for kernel, step in tiled.items():
        info = table["kernels"][kernel]
        assert step["block"] == [shared_tiling.SHARED_TN, shared_tiling.SHARED_TM, 1]
        assert step["shared_bytes"] == 0, "static shared memory needs no dynamic launch parameter"
        assert info["static_shared_bytes"] <= shared_tiling.SHARED_MAX_BYTES
        for arch in ("sm_80", "sm_90"):
            res = info["resources"][arch]
            assert res["shared_bytes"] == info["static_shared_bytes"] and res["barriers"] >= 1, (arch, kernel, res)
            assert res["spill_stores"] == 0 and res["spill_loads"] == 0
        body = bodies[kernel]
        assert "bar.sync" in body and "st.shared" in body and "ld.shared" in body, kernel
        assert re.search(rf"\.shared \.align \d+ \.b8 \w*{kernel}_\w*\[\d+\]", ptx), kernel
    for kernel, body in bodies.items():
        if kernel not in tiled:
            assert "bar.sync" not in body and ".shared" not in body, kernel
    if model == "fused_matmuls":
        assert [2, 2, 3] in [step["grid"] for step in tiled.values()]


@pytest.mark.parametrize("name", ["mlp", "attention", "odd_matmul", "cnn"])
def test_small_or_odd_sizes_keep_the_plain_kernels(gpu_bundles, name):
    """M or N below 16, K below 32, or sizes that are not tile multiples (37x71 @ 71x53): no shared memory, no
    barriers (their numerics are checked against onnxruntime in test_gpu_backend.py)."""
    bundle = gpu_bundles.get(name, emulate=False)
    table = _table(bundle.path)
    assert not _tiled(table)
    ptx = (bundle.path / table["module"]["ptx"]).read_text()
    assert "bar.sync" not in ptx and ".shared" not in ptx


def test_workgroup_bytes_match_the_kernel_ir(gpu_bundles):
    bundle = gpu_bundles.get("attention_tiled", emulate=False)
    table = _table(bundle.path)
    kernels_text = (bundle.path / "gpu" / "sg0" / "kernels.mlir").read_text()
    sizes = shared_tiling.workgroup_bytes(kernels_text)
    assert sizes == {k: v["static_shared_bytes"] for k, v in table["kernels"].items()}
    # Q/K/V share kernels when their output spaces agree: one pair of workgroup buffers per promoted contraction
    assert max(sizes.values()) >= 2 * (16 * 32 + 32 * 16) * 4


def _run(bundle_path: Path, emulators: list[str], stub: Path, log: Path, feeds: dict) -> list:
    import hcc.runtime

    with cuda_stub.stub_environment(stub, log, emulators):
        session = hcc.runtime.load(bundle_path)
        outputs = session.run(None, feeds)
        del session
    return outputs


def test_serial_emulation_without_barriers_is_wrong(gpu_bundles, stub_lib, tmp_path):
    """Negative control for the threaded emulation: the tiled kernels really share data through workgroup memory,
    so running their threads one after another (barriers ignored) reads unstaged, NaN-poisoned shared memory."""
    bundle = gpu_bundles.get("mlp_tiled", emulate=False)
    emulators = list(cuda_stub.build_emulators(bundle.path, tmp_path / "serial", serial=True).values())
    (out,) = _run(bundle.path, emulators, stub_lib, tmp_path / "log.txt", bundle.feeds)
    assert np.isnan(out).any()


def test_off_switch_restores_the_plain_kernels(gpu_bundles, stub_lib, tmp_path, monkeypatch):

    bundle = gpu_bundles.get("mlp_tiled", emulate=False)
    path = tmp_path / "mlp_tiled.onnx"
    import onnx

    onnx.save(bundle.model, path)
    out_dir = tmp_path / "plain.bundle"
    monkeypatch.setenv("HCC_GPU_SHARED", "0")
    compile_groups(path, out_dir, [{"id": "sg0", "device": "gpu:sm_90", "nodes": [n.name for n in bundle.model.graph.node], "device_index": 0}],
                   keep_ir=True)
    monkeypatch.delenv("HCC_GPU_SHARED")
    table = _table(out_dir)
    assert not _tiled(table)
    ptx = (out_dir / table["module"]["ptx"]).read_text()
    assert "bar.sync" not in ptx and ".shared" not in ptx
    # the same kernels as lowering them with shared=False (the plain one-thread-per-output plans)
    linalg_text = (out_dir / "gpu" / "sg0" / "sg0.linalg.mlir").read_text()
    plain = lowering.lower_to_kernels(linalg_text, "sg0", shared=False)
    assert [s["block"] for s in table["steps"]] == [list(p.block_dims) for p in plain.plans]
    assert [s["grid"] for s in table["steps"]] == [list(p.grid) for p in plain.plans]
    tiled = lowering.lower_to_kernels(linalg_text, "sg0", shared=True)
    assert any(p.shared for p in tiled.plans) and not any(p.shared for p in plain.plans)
    emulators = list(cuda_stub.build_emulators(out_dir, tmp_path / "emu").values())
    (out,) = _run(out_dir, emulators, stub_lib, tmp_path / "log.txt", bundle.feeds)
    np.testing.assert_allclose(out, bundle.expected["logits"], rtol=1e-3, atol=1e-4)


def _matmul_text(m: int, k: int, n: int, batch: int | None = None) -> str:
    lead = f"{batch}x" if batch else ""
    op = "linalg.batch_matmul" if batch else "linalg.matmul"
    a, b, c = f"tensor<{lead}{m}x{k}xf32>", f"tensor<{lead}{k}x{n}xf32>", f"tensor<{lead}{m}x{n}xf32>"
    return f"""
func.func @sg0(%a: {a}, %b: {b}) -> {c} {{
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : {c}
  %init = linalg.fill ins(%zero : f32) outs(%empty : {c}) -> {c}
  %r = {op} ins(%a, %b : {a}, {b}) outs(%init : {c}) -> {c}
  return %r : {c}
}}"""


@pytest.mark.parametrize("m, k, n, batch, tiled", [
    (64, 64, 64, None, True), (32, 32, 16, None, True), (48, 48, 80, 3, True),  # batched: blockIdx.z
    (16, 32, 32, 64, True),  # the batch (64) is the largest dimension, but y must be M for B's tile to be reused
    (64, 16, 64, None, False),  # K below 32
    (8, 64, 64, None, False),  # M below 16
    (37, 71, 53, None, False), (64, 72, 64, None, False), (64, 64, 40, None, False),  # not tile multiples
])
def test_heuristic(m, k, n, batch, tiled):
    lowered = lowering.lower_to_kernels(_matmul_text(m, k, n, batch), "sg0")
    shared = [p for p in lowered.plans if p.shared]
    assert bool(shared) == tiled
    assert ("gpu.barrier" in lowered.kernels_text) == tiled and ("workgroup(" in lowered.kernels_text) == tiled
    if tiled:
        (plan,) = shared
        assert plan.block_dims == (16, 16, 1)
        assert plan.grid == (n // 16, m // 16, batch or 1)


# -- convolutions: only the weight is staged ---------------------------------------------------------------------------
def test_conv_stages_only_the_weight_and_matches_onnxruntime(gpu_bundles, stub_lib, tmp_path):
    """16 -> 32 channels (one c step of 16) and 64 -> 32 channels (two c steps of 32), 3x3, pad 1, on 16x16 pixels:
    blocks of 16 output channels (y) x 16 pixels of a row (x), the rows on blockIdx.z, weight slices [16, c step, 3,
    3]; 16 -> 8 channels with stride 2: blocks of 16 rows (y) x 16 pixels (x), one output channel per block
    (blockIdx.z), weight slices [1, 16, 3, 3]. One workgroup buffer per conv kernel (the weight slice; the image is
    not staged), bias + ReLU fused; the emulated outputs match onnxruntime."""
    bundle = gpu_bundles.get("conv_tiled")
    table = _table(bundle.path)
    kernels_text = (bundle.path / "gpu" / "sg0" / "kernels.mlir").read_text()
    tiled = _tiled(table)
    buffers = {}
    for line in kernels_text.splitlines():
        match = re.match(r"^\s*gpu\.func @(\w+)\(.*\) workgroup\((.*)\) kernel", line)
        if match:
            buffers[match.group(1)] = re.findall(r"memref<([\dx]+)xf32, #gpu\.address_space<workgroup>>", match.group(2))
    assert set(buffers) == set(tiled)
    staged = {tiled[k]["source"].split('"')[1]: (v, tiled[k]["grid"]) for k, v in buffers.items()}
    assert staged == {"conv": (["16x16x3x3"], [1, 2, 16]), "deep/conv": (["16x32x3x3"], [1, 2, 16]),
                      "strided/conv": (["1x16x3x3"], [1, 1, 8])}
    for kernel, step in tiled.items():
        assert step["block"] == [16, 16, 1]
        assert table["kernels"][kernel]["static_shared_bytes"] == 4 * math.prod(int(d) for d in buffers[kernel][0].split("x"))
    outputs = _run(bundle.path, bundle.emulators, stub_lib, tmp_path / "log.txt", bundle.feeds)
    for out, name in zip(outputs, ["relu", "deep", "strided"]):
        np.testing.assert_allclose(out, bundle.expected[name], rtol=1e-3, atol=1e-4, err_msg=name)


def _conv_text(c: int, cout: int, side: int, k: int, stride: int = 1) -> str:
    """A bias-free convolution on an already padded image (linalg.conv_2d_nchw_fchw, generalized by the lowering)."""
    out = (side - k) // stride + 1
    x, w, y = f"tensor<1x{c}x{side}x{side}xf32>", f"tensor<{cout}x{c}x{k}x{k}xf32>", f"tensor<1x{cout}x{out}x{out}xf32>"
    return f"""
func.func @sg0(%x: {x}, %w: {w}) -> {y} {{
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : {y}
  %init = linalg.fill ins(%zero : f32) outs(%empty : {y}) -> {y}
  %r = linalg.conv_2d_nchw_fchw {{dilations = dense<1> : tensor<2xi64>, strides = dense<{stride}> : tensor<2xi64>}}
       ins(%x, %w : {x}, {w}) outs(%init : {y}) -> {y}
  return %r : {y}
}}"""


@pytest.mark.parametrize("c, cout, side, k, stride, tiled", [
    (16, 32, 18, 3, 1, True), (64, 32, 18, 3, 1, True), (32, 16, 34, 3, 1, True),  # 32 x 32 pixels: rows on y
    (16, 32, 33, 3, 2, True),  # stride 2
    (32, 32, 16, 1, 1, True),  # 1x1
    (8, 32, 18, 3, 1, False),  # 8 input channels: no c step
    (16, 32, 14, 3, 1, False),  # 12 x 12 outputs: not a tile multiple
    (16, 8, 18, 3, 1, True),  # 8 output channels: rows on y, one output channel per block (blockIdx.z)
    (32, 32, 20, 5, 1, False),  # a 5 x 5 window
    (16, 32, 8, 3, 1, False),  # 6 x 6 outputs
])
def test_conv_heuristic(c, cout, side, k, stride, tiled):
    text = _conv_text(c, cout, side, k, stride)
    lowered = lowering.lower_to_kernels(text, "sg0")
    shared = [p for p in lowered.plans if p.shared]
    assert bool(shared) == tiled
    assert ("gpu.barrier" in lowered.kernels_text) == tiled and ("workgroup(" in lowered.kernels_text) == tiled
    # the off-switch: the plain kernels
    plain = lowering.lower_to_kernels(text, "sg0", shared=False)
    assert not any(p.shared for p in plain.plans)
    assert "gpu.barrier" not in plain.kernels_text and "workgroup(" not in plain.kernels_text
