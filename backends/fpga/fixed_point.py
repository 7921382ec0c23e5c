"""Fixed-point arithmetic in numpy integers, bit-for-bit what Xilinx's ap_fixed headers compute.

A value of type `ap_fixed<W,I,Q,O>` is an integer code c with F = W - I fractional bits: value = c * 2**-F.
Signed types hold codes in [-2**(W-1), 2**(W-1) - 1], unsigned (`ap_ufixed`) in [0, 2**W - 1]. I may be negative
or larger than W (then F is larger than W, or negative).

Assigning a value with more fractional bits to a type quantizes (Q) and then handles overflow (O). hcc uses:
  AP_TRN   floor (drop the low bits of the two's-complement code); the ap_fixed default
  AP_RND   round half towards plus infinity: floor(x + 1/2 LSB)
  AP_WRAP  keep the low W bits (two's complement wrap-around); the default
  AP_SAT   clamp to the type's range
These were checked against the headers (tests/backends/fpga/test_fixed_point.py and the csim comparisons).

Codes are numpy int64 arrays. Every intermediate of the emitted C++ is declared with a type wide enough to be exact
(see `add_type`, `mul_type`), so Python reproduces it with exact integer arithmetic; where an exact intermediate
would not fit in 62 bits the arrays switch to Python integers (dtype=object), which are exact at any width.

The reference evaluator of a whole subgraph (`evaluate`) lives at the end of this module: it runs the same program
the C++ runs, and alongside it the same computation in float64 with unquantized constants plus a rigorous bound on
|fixed - float| per element (the tolerance rule, docs/backends/fpga.md).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

QUANT_MODES = ("AP_TRN", "AP_RND")
OVERFLOW_MODES = ("AP_WRAP", "AP_SAT")
INT64_SAFE_BITS = 62  # codes narrower than this (plus a sign) are exact in int64 arithmetic

_TYPE_RE = re.compile(r"^\s*(ap_fixed|ap_ufixed|ap_int|ap_uint)\s*<\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?(?:,\s*(AP_\w+)\s*)?(?:,\s*(AP_\w+)\s*)?>\s*$")


FLT_MAX = 3.4028234663852886e38


def unbounded(value: float) -> bool:
    """An infinity, or +-FLT_MAX (onnxruntime's max loops start from -FLT_MAX, and hcc's max-pooling pads with it,
    passes/nan_semantics.py): in fixed point it stands for the type's minimum or maximum."""
    return not math.isfinite(value) or abs(value) >= FLT_MAX


MAX_TYPE_WIDTH = 64  # the widest type a user may name: weight headers hold each code in a C integer of up to 64 bits


@dataclass(frozen=True)
class FixedType:
    width: int
    integer: int
    signed: bool = True
    q: str = "AP_TRN"
    o: str = "AP_WRAP"

    def __post_init__(self):
        if self.width < 1 or self.width > 1024:
            raise ValueError(f"fixed-point width {self.width} out of range 1..1024")
        if self.q not in QUANT_MODES:
            raise ValueError(f"quantization mode {self.q} is not supported (use one of {', '.join(QUANT_MODES)})")
        if self.o not in OVERFLOW_MODES:
            raise ValueError(f"overflow mode {self.o} is not supported (use one of {', '.join(OVERFLOW_MODES)})")

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return math.ldexp(1.0, -self.frac)

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return math.ldexp(self.min_code, -self.frac)

    @property
    def max_value(self) -> float:
        return math.ldexp(self.max_code, -self.frac)

    @property
    def storage_bits(self) -> int:
        """Bits of the plain C integer that holds a code in weight headers."""
        for bits in (8, 16, 32, 64):
            if self.width <= bits:
                return bits
        raise ValueError(f"{self.cpp()}: constants wider than 64 bits are not supported")

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if self.q == "AP_TRN" and self.o == "AP_WRAP":
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},{self.q},{self.o}>"

    def __str__(self) -> str:
        return self.cpp()

    @classmethod
    def parse(cls, text: str) -> "FixedType":
        m = _TYPE_RE.match(text)
        if not m:
            raise ValueError(f"not a fixed-point type: {text!r} (expected e.g. ap_fixed<16,6> or ap_fixed<16,6,AP_RND,AP_SAT>)")
        kind, w, i, q, o = m.groups()
        width = int(w)
        if kind in ("ap_int", "ap_uint"):
            if i is not None:
                raise ValueError(f"{text!r}: ap_int takes one parameter")
            integer = width
        else:
            if i is None:
                raise ValueError(f"{text!r}: ap_fixed needs <W,I>")
            integer = int(i)
        if not 1 <= width <= MAX_TYPE_WIDTH:
            raise ValueError(f"{text!r}: width {width} is outside 1..{MAX_TYPE_WIDTH} (hcc stores fixed-point constants in 64-bit integers)")
        return cls(width, integer, kind in ("ap_fixed", "ap_int"), q or "AP_TRN", o or "AP_WRAP")

    def with_modes(self, q: str, o: str) -> "FixedType":
        return replace(self, q=q, o=o)


