/* Entry points the generated code calls (scalar arguments only: easy to emit from MLIR), and the choice of the
 * micro-kernel ISA by CPUID, once per process: AVX-512F, else AVX2+FMA, else SSE2. hcc_set_isa(16|8|4) forces one
 * (tests, comparisons); hcc_get_isa() says which runs (the runtime reports it).
 *
 * Every entry ends with the same epilogue arguments (ukernels.c, read_epilogue): init mode, init constant (float
 * bits), init pointer and strides, residual pointer (0: none) and strides, lo mode and bits, hi mode and bits. */
#include <stdint.h>

#define HCC_EXPORT __attribute__((visibility("default")))
#define GEMM_ARGS int64_t, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *, const int64_t *
#define CONV_ARGS \
  int64_t, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *, const int64_t *, const int64_t *
#define FILTER_CONV_ARGS CONV_ARGS, int64_t /* ..., the call site's number when its filters are constants (else 0) */
/* conv (the 6 convolution parameters) carries a 7th: the layouts of x and y (X_BLOCKED | Y_BLOCKED, ukernels.c) */
#define SITE_GEMM_ARGS GEMM_ARGS, int64_t /* ..., the call site's number when B is a bundle weight (else 0) */

void hcc_gemm_avx512(SITE_GEMM_ARGS);
void hcc_gemm_avx2(SITE_GEMM_ARGS);
void hcc_gemm_sse2(SITE_GEMM_ARGS);
void hcc_gemm_bf16_avx512(SITE_GEMM_ARGS);
void hcc_gemm_bf16_avx2(SITE_GEMM_ARGS);
void hcc_gemm_bf16_sse2(SITE_GEMM_ARGS);
void hcc_gemm_bf16x3_avx512(SITE_GEMM_ARGS);
void hcc_gemm_bf16x3_avx2(SITE_GEMM_ARGS);
void hcc_gemm_bf16x3_sse2(SITE_GEMM_ARGS);
void hcc_gemm_int8_avx512(SITE_GEMM_ARGS, int64_t, int64_t);
void hcc_gemm_int8_avx2(SITE_GEMM_ARGS, int64_t, int64_t);
void hcc_gemm_int8_sse2(SITE_GEMM_ARGS, int64_t, int64_t);
void hcc_conv2d_bf16_avx512(FILTER_CONV_ARGS);
void hcc_conv2d_bf16_avx2(FILTER_CONV_ARGS);
void hcc_conv2d_bf16_sse2(FILTER_CONV_ARGS);
void hcc_conv2d_avx512(FILTER_CONV_ARGS);
void hcc_conv2d_avx2(FILTER_CONV_ARGS);
void hcc_conv2d_sse2(FILTER_CONV_ARGS);
void hcc_dwconv2d_avx512(CONV_ARGS);
void hcc_dwconv2d_avx2(CONV_ARGS);
void hcc_dwconv2d_sse2(CONV_ARGS);

static int chosen_vl;

static int best_vl(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 16;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
  return 4;
}

HCC_EXPORT int hcc_set_isa(int vl) {
  int best = best_vl();
  if (vl != 16 && vl != 8 && vl != 4) vl = best;
  if (vl > best) return -1; /* this CPU lacks those instructions */
  chosen_vl = vl;
  return 0;
}

HCC_EXPORT int hcc_get_isa(void) {
  if (!chosen_vl) chosen_vl = best_vl();
  return chosen_vl;
}

#define EPILOGUE_PARAMS(R)                                                                                               \
  int64_t init_mode, int64_t init_bits, int64_t init_ptr, R(init), int64_t res_ptr, R(res), int64_t lo_mode, int64_t lo_bits, \
      int64_t hi_mode, int64_t hi_bits
#define STRIDES5(name) int64_t name##_0, int64_t name##_1, int64_t name##_2, int64_t name##_3, int64_t name##_4
#define STRIDES4(name) int64_t name##_0, int64_t name##_1, int64_t name##_2, int64_t name##_3

