"""What devices does this machine have? Host CPU facts from /proc/cpuinfo and NVIDIA GPUs through libcuda.

Why here: the deployable runtime must be able to say which of a bundle's devices are present (and `hcc devices`
prints the same facts), so this module imports the standard library (ctypes, through the libcuda binding of
runtime/devices/libcuda.py) and nothing else -- no onnx, no MLIR, no cuda-python. A machine without libcuda gets an
empty GPU list plus the reason, never an exception.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

from hcc.runtime.devices import DeviceUnavailable
from hcc.runtime.devices.libcuda import (
    CU_DEVICE_ATTRIBUTE_CLOCK_RATE,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
    CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH,
    CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
    DISCOVERY_FUNCTIONS,
    CudaDriver,
    CudaError,
)

# /proc/cpuinfo flags that change what the compiler can emit or how fast the CPU is (vector width, FMA, int8 dot).
FLAGS_OF_INTEREST: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
)

@dataclass
class HostCpu:
    """The host CPU as /proc/cpuinfo and /proc/meminfo describe it (fields are 0/empty when unknown)."""

    model_name: str
    vendor: str
    logical_cpus: int
    physical_cores: int
    mhz: float  # nominal or current clock; 0 when unknown
    flags: list[str]  # the FLAGS_OF_INTEREST this CPU has, sorted
    mem_bytes: int

    def has(self, flag: str) -> bool:
        return flag in self.flags


@dataclass
class GpuInfo:
    """One NVIDIA GPU as the CUDA driver reports it."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_mem: int  # bytes
    multiprocessors: int = 0
    clock_khz: int = 0
    memory_clock_khz: int = 0
    bus_width_bits: int = 0

    @property
    def sm(self) -> str:
        """The catalog name of this architecture, e.g. `sm_90` (the key `gpu:sm_90` in the device catalog)."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass
class GpuDiscovery:
    """Result of asking the CUDA driver: the GPUs found, or why none could be listed."""

    gpus: list[GpuInfo] = field(default_factory=list)
    reason: str | None = None  # set when the list is empty because of a missing driver or an error
    driver_version: int = 0  # e.g. 13000 for CUDA 13.0


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict:
    """The fields hcc uses from a /proc/cpuinfo text (kept separate from file reading so tests can feed text)."""
    model, vendor, mhz = "", "", 0.0
    flags: set[str] = set()
    processors = 0
    cores_per_socket: dict[str, int] = {}
    physical_id = "0"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        elif key == "model name" and not model:
            model = value
        elif key == "vendor_id" and not vendor:
            vendor = value
        elif key == "cpu MHz" and not mhz:
            try:
                mhz = float(value)
            except ValueError:
                pass
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "cpu cores":
            try:
                cores_per_socket[physical_id] = int(value)
            except ValueError:
                pass
    return {
        "model_name": model, "vendor": vendor, "mhz": mhz, "flags": flags, "logical_cpus": processors,
        "physical_cores": sum(cores_per_socket.values()),
    }


def _max_mhz() -> float:
    khz = _read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    return int(khz) / 1000.0 if khz.isdigit() else 0.0


def describe_host_cpu(cpuinfo_path: str = "/proc/cpuinfo", meminfo_path: str = "/proc/meminfo") -> HostCpu:
    """Describe the host CPU; works (with zeros) where /proc is missing, e.g. on macOS."""
    info = parse_cpuinfo(_read_text(cpuinfo_path))
    logical = info["logical_cpus"] or (os.cpu_count() or 1)
    physical = info["physical_cores"] or logical
    mem = 0
    for line in _read_text(meminfo_path).splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                mem = int(parts[1]) * 1024
            break
    mhz = _max_mhz() or info["mhz"]
    flags = sorted(f for f in FLAGS_OF_INTEREST if f in info["flags"])
    return HostCpu(
        model_name=info["model_name"] or "unknown CPU", vendor=info["vendor"], logical_cpus=logical,
        physical_cores=min(physical, logical), mhz=mhz, flags=flags, mem_bytes=mem,
    )


def discover_nvidia_gpus(library: str = "libcuda.so.1") -> GpuDiscovery:
    """List NVIDIA GPUs via the CUDA driver API; an empty list plus a reason when the driver is absent or fails."""
    try:
        drv = CudaDriver(library, required=DISCOVERY_FUNCTIONS)
    except DeviceUnavailable as exc:
        return GpuDiscovery(reason=f"no NVIDIA driver: {exc}")
    try:
        drv.check("cuInit", 0)
        version = ctypes.c_int(0)
        if drv.has("cuDriverGetVersion"):
            drv.check("cuDriverGetVersion", ctypes.byref(version))
        count = ctypes.c_int(0)
        drv.check("cuDeviceGetCount", ctypes.byref(count))
        gpus = []
        for index in range(count.value):
            dev = ctypes.c_int(0)
            drv.check("cuDeviceGet", ctypes.byref(dev), index)
            name = ctypes.create_string_buffer(256)
            drv.check("cuDeviceGetName", name, 256, dev)

            def attribute(code: int, dev: ctypes.c_int = dev) -> int:
                value = ctypes.c_int(0)
                drv.check("cuDeviceGetAttribute", ctypes.byref(value), code, dev)
                return value.value

            major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            total = ctypes.c_size_t(0)
            drv.check("cuDeviceTotalMem_v2", ctypes.byref(total), dev)
            gpus.append(GpuInfo(
                index=index, name=name.value.decode(errors="replace"), compute_capability=(major, minor),
                total_mem=int(total.value), multiprocessors=attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
                clock_khz=attribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE), memory_clock_khz=attribute(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE),
                bus_width_bits=attribute(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
            ))
    except CudaError as exc:
        return GpuDiscovery(reason=f"CUDA driver error: {exc}")
    if not gpus:
        return GpuDiscovery(reason="the CUDA driver reports no devices", driver_version=version.value)
    return GpuDiscovery(gpus=gpus, driver_version=version.value)
