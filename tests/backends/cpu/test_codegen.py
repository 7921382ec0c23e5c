"""CPU code generation: the tiled/vectorized schedules (backends/cpu/schedule.py) must match onnxruntime at odd
shapes (non-multiples of the 6x16 register tile, of the 16-lane vectors and of the k panel), must really emit
vector code, and must fall back to plain loops when a schedule cannot apply."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

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
    return _model(nodes, [],
                  [h.make_tensor_value_info("x", TensorProto.FLOAT, [b, m, k]), h.make_tensor_value_info("y", TensorProto.FLOAT, [b, k, n])],
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
    log = [r for r in _schedule_log(bundle) if r.ok]
    # the bias Add and the Relu run inside the kernel call: no separate pass over the output
    assert any(r.kind == "ukernel-gemm" and "activation" in r.note for r in log), log
    assert "call void @hcc_gemm" in _llvm_ir(bundle)


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
    log = _schedule_log(tmp_path / "convs.bundle")
    assert not [r for r in log if r.kind == "module"], log  # a kernel-call bug must not hide behind the loop fallback
    assert sorted(r.note.split()[0] for r in log if r.kind == "ukernel-conv") == ["hcc_conv2d", "hcc_conv2d", "hcc_dwconv2d"], log


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


# ------------------------------------------------------------------------- non-GEMM ops: reductions, broadcasts, gathers

def _vi(name: str, shape: list[int], elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, elem, shape)


def _special_values(x: np.ndarray) -> np.ndarray:
    """NaN, +-inf and a row of -inf among the data: reductions must give onnxruntime's NaN positions."""
    flat = x.reshape(-1, x.shape[-1])
    flat[0, 3] = np.nan
    flat[1, -1] = -np.inf
    flat[2, 0] = np.inf
    flat[-1, :] = -np.inf
    return x


def _kinds(bundle: Path, node: str) -> list[str]:
    """Schedule kinds of the linalg ops that came from ONNX node `node` (failed schedules as 'failed')."""
    return [r.kind if r.ok else "failed" for r in _schedule_log(bundle) if r.node == node]


def _assert_scheduled(bundle: Path, nodes: dict[str, str]) -> None:
    """Every op of each node got a vector schedule, and at least one of them the expected kind."""
    for node, kind in nodes.items():
        kinds = _kinds(bundle, node)
        assert kinds and "loops" not in kinds and "failed" not in kinds and kind in kinds, (node, kinds)


