"""Device catalog, device files, device mixes, and the runtime's device discovery."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from hcc.devices import FPGA_SUPPORTED_OPS
from hcc.errors import HccError
from hcc.planner.device_catalog import (
    apply_cpu_profile,
    builtin_catalog,
    describe_catalog,
    host_cpu_spec,
    load_device_file,
    parse_bytes,
    parse_device_list,
    parse_device_mix,
    parse_rate,
)
from hcc.runtime.devices.discovery import HostCpu, describe_host_cpu, discover_nvidia_gpus, parse_cpuinfo


def test_builtin_catalog_has_the_documented_devices():
    cat = builtin_catalog()
    assert {"cpu", "gpu:sm_80", "gpu:sm_90", "fpga:xcu250", "fpga:xczu7ev"} <= set(cat)
    assert cat["gpu:sm_90"].peak_flops["fp32"] == 67e12 and cat["gpu:sm_80"].mem_bandwidth == 2039e9
    u250, zu7 = cat["fpga:xcu250"], cat["fpga:xczu7ev"]
    assert (u250.dsp, u250.bram18k, u250.lut, u250.dsp_width) == (12288, 5376, 1_728_000, 27)
    assert (zu7.dsp, zu7.bram18k, zu7.lut) == (1728, 624, 230_400)
    assert u250.supported_ops == FPGA_SUPPORTED_OPS and cat["gpu:sm_90"].supported_ops is None
    assert cat["cpu"].peak("fp32") > 0 and cat["cpu"].linear == {}
    assert "fpga:xcu250" in describe_catalog(cat)


def test_host_cpu_defaults_follow_cpu_flags():
    avx512 = HostCpu("test", "GenuineIntel", 16, 8, 3000.0, ["avx2", "avx512f", "fma"], 32 << 30)
    sse = HostCpu("old", "x", 4, 4, 2000.0, [], 8 << 30)
    fast, slow = host_cpu_spec(host=avx512), host_cpu_spec(host=sse)
    assert fast.peak("fp32") == pytest.approx(8 * 3.0e9 * 64)
    assert slow.peak("fp32") == pytest.approx(4 * 2.0e9 * 8)
    assert fast.capacity_bytes == 32 << 30


def test_cpu_profile_is_applied(tmp_path):
    profile = tmp_path / "cpu-profile.json"
    profile.write_text(json.dumps({"format": "hcc-cpu-profile", "version": 1, "classes": {"matmul": {"a": 1e-10, "b": 2e-6}}}))
    spec = host_cpu_spec(profile)
    assert spec.linear["matmul"] == (1e-10, 2e-6) and spec.source.startswith("calibrated")
    assert spec.linear["conv"] == (1e-10, 2e-6) and "elementwise" not in spec.linear  # conv borrows matmul's fit
    profile.write_text("{}")
    with pytest.raises(HccError, match="calibration profile"):
        apply_cpu_profile(spec, profile)


def test_parse_device_mix_counts_ids_and_host():
    cat = builtin_catalog()
    ids = [i.id for i in parse_device_mix("4xgpu:sm_90+2xfpga:xcu250+cpu", cat)]
    assert ids == ["cpu#0"] + [f"gpu:sm_90#{k}" for k in range(4)] + ["fpga:xcu250#0", "fpga:xcu250#1"]
    assert [i.id for i in parse_device_list("gpu:sm_80,fpga", cat)] == ["cpu#0", "gpu:sm_80#0", "fpga:xcu250#0"]
    assert [i.id for i in parse_device_mix("gpu", cat)] == ["cpu#0", "gpu:sm_90#0"]
    with pytest.raises(HccError, match=r"unknown device 'gpu:sm_70'.*known devices: cpu, fpga:xcu250"):
        parse_device_mix("gpu:sm_70", cat)
    with pytest.raises(HccError, match="host CPU is one device"):
        parse_device_mix("2xcpu", cat)
    with pytest.raises(HccError, match="empty device list"):
        parse_device_mix(" , ", cat)


def test_units():
    assert parse_bytes("16GB") == 16e9 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes(4000) == 4000
    assert parse_rate("900GB/s") == 900e9
    with pytest.raises(HccError):
        parse_bytes("lots")


def test_device_file_adds_and_overrides(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text('''
[device."gpu:rtx4090"]
base = "gpu:sm_90"
description = "GeForce RTX 4090"
peak_flops = { fp32 = 82.6e12 }
mem_bandwidth = "1008GB/s"
capacity = "24GB"
efficiency = { matmul = [0.5, 4e-6] }

[device."fpga:xcu250"]
clock_hz = 250e6

[device."fpga:tiny"]
kind = "fpga"
peak_flops = { fp32 = 1e11 }
mem_bandwidth = "10GB/s"
capacity = "1GB"
link_bandwidth = "2GB/s"
dsp = 90
bram18k = 100
clock_hz = 1e8
dsp_width = 25
supported_ops = ["Conv", "Relu"]
''')
    cat = load_device_file(path)
    rtx = cat["gpu:rtx4090"]
    assert rtx.kind == "gpu" and rtx.capacity_bytes == 24e9 and rtx.mem_bandwidth == 1008e9
    assert rtx.peak_flops["fp32"] == 82.6e12 and rtx.peak_flops["fp16"] == 989e12  # others from the base
    assert rtx.efficiency["matmul"] == (0.5, 4e-6) and rtx.efficiency["conv"] == builtin_catalog()["gpu:sm_90"].efficiency["conv"]
    assert cat["fpga:xcu250"].clock_hz == 250e6 and cat["fpga:xcu250"].dsp == 12288
    assert cat["fpga:tiny"].supported_ops == frozenset({"Conv", "Relu"})
    assert [i.id for i in parse_device_mix("2xfpga:tiny", cat)] == ["cpu#0", "fpga:tiny#0", "fpga:tiny#1"]


@pytest.mark.parametrize("text, message", [
    ('[device."gpu:x"]\nbase = "gpu:sm_99"\n', "base 'gpu:sm_99' is not a known device"),
    ('[device."gpu:x"]\nkind = "gpu"\n', "needs peak_flops"),
    ('[device."gpu:x"]\nbase = "gpu:sm_90"\nflops = 3\n', "unknown key"),
    ('[device."tpu:x"]\nbase = "gpu:sm_90"\n', "must be 'gpu' or start with 'gpu:'"),
    ('[device."gpu:x"]\nbase = "gpu:sm_90"\nsupported_ops = ["Conv", "NonMaxSuppression"]\n', "does not support"),
    ('[device."gpu:x"]\nbase = "gpu:sm_90"\nefficiency = { magic = [1, 0] }\n', "unknown op class"),
    ("not toml [", "not valid TOML"),
])
def test_device_file_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(HccError, match=message):
        load_device_file(path)


def test_parse_cpuinfo_and_host_description():
    text = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\ncpu MHz\t\t: 2400.000\n"
            "physical id\t: 0\ncpu cores\t: 2\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n\n"
            "processor\t: 1\nphysical id\t: 0\ncpu cores\t: 2\n")
    info = parse_cpuinfo(text)
    assert info["model_name"] == "Test CPU" and info["logical_cpus"] == 2 and info["physical_cores"] == 2
    assert {"avx2", "avx512f"} <= info["flags"] and info["mhz"] == 2400.0
    host = describe_host_cpu()
    assert host.logical_cpus >= 1 and host.physical_cores >= 1


def test_gpu_discovery_without_a_driver():
    found = discover_nvidia_gpus("libcuda-that-does-not-exist.so.1")
    assert found.gpus == [] and "cannot load" in found.reason


STUB_CUDA = r"""
#include <string.h>
#include <stddef.h>
int cuInit(unsigned f) { return 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *n) { *n = 2; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return 0; }
int cuDeviceGetName(char *name, int len, int d) { strncpy(name, d ? "Stub H100" : "Stub A100", len); return 0; }
int cuDeviceGetAttribute(int *v, int attr, int d) {
    if (attr == 75) *v = d ? 9 : 8; else if (attr == 76) *v = 0; else if (attr == 16) *v = 132; else *v = 1;
    return 0;
}
int cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = (size_t)80 << 30; return 0; }
int cuGetErrorName(int e, const char **s) { *s = "CUDA_ERROR_STUB"; return 0; }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a stub libcuda")
def test_gpu_discovery_with_a_stub_driver(tmp_path):
    src = tmp_path / "stub.c"
    src.write_text(STUB_CUDA)
    lib = tmp_path / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    found = discover_nvidia_gpus(str(lib))
    assert found.reason is None and found.driver_version == 13000
    assert [(g.name, g.sm, g.total_mem) for g in found.gpus] == [("Stub A100", "sm_80", 80 << 30), ("Stub H100", "sm_90", 80 << 30)]
    assert found.gpus[1].multiprocessors == 132
    cat = builtin_catalog()
    assert all(f"gpu:{g.sm}" in cat for g in found.gpus)  # discovered GPUs map onto catalog entries


