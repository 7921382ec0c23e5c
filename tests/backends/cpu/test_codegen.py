"""CPU code generation: the tiled/vectorized schedules (backends/cpu/schedule.py) must match onnxruntime at odd
shapes (non-multiples of the 6x16 register tile, of the 16-lane vectors and of the k panel), must really emit
vector code, and must fall back to plain loops when a schedule cannot apply."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper

from helpers import compile_and_compare

OPSET = 17


def _model(nodes, inits, inputs, outputs, name="m") -> onnx.ModelProto:
    graph = h.make_graph(nodes, name, inputs, outputs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def _weight(rng, name, shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    scale = 1.0 / np.sqrt(fan_in) if scale is None else scale
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def matmul_add_relu(m: int, k: int, n: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [h.make_node("MatMul", ["x", "w"], ["y"]), h.make_node("Add", ["y", "b"], ["z"]), h.make_node("Relu", ["z"], ["out"])]
    return _model(nodes, [_weight(rng, "w", [k, n]), _weight(rng, "b", [n], 0.1)],
                  [h.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])], [h.make_tensor_value_info("out", TensorProto.FLOAT, [m, n])])


def batch_matmul(b: int, m: int, k: int, n: int) -> onnx.ModelProto:
    nodes = [h.make_node("MatMul", ["x", "y"], ["out"])]
    return _model(nodes, [], [h.make_tensor_value_info("x", TensorProto.FLOAT, [b, m, k]), h.make_tensor_value_info("y", TensorProto.FLOAT, [b, k, n])],
                  [h.make_tensor_value_info("out", TensorProto.FLOAT, [b, m, n])])


def mlp(batch: int, sizes: list[int], seed: int = 1) -> onnx.ModelProto:
    """Gemm(transB=1) + Relu layers: the weight transpose must fold into the packed contraction."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (fin, fout) in enumerate(zip(sizes, sizes[1:])):
        inits += [_weight(rng, f"w{i}", [fout, fin]), _weight(rng, f"b{i}", [fout], 0.1)]
        nodes.append(h.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"], transB=1))
        x = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(h.make_node("Relu", [x], [f"a{i}"]))
            x = f"a{i}"
    nodes[-1].output[0] = "out"
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                  [h.make_tensor_value_info("out", TensorProto.FLOAT, [batch, sizes[-1]])])


def small_cnn(c: int, hgt: int, wid: int, c1: int, c2: int, classes: int = 10, seed: int = 2) -> onnx.ModelProto:
    """Conv3x3/Relu/MaxPool twice (the second conv strided), then Flatten + Gemm."""
    rng = np.random.default_rng(seed)
    inits = [_weight(rng, "c1w", [c1, c, 3, 3]), _weight(rng, "c1b", [c1], 0.1), _weight(rng, "c2w", [c2, c1, 3, 3]), _weight(rng, "c2b", [c2], 0.1)]
    nodes = [
        h.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Flatten", ["p2"], ["f"]),
        h.make_node("Gemm", ["f", "fw", "fb"], ["out"], transB=1),
    ]
    flat = c2 * (hgt // 4) * (wid // 4)
    inits += [_weight(rng, "fw", [classes, flat]), _weight(rng, "fb", [classes], 0.1)]
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hgt, wid])],
                  [h.make_tensor_value_info("out", TensorProto.FLOAT, [1, classes])])


def conv_variants(seed: int = 3) -> onnx.ModelProto:
    """A strided conv, a depthwise conv (group = channels) and a 1x1 conv on odd sizes."""
    rng = np.random.default_rng(seed)
    inits = [_weight(rng, "sw", [7, 5, 3, 3]), _weight(rng, "dw", [7, 1, 3, 3]), _weight(rng, "pw", [11, 7, 1, 1]), _weight(rng, "pb", [11], 0.1)]
    nodes = [
        h.make_node("Conv", ["x", "sw"], ["s"], pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Conv", ["s", "dw"], ["d"], pads=[1, 1, 1, 1], group=7),
        h.make_node("Conv", ["d", "pw", "pb"], ["out"]),
    ]
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 21, 35])],
                  [h.make_tensor_value_info("out", TensorProto.FLOAT, [2, 11, 11, 18])])


def _schedule_log(bundle: Path):
    """Re-run the CPU lowering of the bundle's kept linalg IR and return its per-op schedule reports."""
    from hcc.backends.cpu import lowering

    log: list = []
    text = next(bundle.glob("cpu/*/*.linalg.mlir")).read_text()
    lowering.lower_to_llvm_ir(text, log)
    return log


def _llvm_ir(bundle: Path) -> str:
    return next(bundle.glob("cpu/*/lib*.ll")).read_text()


def _assert_vectorized(ll: str) -> None:
    """The generated LLVM IR works on 8/16-lane float vectors and multiply-accumulates with FMA."""
    assert re.search(r"<(8|16) x float>", ll), "no float vectors in the generated LLVM IR"
    assert "fmul contract <" in ll or "llvm.fma" in ll or "llvm.fmuladd" in ll, "no vector multiply-accumulate"


