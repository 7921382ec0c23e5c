"""onnxruntime's 8-bit element-wise integer kernels, computed exactly as lookup tables at compile time.

Why tables: an 8-bit binary op has 256 x 256 possible inputs, so its result for every pair can be computed once, here,
with the very float32 steps onnxruntime's kernel takes (each rounding, each fused multiply-add, the saturating packs),
and the compiled code is a Gather. A float expansion of the same steps would leave the roundings to the compiler
(which may contract or reorder them); a table cannot drift.

QLinearAdd on x86-64 (MLAS, intrinsics/avx2/qladd_avx2.cpp, used on every AVX2 CPU, with or without AVX-512):
    rA = sA / sC, rB = sB / sC, fixed = float(zC) - fma(rA, float(zA), rB * float(zB))
    both inputs vectors:   c = fma(a, rA, fma(b, rB, fixed))
    b one value per span:  c = fma(a, rA, fma(b, rB, fixed))  with the inner fma done once for the span
    a one value per span:  onnxruntime swaps the operands (qlinear_binary_op.cc), so c = fma(b, rB, fma(a, rA, fixed'))
                           where fixed' = float(zC) - fma(rB, float(zB), rA * float(zA))
then cvtps (round half to even; out of range -> INT32_MIN), saturating packs to int16 and to the 8-bit type.
The fma placement in `fixed` (the compiler contracts `rA * zA + rB * zB`) and in the span-scalar step were measured
against onnxruntime 1.31: zero differences over 200 random scale/zero-point sets x 65,536 input pairs x the three
paths (tests/frontend/test_mlas_emulation.py keeps a sample of that check).

The other tables, each checked against onnxruntime's kernel on every input code (pair) in the same tests:
QLinearMul (SSE2: the exact product times sA * sB / sC, plus zC, one rounding each), QLinearSigmoid and
QLinearLeakyRelu (onnxruntime's own 256-entry tables: dequantize, MLAS's FMA3 logistic polynomial or x / alpha x,
MlasQuantizeLinear), and QLinearSoftmax's float exp table with its output factor floor(1 / y_scale).
"""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32
CODES = {np.dtype(np.uint8): np.arange(0, 256), np.dtype(np.int8): np.arange(-128, 128)}


def fma32(x, y, z) -> np.ndarray:
    """float32 fma(x, y, z), correctly rounded, for float32 x, y, z: their product is exact in float64 (24 + 24
    significant bits <= 53), and the float64 sum is rounded to odd, which makes the final rounding to float32 the
    correct one (53 >= 24 + 2 bits)."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    product = x * y
    total = product + z
    back = total - product
    error = (product - (total - back)) + (z - back)  # TwoSum: total + error == product + z exactly
    even = (np.asarray(total).view(np.int64) & 1) == 0
    toward = np.where(error > 0, np.inf, -np.inf)
    total = np.where((error != 0) & even, np.nextafter(total, toward), total)
    return total.astype(F32)


def saturate_cvtps(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """_mm256_cvtps_epi32 (round half to even, NaN or out of range -> INT32_MIN), then the saturating packs."""
    rounded = np.rint(value.astype(np.float64))
    rounded = np.where(np.isfinite(rounded) & (rounded >= -2.0**31) & (rounded < 2.0**31), rounded, -2.0**31)
    info = np.iinfo(dtype)
    return np.clip(rounded, info.min, info.max).astype(dtype)


def qlinear_add_table(scales: tuple[float, float, float], zero_points: tuple[int, int, int], dtype: np.dtype,
                      scalar: str = "") -> np.ndarray:
    """table[i, j] = QLinearAdd(a = CODES[dtype][i], b = CODES[dtype][j]) as MLAS computes it on x86-64.

    `scales` and `zero_points` are (A, B, C) in the kernel's 8-bit type `dtype`; `scalar` is "" (both inputs vary
    along the innermost output axis), "a" or "b" (that input is one value per innermost span)."""
    dtype = np.dtype(dtype)
    s_a, s_b, s_c = (F32(s) for s in scales)
    z_a, z_b, z_c = (F32(z) for z in zero_points)
    r_a, r_b = F32(s_a / s_c), F32(s_b / s_c)
    codes = CODES[dtype].astype(F32)
    a, b = codes[:, None], codes[None, :]
    if scalar == "a":  # onnxruntime passes the vector input (b) first: the kernel's "A" is b here
        fixed = F32(z_c - fma32(r_b, z_b, F32(r_a * z_a)))
        return saturate_cvtps(fma32(b, r_b, fma32(a, r_a, fixed)), dtype)
    fixed = F32(z_c - fma32(r_a, z_a, F32(r_b * z_b)))
    return saturate_cvtps(fma32(a, r_a, fma32(b, r_b, fixed)), dtype)


def qlinear_mul_table(scales: tuple[float, float, float], zero_points: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
    """table[i, j] = QLinearMul(a = CODES[dtype][i], b = CODES[dtype][j]) as MLAS computes it on x86-64 (qlmul.cpp,
    SSE2): the exact integer product (a - zA)(b - zB), float(product) * (sA * sB / sC) + float(zC) (a multiply and
    an add, each rounded), cvtps and the saturating packs. The broadcast path does not matter: the product commutes."""
    dtype = np.dtype(dtype)
    s_a, s_b, s_c = (F32(s) for s in scales)
    ratio = F32(F32(s_a * s_b) / s_c)
    codes = CODES[dtype]
    product = ((codes[:, None] - zero_points[0]) * (codes[None, :] - zero_points[1])).astype(F32)
    return saturate_cvtps(((product * ratio).astype(F32) + F32(zero_points[2])).astype(F32), dtype)


def broadcast_scalar_input(a_shape: list[int], b_shape: list[int]) -> str:
    """Which input onnxruntime's broadcaster hands to the kernel as one value per span: "a", "b" or "" (neither).
    The span is the innermost output axis longer than 1; an input of size 1 along it is the scalar one (both of
    size 1 everywhere: "a", as onnxruntime's IsInput0Scalar branch)."""
    rank = max(len(a_shape), len(b_shape))
    a = [1] * (rank - len(a_shape)) + list(a_shape)
    b = [1] * (rank - len(b_shape)) + list(b_shape)
    for da, db in zip(reversed(a), reversed(b)):
        if max(da, db) > 1:
            return "a" if da == 1 else "b" if db == 1 else ""
    return "a"


# MlasLogisticConstants (logistic.cpp: Eigen's rational approximation), as float32
LOGISTIC_RANGE = (F32(-18.0), F32(18.0))
LOGISTIC_ALPHA = [F32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
                                   2.48287947061529e-01)]  # alpha_9, alpha_7, alpha_5, alpha_3, alpha_1