# ------------------------------------------------------------------------------------------------------ exact types
def exact_type(width_int: int, frac: int, signed: bool) -> FixedType:
    """The type with `width_int` integer bits (including the sign bit when signed) and `frac` fractional bits."""
    return FixedType(max(width_int + frac, 1), width_int, signed)


def join_type(a: FixedType, b: FixedType) -> FixedType:
    """Smallest type that holds every value of a and of b exactly (the type of a select/max/min)."""
    signed = a.signed or b.signed
    ia = a.integer + (1 if signed and not a.signed else 0)
    ib = b.integer + (1 if signed and not b.signed else 0)
    return exact_type(max(ia, ib), max(a.frac, b.frac), signed)


def add_type(a: FixedType, b: FixedType) -> FixedType:
    """Exact type of a + b or a - b (always signed for a subtraction: see `sub_type`)."""
    j = join_type(a, b)
    return exact_type(j.integer + 1, j.frac, j.signed)


def sub_type(a: FixedType, b: FixedType) -> FixedType:
    """Exact type of a - b (signed even for unsigned operands)."""
    j = join_type(a, b)
    return exact_type(j.integer + 1, j.frac, True)


def neg_type(a: FixedType) -> FixedType:
    return exact_type(a.integer + 1, a.frac, True)


def mul_type(a: FixedType, b: FixedType) -> FixedType:
    signed = a.signed or b.signed
    return exact_type(a.integer + b.integer, a.frac + b.frac, signed)


def bits_for_range(lo: float, hi: float, frac: int) -> tuple[int, bool]:
    """Integer bits (incl. sign) and signedness so that every value in [lo, hi] fits with `frac` fractional bits."""
    signed = lo < 0
    lo_code = math.floor(lo * 2.0**frac) if math.isfinite(lo) else 0
    hi_code = math.ceil(hi * 2.0**frac) if math.isfinite(hi) else 0
    need = 1
    while True:
        t = exact_type(need, frac, signed)
        if t.min_code <= lo_code and hi_code <= t.max_code:
            return need, signed
        need += 1
        if need > 4096:
            raise ValueError("range too large for a fixed-point type")


def type_for_range(lo: float, hi: float, frac: int) -> FixedType:
    integer, signed = bits_for_range(lo, hi, frac)
    return exact_type(integer, frac, signed)


# ------------------------------------------------------------------------------------------------------ codes
def _needs_object(bits: int) -> bool:
    return bits > INT64_SAFE_BITS


def as_codes(values, bits: int) -> np.ndarray:
    """Integer array in int64 when `bits` fits, else Python ints."""
    arr = np.asarray(values)
    if _needs_object(bits):
        return arr.astype(object)
    if arr.dtype == object:
        return arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def shift_left(codes: np.ndarray, n: int, bits_after: int) -> np.ndarray:
    if n <= 0:
        return codes
    codes = as_codes(codes, bits_after)
    if codes.dtype == object:
        return codes * (1 << n)
    return codes << np.int64(n)


def floor_shift(codes: np.ndarray, n: int) -> np.ndarray:
    """floor(code / 2**n) for n > 0 (arithmetic shift right)."""
    if n <= 0:
        return codes
    if codes.dtype == object:
        return np.frompyfunc(lambda c: c >> n, 1, 1)(codes)
    return codes >> np.int64(n)


