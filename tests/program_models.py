"""Small ONNX models with control flow only decided at run time (If on an input's value, Loop with a run-time trip
count or an early exit), built with onnx.helper for tests/test_program.py and tests/runtime/test_program_runtime.py."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, name, inputs, outputs, inits=()) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, name, inputs, outputs, list(inits)), opset_imports=OPSET)


def _branch(name: str, op: str, scale: float, source: str = "x") -> onnx.GraphProto:
    """y = op(source) * scale, reading `source` from the enclosing scope; its own initializer."""
    s = numpy_helper.from_array(np.array([scale], np.float32), f"{name}_scale")
    return helper.make_graph([helper.make_node(op, [source], [f"{name}_t"]), helper.make_node("Mul", [f"{name}_t", s.name], [f"{name}_y"])],
                             name, [], [helper.make_tensor_value_info(f"{name}_y", F, None)], [s])


def if_on_input() -> onnx.ModelProto:
    """y = (Relu(x) * 2 if sum(x) > 0 else Sigmoid(x) * 3) + x: the branch depends on the input's values."""
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["b"], name="pick", then_branch=_branch("then", "Relu", 2.0),
                              else_branch=_branch("else", "Sigmoid", 3.0)),
             helper.make_node("Add", ["b", "x"], ["y"])]
    return _model(nodes, "if_on_input", [helper.make_tensor_value_info("x", F, [2, 8])], [helper.make_tensor_value_info("y", F, [2, 8])],
                  [numpy_helper.from_array(np.array(0, np.float32), "zero")])


def nested_if() -> onnx.ModelProto:
    """An If in the then-branch of an If, deciding on a second input; a constant and a pass-through branch."""
    inner = helper.make_node("If", ["c2"], ["inner_y"], name="inner", then_branch=_branch("in_then", "Tanh", 4.0),
                             else_branch=helper.make_graph([helper.make_node("Identity", ["x"], ["in_else_y"])], "in_else", [],
                                                           [helper.make_tensor_value_info("in_else_y", F, None)]))
    then = helper.make_graph([inner, helper.make_node("Neg", ["inner_y"], ["then_y"])], "outer_then", [],
                             [helper.make_tensor_value_info("then_y", F, None)])
    const = helper.make_node("Constant", [], ["const_y"], value=numpy_helper.from_array(np.full([2, 3], 7.0, np.float32)))
    other = helper.make_graph([const], "outer_else", [], [helper.make_tensor_value_info("const_y", F, None)])
    nodes = [helper.make_node("If", ["c1"], ["y"], name="outer", then_branch=then, else_branch=other)]
    return _model(nodes, "nested_if", [helper.make_tensor_value_info("x", F, [2, 3]), helper.make_tensor_value_info("c1", B, []),
                                       helper.make_tensor_value_info("c2", B, [])],
                  [helper.make_tensor_value_info("y", F, [2, 3])])


def _body(extra_nodes=(), cond_out: str = "cond_in", scan: bool = True) -> onnx.GraphProto:
    """v_out = v_in * 0.5 + x (x from the enclosing scope) + iteration; scan output: v_out * 2."""
    nodes = [helper.make_node("Cast", ["i"], ["i_f"], to=F),
             helper.make_node("Mul", ["v_in", "half"], ["v_half"]),
             helper.make_node("Add", ["v_half", "x"], ["v_x"]),
             helper.make_node("Add", ["v_x", "i_f"], ["v_out"])]
    nodes += list(extra_nodes)
    outputs = [helper.make_tensor_value_info(cond_out, B, []), helper.make_tensor_value_info("v_out", F, [2, 3])]
    if scan:
        nodes.append(helper.make_node("Mul", ["v_out", "two"], ["scan_out"]))
        outputs.append(helper.make_tensor_value_info("scan_out", F, [2, 3]))
    return helper.make_graph(nodes, "body", [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                                             helper.make_tensor_value_info("v_in", F, [2, 3])], outputs,
                             [numpy_helper.from_array(np.array(0.5, np.float32), "half"), numpy_helper.from_array(np.array(2.0, np.float32), "two")])


def loop_run_time_trip_count() -> onnx.ModelProto:
    """Loop n times (n an input), carried v, scan output stacked: its length is n, a model output."""
    nodes = [helper.make_node("Loop", ["n", "", "v0"], ["v", "scan"], name="counted", body=_body()),
             helper.make_node("Relu", ["v"], ["y"])]
    return _model(nodes, "loop_trip", [helper.make_tensor_value_info("n", I64, []), helper.make_tensor_value_info("v0", F, [2, 3]),
                                       helper.make_tensor_value_info("x", F, [2, 3])],
                  [helper.make_tensor_value_info("y", F, [2, 3]), helper.make_tensor_value_info("scan", F, ["n", 2, 3])])


