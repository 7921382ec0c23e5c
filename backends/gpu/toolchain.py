"""The pinned CUDA 13.0 toolchain (`cuda-toolkit[nvcc]==13.0.3` wheels): ptxas, libdevice; PTX and cubin inspection.

Stdlib only, so that tests and tools/gpu_check.py can use the PTX/cubin helpers without MLIR.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from hcc.devices import GPU_ARCHS
from hcc.env import read_env
from hcc.errors import HccError

MAX_PTX_VERSION = (9, 0)  # what the CUDA 13.0 ptxas and driver accept (research/hw-toolchains.md B1)
CUBIN_ARCHS = GPU_ARCHS  # every GPU artifact carries a cubin for each
EM_CUDA = 190


@functools.lru_cache(maxsize=None)
def toolkit_root() -> Path:
    """The CUDA toolkit folder: $HCC_CUDA_HOME, else the pip wheels' `nvidia/cu13`, else $CUDA_HOME / /usr/local/cuda."""
    candidates: list[Path] = []
    chosen = read_env().cuda_home
    if chosen:
        candidates.append(Path(chosen))
    try:
        import nvidia  # namespace package from the nvidia-* wheels

        for root in getattr(nvidia, "__path__", []):
            candidates.append(Path(root) / "cu13")
    except ImportError:
        pass
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(Path(os.environ[env]))
    candidates.append(Path("/usr/local/cuda"))
    for root in candidates:
        if (root / "bin" / "ptxas").exists():
            return root
    raise HccError(
        "ptxas not found: the GPU backend needs the CUDA 13.0 toolchain",
        hint='pip install "cuda-toolkit[nvcc]==13.0.3" (or set HCC_CUDA_HOME to a CUDA 13.0 toolkit)',
    )


def ptxas_path() -> Path:
    return toolkit_root() / "bin" / "ptxas"


def libdevice_path() -> Path | None:
    found = sorted((toolkit_root() / "nvvm" / "libdevice").glob("libdevice*.bc"))
    return found[0] if found else None


@functools.lru_cache(maxsize=None)
def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = subprocess.run([str(ptxas_path()), "--version"], capture_output=True, text=True, timeout=60).stdout
        match = re.search(r"release ([\d.]+), (V[\d.]+)", text)
        out["ptxas"] = f"{match.group(1)} ({match.group(2)})" if match else text.strip().splitlines()[-1]
    except (OSError, HccError, subprocess.SubprocessError):
        out["ptxas"] = "unknown"
    try:
        from importlib.metadata import version

        out["mlir"] = f"xtc-mlir-python-bindings {version('xtc-mlir-python-bindings')} (NVPTX backend in-process)"
        out["cuda-toolkit"] = version("cuda-toolkit")
    except Exception:
        pass
    lib = None
    try:
        lib = libdevice_path()
    except HccError:
        pass
    out["libdevice"] = lib.name if lib else "none"
    return out


# -- ptxas -----------------------------------------------------------------------------------------------------------
@dataclass
class KernelResources:
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack_bytes: int = 0
    shared_bytes: int = 0
    constant_bytes: int = 0
    barriers: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_FUNC_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")


def parse_ptxas_verbose(text: str) -> dict[str, KernelResources]:
    """`ptxas -v` stderr -> resources per kernel."""
    result: dict[str, KernelResources] = {}
    current: KernelResources | None = None
    for line in text.splitlines():
        match = _ENTRY.search(line)
        if match:
            current = result.setdefault(match.group(1), KernelResources())
            continue
        if current is None:
            continue
        match = _FUNC_PROPS.search(line)
        if match:
            current.stack_bytes, current.spill_stores, current.spill_loads = (int(g) for g in match.groups())
        match = _USED.search(line)
        if match:
            current.registers = int(match.group(1))
            for amount, space in re.findall(r"(\d+) bytes (smem|cmem\[0\])", line):
                if space == "smem":
                    current.shared_bytes = int(amount)
                else:
                    current.constant_bytes = int(amount)
            barrier = re.search(r"used (\d+) barriers", line)
            if barrier:
                current.barriers = int(barrier.group(1))
    return result


