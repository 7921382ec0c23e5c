"""The support C code linked into every CPU subgraph (backends/cpu/runtime/): the buffer cache behind MLIR's
allocation hooks hands a freed block back for the next allocation of the same size, 64-byte aligned; the pool runs
every task once; the OpenMP entry points of openmp_abi.c split a worksharing loop so that each iteration runs once."""
from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest

from hcc.backends.cpu import toolchain
from hcc.runtime.devices.native import load_library


@pytest.fixture(scope="module")
def support(tmp_path_factory):
    so = tmp_path_factory.mktemp("support") / "support.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", f"-DPARALLEL_COPY_BYTES={toolchain.PARALLEL_COPY_BYTES}",
                    str(toolchain.RUNTIME_DIR / "memref_copy.c"),
                    str(toolchain.RUNTIME_DIR / "threadpool.c"), "-o", str(so)], check=True)
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


# A microtask as LLVM's OpenMPIRBuilder outlines a static worksharing loop: it asks __kmpc_for_static_init_8u for its
# block of the normalised iterations 0..trip-1 and runs them (here: counts each one).
HARNESS = r"""
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
void __kmpc_fork_call(void *loc, int32_t argc, void (*fn)(int32_t *, int32_t *, ...), ...);
void __kmpc_for_static_init_8u(void *loc, int32_t gtid, int32_t schedtype, int32_t *plast, uint64_t *plower,
                               uint64_t *pupper, uint64_t *pstride, uint64_t incr, uint64_t chunk);
void __kmpc_for_static_fini(void *loc, int32_t gtid);
int32_t __kmpc_global_thread_num(void *loc);
void hcc_set_num_threads(int n);
typedef struct { atomic_int hits[64]; atomic_int last; uint64_t trip; } Loop;
static void body(int32_t *gtid, int32_t *btid, Loop *loop) {
  (void)btid;
  int32_t last = 0;
  uint64_t lower = 0, upper = loop->trip - 1, stride = 1;
  if (loop->trip == 0) return;
  __kmpc_for_static_init_8u(0, __kmpc_global_thread_num(0), 34, &last, &lower, &upper, &stride, 1, 0);
  for (uint64_t i = lower; i - lower < upper - lower + 1; ++i) atomic_fetch_add(&loop->hits[i], 1);
  __kmpc_for_static_fini(0, *gtid);
  atomic_fetch_add(&loop->last, last);
}
/* loops of 0..64 iterations on `threads` threads; returns how many iterations ran other than once, plus loops
   whose last iteration was not flagged exactly once */
long check(int threads) {
  hcc_set_num_threads(threads);
  long errors = 0;
  for (uint64_t trip = 0; trip <= 64; ++trip) {
    Loop loop;
    memset(&loop, 0, sizeof loop);
    loop.trip = trip;
    __kmpc_fork_call(0, 1, (void (*)(int32_t *, int32_t *, ...))body, &loop);
    for (uint64_t i = 0; i < 64; ++i) errors += atomic_load(&loop.hits[i]) != (i < trip);
    errors += atomic_load(&loop.last) != (trip > 0);
  }
  return errors;
}
"""


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_a_worksharing_loop_runs_every_iteration_once(tmp_path, threads):
    """The static schedule splits 0..64 iterations over teams of 1..7 members: each iteration runs exactly once
    and exactly one member sees the last one."""
    src = tmp_path / "harness.c"
    src.write_text(HARNESS)
    so = tmp_path / "harness.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-pthread", str(src), str(toolchain.RUNTIME_DIR / "openmp_abi.c"),
                    str(toolchain.RUNTIME_DIR / "threadpool.c"), "-o", str(so)], check=True)
    lib = load_library(so, "a test library")
    lib.check.restype = ctypes.c_long
    assert lib.check(threads) == 0


class _Ranked3(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64),
                ("sizes", ctypes.c_int64 * 3), ("strides", ctypes.c_int64 * 3)]


class _Unranked(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int64), ("descriptor", ctypes.c_void_p)]


def _view(array, offset: int, shape, strides) -> tuple[_Unranked, _Ranked3]:
    """MLIR's descriptor of a view of `array` (element offset and strides)."""
    ranked = _Ranked3(array.ctypes.data, array.ctypes.data, offset, (ctypes.c_int64 * 3)(*shape), (ctypes.c_int64 * 3)(*strides))
    return _Unranked(3, ctypes.addressof(ranked)), ranked


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_copies_split_across_threads_copy_every_element_once(support, threads):
    """memrefCopy of a strided view (a Concat's insert into channels 10..59 of 80) and hcc_memcpy of a flat block,
    both large enough (>= 256 KiB) to be split across the pool's threads: exactly numpy's copy, nothing outside."""
    support.hcc_set_num_threads(threads)
    src = np.random.default_rng(threads).standard_normal((70, 50, 30)).astype(np.float32)
    dst = np.full((70, 80, 30), -7.0, np.float32)
    s, s_keep = _view(src, 0, src.shape, [1500, 30, 1])
    d, d_keep = _view(dst, 10 * 30, [70, 50, 30], [2400, 30, 1])
    support.memrefCopy(ctypes.c_int64(4), ctypes.byref(s), ctypes.byref(d))
    expected = np.full_like(dst, -7.0)
    expected[:, 10:60] = src
    np.testing.assert_array_equal(dst, expected)
    flat_src = np.arange(300_001, dtype=np.float32)
    flat_dst = np.zeros(300_002, np.float32)
    support.hcc_memcpy(ctypes.c_void_p(flat_dst.ctypes.data), ctypes.c_void_p(flat_src.ctypes.data), ctypes.c_int64(flat_src.nbytes))
    np.testing.assert_array_equal(flat_dst[:-1], flat_src)
    assert flat_dst[-1] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
@pytest.mark.parametrize("threads", [1, 2])
def test_an_interleaving_copy_writes_every_other_element(support, dtype, threads):
    """The innermost run strided in the destination (a Concat along a new last axis, as a linear Resize's phases
    are interleaved): 4- and 8-byte elements by plain loads and stores, others by memcpy; large enough to split."""
    support.hcc_set_num_threads(threads)
    src = (np.arange(3 * 200 * 700) % 1000).astype(dtype).reshape(3, 200, 700)
    dst = np.zeros((3, 200, 700, 2), dtype)
    s, s_keep = _view(src, 0, src.shape, [140_000, 700, 1])
    d, d_keep = _view(dst, 1, src.shape, [280_000, 1400, 2])
    support.memrefCopy(ctypes.c_int64(src.itemsize), ctypes.byref(s), ctypes.byref(d))
    np.testing.assert_array_equal(dst[..., 1], src)
    assert not dst[..., 0].any()
