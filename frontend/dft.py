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
float32). An inverse transform of a complex float32 signal whose length is made of the factors 2, 3 and 5 (and not
divisible by 8) is instead computed as numpy computes it, pocketfft's passes op for op (below), which gives its
results bit for bit. A run-time axis (opset 20) is compiled for every axis and picked with Where when the output shape does
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


# ------------------------------------------------------------------------------------ numpy's FFT, pass for pass
# numpy 2's np.ifft of a complex64 signal, the reference of an inverse complex DFT, runs pocketfft's mixed-radix
# cfftp in float32: the length is factored into 4s, one 2 (moved first) and odd factors; each pass combines `ip`
# interleaved sub-transforms with fixed butterfly arithmetic, then multiplies by the twiddle factors exp(2 pi i m / L)
# rounded once to float32 (exactly 0 and +-1 at the quarter turns, as pocketfft's octant tables give them); the
# result is multiplied by float32(1/L). The same additions and multiplications in the same order give numpy's results
# bit for bit (checked for every length up to 100 made of the factors 2, 3, 5 and not divisible by 8), where a
# MatMul's sums differ in the last bits: that matters at the outputs whose true value is 0 (numpy's rounding error
# there, ~1e-7 after the 1/L, is what the node suite expects; exact zeros fail its atol of 1e-7). numpy's forward
# np.fft computes in float64 and rounds once, its complex128 and real-signal inverses take other routes, and lengths
# divisible by 8 use a radix-8 pass: all of those keep the MatMuls, which are within the suite's tolerance there.

def _factors(length: int) -> list[int] | None:
    """pocketfft's cfftp factorization, or None when it has a factor this file has no pass for (numpy's pocketfft
    also takes factors of 8 first, with a pass of its own: lengths divisible by 8 are left to the MatMuls)."""
    if length % 8 == 0:
        return None
    factors, rest = [], length
    while rest % 4 == 0:
        factors.append(4)
        rest //= 4
    if rest % 2 == 0:
        rest //= 2
        factors.append(2)
        factors[0], factors[-1] = factors[-1], factors[0]
    for divisor in (3, 5):
        while rest % divisor == 0:
            factors.append(divisor)
            rest //= divisor
    return factors if rest == 1 and length > 1 else None


class _Complex:
    """Complex arithmetic on pairs of real tensors, one node per IEEE operation (in pocketfft's operand order)."""

    def __init__(self, b: _Builder):
        self.b = b

    def add(self, x, y):
        return self.b.op("Add", [x[0], y[0]], "re_add"), self.b.op("Add", [x[1], y[1]], "im_add")

    def sub(self, x, y):
        return self.b.op("Sub", [x[0], y[0]], "re_sub"), self.b.op("Sub", [x[1], y[1]], "im_sub")

    def scale(self, x, factor: str):
        return self.b.op("Mul", [x[0], factor], "re_scale"), self.b.op("Mul", [x[1], factor], "im_scale")

    def special_mul(self, x, w, backward: bool):
        """pocketfft's special_mul: x * w backward, x * conj(w) forward."""
        op = self.b.op
        rr, ii = op("Mul", [x[0], w[0]], "rr"), op("Mul", [x[1], w[1]], "ii")
        ri, ir = op("Mul", [x[0], w[1]], "ri"), op("Mul", [x[1], w[0]], "ir")
        if backward:
            return op("Sub", [rr, ii], "tw_re"), op("Add", [ri, ir], "tw_im")
        return op("Add", [rr, ii], "tw_re"), op("Sub", [ir, ri], "tw_im")


