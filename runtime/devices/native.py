"""The one loader of hcc's native shared objects: CPU subgraphs (cpu.py), FPGA C simulations (fpga_csim.py, and the
FPGA backend's bit-exactness self-check), and the tests' helper libraries.

Why one: the three copies loaded with different dlopen flags and reported a missing file, a missing symbol or a
missing C++ runtime each their own way. Here: RTLD_LOCAL (a library's symbols do not leak into the next one: two
bundles' `sg0` entries never collide) and RTLD_NOW (an unresolved symbol fails at load, not mid-run), one
`hcc: error:` line naming the file, and the `bare-ptr-v1` entry (every argument a pointer, no result) bound alike.
ctypes only: part of the deployable runtime.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path


def load_library(path: str | os.PathLike, what: str = "the shared object", hint: str | None = None) -> ctypes.CDLL:
    """dlopen `path` (RTLD_LOCAL | RTLD_NOW); an HccError naming it and `what` it is when that fails. A path that this
    process already mapped when it named another file (a bundle recompiled in place, then loaded again) is loaded
    through a fresh copy: glibc matches loaded objects by the name first and would return the old code."""
    from hcc.errors import HccError

    name = os.fspath(path)
    try:
        if not _renamed_since_loaded(name):
            return ctypes.CDLL(name, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        with tempfile.TemporaryDirectory(prefix="hcc-reload-") as folder:  # the mapping outlives the file
            fresh = Path(folder) / Path(name).name
            shutil.copyfile(name, fresh)
            return ctypes.CDLL(str(fresh), mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError as exc:
        raise HccError(f"{path}: cannot load {what}: {exc}", hint=hint) from None


def _renamed_since_loaded(name: str) -> bool:
    """Whether dlopen(name) would return an object this process loaded from another file (glibc finds it by name:
    RTLD_NOLOAD says so; the file it was mapped from, found at its load address in /proc/self/maps, has another
    inode than the file at `name` now; hcc compile moves the old bundle aside before deleting it, so the mapping's
    path says nothing). False where any of that cannot be read: the plain dlopen then."""
    try:
        handle = ctypes.CDLL(name, mode=os.RTLD_LOCAL | os.RTLD_NOW | os.RTLD_NOLOAD)._handle
    except OSError:
        return False  # not loaded under this name
    try:
        libc = ctypes.CDLL(None)
        link_map = ctypes.c_void_p()
        if libc.dlinfo(ctypes.c_void_p(handle), 2, ctypes.byref(link_map)) != 0 or not link_map.value:  # RTLD_DI_LINKMAP
            return False
        base = ctypes.c_size_t.from_address(link_map.value).value  # link_map.l_addr
        inode = os.stat(name).st_ino
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                low, high = (int(v, 16) for v in fields[0].split("-"))
                if low <= base < high and len(fields) >= 5:
                    return int(fields[4]) != inode
    except (OSError, AttributeError, ValueError):
        return False
    return False


def entry_function(lib: ctypes.CDLL, entry: str, arity: int, path: str | os.PathLike | Path):
    """The `bare-ptr-v1` entry `void entry(void *arg0, ..., void *argN-1)` of `lib`; HccError when it is missing."""
    from hcc.errors import HccError

    try:
        fn = getattr(lib, entry)
    except AttributeError:
        raise HccError(f"{path}: entry symbol {entry!r} not found") from None
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * arity
    return fn
