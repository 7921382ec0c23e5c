"""GPU backend without a GPU: what CI can prove about the PTX, the cubins, the launch table and the runtime path.

* ptxas (the pinned CUDA 13.0 one) accepts every PTX for sm_80 and sm_90 with zero spills;
* the PTX header is ISA <= 9.0, `.target sm_80`, and its `.entry` names and parameter lists match the launch table;
* the cubins are CUDA ELF files (e_machine 190) with a `.text.<kernel>` section per kernel;
* every kernel argument of the launch table stays inside its buffer (static bounds check of offsets/sizes/strides);
* the bundle runs through the ctypes driver against a stub libcuda whose cuLaunchKernel executes host emulations of
  the same kernels (tests/backends/gpu/emulate.py): outputs match onnxruntime, and the driver's calls (module image,
  allocations, copies, launches with grid/block/parameters) are exactly what the launch table says;
* without a GPU the session runs the CPU fallback and says so.
"""
from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pytest

import cuda_stub  # tests/backends/gpu/cuda_stub.py (conftest puts this folder on sys.path)
from hcc.backends.gpu import toolchain
from hcc.backends.gpu.mapping import plan_op
from helpers import compile_groups

tolerance = cuda_stub.tolerance

FP32_MODELS = ["mlp", "cnn", "attention", "odd", "gathers", "mlp_tiled", "attention_tiled", "odd_matmul", "fused_matmuls",
               "conv_tiled"]


def _table(bundle) -> tuple[dict, dict]:
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    sg = manifest["subgraphs"][0]
    artifact = sg["artifacts"][0]
    return json.loads((bundle.path / artifact["file"]).read_text()), sg


