/* Window folds over 4-D views: the bands of a max pooling (passes/nan_semantics.py writes each as a linalg.generic
 * with its NaN rule) and the sums of an average pooling, where the window slides more than one column per output
 * (stride 2 pooling: ResNet's stem, LeNet), which the vector schedules of backends/cpu/schedule.py do not take.
 *
 *   y[n][c][oh][ow] = fold over kh < KH, kw < KW (row-major) of x[n][c][oh*sh + kh*dh][ow*sw + kw*dw], from `init`
 *
 * The fold is the generic's own body, step for step, so the results are the bits its scalar loops gave:
 *   FOLD_GT  acc > v ? acc : v   (x86 maxps; a NaN tap gives the tap: onnxruntime's NCHWc and vector kernels)
 *   FOLD_LT  acc < v ? v : acc   (std::max: a NaN tap is skipped, a NaN acc stays)
 *   FOLD_ADD acc + v             (in tap order)
 * Every output keeps its taps in that order; the vectors run along an output row (16 columns with AVX-512, 8 with
 * AVX2, chosen by hcc_get_isa like the other micro-kernels; one output at a time otherwise), on every core.
 * Measured on a Zen 4 EPYC, ResNet-18's 3x3/2 interior band (64 x 55 x 55 outputs, one thread): scalar loops
 * 0.34 ms, this kernel 0.14-0.18 ms; onnxruntime's MaxPool of the same input 0.16 ms (its NCHWc kernel, reorder
 * included).
 *
 * ABI (one i64 per argument, backends/cpu/pool_calls.py): hcc_pool2d(x, y, N, C, OH, OW, KH, KW, sh, sw, dh, dw,
 * x strides {n, c, h, w}, y strides {n, c, h, w}, fold, init bits), strides in elements. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define HCC_EXPORT __attribute__((visibility("default")))
#define MIN_PARALLEL_TAPS 65536 /* fewer taps in all: one thread (a task handover costs microseconds) */

typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
int hcc_get_num_threads(void);
int hcc_get_isa(void); /* ukernels_dispatch.c: 16 (AVX-512F), 8 (AVX2) or 4, by CPUID or as the tests force it */

enum { FOLD_GT = 0, FOLD_LT = 1, FOLD_ADD = 2 };

typedef struct {
  const float *x;
  float *y;
  int64_t C, OH, OW, KH, KW, sh, sw, dh, dw;
  int64_t xs[4], ys[4];
  int fold, isa;
  float init;
  int64_t rows, parts;
} PoolJob;

/* Window stride 1, one output row, 4 vectors of columns at a time (four independent accumulators in registers over
 * all taps: one chain of dependent max/add steps stalled on its own latency); x and y with unit column strides.
 * Masked loads never touch memory past a row's last tap; the masks are made once per group of columns (M: the mask
 * of the first n lanes). */
#define ROW_BODY(VL, VEC, MASK, M, SET1, LOAD, FOLD_STEP, STORE)                                             \
  for (int64_t ow0 = 0; ow0 < j->OW; ow0 += 4 * VL) {                                                       \
    int64_t left = j->OW - ow0;                                                                             \
    MASK m[4];                                                                                              \
    for (int s = 0; s < 4; ++s) m[s] = M(left - s * VL);                                                    \
    VEC a0 = SET1(j->init), a1 = a0, a2 = a0, a3 = a0;                                                      \
    for (int64_t kh = 0; kh < j->KH; ++kh) {                                                                \
      const float *line = x + (oh * j->sh + kh * j->dh) * j->xs[2] + ow0;                                   \
      for (int64_t kw = 0; kw < j->KW; ++kw) {                                                              \
        const float *p = line + kw * j->dw;                                                                 \
        a0 = FOLD_STEP(a0, LOAD(p, m[0]));                                                                  \
        a1 = FOLD_STEP(a1, LOAD(p + VL, m[1]));                                                             \
        a2 = FOLD_STEP(a2, LOAD(p + 2 * VL, m[2]));                                                         \
        a3 = FOLD_STEP(a3, LOAD(p + 3 * VL, m[3]));                                                         \
      }                                                                                                     \
    }                                                                                                       \
    STORE(y + ow0, m[0], a0);                                                                               \
    STORE(y + ow0 + VL, m[1], a1);                                                                          \
    STORE(y + ow0 + 2 * VL, m[2], a2);                                                                      \
    STORE(y + ow0 + 3 * VL, m[3], a3);                                                                      \
  }

