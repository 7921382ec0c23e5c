"""ConvTranspose forms torch-mlir fails on, restated with static shapes (called from frontend/rewrites.py).

* auto_pad SAME_UPPER / SAME_LOWER: not converted. The explicit pads are the ONNX reference's: output length =
  input length * stride, total padding = stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - out, the odd
  one at the end for SAME_UPPER, at the beginning for SAME_LOWER. Uneven pads (which torch-mlir does not take)
  are the even part as pads and a Slice of the rest.
* group > 1: the lowering builds a tensor.collapse_shape of the wrong rank. The node becomes one ConvTranspose per
  group on Split channels (input, weight and bias), concatenated: the op's definition of groups.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def explicit_pads(node: onnx.NodeProto, x_shape: list[int], w_shape: list[int]):
    """(ConvTranspose node, nodes after it, initializers) for a node with auto_pad SAME_*, or None. torch-mlir takes
    symmetric pads only: the common part is the node's pads, the rest is sliced off its output."""
    attrs = _attrs(node)
    mode = attrs.get("auto_pad", b"NOTSET").decode()
    if mode not in ("SAME_UPPER", "SAME_LOWER") or "output_shape" in attrs:
        return None
    spatial = len(x_shape) - 2
    kernel = list(attrs.get("kernel_shape", w_shape[2:]))
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    output_padding = list(attrs.get("output_padding", [0] * spatial))
    begins, ends, full = [], [], []
    for i in range(spatial):
        full.append(strides[i] * (x_shape[i + 2] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1)
        total = full[-1] - x_shape[i + 2] * strides[i]
        if total < 0:
            return None
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    common = [min(b, e) for b, e in zip(begins, ends)]
    sliced = any(b != e for b, e in zip(begins, ends))
    conv_out = f"{node.name}/unsliced" if sliced else node.output[0]
    conv = helper.make_node("ConvTranspose", list(node.input), [conv_out], name=node.name if not sliced else f"{node.name}/conv")
    conv.attribute.extend(a for a in node.attribute if a.name not in ("auto_pad", "pads"))
    conv.attribute.append(helper.make_attribute("pads", common + common))
    if not sliced:
        return conv, [], []
    starts = [b - c for b, c in zip(begins, common)]
    stops = [f - 2 * c - (e - c) for f, c, e in zip(full, common, ends)]
    inits = [numpy_helper.from_array(np.array(v, np.int64), f"{node.name}/{k}")
             for k, v in (("starts", starts), ("stops", stops), ("axes", list(range(2, 2 + spatial))))]
    cut = helper.make_node("Slice", [conv_out, f"{node.name}/starts", f"{node.name}/stops", f"{node.name}/axes"],
                           [node.output[0]], name=node.name)
    return conv, [cut], inits


def split_groups(node: onnx.NodeProto, x_shape: list[int], w_shape: list[int], opset: int):
    """(nodes, initializers): a grouped ConvTranspose as one per group, or None for group 1."""
    group = int(_attrs(node).get("group", 1))
    if group == 1 or x_shape[1] % group or w_shape[0] % group:
        return None
    inits, nodes = [], []
    per_group = [a for a in node.attribute if a.name != "group"]
    split_names = {}
    for index, (name, size) in enumerate(((node.input[0], x_shape[1]), (node.input[1], w_shape[0]),
                                          (node.input[2] if len(node.input) > 2 else "", w_shape[1] * group))):
        if not name:
            continue
        outs = [f"{node.name}/part{index}_{g}" for g in range(group)]
        axis, parts = (1 if index == 0 else 0), [size // group] * group
        if opset >= 13:  # the sizes as an input from opset 13 on, an attribute before
            sizes = f"{node.name}/split{index}_sizes"
            inits.append(numpy_helper.from_array(np.array(parts, np.int64), sizes))
            nodes.append(helper.make_node("Split", [name, sizes], outs, name=f"{node.name}/split{index}", axis=axis))
        else:
            nodes.append(helper.make_node("Split", [name], outs, name=f"{node.name}/split{index}", axis=axis, split=parts))
        split_names[index] = outs
    results = []
    for g in range(group):
        inputs = [split_names[i][g] for i in sorted(split_names)]
        results.append(f"{node.name}/group{g}")
        conv = helper.make_node("ConvTranspose", inputs, [results[-1]], name=f"{node.name}/group{g}_op")
        conv.attribute.extend(per_group)
        nodes.append(conv)
    nodes.append(helper.make_node("Concat", results, [node.output[0]], name=node.name, axis=1))
    return nodes, inits
