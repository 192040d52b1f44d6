// fp32 matrix products of the model's shapes on OpenBLAS (`cblas_sgemm`, what mixer-dist runs)
// against oneDNN's fp32 matmul, best of 15 interleaved runs each, on the threads the environment
// gives both libraries (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS). Built and run by
// tools/gemm-compare, which names the machine, the date and the OpenBLAS core. It measures what
// another fp32 engine would gain per shape; mixer-dist's fp32 products stay on OpenBLAS.

#include <cblas.h>
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void check(dnnl_status_t status, const char *what) {
  if (status != dnnl_success) {
    fprintf(stderr, "gemm_compare: oneDNN %s failed (status %d)\n", what, (int)status);
    exit(1);
  }
}

int main(void) {
  // M × N × K of the `cifar` step's products (bench --profile), row-major, no transposes, and
  // the 2048³ product for scale
  const long shapes[][3] = {
      {8192, 1024, 256}, {8192, 256, 1024}, {128, 32768, 64}, {64, 32768, 128}, {2048, 2048, 2048}};
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine");
  check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream");
  printf("OpenBLAS core %s\n", openblas_get_corename());
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    long m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
    float *a = malloc(m * k * sizeof(float)), *b = malloc(k * n * sizeof(float)), *c = malloc(m * n * sizeof(float));
    if (!a || !b || !c) { fprintf(stderr, "gemm_compare: out of memory\n"); return 1; }
    for (long i = 0; i < m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < k * n; i++) b[i] = (float)(i % 5) * 0.1f;

    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
    check(dnnl_memory_desc_init_by_tag(&a_md, 2, a_dims, dnnl_f32, dnnl_ab), "memory desc");
    check(dnnl_memory_desc_init_by_tag(&b_md, 2, b_dims, dnnl_f32, dnnl_ab), "memory desc");
    check(dnnl_memory_desc_init_by_tag(&c_md, 2, c_dims, dnnl_f32, dnnl_ab), "memory desc");
    dnnl_matmul_desc_t matmul;
    check(dnnl_matmul_desc_init(&matmul, &a_md, &b_md, NULL, &c_md), "matmul desc");
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &matmul, NULL, engine, NULL), "primitive desc");
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_primitive_t primitive;
    check(dnnl_primitive_create(&primitive, pd), "primitive");
    dnnl_memory_t a_mem, b_mem, c_mem;
    check(dnnl_memory_create(&a_mem, &a_md, engine, a), "memory");
    check(dnnl_memory_create(&b_mem, &b_md, engine, b), "memory");
    check(dnnl_memory_create(&c_mem, &c_md, engine, c), "memory");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};

    double flops = 2.0 * m * n * k, openblas = 0, onednn = 0;
    for (int run = 0; run < 15; run++) {
      double t = now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
      t = now() - t;
      if (flops / t > openblas) openblas = flops / t;
      t = now();
      check(dnnl_primitive_execute(primitive, stream, 3, args), "execute");
      check(dnnl_stream_wait(stream), "wait");
      t = now() - t;
      if (flops / t > onednn) onednn = flops / t;
    }
    printf("%5ldx%5ldx%5ld  OpenBLAS %6.1f  oneDNN %6.1f GFLOP/s  = %.2fx  (oneDNN %s)\n", m, n, k,
           openblas / 1e9, onednn / 1e9, onednn / openblas, impl);
    dnnl_memory_destroy(a_mem);
    dnnl_memory_destroy(b_mem);
    dnnl_memory_destroy(c_mem);
    dnnl_primitive_destroy(primitive);
    dnnl_primitive_desc_destroy(pd);
    free(a);
    free(b);
    free(c);
  }
  dnnl_stream_destroy(stream);
  dnnl_engine_destroy(engine);
  return 0;
}
