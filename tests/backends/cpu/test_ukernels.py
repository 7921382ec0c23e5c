"""The C micro-kernels (backends/cpu/runtime/ukernels.c) against numpy: strided, batched and transposed GEMMs,
two reduction dims, convolutions with strides, dilations and groups; every ISA width; identical results for every
thread count. The 16-lane (AVX-512) logic is also built with AVX2 instructions, so it is tested on any x86-64 host."""
from __future__ import annotations

import ctypes
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from hcc.backends.cpu import toolchain
from hcc.runtime.devices.native import load_library

RUNTIME = toolchain.RUNTIME_DIR
I64 = ctypes.c_int64


def _host_has(flag: str) -> bool:
    return flag in Path("/proc/cpuinfo").read_text().split()


def _build(tmp: Path, vl: int, isa_flags: list[str]) -> ctypes.CDLL:
    """A test library exporting hcc_gemm_<suffix> / hcc_conv2d_<suffix> for one width, plus the pool."""
    so = tmp / f"ukernels_vl{vl}.so"
    flags = ["-O2", "-fPIC", "-std=gnu11", "-pthread", "-ffp-contract=fast"]
    subprocess.run(["gcc", "-shared", *flags, *isa_flags, f"-DHCC_VL={vl}", str(RUNTIME / "ukernels.c"), str(RUNTIME / "threadpool.c"),
                    "-o", str(so)], check=True)
    lib = load_library(so, "a test library")
    suffix = {4: "sse2", 8: "avx2", 16: "avx512"}[vl]
    lib.gemm = _with_site(getattr(lib, f"hcc_gemm_{suffix}"))
    lib.conv = _with_site(getattr(lib, f"hcc_conv2d_{suffix}"))
    lib.vl = vl
    return lib


def _with_site(entry):
    """A GEMM or convolution entry called with the epilogue last, plus its call-site argument: 0 (B / filters not
    constant) unless `site=` says otherwise."""
    def call(*args, site: int = 0, layouts: int = 0):
        if "conv" in entry.__name__:
            args = _with_layouts(args, layouts)
        return entry(*args, I64(site))
    call.__name__ = entry.__name__
    return call


def _with_layouts(args: tuple, layouts: int) -> tuple:
    """The convolution parameters (argument 4: sh, sw, dh, dw, top, left) with their 7th entry, the layouts of x and
    y (ukernels.c X_BLOCKED | Y_BLOCKED)."""
    conv = list(args[4])
    return args[:4] + (_arr(conv[:6] + [layouts]),) + args[5:]


def _dwconv(lib):
    """The depthwise entry of `lib`'s width, called like the others (layouts= appended to its parameters)."""
    entry = getattr(lib, lib.gemm.__name__.replace("gemm", "dwconv2d"))

    def call(*args, layouts: int = 0):
        return entry(*_with_layouts(args, layouts))
    return call


WIDTHS = [(4, ["-msse2"])]
if _host_has("avx2") and _host_has("fma"):
    WIDTHS += [(8, ["-mavx2", "-mfma"])]
    # 16 lanes on an AVX2 host: GCC splits each vector in two (a correct run of the 16-lane code, but its build alone
    # takes 3-4 minutes), so that case runs in `make test-all`; on an AVX-512 host it is native and runs by default
    WIDTHS += [(16, ["-mavx512f", "-mfma"]) if _host_has("avx512f") else pytest.param((16, ["-mavx2", "-mfma"]), marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=WIDTHS, ids=lambda w: f"vl{w[0]}")
def lib(request, tmp_path_factory):
    vl, flags = request.param
    return _build(tmp_path_factory.mktemp("uk"), vl, flags)


def _arr(values):
    return (I64 * len(values))(*values)


def _bits(value: float) -> int:
    return int(np.array(value, np.float32).view(np.uint32))


def _epilogue(rank: int, init=None, init_strides=None, constant=None, res=None, res_strides=None, lo=None, hi=None,
              nan_to_bound: bool = False, act: int = 0):
    """The epilogue arguments (ukernels.c read_epilogue); default: C already holds the init, nothing after. `act`:
    an activation after the residual (1: GELU), in the hi mode's bits 4 and up."""
    mode = 1 if constant is not None else 2 if init is not None else 0
    clamp = 2 if nan_to_bound else 1
    return _arr([mode, _bits(constant or 0.0), init.ctypes.data if init is not None else 0, *(init_strides or [0] * rank),
                 res.ctypes.data if res is not None else 0, *(res_strides or [0] * rank),
                 clamp if lo is not None else 0, _bits(lo or 0.0), (clamp if hi is not None else 0) | act << 4, _bits(hi or 0.0)])


def _strides(x: np.ndarray) -> list[int]:
    return [s // 4 for s in x.strides]


def gemm(lib, a, b, c, batch_axes: int = 0, epilogue=None, site: int = 0):
    """c[..., m, n] += a[..., m, k] @ b[..., k, n] (numpy views with any strides; up to 3 leading batch axes)."""
    pad = 3 - batch_axes
    bsizes = list(c.shape[:batch_axes]) + [1] * pad
    sa, sb, sc = _strides(a), _strides(b), _strides(c)
    zero = [0] * pad
    M, K = a.shape[-2:]
    N = b.shape[-1]
    sizes = bsizes + [M, N, K, 1]
    lib.gemm(I64(a.ctypes.data), I64(b.ctypes.data), I64(c.ctypes.data), _arr(sizes), _arr(sa[:batch_axes] + zero + [sa[-2], sa[-1], 0]),
             _arr(sb[:batch_axes] + zero + [sb[-2], 0, sb[-1]]), _arr(sc[:batch_axes] + zero + [sc[-2], sc[-1]]), epilogue or _epilogue(5),
             site=site)


# (40, 1100, 300): a part of few rows runs N in column blocks sized for its C (gemm_nc), the last one partial, panels
# outer (its B block is over GEMM_B_BLOCK_BYTES); (100, 70, 513) and (130, 260, 70) run row tiles outer, over three
# K blocks and over two column blocks
SHAPES = [(1, 1, 1), (1, 10, 512), (3, 17, 5), (4, 100, 33), (7, 33, 300), (13, 16, 7), (64, 64, 64), (100, 70, 513), (130, 260, 70),
          (40, 1100, 300)]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("layout", ["nn", "nt", "tn"])
def test_gemm_matches_numpy(lib, m, n, k, layout):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m)).astype(np.float32).T if layout == "tn" else rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if layout == "nt" else rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = c0.copy()
    gemm(lib, a, b, c)
    ref = c0 + a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_batched_strided_gemm_with_broadcast_operand(lib):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3, 20, 40)).astype(np.float32)[:, :, ::2, :]  # rows every other one
    b = rng.standard_normal((3, 40, 24)).astype(np.float32)  # broadcast over the first batch dim (stride 0)
    c = np.zeros((2, 3, 10, 24), np.float32)
    rows, cols, inner = 10, 24, 40
    sa, sb, sc = _strides(a), _strides(b), _strides(c)
    lib.gemm(I64(a.ctypes.data), I64(b.ctypes.data), I64(c.ctypes.data), _arr([2, 3, 1, rows, cols, inner, 1]),
             _arr([sa[0], sa[1], 0, sa[2], sa[3], 0]), _arr([0, sb[0], 0, sb[1], 0, sb[2]]), _arr([sc[0], sc[1], 0, sc[2], sc[3]]),
             _epilogue(5))
    np.testing.assert_allclose(c, np.matmul(a, b[None]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "c_gap", "residual_gap"])
