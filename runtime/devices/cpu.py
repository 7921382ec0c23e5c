"""CPU driver: runs a subgraph's shared object through ctypes (bare-pointer ABI: inputs, then outputs).

The per-call cost matters for small models (a LeNet runs in about 100 us): numpy's `array.ctypes.data` costs about
3 us per argument, so weights' pointers are converted once (`bind_constants`) and the others through a zero-length
ctypes view of the buffer (about 1 us, and it checks C-contiguity and, for outputs, writability on the way).
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from hcc.artifacts.manifest import ArtifactRecord, SubgraphRecord
from hcc.devices import isa_entry, packed_entry
from hcc.errors import HccError
from hcc.runtime.bundle import safe_path
from hcc.runtime.devices.base import Executable, HostMemoryDevice
from hcc.runtime.devices.native import entry_function, load_library

# CPU feature flags (/proc/cpuinfo names) that each code-generation target needs.
TARGET_FEATURES = {
    "x86-64": set(),
    "x86-64-v2": {"sse4_2", "popcnt", "ssse3"},
    "x86-64-v3": {"sse4_2", "popcnt", "avx", "avx2", "fma", "bmi2", "movbe", "f16c"},
    "x86-64-v4": {"sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"},
}


_NO_BYTES = ctypes.c_char * 0  # a zero-length view: any buffer, including an empty one, fits


def address(array: np.ndarray, writable: bool) -> int:
    """The data pointer of a C-contiguous array; `writable`: it must also be writable (an output)."""
    try:
        return ctypes.addressof(_NO_BYTES.from_buffer(array))
    except TypeError:  # not C-contiguous, or read-only
        pass
    if writable or not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        what = "outputs must be writable" if writable else "inputs must be"
        raise HccError(f"internal: CPU {what} C-contiguous numpy arrays") from None
    return array.ctypes.data  # a read-only input: inputs are only read


def _profile_nodes(path: Path) -> list[str]:
    """The node names the code's profile marks index (backends/cpu/runtime/profile.c), read from the file."""
    from hcc.runtime.elf import read_exports

    raw = read_exports(path, ("hcc_prof_nodes",)).objects.get("hcc_prof_nodes", b"")
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0") if raw.strip(b"\0") else []


def host_cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# What the micro-kernels' bf16 entries need to run bfloat16 tiles (else they compute in fp32).
BF16_TILE_FLAGS = frozenset({"amx_tile", "amx_bf16"})
# ... or, without tiles, AVX512-BF16's dot products (vdpbf16ps: plain bf16 only; ukernels.c dp_ready).
BF16_DOT_FLAGS = frozenset({"avx512f", "avx512_bf16"})


def has_bf16_tiles() -> bool:
    """Whether this CPU runs `--cpu-precision bf16` GEMMs and convolutions on AMX tiles."""
    return BF16_TILE_FLAGS <= host_cpu_flags()


def has_bf16_dot() -> bool:
    """Whether this CPU runs `--cpu-precision bf16` on AVX512-BF16 dot products (where it has no AMX tiles)."""
    return BF16_DOT_FLAGS <= host_cpu_flags()


# ... and without tiles, int8 GEMMs on AVX512-VNNI (vpdpbusd; ukernels.c vnni_ready).
INT8_DOT_FLAGS = frozenset({"avx512f", "avx512_vnni"})


def cpu_low_precisions() -> tuple[str, ...]:
    """The precisions below fp32 that this CPU's kernels run (the CPU's --cpu-precision choices besides fp32): bf16
    and bf16x3 on AMX bf16 tiles, plus int8 GEMMs (auto only) on AMX-INT8; without tiles, bf16 on AVX512-BF16 dot
    products (bf16x3's three products there are slower than fp32) and int8 on AVX512-VNNI; none elsewhere (the entries
    would compute in fp32)."""
    if has_bf16_tiles():
        return ("bf16", "bf16x3", "int8") if has_int8_tiles() else ("bf16", "bf16x3")
    return (("bf16",) if has_bf16_dot() else ()) + (("int8",) if INT8_DOT_FLAGS <= host_cpu_flags() else ())


