/* hcc CPU micro-kernels: C += A * B over strided views (matmul, batched matmul, Gemm, attention, LSTM gates)
 * and 2-D convolution as an implicit GEMM, on every core (threadpool.c).
 *
 * Why C and not MLIR transform scripts: the scripted schedules were fragile (a crashing script sent whole functions
 * to scalar loops) and single-threaded; a BLIS-style packed kernel is the approach of IREE's ukernels, MLAS and
 * XNNPACK. This file is compiled once per ISA (HCC_VL = 16: AVX-512F, 8: AVX2+FMA, 4: SSE2) with the same source;
 * ukernels_dispatch.c picks one per process by CPUID. GCC vector extensions keep one source for every width.
 *
 * The core problem is addressed through offset tables, so that one packing routine serves plain strides and the
 * implicit im2col of a convolution alike:
 *   A[m][k] = a[am[m] + ak[k]],  B[k][n] = b[bk[k] + bn[n]],  C[m][n] = c[m * c_sm + n * c_sn].
 * Blocking (BLIS): N in NC blocks, K in KC blocks (B packed into NR-wide panels), M in MC blocks (A packed into
 * MR-high panels), an MR x NR register tile of accumulators per micro-kernel call.
 *
 * Every entry writes C = clamp(init + A*B + residual) (Epilogue): the init (a constant, or a strided source such as
 * a broadcast bias) is applied by the first K block, the residual and the clamp by the last, so that a
 * convolution's bias, a following Relu/Clip and a residual Add cost no pass over memory of their own.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

#if HCC_VL == 16
#define SUFFIX avx512
#define MR 12
#define NR 32
#elif HCC_VL == 8
#define SUFFIX avx2
#define MR 6
#define NR 16
#elif HCC_VL == 4
#define SUFFIX sse2
#define MR 4
#define NR 8
#else
#error "HCC_VL must be 4, 8 or 16"
#endif

#define VL HCC_VL
#define NV (NR / VL)
#define KC 256
#define MC (MR * 16)
#define NC 4096
#define SMALL_M 4 /* at most this many rows: no packing, stream B (matrix-vector like) */
#define SMALL_M_KEPT 8 /* with B a bundle weight kept in small_m_panels' layout, up to this many rows */
#define DIRECT_MAX_K 128 /* at most this many rows of a B that is not a kept weight: read in place (gemm_block) */
#define AXPY_BLOCK 1024 /* columns of C updated per pass over B's rows in the small-M path (4 KiB per row) */
#define SMALL_B_BYTES (256 * 1024) /* a B block up to this size is read in column strips with register accumulators */
#ifndef DW_LANES_BELOW_OW /* depthwise planes narrower than this run VL channels at a time (dw_channel_block) */
#if VL >= 8 /* measured on a Xeon (AVX-512 and AVX2 builds): the lanes win up to 56-wide planes, by 2-5x at stride 2 */
#define DW_LANES_BELOW_OW 100
#else
#define DW_LANES_BELOW_OW 16
#endif
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef void (*hcc_task_fn)(void *ctx, int64_t task);
void hcc_parallel_for(int64_t tasks, hcc_task_fn fn, void *ctx);
int hcc_get_num_threads(void);

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* The first n (0 < n < VL) lanes only: a masked load (zeros after) and store; memory past them is not touched. */
static inline vf vload_n(const float *p, int64_t n) {
#if VL == 16 && defined(__AVX512F__) /* the 16-lane logic built for AVX2 (tests on hosts without it) copies */
  return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
#else
  vf v = {0};
  memcpy(&v, p, sizeof(float) * (size_t)n);
  return v;
#endif
}

static inline void vstore_n(float *p, vf v, int64_t n) {
#if VL == 16 && defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
#else
  memcpy(p, &v, sizeof(float) * (size_t)n);
#endif
}
/* One broadcast instruction (GCC turns the generic forms into an add or lane-by-lane inserts). */
static inline vf vsplat(float x) {
#if VL == 16 && defined(__AVX512F__)
  return (vf)_mm512_set1_ps(x);
#elif VL == 16 /* the 16-lane logic built for AVX2 (tests run it on hosts without AVX-512) */
  __m256 half = _mm256_set1_ps(x);
  vf v;
  memcpy(&v, &half, sizeof half);
  memcpy((char *)&v + sizeof half, &half, sizeof half);
  return v;
#elif VL == 8
  return (vf)_mm256_set1_ps(x);
#else
  return (vf)_mm_set1_ps(x);
#endif
}
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Part `part` of `parts` of n units: equal sizes within one unit, the larger parts first (the pool hands tasks out in
 * order, so the last ones to start are the short ones): ResNet's 56x56 maps are 33 pixel groups, which ceil(33 / 4)
 * split 9, 9, 9, 6 (one thread 18 of them, the other 15), now 9, 8, 8, 8. */
static inline void even_part(int64_t n, int64_t parts, int64_t part, int64_t *lo, int64_t *hi) {
  int64_t q = n / parts, r = n % parts;
  *lo = part * q + (part < r ? part : r);
  *hi = *lo + q + (part < r);
}

/* x86 max/min: `a > b ? a : b` (resp. <); when either is NaN the result is b, which sets the NaN rule of a clamp. */
#if VL == 16 && defined(__AVX512F__)
static inline vf vmax(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm512_min_ps((__m512)a, (__m512)b); }
#elif VL == 16
static inline vf vhalves(__m256 lo, __m256 hi) {
  vf v;
  memcpy(&v, &lo, sizeof lo);
  memcpy((char *)&v + sizeof lo, &hi, sizeof hi);
  return v;
}
static inline __m256 vhalf(vf v, int upper) {
  __m256 h;
  memcpy(&h, (char *)&v + (upper ? sizeof h : 0), sizeof h);
  return h;
}
static inline vf vmax(vf a, vf b) { return vhalves(_mm256_max_ps(vhalf(a, 0), vhalf(b, 0)), _mm256_max_ps(vhalf(a, 1), vhalf(b, 1))); }
static inline vf vmin(vf a, vf b) { return vhalves(_mm256_min_ps(vhalf(a, 0), vhalf(b, 0)), _mm256_min_ps(vhalf(a, 1), vhalf(b, 1))); }
#elif VL == 8
static inline vf vmax(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
#else
static inline vf vmax(vf a, vf b) { return (vf)_mm_max_ps((__m128)a, (__m128)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm_min_ps((__m128)a, (__m128)b); }
#endif

/* ------------------------------------------------------------------------------------------------ epilogue */

enum { INIT_IN_C = 0, INIT_CONSTANT = 1, INIT_SOURCE = 2 };
enum { CLAMP_NONE = 0, CLAMP_KEEP_NAN = 1, CLAMP_NAN_TO_BOUND = 2 };
enum { ACT_NONE = 0, ACT_GELU = 1, ACT_HARDSWISH = 2, ACT_SILU = 3 }; /* an activation after the residual, before the clamps (the hi mode's bits 4+) */

/* C = clamp(init + A*B + residual). Element (m, n) of the init source / residual is at ptr[m*sm + col(n)], where
 * col(n) = n*sn, or for a convolution's pixel index n (ow > 0 columns per row) (n/ow)*sh + (n%ow)*sn. */
typedef struct {
  int init_mode;
  float init_value;
  const float *init;
  int64_t init_sm, init_sn, init_sh;
  const float *res; /* NULL: no residual */
  int64_t res_sm, res_sn, res_sh;
  int lo_mode, hi_mode;
  float lo, hi;
  int act; /* ACT_* */
  int64_t ow; /* 0: columns are plain */
} Epilogue;

/* GELU with erf, x * (erf(x / sqrt 2) + 1) * 0.5, lane by lane, with the same arithmetic as the generated code's
 * (backends/cpu/math_approx.py): erf(x) = x * P(x^2) for |x| < 1 (Cephes), else Abramowitz & Stegun 7.1.26 with
 * exp(-x^2) by Cephes' range reduction, the sign copied back. Fused into a GEMM's write-out it costs nothing extra in
 * memory traffic: as its own elementwise pass it was 3% of a BERT encoder's run, on one thread. */
typedef int32_t vi32 __attribute__((vector_size(VL * 4)));
static inline vf vselect(vi32 mask, vf yes, vf no) { return (vf)((mask & (vi32)yes) | (~mask & (vi32)no)); }
/* The functions below work on n independent vectors at once (n a constant at each call): each step runs across all
 * n before the next, so n dependency chains interleave. One vector's GELU is a chain of some 40 dependent operations:
 * a vector at a time it ran at the chain's latency (BERT's 128 x 1024 GELU write-out took 0.65 ms on the EPYC, where
 * onnxruntime's Gelu takes 0.34); four at a time, 1.8x faster in a loop of its own and 29% within that write-out.
 * Each lane's arithmetic is the same whatever n. */
#define GELU_MAXN 4
static inline __attribute__((always_inline)) void vhorner_n(const int n, vf *restrict acc, const vf *restrict x, const float *c, int m) {
#pragma GCC unroll 4
  for (int q = 0; q < n; ++q) acc[q] = vsplat(c[0]);
  for (int i = 1; i < m; ++i)
#pragma GCC unroll 4
    for (int q = 0; q < n; ++q) acc[q] = acc[q] * x[q] + vsplat(c[i]);
}
/* exp(z) for z <= 0 (math_approx's exp without its overflow branch), in place. n = z / ln 2 rounded to nearest by the
 * 1.5 * 2^23 trick: the sum keeps n in its low mantissa bits, so n << 23 is its bit pattern shifted (no conversions;
 * math_approx's floor(z / ln 2 + 0.5) differs only on exact ties, where both reductions stay within |r| <= ln 2 / 2).
 * z >= -88.3762626647949 keeps n >= -127 (2^-127 built as +0). A NaN z gives a finite value: callers multiply by x. */
static inline __attribute__((always_inline)) void vexp_negative_n(const int n, vf *z) {
  static const float poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                                5.0000001201e-1f};
  const vf magic = vsplat(12582912.0f);
  vf r[GELU_MAXN], h[GELU_MAXN];
  vi32 k[GELU_MAXN];
#pragma GCC unroll 4
  for (int q = 0; q < n; ++q) {
    vf zq = vmax(z[q], vsplat(-88.3762626647949f));
    vf t = zq * vsplat(1.44269504088896341f) + magic;
    vf fx = t - magic;
    r[q] = zq - fx * vsplat(0.693359375f) - fx * vsplat(-2.12194440e-4f);
    k[q] = (vi32)t << 23;
  }
  vhorner_n(n, h, r, poly, 6);
#pragma GCC unroll 4
  for (int q = 0; q < n; ++q) z[q] = (h[q] * (r[q] * r[q]) + r[q] + vsplat(1.0f)) * (vf)(k[q] + (127 << 23));
}
static inline vf vrecip(vf d) {
#if VL == 16 && defined(__AVX512F__)
  vf t = (vf)_mm512_rcp14_ps((__m512)d); /* 14 bits, then one Newton step: 1/d within 2 ulp, a quarter of a division */
  return t * (vsplat(2.0f) - d * t);
#else
  return vsplat(1.0f) / d;
#endif
}
static inline __attribute__((always_inline)) void vgelu_n(const int n, vf *x) {
  static const float big[5] = {1.061405429f, -1.453152027f, 1.421413741f, -0.284496736f, 0.254829592f};
  static const float small[7] = {7.853861353153693e-5f, -8.010193625184903e-4f, 5.188327685732524e-3f, -2.685381193529856e-2f,
                                 1.128358514861418e-1f, -3.761262582423300e-1f, 1.128379165726710e0f};
  const vi32 sign = (vi32)vsplat(-0.0f);
  vf s[GELU_MAXN], a[GELU_MAXN], t[GELU_MAXN], ex[GELU_MAXN], s2[GELU_MAXN], pb[GELU_MAXN], ps[GELU_MAXN];
#pragma GCC unroll 4
  for (int q = 0; q < n; ++q) { /* erf(s) for s = x / sqrt 2 */
    s[q] = x[q] * vsplat(0.70710678118654752f);
    a[q] = (vf)((vi32)s[q] & ~sign);
    t[q] = vrecip(vsplat(1.0f) + a[q] * vsplat(0.3275911f));
    ex[q] = vsplat(0.0f) - a[q] * a[q];
    s2[q] = s[q] * s[q];
  }
  vexp_negative_n(n, ex);
  vhorner_n(n, pb, t, big, 5);
  vhorner_n(n, ps, s2, small, 7);
#pragma GCC unroll 4
  for (int q = 0; q < n; ++q) {
    vf y = vsplat(1.0f) - pb[q] * t[q] * ex[q];
    y = (vf)(((vi32)y & ~sign) | ((vi32)s[q] & sign));
    vf erf = vselect((vi32)(a[q] < vsplat(1.0f)), s[q] * ps[q], y);
    x[q] = x[q] * (erf + vsplat(1.0f)) * vsplat(0.5f);
  }
}
/* Not inlined: inside a micro-kernel its temporaries made the compiler keep fewer accumulators in registers across
 * the k loop (every GEMM 5% slower, GELU or not). */
static __attribute__((noinline)) vf vgelu(vf x) {
  vgelu_n(1, &x);
  return x;
}
/* GELU in place over mr rows of nr floats (c_sm apart), GELU_MAXN whole vectors at a time across the rows (a GEMM
 * tile's row holds NR / VL of them), then the rest one vector at a time. */
static __attribute__((noinline)) void gelu_rows(float *c, int64_t c_sm, int64_t mr, int64_t nr) {
  int64_t full = nr / VL;
  float *at[GELU_MAXN];
  int n = 0;
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < full; ++j) {
      at[n++] = c + i * c_sm + j * VL;
      if (n < GELU_MAXN) continue;
      vf x[GELU_MAXN];
#pragma GCC unroll 4
      for (int q = 0; q < GELU_MAXN; ++q) x[q] = vload(at[q]);
      vgelu_n(GELU_MAXN, x);
#pragma GCC unroll 4
      for (int q = 0; q < GELU_MAXN; ++q) vstore(at[q], x[q]);
      n = 0;
    }
  for (int q = 0; q < n; ++q) vstore(at[q], vgelu(vload(at[q])));
  if (nr > full * VL)
    for (int64_t i = 0; i < mr; ++i) {
      float *tail = c + i * c_sm + full * VL;
      vstore_n(tail, vgelu(vload_n(tail, nr - full * VL)), nr - full * VL);
    }
}


static inline int64_t col_offset(int64_t n, int64_t ow, int64_t sn, int64_t sh) {
  return ow && sh != ow * sn ? (n / ow) * sh + (n % ow) * sn : n * sn;
}

/* Whether the source's columns are `n * sn` with sn 0 or 1 (a vector load or a broadcast per row). */
static inline int vector_columns(int64_t ow, int64_t sn, int64_t sh) { return (sn == 0 || sn == 1) && (!ow || sh == ow * sn); }

static inline float epi_init(const Epilogue *e, float c, int64_t m, int64_t n) {
  if (e->init_mode == INIT_CONSTANT) return e->init_value;
  if (e->init_mode == INIT_SOURCE) return e->init[m * e->init_sm + col_offset(n, e->ow, e->init_sn, e->init_sh)];
  return c;
}

/* HardSwish as ONNX defines it, x * max(0, min(1, x / 6 + 0.5)) (MobileNetV3's activation; onnxruntime's arithmetic):
 * NaN stays NaN, -inf gives NaN (-inf * 0). Cheap enough for every kernel's write-out (vclamp), convolutions too. */
static inline vf vhardswish(vf x) {
  return x * vmax(vsplat(0.0f), vmin(vsplat(1.0f), x * vsplat(1.0f / 6.0f) + vsplat(0.5f)));
}

/* SiLU (Swish), x * sigmoid(x) (EfficientNet's and YOLO's activation): with e = exp(-|x|) <= 1 (no overflow), sigmoid
 * is 1 / (1 + e) for x >= 0 and e / (1 + e) below. As the generated code's x / (1 + exp(-x)) within a few ulp; NaN
 * stays NaN, -inf gives NaN (-inf * 0), a large negative x -0. Not inlined (see vgelu); one call per vector. */
static __attribute__((noinline)) vf vsilu(vf x) {
  vf e = (vf)((vi32)x | (vi32)vsplat(-0.0f)); /* -|x| */
  vexp_negative_n(1, &e);
  vf r = vrecip(vsplat(1.0f) + e);
  return x * vselect((vi32)(x >= vsplat(0.0f)), r, e * r);
}

static inline float epi_finish(const Epilogue *e, float v, int64_t m, int64_t n) {
  if (e->res) v += e->res[m * e->res_sm + col_offset(n, e->ow, e->res_sn, e->res_sh)];
  if (e->act == ACT_GELU) v = vgelu(vsplat(v))[0];
  if (e->act == ACT_HARDSWISH) v = vhardswish(vsplat(v))[0];
  if (e->act == ACT_SILU) v = vsilu(vsplat(v))[0];
  if (e->lo_mode == CLAMP_KEEP_NAN) v = v < e->lo ? e->lo : v;
  else if (e->lo_mode == CLAMP_NAN_TO_BOUND) v = v >= e->lo ? v : e->lo;
  if (e->hi_mode == CLAMP_KEEP_NAN) v = v > e->hi ? e->hi : v;
  else if (e->hi_mode == CLAMP_NAN_TO_BOUND) v = v <= e->hi ? v : e->hi;
  return v;
}

static inline vf vclamp(const Epilogue *e, vf v) {
  if (e->lo_mode == CLAMP_KEEP_NAN) v = vmax(vsplat(e->lo), v);
  else if (e->lo_mode == CLAMP_NAN_TO_BOUND) v = vmax(v, vsplat(e->lo));
  if (e->hi_mode == CLAMP_KEEP_NAN) v = vmin(vsplat(e->hi), v);
  else if (e->hi_mode == CLAMP_NAN_TO_BOUND) v = vmin(v, vsplat(e->hi));
  return v;
}

/* HardSwish (the cheap activation) or SiLU (a call), any kernel, then the clamps: the convolutions' last step on their
 * output values.
 * Not in vclamp: the GEMM micro-kernel's write-out clamps in place and leaves an activation to act_rows, and the
 * extra code in it cost BERT-sized GEMMs 2% (the register allocation of the accumulators, as vgelu's did). */
static inline vf vclamp_act(const Epilogue *e, vf v) {
  return vclamp(e, e->act == ACT_HARDSWISH ? vhardswish(v) : e->act == ACT_SILU ? vsilu(v) : v);
}

/* The activation, then the clamps: GELU for a GEMM's output, HardSwish or SiLU for any kernel's. */
static inline vf vfinish(const Epilogue *e, vf v) { return e->act == ACT_GELU ? vclamp(e, vgelu(v)) : vclamp_act(e, v); }

/* The init for paths that accumulate into C (small M, depthwise): write it over the region first. */
static void region_prologue(const Epilogue *e, float *c, int64_t c_sm, int64_t c_sn, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (e->init_mode == INIT_IN_C) return;
  int vec = c_sn == 1 && (e->init_mode == INIT_CONSTANT || vector_columns(e->ow, e->init_sn, e->init_sh));
  for (int64_t m = m0; m < m1; ++m) {
    int64_t n = n0;
    if (vec) { /* a bias, or a row of a source: 512 scalar stores were a tenth of a 512 x 128 matrix-vector product */
      const float *init = e->init_mode == INIT_SOURCE ? e->init + m * e->init_sm : NULL;
      for (; n + VL <= n1; n += VL)
        vstore(c + m * c_sm + n, !init ? vsplat(e->init_value) : e->init_sn ? vload(init + n) : vsplat(init[0]));
    }
    for (; n < n1; ++n) c[m * c_sm + n * c_sn] = epi_init(e, 0.0f, m, n);
  }
}

/* Residual and clamp for those paths, after the accumulation. */
static void region_epilogue(const Epilogue *e, float *c, int64_t c_sm, int64_t c_sn, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (!e->res && e->lo_mode == CLAMP_NONE && e->hi_mode == CLAMP_NONE && e->act == ACT_NONE) return;
  for (int64_t m = m0; m < m1; ++m) {
    float *row = c + m * c_sm;
    int64_t n = n0;
    if (c_sn == 1 && (!e->res || (e->res_sn == 1 && vector_columns(e->ow, 1, e->res_sh)))) {
      const float *res = e->res ? e->res + m * e->res_sm : NULL;
      for (; n + VL <= n1; n += VL) {
        vf v = vload(row + n);
        if (res) v += vload(res + n);
        vstore(row + n, vfinish(e, v));
      }
    }
    for (; n < n1; ++n) row[n * c_sn] = epi_finish(e, row[n * c_sn], m, n);
  }
}

typedef struct {
  const float *a, *b;
  float *c;
  int64_t M, N, K;
  const int64_t *am, *ak, *bk, *bn; /* offset tables (elements) */
  int64_t c_sm, c_sn;
  int linear; /* plain strided matrices: the strides below are valid (the small-M path uses them, no tables) */
  int64_t a_sm, a_sk, b_sk, b_sn;
  int64_t lda; /* > 0: A's rows are contiguous along k, lda apart (the packed path reads A in place) */
  int64_t kc;      /* > 0: the packed path's K block instead of KC (a run of lda_run below) */
  int64_t lda_run; /* > 0 (lda 0): within each K block of kc, A's rows are contiguous along k, lda_run apart, the
                      block's first column at ak[pc]: the path reads A in place block by block */
  int bf16; /* products in bfloat16 with fp32 sums (AMX tiles where the CPU has them; else fp32) */
  int split; /* with bf16: bf16x3, each operand as a sum of two bfloat16 halves (amx_block) */
  int int8;  /* with bf16: int8 products, int32 sums (amx_block_int8): A quantized per tensor, kept B per column */
  float a_scale; /* int8: A's quantization step (calibrated at compile time) */
  int a_signed;  /* int8: A as int8 (else uint8: a non-negative tensor) */
  Epilogue e; /* pointers offset for this batch entry */
  /* implicit zero padding of a convolution's input (pad_h == NULL: none): B[k][n] is zero unless
   * 0 <= pad_h[n] + k_h[k] < H and 0 <= pad_w[n] + k_w[k] < W */
  const int64_t *pad_h, *pad_w, *k_h, *k_w;
  int64_t H, W;
  const float *packed_b; /* B (a bundle weight) packed once (packed_weights): KC-block panels, or for a few-row
                            product NR-column panels of all K rows (small_m_panels); NULL: B read in place */
  const uint16_t *packed_a16; /* A (a convolution's constant filters) as the bf16 tiles' rows, every row (amx_block) */
  const uint16_t *packed_b16; /* B (a GEMM's constant weight) as the bf16 tiles' column-pair panels, all (amx_block) */
  int b16_nonfinite;          /* bf16x3: packed_b16 holds a value without a finite bf16 high half (amx_block) */
  const int8_t *packed_b8;    /* int8: the kept weight's int8 tile panels (amx_pack_b8_all) */
  const float *b8_scales;     /* int8: its per-column quantization steps */
  int b8_nonfinite;           /* int8: the weight holds an Inf or NaN (then fp32) */
} Problem;

/* ------------------------------------------------------------------------------------------------ packing */

/* VL input columns starting at `in`, taken every `sw` (1 or 2: deinterleave two vectors). */
static inline vf strided_load(const float *in, int64_t sw) {
  if (sw == 1) return vload(in);
  typedef int32_t vi __attribute__((vector_size(VL * 4)));
#if VL == 16
  const vi even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
#elif VL == 8
  const vi even = {0, 2, 4, 6, 8, 10, 12, 14};
#else
  const vi even = {0, 2, 4, 6};
#endif
  return __builtin_shuffle(vload(in), vload(in + VL), even);
}


static void pack_a(const Problem *p, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float *restrict out) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    int64_t mr = min64(MR, mc - i0);
    for (int64_t i = 0; i < MR; ++i) {
      if (i < mr) {
        const float *row = p->a + p->am[m0 + i0 + i];
        const int64_t *ak = p->ak + k0;
        for (int64_t k = 0; k < kc; ++k) out[k * MR + i] = row[ak[k]];
      } else {
        for (int64_t k = 0; k < kc; ++k) out[k * MR + i] = 0.0f;
      }
    }
    out += MR * kc;
  }
}

/* dst[t] = src[t * step] for lo <= t < hi, 0 for the other t < n: one run of a packed panel (pixels of one output
 * row). Only src[lo*step .. (hi-1)*step] is read: the rest may lie outside the input. Unit steps use masked vector
 * loads (a masked-off lane never faults), so a short run near the padding costs a vector or two, not a loop. */
static inline void copy_run(float *restrict dst, const float *restrict src, int64_t n, int64_t lo, int64_t hi, int64_t step) {
#if defined(__AVX512F__)
  if (step == 1) {
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
      int64_t cnt = min64(16, n - t0), a = lo - t0 > 0 ? lo - t0 : 0, b = min64(hi - t0, cnt);
      __mmask16 keep = (__mmask16)((1u << cnt) - 1u);
      __mmask16 read = b > a ? (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u)) : 0;
      _mm512_mask_storeu_ps(dst + t0, keep, _mm512_maskz_loadu_ps(read, src + t0));
    }
    return;
  }
#elif defined(__AVX2__)
  if (step == 1) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t t0 = 0; t0 < n; t0 += 8) {
      int64_t cnt = min64(8, n - t0), a = lo - t0 > 0 ? lo - t0 : 0, b = min64(hi - t0, cnt);
      __m256i read = _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32((int)a - 1)),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32((int)b), lane));
      __m256 v = _mm256_maskload_ps(src + t0, read);
      if (cnt == 8)
        _mm256_storeu_ps(dst + t0, v);
      else
        _mm256_maskstore_ps(dst + t0, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cnt), lane), v);
    }
    return;
  }
#endif
  int64_t t = 0;
  for (; t < lo; ++t) dst[t] = 0.0f;
  for (; t < hi; ++t) dst[t] = src[t * step];
  for (; t < n; ++t) dst[t] = 0.0f;
}

/* pack_b for a convolution (other than a plain 1x1 one), read through implicit padding. A panel's pixels fall into
 * runs of one output row; per k, a whole in-bounds run of NR pixels is one vector copy (stride 1) or a deinterleave
 * (stride 2); other runs are cut at the input's edges once and copied with copy_run. */
static void pack_b_padded(const Problem *p, int64_t n0, int64_t nc, int64_t k0, int64_t kc, float *restrict out) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    int64_t nr = min64(NR, nc - j0), first = n0 + j0;
    const int64_t *bn = p->bn + first, *ph = p->pad_h + first, *pw = p->pad_w + first;
    int64_t step = nr > 1 ? bn[1] - bn[0] : 1;
    int one_row = nr == NR && ph[0] == ph[NR - 1] && (step == 1 || step == 2) && bn[NR - 1] - bn[0] == step * (NR - 1);
    int64_t start[NR + 1], runs = 0; /* run r covers pixels [start[r], start[r+1]) of the panel */
    for (int64_t j = 0; j < nr; ++j)
      if (j == 0 || ph[j] != ph[j - 1]) start[runs++] = j;
    start[runs] = nr;
    for (int64_t k = 0; k < kc; ++k) {
      int64_t kh = p->k_h[k0 + k], kw = p->k_w[k0 + k];
      const float *row = p->b + p->bk[k0 + k];
      float *dst = out + k * NR;
      int64_t ih = ph[0] + kh, left = pw[0] + kw, right = pw[NR - 1] + kw;
      if (one_row && ih >= 0 && ih < p->H && left >= 0 && right + step - 1 < p->W) {
        for (int j = 0; j < NV; ++j) vstore(dst + j * VL, strided_load(row + bn[0] + j * VL * step, step));
        continue;
      }
      for (int64_t r = 0; r < runs; ++r) {
        int64_t j = start[r], n = start[r + 1] - j, h = ph[j] + kh;
        int64_t w0 = pw[j] + kw, sw = n > 1 ? pw[j + 1] - pw[j] : 1, ss = n > 1 ? bn[j + 1] - bn[j] : 1;
        int64_t lo = 0, hi = 0; /* pixels t of the run with 0 <= w0 + t*sw < W */
        if (h >= 0 && h < p->H && w0 + (n - 1) * sw >= 0 && w0 < p->W) {
          if (sw == 1) /* (no division: an idiv per run was a sixth of the packing) */
            lo = w0 >= 0 ? 0 : -w0, hi = min64(n, p->W - w0);
          else
            lo = w0 >= 0 ? 0 : (-w0 + sw - 1) / sw, hi = min64(n, (p->W - 1 - w0) / sw + 1);
        }
        copy_run(dst + j, row + bn[j], n, lo, hi > lo ? hi : lo, ss);
      }
      for (int64_t q = nr; q < NR; ++q) dst[q] = 0.0f;
    }
    out += NR * kc;
  }
}

#if VL >= 8
static void pack_b_columns(const float *base, const int64_t *bn, int64_t kc, float *restrict out);
#endif

static void pack_b(const Problem *p, int64_t n0, int64_t nc, int64_t k0, int64_t kc, float *restrict out) {
  if (p->pad_h) {
    pack_b_padded(p, n0, nc, k0, kc, out);
    return;
  }
  int k_unit = 1; /* this K block's rows are consecutive floats of each column */
  for (int64_t k = 1; k < kc && k_unit; ++k) k_unit = p->bk[k0 + k] == p->bk[k0] + k;
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    int64_t nr = min64(NR, nc - j0);
    const int64_t *bn = p->bn + n0 + j0;
    const int64_t *bk = p->bk + k0;
#if VL >= 8
    if (nr == NR && k_unit && bn[NR - 1] - bn[0] != NR - 1) {
      pack_b_columns(p->b + bk[0], bn, kc, out);
      out += NR * kc;
      continue;
    }
#endif
    if (nr == NR && bn[NR - 1] - bn[0] == NR - 1) { /* NR consecutive floats per k: one vector copy */
      const float *base = p->b + bn[0];
      for (int64_t k = 0; k < kc; ++k)
        for (int j = 0; j < NV; ++j) vstore(out + k * NR + j * VL, vload(base + bk[k] + j * VL));
    } else {
      int64_t start[NR + 1], runs = 0; /* runs of consecutive floats (a panel across output rows: a few) */
      for (int64_t j = 0; j < nr; ++j)
        if (j == 0 || bn[j] != bn[j - 1] + 1) start[runs++] = j;
      start[runs] = nr;
      for (int64_t k = 0; k < kc; ++k) {
        const float *row = p->b + bk[k];
        float *dst = out + k * NR;
        if (runs <= NR / 8)
          for (int64_t r = 0; r < runs; ++r) copy_run(dst + start[r], row + bn[start[r]], start[r + 1] - start[r], 0, start[r + 1] - start[r], 1);
        else
          for (int64_t j = 0; j < nr; ++j) dst[j] = row[bn[j]];
        for (int64_t j = nr; j < NR; ++j) dst[j] = 0.0f;
      }
    }
    out += NR * kc;
  }
}

/* ------------------------------------------------------------------------------------------------ kernel */

/* A finished tile's activation and clamps, in place (mr rows of nr floats, c_sm apart): out of the micro-kernel,
 * whose accumulators are dead by then. */
static __attribute__((noinline)) void act_rows(const Epilogue *e, float *c, int64_t c_sm, int64_t mr, int64_t nr) {
  if (e->act == ACT_GELU) gelu_rows(c, c_sm, mr, nr);
  if (e->lo_mode == CLAMP_NONE && e->hi_mode == CLAMP_NONE && e->act != ACT_HARDSWISH && e->act != ACT_SILU) return;
  for (int64_t i = 0; i < mr; ++i) {
    float *row = c + i * c_sm;
    int64_t j = 0;
    for (; j + VL <= nr; j += VL) vstore(row + j, vclamp_act(e, vload(row + j)));
    if (j < nr) vstore_n(row + j, vclamp_act(e, vload_n(row + j, nr - j)), nr - j);
  }
}

/* C[0:mr, 0:nr] (+)= A (MR x kc: element (i, k) at ap[i*ais + k*aks]: a packed panel (1, MR) or MR rows of the
 * matrix itself (lda, 1)) * B (kc rows of NR floats, `ldb` apart: NR for a packed panel).
 * `prefetch`: also fetch the kc x NR floats at pf towards L2 (the next kept panel, see gemm_block).
 * `first`: this K block starts the sum (from the epilogue's init); `last`: it ends it (residual and clamp).
 * (row, col): the tile's position in C, for the epilogue's sources. */