def test_shared_b_batches_as_one_product(lib, layout):
    """torch-mlir's MatMul of a [1, 14, 14, 64] activation by a [64, 40] weight: 14 batch entries of 14 rows sharing
    B. Where A's, C's and the residual's rows continue from one entry to the next the kernel runs them as one product
    of 196 rows; where C or the residual leaves a gap between entries, as 14 products. The same results either way,
    bias, residual and clamp included, and nothing outside C written."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((1, 14, 14, 64)).astype(np.float32)
    b = (rng.standard_normal((64, 40)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32)
    res_store = rng.standard_normal((1, 14, 16 if layout == "residual_gap" else 14, 40)).astype(np.float32)
    res = res_store[:, :, :14, :]
    c_store = np.full((1, 14, 15 if layout == "c_gap" else 14, 40), 7.0, np.float32)
    c = c_store[:, :, :14, :]
    sa, sb, sc, sr = _strides(a), _strides(b), _strides(c), _strides(res)
    lib.gemm(I64(a.ctypes.data), I64(b.ctypes.data), I64(c.ctypes.data), _arr([1, 14, 1, 14, 40, 64, 1]),
             _arr([sa[0], sa[1], 0, sa[2], sa[3], 0]), _arr([0, 0, 0, sb[0], 0, sb[1]]), _arr([sc[0], sc[1], 0, sc[2], sc[3]]),
             _epilogue(5, init=bias, init_strides=[0, 0, 0, 0, 1], res=res, res_strides=[sr[0], sr[1], 0, sr[2], sr[3]], lo=-1.0, hi=6.0))
    ref = np.clip(bias + a.astype(np.float64) @ b + res, -1.0, 6.0)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4)
    assert (c_store[:, :, 14:, :] == 7.0).all()


def test_two_reduction_dims(lib):
    """A Gemm over a flattened [C, H*W] view whose two k dims are not contiguous in B."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 6, 7)).astype(np.float32)  # m, k1, k2
    b_full = rng.standard_normal((6, 9, 11)).astype(np.float32)  # k1, k2 (+2 padding), n
    b = b_full[:, :7, :]
    c = np.zeros((5, 11), np.float32)
    sa, sb = _strides(a), _strides(b)
    lib.gemm(I64(a.ctypes.data), I64(b.ctypes.data), I64(c.ctypes.data), _arr([1, 1, 1, 5, 11, 6, 7]),
             _arr([0, 0, 0, sa[0], sa[1], sa[2]]), _arr([0, 0, 0, sb[0], sb[1], sb[2]]), _arr([0, 0, 0, 11, 1]), _epilogue(5))
    np.testing.assert_allclose(c, np.einsum("mij,ijn->mn", a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("heads,dim,rows", [(12, 64, 29), (3, 32, 40), (2, 16, 13)])
@pytest.mark.parametrize("site", [0, 7])
def test_heads_side_by_side_read_in_place(lib, heads, dim, rows, site):
    """Attention's output projection: A[m][(h, d)] = context[h][m][d] (a transpose folded into the strides), k runs of
    `dim` contiguous floats: K blocks of one run read A in place (ukernels.c lda_run); B a kept weight or not."""
    rng = np.random.default_rng(heads * dim + rows + site)
    context = rng.standard_normal((heads, rows, dim)).astype(np.float32)
    w = rng.standard_normal((heads, dim, 48)).astype(np.float32)
    c = np.zeros((rows, 48), np.float32)
    sa, sb = _strides(context), _strides(w)
    for _ in range(2):  # a kept weight is packed at the first call and read at the second
        c[:] = 0.0
        lib.gemm(I64(context.ctypes.data), I64(w.ctypes.data), I64(c.ctypes.data), _arr([1, 1, 1, rows, 48, heads, dim]),
                 _arr([0, 0, 0, sa[1], sa[0], sa[2]]), _arr([0, 0, 0, sb[0], sb[1], sb[2]]), _arr([0, 0, 0, 48, 1]), _epilogue(5),
                 site=1000 + site + heads if site else 0)
        ref = np.einsum("hmd,hdn->mn", context.astype(np.float64), w.astype(np.float64))
        np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.sqrt(heads * dim))


def conv_ref(x, w, stride, dilation, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, f, oh, ow), np.float64)
    fg = f // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = x[:, g * cg:(g + 1) * cg, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
                y[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch, w[g * fg:(g + 1) * fg, :, i, j])
    return y


@pytest.mark.parametrize("case", [
    dict(n=1, c=3, h=9, w=9, f=8, k=3, stride=(1, 1), dil=(1, 1), groups=1),
    dict(n=2, c=16, h=14, w=14, f=32, k=3, stride=(2, 2), dil=(1, 1), groups=1),
    dict(n=1, c=8, h=11, w=13, f=12, k=3, stride=(1, 2), dil=(2, 1), groups=2),
    dict(n=1, c=32, h=7, w=7, f=64, k=1, stride=(1, 1), dil=(1, 1), groups=1),
    dict(n=1, c=3, h=35, w=35, f=16, k=7, stride=(2, 2), dil=(1, 1), groups=1),
], ids=lambda c: f"c{c['c']}f{c['f']}k{c['k']}s{c['stride'][1]}g{c['groups']}")
def test_conv2d_matches_numpy(lib, case):
    rng = np.random.default_rng(case["c"] * 7 + case["f"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    w = rng.standard_normal((case["f"], case["c"] // case["groups"], case["k"], case["k"])).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), case["stride"], case["dil"], case["groups"])
    bias = rng.standard_normal(case["f"]).astype(np.float32)
    y = np.ascontiguousarray(np.broadcast_to(bias[None, :, None, None], ref.shape)).astype(np.float32)
    sizes = [case["n"], case["c"], case["h"], case["w"], case["f"], case["k"], case["k"], ref.shape[2], ref.shape[3], case["groups"]]
    lib.conv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr(list(case["stride"]) + list(case["dil"]) + [0, 0]),
             _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4))
    np.testing.assert_allclose(y, ref + bias[None, :, None, None], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,n,k", [(37, 70, 300), (130, 260, 513), (64, 5000, 40)])  # K blocks, partial panels, N blocks
def test_constant_b_is_packed_once_per_call_site(lib, m, n, k):
    """A GEMM call site numbered as holding a bundle weight as B packs all of B at its first call and reads those
    panels afterwards (same values elsewhere, any thread count; batch entries sharing B, or each with its own slice
    of the weight); site 0 packs every call."""
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((2, m, k)).astype(np.float32)
    b, other = (rng.standard_normal((k, n)).astype(np.float32) for _ in range(2))
    ref = a.astype(np.float64) @ b
    site = 2000 + m  # this test's sites in the module-scoped library
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        for weight in (b, b.copy()):
            c = np.zeros((2, m, n), np.float32)
            gemm(lib, a, np.broadcast_to(weight, (2, k, n)), c, batch_axes=1, site=site)
            np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4)
    lib.hcc_set_num_threads(0)
    kept, fresh = np.zeros((2, m, n), np.float32), np.zeros((2, m, n), np.float32)
    gemm(lib, a, np.broadcast_to(other, (2, k, n)), kept, batch_axes=1, site=site)  # the panels of b are really read
    gemm(lib, a, np.broadcast_to(b, (2, k, n)), fresh, batch_axes=1)
    assert np.array_equal(kept, fresh)
    # one weight viewed per batch entry (attention heads: [K, heads, N] read as heads x [K, N]): a panel set per entry
    heads = rng.standard_normal((k, 2, n)).astype(np.float32)
    per_head = heads.transpose(1, 0, 2)  # batch stride n, not 0
    for _ in range(2):
        c = np.zeros((2, m, n), np.float32)
        gemm(lib, a, per_head, c, batch_axes=1, site=site + 500)
        np.testing.assert_allclose(c, a.astype(np.float64) @ per_head, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,n,k", [(1, 128, 40), (2, 70, 33), (4, 16, 128), (1, 1000, 300), (3, 100, 64), (4, 256, 64),
                                   (6, 100, 64), (7, 50, 20), (8, 120, 400)])
@pytest.mark.parametrize("transposed", [False, True])
def test_small_m_constant_b_is_packed_once(lib, m, n, k, transposed):
    """A GEMM of at most SMALL_M rows (a matrix-vector product, an LSTM's gates; 2-4 rows share each B load,
    small_m_rows), or up to SMALL_M_KEPT rows on 16 lanes (a batch-8 Linear), over a constant B, stored K x N or
    N x K (Gemm transB), packs B at its first call into the panels it streams and reads them afterwards: right
    results on every call, the same bits at any thread count, and the kept panels, not the argument, are read."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w, other = (rng.standard_normal((n, k) if transposed else (k, n)).astype(np.float32) for _ in range(2))
    view = (lambda x: x.T) if transposed else (lambda x: x)
    site = 100000 + 2 * (16 * n + m) + transposed  # one site per case (a site keeps one weight)
    results = []
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        c = np.zeros((m, n), np.float32)
        gemm(lib, a, view(w), c, site=site)
        np.testing.assert_allclose(c, a.astype(np.float64) @ view(w).astype(np.float64), rtol=1e-4, atol=1e-4)
        results.append(c)
    lib.hcc_set_num_threads(0)
    assert all(np.array_equal(results[0], c) for c in results[1:])
    if m > 4 and lib.vl != 16:
        return  # the packed path (SMALL_M_KEPT rows take the small-M path on 16 lanes only), which may read B in place
    kept, fresh = np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    gemm(lib, a, view(other), kept, site=site)  # the kept panels of w are read, not the new argument
    gemm(lib, a, view(w), fresh, site=site + 50000)  # w packed at a new site: the same kernel, the same sums
    assert np.array_equal(kept, fresh)


@pytest.mark.parametrize("n", [37, 128])
@pytest.mark.parametrize("init", ["row", "scalar per row", "constant"])
@pytest.mark.parametrize("c_layout", ["dense", "strided"])
def test_small_m_init_is_written_before_the_sums(lib, n, init, c_layout):
    """The few-row paths write the epilogue's init over C first (region_prologue: whole vectors where C's and the
    source's columns are unit-stride, scalars for the tail and for any other stride), then accumulate: C = init + A B
    with C's old contents ignored, for a bias row (an LSTM step's input projection), one value per row, a constant."""
    rng = np.random.default_rng(n + len(init) + len(c_layout))
    m, k = 3, 20
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    source = rng.standard_normal((m, n)).astype(np.float32)
    if init == "row":
        epilogue, expected = _epilogue(5, init=source, init_strides=[0, 0, 0, n, 1]), source
    elif init == "scalar per row":
        epilogue, expected = _epilogue(5, init=source, init_strides=[0, 0, 0, n, 0]), np.repeat(source[:, :1], n, axis=1)
    else:
        epilogue, expected = _epilogue(5, constant=1.5), np.full((m, n), 1.5, np.float32)
    store = np.full((m, 2 * n), np.nan, np.float32)
    c = store if c_layout == "dense" else store[:, ::2]
    c = c[:, :n] if c_layout == "dense" else c
    case = 7000 + 1000 * ["row", "scalar per row", "constant"].index(init) + 500 * (c_layout == "strided") + n
    for site in (0, case):  # B read in place, and packed into kept panels
        c[...] = np.nan
        gemm(lib, a, b, c, epilogue=epilogue, site=site)
        np.testing.assert_allclose(c, expected + a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_the_thread_count(lib):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 300)).astype(np.float32)
    b = rng.standard_normal((300, 500)).astype(np.float32)
    results = []
    for threads in (1, 2, 3, 8):
        lib.hcc_set_num_threads(threads)
        c = np.zeros((200, 500), np.float32)
        gemm(lib, a, b, c)
        results.append(c)
    lib.hcc_set_num_threads(0)
    for other in results[1:]:
        assert np.array_equal(results[0], other)  # each element is one thread's sum in one k order


@pytest.mark.parametrize("k,stride,dil,width", [(3, 1, 1, 19), (3, 2, 1, 35), (5, 2, 1, 17), (3, 1, 2, 30), (7, 1, 1, 9), (3, 2, 1, 114)])
def test_depthwise_conv_matches_numpy(lib, k, stride, dil, width):
    rng = np.random.default_rng(k * 100 + stride * 10 + width)
    c = 5
    x = rng.standard_normal((2, c, width - 2, width)).astype(np.float32)
    w = rng.standard_normal((c, k, k)).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), w[:, None].astype(np.float64), (stride, stride), (dil, dil), c)
    y = np.zeros(ref.shape, np.float32)
    lib.dwconv = _dwconv(lib)
    sizes = [2, c, x.shape[2], x.shape[3], k, k, ref.shape[2], ref.shape[3]]
    lib.dwconv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([stride, stride, dil, dil, 0, 0]),
               _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def _clamped(v, lo, hi, nan_to_bound):
    out = v.copy()
    if nan_to_bound:
        out = np.where(np.isnan(out), lo if lo is not None else hi, out)
    if lo is not None:
        out = np.where(out < lo, lo, out)
    if hi is not None:
        out = np.where(out > hi, hi, out)
    return out


@pytest.mark.parametrize("m,n,k", [(2, 40, 30), (37, 70, 300), (64, 64, 600)])  # small-M path; packed with 1 and 3 K blocks
@pytest.mark.parametrize("nan_to_bound", [False, True])
def test_gemm_epilogue_bias_residual_clamp(lib, m, n, k, nan_to_bound):
    """C = clamp(bias[n] + A*B + R) written without reading C first; NaN kept or sent to the bound as asked."""
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[0, 0] = np.nan  # row 0 of C becomes NaN
    b = rng.standard_normal((k, n)).astype(np.float32) * 0.2
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    c = np.full((m, n), 1e30, np.float32)  # garbage: the init must not read it
    gemm(lib, a, b, c, epilogue=_epilogue(5, init=bias, init_strides=[0, 0, 0, 0, 1], res=res, res_strides=[0, 0, 0, n, 1], lo=0.0, hi=6.0,
                                          nan_to_bound=nan_to_bound))
    ref = _clamped(bias[None, :] + a.astype(np.float64) @ b + res, 0.0, 6.0, nan_to_bound)
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(np.isnan(c), np.isnan(ref))


def _gelu(x):
    from math import erf, sqrt

    return x * (1.0 + np.vectorize(erf)(x / sqrt(2.0))) / 2.0


@pytest.mark.parametrize("m,n,k", [(2, 40, 30), (37, 70, 300), (64, 64, 600)])  # small-M path; packed with 1 and 3 K blocks
def test_gemm_epilogue_bias_gelu(lib, m, n, k):
    """C = GELU(bias[n] + A*B) (the activation in the hi mode's bits 4+), NaN in, NaN out; +-inf rows as GELU has them."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[0, 0] = np.nan
    b = (rng.standard_normal((k, n)) * (3.0 / np.sqrt(k))).astype(np.float32)  # sums over both erf branches
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.full((m, n), 1e30, np.float32)
    gemm(lib, a, b, c, epilogue=_epilogue(5, init=bias, init_strides=[0, 0, 0, 0, 1], act=1))
    ref = _gelu(bias[None, :] + a.astype(np.float64) @ b)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.isnan(c), np.isnan(ref)) and np.isnan(c[0]).all()


