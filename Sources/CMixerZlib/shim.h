// CMixerZlib: zlib's inflate and crc32, for PNG masks (LabelPNG.swift) and gzipped MNIST / Fashion-MNIST
// IDX files; Inflate.swift holds the one inflate loop.
#include <zlib.h>
