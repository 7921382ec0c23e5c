"""com.microsoft.DynamicQuantizeLSTM (what onnxruntime's `quantize_dynamic` makes of an LSTM) unrolled into ONNX ops
hcc compiles: DynamicQuantizeLinear and MatMulInteger (exact, frontend/quantized.py) and the gates in float32.

What onnxruntime 1.31's CPU kernel computes, read in its source (contrib_ops/cpu/quantization/dynamic_quantize_lstm.cc,
core/providers/cpu/rnn/lstm_base.h, uni_directional_lstm.cc, rnn_helpers.cc (the quantized ComputeGemm and the deepcpu
gate functions), core/util/qmath.h (GetQuantizationParameter, ParQuantizeLinearStd), core/mlas/lib/qpostprocessor.cpp
(MLAS_QGEMM_SCALE_BIAS_OUTPUT_PROCESSOR) and mlasi.h (MlasMultiplyAddFloat32x4)):
* W is [num_directions, input_size, 4*hidden], R [num_directions, hidden, 4*hidden] (transposed against ONNX LSTM),
  int8 or uint8, gates in ONNX order i, o, f, c. Scales are per tensor ([num_directions]) or per column
  ([num_directions, 4*hidden]); of the zero points only the first of each direction is used (zero_point[d * columns]),
  and a per-column zero point must be all 0 (int8) or all one value (uint8), else the kernel fails.
* Each GEMM quantizes its float operand A as a whole, at run time, to uint8: min and max of A widened to include 0,
  scale = (max - min) / 255 (1 when equal), zp = round_half_even(clamp(-min / scale, 0, 255)), q = MlasQuantizeLinear
  (the formula of DynamicQuantizeLinear). The input GEMM quantizes all of X at once ([seq * batch, input]: one scale
  for the whole sequence; the reverse direction sees the same values reversed, so the same quantization); each step's
  recurrent GEMM quantizes h_{t-1} ([batch, hidden]; the initial_h too).
* The int32 sum of (a - a_zp)(w - w_zp) (exact with VNNI) becomes float as float(sum) * (a_scale * w_scale[col]), the
  scale product in float32: for X written to the gate buffer, for h added to it as float(sum) * scale + buffer (a
  multiply then an add: x86-64 builds take the SSE2 path of MlasMultiplyAddFloat32x4, no FMA).
* Gates (deepcpu): pre = buffer [+ c_{t-1} * P (peepholes, i and f)] + (Wb + Rb) (the two biases added first, in
  float32), clipped to [-clip, clip] only when `clip` is set (its default, FLT_MAX, changes no finite value);
  i = sigmoid(pre_i), f = sigmoid(pre_f) (or 1 - i with input_forget), g = tanh(pre_c),
  c_t = c_{t-1} * f + i * g, o = sigmoid(pre_o [+ c_t * P_o]), h_t = tanh(c_t) * o. onnxruntime's sigmoid and tanh
  are MLAS's rational approximations (logistic.cpp, tanh.cpp; on x86-64 their FMA3 kernels): hcc's own Sigmoid and
  Tanh differ from them by an ulp on about half the inputs, and such an ulp in h moves a later quantization of h by
  a step (the keyword spotter's logits were off by up to 2.2e-4, as much as the whole float-vs-int8 difference), so
  the rewrite computes MLAS's polynomials step by step, each fused multiply-add as float64 ops rounded to float32.
* Bidirectional: each direction its own recurrence on the same X, Y [seq, 2, batch, hidden], the reverse direction's
  outputs at their original time positions; Y_h, Y_c [num_directions, batch, hidden].

hcc computes exactly these steps, unrolled over the static sequence length, with the whole batch's h quantized
together at each step: bit for bit onnxruntime's result (tests/frontend/test_dynamic_quantize_lstm.py; the keyword
spotter of tools/quantize_models.py) with one intra-op thread, or whenever the batch is 1. With several threads and
2..4 rows of hidden <= 256, or more than 4 rows, onnxruntime quantizes h in chunks of ceil(batch / threads) rows
(uni_directional_lstm.cc, batch_parallel_), so its own result depends on its thread count. The unrolled steps repeat
the same constants; `share_identical_initializers` keeps one of each after the expansion (else every step's float
copy of R is a bundle weight: 98 of them, 25 MB, for the keyword spotter).

Refused, naming the node: a sequence length that is not static, sequence_lens other than a constant equal to it,
layout=1 (onnxruntime refuses it too), activations other than the default (Sigmoid, Tanh, Tanh), weights, scales,
zero points, B or P that are not constants, and zero points onnxruntime's kernel rejects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend import mlas_emulation
from hcc.frontend.attributes import attr_value
from hcc.frontend.node_rewrite import NodeEmitter, RewriteGraph, input_at

OP_TYPE = "DynamicQuantizeLSTM"
MS_DOMAIN = "com.microsoft"
F32, F64 = np.float32, np.float64
# MlasTanhConstants (mlas/lib/tanh.cpp: Eigen's rational approximation), as float32
TANH_RANGE = F32(9.0)
TANH_ALPHA = [F32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                               1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)]  # alpha_13 ... alpha_1
TANH_BETA = [F32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)]
DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


class _Refused(Exception):
    """Why a node cannot be compiled (raised as an HccError naming the file and the node)."""


@dataclass
class _Weights:
    """One direction's constants: the int8/uint8 matrix [k, 4h], its zero point and scales (as onnxruntime reads them)."""

    matrix: np.ndarray
    zero_point: np.ndarray  # a scalar of the matrix's type
    scale: np.ndarray  # float32, [] (per tensor) or [4h] (per column)


