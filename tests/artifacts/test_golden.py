"""Golden data without onnxruntime: where onnxruntime cannot run a model, onnx's reference evaluator makes the golden
outputs and their `source` says so; where neither can, the error gives both reasons (artifacts/golden.py)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from hcc.artifacts.golden import golden_outputs, run_onnxruntime, run_reference_evaluator
from hcc.errors import HccError


def one_op(op: str, elem: int, domain: str = "") -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], domain=domain)], "one_op",
                              [helper.make_tensor_value_info("x", elem, [2, 3])], [helper.make_tensor_value_info("y", elem, [2, 3])])
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def test_onnxruntime_when_it_runs_the_model():
    x = np.array([[-1.5, 0.0, 2.0], [3.0, -4.0, 5.0]], np.float32)
    golden = golden_outputs(one_op("Relu", TensorProto.FLOAT), {"x": x})
    assert golden.source == f"onnxruntime {onnxruntime.__version__}"
    np.testing.assert_array_equal(golden["y"], np.maximum(x, 0))


def test_reference_evaluator_when_onnxruntime_lacks_the_kernel():
    model = one_op("Relu", TensorProto.INT64)  # valid since opset 14; onnxruntime 1.31 has no int64 Relu kernel
    x = np.array([[-3, 0, 2], [7, -1, 5]], np.int64)
    with pytest.raises(HccError, match="onnxruntime could not run the model"):
        run_onnxruntime(model, {"x": x})
    golden = golden_outputs(model, {"x": x})
    assert golden.source.startswith(f"onnx.reference {onnx.__version__} (onnxruntime {onnxruntime.__version__} cannot run the model: ")
    assert "Relu" in golden.source  # onnxruntime's reason is kept
    assert golden["y"].dtype == np.int64
    np.testing.assert_array_equal(golden["y"], np.maximum(x, 0))


def test_reference_outputs_have_the_declared_element_type():
    x = np.linspace(-2, 2, 6, dtype=np.float64).reshape(2, 3)
    outputs = run_reference_evaluator(one_op("Erf", TensorProto.DOUBLE), {"x": x})
    assert outputs["y"].dtype == np.float64 and outputs["y"].shape == (2, 3)


def test_neither_reference_can_run_the_model():
    model = one_op("Frobnicate", TensorProto.FLOAT, domain="com.example")
    with pytest.raises(HccError) as info:
        golden_outputs(model, {"x": np.zeros((2, 3), np.float32)})
    message = str(info.value)
    assert message.startswith("no reference can run the model to make golden outputs: onnxruntime: ")
    assert "; onnx.reference: " in message and "Frobnicate" in message
    assert "\n" not in message


def test_compile_a_model_onnxruntime_cannot_run(tmp_path):
    import hcc
    import hcc.runtime

    onnx.save(one_op("Relu", TensorProto.INT64), tmp_path / "relu_i64.onnx")
    manifest = hcc.compile(tmp_path / "relu_i64.onnx", tmp_path / "bundle")
    assert manifest.golden.source.startswith(f"onnx.reference {onnx.__version__} (onnxruntime ")
    x = np.array([[-3, 0, 2], [7, -1, 5]], np.int64)
    (y,) = hcc.runtime.load(tmp_path / "bundle").run(None, {"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_random_attention_mask_is_zeros_and_ones():
    """An integer input named like a mask gets 0/1 values: a BERT-style additive mask (1 - mask) * float32 min (what torch exports) must stay
    finite, or every golden output is NaN and the check cannot fail."""
    from types import SimpleNamespace

    from hcc.artifacts.golden import random_inputs

    nodes = [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT), helper.make_node("Sub", ["one", "m"], ["inv"]),
             helper.make_node("Mul", ["inv", "big"], ["add"]), helper.make_node("Add", ["x", "add"], ["s"]),
             helper.make_node("Softmax", ["s"], ["y"], axis=-1)]
    lowest = np.array(np.finfo(np.float32).min, np.float32)
    inits = [onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"), onnx.numpy_helper.from_array(lowest, "big")]
    graph = helper.make_graph(nodes, "mask", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16]),
                                              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    inputs = [SimpleNamespace(name="x", dtype="float32", shape=[2, 16]), SimpleNamespace(name="attention_mask", dtype="int64", shape=[2, 16])]
    feeds = random_inputs(model, inputs, seed=0)
    assert set(np.unique(feeds["attention_mask"])) <= {0, 1} and feeds["attention_mask"].sum() > 16
    assert np.isfinite(run_onnxruntime(model, feeds)["y"]).all()


def test_random_scalar_bool_is_an_array_onnxruntime_takes():
    """A 0-d bool input (an If's condition) is made as a 0-d array: onnxruntime refuses a numpy.bool_ scalar, and
    golden data would silently come from the slower reference evaluator instead."""
    from types import SimpleNamespace

    from hcc.artifacts.golden import random_inputs

    graph = helper.make_graph([helper.make_node("Not", ["c"], ["y"])], "not", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = random_inputs(model, [SimpleNamespace(name="c", dtype="bool", shape=[])], seed=0)
    assert isinstance(feeds["c"], np.ndarray) and feeds["c"].shape == () and feeds["c"].dtype == np.bool_
    assert run_onnxruntime(model, feeds)["y"] == ~feeds["c"]