# -- ptxas / PTX / cubin -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FP32_MODELS + ["attention:fp16", "attention_tiled:fp16"])
def test_ptxas_accepts_every_kernel_without_spills(gpu_bundles, tmp_path, name):
    model, _, precision = name.partition(":")
    bundle = gpu_bundles.get(model, precision or "fp32", emulate=False)
    table, _ = _table(bundle)
    ptx = bundle.path / table["module"]["ptx"]
    for arch in ("sm_80", "sm_90"):
        proc = subprocess.run([str(toolchain.ptxas_path()), f"-arch={arch}", "-v", str(ptx), "-o", str(tmp_path / f"{arch}.cubin")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        report = toolchain.parse_ptxas_verbose(proc.stderr + proc.stdout)
        assert set(report) == set(table["kernels"]), f"{arch}: ptxas compiled {sorted(report)}"
        for kernel, res in report.items():
            assert res.spill_stores == 0 and res.spill_loads == 0, f"{arch} {kernel} spills: {res}"
            assert 0 < res.registers <= 255
            assert res.shared_bytes <= 48 * 1024
        # the backend recorded the same figures in the launch table
        for kernel, res in report.items():
            assert table["kernels"][kernel]["resources"][arch]["registers"] == res.registers
            # static shared memory (workgroup buffers) is what the kernel IR declares: no dynamic shared memory
            assert res.shared_bytes == table["kernels"][kernel]["static_shared_bytes"], (arch, kernel)


@pytest.mark.parametrize("name", FP32_MODELS)
def test_ptx_header_and_entries_match_launch_table(gpu_bundles, name):
    bundle = gpu_bundles.get(name, emulate=False)
    table, _ = _table(bundle)
    ptx = (bundle.path / table["module"]["ptx"]).read_text()
    assert toolchain.ptx_version(ptx) <= (9, 0)
    assert toolchain.ptx_target(ptx) == "sm_80"
    assert table["module"]["ptx_version"] == "%d.%d" % toolchain.ptx_version(ptx)
    entries = {e.name: e for e in toolchain.ptx_entries(ptx)}
    assert set(entries) == set(table["kernels"])
    launched = [s["kernel"] for s in table["steps"] if s["op"] == "launch"]
    assert sorted(launched) == sorted(table["kernels"]), "every kernel is launched exactly once"
    for step in table["steps"]:
        entry = entries[step["kernel"]]
        assert len(entry.params) == len(step["params"]), step["kernel"]
        for ptx_type, param in zip(entry.params, step["params"]):
            assert toolchain.ptx_param_kind(ptx_type) == toolchain.TABLE_PARAM_FAMILY[param["kind"]], (step["kernel"], ptx_type, param)
    assert "__nv_" not in ptx.replace(".visible", ""), "libdevice calls must be linked in, not left external"
    assert ".extern" not in ptx


@pytest.mark.parametrize("name", ["mlp", "attention"])
def test_cubins_are_cuda_elf_with_every_kernel(gpu_bundles, name):
    bundle = gpu_bundles.get(name, emulate=False)
    table, _ = _table(bundle)
    assert set(table["module"]["cubins"]) == {"sm_80", "sm_90"}
    for arch, rel in table["module"]["cubins"].items():
        data = (bundle.path / rel).read_bytes()
        assert toolchain.elf_machine(data) == toolchain.EM_CUDA
        sections = set(toolchain.elf_section_names(data))
        for kernel in table["kernels"]:
            assert f".text.{kernel}" in sections, (arch, kernel)


# -- launch table --------------------------------------------------------------------------------------------------
def _span_bytes(view: dict, itemsize: int) -> tuple[int, int]:
    """[first, last] byte touched by a strided view."""
    if any(s == 0 for s in view["sizes"]):
        return 0, -1
    last = view["offset"] + sum((s - 1) * st for s, st in zip(view["sizes"], view["strides"]))
    return view["offset"] * itemsize, (last + 1) * itemsize - 1


@pytest.mark.parametrize("name", FP32_MODELS + ["attention:fp16", "attention_tiled:fp16"])
def test_launch_table_is_consistent(gpu_bundles, name):
    model, _, precision = name.partition(":")
    bundle = gpu_bundles.get(model, precision or "fp32", emulate=False)
    table, sg = _table(bundle)
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert table["format"] == "hcc-launch-v1" and table["entry"] == sg["id"] == "sg0"
    assert table["precision"] == (precision or "fp32")
    buffers = {b["id"]: b for b in table["buffers"]}
    tensors = {t["name"]: t for t in manifest["tensors"]}
    # inputs/outputs are the subgraph's, in order, with the manifest's shapes and dtypes (fp16 keeps fp32 I/O)
    assert [buffers[i]["name"] for i in table["inputs"]] == sg["inputs"]
    assert [buffers[i]["name"] for i in table["outputs"]] == sg["outputs"]
    for i in table["inputs"] + table["outputs"]:
        tensor = tensors[buffers[i]["name"]]
        assert buffers[i]["shape"] == tensor["shape"] and buffers[i]["dtype"] == tensor["dtype"]
        assert buffers[i]["nbytes"] == math.prod(tensor["shape"]) * np.dtype(tensor["dtype"]).itemsize
    # every file the table names is in the bundle and checksummed
    for rel in [table["module"]["ptx"], *table["module"]["cubins"].values()] + [b["file"] for b in buffers.values() if b["role"] == "constant"]:
        assert rel in manifest["files"], rel
    assert sg["artifacts"][0]["file"] in manifest["files"]
    assert manifest["toolchain"]["ptxas"].startswith("13.0")  # the GPU toolchain is recorded next to the CPU one
    # temporaries fit in the arena, and buffers that share arena memory are never live at the same step
    for b in buffers.values():
        if b["role"] == "temp" and not b.get("unused"):
            assert 0 <= b["arena_offset"] and b["arena_offset"] + b["nbytes"] <= table["arena_bytes"]
            assert b["arena_offset"] % 256 == 0
    temps = [b for b in buffers.values() if b["role"] == "temp" and not b.get("unused")]
    for i, a in enumerate(temps):
        for b in temps[i + 1:]:
            overlap_mem = a["arena_offset"] < b["arena_offset"] + b["nbytes"] and b["arena_offset"] < a["arena_offset"] + a["nbytes"]
            overlap_time = not (a["live_steps"][1] < b["live_steps"][0] or b["live_steps"][1] < a["live_steps"][0])
            assert not (overlap_mem and overlap_time), (a, b)
    # launches: legal shapes, parameters pointing at real buffers, every view inside its buffer
    for step in table["steps"]:
        assert step["op"] == "launch"
        gx, gy, gz = step["grid"]
        bx, by, bz = step["block"]
        assert min(gx, gy, gz, bx, by, bz) >= 1 and gy <= 65535 and gz <= 65535
        assert bx * by * bz <= 1024 and bz <= 64
        assert step["shared_bytes"] == 0
        assert table["kernels"][step["kernel"]]["params"] == [p["kind"] for p in step["params"]]
        for param in step["params"]:
            if param["kind"] == "ptr":
                assert param["buffer"] in buffers
        for arg in step["args"]:
            if "memref" in arg:
                view = arg["memref"]
                buf = buffers[view["buffer"]]
                lo, hi = _span_bytes(view, np.dtype(view["dtype"]).itemsize)
                assert 0 <= lo and hi < buf["nbytes"], (step["kernel"], view, buf)


def test_fp16_subgraph_computes_in_half_precision(gpu_bundles):
    bundle = gpu_bundles.get("attention", "fp16", emulate=False)
    table, sg = _table(bundle)
    ptx = (bundle.path / table["module"]["ptx"]).read_text()
    assert re.search(r"\b(add|mul|fma|sub)\.rn\.f16\b", ptx), "fp16 arithmetic expected"
    assert "cvt.rn.f16.f32" in ptx and "cvt.f32.f16" in ptx
    # the boundary stays fp32, the temporaries are fp16 (or fp32 accumulators)
    dtypes = {b["dtype"] for b in table["buffers"] if b["role"] == "temp"}
    assert "float16" in dtypes
    assert all(b["dtype"] == "float32" for b in table["buffers"] if b["role"] in ("input", "output"))
    assert sg["artifacts"][0]["meta"]["precision"] == "fp16"


# -- running through the ctypes driver against the stub libcuda -----------------------------------------------------
def _run(bundle, stub, log, **settings):
    import hcc.runtime

    with cuda_stub.stub_environment(stub, log, bundle.emulators, **settings):
        session = hcc.runtime.load(bundle.path)
        outputs = session.run(None, bundle.feeds)
        notes = list(session.notes)
        for device in session.devices.values():
            notes += [n for n in getattr(device, "notes", []) if n not in notes]
        del session
    return outputs, notes


def _compare(bundle, outputs):
    rtol, atol = tolerance(bundle.precision)
    for name, actual in zip([o.name for o in bundle.model.graph.output], outputs):
        ref = bundle.expected[name]
        assert actual.shape == ref.shape and actual.dtype == ref.dtype, name
        scale = max(1.0, float(np.abs(ref).max())) if bundle.precision != "fp32" else 1.0
        np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol * scale, err_msg=f"{bundle.name}/{bundle.precision}: {name}")


@pytest.mark.parametrize("name", FP32_MODELS + ["attention:fp16", "mlp:fp16", "gathers:fp16", "attention_tiled:fp16"])
def test_emulated_gpu_run_matches_onnxruntime(gpu_bundles, stub_lib, tmp_path, name):
    model, _, precision = name.partition(":")
    bundle = gpu_bundles.get(model, precision or "fp32")
    outputs, notes = _run(bundle, stub_lib, tmp_path / "log.txt")
    assert not any("fallback" in n for n in notes), notes
    assert any("kernels.sm_90.cubin" in n for n in notes), notes
    _compare(bundle, outputs)
    assert "NOEMU" not in (tmp_path / "log.txt").read_text()


@pytest.mark.parametrize("name", ["mlp", "attention", "attention_tiled"])
def test_driver_calls_follow_the_launch_table(gpu_bundles, stub_lib, tmp_path, name):
    bundle = gpu_bundles.get(name)
    table, sg = _table(bundle)
    log = tmp_path / "log.txt"
    _run(bundle, stub_lib, log)
    events = cuda_stub.parse_log(log)
    calls = [e["call"] for e in events]
    # the sm_90 cubin (the stub reports compute capability 9.0) is the image loaded
    loads = [e for e in events if e["call"] == "cuModuleLoadData"]
    assert len(loads) == 1 and loads[0]["kind"] == "cubin"
    assert loads[0]["fnv"] == cuda_stub.fnv1a((bundle.path / table["module"]["cubins"]["sm_90"]).read_bytes())
    found = [e["text"].split()[0] for e in events if e["call"] == "cuModuleGetFunction"]
    assert sorted(found) == sorted(table["kernels"]) and all("found" in e["text"] for e in events if e["call"] == "cuModuleGetFunction")
    allocs = {e["ptr"]: int(e["size"]) for e in events if e["call"] == "cuMemAlloc"}
    assert table["arena_bytes"] in allocs.values()
    for b in table["buffers"]:
        if b["role"] == "constant":
            assert any(e["call"] == "cuMemcpyHtoD" and int(e["bytes"]) == b["nbytes"] for e in events), b
    # launches: the table's order, grid, block, shared memory; pointer parameters bind buffers consistently
    launches = [e for e in events if e["call"] == "cuLaunchKernel"]
    assert [e["kernel"] for e in launches] == [s["kernel"] for s in table["steps"]]
    address_of: dict[int, int] = {}
    for event, step in zip(launches, table["steps"]):
        assert event["grid"] == step["grid"] and event["block"] == step["block"] and event["shared"] == step["shared_bytes"]
        assert not event["bad"], event
        assert len(event["params"]) == len(step["params"])
        for (kind, value), param in zip(event["params"], step["params"]):
            if param["kind"] == "ptr":
                assert kind == "p"
                assert address_of.setdefault(param["buffer"], value) == value, "a buffer always has one address"
            else:
                assert value == param["value"]
    by_address = {}
    for buffer, address in address_of.items():
        assert by_address.setdefault(address, buffer) == buffer or table["buffers"][buffer]["role"] == "temp", "distinct buffers, distinct memory"
    uploads = {int(e["dst"], 16) for e in events if e["call"] == "cuMemcpyHtoD"}
    downloads = {int(e["src"], 16) for e in events if e["call"] == "cuMemcpyDtoH"}
    for i in table["inputs"]:
        if i in address_of:
            assert address_of[i] in uploads
    for o in table["outputs"]:
        assert address_of[o] in downloads
    # one synchronize after the launches, before the results are read back
    last_launch = max(i for i, c in enumerate(calls) if c == "cuLaunchKernel")
    first_download = min(i for i, c in enumerate(calls) if c == "cuMemcpyDtoH")
    assert "cuCtxSynchronize" in calls[last_launch:first_download]


@pytest.mark.parametrize("cc, image", [("9.0", "cubin:sm_90"), ("8.0", "cubin:sm_80"), ("8.6", "cubin:sm_80"),
                                       ("8.9", "cubin:sm_80"), ("10.0", "ptx"), ("12.0", "ptx")])
def test_image_choice(gpu_bundles, stub_lib, tmp_path, cc, image):
    bundle = gpu_bundles.get("mlp")
    table, _ = _table(bundle)
    log = tmp_path / "log.txt"
    outputs, notes = _run(bundle, stub_lib, log, cc=cc)
    _compare(bundle, outputs)  # the PTX path runs the same kernels (the stub reads parameter kinds from the PTX)
    load = next(e for e in cuda_stub.parse_log(log) if e["call"] == "cuModuleLoadData")
    kind, _, arch = image.partition(":")
    assert load["kind"] == kind
    expected = table["module"]["cubins"][arch] if kind == "cubin" else table["module"]["ptx"]
    assert load["fnv"] == cuda_stub.fnv1a((bundle.path / expected).read_bytes())
    assert any(expected in n for n in notes), notes


# -- fallback ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("situation, settings, reason", [
    ("no driver library", {"HCC_LIBCUDA": "/nonexistent/libcuda.so.1"}, "cannot load the CUDA driver library"),
    ("cuInit fails", {"init_error": "100"}, "CUDA_ERROR_NO_DEVICE"),
    ("no GPU", {"devices": "0"}, "reports no GPU"),
    ("pre-Ampere GPU", {"cc": "7.5"}, "older than sm_80"),
])
def test_gpu_subgraph_falls_back_to_cpu(gpu_bundles, stub_lib, tmp_path, situation, settings, reason):
    bundle = gpu_bundles.get("mlp")
    outputs, notes = _run(bundle, stub_lib, tmp_path / "log.txt", **settings)
    _compare(bundle, outputs)
    assert any("sg0: gpu:sm_90 unavailable" in n and reason in n and "CPU fallback" in n for n in notes), (situation, notes)


