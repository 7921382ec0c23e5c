"""1-D convolutions restated as 2-D ones over a height of 1 (issue 10: no silent slow path).

torch-mlir lowers a 1-D Conv to `linalg.conv_1d_ncw_fcw`, which neither the convolution micro-kernels nor the
vectorizer take ("windowed op without a unit-stride innermost window"), so it ran as plain loops: Silero VAD's STFT
(a 256-tap, stride-128 Conv over 258 filters) took 0.16 ms there against onnxruntime's 0.02 ms, more than half of
the model. Audio models (STFT front ends, wav2vec/Whisper feature encoders, TCNs) are made of them. As
Unsqueeze -> Conv over [N, C, 1, L] with a [F, C/g, 1, k] weight -> Squeeze, the same arithmetic reaches the 2-D
kernels (filter-vector, im2col GEMM, depthwise). Only convolutions with a constant weight are restated.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.checks import constant_tensors, static_shape


def restate_conv1d(model: onnx.ModelProto) -> int:
    """Rewrite each 1-D Conv with a constant weight in place; returns how many."""
    graph = model.graph
    inputs = {v.name for v in graph.input}
    weights = constant_tensors(graph)  # initializers or Constant nodes (Silero's STFT basis is one)
    shapes = {v.name: static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    rewritten = 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        x_shape = shapes.get(node.input[0]) if weight is not None else None
        if node.domain not in ("", "ai.onnx") or weight is None or len(weight.dims) != 3 or not x_shape or len(x_shape) != 3:
            nodes.append(node)
            continue
        nodes.extend(_as_2d(node, weight, opset, added))
        rewritten += 1
    if rewritten:
        used = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
        nodes = [n for n in nodes if n.op_type != "Constant" or any(o in used for o in n.output)]  # 1-D weights go
        del graph.node[:]
        graph.node.extend(nodes)
        kept = [init for init in graph.initializer if init.name in used or init.name in inputs]
        del graph.initializer[:]
        graph.initializer.extend(kept + added)
    return rewritten


def _as_2d(node: onnx.NodeProto, weight: onnx.TensorProto, opset: int, added: list[onnx.TensorProto]) -> list[onnx.NodeProto]:
    """Unsqueeze (axis 2) -> the Conv with every spatial attribute given a leading height entry -> Squeeze."""
    name = node.name or node.output[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    weight_2d = numpy_helper.to_array(weight)[:, :, None, :]
    added.append(numpy_helper.from_array(weight_2d, f"{name}/weight_2d"))
    new_attrs = {}
    for key, value in attrs.items():
        if key in ("kernel_shape", "strides", "dilations"):
            value = [1, *value]
        elif key == "pads":
            value = [0, value[0], 0, value[1]]
        new_attrs[key] = value
    x_2d, y_2d = f"{name}/as_2d", f"{name}/out_2d"
    axes_inputs: list[str] = []
    axes_attrs: dict = {}
    if opset >= 13:  # axes became an input at opset 13
        added.append(numpy_helper.from_array(np.array([2], np.int64), f"{name}/height_axis"))
        axes_inputs = [f"{name}/height_axis"]
    else:
        axes_attrs = {"axes": [2]}
    conv_inputs = [x_2d, f"{name}/weight_2d", *node.input[2:]]
    return [helper.make_node("Unsqueeze", [node.input[0], *axes_inputs], [x_2d], name=f"{name}/as_2d", **axes_attrs),
            helper.make_node("Conv", conv_inputs, [y_2d], name=name, **new_attrs),
            helper.make_node("Squeeze", [y_2d, *axes_inputs], [node.output[0]], name=f"{name}/back_to_1d", **axes_attrs)]
