"""The support C code linked into every CPU subgraph (backends/cpu/runtime/memref_copy.c): the buffer cache behind
MLIR's allocation hooks hands a freed block back for the next allocation of the same size, 64-byte aligned."""
from __future__ import annotations

import ctypes
import subprocess

import pytest

from hcc.backends.cpu import toolchain
from hcc.runtime.devices.native import load_library


@pytest.fixture(scope="module")
def support(tmp_path_factory):
    so = tmp_path_factory.mktemp("support") / "support.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", str(toolchain.RUNTIME_DIR / "memref_copy.c"), "-o", str(so)], check=True)
    lib = load_library(so, "a test library")
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


STRESS = r"""
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
void hcc_set_num_threads(int n);
typedef struct { atomic_int hits[64]; long job; } Job;
static void mark(void *ctx, int64_t task) { /* a little work, so that workers take tasks too */
  for (volatile int i = 0; i < 300; ++i) {}
  atomic_fetch_add(&((Job *)ctx)->hits[task], 1);
}
/* jobs of 1..64 tasks back to back on the thread count set before (callers on several threads at once);
   returns how many tasks ran other than exactly once */
long stress_here(long jobs) {
  long errors = 0;
  for (long j = 0; j < jobs; ++j) {
    Job job;
    memset(&job, 0, sizeof job);
    int64_t tasks = 1 + (j * 7) % 64;
    hcc_parallel_for(tasks, mark, &job);
    for (int64_t t = 0; t < 64; ++t) errors += atomic_load(&job.hits[t]) != (t < tasks);
  }
  return errors;
}
/* the same jobs on `threads` threads */
long stress(long jobs, int threads) {
  hcc_set_num_threads(threads);
  return stress_here(jobs);
}
"""


@pytest.mark.parametrize("threads", [2, 5, 8])
def test_the_pool_runs_every_task_exactly_once(tmp_path, threads):
    """Back-to-back jobs on more threads than cores (workers are often off their core when a job starts and when it
    ends): every task of every job runs once, and the caller returns only when all have."""
    src = tmp_path / "stress.c"
    src.write_text(STRESS)
    so = tmp_path / "stress.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", str(src), str(toolchain.RUNTIME_DIR / "threadpool.c"), "-o", str(so)],
                   check=True)
    lib = load_library(so, "a test library")
    lib.stress.restype = ctypes.c_long
    assert lib.stress(ctypes.c_long(5000), threads) == 0


def test_callers_on_several_threads_share_the_pool_safely(tmp_path):
    """Two sessions of one bundle (or one session) run from several Python threads at once share the library's one
    pool: a job started while another is running runs in its own calling thread instead of replacing it (before,
    the second job overwrote the first one's tasks: tasks ran twice or never, or a caller waited forever)."""
    import threading

    src = tmp_path / "stress.c"
    src.write_text(STRESS)
    so = tmp_path / "stress.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", str(src), str(toolchain.RUNTIME_DIR / "threadpool.c"), "-o", str(so)],
                   check=True)
    lib = load_library(so, "a test library")
    lib.stress.restype = lib.stress_here.restype = ctypes.c_long
    assert lib.stress(ctypes.c_long(10), 2) == 0  # sets 2 threads and starts the worker
    errors = []
    callers = [threading.Thread(target=lambda: errors.append(lib.stress_here(ctypes.c_long(3000))), daemon=True) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)
    assert not any(caller.is_alive() for caller in callers), "a caller never returned"
    assert errors == [0, 0, 0]


def test_support_objects_are_built_once_and_announced(tmp_path, monkeypatch, capsys):
    """The first compile builds the support objects (announced: it is the first compile's long step), on every CPU
    at once; the next finds them in the cache and says nothing. A failing C file names itself."""
    units = (("memref_copy.c", (), "memref_copy"), ("threadpool.c", (), "threadpool"), ("profile.c", (), "profile"))
    monkeypatch.setattr(toolchain, "SUPPORT_UNITS", units)
    monkeypatch.setattr(toolchain, "_cache_root", lambda: tmp_path)
    first = toolchain.support_objects()
    assert [o.name for o in first] == ["memref_copy.o", "threadpool.o", "profile.o"] and all(o.stat().st_size > 0 for o in first)
    assert "building the CPU support code once (3 C files" in capsys.readouterr().out
    assert toolchain.support_objects() == first
    assert capsys.readouterr().out == ""
    assert not list(first[0].parent.glob("*.tmp.o"))  # each object was written aside, then renamed
    monkeypatch.setattr(toolchain, "SUPPORT_UNITS", units + (("memref_copy.c", ("-fno-such-option-hcc",), "broken"),))
    with pytest.raises(toolchain.HccError, match="compiling memref_copy.c failed"):
        toolchain.support_objects()


def test_concurrent_compiles_share_one_support_build(tmp_path, monkeypatch, capsys):
    """Two compiles starting together (two test workers, two `hcc compile`s) build the objects once: the second
    waits on the lock file and finds them."""
    from concurrent.futures import ThreadPoolExecutor

    units = (("memref_copy.c", (), "memref_copy"), ("threadpool.c", (), "threadpool"))
    monkeypatch.setattr(toolchain, "SUPPORT_UNITS", units)
    monkeypatch.setattr(toolchain, "_cache_root", lambda: tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: toolchain.support_objects(), range(2)))
    assert results[0] == results[1] and all(o.is_file() for o in results[0])
    assert capsys.readouterr().out.count("building the CPU support code once") == 1