def test_fallback_matches_onnxruntime_for_every_model(gpu_bundles, stub_lib, tmp_path):
    for name in ("cnn", "attention", "odd"):
        bundle = gpu_bundles.get(name)
        outputs, notes = _run(bundle, stub_lib, tmp_path / "log.txt", HCC_LIBCUDA="/nonexistent/libcuda.so.1")
        _compare(bundle, outputs)
        assert any("CPU fallback" in n for n in notes)


# -- errors --------------------------------------------------------------------------------------------------------
def test_launch_failure_names_kernel_and_subgraph(gpu_bundles, stub_lib, tmp_path):
    import hcc.runtime
    from hcc.errors import HccError

    bundle = gpu_bundles.get("mlp")
    table, _ = _table(bundle)
    victim = table["steps"][1]["kernel"]
    with cuda_stub.stub_environment(stub_lib, tmp_path / "log.txt", bundle.emulators, fail_kernel=victim):
        session = hcc.runtime.load(bundle.path)
        with pytest.raises(HccError) as info:
            session.run(None, bundle.feeds)
    message = str(info.value)
    assert "subgraph sg0" in message and victim in message and "CUDA_ERROR_LAUNCH_FAILED" in message


def test_out_of_memory_is_a_clear_error(gpu_bundles, stub_lib, tmp_path):
    import hcc.runtime
    from hcc.errors import HccError

    bundle = gpu_bundles.get("cnn")
    with cuda_stub.stub_environment(stub_lib, tmp_path / "log.txt", bundle.emulators, mem_limit="4096"):
        with pytest.raises(HccError) as info:
            hcc.runtime.load(bundle.path)
    assert "CUDA_ERROR_OUT_OF_MEMORY" in str(info.value) and "allocating" in str(info.value)


