"""Ops whose output shape depends on their input *values* (NonMaxSuppression, Unique, NonZero), run by the runtime
on the host with numpy, as program steps of kind "host" (docs/control-flow.md).

Why on the host: compiled code has one static shape per tensor, and these ops' outputs have none (how many boxes
survive, how many distinct values there are). onnxruntime runs them as scalar C++ loops on the CPU as well; here
they are numpy, which the runtime already needs, so a bundle still deploys with numpy alone. The compiler cuts the
graph around them (program.py) exactly as around a run-time If / Loop: the code before and after is compiled as
usual, and a value of run-time shape may be a model output or be read by another host step, never by compiled code.

Each op follows the ONNX specification and onnxruntime's CPU kernel where the two leave a choice (NonMaxSuppression:
candidates by descending score, ties by lower box index; a box is dropped when its IoU with a kept one is greater
than the threshold, computed in the boxes' own float type).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

INT64 = "int64"


def _nms_iou_suppressed(boxes: np.ndarray, kept: list[int], candidate: int, center_point_box: int, threshold) -> bool:
    """Whether `candidate` overlaps any kept box by an IoU above `threshold` (onnxruntime's formula, in the boxes'
    float type; degenerate boxes of no area suppress nothing)."""
    if not kept:
        return False
    b = boxes[kept]
    c = boxes[candidate]
    if center_point_box:
        half = np.asarray(2, boxes.dtype)
        x_lo, x_hi = b[:, 0] - b[:, 2] / half, b[:, 0] + b[:, 2] / half
        y_lo, y_hi = b[:, 1] - b[:, 3] / half, b[:, 1] + b[:, 3] / half
        cx_lo, cx_hi = c[0] - c[2] / half, c[0] + c[2] / half
        cy_lo, cy_hi = c[1] - c[3] / half, c[1] + c[3] / half
    else:  # [y1, x1, y2, x2], corners in either order
        x_lo, x_hi = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
        y_lo, y_hi = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
        cx_lo, cx_hi = min(c[1], c[3]), max(c[1], c[3])
        cy_lo, cy_hi = min(c[0], c[2]), max(c[0], c[2])
    ix = np.minimum(x_hi, cx_hi) - np.maximum(x_lo, cx_lo)
    iy = np.minimum(y_hi, cy_hi) - np.maximum(y_lo, cy_lo)
    overlap = (ix > 0) & (iy > 0)
    inter = ix * iy
    area = (x_hi - x_lo) * (y_hi - y_lo)
    c_area = (cx_hi - cx_lo) * (cy_hi - cy_lo)
    union = area + c_area - inter
    valid = overlap & (inter > 0) & (area > 0) & (c_area > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return bool(np.any(valid & (iou > threshold)))


def non_max_suppression(inputs: list[np.ndarray | None], attributes: dict[str, Any]) -> list[np.ndarray]:
    """selected_indices [n, 3] int64: (batch, class, box) per kept box, by batch, then class, then selection order."""
    boxes, scores = inputs[0], inputs[1]
    rest = list(inputs[2:]) + [None] * (3 - len(inputs[2:]))
    max_per_class = int(rest[0].reshape(-1)[0]) if rest[0] is not None and rest[0].size else 0
    iou_threshold = rest[1].reshape(-1)[0] if rest[1] is not None and rest[1].size else np.asarray(0, boxes.dtype)
    score_threshold = rest[2].reshape(-1)[0] if rest[2] is not None and rest[2].size else None
    center_point_box = int(attributes.get("center_point_box", 0))
    if boxes.ndim != 3 or scores.ndim != 3 or boxes.shape[2] != 4 or boxes.shape[:2] != (scores.shape[0], scores.shape[2]):
        raise ValueError(f"boxes {list(boxes.shape)} and scores {list(scores.shape)} do not fit [batch, boxes, 4] and "
                         "[batch, classes, boxes]")
    selected: list[tuple[int, int, int]] = []
    for batch in range(boxes.shape[0]):
        for cls in range(scores.shape[1]):
            class_scores = scores[batch, cls]
            candidates = np.arange(class_scores.shape[0])
            if score_threshold is not None:
                candidates = candidates[class_scores > score_threshold]
            order = candidates[np.lexsort((candidates, -class_scores[candidates].astype(np.float64)))]
            kept: list[int] = []
            for box in order.tolist():
                if len(kept) >= max_per_class:
                    break
                if not _nms_iou_suppressed(boxes[batch], kept, box, center_point_box, iou_threshold):
                    kept.append(box)
            selected += [(batch, cls, box) for box in kept]
    return [np.array(selected, np.int64).reshape(-1, 3)]


def unique(inputs: list[np.ndarray | None], attributes: dict[str, Any]) -> list[np.ndarray]:
    """Y, indices, inverse_indices, counts: sorted (default) or in order of first occurrence, of the flattened input
    or of its slices along `axis`."""
    x = inputs[0]
    axis = attributes.get("axis")
    flat = x.reshape(-1) if axis is None else x
    if axis is not None:
        axis = int(axis) + (x.ndim if int(axis) < 0 else 0)
        _, indices, inverse, counts = np.unique(flat, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    else:
        _, indices, inverse, counts = np.unique(flat, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if not int(attributes.get("sorted", 1)):  # in order of first occurrence
        order = np.argsort(indices, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        indices, counts, inverse = indices[order], counts[order], rank[inverse]
    y = np.take(flat, indices, axis=0 if axis is None else axis)
    return [y, indices.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]


def non_zero(inputs: list[np.ndarray | None], attributes: dict[str, Any]) -> list[np.ndarray]:
    """[rank, n] int64: the indices of the non-zero elements in row-major order (a scalar counts as rank 1)."""
    x = inputs[0]
    return [np.array(np.nonzero(x.reshape(1) if x.ndim == 0 else x), np.int64).reshape(max(x.ndim, 1), -1)]


# ---- ops that follow them: data movement and arithmetic on values of run-time shape (a detector's boxes gathered
# by the selected indices). Compiled code needs static shapes, so where one of these reads a value of run-time shape
# the compiler makes it a host step too (program.py); each follows the ONNX definition with numpy's IEEE arithmetic.

def _ints(value: np.ndarray | None) -> list[int]:
    return [] if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def gather(inputs, attributes):
    data, indices = inputs[0], np.asarray(inputs[1])
    axis = _axis(int(attributes.get("axis", 0)), data.ndim)
    return [np.take(data, np.where(indices < 0, indices + data.shape[axis], indices), axis=axis)]


def slice_(inputs, attributes):
    data = inputs[0]
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[_axis(axis, data.ndim)] = slice(start, end, step)  # Python's clamping is ONNX's
    return [data[tuple(index)].copy()]


def squeeze(inputs, attributes):
    axes = _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else [a for a, n in enumerate(inputs[0].shape) if n == 1]
    return [np.squeeze(inputs[0], axis=tuple(_axis(a, inputs[0].ndim) for a in axes))]


def unsqueeze(inputs, attributes):
    axes = _ints(inputs[1])
    rank = inputs[0].ndim + len(axes)
    return [np.expand_dims(inputs[0], tuple(sorted(_axis(a, rank) for a in axes)))]


def reshape(inputs, attributes):
    data, shape = inputs[0], _ints(inputs[1])
    if not int(attributes.get("allowzero", 0)):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [data.reshape(shape)]


def concat(inputs, attributes):
    values = [v for v in inputs if v is not None]
    return [np.concatenate(values, axis=_axis(int(attributes["axis"]), values[0].ndim))]


_CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16,
               11: np.float64, 12: np.uint32, 13: np.uint64, 4: np.uint16}  # ONNX TensorProto data types numpy has


def cast_(inputs, attributes):
    return [inputs[0].astype(_CAST_TYPES[int(attributes["to"])])]


def transpose(inputs, attributes):
    perm = attributes.get("perm")
    return [np.ascontiguousarray(np.transpose(inputs[0], perm))]


def flatten(inputs, attributes):
    data = inputs[0]
    axis = _axis(int(attributes.get("axis", 1)), data.ndim)
    return [data.reshape(int(np.prod(data.shape[:axis])), -1)]


def shape(inputs, attributes):
    dims = list(inputs[0].shape)
    start, end = int(attributes.get("start", 0)), attributes.get("end")
    return [np.array(dims[start:None if end is None else int(end)], np.int64)]


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":  # C's truncating division, as onnxruntime's
        q = np.floor_divide(a, b)
        return q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0))).astype(a.dtype)
    return np.divide(a, b)


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _divide}


def _binary(op: str):
    return lambda inputs, attributes: [np.asarray(_BINARY[op](inputs[0], inputs[1])).astype(inputs[0].dtype, copy=False)]


HostOp = Callable[[list, dict], list]


def _same(dtypes: list[str], attributes: dict) -> list[str]:
    return [dtypes[0]]


# op type -> (implementation, the dtypes of its outputs given its inputs' dtypes and its attributes)
HOST_OPS: dict[str, tuple[HostOp, Callable[[list[str], dict], list[str]]]] = {
    "NonMaxSuppression": (non_max_suppression, lambda d, a: [INT64]),
    "Unique": (unique, lambda d, a: [d[0], INT64, INT64, INT64]),
    "NonZero": (non_zero, lambda d, a: [INT64]),
}
# Ops run on the host only where they read a value of run-time shape (an output of the ops above, or of another of
# these); elsewhere they are compiled as usual.
FOLLOWING_OPS: dict[str, tuple[HostOp, Callable[[list[str], dict], list[str]]]] = {
    "Gather": (gather, _same), "Slice": (slice_, _same), "Squeeze": (squeeze, _same), "Unsqueeze": (unsqueeze, _same),
    "Reshape": (reshape, _same), "Concat": (concat, _same), "Transpose": (transpose, _same), "Flatten": (flatten, _same),
    "Identity": (lambda i, a: [i[0]], _same), "Shape": (shape, lambda d, a: [INT64]),
    "Cast": (cast_, lambda d, a: [np.dtype(_CAST_TYPES[int(a["to"])]).name]),
    **{op: (_binary(op), _same) for op in _BINARY},
}
RUNTIME_OPS = {**HOST_OPS, **FOLLOWING_OPS}


def run_host_op(op: str, inputs: list[np.ndarray | None], attributes: dict[str, Any], outputs: int) -> list[np.ndarray]:
    """The first `outputs` results of host op `op` (a KeyError for an op the runtime does not know: validation
    refuses such a bundle before it runs)."""
    return RUNTIME_OPS[op][0](inputs, attributes)[:outputs]
