"""runtime/pool.c (hcc_pool2d) against a numpy fold that takes the taps in the same order with the same step: the
same bits for NaN, +-0 and infinities, at every ISA width the host runs, for strides 1-3, dilations, strided views,
rows wider than one group of vectors, and every thread count."""
from __future__ import annotations

import ctypes
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hcc.backends.cpu import pool_calls, toolchain
from hcc.runtime.devices.native import load_library

I64 = ctypes.c_int64
# hcc_get_isa comes from ukernels_dispatch.c in a bundle; the test library chooses it instead
ISA_STUB = "static int isa = 4;\nint hcc_get_isa(void) { return isa; }\nvoid test_set_isa(int v) { isa = v; }\n"
LOW = np.float32(-3.4028234663852886e38)


def _host_widths() -> list[int]:
    flags = Path("/proc/cpuinfo").read_text().split()
    return [4] + ([8] if "avx2" in flags else []) + ([16] if "avx512f" in flags else [])


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    (tmp / "isa.c").write_text(ISA_STUB)
    so = tmp / "pool.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-std=gnu11", "-pthread", str(toolchain.RUNTIME_DIR / "pool.c"),
                    str(toolchain.RUNTIME_DIR / "threadpool.c"), str(tmp / "isa.c"), "-o", str(so)], check=True)
    return load_library(so, "a test library")


def _reference(x: np.ndarray, out_shape, kernel, strides, dilations, fold: int, init: np.float32) -> np.ndarray:
    n, c, oh, ow = out_shape
    rows = np.arange(oh)[:, None] * strides[0]
    cols = np.arange(ow)[None, :] * strides[1]
    acc = np.full(out_shape, init, np.float32)
    for kh in range(kernel[0]):
        for kw in range(kernel[1]):
            v = x[:, :, rows + kh * dilations[0], cols + kw * dilations[1]]
            if fold == pool_calls.FOLD_GT:
                acc = np.where(acc > v, acc, v)
            elif fold == pool_calls.FOLD_LT:
                acc = np.where(acc < v, v, acc)
            else:
                with np.errstate(invalid="ignore"):  # inf + -inf
                    acc = (acc + v).astype(np.float32)
    return acc


def _values(rng, shape) -> np.ndarray:
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) < 0.15
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    return x


def _run(pool, x_view: np.ndarray, y: np.ndarray, kernel, strides, dilations, fold: int, init: np.float32) -> None:
    """hcc_pool2d over the view `x_view` (any strides) into `y` (any strides)."""
    def elems(a):
        return [s // 4 for s in a.strides]
    args = [x_view.ctypes.data, y.ctypes.data, *y.shape, *kernel, *strides, *dilations, *elems(x_view), *elems(y), fold,
            struct.unpack("<I", struct.pack("<f", init))[0]]
    pool.hcc_pool2d(*[I64(a) for a in args])


def _assert_same(actual: np.ndarray, expected: np.ndarray, fold: int, what) -> None:
    """The same bits; for sums, any NaN where a NaN is expected (x86 keeps the payload of the first operand of an
    add, and which one is first is the compiler's choice: the generated code's adds give no payload either)."""
    if fold == pool_calls.FOLD_ADD:
        nan = np.isnan(expected)
        assert (np.isnan(actual) == nan).all(), what
        actual, expected = np.where(nan, 0, actual), np.where(nan, 0, expected)
    assert actual.tobytes() == expected.tobytes(), what


CASES = [  # (input N, C, H, W), kernel, strides, dilations
    ((1, 3, 9, 11), (3, 3), (2, 2), (1, 1)),
    ((2, 5, 12, 150), (3, 3), (2, 2), (1, 1)),    # 75 columns: two groups of 64, masked tails
    ((1, 4, 8, 200), (2, 2), (2, 2), (1, 1)),
    ((1, 8, 40, 150), (3, 3), (2, 2), (1, 1)),    # enough taps for several threads (MIN_PARALLEL_TAPS)
    ((1, 2, 7, 131), (1, 2), (1, 2), (1, 1)),     # a row pass (onnxruntime's vector kernel)
    ((1, 3, 10, 97), (2, 5), (1, 2), (1, 1)),
    ((1, 2, 9, 70), (3, 3), (3, 3), (1, 1)),      # stride 3: one output at a time
    ((1, 2, 9, 90), (2, 2), (2, 2), (2, 2)),      # dilated
    ((1, 3, 6, 40), (3, 3), (1, 1), (1, 1)),      # unit stride
    ((1, 2, 5, 150), (2, 40), (1, 2), (1, 1)),    # a window wider than the permutes take (KW > 32)
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"_k{c[1][0]}{c[1][1]}_s{c[2][1]}_d{c[3][1]}")
@pytest.mark.parametrize("fold", [pool_calls.FOLD_GT, pool_calls.FOLD_LT, pool_calls.FOLD_ADD], ids=["gt", "lt", "add"])
def test_pool_kernel_matches_the_ordered_fold(pool, case, fold):
    shape, kernel, strides, dilations = case
    rng = np.random.default_rng(hash((shape, kernel, fold)) % 2**32)
    x = _values(rng, shape)
    oh = (shape[2] - (kernel[0] - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (shape[3] - (kernel[1] - 1) * dilations[1] - 1) // strides[1] + 1
    init = LOW if fold != pool_calls.FOLD_ADD else np.float32(0.0)
    expected = _reference(x, (shape[0], shape[1], oh, ow), kernel, strides, dilations, fold, init)
    for width in _host_widths():
        pool.test_set_isa(width)
        for threads in (1, 2):
            pool.hcc_set_num_threads(threads)
            y = np.full((shape[0], shape[1], oh, ow), 7.0, np.float32)
            _run(pool, x, y, kernel, strides, dilations, fold, init)
            _assert_same(y, expected, fold, (width, threads))


def test_pool_kernel_reads_and_writes_strided_views(pool):
    """A band of a larger tensor (offset rows and columns), written into a slice of a larger output, and a view
    whose columns are not adjacent: only the taps and outputs the view names are touched."""
    rng = np.random.default_rng(3)
    big = _values(rng, (1, 4, 20, 140))
    x = big[:, :, 1:, 1:]                                    # a band starting at (1, 1)
    out = np.full((1, 4, 12, 80), 5.0, np.float32)
    y = out[:, :, 2:11, 3:72]                                # 9 x 69 outputs inside it
    for width in _host_widths():
        pool.test_set_isa(width)
        out[:] = 5.0
        _run(pool, x, y, (3, 3), (2, 2), (1, 1), pool_calls.FOLD_GT, LOW)
        assert y.tobytes() == _reference(x, y.shape, (3, 3), (2, 2), (1, 1), pool_calls.FOLD_GT, LOW).tobytes()
        untouched = out.copy()
        untouched[:, :, 2:11, 3:72] = 5.0
        assert (untouched == 5.0).all(), width
    gaps = big[:, :, :, ::2]                                 # columns two elements apart
    y2 = np.zeros((1, 4, 18, 68), np.float32)
    _run(pool, gaps, y2, (3, 3), (1, 1), (1, 1), pool_calls.FOLD_LT, LOW)
    assert y2.tobytes() == _reference(gaps, y2.shape, (3, 3), (1, 1), (1, 1), pool_calls.FOLD_LT, LOW).tobytes()