def loop_early_exit() -> onnx.ModelProto:
    """A while loop (no trip count): runs while sum(v) < limit (an input), at most 100 times by a constant cap."""
    cond = [helper.make_node("ReduceSum", ["v_out"], ["total"], keepdims=0), helper.make_node("Less", ["total", "limit"], ["go_on"])]
    nodes = [helper.make_node("Loop", ["cap", "start", "v0"], ["v"], name="until", body=_body(cond, "go_on", scan=False))]
    return _model(nodes, "loop_exit", [helper.make_tensor_value_info("v0", F, [2, 3]), helper.make_tensor_value_info("x", F, [2, 3]),
                                       helper.make_tensor_value_info("limit", F, []), helper.make_tensor_value_info("start", B, [])],
                  [helper.make_tensor_value_info("v", F, [2, 3])], [numpy_helper.from_array(np.array(100, np.int64), "cap")])


def if_inside_loop() -> onnx.ModelProto:
    """A Loop with a run-time trip count whose body holds an If on the iteration number's parity."""
    parity = [helper.make_node("Mod", ["i", "two_i"], ["m"]), helper.make_node("Equal", ["m", "zero_i"], ["even"])]
    branch_if = helper.make_node("If", ["even"], ["w"], name="parity", then_branch=_branch("ev", "Relu", 1.0, "v_in"),
                                 else_branch=_branch("od", "Neg", 1.0, "v_in"))
    body = helper.make_graph(parity + [branch_if, helper.make_node("Add", ["w", "x"], ["v_out"])], "body",
                             [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                              helper.make_tensor_value_info("v_in", F, [2, 3])],
                             [helper.make_tensor_value_info("cond_in", B, []), helper.make_tensor_value_info("v_out", F, [2, 3])],
                             [numpy_helper.from_array(np.array(2, np.int64), "two_i"), numpy_helper.from_array(np.array(0, np.int64), "zero_i")])
    nodes = [helper.make_node("Loop", ["n", "", "v0"], ["v"], name="outer_loop", body=body)]
    return _model(nodes, "if_in_loop", [helper.make_tensor_value_info("n", I64, []), helper.make_tensor_value_info("v0", F, [2, 3]),
                                        helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("v", F, [2, 3])])


def growing_carried_value() -> onnx.ModelProto:
    """A carried value that grows by a row each iteration: compiled code cannot keep it."""
    body = helper.make_graph([helper.make_node("Concat", ["v_in", "x"], ["v_out"], axis=0)], "body",
                             [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                              helper.make_tensor_value_info("v_in", F, None)],
                             [helper.make_tensor_value_info("cond_in", B, []), helper.make_tensor_value_info("v_out", F, None)])
    nodes = [helper.make_node("Loop", ["n", "", "x"], ["v"], name="grow", body=body)]
    return _model(nodes, "grow", [helper.make_tensor_value_info("n", I64, []), helper.make_tensor_value_info("x", F, [1, 3])],
                  [helper.make_tensor_value_info("v", F, ["m", 3])])


def scan_output_consumed() -> onnx.ModelProto:
    """A run-time-length scan output that compiled code then reads (a ReduceSum): refused."""
    nodes = [helper.make_node("Loop", ["n", "", "v0"], ["v", "scan"], name="counted", body=_body()),
             helper.make_node("ReduceSum", ["scan"], ["y"], keepdims=0, name="sum_scan")]
    return _model(nodes, "scan_consumed", [helper.make_tensor_value_info("n", I64, []), helper.make_tensor_value_info("v0", F, [2, 3]),
                                           helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, [])])


def if_with_a_branch_for_other_shapes() -> onnx.ModelProto:
    """y = Relu(x) if flag else x @ W, W a [3, 4] Reshape whose target is computed from Shape(x) through Casts: at
    x [2, 4] the else branch cannot run, but only folding its shape arithmetic (inside the branch's own model) shows
    it, as with Silero VAD's 8 kHz branch at 16 kHz input shapes; onnxruntime fails only if it is taken."""
    inits = [numpy_helper.from_array(np.ones(12, np.float32), "other_values"),
             numpy_helper.from_array(np.array([1.0, 0.0], np.float32), "other_delta")]
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["then_y"])], "then", [], [helper.make_tensor_value_info("then_y", F, None)])
    other = helper.make_graph([helper.make_node("Shape", ["x"], ["e_shape"]),
                               helper.make_node("Cast", ["e_shape"], ["e_float"], to=F),
                               helper.make_node("Add", ["e_float", "other_delta"], ["e_sum"]),
                               helper.make_node("Cast", ["e_sum"], ["e_target"], to=I64),
                               helper.make_node("Reshape", ["other_values", "e_target"], ["e_w"]),
                               helper.make_node("MatMul", ["x", "e_w"], ["else_y"])], "else", [],
                              [helper.make_tensor_value_info("else_y", F, None)], inits)
    nodes = [helper.make_node("If", ["flag"], ["y"], name="rate", then_branch=then, else_branch=other)]
    return _model(nodes, "if_with_a_branch_for_other_shapes", [helper.make_tensor_value_info("x", F, [2, 4]),
                                                                helper.make_tensor_value_info("flag", B, [])],
                  [helper.make_tensor_value_info("y", F, [2, 4])])
