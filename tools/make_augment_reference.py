#!/usr/bin/env python3
"""Reference outputs of big_vision's augmentation and evaluation ops, computed with TensorFlow.

Writes Tests/Fixtures/augment/ for Tests/MixerDataTests/AugmentReferenceTests.swift, which checks
our preprocessing against these files without needing TensorFlow. What it records:

- crop: 10,000 draws of tf.image.stateless_sample_distorted_bounding_box with big_vision's
  `decode_jpeg_and_inception_crop` arguments (area_range (0.05, 1), aspect_ratio_range (0.75, 1.33),
  min_object_covered 0, use_image_if_no_bounding_boxes, the op's default max_attempts 100) for a
  few image sizes, as the distributions of the crop's area fraction and aspect ratio (how many
  draws are at most each of a grid of values), plus how often the whole image came back;
- resize: tf.image.resize(bilinear, antialias=False) of boxes sliced from a fixed image (the resize
  big_vision's inception crop does), as float32 before big_vision's cast to uint8;
- randaugment: big_vision's own `distort_image_with_randaugment(image, 1, M)` imported from a
  big_vision checkout, with its random draws forced (which op, the sign of geometric ops, the
  cutout centre), for every one of its 16 ops at M = 15 and M = 3;
- eval: big_vision's evaluation `decode|resize_small(256)|central_crop(224)` of two JPEGs
  (500x375 and 375x500, written here with Pillow), with TensorFlow's default JPEG decoding (as
  big_vision's `decode`) and with dct_method INTEGER_ACCURATE (`decode(precise=True)`);
- mixup: the permutation of jnp.roll(x, shift=1, axis=0) that big_vision's get_mixup mixes with
  (np.roll has the same semantics).

Usage (TensorFlow in a virtual environment; tensorflow-addons 0.23 is needed for its image ops
only, loaded without its package __init__, which does not import under TF 2.20):

  python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.20.0 pillow \\
      && /tmp/tfvenv/bin/pip install --no-deps tensorflow-addons==0.23.0 'typeguard<3'
  git clone https://github.com/google-research/big_vision /tmp/big_vision
  /tmp/tfvenv/bin/python tools/make_augment_reference.py --big-vision /tmp/big_vision

The fixtures were generated with TensorFlow 2.20.0 and big_vision's
big_vision/pp/archive/autoaugment.py at commit 3925d42d1f8b34f8209fe8edfd458307bcfa5262 (without
network access to GitHub: from a local copy of that file's RandAugment functions, code unchanged,
its AutoAugment policies and docstrings left out).
"""

import argparse
import importlib
import importlib.util
import inspect
import io
import json
import re
import sys
import types
import typing
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "augment"

CROP_SIZES = [(500, 375), (375, 500), (64, 200), (32, 32)]  # (width, height)
CROP_DRAWS = 10_000
AREA_EDGES = np.linspace(0, 1, 401)  # the distributions as CDFs at fixed points (the crops are
ASPECT_EDGES = np.linspace(0.7, 1.4, 281)  # whole pixels: quantiles of such discrete values mislead)
RESIZE_CASES = [  # (y, x, height, width) of a 96x72 image, and the output (height, width)
    ((0, 0, 72, 96), (32, 32)),
    ((10, 5, 50, 60), (32, 32)),
    ((3, 40, 20, 17), (32, 32)),
    ((20, 30, 52, 66), (24, 40)),
]
RANDAUG_SIZE = (48, 40)  # (width, height)
RANDAUG_MAGNITUDES = [15, 3]
SIGNED_OPS = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}
CUTOUT_CENTRES = {15: (5, 7), 3: (30, 41)}  # (y, x)
EXTRA_CASES = [(1, "Posterize"), (10, "Solarize")]  # 0 bits (TF clamps the shift); threshold 256


def load_tfa_image():
  """tensorflow_addons.image's rotate / translate / transform, without the package __init__."""
  spec = importlib.util.find_spec("tensorflow_addons")
  if spec is None:
    sys.exit("tensorflow-addons is not installed (pip install --no-deps tensorflow-addons==0.23.0 'typeguard<3')")
  root = spec.submodule_search_locations[0]
  for name, path in [("tensorflow_addons", root), ("tensorflow_addons.utils", root + "/utils"),
                     ("tensorflow_addons.image", root + "/image")]:
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
  stub = types.ModuleType("tensorflow_addons.utils.types")
  stub.TensorLike = stub.FloatTensorLike = stub.Number = typing.Any
  sys.modules["tensorflow_addons.utils.types"] = stub
  transform_ops = importlib.import_module("tensorflow_addons.image.transform_ops")
  translate_ops = importlib.import_module("tensorflow_addons.image.translate_ops")
  image = sys.modules["tensorflow_addons.image"]
  image.rotate = transform_ops.rotate
  image.transform = transform_ops.transform
  image.translate = translate_ops.translate
  sys.modules["tensorflow_addons"].image = image