# ------------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("m,k,n", [(37, 53, 29), (64, 96, 48), (5, 300, 17), (1, 40, 24)])
def test_matmul_add_relu_matches_onnxruntime(tmp_path, m, k, n):
    compile_and_compare(matmul_add_relu(m, k, n), tmp_path, name=f"mm_{m}x{k}x{n}")
    log = _schedule_log(tmp_path / f"mm_{m}x{k}x{n}.bundle")
    assert all(r.ok for r in log), log
    assert any(r.kind == "ukernel-gemm" for r in log), log
    assert "call void @hcc_gemm" in _llvm_ir(tmp_path / f"mm_{m}x{k}x{n}.bundle")


def test_matmul_code_is_vectorized(tmp_path):
    compile_and_compare(matmul_add_relu(70, 130, 50), tmp_path, name="mmv")
    bundle = tmp_path / "mmv.bundle"
    assert re.search(r"<(8|16) x float>", _llvm_ir(bundle)), "the elementwise epilogue is not vectorized"
    kinds = {r.kind for r in _schedule_log(bundle) if r.ok}
    assert {"ukernel-gemm", "elementwise"} <= kinds


def test_scripted_schedules_without_micro_kernels(tmp_path, monkeypatch):
    """The transform-dialect schedules (packed GEMM, direct conv) remain for ops the micro-kernels do not take."""
    monkeypatch.setenv("HCC_CPU_KINDS", "contraction,conv,elementwise")
    compile_and_compare(matmul_add_relu(70, 130, 50), tmp_path, name="mms")
    compile_and_compare(small_cnn(3, 20, 22, 13, 8), tmp_path, name="cnns")
    compile_and_compare(mlp(1, [64, 40, 10]), tmp_path, name="gemv")
    _assert_vectorized(_llvm_ir(tmp_path / "mms.bundle"))
    assert any(r.kind == "contraction" and r.ok for r in _schedule_log(tmp_path / "mms.bundle"))
    assert sum(r.kind == "conv" and r.ok for r in _schedule_log(tmp_path / "cnns.bundle")) >= 2
    log = _schedule_log(tmp_path / "gemv.bundle")
    assert any(r.kind == "contraction" and r.ok and "dot products" in r.note for r in log), log


def test_batch_matmul(tmp_path):
    compile_and_compare(batch_matmul(3, 13, 21, 19), tmp_path, name="bmm")
    assert any(r.kind == "ukernel-gemm" and r.ok for r in _schedule_log(tmp_path / "bmm.bundle"))


def test_mlp_gemm_transposed_weights(tmp_path):
    compile_and_compare(mlp(7, [100, 50, 33, 10]), tmp_path, name="mlp")
    bundle = tmp_path / "mlp.bundle"
    log = _schedule_log(bundle)
    assert sum(r.kind == "ukernel-gemm" and r.ok for r in log) >= 2, log


def test_gemv(tmp_path):
    """One row times a transposed weight (a classifier's Gemm): the micro-kernel's dot-product path."""
    compile_and_compare(mlp(1, [64, 40, 10]), tmp_path, name="gemv")
    assert any(r.kind == "ukernel-gemm" and r.ok for r in _schedule_log(tmp_path / "gemv.bundle"))


def test_small_cnn(tmp_path):
    # 22 then 11 columns: not multiples of 16; 13 filters: not a multiple of the 6-filter register tile.
    compile_and_compare(small_cnn(3, 20, 22, 13, 8), tmp_path, name="cnn")
    bundle = tmp_path / "cnn.bundle"
    log = _schedule_log(bundle)
    assert sum(r.kind == "ukernel-conv" and r.ok for r in log) >= 2, log
    assert "call void @hcc_conv2d" in _llvm_ir(bundle)


def test_conv_variants(tmp_path):
    compile_and_compare(conv_variants(), tmp_path, name="convs")


def test_schedule_failure_falls_back_to_loops(tmp_path, monkeypatch):
    """A schedule whose script does not apply leaves its op to plain loops; the result stays correct."""
    from hcc.backends.cpu import schedule

    real_plan = schedule.plan

    def broken(op):
        plan = real_plan(op)
        if plan.kind == "contraction":
            plan.script = plan.script.replace("transform.structured.pack %op", "transform.structured.pack %nonexistent")
        return plan

    from hcc.backends.cpu import lowering

    linalg = _linalg_text(tmp_path, matmul_add_relu(20, 30, 40))
    monkeypatch.setattr(schedule, "plan", broken)
    monkeypatch.setenv("HCC_CPU_KINDS", "contraction,elementwise")  # the scripted GEMM, not the micro-kernel
    log: list = []
    ll = lowering.lower_to_llvm_ir(linalg, log)
    assert "define" in ll
    assert any(r.kind == "contraction" and not r.ok for r in log), log


def test_loops_only_pipeline(tmp_path, monkeypatch):
    """HCC_CPU_SCHEDULE=loops gives the plain-loop code (the baseline the benchmarks compare against)."""
    from hcc.backends.cpu import lowering

    monkeypatch.setenv("HCC_CPU_SCHEDULE", "loops")
    log: list = []
    ll = lowering.lower_to_llvm_ir(_linalg_text(tmp_path, matmul_add_relu(8, 8, 8)), log)
    assert "define" in ll and not log


def _linalg_text(tmp_path: Path, model: onnx.ModelProto) -> str:
    """Compile `model` once and return the linalg IR the CPU backend received."""
    import hcc

    path = tmp_path / "lin.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "lin.bundle")
    return next((tmp_path / "lin.bundle").glob("cpu/*/*.linalg.mlir")).read_text()
