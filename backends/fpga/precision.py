"""Resolve the fixed-point type of every tensor, constant and accumulator of a subgraph.

Defaults (hls4ml conventions, see config.py): inputs, weights, biases and results take the model precision
(`ap_fixed<16,6>` unless told otherwise); accumulators are `auto`; ops that cannot create new values (max pooling,
padding, concatenation, transposes) keep their input type unless a result type is configured.

`auto` means the narrowest type that cannot overflow, capped at `max_width` bits:
  - weights/biases: integer bits from the largest magnitude, total width of `auto_base` (16 by default);
  - inputs/results: fractional bits of `auto_base` (10 by default), integer bits from a value range:
      auto_mode "bound"    (default) a worst case propagated from the calibration input range through the
                           weights (sum |w| * max |x| + |b| per output, interval arithmetic elsewhere): no input
                           inside the calibrated range can overflow;
      auto_mode "observed" the range seen on the calibration inputs, plus one guard bit;
  - accumulators: exact products (fractional bits = sum of the operands'), integer bits from the bound.
When a cap cuts a width, fractional bits go first; the report says so.
"""
from __future__ import annotations

import math

import numpy as np

from hcc.backends.fpga import fixed_point as fx
from hcc.backends.fpga.config import FpgaConfig
from hcc.backends.fpga.fixed_point import FixedType
from hcc.backends.fpga.interp import Space
from hcc.backends.fpga.ir import Expr, LoopOp, Program
from hcc.backends.fpga.resources import MAX_MULTIPLIERS
from hcc.errors import HccError

LUT_RANGE = {"sigmoid": 8.0, "tanh": 4.0}
TABLE_TYPES = {"sigmoid": FixedType(18, 0, False), "tanh": FixedType(18, 1, True)}

# Softmax internals (see emit.py / fixed_point.softmax): |x - max| is read with EXP_FRAC fractional bits up to 2**EXP_INT
EXP_FRAC, EXP_INT, EXP_SPLIT = 12, 4, 8
EXP_TYPE = FixedType(18, 1, False)


# ------------------------------------------------------------------------------------------------------ MAC anatomy
def mac_parts(op: LoopOp):
    """(prologue expr, weight operand index) of a MAC body add(acc, mul(P, W))."""
    b = op.body
    t = b.args[1] if b.args[0].op == "acc" else b.args[0]
    p, w = t.args
    if w.op != "in" or op.ins[w.value].kind != "const":
        p, w = w, p
    return p, w.value


def mac_dims(op: LoopOp) -> tuple[list[int], list[int]]:
    """(outer parallel dims, inner parallel dims): inner ones index the weights (output channels / features)."""
    _, wi = mac_parts(op)
    w_dims = set().union(*(m.dims for m in op.ins[wi].map)) if op.ins[wi].map else set()
    inner = [d for d in op.parallel if d in w_dims]
    outer = [d for d in op.parallel if d not in w_dims]
    return outer, inner


def mac_block(op: LoopOp) -> int:
    """Multiplications per pipeline iteration (hls4ml: n_in * n_out for Dense, Cin/g*k*k*Cout for Conv)."""
    _, inner = mac_dims(op)
    return int(math.prod(op.dims[d] for d in inner + op.reduction))


def reduction_size(op: LoopOp) -> int:
    return int(math.prod(op.dims[d] for d in op.reduction)) if op.reduction else 1


def primary_first(op: LoopOp) -> list[str]:
    """The op's nodes with the node that owns it (its own location: the Conv of Conv+BN+ReLU) first."""
    primary = op.attrs.get("primary")
    return [primary] + [n for n in op.nodes if n != primary] if primary in op.nodes else list(op.nodes)


# ------------------------------------------------------------------------------------------------------ types
def exact_const_type(v: float) -> FixedType:
    """Smallest type holding the short dyadic literal v exactly."""
    frac = 0
    while v * 2.0**frac != math.floor(v * 2.0**frac):
        frac += 1
    return fx.type_for_range(min(v, 0.0), max(v, 0.0), frac) if v != 0 else FixedType(1, 1, False)


def expr_type(e: Expr, op: LoopOp, leaf_types: dict[str, FixedType]) -> FixedType:
    """Exact type of an expression (what the emitted C++ declares for each temporary)."""
    if e.op == "in":
        o = op.ins[e.value]
        return o.type if o.kind == "const" else o.buf.type
    if e.op == "acc":
        return leaf_types["acc"]
    if e.op == "const":
        return exact_const_type(e.value)
    ts = [expr_type(a, op, leaf_types) for a in e.args]
    if e.op == "add":
        return fx.add_type(ts[0], ts[1])
    if e.op == "sub":
        return fx.sub_type(ts[0], ts[1])
    if e.op == "mul":
        return fx.mul_type(ts[0], ts[1])
    if e.op == "neg":
        return fx.neg_type(ts[0])
    if e.op in ("max", "min"):
        return fx.join_type(ts[0], ts[1])
    if e.op in TABLE_TYPES:
        return leaf_types.get(f"table:{e.op}", TABLE_TYPES[e.op])
    raise HccError(f"internal: no fixed-point type rule for {e.op}")