def test_conv_epilogue_bias_per_channel_and_constant_init(lib):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2
    bias = rng.standard_normal(16).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1), 1)
    sizes = [1, 8, 12, 12, 16, 3, 3, 10, 10, 1]
    for init, expected in ((_epilogue(4, init=bias, init_strides=[0, 1, 0, 0], lo=0.0), np.maximum(ref + bias[None, :, None, None], 0)),
                           (_epilogue(4, constant=0.5, hi=1.0), np.minimum(ref + 0.5, 1.0))):
        y = np.full(ref.shape, np.nan, np.float32)
        lib.conv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([1, 1, 1, 1, 0, 0]), _arr(_strides(x)),
                 _arr(_strides(w)), _arr(_strides(y)), init)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c,h,w,f,k,dil,groups,pads", [
    (5, 6, 40, 13, 3, 1, 1, (1, 1, 1, 1)),   # rows of 40: a whole tile and a partial one; 13 filters (a partial row block)
    (4, 5, 16, 12, 3, 2, 1, (2, 0, 1, 3)),   # dilation, asymmetric padding, output rows of 15..17 columns per width
    (8, 4, 33, 6, 5, 1, 2, (2, 2, 2, 2)),    # groups, 5x5
    (3, 3, 70, 24, 3, 1, 1, (0, 0, 0, 0)),   # no padding: the last tile's junk columns read the buffer's slack
    (6, 14, 14, 16, 5, 1, 1, (0, 0, 0, 0)),  # rows narrower than half a tile: tiles over the padded grid (LeNet's conv2)
    (9, 7, 7, 20, 3, 1, 1, (1, 1, 1, 1)),    # a 7x7 map on the grid, partial row block
    (4, 9, 5, 8, 3, 2, 2, (1, 0, 2, 1)),     # the grid with dilation, groups and asymmetric padding
])
@pytest.mark.parametrize("epilogue", ["bias-residual-clamp", "in-c"])
def test_direct_convolution_of_wide_rows(lib, c, h, w, f, k, dil, groups, pads, epilogue):
    """Stride-1 convolutions read a zero-padded copy of the input in place (conv_direct): tiles along output rows at
    least half a tile wide, tiles over the padded grid for narrower ones; every tile position, partial row blocks,
    dilation, groups, every epilogue, any thread count."""
    rng = np.random.default_rng(c * 100 + w)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    wt = rng.standard_normal((f, c // groups, k, k)).astype(np.float32) * 0.3
    ref = conv_ref(xp.astype(np.float64), wt.astype(np.float64), (1, 1), (dil, dil), groups)
    bias = rng.standard_normal(f).astype(np.float32)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    sizes = [2, c, h, w, f, k, k, ref.shape[2], ref.shape[3], groups]
    results = []
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        if epilogue == "in-c":
            y = np.ascontiguousarray(res)
            ep, expected = _epilogue(4), ref + res
        else:
            y = np.full(ref.shape, np.nan, np.float32)
            ep = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res), lo=-1.0, hi=1.0)
            expected = np.clip(ref + bias[None, :, None, None] + res, -1.0, 1.0)
        lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([1, 1, dil, dil, top, left]),
                 _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)), ep)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        results.append(y)
    lib.hcc_set_num_threads(0)
    assert all(np.array_equal(results[0], other) for other in results[1:])