# -- the mapping heuristic (no MLIR) --------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes, iterators", [
    ([1, 8, 32, 32], ["parallel"] * 4), ([4, 64, 32], ["parallel", "parallel", "reduction"]), ([1031], ["parallel"]),
    ([5, 1031], ["parallel", "parallel"]), ([7, 3, 5, 11, 13], ["parallel"] * 5), ([2, 3], ["reduction", "reduction"]),
    ([1, 1, 1], ["parallel"] * 3), ([100000, 3], ["parallel", "parallel"]), ([70000, 70000, 2], ["parallel"] * 3),
])
def test_plan_shapes_are_legal(sizes, iterators):
    out_dims = [d for d, it in enumerate(iterators) if it == "parallel"]
    plan = plan_op(0, "op", sizes, iterators, out_dims)
    bx, by, bz = plan.block_dims
    assert bx * by * bz <= 1024 and bz <= 64
    assert plan.grid[1] <= 65535 and plan.grid[2] <= 65535
    if plan.wrap:
        assert not out_dims and plan.block_dims == (1, 1, 1)
        return
    assert len(plan.block_mapping) == sum(1 for t in plan.block_tiles if t)
    assert len(plan.thread_mapping) == sum(1 for t in plan.thread_tiles if t)
    for d, it in enumerate(iterators):
        if it == "reduction":
            assert plan.block_tiles[d] == 0 and plan.thread_tiles[d] == 0
    # the blocks x threads cover every parallel iteration
    covered = math.prod(plan.grid) * bx * by * bz
    work = math.prod(sizes[d] for d in out_dims)
    sequential = math.prod(sizes[d] for d in out_dims if plan.block_tiles[d] == 0 and plan.thread_tiles[d] == 0)
    assert covered * sequential >= work