LOGISTIC_BETA = [F32(v) for v in (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
                                  1.16817656904453e-01, 9.93151921023180e-01)]  # beta_10, beta_8, ..., beta_0


def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """MlasComputeLogistic on x86-64 with FMA3 (x86_64/LogisticKernelFma3.S): clamp to [-18, 18], x2 = x*x,
    p = x * (((a9 x2 + a7) x2 + a5) x2 + a3) x2 + a1), q = ((((b10 x2 + b8) x2 + b6) x2 + b4) x2 + b2) x2 + b0 with
    every step a fused multiply-add, then max(0, p / q + 0.5)."""
    v = np.minimum(LOGISTIC_RANGE[1], np.maximum(LOGISTIC_RANGE[0], np.asarray(x, F32)))
    x2 = (v * v).astype(F32)
    p = fma32(x2, LOGISTIC_ALPHA[0], LOGISTIC_ALPHA[1])
    for alpha in LOGISTIC_ALPHA[2:]:
        p = fma32(x2, p, alpha)
    q = fma32(x2, LOGISTIC_BETA[0], LOGISTIC_BETA[1])
    for beta in LOGISTIC_BETA[2:]:
        q = fma32(x2, q, beta)
    ratio = ((v * p).astype(F32) / q).astype(F32)
    return np.maximum(F32(0), (ratio + F32(0.5)).astype(F32))


def mlas_quantize(y: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """MlasQuantizeLinear: y / scale, clamped to [qmin - zp, qmax - zp] (maxps/minps), rounded half to even, plus zp."""
    info = np.iinfo(dtype)
    v = (np.asarray(y, F32) / F32(scale)).astype(F32)
    v = np.minimum(F32(info.max - zero_point), np.maximum(F32(info.min - zero_point), v))
    return (np.rint(v).astype(np.int32) + zero_point).astype(dtype)


def leaky_relu(x: np.ndarray, alpha: float) -> np.ndarray:
    """QLinearLeakyRelu's function (qlinear_lookup_table.cc): x where x >= 0, else alpha * x, in float32."""
    return np.where(x >= 0, x, (F32(alpha) * x).astype(F32)).astype(F32)


def qlinear_lookup_table(op: str, x_scale: float, x_zero_point: int, y_scale: float, y_zero_point: int,
                         dtype: np.dtype, alpha: float = 0.01) -> np.ndarray:
    """onnxruntime's QlinearBuildLookupTable (qlinear_lookup_table.cc) for QLinearSigmoid and QLinearLeakyRelu: the 256
    codes dequantized as x_scale * (x - x_zp) in float32, the op in float32 (MLAS's logistic kernel for Sigmoid),
    then MlasQuantizeLinear; table[i] is the result for CODES[dtype][i]."""
    dtype = np.dtype(dtype)
    x = (F32(x_scale) * (CODES[dtype] - x_zero_point).astype(F32)).astype(F32)
    y = mlas_logistic(x) if op == "Sigmoid" else leaky_relu(x, alpha)
    return mlas_quantize(y, y_scale, y_zero_point, dtype)


def qlinear_softmax_exp_table(x_scale: float, reduce_len: int) -> np.ndarray:
    """onnxruntime's QLinearSoftmax table (qlinear_softmax.cc, QlinearBuildLookupTableUint32 with float entries):
    exp((i - 255 + shift) * x_scale) in double, stored as float32, where shift = max(0, log(FLT_MAX / D) - 5) / x_scale
    keeps a row's sum finite; returned indexed by i = 255 - (row max - x), for uint8 and int8 alike (the int8
    kernel's byte arithmetic lands on the same entry)."""
    largest = F32(np.finfo(F32).max) / F32(reduce_len)
    shift = max(0.0, math.log(float(largest)) - 5.0) / float(F32(x_scale))
    return np.array([math.exp((i - 255 + shift) * float(F32(x_scale))) for i in range(256)], dtype=np.float64).astype(F32)


def qlinear_softmax_output_scale(y_scale: float) -> np.float32:
    """The factor onnxruntime's QLinearSoftmax multiplies by: floor(1 / y_scale) in float32 (not 1 / y_scale)."""
    return F32(np.floor(F32(1.0) / F32(y_scale)))