@pytest.mark.parametrize("c,h,w,f,k,stride,dil,groups,pads,column_step", [
    (16, 14, 14, 40, 3, 1, 1, 1, (1, 1, 1, 1), 1),   # 40 filters: a partial filter block; 14x14: 33 tiles of 6
    (8, 23, 9, 70, 3, 2, 1, 1, (2, 0, 1, 1), 1),     # stride 2, asymmetric padding, 2 blocks (the second of 6 filters)
    (32, 7, 7, 130, 3, 1, 1, 1, (1, 1, 1, 1), 1),    # 7x7: 49 pixels in tiles of 6 and 5; K = 288: two whole tap chunks + 32
    (64, 10, 12, 64, 1, 2, 1, 1, (0, 0, 0, 0), 1),   # a strided 1x1 that stays inside the input: read in place
    (16, 11, 13, 64, 3, 1, 2, 2, (2, 2, 2, 2), 1),   # groups of 32 filters, dilation
    (6, 14, 14, 16, 5, 1, 1, 1, (0, 0, 0, 0), 1),    # LeNet's conv2: 16 filters, rows too narrow for pixel vectors
    (8, 30, 30, 32, 3, 1, 1, 1, (1, 1, 1, 1), 1),    # 900 pixels: 9 groups of 96 and one of 36
    (9, 12, 24, 48, 3, 2, 1, 1, (1, 1, 1, 1), 2),    # an input view with a column stride of 2 (read through the copy)
    (4, 15, 11, 32, 3, 2, 1, 1, (1, 0, 1, 2), 1),    # 36 taps: few, but they save an im2col
    (96, 12, 12, 24, 1, 1, 1, 1, (0, 0, 0, 0), 1),   # 24 filters: one 3-vector block of 4-pixel tiles (AVX2); 2 tap chunks
    (72, 9, 10, 56, 1, 1, 1, 1, (0, 0, 0, 0), 1),    # 56 filters: a 3-vector block, then 2-vector ones (AVX2)
])
@pytest.mark.parametrize("epilogue", ["bias-residual-clamp", "in-c", "constant", "strided-residual"])
def test_filter_vector_convolution(lib, c, h, w, f, k, stride, dil, groups, pads, column_step, epilogue):
    """Convolutions with enough filters and taps run with vectors across filters (conv_fv): packed filter panels,
    any stride, tiles of up to 6 pixels anywhere in the map, sums transposed back through the epilogue (vector and
    element-by-element forms); every thread count gives the same bits. SSE2 builds take the other paths."""
    rng = np.random.default_rng(c * 1000 + f * 10 + k)
    x_wide = rng.standard_normal((2, c, h, w * column_step)).astype(np.float32)
    x = x_wide[..., ::column_step]
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    wt = rng.standard_normal((f, c // groups, k, k)).astype(np.float32) * 0.3
    ref = conv_ref(xp.astype(np.float64), wt.astype(np.float64), (stride, stride), (dil, dil), groups)
    bias = rng.standard_normal(f).astype(np.float32)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    res_view = np.asfortranarray(res)  # columns not unit-stride: the element-by-element epilogue
    sizes = [2, c, h, w, f, k, k, ref.shape[2], ref.shape[3], groups]
    results = []
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        y = np.full(ref.shape, np.nan, np.float32)
        if epilogue == "in-c":
            y[...] = res
            ep, expected = _epilogue(4), ref + res
        elif epilogue == "constant":
            ep, expected = _epilogue(4, constant=0.25, lo=0.0), np.maximum(ref + 0.25, 0.0)
        elif epilogue == "strided-residual":
            ep = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res_view, res_strides=_strides(res_view), hi=0.5)
            expected = np.minimum(ref + bias[None, :, None, None] + res, 0.5)
        else:
            ep = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res), lo=-1.0, hi=1.0)
            expected = np.clip(ref + bias[None, :, None, None] + res, -1.0, 1.0)
        lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([stride, stride, dil, dil, top, left]),
                 _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)), ep)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        results.append(y)
    lib.hcc_set_num_threads(0)
    assert all(np.array_equal(results[0], other) for other in results[1:])


def test_constant_filters_are_packed_once_per_call_site(lib):
    """A call site numbered as holding constant filters (site > 0) packs them (every group) at its first call and reuses the
    panels afterwards, at any address of the same values, on any thread count; two sites keep their own panels.
    The numbering is the contract: site 0 (filters computed at run time) packs every call."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 48, 9, 9)).astype(np.float32)  # two images, two groups of 24 channels -> 48 filters
    filters = [rng.standard_normal((96, 24, 3, 3)).astype(np.float32) * 0.3 for _ in range(2)]
    refs = [conv_ref(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).astype(np.float64), w.astype(np.float64), (1, 1), (1, 1), 2)
            for w in filters]
    sizes = [2, 48, 9, 9, 96, 3, 3, 9, 9, 2]

    def run(w, site):
        y = np.full((2, 96, 9, 9), np.nan, np.float32)
        lib.conv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([1, 1, 1, 1, 1, 1]), _arr(_strides(x)),
                 _arr(_strides(w)), _arr(_strides(y)), _epilogue(4, constant=0.0), site=site)
        return y

    base = 1001  # site numbers this test alone uses in this (module-scoped) library
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        for index, w in enumerate(filters):
            first = run(w, base + index)
            again = run(w.copy(), base + index)  # the same values elsewhere: the packed panels of the first call
            np.testing.assert_allclose(first, refs[index], rtol=1e-4, atol=1e-4)
            assert np.array_equal(first, again) and np.array_equal(first, run(w, 0))
    lib.hcc_set_num_threads(0)
    # the panels are really kept: other values at a site already packed give the first values' result (which is why
    # only bundle weights get a site); the 4-lane build has no filter-vector kernel and reads the filters each call
    kept = run(filters[1], base)
    assert np.array_equal(kept, run(filters[0] if lib.vl >= 8 else filters[1], 0))


@pytest.mark.parametrize("c,h,f,k,stride,pad,layouts", [
    (64, 60, 48, 1, 2, 0, 0),   # a downsampling 1x1: 900 KB of input, 12 KB of panels
    (40, 58, 40, 3, 1, 1, 0),   # a padded 3x3: 40 filters, a 3-vector block then a 2-vector one (AVX2)
    (64, 48, 32, 1, 1, 0, 3),   # blocked input and output, written from the registers
    (32, 62, 32, 3, 1, 1, 3),   # a padded 3x3 reading and writing blocks (its blocked padded copy: 500 KB)
])
def test_filter_vector_groups_outer_order(lib, c, h, f, k, stride, pad, layouts):
    """A convolution whose input overflows L2 and whose kept panels fit it runs each pixel group through every filter
    block (FvJob.groups_outer) instead of each block through the map: the same values, and the same bits at every
    thread count."""
    rng = np.random.default_rng(c + h + f)
    x = rng.standard_normal((1, c, h, h)).astype(np.float32)
    w = rng.standard_normal((f, c, k, k)).astype(np.float32) * 0.2
    bias = rng.standard_normal(f).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(np.float64)
    ref = np.maximum(conv_ref(xp, w.astype(np.float64), (stride, stride), (1, 1), 1) + bias[None, :, None, None], 0)
    oh = ref.shape[2]
    xin = _to_blocked(x) if layouts & 1 else x
    results = []
    for threads in (1, 2, 3):
        lib.hcc_set_num_threads(threads)
        y = np.full(ref.shape, np.nan, np.float32)
        lib.conv(I64(xin.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr([1, c, h, h, f, k, k, oh, oh, 1]),
                 _arr([stride, stride, 1, 1, pad, pad]), _arr([c * h * h, h * h, h, 1]), _arr(_strides(w)),
                 _arr([f * oh * oh, oh * oh, oh, 1]), _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], lo=0.0),
                 site=3000 + c + f + k, layouts=layouts)
        expected = _to_blocked(ref) if layouts & 2 else ref
        np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
        results.append(y)
    lib.hcc_set_num_threads(0)
    assert all(np.array_equal(results[0], other) for other in results[1:])


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_epilogue(lib, stride):
    rng = np.random.default_rng(stride)
    c = 6
    x = rng.standard_normal((1, c, 20, 20)).astype(np.float32)
    w = rng.standard_normal((c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), w[:, None].astype(np.float64), (stride, stride), (1, 1), c)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    y = np.full(ref.shape, np.nan, np.float32)
    lib.dwconv = _dwconv(lib)
    lib.dwconv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr([1, c, 20, 20, 3, 3, ref.shape[2], ref.shape[3]]),
               _arr([stride, stride, 1, 1, 0, 0]), _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)),
               _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res), lo=0.0, hi=6.0))
    np.testing.assert_allclose(y, np.clip(ref + bias[None, :, None, None] + res, 0.0, 6.0), rtol=1e-4, atol=1e-4)


def test_depthwise_any_layout(lib):
    """Views with non-unit column strides (a transposed input) take the plain-loop path, still correct."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32).transpose(0, 1, 3, 2)
    w = rng.standard_normal((3, 3, 3)).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), w[:, None].astype(np.float64), (1, 1), (1, 1), 3)
    y = np.zeros(ref.shape, np.float32)
    lib.dwconv = _dwconv(lib)
    lib.dwconv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr([1, 3, 9, 9, 3, 3, 7, 7]), _arr([1, 1, 1, 1, 0, 0]),
               _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4, constant=0.0))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k,stride,pads",
                         [(3, 1, (1, 1, 1, 1)), (3, 2, (1, 1, 1, 1)), (7, 2, (3, 3, 3, 3)), (3, 1, (0, 2, 1, 0)), (1, 1, (1, 0, 0, 1))])