static inline __attribute__((always_inline)) void micro_kernel_nv(const int rows, const int nv, const int by_offset, const int prefetch, int64_t kc, const float *restrict ap, int64_t ais, int64_t aks, const float *restrict bp, int64_t ldb,
                         const int64_t *restrict koff, float *restrict c, int64_t c_sm, int64_t c_sn, int64_t mr, int64_t nr, const Epilogue *e, int64_t row,
                         int64_t col, int first, int last, const float *pf) {
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < rows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < nv; ++j) acc[i][j] = (vf){0};
  for (int64_t k = 0; k < kc; ++k) {
    vf b[NV];
    const float *brow = by_offset ? bp + koff[k] : bp; /* row k of B is bp + koff[k] (direct convolution) */
#pragma GCC unroll 4
    for (int j = 0; j < nv; ++j) b[j] = vload(brow + j * VL);
#pragma GCC unroll 4
    for (int j = 0; j < nv && prefetch; ++j) __builtin_prefetch(pf + k * NR + j * VL, 0, 2);
#pragma GCC unroll 16
    for (int i = 0; i < rows; ++i) {
      vf a = vsplat(ap[i * ais]);
#pragma GCC unroll 4
      for (int j = 0; j < nv; ++j) acc[i][j] += a * b[j];
    }
    ap += aks;
    if (!by_offset) bp += ldb;
  }
  int from_c = !first || e->init_mode == INIT_IN_C;
  int init_vec = from_c || e->init_mode == INIT_CONSTANT || vector_columns(e->ow, e->init_sn, e->init_sh);
  int res_vec = !last || !e->res || vector_columns(e->ow, e->res_sn, e->res_sh);
  if (c_sn == 1 && init_vec && res_vec) { /* whole vectors of each row; a partial tile's last columns masked */
    int act = last && e->act; /* applied to the stored rows afterwards (act_rows): not in the accumulators' loop */
    int clamp = last && (e->lo_mode || e->hi_mode) && !act;
    int full = nr == nv * VL ? nv : (int)(nr / VL);
#pragma GCC unroll 16
    for (int i = 0; i < rows; ++i) {
      if (i >= mr) break;
      float *crow = c + i * c_sm;
      const float *init = !from_c && e->init_mode == INIT_SOURCE ? e->init + (row + i) * e->init_sm + col * e->init_sn : NULL;
      const float *res = last && e->res ? e->res + (row + i) * e->res_sm + col * e->res_sn : NULL;
#pragma GCC unroll 4
      for (int j = 0; j < nv; ++j) {
        if (j >= full) break;
        vf v = from_c ? vload(crow + j * VL) : !init ? vsplat(e->init_value) : e->init_sn ? vload(init + j * VL) : vsplat(init[0]);
        v += acc[i][j];
        if (res) v += e->res_sn ? vload(res + j * VL) : vsplat(res[0]);
        vstore(crow + j * VL, clamp ? vclamp(e, v) : v);
      }
      int64_t tail = nr - (int64_t)full * VL; /* a partial last vector */
      if (tail > 0) {
        int64_t q = (int64_t)full * VL;
        vf v = from_c ? vload_n(crow + q, tail) : !init ? vsplat(e->init_value) : e->init_sn ? vload_n(init + q, tail) : vsplat(init[0]);
        v += acc[i][full];
        if (res) v += e->res_sn ? vload_n(res + q, tail) : vsplat(res[0]);
        vstore_n(crow + q, clamp ? vclamp(e, v) : v, tail);
      }
    }
    if (act) act_rows(e, c, c_sm, mr, nr);
    return;
  }
  float tile[MR * NR];
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < nv; ++j) vstore(tile + i * NR + j * VL, acc[i][j]);
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      float *out = c + i * c_sm + j * c_sn;
      float v = (from_c ? *out : epi_init(e, 0.0f, row + i, col + j)) + tile[i * NR + j];
      *out = last ? epi_finish(e, v, row + i, col + j) : v;
    }
}

/* The tile for mr rows: MR, or 8 or 4 when a last row block is that short (a 16-filter convolution would
 * otherwise spend a third of its FMAs on zero rows); full width, or half width for a last panel of at most NR/2
 * columns (a 7x7 map's 49th pixel would otherwise cost a full NR-column tile). koff: B rows through an offset
 * table (direct convolution), else ldb apart. */
#define TILE_ROWS(mr, call) \
  do {                      \
    if ((mr) <= 4 && MR > 4) \
      call(4);              \
    else if ((mr) <= 8 && MR > 8) \
      call(8);              \
    else                    \
      call(MR);             \
  } while (0)

/* One dispatcher for both B layouts; by_offset is a constant at each caller, so each gets its own tiles. */
static inline __attribute__((always_inline)) void micro_tile(const int by_offset, const int prefetch, int64_t kc, const float *restrict ap, int64_t ais,
                                                             int64_t aks, const float *restrict bp, int64_t ldb,
                                                             const int64_t *restrict koff, float *restrict c, int64_t c_sm,
                                                             int64_t c_sn, int64_t mr, int64_t nr, const Epilogue *e, int64_t row,
                                                             int64_t col, int first, int last, const float *pf) {
#define FULL(R) micro_kernel_nv(R, NV, by_offset, prefetch, kc, ap, ais, aks, bp, ldb, koff, c, c_sm, c_sn, mr, nr, e, row, col, first, last, pf)
#define HALF(R) micro_kernel_nv(R, NV / 2, by_offset, prefetch, kc, ap, ais, aks, bp, ldb, koff, c, c_sm, c_sn, mr, nr, e, row, col, first, last, pf)
#if NV >= 2
  if (nr <= (NV / 2) * VL) {
    TILE_ROWS(mr, HALF);
    return;
  }
#endif
  TILE_ROWS(mr, FULL);
#undef FULL
#undef HALF
}

static void micro_kernel(int64_t kc, const float *restrict ap, int64_t ais, int64_t aks, const float *restrict bp, int64_t ldb,
                         float *restrict c, int64_t c_sm, int64_t c_sn, int64_t mr, int64_t nr, const Epilogue *e, int64_t row,
                         int64_t col, int first, int last, const float *pf) {
  if (pf)
    micro_tile(0, 1, kc, ap, ais, aks, bp, ldb, NULL, c, c_sm, c_sn, mr, nr, e, row, col, first, last, pf);
  else
    micro_tile(0, 0, kc, ap, ais, aks, bp, ldb, NULL, c, c_sm, c_sn, mr, nr, e, row, col, first, last, NULL);
}

/* The same tiles with B read in place from a zero-padded input: row k of the tile's B is bp + koff[k]. */
static void micro_kernel_direct(int64_t kc, const float *restrict ap, int64_t ais, int64_t aks, const float *restrict bp,
                                const int64_t *restrict koff, float *restrict c, int64_t c_sm, int64_t mr, int64_t nr,
                                const Epilogue *e, int64_t row, int64_t col, int first, int last) {
  micro_tile(1, 0, kc, ap, ais, aks, bp, 0, koff, c, c_sm, 1, mr, nr, e, row, col, first, last, NULL);
}

/* Per-thread scratch buffers, grown on demand and kept (a model calls the same sizes every time); 64-byte aligned.
 * NULL when out of memory. */
typedef struct {
  float *data;
  size_t capacity; /* floats */
} Scratch;

static float *scratch(Scratch *s, size_t floats) {
  if (floats > s->capacity) {
    free(s->data);
    s->data = aligned_alloc(64, ((floats * 4 + 63) / 64) * 64);
    s->capacity = s->data ? floats : 0;
  }
  return s->data;
}

static __thread Scratch pack_scratch; /* the packing buffers of gemm_block and the filter rows of direct convs */

static float *buffer(size_t floats) { return scratch(&pack_scratch, floats); }


/* ------------------------------------------------------------------------------------------------ bf16 (AMX) */

static void gemm_block_fp32(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

/* Compiled into the AVX-512 build by any GCC >= 11 or clang >= 12 (a target pragma, so no build flag is needed);
 * run only where amx_ready() says the CPU and the kernel allow it. */
#if VL == 16 && defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#pragma GCC push_options
#pragma GCC target("avx512bw,avx512bf16,avx512vnni,amx-tile,amx-bf16,amx-int8")
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HCC_AMX 1
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define AMX_MB 32 /* rows of C per block: two 16-row A tiles */

/* Whether CPUID leaf 7, sub-leaf `sub`, sets bit `bit` of register `reg` (0: EAX, 1: EBX, 2: ECX, 3: EDX). */
static int cpuid7_bit(unsigned sub, int reg, int bit) {
  unsigned r[4];
  return __get_cpuid_count(7, sub, &r[0], &r[1], &r[2], &r[3]) && (r[reg] & (1u << bit));
}

/* `static int NAME(void)`: whether ASK holds, asked once per process (a CPUID in a VM exits to the hypervisor, and
 * the kernels ask on every call). */
#define ASKED_ONCE(NAME, ASK)                                    \
  static int NAME(void) {                                        \
    static _Atomic int state; /* 0: not asked yet, 1: yes, -1: no */ \
    int s = state;                                               \
    if (!s) {                                                    \
      s = (ASK) ? 1 : -1;                                        \
      state = s;                                                 \
    }                                                            \
    return s > 0;                                                \
  }

/* Whether this process may run AMX bf16 tiles: CPUID says AMX-TILE and AMX-BF16 (7.0:EDX bits 24 and 22), and Linux
 * grants the tile data state (arch_prctl). A CPU or kernel without them keeps the fp32 kernels. */
ASKED_ONCE(amx_ready, cpuid7_bit(0, 3, 22) && cpuid7_bit(0, 3, 24) &&
                          syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)

/* Whether this CPU has AVX512-BF16's dot products (CPUID.7.1:EAX bit 5): without AMX, bf16 products run on
 * vdpbf16ps (dp_panel), which does a pair of bf16 products per fp32 lane in the time of one fp32 FMA (measured on
 * an AMD EPYC (Zen 4): 233 vs 117 GFLOP/s at 1 thread, a dependency-free loop). */
ASKED_ONCE(dp_ready, cpuid7_bit(1, 0, 5))

/* Whether this CPU has AVX512-VNNI (CPUID.7.0:ECX bit 11): without AMX, int8 products run on vpdpbusd (vnni_panel),
 * 64 byte products per instruction, 4x an fp32 FMA's 16. */
ASKED_ONCE(vnni_ready, cpuid7_bit(0, 2, 11))

/* ... and AMX-INT8 too (CPUID.7.0:EDX bit 25). */
ASKED_ONCE(amx_int8_ready, amx_ready() && cpuid7_bit(0, 3, 25))

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) TileConfig;

static void amx_configure(void) { /* tiles 0-3: C (16 x 16 fp32), 4-5: A (16 x 32 bf16), 6-7: B (16 pairs x 16) */
  TileConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  _tile_loadconfig(&cfg);
}

/* 16 floats -> 16 bfloat16 (round to nearest even, NaN stays NaN) */
static inline __m256i bf16x16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }

/* 16 columns of two rows as the tiles' bfloat16 pairs: x0 y0 x1 y1 ... x15 y15 (64 bytes, one B tile row's half). */
static inline __m512i bf16_pairs(__m512 x, __m512 y) {
  static const short order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                  8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_loadu_si512(order), _mm512_inserti64x4(_mm512_castsi256_si512(bf16x16(x)), bf16x16(y), 1));
}

/* bf16x3 (Problem.split): x = hi + lo, hi = bf16(x), lo = bf16(x - hi); the kernel sums hi*hi + hi*lo + lo*hi, whose
 * error is about 2^-16 of each product (plain bf16: 2^-8). `lo` of 16 floats and whether any `hi` is not finite
 * (an Inf or NaN operand, or a float past bf16's range: then x - hi is NaN and hi * lo could be Inf * 0; the caller
 * computes such a block in fp32 instead, so Inf and NaN propagate exactly as in fp32). */
static inline __m256i bf16_lo16(__m512 x, __m256i hi, int *nonfinite) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000);
  __m512i bits = _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16);
  *nonfinite |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, exponent), exponent) != 0; /* Inf or NaN */
  return bf16x16(_mm512_sub_ps(x, _mm512_castsi512_ps(bits)));
}

/* Rows [m0, m0 + rows) of A as bfloat16, Kp (K rounded up to 32) per row, zeros past K and past the last row; with
 * `lo` (bf16x3) their low halves too, laid out alike. Returns 0 when a high half is not finite (bf16_lo16). */
static int amx_pack_a(const Problem *p, int64_t m0, int64_t rows, int64_t Kp, uint16_t *restrict out, uint16_t *restrict lo) {
  int64_t padded = ((rows + AMX_MB - 1) / AMX_MB) * AMX_MB;
  int nonfinite = 0;
  for (int64_t i = 0; i < padded; ++i) {
    uint16_t *dst = out + i * Kp, *dlo = lo ? lo + i * Kp : NULL;
    int64_t k = 0;
    if (i < rows) {
      const float *row = p->a + p->am[m0 + i];
      /* rows contiguous along k, or runs of kc (a multiple of 16) contiguous floats: attention's heads side by side,
         whose output projection packed A one float at a time: BERT h768's took 0.92 ms in bf16x3, 0.35 ms after) */
      if (p->lda || p->kc)
        for (; k + 16 <= p->K; k += 16) {
          __m512 x = _mm512_loadu_ps(row + (p->lda ? k : p->ak[k]));
          __m256i h = bf16x16(x);
          _mm256_storeu_si256((__m256i *)(dst + k), h);
          if (dlo) _mm256_storeu_si256((__m256i *)(dlo + k), bf16_lo16(x, h, &nonfinite));
        }
      for (; k < p->K; ++k) {
        __m512 x = _mm512_set1_ps(row[p->ak[k]]);
        __m256i h = bf16x16(x);
        dst[k] = (uint16_t)_mm256_extract_epi16(h, 0);
        if (dlo) dlo[k] = (uint16_t)_mm256_extract_epi16(bf16_lo16(x, h, &nonfinite), 0);
      }
    }
    for (; k < Kp; ++k) {
      dst[k] = 0;
      if (dlo) dlo[k] = 0;
    }
  }
  return !nonfinite;
}

/* One packed fp32 panel of B (K rows of NR = 32 columns) as bfloat16 pairs for the tiles: row kp holds, for each of
 * the 32 columns, B[2kp][n] and B[2kp + 1][n] (128 bytes); rows past K are zeros. With `lo` (bf16x3) the low halves
 * too, laid out alike; returns 0 when a high half is not finite (bf16_lo16). */
static int amx_pack_pairs(const float *restrict panel, int64_t K, int64_t Kp, uint16_t *restrict out, uint16_t *restrict lo) {
  const __m512 zero = _mm512_setzero_ps();
  int nonfinite = 0;
  for (int64_t kp = 0; kp < Kp / 2; ++kp) {
    const float *r0 = panel + 2 * kp * NR, *r1 = r0 + NR;
    for (int half = 0; half < 2; ++half) {
      __m512 x = 2 * kp < K ? _mm512_loadu_ps(r0 + 16 * half) : zero;
      __m512 y = 2 * kp + 1 < K ? _mm512_loadu_ps(r1 + 16 * half) : zero;
      _mm512_storeu_si512(out + kp * 64 + 32 * half, bf16_pairs(x, y));
      if (lo) {
        __m512 xl = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16_lo16(x, bf16x16(x), &nonfinite)), 16));
        __m512 yl = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16_lo16(y, bf16x16(y), &nonfinite)), 16));
        _mm512_storeu_si512(lo + kp * 64 + 32 * half, bf16_pairs(xl, yl)); /* exact: xl, yl are bf16 values */
      }
    }
  }
  return !nonfinite;
}

/* pack_b then amx_pack_pairs in one pass, for a panel whose columns are offsets into the input (no masked padding):
 * each pair of rows goes from the input to the tiles' bf16 pairs directly, with plain loads where the panel's 32
 * columns are consecutive and gathers otherwise (a stride-2 window, a panel across two output rows). The two passes
 * wrote and re-read a K x 32 fp32 panel (72 KB at K = 576: out of L1) and copied strided columns one by one: 37% of
 * ResNet-18's run in bf16. 0 when the offsets do not fit the gathers' 32-bit indexes (the caller packs in two). */
static int amx_pack_b16(const Problem *p, int64_t n0, int64_t nr, int64_t Kp, uint16_t *restrict out) {
  const int64_t *bn = p->bn + n0, *bk = p->bk, K = p->K;
  int32_t idx[NR];
  for (int64_t j = 0; j < NR; ++j) {
    int64_t d = j < nr ? bn[j] - bn[0] : 0;
    if (d != (int32_t)d) return 0;
    idx[j] = (int32_t)d;
  }
  int contiguous = nr == NR && bn[NR - 1] - bn[0] == NR - 1;
  const __m512i lo = _mm512_loadu_si512(idx), hi = _mm512_loadu_si512(idx + 16);
  const __mmask16 m_lo = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1u), m_hi = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1u : 0);
  const __m512 zero = _mm512_setzero_ps();
  const float *base = p->b + bn[0];
  for (int64_t kp = 0; kp < Kp / 2; ++kp) {
    __m512 r[2][2]; /* [row 2kp + t][half] */
    for (int t = 0; t < 2; ++t) {
      int64_t k = 2 * kp + t;
      if (k >= K)
        r[t][0] = r[t][1] = zero;
      else if (contiguous)
        r[t][0] = _mm512_loadu_ps(base + bk[k]), r[t][1] = _mm512_loadu_ps(base + bk[k] + 16);
      else
        r[t][0] = _mm512_mask_i32gather_ps(zero, m_lo, lo, base + bk[k], 4), r[t][1] = _mm512_mask_i32gather_ps(zero, m_hi, hi, base + bk[k], 4);
    }
    for (int half = 0; half < 2; ++half) _mm512_storeu_si512(out + kp * 64 + 32 * half, bf16_pairs(r[0][half], r[1][half]));
  }
  return 1;
}

/* C[row.., col..] (mr x nr of a 32 x 32 block of sums `acc`) with the whole epilogue (this path sums all of K). */
static void amx_store(const Problem *p, const float *restrict acc, int64_t row, int64_t col, int64_t mr, int64_t nr) {
  const Epilogue *e = &p->e;
  int vec = p->c_sn == 1 && (e->init_mode != INIT_SOURCE || vector_columns(e->ow, e->init_sn, e->init_sh)) &&
            (!e->res || vector_columns(e->ow, e->res_sn, e->res_sh));
  for (int64_t i = 0; i < mr; ++i) {
    float *c = p->c + (row + i) * p->c_sm + col * p->c_sn;
    int64_t j = 0;
    if (vec) {
      const float *init = e->init_mode == INIT_SOURCE ? e->init + (row + i) * e->init_sm + col * e->init_sn : NULL;
      const float *res = e->res ? e->res + (row + i) * e->res_sm + col * e->res_sn : NULL;
      for (; j + VL <= nr; j += VL) {
        vf v = e->init_mode == INIT_IN_C ? vload(c + j) : !init ? vsplat(e->init_value) : e->init_sn ? vload(init + j) : vsplat(init[0]);
        v += vload(acc + i * 32 + j);
        if (res) v += e->res_sn ? vload(res + j) : vsplat(res[0]);
        vstore(c + j, vfinish(e, v));
      }
    }
    for (; j < nr; ++j) {
      float *out = c + j * p->c_sn;
      *out = epi_finish(e, epi_init(e, *out, row + i, col + j) + acc[i * 32 + j], row + i, col + j);
    }
  }
}

static __thread Scratch amx_scratch;

/* One 32 x 32 block of C on tiles 0-3: A rows in tiles 4-5 (16 rows each, `a_stride` bytes apart), B in tiles 6-7
 * (16 pair rows of 16 columns each, `b_stride` bytes apart): zero, one k step of 32, and the store of the sums. */
static inline __attribute__((always_inline)) void amx_zero_block(void) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

static inline __attribute__((always_inline)) void amx_block_step(const void *a0, const void *a1, int64_t a_stride, const void *b0,
                                                                 const void *b1, int64_t b_stride) {
  _tile_loadd(4, a0, a_stride);
  _tile_loadd(5, a1, a_stride);
  _tile_loadd(6, b0, b_stride);
  _tile_loadd(7, b1, b_stride);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

/* The same k step in bf16x3: hi*hi, hi*lo and lo*hi into the same sums (8 tile loads for 12 products). */
static inline __attribute__((always_inline)) void amx_block_step3(const uint16_t *a, const uint16_t *al, int64_t a_stride,
                                                                  int64_t a_rows16, const uint16_t *b, const uint16_t *bl) {
  amx_block_step(a, a + a_rows16, a_stride, b, b + 32, 128);
  _tile_loadd(6, bl, 128);
  _tile_loadd(7, bl + 32, 128);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
  amx_block_step(al, al + a_rows16, a_stride, b, b + 32, 128);
}

static inline __attribute__((always_inline)) void amx_stored_block(float *acc) { /* acc: 32 x 32 floats */
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
}

/* The rows of C (and of the residual) that amx_store will write for the block at (row, col), towards L1 while the
 * tiles compute: amx_store found them in memory, 32 rows a filter plane apart (a fifth of a bf16 ResNet-18's run).
 * Measured with the caches flushed and a residual: a 256-channel 14x14 3x3 convolution (im2col path) -5 to -7%; on
 * the direct path (amx_direct_rows) the same prefetch made a 64-channel 56x56 one 0-5% slower, so it is not there. */
static inline void amx_prefetch_block(const Problem *p, int64_t row, int64_t col, int64_t rows) {
  const Epilogue *e = &p->e;
  for (int64_t i = 0; i < rows; ++i) {
    const float *c = p->c + (row + i) * p->c_sm + col * p->c_sn;
    __builtin_prefetch(c, 1, 3);
    __builtin_prefetch(c + 16, 1, 3);
    if (e->res) {
      const float *r = e->res + (row + i) * e->res_sm + col_offset(col, e->ow, e->res_sn, e->res_sh);
      __builtin_prefetch(r, 0, 3);
      __builtin_prefetch(r + 16, 0, 3);
    }
  }
}

/* AVX512-BF16 without AMX: the same packed operands as the tiles (amx_pack_a's rows, Kp halves apart; a panel's
 * Kp/2 rows of 32 column pairs), multiplied by vdpbf16ps. A tile of r <= DP_MR rows x NR = 32 columns keeps its sums
 * in 2r registers over all of K; per pair of k, two vectors of B and one broadcast pair of A per row: DP_MR = 14
 * rows use 28 sums + 3 of the 32 registers. */
#define DP_MR 14

static inline __attribute__((always_inline)) void dp_tile(const int r, int64_t Kp, const uint16_t *restrict a,
                                                          const uint16_t *restrict b, float *restrict acc) {
  __m512 c0[DP_MR], c1[DP_MR];
  const int32_t *pairs = (const int32_t *)a; /* row i's pair kp at pairs[i * Kp / 2 + kp] */
  const int64_t row = Kp / 2;
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < Kp / 2; ++kp, b += 64) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 14
    for (int i = 0; i < r; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pairs[i * row + kp]);
      c0[i] = _mm512_dpbf16_ps(c0[i], b0, ai);
      c1[i] = _mm512_dpbf16_ps(c1[i], b1, ai);
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) {
    _mm512_storeu_ps(acc + i * 32, c0[i]);
    _mm512_storeu_ps(acc + i * 32 + 16, c1[i]);
  }
}

/* CASE(r) for every tile height 1 .. DP_MR: the switches that give each height its own unrolled kernel. */
#define DP_ROWS(CASE) \
  CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14)

#define DP_CASE(R) \
  case R: dp_tile(R, Kp, a, b, acc); return;

static void dp_tile_any(int r, int64_t Kp, const uint16_t *a, const uint16_t *b, float *acc) {
  switch (r) { DP_ROWS(DP_CASE) }
}

/* Rows [m0, m0 + rows) of C for one panel (columns jc.. jc + nr - 1) from the packed A rows `ap` and the panel `bp`,
 * tiles of DP_MR rows (the last of what is left), each stored through amx_store with the whole epilogue; `next`
 * (a kept weight's next panel, next_bytes long) goes towards L2 during the first tile. */
static void dp_panel(const Problem *p, const uint16_t *ap, int64_t Kp, const uint16_t *bp, float *acc, int64_t m0, int64_t rows,
                     int64_t jc, int64_t nr, const char *next, int64_t next_bytes) {
  for (int64_t b = 0; next && b < next_bytes; b += 64) __builtin_prefetch(next + b, 0, 2);
  for (int64_t i = 0; i < rows; i += DP_MR) {
    int r = (int)min64(DP_MR, rows - i);
    dp_tile_any(r, Kp, ap + i * Kp, bp, acc);
    amx_store(p, acc, m0 + i, jc, r, nr);
  }
}

/* Halves per kept NR-column panel of B: its bf16 pairs, and in bf16x3 their low halves after them. */
static int64_t amx_panel_stride(const Problem *p, int64_t Kp) { return Kp * NR * (p->split ? 2 : 1); }

/* The product for rows [m0, m1) and columns [n0, n1) on AMX tiles: A and B rounded to bfloat16 once per call (B
 * through the fp32 packer, so convolutions read their implicit im2col the same way), sums in fp32 tiles. In bf16x3
 * (p->split) also their low halves; a block whose A, or a panel whose B, holds a value without a finite bf16 high
 * half is computed in fp32 instead (bf16_lo16). Returns 0 when the caller is to compute the whole block in fp32. */
static int amx_block_int8(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

static int amx_block(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (p->int8) return amx_block_int8(p, m0, m1, n0, n1);
  int64_t K = p->K, Kp = ((K + 31) / 32) * 32, rows = m1 - m0, Mp = ((rows + AMX_MB - 1) / AMX_MB) * AMX_MB;
  int parts = p->split ? 2 : 1;
  size_t a_halves = (size_t)(Mp * Kp), b_halves = (size_t)(Kp / 2 * 64), panel_floats = (size_t)(K * NR);
  float *buf = scratch(&amx_scratch, parts * (a_halves + b_halves) / 2 + panel_floats + 32 * 32 + 64);
  if (!buf) abort(); /* out of memory: nothing sensible to return through a void ABI */
  uint16_t *ap = (uint16_t *)buf, *al = p->split ? ap + a_halves : NULL, *bp = ap + parts * a_halves;
  uint16_t *bl = p->split ? bp + b_halves : NULL;
  float *panel = (float *)(bp + parts * b_halves), *acc = panel + panel_floats;
  if (p->packed_a16)
    ap = (uint16_t *)p->packed_a16 + m0 * Kp; /* kept rows (zero rows past M: a block may read up to 31 more) */
  else if (!amx_pack_a(p, m0, rows, Kp, ap, al))
    return 0;
  int tiles = amx_ready(); /* else AVX512-BF16 dot products (use_bf16_products: plain bf16 only) */
  if (tiles) amx_configure();
  for (int64_t jc = n0; jc < n1; jc += NR) {
    int64_t nr = min64(NR, n1 - jc);
    int finite = 1;
    if (p->packed_b16) { /* kept panels: jc is a multiple of NR (run_problems splits N in whole panels) */
      bp = (uint16_t *)p->packed_b16 + (jc / NR) * amx_panel_stride(p, Kp);
      bl = p->split ? bp + Kp * NR : NULL;
      finite = !p->b16_nonfinite;
    } else if (p->split || p->pad_h || !amx_pack_b16(p, jc, nr, Kp, bp)) {
      pack_b(p, jc, nr, 0, K, panel);
      finite = amx_pack_pairs(panel, K, Kp, bp, bl);
    }
    if (!finite) { /* bf16x3 with an Inf or NaN in B: these columns in fp32 */
      gemm_block_fp32(p, m0, m1, jc, jc + nr);
      continue;
    }
    /* the next kept panel towards L2 while the first row block reads this one: a model's weights come from memory
       on every run, and the B tile loads waited for them (BERT h768: tileloadd of B 23% of its run) */
    const char *next = p->packed_b16 && jc + NR < n1 ? (const char *)(bp + amx_panel_stride(p, Kp)) : NULL;
    int64_t next_bytes = amx_panel_stride(p, Kp) * 2, step_bytes = next_bytes / (Kp / 32);
    if (!tiles) {
      dp_panel(p, ap, Kp, bp, acc, m0, rows, jc, nr, next, next_bytes);
      continue;
    }
    for (int64_t i = 0; i < rows; i += AMX_MB) {
      const uint16_t *a0 = ap + i * Kp, *a1 = a0 + 16 * Kp;
      if (p->c_sn == 1) amx_prefetch_block(p, m0 + i, jc, min64(AMX_MB, rows - i));
      amx_zero_block();
      for (int64_t k = 0; k < Kp; k += 32) {
        if (next && i == 0)
          for (int64_t b = 0; b < step_bytes; b += 64) __builtin_prefetch(next + (k / 32) * step_bytes + b, 0, 2);
        if (p->split)
          amx_block_step3(a0 + k, al + i * Kp + k, Kp * 2, 16 * Kp, bp + k / 2 * 64, bl + k / 2 * 64);
        else
          amx_block_step(a0 + k, a1 + k, Kp * 2, bp + k / 2 * 64, bp + k / 2 * 64 + 32, 128);
      }
      amx_stored_block(acc);
      amx_store(p, acc, m0 + i, jc, min64(AMX_MB, rows - i), nr);
    }
  }
  if (tiles) _tile_release();
  return 1;
}

/* Kept bf16 filters of a convolution on tiles: per group, every row as amx_pack_a packs them plus AMX_MB zero rows
 * (a block starting at any row reads whole tiles); amx_pack_a's conversion of the filters was 40% of a 512-filter
 * 7x7 convolution when done on every call. */
static int64_t amx_kept_rows(int64_t M) { return ((M + AMX_MB - 1) / AMX_MB) * AMX_MB + AMX_MB; }

/* Kept bf16 B of a GEMM on tiles (its weight): every NR-column panel as amx_block packs it (pack_b, then column
 * pairs), per batch entry when each reads its own slice. pack_b and the pairing were 36% and more of a 128 x 768 x
 * 3072 product on tiles, done by every task on every call. */
static int64_t amx_panel_halves(const Problem *p) { return ((p->N + NR - 1) / NR) * amx_panel_stride(p, ((p->K + 31) / 32) * 32); }

typedef struct {
  const Problem *problems;
  int64_t copies; /* one panel set per batch entry, or one for all */
} AmxKeepB;

static void amx_pack_b_all(const void *ctx, float *out) {
  const AmxKeepB *g = ctx;
  float *panel = malloc(sizeof(float) * (size_t)(g->problems[0].K * NR));
  if (!panel) abort(); /* out of memory: nothing sensible to return through a void ABI */
  int nonfinite = 0;
  for (int64_t i = 0; i < g->copies; ++i) {
    const Problem *p = &g->problems[i];
    int64_t Kp = ((p->K + 31) / 32) * 32;
    uint16_t *dst = (uint16_t *)out + i * amx_panel_halves(p);
    for (int64_t jc = 0; jc < p->N; jc += NR, dst += amx_panel_stride(p, Kp)) {
      pack_b(p, jc, min64(NR, p->N - jc), 0, p->K, panel);
      nonfinite |= !amx_pack_pairs(panel, p->K, Kp, dst, p->split ? dst + Kp * NR : NULL);
    }
  }
  out[g->copies * amx_panel_halves(g->problems) / 2] = (float)nonfinite; /* the trailer gemm_entry reads */
  free(panel);
}

typedef struct {
  const Problem *problems; /* one per group */
  int64_t G;
} AmxKeep;

static void amx_pack_all(const void *ctx, float *out) {
  const AmxKeep *keep = ctx;
  for (int64_t g = 0; g < keep->G; ++g) {
    const Problem *p = &keep->problems[g];
    int64_t Kp = ((p->K + 31) / 32) * 32, rows = amx_kept_rows(p->M);
    uint16_t *dst = (uint16_t *)out + g * rows * Kp;
    amx_pack_a(p, 0, p->M, Kp, dst, NULL);
    memset(dst + ((p->M + AMX_MB - 1) / AMX_MB) * AMX_MB * Kp, 0, sizeof(uint16_t) * (size_t)(AMX_MB * Kp));
  }
}


/* ------------------------------------------------------------------ int8 (AMX-INT8) */

/* int8 (Problem.int8; `--cpu-precision auto` chooses it per GEMM under an accuracy budget): A is quantized per tensor
 * with the step the compiler calibrated (q = round-half-even(x / step), saturated to int8, or to uint8 for a tensor
 * that was never negative on the calibration inputs), B (a kept weight) per column (step = max |b| / 127, +-127),
 * as planner/precision.py emulates; the tiles sum int8 products in int32 (tdpbssd / tdpbusd) and the write-out
 * scales the sums back, C = sum * a_step * b_step[n], before the usual epilogue. A block whose A holds an Inf or NaN,
 * or a weight that does, is computed in fp32 instead. */
#define INT8_KP(K) ((((K) + 63) / 64) * 64)

static inline __m128i quantize16(__m512 x, __m512 step, int is_signed, int *nonfinite) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000);
  *nonfinite |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x), exponent), exponent) != 0;
  __m512 q = _mm512_div_ps(x, step);
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(is_signed ? -128.0f : 0.0f)), _mm512_set1_ps(is_signed ? 127.0f : 255.0f));
  __m512i v = _mm512_cvtps_epi32(q); /* round half to even (the default rounding mode), as QuantizeLinear */
  return is_signed ? _mm512_cvtsepi32_epi8(v) : _mm512_cvtusepi32_epi8(v);
}

