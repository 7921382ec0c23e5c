"""AffineGrid (opset 20) with a constant `size` as one MatMul against a constant grid.

grid[n, h, w, :] = theta[n] @ [x_w, y_h, 1] (2-D; 3-D: [x_w, y_h, z_d, 1] with theta [N, 3, 4]), where the
normalized coordinates of a dim of length L are -1 + (2i + 1) / L, or with align_corners -1 + 2i / (L - 1), exactly
as onnx's reference builds them (onnx/reference/ops/op_affine_grid.py, in float64, then to theta's type). With the
sizes known (a constant, or a value the ONNX backend freezes because it fixes the output shape), the coordinate grid
is a constant [dims+1, D*H*W] and the op is MatMul(theta, grid), a transpose and a reshape. ONNX's function body
for the op builds the same grid at run time from Range and shape ops, which the torch-mlir lowering does not take;
a run-time `size` keeps that path.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.frontend.newer_ops import GraphFacts, rewrite_op
from hcc.frontend.node_rewrite import CountedNodes

THETA_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)  # AffineGrid's T


def _coordinates(length: int, align_corners: int) -> np.ndarray:
    """The reference's np.arange of one dim's normalized coordinates (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if align_corners == 1:
            step = 2.0 / (length - 1)
            return np.arange(-1, 1 + 0.0001, step) if length > 1 else np.array([-1.0])
        step = 2.0 / length
        return np.arange(-1 + step / 2, 1, step)


def base_grid(spatial: list[int], align_corners: int) -> np.ndarray:
    """[x, y(, z), 1] per output position as columns: shape [len(spatial) + 1, prod(spatial)], x along the last dim."""
    axes = [_coordinates(n, align_corners) for n in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")  # mesh[i] varies along spatial dim i
    rows = [m.reshape(-1) for m in reversed(mesh)] + [np.ones(int(np.prod(spatial)))]
    return np.stack(rows)


def affine_grid_nodes(node: onnx.NodeProto, facts: GraphFacts, path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The replacement of one AffineGrid whose size is a constant; the node itself otherwise (its function body)."""
    size = node.input[1] if len(node.input) > 1 else ""
    theta_type = facts.types.get(node.input[0])
    if size not in facts.constants or theta_type not in THETA_TYPES:
        return [node], []
    dims = [int(v) for v in np.asarray(facts.constants[size]).reshape(-1)]
    spatial = dims[2:]
    if len(spatial) not in (2, 3) or any(d <= 0 for d in dims):
        return [node], []
    align = int(next((helper.get_attribute_value(a) for a in node.attribute if a.name == "align_corners"), 0))
    b = CountedNodes(node)
    grid = b.const(base_grid(spatial, align).astype(helper.tensor_dtype_to_np_dtype(theta_type)), "base_grid")
    product = b.op("MatMul", [node.input[0], grid], "transformed")  # [N, dims, positions]
    moved = b.op("Transpose", [product], "positions_first", perm=[0, 2, 1])
    b.op("Reshape", [moved, b.const(np.asarray([dims[0], *spatial, len(spatial)], np.int64), "grid_shape")], "grid",
         output=node.output[0])
    b.nodes[-1].name = node.name
    return b.nodes, b.inits


def rewrite_affine_grid(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` with every main-graph AffineGrid of constant size replaced (the model itself when it has none)."""
    return rewrite_op(model, path, "AffineGrid", affine_grid_nodes)