@pytest.mark.parametrize("depthwise", [False, True])
def test_implicit_zero_padding(lib, k, stride, pads, depthwise):
    """The kernels read the unpadded input: rows/columns outside it are zeros (pads: top, left, bottom, right)."""
    rng = np.random.default_rng(k * 10 + stride + sum(pads))
    c, f = (6, 6) if depthwise else (5, 8)
    x = rng.standard_normal((1, c, 13, 11)).astype(np.float32)
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    w = rng.standard_normal((c, k, k) if depthwise else (f, c, k, k)).astype(np.float32)
    ref = conv_ref(xp.astype(np.float64), (w[:, None] if depthwise else w).astype(np.float64), (stride, stride), (1, 1), c if depthwise else 1)
    y = np.full(ref.shape, np.nan, np.float32)
    oh, ow = ref.shape[2:]
    conv = _arr([stride, stride, 1, 1, top, left])
    if depthwise:
        fn = _dwconv(lib)
        fn(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr([1, c, 13, 11, k, k, oh, ow]), conv,
           _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4, constant=0.0))
    else:
        lib.conv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr([1, c, 13, 11, f, k, k, oh, ow, 1]), conv,
                 _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4, constant=0.0))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c,h,w,k,stride,dil,pads", [
    (8, 7, 7, 3, 1, 1, (1, 1, 1, 1)),     # MobileNet's 7x7 planes: whole 8-channel blocks, transposed in and out
    (19, 5, 9, 3, 1, 1, (1, 1, 1, 1)),    # a last block of 3 channels; a plane of 45 pixels (not a multiple of 8)
    (24, 14, 14, 5, 2, 1, (2, 2, 2, 2)),  # stride 2, 5x5
    (16, 8, 8, 3, 2, 1, (0, 0, 0, 0)),    # the last input row and column are never read (the scratch does not hold them)
    (12, 9, 6, 3, 1, 2, (2, 0, 1, 3)),    # dilation, asymmetric padding
    (9, 25, 5, 3, 1, 1, (1, 1, 1, 1)),    # a keyword spotter's 25x5 planes
])
@pytest.mark.parametrize("epilogue", ["bias-clamp", "residual", "in-c"])
def test_depthwise_narrow_planes_by_channel_lanes(lib, c, h, w, k, stride, dil, pads, epilogue):
    """Planes narrower than 16 columns run VL channels at a time (dw_channel_block): every epilogue, any padding."""
    rng = np.random.default_rng(c * 100 + h + k)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    x[1, c - 1, 0, 0] = np.nan  # stays in its own channel and pixels
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    wt = rng.standard_normal((c, k, k)).astype(np.float32)
    ref = conv_ref(xp.astype(np.float64), wt[:, None].astype(np.float64), (stride, stride), (dil, dil), c)
    bias = rng.standard_normal(c).astype(np.float32)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    start = rng.standard_normal(ref.shape).astype(np.float32)
    y = np.full(ref.shape, np.nan, np.float32) if epilogue != "in-c" else start.copy()
    if epilogue == "bias-clamp":
        ep, expected = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], lo=0.0, hi=6.0), np.clip(ref + bias[None, :, None, None], 0, 6)
        expected[np.isnan(ref)] = np.nan  # a NaN passes a keep-NaN clamp
    elif epilogue == "residual":
        ep, expected = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res)), ref + bias[None, :, None, None] + res
    else:
        ep, expected = _epilogue(4), ref + start
    fn = _dwconv(lib)
    fn(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr([2, c, h, w, k, k, ref.shape[2], ref.shape[3]]),
       _arr([stride, stride, dil, dil, top, left]), _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)), ep)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(np.isnan(y), np.isnan(expected))


def test_emitted_arity_matches_the_c_entry_points():
    """ukernels.ARITY (what the compiler declares and calls) equals the parameter count of each C entry point."""
    import re

    from hcc.backends.cpu import ukernels

    source = (RUNTIME / "ukernels_dispatch.c").read_text()
    macros = {name: body.replace("\\\n", " ") for name, body in re.findall(r"#define (\w+_PARAMS)((?:.*\\\n)*.*)", source)}
    for symbol, arity in ukernels.ARITY.items():
        params = re.search(rf"\nvoid {symbol}\((.*?)\) {{", source, re.S).group(1)
        while params.strip() in macros or any(f"{name}," in params for name in macros):  # nested macros (INT8_GEMM_PARAMS)
            params = macros.get(params.strip()) or next(params.replace(f"{n},", f"{b},", 1) for n, b in macros.items() if f"{n}," in params)
        epilogue = re.search(r"EPILOGUE_PARAMS\(STRIDES(\d)\)", params)
        explicit = len([p for p in params.split(",") if p.strip() and "EPILOGUE_PARAMS" not in p])
        assert explicit + (8 + 2 * int(epilogue.group(1)) if epilogue else 0) == arity, symbol


# ------------------------------------------------------------------------------------------------ bf16 (AMX or AVX512-BF16)

HAS_AMX = all(_host_has(flag) for flag in ("avx512f", "amx_tile", "amx_bf16"))
# without tiles, plain bf16 runs on AVX512-BF16's dot products (ukernels.c dp_panel, dp_direct); bf16x3 and int8 stay AMX's
HAS_BF16_DOT = all(_host_has(flag) for flag in ("avx512f", "avx512_bf16"))


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even), as float32: what the AMX path multiplies."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32).reshape(x.shape)


@pytest.fixture(scope="module")
def bf16lib(tmp_path_factory):
    """The 16-lane library with its bf16 entries as gemm / conv, on a CPU that runs bf16 products (tiles or dots)."""
    if not (HAS_AMX or HAS_BF16_DOT):
        pytest.skip("this CPU has neither AMX bf16 tiles nor AVX512-BF16")
    lib = _build(tmp_path_factory.mktemp("bf16"), 16, ["-mavx512f", "-mfma"])
    lib.gemm, lib.conv = _with_site(lib.hcc_gemm_bf16_avx512), _with_site(lib.hcc_conv2d_bf16_avx512)
    return lib


@pytest.fixture(scope="module")
def amx(bf16lib):
    """... on AMX tiles: what only they run (bf16x3, int8)."""
    if not HAS_AMX:
        pytest.skip("this CPU has no AMX bf16 tiles")
    return bf16lib


@pytest.mark.parametrize("m,n,k", [(100, 70, 513), (130, 260, 70), (47, 33, 700), (64, 96, 128)])
@pytest.mark.parametrize("layout", ["nn", "nt", "tn"])
def test_bf16_gemm_rounds_operands_and_sums_in_fp32(bf16lib, m, n, k, layout):
    """The result is the fp64 product of the bf16-rounded operands up to fp32 summation error (tight), and differs
    from the unrounded product (so the tiles ran); partial 16 x 32 tiles and strided operands included."""
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m)).astype(np.float32).T if layout == "tn" else rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if layout == "nt" else rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = c0.copy()
    gemm(bf16lib, a, b, c)
    rounded = c0 + _bf16(a).astype(np.float64) @ _bf16(b).astype(np.float64)
    np.testing.assert_allclose(c, rounded, rtol=1e-5, atol=2e-6 * np.sqrt(k))
    assert np.abs(c - (c0 + a.astype(np.float64) @ b.astype(np.float64))).max() > 1e-3


@pytest.mark.parametrize("layout", ["nn", "nt"])
def test_bf16_gemm_constant_b_is_kept_as_tile_panels(bf16lib, layout):
    """A bf16 GEMM on tiles whose B is a bundle weight (call site > 0) packs B into bf16 tile panels at its first call
    and reads them afterwards: the same bits as packing on every call, and the kept panels are what is read (one set
    per batch entry when each reads its own slice of the weight, as attention heads do)."""
    rng = np.random.default_rng(11)
    m, k, n = 64, 96, 200
    a = rng.standard_normal((m, k)).astype(np.float32)
    w, other = (rng.standard_normal((n, k) if layout == "nt" else (k, n)).astype(np.float32) for _ in range(2))
    view = (lambda x: x.T) if layout == "nt" else (lambda x: x)
    site = 7000 + len(layout) * 10 + (layout == "nt")
    fresh = np.zeros((m, n), np.float32)
    gemm(bf16lib, a, view(w), fresh)  # site 0: packed on this call
    for weight in (w, other):  # the second call's argument is not read: the kept panels of w are
        kept = np.zeros((m, n), np.float32)
        gemm(bf16lib, a, view(weight), kept, site=site)
        assert np.array_equal(kept, fresh)
    heads = rng.standard_normal((k, 2, n)).astype(np.float32).transpose(1, 0, 2)  # per-head slices: batch stride n
    a2 = rng.standard_normal((2, m, k)).astype(np.float32)
    expect = np.zeros((2, m, n), np.float32)
    gemm(bf16lib, a2, heads, expect, batch_axes=1)
    for _ in range(2):
        c = np.zeros((2, m, n), np.float32)
        gemm(bf16lib, a2, heads, c, batch_axes=1, site=site + 100)
        assert np.array_equal(c, expect)


