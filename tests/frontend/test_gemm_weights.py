"""Gemm(transB=1) with an initializer weight is stored transposed at compile time (frontend/gemm_weights.py)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.frontend.gemm_weights import pretranspose_gemm_weights
from helpers import compile_and_compare


def _model(shared: bool, declared_as_input: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((24, 40)).astype(np.float32), "w")  # [out, in]
    b = numpy_helper.from_array(rng.standard_normal(24).astype(np.float32), "b")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=0.5, name="fc")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 24])]
    if shared:  # the same weight read untransposed by another node
        nodes.append(helper.make_node("MatMul", ["w", "z"], ["u"], name="other"))
        outputs.append(helper.make_tensor_value_info("u", TensorProto.FLOAT, [24, 3]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 40])]
    inputs += [helper.make_tensor_value_info("z", TensorProto.FLOAT, [40, 3])] if shared else []
    inputs += [helper.make_tensor_value_info("w", TensorProto.FLOAT, [24, 40])] if declared_as_input else []
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, [w, b]), opset_imports=[helper.make_opsetid("", 17)])


def test_the_weight_is_transposed_once_and_transB_dropped():
    model = _model(shared=False, declared_as_input=True)
    assert pretranspose_gemm_weights(model) == 1
    gemm = model.graph.node[0]
    assert next(a.i for a in gemm.attribute if a.name == "transB") == 0
    assert list(model.graph.initializer[0].dims) == [40, 24]
    assert [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim] == [40, 24]
    onnx.checker.check_model(model)


def test_a_shared_weight_keeps_its_layout_for_the_other_reader():
    model = _model(shared=True)
    assert pretranspose_gemm_weights(model) == 1
    assert model.graph.node[0].input[1] == "w__hcc_transposed" and model.graph.node[1].input[0] == "w"


def test_results_match_onnxruntime(tmp_path):
    compile_and_compare(_model(shared=True), tmp_path, name="shared")
    compile_and_compare(_model(shared=False), tmp_path, name="plain")


def test_a_gemm_of_few_rows_keeps_its_transposed_weight():
    model = onnx.shape_inference.infer_shapes(_model(shared=False))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    assert pretranspose_gemm_weights(model) == 0
