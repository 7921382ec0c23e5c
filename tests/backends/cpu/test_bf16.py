"""`--cpu-precision bf16`: GEMMs and convolutions call the micro-kernels' bfloat16 entries (AMX tiles, or AVX512-BF16
dot products, fp32 sums), the manifest says bf16, and the golden tolerances are measured on the compile host (golden and
held-out inputs) rather than taken from a table; a host with neither is refused by name, and bf16x3 (three products) on
a host without tiles. The kernels themselves: test_ukernels.py."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

import hcc
from hcc.errors import HccError
from hcc.options import CpuOptions
from hcc.runtime import load
from hcc.runtime.devices.cpu import cpu_low_precisions, has_bf16_tiles, has_int8_tiles
from hcc.runtime.golden_check import check_golden


def _weight(rng, name: str, shape: list[int]):
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)


def _model(nodes, inits, x_shape, out_shape):
    graph = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                         [h.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def cnn() -> onnx.ModelProto:
    """Two 3x3 convs with Relu (the second strided), then Flatten + Gemm."""
    rng = np.random.default_rng(4)
    inits = [_weight(rng, "w1", [32, 16, 3, 3]), _weight(rng, "w2", [48, 32, 3, 3]), _weight(rng, "fw", [10, 48 * 16 * 16])]
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]), h.make_node("Relu", ["c2"], ["r2"]),
             h.make_node("Flatten", ["r2"], ["f"]), h.make_node("Gemm", ["f", "fw"], ["out"], transB=1)]
    return _model(nodes, inits, [1, 16, 32, 32], [1, 10])


def mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    inits = [_weight(rng, "w1", [256, 128]), _weight(rng, "w2", [128, 10])]
    nodes = [h.make_node("MatMul", ["x", "w1"], ["a"]), h.make_node("Relu", ["a"], ["r"]), h.make_node("MatMul", ["r", "w2"], ["out"])]
    return _model(nodes, inits, [64, 256], [64, 10])

needs_tiles = pytest.mark.skipif(not has_bf16_tiles(), reason="this CPU has no AMX bf16 tiles")
needs_bf16 = pytest.mark.skipif(not cpu_low_precisions(), reason="this CPU has neither AMX bf16 tiles nor AVX512-BF16")


def _compile(tmp_path, model, name: str, precision: str):
    onnx.save(model, tmp_path / f"{name}.onnx")
    bundle = tmp_path / f"{name}.{precision}"
    manifest = hcc.compile(tmp_path / f"{name}.onnx", bundle, cpu_precision=precision)
    return bundle, manifest


@needs_bf16
@pytest.mark.parametrize("name,model,symbols", [("cnn", cnn(), ("hcc_conv2d_bf16",)), ("mlp", mlp(), ("hcc_gemm_bf16",))])
def test_bf16_bundle_uses_the_bf16_kernels_and_measured_tolerances(tmp_path, name, model, symbols):
    bundle, manifest = _compile(tmp_path, model, name, "bf16")
    fp32_bundle, _ = _compile(tmp_path, model, name, "fp32")
    assert [sg.precision for sg in manifest.subgraphs] == ["bf16"]
    ll = next(bundle.glob("cpu/*/lib*.ll")).read_text()
    assert all(f"call void @{s}(" in ll for s in symbols), symbols
    # the measured tolerance is wider than fp32's floor, and the check still passes (it can fail: see below)
    (out, accuracy), = manifest.golden.outputs.items()
    assert accuracy.atol > 1e-4 and accuracy.golden_max_abs > 0 and accuracy.held_out_samples >= 1
    assert check_golden(bundle).passed
    # bf16 really ran: the outputs differ from the fp32 bundle's by more than fp32 rounding, within the tolerance
    feeds = {k[6:]: v for k, v in np.load(bundle / "golden" / "golden.npz").items() if k.startswith("input:")}
    got, fp32 = load(bundle).run(None, feeds)[0], load(fp32_bundle).run(None, feeds)[0]
    diff = float(np.abs(got - fp32).max())
    assert 1e-4 < diff <= accuracy.atol, (diff, accuracy.atol)
    assert check_golden(bundle, atol=diff / 4, rtol=0.0).passed is False


@needs_tiles
def test_bf16x3_bundle_calls_the_split_gemm_and_is_near_fp32(tmp_path):
    """--cpu-precision bf16x3: the GEMMs call the split-bf16 entry, the manifest says bf16x3 with measured tolerances,
    and the outputs sit far closer to fp32's than plain bf16's do (yet not bit-equal: the tiles ran)."""
    bundle, manifest = _compile(tmp_path, mlp(), "mlp", "bf16x3")
    fp32_bundle, _ = _compile(tmp_path, mlp(), "mlp", "fp32")
    bf16_bundle, _ = _compile(tmp_path, mlp(), "mlp", "bf16")
    assert [sg.precision for sg in manifest.subgraphs] == ["bf16x3"]
    assert manifest.subgraphs[0].artifacts[0].meta["bf16x3_nodes"] == ["MatMul_0", "MatMul_2"]
    assert "call void @hcc_gemm_bf16x3(" in next(bundle.glob("cpu/*/lib*.ll")).read_text()
    assert check_golden(bundle).passed
    feeds = {k[6:]: v for k, v in np.load(bundle / "golden" / "golden.npz").items() if k.startswith("input:")}
    fp32, x3, bf16 = (load(b).run(None, feeds)[0] for b in (fp32_bundle, bundle, bf16_bundle))
    assert 0 < np.abs(x3 - fp32).max() < np.abs(bf16 - fp32).max() / 50


@needs_tiles
def test_auto_takes_bf16x3_where_bf16_does_not_fit(tmp_path):
    """A budget below what either GEMM costs at bf16 (about 3e-2 each) but far above bf16x3's (about 6e-5): auto
    puts both GEMMs in bf16x3 and the bundle stays within the budget."""
    import json

    onnx.save(mlp(), tmp_path / "mlp.onnx")
    manifest = hcc.compile(tmp_path / "mlp.onnx", tmp_path / "auto", cpu_precision="auto", accuracy="max_abs=1e-3")
    plan = json.loads((tmp_path / "auto" / "plan" / "precision.json").read_text())
    assert {c["node"]: c["precision"] for c in plan["choices"]} == {"MatMul_0": "bf16x3", "MatMul_2": "bf16x3"}
    measured = {"bf16", "bf16x3"} | ({"int8"} if has_int8_tiles() else set())
    assert all(set(s["errors"]) == measured for s in plan["sensitivities"]) and plan["held_out_ok"] is True
    (sg,) = manifest.subgraphs
    assert sg.precision == "bf16x3" and sg.artifacts[0].meta["bf16x3_nodes"] == ["MatMul_0", "MatMul_2"]
    (out, accuracy), = manifest.golden.outputs.items()
    assert accuracy.golden_max_abs < 1e-3 and check_golden(tmp_path / "auto").passed
    # hcc inspect: each choice with its predicted saving (cost model, named) and its own measured error cost
    saved = [c["time_saved_s"] for c in plan["choices"]]
    assert all(t is not None and t >= 0 for t in saved) and max(saved) > 0  # the 10-column GEMM: no predicted saving
    from hcc.runtime.inspect import describe

    text = describe(tmp_path / "auto")
    assert "predicted saving" in text and ("(builtin (defaults" in text or "(calibrated:" in text)
    assert "MatMul_0: bf16x3, predicted -" in text and "of the budget" in text


@pytest.mark.skipif("int8" not in cpu_low_precisions(), reason="this CPU has neither AMX-INT8 tiles nor AVX512-VNNI")
def test_auto_takes_int8_where_the_budget_allows_and_it_ranks_first(tmp_path, monkeypatch):
    """int8 (AMX-INT8 tiles, or AVX512-VNNI) ranks below bf16 here (slower in models on AMX:
    planner/precision.CPU_KERNEL_SPEEDUP), so this ranks it first, as on a host where it were faster, to check the
    path end to end: under a loose budget (max_abs=0.5; each GEMM alone costs 0.1-0.17 at int8) auto puts both GEMMs
    in int8 with the activation steps it calibrated; both call the int8 entry (the 10-column one is too small for the
    int8 kernels and computes in fp32 inside it); the bundle's measured error stays inside the budget. Without the
    re-ranking the same budget takes bf16."""
    import json

    from hcc.planner import precision

    monkeypatch.setitem(precision.CPU_KERNEL_SPEEDUP, "int8", 4.0)
    monkeypatch.setitem(precision.CPU_DOT_KERNEL_SPEEDUP, "int8", 4.0)  # already first there
    onnx.save(mlp(), tmp_path / "mlp.onnx")
    manifest = hcc.compile(tmp_path / "mlp.onnx", tmp_path / "auto", cpu_precision="auto", accuracy="max_abs=0.5")
    plan = json.loads((tmp_path / "auto" / "plan" / "precision.json").read_text())
    assert {c["node"]: c["precision"] for c in plan["choices"]} == {"MatMul_0": "int8", "MatMul_2": "int8"}
    (sg,) = manifest.subgraphs
    assert sg.precision == "int8" and sg.artifacts[0].meta["int8_nodes"] == ["MatMul_0", "MatMul_2"]
    assert next((tmp_path / "auto").glob("cpu/*/lib*.ll")).read_text().count("call void @hcc_gemm_int8(") == 2
    (out, accuracy), = manifest.golden.outputs.items()
    assert 1e-2 < accuracy.golden_max_abs < 0.5 and check_golden(tmp_path / "auto").passed


def test_bf16_refused_without_bf16_kernels(tmp_path, monkeypatch):
    import hcc.runtime.devices.cpu as cpu

    monkeypatch.setattr(cpu, "host_cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    onnx.save(mlp(), tmp_path / "m.onnx")
    with pytest.raises(HccError, match="--cpu-precision bf16: this CPU has neither AMX bf16 tiles .* nor AVX512-BF16"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", cpu_precision="bf16")
    assert not (tmp_path / "b").exists()
    # AVX512-BF16 without tiles: bf16 runs (on dot products), bf16x3 is refused (slower than fp32 there)
    monkeypatch.setattr(cpu, "host_cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512_bf16"})
    assert cpu.cpu_low_precisions() == ("bf16",) and cpu.bf16_kernel_name() == "AVX512-BF16 dot products"
    with pytest.raises(HccError, match="--cpu-precision bf16x3: split-bf16 GEMMs need AMX bf16 tiles"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", cpu_precision="bf16x3")
    assert not (tmp_path / "b").exists()
    # AVX512-VNNI alone (Cascade Lake): int8 for auto, no bf16
    monkeypatch.setattr(cpu, "host_cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512_vnni"})
    assert cpu.cpu_low_precisions() == ("int8",) and cpu.int8_kernel_name() == "AVX512-VNNI"
    with pytest.raises(HccError, match="--cpu-precision bf16: this CPU has neither .* its int8 kernels run under --cpu-precision auto"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b", cpu_precision="bf16")
    assert not (tmp_path / "b").exists()


def test_unknown_cpu_precision_is_refused():
    with pytest.raises(HccError, match="--cpu-precision 'fp8': unsupported"):
        CpuOptions(precision="fp8")


@needs_bf16
def test_auto_runs_in_bf16_what_the_budget_allows(tmp_path):
    """--cpu-precision auto: the measured per-op choice (planner/precision.py) is kept in plan/precision.json, the chosen
    ops call the bf16 kernels, and the bundle's measured error stays inside the budget."""
    import json

    onnx.save(cnn(), tmp_path / "cnn.onnx")
    manifest = hcc.compile(tmp_path / "cnn.onnx", tmp_path / "auto", cpu_precision="auto", accuracy="rel=0.05")
    plan = json.loads((tmp_path / "auto" / "plan" / "precision.json").read_text())
    chosen = {c["node"] for c in plan["choices"] if c["precision"] == "bf16"}
    assert chosen and plan["held_out_ok"] is True
    (sg,) = manifest.subgraphs
    # the subgraph is named by its coarsest precision: int8 where its GEMM took int8 (AMX-INT8 hosts)
    assert sg.precision in ("bf16", "int8") and set(sg.artifacts[0].meta["bf16_nodes"]) <= chosen
    (out, accuracy), = manifest.golden.outputs.items()
    assert 0 < accuracy.golden_max_abs and check_golden(tmp_path / "auto").passed