def requantize(codes: np.ndarray, frac_src: int, t: FixedType, src_bits: int = 64) -> np.ndarray:
    """Assign codes with `frac_src` fractional bits (an exact value of at most `src_bits` bits) to type t."""
    codes = np.asarray(codes)
    d = frac_src - t.frac
    if d > 0:
        if t.q == "AP_RND":
            if codes.dtype != object and src_bits + 1 > INT64_SAFE_BITS:
                codes = codes.astype(object)
            codes = floor_shift(codes + (1 << (d - 1)), d)
        else:
            codes = floor_shift(codes, d)
        src_bits = max(src_bits - d, 1)
    elif d < 0:
        codes = shift_left(codes, -d, src_bits - d)
        src_bits = src_bits - d
    return overflow(codes, t)


def overflow(codes: np.ndarray, t: FixedType) -> np.ndarray:
    lo, hi = t.min_code, t.max_code
    if t.o == "AP_SAT":
        out = np.clip(codes, lo, hi) if codes.dtype != object else np.frompyfunc(lambda c: min(max(c, lo), hi), 1, 1)(codes)
    else:
        span = 1 << t.width
        if codes.dtype == object:
            out = np.frompyfunc(lambda c: ((c - lo) % span) + lo, 1, 1)(codes)
        elif t.width >= 64:
            out = codes  # int64 arithmetic already wraps at 64 bits
        else:
            out = np.mod(codes - np.int64(lo), np.int64(span)) + np.int64(lo)
    return as_codes(out, t.width)


def from_float(values, t: FixedType) -> np.ndarray:
    """What `t x = (double)v;` stores: floor (TRN) or round-half-up (RND) of v * 2**F, then wrap or saturate."""
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError("cannot quantize a non-finite value (inf or NaN) to a fixed-point type")
    scaled = np.ldexp(v, t.frac)
    if t.q == "AP_RND":
        big = np.abs(scaled) >= 2.0**52  # already integers; adding 0.5 would round
        scaled = np.where(big, scaled, np.floor(scaled + 0.5))
    else:
        scaled = np.floor(scaled)
    if t.width > 53:  # float64 cannot hold every code: go through Python integers
        return overflow(np.array([int(x) for x in scaled.ravel()], dtype=object).reshape(scaled.shape), t)
    if t.o == "AP_SAT":
        return np.clip(scaled, float(t.min_code), float(t.max_code)).astype(np.int64)
    span = float(2.0**t.width)
    wrapped = np.mod(scaled, span)  # exact: scaled is an integer-valued float, span a power of two
    if t.signed:
        wrapped = np.where(wrapped >= span / 2, wrapped - span, wrapped)
    return wrapped.astype(np.int64)


def to_float(codes: np.ndarray, frac: int) -> np.ndarray:
    """Exact value as float64 when it has at most 53 significant bits (as `.to_double()` does)."""
    codes = np.asarray(codes)
    if codes.dtype == object:
        return np.array([math.ldexp(int(c), -frac) for c in codes.ravel()], dtype=np.float64).reshape(codes.shape)
    return np.ldexp(codes.astype(np.float64), -frac)


def code_literal(code: int) -> str:
    return str(int(code))


