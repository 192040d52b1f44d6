// The kernels of one instruction-set variant (kernels.inc, compiled by isa_*.c).
#ifndef MIXER_VECTOR_TABLE_H
#define MIXER_VECTOR_TABLE_H
#include "include/mixer_vector.h"

struct mx_table {
  void (*bias_gelu_keep)(float *, uint16_t *, float *, const float *, long, long, long, int);
  void (*gelu_back_deriv)(float *, uint16_t *, float *, const float *, const float *, long, long,
                          long, int);
  void (*layernorm_forward)(float *, uint16_t *, float *, float *, const float *, const float *,
                            const float *, long, long, long, float);
  void (*layernorm_backward)(float *, float *, float *, const float *, const float *,
                             const float *, const float *, const float *, long, long, long);
  void (*add_row_bias)(float *, const float *, long, long, long);
  void (*add_row_bias_bf16)(uint16_t *, const float *, long, long, long);
  void (*add_column_bias)(float *, const float *, const float *, long, long, long);
  void (*sum_columns)(float *, const float *, long, long, long, long);
  void (*sum_rows)(float *, const float *, long, long, long);
  void (*sum_bf16)(float *, const uint16_t *, long, long, long, int);
  void (*add_scaled)(float *, const float *, float, long);
  void (*to_bf16)(uint16_t *, const float *, long);
};

extern const struct mx_table mx_table_baseline;
#if defined(__x86_64__)
extern const struct mx_table mx_table_avx2;
extern const struct mx_table mx_table_avx512;
#endif
#endif
