// The kernels at the target's baseline (x86-64: SSE2): the reference the others are tested
// against, and the code for CPUs without AVX2.
#define MX_VARIANT baseline
#include "kernels.inc"
