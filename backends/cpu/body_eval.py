"""Recognize what an elementwise linalg body computes by running it on sample values.

A GELU reaches the CPU backend in many spellings (`x * 0.5 * (1 + erf(x / sqrt 2))` in any order, Gelu of opset 20,
a bias add first, and after math_approx.py its erf as a polynomial), so the micro-kernels' epilogue fusion asks what
the body computes instead of matching its ops: the body is interpreted with numpy float32 arithmetic on a grid of
inputs and compared with the exact function. Ops the interpreter does not know make the answer "no", never a guess.
"""
from __future__ import annotations

import math

import numpy as np

# Sample inputs: both signs, the erf branches (|x / sqrt 2| below and above 1), HardSwish's kinks at -3 and 3, the tails.
SAMPLES = np.array([-7.5, -4.0, -3.1, -2.6, -1.5, -1.2, -0.9, -0.4, -0.05, 0.0, 0.03, 0.3, 0.8, 1.3, 1.6, 2.2, 2.9, 3.7, 6.0],
                   np.float32)
OFFSETS = np.array([-1.75, 0.0, 0.6], np.float32)  # a second input (a bias) added first
MATCH_RTOL, MATCH_ATOL = 2e-5, 2e-6  # a body matches a function within these (math_approx's erf: 2.5e-7 relative)

_FLOAT_BINARY = {"arith.addf": np.add, "arith.subf": np.subtract, "arith.mulf": np.multiply, "arith.divf": np.divide,
                 "arith.maximumf": np.maximum, "arith.minimumf": np.minimum, "arith.maxnumf": np.fmax, "arith.minnumf": np.fmin,
                 "math.copysign": np.copysign}
_INT_BINARY = {"arith.addi": np.add, "arith.subi": np.subtract, "arith.muli": np.multiply, "arith.minsi": np.minimum,
               "arith.maxsi": np.maximum, "arith.shli": np.left_shift}
_UNARY = {"arith.negf": np.negative, "math.absf": np.abs, "math.floor": np.floor, "math.exp": np.exp, "math.tanh": np.tanh,
          "math.erf": np.vectorize(math.erf, otypes=[np.float64])}
_COMPARE = {"oeq": np.equal, "one": np.not_equal, "ogt": np.greater, "oge": np.greater_equal, "olt": np.less, "ole": np.less_equal,
            "ueq": np.equal, "une": np.not_equal, "ugt": np.greater, "uge": np.greater_equal, "ult": np.less, "ule": np.less_equal}
_INT_COMPARE = [np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
                np.less, np.less_equal, np.greater, np.greater_equal]
# arith.cmpf's predicate attribute values, in order (ukernels.py reads them too)
CMPF_PREDICATES = ("false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une", "uno", "true")


def _constant(op) -> np.ndarray | None:
    from mlir import ir

    attr = op.attributes["value"]
    for kind, make in ((ir.FloatAttr, np.float32), (ir.IntegerAttr, np.int32)):
        try:
            return make(kind(attr).value)
        except (ValueError, TypeError, OverflowError):  # not this kind of attribute (a dense splat: unknown)
            continue
    return None


def _captured(value) -> np.ndarray | None:
    """A value the body uses from outside it: a constant (the function's splat constants), else unknown."""
    from mlir import ir

    owner = value.owner
    if isinstance(owner, ir.Block) or owner.name != "arith.constant":
        return None
    return _constant(owner)


