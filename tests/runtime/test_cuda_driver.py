"""The ctypes CUDA driver (hcc.runtime.devices.cuda) against a stub libcuda built with gcc: no GPU, no compiler.

A hand-written launch table, PTX text (only its `.entry` declarations matter to the stub) and a C "emulator" that
the stub's cuLaunchKernel calls with the packed parameters test the host side on its own: library loading and
device discovery, argument packing for every parameter kind, buffers (inputs, outputs, constants, arena
temporaries), copy steps, image choice, memory release and error messages.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hcc.artifacts.manifest import ArtifactRecord, SubgraphRecord
from hcc.errors import HccError
from hcc.runtime.devices.native import load_library

HELPERS = Path(__file__).resolve().parents[1] / "backends" / "gpu" / "cuda_stub.py"


def _helpers():
    spec = importlib.util.spec_from_file_location("hcc_test_cuda_stub", HELPERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_stub = _helpers()

PTX = """
.version 8.0
.target sm_80
.address_size 64
.visible .entry probe(
	.param .u64 .ptr .align 1 probe_param_0,
	.param .u64 probe_param_1,
	.param .u32 probe_param_2,
	.param .f32 probe_param_3,
	.param .f64 probe_param_4,
	.param .b16 probe_param_5,
	.param .u8 probe_param_6
)
{
	ret;
}
.visible .entry add_const(
	.param .u64 .ptr .align 1 add_const_param_0,
	.param .u64 .ptr .align 1 add_const_param_1,
	.param .u64 .ptr .align 1 add_const_param_2,
	.param .u64 add_const_param_3
)
{
	ret;
}
"""

EMULATOR_C = r"""
#include <stdint.h>
void hccemu_probe(void **p, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    double *out = *(double **)p[0];
    out[0] = (double)*(int64_t *)p[1];
    out[1] = (double)*(int32_t *)p[2];
    out[2] = (double)*(float *)p[3];
    out[3] = *(double *)p[4];
    out[4] = (double)*(uint16_t *)p[5];
    out[5] = (double)*(int8_t *)p[6];
    out[6] = gx * 1e6 + gy * 1e3 + gz;
    out[7] = bx * 1e6 + by * 1e3 + bz;
}
void hccemu_add_const(void **p, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    const float *in = *(float **)p[0], *c = *(float **)p[1];
    float *out = *(float **)p[2];
    int64_t n = *(int64_t *)p[3];
    for (int64_t i = 0; i < n; i++) out[i] = in[i] + c[i];
}
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda_stub")
    lib = cuda_stub.build_stub(root)
    (root / "emu.c").write_text(EMULATOR_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(root / "emu.c"), "-o", str(root / "emu.so")], check=True)
    return lib, root / "emu.so"


def _bundle(root: Path, table: dict, cubins: dict[str, bytes] | None = None, constants: bytes = b"") -> tuple[Path, SubgraphRecord]:
    sg_dir = root / "gpu" / "sg0"
    sg_dir.mkdir(parents=True, exist_ok=True)
    (sg_dir / "kernels.ptx").write_text(PTX)
    module = {"ptx": "gpu/sg0/kernels.ptx", "cubins": {}}
    for arch, data in (cubins or {}).items():
        (sg_dir / f"kernels.{arch}.cubin").write_bytes(data)
        module["cubins"][arch] = f"gpu/sg0/kernels.{arch}.cubin"
    if constants:
        (sg_dir / "constants.bin").write_bytes(constants)
    table = {"format": "hcc-launch-v1", "entry": "sg0", "module": module, **table}
    (sg_dir / "launch.json").write_text(json.dumps(table))
    record = SubgraphRecord(id="sg0", device="gpu:sm_90", precision="fp32", inputs=[], outputs=[],
                            artifacts=[ArtifactRecord(kind="cuda-module", file="gpu/sg0/launch.json", entry="sg0", abi="hcc-launch-v1")])
    return root, record


def _probe_table(values: dict) -> dict:
    kinds = ["ptr", "i64", "i32", "f32", "f64", "f16", "i8"]
    params = [{"kind": "ptr", "buffer": 0}] + [{"kind": k, "value": values[k]} for k in kinds[1:]]
    return {
        "buffers": [{"id": 0, "role": "output", "index": 0, "name": "out", "dtype": "float64", "shape": [8], "nbytes": 64}],
        "inputs": [], "outputs": [0], "arena_bytes": 0,
        "kernels": {"probe": {"params": kinds}},
        "steps": [{"op": "launch", "kernel": "probe", "grid": [3, 2, 1], "block": [32, 4, 2], "shared_bytes": 0, "params": params}],
    }


