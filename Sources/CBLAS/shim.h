// CBLAS: OpenBLAS's C interface, plus the thread-control calls OpenBLAS adds.
#include <cblas.h>