def test_bf16_gemm_too_small_for_tiles_is_fp32(bf16lib):
    """Below AMX_MIN_FLOPS the call is the fp32 kernel's, bit for bit."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((37, 29)).astype(np.float32), rng.standard_normal((29, 53)).astype(np.float32)
    c, c32 = np.zeros((37, 53), np.float32), np.zeros((37, 53), np.float32)
    gemm(bf16lib, a, b, c)
    gemm(types.SimpleNamespace(gemm=_with_site(bf16lib.hcc_gemm_avx512)), a, b, c32)
    assert np.array_equal(c, c32)


@pytest.mark.parametrize("site", [0, 3])
def test_bf16_gemm_inf_and_nan_propagate_as_in_fp32(bf16lib, site):
    """bfloat16 rounding keeps an Inf or a NaN (round to nearest even on the bits, NaN kept quiet), and the sums are
    fp32: every output that fp32 makes Inf or NaN is the same Inf or NaN in bf16 (a kept B included)."""
    rng = np.random.default_rng(22)
    m, k, n = 96, 200, 130
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    a[3, 5], a[40, 0] = np.inf, np.nan
    b[7, 100] = -np.inf
    c32, c = np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    gemm(types.SimpleNamespace(gemm=_with_site(bf16lib.hcc_gemm_avx512)), a, b, c32)
    gemm(bf16lib, a, b, c, site=9200 + site)
    assert np.isnan(c[40]).all() and np.isinf(c[3]).sum() > 0
    assert np.array_equal(np.isnan(c), np.isnan(c32)) and np.array_equal(np.isposinf(c), np.isposinf(c32))
    assert np.array_equal(np.isneginf(c), np.isneginf(c32))


def test_bf16_gemm_epilogue_and_threads(bf16lib):
    """bias init + residual + Relu on the tile path; the same bits for every thread count."""
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((96, 200)).astype(np.float32), rng.standard_normal((200, 130)).astype(np.float32)
    bias, res = rng.standard_normal(130).astype(np.float32), rng.standard_normal((96, 130)).astype(np.float32)
    expected = np.maximum(bias + _bf16(a).astype(np.float64) @ _bf16(b).astype(np.float64) + res, 0)
    results = []
    for threads in (1, 2, 3):
        bf16lib.hcc_set_num_threads(threads)
        c = np.full((96, 130), np.nan, np.float32)
        gemm(bf16lib, a, b, c, epilogue=_epilogue(5, init=bias, init_strides=[0, 0, 0, 0, 1], res=res, res_strides=[0, 0, 0, 130, 1], lo=0.0))
        results.append(c)
    bf16lib.hcc_set_num_threads(0)
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=3e-5)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bf16x3's halves of float32 x: hi = bf16(x), lo = bf16(x - hi), as float64."""
    hi = _bf16(x)
    return hi.astype(np.float64), _bf16((x - hi).astype(np.float32)).astype(np.float64)


def _bf16x3(lib):
    return types.SimpleNamespace(gemm=_with_site(lib.hcc_gemm_bf16x3_avx512))


@pytest.mark.parametrize("m,n,k", [(100, 70, 513), (130, 260, 70), (47, 33, 700), (128, 96, 768)])
@pytest.mark.parametrize("layout", ["nn", "nt", "tn"])
@pytest.mark.parametrize("site", [0, 1])
def test_bf16x3_gemm_sums_three_split_products(amx, m, n, k, layout, site):
    """bf16x3 is hi*hi + hi*lo + lo*hi of the split operands in fp32 sums (tight), its error against the exact
    product is at least 50x below plain bf16's, and a kept B (call site > 0) gives the same bits as packing per call."""
    rng = np.random.default_rng(m + n + k + 1)
    a = rng.standard_normal((k, m)).astype(np.float32).T if layout == "tn" else rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if layout == "nt" else rng.standard_normal((k, n)).astype(np.float32)
    lib = _bf16x3(amx)
    c = np.zeros((m, n), np.float32)
    gemm(lib, a, b, c, site=8000 + m + n + k + 10 * len(layout) * (layout == "nt") + (layout == "tn") if site else 0)
    (a_hi, a_lo), (b_hi, b_lo) = _split(a), _split(b)
    np.testing.assert_allclose(c, a_hi @ b_hi + a_hi @ b_lo + a_lo @ b_hi, rtol=1e-5, atol=2e-6 * np.sqrt(k))
    exact = a.astype(np.float64) @ b.astype(np.float64)
    plain = np.zeros((m, n), np.float32)
    gemm(amx, a, b, plain)
    assert np.abs(c - exact).max() * 50 < np.abs(plain - exact).max()
    if site:
        fresh = np.zeros((m, n), np.float32)
        gemm(lib, a, b, fresh)
        assert np.array_equal(c, fresh)


@pytest.mark.parametrize("precision", ["bf16", "bf16x3"])
def test_tiles_read_heads_side_by_side(amx, precision):
    """Attention's output projection on tiles: A's k runs of 64 contiguous floats (heads side by side, ukernels.c kc)
    are packed with vector loads; the result is the split / rounded operands' product, as for plain layouts."""
    rng = np.random.default_rng(5)
    heads, dim, rows, n = 4, 64, 70, 96
    context = rng.standard_normal((heads, rows, dim)).astype(np.float32)
    w = rng.standard_normal((heads, dim, n)).astype(np.float32)
    c = np.zeros((rows, n), np.float32)
    sa, sb = _strides(context), _strides(w)
    entry = amx.hcc_gemm_bf16x3_avx512 if precision == "bf16x3" else amx.hcc_gemm_bf16_avx512
    entry(I64(context.ctypes.data), I64(w.ctypes.data), I64(c.ctypes.data), _arr([1, 1, 1, rows, n, heads, dim]),
          _arr([0, 0, 0, sa[1], sa[0], sa[2]]), _arr([0, 0, 0, sb[0], sb[1], sb[2]]), _arr([0, 0, 0, n, 1]), _epilogue(5), I64(0))
    a = context.transpose(1, 0, 2).reshape(rows, heads * dim)
    b = w.reshape(heads * dim, n)
    if precision == "bf16x3":
        (a_hi, a_lo), (b_hi, b_lo) = _split(a), _split(b)
        ref = a_hi @ b_hi + a_hi @ b_lo + a_lo @ b_hi
    else:
        ref = _bf16(a).astype(np.float64) @ _bf16(b).astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=2e-6 * np.sqrt(heads * dim))


@pytest.mark.parametrize("site", [0, 2])
def test_bf16x3_gemm_inf_and_nan_propagate_as_in_fp32(amx, site):
    """An Inf or NaN operand (or a float past bf16's range) has no finite high half: x - hi is NaN and hi * lo could be
    Inf * 0. Such blocks compute in fp32, so every non-finite output matches fp32's (the same Inf, the same NaN) and the
    finite ones keep bf16x3's accuracy; a kept B with an Inf alike."""
    rng = np.random.default_rng(21)
    m, k, n = 96, 200, 130
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    a[3, 5], a[40, 0], a[70, 9] = np.inf, np.nan, 3.4e38  # the last rounds to bf16 Inf
    b[7, 100] = -np.inf
    c32, c = np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    gemm(types.SimpleNamespace(gemm=_with_site(amx.hcc_gemm_avx512)), a, b, c32)
    gemm(_bf16x3(amx), a, b, c, site=9100 + site)
    with np.errstate(invalid="ignore", over="ignore"):
        exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.array_equal(np.isnan(c), np.isnan(c32)) and np.array_equal(np.isposinf(c), np.isposinf(c32))
    assert np.array_equal(np.isneginf(c), np.isneginf(c32)) and np.isinf(c[3]).sum() > 0 and np.isnan(c[40]).all()
    finite = np.isfinite(exact) & np.isfinite(c)
    assert finite.sum() > m * n // 2
    np.testing.assert_allclose(c[finite], exact[finite], rtol=1e-4, atol=1e-4)


HAS_AMX_INT8 = HAS_AMX and _host_has("amx_int8")
# without tiles, int8 runs on AVX512-VNNI (ukernels.c vnni_panel): the same quantized operands, the same int32 sums
HAS_INT8 = HAS_AMX_INT8 or (not HAS_AMX and _host_has("avx512f") and _host_has("avx512_vnni"))


def _int8(lib, step: float, signed: bool):
    """hcc_gemm_int8 with A's quantization step and signedness bound, called like the other entries."""
    bits = int(np.array(step, np.float32).view(np.uint32))

    def call(*args, site: int = 0):
        return lib.hcc_gemm_int8_avx512(*args, I64(site), I64(bits), I64(int(signed)))

    return types.SimpleNamespace(gemm=call)


def _quantized_product(a: np.ndarray, b: np.ndarray, step: float, signed: bool) -> np.ndarray:
    """What planner/precision.py emulates: A per tensor (round half to even, saturated), B per column (+-127)."""
    qa = np.clip(np.rint(a / np.float32(step)), -128 if signed else 0, 127 if signed else 255).astype(np.float64)
    amax = np.abs(b).max(axis=0)
    sb = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    qb = np.clip(np.rint(b / sb), -127, 127).astype(np.float64)
    return (qa @ qb) * np.float64(np.float32(step)) * sb.astype(np.float64)


