"""The compile-side device model (the HAL's figures): what each device can run and how fast, for the cost model.

Why a catalog: placement must be able to answer "what if I had 4 H100s and 2 U250s" without the hardware, so every
device is a record of published figures (peak throughput per precision, memory bandwidth and capacity, host link,
FPGA fabric) plus per-op-class efficiency factors. The host CPU's factors are measured (`hcc devices --calibrate`,
see planner/calibrate.py) when a profile exists; otherwise they are conservative defaults derived from /proc/cpuinfo.
Users add or override devices with a TOML file (`load_device_file`, format in docs/devices.md).

Everything here is built fresh on each call (no module-level mutable state): `builtin_catalog()` returns a new dict.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from hcc.config_file import read_toml
from hcc.devices import DEVICE_KINDS, FPGA_PARTS, KINDS, FpgaPart
from hcc.env import read_env
from hcc.errors import HccError
from hcc.frontend.ops import SUPPORTED_OPS
from hcc.runtime.devices.discovery import HostCpu, describe_host_cpu

# Op classes of the cost model (see planner/cost_model.OP_CLASS). Efficiency tuples are (fraction of peak compute
# reached by hcc's generated code, fixed overhead per op in seconds). The memory side uses `mem_efficiency`.
OP_CLASSES = ("matmul", "conv", "rnn", "elementwise", "reduction", "softmax", "normalization", "pool", "data", "view", "shape")

# Defaults for code hcc generates without vendor libraries (untuned tiling): conservative on purpose.
_CPU_EFFICIENCY = {
    "matmul": (0.15, 2e-7), "conv": (0.10, 2e-7), "rnn": (0.05, 1e-6), "elementwise": (0.5, 1e-7),
    "reduction": (0.3, 1e-7), "softmax": (0.2, 1e-7), "normalization": (0.3, 1e-7), "pool": (0.3, 1e-7),
    "data": (1.0, 1e-7), "view": (1.0, 0.0), "shape": (1.0, 0.0),
}
# GPU: every op is at least one kernel launch (~5 us); MLIR-generated kernels reach a fraction of the SIMT peak.
_GPU_EFFICIENCY = {
    "matmul": (0.35, 5e-6), "conv": (0.30, 5e-6), "rnn": (0.05, 2e-5), "elementwise": (0.8, 4e-6),
    "reduction": (0.4, 5e-6), "softmax": (0.3, 6e-6), "normalization": (0.4, 6e-6), "pool": (0.5, 5e-6),
    "data": (1.0, 4e-6), "view": (1.0, 0.0), "shape": (1.0, 0.0),
}
# FPGA: compute time comes from the resource/latency estimate (cost_model.estimate_fpga); these only add overhead.
_FPGA_EFFICIENCY = {c: (1.0, 1e-7) for c in OP_CLASSES}


@dataclass
class DeviceSpec:
    """Figures of one device type. Times derived from them are predictions, not measurements (see `source`).

    Cost model use (planner/cost_model.predict): for op class c with work w (FLOPs or bytes, cost_model.WORK_METRIC),
    `linear[c] = (a, b)` when present gives t = a*w + b (fitted by calibration, onnx-mlir style); otherwise
    t = max(flops / (peak_flops[dtype] * efficiency[c][0]), bytes / (mem_bandwidth * mem_efficiency)) + efficiency[c][1].
    """

    name: str  # catalog key: "cpu", "gpu:sm_80", "gpu:sm_90", "fpga:xcu250", "fpga:xczu7ev", or user-defined
    kind: str  # "cpu" | "gpu" | "fpga"
    description: str
    peak_flops: dict[str, float]  # per dtype ("fp32", "fp16", "int8"): FLOP/s (or OP/s)
    mem_bandwidth: float  # B/s of device memory
    capacity_bytes: float  # device memory
    link_bandwidth: float  # B/s of the host link (PCIe, AXI); the host CPU uses its memory bandwidth
    link_latency: float  # s per transfer (DMA setup, driver call)
    supported_ops: frozenset[str] | None = None  # None: every op hcc supports; built-ins: their kind's (hcc.devices)
    efficiency: dict[str, tuple[float, float]] = field(default_factory=dict)  # op class -> (fraction, overhead s)
    mem_efficiency: float = 0.7  # fraction of mem_bandwidth reached by streaming kernels
    linear: dict[str, tuple[float, float]] = field(default_factory=dict)  # op class -> (a s/work, b s), calibrated
    dsp: int = 0
    bram18k: int = 0
    lut: int = 0
    ff: int = 0
    clock_hz: float = 0.0
    dsp_width: int = 0  # wide multiplier port: 25 for DSP48E1 (7-series), 27 for DSP48E2 (UltraScale+)
    power_w: float | None = None
    source: str = "builtin"  # where the figures come from: "builtin", "calibrated: <profile>", "file: <path>"

    def supports(self, op_type: str) -> bool:
        return self.supported_ops is None or op_type in self.supported_ops

    def peak(self, dtype: str) -> float:
        """Peak for `dtype`, falling back to fp32 (an op in an unlisted precision runs at fp32 speed)."""
        return self.peak_flops.get(dtype) or self.peak_flops.get("fp32") or 1e9


@dataclass(frozen=True)
class DeviceInstance:
    """One device of a mix: `id` is `<spec name>#<k>` (e.g. "gpu:sm_90#0"); the host CPU is always "cpu#0"."""

    id: str
    spec: DeviceSpec = field(compare=False, hash=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def is_host(self) -> bool:
        return self.spec.kind == "cpu"


# ---------------------------------------------------------------------------------------------------- units

_BYTE_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(text: str | float | int, what: str = "size") -> float:
    """'16GB' -> 16e9, '512MiB' -> 512*2**20, '1.5G' -> 1.5e9, 4000 -> 4000 (decimal SI units, binary with 'i')."""
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _BYTE_UNITS:
        raise HccError(f"{what} {text!r}: expected a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB)")
    return float(match.group(1)) * _BYTE_UNITS[unit]


def parse_rate(text: str | float | int, what: str = "bandwidth") -> float:
    """'900GB/s' -> 9e11 B/s (a plain number is B/s)."""
    if isinstance(text, str):
        text = text.strip().removesuffix("/s")
    return parse_bytes(text, what)


# ---------------------------------------------------------------------------------------------------- built-ins

def default_profile_path() -> Path:
    """Where `hcc devices --calibrate` writes the host CPU profile: $HCC_CACHE_DIR or ~/.cache/hcc."""
    return read_env().cache_root / "cpu-profile.json"


def _cpu_flops_per_cycle(host: HostCpu) -> float:
    """FP32 FLOP per cycle per core: two FMA pipes of the widest vector unit (conservative for AVX-512 parts)."""
    if host.has("avx512f"):
        return 64.0
    if host.has("avx2") and host.has("fma"):
        return 32.0
    if host.has("avx"):
        return 16.0
    return 8.0


# GEMMs and convolutions with --cpu-precision bf16 on AMX tiles against hcc's fp32 kernels: the low end of what the
# kernels measured (a 128x768x768 GEMM 2.97x, ResNet-18's convolutions 1.8-2.4x, C harness, 1 thread); they round
# both operands on every call, so the tiles' own peak (about 12x fp32 here) is not what a model sees.
CPU_BF16_SPEEDUP = 2.0
# ... on AVX512-BF16 dot products (no AMX; vdpbf16ps does two bf16 products per fp32 lane in an FMA's time): measured
# on an AMD EPYC (Zen 4), 1 thread, against hcc's fp32 kernels: GEMMs of 128-512 rows 1.86-1.94x, ResNet-18's 3x3
# convolutions 1.84-1.97x (dp_fv; the stride-2 one 1.79x), 1x1 ones 1.18-1.42x, 16-filter ones 1.35-1.58x; whole
# models 1.48x (U-Net) to 1.84x (BERT h768). The low end of the ops, as for the tiles.
CPU_BF16_DOT_SPEEDUP = 1.3
# The split-bf16 GEMM (--cpu-precision bf16x3, three tile products): its C harness measured 1.8-2.7x hcc's fp32
# kernel on 128-row GEMMs of 768-3072 (kept weights, 1 thread; 1.6x with B packed on every call).
CPU_BF16X3_SPEEDUP = 1.5


def host_cpu_spec(profile_path: str | os.PathLike | None = None, host: HostCpu | None = None) -> DeviceSpec:
    """The host CPU: peak from cores x clock x vector width; calibrated linear fits from the profile when present."""
    host = host or describe_host_cpu()
    cores = max(1, host.physical_cores)
    ghz = (host.mhz or 2000.0) / 1000.0
    fp32 = cores * ghz * 1e9 * _cpu_flops_per_cycle(host)
    int8 = fp32 * (4.0 if (host.has("avx512_vnni") or host.has("avx_vnni")) else 2.0)
    fp16 = fp32 * (2.0 if host.has("avx512_fp16") else 1.0)
    tiles = host.has("amx_bf16") and host.has("amx_tile")
    dots = host.has("avx512f") and host.has("avx512_bf16")
    bf16 = fp32 * (CPU_BF16_SPEEDUP if tiles else CPU_BF16_DOT_SPEEDUP if dots else 1.0)
    bf16x3 = fp32 * (CPU_BF16X3_SPEEDUP if tiles else 1.0)
    # Conservative bandwidth: ~8 GB/s of streaming per core, capped at a dual-channel-DDR5-class 80 GB/s.
    bandwidth = min(8e9 * cores, 80e9)
    spec = DeviceSpec(
        name="cpu", kind="cpu",
        description=f"host CPU: {host.model_name} ({cores} cores, {host.logical_cpus} threads, {ghz:.2f} GHz, "
                    f"{'+'.join(f for f in ('avx2', 'fma', 'avx512f') if host.has(f)) or 'no AVX2'})",
        peak_flops={"fp32": fp32, "fp16": fp16, "bf16": bf16, "bf16x3": bf16x3, "int8": int8}, mem_bandwidth=bandwidth,
        capacity_bytes=float(host.mem_bytes or 8e9), link_bandwidth=bandwidth, link_latency=0.0,
        efficiency=dict(_CPU_EFFICIENCY), mem_efficiency=0.6, power_w=None, source="builtin (defaults from /proc/cpuinfo)",
    )
    path = Path(profile_path) if profile_path is not None else default_profile_path()
    if path.exists():
        spec = apply_cpu_profile(spec, path)
    return spec


def apply_cpu_profile(spec: DeviceSpec, path: str | os.PathLike) -> DeviceSpec:
    """Return `spec` with the linear fits of a calibration profile (planner/calibrate.py writes it)."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != "hcc-cpu-profile":
            raise ValueError("not an hcc CPU profile")
        linear = {cls: (float(fit["a"]), float(fit["b"])) for cls, fit in sorted(data["classes"].items())}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HccError(f"{path}: unreadable CPU calibration profile ({exc})", hint="re-run `hcc devices --calibrate`") from None
    for cls, (a, b) in linear.items():
        if cls not in OP_CLASSES or not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0:
            raise HccError(f"{path}: bad fit for op class {cls!r}: a={a}, b={b}", hint="re-run `hcc devices --calibrate`")
    # Classes the profile lacks borrow the closest measured one: convolutions and recurrences run the same MAC loop
    # nests as matmul; normalisation and data movement stream memory like elementwise ops.
    for missing, donor in (("conv", "matmul"), ("rnn", "matmul"), ("normalization", "elementwise"), ("data", "elementwise")):
        if missing not in linear and donor in linear:
            linear[missing] = linear[donor]
    return replace(spec, linear={**spec.linear, **linear}, source=f"calibrated: {path}")