/* Rows [m0, m0 + rows) of A quantized, Kp per row, zeros past K and past the last row; 0 when one is not finite. */
static int amx_pack_a8(const Problem *p, int64_t m0, int64_t rows, int64_t Kp, int8_t *restrict out) {
  int64_t padded = ((rows + AMX_MB - 1) / AMX_MB) * AMX_MB;
  const __m512 step = _mm512_set1_ps(p->a_scale);
  int nonfinite = 0;
  memset(out + rows * Kp, 0, (size_t)((padded - rows) * Kp));
  for (int64_t i = 0; i < rows; ++i) {
    int8_t *dst = out + i * Kp;
    const float *row = p->a + p->am[m0 + i];
    int64_t k = 0;
    if (p->lda || p->kc)
      for (; k + 16 <= p->K; k += 16)
        _mm_storeu_si128((__m128i *)(dst + k), quantize16(_mm512_loadu_ps(row + (p->lda ? k : p->ak[k])), step, p->a_signed, &nonfinite));
    for (; k < p->K; ++k) dst[k] = (int8_t)_mm_extract_epi8(quantize16(_mm512_set1_ps(row[p->ak[k]]), step, p->a_signed, &nonfinite), 0);
    memset(dst + p->K, 0, (size_t)(Kp - p->K));
  }
  return !nonfinite;
}

/* Kept int8 B of a GEMM: per NR-column panel, Kp/4 rows of 128 bytes (for each of the 32 columns, 4 consecutive k),
 * as the B tiles read them (16 columns each, 64 bytes apart); after all panels of a copy its per-column steps; after
 * all copies a flag: 1 when the weight holds an Inf or NaN. */
static int64_t amx_b8_floats(const Problem *p) { /* per copy */
  int64_t panels = (p->N + NR - 1) / NR;
  return panels * INT8_KP(p->K) * NR / 4 + panels * NR;
}

static void amx_pack_b8_all(const void *ctx, float *out) {
  const AmxKeepB *g = ctx;
  float *panel = malloc(sizeof(float) * (size_t)(g->problems[0].K * NR));
  if (!panel) abort(); /* out of memory: nothing sensible to return through a void ABI */
  int nonfinite = 0;
  for (int64_t c = 0; c < g->copies; ++c) {
    const Problem *p = &g->problems[c];
    int64_t K = p->K, Kp = INT8_KP(K), panels = (p->N + NR - 1) / NR;
    int8_t *dst = (int8_t *)(out + c * amx_b8_floats(p));
    float *steps = out + c * amx_b8_floats(p) + panels * Kp * NR / 4;
    for (int64_t jc = 0; jc < p->N; jc += NR, dst += Kp * NR) {
      int64_t nr = min64(NR, p->N - jc);
      pack_b(p, jc, nr, 0, K, panel);
      for (int64_t j = 0; j < NR; ++j) {
        float amax = 0.0f;
        for (int64_t k = 0; k < K && j < nr; ++k) {
          float v = panel[k * NR + j];
          nonfinite |= !isfinite(v);
          amax = fmaxf(amax, fabsf(v));
        }
        float step = amax > 0.0f ? amax / 127.0f : 1.0f;
        steps[jc + j] = step;
        for (int64_t k = 0; k < Kp; ++k) {
          float q = k < K && j < nr ? rintf(panel[k * NR + j] / step) : 0.0f;
          dst[(k / 4) * 128 + j * 4 + k % 4] = (int8_t)fmaxf(-127.0f, fminf(127.0f, q));
        }
      }
    }
  }
  out[g->copies * amx_b8_floats(g->problems)] = (float)nonfinite;
  free(panel);
}

/* int8 on AVX512-VNNI (no AMX): the same quantized A rows and kept B panels as the tiles ([Kp/4][32 columns][4 k]
 * bytes: a panel row of 4 consecutive k per column is one 32-bit lane, what vpdpbusd multiplies). A tile is r <=
 * DP_MR rows x 32 columns, int32 sums in registers over all of K. vpdpbusd multiplies unsigned by signed bytes: a
 * signed A (int8) goes in as a + 128 (its sign bit flipped), and 128 x the column's sum of B comes off the sums. */
static inline __attribute__((always_inline)) void vnni_tile(const int r, int64_t Kp, const int8_t *restrict a, const int8_t *restrict b,
                                                            int flip, int32_t *restrict sums) {
  __m512i c0[DP_MR], c1[DP_MR];
  const int32_t *quads = (const int32_t *)a; /* row i's k quad q at quads[i * Kp / 4 + q] */
  const int64_t row = Kp / 4;
  const __m512i sign = _mm512_set1_epi32(flip ? (int)0x80808080u : 0);
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) c0[i] = c1[i] = _mm512_setzero_si512();
  for (int64_t q = 0; q < Kp / 4; ++q, b += 128) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
#pragma GCC unroll 14
    for (int i = 0; i < r; ++i) {
      const __m512i ai = _mm512_xor_si512(_mm512_set1_epi32(quads[i * row + q]), sign);
      c0[i] = _mm512_dpbusd_epi32(c0[i], ai, b0);
      c1[i] = _mm512_dpbusd_epi32(c1[i], ai, b1);
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) {
    _mm512_storeu_si512(sums + i * 32, c0[i]);
    _mm512_storeu_si512(sums + i * 32 + 16, c1[i]);
  }
}

#define VNNI_CASE(R) \
  case R: vnni_tile(R, Kp, a, b, flip, sums); return;

static void vnni_tile_any(int r, int64_t Kp, const int8_t *a, const int8_t *b, int flip, int32_t *sums) {
  switch (r) { DP_ROWS(VNNI_CASE) }
}

/* The rows [0, rows) of C for panel jc (quantized A rows `ap`, Kp apart) on VNNI, scaled back and stored with the
 * epilogue (as amx_block_int8). */
static void vnni_panel(const Problem *p, const int8_t *ap, int64_t Kp, const int8_t *bp, int64_t m0, int64_t rows, int64_t jc,
                       int64_t nr, int32_t *sums, float *acc) {
  int32_t comp[32] __attribute__((aligned(64))); /* 128 x each column's sum of B (signed A only) */
  if (p->a_signed) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    const __m512i ones = _mm512_set1_epi32(0x01010101);
    for (int64_t q = 0; q < Kp / 4; ++q) {
      s0 = _mm512_dpbusd_epi32(s0, ones, _mm512_loadu_si512(bp + q * 128));
      s1 = _mm512_dpbusd_epi32(s1, ones, _mm512_loadu_si512(bp + q * 128 + 64));
    }
    _mm512_storeu_si512(comp, _mm512_slli_epi32(s0, 7));
    _mm512_storeu_si512(comp + 16, _mm512_slli_epi32(s1, 7));
  }
  const __m512 step = _mm512_set1_ps(p->a_scale);
  for (int64_t i = 0; i < rows; i += DP_MR) {
    int r = (int)min64(DP_MR, rows - i);
    vnni_tile_any(r, Kp, ap + i * Kp, bp, p->a_signed, sums);
    for (int t = 0; t < r; ++t)
      for (int half = 0; half < 2; ++half) {
        __m512i v = _mm512_loadu_si512(sums + t * 32 + 16 * half);
        if (p->a_signed) v = _mm512_sub_epi32(v, _mm512_loadu_si512(comp + 16 * half));
        __m512 scale = _mm512_mul_ps(step, _mm512_loadu_ps(p->b8_scales + jc + 16 * half));
        _mm512_storeu_ps(acc + t * 32 + 16 * half, _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale));
      }
    amx_store(p, acc, m0 + i, jc, r, nr);
  }
}

static int amx_block_int8(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  int64_t Kp = INT8_KP(p->K), rows = m1 - m0, Mp = ((rows + AMX_MB - 1) / AMX_MB) * AMX_MB;
  if (p->b8_nonfinite) return 0;
  float *buf = scratch(&amx_scratch, (size_t)(Mp * Kp / 4 + 2 * 32 * 32 + 64));
  if (!buf) abort(); /* out of memory: nothing sensible to return through a void ABI */
  int8_t *ap = (int8_t *)buf;
  int32_t *sums = (int32_t *)(buf + Mp * Kp / 4 + 16);
  float *acc = (float *)(sums + 32 * 32);
  if (!amx_pack_a8(p, m0, rows, Kp, ap)) return 0;
  if (!amx_ready()) { /* AVX512-VNNI (use_bf16_products) */
    for (int64_t jc = n0; jc < n1; jc += NR)
      vnni_panel(p, ap, Kp, p->packed_b8 + (jc / NR) * Kp * NR, m0, rows, jc, min64(NR, n1 - jc), sums, acc);
    return 1;
  }
  amx_configure(); /* the same shapes: C 16 x 16 int32, A 16 rows of 64 bytes, B 16 rows of 64 bytes */
  for (int64_t jc = n0; jc < n1; jc += NR) {
    int64_t nr = min64(NR, n1 - jc);
    const int8_t *bp = p->packed_b8 + (jc / NR) * Kp * NR, *next = jc + NR < n1 ? bp + Kp * NR : NULL;
    for (int64_t i = 0; i < rows; i += AMX_MB) {
      const int8_t *a0 = ap + i * Kp, *a1 = a0 + 16 * Kp;
      if (p->c_sn == 1) amx_prefetch_block(p, m0 + i, jc, min64(AMX_MB, rows - i));
      amx_zero_block();
      for (int64_t k = 0; k < Kp; k += 64) {
        if (next && i == 0) /* the next panel towards L2 (amx_block) */
          for (int64_t b = 0; b < 16 * 128; b += 64) __builtin_prefetch(next + k / 4 * 128 + b, 0, 2);
        _tile_loadd(4, a0 + k, Kp);
        _tile_loadd(5, a1 + k, Kp);
        _tile_loadd(6, bp + k / 4 * 128, 128);
        _tile_loadd(7, bp + k / 4 * 128 + 64, 128);
        if (p->a_signed) {
          _tile_dpbssd(0, 4, 6);
          _tile_dpbssd(1, 4, 7);
          _tile_dpbssd(2, 5, 6);
          _tile_dpbssd(3, 5, 7);
        } else {
          _tile_dpbusd(0, 4, 6);
          _tile_dpbusd(1, 4, 7);
          _tile_dpbusd(2, 5, 6);
          _tile_dpbusd(3, 5, 7);
        }
      }
      amx_stored_block((float *)sums); /* int32 bits: converted below */
      for (int64_t r = 0; r < 32; ++r)
        for (int half = 0; half < 2; ++half) {
          __m512 scale = _mm512_mul_ps(_mm512_set1_ps(p->a_scale), _mm512_loadu_ps(p->b8_scales + jc + 16 * half));
          __m512 v = _mm512_cvtepi32_ps(_mm512_loadu_si512(sums + r * 32 + 16 * half));
          _mm512_storeu_ps(acc + r * 32 + 16 * half, _mm512_mul_ps(v, scale));
        }
      amx_store(p, acc, m0 + i, jc, min64(AMX_MB, rows - i), nr);
    }
  }
  _tile_release();
  return 1;
}

static const float *packed_weights(int64_t site, const int64_t shape[3], size_t floats, void (*pack)(const void *, float *), const void *ctx);

/* Direct convolution on bf16 tiles (stride 1, no dilation, one group, channels a multiple of 32, constant filters):
 * the input becomes, once per call, channel pairs of a zero-padded bf16 copy, [C/2][Hp][Wp][2], so that the B tile of
 * a tap (kh, kw) -- 16 channel pairs x 16 consecutive output pixels of one row -- is 16 rows of 64 bytes read in place
 * (Hp*Wp*4 bytes apart). No im2col panel, which copied every input value KH*KW times and was 27% of ResNet-18's bf16
 * run after amx_pack_b16. The filters are kept as A tiles: [kh][kw][C/32][F rounded up to 32 rows][32] bf16. */
typedef struct {
  const Problem *problems; /* per image: c and the epilogue */
  const float *x;
  const int64_t *xs;
  uint16_t *xin;           /* per image C/2 x Hp x Wp pairs */
  const uint16_t *wt;      /* the kept filters */
  int64_t C, F, Fp, H, W, KH, KW, OH, OW, Hp, Wp, top, left, plane; /* plane: halves per image */
  int64_t NB, site;        /* images; the call site (dp_fv keeps its own filter layout) */
  int64_t stride;          /* dp_fv: 1, or 2 with each pair's columns split by parity (dp_s2_pairs_input) */
} AmxDirect;

static void amx_direct_input(void *ctx, int64_t task) { /* task = image * C/2 + pair */
  const AmxDirect *j = ctx;
  int64_t n = task / (j->C / 2), cp = task % (j->C / 2);
  const float *c0 = j->x + n * j->xs[0] + 2 * cp * j->xs[1], *c1 = c0 + j->xs[1];
  uint16_t *dst = j->xin + n * j->plane + cp * j->Hp * j->Wp * 2;
  for (int64_t h = 0; h < j->Hp; ++h, dst += j->Wp * 2) {
    int64_t ih = h - j->top;
    memset(dst, 0, sizeof(uint16_t) * (size_t)(j->Wp * 2));
    if (ih < 0 || ih >= j->H) continue;
    const float *r0 = c0 + ih * j->xs[2], *r1 = c1 + ih * j->xs[2];
    uint16_t *out = dst + j->left * 2;
    int64_t w = 0;
    for (; w + 16 <= j->W; w += 16) _mm512_storeu_si512(out + 2 * w, bf16_pairs(_mm512_loadu_ps(r0 + w), _mm512_loadu_ps(r1 + w)));
    if (w < j->W) {
      __mmask16 m = (__mmask16)((1u << (j->W - w)) - 1u);
      _mm512_mask_storeu_epi32(out + 2 * w, m, bf16_pairs(_mm512_maskz_loadu_ps(m, r0 + w), _mm512_maskz_loadu_ps(m, r1 + w)));
    }
  }
}

/* The kept A tiles from FCHW filters (dense): row f of block (kh, kw, cb) holds channels cb*32 .. +31 of tap (kh, kw). */
static void amx_direct_pack(const void *ctx, float *out) {
  const AmxDirect *j = ctx;
  const Problem *p = j->problems;
  uint16_t *dst = (uint16_t *)out;
  for (int64_t kh = 0; kh < j->KH; ++kh)
    for (int64_t kw = 0; kw < j->KW; ++kw)
      for (int64_t cb = 0; cb < j->C / 32; ++cb)
        for (int64_t f = 0; f < j->Fp; ++f, dst += 32)
          for (int64_t i = 0; i < 32; ++i) {
            float v = f < j->F ? p->a[f * p->lda + ((cb * 32 + i) * j->KH + kh) * j->KW + kw] : 0.0f;
            dst[i] = (uint16_t)_mm256_extract_epi16(bf16x16(_mm512_set1_ps(v)), 0);
          }
}

static void amx_direct_rows(void *ctx, int64_t task) { /* task = image * OH + output row */
  const AmxDirect *j = ctx;
  int64_t n = task / j->OH, oh = task % j->OH, cbs = j->C / 32, pair_rows = j->Hp * j->Wp * 4; /* bytes between pairs */
  const Problem *p = &j->problems[n];
  float acc[32 * 32] __attribute__((aligned(64)));
  amx_configure();
  for (int64_t ow = 0; ow < j->OW; ow += 32)
    for (int64_t f0 = 0; f0 < j->Fp; f0 += 32) {
      amx_zero_block();
      for (int64_t kh = 0; kh < j->KH; ++kh)
        for (int64_t kw = 0; kw < j->KW; ++kw) {
          const uint16_t *b = j->xin + n * j->plane + ((oh + kh) * j->Wp + ow + kw) * 2;
          const uint16_t *a = j->wt + ((kh * j->KW + kw) * cbs * j->Fp + f0) * 32;
          for (int64_t cb = 0; cb < cbs; ++cb, a += j->Fp * 32, b += (int64_t)16 * j->Hp * j->Wp * 2)
            amx_block_step(a, a + 16 * 32, 64, b, b + 32, pair_rows);
        }
      amx_stored_block(acc);
      amx_store(p, acc, f0, oh * j->OW + ow, min64(32, j->F - f0), min64(32, j->OW - ow));
    }
  _tile_release();
}

static __thread Scratch amx_direct_scratch;

/* 1 when the convolution ran here; 0 when it does not qualify or a buffer cannot be had (the im2col path runs). */
static int amx_direct(Problem *problems, int64_t NB, const float *x, const int64_t *xs, const int64_t *sizes, const int64_t *conv,
                      const int64_t *ys, int64_t site) {
  int64_t C = sizes[1], F = sizes[4], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8];
  if (!amx_ready() || site <= 0 || (sizes[9] > 1) || C % 32 || conv[0] != 1 || conv[1] != 1 || conv[2] != 1 || conv[3] != 1 || !problems[0].lda ||
      xs[3] != 1 || ys[3] != 1 || ys[2] != OW || OW < 16)
    return 0;
  int64_t Hp = OH + KH - 1, Wp = OW + KW - 1, Fp = ((F + 31) / 32) * 32;
  int64_t plane = (C / 2) * Hp * Wp * 2, slack = 64 * 2 + 64; /* a row's last block reads up to 31 + KW - 1 pairs past its end */
  AmxDirect job = {problems, x, xs, NULL, NULL, C, F, Fp, sizes[2], sizes[3], KH, KW, OH, OW, Hp, Wp, conv[4], conv[5], plane, NB, site, 1};
  const int64_t shape[3] = {F, C * KH * KW, -100}; /* -100: this layout */
  job.wt = (const uint16_t *)packed_weights(site, shape, (size_t)(KH * KW * (C / 32) * Fp * 32 / 2 + 1), amx_direct_pack, &job);
  uint16_t *xin = (uint16_t *)scratch(&amx_direct_scratch, (size_t)((NB * plane + slack) / 2 + 1));
  if (!job.wt || !xin) return 0;
  memset(xin + NB * plane, 0, sizeof(uint16_t) * (size_t)slack);
  job.xin = xin;
  hcc_parallel_for(NB * (C / 2), amx_direct_input, &job);
  hcc_parallel_for(NB * OH, amx_direct_rows, &job);
  return 1;
}

/* The direct convolution on AVX512-BF16 dot products (no AMX): stride 1 (or 2 on dp_fv), no dilation, one group, an
 * even channel count, constant filters. The input becomes the same bf16 channel-pair copy as amx_direct's,
 * [C/2][Hp][Wp][2], and the output pixels are taken on the padded grid (q = oh * Wp + ow): 16 consecutive grid columns
 * of one channel pair and tap are 64 consecutive bytes at q + kh * Wp + kw, one vector load, whatever the map's width
 * (the Wp - OW columns that wrap into the next row are computed and dropped: 7 of 9 kept on a 7x7 map, where rows of
 * whole vectors would keep 7 of 16). A tile is r <= DP_MR filters x 32 grid columns, its sums in registers over every tap and
 * channel pair (dp_walk_tile). The filters are kept per block of r as [tap][pair][r] bf16 pairs (dp_block_f0). No
 * im2col panel: the im2col path rounded KH x KW copies of every input value on every call (measured on the EPYC,
 * Zen 4, 1 thread, against hcc's fp32 kernels: ResNet-18's 3x3 convolutions 1.30-1.44x on the im2col path, 1.55-1.62x
 * on this grid on 56x56 to 14x14 maps, 1.38x on 7x7; dp_fv below, which now takes them, 1.84-1.94x). The grid keeps
 * the layers whose 64-filter blocks would be mostly padding (16 to 40 filters). 1x1 convolutions stay on the GEMM path
 * (on the grid 0.96x, on dp_fv 1.08x, there 1.34x). */
static int64_t dp_blocks(int64_t F) { return (F + DP_MR - 1) / DP_MR; } /* filter blocks of balanced sizes */
static int64_t dp_block_f0(int64_t F, int64_t b) { /* block b's first filter (b = dp_blocks(F): F) */
  int64_t n = dp_blocks(F);
  return b * (F / n) + min64(b, F % n);
}

static inline uint16_t bf16_bits(float v) { return (uint16_t)_mm256_extract_epi16(bf16x16(_mm512_set1_ps(v)), 0); }

static void dp_direct_pack(const void *ctx, float *out) {
  const AmxDirect *j = ctx;
  const Problem *p = j->problems;
  uint32_t *dst = (uint32_t *)out;
  for (int64_t b = 0; b < dp_blocks(j->F); ++b) {
    int64_t f0 = dp_block_f0(j->F, b), r = dp_block_f0(j->F, b + 1) - f0;
    for (int64_t kh = 0; kh < j->KH; ++kh)
      for (int64_t kw = 0; kw < j->KW; ++kw)
        for (int64_t cp = 0; cp < j->C / 2; ++cp)
          for (int64_t i = 0; i < r; ++i) {
            const float *w = p->a + (f0 + i) * p->lda + (2 * cp * j->KH + kh) * j->KW + kw;
            *dst++ = (uint32_t)bf16_bits(w[0]) | (uint32_t)bf16_bits(w[j->KH * j->KW]) << 16;
          }
  }
}

/* The taps of a direct tile as three nested walks through the bf16 input copy (in halves): n[0] x n[1] x n[2] steps,
 * s[0], s[1], s[2] apart; the kept filters hold each block's r pairs per step in the same order. dp_direct_tiles walks
 * (kh, kw, channel pair), dp_s2_rows (channel, kh, kw pair). */
typedef struct {
  int64_t n[3], s[3];
} DpWalk;

/* r <= DP_MR filters x 32 consecutive pair columns from x, the sums in registers over every step (as dp_tile). */
static inline __attribute__((always_inline)) void dp_walk_tile(const int r, const int32_t *restrict w, const uint16_t *restrict x,
                                                               const DpWalk *walk, float *restrict acc) {
  __m512 c0[DP_MR], c1[DP_MR];
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t u = 0; u < walk->n[0]; ++u)
    for (int64_t v = 0; v < walk->n[1]; ++v) {
      const uint16_t *b = x + u * walk->s[0] + v * walk->s[1];
      for (int64_t t = 0; t < walk->n[2]; ++t, b += walk->s[2], w += r) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 14
        for (int i = 0; i < r; ++i) {
          const __m512bh ai = (__m512bh)_mm512_set1_epi32(w[i]);
          c0[i] = _mm512_dpbf16_ps(c0[i], b0, ai);
          c1[i] = _mm512_dpbf16_ps(c1[i], b1, ai);
        }
      }
    }
#pragma GCC unroll 14
  for (int i = 0; i < r; ++i) {
    _mm512_storeu_ps(acc + i * 32, c0[i]);
    _mm512_storeu_ps(acc + i * 32 + 16, c1[i]);
  }
}

#define DP_WALK_CASE(R) \
  case R: dp_walk_tile(R, w, x, walk, acc); return;

static void dp_walk_tile_any(int r, const int32_t *w, const uint16_t *x, const DpWalk *walk, float *acc) {
  switch (r) { DP_ROWS(DP_WALK_CASE) }
}

static void dp_direct_tiles(void *ctx, int64_t task) { /* task = image * tiles + tile of 32 grid columns */
  const AmxDirect *j = ctx;
  int64_t grid = j->OH * j->Wp, tiles = (grid + 31) / 32, n = task / tiles, q0 = (task % tiles) * 32, q1 = min64(q0 + 32, grid);
  int64_t taps = j->KH * j->KW * (j->C / 2);
  const DpWalk walk = {{j->KH, j->KW, j->C / 2}, {2 * j->Wp, 2, 2 * j->Hp * j->Wp}}; /* (kh, kw, channel pair) */
  const Problem *p = &j->problems[n];
  float acc[DP_MR * 32] __attribute__((aligned(64)));
  for (int64_t b = 0; b < dp_blocks(j->F); ++b) {
    int64_t f0 = dp_block_f0(j->F, b), r = dp_block_f0(j->F, b + 1) - f0;
    dp_walk_tile_any((int)r, (const int32_t *)j->wt + f0 * taps, j->xin + n * j->plane + 2 * q0, &walk, acc);
    for (int64_t q = q0; q < q1;) { /* the columns of each output row in the tile; the wrapped ones dropped */
      int64_t oh = q / j->Wp, ow = q % j->Wp, end = min64(q1, (oh + 1) * j->Wp);
      if (ow < j->OW) amx_store(p, acc + (q - q0), f0, oh * j->OW + ow, r, min64(j->OW, end - oh * j->Wp) - ow);
      q = end;
    }
  }
}

static int dp_fv(const AmxDirect *job);

/* The channel-pair copy for a stride-2 window (dp_fv): [C/2][2][Hp][Wp][2] halves, each pair's padded columns split by
 * parity, so that tap (kh, kw) of output pixel (oh, ow) is pair (2 oh + kh, ow + kw / 2) of plane kw % 2: any
 * pixel, one broadcast, as at stride 1. A row is 32 padded columns at a time: two masked loads per channel (the
 * zero padding and the row's ends masked), the even and odd lanes gathered by permutes, rounded in pairs. */
static void dp_s2_pairs_input(void *ctx, int64_t task) { /* task = image * C/2 + pair */
  const AmxDirect *j = ctx;
  int64_t n = task / (j->C / 2), cp = task % (j->C / 2), row = j->Wp * 2; /* halves per plane row */
  const float *c0 = j->x + n * j->xs[0] + 2 * cp * j->xs[1], *c1 = c0 + j->xs[1];
  uint16_t *even = j->xin + n * j->plane + cp * 2 * j->Hp * row, *odd = even + j->Hp * row;
  const __m512i pick_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i pick_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t h = 0; h < j->Hp; ++h) {
    uint16_t *e = even + h * row, *o = odd + h * row;
    int64_t ih = h - j->top;
    if (ih < 0 || ih >= j->H) {
      memset(e, 0, sizeof(uint16_t) * (size_t)row);
      memset(o, 0, sizeof(uint16_t) * (size_t)row);
      continue;
    }
    const float *r0 = c0 + ih * j->xs[2], *r1 = c1 + ih * j->xs[2];
    for (int64_t w0 = 0; w0 < 2 * j->Wp; w0 += 32) { /* padded columns w0 .. w0 + 31: plane columns w0 / 2 .. + 15 */
      int64_t iw = w0 - j->left;                     /* their first input column */
      __mmask16 m[2];
      for (int half = 0; half < 2; ++half) {
        int64_t lo = -(iw + 16 * half) > 0 ? -(iw + 16 * half) : 0, hi = min64(16, j->W - (iw + 16 * half));
        m[half] = hi > lo ? (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u)) : 0;
      }
      __m512 a0 = _mm512_maskz_loadu_ps(m[0], r0 + iw), a1 = _mm512_maskz_loadu_ps(m[1], r0 + iw + 16);
      __m512 b0 = _mm512_maskz_loadu_ps(m[0], r1 + iw), b1 = _mm512_maskz_loadu_ps(m[1], r1 + iw + 16);
      __m512i ev = bf16_pairs(_mm512_permutex2var_ps(a0, pick_even, a1), _mm512_permutex2var_ps(b0, pick_even, b1));
      __m512i od = bf16_pairs(_mm512_permutex2var_ps(a0, pick_odd, a1), _mm512_permutex2var_ps(b0, pick_odd, b1));
      int64_t cols = min64(16, j->Wp - w0 / 2);
      __mmask16 keep = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1u);
      _mm512_mask_storeu_epi32(e + w0, keep, ev);
      _mm512_mask_storeu_epi32(o + w0, keep, od);
    }
  }
}

/* 1 when the convolution ran here (dp_fv, or the grid's dp_direct_tiles where dp_fv's 64-filter blocks would be more
 * than a quarter padding); 0 when it does not qualify or a buffer cannot be had. */
static int dp_direct(Problem *problems, int64_t NB, const float *x, const int64_t *xs, const int64_t *sizes, const int64_t *conv,
                     const int64_t *ys, int64_t site) {
  int64_t C = sizes[1], F = sizes[4], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8], stride = conv[0];
  int small = 4 * F >= 3 * ((F + 63) / 64) * 64; /* dp_fv where 3/4 of its 64-filter blocks are filters */
  if (amx_ready() || !dp_ready() || site <= 0 || sizes[9] > 1 || C % 2 || KH * KW == 1 || conv[1] != stride || conv[2] != 1 ||
      conv[3] != 1 || !problems[0].lda || xs[3] != 1 || ys[3] != 1 || ys[2] != OW || !(stride == 1 || (stride == 2 && small)))
    return 0;
  /* the padded rows and columns that the windows reach; with stride 2 each pair's columns split into two planes of
     Wp (dp_s2_pairs_input) */
  int64_t Hp = (OH - 1) * stride + KH, Wp = stride == 1 ? OW + KW - 1 : OW + (KW - 1) / 2;
  int64_t plane = (C / 2) * stride * Hp * Wp * 2, slack = 2 * (32 + KW); /* the last grid tile reads up to 31 + KW - 1 pairs past */
  AmxDirect job = {problems, x, xs, NULL, NULL, C, F, F, sizes[2], sizes[3], KH, KW, OH, OW, Hp, Wp, conv[4], conv[5], plane, NB, site,
                   stride};
  uint16_t *xin = (uint16_t *)scratch(&amx_direct_scratch, (size_t)((NB * plane + slack) / 2 + 1));
  if (!xin) return 0;
  memset(xin + NB * plane, 0, sizeof(uint16_t) * (size_t)slack);
  job.xin = xin;
  if (stride == 2) {
    hcc_parallel_for(NB * (C / 2), dp_s2_pairs_input, &job);
    return dp_fv(&job);
  }
  if (!small) {
    const int64_t shape[3] = {F, C * KH * KW, -200}; /* -200: this layout */
    job.wt = (const uint16_t *)packed_weights(site, shape, (size_t)(KH * KW * (C / 2) * F + 1), dp_direct_pack, &job);
    if (!job.wt) return 0;
  }
  hcc_parallel_for(NB * (C / 2), amx_direct_input, &job);
  if (small) return dp_fv(&job);
  hcc_parallel_for(NB * ((OH * Wp + 31) / 32), dp_direct_tiles, &job);
  return 1;
}

/* The same convolutions on dot products with vectors across filters: a tile is DP_FV_PX output pixels (any, one
 * broadcast pair of the channel-pair copy each) x 4 vectors of 16 filters; per step (tap and channel pair) 4 loads of
 * the kept filters ([block of 64][step][64] pairs) and 7 broadcasts feed 28 dot products. dp_direct_tiles' grid keeps
 * only OW of Wp = OW + KW - 1 columns (7 of 9 on a 7x7 map), and its 32-column tiles compute 64 of a 63-column grid.
 * A task is one image's block of 64 filters for a part of its pixels: their sums (pixels x 64 floats) build up over
 * chunks of DP_FV_KC steps (the chunk of filters stays in L2 across the pixel tiles), then go out transposed, 32
 * pixels at a time, through amx_store. Measured on the EPYC (Zen 4), 1 thread, ResNet-18's 3x3 convolutions against
 * hcc's fp32: 56x56 1.74x (grid 1.63x), 28x28 1.88x (1.53x), 14x14 1.94x (1.55x), 7x7 1.88x (1.38x); its stride-2
 * 64 -> 128 one 1.79x through dp_s2_pairs_input (1.36x on im2col). */
#define DP_FV_PX 7
#define DP_FV_KC 256
#ifndef DP_FV_PART_PX
#define DP_FV_PART_PX 2048
#endif

typedef struct {
  const AmxDirect *d;
  const int32_t *wt;                 /* kept filters */
  const int64_t *pix, *koff;         /* pixel p's offset in a channel-pair plane; step k's offset (pairs) */
  int64_t P, steps, blocks, parts, per_part; /* a task: one image's block of filters for a part of per_part pixels */
} DpFv;

static void dp_fv_pack(const void *ctx, float *out) {
  const AmxDirect *j = ctx;
  const Problem *p = j->problems;
  uint32_t *dst = (uint32_t *)out;
  for (int64_t f0 = 0; f0 < j->F; f0 += 64)
    for (int64_t kh = 0; kh < j->KH; ++kh)
      for (int64_t kw = 0; kw < j->KW; ++kw)
        for (int64_t cp = 0; cp < j->C / 2; ++cp)
          for (int64_t i = 0; i < 64; ++i) {
            const float *w = p->a + (f0 + i) * p->lda + (2 * cp * j->KH + kh) * j->KW + kw;
            *dst++ = f0 + i < j->F ? (uint32_t)bf16_bits(w[0]) | (uint32_t)bf16_bits(w[j->KH * j->KW]) << 16 : 0u;
          }
}

static inline __attribute__((always_inline)) void dp_fv_tile(const int px, int64_t kc, const int32_t *restrict w,
                                                             const int32_t *restrict in, const int64_t *restrict pix,
                                                             const int64_t *restrict koff, float *restrict sums, int first) {
  __m512 c[4][DP_FV_PX];
  const int32_t *base[DP_FV_PX];
#pragma GCC unroll 7
  for (int j = 0; j < px; ++j) {
    base[j] = in + pix[j];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) c[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(sums + j * 64 + i * 16);
  }
  for (int64_t k = 0; k < kc; ++k, w += 64) {
    const int64_t o = koff[k];
    __m512bh f[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) f[i] = (__m512bh)_mm512_loadu_si512(w + 16 * i);
#pragma GCC unroll 7
    for (int j = 0; j < px; ++j) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(base[j][o]);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) c[i][j] = _mm512_dpbf16_ps(c[i][j], f[i], a);
    }
  }