def softmax_norms(rows: int, length: int) -> onnx.ModelProto:
    """Softmax, LayerNormalization, ReduceMean over the last axis and ReduceSum over an outer axis."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal(length).astype(np.float32), "g"),
             numpy_helper.from_array(rng.standard_normal(length).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([-1], np.int64), "last"), numpy_helper.from_array(np.array([1], np.int64), "mid")]
    nodes = [h.make_node("Softmax", ["x"], ["sm"], axis=-1, name="softmax"),
             h.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1, epsilon=1e-5, name="layernorm"),
             h.make_node("ReduceMean", ["ln", "last"], ["mean"], keepdims=1, name="mean"),  # not x: CSE would merge it
             h.make_node("ReduceSum", ["x", "mid"], ["sum"], keepdims=0, name="sum")]
    shape = [2, rows, length]
    outs = [_vi("sm", shape), _vi("ln", shape), _vi("mean", [2, rows, 1]), _vi("sum", [2, length])]
    graph = h.make_graph(nodes, "norms", [_vi("x", shape)], outs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("length", [45, 128])  # 32 + a 13-element tail; 8 vectors of 16
def test_softmax_layernorm_reductions(tmp_path, length):
    """LayerNorm's mean and variance and ReduceMean are vector reductions along the row (partial results in a
    vector); ReduceSum over an outer axis is a vector of outputs; Softmax is one kernel call (softmax_calls.py).
    NaN/inf as onnxruntime."""
    x = np.random.default_rng(6).standard_normal([2, 5, length]).astype(np.float32) * 4
    name = f"norms{length}"
    compile_and_compare(softmax_norms(5, length), tmp_path, name=name, feeds={"x": _special_values(x)})
    _assert_scheduled(tmp_path / f"{name}.bundle",
                      {"softmax": "ukernel-softmax", "layernorm": "reduction", "mean": "reduction", "sum": "reduction"})


def test_reductions_over_many_short_rows(tmp_path):
    """An average pooling over a whole 25 x 5 map (DS-CNN's last pooling): rows of 5 kept as 5 partial results
    across the 25 rows, not one chain of adds through 125 elements (DS-CNN's pooling 4 -> 1 us); a ReduceMax over the
    same map beside it (its NaN rule's own folds, passes/nan_semantics.py). NaN/inf as onnxruntime."""
    nodes = [h.make_node("AveragePool", ["x"], ["avg"], kernel_shape=[25, 5], name="avgpool"),
             h.make_node("ReduceMax", ["x"], ["max"], axes=[2, 3], keepdims=1, name="rmax")]
    model = _model(nodes, [], [_vi("x", [1, 8, 25, 5])], [_vi("avg", [1, 8, 1, 1]), _vi("max", [1, 8, 1, 1])])
    x = np.random.default_rng(4).standard_normal([1, 8, 25, 5]).astype(np.float32)
    x[0, 1, 3, 2], x[0, 2, 24, 4], x[0, 3, 0, 0], x[0, 4] = np.nan, np.inf, -np.inf, -np.inf
    compile_and_compare(model, tmp_path, name="short_rows", feeds={"x": x})
    notes = [r.note for r in _schedule_log(tmp_path / "short_rows.bundle") if r.kind == "reduction" and r.node == "avgpool"]
    assert notes == ["5 partial results per output over 2 reduction dims, combined once"], notes


def test_short_rows_reduction_across_threads(tmp_path):
    """EfficientNet's squeeze-excitation pooling, GlobalAveragePool over 672 maps of 14 x 14: big enough to split its
    channels across threads and short-row partial results at once (the two transform handles once clashed, and the
    op fell to scalar loops: 0.10 ms where onnxruntime takes 0.03)."""
    model = _model([h.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")], [], [_vi("x", [1, 672, 14, 14])],
                   [_vi("y", [1, 672, 1, 1])])
    x = np.random.default_rng(8).standard_normal([1, 672, 14, 14]).astype(np.float32)
    x[0, 5, 3, 3], x[0, 9, 0, 13] = np.nan, np.inf
    compile_and_compare(model, tmp_path, name="gap672", feeds={"x": x})
    notes = [r.note for r in _schedule_log(tmp_path / "gap672.bundle") if r.kind == "reduction" and r.node == "gap"]
    assert notes == ["14 partial results per output over 2 reduction dims, combined once, dim 1 across threads"], notes


@pytest.mark.parametrize("width", [32, 21])
def test_elementwise_vectors_skip_trailing_unit_dims(tmp_path, width):
    """ConvNeXt's residual adds arrive as [1, C, H, W, 1] (torch-mlir's channels-last MatMul, transposed back): the
    vectors run along W, not along the trailing 1 (scalar loops, 7x onnxruntime); a W that is no multiple of 16
    gets a masked tail. NaN/inf as onnxruntime."""
    nodes = [h.make_node("Add", ["x", "r"], ["s"], name="residual"), h.make_node("Relu", ["s"], ["y"], name="relu")]
    shape = [1, 24, 14, width, 1]
    model = _model(nodes, [], [_vi("x", shape), _vi("r", shape)], [_vi("y", shape)])
    rng = np.random.default_rng(10)
    feeds = {"x": rng.standard_normal(shape).astype(np.float32), "r": rng.standard_normal(shape).astype(np.float32)}
    feeds["x"][0, 1, 2, 3, 0], feeds["r"][0, 4, 5, 6, 0] = np.nan, -np.inf
    compile_and_compare(model, tmp_path, name="unit", feeds=feeds)
    notes = [r.note for r in _schedule_log(tmp_path / "unit.bundle") if r.kind == "elementwise"]  # the add and relu, fused
    assert notes and all(n.startswith("vector <16> over the innermost dim") for n in notes), notes


def masked_attention(heads: int, seq: int) -> onnx.ModelProto:
    """BERT's attention probabilities: Q K^T / 8 + an additive [B, 1, 1, S] mask, Softmax."""
    nodes = [h.make_node("MatMul", ["q", "k"], ["s"], name="scores"),
             h.make_node("Div", ["s", "scale"], ["d"], name="scale_div"),
             h.make_node("Add", ["d", "mask"], ["a"], name="add_mask"),
             h.make_node("Softmax", ["a"], ["out"], axis=-1, name="softmax")]
    inits = [numpy_helper.from_array(np.array(8.0, np.float32), "scale")]
    return _model(nodes, inits, [_vi("q", [1, heads, seq, 16]), _vi("k", [1, heads, 16, seq]), _vi("mask", [1, 1, 1, seq])],
                  [_vi("out", [1, heads, seq, seq])])


def test_masked_attention_softmax(tmp_path):
    """The mask is read through `(d0, 0, 0, d3)`: a broadcast, vectorized; the softmax after it is one kernel call."""
    rng = np.random.default_rng(7)
    seq = 21
    mask = np.zeros([1, 1, 1, seq], np.float32)
    mask[..., 15:] = np.finfo(np.float32).min
    mask[..., 3] = -np.inf
    feeds = {"q": rng.standard_normal([1, 2, seq, 16]).astype(np.float32),
             "k": rng.standard_normal([1, 2, 16, seq]).astype(np.float32), "mask": mask}
    feeds["q"][0, 1, 4, 2] = np.nan
    compile_and_compare(masked_attention(2, seq), tmp_path, name="attn", feeds=feeds)
    _assert_scheduled(tmp_path / "attn.bundle", {"softmax": "ukernel-softmax"})
    assert {"elementwise", "reduction"} & set(_kinds(tmp_path / "attn.bundle", "add_mask")), "mask add not vectorized"


@pytest.mark.parametrize("width", [20, 32])
def test_gather_add(tmp_path, width):
    """Embedding lookup + position add, negative ids included, correct either way. Rows that are whole vectors (32)
    are a row gather: vectorized (`vectorize_nd_extract`, reads along the row); 20-wide rows would need a masked
    tail, where MLIR's `vectorize_nd_extract` has given wrong values (Pad(reflect)), so they stay scalar loops."""
    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array(rng.standard_normal([50, width]).astype(np.float32), "table"),
             numpy_helper.from_array(rng.standard_normal([1, 9, width]).astype(np.float32), "pos")]
    nodes = [h.make_node("Gather", ["table", "ids"], ["e"], name="gather"), h.make_node("Add", ["e", "pos"], ["out"], name="add")]
    model = _model(nodes, inits, [_vi("ids", [1, 9], TensorProto.INT64)], [_vi("out", [1, 9, width])])
    ids = np.array([[0, 49, 7, -1, 3, 3, -50, 12, 25]], np.int64)  # negative ids count from the end
    name = f"embed{width}"
    compile_and_compare(model, tmp_path, name=name, feeds={"ids": ids})
    log = [r for r in _schedule_log(tmp_path / f"{name}.bundle") if "gather" in r.note]  # the Add fuses into it
    assert log and all(r.ok for r in log), log
    if width % 16 == 0:
        assert [r.kind for r in log] == ["elementwise"] and "row gather" in log[0].note, log
    else:
        assert [r.kind for r in log] == ["loops"] and "gather" in log[0].note, log


def test_gather_of_an_indices_column(tmp_path):
    """A recommender's lookups: each table reads one column of a [batch, features] ids input (torch's Embedding on
    ids[:, k]); the fusion pass moves the ids read into the gather's body as a second extract, one value per row, and
    the gather stays a vectorized row gather (it was scalar loops: the recommender 1.11x faster)."""
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(rng.standard_normal([40, 32]).astype(np.float32), f"table{k}") for k in range(2)]
    inits += [numpy_helper.from_array(np.array(k, np.int64), f"col{k}") for k in range(2)]
    nodes = []
    for k in range(2):
        nodes += [h.make_node("Gather", ["ids", f"col{k}"], [f"i{k}"], axis=1, name=f"column{k}"),
                  h.make_node("Gather", [f"table{k}", f"i{k}"], [f"e{k}"], name=f"lookup{k}")]
    nodes.append(h.make_node("Concat", ["e0", "e1"], ["out"], axis=1, name="concat"))
    model = _model(nodes, inits, [_vi("ids", [6, 3], TensorProto.INT64)], [_vi("out", [6, 64])])
    ids = rng.integers(-40, 40, [6, 3]).astype(np.int64)
    compile_and_compare(model, tmp_path, name="columns", feeds={"ids": ids})
    log = [r for r in _schedule_log(tmp_path / "columns.bundle") if r.node.startswith("lookup")]
    assert len(log) == 2 and all(r.kind == "elementwise" and "row gather" in r.note for r in log), log


def test_row_gather_of_a_slice_stays_scalar(tmp_path):
    """Rows gathered from a column slice of an intermediate: MLIR's vector gathers linearize offsets from the sliced
    tensor's shape, not its buffer's strides (this read the wrong elements, off by up to 4.5), so a gather from
    anything but a function argument stays on scalar loops, and matches onnxruntime."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal([6, 48]).astype(np.float32), "t")]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", [16]), ("e", [32]), ("ax", [1]))]
    nodes = [h.make_node("Add", ["t", "x"], ["u"], name="add"), h.make_node("Slice", ["u", "s", "e", "ax"], ["v"], name="slice"),
             h.make_node("Gather", ["v", "ids"], ["y"], axis=0, name="gather")]
    model = _model(nodes, inits, [_vi("x", [6, 48]), _vi("ids", [5], TensorProto.INT64)], [_vi("y", [5, 16])])
    feeds = {"x": rng.standard_normal([6, 48]).astype(np.float32), "ids": np.array([5, 0, 3, 3, 1], np.int64)}
    compile_and_compare(model, tmp_path, name="sliced", feeds=feeds)
    log = [r for r in _schedule_log(tmp_path / "sliced.bundle") if r.node == "gather"]
    assert [r.kind for r in log] == ["loops"], log


def test_computed_index_gathers(tmp_path):
    """A bilinear Resize of an input reads by indices computed from float coordinates: vector gathers (it was scalar
    loops, 2.4x slower on a 64x48x48 map). Pad(reflect) reads mirrored runs (`c - i`) of slices, which the pinned
    MLIR vectorizes as forward contiguous loads with the slice's strides (wrong values): it stays on scalar loops.
    Both match onnxruntime."""
    rng = np.random.default_rng(10)
    scales = numpy_helper.from_array(np.array([1, 1, 2, 1.5], np.float32), "scales")  # 1.5: not restated as phases
    pads = numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "pads")
    nodes = [h.make_node("Resize", ["x", "", "scales"], ["up"], mode="linear", name="resize"),
             h.make_node("Pad", ["x", "pads"], ["mirror"], mode="reflect", name="pad")]
    model = _model(nodes, [scales, pads], [_vi("x", [1, 3, 8, 8])], [_vi("up", [1, 3, 16, 12]), _vi("mirror", [1, 3, 11, 11])])
    compile_and_compare(model, tmp_path, name="gathers", feeds={"x": rng.standard_normal([1, 3, 8, 8]).astype(np.float32)})
    log = _schedule_log(tmp_path / "gathers.bundle")
    resize = [r for r in log if r.node == "resize"]
    assert [r.kind for r in resize] == ["elementwise"] and "vector gathers" in resize[0].note, log
    mirrored = [r for r in log if r.node == "pad" and r.kind == "loops"]
    assert mirrored and all("misread" in r.note for r in mirrored), log


def test_scalar_ops_keep_the_function_vectorized(tmp_path):
    """A rank-0 op (a full ReduceSum compared with 0, an If's condition) has no loop to vectorize: it stays scalar
    and the rest of the function keeps its schedules (it used to fail the whole function's vector code generation
    with an IndexError, which then fell back to plain loops)."""
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("ReduceSum", ["r"], ["s"], keepdims=0, name="sum"),
             h.make_node("Greater", ["s", "zero"], ["y"], name="positive")]
    model = _model(nodes, [numpy_helper.from_array(np.array(0.5, np.float32), "zero")], [_vi("x", [4, 32])],
                   [_vi("y", [], TensorProto.BOOL), _vi("r", [4, 32])])
    x = np.random.default_rng(12).standard_normal([4, 32]).astype(np.float32)
    compile_and_compare(model, tmp_path, name="scalar", feeds={"x": x})
    log = _schedule_log(tmp_path / "scalar.bundle")
    assert all(r.index >= 0 for r in log), [(r.kind, r.note) for r in log if r.index < 0]
    assert "elementwise" in _kinds(tmp_path / "scalar.bundle", "relu"), log


def pools() -> onnx.ModelProto:
    nodes = [h.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="max_s1"),
             h.make_node("AveragePool", ["x"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="avg_s1"),
             h.make_node("GlobalAveragePool", ["x"], ["c"], name="gap"),
             h.make_node("MaxPool", ["x"], ["d"], kernel_shape=[2, 2], strides=[2, 2], name="max_s2"),
             h.make_node("AveragePool", ["x"], ["e"], kernel_shape=[3, 3], strides=[2, 2], name="avg_s2")]
    outs = [_vi("a", [1, 3, 13, 17]), _vi("b", [1, 3, 13, 17]), _vi("c", [1, 3, 1, 1]), _vi("d", [1, 3, 6, 8]), _vi("e", [1, 3, 6, 8])]
    return _model(nodes, [], [_vi("x", [1, 3, 13, 17])], outs)


def test_pooling(tmp_path):
    """Unit-stride pooling runs as the direct-convolution schedule (max pooling's border bands as reductions),
    GlobalAveragePool as a reduction; strided pooling, which no vector schedule takes, as pool.c calls."""
    x = np.random.default_rng(9).standard_normal([1, 3, 13, 17]).astype(np.float32)
    x[0, 0, 2, 5], x[0, 1, 7, 0], x[0, 2, 12, 16] = np.nan, -np.inf, np.inf
    compile_and_compare(pools(), tmp_path, name="pools", feeds={"x": x})
    _assert_scheduled(tmp_path / "pools.bundle", {"max_s1": "conv", "avg_s1": "conv", "gap": "reduction", "avg_s2": "ukernel-pool"})
    # max_s2 (3 channels: onnxruntime's NCHW vector kernel) folds its rows along W in the kernel; its last W % 4
    # columns start from their first tap, a strided elementwise op that stays on loops (18 outputs)
    assert "ukernel-pool" in _kinds(tmp_path / "pools.bundle", "max_s2")


def test_residual_block_fuses_bias_relu_and_residual_add(tmp_path):
    """Conv+BN+Relu, Conv+BN, Add, Relu: two conv kernel calls, the second with the residual add and Relu fused, and
    no whole-function fallback."""
    import models

    compile_and_compare(models.residual_block(channels=8, image=10), tmp_path, name="res")
    log = _schedule_log(tmp_path / "res.bundle")
    assert not [r for r in log if r.kind == "module"], log
    convs = [r for r in log if r.kind == "ukernel-conv"]
    assert len(convs) == 2 and any("residual add" in r.note and "activation" in r.note for r in convs), log


def test_schedule_crash_costs_only_its_op(tmp_path, monkeypatch):
    """A script that kills the process (an assertion in the bindings) is tried in a forked child first: its op goes
    to loops and every other op keeps its schedule (no whole-function fallback)."""
    import os

    from hcc.backends.cpu import lowering

    linalg = _linalg_text(tmp_path, softmax_norms(3, 40))
    real_apply = lowering._apply_script

    def abort_on_op_1(root, script):
        if "hcc.id = 1 :" in script:
            os.abort()
        return real_apply(root, script)

    monkeypatch.setattr(lowering, "_apply_script", abort_on_op_1)
    log: list = []
    assert "define" in lowering.lower_to_llvm_ir(linalg, log)
    failed = [r for r in log if not r.ok]
    assert len(failed) == 1 and failed[0].index == 1 and "crashed" in failed[0].note, log
    assert sum(r.ok and r.kind == "reduction" for r in log) >= 3, log


def test_products_by_one_weight_share_its_packed_copy(tmp_path):
    """Two GEMMs of the same shape by the same bundle weight (an unrolled recurrence's steps) pass one call-site
    number, so the kernel keeps one packed copy of the weight for both; a product by another weight gets its own."""
    rng = np.random.default_rng(3)
    inits = [_weight(rng, "w", [64, 48]), _weight(rng, "v", [64, 48])]
    nodes = [h.make_node("MatMul", ["x", "w"], ["a"], name="step0"), h.make_node("Tanh", ["a"], ["t"]),
             h.make_node("MatMul", ["x2", "w"], ["b"], name="step1"), h.make_node("Add", ["t", "b"], ["c"]),
             h.make_node("MatMul", ["x", "v"], ["d"], name="other"), h.make_node("Add", ["c", "d"], ["out"])]
    model = _model(nodes, inits, [_vi("x", [1, 64]), _vi("x2", [1, 64])], [_vi("out", [1, 48])])
    compile_and_compare(model, tmp_path, name="shared")
    calls = re.findall(r"call void @hcc_gemm\((.*)\)", _llvm_ir(tmp_path / "shared.bundle"))
    sites = sorted(int(re.findall(r"i64 (-?\d+)", args)[-1]) for args in calls)
    assert len(sites) == 3 and sites[0] > 0 and len(set(sites)) == 2, sites


def flatten_gemm(batch: int, sliced: bool, seed: int = 5) -> onnx.ModelProto:
    """Flatten(NCHW) -> Gemm(transB=1) -> Relu; `sliced`: the flattened tensor is a Slice (a non-contiguous view)."""
    rng = np.random.default_rng(seed)
    c, hgt, wid, classes = 6, 7, 5, 11
    rows = hgt - 2 if sliced else hgt
    inits = [_weight(rng, "w", [classes, c * rows * wid]), _weight(rng, "b", [classes], 0.1)]
    nodes = [h.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1])]
    if sliced:
        inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("st", [1]), ("en", [hgt - 1]), ("ax", [2]))]
        nodes.append(h.make_node("Slice", ["p", "st", "en", "ax"], ["s"]))
    nodes += [h.make_node("Flatten", ["s" if sliced else "p"], ["f"]), h.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1),
              h.make_node("Relu", ["g"], ["out"], name="relu")]
    nodes[-2].name = "fc"
    return _model(nodes, inits, [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hgt, wid])],
                  [h.make_tensor_value_info("out", TensorProto.FLOAT, [batch, classes])])


@pytest.mark.parametrize("batch,sliced", [(1, False), (3, False), (2, True)])
def test_flatten_gemm_on_the_kernel(tmp_path, batch, sliced):
    """A Gemm on a flattened C x H x W tensor reads it as three k dims (fusion folds the Flatten into the Gemm); the
    kernel takes them as one k dim of C*H*W (a copy first when the view is not contiguous, as with the Slice)."""
    name = f"fg_{batch}_{int(sliced)}"
    compile_and_compare(flatten_gemm(batch, sliced), tmp_path, name=name)
    assert "ukernel-gemm" in _kinds(tmp_path / f"{name}.bundle", "fc")


def _conv_model(weight_as_input: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(8)
    w = _weight(rng, "w", [40, 16, 3, 3])
    inputs = [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 12, 12])]
    if weight_as_input:
        inputs.append(h.make_tensor_value_info("w", TensorProto.FLOAT, [40, 16, 3, 3]))
    node = h.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    return _model([node], [] if weight_as_input else [w], inputs, [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40, 12, 12])])


def _conv_notes(bundle: Path) -> list[str]:
    """The schedule notes of the bundle's convolution kernel calls, as the compile recorded them."""
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    return [e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a.get("meta", {}).get("schedule", [])
            if e["kind"] == "ukernel-conv"]


def test_only_bundle_weights_get_packed_once(tmp_path):
    """A convolution over a bundle weight keeps its packed filters after the first call (the schedule says so); one
    whose filters are a model input is packed on every call: new filter values on the next run are used."""
    from hcc.runtime import load

    compile_and_compare(_conv_model(False), tmp_path, name="const")
    notes = _conv_notes(tmp_path / "const.bundle")
    assert notes and all("constant weights packed at the first call" in n for n in notes), notes

    compile_and_compare(_conv_model(True), tmp_path, name="dynamic")
    notes = _conv_notes(tmp_path / "dynamic.bundle")
    assert notes and not any("packed" in n for n in notes), notes
    session = load(tmp_path / "dynamic.bundle")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    for _ in range(2):
        w = rng.standard_normal((40, 16, 3, 3)).astype(np.float32)
        (y,) = session.run(None, {"x": x, "w": w})
        ref = sum(np.einsum("nchw,fc->nfhw", np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))[:, :, i:i + 12, j:j + 12], w[:, :, i, j])
                  for i in range(3) for j in range(3))
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_a_reshaped_weight_is_still_packed_once(tmp_path):
    """An attention projection split into heads (MatMul by a 2-D weight, Reshape, Transpose) reads the weight through
    a reshaped view of the argument, one slice per head: still a bundle weight, so its kernel keeps the packed B
    (one panel set per head), and the result is right."""
    rng = np.random.default_rng(5)
    nodes = [h.make_node("MatMul", ["x", "w"], ["p"], name="proj"),
             h.make_node("Reshape", ["p", "heads"], ["r"], name="split"),
             h.make_node("Transpose", ["r"], ["y"], name="perm", perm=[0, 2, 1, 3])]
    heads = numpy_helper.from_array(np.array([1, 16, 2, 20], np.int64), "heads")
    model = _model(nodes, [_weight(rng, "w", [24, 40]), heads], [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 24])],
                   [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16, 20])])
    compile_and_compare(model, tmp_path, name="proj")
    import json

    manifest = json.loads((tmp_path / "proj.bundle" / "manifest.json").read_text())
    notes = [e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"] if e["kind"] == "ukernel-gemm"]
    assert notes and all("constant weights packed at the first call" in n for n in notes), notes


def test_ops_sharing_an_empty_tensor_do_not_share_a_buffer(tmp_path, monkeypatch):
    """The node suite's LinearAttention delta rule, unrolled with Gather slices (the form opsets below 13 get): two
    slices of one shape shared one `tensor.empty` after CSE, bufferization gave both results one buffer, and the
    subtraction between two GEMM calls overwrote the key vector the second GEMM still read (all 256 outputs wrong,
    max error 25.9). Every user of an empty now gets its own."""
    import onnx
    from onnx import numpy_helper

    import hcc
    from hcc.frontend import unroll
    from hcc.runtime import load

    case = Path(onnx.__file__).parent / "backend/test/data/node/test_linear_attention_delta"
    original = unroll._slice

    def gather_slice(g, *args):
        opset, g.opset = g.opset, 12
        try:
            return original(g, *args)
        finally:
            g.opset = opset

    monkeypatch.setattr(unroll, "_slice", gather_slice)
    hcc.compile(case / "model.onnx", tmp_path / "la.bundle")
    model = onnx.load(case / "model.onnx")
    data = case / "test_data_set_0"
    feeds = {v.name: numpy_helper.to_array(onnx.load_tensor(data / f"input_{i}.pb")) for i, v in enumerate(model.graph.input)}
    outputs = load(tmp_path / "la.bundle").run(None, feeds)
    for i, actual in enumerate(outputs):
        np.testing.assert_allclose(actual, numpy_helper.to_array(onnx.load_tensor(data / f"output_{i}.pb")), rtol=1e-3, atol=1e-4)


def test_kernel_outputs_read_in_a_time_loop_are_read_every_step(tmp_path):
    """An LSTM with hidden size 16 (one vector): the elementwise gate code read each gate product with one vector
    load, and once the products' buffers were allocated outside the time loop, the vector-transfer hoisting moved
    those loads above the loop (it cannot see a kernel call write through its pointer): every step read the first
    step's products (max error 0.19, NaN for other sizes). Loads are now hoisted before the buffers move."""
    from models import lstm_model

    compile_and_compare(lstm_model(seq=7, batch=1, features=16, hidden=16), tmp_path, name="lstm16")


@pytest.mark.parametrize("batch", [1, 2])
def test_lstm_input_products_are_hoisted_out_of_the_time_loop(tmp_path, batch):
    """An LSTM's input products x[t] @ W_g^T (one per gate) become one GEMM over every step before the time loop
    (hoist_projections.py), the four gates' products one product by the whole weight (merge_products.py: before
    the loop and in it), and the recurrent product in the loop reads its transposed gate matrices through a copy the
    kernel keeps (no transpose on every run): the schedule says all three, and the results match onnxruntime."""
    import json

    from models import lstm_model

    compile_and_compare(lstm_model(seq=7, batch=batch), tmp_path, name="lstm")
    manifest = json.loads((tmp_path / "lstm.bundle" / "manifest.json").read_text())
    notes = [e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"] if e["kind"] == "ukernel-gemm"]
    merged = "4 products of one input by adjacent slices of one weight, as one"
    hoisted = [n for n in notes if "hoisted out of the loop" in n]
    kept = [n for n in notes if "hoisted" not in n and "constant weights packed at the first call" in n and merged in n]
    assert len(hoisted) == 1 and merged in hoisted[0] and len(kept) == 1, notes


def test_separable_cnn_hands_over_blocked_channels(tmp_path):
    """In a depthwise-separable CNN every convolution whose readers are all convolutions taking 16-channel blocks in
    place (depthwise ones, 1x1 pointwise ones on the filter-vector kernel) writes its output in that layout and the
    next one reads it (no NCHW transposes in between); the last one writes NCHW for the pooling. The schedule says
    which, and the results match onnxruntime."""
    import json

    from models import separable_cnn

    compile_and_compare(separable_cnn(), tmp_path, name="sep")
    manifest = json.loads((tmp_path / "sep.bundle" / "manifest.json").read_text())
    notes = {e["node"]: e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"]
             if e["kind"] == "ukernel-conv"}
    assert notes["stem"].endswith("output in 16-channel blocks"), notes
    for node in ("block0/dw", "block0/pw", "block1/dw"):
        assert notes[node].endswith("input and output in 16-channel blocks"), notes
    assert notes["block1/pw"].endswith("input in 16-channel blocks"), notes


def test_residual_block_hands_over_blocked_channels_to_a_padded_conv(tmp_path):
    """A ResNet basic block: conv1 (+ BN, Relu) is read only by conv2, whose kernel zero-pads a blocked input itself
    (a blocked padded copy), so conv1 writes 16-channel blocks and conv2 reads them; conv2, with the residual add
    fused, writes NCHW. The results match onnxruntime."""
    import json

    from models import residual_block

    compile_and_compare(residual_block(channels=32, image=12), tmp_path, name="res")
    manifest = json.loads((tmp_path / "res.bundle" / "manifest.json").read_text())
    notes = {e["node"]: e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"]
             if e["kind"] == "ukernel-conv"}
    assert notes["block/conv1"].endswith("output in 16-channel blocks"), notes
    assert notes["block/conv2"].endswith("input in 16-channel blocks"), notes


def test_two_outputs_computing_the_same_value(tmp_path):
    """Two outputs computed by identical nodes: CSE merges them and the function returns one value twice, which
    crashed bufferization (the compiler worker died with signal 11). The second is now returned as a copy."""
    nodes = [h.make_node("Relu", ["x"], ["y1"], name="r1"), h.make_node("Relu", ["x"], ["y2"], name="r2"),
             h.make_node("Abs", ["x"], ["a1"], name="a1"), h.make_node("Abs", ["x"], ["a2"], name="a2")]
    outputs = [h.make_tensor_value_info(n, TensorProto.FLOAT, [4, 8]) for n in ("y1", "y2", "a1", "a2")]
    model = _model(nodes, [], [h.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])], outputs)
    _session, results, _expected = compile_and_compare(model, tmp_path, name="dup")
    assert np.array_equal(results[0], results[1]) and results[0] is not results[1]


