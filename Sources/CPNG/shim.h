// CPNG: libpng's simplified API (png_image_*) for PNG decoding and encoding.
#include <png.h>