#pragma GCC unroll 7
  for (int j = 0; j < px; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm512_storeu_ps(sums + j * 64 + i * 16, c[i][j]);
}

#define DP_FV_CASE(X) \
  case X: dp_fv_tile(X, kc, w, in, pix, koff, sums, first); return;

static void dp_fv_tile_any(int px, int64_t kc, const int32_t *w, const int32_t *in, const int64_t *pix, const int64_t *koff, float *sums,
                           int first) {
  switch (px) { DP_FV_CASE(1) DP_FV_CASE(2) DP_FV_CASE(3) DP_FV_CASE(4) DP_FV_CASE(5) DP_FV_CASE(6) DP_FV_CASE(7) }
}

static __thread Scratch dp_fv_sums;

static void dp_fv_block(void *ctx, int64_t task) { /* task = (image * blocks + block of 64 filters) * parts + part */
  const DpFv *v = ctx;
  const AmxDirect *j = v->d;
  int64_t unit = task / v->parts, n = unit / v->blocks, f0 = (unit % v->blocks) * 64;
  int64_t q0 = (task % v->parts) * v->per_part, q1 = min64(v->P, q0 + v->per_part);
  if (q0 >= q1) return;
  const Problem *p = &j->problems[n];
  const int32_t *in = (const int32_t *)(j->xin + n * j->plane), *w = v->wt + f0 * v->steps;
  float *sums = scratch(&dp_fv_sums, (size_t)((q1 - q0) * 64 + 64 * 32));
  if (!sums) abort(); /* out of memory: nothing sensible to return through a void ABI */
  float *acc = sums + (q1 - q0) * 64; /* 64 filters x 32 pixels, as amx_store reads them */
  for (int64_t k0 = 0; k0 < v->steps; k0 += DP_FV_KC) {
    int64_t kc = min64(DP_FV_KC, v->steps - k0);
    for (int64_t q = q0; q < q1; q += DP_FV_PX)
      dp_fv_tile_any((int)min64(DP_FV_PX, q1 - q), kc, w + k0 * 64, in, v->pix + q, v->koff + k0, sums + (q - q0) * 64, k0 == 0);
  }
  for (int64_t c0 = q0; c0 < q1; c0 += 32) { /* 32 pixels at a time, transposed to filter rows */
    int64_t cols = min64(32, q1 - c0);
    const float *src = sums + (c0 - q0) * 64;
    for (int64_t q = 0; q < cols; ++q)
      for (int64_t f = 0; f < 64; ++f) acc[f * 32 + q] = src[q * 64 + f];
    amx_store(p, acc, f0, c0, min64(64, j->F - f0), cols);
  }
}

/* 1 when the convolution ran here (small maps: see dp_fv_tile); 0 when it does not qualify or a buffer cannot be had.
 * Called with dp_direct's job (its input copy built). */
static int dp_fv(const AmxDirect *job) {
  int64_t P = job->OH * job->OW, steps = job->KH * job->KW * (job->C / 2), blocks = (job->F + 63) / 64;
  const int64_t shape[3] = {job->F, job->C * job->KH * job->KW, -400}; /* -400: this layout */
  const int32_t *wt = (const int32_t *)packed_weights(job->site, shape, (size_t)(blocks * 64 * steps + 1), dp_fv_pack, job);
  int64_t *tables = malloc(sizeof(int64_t) * (size_t)(P + steps));
  if (!wt || !tables) {
    free(tables);
    return 0;
  }
  int64_t *pix = tables, *koff = tables + P, s = job->stride, plane = job->Hp * job->Wp; /* pairs per plane */
  for (int64_t q = 0; q < P; ++q) pix[q] = (q / job->OW) * s * job->Wp + q % job->OW;
  for (int64_t kh = 0, k = 0; kh < job->KH; ++kh)
    for (int64_t kw = 0; kw < job->KW; ++kw)
      for (int64_t cp = 0; cp < job->C / 2; ++cp) koff[k++] = (cp * s + kw % s) * plane + kh * job->Wp + kw / s;
  /* pixel parts: two tasks per thread at least (a 64-filter layer is one block), of whole tiles, 4 tiles or more, and
     at most DP_FV_PART_PX pixels (their sums, 256 bytes a pixel, stay in L2 and the scratch stays small on a large map) */
  int64_t units = job->NB * blocks, want = 2 * hcc_get_num_threads(), parts = units >= want ? 1 : (want + units - 1) / units;
  int64_t tiles = (P + DP_FV_PX - 1) / DP_FV_PX;
  parts = min64(parts, tiles / 4) > 1 ? min64(parts, tiles / 4) : 1;
  if (parts * DP_FV_PART_PX < P) parts = (P + DP_FV_PART_PX - 1) / DP_FV_PART_PX;
  int64_t per_part = ((tiles + parts - 1) / parts) * DP_FV_PX;
  DpFv v = {job, wt, pix, koff, P, steps, blocks, parts, per_part};
  hcc_parallel_for(units * parts, dp_fv_block, &v);
  free(tables);
  return 1;
}

/* Stride-2 convolutions of few channels on dot products (a CNN's stem: 3 channels, a 7x7 window). The im2col path
 * gathers every tap of a stride-2 window (1.08x fp32 on ResNet-18's stem). Here the pairs run along the window's
 * width instead of the channels: taps (kw, kw + 1) of output column ow read input columns 2ow + kw and 2ow + kw + 1,
 * which in a bf16 copy of the padded row are the halves of one 32-bit word (kw even), so 16 consecutive output
 * columns are 16 consecutive words: one vector load. A window of odd width gets a zero tap (7 -> 8: 7/8 of the products
 * useful). Rows of the copy: [C][Hp][2 Wd] halves, Wd words (whole tiles of 32 columns plus the window). A tile is
 * r <= DP_MR filters x 32 output columns of one row (dp_walk_tile); the filters are kept per block as [c][kh][kw / 2][r]
 * pairs. */
typedef struct {
  const Problem *problems; /* per image: c and the epilogue */
  const float *x;
  const int64_t *xs;
  uint16_t *xin;
  const uint32_t *wt;
  int64_t C, F, H, W, KH, KW, OH, OW, top, left, Hp, Wd, kw_pairs, plane; /* plane: halves per image */
} DpStride2;

static void dp_s2_input(void *ctx, int64_t task) { /* task = image * C + channel */
  const DpStride2 *j = ctx;
  int64_t n = task / j->C, c = task % j->C, width = 2 * j->Wd, cols = min64(j->W, width - j->left);
  const float *src = j->x + n * j->xs[0] + c * j->xs[1];
  uint16_t *dst = j->xin + n * j->plane + c * j->Hp * width;
  for (int64_t h = 0; h < j->Hp; ++h, dst += width) {
    int64_t ih = h - j->top;
    memset(dst, 0, sizeof(uint16_t) * (size_t)width);
    if (ih < 0 || ih >= j->H) continue;
    const float *row = src + ih * j->xs[2];
    int64_t w = 0;
    for (; w + 16 <= cols; w += 16) _mm256_storeu_si256((__m256i *)(dst + j->left + w), bf16x16(_mm512_loadu_ps(row + w)));
    if (w < cols) {
      uint16_t rest[16];
      _mm256_storeu_si256((__m256i *)rest, bf16x16(_mm512_maskz_loadu_ps((__mmask16)((1u << (cols - w)) - 1u), row + w)));
      memcpy(dst + j->left + w, rest, sizeof(uint16_t) * (size_t)(cols - w));
    }
  }
}

static void dp_s2_pack(const void *ctx, float *out) {
  const DpStride2 *j = ctx;
  const Problem *p = j->problems;
  uint32_t *dst = (uint32_t *)out;
  for (int64_t b = 0; b < dp_blocks(j->F); ++b) {
    int64_t f0 = dp_block_f0(j->F, b), r = dp_block_f0(j->F, b + 1) - f0;
    for (int64_t c = 0; c < j->C; ++c)
      for (int64_t kh = 0; kh < j->KH; ++kh)
        for (int64_t t = 0; t < j->kw_pairs; ++t)
          for (int64_t i = 0; i < r; ++i) {
            const float *w = p->a + (f0 + i) * p->lda + (c * j->KH + kh) * j->KW + 2 * t;
            *dst++ = (uint32_t)bf16_bits(w[0]) | (2 * t + 1 < j->KW ? (uint32_t)bf16_bits(w[1]) << 16 : 0u);
          }
  }
}

static void dp_s2_rows(void *ctx, int64_t task) { /* task = image * OH + output row */
  const DpStride2 *j = ctx;
  int64_t n = task / j->OH, oh = task % j->OH, steps = j->C * j->KH * j->kw_pairs;
  const DpWalk walk = {{j->C, j->KH, j->kw_pairs}, {j->Hp * 2 * j->Wd, 2 * j->Wd, 2}}; /* (channel, kh, kw pair) */
  const Problem *p = &j->problems[n];
  const uint16_t *row = j->xin + n * j->plane + 2 * oh * 2 * j->Wd; /* input row 2 oh (kh = 0) of channel 0 */
  float acc[DP_MR * 32] __attribute__((aligned(64)));
  for (int64_t ow = 0; ow < j->OW; ow += 32)
    for (int64_t b = 0; b < dp_blocks(j->F); ++b) {
      int64_t f0 = dp_block_f0(j->F, b), r = dp_block_f0(j->F, b + 1) - f0;
      dp_walk_tile_any((int)r, (const int32_t *)j->wt + f0 * steps, row + 2 * ow, &walk, acc);
      amx_store(p, acc, f0, oh * j->OW + ow, r, min64(32, j->OW - ow));
    }
}

static __thread Scratch dp_s2_scratch;

/* 1 when the convolution ran here; 0 when it does not qualify (stride 2, no dilation, one group, constant filters,
 * few channels: DP_S2_MAX_C) or a buffer cannot be had. Measured on the EPYC (Zen 4), 1 thread, against hcc's fp32:
 * ResNet-18's 3 -> 64 7x7/2 stem 1.47x here, 1.08x on im2col; a 64 -> 128 3x3/2 0.95x here (a zero tap in every
 * third pair), 1.36x on im2col, which pairs channels, 1.79x on dp_fv (an even channel count). */
#ifndef DP_S2_MAX_C
#define DP_S2_MAX_C 4
#endif
static int dp_stride2(Problem *problems, int64_t NB, const float *x, const int64_t *xs, const int64_t *sizes, const int64_t *conv,
                      const int64_t *ys, int64_t site) {
  int64_t C = sizes[1], F = sizes[4], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8];
  if (amx_ready() || !dp_ready() || site <= 0 || sizes[9] > 1 || C > DP_S2_MAX_C || KW < 2 || conv[0] != 2 || conv[1] != 2 ||
      conv[2] != 1 || conv[3] != 1 || !problems[0].lda || xs[3] != 1 || ys[3] != 1 || ys[2] != OW)
    return 0;
  int64_t kw_pairs = (KW + 1) / 2, Wd = ((OW + 31) / 32) * 32 + kw_pairs, Hp = 2 * (OH - 1) + KH;
  DpStride2 job = {problems, x, xs, NULL, NULL, C, F, sizes[2], sizes[3], KH, KW, OH, OW, conv[4], conv[5], Hp, Wd, kw_pairs,
                   C * Hp * 2 * Wd};
  const int64_t shape[3] = {F, C * KH * KW, -300}; /* -300: this layout */
  job.wt = (const uint32_t *)packed_weights(site, shape, (size_t)(C * KH * kw_pairs * F + 1), dp_s2_pack, &job);
  uint16_t *xin = (uint16_t *)scratch(&dp_s2_scratch, (size_t)(NB * job.plane / 2 + 1));
  if (!job.wt || !xin) return 0;
  job.xin = xin;
  hcc_parallel_for(NB * C, dp_s2_input, &job);
  hcc_parallel_for(NB * OH, dp_s2_rows, &job);
  return 1;
}
#pragma GCC pop_options
#endif

/* Whether a call that asks for bfloat16 products gets them: on AMX tiles or AVX512-BF16 dot products (dp_panel), for
 * a product big enough to repay rounding both operands on every call (measured: a 37 x 53 x 29 GEMM ran 0.7x as fast)
 * with, on tiles, at least the 32 rows of a tile block (16-filter convolutions of a U-Net ran 1.2-1.7x slower on
 * half-empty blocks); fp32 otherwise. */
#define AMX_MIN_FLOPS 1e6
#define BF16X3 2 /* gemm_entry's bf16 argument for the split products (1: plain bf16) */
#define INT8 3   /* ... for int8 products (AMX-INT8, or AVX512-VNNI) */
static int amx_int8_tiles(void) { /* int8 products: AMX-INT8 tiles, or AVX512-VNNI where there are no tiles */
#ifdef HCC_AMX
  return amx_int8_ready() || (!amx_ready() && vnni_ready());
#else
  return 0;
#endif
}

static int use_bf16_products(int bf16, int64_t M, int64_t N, int64_t K) {
#ifdef HCC_AMX
  if (!bf16 || N < 16 || K < 32 || 2.0 * (double)M * (double)N * (double)K < AMX_MIN_FLOPS) return 0;
  if (amx_ready()) return M >= 32;
  /* dot products from 16 rows: no tile block to fill (a U-Net's 16-filter 3x3 convolutions on 128x128 1.35-1.58x
     fp32); bf16 on AVX512-BF16, int8 on AVX512-VNNI (gemm_entry asks amx_int8_tiles first); bf16x3: tiles only (its
     three products on dots are slower than fp32) */
  return M >= 16 && ((bf16 == 1 && dp_ready()) || (bf16 == INT8 && vnni_ready()));
#else
  (void)bf16, (void)M, (void)N, (void)K;
  return 0;
#endif
}

/* The blocked product for rows [m0, m1) and columns [n0, n1). */
/* ------------------------------------------------------------------------------------------------ packed weights */

/* Operands that are bundle weights, packed at a call site's first call and kept until the library is unloaded
 * (onnxruntime prepacks its weights at session creation alike): a GEMM's B panels (packing them every call cost
 * about a third of an MLP's batch-64 layers: a copy of the whole weight per call) and a convolution's filter panels
 * (20% of a 512-filter 7x7 convolution). The generated code numbers the call sites whose operand is a bundle weight
 * (`site` > 0); a site's weights are the same values in every session of the bundle, even at another address, so an
 * entry is never replaced and a concurrent caller can keep reading it. */
typedef struct {
  int64_t site, shape[3]; /* the packed operand's sizes, checked on every use (static shapes: they never differ) */
  float *data;
} PackedWeights;

/* Sites below this number are also found without the lock: an LSTM's 1,600 gate products per run each took it. */
#define FAST_SITES 4096

/* Entries kept per call site: one store for packed weights, one for a convolution's offset tables (conv_entry). */
typedef struct {
  PackedWeights *sites;
  int64_t count, capacity;
  pthread_mutex_t lock;
  _Atomic(const float *) fast_data[FAST_SITES]; /* set once, after the entry is complete */
  int64_t fast_shape[FAST_SITES][3];
} SiteStore;

static SiteStore weight_store = {.lock = PTHREAD_MUTEX_INITIALIZER}, table_store = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void free_store(SiteStore *store) {
  for (int64_t i = 0; i < store->count; ++i) free(store->sites[i].data);
  free(store->sites);
  store->sites = NULL, store->count = store->capacity = 0;
  for (int64_t i = 0; i < FAST_SITES; ++i) atomic_store(&store->fast_data[i], NULL);
}

__attribute__((destructor)) static void free_packed_sites(void) {
  free_store(&weight_store);
  free_store(&table_store);
}

/* A kept operand's buffer: 64-byte aligned; from 1 MB on, on 2 MB boundaries and marked for transparent huge pages
 * (where the kernel offers them on request): a model's weights are streamed from L3 or memory on every run, and on
 * 4 KB pages a 3 MB matrix spans 800 TLB entries that another model's run (or onnxruntime's) evicts. */
static float *kept_alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded < ((size_t)1 << 20)) return aligned_alloc(64, rounded);
  size_t huge = (size_t)2 << 20;
  void *data = aligned_alloc(huge, (rounded + huge - 1) / huge * huge);
#ifdef MADV_HUGEPAGE
  if (data) madvise(data, (rounded + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
  return data;
}

typedef void (*pack_fn)(const void *ctx, float *out);

/* Site `site`'s entry in `store` (`floats` floats, written by pack(ctx, out) on first use); NULL when out of memory
 * or when the shape differs from the entry's (not expected). */
static const float *site_entry(SiteStore *store, int64_t site, const int64_t shape[3], size_t floats, pack_fn pack, const void *ctx) {
  if (site > 0 && site < FAST_SITES) {
    const float *data = atomic_load_explicit(&store->fast_data[site], memory_order_acquire);
    if (data) return memcmp(store->fast_shape[site], shape, sizeof store->fast_shape[site]) == 0 ? data : NULL;
  }
  const float *found = NULL;
  pthread_mutex_lock(&store->lock);
  int64_t i = 0;
  while (i < store->count && store->sites[i].site != site) ++i;
  if (i < store->count) {
    const PackedWeights *e = &store->sites[i];
    found = memcmp(e->shape, shape, sizeof e->shape) == 0 ? e->data : NULL;
  } else {
    if (store->count == store->capacity) {
      PackedWeights *grown = realloc(store->sites, sizeof(PackedWeights) * (size_t)(2 * store->capacity + 8));
      if (grown) store->sites = grown, store->capacity = 2 * store->capacity + 8;
    }
    float *data = store->count < store->capacity ? kept_alloc(floats * 4) : NULL;
    if (data) {
      pack(ctx, data);
      store->sites[store->count++] = (PackedWeights){site, {shape[0], shape[1], shape[2]}, data};
      found = data;
      if (site > 0 && site < FAST_SITES) { /* the shape first: a reader that sees the data sees its shape */
        memcpy(store->fast_shape[site], shape, sizeof store->fast_shape[site]);
        atomic_store_explicit(&store->fast_data[site], data, memory_order_release);
      }
    }
  }
  pthread_mutex_unlock(&store->lock);
  return found;
}

/* Site `site`'s packed operand (see site_entry). */
static const float *packed_weights(int64_t site, const int64_t shape[3], size_t floats, pack_fn pack, const void *ctx) {
  return site_entry(&weight_store, site, shape, floats, pack, ctx);
}

/* A GEMM's whole B as gemm_block reads it: per K block of KC rows (from pc), NR-column panels of kc rows; block pc
 * starts at pc * N rounded up to NR. One copy per batch entry (attention heads of one weight), or one for all when
 * every entry reads the same B. */
typedef struct {
  const Problem *problems;
  int64_t copies;
} GemmPack;

static int64_t packed_b_floats(const Problem *p) { return ((p->N + NR - 1) / NR) * NR * p->K; }

static int64_t k_block(const Problem *p) { return p->kc > 0 ? p->kc : KC; }

static void pack_gemm_b(const void *ctx, float *out) {
  const GemmPack *g = ctx;
  for (int64_t i = 0; i < g->copies; ++i) {
    const Problem *p = &g->problems[i];
    int64_t npad = ((p->N + NR - 1) / NR) * NR, kb = k_block(p);
    for (int64_t pc = 0; pc < p->K; pc += kb) pack_b(p, 0, p->N, pc, min64(kb, p->K - pc), out + i * packed_b_floats(p) + pc * npad);
  }
}

static void gemm_block(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
#ifdef HCC_AMX
  if (p->bf16 && amx_block(p, m0, m1, n0, n1)) return;
#endif
  gemm_block_fp32(p, m0, m1, n0, n1);
}

/* Columns per NC block for a part of `rows` rows. BLIS keeps C in memory and streams it once per KC block; with few
 * rows (a transformer's 128 tokens) a 4096-wide block makes that C block 1.5 MB, which leaves the L2 between K blocks:
 * every micro-kernel call then waits for its C tile (6 rows, each on its own page). A C block of at most GEMM_C_BYTES
 * stays in the L2 (measured on the EPYC, 512 KiB L2, 1 thread, interleaved with onnxruntime: 128 x 768 x 3072 12%
 * faster (4096 -> 256 columns), 128 x 3072 x 768 3%; 512 columns at 256 KiB: 6%; 128 columns: as 256). Parts of
 * more rows keep NC: there the A block, re-read for every NC block, is what the L2 must hold. */
#ifndef GEMM_C_BYTES
#define GEMM_C_BYTES (128 * 1024)
#endif
#ifndef GEMM_C_ROWS
#define GEMM_C_ROWS (2 * MC)
#endif
static int64_t gemm_nc(int64_t rows) {
  if (rows > GEMM_C_ROWS) return NC;
  int64_t n = (GEMM_C_BYTES / 4 / rows / NR) * NR;
  return n < 16 * NR ? 16 * NR : n > NC ? NC : n;
}

/* One K block's loop state in gemm_block_fp32, for gemm_tile. */
typedef struct {
  int64_t m0, jc, nc, pc, kc, lda, full, a_full;
  const float *a_block, *panels, *ap;
} GemmBlock;

/* The micro-kernel call for row tile (ic + ir, rows) and column panel jr of block t. */
static inline __attribute__((always_inline)) void gemm_tile(const Problem *p, const GemmBlock *t, int64_t ic, int64_t ir,
                                                            int64_t rows, int64_t jr) {
  const float *b = jr < t->full ? p->b + t->pc * p->b_sk + t->jc + jr : t->panels + jr * t->kc;
  int64_t ldb = jr < t->full ? p->b_sk : NR, kc = t->kc;
  float *c = p->c + (ic + ir) * p->c_sm + (t->jc + jr) * p->c_sn;
  const float *a = ir < t->a_full ? t->a_block + (ic + ir) * t->lda : t->ap + ir * kc;
  /* the first row tile of a kept panel fetches the next one towards L2: a model's weights come from memory on every
     run (BERT's 768 x 3072 layers: 9.4 MB each), and waiting for them cost 10-20% of a GEMM (measured with the caches
     flushed between calls: 64 x 784 x 1024 -18%, 128 x 768 x 3072 -10%; no change with warm caches) */
  const float *pf = ir == 0 && ic == t->m0 && p->packed_b && jr >= t->full ? b + NR * kc : NULL;
  micro_kernel(kc, a, ir < t->a_full ? t->lda : 1, ir < t->a_full ? 1 : MR, b, ldb, c, p->c_sm, p->c_sn, rows,
               min64(NR, t->nc - jr), &p->e, ic + ir, t->jc + jr, t->pc == 0, t->pc + kc >= p->K, pf);
}

/* Row tiles outer, column panels inner (onnxruntime's order: a row tile's A stays in L1 while the K block of B streams
 * from L2) for a part of few rows (gemm_nc) whose B block fits this many bytes; else panels outer (BLIS: a panel in
 * L1, A from L2). Measured on the EPYC (AVX2, interleaved with onnxruntime): single GEMMs 128 x 256 x 1024 0-8%,
 * 128 x 768 x 768 3-7%, 128 x 768 x 3072 6-8% faster; BERT h256 and h768 3-4% at 1 thread, 1-2% at 2. A
 * 512-column block (64 x 784 x 1024: 512 KiB of B) lost 1-3% this way, so it keeps panels outer. */
#ifndef GEMM_B_BLOCK_BYTES
#define GEMM_B_BLOCK_BYTES (256 * 1024)
#endif

static void gemm_block_fp32(const Problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  int64_t mcap = min64(MC, ((m1 - m0 + MR - 1) / MR) * MR), nc_block = gemm_nc(m1 - m0);
  int64_t ncap = min64(nc_block, ((n1 - n0 + NR - 1) / NR) * NR);
  int64_t kb = k_block(p), lda = p->lda ? p->lda : p->lda_run;
  float *ap = buffer((size_t)(mcap + ncap) * kb);
  if (!ap) abort(); /* out of memory: nothing sensible to return through a void ABI */
  float *bp = ap + mcap * kb;
  for (int64_t jc = n0; jc < n1; jc += nc_block) {
    int64_t nc = min64(nc_block, n1 - jc);
    for (int64_t pc = 0; pc < p->K; pc += kb) {
      int64_t kc = min64(kb, p->K - pc);
      const float *a_block = p->lda ? p->a + pc : p->a + (lda ? p->ak[pc] : 0); /* A's rows read in place: column pc */
      /* B is packed (NR-wide panels, contiguous along k) whenever more than one row block reuses it: read in place,
         rows ldb apart thrash the L1 (a 512-column matrix maps its rows onto 4 sets), which cost 15-25% of MLP and
         BERT GEMMs on AVX-512. A single row block (M <= MR) reads B with unit column stride in place, except a
         last partial panel (reading past N could leave the buffer); so does a B of few rows that is not a kept
         weight (a 1x1 convolution's input: packing it was a whole extra pass; MobileNetV2's 32->16 on 112x112 -30%,
         96->24 on 56x56 -18%; from 144 rows on, reading in place lost). */
      int direct = p->linear && p->b_sn == 1 && (p->M <= MR || (p->K <= DIRECT_MAX_K && !p->packed_b));
      int64_t full = direct ? (nc / NR) * NR : 0;
      const float *panels = bp;
      if (p->packed_b && !direct)
        panels = p->packed_b + pc * (((p->N + NR - 1) / NR) * NR) + jc * kc; /* packed at the first call */
      else if (full < nc)
        pack_b(p, jc + full, nc - full, pc, kc, bp + full * kc);
      for (int64_t ic = m0; ic < m1; ic += MC) {
        int64_t mc = min64(MC, m1 - ic);
        /* A with contiguous rows (row-major activations, a convolution's weights) is read in place, MR rows at a
           time (the broadcasts read it as well as a packed panel); only a last partial row block is packed. Read in
           place, a block of 12k + 4 rows ends in two 8-row tiles instead of 12 + 4 (a 4-row tile runs at about half
           speed: 64 x 784 x 1024 ran 5% slower than 60 rows; split: 28, 40, 64, 76 rows 4-12% faster) */
        int split = lda && MR == 12 && mc % MR == 4 && mc >= 28; /* 16 rows: 8 + 8 within noise of 12 + 4 */
        int64_t a_full = lda ? (split ? mc : (mc / MR) * MR) : 0;
        if (a_full < mc) pack_a(p, ic + a_full, mc - a_full, pc, kc, ap + a_full * kc);
        GemmBlock t = {m0, jc, nc, pc, kc, lda, full, a_full, a_block, panels, ap};
        int rows_outer = m1 - m0 <= GEMM_C_ROWS && kc * nc * (int64_t)sizeof(float) <= GEMM_B_BLOCK_BYTES;
        if (rows_outer) {
          for (int64_t ir = 0, rows; ir < mc; ir += rows) {
            rows = split && mc - ir == 16 ? 8 : min64(MR, mc - ir);
            for (int64_t jr = 0; jr < nc; jr += NR)
              gemm_tile(p, &t, ic, ir, rows, jr);
          }
        } else {
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0, rows; ir < mc; ir += rows) {
              rows = split && mc - ir == 16 ? 8 : min64(MR, mc - ir);
              gemm_tile(p, &t, ic, ir, rows, jr);
            }
        }
      }
    }
  }
}

/* dst[0:n] += x * src[0:n] */
static void axpy(int64_t n, float xs, const float *restrict src, float *restrict dst) {
  vf x = vsplat(xs);
  int64_t j = 0;
  for (; j + 4 * VL <= n; j += 4 * VL) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) vstore(dst + j + q * VL, vload(dst + j + q * VL) + x * vload(src + j + q * VL));
  }
  for (; j < n; ++j) dst[j] += xs * src[j];
}

/* Few rows: no packing. B with unit n stride is streamed row by row; B with unit k stride (a weight stored N x K,
 * Gemm transB) is read as dot products along k. */
static void small_m_accumulate(const Problem *p, int64_t n0, int64_t n1);

static void small_m_panels(const Problem *p, int64_t n0, int64_t n1);

static void small_m(const Problem *p, int64_t n0, int64_t n1) {
  region_prologue(&p->e, p->c, p->c_sm, p->c_sn, 0, p->M, n0, n1);
  if (p->packed_b)
    small_m_panels(p, n0, n1);
  else
    small_m_accumulate(p, n0, n1);
  region_epilogue(&p->e, p->c, p->c_sm, p->c_sn, 0, p->M, n0, n1);
}

/* A constant B of a few-row product, packed once (pack_small_m_panels) into NR-column panels, K rows of NR floats
 * each: every k reads one contiguous row of the panel, the whole product one sequential stream (a matrix-vector
 * product is bound by reading B: the strided rows or columns of the layouts above ran at 15-23 GB/s). */
/* Sums of row `a` times `panels` (1 or 2) adjacent panels into sums[0 .. panels * NR): even and odd k in two FMA
 * chains per column vector, added at the end, as small_m_row4 does: a column's sum does not depend on how N was
 * split among threads (a lone panel had 4 chains: another order, other bits at another thread count). */
static inline __attribute__((always_inline)) void small_m_row(const float *a, int64_t a_sk, const float *panel, int64_t K,
                                                              int panels, float *sums) {
  enum { W = 2 * NR / VL }; /* vectors of two panels */
  vf acc[2][W];
  for (int q = 0; q < 2; ++q)
    for (int v = 0; v < W; ++v) acc[q][v] = vsplat(0.0f);
  const float *second = panel + NR * K;
  const int vectors = panels * W / 2;
  int64_t k = 0;
  for (; k + 2 <= K; k += 2)
#pragma GCC unroll 2
    for (int q = 0; q < 2; ++q) {
      vf x = vsplat(a[(k + q) * a_sk]);
#pragma GCC unroll 4
      for (int v = 0; v < vectors; ++v) acc[q][v] += x * vload((v < W / 2 ? panel : second) + (k + q) * NR + (v % (W / 2)) * VL);
    }
  for (; k < K; ++k) {
    vf x = vsplat(a[k * a_sk]);
    for (int v = 0; v < vectors; ++v) acc[0][v] += x * vload((v < W / 2 ? panel : second) + k * NR + (v % (W / 2)) * VL);
  }
  for (int v = 0; v < vectors; ++v) vstore(sums + v * VL, acc[0][v] + acc[1][v]);
}

#if VL == 16
/* One row times four adjacent panels (128 columns): 8 vectors of columns, 2 k steps in flight (16 sums), one
 * broadcast per 8 FMAs instead of per 4; the same sums as small_m_row's two panels (the even-k and odd-k chains,
 * added, then added to C). A 1 x 128 x 512 GEMV streaming its panels from L2 took about 2.6 instead of 2.8 us (C
 * harness, EPYC Zen 4); the LSTM and GRU keyword spotters 1.02-1.03x faster, the same bits. */
static void small_m_row4(const float *a, int64_t a_sk, const float *panel, int64_t K, float *c) {
  const float *p1 = panel + NR * K, *p2 = p1 + NR * K, *p3 = p2 + NR * K;
  vf s0 = vsplat(0.0f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
  vf t0 = s0, t1 = s0, t2 = s0, t3 = s0, t4 = s0, t5 = s0, t6 = s0, t7 = s0;
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
    vf x = vsplat(a[k * a_sk]), y = vsplat(a[(k + 1) * a_sk]);
    const int64_t o = k * NR, q = o + NR;
    s0 += x * vload(panel + o), s1 += x * vload(panel + o + VL), s2 += x * vload(p1 + o), s3 += x * vload(p1 + o + VL);
    s4 += x * vload(p2 + o), s5 += x * vload(p2 + o + VL), s6 += x * vload(p3 + o), s7 += x * vload(p3 + o + VL);
    t0 += y * vload(panel + q), t1 += y * vload(panel + q + VL), t2 += y * vload(p1 + q), t3 += y * vload(p1 + q + VL);
    t4 += y * vload(p2 + q), t5 += y * vload(p2 + q + VL), t6 += y * vload(p3 + q), t7 += y * vload(p3 + q + VL);
  }
  if (k < K) {
    vf x = vsplat(a[k * a_sk]);
    const int64_t o = k * NR;
    s0 += x * vload(panel + o), s1 += x * vload(panel + o + VL), s2 += x * vload(p1 + o), s3 += x * vload(p1 + o + VL);
    s4 += x * vload(p2 + o), s5 += x * vload(p2 + o + VL), s6 += x * vload(p3 + o), s7 += x * vload(p3 + o + VL);
  }
  vstore(c, vload(c) + (s0 + t0)), vstore(c + VL, vload(c + VL) + (s1 + t1));
  vstore(c + 2 * VL, vload(c + 2 * VL) + (s2 + t2)), vstore(c + 3 * VL, vload(c + 3 * VL) + (s3 + t3));
  vstore(c + 4 * VL, vload(c + 4 * VL) + (s4 + t4)), vstore(c + 5 * VL, vload(c + 5 * VL) + (s5 + t5));
  vstore(c + 6 * VL, vload(c + 6 * VL) + (s6 + t6)), vstore(c + 7 * VL, vload(c + 7 * VL) + (s7 + t7));
}
#endif