def test_concatenated_pieces_are_computed_in_place(tmp_path):
    """A Concat of computed tensors: each piece's code writes its slice of the result (DECOMPOSE_CONCATS, then
    eliminate-empty-tensors), with no buffer per piece copied afterwards (a padded max-pooling is built from such
    pieces: passes/nan_semantics.py); the result matches onnxruntime."""
    nodes = [h.make_node("Relu", ["x"], ["a"]), h.make_node("Sigmoid", ["y"], ["b"]),
             h.make_node("Concat", ["a", "b"], ["c"], axis=1), h.make_node("Tanh", ["c"], ["out"]),
             h.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    model = _model(nodes, [], [_vi("x", [1, 16, 20, 36]), _vi("y", [1, 8, 20, 36])], [_vi("out", [1, 24, 20, 36]), _vi("p", [1, 16, 10, 18])])
    compile_and_compare(model, tmp_path)
    ll = _llvm_ir(tmp_path / "model.bundle")
    # Before: 9 copies (both Concat inputs, 6 pooling pieces, the result). Two remain: the pooling's 1-column left
    # border bands (corner and edge), which an inner Concat joins before the outer one.
    copies = ll.count("call void @memrefCopy") + ll.count("call void @llvm.memcpy") + ll.count("call void @llvm.memmove")
    assert copies <= 2, copies


def _ffn_gelu(spelling: str, seed: int = 4) -> onnx.ModelProto:
    """MatMul + bias, then GELU as exported: erf written out (two orders), the opset-20 Gelu op, or its tanh form."""
    rng = np.random.default_rng(seed)
    inits = [_weight(rng, "w", [64, 96], 0.3), _weight(rng, "b", [96], 1.0)]
    nodes = [h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Add", ["t", "b"], ["u"])]
    if spelling == "erf":
        inits += [numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
                  numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.5, np.float32), "half")]
        nodes += [h.make_node("Div", ["u", "sqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]), h.make_node("Add", ["e", "one"], ["f"]),
                  h.make_node("Mul", ["u", "f"], ["g"]), h.make_node("Mul", ["g", "half"], ["y"])]
    elif spelling == "erf_half_first":
        inits += [numpy_helper.from_array(np.array(0.70710678, np.float32), "rsqrt2"),
                  numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.5, np.float32), "half")]
        nodes += [h.make_node("Mul", ["u", "half"], ["hx"]), h.make_node("Mul", ["u", "rsqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                  h.make_node("Add", ["one", "e"], ["f"]), h.make_node("Mul", ["hx", "f"], ["y"])]
    else:
        nodes.append(h.make_node("Gelu", ["u"], ["y"], approximate="tanh" if spelling == "tanh" else "none"))
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, [48, 64])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, [48, 96])
    model = h.make_model(h.make_graph(nodes, "ffn", [x], [y], inits), opset_imports=[h.make_opsetid("", 20)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("spelling,fused", [("erf", True), ("erf_half_first", True), ("gelu_op", True), ("tanh", False)])
def test_gelu_fused_into_the_gemm(tmp_path, spelling, fused):
    """An erf GELU after a MatMul's bias is computed in the GEMM's write-out (found by what its body computes,
    backends/cpu/body_eval.py); the tanh approximation is another function and stays an elementwise op."""
    compile_and_compare(_ffn_gelu(spelling), tmp_path, name="ffn")
    notes = [r.note for r in _schedule_log(tmp_path / "ffn.bundle") if r.kind == "ukernel-gemm"]
    assert notes and all(("GELU fused" in n) == fused for n in notes), notes



def _kernel_to_u(kernel: str, rng, matmul_scale: float, conv_scale: float) -> tuple[list, list, list[int], list[int]]:
    """(initializers, nodes, x shape, y shape) of a convolution (dense or depthwise) or a MatMul + bias from `x` to `u`,
    the op an activation test puts its consumer after."""
    if kernel == "matmul":
        inits = [_weight(rng, "w", [40, 48], matmul_scale), _weight(rng, "b", [48], 1.0)]
        nodes = [h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Add", ["t", "b"], ["u"])]
        return inits, nodes, [24, 40], [24, 48]
    groups = 16 if kernel == "depthwise" else 1
    inits = [_weight(rng, "w", [16, 16 // groups, 3, 3], conv_scale), _weight(rng, "b", [16], 1.0)]
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["u"], pads=[1, 1, 1, 1], group=groups)]
    return inits, nodes, [1, 16, 12, 12], [1, 16, 12, 12]


def _hardswish_after(kernel: str, spelling: str, seed: int = 5) -> onnx.ModelProto:
    """A convolution (dense or depthwise) or a MatMul + bias, then HardSwish: the op (opset 14), torch's
    x * relu6(x + 3) / 6 written out, or ReLU6 alone (not HardSwish)."""
    inits, nodes, x_shape, y_shape = _kernel_to_u(kernel, np.random.default_rng(seed), 0.4, 0.5)
    if spelling == "op":
        nodes.append(h.make_node("HardSwish", ["u"], ["y"]))
    else:
        inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("three", 3.0), ("zero", 0.0), ("six", 6.0))]
        nodes += [h.make_node("Add", ["u", "three"], ["s"]) if spelling == "torch" else h.make_node("Identity", ["u"], ["s"]),
                  h.make_node("Clip", ["s", "zero", "six"], ["r6"])]
        nodes += [h.make_node("Mul", ["u", "r6"], ["m"]), h.make_node("Div", ["m", "six"], ["y"])] if spelling == "torch" else \
            [h.make_node("Identity", ["r6"], ["y"])]
    graph = h.make_graph(nodes, "hswish", [h.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("kernel", ["conv", "depthwise", "matmul"])
@pytest.mark.parametrize("spelling,fused", [("op", True), ("torch", True), ("relu6", False)])
def test_hardswish_fused_into_the_kernel(tmp_path, kernel, spelling, fused):
    """MobileNetV3's HardSwish after a convolution or a GEMM is computed in the kernel's write-out (found by what the
    consumer's body computes), as the op or as torch's decomposition; ReLU6 alone is fused as a clamp, not as
    HardSwish. NaN and both infinities in the input: the same NaN rule as onnxruntime's (-inf gives NaN)."""
    model = _hardswish_after(kernel, spelling)
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(6).uniform(-6, 6, x_shape).astype(np.float32)
    x.reshape(-1)[[3, 50, 97]] = [np.nan, np.inf, -np.inf]
    compile_and_compare(model, tmp_path, name="hswish", feeds={"x": x})
    kinds = {"conv": "ukernel-conv", "depthwise": "ukernel-conv", "matmul": "ukernel-gemm"}
    notes = [r.note for r in _schedule_log(tmp_path / "hswish.bundle") if r.kind == kinds[kernel]]
    assert notes and all(("HardSwish fused" in n) == fused for n in notes), notes


def _silu_after(kernel: str, spelling: str, seed: int = 7) -> onnx.ModelProto:
    """A convolution (dense or depthwise) or a MatMul + bias, then SiLU as torch exports it (Sigmoid, Mul), or the
    Sigmoid alone (not SiLU)."""
    inits, nodes, x_shape, y_shape = _kernel_to_u(kernel, np.random.default_rng(seed), 0.6, 0.8)
    nodes.append(h.make_node("Sigmoid", ["u"], ["s" if spelling == "silu" else "y"]))
    if spelling == "silu":
        nodes.append(h.make_node("Mul", ["u", "s"], ["y"]))
    graph = h.make_graph(nodes, "silu", [h.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("kernel", ["conv", "depthwise", "matmul"])
@pytest.mark.parametrize("spelling,fused", [("silu", True), ("sigmoid", False)])
def test_silu_fused_into_the_kernel(tmp_path, kernel, spelling, fused):
    """EfficientNet's and YOLO's SiLU (x * sigmoid(x)) after a convolution or a GEMM is computed in the kernel's
    write-out, found by what the consumer's body computes; a Sigmoid alone is not SiLU. Outputs of both signs, NaN and
    both infinities in the input: the same values and NaN rule as onnxruntime's (-inf gives NaN)."""
    model = _silu_after(kernel, spelling)
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(8).uniform(-6, 6, x_shape).astype(np.float32)
    x.reshape(-1)[[3, 50, 97]] = [np.nan, np.inf, -np.inf]
    compile_and_compare(model, tmp_path, name="silu", feeds={"x": x})
    kinds = {"conv": "ukernel-conv", "depthwise": "ukernel-conv", "matmul": "ukernel-gemm"}
    notes = [r.note for r in _schedule_log(tmp_path / "silu.bundle") if r.kind == kinds[kernel]]
    assert notes and all(("SiLU fused" in n) == fused for n in notes), notes


def test_silu_before_an_upsampling_is_computed_once(tmp_path):
    """A YOLO neck: convolution, SiLU, nearest 2x Resize. Fused into the upsampling (a broadcast read) the SiLU ran four
    times per value; the fusion barrier (passes/fusion_barriers.py) keeps it out, so the convolution takes it into its
    write-out and the Resize only copies."""
    rng = np.random.default_rng(12)
    inits = [_weight(rng, "w", [16, 8, 3, 3], 0.5), _weight(rng, "b", [16], 0.5),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             h.make_node("Sigmoid", ["c"], ["s"], name="sig"), h.make_node("Mul", ["c", "s"], ["a"], name="silu"),
             h.make_node("Resize", ["a", "", "scales"], ["y"], mode="nearest", name="up")]
    model = _model(nodes, inits, [_vi("x", [1, 8, 10, 10])], [_vi("y", [1, 16, 20, 20])])
    compile_and_compare(model, tmp_path, name="neck")
    notes = [r.note for r in _schedule_log(tmp_path / "neck.bundle") if r.node == "conv" and r.kind == "ukernel-conv"]
    assert notes and "SiLU fused" in notes[0], notes


def test_silu_chain_hands_over_blocked(tmp_path):
    """An EfficientNet block's expand (1x1 + SiLU) and depthwise (3x3 + SiLU) convolutions then a projection: with
    SiLU in the write-out, the expand output stays in 16-channel blocks for the depthwise kernel."""
    rng = np.random.default_rng(9)
    inits = [_weight(rng, "we", [32, 16, 1, 1], 0.5), _weight(rng, "be", [32], 0.5), _weight(rng, "wd", [32, 1, 3, 3], 0.5),
             _weight(rng, "bd", [32], 0.5), _weight(rng, "wp", [16, 32, 1, 1], 0.3)]
    nodes = [h.make_node("Conv", ["x", "we", "be"], ["e"], name="expand"), h.make_node("Sigmoid", ["e"], ["es"], name="expand_sig"),
             h.make_node("Mul", ["e", "es"], ["ea"], name="expand_silu"),
             h.make_node("Conv", ["ea", "wd", "bd"], ["d"], pads=[1, 1, 1, 1], group=32, name="dw"),
             h.make_node("Sigmoid", ["d"], ["ds"], name="dw_sig"), h.make_node("Mul", ["d", "ds"], ["da"], name="dw_silu"),
             h.make_node("Conv", ["da", "wp"], ["y"], name="project")]
    model = _model(nodes, inits, [_vi("x", [1, 16, 20, 20])], [_vi("y", [1, 16, 20, 20])])
    compile_and_compare(model, tmp_path, name="mbconv")
    notes = {r.node: r.note for r in _schedule_log(tmp_path / "mbconv.bundle") if r.kind == "ukernel-conv"}
    assert "SiLU fused" in notes["expand"] and "output in 16-channel blocks" in notes["expand"], notes
    assert "SiLU fused" in notes["dw"] and "input in 16-channel blocks" in notes["project"], notes


@pytest.mark.parametrize("exponent", [2.0, 3.0, -2.0])
def test_integer_powers_vectorize(tmp_path, exponent):
    """Pow(x, n) with a constant integer n (an STFT's power spectrum, a decomposed LayerNorm's variance, the tanh
    GELU's cube): torch-mlir makes it math.fpowi, which vectorized into an llvm.intr.powi with a vector exponent that
    LLVM rejects, and the whole function fell back to scalar code. Now multiplications, vectorized, matching
    onnxruntime."""
    nodes = [h.make_node("Pow", ["x", "n"], ["p"], name="pow"), h.make_node("Add", ["p", "x"], ["y"], name="add")]
    inits = [numpy_helper.from_array(np.array(exponent, np.float32), "n")]
    model = _model(nodes, inits, [_vi("x", [4, 64, 33])], [_vi("y", [4, 64, 33])])
    compile_and_compare(model, tmp_path, name="pow", rtol=1e-5, atol=1e-6)
    bundle = tmp_path / "pow.bundle"
    log = _schedule_log(bundle)
    assert log and all(r.ok and r.kind == "elementwise" for r in log), log  # Pow fused into the Add
    assert re.search(r"<(8|16) x float>", _llvm_ir(bundle)), "the power was not vectorized"


def test_plain_loop_warnings_name_material_ops_only():
    """A slow op is warned about by name when it holds a material share of its function's arithmetic and enough
    work to matter: an op alone in a small control-flow piece is 100% of that piece, but not worth a warning."""
    from hcc.backends.cpu.backend import MATERIAL_WORK, schedule_warnings

    def entry(node, share, work):
        return {"node": node, "kind": "loops", "ok": True, "note": "not a static f32 op", "share": share, "work": work}

    record = [entry("tiny", 1.0, MATERIAL_WORK - 1), entry("big", 0.5, 10 * MATERIAL_WORK), entry("rare", 0.001, 10**6)]
    lines = schedule_warnings("sg0", record)
    assert lines == ["sg0: node 'big' runs as plain loops (50% of the arithmetic): not a static f32 op"], lines


def test_profile_marks_are_declared_in_a_function_of_views_only():
    """A function with no timed op (a control-flow piece that only reshapes) still gets its return's mark; the mark
    function must then be declared too, or the module does not verify and the piece fell back to plain loops."""
    from mlir import ir

    from hcc.backends.cpu.lowering import PROFILE_MARK, insert_profile_marks

    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse("""
          func.func @f(%x: tensor<2x4xf32>) -> tensor<8xf32> {
            %y = tensor.collapse_shape %x [[0, 1]] : tensor<2x4xf32> into tensor<8xf32>
            return %y : tensor<8xf32>
          }""")
        assert insert_profile_marks(module) == []
        assert module.operation.verify() and f"func.func private @{PROFILE_MARK}" in str(module)


def _thread_notes(bundle) -> dict[str, list[str]]:
    notes: dict[str, list[str]] = {}
    for report in _schedule_log(bundle):
        notes.setdefault(report.node, []).append(report.note)
    return notes


def test_large_ops_run_across_threads_with_the_same_bits(tmp_path):
    """Softmax, LayerNorm, a ReduceMean and a ReduceSum over an outer axis on 2 x 64 x 768 (each at least
    schedule.PARALLEL_MIN_WORK) split their outer loop across threads; every thread count gives the same bits,
    matching onnxruntime (NaN/inf included); the .so defines the OpenMP entry points itself."""
    x = np.random.default_rng(7).standard_normal([2, 64, 768]).astype(np.float32) * 4
    x[0, 3, 5], x[1, 60, 700], x[1, 2, 0] = np.nan, np.inf, -np.inf
    session, outputs, _ = compile_and_compare(softmax_norms(64, 768), tmp_path, name="wide", feeds={"x": x})
    bundle = tmp_path / "wide.bundle"
    notes = _thread_notes(bundle)
    for node in ("softmax", "layernorm", "mean", "sum"):
        assert any("across threads" in note for note in notes[node]), (node, notes[node])
    from hcc.runtime import load

    for threads in (1, 2, 3):
        again = load(bundle, threads=threads).run(None, {"x": x})
        for a, b in zip(outputs, again):
            np.testing.assert_array_equal(a, b)
    so = next(bundle.glob("cpu/*/lib*.so"))
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True, check=True).stdout
    assert "kmpc" not in undefined and "omp_" not in undefined, undefined


def test_small_ops_stay_on_one_thread(tmp_path):
    """Below schedule.PARALLEL_MIN_WORK a second core would save nothing."""
    model = _model([h.make_node("Relu", ["x"], ["y"], name="relu")], [], [_vi("x", [1, 16, 128])],
                   [_vi("y", [1, 16, 128], TensorProto.FLOAT)])
    compile_and_compare(model, tmp_path, name="small")
    notes = _thread_notes(tmp_path / "small.bundle")["relu"]
    assert notes and not any("across threads" in note for note in notes), notes
