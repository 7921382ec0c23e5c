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
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
CODES = {np.dtype(np.uint8): np.arange(0, 256), np.dtype(np.int8): np.arange(-128, 128)}


def fma32(x, y, z) -> np.ndarray:
    """float32 fma(x, y, z), correctly rounded, for float32 x, y, z whose product x * y is exact in float64 (here
    always: one factor is an 8-bit integer). The float64 sum is rounded to odd, which makes the final rounding to
    float32 the correct one (53 >= 24 + 2 bits)."""
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