#define AVX512 __attribute__((target("avx512f")))
AVX512 static inline __mmask16 first16(int64_t n) { return (__mmask16)(n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u); }
AVX512 static inline __m512 load16_s1(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
AVX512 static inline __m512 gt16(__m512 acc, __m512 v) { return _mm512_max_ps(acc, v); } /* acc > v ? acc : v */
AVX512 static inline __m512 lt16(__m512 acc, __m512 v) { return _mm512_max_ps(v, acc); } /* v > acc ? v : acc */

/* Window stride 2 (dilation 1, KW <= 32), S strips of 16 output columns at a time: each window row is loaded once,
 * as 2S + 2 vectors; their even and odd lanes make E[s] and O[s] (strip s's taps kw = 0 and 1), and tap kw = 2m (2m + 1) of
 * strip s is E[s] (O[s]) moved up by m lanes, filled from E[s + 1] (O[s + 1]): one permute per tap, no load (the
 * loads of every tap, each split across cache lines, made the first version 1.3x slower). */
#define ROW_S2(FOLD_STEP, S)                                                                                      \
  for (int64_t ow0 = 0; ow0 < j->OW; ow0 += 16 * S) {                                                             \
    int64_t left = j->OW - ow0, reach = (left - 1) * 2 + j->KW;                                                   \
    __mmask16 mv[2 * S + 2];                                                                                      \
    for (int k = 0; k < 2 * S + 2; ++k) mv[k] = first16(reach - 16 * k);                                         \
    __m512 acc[S];                                                                                                \
    for (int s = 0; s < S; ++s) acc[s] = _mm512_set1_ps(j->init);                                                 \
    for (int64_t kh = 0; kh < j->KH; ++kh) {                                                                      \
      const float *line = x + (oh * j->sh + kh * j->dh) * j->xs[2] + ow0 * 2;                                     \
      __m512 e[S + 1], o[S + 1];                                                                                  \
      for (int s = 0; s <= S; ++s) {                                                                              \
        __m512 lo = _mm512_maskz_loadu_ps(mv[2 * s], line + 32 * s), hi = _mm512_maskz_loadu_ps(mv[2 * s + 1], line + 32 * s + 16); \
        e[s] = _mm512_permutex2var_ps(lo, even, hi);                                                              \
        o[s] = _mm512_permutex2var_ps(lo, odd, hi);                                                               \
      }                                                                                                           \
      for (int64_t kw = 0; kw < j->KW; ++kw) {                                                                    \
        const __m512 *src = kw & 1 ? o : e;                                                                       \
        __m512i up = _mm512_add_epi32(iota, _mm512_set1_epi32((int)(kw >> 1)));                                    \
        for (int s = 0; s < S; ++s) acc[s] = FOLD_STEP(acc[s], _mm512_permutex2var_ps(src[s], up, src[s + 1]));   \
      }                                                                                                           \
    }                                                                                                             \
    for (int s = 0; s < S; ++s) _mm512_mask_storeu_ps(y + ow0 + 16 * s, first16(left - 16 * s), acc[s]);          \
  }
/* S: the strips of 16 columns per group: 4 (ILP), or 1 for rows of at most 16 outputs (LeNet's 14). */
#define ROW_S2_FOLDS(S)                           \
  switch (j->fold) {                              \
    case FOLD_GT: ROW_S2(gt16, S) break;          \
    case FOLD_LT: ROW_S2(lt16, S) break;          \
    default: ROW_S2(_mm512_add_ps, S) break;      \
  }

AVX512 static void row_avx512_s2(const PoolJob *j, const float *x, float *y, int64_t oh) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i even = _mm512_add_epi32(iota, iota), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  if (j->OW <= 16) {
    ROW_S2_FOLDS(1)
  } else {
    ROW_S2_FOLDS(4)
  }
}

