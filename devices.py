"""Device-kind facts: the one table of what each device kind is, which code serves it and what it accepts.

Why one module: the compiler (worker, backends), the planner (planner/device_catalog.py), the runtime (its driver
table) and the tools all need the same facts -- which backend compiles a `gpu:sm_90` subgraph, which runtime driver
runs it, the artifact kinds and ABI strings the manifest carries, the ONNX ops a kind can run, its precisions and
their golden tolerances, the FPGA parts and GPU architectures hcc targets. Kept in separate tables they drifted (the
planner once scored Sub, Div, Transpose, Pad, ... as impossible on an FPGA that compiles them). This is IREE's
`TARGET_BACKEND_TO_DRIVER` idea: one place, read by everyone.

Stdlib only and importing nothing else from hcc: the deployable runtime (numpy alone) reads it too. Every table is
read-only (`MappingProxyType`, frozen dataclasses): facts, not state. The planner's performance figures (peak
FLOP/s, bandwidths) stay in planner/device_catalog.py: they are predictions, not facts a backend or driver relies on.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# ---------------------------------------------------------------------------------------------------- ABIs

NATIVE_ABI = "bare-ptr-v1"  # a shared object's entry: every argument a pointer to a dense row-major buffer, inputs then outputs
# A CPU subgraph compiled for a baseline ISA also carries its generated code for these wider ones, as extra entries
# `<entry>__<isa with _ for ->` that the runtime binds where the CPU has the ISA (the micro-kernels choose by CPUID
# themselves): the default x86-64-v3 bundle still runs everywhere, and at full width on AVX-512 hosts.
WIDER_ISA_VARIANTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "x86-64": ("x86-64-v4",), "x86-64-v2": ("x86-64-v4",), "x86-64-v3": ("x86-64-v4",)})


def isa_entry(entry: str, isa: str) -> str:
    """The symbol of `entry` compiled for `isa` (WIDER_ISA_VARIANTS)."""
    return f"{entry}__{isa.replace('-', '_')}"


def packed_entry(entry: str) -> str:
    """The companion of a NATIVE_ABI `entry` that takes one pointer to its N argument pointers (`void *args[N]`) and
    calls it: one foreign-function argument per call instead of N (ctypes converts each: about 1 us per 20)."""
    return f"{entry}__packed"


LAUNCH_ABI = "hcc-launch-v1"  # a GPU subgraph's JSON launch table (backends/gpu/launch_table.py), replayed by runtime/devices/cuda.py

# ---------------------------------------------------------------------------------------------------- precisions

# Golden checks per float precision, (rtol, atol): fp32 as the CPU backend reaches it against onnxruntime; fp16
# (11-bit significand) about 1e-3 per op, compounding over a model. Fixed-point (FPGA) and CPU bf16 outputs get
# measured tolerances instead (artifacts/accuracy.py; MEASURED_PRECISIONS).
TOLERANCES: Mapping[str, tuple[float, float]] = MappingProxyType({"fp32": (1e-3, 1e-4), "fp16": (3e-2, 3e-2)})

# Float precisions whose error depends too much on the model for a fixed table: the compiler measures each output's
# error against onnxruntime (golden and held-out inputs) and stores the tolerance it implies.
MEASURED_PRECISIONS = frozenset({"bf16", "bf16x3", "int8"})

FPGA_DEFAULT_PRECISION = "ap_fixed<16,6>"  # hls4ml's default; every FPGA tensor without a configured type gets it


def golden_tolerance(precision: str) -> tuple[float, float]:
    """(rtol, atol) of a float precision; an unknown one (fixed point) gets fp32's, the floor every check starts from."""
    return TOLERANCES.get(precision, TOLERANCES["fp32"])


# ---------------------------------------------------------------------------------------------------- targets

GPU_ARCHS: tuple[str, ...] = ("sm_80", "sm_90")  # cubins in every GPU artifact; the catalog's built-in GPUs
GPU_MIN_COMPUTE_CAPABILITY = (8, 0)  # the PTX targets sm_80 (Ampere): older GPUs cannot run hcc's kernels


@dataclass(frozen=True)
class FpgaPart:
    """One FPGA part hcc knows by name: the AMD part number its HLS projects target, its fabric and the clock
    its kernels are built for. Figures from the data sheets named in planner/device_catalog.py."""

    device: str  # the device name: "fpga:xcu250"
    part: str  # Vitis part number
    dsp: int
    bram18k: int
    lut: int
    ff: int
    clock_hz: float  # the HLS clock target (timing typically closes there)
    dsp_width: int  # wide multiplier port: 27 for DSP48E2 (UltraScale+)

    @property
    def family(self) -> str:
        """The prefix of the part number, also the device's target: "xcu250"."""
        return self.device.partition(":")[2]


FPGA_PARTS: Mapping[str, FpgaPart] = MappingProxyType({
    # AMD/Xilinx Alveo U250 (DS962): 12,288 DSP48E2, 5,376 BRAM18K, 1,728K LUT, 3,456K FF; kernels close at 300 MHz.
    "fpga:xcu250": FpgaPart("fpga:xcu250", "xcu250-figd2104-2L-e", dsp=12288, bram18k=5376, lut=1_728_000, ff=3_456_000,
                            clock_hz=300e6, dsp_width=27),
    # Xilinx Zynq UltraScale+ XCZU7EV on the ZCU104 board (DS891): 1,728 DSP48E2, 624 BRAM18K, 230,400 LUT, 460,800 FF.
    "fpga:xczu7ev": FpgaPart("fpga:xczu7ev", "xczu7ev-ffvc1156-2-e", dsp=1728, bram18k=624, lut=230_400, ff=460_800,
                             clock_hz=200e6, dsp_width=27),
})
FPGA_DEFAULT_PART = FPGA_PARTS["fpga:xcu250"].part
FPGA_DEFAULT_CLOCK_NS = 5.0  # 200 MHz, for a part hcc has no figures of


