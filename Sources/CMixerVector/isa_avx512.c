// The kernels for AVX-512 CPUs (F, BW, DQ, VL): 16 lanes in one 512-bit register.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#define MX_VARIANT avx512
#include "kernels.inc"
#pragma clang attribute pop
#endif
