/* Softmax along the innermost dim of a view of up to 4 dims, one row at a time (backends/cpu/softmax_calls.py): the
 * four loop nests that torch-mlir makes of a Softmax (a max, exp(x - max), a sum, a division), each a pass over the
 * whole tensor, become three passes over one row while it sits in L1:
 *
 *   m = max(x[i]);  y[i] = exp(x[i] - m), s = sum(y[i]);  y[i] *= 1 / s
 *
 * onnxruntime computes the same way (MlasComputeSoftmax: a max, exp and sum in one pass, a scale by the reciprocal).
 * exp is backends/cpu/math_approx.py's, step for step (Cephes' range reduction and degree-5 polynomial, with FMAs),
 * on x - m <= 0, where its overflow branch never applies. Multiplying by 1 / s instead of dividing moves a result by
 * at most an ulp or so; s >= 1 (the max's own term is exp(0)), so 1 / s is finite and normal.
 * NaN and infinities as the generated loops gave them (and onnxruntime): a row with a NaN, a +inf, or only -inf
 * (x - m = NaN for some element: +inf - +inf, -inf - -inf) is NaN throughout; a -inf next to finite values gives 0.
 * Measured on a Zen 4 EPYC, one thread, a 3 x 197 x 197 softmax (ViT-Tiny's attention): the four loop nests
 * 0.085 ms, onnxruntime 0.058 ms, this kernel 0.060 ms (one interleaved run).
 *
 * ABI (one i64 per argument): hcc_softmax(x, y, N0, N1, N2, L, x strides {n0, n1, n2, l}, y strides {n0, n1, n2, l}),
 * strides in elements; vectors need unit strides along the row (else one element at a time). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define HCC_EXPORT __attribute__((visibility("default")))
#ifndef SOFTMAX_PARALLEL_ELEMENTS /* fewer elements in all: one thread (a task handover costs microseconds) */
#error "SOFTMAX_PARALLEL_ELEMENTS comes from backends/cpu/toolchain.py (SUPPORT_CFLAGS)"
#endif

typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
int hcc_get_num_threads(void);
int hcc_get_isa(void); /* ukernels_dispatch.c: 16 (AVX-512F), 8 (AVX2) or 4 */

/* math_approx.py's constants */
#define EXP_LO -88.3762626647949f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

typedef struct {
  const float *x;
  float *y;
  int64_t n1, n2, L;
  int64_t xs[4], ys[4];
  int isa;
  int64_t rows, parts;
} SoftmaxJob;

/* ---------------------------------------------------------------------------------------------- AVX-512 */
#define AVX512 __attribute__((target("avx512f,fma")))
AVX512 static inline __mmask16 first16(int64_t n) { return (__mmask16)(n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u); }

/* exp(z) for z <= 0 (not NaN) */
AVX512 static inline __m512 exp16(__m512 z) {
  z = _mm512_max_ps(z, _mm512_set1_ps(EXP_LO));
  __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(z, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5f)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_HI), z);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_LO), r);
  __m512 h = _mm512_fmadd_ps(_mm512_set1_ps(P0), r, _mm512_set1_ps(P1));
  h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(P2));
  h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(P3));
  h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(P4));
  h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(P5));
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(h, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  __m512i n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(n));
}

/* The row's max, or NaN when a lane held NaN. */
AVX512 static float row_max16(const float *x, int64_t L) {
  const __m512 lowest = _mm512_set1_ps(-INFINITY);
  __m512 m0 = lowest, m1 = lowest;
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 32 <= L; i += 32) {
    __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    nan |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
    m0 = _mm512_max_ps(m0, a);
    m1 = _mm512_max_ps(m1, b);
  }
  for (; i < L; i += 16) {
    __mmask16 k = first16(L - i);
    __m512 a = _mm512_mask_loadu_ps(lowest, k, x + i);
    nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    m0 = _mm512_max_ps(m0, a);
  }
  return nan ? NAN : _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* y = exp(x - m), returns the sum */
AVX512 static float row_exp16(const float *x, float *y, int64_t L, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 32 <= L; i += 32) {
    __m512 a = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)), b = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
    _mm512_storeu_ps(y + i, a);
    _mm512_storeu_ps(y + i + 16, b);
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
  }
  for (; i < L; i += 16) {
    __mmask16 k = first16(L - i);
    __m512 a = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    _mm512_mask_storeu_ps(y + i, k, a);
    s0 = _mm512_mask_add_ps(s0, k, s0, a);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

AVX512 static void row_scale16(float *y, int64_t L, float r) {
  const __m512 vr = _mm512_set1_ps(r);
  for (int64_t i = 0; i < L; i += 16) {
    __mmask16 k = first16(L - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + i), vr));
  }
}