def _fpga_fabric(part: FpgaPart) -> dict:
    """The DeviceSpec fields of a known part's fabric (hcc.devices holds the figures the FPGA backend uses too)."""
    return {"peak_flops": _fpga_peak(part.dsp, part.clock_hz, part.dsp_width), "dsp": part.dsp, "bram18k": part.bram18k,
            "lut": part.lut, "ff": part.ff, "clock_hz": part.clock_hz, "dsp_width": part.dsp_width}


def _fpga_peak(dsp: int, clock_hz: float, dsp_width: int) -> dict[str, float]:
    """Peak OP/s if every DSP does one multiply-accumulate per cycle (2 ops), at the precisions the FPGA runs.

    The FPGA never computes true fp32: hcc's FPGA backend runs a float subgraph in ap_fixed<16,6> (hls4ml's
    default), so "fp32" and "fp16" mean 16-bit fixed point here (1 DSP per MAC); "int8" packs 2 MACs per DSP.
    """
    per_mac_16 = math.ceil(16 / dsp_width) * math.ceil(16 / 18)
    fixed16 = dsp * clock_hz * 2 / per_mac_16
    return {"fp32": fixed16, "fp16": fixed16, "int8": 2 * fixed16}


def builtin_catalog(profile_path: str | os.PathLike | None = None) -> dict[str, DeviceSpec]:
    """A fresh catalog of the built-in devices, keyed by name."""
    catalog: dict[str, DeviceSpec] = {"cpu": host_cpu_spec(profile_path)}
    gpu_ops, fpga_ops = DEVICE_KINDS["gpu"].supported_ops, DEVICE_KINDS["fpga"].supported_ops
    # NVIDIA A100 SXM4 80GB (NVIDIA A100 Tensor Core GPU datasheet, 2021): FP32 19.5 TFLOPS (SIMT),
    # FP16 Tensor 312 TFLOPS dense, INT8 Tensor 624 TOPS dense, HBM2e 2,039 GB/s, 80 GB, 400 W;
    # host link PCIe Gen4 x16 (32 GB/s theoretical per direction, ~25 GB/s reached by cudaMemcpy from pinned memory).
    catalog["gpu:sm_80"] = DeviceSpec(
        name="gpu:sm_80", kind="gpu", description="NVIDIA A100 SXM4 80GB (sm_80, Ampere)",
        peak_flops={"fp32": 19.5e12, "fp16": 312e12, "int8": 624e12}, mem_bandwidth=2039e9, capacity_bytes=80e9,
        link_bandwidth=25e9, link_latency=10e-6, supported_ops=gpu_ops, efficiency=dict(_GPU_EFFICIENCY), mem_efficiency=0.75,
        power_w=400.0,
    )
    # NVIDIA H100 SXM5 80GB (NVIDIA H100 Tensor Core GPU datasheet, 2023): FP32 67 TFLOPS (SIMT),
    # FP16 Tensor 989 TFLOPS dense (1,979 with sparsity), INT8 Tensor 1,979 TOPS dense, HBM3 3.35 TB/s, 80 GB, 700 W;
    # host link PCIe Gen5 x16 (64 GB/s theoretical per direction, ~50 GB/s reached).
    catalog["gpu:sm_90"] = DeviceSpec(
        name="gpu:sm_90", kind="gpu", description="NVIDIA H100 SXM5 80GB (sm_90, Hopper)",
        peak_flops={"fp32": 67e12, "fp16": 989e12, "int8": 1979e12}, mem_bandwidth=3.35e12, capacity_bytes=80e9,
        link_bandwidth=50e9, link_latency=8e-6, supported_ops=gpu_ops, efficiency=dict(_GPU_EFFICIENCY), mem_efficiency=0.75,
        power_w=700.0,
    )
    # AMD/Xilinx Alveo U250 (DS962 Alveo U200/U250 data sheet; XCU250 UltraScale+): 12,288 DSP48E2, 5,376 BRAM18K
    # (2,688 BRAM36), 1,728K LUT, 3,456K FF; 64 GB DDR4 in 4 channels (77 GB/s); 225 W max; PCIe Gen3 x16
    # (15.75 GB/s theoretical, ~12 GB/s reached by XDMA); kernels typically close timing at 300 MHz.
    catalog["fpga:xcu250"] = DeviceSpec(
        name="fpga:xcu250", kind="fpga", description="AMD Alveo U250 (XCU250, UltraScale+ DSP48E2)",
        mem_bandwidth=77e9, capacity_bytes=64e9, link_bandwidth=12e9, link_latency=20e-6, supported_ops=fpga_ops,
        efficiency=dict(_FPGA_EFFICIENCY), mem_efficiency=0.8, power_w=225.0, **_fpga_fabric(FPGA_PARTS["fpga:xcu250"]),
    )
    # Xilinx Zynq UltraScale+ XCZU7EV on the ZCU104 board (DS891 Zynq UltraScale+ MPSoC overview): 1,728 DSP48E2,
    # 312 BRAM36 = 624 BRAM18K, 230,400 LUT, 460,800 FF; PS DDR4 2 GB 64-bit at 2400 MT/s (19.2 GB/s); host is the
    # on-chip ARM, link = AXI HP ports (~10 GB/s reached); ~200 MHz is a typical HLS clock there.
    catalog["fpga:xczu7ev"] = DeviceSpec(
        name="fpga:xczu7ev", kind="fpga", description="Xilinx Zynq UltraScale+ XCZU7EV (ZCU104 board)",
        mem_bandwidth=19.2e9, capacity_bytes=2e9, link_bandwidth=10e9, link_latency=10e-6, supported_ops=fpga_ops,
        efficiency=dict(_FPGA_EFFICIENCY), mem_efficiency=0.7, power_w=15.0, **_fpga_fabric(FPGA_PARTS["fpga:xczu7ev"]),
    )
    return catalog


