"""Resize modes torch-mlir does not convert (cubic, antialiased, tf_crop_and_resize, align_corners) as one
interpolation matrix per axis, taken from the ONNX reference itself.

Every ONNX Resize mode is separable and linear in the data: along each axis, output element o is a fixed weighted
sum of input elements (nearest picks one; linear, cubic and antialiased filters weigh a few; tf_crop_and_resize
outputs `extrapolation_value` outside the region of interest). With static shapes and constant scales, sizes and
roi, the weights are constants: column i of axis a's matrix is what the reference Resize gives for a one-hot input
along that axis (length-1 elsewhere, scale 1 there). The node becomes, per resized axis, a MatMul by that matrix
(moved to the last axis and back), plus `extrapolation_value` where the reference extrapolates (its output on a zero
input). Sums are in a different order than the reference's, within float rounding.

Kept for other rewrites and checks: nodes with an `axes` attribute or a keep_aspect_ratio_policy other than
stretch, run-time scales/sizes/roi, non-float data, and any mode torch-mlir converts (nearest and linear without
align_corners or cropping).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from hcc.frontend.attributes import as_text
from hcc.frontend.checks import static_shape
from hcc.frontend.names import fresh_name
from hcc.frontend.node_rewrite import replace_nodes

MAX_MATRIX = 1 << 22  # elements of one axis matrix (output length x input length)
FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _wanted(node: onnx.NodeProto) -> bool:
    attrs = _attrs(node)
    if "axes" in attrs or as_text(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        return False
    mode, transform = as_text(attrs.get("mode", "nearest")), as_text(attrs.get("coordinate_transformation_mode", "half_pixel"))
    return mode == "cubic" or bool(attrs.get("antialias", 0)) or transform in ("tf_crop_and_resize", "align_corners")


def _reference(node: onnx.NodeProto, x: np.ndarray, operands: list[np.ndarray | None], out_shape: list[int],
               extrapolation: float | None = None) -> np.ndarray:
    """The reference Resize of `x` with the node's attributes and the given roi/scales/sizes."""
    attrs = _attrs(node)
    if extrapolation is not None:
        attrs["extrapolation_value"] = extrapolation
    names = ["x"] + [f"in{i}" if v is not None else "" for i, v in enumerate(operands, start=1)]
    inits = [numpy_helper.from_array(v, f"in{i}") for i, v in enumerate(operands, start=1) if v is not None]
    probe = helper.make_node("Resize", names, ["y"], **attrs)
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([probe], "probe", [helper.make_tensor_value_info("x", elem, list(x.shape))],
                              [helper.make_tensor_value_info("y", elem, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def axis_matrix(node, axis: int, shape: list[int], out_shape: list[int], roi, scales, sizes, dtype) -> np.ndarray:
    """M[o, i]: axis `axis`'s weights, from the reference on one-hot inputs (length 1 and scale 1 elsewhere)."""
    rank, n, m = len(shape), shape[axis], out_shape[axis]
    probe_shape = [1] * rank
    probe_shape[axis] = n
    probe_out = [1] * rank
    probe_out[axis] = m
    p_roi = None
    if roi is not None and roi.size == 2 * rank:
        p_roi = np.array([0.0] * rank + [1.0] * rank, roi.dtype)
        p_roi[axis], p_roi[rank + axis] = roi[axis], roi[rank + axis]
    p_scales = None
    if scales is not None and scales.size:
        p_scales = np.ones(rank, scales.dtype)
        p_scales[axis] = scales[axis]
    p_sizes = None
    if sizes is not None and sizes.size:
        p_sizes = np.array(probe_out, np.int64)
    matrix = np.zeros((m, n), np.float64)
    for i in range(n):
        x = np.zeros(probe_shape, dtype)
        x.reshape(-1)[i] = 1
        y = _reference(node, x, [p_roi if roi is not None else None, p_scales, p_sizes], probe_out, extrapolation=0.0)
        matrix[:, i] = y.reshape(-1)
    return matrix.astype(dtype)


def _constant(value: str, inits: dict[str, np.ndarray]) -> np.ndarray | None | bool:
    """An operand's constant value; None when absent; False when it is a run-time value."""
    if not value:
        return None
    return inits[value] if value in inits else False


def _rewrite(node, shape, out_shape, operands, dtype, taken) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    roi, scales, sizes = operands
    rank, nodes, inits = len(shape), [], []
    base = node.name or "Resize"

    def name(hint: str) -> str:
        return fresh_name(f"{base}/{hint}", taken)

    value = node.input[0]
    for axis in range(rank):
        if shape[axis] == out_shape[axis] == 1:
            continue
        matrix = axis_matrix(node, axis, shape, out_shape, roi, scales, sizes, dtype)
        if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(matrix.shape[0], dtype=dtype)):
            continue
        weights = name(f"axis{axis}/weights")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(matrix.T), weights))  # [in, out]
        perm = [d for d in range(rank) if d != axis] + [axis]
        inverse = list(np.argsort(perm))
        moved = name(f"axis{axis}/last")
        nodes.append(helper.make_node("Transpose", [value], [moved], name=name(f"axis{axis}/to_last"), perm=perm))
        mixed = name(f"axis{axis}/mixed")
        nodes.append(helper.make_node("MatMul", [moved, weights], [mixed], name=name(f"axis{axis}/matmul")))
        value = name(f"axis{axis}/out")
        nodes.append(helper.make_node("Transpose", [mixed], [value], name=name(f"axis{axis}/back"), perm=inverse))
    extrapolation = float(_attrs(node).get("extrapolation_value", 0.0))
    if as_text(_attrs(node).get("coordinate_transformation_mode", "half_pixel")) == "tf_crop_and_resize" and extrapolation != 0.0:
        mask = _reference(node, np.zeros(shape, dtype), list(operands), out_shape, extrapolation=1.0)
        offset = name("extrapolated")
        inits.append(numpy_helper.from_array((mask * extrapolation).astype(dtype), offset))
        summed = name("with_extrapolation")
        nodes.append(helper.make_node("Add", [value, offset], [summed], name=name("extrapolate")))
        value = summed
    nodes.append(helper.make_node("Identity", [value], [node.output[0]], name=name("result")))
    return nodes, inits


def restate_resizes(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every Resize this module takes (see the module docstring); returns how many."""
    graph = model.graph
    shapes = {v.name: static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    taken = {n for node in graph.node for n in list(node.input) + list(node.output) + [node.name]} | set(inits)

    def rewrite(node: onnx.NodeProto):
        shape, out_shape = (shapes.get(node.input[0]) if node.input else None), (shapes.get(node.output[0]) if node.output else None)
        dtype = FLOATS.get(types.get(node.input[0])) if node.input else None
        operands = [_constant(node.input[i] if len(node.input) > i else "", inits) for i in (1, 2, 3)]
        ok = (node.op_type == "Resize" and node.domain in ("", "ai.onnx") and dtype is not None and shape and out_shape
              and all(shape) and all(out_shape) and len(shape) == len(out_shape) and not any(v is False for v in operands)
              and _wanted(node) and all(n * m <= MAX_MATRIX for n, m in zip(shape, out_shape)))
        return _rewrite(node, shape, out_shape, operands, dtype, taken) if ok else None

    return replace_nodes(graph, rewrite)
