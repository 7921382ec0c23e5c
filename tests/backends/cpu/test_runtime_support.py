"""The support C code linked into every CPU subgraph (backends/cpu/runtime/memref_copy.c): the buffer cache behind
MLIR's allocation hooks hands a freed block back for the next allocation of the same size, 64-byte aligned."""
from __future__ import annotations

import ctypes
import subprocess

import pytest

from hcc.backends.cpu import toolchain


@pytest.fixture(scope="module")
def support(tmp_path_factory):
    so = tmp_path_factory.mktemp("support") / "support.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", str(toolchain.RUNTIME_DIR / "memref_copy.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib._mlir_memref_to_llvm_alloc.restype = ctypes.c_void_p
    lib._mlir_memref_to_llvm_alloc.argtypes = [ctypes.c_size_t]
    lib._mlir_memref_to_llvm_aligned_alloc.restype = ctypes.c_void_p
    lib._mlir_memref_to_llvm_aligned_alloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    lib._mlir_memref_to_llvm_free.argtypes = [ctypes.c_void_p]
    return lib


@pytest.mark.parametrize("size", [1, 2048, 1 << 20])
def test_a_freed_block_is_reused_for_the_same_size(support, size):
    first = support._mlir_memref_to_llvm_alloc(size)
    assert first and first % 64 == 0
    ctypes.memset(first, 7, size)  # the whole block is writable
    support._mlir_memref_to_llvm_free(first)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    decoy = libc.malloc(size + 64)  # would take the block back, had it gone back to malloc
    again = support._mlir_memref_to_llvm_alloc(size)
    libc.free(decoy)
    assert again == first  # a cache hit: no malloc, no page faults
    other = support._mlir_memref_to_llvm_alloc(size + 64)
    assert other != again  # sizes are matched exactly
    support._mlir_memref_to_llvm_free(again)
    support._mlir_memref_to_llvm_free(other)


def test_larger_alignments_bypass_the_cache(support):
    ptr = support._mlir_memref_to_llvm_aligned_alloc(4096, 1000)
    assert ptr and ptr % 4096 == 0
    support._mlir_memref_to_llvm_free(ptr)
    again = support._mlir_memref_to_llvm_aligned_alloc(4096, 1000)
    assert again and again % 4096 == 0
    support._mlir_memref_to_llvm_free(again)
