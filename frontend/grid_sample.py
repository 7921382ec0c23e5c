"""GridSample as coordinate arithmetic, GatherElements and weighted sums: hcc has no lowering for onnx.GridSample, so
the op is written here in ops every backend compiles, step for step as onnx.reference computes it.

For every output position and spatial dimension (the grid's components are in reverse order: x is the last axis):
the normalized coordinate is mapped to the pixel coordinate (align_corners: (g + 1) / 2 * (L - 1), else
((g + 1) * L - 1) / 2), rounded half to even for 'nearest'; a coordinate outside the border range ([0, L-1] with
align_corners, else [-0.5, L-0.5]) is clamped to [0, L-1] ('border') or reflected into the range ('reflection').
'nearest' takes the pixel at the truncated coordinate; 'linear' the 2 taps floor(x), floor(x)+1 and 'cubic' the
4 taps floor(x)-1..floor(x)+2 per dimension (Keys' cubic, alpha -0.75), weighted and summed innermost dimension first
as the reference does. A tap outside the input reads 0 ('zeros', selected with Where, so an inf or NaN elsewhere does
not leak), the nearest edge pixel ('border') or its reflection ('reflection'). Taps are fetched with one
GatherElements each from the input flattened to [N, C, pixels]: taps^dims of them ('cubic' on a volume: 64).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}
MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic", "bicubic": "cubic"}
CUBIC_ALPHA = -0.75


class _Builder(CountedNodes):
    """Nodes and constants for one GridSample, named after it; `f` makes constants of the input's float type."""

    def __init__(self, node: onnx.NodeProto, dtype: np.dtype):
        super().__init__(node)
        self.dtype = dtype

    def f(self, value: float) -> str:
        return self.const(np.asarray(value, self.dtype), "k")

    def i64(self, value, hint: str) -> str:
        return self.const(np.asarray(value, np.int64), hint)

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b], "add")

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", [a, b], "sub")

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b], "mul")

    def gt(self, a: str, b: str) -> str:
        return self.op("Greater", [a, b], "gt")  # Greater both ways: torch-mlir converts onnx.Less from opset 13 on

    def where(self, c: str, a: str, b: str) -> str:
        return self.op("Where", [c, a, b], "where")

    def clamp(self, v: str, lo: float, hi: float) -> str:
        """v limited to [lo, hi]; NaN becomes lo (a tap index must stay inside the input whatever the grid holds)."""
        low, high = self.f(lo), self.f(hi)
        v = self.where(self.gt(v, low), v, low)
        return self.where(self.gt(high, v), v, high)

    def reflect(self, v: str, lo: float, hi: float) -> str:
        """The reference's _gs_reflect: v reflected at the border it is beyond until inside [lo, hi]."""
        span = hi - lo
        if span <= 0:
            return self.where(self.outside(v, lo, hi), self.f(lo), v)
        below = self.gt(self.f(lo), v)
        dx = self.where(below, self.sub(self.f(lo), v), self.sub(v, self.f(hi)))
        flips = self.op("Floor", [self.op("Div", [dx, self.f(span)], "div")], "flips")
        rest = self.sub(dx, self.mul(flips, self.f(span)))
        half = self.op("Floor", [self.mul(flips, self.f(0.5))], "half")
        odd = self.gt(self.sub(flips, self.mul(half, self.f(2.0))), self.f(0.5))
        from_lo, from_hi = self.add(self.f(lo), rest), self.sub(self.f(hi), rest)
        reflected = self.where(odd, self.where(below, from_hi, from_lo), self.where(below, from_lo, from_hi))
        return self.where(self.outside(v, lo, hi), reflected, v)

    def outside(self, v: str, lo: float, hi: float) -> str:
        return self.op("Or", [self.gt(self.f(lo), v), self.gt(v, self.f(hi))], "outside")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _cubic_coefficients(b: _Builder, t: str) -> list[str]:
    """Keys' cubic weights of the taps floor(x)-1..floor(x)+2 for t = x - floor(x), as the reference writes them."""
    a = CUBIC_ALPHA

    def outer(d: str) -> str:  # ((a*d - 5a)*d + 8a)*d - 4a
        inner = b.add(b.mul(b.sub(b.mul(b.f(a), d), b.f(5 * a)), d), b.f(8 * a))
        return b.sub(b.mul(inner, d), b.f(4 * a))

    def near(d: str) -> str:  # ((a+2)*d - (a+3))*d*d + 1
        return b.add(b.mul(b.mul(b.sub(b.mul(b.f(a + 2), d), b.f(a + 3)), d), d), b.f(1.0))

    one_minus = b.sub(b.f(1.0), t)
    return [outer(b.add(t, b.f(1.0))), near(t), near(one_minus), outer(b.sub(b.f(2.0), t))]