def _step(op, values: dict) -> np.ndarray | None:
    """The result of one body op on arrays, or None for an op (or type) the interpreter does not take."""
    from mlir import ir

    name = op.name
    if name == "arith.constant":
        return _constant(op)
    args = [values[v] if v in values else _captured(v) for v in op.operands]
    if any(a is None for a in args):
        return None
    with np.errstate(all="ignore"):
        if name in _FLOAT_BINARY:
            return _FLOAT_BINARY[name](*args).astype(np.float32)
        if name in _INT_BINARY:
            return _INT_BINARY[name](*args).astype(np.int32)
        if name in _UNARY:
            return _UNARY[name](args[0]).astype(np.float32)
        if name == "arith.cmpf":
            predicate = CMPF_PREDICATES[ir.IntegerAttr(op.attributes["predicate"]).value]
            return _COMPARE[predicate](*args) if predicate in _COMPARE else None
        if name == "arith.cmpi":
            predicate = ir.IntegerAttr(op.attributes["predicate"]).value  # eq ne slt sle sgt sge ult ule ugt uge
            a, b = (np.asarray(x, np.int32) for x in args)
            if predicate >= 6:
                a, b = a.view(np.uint32), b.view(np.uint32)
            return _INT_COMPARE[predicate](a, b)
        if name == "arith.select":
            return np.where(*args)
        if name == "arith.fptosi":
            return np.trunc(args[0]).astype(np.int32)
        if name == "arith.sitofp":
            return args[0].astype(np.float32)
        if name == "arith.bitcast":
            return np.asarray(args[0]).view(np.float32 if np.asarray(args[0]).dtype == np.int32 else np.int32)
    return None


def evaluate(block, inputs: dict[int, np.ndarray]) -> np.ndarray | None:
    """The value a linalg body yields when block argument i holds inputs[i] (float32 arrays of one shape); None
    when the body reads another argument or holds an op the interpreter does not know."""
    args = list(block.arguments)
    values = {args[i]: np.asarray(v, np.float32) for i, v in inputs.items()}
    operations = list(block.operations)
    for op in operations[:-1]:
        if len(op.results) != 1:
            return None
        result = _step(op, values)
        if result is None:
            return None
        values[op.results[0]] = result
    yielded = list(operations[-1].operands)
    if len(yielded) != 1 or yielded[0] not in values:
        return None
    return np.broadcast_to(values[yielded[0]], np.broadcast(*inputs.values()).shape)


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """x * (1 + erf(x / sqrt 2)) / 2 in float64."""
    x = np.asarray(x, np.float64)
    return x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))) / 2.0


def hardswish_exact(x: np.ndarray) -> np.ndarray:
    """x * max(0, min(1, x / 6 + 1/2)) in float64 (ONNX HardSwish; torch's x * relu6(x + 3) / 6)."""
    x = np.asarray(x, np.float64)
    return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def silu_exact(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) in float64 (SiLU, Swish: torch's x * sigmoid(x) as Sigmoid and Mul)."""
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-x))


def computes_gelu(block, y_index: int, other: int | None) -> bool:
    """Whether the body yields GELU(y) (other None) or GELU(y + other) for every sample, y the block argument
    `y_index` (a kernel's result) and `other` another input (a bias or residual)."""
    return computes(block, y_index, other, gelu_exact)


def computes_hardswish(block, y_index: int, other: int | None) -> bool:
    """Whether the body yields HardSwish(y [+ other]) for every sample (the kink at -3 and 3 included)."""
    return computes(block, y_index, other, hardswish_exact)


def computes_silu(block, y_index: int, other: int | None) -> bool:
    """Whether the body yields SiLU(y [+ other]) for every sample."""
    return computes(block, y_index, other, silu_exact)


def computes(block, y_index: int, other: int | None, exact) -> bool:
    """Whether the body yields exact(y) (other None) or exact(y + other) for every sample, to MATCH_RTOL / MATCH_ATOL."""
    if other is None:
        x, inputs = SAMPLES, {y_index: SAMPLES}
    else:
        y, r = np.meshgrid(SAMPLES, OFFSETS, indexing="ij")
        x, inputs = (y + r).astype(np.float32), {y_index: y, other: r}
    try:
        got = evaluate(block, inputs)
    except Exception:  # noqa: BLE001 - an op form the interpreter misreads: not recognized, never a failed compile
        return False
    if got is None or got.dtype != np.float32:
        return False
    want = exact(x)
    return bool(np.all(np.abs(got.astype(np.float64) - want) <= MATCH_ATOL + MATCH_RTOL * np.abs(want)))