def _twiddles(length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi m / length in float64, exact at the quarter turns."""
    m = np.arange(length, dtype=np.float64)
    angle = 2.0 * np.pi * m / length
    cos, sin = np.cos(angle), np.sin(angle)
    quarter = (4 * np.arange(length)) % length == 0
    cos[quarter], sin[quarter] = np.rint(cos[quarter]), np.rint(sin[quarter])
    return cos, sin


def _pass(b: _Builder, c: _Complex, x, rank: int, ip: int, l1: int, ido: int, twiddle, backward: bool):
    """One pocketfft pass on [..., L] tensors (rank `rank`): input CC(i, j, k) at [..., k, j, i], output CH(i, k, u)
    at [..., u, k, i]."""
    keep = [0] * (rank - 1)
    cc = [b.op("Reshape", [part, b.i64(keep + [l1, ip, ido])], "blocks") for part in x]
    inputs = [tuple(b.slice(part, j, j + 1, rank, f"cc{j}") for part in cc) for j in range(ip)]  # [..., l1, 1, ido]
    one = b.dtype.type

    def const(value: float) -> str:
        return b.matrix(np.asarray(one(value)), "tw")

    sign = 1.0 if backward else -1.0
    outputs = []
    if ip == 2:
        outputs = [c.add(inputs[0], inputs[1]), c.sub(inputs[0], inputs[1])]
    elif ip == 3:
        tw1r, tw1i = const(-0.5), const(sign * float(one(0.8660254037844386467637231707529362)))
        t0 = inputs[0]
        t1, t2 = c.add(inputs[1], inputs[2]), c.sub(inputs[1], inputs[2])
        ca = c.add(t0, c.scale(t1, tw1r))
        cb = c.scale(t2, tw1i)  # ROT90(cb) = (-cb.i, cb.r): ca + rot, ca - rot
        outputs = [c.add(t0, t1), (b.op("Sub", [ca[0], cb[1]], "re"), b.op("Add", [ca[1], cb[0]], "im")),
                   (b.op("Add", [ca[0], cb[1]], "re"), b.op("Sub", [ca[1], cb[0]], "im"))]
    elif ip == 4:
        t2, t1 = c.add(inputs[0], inputs[2]), c.sub(inputs[0], inputs[2])
        t3, t4 = c.add(inputs[1], inputs[3]), c.sub(inputs[1], inputs[3])
        neg = b.op("Neg", [t4[1] if backward else t4[0]], "rot")
        t4 = (neg, t4[0]) if backward else (t4[1], neg)  # ROT90 backward, ROTM90 forward
        outputs = [c.add(t2, t3), c.add(t1, t4), c.sub(t2, t3), c.sub(t1, t4)]
    else:  # 5
        tw1r, tw2r = const(0.3090169943749474241022934171828191), const(-0.8090169943749474241022934171828191)
        tw1i = const(sign * float(one(0.9510565162951535721164393333793821)))
        tw2i = const(sign * float(one(0.5877852522924731291687059546390728)))
        t0 = inputs[0]
        t1, t4 = c.add(inputs[1], inputs[4]), c.sub(inputs[1], inputs[4])
        t2, t3 = c.add(inputs[2], inputs[3]), c.sub(inputs[2], inputs[3])
        op = b.op
        first = tuple(op("Add", [op("Add", [t0[p], t1[p]], "s"), t2[p]], "s") for p in (0, 1))

        def step(twar, twbr, twai, twbi, plus: bool):
            ca = tuple(op("Add", [op("Add", [t0[p], op("Mul", [twar, t1[p]], "m")], "s"), op("Mul", [twbr, t2[p]], "m")], "s")
                       for p in (0, 1))
            join = "Add" if plus else "Sub"
            cbi = op(join, [op("Mul", [twai, t4[0]], "m"), op("Mul", [twbi, t3[0]], "m")], "cbi")
            minus_cbr = op(join, [op("Mul", [twai, t4[1]], "m"), op("Mul", [twbi, t3[1]], "m")], "cbr")  # cb.r = -this
            return ((op("Sub", [ca[0], minus_cbr], "re"), op("Add", [ca[1], cbi], "im")),
                    (op("Add", [ca[0], minus_cbr], "re"), op("Sub", [ca[1], cbi], "im")))

        o1, o4 = step(tw1r, tw2r, tw1i, tw2i, True)
        o2, o3 = step(tw2r, tw1r, tw2i, tw1i, False)
        outputs = [first, o1, o2, o3, o4]
    if ido > 1:
        cos, sin = twiddle
        index = np.arange(1, ido)
        for u in range(1, ip):
            w = (b.matrix(cos[u * l1 * index], "wa_re"), b.matrix(sin[u * l1 * index], "wa_im"))
            head = tuple(b.slice(part, 0, 1, rank + 1, "i0") for part in outputs[u])
            tail = tuple(b.slice(part, 1, ido, rank + 1, "i1") for part in outputs[u])
            turned = c.special_mul(tail, w, backward)
            outputs[u] = tuple(b.op("Concat", [head[p], turned[p]], "twiddled", axis=rank + 1) for p in (0, 1))
    perm = list(range(rank - 1)) + [rank, rank - 1, rank + 1]
    result = []
    for p in (0, 1):
        stacked = b.op("Concat", [o[p] for o in outputs], "stacked", axis=rank)  # [..., l1, ip, ido]
        result.append(b.op("Reshape", [b.op("Transpose", [stacked], "ch", perm=perm), b.i64(keep + [-1])], "ch_flat"))
    return tuple(result)


def _fft(b: _Builder, xr: str, xi: str, rank: int, length: int, inverse: bool) -> tuple[str, str]:
    """numpy's complex FFT (ifft with its 1/L) of the [..., length] tensors xr + i xi."""
    c = _Complex(b)
    x, l1 = (xr, xi), 1
    twiddle = _twiddles(length)
    for ip in _factors(length):
        x = _pass(b, c, x, rank, ip, l1, length // (l1 * ip), twiddle, inverse)
        l1 *= ip
    if inverse:
        x = c.scale(x, b.matrix(np.asarray(b.dtype.type(1) / b.dtype.type(length)), "fct"))  # the type's 1/L
    return x


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
    if inverse and not onesided and complex_in and b.dtype == np.float32 and _factors(length):
        if used < length:  # numpy's zero padding
            pads = [0] * (2 * rank)
            pads[2 * rank - 1] = length - used
            xr, xi = (b.op("Pad", [v, b.i64(pads)], "padded") if v is not None else None for v in (xr, xi))
        real, imag = _fft(b, xr, xi, rank, length, inverse)
        both = b.op("Concat", [real, imag], "complex", axis=rank - 2)
        return b.op("Transpose", [both], "back", perm=[perm.index(d) for d in range(rank)])
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


def explicit_stft_defaults(model: onnx.ModelProto) -> None:
    """Write STFT's default onesided=1 on the nodes that leave it out, in place: onnx's shape inference takes a
    missing onesided as 0 and infers the two-sided bin count, which contradicts a correctly declared output shape
    (the node suite's test_stft). The semantics are unchanged."""
    for node in model.graph.node:
        if node.op_type == "STFT" and node.domain in ("", "ai.onnx") and not any(a.name == "onesided" for a in node.attribute):
            node.attribute.append(helper.make_attribute("onesided", 1))