def assemble(ptx_path: Path, arch: str, cubin_path: Path, extra: list[str] | None = None) -> dict[str, KernelResources]:
    """ptxas -arch=<arch> -v: PTX -> cubin; returns the per-kernel resource report. Raises HccError on failure."""
    cmd = [str(ptxas_path()), f"-arch={arch}", "-v", "-O3", *(extra or []), str(ptx_path), "-o", str(cubin_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HccError(f"GPU backend: running ptxas failed: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise HccError(f"GPU backend: ptxas -arch={arch} rejected {ptx_path.name} (exit {proc.returncode}):\n{tail}")
    return parse_ptxas_verbose(proc.stderr + proc.stdout)


# -- PTX / cubin inspection ------------------------------------------------------------------------------------------
@dataclass
class PtxEntry:
    name: str
    params: list[str]  # PTX parameter types: "u64", "f32", "b16", ... ('.ptr' qualifiers dropped)


def ptx_version(ptx: str) -> tuple[int, int]:
    match = re.search(r"^\s*\.version\s+(\d+)\.(\d+)", ptx, re.M)
    if not match:
        raise ValueError("PTX has no .version directive")
    return int(match.group(1)), int(match.group(2))


def ptx_target(ptx: str) -> str:
    match = re.search(r"^\s*\.target\s+([\w,\s]+?)\s*$", ptx, re.M)
    if not match:
        raise ValueError("PTX has no .target directive")
    return match.group(1).split(",")[0].strip()


def ptx_entries(ptx: str) -> list[PtxEntry]:
    """Every `.entry` with its parameter types, in file order."""
    entries = []
    for match in re.finditer(r"\.entry\s+([\w$]+)\s*\((.*?)\)", ptx, re.S):
        params = []
        for decl in match.group(2).split(","):
            decl = decl.strip()
            if not decl:
                continue
            pm = re.match(r"\.param\s+\.(\w+)", decl)
            if not pm:
                raise ValueError(f"unexpected PTX parameter declaration {decl!r} in {match.group(1)}")
            params.append(pm.group(1))
        entries.append(PtxEntry(match.group(1), params))
    return entries


def elf_machine(data: bytes) -> int:
    """e_machine of an ELF image (190 = EM_CUDA for a cubin); raises ValueError for a non-ELF."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    little = data[5] == 1
    return struct.unpack_from("<H" if little else ">H", data, 18)[0]


def elf_section_names(data: bytes) -> list[str]:
    """Section names of a 64-bit little-endian ELF (cubins are)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def section(i: int) -> tuple[int, int, int]:
        base = e_shoff + i * e_shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, base)
        return name, offset, size
    _n, str_off, str_size = section(e_shstrndx)
    strtab = data[str_off : str_off + str_size]
    names = []
    for i in range(e_shnum):
        name_off = section(i)[0]
        end = strtab.find(b"\0", name_off)
        names.append(strtab[name_off:end].decode("ascii", "replace"))
    return names


def ptx_param_kind(ptx_type: str) -> str:
    """PTX parameter type -> the launch table's parameter kind family (for consistency checks)."""
    return {"u64": "64", "s64": "64", "b64": "64", "f64": "f64", "u32": "32", "s32": "32", "b32": "32", "f32": "f32",
            "u16": "16", "s16": "16", "b16": "16", "f16": "16", "u8": "8", "s8": "8", "b8": "8"}.get(ptx_type, ptx_type)


TABLE_PARAM_FAMILY = {"ptr": "64", "i64": "64", "i32": "32", "i16": "16", "i8": "8", "f32": "f32", "f64": "f64", "f16": "16"}


def which_cc() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")