def test_image(width, height, seed):
  """A photo-like RGB image: colour gradients, a few shapes with edges, mild noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  u, v = x / width, y / height
  img = np.stack([60 + 150 * u, 40 + 120 * v + 30 * np.sin(6 * u), 170 - 110 * u * v], -1)
  for _ in range(6):
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    r = rng.uniform(0.05, 0.25) * min(width, height)
    colour = rng.uniform(20, 235, 3)
    inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    img[inside] = 0.35 * img[inside] + 0.65 * colour
  stripes = (np.sin(x * 0.9 + y * 0.3) > 0.6) & (u > 0.6) & (v < 0.4)
  img[stripes] *= 0.6
  img += rng.normal(0, 3, img.shape)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_bytes(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
  return buffer.getvalue()


def cdf(values, edges):
  """How many of `values` are at most each edge."""
  return [int(c) for c in np.searchsorted(np.sort(np.asarray(values, np.float64)), edges, side="right")]


def crop_statistics(tf):
  sizes = []
  for width, height in CROP_SIZES:
    areas, aspects, heights = [], [], []
    whole = 0
    far_edge = 0
    for i in range(CROP_DRAWS):
      begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
          [height, width, 3], tf.zeros([0, 0, 4], tf.float32), seed=[i, 28],
          area_range=(0.05, 1.0), aspect_ratio_range=(0.75, 1.33), min_object_covered=0,
          use_image_if_no_bounding_boxes=True)
      y, x = int(begin[0]), int(begin[1])
      h, w = int(size[0]), int(size[1])
      assert 0 <= y and y + h <= height and 0 <= x and x + w <= width
      areas.append(w * h / (width * height))
      aspects.append(w / h)
      heights.append(h)
      whole += (w, h) == (width, height)
      # the op draws offsets in 0..<(W - w): a narrower crop never touches the right edge
      far_edge += (w < width and x + w == width) or (h < height and y + h == height)
    sizes.append({
        "width": width, "height": height,
        "area_counts": cdf(areas, AREA_EDGES), "aspect_counts": cdf(aspects, ASPECT_EDGES),
        "height_min": min(heights), "height_max": max(heights),
        "whole_image_fraction": whole / CROP_DRAWS,
        "area_mean": float(np.mean(areas)), "aspect_mean": float(np.mean(aspects)),
        "far_edge_touches": far_edge,
    })
    print(f"crop {width}x{height}: mean area {np.mean(areas):.4f}, mean aspect {np.mean(aspects):.4f}, "
          f"whole image {whole / CROP_DRAWS:.4f}")
  return {"area_range": [0.05, 1.0], "aspect_ratio_range": [0.75, 1.33], "max_attempts": 100,
          "draws": CROP_DRAWS, "area_edges": [float(e) for e in AREA_EDGES],
          "aspect_edges": [float(e) for e in ASPECT_EDGES], "sizes": sizes}


def resize_references(tf):
  source = test_image(96, 72, seed=1)
  (OUT / "resize_source.png").write_bytes(png_bytes(source))
  cases = []
  for n, ((y, x, h, w), (oh, ow)) in enumerate(RESIZE_CASES):
    crop = tf.slice(tf.constant(source), [y, x, 0], [h, w, 3])
    out = tf.image.resize(crop, [oh, ow], method="bilinear", antialias=False).numpy().astype("<f4")
    name = f"resize_{n}.f32"
    (OUT / name).write_bytes(out.tobytes())
    cases.append({"box": [y, x, h, w], "size": [oh, ow], "file": name})
  return {"source": "resize_source.png", "cases": cases}


class ForcedRandom:
  """tensorflow.compat.v1 with random_uniform answering the draws we choose, in call order."""

  def __init__(self, real, op, sign, centre):
    self._real, self._op, self._sign = real, op, sign
    self._ints = [op] + (list(centre) if centre else [])

  def __getattr__(self, name):
    return getattr(self._real, name)

  def random_uniform(self, shape, minval=0, maxval=None, dtype=None, **_):
    tf = self._real
    if dtype == tf.int32:
      return tf.constant(self._ints.pop(0), tf.int32)
    if minval == 0.2:  # the unused per-op probability
      return tf.constant(0.5, tf.float32)
    # _randomly_negate_tensor keeps the sign when floor(u + 0.5) is 1
    return tf.constant(0.75 if self._sign > 0 else 0.25, tf.float32)


def randaugment_references(tf, autoaugment):
  width, height = RANDAUG_SIZE
  source = test_image(width, height, seed=2)
  (OUT / "randaug_input.png").write_bytes(png_bytes(source))
  # the op list as big_vision's function spells it (the forced index picks from that list)
  source_text = inspect.getsource(autoaugment.distort_image_with_randaugment)
  listing = re.search(r"available_ops = \[(.*?)\]", source_text, re.S).group(1)
  ops = re.findall(r"'(\w+)'", listing)
  assert len(ops) == 16, ops
  real_tf = autoaugment.tf
  rows, cases = [], []
  plan = [(m, name) for m in RANDAUG_MAGNITUDES for name in ops] + EXTRA_CASES
  for magnitude, name in plan:
    index = ops.index(name)
    for sign in ([1, -1] if name in SIGNED_OPS else [1]):
      centre = CUTOUT_CENTRES[magnitude] if name == "Cutout" else None
      forced = ForcedRandom(real_tf, index, sign, centre)
      autoaugment.tf = forced
      try:
        out = autoaugment.distort_image_with_randaugment(tf.constant(source), 1, magnitude).numpy()
      finally:
        autoaugment.tf = real_tf
      assert not forced._ints, f"{name}: unused forced draws {forced._ints}"
      cases.append({"op": index, "name": name, "magnitude": magnitude, "sign": sign,
                    "cutout_centre": list(centre) if centre else None, "row": len(rows) * height})
      rows.append(out)
  (OUT / "randaug_outputs.png").write_bytes(png_bytes(np.concatenate(rows, 0)))
  return {"input": "randaug_input.png", "outputs": "randaug_outputs.png", "width": width,
          "height": height, "ops": ops, "translate_const": 100, "cutout_const": 40, "replace": 128,
          "cases": cases}


def eval_references(tf):
  cases = []
  for n, (width, height) in enumerate([(500, 375), (375, 500)]):
    pixels = test_image(width, height, seed=10 + n)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    jpeg = buffer.getvalue()
    stem = f"eval_{width}x{height}"
    (OUT / f"{stem}.jpg").write_bytes(jpeg)
    case = {"jpeg": f"{stem}.jpg"}
    for key, decoded in [
        ("default_decode", tf.io.decode_image(jpeg, channels=3, expand_animations=False)),
        ("precise_decode", tf.image.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")),
    ]:
      # big_vision resize_small(256): area resize by 256 / shorter side, sizes rounded in float32,
      # then clip and cast to uint8; central_crop(224): offsets (size - 224) // 2.
      h, w = tf.shape(decoded)[0], tf.shape(decoded)[1]
      factor = tf.cast(256, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32)
      rh = tf.cast(tf.round(tf.cast(h, tf.float32) * factor), tf.int32)
      rw = tf.cast(tf.round(tf.cast(w, tf.float32) * factor), tf.int32)
      resized = tf.image.resize(decoded, (rh, rw), method="area", antialias=False)
      resized = tf.cast(tf.clip_by_value(resized, 0, 255), tf.uint8)
      dy, dx = (int(rh) - 224) // 2, (int(rw) - 224) // 2
      out = tf.image.crop_to_bounding_box(resized, dy, dx, 224, 224).numpy()
      (OUT / f"{stem}_{key}.png").write_bytes(png_bytes(out))
      case[key] = f"{stem}_{key}.png"
      case["resized"] = [int(rh), int(rw)]
      case["offset"] = [dy, dx]
    cases.append(case)
  return {"resize_small": 256, "central_crop": 224, "cases": cases}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--big-vision", required=True, help="a checkout of google-research/big_vision")
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  load_tfa_image()
  sys.path.insert(0, str(Path(args.big_vision).resolve()))
  autoaugment = importlib.import_module("big_vision.pp.archive.autoaugment")
  OUT.mkdir(parents=True, exist_ok=True)
  reference = {
      "generator": "tools/make_augment_reference.py",
      "tensorflow": tf.__version__,
      "big_vision_file": "big_vision/pp/archive/autoaugment.py",
      "mixup": {"batch": 8, "roll_index": [int(i) for i in np.roll(np.arange(8), 1)]},
      "resize": resize_references(tf),
      "randaugment": randaugment_references(tf, autoaugment),
      "eval": eval_references(tf),
      "crop": crop_statistics(tf),
  }
  (OUT / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")
  total = sum(p.stat().st_size for p in OUT.iterdir())
  print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
  main()
