"""runtime/softmax.c (hcc_softmax) and its matcher (backends/cpu/softmax_calls.py).

The kernel against a float64 softmax (rtol 1e-6: its exp is within 2 ulp, its sum and reciprocal a few more), with
onnxruntime's NaN rule (a NaN, a +inf or a row of -inf makes the row NaN; a -inf among finite values gives 0), at
every ISA width the host runs, on strided views, with the same bits on 1 and 2 threads. Then a compiled Softmax: the
chain becomes one call (the schedule report says so) and matches onnxruntime."""
from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import hcc
from hcc.backends.cpu import softmax_calls, toolchain
from hcc.runtime import load
from hcc.runtime.devices.native import load_library
from tests.backends.cpu.test_pool_kernel import ISA_STUB, _host_widths

I64 = ctypes.c_int64
RTOL = 1e-6


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("softmax")
    (tmp / "isa.c").write_text(ISA_STUB)
    so = tmp / "softmax.so"
    subprocess.run(["gcc", "-shared", "-O2", "-fPIC", "-std=gnu11", "-pthread",
                    f"-DSOFTMAX_PARALLEL_ELEMENTS={toolchain.SOFTMAX_PARALLEL_ELEMENTS}", str(toolchain.RUNTIME_DIR / "softmax.c"),
                    str(toolchain.RUNTIME_DIR / "threadpool.c"), str(tmp / "isa.c"), "-lm", "-o", str(so)], check=True)
    return load_library(so, "a test library")


def _reference(x: np.ndarray) -> np.ndarray:
    """Softmax along the last axis with onnxruntime's rule for NaN and infinities: x - max in float32 as every
    float32 softmax computes it (its rounding moves exp(x - max) by up to |x - max| * 6e-8, relatively), the rest in
    float64."""
    m = x.max(axis=-1, keepdims=True)  # NaN when a NaN is in the row
    with np.errstate(invalid="ignore"):
        e = np.exp((x - m).astype(np.float64))  # inf - inf, -inf - -inf: NaN
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _run(lib, x: np.ndarray, y: np.ndarray) -> None:
    """hcc_softmax over the last axis of the view `x` (rank <= 4, any strides) into the view `y`."""
    pad = 4 - x.ndim
    sizes = [1] * pad + list(x.shape)
    xs = [0] * pad + [s // 4 for s in x.strides]
    ys = [0] * pad + [s // 4 for s in y.strides]
    lib.hcc_softmax(*[I64(v) for v in [x.ctypes.data, y.ctypes.data, *sizes, *xs, *ys]])


def _assert_close(actual: np.ndarray, expected: np.ndarray, what) -> None:
    nan = np.isnan(expected)
    assert (np.isnan(actual) == nan).all(), what
    np.testing.assert_allclose(np.where(nan, 0, actual), np.where(nan, 0, expected), rtol=RTOL, atol=0, err_msg=str(what))


def _with_specials(rng, shape) -> np.ndarray:
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    rows = x.reshape(-1, shape[-1])
    rows[0, 3 % shape[-1]] = np.nan
    rows[1, :] = -np.inf
    rows[2, ::2] = -np.inf
    rows[3, 0] = np.inf
    rows[4, :] = 80.0  # large equal values: the max keeps exp in range
    rows[5, 1 % shape[-1]] = -1e30
    return x


@pytest.mark.parametrize("shape", [(6, 1), (2, 3, 7), (1, 3, 9, 197), (2, 2, 5, 128), (8, 16), (3, 4, 100, 33)],
                         ids=lambda s: "x".join(map(str, s)))
def test_softmax_kernel_matches_float64_at_every_width(kernel, shape):
    rng = np.random.default_rng(sum(shape))
    x = _with_specials(rng, shape)
    expected = _reference(x)
    for width in _host_widths():
        kernel.test_set_isa(width)
        results = []
        for threads in (1, 2):
            kernel.hcc_set_num_threads(threads)
            y = np.full(shape, 7.0, np.float32)
            _run(kernel, x, y)
            _assert_close(y, expected, (width, threads))
            results.append(y)
        assert results[0].tobytes() == results[1].tobytes(), f"width {width}: 1 and 2 threads differ"


def test_softmax_kernel_reads_and_writes_strided_views(kernel):
    """Rows that are columns of a transposed array (one element at a time), and rows inside a larger output: only the
    view is written."""
    rng = np.random.default_rng(5)
    base = (rng.standard_normal((40, 3, 2)) * 3).astype(np.float32)
    x = base.transpose(1, 2, 0)  # rows of 40 with element stride 6
    out = np.full((3, 2, 50), 9.0, np.float32)
    y = out[:, :, 5:45]
    for width in _host_widths():
        kernel.test_set_isa(width)
        out[:] = 9.0
        _run(kernel, x, y)
        _assert_close(y, _reference(x), width)
        assert (out[:, :, :5] == 9.0).all() and (out[:, :, 45:] == 9.0).all(), width
    wide = (rng.standard_normal((4, 300)) * 3).astype(np.float32)
    y2 = np.zeros((2, 290), np.float32)
    _run(kernel, wide[::2, 10:], y2)  # every other row, from column 10
    _assert_close(y2, _reference(wide[::2, 10:]), "row stride 600")


def _softmax_model(path, shape, opset: int = 17, axis: int = -1) -> None:
    node = h.make_node("Softmax", ["x"], ["y"], axis=axis, name="attention_softmax")
    graph = h.make_graph([node], "softmax", [h.make_tensor_value_info("x", T.FLOAT, shape)],
                         [h.make_tensor_value_info("y", T.FLOAT, shape)])
    path.write_bytes(h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8).SerializeToString())


def test_compiled_softmax_is_one_call_and_matches_onnxruntime(tmp_path):
    shape = [2, 3, 20, 37]
    _softmax_model(tmp_path / "sm.onnx", shape)
    hcc.compile(tmp_path / "sm.onnx", tmp_path / "bundle")
    manifest = (tmp_path / "bundle" / "manifest.json").read_text()
    assert softmax_calls.SOFTMAX in manifest and "ukernel-softmax" in manifest
    x = _with_specials(np.random.default_rng(1), shape)
    expected = ort.InferenceSession(str(tmp_path / "sm.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for threads in (1, 2):
        y = load(tmp_path / "bundle", threads=threads).run(None, {"x": x})[0]
        _assert_close(y, expected, threads)


def test_softmax_over_another_axis_stays_correct(tmp_path):
    """Opset 11 flattens from `axis` on (a 2-D softmax over the trailing dims); opset 13 over a middle axis."""
    x = (np.random.default_rng(2).standard_normal((2, 5, 7)) * 3).astype(np.float32)
    for opset, axis in ((11, 1), (13, 1)):
        path = tmp_path / f"sm{opset}.onnx"
        _softmax_model(path, list(x.shape), opset, axis)
        hcc.compile(path, tmp_path / f"bundle{opset}")
        expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        _assert_close(load(tmp_path / f"bundle{opset}").run(None, {"x": x})[0], expected, opset)