@dataclass
class _Direction:
    w: _Weights
    r: _Weights
    bias: np.ndarray | None  # Wb + Rb in float32, [4h]
    peepholes: np.ndarray | None  # [3h]: i, o, f
    h0: object  # a tensor name or a constant, [batch, hidden]
    c0: object
    reverse: bool


@dataclass
class _Lstm:
    steps: int
    batch: int
    hidden: int
    clip: float | None
    input_forget: bool
    directions: list[_Direction]


def _constant(g: RewriteGraph, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
    name = input_at(node, index)
    if not name:
        return None
    value = g.constant(name)
    if value is None:
        raise _Refused(f"its {what} ('{name}') is not a constant: hcc compiles constant weights and quantization parameters only")
    return value


def _weights(g: RewriteGraph, node: onnx.NodeProto, indices: tuple[int, int, int], what: str, dirs: int, rows: int,
             columns: int) -> list[_Weights]:
    """Per direction: the matrix, the zero point onnxruntime uses (the first of the direction's) and the scales."""
    matrix, scale, zp = (_constant(g, node, i, f"{what}{part}") for i, part in zip(indices, ("", " scale", " zero point")))
    if matrix is None or scale is None or zp is None:
        raise _Refused(f"its {what}, scale and zero point are required")
    if matrix.dtype not in (np.int8, np.uint8) or zp.dtype != matrix.dtype or scale.dtype != F32:
        raise _Refused(f"{what} must be int8 or uint8 with a zero point of its type and float32 scales")
    if tuple(matrix.shape) != (dirs, rows, columns):
        raise _Refused(f"{what} has shape {list(matrix.shape)}, expected {[dirs, rows, columns]}")
    for value, part in ((scale, "scale"), (zp, "zero point")):
        if tuple(value.shape) not in ((dirs,), (dirs, columns)):
            raise _Refused(f"{what} {part} has shape {list(value.shape)}, expected {[dirs]} or {[dirs, columns]}")
    if zp.ndim == 2 and np.any(zp != (0 if matrix.dtype == np.int8 else zp.reshape(-1)[0])):
        raise _Refused(f"{what} zero points per column must be all zero (int8) or all equal (uint8), as onnxruntime requires")
    per_direction = scale.size // dirs
    if zp.size < scale.size and dirs == 2:
        raise _Refused(f"{what} has per-column scales but one zero point per direction (onnxruntime's kernel reads the "
                       "second direction's zero point past the end)")
    flat_zp = zp.reshape(-1)
    return [_Weights(matrix[d], np.array(flat_zp[d * per_direction], matrix.dtype),
                     scale.reshape(dirs, per_direction)[d].reshape([] if per_direction == 1 else [columns]))
            for d in range(dirs)]


def _check_attributes(node: onnx.NodeProto, dirs: int) -> None:
    if attr_value(node, "layout", 0) != 0:
        raise _Refused("layout=1 (batch-major) is not supported (onnxruntime refuses it too)")
    activations = attr_value(node, "activations", None)
    if activations is not None:
        names = tuple(a.decode().lower() if isinstance(a, bytes) else str(a).lower() for a in activations)
        if names != DEFAULT_ACTIVATIONS * dirs:
            raise _Refused(f"activations {list(names)}: only the default (Sigmoid, Tanh, Tanh) are supported")


def _initial_state(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, index: int, d: int, dirs: int, batch: int,
                   hidden: int):
    """Direction d's initial_h or initial_c ([batch, hidden]): a constant slice, a Gather of the input, or zeros."""
    name = input_at(node, index)
    if not name:
        return np.zeros([batch, hidden], F32)
    shape = g.shapes.get(name)
    if shape is not None and list(shape) != [dirs, batch, hidden]:
        raise _Refused(f"input {index} ('{name}') has shape {shape}, expected {[dirs, batch, hidden]}")
    value = g.constant(name)
    if value is not None:
        return value.reshape(dirs, batch, hidden)[d].astype(F32)
    return e.op("Gather", [name, np.array(d, np.int64)], F32, f"state{index}_dir{d}", axis=0)


def _check_sequence_lens(g: RewriteGraph, node: onnx.NodeProto, steps: int) -> None:
    name = input_at(node, 4)
    if not name:
        return
    lens = g.constant(name)
    if lens is None or np.any(lens != steps):
        raise _Refused(f"sequence_lens ('{name}') must be absent or a constant equal to the sequence length {steps}: "
                       "hcc computes every sequence over all its steps")


def _parse(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, x_shape: list[int]) -> _Lstm:
    """Everything the unrolled recurrence needs, checked as onnxruntime checks it."""
    if len(x_shape) != 3 or not all(x_shape):
        raise _Refused(f"input X has shape {x_shape}, expected a static [seq_length, batch, input_size]")
    steps, batch, inputs = x_shape
    hidden = int(attr_value(node, "hidden_size", 0) or 0)
    direction = attr_value(node, "direction", b"forward") or b"forward"
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if hidden <= 0 or direction not in ("forward", "reverse", "bidirectional"):
        raise _Refused(f"hidden_size {hidden} and direction '{direction}' are not valid")
    dirs = 2 if direction == "bidirectional" else 1
    _check_attributes(node, dirs)
    _check_sequence_lens(g, node, steps)
    w = _weights(g, node, (1, 8, 9), "W", dirs, inputs, 4 * hidden)
    r = _weights(g, node, (2, 10, 11), "R", dirs, hidden, 4 * hidden)
    bias, peep = _constant(g, node, 3, "B"), _constant(g, node, 7, "P")
    if bias is not None:
        bias = bias.astype(F32).reshape(dirs, 8 * hidden)
        bias = (bias[:, :4 * hidden] + bias[:, 4 * hidden:]).astype(F32)  # onnxruntime's fused Wb + Rb
    if peep is not None:
        peep = peep.astype(F32).reshape(dirs, 3 * hidden)
    clip = attr_value(node, "clip", None)
    directions = [
        _Direction(w[d], r[d], None if bias is None else bias[d], None if peep is None else peep[d],
                   _initial_state(e, g, node, 5, d, dirs, batch, hidden), _initial_state(e, g, node, 6, d, dirs, batch, hidden),
                   reverse=direction == "reverse" or d == 1)
        for d in range(dirs)]
    return _Lstm(steps, batch, hidden, None if clip is None else float(clip), bool(attr_value(node, "input_forget", 0)),
                 directions)


# ------------------------------------------------------------------------------------------------- emission


def _dynamic_quantize(e: NodeEmitter, value, hint: str) -> tuple[str, str, str]:
    """DynamicQuantizeLinear of `value`: (uint8 codes, scale, zero point), expanded later by frontend/quantized.py."""
    source = e.tensor(value, f"{hint}_const")
    outputs = [e.fresh(f"{hint}_q"), e.fresh(f"{hint}_scale"), e.fresh(f"{hint}_zp")]
    e.nodes.append(helper.make_node("DynamicQuantizeLinear", [source], outputs, name=e.fresh(f"{hint}_op")))
    for name, dtype in zip(outputs, (np.uint8, F32, np.uint8)):
        e.dtypes[name] = np.dtype(dtype)
    return outputs[0], outputs[1], outputs[2]


def _quantized_product(e: NodeEmitter, value, weights: _Weights, hint: str) -> str:
    """onnxruntime's quantized ComputeGemm without the accumulation: float(sum) * (a_scale * w_scale)."""
    codes, scale, zp = _dynamic_quantize(e, value, hint)
    sums = e.op("MatMulInteger", [codes, weights.matrix, zp, weights.zero_point], np.int32, f"{hint}_sum")
    return e.mul(e.cast(sums, F32), e.mul(scale, weights.scale, f"{hint}_scales"), f"{hint}_float")


def _fma(e: NodeEmitter, a: str, b, c: np.float32, hint: str) -> str:
    """float32 fma(a, b, c) of float64-held float32 values: the product is exact in float64, the sum rounds once to
    float64 and then to float32 (a double rounding, wrong only where the float64 sum lands exactly on a float32 tie)."""
    return e.cast(e.add(e.mul(a, b, f"{hint}_mul"), np.array(c, F64), f"{hint}_add"), F32)


def _polynomial(e: NodeEmitter, x2: str, coefficients: list[np.float32], hint: str) -> str:
    """((c0 x2 + c1) x2 + c2) ... as MLAS's FMA3 kernels evaluate it: one fused multiply-add per coefficient."""
    x2_64 = e.cast(x2, F64)
    value = _fma(e, x2_64, np.array(coefficients[0], F64), coefficients[1], hint)
    for c in coefficients[2:]:
        value = _fma(e, e.cast(value, F64), x2_64, c, hint)
    return value


def _clamped_square(e: NodeEmitter, x: str, bound: np.float32, hint: str) -> tuple[str, str]:
    v = e.op("Min", [e.op("Max", [x, np.array(-bound, F32)], F32, f"{hint}_lo"), np.array(bound, F32)], F32, f"{hint}_hi")
    return v, e.mul(v, v, f"{hint}_square")


def _mlas_logistic(e: NodeEmitter, x: str) -> str:
    """MlasComputeLogistic (x86-64 FMA3 kernel; frontend/mlas_emulation.mlas_logistic is its numpy form)."""
    v, x2 = _clamped_square(e, x, mlas_emulation.LOGISTIC_RANGE[1], "sigmoid")
    p = _polynomial(e, x2, mlas_emulation.LOGISTIC_ALPHA, "sigmoid_p")
    q = _polynomial(e, x2, mlas_emulation.LOGISTIC_BETA, "sigmoid_q")
    ratio = e.add(e.div(e.mul(v, p, "sigmoid_vp"), q, "sigmoid_ratio"), np.array(0.5, F32), "sigmoid_half")
    return e.op("Max", [ratio, np.array(0, F32)], F32, "sigmoid")


def _mlas_tanh(e: NodeEmitter, x: str) -> str:
    """MlasComputeTanh (x86-64 FMA3 kernel): clamp to [-9, 9], p = x * P(x^2), q = Q(x^2), p / q."""
    v, x2 = _clamped_square(e, x, TANH_RANGE, "tanh")
    p = e.mul(_polynomial(e, x2, TANH_ALPHA, "tanh_p"), v, "tanh_px")
    return e.div(p, _polynomial(e, x2, TANH_BETA, "tanh_q"), "tanh")


def mlas_tanh(x: np.ndarray) -> np.ndarray:
    """numpy form of `_mlas_tanh`, every fused multiply-add correctly rounded (for tests)."""
    v = np.minimum(TANH_RANGE, np.maximum(-TANH_RANGE, np.asarray(x, F32)))
    x2 = (v * v).astype(F32)
    p = mlas_emulation.fma32(x2, TANH_ALPHA[0], TANH_ALPHA[1])
    for c in TANH_ALPHA[2:]:
        p = mlas_emulation.fma32(p, x2, c)
    q = mlas_emulation.fma32(x2, TANH_BETA[0], TANH_BETA[1])
    for c in TANH_BETA[2:]:
        q = mlas_emulation.fma32(q, x2, c)
    return ((p * v).astype(F32) / q).astype(F32)


def _slice(e: NodeEmitter, value: str, start: int, end: int, hint: str) -> str:
    bounds = [np.array([v], np.int64) for v in (start, end, 1)]
    return e.op("Slice", [value] + bounds, F32, hint)


def _finish(e: NodeEmitter, lstm: _Lstm, pre, bias: np.ndarray | None, peephole: np.ndarray | None = None, cell=None):
    """deepcpu's order: [+ cell * P] then + (Wb + Rb) then the clip."""
    if peephole is not None:
        pre = e.add(pre, e.mul(cell, peephole, "peephole"), "with_peephole")
    if bias is not None:
        pre = e.add(pre, bias, "biased")
    if lstm.clip is not None:
        bound = np.array(lstm.clip, F32)
        pre = e.max_where(e.min_where(pre, bound, "clip_hi"), -bound, "clip_lo")
    return pre


def _gates_without_peepholes(e: NodeEmitter, lstm: _Lstm, d: _Direction, gates: str, c_prev) -> tuple:
    """i, o, f from one logistic over the buffer's first 3h (elementwise, so the same values), g from one tanh."""
    h = lstm.hidden
    pre = _finish(e, lstm, gates, d.bias)
    sig = _mlas_logistic(e, _slice(e, pre, 0, 3 * h, "ifo_pre"))
    i, o, f = (_slice(e, sig, k * h, (k + 1) * h, name) for k, name in enumerate("iof"))
    return i, f, _mlas_tanh(e, _slice(e, pre, 3 * h, 4 * h, "g_pre")), lambda cell: o


def _gates_with_peepholes(e: NodeEmitter, lstm: _Lstm, d: _Direction, gates: str, c_prev) -> tuple:
    """Gate by gate: i and f read c_{t-1} through their peepholes, o reads c_t (so it waits for the cell)."""
    h = lstm.hidden

    def gate(k: int, peep_k: int | None, cell):
        bias = None if d.bias is None else d.bias[k * h:(k + 1) * h]
        peephole = None if peep_k is None else d.peepholes[peep_k * h:(peep_k + 1) * h]
        return _finish(e, lstm, _slice(e, gates, k * h, (k + 1) * h, f"gate{k}"), bias, peephole, cell)

    i = _mlas_logistic(e, gate(0, 0, c_prev))
    f = _mlas_logistic(e, gate(2, 2, c_prev))
    g = _mlas_tanh(e, gate(3, None, c_prev))
    return i, f, g, lambda cell: _mlas_logistic(e, gate(1, 1, cell))


def _step(e: NodeEmitter, lstm: _Lstm, d: _Direction, x_part: str, h_prev, c_prev) -> tuple[str, str]:
    """One time step: the recurrent product added to the input's, then the gates (i, o, f, c in the buffer)."""
    gates = e.add(_quantized_product(e, h_prev, d.r, "h"), x_part, "gates")
    split = _gates_with_peepholes if d.peepholes is not None else _gates_without_peepholes
    i, f, g, output_gate = split(e, lstm, d, gates, c_prev)
    if lstm.input_forget:
        f = e.sub(np.array(1, F32), i, "f")
    cell = e.add(e.mul(c_prev, f, "keep"), e.mul(i, g, "write"), "c")
    return e.mul(_mlas_tanh(e, cell), output_gate(cell), "h"), cell


def _direction(e: NodeEmitter, lstm: _Lstm, d: _Direction, x: str) -> tuple[list[str], str, str]:
    """One direction's h at every time position (in time order) and its final h and c."""
    x_parts = _quantized_product(e, x, d.w, "x")  # [steps, batch, 4h]
    h, c = d.h0, d.c0
    by_time: list[str] = [""] * lstm.steps
    for s in range(lstm.steps):
        t = lstm.steps - 1 - s if d.reverse else s
        x_part = e.op("Gather", [x_parts, np.array(t, np.int64)], F32, f"x_step{t}", axis=0)
        h, c = _step(e, lstm, d, x_part, h, c)
        by_time[t] = h
    return by_time, h, c


def _concat(e: NodeEmitter, values: list, axis: int, hint: str, output: str) -> None:
    if len(values) == 1:
        e.result(values[0], output)
    else:
        e.op("Concat", values, F32, hint, output=output, axis=axis)


def _emit(e: NodeEmitter, node: onnx.NodeProto, lstm: _Lstm) -> None:
    results = [_direction(e, lstm, d, node.input[0]) for d in lstm.directions]
    b, h = lstm.batch, lstm.hidden
    outputs = list(node.output) + [""] * 3
    if outputs[0]:
        per_time = []
        for t in range(lstm.steps):
            row = [e.reshape(r[0][t], [1, 1, b, h], "y_step") for r in results]
            per_time.append(e.op("Concat", row, F32, "y_time", axis=1) if len(row) > 1 else row[0])
        _concat(e, per_time, 0, "y", outputs[0])
    for position, index in ((1, 1), (2, 2)):
        if outputs[position]:
            _concat(e, [e.reshape(r[index], [1, b, h], "state") for r in results], 0, "state", outputs[position])


def _rewrite(g: RewriteGraph, node: onnx.NodeProto) -> NodeEmitter:
    e = NodeEmitter(node, g)
    lstm = _parse(e, g, node, list(g.shapes[node.input[0]]))
    _emit(e, node, lstm)
    return e


def _is_target(node: onnx.NodeProto) -> bool:
    return node.op_type == OP_TYPE and node.domain == MS_DOMAIN


def _one_round(model: onnx.ModelProto, path: str) -> tuple[int, list[onnx.NodeProto]]:
    """Rewrite every DynamicQuantizeLSTM whose X has a known shape; returns (how many, the nodes still waiting)."""
    g = RewriteGraph.of(model)
    nodes, inits, waiting, count = [], [], [], 0
    for node in model.graph.node:
        if not _is_target(node) or g.shapes.get(node.input[0]) is None:
            if _is_target(node):
                waiting.append(node)
            nodes.append(node)
            continue
        try:
            e = _rewrite(g, node)
        except _Refused as why:
            raise HccError(f"{path}: node '{node.name}' ({MS_DOMAIN}.{OP_TYPE}): {why}") from None
        except (ValueError, IndexError) as exc:  # a malformed node (shapes that do not fit together)
            raise HccError(f"{path}: node '{node.name}' ({MS_DOMAIN}.{OP_TYPE}): cannot be compiled: {exc}") from None
        nodes.extend(e.nodes)
        inits.extend(e.inits)
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(inits)
    return count, waiting


def rewrite_dynamic_quantize_lstms(model: onnx.ModelProto, path: str) -> int:
    """Replace, in place, every com.microsoft.DynamicQuantizeLSTM by its unrolled steps; returns how many. A node whose
    X follows another one (stacked LSTMs) gets its shape from shape inference after that one is rewritten."""
    total = 0
    while True:
        count, waiting = _one_round(model, path)
        total += count
        if not waiting:
            return total
        if not count:
            node = waiting[0]
            raise HccError(f"{path}: node '{node.name}' ({MS_DOMAIN}.{OP_TYPE}): the shape of its input X "
                           f"('{node.input[0]}') is not known at compile time: hcc unrolls the recurrence over a static "
                           "sequence length", hint="give the model's inputs concrete shapes with --input-shape")
        inferred = onnx.shape_inference.infer_shapes(model)
        del model.graph.value_info[:]
        model.graph.value_info.extend(inferred.graph.value_info)


def _subgraph_inputs(graph: onnx.GraphProto) -> set[str]:
    """Names read by nodes of the graph's subgraphs (If branches, loop bodies), which may be outer initializers."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names.update(n for inner in sub.node for n in inner.input)
                names |= _subgraph_inputs(sub)
    return names


def share_identical_initializers(model: onnx.ModelProto) -> int:
    """Keep one initializer of each value: the unrolled steps repeat the same constants (each step's MatMulInteger
    expands to its own float32 copy of R, each step's gates their own bias and coefficients), and every copy would be
    a weight of the bundle (an argument of the compiled function). Returns how many copies were dropped."""
    graph = model.graph
    pinned = {v.name for v in graph.input} | {o.name for o in graph.output} | _subgraph_inputs(graph)
    first: dict[tuple, str] = {}
    renamed: dict[str, str] = {}
    kept = []
    for init in graph.initializer:
        key = (init.data_type, tuple(init.dims), numpy_helper.to_array(init).tobytes())
        if init.name not in pinned and key in first:
            renamed[init.name] = first[key]
            continue
        first.setdefault(key, init.name)
        kept.append(init)
    if renamed:
        del graph.initializer[:]
        graph.initializer.extend(kept)
        for node in graph.node:
            node.input[:] = [renamed.get(name, name) for name in node.input]
    return len(renamed)