def test_discovery_imports_without_compiler_packages():
    code = ("import sys; import hcc.runtime.devices.discovery as d; "
            "bad = [m for m in ('onnx', 'scipy', 'mlir', 'torch_mlir') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([__import__("sys").executable, "-c", code], check=True)


def test_cpu_bf16_gemms_are_predicted_faster_only_with_bf16_kernels(tmp_path):
    """--cpu-precision bf16/auto: the cost model times a bf16 GEMM/convolution at CPU_BF16_SPEEDUP x fp32's peak on a
    CPU with AMX tiles (also through a calibrated fp32 fit), at CPU_BF16_DOT_SPEEDUP x on one with AVX512-BF16 only,
    and at fp32's on one with neither."""
    from onnx import TensorProto, helper

    from hcc.planner.cost_model import CostModel, analyze_model
    from hcc.planner.device_catalog import CPU_BF16_DOT_SPEEDUP, CPU_BF16_SPEEDUP

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 512]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, [512, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 512])])
    node = analyze_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).by_name["mm"]
    amx = HostCpu("amx", "GenuineIntel", 2, 2, 2000.0, ["amx_bf16", "amx_tile", "avx2", "avx512f", "fma"], 8 << 30)
    plain = HostCpu("avx512", "GenuineIntel", 2, 2, 2000.0, ["avx2", "avx512f", "fma"], 8 << 30)
    missing = tmp_path / "no-profile.json"
    fp32, bf16 = CostModel(), CostModel(cpu_dtypes={"mm": "bf16"})
    with_tiles, without = host_cpu_spec(missing, host=amx), host_cpu_spec(missing, host=plain)
    assert bf16.predict(node, with_tiles) == pytest.approx(fp32.predict(node, with_tiles) / CPU_BF16_SPEEDUP, rel=1e-3)  # + overhead
    assert bf16.predict(node, without) == pytest.approx(fp32.predict(node, without))
    dots = host_cpu_spec(missing, host=HostCpu("zen4", "AuthenticAMD", 2, 2, 2000.0, ["avx2", "avx512f", "avx512_bf16", "fma"], 8 << 30))
    assert bf16.predict(node, dots) == pytest.approx(fp32.predict(node, dots) / CPU_BF16_DOT_SPEEDUP, rel=1e-3)
    assert dots.peak_flops["bf16x3"] == dots.peak_flops["fp32"]  # split products: tiles only
    profile = tmp_path / "cpu-profile.json"  # a calibrated fp32 fit: bf16 scales its slope by the same ratio
    profile.write_text(json.dumps({"format": "hcc-cpu-profile", "version": 1, "classes": {"matmul": {"a": 1e-10, "b": 0.0}}}))
    fitted = host_cpu_spec(profile, host=amx)
    assert bf16.predict(node, fitted) == pytest.approx(fp32.predict(node, fitted) / CPU_BF16_SPEEDUP)