# ------------------------------------------------------------------------------------------------------ tables
LIPSCHITZ = {"sigmoid": 0.25, "tanh": 1.0}
_FUNCS = {"sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "tanh": np.tanh}
_LIMITS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


@dataclass(frozen=True)
class LutSpec:
    """Lookup table of `func` over [-r, r) with `size` entries (bin midpoints), values in `table_type`."""

    func: str
    r: float
    size: int
    table_type: FixedType

    @property
    def step_log2(self) -> int:
        return int(round(math.log2(2 * self.r / self.size)))

    def codes(self) -> np.ndarray:
        step = 2 * self.r / self.size
        mids = -self.r + (np.arange(self.size) + 0.5) * step
        vals = _FUNCS[self.func](mids)
        return from_float(vals, self.table_type.with_modes("AP_RND", "AP_SAT"))

    def max_error(self) -> float:
        """max |table(x) - f(x)| over every x (bins and the clamped tails)."""
        t = to_float(self.codes(), self.table_type.frac)
        step = 2 * self.r / self.size
        lo = -self.r + np.arange(self.size) * step
        f = _FUNCS[self.func]
        err = np.maximum(np.abs(f(lo) - t), np.abs(f(lo + step) - t))
        lim_lo, lim_hi = _LIMITS[self.func]
        tails = max(abs(lim_lo - t[0]), abs(f(-self.r) - t[0]), abs(lim_hi - t[-1]), abs(f(self.r) - t[-1]))
        return float(max(err.max(), tails))

    def index(self, codes: np.ndarray, xt: FixedType) -> np.ndarray:
        """Table index of input codes of type xt: clamp to [-r, r), then floor((x + r) / step)."""
        frac_r = xt.frac + int(round(math.log2(self.r)))
        if frac_r < 0:
            raise ValueError(f"{xt.cpp()} is too coarse for a {self.func} table")
        lo_code = -(1 << frac_r)
        shift = xt.frac + self.step_log2
        c = np.asarray(codes)
        if c.dtype != object:
            k = np.clip(c - lo_code, 0, (1 << (frac_r + 1)) - 1)
        else:
            k = np.array([min(max(int(v) - lo_code, 0), (1 << (frac_r + 1)) - 1) for v in c.ravel()], dtype=np.int64).reshape(c.shape)
        k = k.astype(np.int64)
        idx = k >> shift if shift >= 0 else k << (-shift)
        return np.minimum(idx, self.size - 1)


def exp_tables(frac: int, integer: int, split: int, t: FixedType) -> tuple[np.ndarray, np.ndarray]:
    """Softmax exp(-n * 2**-frac) = hi[n >> split] * lo[n & (2**split - 1)] for n < 2**(frac + integer)."""
    n_hi = 1 << (frac + integer - split)
    hi = from_float(np.exp(-np.arange(n_hi) * 2.0 ** (split - frac)), t.with_modes("AP_RND", "AP_SAT"))
    lo = from_float(np.exp(-np.arange(1 << split) * 2.0 ** -frac), t.with_modes("AP_RND", "AP_SAT"))
    return hi, lo


# ------------------------------------------------------------------------------------------------------ evaluator
@dataclass
class Val:
    """A value in the three tracks: fixed codes (type t), the float64 reference, and a bound on |fixed - float|."""

    codes: np.ndarray
    t: FixedType
    flt: np.ndarray
    err: np.ndarray

    @property
    def fixed(self) -> np.ndarray:
        return to_float(self.codes, self.t.frac)


def _align(v: Val, frac: int, t: FixedType) -> np.ndarray:
    """Codes of v re-expressed with `frac` fractional bits (exact, frac >= v.t.frac)."""
    return shift_left(v.codes, frac - v.t.frac, t.width)


def _quantize(v: Val, t: FixedType, stats: dict | None = None) -> Val:
    codes = requantize(v.codes, v.t.frac, t, v.t.width)
    diff = _diff(codes, t.frac, v.codes, v.t.frac)
    if stats is not None:
        lo_code, hi_code = _range_codes(v, t)
        over = int(np.count_nonzero(lo_code | hi_code))
        if over:
            stats["overflow"] = stats.get("overflow", 0) + over
    return Val(codes, t, v.flt, v.err + diff)


def _range_codes(v: Val, t: FixedType):
    """Elements of v that overflow t (before quantization of the low bits)."""
    if t.frac <= v.t.frac:
        shifted = floor_shift(v.codes, v.t.frac - t.frac) if v.t.frac > t.frac else v.codes
    else:
        shifted = shift_left(v.codes, t.frac - v.t.frac, v.t.width + t.frac - v.t.frac)
    return np.asarray(shifted < t.min_code), np.asarray(shifted > t.max_code)


def _diff(a: np.ndarray, fa: int, b: np.ndarray, fb: int) -> np.ndarray:
    """|a*2^-fa - b*2^-fb| in float64, computed exactly in integers first."""
    f = max(fa, fb)
    aa = a if fa == f else (a.astype(object) if a.dtype != object else a) * (1 << (f - fa))
    bb = b if fb == f else (b.astype(object) if b.dtype != object else b) * (1 << (f - fb))
    d = np.abs(np.asarray(aa) - np.asarray(bb))
    return to_float(d, f)


class Evaluator:
    """Runs a typed Program (after transforms + precision.resolve) in the three tracks."""

    def __init__(self, prog, table_size: int = 4096):
        from hcc.backends.fpga.precision import LUT_RANGE, TABLE_TYPES

        self.prog = prog
        self.table_size = table_size
        self.lut_range = LUT_RANGE
        self.table_types = TABLE_TYPES
        self.values: dict[str, Val] = {}
        self.stats: dict[str, dict] = {}

    # -- public --------------------------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, Val]:
        """inputs: buffer id -> float array (float32 model data). Returns buffer id -> Val for every buffer."""
        for buf in self.prog.inputs:
            x = np.asarray(inputs[buf.id], dtype=np.float32).astype(np.float64).ravel()
            codes = from_float(x, buf.type)
            self.values[buf.id] = Val(codes, buf.type, x, np.abs(to_float(codes, buf.type.frac) - x))
        for op in self.prog.ops:
            stats = self.stats.setdefault(op.id, {})
            self.values[op.out.buf.id] = getattr(self, f"_op_{op.kind}")(op, stats)
        return self.values

    # -- expressions ---------------------------------------------------------------------------------------------
    def lut(self, op, func: str) -> LutSpec:
        tt = op.types.get(f"table:{func}", self.table_types[func])
        return LutSpec(func, self.lut_range[func], self.table_size, tt)

    def expr(self, e, op, leaf) -> Val:
        from hcc.backends.fpga.precision import exact_const_type

        if e.op in ("in", "acc"):
            return leaf(e)
        if e.op == "const":
            t = exact_const_type(e.value)
            return Val(np.asarray(from_float(np.array([e.value]), t)), t, np.array([e.value]), np.zeros(1))
        a = [self.expr(x, op, leaf) for x in e.args]
        if e.op in ("add", "sub", "max", "min"):
            t = {"add": add_type, "sub": sub_type, "max": join_type, "min": join_type}[e.op](a[0].t, a[1].t)
            x, y = _align(a[0], t.frac, t), _align(a[1], t.frac, t)
            if e.op == "add":
                codes, flt, err = x + y, a[0].flt + a[1].flt, a[0].err + a[1].err
            elif e.op == "sub":
                codes, flt, err = x - y, a[0].flt - a[1].flt, a[0].err + a[1].err
            elif e.op == "max":
                codes, flt, err = np.maximum(x, y), np.maximum(a[0].flt, a[1].flt), np.maximum(a[0].err, a[1].err)
            else:
                codes, flt, err = np.minimum(x, y), np.minimum(a[0].flt, a[1].flt), np.maximum(a[0].err, a[1].err)
            return Val(as_codes(codes, t.width), t, flt, err)
        if e.op == "mul":
            t = mul_type(a[0].t, a[1].t)
            x, y = as_codes(a[0].codes, t.width), as_codes(a[1].codes, t.width)
            err = np.abs(a[0].fixed) * a[1].err + np.abs(a[1].flt) * a[0].err
            return Val(as_codes(x * y, t.width), t, a[0].flt * a[1].flt, err)
        if e.op == "neg":
            t = neg_type(a[0].t)
            return Val(as_codes(-as_codes(a[0].codes, t.width), t.width), t, -a[0].flt, a[0].err)
        if e.op in LIPSCHITZ:
            spec = self.lut(op, e.op)
            table = spec.codes()
            idx = spec.index(a[0].codes, a[0].t)
            codes = table[idx]
            lo, hi = _LIMITS[e.op]
            # both the table value and the true value lie in [lo, hi] (up to one table LSB)
            err = np.minimum(LIPSCHITZ[e.op] * a[0].err + spec.max_error(), (hi - lo) + spec.table_type.lsb)
            return Val(codes, spec.table_type, _FUNCS[e.op](a[0].flt), err)
        raise ValueError(f"no fixed-point rule for {e.op}")

    def _const_val(self, o) -> Val:
        a = o.array.ravel().astype(np.float64)
        q = from_float(a, o.type)
        return Val(q, o.type, a, np.abs(to_float(q, o.type.frac) - a))

    def _leaf_fn(self, op, space, red, acc: Val | None, consts: dict):
        def leaf(e):
            if e.op == "acc":
                return acc
            o = op.ins[e.value]
            idx = space.base(o) + (space.offset(o, red) if red else 0)
            v = consts[e.value] if o.kind == "const" else self.values[o.buf.id]
            return Val(v.codes[idx], v.t, v.flt[idx], v.err[idx])
        return leaf

    # -- ops -----------------------------------------------------------------------------------------------------
    def _store(self, op, v: Val, space, stats) -> Val:
        q = _quantize(v, op.types["result"], stats)
        n = int(np.prod(op.out.buf.shape))
        oidx = space.out_index()
        codes = np.zeros(n, dtype=q.codes.dtype)
        flt, err = np.zeros(n), np.zeros(n)
        codes[oidx] = np.broadcast_to(q.codes, oidx.shape)
        flt[oidx] = np.broadcast_to(q.flt, oidx.shape)
        err[oidx] = np.broadcast_to(q.err, oidx.shape)
        return Val(as_codes(codes, q.t.width), q.t, flt, err)

    def _op_eltwise(self, op, stats) -> Val:
        from hcc.backends.fpga.interp import Space

        space = Space(op)
        consts = {i: self._const_val(o) for i, o in enumerate(op.ins) if o.kind == "const"}
        v = self.expr(op.body, op, self._leaf_fn(op, space, {}, None, consts))
        return self._store(op, v, space, stats)

    def _reduction(self, op, stats, x_expr, kind: str, acc_t: FixedType) -> Val:
        from hcc.backends.fpga.interp import Space

        space = Space(op)
        consts = {i: self._const_val(o) for i, o in enumerate(op.ins) if o.kind == "const"}
        n = space.points
        if op.init is not None:
            init = self._const_val(op.init) if op.init.kind == "const" else self.values[op.init.buf.id]
            idx = space.base(op.init)
            acc = _quantize(Val(init.codes[idx], init.t, init.flt[idx], init.err[idx]), acc_t, stats)
        elif kind == "max":
            acc = None
        else:
            acc = Val(as_codes(np.zeros(n, dtype=np.int64), acc_t.width), acc_t, np.zeros(n), np.zeros(n))
        for red in space.steps():
            x = self.expr(x_expr, op, self._leaf_fn(op, space, red, acc, consts))
            if kind == "max":
                xa = Val(as_codes(_align(x, acc_t.frac, acc_t), acc_t.width), acc_t, x.flt, x.err)
                if acc is None:
                    acc = xa
                else:
                    acc = Val(np.maximum(acc.codes, xa.codes), acc_t, np.maximum(acc.flt, xa.flt), np.maximum(acc.err, xa.err))
            else:
                xq = _quantize(x, acc_t, stats)  # product / term cast to the accumulator
                s = Val(as_codes(_align(acc, acc_t.frac, acc_t), acc_t.width + 1) + as_codes(xq.codes, acc_t.width + 1),
                        FixedType(acc_t.width + 1, acc_t.integer + 1, acc_t.signed), acc.flt + xq.flt, acc.err + xq.err)
                acc = _quantize(s, acc_t, stats)
        if op.epilogue is not None:
            v = self.expr(op.epilogue, op, self._leaf_fn(op, space, {}, acc, consts))
        else:
            v = acc
        return self._store(op, v, space, stats)

    def _op_mac(self, op, stats) -> Val:
        from hcc.backends.fpga.precision import mac_parts

        p, wi = mac_parts(op)
        from hcc.backends.fpga.ir import E

        return self._reduction(op, stats, E("mul", p, E("in", value=wi)), "sum", op.types["acc"])

    def _op_reduce(self, op, stats) -> Val:
        b = op.body
        x = b.args[1] if b.args[0].op == "acc" else b.args[0]
        return self._reduction(op, stats, x, op.attrs["reduce"], op.types["acc"])

    def _op_pad(self, op, stats) -> Val:
        src = self.values[op.ins[0].buf.id]
        t = op.types["result"]
        shape = op.out.buf.shape
        value = op.attrs["value"]
        if not unbounded(value):
            pad_codes = from_float(np.array([value]), t)
            pad_flt = value
        else:
            pad_codes = np.array([t.min_code if value < 0 else t.max_code], dtype=np.int64)
            pad_flt = value
        q = _quantize(src, t, stats)
        codes = np.full(shape, int(pad_codes[0]), dtype=np.int64 if t.width <= INT64_SAFE_BITS else object)
        flt = np.full(shape, pad_flt, dtype=np.float64)
        err = np.zeros(shape)
        region = tuple(slice(lo, lo + s) for lo, s in zip(op.attrs["low"], op.ins[0].shape))
        codes[region] = np.asarray(q.codes).reshape(op.ins[0].shape)
        flt[region] = q.flt.reshape(op.ins[0].shape)
        err[region] = q.err.reshape(op.ins[0].shape)
        return Val(as_codes(codes.ravel(), t.width), t, flt.ravel(), err.ravel())

    def _op_concat(self, op, stats) -> Val:
        t = op.types["result"]
        axis = op.attrs["axis"]
        parts = [_quantize(self.values[o.buf.id], t, stats) for o in op.ins]
        codes = np.concatenate([np.asarray(p.codes).reshape(o.shape) for p, o in zip(parts, op.ins)], axis=axis)
        flt = np.concatenate([p.flt.reshape(o.shape) for p, o in zip(parts, op.ins)], axis=axis)
        err = np.concatenate([p.err.reshape(o.shape) for p, o in zip(parts, op.ins)], axis=axis)
        return Val(as_codes(codes.ravel(), t.width), t, flt.ravel(), err.ravel())

    def _op_softmax(self, op, stats) -> Val:
        from hcc.backends.fpga.precision import EXP_FRAC, EXP_INT, EXP_SPLIT, EXP_TYPE

        x = self.values[op.ins[0].buf.id]
        shape = tuple(op.dims)
        axis = op.attrs["axis"]
        length = shape[axis]
        c = np.moveaxis(np.asarray(x.codes).reshape(shape), axis, -1).reshape(-1, length).astype(object)
        xf = np.moveaxis(x.flt.reshape(shape), axis, -1).reshape(-1, length)
        xe = np.moveaxis(x.err.reshape(shape), axis, -1).reshape(-1, length)
        fx_ = x.t.frac
        n = c.max(axis=1, keepdims=True) - c
        n12 = n >> (fx_ - EXP_FRAC) if fx_ >= EXP_FRAC else n * (1 << (EXP_FRAC - fx_))
        n12 = np.minimum(n12, (1 << (EXP_FRAC + EXP_INT)) - 1)
        hi_t, lo_t = exp_tables(EXP_FRAC, EXP_INT, EXP_SPLIT, EXP_TYPE)
        hi = np.asarray(hi_t, dtype=object)[(n12 >> EXP_SPLIT).astype(np.int64)]
        lo = np.asarray(lo_t, dtype=object)[(n12 & ((1 << EXP_SPLIT) - 1)).astype(np.int64)]
        e = (hi * lo) >> EXP_TYPE.frac
        s = e.sum(axis=1, keepdims=True)
        f_inv = EXP_TYPE.frac + ceil_log2(length)
        inv = (1 << (f_inv + EXP_TYPE.frac)) // s
        prod = e * inv
        prod_t = FixedType(EXP_TYPE.frac + f_inv + 2, 2, False)  # e * inv <= 1, frac 17 + f_inv
        t = op.types["result"]
        # float reference and bound
        yf = np.exp(xf - xf.max(axis=1, keepdims=True))
        yf = yf / yf.sum(axis=1, keepdims=True)
        delta = xe.max(axis=1, keepdims=True)
        r = np.expm1(2 * delta + 2.0**-EXP_FRAC)
        tabs = 3 * 2.0 ** -EXP_TYPE.frac + math.exp(-(2**EXP_INT))
        bound = np.where(r < 1, yf * 2 * r / np.maximum(1 - r, 1e-300), np.inf) + tabs * (1 + yf * length) + 2.0**-f_inv
        bound = np.minimum(bound, 1.0 + 2.0**-f_inv)  # both probabilities lie in [0, 1]
        pre = Val(prod.astype(object).ravel(), prod_t, yf.ravel(), bound.ravel())
        q = _quantize(pre, t, stats)
        back = lambda a: np.moveaxis(np.asarray(a).reshape(tuple(s for i, s in enumerate(shape) if i != axis) + (length,)), -1, axis).ravel()  # noqa: E731
        return Val(as_codes(back(q.codes), t.width), t, back(q.flt), back(q.err))


def ceil_log2(n: int) -> int:
    return max(0, math.ceil(math.log2(max(n, 1))))
