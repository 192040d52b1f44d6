// CZlib: zlib's inflate, for the gzip-compressed MNIST / Fashion-MNIST IDX files.
#include <zlib.h>

// inflateInit2 is a macro and does not import into Swift. windowBits 15 + 32: accept a zlib or
// gzip header (detected automatically), 32 KiB window.
static inline int czlib_inflate_init_auto(z_stream *stream) {
  return inflateInit2(stream, 15 + 32);
}
