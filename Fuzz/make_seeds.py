"""Fuzz/make_seeds.py: writes small valid (and a few deliberately unsupported) files into
SEEDS/{npy,npz,safetensors,labelpng}/ as the starting corpus for the libFuzzer targets in Fuzz/.
Usage: python3 make_seeds.py SEEDS   (npy, npz and safetensors need numpy, and are skipped with a
note without it; safetensors is used when installed; labelpng needs only the standard library)."""
import io, json, os, struct, sys, zipfile, zlib

out = sys.argv[1]
for sub in ("npy", "npz", "safetensors", "labelpng"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)


def save(sub, name, data):
    with open(os.path.join(out, sub, name), "wb") as f:
        f.write(data)


# Label masks (PNG): grayscale and palette images as decodeLabelPNG reads them, built here with
# zlib so that every bit depth, filter type and chunk layout it handles is in the corpus.
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_row(values, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in values)
    if depth == 8:
        return bytes(values)
    per_byte, packed = 8 // depth, bytearray()
    for start in range(0, len(values), per_byte):  # high bits first; the last byte zero-padded
        byte = 0
        for i, v in enumerate(values[start:start + per_byte]):
            byte |= v << (8 - depth * (i + 1))
        packed.append(byte)
    return bytes(packed)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filter_row(kind, row, above, bpp):
    out = bytearray([kind])
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = above[i]
        c = above[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((x - predictor) & 0xFF)
    return bytes(out)


def label_png(rows, depth, colour=0, filters=(0,), palette=0, idat_parts=1, level=6, extra=(),
              trns=b""):
    """rows: the pixel values; filters cycle over the rows; palette: PLTE entries (colour 3);
    idat_parts: how many IDAT chunks the zlib stream is split into (empty ones included);
    extra: (type, data) ancillary chunks placed before the image data."""
    height, width = len(rows), len(rows[0])
    bpp = max(1, depth // 8)
    packed = [pack_row(r, depth) for r in rows]
    above, raw = bytes(len(packed[0])), b""
    for y, row in enumerate(packed):
        raw += filter_row(filters[y % len(filters)], row, above, bpp)
        above = row
    stream = zlib.compress(raw, level)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    for kind, data in extra:
        png += png_chunk(kind, data)
    if palette:
        png += png_chunk(b"PLTE", bytes((17 * i) % 256 for i in range(3 * palette)))
    if trns:
        png += png_chunk(b"tRNS", trns)
    cuts = [len(stream) * k // idat_parts for k in range(idat_parts + 1)]
    for start, end in zip(cuts, cuts[1:]):
        png += png_chunk(b"IDAT", stream[start:end])
    return png + png_chunk(b"IEND", b"")


def pattern(width, height, classes, ignore=None):
    rows = [[(3 * x + 5 * y) % classes for x in range(width)] for y in range(height)]
    if ignore is not None:
        rows[0][0] = rows[height - 1][width - 1] = ignore
    return rows


for depth, (width, height) in {1: (13, 3), 2: (7, 4), 4: (5, 3), 8: (6, 4), 16: (4, 3)}.items():
    classes = min(1 << depth, 21)
    save("labelpng", f"gray{depth}.png", label_png(pattern(width, height, classes), depth))
    if depth < 16:
        save("labelpng", f"palette{depth}.png",
             label_png(pattern(width + 1, height, classes), depth, 3, palette=classes))
save("labelpng", "gray8-void.png", label_png(pattern(6, 4, 21, ignore=255), 8))  # VOC's 255 → ignore
save("labelpng", "palette8-void.png",  # VOC-style: 21 colours, void 255 past the palette, tRNS
     label_png(pattern(7, 5, 21, ignore=255), 8, 3, palette=21, trns=b"\xff" * 21))
save("labelpng", "palette4-past-end.png", label_png(pattern(5, 3, 16), 4, 3, palette=10))
save("labelpng", "gray16-void.png",
     label_png([[0, 65535, 65534, 256], [1000, 255, 1, 65535]], 16, filters=(1, 2, 3, 4)))
for kind in range(5):  # each filter type on every row, 8- and 16-bit (bytes per pixel 1 and 2)
    save("labelpng", f"filter{kind}.png", label_png(pattern(9, 4, 21, ignore=255), 8, filters=(kind,)))
    save("labelpng", f"filter{kind}-gray16.png", label_png(pattern(5, 3, 300), 16, filters=(kind,)))
save("labelpng", "filters-mixed.png", label_png(pattern(8, 5, 21), 8, filters=(0, 1, 2, 3, 4)))
save("labelpng", "filters-gray2.png", label_png(pattern(11, 5, 4), 2, filters=(4, 3, 2, 1, 0)))
save("labelpng", "multi-idat.png", label_png(pattern(10, 6, 21, ignore=255), 8, filters=(1, 4), idat_parts=3))
save("labelpng", "multi-idat-empty.png",  # 40 cuts of a shorter stream: some IDATs are empty
     label_png(pattern(3, 2, 4), 8, idat_parts=40))
save("labelpng", "stored.png", label_png(pattern(6, 3, 21), 8, level=0))
save("labelpng", "ancillary.png",
     label_png(pattern(4, 4, 16), 4, 3, palette=16, extra=[(b"tEXt", b"Comment\x00fuzz"), (b"gAMA", b"\x00\x00\xb1\x8f")]))
save("labelpng", "one-pixel.png", label_png([[7]], 8))

try:
    import numpy as np
except ImportError:
    print("== make_seeds.py: numpy not found: npy, npz and safetensors seeds not written")
    sys.exit(0)


def npy_bytes(array, version=None):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


arrays = {
    "f4": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "f8": np.array([0.1, -2.5]),
    "f2": np.array([1.5, -0.0, np.inf], np.float16),
    "i4": np.array([9, 7, 4, 1], np.int32),
    "i8": np.array([-3, 1 << 40], np.int64),
    "i2": np.array([-300], np.int16),
    "i1": np.array([-1, 127], np.int8),
    "u1": np.array([0, 128, 255], np.uint8),
    "b1": np.array([True, False]),
    "scalar": np.array(2.3012452, np.float32),
    "empty": np.zeros((0, 4), np.float32),
}
for name, array in arrays.items():
    save("npy", name + ".npy", npy_bytes(array))
save("npy", "v2.npy", npy_bytes(arrays["f4"], (2, 0)))
save("npy", "v3.npy", npy_bytes(arrays["i4"], (3, 0)))
save("npy", "fortran.npy", npy_bytes(np.asfortranarray(arrays["f4"])))
save("npy", "bigendian.npy", npy_bytes(arrays["f4"].astype(">f4")))

batch = {"images": arrays["f4"], "labels": arrays["i4"], "loss": arrays["scalar"]}
for name, writer in (("stored.npz", np.savez), ("deflated.npz", np.savez_compressed)):
    buffer = io.BytesIO()
    writer(buffer, **batch)
    save("npz", name, buffer.getvalue())
buffer = io.BytesIO()
np.savez_compressed(buffer, **{"MixerBlock_0/token_mixing/Dense_0/kernel": arrays["f4"], "b": arrays["b1"]})
save("npz", "nested.npz", buffer.getvalue())
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # ZIP64 local header, deflated
    with archive.open("big.npy", "w", force_zip64=True) as entry:
        entry.write(npy_bytes(arrays["f8"]))
save("npz", "zip64.npz", buffer.getvalue())


def safetensors_bytes(tensors, metadata=None):
    header, offset, payload = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    names = {"<f4": "F32", "<f8": "F64", "<i4": "I32", "<i8": "I64", "<f2": "F16", "|u1": "U8", "|b1": "BOOL",
             "|i1": "I8", "<i2": "I16"}
    for name, array in tensors.items():
        data = array.tobytes()
        header[name] = {"dtype": names[array.dtype.str], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        payload += data
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


save("safetensors", "all.safetensors", safetensors_bytes(arrays, {"format": "mixer-dist", "step": "7"}))
save("safetensors", "one.safetensors", safetensors_bytes({"w": arrays["f4"]}))
save("safetensors", "empty.safetensors", safetensors_bytes({}))
try:
    from safetensors.numpy import save as safetensors_save

    save("safetensors", "python.safetensors",
         safetensors_save({"a": arrays["f4"], "labels": arrays["i4"]}, metadata={"k": "v"}))
except ImportError:
    pass
