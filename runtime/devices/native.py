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
from pathlib import Path


def load_library(path: str | os.PathLike, what: str = "the shared object", hint: str | None = None) -> ctypes.CDLL:
    """dlopen `path` (RTLD_LOCAL | RTLD_NOW); an HccError naming it and `what` it is when that fails."""
    from hcc.errors import HccError

    try:
        return ctypes.CDLL(os.fspath(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError as exc:
        raise HccError(f"{path}: cannot load {what}: {exc}", hint=hint) from None


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