/* Rows 2..4 of a few-row product at once, over one or two adjacent panels (up to 64 columns): each B vector loaded
 * serves every row (small_m_row streams B once per row: four passes over an LSTM's recurrent weight per time step at
 * batch 4). One FMA chain per row and column vector, k in order: the same sums however N is split among threads. */
static inline __attribute__((always_inline)) void small_m_rows_n(const Problem *p, const float *panel, int rows,
                                                                int vectors, float *sums) {
  const float *second = panel + NR * p->K;
  vf acc[8][4];
  for (int m = 0; m < rows; ++m)
    for (int v = 0; v < vectors; ++v) acc[m][v] = vsplat(0.0f);
  for (int64_t k = 0; k < p->K; ++k) {
    vf b[4];
    for (int v = 0; v < vectors; ++v) b[v] = vload((v < 2 ? panel : second) + k * NR + (v % 2) * VL);
#pragma GCC unroll 8
    for (int m = 0; m < rows; ++m) {
      vf x = vsplat(p->a[m * p->a_sm + k * p->a_sk]);
#pragma GCC unroll 4
      for (int v = 0; v < vectors; ++v) acc[m][v] += x * b[v];
    }
  }
  for (int m = 0; m < rows; ++m)
    for (int v = 0; v < vectors; ++v) vstore(sums + (m * 4 + v) * VL, acc[m][v]);
}

/* 2-6 rows over both panels at once (up to 24 accumulators); 7-8 rows (a weight kept for a batch of 8:
 * SMALL_M_KEPT) one panel at a time (16), the panel's sums at their columns of the same rows. */
static void small_m_rows(const Problem *p, const float *panel, int64_t n, int64_t nb) {
  float sums[8 * 4 * VL] __attribute__((aligned(64)));
  const int vectors = nb > NR ? 4 : 2;
  switch (p->M * 10 + vectors) {
  case 22: small_m_rows_n(p, panel, 2, 2, sums); break;
  case 24: small_m_rows_n(p, panel, 2, 4, sums); break;
  case 32: small_m_rows_n(p, panel, 3, 2, sums); break;
  case 34: small_m_rows_n(p, panel, 3, 4, sums); break;
  case 42: small_m_rows_n(p, panel, 4, 2, sums); break;
  case 44: small_m_rows_n(p, panel, 4, 4, sums); break;
  case 52: small_m_rows_n(p, panel, 5, 2, sums); break;
  case 54: small_m_rows_n(p, panel, 5, 4, sums); break;
  case 62: small_m_rows_n(p, panel, 6, 2, sums); break;
  case 64: small_m_rows_n(p, panel, 6, 4, sums); break;
  default:
    for (int half = 0; half < vectors / 2; ++half)
      if (p->M == 7)
        small_m_rows_n(p, panel + half * NR * p->K, 7, 2, sums + half * 2 * VL);
      else
        small_m_rows_n(p, panel + half * NR * p->K, 8, 2, sums + half * 2 * VL);
    break;
  }
  for (int64_t m = 0; m < p->M; ++m) {
    float *c = p->c + m * p->c_sm + n * p->c_sn;
    const float *row = sums + m * 4 * VL;
    if (nb == 2 * NR && p->c_sn == 1)
      for (int v = 0; v < 4; ++v) vstore(c + v * VL, vload(c + v * VL) + vload(row + v * VL));
    else
      for (int64_t j = 0; j < nb; ++j) c[j * p->c_sn] += row[j];
  }
}

static void small_m_panels(const Problem *p, int64_t n0, int64_t n1) {
  int64_t n = n0;
#if VL == 16
  if (p->M == 1 && p->c_sn == 1)
    for (; n + 4 * NR <= n1; n += 4 * NR) small_m_row4(p->a, p->a_sk, p->packed_b + (n / NR) * NR * p->K, p->K, p->c + n);
#endif
  for (; n < n1; n += 2 * NR) { /* n0 is a multiple of NR (run_problems splits N in whole panels) */
    const float *panel = p->packed_b + (n / NR) * NR * p->K;
    int panels = n + NR < n1 ? 2 : 1;
    int64_t nb = min64(panels * NR, n1 - n);
    if (VL == 16 && p->M >= 2) {
      small_m_rows(p, panel, n, nb);
      continue;
    }
    for (int64_t m = 0; m < p->M; ++m) {
      float sums[2 * NR] __attribute__((aligned(64)));
      if (panels == 2)
        small_m_row(p->a + m * p->a_sm, p->a_sk, panel, p->K, 2, sums);
      else
        small_m_row(p->a + m * p->a_sm, p->a_sk, panel, p->K, 1, sums);
      float *c = p->c + m * p->c_sm + n * p->c_sn;
      if (nb == 2 * NR && p->c_sn == 1)
        for (int v = 0; v < 2 * NR / VL; ++v) vstore(c + v * VL, vload(c + v * VL) + vload(sums + v * VL));
      else
        for (int64_t j = 0; j < nb; ++j) c[j * p->c_sn] += sums[j];
    }
  }
}

/* B as NR-column panels of K rows (the last one padded with zero columns), from any strides. */
static void pack_small_m_panels(const void *ctx, float *out) {
  const Problem *p = ctx;
  for (int64_t n0 = 0; n0 < p->N; n0 += NR)
    for (int64_t k = 0; k < p->K; ++k, out += NR)
      for (int64_t j = 0; j < NR; ++j) out[j] = n0 + j < p->N ? p->b[k * p->b_sk + (n0 + j) * p->b_sn] : 0.0f;
}

static void small_m_accumulate(const Problem *p, int64_t n0, int64_t n1) {
  const int64_t a_sm = p->a_sm, a_sk = p->a_sk, b_sk = p->b_sk, b_sn = p->b_sn, K = p->K;
  if (b_sn == 1 && p->c_sn == 1 && K * (n1 - n0) * 4 <= SMALL_B_BYTES) { /* B stays in cache: accumulate in registers */
    int64_t n = n0;
    for (; n + 4 * VL <= n1; n += 4 * VL)
      for (int64_t m = 0; m < p->M; ++m) {
        const float *a = p->a + m * a_sm, *b = p->b + n;
        /* two k phases with their own accumulators: 8 independent FMA chains hide the FMA latency */
        vf acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0}, acc4 = {0}, acc5 = {0}, acc6 = {0}, acc7 = {0};
        int64_t k = 0;
        for (; k + 2 <= K; k += 2, b += 2 * b_sk) {
          vf x = vsplat(a[k * a_sk]), y = vsplat(a[(k + 1) * a_sk]);
          const float *b1 = b + b_sk;
          acc0 += x * vload(b), acc1 += x * vload(b + VL), acc2 += x * vload(b + 2 * VL), acc3 += x * vload(b + 3 * VL);
          acc4 += y * vload(b1), acc5 += y * vload(b1 + VL), acc6 += y * vload(b1 + 2 * VL), acc7 += y * vload(b1 + 3 * VL);
        }
        if (k < K) {
          vf x = vsplat(a[k * a_sk]);
          acc0 += x * vload(b), acc1 += x * vload(b + VL), acc2 += x * vload(b + 2 * VL), acc3 += x * vload(b + 3 * VL);
        }
        acc0 += acc4, acc1 += acc5, acc2 += acc6, acc3 += acc7;
        float *c = p->c + m * p->c_sm + n;
        vstore(c, vload(c) + acc0), vstore(c + VL, vload(c + VL) + acc1);
        vstore(c + 2 * VL, vload(c + 2 * VL) + acc2), vstore(c + 3 * VL, vload(c + 3 * VL) + acc3);
      }
    for (; n < n1; ++n)
      for (int64_t m = 0; m < p->M; ++m) {
        float sum = 0.0f;
        for (int64_t k = 0; k < K; ++k) sum += p->a[m * a_sm + k * a_sk] * p->b[k * b_sk + n];
        p->c[m * p->c_sm + n] += sum;
      }
    return;
  }
  if (b_sn == 1 && p->c_sn == 1) { /* a large B: stream it row by row (k outer); C's strip stays in L1 */
    for (int64_t n = n0; n < n1; n += AXPY_BLOCK) {
      int64_t nb = min64(AXPY_BLOCK, n1 - n);
      for (int64_t k = 0; k < K; ++k) {
        const float *row = p->b + k * b_sk + n;
        for (int64_t m = 0; m < p->M; ++m) axpy(nb, p->a[m * a_sm + k * a_sk], row, p->c + m * p->c_sm + n);
      }
    }
    return;
  }
  for (int64_t m = 0; m < p->M; ++m) {
    const float *a = p->a + m * a_sm;
    float *c = p->c + m * p->c_sm;
    if (b_sk == 1 && a_sk == 1) { /* dot products along k: a weight stored N x K (Gemm transB) */
      for (int64_t n = n0; n < n1; ++n) {
        const float *b = p->b + n * b_sn;
        vf acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
        int64_t k = 0;
        for (; k + 4 * VL <= K; k += 4 * VL) {
          acc0 += vload(a + k) * vload(b + k);
          acc1 += vload(a + k + VL) * vload(b + k + VL);
          acc2 += vload(a + k + 2 * VL) * vload(b + k + 2 * VL);
          acc3 += vload(a + k + 3 * VL) * vload(b + k + 3 * VL);
        }
        for (; k + VL <= K; k += VL) acc0 += vload(a + k) * vload(b + k);
        acc0 += acc1 + acc2 + acc3;
        float sum = 0.0f;
        for (int l = 0; l < VL; ++l) sum += acc0[l];
        for (; k < K; ++k) sum += a[k] * b[k];
        c[n * p->c_sn] += sum;
      }
    } else {
      for (int64_t n = n0; n < n1; ++n) {
        float sum = 0.0f;
        for (int64_t k = 0; k < K; ++k) sum += a[k * a_sk] * p->b[k * b_sk + n * b_sn];
        c[n * p->c_sn] += sum;
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------------ threading */

typedef struct {
  const Problem *problems; /* one per batch entry */
  int64_t m_parts, n_parts; /* parts of even size (even_part) of the NR-column panels and of the MR-row blocks */
  int small;
} Job;

static void run_part(void *ctx, int64_t task) {
  const Job *job = ctx;
  int64_t parts = job->m_parts * job->n_parts;
  const Problem *p = &job->problems[task / parts];
  int64_t rest = task % parts, mi = rest / job->n_parts, ni = rest % job->n_parts, n0, n1, m0, m1;
  even_part((p->N + NR - 1) / NR, job->n_parts, ni, &n0, &n1);
  even_part((p->M + MR - 1) / MR, job->m_parts, mi, &m0, &m1);
  n0 *= NR, n1 = min64(p->N, n1 * NR), m0 *= MR, m1 = min64(p->M, m1 * MR);
  if (n0 >= n1 || m0 >= m1) return;
  if (job->small)
    small_m(p, n0, n1);
  else
    gemm_block(p, m0, m1, n0, n1);
}

/* Split a batch of equally shaped problems into tasks: batch entries first, then columns, then rows. */
static void run_problems(const Problem *problems, int64_t batch) {
  const Problem *p = &problems[0];
  if (p->M <= 0 || p->N <= 0) return;
  if (p->K <= 0) { /* no products: C = clamp(init + residual) */
    for (int64_t b = 0; b < batch; ++b) {
      region_prologue(&problems[b].e, problems[b].c, p->c_sm, p->c_sn, 0, p->M, 0, p->N);
      region_epilogue(&problems[b].e, problems[b].c, p->c_sm, p->c_sn, 0, p->M, 0, p->N);
    }
    return;
  }
  Job job = {problems, 1, 1, p->linear && (p->M <= SMALL_M || (VL == 16 && p->M <= SMALL_M_KEPT && p->packed_b))};
  double flops = 2.0 * (double)p->M * (double)p->N * (double)p->K * (double)batch;
  int64_t threads = hcc_get_num_threads();
  /* a few tasks per thread balance uneven parts; but a product on tiles packs its A rows in every task (amx_block:
     rounded, split or quantized), so there one task per thread (BERT h768's bf16x3 projections at 1 thread packed
     the same 128 x 768 A three times) */
  int64_t want = flops < 4e5 ? 1 : threads * (p->bf16 && !p->packed_a16 ? 1 : 3);
  if (batch < want) {
    int64_t per = (want + batch - 1) / batch;
    int64_t n_units = (p->N + NR - 1) / NR;
    int64_t n_parts = min64(per, n_units);
    if (p->N >= 4 * NR * n_parts || job.small || p->M < 2 * MR) {
      job.n_parts = n_parts > 0 ? n_parts : 1;
    } else {
      /* every row part packs the whole of B again: one part per thread, no more */
      int64_t m_units = (p->M + MR - 1) / MR;
      job.m_parts = min64((threads + batch - 1) / batch, m_units);
    }
  }
  hcc_parallel_for(batch * job.m_parts * job.n_parts, run_part, &job);
}

/* ------------------------------------------------------------------------------------------------ entries */

static float bits_to_float(int64_t bits) {
  uint32_t word = (uint32_t)bits;
  float value;
  memcpy(&value, &word, sizeof value);
  return value;
}

/* The epilogue arguments of every entry: {init mode, init constant (float bits), init pointer, init strides x `rank`,
 * residual pointer (0: none), residual strides x `rank`, lo mode, lo bits, hi mode, hi bits}. Strides are per output
 * dim; the caller offsets the pointers per problem. */
static Epilogue read_epilogue(const int64_t *ep, int rank, const int64_t **init_strides, const int64_t **res_strides) {
  Epilogue e;
  memset(&e, 0, sizeof e);
  e.init_mode = (int)ep[0];
  e.init_value = bits_to_float(ep[1]);
  e.init = (const float *)(intptr_t)ep[2];
  *init_strides = ep + 3;
  e.res = (const float *)(intptr_t)ep[3 + rank];
  *res_strides = ep + 4 + rank;
  e.lo_mode = (int)ep[4 + 2 * rank];
  e.lo = bits_to_float(ep[5 + 2 * rank]);
  e.hi_mode = (int)(ep[6 + 2 * rank] & 15);
  e.act = (int)(ep[6 + 2 * rank] >> 4);
  e.hi = bits_to_float(ep[7 + 2 * rank]);
  return e;
}

static int64_t *linear_table(int64_t *out, int64_t n, int64_t stride) {
  for (int64_t i = 0; i < n; ++i) out[i] = i * stride;
  return out;
}

/* k = k1 * K2 + k2 over two reduction dims (a Gemm on a flattened tensor); K2 = 1 for one dim. */
static int64_t *k_table(int64_t *out, int64_t k1n, int64_t k2n, int64_t s1, int64_t s2) {
  for (int64_t i = 0; i < k1n; ++i)
    for (int64_t j = 0; j < k2n; ++j) out[i * k2n + j] = i * s1 + j * s2;
  return out;
}

/* The packed path's offset tables of A's rows and k, B's k and columns, in one allocation (freed by the caller). */
static int64_t *gemm_tables(int64_t M, int64_t N, int64_t K1, int64_t K2, const int64_t *as, const int64_t *bs,
                            int64_t **am, int64_t **ak, int64_t **bk, int64_t **bn) {
  const int64_t K = K1 * K2;
  int64_t *tables = malloc(sizeof(int64_t) * (size_t)(M + N + 2 * K));
  if (!tables) abort();
  *am = linear_table(tables, M, as[3]);
  *ak = k_table(*am + M, K1, K2, as[4], as[5]);
  *bk = k_table(*ak + K, K1, K2, bs[3], bs[4]);
  *bn = linear_table(*bk + K, N, bs[5]);
  return tables;
}

/* C[b] += A[b] * B[b] for up to 3 batch dims. Pointers come as integers (the generated code passes `index`
 * values); every stride and size is in elements. sizes: {b0, b1, b2, M, N, K1, K2}; strides per operand:
 * a: {b0, b1, b2, m, k1, k2}, b: {b0, b1, b2, k1, k2, n}, c: {b0, b1, b2, m, n}. */
static void gemm_entry(int64_t a_ptr, int64_t b_ptr, int64_t c_ptr, const int64_t *sizes, const int64_t *as, const int64_t *bs,
                       const int64_t *cs, const int64_t *ep, int64_t site, int bf16, float a_scale, int a_signed) {
  int64_t B0 = sizes[0], B1 = sizes[1], B2 = sizes[2], M = sizes[3], N = sizes[4], K1 = sizes[5], K2 = sizes[6];
  if (B0 * B1 * B2 <= 0 || M <= 0 || N <= 0) return;
  const int64_t *is, *rs; /* init / residual strides: {b0, b1, b2, m, n} */
  Epilogue epi = read_epilogue(ep, 5, &is, &rs);
  /* Batch entries that share B and whose rows of A and C (and of the init and residual) continue one another are one
     product of more rows: torch-mlir makes a MatMul of a [1, 14, 14, 640] activation by a [640, 160] weight (ConvNeXt's
     channels-last Linear) 14 products of 14 rows, whose 2-row tail tiles cost 20-30%. Innermost batch dim first. */
  int64_t *batch_sizes[3] = {&B0, &B1, &B2};
  for (int d = 2; d >= 0; --d) {
    if (*batch_sizes[d] == 1) continue;
    if (bs[d] != 0 || as[d] != M * as[3] || cs[d] != M * cs[3] || (epi.init && is[d] != M * is[3]) || (epi.res && rs[d] != M * rs[3]))
      break;
    M *= *batch_sizes[d];
    *batch_sizes[d] = 1;
  }
  int64_t K = K1 * K2, batch = B0 * B1 * B2;
  if (bf16 == INT8 && !(site > 0 && a_scale > 0.0f && isfinite(a_scale) && amx_int8_tiles())) bf16 = 0; /* int8: kept B only */
  int amx = use_bf16_products(bf16, M, N, K);
  int linear = K2 == 1 || (as[4] == K2 * as[5] && bs[3] == K2 * bs[4]);
  int64_t a_sk = K2 == 1 ? as[4] : as[5], b_sk = K2 == 1 ? bs[3] : bs[4];
  Problem one, *problems = &one;
  int64_t *tables = NULL;
  if (batch > 1 && !(problems = malloc(sizeof(Problem) * (size_t)batch))) abort();
  int64_t *am = NULL, *ak = NULL, *bk = NULL, *bn = NULL;
  /* a few more rows than SMALL_M take the small-M path too when B is a bundle weight kept in its panels (below) */
  const int kept_rows = VL == 16 && linear && M > SMALL_M && M <= SMALL_M_KEPT && site > 0 && !amx &&
                        (batch == 1 || (bs[0] == 0 && bs[1] == 0 && bs[2] == 0));
  if (!(linear && M <= SMALL_M) && !kept_rows) /* the packed path reads through offset tables; the small-M path needs none */
    tables = gemm_tables(M, N, K1, K2, as, bs, &am, &ak, &bk, &bn);
  const float *a = (const float *)(intptr_t)a_ptr, *b = (const float *)(intptr_t)b_ptr;
  float *c = (float *)(intptr_t)c_ptr;
  int64_t index = 0;
  for (int64_t i = 0; i < B0; ++i)
    for (int64_t j = 0; j < B1; ++j)
      for (int64_t l = 0; l < B2; ++l) {
        Problem *p = &problems[index++];
        p->a = a + i * as[0] + j * as[1] + l * as[2];
        p->b = b + i * bs[0] + j * bs[1] + l * bs[2];
        p->c = c + i * cs[0] + j * cs[1] + l * cs[2];
        p->M = M, p->N = N, p->K = K;
        p->am = am, p->ak = ak, p->bk = bk, p->bn = bn;
        p->c_sm = cs[3], p->c_sn = cs[4];
        p->linear = linear;
        p->bf16 = amx, p->split = amx && bf16 == BF16X3, p->b16_nonfinite = 0;
        p->int8 = amx && bf16 == INT8, p->a_scale = a_scale, p->a_signed = a_signed, p->packed_b8 = NULL, p->b8_scales = NULL;
        p->b8_nonfinite = 0;
        p->a_sm = as[3], p->a_sk = a_sk, p->b_sk = b_sk, p->b_sn = bs[5];
        p->pad_h = p->pad_w = p->k_h = p->k_w = NULL;
        p->lda = linear && a_sk == 1 ? as[3] : 0;
        /* A of runs of K2 contiguous floats (attention's heads put side by side by a transpose folded into the
           strides): K blocks of one run read it in place; packing every row was a fifth of that product (BERT's
           attention output projection: 1.33 vs 1.07 ms for the same-sized query projection) */
        p->kc = !linear && K2 > 1 && as[5] == 1 && K2 % 16 == 0 && K2 <= KC ? K2 : 0;
        p->lda_run = p->kc ? as[3] : 0;
        p->packed_b = NULL, p->packed_a16 = NULL, p->packed_b16 = NULL;
        p->e = epi;
        p->e.init_sm = is[3], p->e.init_sn = is[4];
        if (epi.init) p->e.init = epi.init + i * is[0] + j * is[1] + l * is[2];
        p->e.res_sm = rs[3], p->e.res_sn = rs[4];
        if (epi.res) p->e.res = epi.res + i * rs[0] + j * rs[1] + l * rs[2];
      }
  /* B a bundle weight of a few-row product (a matrix-vector product, an LSTM's gates): packed once into NR-column
     panels (packed_weights) that small_m_panels streams; one copy when every batch entry reads the same B */
  if (site > 0 && !tables && !amx && (batch == 1 || (bs[0] == 0 && bs[1] == 0 && bs[2] == 0))) {
    const int64_t shape[3] = {K, N, -1}; /* -1: this layout, not the packed path's panels */
    const float *panels = packed_weights(site, shape, (size_t)(((N + NR - 1) / NR) * NR * K), pack_small_m_panels, problems);
    for (int64_t i = 0; panels && i < batch; ++i) problems[i].packed_b = panels;
    if (!panels && kept_rows) { /* no buffer to keep B in: the packed path after all, which reads through tables */
      tables = gemm_tables(M, N, K1, K2, as, bs, &am, &ak, &bk, &bn);
      for (int64_t i = 0; i < batch; ++i) problems[i].am = am, problems[i].ak = ak, problems[i].bk = bk, problems[i].bn = bn;
    }
  }
#ifdef HCC_AMX
  if (site > 0 && amx && tables && problems->int8) { /* int8: B quantized per column, kept (amx_pack_b8_all) */
    AmxKeepB pack = {problems, bs[0] == 0 && bs[1] == 0 && bs[2] == 0 ? 1 : batch};
    const int64_t shape[3] = {K, N, -5000 - pack.copies}; /* this layout */
    int64_t per = amx_b8_floats(problems), panels = (N + NR - 1) / NR;
    const float *kept = packed_weights(site, shape, (size_t)(pack.copies * per + 2), amx_pack_b8_all, &pack);
    for (int64_t i = 0; kept && i < batch; ++i) {
      const float *copy = kept + (pack.copies == 1 ? 0 : i * per);
      problems[i].packed_b8 = (const int8_t *)copy;
      problems[i].b8_scales = copy + panels * INT8_KP(K) * NR / 4;
      problems[i].b8_nonfinite = kept[pack.copies * per] != 0.0f; /* amx_pack_b8_all's trailer */
    }
    if (!kept)
      for (int64_t i = 0; i < batch; ++i) problems[i].bf16 = problems[i].int8 = 0; /* no buffer: fp32 */
  } else if (site > 0 && amx && tables) { /* B a bundle weight on tiles: its bf16 panels kept (amx_pack_b_all) */
    AmxKeepB pack = {problems, bs[0] == 0 && bs[1] == 0 && bs[2] == 0 ? 1 : batch};
    const int64_t shape[3] = {K, N, (problems->split ? -3000 : -1000) - pack.copies}; /* this layout (and bf16x3 or not) */
    int64_t halves = pack.copies * amx_panel_halves(problems);
    const float *kept = packed_weights(site, shape, (size_t)(halves / 2 + 2), amx_pack_b_all, &pack);
    for (int64_t i = 0; kept && i < batch; ++i) {
      problems[i].packed_b16 = (const uint16_t *)kept + (pack.copies == 1 ? 0 : i * amx_panel_halves(problems));
      problems[i].b16_nonfinite = kept[halves / 2] != 0.0f; /* amx_pack_b_all's trailer */
    }
  }
#endif
  /* B a bundle weight that the packed path reads: packed once (packed_weights), per batch entry unless shared */
  if (site > 0 && !amx && tables) {
    GemmPack pack = {problems, bs[0] == 0 && bs[1] == 0 && bs[2] == 0 ? 1 : batch};
    const int64_t shape[3] = {K, N, pack.copies};
    const float *packed = packed_weights(site, shape, (size_t)(pack.copies * packed_b_floats(problems)), pack_gemm_b, &pack);
    for (int64_t i = 0; packed && i < batch; ++i) problems[i].packed_b = packed + (pack.copies == 1 ? 0 : i * packed_b_floats(problems));
  }
  run_problems(problems, batch);
  if (problems != &one) free(problems);
  free(tables);
}

void CAT(hcc_gemm, SUFFIX)(int64_t a, int64_t b, int64_t c, const int64_t *sizes, const int64_t *as, const int64_t *bs,
                           const int64_t *cs, const int64_t *ep, int64_t site) {
  gemm_entry(a, b, c, sizes, as, bs, cs, ep, site, 0, 0.0f, 0);
}

/* The same product with bfloat16 operands and fp32 sums where the CPU has AMX (else exactly hcc_gemm). */
void CAT(hcc_gemm_bf16, SUFFIX)(int64_t a, int64_t b, int64_t c, const int64_t *sizes, const int64_t *as, const int64_t *bs,
                                const int64_t *cs, const int64_t *ep, int64_t site) {
  gemm_entry(a, b, c, sizes, as, bs, cs, ep, site, 1, 0.0f, 0);
}

/* bf16x3: each operand split into two bfloat16 halves, three tile products (amx_block_step3); near-fp32 accuracy
 * (about 2^-16 of each product) at AMX speed where the CPU has it (else exactly hcc_gemm). */
void CAT(hcc_gemm_bf16x3, SUFFIX)(int64_t a, int64_t b, int64_t c, const int64_t *sizes, const int64_t *as, const int64_t *bs,
                                  const int64_t *cs, const int64_t *ep, int64_t site) {
  gemm_entry(a, b, c, sizes, as, bs, cs, ep, site, BF16X3, 0.0f, 0);
}

/* int8 (amx_block_int8): A quantized per tensor with step `a_step` (float bits; as int8, or as uint8 when a_signed
 * is 0), a kept B (site > 0) per column, int32 sums on AMX-INT8 tiles; elsewhere (no AMX-INT8, B not a kept weight,
 * a product too small for tiles) exactly hcc_gemm. */
void CAT(hcc_gemm_int8, SUFFIX)(int64_t a, int64_t b, int64_t c, const int64_t *sizes, const int64_t *as, const int64_t *bs,
                                const int64_t *cs, const int64_t *ep, int64_t site, int64_t a_step, int64_t a_signed) {
  union {
    uint32_t bits;
    float value;
  } step = {(uint32_t)a_step};
  gemm_entry(a, b, c, sizes, as, bs, cs, ep, site, INT8, step.value, a_signed != 0);
}

/* ------------------------------------------------------------------------------------------------ direct conv */

/* A stride-1 convolution with output rows at least NR/2 wide skips im2col: the input is copied once into a
 * zero-padded buffer (Hp x Wp per channel), and each tile of NR pixels of one output row reads its B rows in place,
 * row k (channel c, tap kh, kw) at tile + koff[k]. Packing B cost as much as a third of a ResNet or U-Net
 * convolution (scalar gathers at the padding, panels that straddle output rows); this reads nothing twice but the
 * halo. A last partial tile of a row computes up to NR-1 columns it never stores (they read the next row). */
typedef struct {
  const Problem *problems; /* per (image, group): a = filters, b = the padded input, c = output */
  int64_t parts, tiles, row_tiles, OH, OW, Wp, y_sh;
  const int64_t *koff;
} DirectJob;

/* Filter rows past the last whole MR block, packed with zero rows (the others are read in place); NULL if none. */
/* Whether M rows of A end in two 8-row tiles instead of 12 + 4 (a 4-row tile runs at about half speed), and so how
 * many rows of the filters direct_tile reads in place (the rest: packed by pack_last_rows). */
static inline int split_tail(int64_t M) { return MR == 12 && M % MR == 4 && M >= 16; }

static inline int64_t in_place_rows(int64_t M) { return split_tail(M) ? M : (M / MR) * MR; }

static const float *pack_last_rows(const Problem *p) {
  int64_t m_full = in_place_rows(p->M);
  if (m_full == p->M) return NULL;
  float *rest = buffer((size_t)MR * p->K);
  if (!rest) abort(); /* out of memory: nothing sensible to return through a void ABI */
  pack_a(p, m_full, p->M - m_full, 0, p->K, rest);
  return rest;
}

/* All M rows of one tile of nr pixels whose B starts at bp, into c (rows c_sm apart), with epilogue e; `col`: the
 * tile's first pixel for the epilogue's sources. */
static void direct_tile(const Problem *p, const float *rest, const int64_t *koff, const float *bp, float *c, int64_t c_sm,
                        int64_t nr, const Epilogue *e, int64_t col) {
  int64_t m_full = in_place_rows(p->M);
  int split = split_tail(p->M);
  for (int64_t pc = 0; pc < p->K; pc += KC) {
    int64_t kc = min64(KC, p->K - pc);
    for (int64_t ir = 0, rows; ir < p->M; ir += rows) {
      rows = split && p->M - ir == 16 ? 8 : min64(MR, p->M - ir);
      int in_place = ir < m_full;
      const float *a = in_place ? p->a + ir * p->lda + pc : rest + pc * MR;
      micro_kernel_direct(kc, a, in_place ? p->lda : 1, in_place ? 1 : MR, bp, koff + pc, c + ir * c_sm, c_sm, rows,
                          nr, e, ir, col, pc == 0, pc + kc >= p->K);
    }
  }
}

static void direct_part(void *ctx, int64_t task) {
  const DirectJob *j = ctx;
  const Problem *p = &j->problems[task / j->parts];
  int64_t t0, t1;
  even_part(j->tiles, j->parts, task % j->parts, &t0, &t1);
  if (t0 >= t1) return;
  const float *rest = pack_last_rows(p);
  for (int64_t t = t0; t < t1; ++t) {
    int64_t oh = t / j->row_tiles, ow0 = (t % j->row_tiles) * NR;
    direct_tile(p, rest, j->koff, p->b + oh * j->Wp + ow0, p->c + oh * j->y_sh + ow0, p->c_sm, min64(NR, j->OW - ow0), &p->e,
                oh * j->OW + ow0);
  }
}

/* Rows narrower than NR/2 (a 14x14 or 7x7 map, a LeNet layer): tiles run over the padded grid itself, pixel
 * q = oh * Wp + ow with ow < Wp, so that NR consecutive grid pixels are NR consecutive input columns for every tap.
 * The Wp - OW columns per row that are not outputs are computed and dropped (14% of a 14x14 map's work, 29% of a
 * 7x7 one's), in exchange for no im2col at all. Each tile accumulates in a scratch block (all M rows x NR) and
 * is scattered into the output with the epilogue (init, residual, clamp) once its sum is complete. */
static __thread Scratch grid_sums;

static void grid_part(void *ctx, int64_t task) {
  const DirectJob *j = ctx;
  const Problem *p = &j->problems[task / j->parts];
  int64_t t0, t1, grid = j->OH * j->Wp;
  even_part(j->tiles, j->parts, task % j->parts, &t0, &t1);
  if (t0 >= t1) return;
  const float *rest = pack_last_rows(p);
  float *sums = scratch(&grid_sums, (size_t)(((p->M + MR - 1) / MR) * MR * NR));
  if (!sums) abort(); /* out of memory: nothing sensible to return through a void ABI */
  Epilogue plain_sum = {0};
  plain_sum.init_mode = INIT_CONSTANT; /* the sums start from zero; the real epilogue comes with the scatter */
  for (int64_t t = t0; t < t1; ++t) {
    int64_t q0 = t * NR, nr = min64(NR, grid - q0);
    direct_tile(p, rest, j->koff, p->b + q0, sums, NR, nr, &plain_sum, 0);
    for (int64_t q = q0, col = 0; col < nr; ++q, ++col) {
      int64_t oh = q / j->Wp, ow = q - oh * j->Wp, n = oh * j->OW + ow;
      if (ow >= j->OW) continue;
      float *y = p->c + oh * j->y_sh + ow;
      for (int64_t m = 0; m < p->M; ++m) {
        float *out = y + m * p->c_sm;
        *out = epi_finish(&p->e, epi_init(&p->e, *out, m, n) + sums[m * NR + col], m, n);
      }
    }
  }
}

/* The blocked layout in which one convolution hands its output to the next (conv[6] of hcc_conv2d / hcc_dwconv2d,
 * chosen by the compiler: ukernels.py blocked_handover): channels in blocks of CBLOCK, [N][C/CBLOCK][H][W][CBLOCK],
 * with C a multiple of CBLOCK; the same for every ISA (the code picks its ISA at load time). onnxruntime keeps its
 * NCHWc layout between convolutions the same way: the filter-vector and depthwise-by-channel kernels compute vectors
 * of channels per pixel, and NCHW cost each of them a transpose per call (a third of a keyword spotter's run). */
#define CBLOCK 16
enum { X_BLOCKED = 1, Y_BLOCKED = 2 };

static inline int64_t blocked_at(int64_t c, int64_t q, int64_t plane) { return (c / CBLOCK) * plane * CBLOCK + q * CBLOCK + c % CBLOCK; }

typedef struct {
  const float *x;
  float *xpad;
  int64_t C, H, W, Hp, Wp, top, left;
  const int64_t *xs;
} PadJob;

static void copy_padded_plane(void *ctx, int64_t plane) { /* plane = image * C + channel */
  const PadJob *j = ctx;
  const float *src = j->x + (plane / j->C) * j->xs[0] + (plane % j->C) * j->xs[1];
  float *dst = j->xpad + plane * j->Hp * j->Wp;
  int64_t c0 = j->left, c1 = min64(j->Wp, j->left + j->W); /* padded columns that hold input */
  /* vectors and masked tails rather than three libc calls per row: rows of 58 floats made memset and memcpy 2-3% of
     ResNet-18's run (a call's own cost is about that of copying the row) */
  const vf zero = vsplat(0.0f);
  for (int64_t h = 0; h < j->Hp; ++h, dst += j->Wp) {
    int64_t ih = h - j->top;
    if (ih < 0 || ih >= j->H || c1 <= c0) {
      int64_t q = 0;
      for (; q + VL <= j->Wp; q += VL) vstore(dst + q, zero);
      if (q < j->Wp) vstore_n(dst + q, zero, j->Wp - q);
      continue;
    }
    for (int64_t c = 0; c < c0; ++c) dst[c] = 0.0f;
    if (j->xs[3] == 1) {
      const float *row = src + ih * j->xs[2];
      int64_t n = c1 - c0, q = 0;
      for (; q + VL <= n; q += VL) vstore(dst + c0 + q, vload(row + q));
      if (q < n) vstore_n(dst + c0 + q, vload_n(row + q, n - q), n - q);
    } else {
      for (int64_t c = c0; c < c1; ++c) dst[c] = src[ih * j->xs[2] + (c - j->left) * j->xs[3]];
    }
    for (int64_t c = c1; c < j->Wp; ++c) dst[c] = 0.0f;
  }
}

/* A zero-padded copy of a blocked input, in the blocked layout: [N][C/CBLOCK][Hp][Wp][CBLOCK], each pixel's CBLOCK
 * channels one vector store or two (PadJob: x with its NCHW strides, xs[0] per image). */
static void copy_padded_block(void *ctx, int64_t task) { /* task = image * C/CBLOCK + channel block */
  const PadJob *j = ctx;
  int64_t blocks = j->C / CBLOCK, n = task / blocks, cb = task % blocks, plane = j->H * j->W;
  const float *src = j->x + n * j->xs[0] + cb * plane * CBLOCK;
  float *dst = j->xpad + task * j->Hp * j->Wp * CBLOCK;
  int64_t c0 = min64(j->left, j->Wp), c1 = min64(j->Wp, j->left + j->W); /* padded columns that hold input */
  const vf zero = vsplat(0.0f);
  for (int64_t h = 0; h < j->Hp; ++h, dst += j->Wp * CBLOCK) {
    int64_t ih = h - j->top, from = ih < 0 || ih >= j->H || c1 <= c0 ? j->Wp : c0, to = from == j->Wp ? j->Wp : c1;
    for (int64_t q = 0; q < from * CBLOCK; q += VL) vstore(dst + q, zero);
    if (to > from) memcpy(dst + from * CBLOCK, src + (ih * j->W + from - j->left) * CBLOCK, sizeof(float) * (size_t)((to - from) * CBLOCK));
    for (int64_t q = to * CBLOCK; q < j->Wp * CBLOCK; q += VL) vstore(dst + q, zero);
  }
}

static __thread Scratch padded_input; /* the calling thread's, kept between calls */

/* A zero-padded copy of the input, Hp x Wp per channel (then `slack` zeros), that problems[(image, group)].b point
 * into; NULL if the buffer cannot be had. sizes/conv as for hcc_conv2d. `blocked`: the input is in the blocked
 * layout (one group), and so is the copy (copy_padded_block): a 3x3 convolution reading its input this way lets the
 * convolution before it write blocked, with no transposed write-out (ukernels.py _pads_blocked_input). */
static float *padded_copy(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                          const int64_t *conv, int64_t Hp, int64_t Wp, size_t slack, int blocked) {
  int64_t C = sizes[1], Cg = C / G;
  size_t copied = (size_t)(NB * C * Hp * Wp);
  float *xpad = scratch(&padded_input, copied + slack);
  if (!xpad) return NULL;
  PadJob pad = {x, xpad, C, sizes[2], sizes[3], Hp, Wp, conv[4], conv[5], xs};
  hcc_parallel_for(blocked ? NB * (C / CBLOCK) : NB * C, blocked ? copy_padded_block : copy_padded_plane, &pad);
  memset(xpad + copied, 0, sizeof(float) * slack);
  for (int64_t n = 0, i = 0; n < NB; ++n)
    for (int64_t g = 0; g < G; ++g, ++i) problems[i].b = xpad + (n * C + g * Cg) * Hp * Wp;
  return xpad;
}

/* N images of C x plane floats between NCHW and the blocked layout (both contiguous per image). */
static void relayout(const float *src, float *dst, int64_t N, int64_t C, int64_t plane, int to_blocked) {
  for (int64_t n = 0; n < N; ++n, src += C * plane, dst += C * plane)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t q = 0; q < plane; ++q) {
        if (to_blocked)
          dst[blocked_at(c, q, plane)] = src[c * plane + q];
        else
          dst[c * plane + q] = src[blocked_at(c, q, plane)];
      }
}

/* koff[k] for tap k = (channel c, kh, kw) of a group: its offset from a window's origin in an input whose channels
 * are `plane` and rows `row` floats apart. */
static void tap_offsets(int64_t *koff, int64_t Cg, int64_t KH, int64_t KW, int64_t plane, int64_t row, int64_t dh, int64_t dw) {
  for (int64_t c = 0, k = 0; c < Cg; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw, ++k) koff[k] = c * plane + kh * dh * row + kw * dw;
}

/* Run the problems (set up by hcc_conv2d, b pointing at the raw input) as direct convolutions; 0 if the buffer
 * cannot be had (the caller then takes the packed path). */
static int conv_direct(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                       const int64_t *conv, int64_t y_sh) {
  int64_t C = sizes[1], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8];
  int64_t Cg = C / G, dh = conv[2], dw = conv[3];
  int64_t Hp = OH + (KH - 1) * dh, Wp = OW + (KW - 1) * dw;
  int64_t K = Cg * KH * KW;
  int64_t *koff = malloc(sizeof(int64_t) * (size_t)K);
  if (!koff) return 0;
  /* slack: the last tile's junk columns read up to NR + (KW - 1) * dw past the copy */
  if (!padded_copy(problems, NB, G, x, xs, sizes, conv, Hp, Wp, (size_t)(NR + (KW - 1) * dw + VL), 0)) {
    free(koff);
    return 0;
  }
  tap_offsets(koff, Cg, KH, KW, Hp * Wp, Wp, dh, dw);
  int on_grid = 2 * OW < NR; /* narrow rows: tiles over the padded grid (grid_part) */
  int64_t row_tiles = (OW + NR - 1) / NR, tiles = on_grid ? (OH * Wp + NR - 1) / NR : OH * row_tiles, batch = NB * G;
  int64_t threads = hcc_get_num_threads();
  double flops = 2.0 * (double)problems[0].M * (double)(OH * OW) * (double)K * (double)batch;
  int64_t want = flops < 4e5 || threads == 1 ? 1 : threads * 3, parts = (want + batch - 1) / batch;
  parts = parts < tiles ? parts : tiles;
  DirectJob job = {problems, parts, tiles, row_tiles, OH, OW, Wp, y_sh, koff};
  hcc_parallel_for(batch * parts, on_grid ? grid_part : direct_part, &job);
  free(koff);
  return 1;
}

#define FV_MIN_FILTERS (2 * VL)
#define FV_MIN_TAPS 64
static int conv_fv(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                   const int64_t *conv, int reads_outside, int64_t site, int64_t layouts);

/* 2-D convolution, NCHW input and FCHW weights, as a GEMM per image and group:
 * C[f][oh*OW + ow] = W[f][(c, kh, kw)] * X[c][oh*sh + kh*dh - top][ow*sw + kw*dw - left] (+ epilogue); input rows
 * and columns outside the H x W input are zeros. Stride 1 with dense filters: conv_direct (a zero-padded copy of
 * the input, read in place); otherwise an implicit GEMM that packs panels of the unpadded input through offset
 * tables (pack_b_padded masks the reads outside it).
 * sizes: {N, C, H, W, F, KH, KW, OH, OW, groups}, conv: {sh, sw, dh, dw, top, left}; strides (elements) of x, w, y in
 * NCHW order. The output of one image and channel must be dense over (oh, ow). */
static void conv_relayout(int64_t x_ptr, int64_t w_ptr, int64_t y_ptr, const int64_t *sizes, const int64_t *conv, const int64_t *xs,
                          const int64_t *ws, const int64_t *ys, const int64_t *ep, int64_t site, int bf16);

/* The problems of a convolution on bf16 tiles read a zero-padded copy of the input (every window inside it), through
 * offset tables rebuilt for it, instead of masking each read at the padding: the masked im2col gathers
 * (pack_b_padded) took 62% of a 3x3 64-channel 56x56 convolution on tiles. The copy is kept in the calling thread's
 * scratch (padded_copy); if it cannot be had the masked path stays. */
static void amx_padded_input(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                             const int64_t *conv, int64_t *bk, int64_t *bn) {
  int64_t C = sizes[1], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8], Cg = C / G;
  int64_t Hp = (OH - 1) * conv[0] + (KH - 1) * conv[2] + 1, Wp = (OW - 1) * conv[1] + (KW - 1) * conv[3] + 1;
  if (!padded_copy(problems, NB, G, x, xs, sizes, conv, Hp, Wp, 0, 0)) return;
  for (int64_t c = 0, k = 0; c < Cg; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw, ++k) bk[k] = c * Hp * Wp + kh * conv[2] * Wp + kw * conv[3];
  for (int64_t oh = 0, q = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow, ++q) bn[q] = oh * conv[0] * Wp + ow * conv[1];
  for (int64_t i = 0; i < NB * G; ++i) problems[i].pad_h = problems[i].pad_w = problems[i].k_h = problems[i].k_w = NULL;
}