def fpga_part_by_number(part: str) -> FpgaPart | None:
    """The known part whose part number `part` starts with ("xcu250-figd2104-2L-e", or just "XCU250"), else None."""
    text = part.lower()
    return next((p for p in FPGA_PARTS.values() if text.startswith(p.family)), None)


# ---------------------------------------------------------------------------------------------------- kinds

# ONNX ops the FPGA backend maps to HLS layers (hls4ml-style); it refuses the others up front, naming the node.
# The planner's built-in FPGAs support exactly these (tests/planner/test_device_facts.py keeps it so).
FPGA_SUPPORTED_OPS: frozenset[str] = frozenset(
    "Conv Gemm MatMul Add Sub Mul Div Relu Clip MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization "
    "Flatten Reshape Squeeze Unsqueeze Transpose Identity Dropout Concat Sigmoid Tanh Softmax Pad Constant".split()
)


@dataclass(frozen=True)
class DeviceKind:
    """What one device kind is to hcc: who compiles for it, who runs it, what the manifest says about it."""

    kind: str  # "cpu" | "gpu" | "fpga": the part of a device name before ':'
    backend: str  # module with `compile_subgraph` (the contract in backends/__init__.py)
    driver: tuple[str, str]  # runtime driver: (module, class), constructed as Driver(device, index)
    artifact_kinds: tuple[str, ...]  # ArtifactRecord.kind values its backend writes
    abi: str  # ArtifactRecord.abi of those artifacts
    default_precision: str
    precisions: tuple[str, ...]  # float precisions its backend accepts (TOLERANCES keys); fixed point: ()
    supported_ops: frozenset[str] | None  # ONNX ops it runs; None: every op the frontend accepts (frontend/ops.py)
    default_device: str  # what the kind alone names ("gpu" -> "gpu:sm_90")
    devices: tuple[str, ...]  # built-in device names of this kind
    cpu_fallback: bool  # its subgraphs also carry a CPU artifact, run when the device is missing at run time
    emulator: str = ""  # what runs its artifacts without the hardware ("fpga-csim"), when not a CPU fallback

    @property
    def native(self) -> bool:
        """Its artifacts are shared objects loaded with dlopen (checked against their exports before loading)."""
        return self.abi == NATIVE_ABI


DEVICE_KINDS: Mapping[str, DeviceKind] = MappingProxyType({
    "cpu": DeviceKind(
        kind="cpu", backend="hcc.backends.cpu.backend", driver=("hcc.runtime.devices.cpu", "CpuDevice"),
        artifact_kinds=("cpu-so",), abi=NATIVE_ABI, default_precision="fp32", precisions=("fp32", "bf16", "bf16x3"), supported_ops=None,
        default_device="cpu", devices=("cpu",), cpu_fallback=False,
    ),
    "gpu": DeviceKind(
        kind="gpu", backend="hcc.backends.gpu.backend", driver=("hcc.runtime.devices.cuda", "CudaDevice"),
        artifact_kinds=("cuda-module",), abi=LAUNCH_ABI, default_precision="fp32", precisions=("fp32", "fp16"),
        supported_ops=None, default_device="gpu:sm_90", devices=tuple(f"gpu:{arch}" for arch in GPU_ARCHS), cpu_fallback=True,
    ),
    "fpga": DeviceKind(
        kind="fpga", backend="hcc.backends.fpga.backend", driver=("hcc.runtime.devices.fpga_csim", "FpgaCsimDevice"),
        artifact_kinds=("fpga-csim-so",), abi=NATIVE_ABI, default_precision=FPGA_DEFAULT_PRECISION, precisions=(),
        supported_ops=FPGA_SUPPORTED_OPS, default_device="fpga:xcu250", devices=tuple(FPGA_PARTS), cpu_fallback=True,
        emulator="fpga-csim",
    ),
})
KINDS: tuple[str, ...] = tuple(DEVICE_KINDS)
ARTIFACT_KINDS: tuple[str, ...] = tuple(k for facts in DEVICE_KINDS.values() for k in facts.artifact_kinds)
NATIVE_ARTIFACT_KINDS: tuple[str, ...] = tuple(k for facts in DEVICE_KINDS.values() if facts.native for k in facts.artifact_kinds)


# ---------------------------------------------------------------------------------------------------- device names

@dataclass(frozen=True)
class DeviceName:
    """A device string taken apart: `KIND[:TARGET][#INDEX]` ("cpu", "gpu:sm_90", "fpga:xcu250#1").

    The target is whatever follows the first ':' (an SM architecture, an FPGA family, a user's name from a device
    file); the index numbers instances of one device in a plan ("gpu:sm_90#1")."""

    kind: str
    target: str = ""
    index: int | None = None

    @property
    def name(self) -> str:
        """The device without its instance index: "gpu:sm_90"."""
        return f"{self.kind}:{self.target}" if self.target else self.kind

    @property
    def facts(self) -> DeviceKind | None:
        """The kind's facts, None for a kind hcc does not know."""
        return DEVICE_KINDS.get(self.kind)


def parse_device(text: str) -> DeviceName:
    """Split a device string. No lookup and no error: each caller words its own refusal of an unknown kind or
    target (the compiler an HccError, the runtime a DeviceUnavailable). A '#' not followed by digits alone is
    part of the name, so that a malformed name reaches those refusals rather than a ValueError here."""
    name, sep, index = text.rpartition("#")
    if not (sep and index.isascii() and index.isdigit()):
        name, index = text, ""
    kind, _, target = name.partition(":")
    return DeviceName(kind, target, int(index) if index else None)