def _add_table() -> dict:
    n = 6
    ptr = lambda b: {"kind": "ptr", "buffer": b}  # noqa: E731
    return {
        "buffers": [
            {"id": 0, "role": "input", "index": 0, "name": "x", "dtype": "float32", "shape": [n], "nbytes": 4 * n},
            {"id": 1, "role": "output", "index": 0, "name": "y", "dtype": "float32", "shape": [n], "nbytes": 4 * n},
            {"id": 2, "role": "constant", "name": "c", "dtype": "float32", "shape": [n], "nbytes": 4 * n, "file": "gpu/sg0/constants.bin",
             "offset": 256},
            {"id": 3, "role": "temp", "dtype": "float32", "shape": [n], "nbytes": 4 * n, "arena_offset": 0},
            {"id": 4, "role": "temp", "dtype": "float32", "shape": [n], "nbytes": 4 * n, "unused": True},
        ],
        "inputs": [0], "outputs": [1], "arena_bytes": 256,
        "kernels": {"add_const": {"params": ["ptr", "ptr", "ptr", "i64"]}},
        "steps": [
            {"op": "launch", "kernel": "add_const", "grid": [1, 1, 1], "block": [n, 1, 1], "shared_bytes": 0,
             "params": [ptr(0), ptr(2), ptr(3), {"kind": "i64", "value": n}]},     # temp = x + c
            {"op": "launch", "kernel": "add_const", "grid": [1, 1, 1], "block": [n, 1, 1], "shared_bytes": 0,
             "params": [ptr(3), ptr(2), ptr(1), {"kind": "i64", "value": n}]},     # y = temp + c
            {"op": "copy", "src": {"buffer": 1, "byte_offset": 0}, "dst": {"buffer": 3, "byte_offset": 0}, "nbytes": 4 * n},
        ],
    }


def _device(stub, tmp_path, **settings):
    from hcc.runtime.devices.cuda import CudaDevice

    lib, emu = stub
    ctx = cuda_stub.stub_environment(lib, tmp_path / "log.txt", [str(emu)], **settings)
    ctx.__enter__()
    try:
        return CudaDevice("gpu:sm_90", 0), ctx
    except BaseException:
        ctx.__exit__(None, None, None)
        raise


# -----------------------------------------------------------------------------------------------------------------
def test_runtime_driver_imports_with_numpy_and_stdlib_only():
    code = ("import sys, hcc.runtime.devices.cuda, hcc.runtime; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mlir', 'torch_mlir', 'onnx', 'onnxruntime', 'scipy')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("settings, reason", [
    ({"HCC_LIBCUDA": "/nonexistent/libcuda.so.1"}, "cannot load the CUDA driver library /nonexistent/libcuda.so.1"),
    ({"init_error": "100"}, "cuInit failed: CUDA_ERROR_NO_DEVICE"),
    ({"devices": "0"}, "the CUDA driver reports no GPU"),
    ({"devices": "1", "index": "1"}, "GPU #1 requested, this host has 1"),
    ({"cc": "7.5"}, "older than sm_80"),
])
def test_device_unavailable_reasons(stub, tmp_path, settings, reason):
    from hcc.runtime.devices import DeviceUnavailable
    from hcc.runtime.devices.cuda import CudaDevice

    index = int(settings.pop("index", 0))
    with cuda_stub.stub_environment(stub[0], tmp_path / "log.txt", **settings):
        with pytest.raises(DeviceUnavailable, match=reason.replace("(", r"\(").replace(")", r"\)")):
            CudaDevice("gpu:sm_90", index)


def test_second_gpu_and_names(stub, tmp_path):
    from hcc.runtime.devices.cuda import CudaDevice

    with cuda_stub.stub_environment(stub[0], tmp_path / "log.txt", devices="2", cc="8.6"):
        gpu = CudaDevice("gpu:sm_86", 1)
        assert gpu.compute_capability == (8, 6)
        assert "#1" in gpu.name and "sm_86" in gpu.name
        assert gpu.event_timer()(lambda: None) >= 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool"])