def grid_sample_nodes(node: onnx.NodeProto, x_type: int, x_shape: list[int], grid_shape: list[int],
                      path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the GridSample `node` (static X and grid shapes)."""
    where = f"{path}: node '{node.name}' (GridSample)"
    attrs = _attrs(node)
    mode_name = attrs.get("mode", b"linear").decode()
    mode = MODES.get(mode_name)
    padding = attrs.get("padding_mode", b"zeros").decode()
    align = bool(attrs.get("align_corners", 0))
    if mode is None or padding not in ("zeros", "border", "reflection"):
        raise HccError(f"{where}: unknown mode '{mode_name}' or padding_mode '{padding}'")
    if x_type not in FLOATS:
        raise HccError(f"{where}: X of type {TensorProto.DataType.Name(x_type)}; hcc compiles GridSample of float X")
    dims = x_shape[2:]
    s = len(dims)
    if s < 1 or len(grid_shape) < 2 or grid_shape[-1] != s or grid_shape[0] != x_shape[0]:
        raise HccError(f"{where}: grid {grid_shape} does not fit X {x_shape} (expected [N, ..., {s}])")
    batch, channels = x_shape[:2]
    positions = math.prod(grid_shape[1:-1])
    out_shape = [batch, channels] + grid_shape[1:-1]
    b = _Builder(node, np.dtype(helper.tensor_dtype_to_np_dtype(x_type)))
    x, grid = node.input[:2]
    if math.prod(out_shape) == 0 or math.prod(dims) == 0:
        raise HccError(f"{where}: an empty input or output")
    grid = b.op("Transpose", [b.op("Reshape", [grid, b.i64([batch, positions, s], "shape")], "grid_rows")],
                "grid_t", perm=[0, 2, 1])  # [N, s, P]
    pixels = b.op("Reshape", [x, b.i64([batch, channels, math.prod(dims)], "shape")], "pixels")  # [N, C, S]
    strides = [math.prod(dims[i + 1:]) for i in range(s)]
    taps = {"nearest": [0], "linear": [0, 1], "cubic": [-1, 0, 1, 2]}[mode]
    per_dim = []  # per spatial dimension: [(tap index as float [N, 1, P], weight or None)]
    for i, length in enumerate(dims):
        j = s - 1 - i  # the grid holds the coordinates in reverse order
        g = b.op("Slice", [grid, b.i64([j], "start"), b.i64([j + 1], "end"), b.i64([1], "axis")], "g")  # [N, 1, P]
        g1 = b.add(g, b.f(1.0))
        if align:
            coord = b.mul(b.op("Div", [g1, b.f(2.0)], "div"), b.f(length - 1))
        else:
            coord = b.op("Div", [b.sub(b.mul(g1, b.f(length)), b.f(1.0)), b.f(2.0)], "div")
        if mode == "nearest":
            coord = b.op("Round", [coord], "round")  # half to even, as the reference's np.rint
        lo, hi = (0.0, length - 1.0) if align else (-0.5, length - 0.5)
        if padding == "border":
            coord = b.where(b.outside(coord, lo, hi), b.clamp(coord, 0.0, length - 1.0), coord)
        elif padding == "reflection":
            coord = b.reflect(coord, lo, hi)
        if mode == "nearest":
            base = b.op("Cast", [b.op("Cast", [coord], "trunc", to=TensorProto.INT64)], "tap", to=x_type)
            entries = [(base, None)]
        else:
            base = b.op("Floor", [coord], "floor")
            t = b.sub(coord, base)
            weights = [b.sub(b.f(1.0), t), t] if mode == "linear" else _cubic_coefficients(b, t)
            entries = [(b.add(base, b.f(float(k))) if k else base, w) for k, w in zip(taps, weights)]
        fixed = []
        for index, weight in entries:  # the reference's _pixel_at_array per padding mode
            valid = None
            if padding == "zeros":
                valid = b.op("And", [b.gt(index, b.f(-1.0)), b.gt(b.f(float(length)), index)], "in_range")
                index = b.where(valid, index, b.f(0.0))
            elif padding == "border":
                index = b.clamp(index, 0.0, length - 1.0)
            else:
                index = b.clamp(b.reflect(index, lo, hi), 0.0, length - 1.0)
            offset = b.mul(b.op("Cast", [index], "index", to=TensorProto.INT64), b.i64(strides[i], "stride"))
            fixed.append((offset, valid, weight))
        per_dim.append(fixed)
    expand_shape = b.i64([batch, channels, positions], "expand")
    values: dict[tuple[int, ...], str] = {}
    for combo in np.ndindex(*[len(t) for t in per_dim]):
        offset, valid = None, None
        for i, k in enumerate(combo):
            o, v, _ = per_dim[i][k]
            offset = o if offset is None else b.op("Add", [offset, o], "offset")
            valid = v if valid is None else valid if v is None else b.op("And", [valid, v], "valid")
        index = b.op("Expand", [offset, expand_shape], "tap_index")
        value = b.op("GatherElements", [pixels, index], "tap_value", axis=2)
        if valid is not None:
            value = b.where(valid, value, b.f(0.0))
        values[tuple(combo)] = value
    for i in reversed(range(s)):  # innermost dimension first, as the reference's nested 1-D interpolations
        weights = [w for _, _, w in per_dim[i]]
        reduced: dict[tuple[int, ...], str] = {}
        for prefix in {key[:-1] for key in values}:
            if weights[0] is None:
                reduced[prefix] = values[prefix + (0,)]
                continue
            acc = None
            for k, w in enumerate(weights):
                term = b.mul(w, values[prefix + (k,)])
                acc = term if acc is None else b.add(acc, term)
            reduced[prefix] = acc
        values = reduced
    b.op("Reshape", [values[()], b.i64(out_shape, "out_shape")], "out", output=node.output[0])
    b.nodes[-1].name = node.name
    return b.nodes, b.inits