static void gemm(int bf16, int64_t a, int64_t b, int64_t c, int64_t b0, int64_t b1, int64_t b2, int64_t m, int64_t n, int64_t k1, int64_t k2,
              int64_t a_b0, int64_t a_b1, int64_t a_b2, int64_t a_m, int64_t a_k1, int64_t a_k2,
              int64_t b_b0, int64_t b_b1, int64_t b_b2, int64_t b_k1, int64_t b_k2, int64_t b_n,
              int64_t c_b0, int64_t c_b1, int64_t c_b2, int64_t c_m, int64_t c_n, EPILOGUE_PARAMS(STRIDES5), int64_t site,
              int64_t a_step, int64_t a_signed) {
  const int64_t sizes[7] = {b0, b1, b2, m, n, k1, k2};
  const int64_t as[6] = {a_b0, a_b1, a_b2, a_m, a_k1, a_k2};
  const int64_t bs[6] = {b_b0, b_b1, b_b2, b_k1, b_k2, b_n};
  const int64_t cs[5] = {c_b0, c_b1, c_b2, c_m, c_n};
  const int64_t ep[18] = {init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3, init_4,
                          res_ptr, res_0, res_1, res_2, res_3, res_4, lo_mode, lo_bits, hi_mode, hi_bits};
  typedef void (*Entry)(SITE_GEMM_ARGS);
  typedef void (*Int8Entry)(SITE_GEMM_ARGS, int64_t, int64_t);
  static const Entry entries[3][3] = {{hcc_gemm_avx512, hcc_gemm_bf16_avx512, hcc_gemm_bf16x3_avx512},
                                      {hcc_gemm_avx2, hcc_gemm_bf16_avx2, hcc_gemm_bf16x3_avx2},
                                      {hcc_gemm_sse2, hcc_gemm_bf16_sse2, hcc_gemm_bf16x3_sse2}};
  static const Int8Entry int8[3] = {hcc_gemm_int8_avx512, hcc_gemm_int8_avx2, hcc_gemm_int8_sse2};
  int isa = hcc_get_isa(), row = isa == 16 ? 0 : isa == 8 ? 1 : 2; /* bf16: 0 fp32, 1 bf16, 2 bf16x3, 3 int8 */
  if (bf16 == 3)
    int8[row](a, b, c, sizes, as, bs, cs, ep, site, a_step, a_signed);
  else
    entries[row][bf16](a, b, c, sizes, as, bs, cs, ep, site);
}

#define GEMM_PARAMS                                                                                                         \
  int64_t a, int64_t b, int64_t c, int64_t b0, int64_t b1, int64_t b2, int64_t m, int64_t n, int64_t k1, int64_t k2,        \
      int64_t a_b0, int64_t a_b1, int64_t a_b2, int64_t a_m, int64_t a_k1, int64_t a_k2, int64_t b_b0, int64_t b_b1,      \
      int64_t b_b2, int64_t b_k1, int64_t b_k2, int64_t b_n, int64_t c_b0, int64_t c_b1, int64_t c_b2, int64_t c_m,       \
      int64_t c_n, EPILOGUE_PARAMS(STRIDES5), int64_t site
#define GEMM_CALL(bf16)                                                                                                     \
  gemm(bf16, a, b, c, b0, b1, b2, m, n, k1, k2, a_b0, a_b1, a_b2, a_m, a_k1, a_k2, b_b0, b_b1, b_b2, b_k1, b_k2, b_n, c_b0, \
       c_b1, c_b2, c_m, c_n, init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3, init_4, res_ptr, res_0, res_1,  \
       res_2, res_3, res_4, lo_mode, lo_bits, hi_mode, hi_bits, site, 0, 0)

void hcc_gemm(GEMM_PARAMS) { GEMM_CALL(0); }

/* bfloat16 operands, fp32 sums, on AMX tiles where the CPU has them (the same fp32 product otherwise). */
void hcc_gemm_bf16(GEMM_PARAMS) { GEMM_CALL(1); }

/* bf16x3: each operand as two bfloat16 halves, three tile products (near-fp32 sums) where the CPU has AMX. */
void hcc_gemm_bf16x3(GEMM_PARAMS) { GEMM_CALL(2); }

/* int8: A quantized per tensor with step a_step (float bits; int8, or uint8 when a_signed is 0), the kept weight B
 * per column, int32 sums on AMX-INT8 tiles where the CPU has them (the same fp32 product otherwise). */
#define INT8_GEMM_PARAMS GEMM_PARAMS, int64_t a_step, int64_t a_signed
void hcc_gemm_int8(INT8_GEMM_PARAMS) {
  gemm(3, a, b, c, b0, b1, b2, m, n, k1, k2, a_b0, a_b1, a_b2, a_m, a_k1, a_k2, b_b0, b_b1, b_b2, b_k1, b_k2, b_n, c_b0, c_b1, c_b2,
       c_m, c_n, init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3, init_4, res_ptr, res_0, res_1, res_2, res_3, res_4,
       lo_mode, lo_bits, hi_mode, hi_bits, site, a_step, a_signed);
}