def test_memory_round_trip_and_release(stub, tmp_path, dtype):
    from hcc.runtime.devices.cuda import CudaDevice

    with cuda_stub.stub_environment(stub[0], tmp_path / "log.txt"):
        lib = load_library(stub[0], "the stub libcuda")
        lib.hccstub_live_bytes.restype = ctypes.c_size_t
        gpu = CudaDevice("gpu:sm_90", 0)
        before = lib.hccstub_live_bytes()
        host = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
        dev = gpu.to_device(host)
        assert dev.shape == (2, 3, 4) and dev.dtype == np.dtype(dtype)
        back = gpu.to_host(dev)
        np.testing.assert_array_equal(back, host)
        empty = gpu.empty([0, 3], dtype)
        assert gpu.to_host(empty).shape == (0, 3)
        assert lib.hccstub_live_bytes() > before
        del dev, empty
        again = gpu.to_device(host)  # a dropped block of the same size is reused, not allocated again
        np.testing.assert_array_equal(gpu.to_host(again), host)
        del again
        allocs = [e for e in cuda_stub.parse_log(tmp_path / "log.txt") if e["call"] == "cuMemAlloc"]
        assert len(allocs) == 2, allocs
        gpu.trim()
        assert lib.hccstub_live_bytes() == before, "dropped device arrays are freed (trim() releases the cache)"


def test_every_parameter_kind_is_packed(stub, tmp_path):
    values = {"i64": -(2**40) - 3, "i32": -123456, "f32": 1.5, "f64": -2.25e-7, "f16": 0.333, "i8": -7}
    root, record = _bundle(tmp_path / "b", _probe_table(values))
    gpu, ctx = _device(stub, tmp_path)
    try:
        exe = gpu.load(root, record)
        out = gpu.empty([8], np.float64)
        exe.run([], [out])
        got = gpu.to_host(out)
    finally:
        ctx.__exit__(None, None, None)
    assert got[0] == values["i64"] and got[1] == values["i32"] and got[2] == values["f32"] and got[3] == values["f64"]
    assert got[4] == int(np.array(0.333, np.float16).view(np.uint16)), "f16 scalars travel as their 16-bit pattern"
    assert got[5] == values["i8"]
    assert got[6] == 3_002_001 and got[7] == 32_004_002, "grid and block dimensions reach cuLaunchKernel"
    launch = next(e for e in cuda_stub.parse_log(tmp_path / "log.txt") if e["call"] == "cuLaunchKernel")
    assert [k for k, _ in launch["params"]] == ["p", "l", "i", "f", "d", "s", "c"]


def test_constants_arena_temporaries_and_copies(stub, tmp_path):
    n = 6
    c = np.linspace(1, 2, n, dtype=np.float32)
    root, record = _bundle(tmp_path / "b", _add_table(), constants=b"\0" * 256 + c.tobytes())
    x = np.arange(n, dtype=np.float32)
    gpu, ctx = _device(stub, tmp_path)
    try:
        exe = gpu.load(root, record)
        y = gpu.empty([n], np.float32)
        for _ in range(2):  # parameters are packed once and rebound on every run
            exe.run([gpu.to_device(x)], [y])
            np.testing.assert_allclose(gpu.to_host(y), x + 2 * c)
        events = cuda_stub.parse_log(tmp_path / "log.txt")
    finally:
        ctx.__exit__(None, None, None)
    allocs = [int(e["size"]) for e in events if e["call"] == "cuMemAlloc"]
    assert 256 in allocs and allocs.count(4 * n) >= 2, "one arena for the temporaries, one buffer for the constant"
    assert any(e["call"] == "cuMemcpyDtoD" and int(e["bytes"]) == 4 * n for e in events), "copy steps use cuMemcpyDtoD"
    assert any(e["call"] == "cuMemcpyHtoD" and int(e["bytes"]) == 4 * n for e in events)


def test_inputs_are_checked(stub, tmp_path):
    root, record = _bundle(tmp_path / "b", _add_table(), constants=b"\0" * 512)
    gpu, ctx = _device(stub, tmp_path)
    try:
        exe = gpu.load(root, record)
        y = gpu.empty([6], np.float32)
        with pytest.raises(HccError, match=r"input 'x' is \[5\] float32, the kernels expect \[6\] float32"):
            exe.run([gpu.to_device(np.zeros(5, np.float32))], [y])
        with pytest.raises(HccError, match="input 'x' is not an array on"):
            exe.run([np.zeros(6, np.float32)], [y])
        with pytest.raises(HccError, match="2 inputs given, the launch table expects 1"):
            exe.run([y, y], [y])
    finally:
        ctx.__exit__(None, None, None)


