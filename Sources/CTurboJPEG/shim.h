// CTurboJPEG: libjpeg-turbo's TurboJPEG API (JPEG decoding for image-folder datasets).
#include <turbojpeg.h>