@pytest.mark.skipif(not HAS_INT8, reason="this CPU has neither AMX-INT8 tiles nor AVX512-VNNI")
@pytest.mark.parametrize("m,n,k", [(100, 70, 513), (64, 96, 128), (130, 260, 70), (40, 96, 300)])
@pytest.mark.parametrize("signed", [True, False])
def test_int8_gemm_is_the_quantized_product(bf16lib, m, n, k, signed):
    """int8 on AMX tiles or AVX512-VNNI (a signed A goes in as a + 128 there, and 128 x B's column sums come off): A
    per tensor with the given step (int8, or uint8 for a non-negative tensor), the kept weight per column, int32 sums
    scaled back: the emulated quantized product up to fp32 rounding; a second call reads the kept panels (same bits);
    a B that is not a kept weight (site 0) runs the fp32 kernel, bit for bit."""
    rng = np.random.default_rng(m + n + k + signed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    if not signed:
        a = np.maximum(a, 0)
    b = rng.standard_normal((k, n)).astype(np.float32)
    step = float(np.abs(a).max() / (127 if signed else 255))
    lib = _int8(bf16lib, step, signed)
    site = 9500 + m + n + k + 1000 * signed
    c, again = np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    gemm(lib, a, b, c, site=site)
    gemm(lib, a, b, again, site=site)
    expected = _quantized_product(a, b, step, signed)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert np.array_equal(c, again)
    assert np.abs(c - a.astype(np.float64) @ b).max() > 1e-3  # quantized: not the fp32 product
    fp32, plain = np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    gemm(lib, a, b, plain)
    gemm(types.SimpleNamespace(gemm=_with_site(bf16lib.hcc_gemm_avx512)), a, b, fp32)
    assert np.array_equal(plain, fp32)


@pytest.mark.skipif(not HAS_INT8, reason="this CPU has neither AMX-INT8 tiles nor AVX512-VNNI")
def test_int8_gemm_inf_and_nan_run_in_fp32(bf16lib):
    """An Inf or NaN in A has no int8 value: its block runs the fp32 kernel, so non-finite outputs match fp32's;
    a weight holding one is computed in fp32 altogether."""
    rng = np.random.default_rng(31)
    a, b = rng.standard_normal((96, 200)).astype(np.float32), rng.standard_normal((200, 64)).astype(np.float32)
    a[3, 5], a[40, 0] = np.inf, np.nan
    step = float(np.abs(a[np.isfinite(a)]).max() / 127)
    c, c32 = np.zeros((96, 64), np.float32), np.zeros((96, 64), np.float32)
    gemm(_int8(bf16lib, step, True), a, b, c, site=9901)
    gemm(types.SimpleNamespace(gemm=_with_site(bf16lib.hcc_gemm_avx512)), a, b, c32)
    assert np.array_equal(np.isnan(c), np.isnan(c32)) and np.array_equal(np.isinf(c), np.isinf(c32)) and np.isnan(c[40]).all()
    b[7, 9] = np.inf
    a[3, 5] = a[40, 0] = 0.0
    c[:], c32[:] = 0.0, 0.0
    gemm(_int8(bf16lib, step, True), a, b, c, site=9902)
    gemm(types.SimpleNamespace(gemm=_with_site(bf16lib.hcc_gemm_avx512)), a, b, c32)
    assert np.array_equal(c, c32)


@pytest.mark.parametrize("c,h,f,k,stride,pad", [(16, 20, 32, 3, 1, 1), (3, 35, 32, 7, 2, 3), (64, 28, 48, 1, 2, 0), (24, 12, 40, 3, 1, 0)])
def test_bf16_conv_matches_rounded_reference(bf16lib, c, h, f, k, stride, pad):
    """Convolutions (implicit zero padding, strides) as an implicit-im2col GEMM on the tiles."""
    rng = np.random.default_rng(c * 31 + f)
    x = rng.standard_normal((2, c, h, h)).astype(np.float32)
    w = rng.standard_normal((f, c, k, k)).astype(np.float32)
    padded = np.pad(_bf16(x).astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = conv_ref(padded, _bf16(w).astype(np.float64), (stride, stride), (1, 1), 1)
    bias = rng.standard_normal(f).astype(np.float32)
    y = np.full(ref.shape, np.nan, np.float32)
    sizes = [2, c, h, h, f, k, k, ref.shape[2], ref.shape[3], 1]
    bf16lib.conv(I64(x.ctypes.data), I64(w.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([stride, stride, 1, 1, pad, pad]),
             _arr(_strides(x)), _arr(_strides(w)), _arr(_strides(y)), _epilogue(4, init=bias, init_strides=[0, 1, 0, 0]))
    np.testing.assert_allclose(y, ref + bias[None, :, None, None], rtol=1e-5, atol=2e-6 * np.sqrt(c * k * k))
    unrounded = conv_ref(np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad))), w.astype(np.float64), (stride, stride), (1, 1), 1)
    assert np.abs(y - unrounded - bias[None, :, None, None]).max() > 1e-3


# channels a multiple of 32 (AMX's direct path), and for the dot products' any even count: filter vectors (dp_fv:
# 48, 64 and 112 filters, the last block of 64 part padding; pixel parts of a 64-filter layer) or, where those blocks
# would be more than a quarter padding, the padded grid (dp_direct_tiles: its wrapped columns dropped; 18 channels on
# a 7x7 map, 6 channels with 43 filters in blocks of 11 and 10 rows); each big enough for bf16 products
# (use_bf16_products: 32 filters, 1 MFLOP per image)
@pytest.mark.parametrize("c,h,w,f,k,pad", [(64, 20, 37, 48, 3, 1), (32, 9, 18, 40, 3, 0), (64, 12, 18, 64, 1, 0), (32, 12, 21, 32, 5, 2),
                                           (18, 7, 7, 72, 3, 1), (6, 11, 30, 43, 3, 1), (16, 9, 11, 112, 3, 1), (8, 30, 33, 64, 3, 1)])
def test_bf16_direct_conv_on_tiles(bf16lib, c, h, w, f, k, pad):
    """Constant filters, stride 1: the direct paths (amx_direct for channels a multiple of 32: the B tiles read a bf16
    channel-pair copy of the padded input in place; dp_direct for an even channel count and a window wider than 1x1:
    dot products on the same copy over the padded grid), with partial filter blocks and row tails, a bias and a
    residual + Relu epilogue; the same rounded reference as the im2col path, and the same result on a second call
    (the kept filters)."""
    rng = np.random.default_rng(c + h * 7 + f)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, k, k)).astype(np.float32)
    padded = np.pad(_bf16(x).astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = conv_ref(padded, _bf16(wt).astype(np.float64), (1, 1), (1, 1), 1)
    bias = rng.standard_normal(f).astype(np.float32)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    expected = np.maximum(ref + bias[None, :, None, None] + res, 0)
    sizes = [2, c, h, w, f, k, k, ref.shape[2], ref.shape[3], 1]
    site = 9000 + c + h + f + k
    results = []
    for call_site in (site, site, 0):  # site 0: filters not constant, the im2col path
        y = np.full(ref.shape, np.nan, np.float32)
        bf16lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([1, 1, 1, 1, pad, pad]),
                 _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)),
                 _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res), lo=0.0), site=call_site)
        results.append(y)
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=2e-6 * np.sqrt(c * k * k))
    assert np.array_equal(results[0], results[1])
    # the direct paths sum taps in (kh, kw, c) order, im2col in (c, kh, kw): equal up to fp32 sums, not bit for bit
    np.testing.assert_allclose(results[2], results[0], rtol=1e-5, atol=2e-6 * np.sqrt(c * k * k))
    direct = (c % 32 == 0) if HAS_AMX else k > 1  # which shapes a direct path takes (else both calls ran im2col)
    assert not direct or not np.array_equal(results[0], results[2])


def test_bf16_direct_conv_same_bits_for_every_thread_count(bf16lib):
    """The direct bf16 convolution splits its pixels into more parts with more threads (dp_fv: two tasks per thread,
    at most 2048 pixels each: 3 parts of this 70x70 map at 1 thread); each pixel's sums run over the same steps in the
    same order, so every thread count gives the same bits."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 70, 70)).astype(np.float32)
    wt = rng.standard_normal((64, 16, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        bf16lib.hcc_set_num_threads(threads)
        y = np.full((1, 64, 70, 70), np.nan, np.float32)
        bf16lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr([1, 16, 70, 70, 64, 3, 3, 70, 70, 1]),
                     _arr([1, 1, 1, 1, 1, 1]), _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)),
                     _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], lo=0.0), site=9650)
        results.append(y)
    bf16lib.hcc_set_num_threads(0)
    assert np.isfinite(results[0]).all() and all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.skipif(HAS_AMX or not HAS_BF16_DOT, reason="dot products only (tiles take 32 rows or more)")
def test_bf16_dot_products_from_16_filters(bf16lib):
    """Without tiles there is no 32-row block to fill: a 16-filter convolution (a U-Net's) and a 16-row GEMM run in
    bf16 (use_bf16_products), matching the rounded references."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((1, 32, 40, 41)).astype(np.float32)
    wt = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    ref = conv_ref(np.pad(_bf16(x).astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1))), _bf16(wt).astype(np.float64), (1, 1), (1, 1), 1)
    y = np.zeros(ref.shape, np.float32)
    bf16lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr([1, 32, 40, 41, 16, 3, 3, 40, 41, 1]),
                 _arr([1, 1, 1, 1, 1, 1]), _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)), _epilogue(4),
                 site=9601)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=2e-6 * np.sqrt(288))
    a, b = rng.standard_normal((16, 512)).astype(np.float32), rng.standard_normal((512, 256)).astype(np.float32)
    c = np.zeros((16, 256), np.float32)
    gemm(bf16lib, a, b, c)
    np.testing.assert_allclose(c, _bf16(a).astype(np.float64) @ _bf16(b).astype(np.float64), rtol=1e-5, atol=2e-6 * np.sqrt(512))