def _interval(e: Expr, op: LoopOp, leaf: dict) -> tuple[float, float]:
    if e.op == "in":
        o = op.ins[e.value]
        if o.kind == "const":
            v = fx.to_float(fx.from_float(o.array, o.type), o.type.frac) if o.type is not None else o.array
            return float(np.min(v)), float(np.max(v))
        return o.buf.bound
    if e.op == "acc":
        return leaf["acc"]
    if e.op == "const":
        return e.value, e.value
    iv = [_interval(a, op, leaf) for a in e.args]
    if e.op == "add":
        return iv[0][0] + iv[1][0], iv[0][1] + iv[1][1]
    if e.op == "sub":
        return iv[0][0] - iv[1][1], iv[0][1] - iv[1][0]
    if e.op == "mul":
        c = [a * b for a in iv[0] for b in iv[1]]
        return min(c), max(c)
    if e.op == "neg":
        return -iv[0][1], -iv[0][0]
    if e.op == "max":
        return max(iv[0][0], iv[1][0]), max(iv[0][1], iv[1][1])
    if e.op == "min":
        return min(iv[0][0], iv[1][0]), min(iv[0][1], iv[1][1])
    if e.op == "sigmoid":
        return 0.0, 1.0
    if e.op == "tanh":
        return -1.0, 1.0
    raise HccError(f"internal: no interval rule for {e.op}")


