"""BitCast (opset 26, frontend/bitcast.py): rewritten before the opset conversion into exact bit arithmetic (or folded
when its input is a constant); compared bit for bit with numpy's `.view`, including -0.0, infinities, subnormals,
the largest and smallest normals; NaN patterns give a NaN; unsupported types are refused naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import hcc
import hcc.runtime
from hcc.errors import HccError


def _model(src: int, dst: int, shape: list, constant: np.ndarray | None = None) -> onnx.ModelProto:
    nodes = [h.make_node("BitCast", ["x"], ["bits"], name="bitcast", to=dst)]
    inputs, inits = [h.make_tensor_value_info("x", src, shape)], []
    if constant is not None:
        inputs, inits = [h.make_tensor_value_info("y", dst, shape)], [numpy_helper.from_array(constant, "x")]
        nodes.append(h.make_node("Add", ["bits", "y"], ["out"], name="add"))
    out = "out" if constant is not None else "bits"
    graph = h.make_graph(nodes, "bitcast", inputs, [h.make_tensor_value_info(out, dst, shape)], initializer=inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 26)], ir_version=13)


def _run(tmp_path, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "golden.npz", **feeds)
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b", golden_inputs=str(tmp_path / "golden.npz"))
    return hcc.runtime.load(tmp_path / "b").run(None, feeds)[0]


def _floats(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    special = [0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, info.max, -info.max, info.tiny, -info.tiny,
               info.smallest_subnormal, -info.smallest_subnormal, info.tiny / 3, -info.tiny * 0.75, info.eps]
    rng = np.random.default_rng(26)
    spread = rng.standard_normal(48) * np.exp2(rng.integers(info.minexp, info.maxexp, 48).astype(np.float64))
    return np.concatenate([np.asarray(special, dtype), spread.astype(dtype)])


@pytest.mark.parametrize("src, dst", [(T.FLOAT, T.INT32), (T.FLOAT, T.UINT32), (T.DOUBLE, T.INT64),
                                      (T.FLOAT16, T.INT16), (T.FLOAT16, T.UINT16)])
def test_float_to_bits(tmp_path, src, dst):
    x = _floats(h.tensor_dtype_to_np_dtype(src)).reshape(3, -1)
    got = _run(tmp_path, _model(src, dst, list(x.shape)), {"x": x})
    assert got.dtype == h.tensor_dtype_to_np_dtype(dst)
    np.testing.assert_array_equal(got, x.view(h.tensor_dtype_to_np_dtype(dst)))


@pytest.mark.parametrize("src, dst", [(T.INT32, T.FLOAT), (T.UINT32, T.FLOAT), (T.INT64, T.DOUBLE),
                                      (T.INT16, T.FLOAT16), (T.UINT16, T.FLOAT16)])
def test_bits_to_float(tmp_path, src, dst):
    fdtype = h.tensor_dtype_to_np_dtype(dst)
    x = _floats(fdtype).view(h.tensor_dtype_to_np_dtype(src))
    nan_bits = np.array([np.nan, -np.nan], fdtype).view(x.dtype)
    x = np.concatenate([x, nan_bits]).reshape(-1)
    got = _run(tmp_path, _model(src, dst, [x.size]), {"x": x})
    expected = x.view(fdtype)
    assert got.dtype == fdtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(got[finite].view(x.dtype), x[finite])  # bit for bit: -0.0 and subnormals too


@pytest.mark.parametrize("src, dst", [(T.INT8, T.UINT8), (T.UINT8, T.INT8), (T.INT16, T.UINT16),
                                      (T.UINT16, T.INT16), (T.INT32, T.UINT32), (T.UINT32, T.INT32),
                                      (T.BOOL, T.UINT8), (T.INT32, T.INT32)])
def test_integers(tmp_path, src, dst):
    sdtype = np.dtype(h.tensor_dtype_to_np_dtype(src))
    if sdtype == np.bool_:
        x = np.array([True, False, False, True])
    else:
        info = np.iinfo(sdtype)
        x = np.concatenate([np.array([info.min, info.max, 0, 1, -1 if info.min else 2], sdtype),
                            np.random.default_rng(8).integers(info.min, info.max, 20, dtype=sdtype)])
    got = _run(tmp_path, _model(src, dst, [x.size]), {"x": x})
    np.testing.assert_array_equal(got, x.view(h.tensor_dtype_to_np_dtype(dst)))


def test_constant_input_is_folded(tmp_path):
    x = np.array([1.0, -2.5, -0.0, np.inf], np.float32)
    model = _model(T.FLOAT, T.INT32, [4], constant=x)
    assert not any(n.op_type == "BitCast" for n in hcc.frontend.loader.load_model(_save(tmp_path, model)).model.graph.node)
    y = np.array([0, 1, 2, 3], np.int32)
    np.testing.assert_array_equal(_run(tmp_path, model, {"y": y}), x.view(np.int32) + y)


def _save(tmp_path, model) -> str:
    onnx.save(model, tmp_path / "c.onnx")
    return str(tmp_path / "c.onnx")


def test_unsupported_types_are_refused_by_name(tmp_path):
    with pytest.raises(HccError, match=r"node 'bitcast' \(BitCast\): type UINT64"):
        hcc.frontend.loader.load_model(_save(tmp_path, _model(T.UINT64, T.INT64, [3])))
    with pytest.raises(HccError, match=r"node 'bitcast' \(BitCast\).*BFLOAT16"):
        hcc.frontend.loader.load_model(_save(tmp_path, _model(T.BFLOAT16, T.INT16, [3])))