/* A hash of everything a convolution's offset tables depend on (sizes, conv, the input's and, when given, the
 * filters' strides): the shape key of its kept tables, which a call site (static shapes) never changes. */
static int64_t conv_key(const int64_t *sizes, const int64_t *conv, const int64_t *xs, const int64_t *ws) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over the values */
  const int64_t *parts[4] = {sizes, conv, xs, ws};
  const int lengths[4] = {10, 7, 4, 4};
  for (int a = 0; a < 4; ++a)
    for (int i = 0; parts[a] && i < lengths[a]; ++i) h = (h ^ (uint64_t)parts[a][i]) * 1099511628211ull;
  return (int64_t)(h >> 1);
}

/* Per tap k = (c, kh, kw): its offset in the filters (ak) and in the input (bk), and (k_h, k_w, when not NULL) its
 * row and column reach. Kept out of conv_entry: inlined there, the loops ran with their counters spilled (about 30
 * cycles a tap; a keyword spotter's five convolutions spent 3 of their 50 us in these tables). */
static __attribute__((noinline)) void conv_tap_tables(int64_t *restrict ak, int64_t *restrict bk, int64_t *restrict k_h,
                                                      int64_t *restrict k_w, int64_t Cg, int64_t KH, int64_t KW,
                                                      const int64_t *conv, const int64_t *xs, const int64_t *ws) {
  int64_t dh = conv[2], dw = conv[3];
  for (int64_t c = 0, k = 0; c < Cg; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw, ++k) {
        ak[k] = c * ws[1] + kh * ws[2] + kw * ws[3];
        bk[k] = c * xs[1] + kh * dh * xs[2] + kw * dw * xs[3];
        if (k_h) k_h[k] = kh * dh, k_w[k] = kw * dw;
      }
}

/* Per output pixel q: its window origin's offset in the input (bn) and (pad_h, pad_w, when not NULL) its row and
 * column, negative in the top and left padding (reads there are masked). */
static __attribute__((noinline)) void conv_pixel_tables(int64_t *restrict bn, int64_t *restrict pad_h, int64_t *restrict pad_w,
                                                        int64_t OH, int64_t OW, const int64_t *conv, const int64_t *xs) {
  for (int64_t oh = 0, q = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow, ++q) {
      int64_t ih = oh * conv[0] - conv[4], iw = ow * conv[1] - conv[5];
      bn[q] = ih * xs[2] + iw * xs[3];
      if (pad_h) pad_h[q] = ih, pad_w[q] = iw;
    }
}

typedef struct {
  int64_t Fg, Cg, KH, KW, OH, OW;
  int padded;
  const int64_t *conv, *xs, *ws;
} ConvTables;

/* conv_entry's tables in one buffer: am (Fg), ak, bk (K each), bn (P), and for `padded` k_h, k_w (K), pad_h, pad_w (P). */
static void conv_fill_tables(const void *ctx, float *out) {
  const ConvTables *t = ctx;
  int64_t K = t->Cg * t->KH * t->KW, P = t->OH * t->OW;
  int64_t *am = linear_table((int64_t *)out, t->Fg, t->ws[0]), *ak = am + t->Fg, *bk = ak + K, *bn = bk + K;
  int64_t *k_h = t->padded ? bn + P : NULL, *k_w = t->padded ? k_h + K : NULL;
  int64_t *pad_h = t->padded ? k_w + K : NULL, *pad_w = t->padded ? pad_h + P : NULL;
  conv_tap_tables(ak, bk, k_h, k_w, t->Cg, t->KH, t->KW, t->conv, t->xs, t->ws);
  conv_pixel_tables(bn, pad_h, pad_w, t->OH, t->OW, t->conv, t->xs);
}

static void conv_entry(int64_t x_ptr, int64_t w_ptr, int64_t y_ptr, const int64_t *sizes, const int64_t *conv, const int64_t *xs,
                       const int64_t *ws, const int64_t *ys, const int64_t *ep, int64_t site, int bf16) {
  const int64_t *is, *rs; /* init / residual strides: {n, c, h, w} */
  Epilogue epi = read_epilogue(ep, 4, &is, &rs);
  int64_t NB = sizes[0], C = sizes[1], H = sizes[2], W = sizes[3], F = sizes[4], KH = sizes[5], KW = sizes[6], OH = sizes[7],
          OW = sizes[8];
  int64_t G = sizes[9] > 0 ? sizes[9] : 1, Cg = C / G, Fg = F / G;
  int64_t K = Cg * KH * KW, P = OH * OW, top = conv[4], left = conv[5];
  int amx = use_bf16_products(bf16, Fg, P, K);
  int reads_outside = top > 0 || left > 0 || (OH - 1) * conv[0] + (KH - 1) * conv[2] >= H || (OW - 1) * conv[1] + (KW - 1) * conv[3] >= W;
  /* a 1x1, stride-1 convolution over whole rows is a plain GEMM: channels x pixels, pixels contiguous */
  int plain = !reads_outside && KH == 1 && KW == 1 && conv[0] == 1 && conv[1] == 1 && xs[3] == 1 && xs[2] == OW && W == OW;
  int padded = !plain; /* the run-based packer serves every other convolution (in-bounds reads cost nothing) */
  if (NB <= 0 || Fg <= 0 || P <= 0) return;
  /* the offset tables: kept per call site (they depend only on its static sizes and strides), except for bf16
     tiles, whose padded input rewrites bk and bn (amx_padded_input) */
  int64_t count = Fg + 2 * K + P + (padded ? 2 * K + 2 * P : 0);
  ConvTables setup = {Fg, Cg, KH, KW, OH, OW, padded, conv, xs, ws};
  const int64_t key[3] = {conv_key(sizes, conv, xs, ws), count, padded};
  int64_t *tables = site > 0 && !amx ? (int64_t *)site_entry(&table_store, 2 * site, key, (size_t)(2 * count), conv_fill_tables, &setup) : NULL;
  int64_t *own = NULL;
  if (!tables) {
    if (!(tables = own = malloc(sizeof(int64_t) * (size_t)count))) abort();
    conv_fill_tables(&setup, (float *)own);
  }
  Problem *problems = malloc(sizeof(Problem) * (size_t)(NB * G));
  if (!problems) abort();
  int64_t *am = tables, *ak = am + Fg, *bk = ak + K, *bn = bk + K;
  int64_t *k_h = padded ? bn + P : NULL, *k_w = padded ? k_h + K : NULL, *pad_h = padded ? k_w + K : NULL, *pad_w = padded ? pad_h + P : NULL;
  const float *x = (const float *)(intptr_t)x_ptr, *w = (const float *)(intptr_t)w_ptr;
  float *y = (float *)(intptr_t)y_ptr;
  int64_t index = 0;
  for (int64_t n = 0; n < NB; ++n)
    for (int64_t g = 0; g < G; ++g) {
      Problem *p = &problems[index++];
      p->a = w + g * Fg * ws[0];
      p->b = x + n * xs[0] + g * Cg * xs[1];
      p->c = y + n * ys[0] + g * Fg * ys[1];
      p->M = Fg, p->N = P, p->K = K;
      p->am = am, p->ak = ak, p->bk = bk, p->bn = bn;
      p->c_sm = ys[1], p->c_sn = ys[3];
      p->linear = plain;
      p->bf16 = amx, p->split = p->int8 = 0, p->b16_nonfinite = 0;
      p->pad_h = pad_h, p->pad_w = pad_w, p->k_h = k_h, p->k_w = k_w, p->H = H, p->W = W;
      p->lda = ws[3] == 1 && ws[2] == KW && ws[1] == KH * KW ? ws[0] : 0; /* dense filters: row f is contiguous */
      p->kc = p->lda_run = 0;
      p->packed_b = NULL, p->packed_a16 = NULL, p->packed_b16 = NULL;
      p->a_sm = ws[0], p->a_sk = ws[1], p->b_sk = xs[1], p->b_sn = 1;
      p->e = epi;
      p->e.ow = OW;
      p->e.init_sm = is[1], p->e.init_sn = is[3], p->e.init_sh = is[2];
      if (epi.init) p->e.init = epi.init + n * is[0] + g * Fg * is[1];
      p->e.res_sm = rs[1], p->e.res_sn = rs[3], p->e.res_sh = rs[2];
      if (epi.res) p->e.res = epi.res + n * rs[0] + g * Fg * rs[1];
    }
  /* The direct path: stride 1, dense filters, unit column strides; rows narrower than NR/2 (the padded grid) only
     for up to 128 filters: more reuse each packed panel enough that im2col keeps up with the grid's dropped columns
     (measured 0.19 vs 0.24 ms at 128 filters on 7x7, even at 256 and 512). */
  int direct = !plain && !amx && conv[0] == 1 && conv[1] == 1 && xs[3] == 1 && ys[3] == 1 && problems[0].lda > 0 &&
               (2 * OW >= NR || Fg <= 128);
  /* Vectors across filters (conv_fv) where there are enough filters to fill them, or the rows are too narrow for
     pixel vectors, and enough taps to pay for the transposed write-out, or else an im2col to save (measured: 1x1
     convs of 16..32 channels lose up to 15% there, 3x3 convs of 16..24 filters up to 20%; LeNet's 6->16 5x5 on
     14x14 runs 2x faster, a keyword spotter's 1->64 10x4/2 (40 taps) 2.3x, MobileNet's 3->32 3x3/2 1.3x). A blocked
     output has no transposed write-out: 16 taps do (MobileNet's 16->96 1x1 on 112x112: 0.95 vs 1.39 ms, 24->144 on
     56x56: 0.30 vs 0.83 ms on the GEMM path). A blocked input or output (the compiler's hand-over, ukernels.py
     FV_MIN_FILTERS) always runs here, however few the filters: the other kernels would convert the layout
     (measured on the EPYC: MobileNetV2's 96->24 and 96->16 projections reading the depthwise output blocked made
     their expand-depthwise-project blocks 16% and 11% faster). */
#ifdef HCC_AMX
  if (amx && !conv[6] && (amx_direct(problems, NB, x, xs, sizes, conv, ys, site) || dp_direct(problems, NB, x, xs, sizes, conv, ys, site) ||
                          dp_stride2(problems, NB, x, xs, sizes, conv, ys, site))) {
    /* bf16 tiles or dot products, no im2col */
    free(problems);
    free(own);
    return;
  }
#endif
  if (amx && padded) /* bf16 tiles: im2col panels from a zero-padded copy, without the masked gathers */
    amx_padded_input(problems, NB, G, x, xs, sizes, conv, bk, bn);
#ifdef HCC_AMX
  if (amx && site > 0) { /* constant filters: their bf16 rows kept (amx_pack_all) */
    int64_t Kp = ((K + 31) / 32) * 32, rows = amx_kept_rows(Fg);
    const int64_t shape[3] = {Fg, K, -2 - G}; /* -2 - G: this layout */
    AmxKeep keep = {problems, G};
    const float *kept = packed_weights(site, shape, (size_t)(G * rows * Kp / 2 + 1), amx_pack_all, &keep);
    for (int64_t i = 0; kept && i < NB * G; ++i) problems[i].packed_a16 = (const uint16_t *)kept + (i % G) * rows * Kp;
  }
#endif
  int64_t layouts = conv[6];
  int fv = VL >= 8 && !amx && problems[0].lda > 0 && ys[3] == 1 && ys[2] == OW &&
           (K >= FV_MIN_TAPS || ((!plain || layouts) && K >= 16)) &&
           (Fg >= FV_MIN_FILTERS || 2 * OW < NR || layouts);
  if (fv && conv_fv(problems, NB, G, x, xs, sizes, conv, reads_outside, site, layouts))
    ;
  else if (layouts) /* a blocked input or output that this convolution's kernel does not take */
    conv_relayout(x_ptr, w_ptr, y_ptr, sizes, conv, xs, ws, ys, ep, site, bf16);
  else if (!direct || !conv_direct(problems, NB, G, x, xs, sizes, conv, ys[2]))
    run_problems(problems, NB * G);
  free(problems);
  free(own);
}

/* The convolution in NCHW through temporary copies of a blocked input and output. */
static void conv_relayout(int64_t x_ptr, int64_t w_ptr, int64_t y_ptr, const int64_t *sizes, const int64_t *conv, const int64_t *xs,
                          const int64_t *ws, const int64_t *ys, const int64_t *ep, int64_t site, int bf16) {
  int64_t N = sizes[0], C = sizes[1], F = sizes[4], in_plane = sizes[2] * sizes[3], out_plane = sizes[7] * sizes[8];
  const int64_t nchw[7] = {conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], 0};
  const int64_t x_nchw[4] = {C * in_plane, in_plane, sizes[3], 1}, y_nchw[4] = {F * out_plane, out_plane, sizes[8], 1};
  float *xt = NULL, *yt = NULL;
  if (conv[6] & X_BLOCKED) {
    if (!(xt = malloc(sizeof(float) * (size_t)(N * C * in_plane)))) abort();
    relayout((const float *)(intptr_t)x_ptr, xt, N, C, in_plane, 0);
  }
  if (conv[6] & Y_BLOCKED) {
    if (!(yt = malloc(sizeof(float) * (size_t)(N * F * out_plane)))) abort();
    if (ep[0] == INIT_IN_C) relayout((const float *)(intptr_t)y_ptr, yt, N, F, out_plane, 0); /* the init is y's content */
  }
  conv_entry(xt ? (int64_t)(intptr_t)xt : x_ptr, w_ptr, yt ? (int64_t)(intptr_t)yt : y_ptr, sizes, nchw, xt ? x_nchw : xs, ws,
             yt ? y_nchw : ys, ep, site, bf16);
  if (yt) relayout(yt, (float *)(intptr_t)y_ptr, N, F, out_plane, 1);
  free(xt);
  free(yt);
}

void CAT(hcc_conv2d, SUFFIX)(int64_t x, int64_t w, int64_t y, const int64_t *sizes, const int64_t *conv, const int64_t *xs,
                             const int64_t *ws, const int64_t *ys, const int64_t *ep, int64_t site) {
  conv_entry(x, w, y, sizes, conv, xs, ws, ys, ep, site, 0);
}

/* bfloat16 products, fp32 sums on AMX (as an implicit-im2col GEMM); else exactly hcc_conv2d. */
void CAT(hcc_conv2d_bf16, SUFFIX)(int64_t x, int64_t w, int64_t y, const int64_t *sizes, const int64_t *conv, const int64_t *xs,
                                  const int64_t *ws, const int64_t *ys, const int64_t *ep, int64_t site) {
  conv_entry(x, w, y, sizes, conv, xs, ws, ys, ep, site, 1);
}

/* ------------------------------------------------------------------------------------------------ depthwise */

/* One output row of a depthwise conv: each VL-column chunk accumulates every tap in a register, stored once. */
static void dw_row(const float *restrict x, int64_t x_row, const float *restrict w, int64_t w_row, int64_t KH, int64_t KW,
                   int64_t ow_n, int64_t sw, int64_t dw, float *restrict out) {
  int64_t j = 0;
  if (sw <= 2 && KH * KW <= 25) {
    vf taps[25];
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) taps[kh * KW + kw] = vsplat(w[kh * w_row + kw]);
    /* stride 2 reads 2 VL inputs per chunk, one past the last one it uses: keep that inside the row */
    int64_t last = sw == 2 ? ow_n - 1 : ow_n;
    for (; j + VL <= last; j += VL) {
      vf acc = vload(out + j);
      for (int64_t kh = 0; kh < KH; ++kh) {
        const float *in = x + kh * x_row + j * sw;
        for (int64_t kw = 0; kw < KW; ++kw) acc += taps[kh * KW + kw] * strided_load(in + kw * dw, sw);
      }
      vstore(out + j, acc);
    }
  }
  for (; j < ow_n; ++j) {
    float acc = out[j];
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) acc += w[kh * w_row + kw] * x[kh * x_row + j * sw + kw * dw];
    out[j] = acc;
  }
}

typedef struct {
  const float *x, *w;
  float *y;
  int64_t C, KH, KW, OH, OW, sh, sw, dh, dw;
  const int64_t *xs, *ws, *ys;
  int64_t H, W, top, left; /* the input plane and its implicit zero padding */
  Epilogue e; /* pointers at the origin: offset per plane with is / rs ({n, c, h, w}) */
  const int64_t *is, *rs;
  int64_t layouts; /* X_BLOCKED / Y_BLOCKED: that tensor in the blocked layout (dw_channel_block only) */
} DwJob;

static __thread Scratch flat_scratch;

/* Stride 1: the plane as one flat vector over the input's row pitch, so narrow rows (14, 7 columns) still fill
 * whole vectors: flat[q] = sum_taps w * x[q + tap offset], q = oh * pitch + ow; then the valid columns are added
 * to y row by row. Reads stay inside the plane: the last q is the last output's. */
static int dw_plane_flat(const DwJob *j, const Epilogue *e, const float *x, const float *w, float *y) {
  int64_t pitch = j->xs[2], count = (j->OH - 1) * pitch + j->OW, taps = j->KH * j->KW;
  if (taps > 49 || count <= 0) return 0;
  float *flat = scratch(&flat_scratch, (size_t)count);
  if (!flat) return 0;
  int64_t offsets[49];
  vf weights[49];
  for (int64_t kh = 0, t = 0; kh < j->KH; ++kh)
    for (int64_t kw = 0; kw < j->KW; ++kw, ++t) {
      offsets[t] = kh * j->dh * pitch + kw * j->dw;
      weights[t] = vsplat(w[kh * j->ws[1] + kw]);
    }
  /* A plane-wide init (a constant, or one bias per channel) is added here, with the clamp when there is no
   * residual; the valid columns are then copied row by row, so narrow planes (5, 7 columns) stay vectorized. */
  int plane_init = e->init_mode == INIT_CONSTANT || (e->init_mode == INIT_SOURCE && e->init_sn == 0 && e->init_sh == 0);
  float start = e->init_mode == INIT_CONSTANT ? e->init_value : plane_init ? e->init[0] : 0.0f;
  int clamp_here = plane_init && !e->res;
  int64_t q = 0;
  /* four output vectors at a time: independent FMA chains hide the FMA latency (one chain per vector was latency
     bound at about a fifth of the FMA throughput) */
  for (; q + 4 * VL <= count; q += 4 * VL) {
    const float *restrict xq = x + q;
    vf acc0 = vsplat(start), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t t = 0; t < taps; ++t) {
      const float *tap = xq + offsets[t];
      vf wt = weights[t];
      acc0 += wt * vload(tap), acc1 += wt * vload(tap + VL), acc2 += wt * vload(tap + 2 * VL), acc3 += wt * vload(tap + 3 * VL);
    }
    if (clamp_here) acc0 = vclamp_act(e, acc0), acc1 = vclamp_act(e, acc1), acc2 = vclamp_act(e, acc2), acc3 = vclamp_act(e, acc3);
    vstore(flat + q, acc0), vstore(flat + q + VL, acc1), vstore(flat + q + 2 * VL, acc2), vstore(flat + q + 3 * VL, acc3);
  }
  for (; q + VL <= count; q += VL) {
    vf acc = vsplat(start);
    for (int64_t t = 0; t < taps; ++t) acc += weights[t] * vload(x + q + offsets[t]);
    vstore(flat + q, clamp_here ? vclamp_act(e, acc) : acc);
  }
  for (; q < count; ++q) {
    float acc = start;
    for (int64_t t = 0; t < taps; ++t) acc += weights[t][0] * x[q + offsets[t]];
    flat[q] = clamp_here ? epi_finish(e, acc, 0, 0) : acc;
  }
  if (plane_init) { /* dw_plane calls this only for a dense output plane */
    for (int64_t oh = 0; oh < j->OH; ++oh) memcpy(y + oh * j->OW, flat + oh * pitch, sizeof(float) * (size_t)j->OW);
    if (!clamp_here) region_epilogue(e, y, 0, 1, 0, 1, 0, j->OH * j->OW); /* residual, then clamp: one plane pass */
    return 1;
  }
  for (int64_t oh = 0; oh < j->OH; ++oh) {
    /* y = clamp(init + flat + residual), the whole epilogue in this one pass over the plane */
    float *out = y + oh * j->ys[2];
    const float *row = flat + oh * pitch;
    int64_t ow = 0, p0 = oh * j->OW;
    int init_vec = e->init_mode == INIT_CONSTANT || (e->init_mode == INIT_SOURCE && e->init_sn <= 1 && e->init_sn >= 0);
    int res_vec = !e->res || (e->res_sn >= 0 && e->res_sn <= 1);
    if (j->ys[3] == 1 && init_vec && res_vec) {
      const float *init = e->init_mode == INIT_SOURCE ? e->init + oh * e->init_sh : NULL;
      const float *res = e->res ? e->res + oh * e->res_sh : NULL;
      for (; ow + VL <= j->OW; ow += VL) {
        vf v = vload(row + ow) + (!init ? vsplat(e->init_value) : e->init_sn ? vload(init + ow) : vsplat(init[0]));
        if (res) v += e->res_sn ? vload(res + ow) : vsplat(res[0]);
        vstore(out + ow, vclamp_act(e, v));
      }
    }
    for (; ow < j->OW; ++ow) out[ow * j->ys[3]] = epi_finish(e, epi_init(e, out[ow * j->ys[3]], 0, p0 + ow) + row[ow], 0, p0 + ow);
  }
  return 1; /* (this path only runs without a plane-wide init: `start` was 0) */
}

/* One (image, channel) plane: every output row accumulates KH x KW shifted input rows. */
static __thread Scratch plane_scratch;

/* The input plane with its zero padding, in a per-thread scratch buffer (cache-resident: never a padded copy of
 * the whole tensor); `pitch` receives its row length. NULL when out of memory. */
static const float *pad_plane(const DwJob *j, const float *x, int64_t *pitch) {
  int64_t rows = (j->OH - 1) * j->sh + (j->KH - 1) * j->dh + 1, cols = (j->OW - 1) * j->sw + (j->KW - 1) * j->dw + 1;
  size_t need = (size_t)(rows * cols + 2 * VL); /* + slack: vector reads of a row's tail */
  float *padded_plane = scratch(&plane_scratch, need);
  if (!padded_plane) return NULL;
  /* zero only what no input element covers: rows outside the input, the border columns and the slack */
  int64_t from = j->left > 0 ? 0 : -j->left, to = min64(j->W, cols - j->left), head = from + j->left, tail = to + j->left;
  for (int64_t r = 0; r < rows; ++r) {
    float *row = padded_plane + r * cols;
    int64_t ih = r - j->top;
    if (ih < 0 || ih >= j->H || to <= from) {
      memset(row, 0, sizeof(float) * (size_t)cols);
      continue;
    }
    memset(row, 0, sizeof(float) * (size_t)head);
    if (j->xs[3] == 1)
      memcpy(row + head, x + ih * j->xs[2] + from, sizeof(float) * (size_t)(to - from));
    else
      for (int64_t iw = from; iw < to; ++iw) row[iw + j->left] = x[ih * j->xs[2] + iw * j->xs[3]];
    memset(row + tail, 0, sizeof(float) * (size_t)(cols - tail));
  }
  memset(padded_plane + rows * cols, 0, sizeof(float) * (size_t)(2 * VL));
  *pitch = cols;
  return padded_plane;
}

