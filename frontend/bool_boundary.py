"""Keep bool tensors off memory boundaries: bool model inputs, outputs and constants travel as uint8.

LLVM 22's memref-to-LLVM lowering asserts on loads/stores of i1 (sub-byte) elements. Inside the graph, elementwise
fusion (passes/to_linalg.py) leaves bools only as SSA values; at the edges, this pass inserts Cast nodes so the
compiled function takes and returns uint8 buffers. numpy bools are one byte of 0/1, so the runtime passes them
unchanged and the manifest keeps dtype `bool`.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SUFFIX = "__hcc_u8"


def widen_bool_boundaries(model: onnx.ModelProto, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Return a copy whose bool inputs/outputs are uint8 at the function boundary.

    Bool constants (initializers and Constant nodes) become uint8 weights, added to `weights`: as constants,
    the converter would fold them back into i1 tensors that no fusion removes.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for node in list(graph.node):
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value" and node.attribute[0].t.data_type == TensorProto.BOOL:
            init = onnx.TensorProto()
            init.CopyFrom(node.attribute[0].t)
            init.name = node.output[0]
            graph.initializer.append(init)
            graph.node.remove(node)
    front: list[onnx.NodeProto] = []
    back: list[onnx.NodeProto] = []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.BOOL:
            original = value.name
            value.name = original + SUFFIX
            value.type.tensor_type.elem_type = TensorProto.UINT8
            front.append(helper.make_node("Cast", [value.name], [original], name=f"{original}/hcc_to_bool", to=TensorProto.BOOL))
    for init in list(graph.initializer):
        if init.data_type == TensorProto.BOOL:
            original = init.name
            weights[original] = numpy_helper.to_array(init).astype(np.uint8)
            graph.initializer.remove(init)
            graph.input.append(helper.make_tensor_value_info(original + SUFFIX, TensorProto.UINT8, list(init.dims)))
            front.append(helper.make_node("Cast", [original + SUFFIX], [original], name=f"{original}/hcc_to_bool", to=TensorProto.BOOL))
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.BOOL:
            original = value.name
            value.name = original + SUFFIX
            value.type.tensor_type.elem_type = TensorProto.UINT8
            back.append(helper.make_node("Cast", [original], [value.name], name=f"{original}/hcc_to_u8", to=TensorProto.UINT8))
    if front or back:
        nodes = front + list(graph.node) + back
        del graph.node[:]
        graph.node.extend(nodes)
        out = onnx.shape_inference.infer_shapes(out, data_prop=True)  # the importer needs every value's type
    return out
