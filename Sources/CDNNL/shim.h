// CDNNL: oneDNN's C API (Debian libdnnl-dev, OpenMP runtime), plus the one OpenMP call that sets
// how many threads oneDNN's kernels use (its CPU runtime is libgomp's OpenMP).
#include <oneapi/dnnl/dnnl.h>

extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);
