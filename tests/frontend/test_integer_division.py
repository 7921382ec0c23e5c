"""Integer Div and Mod by zero, and the most negative value by -1 (frontend/rewrites.py _guarded_division): x86's
idiv traps on both, which killed the process running the bundle (SIGFPE); now the run completes with 0 where the
divisor is 0, numpy's wrapped results for -1, the exact quotient or remainder everywhere else, and a constant divisor
without 0 (or -1, signed) is left alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.frontend.rewrites import apply_rewrites
from hcc.runtime import load


def division_model(elem: int, ops: list[tuple[str, dict]], n: int = 6, divisor: np.ndarray | None = None) -> onnx.ModelProto:
    nodes = [helper.make_node(op, ["a", "b"], [f"y{k}"], name=f"{op.lower()}{k}", **attrs) for k, (op, attrs) in enumerate(ops)]
    inputs = [helper.make_tensor_value_info("a", elem, [n])]
    inits = []
    if divisor is None:
        inputs.append(helper.make_tensor_value_info("b", elem, [n]))
    else:
        inits.append(numpy_helper.from_array(divisor, "b"))
    graph = helper.make_graph(nodes, "division", inputs, [helper.make_tensor_value_info(f"y{k}", elem, [n]) for k in range(len(ops))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def expected(op: str, attrs: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """With Python's exact integers: C's truncating quotient, the remainder with the divisor's sign (fmod: the
    dividend's), 0 for a zero divisor, then wrapped into the dtype's bits."""
    out = []
    for x, d in zip(a.tolist(), b.tolist()):
        if d == 0:
            value = 0
        elif op == "Div":
            value = abs(x) // abs(d) * (1 if (x < 0) == (d < 0) else -1)
        else:
            r = abs(x) % abs(d) * (1 if x >= 0 else -1)
            value = r if attrs.get("fmod") or r == 0 or (r < 0) == (d < 0) else r + d
        out.append(value % (1 << (8 * a.itemsize)))
    return np.array(out, dtype=f"u{a.itemsize}").view(a.dtype)


@pytest.mark.parametrize("elem,dtype", [(TensorProto.INT32, np.int32), (TensorProto.INT64, np.int64), (TensorProto.UINT64, np.uint64)])
def test_a_zero_divisor_gives_zero_instead_of_a_trap(tmp_path, elem, dtype):
    ops = [("Div", {}), ("Mod", {})] + ([("Mod", {"fmod": 1})] if dtype != np.uint64 else [])
    path = tmp_path / "model.onnx"
    onnx.save(division_model(elem, ops), path)
    hcc.compile(path, tmp_path / "bundle")
    if dtype == np.uint64:
        a = np.array([7, 2**63 + 5, 9, 0, 2**64 - 1, 12], dtype)
        b = np.array([2, 0, 4, 0, 2**63, 5], dtype)
    else:
        a = np.array([7, -7, 9, np.iinfo(dtype).min, -8, 12], dtype)
        b = np.array([2, 0, -4, -1, 3, -1], dtype)
    outputs = load(tmp_path / "bundle").run(None, {"a": a, "b": b})  # a trap would end this process here
    for (op, attrs), y in zip(ops, outputs):
        np.testing.assert_array_equal(y, expected(op, attrs, a, b), err_msg=f"{op} {attrs}")


def test_a_constant_divisor_without_zeros_is_not_guarded():
    model = division_model(TensorProto.INT32, [("Div", {})], divisor=np.array([1, 2, 3, 4, 5, 6], np.int32))
    assert apply_rewrites(model) == 0
    model = division_model(TensorProto.INT32, [("Div", {})], divisor=np.array([1, 2, 0, 4, 5, 6], np.int32))
    assert apply_rewrites(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Equal", "Equal", "Or", "Where", "Div", "Where", "Mul", "Where"]
    model = division_model(TensorProto.INT32, [("Div", {})], divisor=np.array([1, 2, -1, 4, 5, 6], np.int32))
    assert apply_rewrites(model) == 1  # -1: the most negative value / -1 traps too


def test_a_division_in_a_run_time_loop_body_is_guarded_too(tmp_path):
    """A Loop with a run-time trip count is compiled piece by piece (a program); its body's Div is guarded as well."""
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Div", ["acc_in", "b"], ["acc_out"], name="step")], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc_in", TensorProto.INT64, [4])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc_out", TensorProto.INT64, [4])])
    graph = helper.make_graph([helper.make_node("Loop", ["n", "", "a"], ["y"], body=body)], "loop",
                              [helper.make_tensor_value_info("a", TensorProto.INT64, [4]),
                               helper.make_tensor_value_info("b", TensorProto.INT64, [4]),
                               helper.make_tensor_value_info("n", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [4])])
    path = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    hcc.compile(path, tmp_path / "bundle")
    a, b = np.array([8, np.iinfo(np.int64).min, 3, 4]), np.array([2, -1, 0, -1])
    (y,) = load(tmp_path / "bundle").run(None, {"a": a, "b": b, "n": np.array(2)})
    np.testing.assert_array_equal(y, [2, np.iinfo(np.int64).min, 0, 4])  # twice: a / b / b, 0 after a zero divisor
