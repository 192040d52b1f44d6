// The elementwise kernels of training (bias+GELU, LayerNorm, bias sums, residual adds, bf16
// rounding), compiled once per instruction set and chosen at run time (dispatch.c). Every
// variant is the same 16-lane arithmetic in the same order, without contraction into FMAs, so
// every variant gives the same bits: the instruction set changes the speed only.
// Matrices are row-major [rows, cols]. A call covers a thread's chunk: the rows r0..<r1, the
// columns j0..<j1 (`mx_sum_columns`), or n elements (`mx_add_scaled`, `mx_to_bf16`).

#ifndef MIXER_VECTOR_H
#define MIXER_VECTOR_H

#include <stdint.h>

/// Instruction-set levels, weakest first.
enum {
  MX_ISA_BASELINE = 0,  // x86-64 baseline (SSE2), or the target's default elsewhere
  MX_ISA_AVX2 = 1,      // AVX2 and FMA (Haswell, Zen)
  MX_ISA_AVX512 = 2,    // AVX-512 F, BW, DQ, VL (Skylake-X, Cooper Lake, Sapphire Rapids, Zen 4)
  MX_ISA_COUNT = 3
};

/// 1 when this CPU (and its OS) can run `level`'s code.
int mx_isa_supported(int level);
/// The best level this CPU can run.
int mx_isa_best(void);
/// Makes `level` the one every kernel below runs; 0 on success, -1 when unsupported.
int mx_isa_select(int level);
/// The level the kernels run now (the best one until `mx_isa_select`).
int mx_isa_active(void);
/// "baseline", "avx2", "avx512".
const char *mx_isa_name(int level);
/// Runs every kernel of `level` and of the baseline build on the same small inputs (check.c):
/// NULL when their outputs agree bit for bit, else the name of the first kernel that differs
/// ("unsupported" for a level this CPU does not run). `corrupt` = k + 1 turns one output bit of
/// kernel k of `level` (the tests' stand-in for a wrong build); 0 otherwise.
const char *mx_isa_check(int level, int corrupt);

/// pre[r, :] += bias (bias[r] when `bias_per_row`, else bias[j]); act = gelu_tanh(pre), written to
/// act16 rounded to bf16 when act16 is not NULL (act untouched); pre is overwritten with gelu′.
void mx_bias_gelu_keep(float *act, uint16_t *act16, float *pre, const float *bias,
                       long r0, long r1, long cols, int bias_per_row);

/// dinp = dout · deriv (to dinp16 rounded to bf16 when not NULL; dinp may alias dout) and the
/// bias sums: sums[r] += Σ_j dinp[r, j] when `bias_per_row`, else sums[j] += dinp[r, j].
void mx_gelu_back_deriv(float *dinp, uint16_t *dinp16, float *sums, const float *dout,
                        const float *deriv, long r0, long r1, long cols, int bias_per_row);

/// LayerNorm forward (mean and biased variance over the row, epsilon `eps`): out, or out16
/// rounded to bf16 when not NULL; mean[r], rstd[r].
void mx_layernorm_forward(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, long r0, long r1, long c,
                          float eps);

/// LayerNorm backward: dinp += ..., dweight += dout·x̂, dbias += dout (over rows r0..<r1).
void mx_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, long r0, long r1, long c);

/// x[r, j] += bias[r].
void mx_add_row_bias(float *x, const float *bias, long r0, long r1, long cols);
/// x[r, j] = bf16(x[r, j] + bias[r]) for bf16 x.
void mx_add_row_bias_bf16(uint16_t *x, const float *bias, long r0, long r1, long cols);
/// out[r, j] = inp[r, j] + bias[j].
void mx_add_column_bias(float *out, const float *inp, const float *bias, long r0, long r1, long cols);
/// sums[j] += Σ_{r in 0..<rows} dout[r, j] for the columns j0..<j1.
void mx_sum_columns(float *sums, const float *dout, long rows, long cols, long j0, long j1);
/// sums[r] += Σ_j dout[r, j].
void mx_sum_rows(float *sums, const float *dout, long r0, long r1, long cols);
/// The bias sums of a bf16 matrix, as `mx_gelu_back_deriv`'s.
void mx_sum_bf16(float *sums, const uint16_t *dout, long r0, long r1, long cols, int bias_per_row);
/// x[i] += k·y[i] (k == 1: x[i] += y[i]) for i in 0..<n.
void mx_add_scaled(float *x, const float *y, float k, long n);
/// dst[i] = bf16(src[i]) (ties to even; NaN stays a quiet NaN).
void mx_to_bf16(uint16_t *dst, const float *src, long n);

#endif
