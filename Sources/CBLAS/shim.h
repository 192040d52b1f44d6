// CBLAS: OpenBLAS's C interface, plus the thread-control calls OpenBLAS adds.
#include <cblas.h>

// Exported by OpenBLAS (driver/others) but not declared in cblas.h: re-read the OPENBLAS_*
// environment, the idle-thread timeout it read (log2 cycles, 0 when unset), and stop the thread
// pool (the next threaded call, or blas_thread_init, starts it again with the timeout read).
void openblas_read_env(void);
int openblas_thread_timeout(void);
int blas_thread_init(void);
int blas_thread_shutdown_(void);
