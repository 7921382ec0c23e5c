"""g++ and the ap_types headers: compile the csim shared object and testbenches.

The Xilinx ap_int/ap_fixed headers (Apache-2.0) come from the da4ml wheel (research/hw-toolchains.md A1); they are
located without importing da4ml (whose Python dependencies are not installed).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from hcc.env import read_env
from hcc.errors import HccError

# -Wall -Werror works with these three: the headers warn through inlining, and loop labels are unused in g++.
WARNING_FLAGS = ["-Wall", "-Werror", "-Wno-uninitialized", "-Wno-maybe-uninitialized", "-Wno-unused-label", "-Wno-unknown-pragmas"]
BASE_FLAGS = ["-std=c++17", "-Wno-unknown-pragmas", "-Wno-unused-label"]


def ap_types_dir() -> Path:
    """The folder holding ap_fixed.h: $HCC_AP_TYPES, else the da4ml wheel's headers."""
    chosen = read_env().ap_types
    candidates = [Path(chosen)] if chosen else []
    spec = importlib.util.find_spec("da4ml")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "codegen" / "hls" / "source" / "ap_types" / "include")
            candidates.append(Path(loc) / "codegen" / "hls" / "source" / "ap_types")
    for c in candidates:
        if (c / "ap_fixed.h").is_file():
            return c
    raise HccError("the FPGA backend needs Xilinx's ap_fixed headers for its C simulation and none were found",
                   hint='install them with `pip install --no-deps "da4ml==0.6.0"` (or set HCC_AP_TYPES to a folder holding ap_fixed.h)')


def compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise HccError("the FPGA backend needs a C++ compiler (g++) to build its bit-accurate C simulation", hint="apt-get install g++")
    return cxx


def compile_cpp(sources: list[Path], output: Path, *, shared: bool, include: list[Path], extra: list[str] | None = None,
                opt: str = "-O2", timeout: float = 900) -> None:
    cmd = [compiler(), opt, *BASE_FLAGS, *(extra or [])]
    if shared:
        cmd += ["-fPIC", "-shared", "-pthread"]
    cmd += ["-isystem", str(ap_types_dir())]
    for inc in include:
        cmd += ["-I", str(inc)]
    cmd += [str(s) for s in sources] + ["-o", str(output)]
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HccError(f"g++ took more than {timeout:.0f}s to compile {sources[0].name}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise HccError(f"g++ failed to compile the FPGA C simulation ({' '.join(s.name for s in sources)}):\n{tail}")


def version() -> str:
    try:
        out = subprocess.run([compiler(), "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.TimeoutExpired, HccError):
        return "unavailable"