@needs_bf16
def test_auto_with_no_room_stays_fp32(tmp_path):
    onnx.save(mlp(), tmp_path / "mlp.onnx")
    manifest = hcc.compile(tmp_path / "mlp.onnx", tmp_path / "b", cpu_precision="auto", accuracy="max_abs=0")
    assert [sg.precision for sg in manifest.subgraphs] == ["fp32"]
    assert "_bf16" not in next((tmp_path / "b").glob("cpu/*/lib*.ll")).read_text()


@pytest.mark.parametrize("kw,message", [(dict(precision="auto"), "--cpu-precision auto needs --accuracy"),
                                        (dict(accuracy="max_abs=1e-2"), "--accuracy needs --cpu-precision auto"),
                                        (dict(precision="auto", accuracy="mae=1"), "accuracy budget 'mae=1'")])
def test_auto_options_are_checked(kw, message):
    with pytest.raises(HccError, match=message):
        CpuOptions(**kw)


@needs_bf16
def test_bf16_keeps_the_blocked_hand_over_in_fp32(tmp_path):
    """The bf16 kernels read and write NCHW only: under --cpu-precision bf16 the convolutions of a depthwise-separable
    chain that hand 16-channel blocks to each other stay on the fp32 kernels (leaving the chain for tiles made a
    keyword spotter 0.80x as fast as fp32), the schedule says so, and the bundle passes its golden check."""
    import json

    from models import separable_cnn

    bundle, _ = _compile(tmp_path, separable_cnn(), "sep", "bf16")
    manifest = json.loads((bundle / "manifest.json").read_text())
    notes = {e["node"]: e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"]
             if e["kind"] == "ukernel-conv"}
    for node in ("stem", "block0/pw", "block1/pw"):
        assert notes[node].startswith("hcc_conv2d micro-kernel") and "(fp32, not bf16" in notes[node], notes
    assert check_golden(bundle).passed