def test_missing_kernel_names_kernel_and_subgraph(stub, tmp_path):
    table = _probe_table({"i64": 0, "i32": 0, "f32": 0, "f64": 0, "f16": 0, "i8": 0})
    table["kernels"] = {"nope": table["kernels"]["probe"]}
    table["steps"][0]["kernel"] = "nope"
    root, record = _bundle(tmp_path / "b", table)
    gpu, ctx = _device(stub, tmp_path)
    try:
        with pytest.raises(HccError) as info:
            gpu.load(root, record)
    finally:
        ctx.__exit__(None, None, None)
    assert "subgraph sg0: kernel nope" in str(info.value) and "CUDA_ERROR_NOT_FOUND" in str(info.value)


def test_cached_blocks_are_released_when_memory_runs_out(stub, tmp_path):
    gpu, ctx = _device(stub, tmp_path, mem_limit=str((3 << 20) - 1))
    try:
        a = gpu.empty([1 << 18], np.float32)  # 1 MiB
        del a  # cached
        b = gpu.empty([1 << 19], np.float32)  # 2 MiB: fits only once the cached 1 MiB is freed
        assert b.nbytes == 2 << 20
    finally:
        ctx.__exit__(None, None, None)


def test_sync_mode_synchronizes_after_every_launch(stub, tmp_path):
    root, record = _bundle(tmp_path / "b", _add_table(), constants=b"\0" * 512)
    gpu, ctx = _device(stub, tmp_path, HCC_CUDA_SYNC="1")
    try:
        exe = gpu.load(root, record)
        exe.run([gpu.to_device(np.zeros(6, np.float32))], [gpu.empty([6], np.float32)])
        calls = [e["call"] for e in cuda_stub.parse_log(tmp_path / "log.txt")]
    finally:
        ctx.__exit__(None, None, None)
    launches = [i for i, c in enumerate(calls) if c == "cuLaunchKernel"]
    assert all(calls[i + 1] == "cuCtxSynchronize" for i in launches)


def test_malformed_tables_are_refused(stub, tmp_path):
    root, record = _bundle(tmp_path / "b", _add_table(), constants=b"\0" * 512)
    gpu, ctx = _device(stub, tmp_path)
    try:
        bad_abi = SubgraphRecord(**{**record.__dict__, "artifacts": [ArtifactRecord("cuda-module", "gpu/sg0/launch.json", "sg0", "hcc-launch-v0")]})
        with pytest.raises(HccError, match="ABI 'hcc-launch-v0' is not supported"):
            gpu.load(root, bad_abi)
        table = json.loads((root / "gpu/sg0/launch.json").read_text())
        table["steps"].append({"op": "memset"})
        (root / "gpu/sg0/launch.json").write_text(json.dumps(table))
        with pytest.raises(HccError, match="unknown op 'memset'"):
            gpu.load(root, record)
    finally:
        ctx.__exit__(None, None, None)


@pytest.mark.parametrize("cc, cubins, expected", [
    ((9, 0), ["sm_80", "sm_90"], "cubin:sm_90"),
    ((8, 6), ["sm_80", "sm_90"], "cubin:sm_80"),
    ((8, 9), ["sm_80", "sm_86", "sm_90"], "cubin:sm_86"),
    ((9, 0), ["sm_80", "sm_90a"], "ptx"),          # sm_90a cubins are not picked by the compatibility rule
    ((10, 0), ["sm_80", "sm_90"], "ptx"),
    ((12, 1), [], "ptx"),
])
def test_image_choice_rule(cc, cubins, expected):
    from hcc.runtime.devices.cuda import _image_for

    table = {"module": {"ptx": "k.ptx", "cubins": {a: f"k.{a}.cubin" for a in cubins}}}
    kind, path = _image_for(cc, table)
    want_kind, _, arch = expected.partition(":")
    assert kind == want_kind and path == (f"k.{arch}.cubin" if arch else "k.ptx")


def test_no_image_is_an_error():
    from hcc.runtime.devices.cuda import _image_for

    with pytest.raises(HccError, match="no PTX"):
        _image_for((10, 0), {"module": {"cubins": {"sm_80": "a"}}})