def bf16_kernel_name() -> str:
    """What runs this CPU's bf16 products, for messages and reports."""
    return "AMX tiles" if has_bf16_tiles() else "AVX512-BF16 dot products" if has_bf16_dot() else "none (fp32)"


def int8_kernel_name() -> str:
    """What runs this CPU's int8 GEMMs (--cpu-precision auto), for messages and reports."""
    low = cpu_low_precisions()
    return "none (fp32)" if "int8" not in low else "AMX-INT8 tiles" if has_bf16_tiles() else "AVX512-VNNI"


# ... and its int8 GEMM entry to run int8 tiles (ukernels.c amx_int8_ready also asks the kernel for the tile state).
INT8_TILE_FLAGS = frozenset({"amx_tile", "amx_int8"})


def has_int8_tiles() -> bool:
    """Whether this CPU runs int8 GEMMs (--cpu-precision auto's int8 choice) on AMX tiles."""
    return has_bf16_tiles() and INT8_TILE_FLAGS <= host_cpu_flags()


def check_target_cpu(target: str) -> None:
    """Refuse code the host cannot execute (an illegal instruction would kill the process instead)."""
    needed = TARGET_FEATURES.get(target)
    flags = host_cpu_flags()
    if needed and flags and not needed <= flags:
        raise HccError(f"this bundle's CPU code targets {target}, but this CPU lacks {', '.join(sorted(needed - flags))}; "
                       "recompile with --target-cpu x86-64-v2")


def widest_entry(entry: str, variants: list[str], flags: set[str]) -> tuple[str, str | None]:
    """(symbol, ISA) of the widest ISA variant of `entry` this CPU runs (flags: /proc/cpuinfo's), else (entry, None):
    a bundle's generated code for its baseline target, plus copies for wider ones (devices.WIDER_ISA_VARIANTS)."""
    for isa in reversed(variants):
        needed = TARGET_FEATURES.get(isa)
        if needed is not None and flags and needed <= flags:
            return isa_entry(entry, isa), isa
    return entry, None