class Resolver:
    def __init__(self, prog: Program, cfg: FpgaConfig, op_types: dict[str, str], observed: dict | None = None):
        self.prog = prog
        self.cfg = cfg
        self.op_types = op_types
        self.observed = observed or {}  # buffer id -> (min, max) on the calibration run (float)
        self.notes: list[str] = []
        self.sources: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------------------------
    def parse(self, value: str, where: str) -> FixedType | None:
        if value == "auto":
            return None
        try:
            return FixedType.parse(value)
        except ValueError as exc:
            raise HccError(f"{where}: {exc}") from None

    def capped(self, integer: int, frac: int, signed: bool, what: str) -> FixedType:
        cap = self.cfg.max_width
        if integer + frac > cap:
            self.notes.append(f"{what}: needs {integer + frac} bits ({integer} integer); capped at {cap} by dropping fractional bits")
            frac = cap - integer
        return fx.exact_type(integer, frac, signed)

    def auto_for_range(self, lo: float, hi: float, frac: int, what: str) -> FixedType:
        integer, signed = fx.bits_for_range(lo, hi, frac)
        return self.capped(integer, frac, signed, what)

    def auto_const(self, arr: np.ndarray, width: int, what: str) -> FixedType:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        m = max(abs(lo), abs(hi))
        if m == 0:
            return FixedType(width, 1, True)
        signed = lo < 0
        integer = math.floor(math.log2(m)) + 1 + (1 if signed else 0)
        t = fx.exact_type(integer, width - integer, signed)
        codes = fx.from_float(np.array([lo, hi]), t.with_modes("AP_RND", "AP_WRAP"))
        saturated = fx.from_float(np.array([hi]), t.with_modes("AP_RND", "AP_SAT"))[0]
        if codes.max() > t.max_code or codes.min() < t.min_code or saturated != round(hi * 2.0**t.frac):
            t = fx.exact_type(integer + 1, width - integer - 1, signed)
        return t

    def role_type(self, key: str, nodes: list[str], what: str) -> tuple[FixedType | None, str]:
        value, src = self.cfg.lookup(key, nodes, self.op_types, last_wins=(key == "result"))
        t = self.parse(value, f"FPGA precision for {what} ({src})")
        self.sources[what] = f"{value} ({src})"
        return t, src

    # -- main ----------------------------------------------------------------------------------------------------
    def run(self) -> None:
        base = self.cfg.auto_base
        for buf in self.prog.inputs:
            explicit = self.cfg.tensor_type(buf.tensor)
            value = explicit[0] if explicit else self.cfg.lookup("input", [], self.op_types)[0]
            t = self.parse(value, f"FPGA precision of input {buf.tensor}")
            lo, hi = self.observed.get(buf.id, (None, None))
            if t is None:
                if lo is None:
                    raise HccError(f"FPGA precision auto: no calibration data for input {buf.tensor}")
                t = self.auto_for_range(lo, hi, base.frac, f"input {buf.tensor}")
            buf.type = t
            buf.bound = (lo, hi) if lo is not None and self.cfg.auto_mode == "observed" else (t.min_value, t.max_value) if lo is None else (lo, hi)
            self.sources[f"input {buf.tensor}"] = value
        for op in self.prog.ops:
            self.resolve_op(op)

    def result_type(self, op: LoopOp, lo: float, hi: float, inherit: FixedType | None = None) -> FixedType:
        t, src = self.role_type("result", op.nodes, f"{op.id} result")
        if t is None:  # auto
            if self.cfg.auto_mode == "observed" and op.out.buf.id in self.observed:
                olo, ohi = self.observed[op.out.buf.id]
                lo, hi = 2 * min(olo, 0.0), 2 * max(ohi, 0.0)
            t = self.auto_for_range(lo, hi, self.cfg.auto_base.frac, f"{op.id} result")
        elif inherit is not None and src == "default":
            t = inherit
        return t

    def const_types(self, op: LoopOp, skip: set[int] = frozenset()) -> None:
        """Types of an op's constants by role (weight: multiplied, bias: added or compared, recip: 1/n)."""
        roles = _const_roles(op)
        for i, o in enumerate(op.ins):
            if o.kind != "const" or i in skip:
                continue
            role = o.role or roles.get(i, "bias")
            o.role = role
            what = f"{op.id} {role} {i}"
            if role == "recip":
                o.type = self.auto_const(o.array, max(18, self.cfg.auto_base.width + 2), what)
                continue
            t, _ = self.role_type(role, primary_first(op), what)
            o.type = t if t is not None else self.auto_const(o.array, self.cfg.auto_base.width, what)
        if op.init is not None and op.init.kind == "const":
            op.init.role = "bias"
            t, _ = self.role_type("bias", primary_first(op), f"{op.id} bias")
            op.init.type = t if t is not None else self.auto_const(op.init.array, self.cfg.auto_base.width, f"{op.id} bias")

    def resolve_op(self, op: LoopOp) -> None:
        kind = op.kind
        rf, _ = self.cfg.lookup("reuse_factor", primary_first(op), self.op_types)
        st, _ = self.cfg.lookup("strategy", primary_first(op), self.op_types)
        op.reuse_factor = int(rf or 1)
        op.strategy = st or "latency"
        table, _ = self.cfg.lookup("table", op.nodes, self.op_types)
        leaf: dict = {}
        if table and table != "auto":
            for f in TABLE_TYPES:
                leaf[f"table:{f}"] = self.parse(table, f"{op.id} table")
        op.types = dict(leaf)
        if kind == "pad":
            src = op.ins[0].buf
            t = self.result_type(op, *src.bound, inherit=src.type)
            value = op.attrs["value"]
            lo, hi = src.bound
            if not fx.unbounded(value):
                lo, hi = min(lo, value), max(hi, value)
            self.finish(op, t, (lo, hi))
            return
        if kind == "concat":
            ts = [o.buf.type for o in op.ins]
            j = ts[0]
            for t in ts[1:]:
                j = fx.join_type(j, t)
            lo = min(o.buf.bound[0] for o in op.ins)
            hi = max(o.buf.bound[1] for o in op.ins)
            self.finish(op, self.result_type(op, lo, hi, inherit=j), (lo, hi))
            return
        if kind == "softmax":
            t = self.result_type(op, 0.0, 1.0)
            self.finish(op, t, (0.0, 1.0))
            return
        self.const_types(op)
        if kind == "eltwise":
            lo, hi = _interval(op.body, op, leaf)
            inherit = None
            if op.body.op == "in" and op.ins[op.body.value].kind == "act":  # a copy (transpose)
                inherit = op.ins[op.body.value].buf.type
            self.finish(op, self.result_type(op, lo, hi, inherit=inherit), (lo, hi))
            return
        if kind == "reduce":
            x = op.body.args[1] if op.body.args[0].op == "acc" else op.body.args[0]
            xt = expr_type(x, op, leaf)
            xlo, xhi = _interval(x, op, leaf)
            n = reduction_size(op)
            init_iv = None
            if op.init is not None:
                iq = fx.to_float(fx.from_float(op.init.array, op.init.type), op.init.type.frac)
                init_iv = (float(np.min(iq)), float(np.max(iq)))
            if op.attrs["reduce"] == "max":
                acc_t = xt if op.init is None else fx.join_type(xt, op.init.type)
                acc_iv = (xlo, xhi) if init_iv is None else (max(xlo, init_iv[0]), max(xhi, init_iv[1]))
                op.types["acc"] = acc_t
            else:
                ilo, ihi = init_iv or (0.0, 0.0)
                acc_iv = (ilo + n * xlo, ihi + n * xhi)
                op.types["acc"] = self.accum_type(op, xt, acc_iv)
            leaf["acc"] = acc_iv
            self.epilogue_and_finish(op, leaf, acc_iv, inherit=op.ins[0].buf.type if op.attrs["reduce"] == "max" and op.epilogue is None else None)
            return
        if kind == "mac":
            p, wi = mac_parts(op)
            pt = expr_type(p, op, leaf)
            plo, phi = _interval(p, op, leaf)
            w = op.ins[wi]
            wq = fx.to_float(fx.from_float(w.array, w.type), w.type.frac)
            init_q = None
            if op.init is not None:
                init_q = fx.to_float(fx.from_float(op.init.array, op.init.type), op.init.type.frac)
            s_pos = _reduce_weights(op, wi, np.maximum(wq, 0.0))
            s_neg = _reduce_weights(op, wi, np.minimum(wq, 0.0))
            init_full = _init_at_points(op, init_q)
            hi = init_full + phi * s_pos + plo * s_neg
            lo = init_full + plo * s_pos + phi * s_neg
            acc_iv = (float(np.min(lo)), float(np.max(hi)))
            op.types["product"] = fx.mul_type(pt, w.type)
            op.types["acc"] = self.accum_type(op, op.types["product"], acc_iv)
            leaf["acc"] = acc_iv
            self.epilogue_and_finish(op, leaf, acc_iv)
            block = mac_block(op)
            if math.ceil(block / op.reuse_factor) > MAX_MULTIPLIERS:
                new_rf = math.ceil(block / MAX_MULTIPLIERS)
                self.notes.append(f"{op.id} ({op.label}): reuse factor {op.reuse_factor} would need {math.ceil(block / op.reuse_factor)} "
                                  f"multipliers; raised to {new_rf}")
                op.reuse_factor = new_rf
            op.reuse_factor = min(op.reuse_factor, block)
            return
        raise HccError(f"internal: unknown op kind {kind}")

    def accum_type(self, op: LoopOp, xt: FixedType, acc_iv: tuple[float, float]) -> FixedType:
        t, _ = self.role_type("accum", primary_first(op), f"{op.id} accum")
        if t is not None:
            return t
        # accumulators use the bound in both auto modes: they are internal, and an overflow there is silent
        return self.auto_for_range(min(acc_iv[0], 0.0), max(acc_iv[1], 0.0), xt.frac, f"{op.id} ({op.label}) accumulator")

    def epilogue_and_finish(self, op: LoopOp, leaf: dict, acc_iv, inherit: FixedType | None = None) -> None:
        if op.epilogue is not None:
            lo, hi = _interval(op.epilogue, op, leaf)
        else:
            lo, hi = acc_iv
        self.finish(op, self.result_type(op, lo, hi, inherit=inherit), (lo, hi))

    def finish(self, op: LoopOp, t: FixedType, bound: tuple[float, float]) -> None:
        op.types["result"] = t
        op.out.buf.type = t
        # what the stored values can be: the bound clipped to what the type holds
        if bound[0] <= t.max_value and bound[1] >= t.min_value:
            op.out.buf.bound = (max(bound[0], t.min_value), min(bound[1], t.max_value))
        else:
            op.out.buf.bound = (t.min_value, t.max_value)
        if bound[0] < t.min_value or bound[1] > t.max_value:
            self.notes.append(f"{op.id} ({op.label}): values in [{bound[0]:.4g}, {bound[1]:.4g}] may overflow {t.cpp()} ({t.o})")


