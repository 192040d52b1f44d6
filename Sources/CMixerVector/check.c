// The start-up self-check of a build of the kernels: every kernel of `level` and of the baseline
// build runs on the same small inputs (row lengths around the 16 lanes, both bias axes, fp32 and
// bf16 outputs, NaN, ±inf, a subnormal, −0 and values past the exp clamps), and their outputs are
// compared bit for bit. It guards a build that no machine of ours has run (a compiler's wrong
// code for one instruction set would otherwise change a user's numbers silently); the tests run
// the same comparison far wider (KernelISATests).

#include <string.h>
#include "table.h"

enum { ROWS = 3, MAX_COLS = 100, SIZE = ROWS * MAX_COLS, KERNELS = 12 };

static const char *const mx_kernel_names[KERNELS] = {
  "bias+gelu forward", "gelu backward", "layernorm forward", "layernorm backward",
  "row bias", "row bias (bf16)", "column bias", "column sums", "row sums", "bias sums (bf16)",
  "residual add", "bf16 rounding",
};

struct inputs {
  float a[SIZE], b[SIZE], c[SIZE], w[MAX_COLS], v[MAX_COLS];
  uint16_t h[SIZE];
};

struct outputs {
  float f[3][SIZE];
  uint16_t h[SIZE];
};

static float uniform(uint32_t *state) {  // xorshift32 → [-4, 4)
  uint32_t x = *state;
  x ^= x << 13; x ^= x >> 17; x ^= x << 5;
  *state = x;
  return (float)(x >> 8) * (8.0f / 16777216.0f) - 4.0f;
}

static void fill(struct inputs *in, int specials) {
  uint32_t state = 0x9E3779B9u;
  for (int i = 0; i < SIZE; i++) {
    in->a[i] = uniform(&state);
    in->b[i] = uniform(&state);
    in->c[i] = uniform(&state);
  }
  for (int i = 0; i < MAX_COLS; i++) { in->w[i] = uniform(&state); in->v[i] = uniform(&state); }
  if (specials) {
    float zero = 0.0f;
    in->a[0] = zero / zero;   // NaN
    in->a[5] = 1.0f / zero;   // +inf
    in->a[9] = -1.0f / zero;  // -inf
    in->a[17] = 1e-40f;       // subnormal
    in->a[20] = -0.0f;
    in->a[33] = 100.0f;       // past the exp clamps, both ways
    in->a[34] = -100.0f;
    in->b[16] = 1e-40f;
    in->b[31] = -0.0f;
  }
  for (int i = 0; i < SIZE; i++) {  // bf16 inputs: the top half of a's bits
    uint32_t bits;
    memcpy(&bits, &in->a[i], 4);
    in->h[i] = (uint16_t)(bits >> 16);
  }
}

// Runs `kernel` of table `t` in its `variant` (bit 0: bias per row, a column offset, or k ≠ 1;
// bit 1: bf16 output) on rows of `cols`. Every output starts from the same contents, so kernels
// that accumulate are compared too.
static void run(const struct mx_table *t, int kernel, int variant, long cols, const struct inputs *in,
                struct outputs *out) {
  for (int i = 0; i < 3; i++) memcpy(out->f[i], in->c, sizeof in->c);
  memcpy(out->h, in->h, sizeof in->h);
  int per_row = variant & 1;
  uint16_t *h = (variant & 2) ? out->h : 0;
  switch (kernel) {
  case 0: memcpy(out->f[1], in->a, sizeof in->a);
          t->bias_gelu_keep(out->f[0], h, out->f[1], in->w, 0, ROWS, cols, per_row); break;
  case 1: t->gelu_back_deriv(out->f[0], h, out->f[1], in->a, in->b, 0, ROWS, cols, per_row); break;
  case 2: t->layernorm_forward(out->f[0], h, out->f[1], out->f[2], in->a, in->w, in->v, 0, ROWS, cols, 1e-6f); break;
  case 3: t->layernorm_backward(out->f[0], out->f[1], out->f[2], in->a, in->b, in->w, in->v, in->w + ROWS,
                                0, ROWS, cols); break;
  case 4: memcpy(out->f[0], in->a, sizeof in->a); t->add_row_bias(out->f[0], in->w, 0, ROWS, cols); break;
  case 5: t->add_row_bias_bf16(out->h, in->w, 0, ROWS, cols); break;
  case 6: t->add_column_bias(out->f[0], in->a, in->w, 0, ROWS, cols); break;
  case 7: t->sum_columns(out->f[0], in->a, ROWS, cols, per_row, cols); break;
  case 8: t->sum_rows(out->f[0], in->a, 0, ROWS, cols); break;
  case 9: t->sum_bf16(out->f[0], in->h, 0, ROWS, cols, per_row); break;
  case 10: memcpy(out->f[0], in->a, sizeof in->a);
           t->add_scaled(out->f[0], in->b, per_row ? 0.5f : 1.0f, ROWS * cols); break;
  default: t->to_bf16(out->h, in->a, ROWS * cols); break;
  }
}

const char *mx_isa_check(int level, int corrupt) {
  static const struct mx_table *const tables[MX_ISA_COUNT] = {
    &mx_table_baseline,
#if defined(__x86_64__)
    &mx_table_avx2, &mx_table_avx512,
#endif
  };
  if (level < 0 || level >= MX_ISA_COUNT || !mx_isa_supported(level)) return "unsupported";
  static const long widths[] = {1, 15, 16, 17, 33, 47, MAX_COLS};
  struct inputs in;
  struct outputs reference, tested;
  for (int specials = 0; specials < 2; specials++) {
    fill(&in, specials);
    for (int kernel = 0; kernel < KERNELS; kernel++)
      for (int variant = 0; variant < 4; variant++)
        for (unsigned w = 0; w < sizeof widths / sizeof widths[0]; w++) {
          run(&mx_table_baseline, kernel, variant, widths[w], &in, &reference);
          run(tables[level], kernel, variant, widths[w], &in, &tested);
          if (corrupt == kernel + 1) {  // the tests' stand-in for a wrong build: one output bit off
            if (kernel == 5 || kernel == 11) tested.h[0] ^= 1; else tested.f[0][0] = -tested.f[0][0];
          }
          if (memcmp(&reference, &tested, sizeof reference) != 0) return mx_kernel_names[kernel];
        }
  }
  return 0;
}