class CpuExecutable(Executable):
    def __init__(self, path: Path, entry: str, arity: int, threads: int = 0, profile: bool = False, variants: list[str] | None = None):
        """`variants`: the wider ISAs the artifact also holds its code for (its meta's isa_variants): the widest one
        the CPU runs is bound instead of `entry` (`isa` says which; None: the baseline)."""
        self._lib = load_library(path)
        # The bundle's own pool (runtime/threadpool.c) is one per loaded .so, and two sessions of one bundle share the
        # .so: each run sets its session's count again when another session changed it.
        self._set_threads = getattr(self._lib, "hcc_set_num_threads", None)
        self._get_threads = getattr(self._lib, "hcc_get_num_threads", None)
        self._threads = 0
        if self._set_threads is not None and self._get_threads is not None:
            self._set_threads.argtypes, self._get_threads.restype = [ctypes.c_int], ctypes.c_int
            self._set_threads(threads)
            self._threads = self._get_threads()
        entry, self.isa = widest_entry(entry, list(variants or []), host_cpu_flags())
        self._fn = entry_function(self._lib, entry, arity, path)
        self._arity = arity
        # The entry's packed companion (devices.packed_entry, bundles from 2026-12 on) takes the argument pointers as
        # one array: a call then converts one ctypes argument instead of `arity`.
        try:
            self._packed = getattr(self._lib, packed_entry(entry))
        except AttributeError:  # an older bundle
            self._packed = None
        self._args_type = ctypes.c_void_p * arity
        if self._packed is not None:
            self._packed.argtypes, self._packed.restype = [self._args_type], None
        self._template = bytes(self._args_type())
        self._bound: list[Any] = [None] * arity  # per argument position: the bound constant (or None) and its pointer
        self._bound_ptrs: list[int] = [0] * arity
        self._unbound: list[int] = list(range(arity))  # the positions run_bound fills: other inputs, then outputs
        self._profile_nodes = _profile_nodes(path) if profile else []
        if self._profile_nodes:
            self._lib.hcc_profile_enable.argtypes = [ctypes.c_int]
            self._lib.hcc_profile_enable(1)
            self._lib.hcc_profile_take.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int64]
            self._lib.hcc_profile_take.restype = ctypes.c_int64

    def profile(self) -> dict[str, float]:
        """Seconds per ONNX node since the last call (empty unless loaded with profile=True)."""
        if not self._profile_nodes:
            return {}
        times = (ctypes.c_double * len(self._profile_nodes))()
        self._lib.hcc_profile_take(times, len(self._profile_nodes))
        return dict(zip(self._profile_nodes, times))

    def bind_constants(self, constants: dict[int, Any]) -> None:
        self._bound = [constants.get(i) for i in range(self._arity)]
        self._bound_ptrs = [address(a, False) if a is not None else 0 for a in self._bound]
        self._unbound = [i for i, a in enumerate(self._bound) if a is None]
        self._template = bytes(self._args_type(*self._bound_ptrs))

    def run_bound(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        # Only the unbound arguments' pointers are converted: a keyword spotter's call has 21 arguments, 19 of them
        # weights, and the per-argument checks of `run` cost about 2 us of its 60.
        if len(inputs) + len(outputs) != len(self._unbound):
            raise HccError(f"internal: {len(inputs) + len(outputs)} unbound arguments for a function with {len(self._unbound)}")
        ptrs = self._args_type.from_buffer_copy(self._template)  # the bound pointers; a fresh array per call
        slots = self._unbound
        for slot, a in zip(slots, inputs):
            ptrs[slot] = address(a, False)
        for slot, a in zip(slots[len(inputs):], outputs):
            ptrs[slot] = address(a, True)
        self._call(ptrs)

    def _call(self, ptrs) -> None:
        """The entry with every argument's pointer (an array of `arity` pointers), at this session's thread count
        (another session may have changed it)."""
        if self._threads and self._get_threads() != self._threads:
            self._set_threads(self._threads)
        if self._packed is not None:
            self._packed(ptrs)
        else:
            self._fn(*ptrs)

    def run(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        if len(inputs) + len(outputs) != self._arity:
            raise HccError(f"internal: {len(inputs) + len(outputs)} arguments for a function of {self._arity}")
        # A bound constant passed again is known by identity; anything else is converted now.
        args = [p if a is b else address(a, False) for a, b, p in zip(inputs, self._bound, self._bound_ptrs)]
        args += [address(a, True) for a in outputs]
        self._call(self._args_type(*args))


class CpuDevice(HostMemoryDevice):
    kind = "cpu"

    def __init__(self, device: str = "cpu", index: int = 0, target_cpu: str | None = None, threads: int = 0, profile: bool = False):
        """`threads`: threads of the generated code's pool (0: every CPU this process may use); `profile`: time
        every ONNX node (CpuExecutable.profile)."""
        self.device, self.index, self.threads, self.profile = device, index, threads, profile
        if target_cpu:
            check_target_cpu(target_cpu)

    def load(self, bundle: Path, subgraph: SubgraphRecord) -> Executable:
        artifact = next((a for a in subgraph.artifacts if a.kind == "cpu-so"), None) or subgraph.fallback
        if artifact is None or artifact.kind != "cpu-so":
            raise HccError(f"subgraph {subgraph.id} has no CPU artifact")
        return self.load_artifact(bundle, subgraph, artifact)

    def load_artifact(self, bundle: Path, subgraph: SubgraphRecord, artifact: ArtifactRecord) -> Executable:
        return CpuExecutable(safe_path(bundle, artifact.file), artifact.entry, len(subgraph.inputs) + len(subgraph.outputs), self.threads,
                             self.profile, artifact.meta.get("isa_variants"))