/* Window stride 1 (a band whose x or y is not where the vector schedule takes it). */
AVX512 static void row_avx512_s1(const PoolJob *j, const float *x, float *y, int64_t oh) {
  switch (j->fold) {
    case FOLD_GT: ROW_BODY(16, __m512, __mmask16, first16, _mm512_set1_ps, load16_s1, gt16, _mm512_mask_storeu_ps) break;
    case FOLD_LT: ROW_BODY(16, __m512, __mmask16, first16, _mm512_set1_ps, load16_s1, lt16, _mm512_mask_storeu_ps) break;
    default: ROW_BODY(16, __m512, __mmask16, first16, _mm512_set1_ps, load16_s1, _mm512_add_ps, _mm512_mask_storeu_ps) break;
  }
}

#define AVX2 __attribute__((target("avx2")))
AVX2 static inline __m256i first8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
AVX2 static inline __m256 load8_s1(const float *p, __m256i m) { return _mm256_maskload_ps(p, m); }
AVX2 static inline void store8(float *p, __m256i m, __m256 v) { _mm256_maskstore_ps(p, m, v); }
AVX2 static inline __m256 gt8(__m256 acc, __m256 v) { return _mm256_max_ps(acc, v); }
AVX2 static inline __m256 lt8(__m256 acc, __m256 v) { return _mm256_max_ps(v, acc); }

AVX2 static void row_avx2_s1(const PoolJob *j, const float *x, float *y, int64_t oh) {
  switch (j->fold) {
    case FOLD_GT: ROW_BODY(8, __m256, __m256i, first8, _mm256_set1_ps, load8_s1, gt8, store8) break;
    case FOLD_LT: ROW_BODY(8, __m256, __m256i, first8, _mm256_set1_ps, load8_s1, lt8, store8) break;
    default: ROW_BODY(8, __m256, __m256i, first8, _mm256_set1_ps, load8_s1, _mm256_add_ps, store8) break;
  }
}

/* Window stride 2 with AVX2, for the windows of the common poolings (2x2, 3x3 and their clipped border bands, one
 * column of taps for a row pass), dilation 1: plain loops with the window's size a constant, which GCC vectorizes
 * along the row (two loads and a shufps per pair of taps). A loop written with intrinsics for any window (two loads, a
 * shuffle and a permute per tap) ran ResNet-18's 3x3 band 2.7x slower than this. */
#define FIXED_S2(KH_, KW_, EXPR)                                                                                \
  for (int64_t ow = 0; ow < j->OW; ++ow) {                                                                      \
    float acc = j->init;                                                                                        \
    for (int kh = 0; kh < KH_; ++kh)                                                                            \
      for (int kw = 0; kw < KW_; ++kw) {                                                                        \
        float v = x[(oh * j->sh + kh * j->dh) * j->xs[2] + ow * 2 + kw];                                        \
        acc = (EXPR);                                                                                           \
      }                                                                                                         \
    y[ow] = acc;                                                                                                \
  }
#define FIXED_FOLDS(KH_, KW_)                                                                                   \
  switch (j->fold) {                                                                                            \
    case FOLD_GT: FIXED_S2(KH_, KW_, acc > v ? acc : v) break;                                                  \
    case FOLD_LT: FIXED_S2(KH_, KW_, acc < v ? v : acc) break;                                                  \
    default: FIXED_S2(KH_, KW_, acc + v) break;                                                                 \
  }
#define FIXED_WINDOWS(X) X(1, 2) X(2, 2) X(3, 3) X(2, 3) X(3, 2) X(1, 3)

/* 1 when the window is one of FIXED_WINDOWS (and ran), else 0. */
AVX2 static int row_avx2_fixed_s2(const PoolJob *j, const float *x, float *y, int64_t oh) {
  if (j->dw != 1) return 0;
#define CASE(KH_, KW_)                    \
  if (j->KH == KH_ && j->KW == KW_) {     \
    FIXED_FOLDS(KH_, KW_)                 \
    return 1;                             \
  }
  FIXED_WINDOWS(CASE)
#undef CASE
  return 0;
}

