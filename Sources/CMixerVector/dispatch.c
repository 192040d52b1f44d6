// Run-time choice of the kernels' instruction set: the best this CPU runs, until
// `mx_isa_select` picks another (mixer-dist's MIXER_ISA, the tests). One pointer load per call.

#include "table.h"

static const struct mx_table *mx_tables[MX_ISA_COUNT] = {
  &mx_table_baseline,
#if defined(__x86_64__)
  &mx_table_avx2, &mx_table_avx512,
#endif
};

int mx_isa_supported(int level) {
  if (level == MX_ISA_BASELINE) return 1;
#if defined(__x86_64__)
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0)
  __builtin_cpu_init();  // (a no-op once the runtime's own constructor ran)
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (level == MX_ISA_AVX2) return avx2;
  if (level == MX_ISA_AVX512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
  return 0;
}

int mx_isa_best(void) {
  int best = MX_ISA_BASELINE;
  for (int level = 1; level < MX_ISA_COUNT; level++)
    if (mx_isa_supported(level)) best = level;
  return best;
}

static int mx_active = -1;  // read and written atomically: the first calls may race

static const struct mx_table *mx_kernels(void) {
  int level = __atomic_load_n(&mx_active, __ATOMIC_RELAXED);
  if (level < 0) {
    level = mx_isa_best();
    __atomic_store_n(&mx_active, level, __ATOMIC_RELAXED);
  }
  return mx_tables[level];
}

int mx_isa_select(int level) {
  if (level < 0 || level >= MX_ISA_COUNT || !mx_isa_supported(level)) return -1;
  __atomic_store_n(&mx_active, level, __ATOMIC_RELAXED);
  return 0;
}

int mx_isa_active(void) {
  mx_kernels();
  return __atomic_load_n(&mx_active, __ATOMIC_RELAXED);
}

const char *mx_isa_name(int level) {
  static const char *names[MX_ISA_COUNT] = {"baseline", "avx2", "avx512"};
  return level >= 0 && level < MX_ISA_COUNT ? names[level] : "unknown";
}

void mx_bias_gelu_keep(float *act, uint16_t *act16, float *pre, const float *bias, long r0,
                       long r1, long cols, int bias_per_row) {
  mx_kernels()->bias_gelu_keep(act, act16, pre, bias, r0, r1, cols, bias_per_row);
}
void mx_gelu_back_deriv(float *dinp, uint16_t *dinp16, float *sums, const float *dout,
                        const float *deriv, long r0, long r1, long cols, int bias_per_row) {
  mx_kernels()->gelu_back_deriv(dinp, dinp16, sums, dout, deriv, r0, r1, cols, bias_per_row);
}
void mx_layernorm_forward(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, long r0, long r1, long c,
                          float eps) {
  mx_kernels()->layernorm_forward(out, out16, mean, rstd, inp, weight, bias, r0, r1, c, eps);
}
void mx_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, long r0, long r1, long c) {
  mx_kernels()->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, r0, r1, c);
}
void mx_add_row_bias(float *x, const float *bias, long r0, long r1, long cols) {
  mx_kernels()->add_row_bias(x, bias, r0, r1, cols);
}
void mx_add_row_bias_bf16(uint16_t *x, const float *bias, long r0, long r1, long cols) {
  mx_kernels()->add_row_bias_bf16(x, bias, r0, r1, cols);
}
void mx_add_column_bias(float *out, const float *inp, const float *bias, long r0, long r1,
                        long cols) {
  mx_kernels()->add_column_bias(out, inp, bias, r0, r1, cols);
}
void mx_sum_columns(float *sums, const float *dout, long rows, long cols, long j0, long j1) {
  mx_kernels()->sum_columns(sums, dout, rows, cols, j0, j1);
}
void mx_sum_rows(float *sums, const float *dout, long r0, long r1, long cols) {
  mx_kernels()->sum_rows(sums, dout, r0, r1, cols);
}
void mx_sum_bf16(float *sums, const uint16_t *dout, long r0, long r1, long cols, int bias_per_row) {
  mx_kernels()->sum_bf16(sums, dout, r0, r1, cols, bias_per_row);
}
void mx_add_scaled(float *x, const float *y, float k, long n) { mx_kernels()->add_scaled(x, y, k, n); }
void mx_to_bf16(uint16_t *dst, const float *src, long n) { mx_kernels()->to_bf16(dst, src, n); }