# -- several subgraphs: GPU -> GPU (device-resident), GPU -> CPU -> GPU ---------------------------------------------
def test_split_model_keeps_tensors_on_the_gpu(gpu_bundles, stub_lib, tmp_path):
    import onnx as onnx_

    import hcc
    import hcc.runtime
    from hcc.artifacts.golden import random_inputs, run_onnxruntime
    from hcc.frontend.loader import load_model

    model = gpu_bundles.get("mlp", emulate=False).model
    path = tmp_path / "mlp.onnx"
    onnx_.save(model, path)
    groups = [
        {"id": "sg0", "device": "gpu:sm_90", "nodes": ["fc1/Gemm", "fc1/Relu"], "device_index": 0},
        {"id": "sg1", "device": "gpu:sm_90", "nodes": ["fc2/MatMul", "fc2/Add"], "device_index": 0},
        {"id": "sg2", "device": "cpu", "nodes": ["fc2/Relu"], "device_index": 0},
        {"id": "sg3", "device": "gpu:sm_90", "nodes": ["logits"], "device_index": 0},
    ]
    bundle = tmp_path / "split.bundle"
    compile_groups(path, bundle, groups, keep_ir=True)
    emulators = list(cuda_stub.build_emulators(bundle, tmp_path / "emu").values())
    assert len(emulators) == 3
    loaded = load_model(str(path), None)
    feeds = random_inputs(loaded.model, loaded.inputs, seed=5)
    expected = run_onnxruntime(loaded.model, feeds)
    with cuda_stub.stub_environment(stub_lib, tmp_path / "log.txt", emulators):
        session = hcc.runtime.load(bundle)
        (out,) = session.run(None, feeds)
        transfers = [(t.tensor, t.source, t.destination) for t in session.last_profile.transfers]
        instances = {sg.id: session.instance_of(sg) for sg in session.manifest.subgraphs}
    np.testing.assert_allclose(out, expected["logits"], rtol=1e-3, atol=1e-4)
    gpu = instances["sg0"]
    assert instances["sg1"] == instances["sg3"] == gpu and instances["sg2"].startswith("cpu")
    # sg0 -> sg1 stays on the GPU: the tensor between them never goes through the host
    sg0_out = next(sg for sg in session.manifest.subgraphs if sg.id == "sg0").outputs[0]
    assert not any(name == sg0_out for name, _s, _d in transfers), transfers
    sg1_out = next(sg for sg in session.manifest.subgraphs if sg.id == "sg1").outputs[0]
    assert (sg1_out, gpu, "host") in transfers
    sg2_out = next(sg for sg in session.manifest.subgraphs if sg.id == "sg2").outputs[0]
    assert any(name == sg2_out and dst == gpu for name, _s, dst in transfers)
    launches = [e["kernel"] for e in cuda_stub.parse_log(tmp_path / "log.txt") if e["call"] == "cuLaunchKernel"]
    assert {k.split("_")[0] for k in launches} == {"sg0", "sg1", "sg3"}