/* Any strides, one output at a time (a host without AVX2, strided columns, a window stride above 2: pool_calls.py
 * leaves the last to the scalar loops of the generated code). */
#define ROW_SCALAR(EXPR)                                                                                \
  for (int64_t ow = 0; ow < j->OW; ++ow) {                                                              \
    float acc = j->init;                                                                                \
    for (int64_t kh = 0; kh < j->KH; ++kh) {                                                            \
      const float *tap = x + (oh * j->sh + kh * j->dh) * j->xs[2] + ow * j->sw * j->xs[3];              \
      for (int64_t kw = 0; kw < j->KW; ++kw, tap += j->dw * j->xs[3]) {                                 \
        float v = *tap;                                                                                 \
        acc = (EXPR);                                                                                   \
      }                                                                                                 \
    }                                                                                                   \
    y[ow * j->ys[3]] = acc;                                                                             \
  }

static void row_scalar(const PoolJob *j, const float *x, float *y, int64_t oh) {
  switch (j->fold) {
    case FOLD_GT: ROW_SCALAR(acc > v ? acc : v) break;
    case FOLD_LT: ROW_SCALAR(acc < v ? v : acc) break;
    default: ROW_SCALAR(acc + v) break;
  }
}

/* Output row `row` (n, c, oh flattened). */
static void pool_row(const PoolJob *j, int64_t row) {
  int64_t oh = row % j->OH, nc = row / j->OH, c = nc % j->C, b = nc / j->C;
  const float *x = j->x + b * j->xs[0] + c * j->xs[1];
  float *y = j->y + b * j->ys[0] + c * j->ys[1] + oh * j->ys[2];
  int vectors = j->xs[3] == 1 && j->ys[3] == 1 && (j->sw == 1 || j->sw == 2);
  if (vectors && j->isa == 16 && j->sw == 2 && j->dw == 1 && j->KW <= 32)
    row_avx512_s2(j, x, y, oh);
  else if (vectors && j->isa == 16 && j->sw == 1)
    row_avx512_s1(j, x, y, oh);
  else if (vectors && j->isa == 8 && j->sw == 1)
    row_avx2_s1(j, x, y, oh);
  else if (!(vectors && j->isa == 8 && row_avx2_fixed_s2(j, x, y, oh)))
    row_scalar(j, x, y, oh);
}

/* Part `part` of `parts`: an equal share of the rows, the larger shares first. */
static void pool_part(void *ctx, int64_t part) {
  const PoolJob *j = ctx;
  int64_t q = j->rows / j->parts, r = j->rows % j->parts;
  int64_t lo = part * q + (part < r ? part : r), hi = lo + q + (part < r);
  for (int64_t row = lo; row < hi; ++row) pool_row(j, row);
}

HCC_EXPORT void hcc_pool2d(int64_t x, int64_t y, int64_t N, int64_t C, int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t sh,
                           int64_t sw, int64_t dh, int64_t dw, int64_t x_n, int64_t x_c, int64_t x_h, int64_t x_w, int64_t y_n,
                           int64_t y_c, int64_t y_h, int64_t y_w, int64_t fold, int64_t init_bits) {
  PoolJob job = {(const float *)(intptr_t)x, (float *)(intptr_t)y, C, OH, OW, KH, KW, sh, sw, dh, dw,
                 {x_n, x_c, x_h, x_w}, {y_n, y_c, y_h, y_w}, (int)fold, hcc_get_isa(), 0.0f, N * C * OH, 1};
  uint32_t bits = (uint32_t)init_bits;
  memcpy(&job.init, &bits, sizeof bits);
  if (job.rows <= 0 || OW <= 0) return;
  int64_t threads = hcc_get_num_threads();
  if (threads > 1 && job.rows * OW * KH * KW >= MIN_PARALLEL_TAPS) job.parts = job.rows < 2 * threads ? job.rows : 2 * threads;
  hcc_parallel_for(job.parts, pool_part, &job);
}
