"""Range nodes of constant start, limit and delta folded to their value first, before the low-bit rewrite
(frontend/lowbit.py) and the opset conversion (frontend/ops.py), which refuse a bfloat16 or float16 Range (onnx's
converter has no float16 Range below opset 26) although the folded value needs neither. onnx's backend harness
freezes Range's operands, which decide its output's shape (onnx_backend.SHAPE_OPERANDS), so its Range cases have
constant operands. Folded by onnx.reference at the model's own opset: its semantics, exactly.
"""
from __future__ import annotations

import onnx
from onnx import numpy_helper

from hcc.frontend.checks import constant_tensors
from hcc.frontend.fold import MAX_FOLDED_ELEMENTS, evaluate_node


def fold_constant_ranges(model: onnx.ModelProto) -> int:
    """Replace, in place, each top-level Range whose three operands are constants by a Constant of its value; returns
    how many. A Range the reference cannot evaluate, or of more than MAX_FOLDED_ELEMENTS values, stays."""
    ranges = [n for n in model.graph.node if n.op_type == "Range" and n.domain in ("", "ai.onnx")]
    if not ranges:
        return 0
    values = {name: numpy_helper.to_array(tensor) for name, tensor in constant_tensors(model.graph).items()}
    folded = 0
    for node in ranges:
        if len(node.input) != 3 or not all(name in values for name in node.input):
            continue
        result = evaluate_node(node, values, list(model.opset_import))
        if result is None or result[0].size > MAX_FOLDED_ELEMENTS:
            continue
        constant = onnx.helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                         value=numpy_helper.from_array(result[0], node.output[0]))
        node.CopyFrom(constant)
        folded += 1
    return folded
