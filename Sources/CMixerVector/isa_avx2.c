// The kernels for AVX2 CPUs (Haswell and later, Zen): 16 lanes as two 256-bit registers.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#define MX_VARIANT avx2
#include "kernels.inc"
#pragma clang attribute pop
#endif