def _const_roles(op: LoopOp) -> dict[int, str]:
    roles: dict[int, str] = {}
    exprs = [op.body] + ([op.epilogue] if op.epilogue is not None else [])
    for e in exprs:
        for x in e.walk():
            for a in x.args:
                if a.op == "in" and op.ins[a.value].kind == "const":
                    roles.setdefault(a.value, "weight" if x.op == "mul" else "bias")
    return roles


def _reduce_weights(op: LoopOp, wi: int, values: np.ndarray) -> np.ndarray:
    """Sum over the reduction dims of the weight values each output point uses (in parallel-grid order)."""
    space = Space(op)
    w = op.ins[wi]
    flat = np.asarray(values).ravel()
    base = space.base(w)
    total = np.zeros(space.points)
    for red in space.steps():
        total += flat[base + space.offset(w, red)]
    return total


def _init_at_points(op: LoopOp, init_q: np.ndarray | None) -> np.ndarray:
    space = Space(op)
    if init_q is None:
        return np.zeros(space.points)
    return np.asarray(init_q).ravel()[space.base(op.init)]


def resolve(prog: Program, cfg: FpgaConfig, op_types: dict[str, str], observed: dict | None = None) -> Resolver:
    r = Resolver(prog, cfg, op_types, observed)
    r.run()
    return r