# each big enough for bf16 products (use_bf16_products: 32 taps, 32 filters, 1 MFLOP per image)
@pytest.mark.parametrize("c,h,w,f,k,pad", [(3, 40, 75, 64, 7, 3), (1, 64, 70, 40, 7, 3), (4, 40, 41, 33, 5, 0),
                                           (32, 21, 23, 64, 3, 1), (16, 30, 17, 96, 5, 2), (8, 40, 40, 48, 3, 0)])
def test_bf16_stride2_conv(bf16lib, c, h, w, f, k, pad):
    """Stride 2 with constant filters on dot products: up to 4 channels (a CNN's stem), the taps pair along the
    window's width (dp_stride2: an odd window gets a zero tap; rows of output columns not a multiple of 32 wide); an
    even channel count and 48+ filters, dp_fv reads a channel-pair copy whose columns are split by parity
    (dp_s2_pairs_input: odd widths, zero padding on both sides, a 5x5 window). A bias, a residual and Relu; the rounded
    reference, also for im2col (site 0), and the same bits on a second call."""
    rng = np.random.default_rng(c + h + f)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, k, k)).astype(np.float32)
    padded = np.pad(_bf16(x).astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = conv_ref(padded, _bf16(wt).astype(np.float64), (2, 2), (1, 1), 1)
    bias = rng.standard_normal(f).astype(np.float32)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    expected = np.maximum(ref + bias[None, :, None, None] + res, 0)
    sizes = [2, c, h, w, f, k, k, ref.shape[2], ref.shape[3], 1]
    results = []
    for call_site in (9500 + c + k, 9500 + c + k, 0):
        y = np.full(ref.shape, np.nan, np.float32)
        bf16lib.conv(I64(x.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr(sizes), _arr([2, 2, 1, 1, pad, pad]),
                     _arr(_strides(x)), _arr(_strides(wt)), _arr(_strides(y)),
                     _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res), lo=0.0), site=call_site)
        results.append(y)
    for y in (results[0], results[2]):
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=2e-6 * np.sqrt(c * k * k))
    assert np.array_equal(results[0], results[1])
    # dp_stride2 pairs taps (kw, kw + 1) and dp_fv sums in (kh, kw, c) order, im2col consecutive k in (c, kh, kw):
    # the sums differ in order, not in value
    assert HAS_AMX or not np.array_equal(results[0], results[2])


def _to_blocked(x: np.ndarray) -> np.ndarray:
    """NCHW -> the blocked layout that convolutions hand over (ukernels.c CBLOCK = 16): [N][C/16][H][W][16]."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // 16, 16, h, w).transpose(0, 1, 3, 4, 2))


@pytest.mark.parametrize("c,h,w,f,k,stride,pad,residual", [
    (64, 25, 5, 64, 1, 1, 0, False),    # a keyword spotter's pointwise conv: the filter-vector kernel, in place
    (96, 7, 7, 160, 1, 1, 0, False),    # partial filter blocks
    (32, 6, 9, 48, 1, 1, 0, False),     # 32 taps: the filter-vector kernel when writing blocks, else the GEMM path
    (32, 9, 9, 32, 3, 1, 1, False),     # a padded 3x3 reading a blocked input: a blocked padded copy (padded_block_copy)
    (48, 13, 11, 32, 3, 2, 1, False),   # the same at stride 2, a rectangular map
    (16, 15, 15, 32, 7, 2, 3, False),   # 7x7/2 with 3 pixels of padding
    (64, 8, 8, 64, 1, 1, 0, True),      # a residual epilogue: converted
    (128, 5, 7, 80, 1, 1, 0, False),    # 128 taps (FV_KC): blocked tiles written from their registers
    (16, 9, 11, 48, 3, 1, 0, False),    # 144 taps: the blocked write-out through the sums
    (96, 9, 10, 16, 1, 1, 0, False),    # few filters (a depthwise block's projection): the filter-vector kernel still
    (32, 9, 11, 16, 3, 1, 1, False),    # 16 filters, 288 taps: one chunk (fv_chunk), written from the registers
    (64, 7, 9, 16, 3, 1, 1, False),     # 16 filters, 576 taps: two chunks of 288 through the sums
    (16, 10, 9, 32, 3, 1, 1, False),    # 32 filters, 144 taps: one chunk, from the registers
])
@pytest.mark.parametrize("layouts", [1, 2, 3])
def test_conv_blocked_layouts(lib, c, h, w, f, k, stride, pad, residual, layouts):
    """A convolution reads its input (layouts 1) and/or writes its output (2) in the blocked layout: the same values as
    in NCHW, at every width, whether its kernel takes the layout in place or converts around another path."""
    rng = np.random.default_rng(c + f + k + layouts)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(np.float64)
    ref = conv_ref(xp, wt.astype(np.float64), (stride, stride), (1, 1), 1) + bias[None, :, None, None]
    res = rng.standard_normal(ref.shape).astype(np.float32) if residual else None
    ref = np.maximum(ref + (res if residual else 0), 0)
    oh, ow = ref.shape[2:]
    xin = _to_blocked(x) if layouts & 1 else x
    y = np.zeros(ref.shape, np.float32)
    ep = _epilogue(4, init=bias, init_strides=[0, 1, 0, 0], res=res, res_strides=_strides(res) if residual else None, lo=0.0)
    nchw = [c * h * w, h * w, w, 1]
    lib.conv(I64(xin.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr([2, c, h, w, f, k, k, oh, ow, 1]),
             _arr([stride, stride, 1, 1, pad, pad]), _arr(nchw), _arr(_strides(wt)), _arr([f * oh * ow, oh * ow, ow, 1]), ep,
             layouts=layouts)
    expected = _to_blocked(ref) if layouts & 2 else ref
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,c,h,w,k,stride,pad", [(1, 64, 25, 5, 3, 1, 1), (1, 32, 14, 14, 3, 2, 1), (1, 48, 7, 7, 5, 1, 2),
                                                    # planes over 32 KiB per vector of channels at every ISA width:
                                                    # the in-place kernel (dw_blocked) for layouts 3 with a
                                                    # per-channel bias; its tasks take row ranges of a channel block
                                                    # (more output rows than one pass of DW_ROWS, fewer rows than
                                                    # lanes, two batch entries)
                                                    (1, 32, 48, 48, 3, 1, 1), (1, 16, 50, 47, 3, 2, 1), (1, 16, 46, 46, 5, 1, 2),
                                                    (2, 32, 75, 30, 3, 1, 1), (2, 16, 3, 800, 3, 1, 0)])
@pytest.mark.parametrize("layouts", [1, 2, 3])
@pytest.mark.parametrize("plane_bias", [True, False])
def test_depthwise_blocked_layouts(lib, n, c, h, w, k, stride, pad, layouts, plane_bias):
    """The depthwise kernel reads and writes the blocked layout in place (implicit zero padding, any stride), with a
    per-channel bias and clamp, or an init per element (its general epilogue)."""
    _check_depthwise_blocked(lib, n, c, h, w, k, stride, pad, 1, layouts, plane_bias)


@pytest.mark.parametrize("h,w,k,stride,pad,dil", [(40, 40, 3, 1, 2, 2), (38, 41, 3, 2, 4, 2), (36, 36, 3, 1, 4, 1),
                                                  (34, 37, 5, 2, 6, 1), (60, 9, 3, 1, 1, 3)])
def test_depthwise_blocked_dilation_and_wide_padding(lib, h, w, k, stride, pad, dil):
    """Rows and columns whose windows reach into the padding (the kernel rows and columns inside the input, no
    per-tap tests), with dilation, and with padding wider than the kernel (windows wholly outside: the init alone)."""
    _check_depthwise_blocked(lib, 1, 16, h, w, k, stride, pad, dil, 3, True)


def _check_depthwise_blocked(lib, n, c, h, w, k, stride, pad, dil, layouts, plane_bias):
    rng = np.random.default_rng(c + k + layouts)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, k, k)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(np.float64)
    ref = conv_ref(xp, wt[:, None].astype(np.float64), (stride, stride), (dil, dil), c)
    oh, ow = ref.shape[2:]
    if plane_bias:
        init = rng.standard_normal(c).astype(np.float32)
        ep = _epilogue(4, init=init, init_strides=[0, 1, 0, 0], lo=0.0, hi=6.0)
        ref = np.clip(ref + init[None, :, None, None], 0, 6)
    else:
        init = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
        ep = _epilogue(4, init=init, init_strides=_strides(init))
        ref = ref + init
    xin = _to_blocked(x) if layouts & 1 else x
    y = np.zeros(ref.shape, np.float32)
    lib.dwconv = _dwconv(lib)
    lib.dwconv(I64(xin.ctypes.data), I64(wt.ctypes.data), I64(y.ctypes.data), _arr([n, c, h, w, k, k, oh, ow]),
               _arr([stride, stride, dil, dil, pad, pad]), _arr([c * h * w, h * w, w, 1]), _arr(_strides(wt)),
               _arr([c * oh * ow, oh * ow, ow, 1]), ep, layouts=layouts)
    expected = _to_blocked(ref) if layouts & 2 else ref
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