/* out[ow] += wv * in[ow*sw + off] for every ow whose input column lies in [0, W): the implicit zero padding is the
 * columns skipped; stride 1 or 2 vectorized (a stride-2 vector stops where its extra element would leave the row). */
static void dw_tap(float *restrict out, const float *restrict in, float wv, int64_t OW, int64_t W, int64_t sw, int64_t off) {
  int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw, hi = min64(OW, (W - 1 - off) / sw + 1);
  int64_t ow = lo;
  if (sw <= 2) {
    vf wvec = vsplat(wv);
    for (; ow + VL <= hi && (ow + VL - 1) * sw + off + sw - 1 < W; ow += VL)
      vstore(out + ow, vload(out + ow) + wvec * strided_load(in + ow * sw + off, sw));
  }
  for (; ow < hi; ++ow) out[ow] += wv * in[ow * sw + off];
}

/* A padded plane row by row, straight from the unpadded input (no scratch copy): init, every tap whose input row
 * exists, then residual and clamp. Needs unit-stride rows and a dense output plane. */
static void dw_plane_rows(const DwJob *j, const Epilogue *e, const float *x, const float *w, float *y) {
  int plane_init = e->init_mode == INIT_CONSTANT || (e->init_mode == INIT_SOURCE && e->init_sn == 0 && e->init_sh == 0);
  float start = e->init_mode == INIT_CONSTANT ? e->init_value : plane_init ? e->init[0] : 0.0f;
  for (int64_t oh = 0; oh < j->OH; ++oh) {
    float *out = y + oh * j->OW;
    if (plane_init) {
      int64_t ow = 0;
      for (; ow + VL <= j->OW; ow += VL) vstore(out + ow, vsplat(start));
      for (; ow < j->OW; ++ow) out[ow] = start;
    } else {
      region_prologue(e, y, 0, 1, 0, 1, oh * j->OW, (oh + 1) * j->OW);
    }
    for (int64_t kh = 0; kh < j->KH; ++kh) {
      int64_t ih = oh * j->sh + kh * j->dh - j->top;
      if (ih < 0 || ih >= j->H) continue;
      for (int64_t kw = 0; kw < j->KW; ++kw)
        dw_tap(out, x + ih * j->xs[2], w[kh * j->ws[1] + kw], j->OW, j->W, j->sw, kw * j->dw - j->left);
    }
  }
  region_epilogue(e, y, 0, 1, 0, 1, 0, j->OH * j->OW);
}

static void dw_plane(void *ctx, int64_t task) {
  const DwJob *orig = ctx;
  int64_t n = task / orig->C, c = task % orig->C;
  const float *x = orig->x + n * orig->xs[0] + orig->xs[1] * c;
  DwJob local = *orig;
  int64_t local_xs[4] = {0, 0, 0, 1};
  int padded = orig->top || orig->left || (orig->OH - 1) * orig->sh + (orig->KH - 1) * orig->dh >= orig->H ||
               (orig->OW - 1) * orig->sw + (orig->KW - 1) * orig->dw >= orig->W;
  int dense = orig->xs[3] == 1 && orig->ws[2] == 1 && orig->ys[3] == 1 && orig->ys[2] == orig->OW;
  if (padded && dense && orig->sw != 1) { /* strided: rows straight from the input (measured: a scratch copy costs more) */
    Epilogue e = orig->e;
    e.ow = orig->OW;
    if (e.init) e.init += n * orig->is[0] + c * orig->is[1];
    if (e.res) e.res += n * orig->rs[0] + c * orig->rs[1];
    dw_plane_rows(orig, &e, x, orig->w + c * orig->ws[0], orig->y + n * orig->ys[0] + c * orig->ys[1]);
    return;
  }
  if (padded) {
    x = pad_plane(orig, x, &local_xs[2]);
    if (!x) abort();
    local.xs = local_xs;
  }
  const DwJob *j = &local;
  const float *w = j->w + c * j->ws[0];
  float *y = j->y + n * j->ys[0] + c * j->ys[1];
  Epilogue e = j->e;
  e.ow = j->OW;
  if (e.init) e.init += n * j->is[0] + c * j->is[1];
  if (e.res) e.res += n * j->rs[0] + c * j->rs[1];
  if (j->xs[3] != 1 || j->ws[2] != 1 || j->ys[3] != 1 || j->ys[2] != j->OW) { /* any other layout: plain loops */
    for (int64_t oh = 0; oh < j->OH; ++oh)
      for (int64_t ow = 0; ow < j->OW; ++ow) {
        int64_t p = oh * j->OW + ow;
        float acc = epi_init(&e, y[oh * j->ys[2] + ow * j->ys[3]], 0, p);
        for (int64_t kh = 0; kh < j->KH; ++kh)
          for (int64_t kw = 0; kw < j->KW; ++kw)
            acc += w[kh * j->ws[1] + kw * j->ws[2]] * x[(oh * j->sh + kh * j->dh) * j->xs[2] + (ow * j->sw + kw * j->dw) * j->xs[3]];
        y[oh * j->ys[2] + ow * j->ys[3]] = epi_finish(&e, acc, 0, p);
      }
    return;
  }
  if (j->sw == 1 && j->sh == 1 && dw_plane_flat(j, &e, x, w, y)) return;
  /* the plane as one row of OH*OW pixels (the output is dense over (oh, ow)) */
  region_prologue(&e, y, 0, j->ys[3], 0, 1, 0, j->OH * j->OW);
  for (int64_t oh = 0; oh < j->OH; ++oh)
    dw_row(x + oh * j->sh * j->xs[2], j->dh * j->xs[2], w, j->ws[1], j->KH, j->KW, j->OW, j->sw, j->dw, y + oh * j->ys[2]);
  region_epilogue(&e, y, 0, j->ys[3], 0, 1, 0, j->OH * j->OW);
}

/* Small planes (7x7, 14x14, a keyword spotter's 25x5): VL channels at a time, one channel per vector lane. Per plane,
 * the row paths above pay a fixed cost (padding, row loops, tails) that a 49-pixel plane cannot amortize; here the
 * VL planes are interleaved into a zero-padded [rows][cols][VL] scratch, every output pixel is one vector FMA chain
 * over the taps (aligned loads, no tails, any stride or dilation), and the sums go back to their planes through
 * the epilogue (init, residual, clamp) element by element. */
#if VL == 8
/* t[l][q] = r[q][l]: eight vectors of eight lanes transposed (unpack, shuffle, then 128-bit halves). */
static inline void transpose8(const vf r[8], vf t[8]) {
  typedef int32_t vi __attribute__((vector_size(32)));
  const vi lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
  const vi lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
  const vi first = {0, 1, 2, 3, 8, 9, 10, 11}, second = {4, 5, 6, 7, 12, 13, 14, 15};
  vf u[8], s[8];
  for (int q = 0; q < 8; q += 2) u[q] = __builtin_shuffle(r[q], r[q + 1], lo), u[q + 1] = __builtin_shuffle(r[q], r[q + 1], hi);
  for (int q = 0; q < 8; q += 4) {
    s[q] = __builtin_shuffle(u[q], u[q + 2], lo2), s[q + 1] = __builtin_shuffle(u[q], u[q + 2], hi2);
    s[q + 2] = __builtin_shuffle(u[q + 1], u[q + 3], lo2), s[q + 3] = __builtin_shuffle(u[q + 1], u[q + 3], hi2);
  }
  for (int q = 0; q < 4; ++q) t[q] = __builtin_shuffle(s[q], s[q + 4], first), t[q + 4] = __builtin_shuffle(s[q], s[q + 4], second);
}
#define transpose_lanes transpose8
#elif VL == 16
/* t[l][q] = r[q][l] for sixteen vectors of sixteen lanes: swap the off-diagonal d x d blocks of every 2d x 2d block,
 * d = 8, 4, 2, 1 (a two-source permute per row and stage). */
