// The arithmetic peak of one core for each multiply-accumulate instruction the products can use:
// fp32 FMA on 256- and 512-bit registers (OpenBLAS's sgemm), bf16 pair dot products (vdpbf16ps,
// oneDNN's avx512_core_bf16 matmul) and u8·s8 quad dot products (vpdpbusd, oneDNN's int8 matmul
// with VNNI). Each instruction runs in 24 independent accumulator chains, enough to hide its
// latency, so the rate is the instruction's throughput. Built and run by tools/isa-peak, which
// names the machine and the date; docs/performance.md says what the figures explain.
//
// Why it exists: on some CPUs the bf16 dot product has half the fp32 FMA's throughput (Intel
// cores without AMX: vdpbf16ps issues once per two cycles), so a bf16 matmul cannot beat sgemm
// there, while on others (AMD Zen 4) it has the same instruction rate at twice the work.

#include <cpuid.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define X24(OP) \
  OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) \
  OP(12) OP(13) OP(14) OP(15) OP(16) OP(17) OP(18) OP(19) OP(20) OP(21) OP(22) OP(23)
#define X12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
#define FMA_ZMM(i) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define FMA_YMM(i) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #i "\n\t"
#define DPBF16_ZMM(i) "vdpbf16ps %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define DPBUSD_ZMM(i) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #i "\n\t"

// Each probe clears its registers first (vzeroall leaves zmm16-31 alone: they are cleared too),
// so no denormal or NaN slows an instruction down.
#define CLEAR_ZMM(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define CLEAR_HIGH "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"

static const long loops = 20000000;  // 480 M instructions per probe: about 0.1-0.3 s

// The probes' loops, each 24 instructions per pass (the ymm one reuses 12 registers twice).
static void clear_ymm(void) { __asm__ volatile("vzeroall" ::: "memory"); }
static void clear_zmm(void) { __asm__ volatile(X24(CLEAR_ZMM) CLEAR_HIGH ::: "memory"); }
static void fma_ymm(long n) { for (long i = 0; i < n; i++) __asm__ volatile(X12(FMA_YMM) X12(FMA_YMM) ::: "memory"); }
static void fma_zmm(long n) { for (long i = 0; i < n; i++) __asm__ volatile(X24(FMA_ZMM) ::: "memory"); }
static void dpbf16_zmm(long n) { for (long i = 0; i < n; i++) __asm__ volatile(X24(DPBF16_ZMM) ::: "memory"); }
static void dpbusd_zmm(long n) { for (long i = 0; i < n; i++) __asm__ volatile(X24(DPBUSD_ZMM) ::: "memory"); }

struct probe {
  void (*clear)(void);
  void (*loop)(long);
  double ops_per_instruction;  // lanes × products per lane × 2 (multiply + add)
};
static const struct probe fp32_ymm = {clear_ymm, fma_ymm, 8 * 2};
static const struct probe fp32_zmm = {clear_zmm, fma_zmm, 16 * 2};
static const struct probe bf16_zmm = {clear_zmm, dpbf16_zmm, 16 * 2 * 2};
static const struct probe int8_zmm = {clear_zmm, dpbusd_zmm, 16 * 4 * 2};

/// Operations per second of one run of `p`.
static double run(const struct probe *p) {
  p->clear();
  double t = now();
  p->loop(loops);
  t = now() - t;
  __asm__ volatile("vzeroupper" ::: "memory");
  return loops * 24.0 * p->ops_per_instruction / t;
}

static double best_of(const struct probe *p, int runs) {
  double best = 0;
  for (int r = 0; r < runs; r++) {
    double rate = run(p);
    if (rate > best) best = rate;
  }
  return best;
}

int main(void) {
  unsigned a, b, c, d, a1 = 0, b1, c1, d1;
  __cpuid_count(7, 0, a, b, c, d);
  __cpuid_count(7, 1, a1, b1, c1, d1);
  unsigned ecx1, edx1, a0, b0;
  __cpuid(1, a0, b0, ecx1, edx1);
  int fma = (ecx1 >> 12) & 1, avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
  int vnni = (c >> 11) & 1, bf16 = (a1 >> 5) & 1, amx_tile = (d >> 24) & 1;
  // the OS must save the zmm state (XCR0 bits 5-7) for AVX-512 to be usable
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  int zmm_state = (xcr0_lo & 0xE6) == 0xE6;
  int runs = 3;

  printf("cpuid: fma %d avx2 %d avx512f %d avx512_vnni %d avx512_bf16 %d amx_tile %d (zmm state %s)\n",
         fma, avx2, avx512f, vnni, bf16, amx_tile, zmm_state ? "on" : "off");
  double fp32 = 0;
  if (fma && avx2) {
    double y = best_of(&fp32_ymm, runs);
    printf("fp32 FMA ymm   (vfmadd231ps)  %7.1f GFLOP/s\n", y / 1e9);
    fp32 = y;
  }
  if (avx512f && zmm_state) {
    double z = best_of(&fp32_zmm, runs);
    printf("fp32 FMA zmm   (vfmadd231ps)  %7.1f GFLOP/s\n", z / 1e9);
    if (z > fp32) fp32 = z;
  }
  if (bf16 && zmm_state) {
    double z = best_of(&bf16_zmm, runs);
    printf("bf16 dot zmm   (vdpbf16ps)    %7.1f GFLOP/s  = %.2fx the best fp32 FMA\n", z / 1e9, z / fp32);
  } else {
    printf("bf16 dot zmm   (vdpbf16ps)    absent\n");
  }
  if (vnni && zmm_state) {
    double z = best_of(&int8_zmm, runs);
    printf("int8 dot zmm   (vpdpbusd)     %7.1f GOP/s    = %.2fx the best fp32 FMA\n", z / 1e9, z / fp32);
  } else {
    printf("int8 dot zmm   (vpdpbusd)     absent\n");
  }
  if (amx_tile) printf("AMX tiles present: oneDNN's bf16/int8 products use them, far above these rates\n");
  return 0;
}
