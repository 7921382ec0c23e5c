"""exp, erf and tanh as polynomial arithmetic, so that softmax, GELU, sigmoid and LSTM gates vectorize.

LLVM has no vector implementation of these functions without a vector math library: a `math.exp` on a vector
becomes one scalar `expf` call per lane, and `math.erf` is scalarized into libm `erff` calls (measured: 5-7% of a
BERT layer in `erff` alone). MLIR's polynomial-approximation patterns are not exposed by the Python bindings, so
the CPU backend rewrites these ops inside linalg bodies at tensor level into plain arith (vectorized like the rest):

* exp: Cephes' single-precision range reduction (x = n ln2 + r, |r| <= ln2/2), a degree-5 polynomial, 2^n built in
  the exponent bits; a few ulp. exp(+inf or > 88.72) = +inf, exp(< -88.37) = 0 (+0 instead of a denormal).
* erf: for |x| < 1, Cephes' odd polynomial x * T(x^2); above, Abramowitz & Stegun 7.1.26 on |x| with the sign
  copied back. Relative error <= 2.5e-7 everywhere.
* tanh: for |x| < 0.625, Cephes' odd polynomial x + x^3 * P(x^2); above, 1 - 2 / (exp(2|x|) + 1) with the sign
  copied back. Relative error <= 2.5e-7 everywhere, +-1 at +-inf.
Their products carry the `contract` flag: LLVM fuses each with the sum or difference that takes it into one FMA where
the target has FMA (x86-64-v3 and v4 do). That is a third fewer vector instructions (measured on the Zen 4: a
3x197x197 softmax 0.100 -> 0.082 ms, the LSTM keyword spotter 0.783 -> 0.750 ms), and no less accurate.
The small-|x| branches matter: the closed forms compute 1 - (something close to 1) there, which cancels (absolute
error 1e-7 is a relative error of 1e-2 at x = 1e-5, and tanh(1e-30) or erf(1e-30) came out 0). The odd polynomials
keep x itself for tiny x (and -0.0 stays -0.0), which is what onnxruntime and the ONNX reference give: the node
suite compares with atol 1e-7, so a relative error near 1e-7 is needed, not an absolute one.
NaN in, NaN out for all three. The errors are far below hcc's fp32 golden tolerance (rtol 1e-3, atol 1e-4).
"""
from __future__ import annotations

EXP_OVERFLOW = 88.72283935546875  # above this float32 exp is +inf
EXP_HI = EXP_OVERFLOW
EXP_LO = -88.3762626647949  # 2^n stays a normal float down to n = -127 (+0 at -127)
LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
ERF_P = 0.3275911
ERF_POLY = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # highest degree first
# erf(x) = x * ERF_SMALL_POLY(x^2) for |x| < ERF_SMALL (Cephes erff); relative error 1.8e-7 there.
ERF_SMALL = 1.0
ERF_SMALL_POLY = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
                  1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710e0)
# tanh(x) = x + x^3 * TANH_SMALL_POLY(x^2) for |x| < TANH_SMALL (Cephes tanhf); relative error 8e-8 there.
TANH_SMALL = 0.625
TANH_SMALL_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)


class _Builder:
    """arith helpers at the current insertion point, for scalar f32 values."""

    def __init__(self):
        from mlir import ir

        self.f32 = ir.F32Type.get()
        self.i32 = ir.IntegerType.get_signless(32)
        # products may fuse with the sum or difference that takes them (one FMA where the target has FMA)
        self.contract = ir.Attribute.parse("#arith.fastmath<contract>")

    def c(self, value: float):
        from mlir.dialects import arith

        return arith.constant(self.f32, float(value))

    def ci(self, value: int):
        from mlir.dialects import arith

        return arith.constant(self.i32, int(value))

    def add(self, a, b):
        from mlir.dialects import arith

        return arith.addf(a, b, fastmath=self.contract)

    def sub(self, a, b):
        from mlir.dialects import arith

        return arith.subf(a, b, fastmath=self.contract)

    def mul(self, a, b):
        from mlir.dialects import arith

        return arith.mulf(a, b, fastmath=self.contract)

    def div(self, a, b):
        from mlir.dialects import arith

        return arith.divf(a, b)

    def horner(self, x, coefficients):
        acc = self.c(coefficients[0])
        for coefficient in coefficients[1:]:
            acc = self.add(self.mul(acc, x), self.c(coefficient))
        return acc

    def select_if(self, predicate: str, x, bound: float, value, otherwise):
        from mlir.dialects import arith

        pred = {"ogt": arith.CmpFPredicate.OGT, "olt": arith.CmpFPredicate.OLT}[predicate]
        return arith.select(arith.cmpf(pred, x, self.c(bound)), value, otherwise)

    def exp(self, x):
        from mlir.dialects import arith, math

        clamped = arith.maximumf(arith.minimumf(x, self.c(EXP_HI)), self.c(EXP_LO))
        fx = math.floor(self.add(self.mul(clamped, self.c(LOG2E)), self.c(0.5)))
        r = self.sub(self.sub(clamped, self.mul(fx, self.c(LN2_HI))), self.mul(fx, self.c(LN2_LO)))
        y = self.horner(r, EXP_POLY)
        y = self.add(self.add(self.mul(y, self.mul(r, r)), r), self.c(1.0))
        n = arith.fptosi(self.i32, fx)
        # n = 128 near the overflow threshold: build 2^127 and double the result (2^128 has no float encoding).
        pow2n = arith.bitcast(self.f32, arith.shli(arith.addi(arith.minsi(n, self.ci(127)), self.ci(127)), self.ci(23)))
        double = arith.select(arith.cmpi(arith.CmpIPredicate.sgt, n, self.ci(127)), self.c(2.0), self.c(1.0))
        result = self.mul(self.mul(y, pow2n), double)
        return self.select_if("ogt", x, EXP_OVERFLOW, self.c(float("inf")), result)

    def erf(self, x):
        from mlir.dialects import math

        a = math.absf(x)
        t = self.div(self.c(1.0), self.add(self.c(1.0), self.mul(a, self.c(ERF_P))))
        poly = self.mul(self.horner(t, ERF_POLY), t)
        y = self.sub(self.c(1.0), self.mul(poly, self.exp(self.sub(self.c(0.0), self.mul(a, a)))))
        small = self.mul(x, self.horner(self.mul(x, x), ERF_SMALL_POLY))
        return self.select_if("olt", a, ERF_SMALL, small, math.copysign(y, x))

    def tanh(self, x):
        from mlir.dialects import math

        a = math.absf(x)
        e = self.exp(self.add(a, a))
        y = self.sub(self.c(1.0), self.div(self.c(2.0), self.add(e, self.c(1.0))))
        z = self.mul(x, x)
        small = math.copysign(self.add(x, self.mul(self.mul(x, z), self.horner(z, TANH_SMALL_POLY))), x)  # -0.0 too
        return self.select_if("olt", a, TANH_SMALL, small, math.copysign(y, x))


REWRITTEN = ("math.exp", "math.erf", "math.tanh")


def expand_math(root) -> int:
    """Rewrite every scalar f32 math.exp / math.erf / math.tanh under `root`; returns how many."""
    from mlir import ir

    found = []

    def visit(op):
        if op.name in REWRITTEN and str(op.results[0].type) == "f32":
            found.append(op)
        return ir.WalkResult.ADVANCE

    root.walk(visit)
    for op in found:
        with ir.InsertionPoint(op), op.location:
            builder = _Builder()
            replacement = getattr(builder, op.name.split(".")[1])(op.operands[0])
        op.results[0].replace_all_uses_with(replacement)
        op.erase()
    return len(found)