static void conv2d(int bf16, int64_t x, int64_t w, int64_t y, int64_t n, int64_t c, int64_t h, int64_t wd, int64_t f, int64_t kh, int64_t kw,
                int64_t oh, int64_t ow, int64_t groups, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top, int64_t left,
                int64_t x_n, int64_t x_c, int64_t x_h, int64_t x_w, int64_t w_f, int64_t w_c, int64_t w_h, int64_t w_w,
                int64_t y_n, int64_t y_c, int64_t y_h, int64_t y_w, EPILOGUE_PARAMS(STRIDES4), int64_t site, int64_t layouts) {
  const int64_t sizes[10] = {n, c, h, wd, f, kh, kw, oh, ow, groups};
  const int64_t conv[7] = {sh, sw, dh, dw, top, left, layouts};
  const int64_t xs[4] = {x_n, x_c, x_h, x_w}, ws[4] = {w_f, w_c, w_h, w_w}, ys[4] = {y_n, y_c, y_h, y_w};
  const int64_t ep[16] = {init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3,
                          res_ptr, res_0, res_1, res_2, res_3, lo_mode, lo_bits, hi_mode, hi_bits};
  switch (hcc_get_isa()) {
    case 16: (bf16 ? hcc_conv2d_bf16_avx512 : hcc_conv2d_avx512)(x, w, y, sizes, conv, xs, ws, ys, ep, site); break;
    case 8: (bf16 ? hcc_conv2d_bf16_avx2 : hcc_conv2d_avx2)(x, w, y, sizes, conv, xs, ws, ys, ep, site); break;
    default: (bf16 ? hcc_conv2d_bf16_sse2 : hcc_conv2d_sse2)(x, w, y, sizes, conv, xs, ws, ys, ep, site); break;
  }
}

#define CONV_PARAMS                                                                                                           \
  int64_t x, int64_t w, int64_t y, int64_t n, int64_t c, int64_t h, int64_t wd, int64_t f, int64_t kh, int64_t kw, int64_t oh, \
      int64_t ow, int64_t groups, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top, int64_t left, int64_t x_n,      \
      int64_t x_c, int64_t x_h, int64_t x_w, int64_t w_f, int64_t w_c, int64_t w_h, int64_t w_w, int64_t y_n, int64_t y_c,   \
      int64_t y_h, int64_t y_w, EPILOGUE_PARAMS(STRIDES4), int64_t site, int64_t layouts
#define CONV_CALL(bf16)                                                                                                       \
  conv2d(bf16, x, w, y, n, c, h, wd, f, kh, kw, oh, ow, groups, sh, sw, dh, dw, top, left, x_n, x_c, x_h, x_w, w_f, w_c, w_h,  \
         w_w, y_n, y_c, y_h, y_w, init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3, res_ptr, res_0, res_1, res_2, \
         res_3, lo_mode, lo_bits, hi_mode, hi_bits, site, layouts)

void hcc_conv2d(CONV_PARAMS) { CONV_CALL(0); }

/* bfloat16 operands, fp32 sums, on AMX tiles where the CPU has them (the same fp32 convolution otherwise). */
void hcc_conv2d_bf16(CONV_PARAMS) { CONV_CALL(1); }

void hcc_dwconv2d(int64_t x, int64_t w, int64_t y, int64_t n, int64_t c, int64_t h, int64_t wd, int64_t kh, int64_t kw, int64_t oh,
                  int64_t ow, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top, int64_t left,
                  int64_t x_n, int64_t x_c, int64_t x_h, int64_t x_w, int64_t w_c, int64_t w_h, int64_t w_w,
                  int64_t y_n, int64_t y_c, int64_t y_h, int64_t y_w, EPILOGUE_PARAMS(STRIDES4), int64_t layouts) {
  const int64_t sizes[8] = {n, c, h, wd, kh, kw, oh, ow};
  const int64_t conv[7] = {sh, sw, dh, dw, top, left, layouts};
  const int64_t xs[4] = {x_n, x_c, x_h, x_w}, ws[3] = {w_c, w_h, w_w}, ys[4] = {y_n, y_c, y_h, y_w};
  const int64_t ep[16] = {init_mode, init_bits, init_ptr, init_0, init_1, init_2, init_3,
                          res_ptr, res_0, res_1, res_2, res_3, lo_mode, lo_bits, hi_mode, hi_bits};
  switch (hcc_get_isa()) {
    case 16: hcc_dwconv2d_avx512(x, w, y, sizes, conv, xs, ws, ys, ep); break;
    case 8: hcc_dwconv2d_avx2(x, w, y, sizes, conv, xs, ws, ys, ep); break;
    default: hcc_dwconv2d_sse2(x, w, y, sizes, conv, xs, ws, ys, ep); break;
  }
}