/* ------------------------------------------------------------------------------------------------- AVX2 */
#define AVX2 __attribute__((target("avx2,fma")))
AVX2 static inline __m256i first8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static inline __m256 exp8(__m256 z) {
  z = _mm256_max_ps(z, _mm256_set1_ps(EXP_LO));
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(z, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_HI), z);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_LO), r);
  __m256 h = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
  h = _mm256_fmadd_ps(h, r, _mm256_set1_ps(P2));
  h = _mm256_fmadd_ps(h, r, _mm256_set1_ps(P3));
  h = _mm256_fmadd_ps(h, r, _mm256_set1_ps(P4));
  h = _mm256_fmadd_ps(h, r, _mm256_set1_ps(P5));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(h, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

AVX2 static float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

AVX2 static float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 static float row_max8(const float *x, int64_t L) {
  const __m256 lowest = _mm256_set1_ps(-INFINITY);
  __m256 m = lowest, nan = _mm256_setzero_ps();
  for (int64_t i = 0; i < L; i += 8) {
    __m256i k = first8(L - i);
    __m256 a = _mm256_blendv_ps(lowest, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    m = _mm256_max_ps(m, a);
  }
  return _mm256_movemask_ps(nan) ? NAN : hmax8(m);
}

AVX2 static float row_exp8(const float *x, float *y, int64_t L, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 s = _mm256_setzero_ps();
  for (int64_t i = 0; i < L; i += 8) {
    __m256i k = first8(L - i);
    __m256 a = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm));
    _mm256_maskstore_ps(y + i, k, a);
    s = _mm256_add_ps(s, _mm256_and_ps(a, _mm256_castsi256_ps(k)));
  }
  return hsum8(s);
}

AVX2 static void row_scale8(float *y, int64_t L, float r) {
  const __m256 vr = _mm256_set1_ps(r);
  for (int64_t i = 0; i < L; i += 8) {
    __m256i k = first8(L - i);
    _mm256_maskstore_ps(y + i, k, _mm256_mul_ps(_mm256_maskload_ps(y + i, k), vr));
  }
}

/* ----------------------------------------------------------------------------------------------- scalar */
static float exp1(float z) { /* exp16's arithmetic, one lane (FMAs where the compiler has them) */
  z = z > EXP_LO ? z : EXP_LO;
  float fx = floorf(z * LOG2E + 0.5f);
  float r = z - fx * LN2_HI;
  r = r - fx * LN2_LO;
  float h = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
  float y = h * (r * r) + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

static void row_strided(const float *x, int64_t xl, float *y, int64_t yl, int64_t L) {
  float m = -INFINITY;
  int nan = 0;
  for (int64_t i = 0; i < L; ++i) {
    float v = x[i * xl];
    nan |= v != v;
    m = v > m ? v : m;
  }
  if (nan || !isfinite(m)) {
    for (int64_t i = 0; i < L; ++i) y[i * yl] = NAN;
    return;
  }
  float s = 0.0f;
  for (int64_t i = 0; i < L; ++i) s += (y[i * yl] = exp1(x[i * xl] - m));
  float r = 1.0f / s;
  for (int64_t i = 0; i < L; ++i) y[i * yl] *= r;
}

static void softmax_row(const SoftmaxJob *j, int64_t row) {
  int64_t i2 = row % j->n2, i1 = (row / j->n2) % j->n1, i0 = row / (j->n2 * j->n1), L = j->L;
  const float *x = j->x + i0 * j->xs[0] + i1 * j->xs[1] + i2 * j->xs[2];
  float *y = j->y + i0 * j->ys[0] + i1 * j->ys[1] + i2 * j->ys[2];
  if (j->xs[3] != 1 || j->ys[3] != 1 || j->isa < 8) {
    row_strided(x, j->xs[3], y, j->ys[3], L);
    return;
  }
  float m = j->isa == 16 ? row_max16(x, L) : row_max8(x, L);
  if (!isfinite(m)) { /* a NaN, a +inf, or -inf throughout: x - m is NaN somewhere, so is the sum */
    for (int64_t i = 0; i < L; ++i) y[i] = NAN;
    return;
  }
  float s = j->isa == 16 ? row_exp16(x, y, L, m) : row_exp8(x, y, L, m);
  if (j->isa == 16)
    row_scale16(y, L, 1.0f / s);
  else
    row_scale8(y, L, 1.0f / s);
}

/* Part `part` of `parts`: an equal share of the rows, the larger shares first. */
static void softmax_part(void *ctx, int64_t part) {
  const SoftmaxJob *j = ctx;
  int64_t q = j->rows / j->parts, r = j->rows % j->parts;
  int64_t lo = part * q + (part < r ? part : r), hi = lo + q + (part < r);
  for (int64_t row = lo; row < hi; ++row) softmax_row(j, row);
}

HCC_EXPORT void hcc_softmax(int64_t x, int64_t y, int64_t n0, int64_t n1, int64_t n2, int64_t L, int64_t x0, int64_t x1, int64_t x2,
                            int64_t xl, int64_t y0, int64_t y1, int64_t y2, int64_t yl) {
  SoftmaxJob job = {(const float *)(intptr_t)x, (float *)(intptr_t)y, n1, n2, L, {x0, x1, x2, xl}, {y0, y1, y2, yl},
                    hcc_get_isa(), n0 * n1 * n2, 1};
  if (job.rows <= 0 || L <= 0) return;
  int64_t threads = hcc_get_num_threads();
  if (threads > 1 && job.rows * L >= SOFTMAX_PARALLEL_ELEMENTS) job.parts = job.rows < 2 * threads ? job.rows : 2 * threads;
  hcc_parallel_for(job.parts, softmax_part, &job);
}
