#!/usr/bin/env python3
# Usage: tools/wds_python_bench.py SHARD_DIR [REPEATS]  (reads SHARD_DIR/train-*.tar)
# Python webdataset reading the same shards on one thread: PIL decode (webdataset's "pil"
# decoder), an inception crop (area 5-100%, aspect 3/4-4/3) resized to 224x224 bilinear, a flip,
# and normalisation to float32 in [-1, 1], as mixer-dist's training loader does.
import glob, math, random, sys, time
import numpy as np
import webdataset as wds
from PIL import Image

def augment(img, rng):
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.05, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw, ch, x, y = w, h, 0, 0
    out = img.resize((224, 224), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return (np.asarray(out, dtype=np.float32) - 127.5) / 127.5

urls = sorted(glob.glob(sys.argv[1] + "/train-*.tar"))
rng = random.Random(0)
for rep in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2):
    start, n = time.perf_counter(), 0
    for img, cls in wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "cls"):
        augment(img, rng)
        n += 1
    seconds = time.perf_counter() - start
    print(f"python webdataset: {n} images in {seconds:.2f} s on 1 thread: {n / seconds:.0f} images/s")
