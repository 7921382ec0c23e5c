"""Loop-nest iteration in numpy: the shared machinery of constant folding, the float reference and the fixed-point
reference. An op's parallel dims are vectorized (one numpy element per output point); its reduction dims are walked
one index tuple at a time, in the same lexicographic order as the emitted C++ loops.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from hcc.backends.fpga.ir import Expr, LoopOp, Operand, Unsupported

MAX_POINTS = 1 << 26  # parallel points evaluated at once


class Space:
    """Index arithmetic of one op: flat indices of each operand over the parallel grid, offsets per reduction step."""

    def __init__(self, op: LoopOp):
        self.op = op
        self.par = op.parallel
        self.red = op.reduction
        sizes = [op.dims[d] for d in self.par]
        self.points = int(math.prod(sizes)) if sizes else 1
        if self.points > MAX_POINTS:
            raise Unsupported(f"{self.points} output points is too many to evaluate")
        grid = np.indices(sizes, dtype=np.int64).reshape(len(sizes), -1) if sizes else np.zeros((0, 1), np.int64)
        self.grid = {d: grid[k] for k, d in enumerate(self.par)}

    def base(self, operand: Operand) -> np.ndarray:
        lin = operand.flat()
        idx = np.full(self.points, lin.const, dtype=np.int64)
        for d, c in lin.coeffs:
            if d in self.grid:
                idx = idx + c * self.grid[d]
        return idx

    def offset(self, operand: Operand, red_index: dict[int, int]) -> int:
        return sum(c * red_index[d] for d, c in operand.flat().coeffs if d in red_index)

    def steps(self):
        """Reduction index tuples in loop order (one empty step when there is no reduction)."""
        ranges = [range(self.op.dims[d]) for d in self.red]
        for combo in itertools.product(*ranges):
            yield dict(zip(self.red, combo))

    def out_index(self) -> np.ndarray:
        return self.base(self.op.out)


def run_float(op: LoopOp, act_values: list[np.ndarray | None], init_value: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """Evaluate `op` in float64. act_values[i]: flat data of act operand i (ignored for constants).
    Returns the output array (shape of op.out.shape)."""
    space = Space(op)
    flats = [o.array.ravel() if o.kind == "const" else np.asarray(act_values[i]).ravel() for i, o in enumerate(op.ins)]
    bases = [space.base(o) for o in op.ins]
    result = np.zeros(int(np.prod(op.out.shape)), dtype=np.float64) if out is None else out.ravel().astype(np.float64)
    oidx = space.out_index()
    acc = None
    if op.init is not None:
        init_flat = op.init.array.ravel() if op.init.kind == "const" else np.asarray(init_value).ravel()
        acc = init_flat[space.base(op.init)].astype(np.float64)
    elif op.body.uses("acc"):
        acc = np.full(space.points, -np.inf)
    for red in space.steps():
        def leaf(e: Expr):
            if e.op == "in":
                i = e.value
                return flats[i][bases[i] + space.offset(op.ins[i], red)]
            if e.op == "acc":
                return acc
            if e.op == "dim":
                return space.grid[e.value] if e.value in space.grid else np.int64(red[e.value])
            raise KeyError(e.op)

        acc = eval_float(op.body, leaf)
    value = acc
    if op.epilogue is not None:
        value = eval_float(op.epilogue, lambda e: acc if e.op == "acc" else _epilogue_leaf(e, op, flats, bases, space))
    result[oidx] = np.broadcast_to(value, (space.points,))
    return result.reshape(op.out.shape)


def _epilogue_leaf(e: Expr, op, flats, bases, space):
    if e.op == "in":
        return flats[e.value][bases[e.value]]
    if e.op == "dim":
        return space.grid[e.value]
    raise KeyError(e.op)


def eval_float(e: Expr, leaf) -> np.ndarray:
    """Float64 value of an expression; `leaf` supplies in/acc/dim."""
    op = e.op
    if op in ("in", "acc", "dim"):
        return leaf(e)
    if op == "const":
        return np.float64(e.value)
    a = [eval_float(x, leaf) for x in e.args]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if op == "add":
            return a[0] + a[1]
        if op == "sub":
            return a[0] - a[1]
        if op == "mul":
            return a[0] * a[1]
        if op == "div":
            return a[0] / a[1]
        if op == "neg":
            return -a[0]
        if op == "max":
            return np.maximum(a[0], a[1])
        if op == "min":
            return np.minimum(a[0], a[1])
        if op == "exp":
            return np.exp(a[0])
        if op == "tanh":
            return np.tanh(a[0])
        if op == "sigmoid":
            return 1.0 / (1.0 + np.exp(-a[0]))
        if op == "rsqrt":
            return 1.0 / np.sqrt(a[0])
        if op == "sqrt":
            return np.sqrt(a[0])
        if op == "abs":
            return np.abs(a[0])
        if op == "itof":
            return np.asarray(a[0], dtype=np.float64)
        if op == "iadd":
            return a[0] + a[1]
        if op == "isub":
            return a[0] - a[1]
        if op == "imul":
            return a[0] * a[1]
        if op == "imin":
            return np.minimum(a[0], a[1])
        if op == "imax":
            return np.maximum(a[0], a[1])
        if op == "idiv":
            return np.floor_divide(a[0], a[1])
        if op == "cmp":
            compare = {"eq": np.equal, "ne": np.not_equal, "gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}
            return compare[e.value](a[0], a[1])
        if op == "select":
            return np.where(a[0], a[1], a[2])
    raise Unsupported(f"operation {op}")
