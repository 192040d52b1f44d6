"""Fuzz/make_seeds.py: writes small valid (and a few deliberately unsupported) files into
SEEDS/{npy,npz,safetensors}/ as the starting corpus for the libFuzzer targets in Fuzz/.
Usage: python3 make_seeds.py SEEDS   (needs numpy; safetensors is used when installed)."""
import io, json, os, struct, sys, zipfile

import numpy as np

out = sys.argv[1]
for sub in ("npy", "npz", "safetensors"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)


def save(sub, name, data):
    with open(os.path.join(out, sub, name), "wb") as f:
        f.write(data)


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