def test_a_kernel_with_hundreds_of_buffers_compiles(tmp_path):
    """A Sum of 600 tensors is one kernel with 601 pointer arguments (9.6 KB of parameters): PTX 8.0 allowed 4,352
    bytes and ptxas refused it (an LSTM's fused time loop did the same, issue 11 item 7); PTX 8.1 allows 32,764."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as h

    n = 600
    graph = h.make_graph([h.make_node("Sum", [f"x{i}" for i in range(n)], ["y"], name="sum")], "sum600",
                         [h.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [4, 8]) for i in range(n)],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "sum600.onnx")
    groups = [{"id": "sg0", "device": "gpu:sm_90", "nodes": ["sum"], "device_index": 0}]
    compile_groups(tmp_path / "sum600.onnx", tmp_path / "b", groups)
    ptx = (tmp_path / "b" / "gpu" / "sg0" / "kernels.ptx").read_text()
    assert toolchain.ptx_version(ptx) >= (8, 1)
    assert max(len(re.findall(r"\.param\s", entry)) for entry in ptx.split(".entry")[1:]) > 4352 // 8


def test_fp16_reduction_that_reads_an_element_of_an_f16_tensor(tmp_path):
    """A BERT pooler: the first token's row (a Gather) fused into the following MatMul is read element by element by
    a tensor.extract inside the fp32-accumulating body; --gpu-precision fp16 used to fail on a type clash there."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnx import helper as h

    rng = np.random.default_rng(3)
    nodes = [h.make_node("Tanh", ["x"], ["t"], name="act"),
             h.make_node("Gather", ["t", "first"], ["cls"], name="cls", axis=1),
             h.make_node("MatMul", ["cls", "w"], ["y"], name="pool")]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "first"),
             numpy_helper.from_array((rng.standard_normal((64, 32)) * 0.1).astype(np.float32), "w")]
    graph = h.make_graph(nodes, "pooler", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "pooler.onnx")
    groups = [{"id": "sg0", "device": "gpu:sm_90", "nodes": ["act", "cls", "pool"], "device_index": 0}]
    manifest = compile_groups(tmp_path / "pooler.onnx", tmp_path / "b", groups, gpu_precision="fp16")
    assert [sg.precision for sg in manifest.subgraphs] == ["fp16"]
    assert "f16" in (tmp_path / "b" / "gpu" / "sg0" / "kernels.ptx").read_text()
