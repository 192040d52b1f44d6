// CArchive: libarchive's tar reader and writer (ustar, pax and GNU tar).
#include <archive.h>
#include <archive_entry.h>

// AE_IFREG is a cast macro and does not import into Swift.
static inline unsigned int carchive_regular_file(void) { return AE_IFREG; }
