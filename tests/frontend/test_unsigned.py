"""UINT16/UINT32/UINT64 tensors (frontend/unsigned.py): inputs and outputs keep their dtype, arithmetic, comparisons,
Div/Mod, Max/Min, bitwise ops and shifts give onnxruntime's results bit for bit on values with the top bit set and
on wrap-around (UINT64 Div/Mod and right shifts written out on its bit patterns); what is not exact on UINT64 bit
patterns is refused by node name."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import hcc
from hcc.artifacts.golden import golden_outputs
from hcc.errors import HccError
from hcc.frontend.loader import load_model
from hcc.runtime import load


def compile_and_compare(model: onnx.ModelProto, tmp_path, *, feeds: dict[str, np.ndarray]):
    """Compile, run the bundle, and compare every output bit for bit with onnxruntime's, or onnx.reference's where
    onnxruntime has no kernel for the type (Max/Min/BitShift on uint16...). Returns (session, outputs, expected)."""
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "bundle")
    expected = golden_outputs(model, feeds)
    session = load(tmp_path / "bundle")
    outputs = session.run(None, feeds)
    for name, actual in zip(session.manifest.outputs, outputs):
        assert actual.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(actual, expected[name], err_msg=name)
    return session, outputs, expected

BINARY = ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal",
          "BitwiseAnd", "BitwiseOr", "BitwiseXor"]
BOOL_RESULT = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal"}


def _model(elem: int, ops: list[str], opset: int = 18, n: int = 12) -> onnx.ModelProto:
    nodes, outputs = [], []
    for op in ops:
        out = f"{op.lower()}_out"
        if op == "BitwiseNot":
            nodes.append(helper.make_node(op, ["x"], [out], name=op))
        elif op.startswith("Shift"):
            nodes.append(helper.make_node("BitShift", ["x", "s"], [out], name=op, direction=op[5:].upper()))
        else:  # ("Chains": replaced below)
            nodes.append(helper.make_node(op, ["x", "y"], [out], name=op))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.BOOL if op in BOOL_RESULT else elem, [n]))
    if "Chains" in ops:  # wrapped results read by order-sensitive ops: an output alone would hide a missing wrap
        nodes.remove(next(node for node in nodes if node.op_type == "Chains"))
        outputs = [o for o in outputs if o.name != "chains_out"]
        for op in ("Add", "Sub", "Mul", "BitwiseNot"):
            nodes.append(helper.make_node(op, ["x"] if op == "BitwiseNot" else ["x", "y"], [f"chain_{op}"], name=f"chain_{op}"))
            nodes.append(helper.make_node("Less", [f"chain_{op}", "x"], [f"chain_{op}_less"], name=f"chain_{op}_less"))
            nodes.append(helper.make_node("Div", [f"chain_{op}", "y"], [f"chain_{op}_div"], name=f"chain_{op}_div"))
            outputs += [helper.make_tensor_value_info(f"chain_{op}_less", TensorProto.BOOL, [n]),
                        helper.make_tensor_value_info(f"chain_{op}_div", elem, [n])]
    inputs = [helper.make_tensor_value_info(name, elem, [n]) for name in ("x", "y", "s")]
    graph = helper.make_graph(nodes, "unsigned", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    used = {i for node in nodes for i in node.input}
    del model.graph.input[:]
    model.graph.input.extend([i for i in inputs if i.name in used])
    return model


def _feeds(dtype, names=("x", "y", "s")) -> dict[str, np.ndarray]:
    info = np.iinfo(dtype)
    top = 1 << (info.bits - 1)
    x = np.array([0, 1, 2, 7, top - 1, top, top + 1, info.max - 1, info.max, 300, 12345, top + 12345], dtype=dtype)
    y = np.array([1, info.max, 3, 2, top, top - 1, 2, info.max, 1, top + 7, 255, 3], dtype=dtype)
    s = np.array([0, 1, 3, info.bits - 1, 1, 0, 2, 4, info.bits - 1, 5, 8, 1], dtype=dtype)
    return {k: v for k, v in {"x": x, "y": y, "s": s}.items() if k in names}


@pytest.mark.parametrize("elem,dtype", [(TensorProto.UINT16, np.uint16), (TensorProto.UINT32, np.uint32)])
def test_widened_types_match_onnxruntime(tmp_path, elem, dtype):
    ops = BINARY + ["BitwiseNot", "ShiftLeft", "ShiftRight", "Chains"]
    session, outputs, expected = compile_and_compare(_model(elem, ops), tmp_path, feeds=_feeds(dtype))
    assert {t.name: t.dtype for t in session.manifest.tensors if t.kind == "input"} == {"x": np.dtype(dtype).name,
                                                                                       "y": np.dtype(dtype).name,
                                                                                       "s": np.dtype(dtype).name}
    wrapped = dict(zip(session.manifest.outputs, outputs))["add_out"]
    assert wrapped[8] == 0  # max + 1 wrapped around: the check can see a missing wrap


def test_uint64_bit_pattern_ops_match_onnxruntime(tmp_path):
    ops = ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal",
           "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "ShiftLeft", "ShiftRight"]
    session, outputs, _ = compile_and_compare(_model(TensorProto.UINT64, ops), tmp_path, feeds=_feeds(np.uint64))
    results = dict(zip(session.manifest.outputs, outputs))
    assert results["greater_out"][5]  # 2^63 > 2^63 - 1: a signed comparison says otherwise
    assert results["div_out"][5] == 1 and results["div_out"][4] == 0  # 2^63 / (2^63 - 1); (2^63 - 1) / 2^63
    assert results["shiftright_out"][8] == 1  # max >>> 63: an arithmetic shift gives all ones


def test_uint64_right_shift_before_opset_13(tmp_path):
    """Opset 11 (the node suite's BitShift cases): the logical shift without Less, which torch-mlir converts from 13."""
    compile_and_compare(_model(TensorProto.UINT64, ["ShiftRight"], opset=11), tmp_path, feeds=_feeds(np.uint64, ("x", "s")))


def test_before_opset_13_wraps_without_mod(tmp_path):
    """Opset 11 BitShift: the wrap is Div/Mul/Sub (torch-mlir converts no Mod or Less there)."""
    model = _model(TensorProto.UINT16, ["ShiftLeft", "ShiftRight"], opset=11)
    compile_and_compare(model, tmp_path, feeds=_feeds(np.uint16, ("x", "s")))


def test_casts_to_and_from_unsigned(tmp_path):
    """int32 -> uint16 wraps negatives; uint16 -> uint32 and uint32 -> float keep the value; uint32 -> uint16 keeps
    the low bits."""
    nodes = [helper.make_node("Cast", ["i"], ["u16"], to=TensorProto.UINT16, name="to_u16"),
             helper.make_node("Cast", ["u16"], ["u32"], to=TensorProto.UINT32, name="to_u32"),
             helper.make_node("Cast", ["w"], ["f"], to=TensorProto.FLOAT, name="to_f"),
             helper.make_node("Cast", ["w"], ["low"], to=TensorProto.UINT16, name="to_low")]
    graph = helper.make_graph(nodes, "casts", [helper.make_tensor_value_info("i", TensorProto.INT32, [6]),
                                               helper.make_tensor_value_info("w", TensorProto.UINT32, [6])],
                              [helper.make_tensor_value_info("u32", TensorProto.UINT32, [6]),
                               helper.make_tensor_value_info("f", TensorProto.FLOAT, [6]),
                               helper.make_tensor_value_info("low", TensorProto.UINT16, [6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"i": np.array([-1, -65536, 65535, 65536 + 5, 2**31 - 1, -(2**31)], np.int32),
             "w": np.array([0, 2**31, 2**32 - 1, 65537, 123456789, 2**16], np.uint32)}
    compile_and_compare(model, tmp_path, feeds=feeds)


def test_uint64_division_before_opset_13_is_refused_by_name(tmp_path):
    path = tmp_path / "div.onnx"
    onnx.save(_model(TensorProto.UINT64, ["Div"], opset=12), path)
    with pytest.raises(HccError, match=r"node 'Div' \(Div\) on UINT64: not exact"):
        load_model(str(path))


def test_unhandled_op_on_uint32_is_refused_by_name(tmp_path):
    node = helper.make_node("ReduceMean", ["x"], ["y"], name="mean", keepdims=0)
    graph = helper.make_graph([node], "reduce", [helper.make_tensor_value_info("x", TensorProto.UINT32, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT32, [])])
    path = tmp_path / "reduce.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(HccError, match=r"node 'mean' \(ReduceMean\) on UINT32: not compiled"):
        load_model(str(path))


@pytest.mark.parametrize("elem,dtype", [(TensorProto.UINT32, np.uint32), (TensorProto.UINT64, np.uint64)])
def test_reduce_sum_wraps_like_add(tmp_path, elem, dtype):
    """A sum is repeated Add: exact modulo 2^32 (wrapped after) and 2^64 (the bit patterns' own wrap-around); onnx's
    TopK expansion sums one-hot products of UINT64 values (test_top_k_uint64)."""
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="total", keepdims=0)
    graph = helper.make_graph([node], "reduce", [helper.make_tensor_value_info("x", elem, [2, 3])],
                              [helper.make_tensor_value_info("y", elem, [2])],
                              [onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")])
    info = np.iinfo(dtype)
    x = np.array([[info.max, 2, 3], [1 << (info.bits - 1), 5, info.max - 1]], dtype)
    _, outputs, _ = compile_and_compare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path, feeds={"x": x})
    assert outputs[0][0] == 4  # max + 2 + 3 wrapped


@pytest.mark.parametrize("opset", [12, 18])  # uint8 MaxPool exists from opset 12
def test_uint8_max_pool_and_clip_order_as_unsigned(tmp_path, opset):
    """uint8 MaxPool (padded, as a quantized stem's pooling is) and Clip with uint8 bounds: torch-mlir compared the
    bytes as signed (200 < 100); frontend/rewrites.py computes them in float32."""
    nodes = [helper.make_node("MaxPool", ["x"], ["pooled"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["x", "lo", "hi"], ["clipped"], name="clip")]
    u8 = TensorProto.UINT8
    graph = helper.make_graph(nodes, "uint8_order", [helper.make_tensor_value_info("x", u8, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("pooled", u8, [1, 4, 4, 4]), helper.make_tensor_value_info("clipped", u8, [1, 4, 8, 8])],
                              [helper.make_tensor("lo", u8, [], [50]), helper.make_tensor("hi", u8, [], [200])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    x = np.random.default_rng(4).integers(0, 256, (1, 4, 8, 8)).astype(np.uint8)
    compile_and_compare(model, tmp_path, feeds={"x": x})