static inline void transpose16(const vf r[16], vf t[16]) {
  typedef int32_t vi __attribute__((vector_size(64)));
  static const vi upper[4] = { /* row i (i & d == 0): its columns k & d from row i + d's k - d */
      {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
      {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
      {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
      {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
  static const vi lower[4] = { /* row i + d: its columns k & !d from row i's k + d */
      {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
      {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
      {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
      {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};
  for (int q = 0; q < 16; ++q) t[q] = r[q];
#pragma GCC unroll 4
  for (int stage = 0, d = 8; stage < 4; ++stage, d /= 2)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      if (!(i & d)) {
        vf a = t[i], b = t[i + d];
        t[i] = __builtin_shuffle(a, b, upper[stage]);
        t[i + d] = __builtin_shuffle(a, b, lower[stage]);
      }
}
#define transpose_lanes transpose16
#endif

#if VL >= 8
/* A panel of NR columns whose k values are consecutive floats (B's columns are rows of a matrix: attention's K^T, a
 * Gemm with transB over activations), VL columns x VL k at a time through a transpose; with the copy one float at a
 * time, BERT h768's attention scores product took 0.29 ms, now 0.20. */
static void pack_b_columns(const float *base, const int64_t *bn, int64_t kc, float *restrict out) {
  int64_t k = 0;
  for (; k + VL <= kc; k += VL)
    for (int64_t j = 0; j < NR; j += VL) {
      vf r[VL], t[VL];
      for (int l = 0; l < VL; ++l) r[l] = vload(base + bn[j + l] + k);
      transpose_lanes(r, t);
      for (int l = 0; l < VL; ++l) vstore(out + (k + l) * NR + j, t[l]);
    }
  for (; k < kc; ++k)
    for (int64_t j = 0; j < NR; ++j) out[k * NR + j] = base[bn[j] + k];
}
#endif

/* Four output pixels at a time, each a vector of VL channels: out[p] = sum over the taps of w * in[origin[p] + tap].
 * Returns the pixels done (a multiple of 4). Inlined with constant KH, KW for the common 3x3 and 5x5. */
static inline __attribute__((always_inline)) int64_t dw_lane_pixels(const float *restrict in, const float *restrict wts,
                                                                    const int64_t *origin, float *restrict out, int64_t pixels,
                                                                    int64_t KH, int64_t KW, int64_t step_h, int64_t step_w) {
  int64_t p = 0;
  for (; p + 8 <= pixels; p += 8) { /* eight chains: enough to keep both FMA ports busy through the latency */
    const float *b[8], *wt = wts;
    for (int q = 0; q < 8; ++q) b[q] = in + origin[p + q];
    vf a[8] = {{0}};
#pragma GCC unroll 5
    for (int64_t kh = 0; kh < KH; ++kh)
#pragma GCC unroll 5
      for (int64_t kw = 0; kw < KW; ++kw) {
        int64_t o = kh * step_h + kw * step_w;
        vf wv = vload(wt + (kh * KW + kw) * VL);
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) a[q] += wv * vload(b[q] + o);
      }
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) vstore(out + (p + q) * VL, a[q]);
  }
  for (; p + 4 <= pixels; p += 4) {
    const float *b0 = in + origin[p], *b1 = in + origin[p + 1], *b2 = in + origin[p + 2], *b3 = in + origin[p + 3], *wt = wts;
    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
#pragma GCC unroll 5
    for (int64_t kh = 0; kh < KH; ++kh)
#pragma GCC unroll 5
      for (int64_t kw = 0; kw < KW; ++kw) {
        int64_t o = kh * step_h + kw * step_w;
        vf wv = vload(wt + (kh * KW + kw) * VL);
        a0 += wv * vload(b0 + o), a1 += wv * vload(b1 + o), a2 += wv * vload(b2 + o), a3 += wv * vload(b3 + o);
      }
    float *dst = out + p * VL;
    vstore(dst, a0), vstore(dst + VL, a1), vstore(dst + 2 * VL, a2), vstore(dst + 3 * VL, a3);
  }
  return p;
}

static __thread Scratch lane_scratch;

static void dw_channel_block(void *ctx, int64_t task) {
  const DwJob *j = ctx;
  int64_t blocks = (j->C + VL - 1) / VL, n = task / blocks, c0 = (task % blocks) * VL, lanes = min64(VL, j->C - c0);
  int64_t rows = (j->OH - 1) * j->sh + (j->KH - 1) * j->dh + 1, cols = (j->OW - 1) * j->sw + (j->KW - 1) * j->dw + 1;
  int64_t taps = j->KH * j->KW, pixels = j->OH * j->OW;
  size_t need = (size_t)((rows * cols + pixels) * VL + taps * VL + 2 * pixels); /* + the pixels' origins (int64) */
  float *in = scratch(&lane_scratch, need);
  if (!in) abort(); /* out of memory: nothing sensible to return through a void ABI */
  float *out = in + rows * cols * VL, *wts = out + pixels * VL;
  /* zero what no input element covers: padding rows and columns, a vector per pixel (memset calls of one or two
     vectors each were 3% of a keyword spotter's run) */
  const vf zero = vsplat(0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float *row = in + r * cols * VL;
    int64_t ih = r - j->top, lead = min64(cols, j->left > 0 ? j->left : 0), trail = j->left + j->W;
    if (ih < 0 || ih >= j->H || trail <= 0) {
      for (int64_t c = 0; c < cols; ++c) vstore(row + c * VL, zero);
      continue;
    }
    for (int64_t c = 0; c < lead; ++c) vstore(row + c * VL, zero);
    for (int64_t c = trail; c < cols; ++c) vstore(row + c * VL, zero);
  }
  for (int64_t t = 0; t < taps; ++t) vstore(wts + t * VL, zero);
  int64_t q0 = 0, plane = j->H * j->W, ih = 0, iw = 0;
  int x_blocked = (j->layouts & X_BLOCKED) != 0;
  if (x_blocked) /* VL channels of a pixel are VL consecutive floats: a vector per pixel, no transpose */
    for (int64_t r = 0; r < rows; ++r) {
      int64_t h = r - j->top;
      if (h < 0 || h >= j->H) continue;
      const float *src = j->x + n * j->xs[0] + blocked_at(c0, h * j->W, plane);
      for (int64_t c = j->left > 0 ? 0 : -j->left, to = min64(j->W, cols - j->left); c < to; ++c)
        vstore(in + (r * cols + c + j->left) * VL, vload(src + c * CBLOCK));
    }
  /* the whole input plane lies inside the scratch (else, e.g. a stride that skips the last row: the row loop) */
  int whole = j->top + j->H <= rows && j->left + j->W <= cols && j->xs[3] == 1 && j->xs[2] == j->W;
#if VL >= 8
  if (lanes == VL && whole && !x_blocked) /* VL pixels x VL channels per transpose, vector loads */
    for (; q0 + VL <= plane; q0 += VL) {
      vf r[VL], t[VL];
      for (int l = 0; l < VL; ++l) r[l] = vload(j->x + n * j->xs[0] + (c0 + l) * j->xs[1] + q0);
      transpose_lanes(r, t);
      for (int k = 0; k < VL; ++k) { /* pixel q0 + k at (ih, iw), walked without a division */
        vstore(in + ((ih + j->top) * cols + iw + j->left) * VL, t[k]);
        if (++iw == j->W) iw = 0, ++ih;
      }
    }
  if (lanes == VL && whole && !x_blocked && q0 < plane) { /* the last plane % VL pixels: masked loads, one transpose
                                                             (a 25x5 plane's last 13 pixels lane by lane were 208
                                                             scalar copies, as many as the FMAs' vector count) */
    int64_t rem = plane - q0;
    vf r[VL], t[VL];
    for (int l = 0; l < VL; ++l) r[l] = vload_n(j->x + n * j->xs[0] + (c0 + l) * j->xs[1] + q0, rem);
    transpose_lanes(r, t);
    for (int64_t k = 0; k < rem; ++k) {
      vstore(in + ((ih + j->top) * cols + iw + j->left) * VL, t[k]);
      if (++iw == j->W) iw = 0, ++ih;
    }
    q0 = plane;
  }
  int taps_in_vectors = lanes == VL && taps < VL && j->ws[2] == 1 && j->ws[1] == j->KW;
  if (taps_in_vectors) { /* each channel's taps are consecutive floats: one transpose puts them in tap vectors */
    vf r[VL], t[VL];
    for (int l = 0; l < VL; ++l) r[l] = vload_n(j->w + (c0 + l) * j->ws[0], taps);
    transpose_lanes(r, t);
    for (int64_t k = 0; k < taps; ++k) vstore(wts + k * VL, t[k]);
  }
#else
  int taps_in_vectors = 0;
#endif
  for (int64_t l = 0; l < lanes; ++l) {
    const float *x = j->x + n * j->xs[0] + (c0 + l) * j->xs[1], *w = j->w + (c0 + l) * j->ws[0];
    if (x_blocked)
      ; /* copied above */
    else if (q0) /* the transposes above did all but the last pixels, from (ih, iw) on */
      for (int64_t q = q0, h = ih, c = iw; q < plane; ++q) {
        in[((h + j->top) * cols + c + j->left) * VL + l] = x[q];
        if (++c == j->W) c = 0, ++h;
      }
    else
    for (int64_t r = 0; r < rows; ++r) {
      int64_t ih = r - j->top;
      if (ih < 0 || ih >= j->H) continue;
      int64_t from = j->left > 0 ? 0 : -j->left, to = min64(j->W, cols - j->left);
      for (int64_t iw = from; iw < to; ++iw) in[(r * cols + iw + j->left) * VL + l] = x[ih * j->xs[2] + iw * j->xs[3]];
    }
    for (int64_t kh = 0; kh < j->KH && !taps_in_vectors; ++kh)
      for (int64_t kw = 0; kw < j->KW; ++kw) wts[(kh * j->KW + kw) * VL + l] = w[kh * j->ws[1] + kw * j->ws[2]];
  }
  /* every output pixel's window origin; four pixels at a time (four independent FMA chains), across rows */
  int64_t *origin = (int64_t *)(wts + taps * VL), step_h = j->dh * cols * VL, step_w = j->dw * VL;
  for (int64_t oh = 0, p = 0, row = 0; oh < j->OH; ++oh, row += j->sh * cols * VL)
    for (int64_t ow = 0, at = row; ow < j->OW; ++ow, ++p, at += j->sw * VL) origin[p] = at;
  int64_t p = 0;
  if (j->KH == 3 && j->KW == 3) /* constant trip counts: the taps unroll into straight-line FMAs */
    p = dw_lane_pixels(in, wts, origin, out, pixels, 3, 3, step_h, step_w);
  else if (j->KH == 5 && j->KW == 5)
    p = dw_lane_pixels(in, wts, origin, out, pixels, 5, 5, step_h, step_w);
  else
    p = dw_lane_pixels(in, wts, origin, out, pixels, j->KH, j->KW, step_h, step_w);
  for (; p < pixels; ++p) {
    const float *b = in + origin[p], *wt = wts;
    vf a = {0};
    for (int64_t kh = 0; kh < j->KH; ++kh)
      for (int64_t kw = 0; kw < j->KW; ++kw, wt += VL) a += vload(wt) * vload(b + kh * step_h + kw * step_w);
    vstore(out + p * VL, a);
  }
  const Epilogue *pe = &j->e;
  int plane_init = pe->init_mode == INIT_CONSTANT || (pe->init_mode == INIT_SOURCE && pe->init_sn == 0 && pe->init_sh == 0);
  int y_blocked = (j->layouts & Y_BLOCKED) != 0;
  if (plane_init && !pe->res) { /* a bias per channel (or a constant) and a clamp: vectors of VL channels */
    vf init = vsplat(pe->init_value);
    if (pe->init_mode == INIT_SOURCE)
      for (int64_t l = 0; l < lanes; ++l) init[l] = pe->init[n * j->is[0] + (c0 + l) * j->is[1]];
    if (y_blocked) { /* each pixel's VL channels stored as they are */
      float *y = j->y + n * j->ys[0] + blocked_at(c0, 0, pixels);
      for (int64_t p = 0; p < pixels; ++p) vstore(y + p * CBLOCK, vclamp_act(pe, vload(out + p * VL) + init));
      return;
    }
    int64_t p0 = 0;
#if VL >= 8
    if (lanes == VL && j->ys[3] == 1 && j->ys[2] == j->OW) /* VL pixels x VL channels per transpose, vector stores */
      for (; p0 + VL <= pixels; p0 += VL) {
        vf r[VL], t[VL];
        for (int q = 0; q < VL; ++q) r[q] = vclamp_act(pe, vload(out + (p0 + q) * VL) + init);
        transpose_lanes(r, t);
        for (int64_t l = 0; l < VL; ++l) vstore(j->y + n * j->ys[0] + (c0 + l) * j->ys[1] + p0, t[l]);
      }
    if (lanes == VL && j->ys[3] == 1 && j->ys[2] == j->OW && p0 < pixels) { /* the last pixels: masked stores */
      int64_t rem = pixels - p0;
      vf r[VL], t[VL];
      for (int64_t q = 0; q < VL; ++q) r[q] = q < rem ? vclamp_act(pe, vload(out + (p0 + q) * VL) + init) : vsplat(0.0f);
      transpose_lanes(r, t);
      for (int64_t l = 0; l < VL; ++l) vstore_n(j->y + n * j->ys[0] + (c0 + l) * j->ys[1] + p0, t[l], rem);
      p0 = pixels;
    }
#endif
    for (int64_t p = p0; p < pixels; ++p) vstore(out + p * VL, vclamp_act(pe, vload(out + p * VL) + init));
    for (int64_t l = 0; l < lanes; ++l) {
      float *y = j->y + n * j->ys[0] + (c0 + l) * j->ys[1];
      const float *src = out + l;
      if (j->ys[3] == 1 && j->ys[2] == j->OW)
        for (int64_t p = p0; p < pixels; ++p) y[p] = src[p * VL];
      else
        for (int64_t oh = 0, p = 0; oh < j->OH; ++oh)
          for (int64_t ow = 0; ow < j->OW; ++ow, ++p) y[oh * j->ys[2] + ow * j->ys[3]] = src[p * VL];
    }
    return;
  }
  for (int64_t l = 0; l < lanes; ++l) { /* any other epilogue (a residual, a strided init): element by element */
    Epilogue e = j->e;
    e.ow = j->OW;
    if (e.init) e.init += n * j->is[0] + (c0 + l) * j->is[1];
    if (e.res) e.res += n * j->rs[0] + (c0 + l) * j->rs[1];
    float *y = j->y + n * j->ys[0] + (y_blocked ? blocked_at(c0 + l, 0, pixels) : (c0 + l) * j->ys[1]);
    for (int64_t oh = 0, p = 0; oh < j->OH; ++oh)
      for (int64_t ow = 0; ow < j->OW; ++ow, ++p) {
        float *dst = y_blocked ? y + p * CBLOCK : y + oh * j->ys[2] + ow * j->ys[3];
        *dst = epi_finish(&e, epi_init(&e, *dst, 0, p) + out[p * VL + l], 0, p);
      }
  }
}

/* Depthwise 2-D convolution (one filter per channel), NCHW input read through implicit zero padding, CHW weights:
 * y[n][c][oh][ow] = sum_kh,kw w[c][kh][kw] * x[n][c][oh*sh + kh*dh - top][ow*sw + kw*dw - left] (+ epilogue).
 * sizes: {N, C, H, W, KH, KW, OH, OW}, conv: {sh, sw, dh, dw, top, left}; strides in elements: x and y NCHW, w CHW. */
/* A blocked input (X_BLOCKED, the hand-over between the convolutions of a depthwise-separable block) with a
 * per-channel bias and a clamp: each pixel's VL channels are one vector, so the kernel reads the input in place and
 * writes each output vector once with the epilogue (a blocked output in place, an NCHW one a row at a time through
 * transposes) instead of going through a padded copy and an output buffer (dw_channel_block: three passes over a
 * plane that overflows L1). MobileNetV2, blocked output: 144 channels 56x56 stride 2 138 -> 74 us, 192 channels
 * 28x28 79 -> 59 us, stride 2 40 -> 22 us; NCHW output: 32 channels 112x112 320 -> 176 us, 96 stride 2 458 ->
 * 270 us. Windows that stay inside the input run eight pixels at a time (eight FMA chains); those that reach into
 * the implicit zero padding test each tap. */
#define DW_BLOCKED_MAX_TAPS 49
/* smaller input planes (per VL channels) fit L1 in dw_channel_block's padded copy, which then keeps up (14x14: within
   +-4%; 25x5: the rows are too short for the eight chains) */
#define DW_BLOCKED_MIN_PLANE_BYTES (32 * 1024)

/* y[i * pitch] = clamp(init + sum over taps of wts[t] * in[pixel i's window]) for P pixels (P independent FMA
 * chains); pixel i's window starts at x + i * pixel_step, tap (kh, kw) at + kh * step_h + kw * step_w (floats). */
static inline __attribute__((always_inline)) void dw_blocked_chains(const int P, const int KH, const int KW, const float *restrict x,
                                                                    int64_t pixel_step, int64_t step_h, int64_t step_w,
                                                                    const float *restrict wts, vf init, const Epilogue *e,
                                                                    float *restrict y, int64_t pitch) {
  vf a[8];
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) a[i] = init;
#pragma GCC unroll 7
  for (int kh = 0; kh < KH; ++kh)
#pragma GCC unroll 7
    for (int kw = 0; kw < KW; ++kw) {
      vf wv = vload(wts + (kh * KW + kw) * VL);
      const float *b = x + kh * step_h + kw * step_w;
#pragma GCC unroll 8
      for (int i = 0; i < P; ++i) a[i] += wv * vload(b + i * pixel_step);
    }
#pragma GCC unroll 8
  for (int i = 0; i < P; ++i) vstore(y + i * pitch, vclamp_act(e, a[i]));
}

/* The same for n pixels whose windows lie inside the input: eight at a time, then four, then one. */
static inline __attribute__((always_inline)) void dw_blocked_run(const int KH, const int KW, const float *restrict x,
                                                                 int64_t n, int64_t pixel_step, int64_t step_h, int64_t step_w,
                                                                 const float *restrict wts, vf init, const Epilogue *e,
                                                                 float *restrict y, int64_t pitch) {
  int64_t q = 0;
  for (; q + 8 <= n; q += 8) dw_blocked_chains(8, KH, KW, x + q * pixel_step, pixel_step, step_h, step_w, wts, init, e, y + q * pitch, pitch);
  for (; q + 4 <= n; q += 4) dw_blocked_chains(4, KH, KW, x + q * pixel_step, pixel_step, step_h, step_w, wts, init, e, y + q * pitch, pitch);
  for (; q < n; ++q) dw_blocked_chains(1, KH, KW, x + q * pixel_step, pixel_step, step_h, step_w, wts, init, e, y + q * pitch, pitch);
}

/* Output row oh of channels c0.. (row[ow] = their vector at pixel ow, epilogue applied) into an NCHW output. */
static void dw_row_to_nchw(const DwJob *j, const float *row, int64_t n, int64_t c0, int64_t oh) {
  float *y = j->y + n * j->ys[0] + c0 * j->ys[1] + oh * j->ys[2];
  int64_t p0 = 0;
#if VL >= 8
  for (; p0 < j->OW; p0 += VL) { /* VL pixels x VL channels per transpose */
    int64_t lanes = min64(VL, j->OW - p0);
    vf r[VL], t[VL];
    for (int q = 0; q < VL; ++q) r[q] = q < lanes ? vload(row + (p0 + q) * VL) : vsplat(0.0f);
    transpose_lanes(r, t);
    for (int l = 0; l < VL; ++l) {
      if (lanes == VL) vstore(y + l * j->ys[1] + p0, t[l]);
      else vstore_n(y + l * j->ys[1] + p0, t[l], lanes);
    }
  }
#endif
  for (int64_t p = p0; p < j->OW; ++p)
    for (int l = 0; l < VL; ++l) y[l * j->ys[1] + p] = row[p * VL + l];
}

static __thread Scratch dw_row_scratch;

/* Output rows [oh0, oh1) of the VL channels from c0 of batch entry n. */
static void dw_blocked_rows(const DwJob *j, int64_t n, int64_t c0, int64_t oh0, int64_t oh1) {
  int64_t KH = j->KH, KW = j->KW, H = j->H, W = j->W, OH = j->OH, OW = j->OW, sh = j->sh, sw = j->sw;
  const float *x = j->x + n * j->xs[0] + blocked_at(c0, 0, H * W);
  /* a blocked output is written in place, pixel after pixel (CBLOCK apart); an NCHW one a row at a time through
     a row of vectors (VL apart) and transposes */
  int y_blocked = (j->layouts & Y_BLOCKED) != 0;
  int64_t pitch = y_blocked ? CBLOCK : VL;
  float *y = y_blocked ? j->y + n * j->ys[0] + blocked_at(c0, 0, OH * OW) : scratch(&dw_row_scratch, (size_t)(OW * VL));
  if (!y) abort(); /* out of memory: nothing sensible to return through a void ABI */
  float wts[DW_BLOCKED_MAX_TAPS * VL];
  for (int64_t l = 0; l < VL; ++l)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) wts[(kh * KW + kw) * VL + l] = j->w[(c0 + l) * j->ws[0] + kh * j->ws[1] + kw * j->ws[2]];
  const Epilogue local = j->e, *e = &local; /* a copy the output stores cannot alias (as in fv_write_blocked) */
  vf init = vsplat(e->init_mode == INIT_CONSTANT ? e->init_value : 0.0f);
  if (e->init_mode == INIT_SOURCE)
    for (int64_t l = 0; l < VL; ++l) init[l] = e->init[n * j->is[0] + (c0 + l) * j->is[1]];
  int64_t step_h = j->dh * W * CBLOCK, step_w = j->dw * CBLOCK, reach_w = (KW - 1) * j->dw, reach_h = (KH - 1) * j->dh;
  /* output columns whose windows lie inside the input's columns: [lo, hi) */
  int64_t lo = (j->left + sw - 1) / sw, hi = W - 1 - reach_w + j->left >= 0 ? (W - 1 - reach_w + j->left) / sw + 1 : 0;
  hi = hi < OW ? hi : OW;
  lo = lo < hi ? lo : hi;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    int64_t ih0 = oh * sh - j->top;
    float *yrow = y_blocked ? y + oh * OW * CBLOCK : y;
    int inside = ih0 >= 0 && ih0 + reach_h < H;
    for (int64_t ow = 0; ow < OW; ++ow) {
      if (inside && ow == lo && hi > lo) { /* the row's inner run, read in place */
        const float *start = x + (ih0 * W + lo * sw - j->left) * CBLOCK;
        /* constant pixel and tap steps (stride 1 or 2, no dilation) make every load an offset from one row
           pointer; as run-time values, the eight chains' addresses spilled (GPR reloads were the hot spots) */
        int64_t n_run = hi - lo;
        float *out = yrow + lo * pitch;
        int unit = j->dw == 1 && (sw == 1 || sw == 2) && ((KH == 3 && KW == 3) || (KH == 5 && KW == 5));
#define DW_UNIT_RUN(K_, SW_, PITCH_) dw_blocked_run(K_, K_, start, n_run, (SW_) * CBLOCK, step_h, CBLOCK, wts, init, e, out, PITCH_)
#define DW_UNIT_PITCH(K_, SW_) \
  if (pitch == CBLOCK) DW_UNIT_RUN(K_, SW_, CBLOCK); else DW_UNIT_RUN(K_, SW_, VL);
        if (unit && KH == 3) {
          if (sw == 1) { DW_UNIT_PITCH(3, 1) } else { DW_UNIT_PITCH(3, 2) }
        } else if (unit) {
          if (sw == 1) { DW_UNIT_PITCH(5, 1) } else { DW_UNIT_PITCH(5, 2) }
        }
#undef DW_UNIT_PITCH
#undef DW_UNIT_RUN
        else if (KH == 3 && KW == 3)
          dw_blocked_run(3, 3, start, hi - lo, sw * CBLOCK, step_h, step_w, wts, init, e, yrow + lo * pitch, pitch);
        else if (KH == 5 && KW == 5)
          dw_blocked_run(5, 5, start, hi - lo, sw * CBLOCK, step_h, step_w, wts, init, e, yrow + lo * pitch, pitch);
        else
          dw_blocked_run((int)KH, (int)KW, start, hi - lo, sw * CBLOCK, step_h, step_w, wts, init, e, yrow + lo * pitch, pitch);
        ow = hi - 1;
        continue;
      }
      vf a = init; /* a window that reaches into the padding: taps outside it read zeros */
      int64_t iw0 = ow * sw - j->left;
      for (int64_t kh = 0; kh < KH; ++kh) {
        int64_t ih = ih0 + kh * j->dh;
        if (ih < 0 || ih >= H) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          int64_t iw = iw0 + kw * j->dw;
          if (iw >= 0 && iw < W) a += vload(wts + (kh * KW + kw) * VL) * vload(x + (ih * W + iw) * CBLOCK);
        }
      }
      vstore(yrow + ow * pitch, vclamp_act(e, a));
    }
    if (!y_blocked) dw_row_to_nchw(j, y, n, c0, oh);
  }
}

/* A CBLOCK-channel block's pixel is one 64-byte line: where VL is narrower (AVX2: two lanes per line), a lane per
 * task read every input line once per lane, and a large plane (MobileNetV2's 96 channels at 112x112, 4.8 MB) came
 * from memory twice. A task now takes one of DW_LANES row ranges of a block and runs its lanes over DW_ROWS output
 * rows at a time, so the second lane finds the rows in the L2. The task count stays one per lane. */
#define DW_LANES (CBLOCK / VL)
#ifndef DW_ROWS
#define DW_ROWS 16
#endif
static void dw_blocked(void *ctx, int64_t task) {
  const DwJob *j = ctx;
  int64_t blocks = j->C / CBLOCK, n = task / (blocks * DW_LANES), c0 = (task / DW_LANES) % blocks * CBLOCK, part = task % DW_LANES;
  int64_t oh0 = j->OH * part / DW_LANES, oh1 = j->OH * (part + 1) / DW_LANES;
  for (int64_t r = oh0; r < oh1; r += DW_ROWS)
    for (int64_t q = 0; q < DW_LANES; ++q) dw_blocked_rows(j, n, c0 + q * VL, r, min64(r + DW_ROWS, oh1));
}

void CAT(hcc_dwconv2d, SUFFIX)(int64_t x_ptr, int64_t w_ptr, int64_t y_ptr, const int64_t *sizes, const int64_t *conv,
                               const int64_t *xs, const int64_t *ws, const int64_t *ys, const int64_t *ep) {
  DwJob job = {(const float *)(intptr_t)x_ptr, (const float *)(intptr_t)w_ptr, (float *)(intptr_t)y_ptr, sizes[1], sizes[4], sizes[5],
               sizes[6], sizes[7], conv[0], conv[1], conv[2], conv[3], xs, ws, ys, sizes[2], sizes[3], conv[4], conv[5]};
  job.layouts = conv[6];
  job.e = read_epilogue(ep, 4, &job.is, &job.rs);
  job.e.init_sn = job.is[3], job.e.init_sh = job.is[2];
  job.e.res_sn = job.rs[3], job.e.res_sh = job.rs[2];
  int64_t planes = sizes[0] * sizes[1];
  double work = (double)planes * job.KH * job.KW * job.OH * job.OW;
  if (planes <= 0 || job.OH <= 0 || job.OW <= 0) return;
  /* all but the widest planes go VL channels at a time (measured: the row paths lose 3x to onnxruntime on 7x7
     planes, and up to 5x to the lanes on 56-wide stride-2 planes) */
  int by_channels = (job.OW < DW_LANES_BELOW_OW || job.layouts) && job.C >= VL; /* blocked: C is a multiple of CBLOCK */
  int64_t tasks = by_channels ? sizes[0] * ((job.C + VL - 1) / VL) : planes;
  hcc_task_fn fn = by_channels ? dw_channel_block : dw_plane;
  const Epilogue *pe = &job.e;
  int channel_init = pe->init_mode == INIT_CONSTANT || (pe->init_mode == INIT_SOURCE && pe->init_sn == 0 && pe->init_sh == 0);
  if ((job.layouts & X_BLOCKED) && (job.layouts & Y_BLOCKED || ys[3] == 1) && channel_init && !pe->res &&
      job.KH * job.KW <= DW_BLOCKED_MAX_TAPS &&
      job.H * job.W * VL * (int64_t)sizeof(float) > DW_BLOCKED_MIN_PLANE_BYTES)
    fn = dw_blocked; /* C is a multiple of CBLOCK, so of VL */
  if (work < 2e5) {
    for (int64_t t = 0; t < tasks; ++t) fn(&job, t);
    return;
  }
  hcc_parallel_for(tasks, fn, &job);
}

/* ------------------------------------------------------------------------------------------------ filter-vector conv */

/* Convolutions with many filters, vectors across filters (the layout of onnxruntime's NCHWc kernels, applied inside
 * one call). The pixel-vector paths above read VL input pixels per load: on a 7x7 or 14x14 map that is most of a
 * row, so they fall back to im2col or compute dropped grid columns, and their loads straddle cache lines. Here a
 * tile is FV_PX output pixels x up to FV_MAXV vectors of filters: per tap, FV_MAXV aligned loads of a packed filter
 * panel and FV_PX scalar broadcasts of input pixels (any stride, any map width) feed FV_MAXV x FV_PX FMAs.
 * Per filter block of fv vectors, the panel ([K][fv * VL] floats) is packed once per task by VL x VL transposes;
 * sums for a group of FV_GROUP pixels build up over chunks of taps (fv_chunk: FV_KC, more for one or two vectors;
 * the panel chunk stays in L1) and are transposed back into the NCHW output with the epilogue. */
#if VL >= 8
#if VL == 16
#define FV_MAXV 4
#else /* AVX2's 16 registers: 12 sums as 3 filter vectors x 4 pixels, or 2 x 6 */
#define FV_MAXV 3
#endif
#define FV_PX 6
#define FV_PX3 4 /* pixels per tile of 3 filter vectors */
#define FV_BLOCK (FV_MAXV * VL) /* filters per block at most */
#define FV_REST (FV_MAXV == 3 ? 2 : FV_MAXV) /* vectors per block after the first (fv_lead) */
#ifndef FV_KC
#if VL == 8 /* measured on the AMD EPYC (AVX2): 64 taps keep a 7x7 map's input chunk in L1; 960->320 and 320->1280
               1x1 convs on 7x7 ran 20% faster than at 128, no shape slower */
#define FV_KC 64
#else
#define FV_KC 128
#endif
#endif
#ifndef FV_GROUP
#define FV_GROUP 96 /* a multiple of FV_PX and FV_PX3 */
#endif
#ifndef FV_OUTER_PANELS
#define FV_OUTER_PANELS (256 * 1024) /* bytes: kept panels at most, an input at least, for the groups-outer order (FvJob) */
#endif

typedef struct {
  const Problem *problems; /* per (image, group): a = filters (lda > 0), b = the (padded) input, c = output */
  const int64_t *koff, *pix; /* tap k's offset in the input; output pixel p's window origin */
  int64_t P, blocks, parts, groups, G;
  const float *packed; /* every (group, block) panel packed before (the constant filters' cache), or NULL */
  int y_blocked;        /* write the output in the blocked layout (CBLOCK channels per pixel), else NCHW */
  int groups_outer;     /* a task runs its pixel groups one after another through every filter block (else one
                           block through its groups): the input read once, the kept panels from L2 (conv_fv) */
} FvJob;

/* Where a tile writes a blocked output straight from its registers: y[i] = the first pixel's vector of filter
 * vector i, pixels CBLOCK floats apart; the sum plus init[i], clamped by e. */
typedef struct {
  float *y[FV_MAXV];
  vf init[FV_MAXV];
  const Epilogue *e;
} FvOut;

static int64_t fv_rounded(int64_t M) { return ((M + VL - 1) / VL) * VL; } /* filters as whole vectors */

/* sums[j][..] (+)= sum over kc taps of panel[k][..] * in[pix[j] + koff[k]] for px pixels and fv filter vectors.
 * `prefetch`: also fetch the kc panel rows at pf towards L2. A task's first pixel group does, for the next chunk of a
 * kept panel (the next filter block's after the last chunk: kept panels are contiguous): ResNet-18's 512-filter 3x3
 * panels (9.4 MB) come from memory on every run, and waiting for them cost 0.6 of 2.3 ms (measured with the caches
 * flushed between calls: 2.21 -> 1.86 ms; 256 filters on 14x14: -6%; no change with warm caches). */
static inline __attribute__((always_inline)) void fv_tile_to(const int prefetch, const int fv, const int px, int64_t kc,
                                                             const float *restrict panel, const float *restrict in,
                                                             const int64_t *restrict pix, const int64_t *restrict koff,
                                                             float *restrict sums, int first, const float *pf,
                                                             const FvOut *out) {
  const int width = fv * VL; /* the panel's and the sums' row length */
  vf c[FV_MAXV][FV_PX];
  const float *base[FV_PX];
#pragma GCC unroll 8
  for (int j = 0; j < px; ++j) base[j] = in + pix[j];
#pragma GCC unroll 8
  for (int j = 0; j < px; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < fv; ++i) c[i][j] = first ? vsplat(0.0f) : vload(sums + j * width + i * VL);
  for (int64_t k = 0; k < kc; ++k, panel += width) {
    int64_t o = koff[k];
    vf w[FV_MAXV];
#pragma GCC unroll 4
    for (int i = 0; i < fv; ++i) w[i] = *(const vf *)(panel + i * VL);
#pragma GCC unroll 4
    for (int i = 0; i < fv && prefetch; ++i) __builtin_prefetch(pf + k * width + i * VL, 0, 2);
#pragma GCC unroll 8
    for (int j = 0; j < px; ++j) {
      vf b = vsplat(base[j][o]);
#pragma GCC unroll 4
      for (int i = 0; i < fv; ++i) c[i][j] += w[i] * b;
    }
  }
  if (out) { /* the blocked output written from the registers, with the epilogue (no sums round trip); locals, which
                the stores cannot alias */
    const Epilogue e = *out->e;
    float *y[FV_MAXV];
    vf init[FV_MAXV];
#pragma GCC unroll 4
    for (int i = 0; i < fv; ++i) y[i] = out->y[i], init[i] = out->init[i];
#pragma GCC unroll 8
    for (int j = 0; j < px; ++j)
#pragma GCC unroll 4
      for (int i = 0; i < fv; ++i) vstore(y[i] + j * CBLOCK, vclamp_act(&e, c[i][j] + init[i]));
    return;
  }
#pragma GCC unroll 8
  for (int j = 0; j < px; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < fv; ++i) vstore(sums + j * width + i * VL, c[i][j]);
}

static inline __attribute__((always_inline)) void fv_tile(const int prefetch, const int fv, const int px, int64_t kc, const float *restrict panel,
                                                          const float *restrict in, const int64_t *restrict pix,
                                                          const int64_t *restrict koff, float *restrict sums, int first,
                                                          const float *pf) {
  fv_tile_to(prefetch, fv, px, kc, panel, in, pix, koff, sums, first, pf, NULL);
}

#define FV_CASE(F, X) \
  case (F) * 8 + (X): fv_tile(PF, F, X, kc, panel, in, pix, koff, sums, first, pf); return;
#define FV_ROW4(F) FV_CASE(F, 1) FV_CASE(F, 2) FV_CASE(F, 3) FV_CASE(F, 4)
#define FV_ROW(F) FV_ROW4(F) FV_CASE(F, 5) FV_CASE(F, 6)

static void fv_tile_any(int fv, int px, int64_t kc, const float *panel, const float *in, const int64_t *pix, const int64_t *koff,
                        float *sums, int first, const float *pf) {
  if (pf) {
#define PF 1
    switch (fv * 8 + px) {
      FV_ROW(1)
      FV_ROW(2)
#if FV_MAXV == 3
      FV_ROW4(3)
#else
      FV_ROW(3)
      FV_ROW(4)
#endif
    }
#undef PF
  } else {
#define PF 0
    switch (fv * 8 + px) {
      FV_ROW(1)
      FV_ROW(2)
#if FV_MAXV == 3
      FV_ROW4(3)
#else
      FV_ROW(3)
      FV_ROW(4)
#endif
    }
#undef PF
  }
}

#define FV_OUT_CASE(F, X) \
  case (F) * 8 + (X): fv_tile_to(0, F, X, kc, panel, in, pix, koff, NULL, 1, NULL, out); return;
#define FV_OUT_ROW4(F) FV_OUT_CASE(F, 1) FV_OUT_CASE(F, 2) FV_OUT_CASE(F, 3) FV_OUT_CASE(F, 4)
#define FV_OUT_ROW(F) FV_OUT_ROW4(F) FV_OUT_CASE(F, 5) FV_OUT_CASE(F, 6)

/* A whole tile (all of its taps in one chunk) into the blocked output. */
static void fv_tile_out(int fv, int px, int64_t kc, const float *panel, const float *in, const int64_t *pix, const int64_t *koff,
                        const FvOut *out) {
  switch (fv * 8 + px) {
    FV_OUT_ROW(1)
    FV_OUT_ROW(2)
#if FV_MAXV == 3
    FV_OUT_ROW4(3)
#else
    FV_OUT_ROW(3)
    FV_OUT_ROW(4)
#endif
  }
}

/* panel[k][f] = filter m0 + f's tap k, zero for f >= rows (whole vectors only). */
static void fv_pack(const Problem *p, int64_t m0, int64_t rows, float *restrict panel) {
  int64_t K = p->K, width = fv_rounded(rows), k = 0;
  const float *a = p->a + m0 * p->lda;
  if (rows == width)
    for (; k + VL <= K; k += VL)
      for (int64_t f = 0; f < rows; f += VL) {
        vf r[VL], t[VL];
        for (int l = 0; l < VL; ++l) r[l] = vload(a + (f + l) * p->lda + k);
        transpose_lanes(r, t);
        for (int l = 0; l < VL; ++l) vstore(panel + (k + l) * width + f, t[l]);
      }
  for (; k < K; ++k)
    for (int64_t f = 0; f < width; ++f) panel[k * width + f] = f < rows ? a[f * p->lda + k] : 0.0f;
}

/* out[m][n] for `lanes` pixels n0.. of filter m (global indices), from the sum vector v, with the epilogue. */
static inline void fv_store(const Problem *p, vf v, int64_t m, int64_t n0, int64_t lanes) {
  const Epilogue *e = &p->e;
  float *y = p->c + m * p->c_sm + n0;
  int init_vec = e->init_mode != INIT_SOURCE || vector_columns(e->ow, e->init_sn, e->init_sh);
  int res_vec = !e->res || (e->res_sn == 1 && vector_columns(e->ow, 1, e->res_sh));
  if (!init_vec || !res_vec) {
    float s[VL];
    vstore(s, v);
    for (int64_t l = 0; l < lanes; ++l) y[l] = epi_finish(e, epi_init(e, y[l], m, n0 + l) + s[l], m, n0 + l);
    return;
  }
  int full = lanes == VL;
  if (e->init_mode == INIT_IN_C) v += full ? vload(y) : vload_n(y, lanes);
  else if (e->init_mode == INIT_CONSTANT) v += vsplat(e->init_value);
  else if (e->init_sn == 0) v += vsplat(e->init[m * e->init_sm]);
  else v += full ? vload(e->init + m * e->init_sm + n0) : vload_n(e->init + m * e->init_sm + n0, lanes);
  if (e->res) v += full ? vload(e->res + m * e->res_sm + n0) : vload_n(e->res + m * e->res_sm + n0, lanes);
  v = vclamp_act(e, v);
  if (full) vstore(y, v);
  else vstore_n(y, v, lanes);
}

/* The init of filters m.. m + lanes - 1 as one vector (the rest of the lanes as a constant init, or 0): a constant or
 * one value per filter (the epilogues of fv_write_per_filter and the blocked write-outs). */
static inline vf fv_filter_init(const Epilogue *e, int64_t m, int64_t lanes) {
  vf init = vsplat(e->init_mode == INIT_CONSTANT ? e->init_value : 0.0f);
  if (e->init_mode == INIT_SOURCE)
    for (int64_t l = 0; l < lanes; ++l) init[l] = e->init[(m + l) * e->init_sm];
  return init;
}

/* fv_write for the common epilogues: an init per filter (a bias) or a constant, an optional residual of unit column
 * stride, a clamp. The init (and without a residual, the clamp) is added to each pixel's vector of filters before
 * the transpose, so each transposed vector is stored as it is (or with its residual row added): the general path
 * re-decides the epilogue per vector (fv_store). 0 if the epilogue is another. */
static int fv_write_per_filter(const Problem *p, const float *sums, int64_t m0, int64_t rows, int64_t n0, int64_t pn) {
  const Epilogue local = p->e, *e = &local; /* a copy: the stores below cannot alias it */
  int init_row = e->init_mode == INIT_CONSTANT || (e->init_mode == INIT_SOURCE && vector_columns(e->ow, 0, e->init_sh) && e->init_sn == 0);
  if (!init_row || (e->res && !(e->res_sn == 1 && vector_columns(e->ow, 1, e->res_sh)))) return 0;
  int64_t width = fv_rounded(rows);
  float *c = p->c + n0;
  for (int64_t f = 0; f < rows; f += VL) {
    vf init = fv_filter_init(e, m0 + f, min64(VL, rows - f));
    for (int64_t q = 0; q < pn; q += VL) {
      int64_t lanes = min64(VL, pn - q);
      vf r[VL], t[VL];
      for (int l = 0; l < VL; ++l) r[l] = l < lanes ? vload(sums + (q + l) * width + f) + init : init;
      if (!e->res)
        for (int l = 0; l < VL; ++l) r[l] = vclamp_act(e, r[l]);
      transpose_lanes(r, t);
      for (int64_t l = 0; l < VL && f + l < rows; ++l) {
        int64_t m = m0 + f + l;
        vf v = t[l];
        if (e->res) {
          const float *res = e->res + m * e->res_sm + n0 + q;
          v = vclamp_act(e, v + (lanes == VL ? vload(res) : vload_n(res, lanes)));
        }
        if (lanes == VL)
          vstore(c + m * p->c_sm + q, v);
        else
          vstore_n(c + m * p->c_sm + q, v, lanes);
      }
    }
  }
  return 1;
}

/* The group's sums ([pn][width], pixel-major, width = rows rounded up to whole vectors) into the output's rows m0..
 * (filter-major), VL x VL at a time. */
static void fv_write(const Problem *p, const float *sums, int64_t m0, int64_t rows, int64_t n0, int64_t pn) {
  if (fv_write_per_filter(p, sums, m0, rows, n0, pn)) return;
  int64_t width = fv_rounded(rows);
  for (int64_t q = 0; q < pn; q += VL) {
    int64_t lanes = min64(VL, pn - q);
    for (int64_t f = 0; f < rows; f += VL) {
      vf r[VL], t[VL];
      for (int l = 0; l < VL; ++l) r[l] = l < lanes ? vload(sums + (q + l) * width + f) : vsplat(0.0f);
      transpose_lanes(r, t);
      for (int64_t l = 0; l < VL && f + l < rows; ++l) fv_store(p, t[l], m0 + f + l, n0 + q, lanes);
    }
  }
}

/* Whether the blocked write-out takes this epilogue: an init per filter (or a constant) and a clamp; no residual. */
static int fv_blocked_epilogue(const Epilogue *e) {
  return !e->res && (e->init_mode == INIT_CONSTANT || (e->init_mode == INIT_SOURCE && e->init_sn == 0 && e->init_sh == 0));
}

/* The group's sums into the blocked output: each sum vector is VL filters of one pixel, stored as it is. */
static void fv_write_blocked(const Problem *p, const float *sums, int64_t m0, int64_t rows, int64_t n0, int64_t pn, int64_t P) {
  const Epilogue local = p->e, *e = &local; /* a copy: the stores below cannot alias it, so its clamp modes are read
                                              once instead of per pixel */
  int64_t width = fv_rounded(rows); /* the sums' row length */
  for (int64_t f = 0; f < rows; f += VL) { /* rows: a multiple of VL (the blocked output has whole blocks) */
    int64_t m = m0 + f;
    vf init = fv_filter_init(e, m, VL);
    float *y = p->c + blocked_at(m, n0, P);
    for (int64_t q = 0; q < pn; ++q) vstore(y + q * CBLOCK, vclamp_act(e, vload(sums + q * width + f) + init));
  }
}

/* The filter blocks of M filters: FV_MAXV vectors each, except on AVX2 (FV_MAXV 3), where blocks take 2 vectors
 * (6-pixel tiles) and an odd count of vectors leads with one 3-vector block (4-pixel tiles) rather than end on a
 * 1-vector block, whose tiles do half the FMAs per broadcast: 24 filters run as one 3 x 4 block, not 16 + 8 (measured
 * on the EPYC: MobileNet's 96->24 and 144->24 1x1 convs on 56x56 16-18% faster; at an even count, 3-vector blocks
 * were 2-4% slower than 2-vector ones). Block b holds filters fv_block_m0(M, b) .. fv_block_m0(M, b + 1) - 1. */
static int64_t fv_lead(int64_t M) { /* vectors in block 0 */
  int64_t v = (M + VL - 1) / VL;
  if (FV_MAXV != 3) return min64(v, FV_MAXV);
  return v >= 3 && v % 2 ? 3 : min64(v, 2);
}
static int64_t fv_blocks(int64_t M) {
  int64_t v = (M + VL - 1) / VL;
  return 1 + (v - fv_lead(M) + FV_REST - 1) / FV_REST;
}
static int64_t fv_block_m0(int64_t M, int64_t block) {
  return block == 0 ? 0 : min64(M, VL * (fv_lead(M) + FV_REST * (block - 1)));
}

static __thread Scratch fv_panel, fv_sums;

/* Taps per chunk for tiles of fv filter vectors. One or two vectors (16..32 filters: a U-Net's convolutions) take
 * 4x or 2x FV_KC, the same panel bytes in L1, in chunks of equal length: a 16->16 3x3 convolution's 144 taps were a
 * chunk of 128 and one of 16 (each chunk a store and reload of the tile's sums), and a blocked output is written
 * straight from the registers when one chunk holds every tap (blocked 3x3 convolutions on an EPYC Zen 4, both
 * orders of a ctypes A/B: 16->16 and 16->32 3-5% faster, 32->16 2-3%, 32 filters about 1%; the same bits). */
static int64_t fv_chunk(int64_t K, int fv) {
  if (fv > 2) return FV_KC;
  int64_t most = FV_KC * (fv == 1 ? 4 : 2), chunks = (K + most - 1) / most;
  return (K + chunks - 1) / chunks;
}

/* Filter block `block` of problem `index` over pixel groups g0..g1-1; `first`: the task's first group, whose tiles
 * prefetch the kept panel's next chunk. */
static void fv_block_groups(const FvJob *j, int64_t index, int64_t block, int64_t g0, int64_t g1, int64_t first) {
  const Problem *p = &j->problems[index];
  int64_t m0 = fv_block_m0(p->M, block), rows = min64(fv_block_m0(p->M, block + 1), p->M) - m0;
  int fv = (int)((rows + VL - 1) / VL), px_max = fv == 3 ? FV_PX3 : FV_PX;
  int64_t width = fv * VL; /* kept panels: [groups][filters rounded up to vectors][taps], block b's at its first filter */
  const float *panel = j->packed ? j->packed + (index % j->G * fv_rounded(p->M) + m0) * p->K : NULL;
  float *sums = scratch(&fv_sums, (size_t)(FV_GROUP * FV_BLOCK));
  if (!panel) {
    float *own = scratch(&fv_panel, (size_t)(p->K * FV_BLOCK));
    if (!own || !sums) abort(); /* out of memory: nothing sensible to return through a void ABI */
    fv_pack(p, m0, rows, own);
    panel = own;
  }
  if (!sums) abort();
  /* a blocked output of a convolution with taps for one chunk is written by the tiles themselves (MobileNet's
     expansions: 16..160 taps; by perf, the sums' store, reload and copy loop was 14% of MobileNetV2's time) */
  int64_t chunk = fv_chunk(p->K, fv);
  int direct = j->y_blocked && p->K <= chunk;
  FvOut out = {{0}, {{0}}, NULL};
  const Epilogue local = p->e;
  if (direct) {
    out.e = &local; /* a copy: the output stores cannot alias it */
    for (int i = 0; i < fv; ++i) out.init[i] = fv_filter_init(&local, m0 + i * VL, VL);
  }
  for (int64_t g = g0; g < g1 && direct; ++g) {
    int64_t n0 = g * FV_GROUP, pn = min64(FV_GROUP, j->P - n0), tiles = (pn + px_max - 1) / px_max;
    int64_t narrow = pn / tiles, wide = pn % tiles;
    for (int64_t t = 0, i = 0; t < pn; ++i) {
      int px = (int)(narrow + (i < wide));
      for (int v = 0; v < fv; ++v) out.y[v] = p->c + blocked_at(m0 + v * VL, n0 + t, j->P);
      fv_tile_out(fv, px, p->K, panel, p->b, j->pix + n0 + t, j->koff, &out);
      t += px;
    }
  }
  for (int64_t g = g0; g < g1 && !direct; ++g) {
    int64_t n0 = g * FV_GROUP, pn = min64(FV_GROUP, j->P - n0), tiles = (pn + px_max - 1) / px_max;
    for (int64_t k0 = 0; k0 < p->K; k0 += chunk) {
      int64_t kc = min64(chunk, p->K - k0);
      /* tiles of equal size (a 49-pixel map: 4 x 6 + 5 x 5, not 8 x 6 + 1): the first `wide` ones one pixel more */
      int64_t narrow = pn / tiles, wide = pn % tiles;
      for (int64_t t = 0, i = 0; t < pn; ++i) {
        int px = (int)(narrow + (i < wide));
        fv_tile_any(fv, px, kc, panel + k0 * width, p->b, j->pix + n0 + t, j->koff + k0, sums + t * width, k0 == 0,
                    j->packed && g == first ? panel + (k0 + chunk) * width : NULL);
        t += px;
      }
    }
    if (j->y_blocked)
      fv_write_blocked(p, sums, m0, rows, n0, pn, j->P);
    else
      fv_write(p, sums, m0, rows, n0, pn);
  }
}

static void fv_part(void *ctx, int64_t task) {
  const FvJob *j = ctx;
  int64_t per_problem = j->groups_outer ? j->parts : j->blocks * j->parts, index = task / per_problem, part = task % j->parts;
  int64_t g0, g1;
  even_part(j->groups, j->parts, part, &g0, &g1);
  if (j->groups_outer)
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t block = 0; block < j->blocks; ++block) fv_block_groups(j, index, block, g, g + 1, g0);
  else if (g0 < g1)
    fv_block_groups(j, index, (task % per_problem) / j->parts, g0, g1, g0);
}

static void fv_pack_task(void *ctx, int64_t task) { /* task = group * blocks + block of problems[group] */
  const FvJob *j = ctx;
  const Problem *p = &j->problems[task / j->blocks];
  int64_t block = task % j->blocks, m0 = fv_block_m0(p->M, block);
  fv_pack(p, m0, min64(fv_block_m0(p->M, block + 1), p->M) - m0, (float *)j->packed + (task / j->blocks * fv_rounded(p->M) + m0) * p->K);
}

static void fv_pack_all(const void *ctx, float *out) { /* every (group, block) panel (fv_part) */
  FvJob job = *(const FvJob *)ctx;
  job.packed = out;
  hcc_parallel_for(job.G * job.blocks, fv_pack_task, &job);
}

/* conv_fv's offset tables: tap k's offset in the input (koff) and output pixel q's window origin (pix); a blocked
 * input holds channel c of pixel q at blocked_at(c, q, plane). Not inlined (see conv_tap_tables). */
static __attribute__((noinline)) void fv_tables(int64_t *restrict koff, int64_t *restrict pix, int x_blocked, int64_t Cg, int64_t KH,
                                                int64_t KW, int64_t OH, int64_t OW, int64_t plane, int64_t row, int64_t sh,
                                                int64_t sw, int64_t dh, int64_t dw) {
  if (x_blocked)
    for (int64_t c = 0, k = 0; c < Cg; ++c)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw, ++k) koff[k] = blocked_at(c, kh * dh * row + kw * dw, plane);
  else
    tap_offsets(koff, Cg, KH, KW, plane, row, dh, dw);
  int64_t scale = x_blocked ? CBLOCK : 1;
  for (int64_t oh = 0, q = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow, ++q) pix[q] = (oh * sh * row + ow * sw) * scale;
}

typedef struct {
  int x_blocked;
  int64_t Cg, KH, KW, OH, OW, plane, row, sh, sw, dh, dw;
} FvTables;

static void fv_fill_tables(const void *ctx, float *out) { /* koff (Cg * KH * KW), then pix (OH * OW) */
  const FvTables *t = ctx;
  int64_t *koff = (int64_t *)out;
  fv_tables(koff, koff + t->Cg * t->KH * t->KW, t->x_blocked, t->Cg, t->KH, t->KW, t->OH, t->OW, t->plane, t->row, t->sh, t->sw,
            t->dh, t->dw);
}

/* Run the problems (set up by conv_entry) with the filter-vector kernel; 0 if a buffer cannot be had. Reads the input
 * in place when the windows stay inside it with unit column stride, else through a zero-padded copy. `site` > 0:
 * the filters are constants of this call site (packed once, packed_weights). */
static int conv_fv(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                   const int64_t *conv, int reads_outside, int64_t site, int64_t layouts) {
  int64_t C = sizes[1], KH = sizes[5], KW = sizes[6], OH = sizes[7], OW = sizes[8];
  int64_t Cg = C / G, sh = conv[0], sw = conv[1], dh = conv[2], dw = conv[3], K = Cg * KH * KW, P = OH * OW;
  int64_t Hp = (OH - 1) * sh + (KH - 1) * dh + 1, Wp = (OW - 1) * sw + (KW - 1) * dw + 1;
  int padded = reads_outside || xs[3] != 1, x_blocked = (layouts & X_BLOCKED) != 0, y_blocked = (layouts & Y_BLOCKED) != 0;
  /* blocked: one group, whole channel blocks, an epilogue the blocked write-out takes */
  if ((x_blocked || y_blocked) && (G != 1 || (x_blocked && C % CBLOCK) || (y_blocked && !fv_blocked_epilogue(&problems[0].e))))
    return 0;
  int64_t plane = padded ? Hp * Wp : xs[1], row = padded ? Wp : xs[2];
  if (padded && !padded_copy(problems, NB, G, x, xs, sizes, conv, Hp, Wp, 0, x_blocked)) return 0;
  FvTables tables = {x_blocked, Cg, KH, KW, OH, OW, plane, row, sh, sw, dh, dw};
  const int64_t key[3] = {conv_key(sizes, conv, xs, NULL), K + P, plane * 2 + x_blocked};
  int64_t *koff = site > 0 ? (int64_t *)site_entry(&table_store, 2 * site + 1, key, (size_t)(2 * (K + P)), fv_fill_tables, &tables) : NULL;
  int64_t *own = NULL;
  if (!koff) {
    if (!(koff = own = malloc(sizeof(int64_t) * (size_t)(K + P)))) return 0;
    fv_fill_tables(&tables, (float *)own);
  }
  int64_t *pix = koff + K;
  int64_t batch = NB * G, blocks = fv_blocks(problems[0].M), groups = (P + FV_GROUP - 1) / FV_GROUP;
  double flops = 2.0 * (double)problems[0].M * (double)P * (double)K * (double)batch;
  int64_t threads = hcc_get_num_threads(), want = flops < 4e5 || threads == 1 ? 1 : threads * 2;
  int64_t parts = min64((want + batch * blocks - 1) / (batch * blocks), groups);
  FvJob job = {problems, koff, pix, P, blocks, parts, groups, G, NULL, y_blocked, 0};
  if (site > 0) {
    const int64_t shape[3] = {G, problems[0].M, problems[0].K};
    job.packed = packed_weights(site, shape, (size_t)(G * fv_rounded(problems[0].M) * problems[0].K), fv_pack_all, &job);
  }
  /* Groups outer where the input overflows L2, the kept panels of all blocks fit it, and there are groups enough for
     every thread: one block after another through the whole map read the input once per block (measured on the
     EPYC, 512 KiB L2: ResNet's 1x1 stride-2 downsamplings 8-10% faster, ResNet-18 -1.6%; 3x3 64->64 on 56x56 -1.5%). */
  int64_t panel_bytes = G * fv_rounded(problems[0].M) * problems[0].K * (int64_t)sizeof(float);
  if (job.packed && blocks > 1 && groups >= want && panel_bytes <= FV_OUTER_PANELS && Cg * plane * (int64_t)sizeof(float) > FV_OUTER_PANELS) {
    job.groups_outer = 1;
    job.parts = min64((want + batch - 1) / batch, groups);
  }
  hcc_parallel_for(batch * (job.groups_outer ? 1 : blocks) * job.parts, fv_part, &job);
  free(own);
  return 1;
}
#else
static int conv_fv(Problem *problems, int64_t NB, int64_t G, const float *x, const int64_t *xs, const int64_t *sizes,
                   const int64_t *conv, int reads_outside, int64_t site, int64_t layouts) {
  (void)problems, (void)NB, (void)G, (void)x, (void)xs, (void)sizes, (void)conv, (void)reads_outside, (void)site, (void)layouts;
  return 0; /* SSE2 (4 lanes): the pixel-vector paths only */
}
#endif /* VL >= 8 */
