"""RoiAlign as coordinate arithmetic, GatherElements and reductions: hcc has no lowering for onnx.RoiAlign, so the
op is written here in ops every backend compiles, as onnx.reference computes it.

Per region r (rois[r] = x1, y1, x2, y2 times spatial_scale, minus 0.5 with 'half_pixel'; with
'output_half_pixel', opset 10's only behaviour, the region is at least 1 x 1) and output bin (ph, pw), a grid of
sampling_ratio x sampling_ratio points y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid (likewise x) is sampled
bilinearly: a point outside [-1, H] x [-1, W] counts as 0, one beyond the last row or column takes it. The y and x
parts are computed once per row and column of points and broadcast; the four corner pixels come from the region's
image (a Gather by batch_indices) flattened to [R, C, H * W], each with one GatherElements, times its weight.
'avg' sums the points and divides by their count; 'max' takes the largest weighted corner of every point (the
reference's definition). sampling_ratio 0 (a grid that adapts to each region's run-time size) is refused.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}


class _Builder(CountedNodes):
    def __init__(self, node: onnx.NodeProto, dtype: np.dtype):
        super().__init__(node)
        self.dtype = dtype

    def f(self, value, hint: str = "c") -> str:
        return self.const(np.asarray(value, self.dtype), hint)

    def i64(self, value) -> str:
        return self.const(np.asarray(value, np.int64), "i")


def _axis(b: _Builder, rois: str, column: int, scale: float, offset: float, shape: list[int]) -> str:
    """rois[:, column] * spatial_scale - offset, reshaped to `shape`."""
    value = b.op("Gather", [rois, b.i64([column])], "roi_coordinate", axis=1)  # (torch-mlir has no opset-11 Slice)
    value = b.op("Mul", [value, b.f(scale, "spatial_scale")], "scaled")
    if offset:
        value = b.op("Sub", [value, b.f(offset, "offset")], "shifted")
    return b.op("Reshape", [value, b.i64(shape)], "coordinate")


def _points(b: _Builder, rois: str, first: int, bins: int, grid: int, size: int, half_pixel: bool, scale: float,
            shape: list[int]):
    """(low index, high index, low weight, high weight, valid) of the sample points along one axis (y: rois columns
    1 and 3, x: 0 and 2), shaped [R, bins, grid] reshaped to `shape` for broadcasting."""
    offset = 0.5 if half_pixel else 0.0
    start = _axis(b, rois, first, scale, offset, [-1, 1, 1])
    end = _axis(b, rois, first + 2, scale, offset, [-1, 1, 1])
    extent = b.op("Sub", [end, start], "extent")
    if not half_pixel:
        extent = b.op("Max", [extent, b.f(1.0, "one")], "at_least_one")
    bin_size = b.op("Div", [extent, b.f(float(bins), "bins")], "bin_size")
    index = b.f(np.arange(bins).reshape(1, bins, 1), "bin_index")
    within = b.f((np.arange(grid) + 0.5).reshape(1, 1, grid), "grid_offset")
    point = b.op("Add", [b.op("Add", [start, b.op("Mul", [index, bin_size], "bin_start")], "at_bin"),
                         b.op("Div", [b.op("Mul", [within, bin_size], "into_bin"), b.f(float(grid), "grid")], "step")],
                 "point")
    # the reference's `not (y < -1 or y > H)` (Less/Greater, which opset 11 has; GreaterOrEqual came in 12)
    outside = b.op("Or", [b.op("Less", [point, b.f(-1.0, "minus_one")], "before"),
                          b.op("Greater", [point, b.f(float(size), "size")], "after")], "outside")
    valid = b.op("Not", [outside], "valid")
    point = b.op("Max", [point, b.f(0.0, "zero")], "clamped")
    low = b.op("Floor", [point], "low")
    last = b.f(float(size - 1), "last")
    edge = b.op("Not", [b.op("Less", [low, last], "before_last")], "edge")
    low = b.op("Where", [edge, last, low], "low_index")
    high = b.op("Where", [edge, last, b.op("Add", [low, b.f(1.0, "one")], "next")], "high_index")
    point = b.op("Where", [edge, last, point], "at_edge")
    high_weight = b.op("Sub", [point, low], "high_weight")
    low_weight = b.op("Sub", [b.f(1.0, "one"), high_weight], "low_weight")
    parts = [b.op("Cast", [low], "low_int", to=TensorProto.INT64), b.op("Cast", [high], "high_int", to=TensorProto.INT64),
             low_weight, high_weight, valid]
    return [b.op("Reshape", [p, b.i64(shape)], "broadcast") for p in parts]


def roi_align_nodes(node: onnx.NodeProto, elem_type: int, x_shape: list[int], rois_shape: list[int] | None, opset: int,
                    path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the RoiAlign `node` (input X of static shape [N, C, H, W])."""
    where = f"{path}: node '{node.name}' (RoiAlign)"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    mode = text.get("mode", "avg")
    transform = text.get("coordinate_transformation_mode", "half_pixel" if opset >= 16 else "output_half_pixel")
    bins_h, bins_w = int(attrs.get("output_height", 1)), int(attrs.get("output_width", 1))
    grid, scale = int(attrs.get("sampling_ratio", 0)), float(attrs.get("spatial_scale", 1.0))
    if elem_type not in FLOATS:
        raise HccError(f"{where}: input of type {TensorProto.DataType.Name(elem_type)}; hcc compiles RoiAlign of floats")
    if len(x_shape) != 4 or rois_shape is None or len(rois_shape) != 2 or rois_shape[1] != 4:
        raise HccError(f"{where}: X {x_shape} and rois {rois_shape}: expected [N, C, H, W] and [R, 4]")
    if mode not in ("avg", "max") or transform not in ("half_pixel", "output_half_pixel"):
        raise HccError(f"{where}: mode '{mode}', coordinate_transformation_mode '{transform}' are not defined")
    if grid <= 0:
        raise HccError(f"{where}: sampling_ratio {grid}: the sampling grid would depend on each region's run-time "
                       "size; hcc compiles a fixed sampling_ratio >= 1")
    if bins_h < 1 or bins_w < 1:
        raise HccError(f"{where}: output size {bins_h} x {bins_w}")
    _, channels, height, width = x_shape
    regions = rois_shape[0]
    b = _Builder(node, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    rois = node.input[1]
    half = transform == "half_pixel"
    y_low, y_high, y_lw, y_hw, y_ok = _points(b, rois, 1, bins_h, grid, height, half, scale, [-1, bins_h, grid, 1, 1])
    x_low, x_high, x_lw, x_hw, x_ok = _points(b, rois, 0, bins_w, grid, width, half, scale, [-1, 1, 1, bins_w, grid])
    valid = b.op("And", [y_ok, x_ok], "inside")  # [R, bins_h, grid, bins_w, grid]
    width_c = b.i64(width)
    zero_w, zero_i = b.f(0.0, "zero"), b.i64(0)
    image = b.op("Gather", [node.input[0], b.op("Cast", [node.input[2]], "batch", to=TensorProto.INT64)], "image", axis=0)
    flat = b.op("Reshape", [image, b.i64([regions, channels, height * width])], "pixels")
    points = bins_h * grid * bins_w * grid
    corners = []
    for row, row_weight in ((y_low, y_lw), (y_high, y_hw)):
        for column, column_weight in ((x_low, x_lw), (x_high, x_hw)):
            position = b.op("Add", [b.op("Mul", [row, width_c], "row_start"), column], "position")
            position = b.op("Where", [valid, position, zero_i], "position_inside")
            weight = b.op("Where", [valid, b.op("Mul", [row_weight, column_weight], "weight"), zero_w], "weight_inside")
            index = b.op("Expand", [b.op("Reshape", [position, b.i64([regions, 1, points])], "flat_position"),
                                    b.i64([regions, channels, points])], "index")
            value = b.op("GatherElements", [flat, index], "corner", axis=2)
            corners.append(b.op("Mul", [value, b.op("Reshape", [weight, b.i64([regions, 1, points])], "flat_weight")],
                                "weighted"))
    if mode == "avg":
        total = b.op("Add", [b.op("Add", [b.op("Add", [corners[0], corners[1]], "sum"), corners[2]], "sum"), corners[3]],
                     "sample")
    else:
        total = b.op("Max", corners, "sample")
    total = b.op("Reshape", [total, b.i64([regions, channels, bins_h, grid, bins_w, grid])], "samples")
    reduce = "ReduceSum" if mode == "avg" else "ReduceMax"
    if opset >= (13 if mode == "avg" else 18):  # the axes as an input
        pooled = b.op(reduce, [total, b.i64([3, 5])], "pooled", keepdims=0)
    else:
        pooled = b.op(reduce, [total], "pooled", axes=[3, 5], keepdims=0)
    if mode == "avg":
        b.op("Div", [pooled, b.f(float(grid * grid), "count")], "average", output=node.output[0])
    else:
        b.nodes[-1].output[0] = node.output[0]
    b.nodes[-1].name = node.name
    return b.nodes, b.inits
