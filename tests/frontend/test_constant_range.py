"""frontend/constant_range.py: a Range of constant operands is folded before the steps that refuse its type."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hcc.frontend.constant_range import fold_constant_ranges
from hcc.onnx_backend import HccBackend


def range_model(elem: int) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(n, elem, []) for n in ("start", "limit", "delta")]
    graph = helper.make_graph([helper.make_node("Range", ["start", "limit", "delta"], ["y"], name="r")], "g", inputs,
                              [helper.make_tensor_value_info("y", elem, ["n"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])


@pytest.mark.parametrize("elem, dtype", [(TensorProto.FLOAT16, np.float16), (TensorProto.BFLOAT16, ml_dtypes.bfloat16)])
def test_a_float16_or_bfloat16_range_of_frozen_operands_compiles(elem, dtype):
    """The backend freezes Range's operands (they decide its length) in the model's own type, then hcc folds it:
    before, the opset converter refused float16 Range and the low-bit rewrite bfloat16 Range."""
    (y,) = HccBackend.run_model(range_model(elem), [np.array(v, dtype) for v in (1, 6, 1.5)], threads=1)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.astype(np.float32), [1, 2.5, 4, 5.5])


def test_only_ranges_of_constant_operands_fold():
    model = range_model(TensorProto.FLOAT)
    assert fold_constant_ranges(model) == 0  # run-time operands
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(v, np.float32), n)
                                    for n, v in (("start", 0), ("limit", 3), ("delta", 1))])
    assert fold_constant_ranges(model) == 0  # initializers that are also inputs: defaults a caller may override
    del model.graph.input[:]
    assert fold_constant_ranges(model) == 1
    node = model.graph.node[0]
    assert node.op_type == "Constant" and node.name == "r"
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(node.attribute[0].t), [0, 1, 2])