# ---------------------------------------------------------------------------------------------------- device files

_FLOAT_FIELDS = {"link_latency", "mem_efficiency", "clock_hz", "power_w"}
_INT_FIELDS = {"dsp", "bram18k", "lut", "ff", "dsp_width"}
_BYTES_FIELDS = {"capacity_bytes": "capacity", "mem_bandwidth": "mem_bandwidth", "link_bandwidth": "link_bandwidth"}


def _pair_dict(value, path: str, key: str) -> dict[str, tuple[float, float]]:
    if not isinstance(value, dict):
        raise HccError(f"{path}: device {key!r}: expected a table of op class = [x, y]")
    out = {}
    for cls, pair in sorted(value.items()):
        if cls not in OP_CLASSES:
            raise HccError(f"{path}: device {key!r}: unknown op class {cls!r} (known: {', '.join(OP_CLASSES)})")
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)):
            raise HccError(f"{path}: device {key!r}: {cls} must be a pair of numbers, e.g. [0.3, 5e-6]")
        out[cls] = (float(pair[0]), float(pair[1]))
    return out


def _spec_from_table(name: str, table: dict, catalog: dict[str, DeviceSpec], path: str) -> DeviceSpec:
    known_keys = {"base", "kind", "description", "peak_flops", "mem_bandwidth", "capacity", "link_bandwidth", "link_latency",
                  "supported_ops", "efficiency", "linear", "mem_efficiency", "power_w"} | _INT_FIELDS | {"clock_hz"}
    unknown = sorted(set(table) - known_keys)
    if unknown:
        raise HccError(f"{path}: device {name!r}: unknown key(s) {', '.join(unknown)}", hint="docs/devices.md lists the keys")
    base_name = table.get("base") or (name if name in catalog else None)
    if base_name is not None and base_name not in catalog:
        raise HccError(f"{path}: device {name!r}: base {base_name!r} is not a known device ({', '.join(sorted(catalog))})")
    values: dict = {}
    if base_name is not None:
        base = catalog[base_name]
        values = {f.name: getattr(base, f.name) for f in fields(DeviceSpec)}
        values["peak_flops"] = dict(base.peak_flops)
        values["efficiency"] = dict(base.efficiency)
        values["linear"] = dict(base.linear)
    else:
        missing = [k for k in ("kind", "peak_flops", "mem_bandwidth", "capacity", "link_bandwidth") if k not in table]
        if missing:
            raise HccError(f"{path}: new device {name!r} needs {', '.join(missing)} (or `base = \"<known device>\"`)")
        values["efficiency"] = {}
        values["link_latency"] = 10e-6
    values["name"] = name
    values["source"] = f"file: {path}"
    kind = table.get("kind", values.get("kind"))
    if kind not in KINDS:
        raise HccError(f"{path}: device {name!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not name.startswith(kind) or (name != kind and not name.startswith(kind + ":")):
        raise HccError(f"{path}: device name {name!r} must be '{kind}' or start with '{kind}:' (e.g. '{kind}:mydevice')")
    values["kind"] = kind
    values["description"] = str(table.get("description", values.get("description", name)))
    if "peak_flops" in table:
        if not isinstance(table["peak_flops"], dict):
            raise HccError(f"{path}: device {name!r}: peak_flops must be a table, e.g. {{ fp32 = 67e12 }}")
        values["peak_flops"] = {**values.get("peak_flops", {}), **{k: float(v) for k, v in table["peak_flops"].items()}}
    for attr, key in _BYTES_FIELDS.items():
        if key in table:
            parse = parse_bytes if attr == "capacity_bytes" else parse_rate
            values[attr] = parse(table[key], f"{path}: device {name!r}: {key}")
    for key in _FLOAT_FIELDS:
        if key in table:
            values[key] = float(table[key])
    for key in _INT_FIELDS:
        if key in table:
            values[key] = int(table[key])
    if "efficiency" in table:
        values["efficiency"] = {**values["efficiency"], **_pair_dict(table["efficiency"], path, name)}
    if "linear" in table:
        values["linear"] = {**values.get("linear", {}), **_pair_dict(table["linear"], path, name)}
    if "supported_ops" in table:
        ops = table["supported_ops"]
        if ops == "all":
            values["supported_ops"] = None
        else:
            if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
                raise HccError(f"{path}: device {name!r}: supported_ops must be a list of op types or \"all\"")
            bad = sorted(set(ops) - SUPPORTED_OPS)
            if bad:
                raise HccError(f"{path}: device {name!r}: supported_ops names ops hcc does not support: {', '.join(bad)}")
            values["supported_ops"] = frozenset(ops)
    if kind == "fpga" and not all(values.get(k) for k in ("dsp", "bram18k", "clock_hz", "dsp_width")):
        raise HccError(f"{path}: FPGA device {name!r} needs dsp, bram18k, clock_hz and dsp_width")
    if kind == "fpga" and "peak_flops" not in table and base_name is None:
        values["peak_flops"] = _fpga_peak(values["dsp"], values["clock_hz"], values["dsp_width"])
    return DeviceSpec(**values)


def load_device_file(path: str | os.PathLike, catalog: dict[str, DeviceSpec] | None = None) -> dict[str, DeviceSpec]:
    """Read a TOML device file and return the catalog with its devices added or overridden (input not modified).

    Format (one table per device; numbers or strings with units; see docs/devices.md):

        [device."gpu:rtx4090"]            # a new device, derived from a known one
        base = "gpu:sm_90"
        description = "GeForce RTX 4090"
        peak_flops = { fp32 = 82.6e12, fp16 = 165e12 }
        mem_bandwidth = "1008GB/s"
        capacity = "24GB"
        link_bandwidth = "25GB/s"
        link_latency = 10e-6
        efficiency = { matmul = [0.4, 5e-6] }   # op class = [fraction of peak, fixed overhead s]

        [device."fpga:xcu250"]            # an override of a built-in: only the keys given change
        clock_hz = 250e6

    Keys: base, kind, description, peak_flops, mem_bandwidth, capacity, link_bandwidth, link_latency, mem_efficiency,
    supported_ops (list or "all"), efficiency, linear (op class = [a s/work, b s]), power_w, and for FPGAs dsp, bram18k,
    lut, ff, clock_hz, dsp_width.
    """
    path = os.fspath(path)
    catalog = dict(catalog) if catalog is not None else builtin_catalog()
    data = read_toml(path, "device file")
    unknown = sorted(set(data) - {"device"})
    if unknown or not isinstance(data.get("device", {}), dict):
        raise HccError(f"{path}: expected only [device.\"NAME\"] tables, found {', '.join(unknown) or 'a non-table device key'}")
    for name, table in sorted(data.get("device", {}).items()):
        if not isinstance(table, dict):
            raise HccError(f"{path}: device {name!r} must be a table")
        catalog[name] = _spec_from_table(name, table, catalog, path)
    return catalog


# ---------------------------------------------------------------------------------------------------- device mixes

def resolve_spec(name: str, catalog: dict[str, DeviceSpec]) -> DeviceSpec:
    """A catalog entry by name, or by kind alone ("gpu" -> gpu:sm_90); HccError listing known devices otherwise."""
    key = name.strip()
    if key in catalog:
        return catalog[key]
    default = DEVICE_KINDS[key].default_device if key in DEVICE_KINDS else None  # a kind alone names its default device
    if default in catalog:
        return catalog[default]
    raise HccError(f"unknown device {name!r}; known devices: {', '.join(sorted(catalog))}",
                   hint="add it with a device file (docs/devices.md), or use a kind alone: cpu, gpu, fpga")


# More instances than any single host holds: the placement work grows with devices x ops (and pairs of devices for
# transfers), so a typo such as 100000xgpu would run for minutes instead of answering.
MAX_DEVICE_INSTANCES = 64


def parse_device_mix(text: str, catalog: dict[str, DeviceSpec] | None = None) -> list[DeviceInstance]:
    """'4xgpu:sm_90+2xfpga:xcu250+cpu' (also ',' separated, 'N*' or 'Nx' counts) -> device instances.

    The host CPU is always present as `cpu#0` (added when not named; it cannot be repeated). Instances come in a
    fixed order: the CPU first, then the other devices in the order named, numbered `#0..#N-1` per device name.
    """
    catalog = catalog if catalog is not None else builtin_catalog()
    counts: dict[str, int] = {}
    order: list[str] = []
    items = [p for p in re.split(r"[+,]", text) if p.strip()]
    if not items:
        raise HccError(f"empty device list {text!r}", hint="e.g. --devices cpu,gpu:sm_90 or 4xgpu:sm_90+cpu")
    for item in items:
        match = re.fullmatch(r"\s*(?:(\d+)\s*[x*]\s*)?([A-Za-z][\w:.\-]*)\s*", item)
        if not match:
            raise HccError(f"cannot read device {item!r} in {text!r}", hint="write COUNTxNAME, e.g. 4xgpu:sm_90")
        count = int(match.group(1) or 1)
        if count < 1:
            raise HccError(f"device {item!r}: the count must be at least 1")
        spec = resolve_spec(match.group(2), catalog)
        if spec.name not in counts:
            order.append(spec.name)
            counts[spec.name] = 0
        counts[spec.name] += count
    if sum(counts.values()) > MAX_DEVICE_INSTANCES:
        raise HccError(f"{text!r}: {sum(counts.values())} devices; the planner places on at most {MAX_DEVICE_INSTANCES}",
                       hint="plan for a node or a rack at a time, e.g. 8xgpu:sm_90")
    cpus = [n for n in order if catalog[n].kind == "cpu"]
    if len(cpus) > 1 or (cpus and counts[cpus[0]] > 1):
        raise HccError(f"{text!r}: the host CPU is one device; name it once (or leave it out: it is always present)")
    host = cpus[0] if cpus else "cpu"
    if host not in catalog:
        raise HccError("the catalog has no host CPU entry 'cpu'")
    instances = [DeviceInstance(f"{host}#0", catalog[host])]
    for name in order:
        if name == host:
            continue
        instances.extend(DeviceInstance(f"{name}#{k}", catalog[name]) for k in range(counts[name]))
    return instances


def parse_device_list(text: str, catalog: dict[str, DeviceSpec] | None = None) -> list[DeviceInstance]:
    """'cpu,gpu:sm_90,fpga:xcu250' -> instances; same grammar as `parse_device_mix` (counts allowed)."""
    return parse_device_mix(text, catalog)


def describe_catalog(catalog: dict[str, DeviceSpec]) -> str:
    """A table of the catalog for `hcc devices`."""
    lines = [f"{'device':<16} {'fp32 peak':>11} {'mem BW':>10} {'memory':>9} {'link':>9}  description"]
    for name in sorted(catalog):
        s = catalog[name]
        lines.append(f"{name:<16} {s.peak('fp32') / 1e12:>8.2f} TF {s.mem_bandwidth / 1e9:>6.0f} GB/s {s.capacity_bytes / 1e9:>6.1f} GB "
                     f"{s.link_bandwidth / 1e9:>5.0f} GB/s  {s.description}")
        if s.kind == "fpga":
            lines.append(f"{'':<16} fabric: {s.dsp} DSP, {s.bram18k} BRAM18K, {s.lut} LUT, {s.ff} FF, {s.clock_hz / 1e6:.0f} MHz")
        lines.append(f"{'':<16} figures: {s.source}")
    return "\n".join(lines)
