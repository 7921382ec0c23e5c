"""DFT as MatMuls with constant cosine and sine matrices: hcc has no lowering for onnx.DFT.

With the axis moved last and the real and imaginary parts split (x = xr + i xi; xi absent for a real signal),
the transform of length L (dft_length, default the axis length; for an inverse one-sided transform 2 * (n - 1)) is
  forward  Yr = xr C + xi S,  Yi = xi C - xr S     (C[j, k] = cos(2 pi j k / L), S[j, k] = sin(2 pi j k / L))
  inverse  Yr = (xr C - xi S) / L,  Yi = (xi C + xr S) / L
over the first min(n, L) input entries (numpy's truncation; the zero padding adds nothing), k = 0..L-1, or
0..L/2 when one-sided. The inverse one-sided transform (numpy's irfft) takes the half spectrum's first L/2 + 1
entries, weighs the ones that stand for two conjugate bins by 2 and gives a real signal. The matrices are computed
in float64 and rounded once to the input's type, with the quarter turns (the DC and Nyquist bins) exactly 0 and +-1;
the sums are MatMuls of n terms in the input's type (numpy 2's np.fft, the reference, computes float32 in
float32). A run-time axis (opset 20) is compiled for every axis and picked with Where when the output shape does
not depend on it; a one-sided transform needs a constant axis. Work and constants are n * L per transform: refused
above MAX_MATRIX elements.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.frontend.node_rewrite import CountedNodes

MAX_MATRIX = 1 << 22
FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}


class _Builder(CountedNodes):
    def __init__(self, node: onnx.NodeProto, dtype: np.dtype):
        super().__init__(node)
        self.dtype = dtype

    def i64(self, value) -> str:
        return self.const(np.asarray(value, np.int64), "c")

    def matrix(self, value: np.ndarray, hint: str) -> str:
        return self.const(value.astype(self.dtype), hint)

    def slice(self, x: str, start: int, end: int, axis: int, hint: str) -> str:
        return self.op("Slice", [x, self.i64([start]), self.i64([end]), self.i64([axis])], hint)


def _transform(b: _Builder, x: str, shape: list[int], axis: int, length: int | None, inverse: bool,
               onesided: bool, where: str) -> str:
    """One DFT of `x` (static `shape`, last dim 1 or 2) along `axis` (not the last)."""
    rank, n, complex_in = len(shape), shape[axis], shape[-1] == 2
    if length is None:
        length = 2 * (n - 1) if inverse and onesided else n
    if length < 1:
        raise HccError(f"{where}: a transform of length {length}")
    used = min(n, length // 2 + 1 if inverse and onesided else length)
    outputs = length if inverse or not onesided else length // 2 + 1
    if used * outputs > MAX_MATRIX:
        raise HccError(f"{where}: a {used} x {outputs} transform matrix; hcc compiles DFT up to {MAX_MATRIX} elements")
    perm = [d for d in range(rank - 1) if d != axis] + [rank - 1, axis]  # [..., parts, n]
    xt = b.op("Transpose", [x], "moved", perm=perm)
    if used < n:
        xt = b.slice(xt, 0, used, rank - 1, "truncated")
    j = np.arange(used, dtype=np.float64).reshape(-1, 1)
    k = np.arange(outputs, dtype=np.float64).reshape(1, -1)
    turns = (j * k) % length  # reduced mod L first: exact arguments for large j*k
    angle = 2.0 * np.pi * turns / length
    cos, sin = np.cos(angle), np.sin(angle)
    quarter = (4 * turns) % length == 0  # multiples of a quarter turn: exactly 0 and +-1 (the DC and Nyquist bins)
    cos[quarter], sin[quarter] = np.rint(cos[quarter]), np.rint(sin[quarter])
    xr = b.slice(xt, 0, 1, rank - 2, "real") if complex_in else xt
    xi = b.slice(xt, 1, 2, rank - 2, "imag") if complex_in else None
    if inverse and onesided:  # numpy's irfft: bins 1..ceil(L/2)-1 stand for two conjugate bins
        weight = np.full((used, 1), 2.0)
        weight[0] = 1.0
        if length % 2 == 0 and length // 2 < used:
            weight[length // 2] = 1.0
        cos_t, sin_t = (cos * weight) / length, (sin * weight) / length
        real = b.op("MatMul", [xr, b.matrix(cos_t, "cos")], "re")
        if xi is not None:
            real = b.op("Sub", [real, b.op("MatMul", [xi, b.matrix(sin_t, "sin")], "im_sin")], "signal")
        return b.op("Transpose", [real], "back", perm=[perm.index(d) for d in range(rank)])
    scale = 1.0 / length if inverse else 1.0
    sign = 1.0 if inverse else -1.0  # e^{sign i 2 pi j k / L}
    c, s = b.matrix(cos * scale, "cos"), b.matrix(sin * scale, "sin")
    re_c, re_s = b.op("MatMul", [xr, c], "re_cos"), b.op("MatMul", [xr, s], "re_sin")
    if xi is None:
        real, imag = re_c, (re_s if sign > 0 else b.op("Neg", [re_s], "neg"))
    else:
        im_c, im_s = b.op("MatMul", [xi, c], "im_cos"), b.op("MatMul", [xi, s], "im_sin")
        real = b.op("Sub" if sign > 0 else "Add", [re_c, im_s], "real_part")
        imag = b.op("Add" if sign > 0 else "Sub", [im_c, re_s], "imag_part")
    both = b.op("Concat", [real, imag], "complex", axis=rank - 2)
    return b.op("Transpose", [both], "back", perm=[perm.index(d) for d in range(rank)])


def dft_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int], opset: int, constants: dict[str, np.ndarray],
              path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers replacing the DFT `node` whose input has static `shape`."""
    where = f"{path}: node '{node.name}' (DFT)"
    attrs = {a.name: a.i for a in node.attribute}
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    rank = len(shape)
    if elem_type not in FLOATS:
        raise HccError(f"{where}: input of type {TensorProto.DataType.Name(elem_type)}; hcc compiles DFT of floats")
    if rank < 2 or shape[-1] not in (1, 2):
        raise HccError(f"{where}: input {shape}: the last dimension must be 1 (real) or 2 (complex)")
    if onesided and not inverse and shape[-1] == 2:
        raise HccError(f"{where}: a one-sided transform of a complex signal (the spec defines it for real input)")
    length_name = node.input[1] if len(node.input) > 1 else ""
    length = None
    if length_name:
        value = constants.get(length_name)
        if value is None:
            raise HccError(f"{where}: dft_length is not a constant (it decides the output shape)")
        length = int(value.reshape(-1)[0])
    axis_name = node.input[2] if opset >= 20 and len(node.input) > 2 else ""
    if opset >= 20:
        axis = -2 if not axis_name else None
        if axis_name and constants.get(axis_name) is not None:
            axis = int(constants[axis_name].reshape(-1)[0])
    else:
        axis = attrs.get("axis", 1)
    b = _Builder(node, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    x = node.input[0]
    if axis is not None:
        if not -rank <= axis < rank or axis % rank == rank - 1:
            raise HccError(f"{where}: axis {axis} is not a signal axis of the input {shape}")
        result = _transform(b, x, shape, axis % rank, length, inverse, onesided, where)
    else:
        if onesided:
            raise HccError(f"{where}: the axis is given at run time, but a one-sided transform's output shape depends "
                           "on it; hcc compiles it with a constant axis")
        candidates = list(range(rank - 1))
        shapes = {a: shape[:a] + [length or shape[a]] + shape[a + 1:-1] for a in candidates}
        if len({tuple(v) for v in shapes.values()}) != 1:
            raise HccError(f"{where}: the axis is given at run time, and the output shape depends on it; hcc compiles "
                           "it with a constant axis")
        wanted = b.op("Cast", [axis_name], "axis", to=TensorProto.INT64)
        result = _transform(b, x, shape, candidates[0], length, inverse, onesided, where)
        for a in candidates[1:]:
            hit = b.op("Or", [b.op("Equal", [wanted, b.i64(a)], "is_a"),
                              b.op("Equal", [wanted, b.i64(a - rank)], "is_a_neg")], "hit")
            result = b.op("Where", [hit, _transform(b, x, shape, a, length, inverse, onesided, where), result], "pick")
    if b.nodes and b.nodes[-1].output[0] == result:
        b.nodes[-1].output[0], b.nodes[-1].name = node.output[0], node.name
    else:
        b.nodes.append(helper.make_node("Identity", [result], [node.output[0]], name=node.name))
    return b.nodes, b.inits


def stft_nodes(node: onnx.NodeProto, elem_type: int, shape: list[int], window_shape: list[int] | None,
               constants: dict[str, np.ndarray], path: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """STFT as onnx.reference computes it: frames of the signal [batch, length, 1|2] taken with a constant Gather
    (frame_step and frame_length must be constants: they decide the output shape), times the window, then the
    DFT of each frame (one-sided by default)."""
    where = f"{path}: node '{node.name}' (STFT)"
    names = [node.input[i] if i < len(node.input) else "" for i in range(4)]
    onesided = bool(next((a.i for a in node.attribute if a.name == "onesided"), 1))
    if elem_type not in FLOATS or len(shape) != 3 or shape[-1] not in (1, 2):
        raise HccError(f"{where}: signal {shape}: hcc compiles a float signal [batch, length, 1 or 2]")
    if onesided and shape[-1] == 2:
        raise HccError(f"{where}: a one-sided transform of a complex signal (the spec defines it for real input)")
    step = constants.get(names[1])
    frame = constants.get(names[3]) if names[3] else None
    if step is None or (names[3] and frame is None):
        raise HccError(f"{where}: frame_step and frame_length must be constants (they decide the output shape)")
    step = int(step.reshape(-1)[0])
    length = int(frame.reshape(-1)[0]) if frame is not None else window_shape[0] if window_shape else shape[1]
    if names[2] and window_shape != [length]:
        raise HccError(f"{where}: a window of shape {window_shape} for frames of {length}")
    if step < 1 or not 1 <= length <= shape[1]:
        raise HccError(f"{where}: frame_step {step} and frame_length {length} for a signal of {shape[1]}")
    frames = 1 + (shape[1] - length) // step
    b = _Builder(node, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    index = np.arange(frames).reshape(-1, 1) * step + np.arange(length).reshape(1, -1)
    x = b.op("Gather", [node.input[0], b.i64(index)], "frames", axis=1)  # [batch, frames, length, parts]
    if names[2]:
        x = b.op("Mul", [x, b.op("Reshape", [names[2], b.i64([1, 1, length, 1])], "window")], "windowed")
    _transform(b, x, [shape[0], frames, length, shape[2]], 2, length, False, onesided, where)
    b.nodes[-1].output[0], b.nodes[-1].name = node.output[0], node.name  # _transform's last node: the result
    return b.nodes, b.inits
