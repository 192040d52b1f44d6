// CDNNL: oneDNN's C API (Debian libdnnl-dev, OpenMP runtime), plus the OpenMP calls that set how
// many threads oneDNN's kernels use and let the elementwise kernels run on the same team (its CPU
// runtime is libgomp's OpenMP; GOMP_parallel is the entry point GCC's `#pragma omp parallel`
// compiles to, part of libgomp's documented ABI).
#include <oneapi/dnnl/dnnl.h>

extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);
extern int omp_get_thread_num(void);
extern int omp_get_num_threads(void);
extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