@needs_bf16
def test_a_bf16_convolution_read_by_dense_convolutions_keeps_nchw(tmp_path):
    """A dense convolution asked for bf16 hands its output over in 16-channel blocks only to depthwise readers (it
    stays fp32 then): read by a 1x1 convolution (as a U-Net's bottleneck is by its up-convolution's pieces) it writes
    NCHW and runs in bf16, and so does its reader; the same model in fp32 hands the blocked layout over."""
    import json

    rng = np.random.default_rng(9)
    inits = [_weight(rng, "w1", [64, 32, 3, 3]), _weight(rng, "w2", [32, 64, 1, 1])]
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv3x3"), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2"], ["out"], name="conv1x1")]
    model = _model(nodes, inits, [1, 32, 24, 24], [1, 32, 24, 24])
    notes = {}
    for precision in ("bf16", "fp32"):
        bundle, _ = _compile(tmp_path, model, "chain", precision)
        manifest = json.loads((bundle / "manifest.json").read_text())
        notes[precision] = {e["node"]: e["note"] for sg in manifest["subgraphs"] for a in sg["artifacts"] for e in a["meta"]["schedule"]
                            if e["kind"] == "ukernel-conv"}
        assert check_golden(bundle).passed
    for node in ("conv3x3", "conv1x1"):
        assert notes["bf16"][node].startswith("hcc_conv2d_bf16 micro-kernel") and "blocks" not in notes["bf16"][node], notes
    assert "output in 16-channel blocks" in notes["fp32"]["conv3x3"], notes
