#!/usr/bin/env python3
"""Reference tensors for MLP-Mixer parity tests, from a Flax model written to match the
official google-research/vision_transformer `vit_jax/models_mixer.py` (same module
structure, so the same parameter names and layouts).

Output folder format (same as /work/shared/reference/*):
  config.json      image_height, image_width, patch, hidden_dim, num_blocks, tokens_mlp_dim,
                   channels_mlp_dim, num_classes, batch, seed, gelu, layernorm_epsilon, loss
  params.npz       every parameter under its checkpoint name ('/'-joined), stem/kernel HWIO
  batch.npz        images f32 NHWC, labels i32, logits f32, loss f32 0-d
  grads.npz        d(mean softmax cross-entropy)/d(param), same names and shapes
  activations.npz  stem_out_tokens, MixerBlock_{i}_out, pre_head_layer_norm_out [B,S,C]; pooled [B,C]

Usage:
  python3 tools/make_reference.py --check /work/shared/reference/mixer-tiny-tanh
      recompute logits/loss/grads/activations from that folder's params+batch and compare
  python3 tools/make_reference.py --generate [--out Tests/Fixtures/reference]
      write the fixture folders listed in FIXTURES (deterministic: fixed seeds)
  python3 tools/make_reference.py --bench [--batch 128] [--steps 10]
      jitted train step (fwd+bwd+Adam) on the `cifar` shape; prints images/s.
      Thread control: run under `taskset -c 0` (1 thread) or `taskset -c 0,1` (2 threads).

Needs: jax, flax (optax optional: plain SGD otherwise). CPU, float32, highest matmul precision.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import jax

jax.config.update("jax_enable_x64", False)
jax.config.update("jax_default_matmul_precision", "highest")
import jax.numpy as jnp  # noqa: E402
import flax.linen as nn  # noqa: E402
from flax import traverse_util  # noqa: E402

LN_EPS = 1e-6


# ---------------------------------------------------------------- model (official structure)
class MlpBlock(nn.Module):
    mlp_dim: int
    approximate_gelu: bool = True

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(self.mlp_dim)(x)
        y = nn.gelu(y, approximate=self.approximate_gelu)
        return nn.Dense(x.shape[-1])(y)


class MixerBlock(nn.Module):
    tokens_mlp_dim: int
    channels_mlp_dim: int
    approximate_gelu: bool = True

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(epsilon=LN_EPS)(x)
        y = jnp.swapaxes(y, 1, 2)
        y = MlpBlock(self.tokens_mlp_dim, self.approximate_gelu, name="token_mixing")(y)
        y = jnp.swapaxes(y, 1, 2)
        x = x + y
        y = nn.LayerNorm(epsilon=LN_EPS)(x)
        return x + MlpBlock(self.channels_mlp_dim, self.approximate_gelu, name="channel_mixing")(y)


class MlpMixer(nn.Module):
    patch: int
    num_classes: int
    num_blocks: int
    hidden_dim: int
    tokens_mlp_dim: int
    channels_mlp_dim: int
    approximate_gelu: bool = True

    @nn.compact
    def __call__(self, inputs):
        p = self.patch
        x = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), name="stem")(inputs)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))  # einops 'n h w c -> n (h w) c'
        self.sow("intermediates", "stem_out_tokens", x)
        for i in range(self.num_blocks):
            x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim, self.approximate_gelu,
                           name=f"MixerBlock_{i}")(x)
            self.sow("intermediates", f"MixerBlock_{i}_out", x)
        x = nn.LayerNorm(epsilon=LN_EPS, name="pre_head_layer_norm")(x)
        self.sow("intermediates", "pre_head_layer_norm_out", x)
        x = jnp.mean(x, axis=1)
        self.sow("intermediates", "pooled", x)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)


def model_from_config(cfg):
    assert cfg["gelu"] in ("tanh", "erf"), cfg["gelu"]
    assert float(cfg.get("layernorm_epsilon", LN_EPS)) == LN_EPS
    return MlpMixer(patch=cfg["patch"], num_classes=cfg["num_classes"],
                    num_blocks=cfg["num_blocks"], hidden_dim=cfg["hidden_dim"],
                    tokens_mlp_dim=cfg["tokens_mlp_dim"],
                    channels_mlp_dim=cfg["channels_mlp_dim"],
                    approximate_gelu=(cfg["gelu"] == "tanh"))


def flat_to_tree(flat):
    return traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})


def tree_to_flat(tree):
    return {"/".join(k): np.asarray(v, dtype=np.float32)
            for k, v in traverse_util.flatten_dict(tree).items()}


def xent(logits, labels):
    """Mean softmax cross-entropy with integer labels (optax's formula when available: it is
    what the shared references used, bit for bit)."""
    try:
        import optax
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    except ImportError:
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def compute(cfg, params_flat, images, labels):
    """Returns logits, loss, grads (flat), activations (flat dict)."""
    model = model_from_config(cfg)
    params = flat_to_tree(params_flat)
    images = jnp.asarray(images, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)

    def loss_fn(p):
        logits, state = model.apply({"params": p}, images, mutable=["intermediates"])
        return xent(logits, labels), (logits, state["intermediates"])

    with jax.default_matmul_precision("highest"):
        (loss, (logits, inter)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    acts = {k: np.asarray(v[0], np.float32) for k, v in inter.items()}
    order = ["stem_out_tokens"] + [f"MixerBlock_{i}_out" for i in range(cfg["num_blocks"])] + \
            ["pre_head_layer_norm_out", "pooled"]
    acts = {k: acts[k] for k in order}
    # The shared references hold pooled = numpy mean of pre_head_layer_norm_out (the in-graph
    # jnp.mean differs by 1 ulp); mimic that so --check is bit-exact.
    acts["pooled"] = acts["pre_head_layer_norm_out"].mean(axis=1)
    return (np.asarray(logits, np.float32), np.float32(loss), tree_to_flat(grads), acts)


# ---------------------------------------------------------------- --check
def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d = np.linalg.norm((a - b).ravel())
    n = np.linalg.norm(b.ravel())
    return d / n if n > 0 else d, float(np.max(np.abs(a - b))) if a.size else 0.0


def check(folder, verbose=False):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    params = dict(np.load(os.path.join(folder, "params.npz")))
    batch = np.load(os.path.join(folder, "batch.npz"))
    grads_ref = np.load(os.path.join(folder, "grads.npz"))
    acts_ref = np.load(os.path.join(folder, "activations.npz"))
    logits, loss, grads, acts = compute(cfg, params, batch["images"], batch["labels"])
    ok = True
    print(f"== {folder} ({cfg['gelu']} GELU)")
    r, m = rel(logits, batch["logits"])
    ok &= r <= 1e-5
    print(f"logits                 rel {r:.2e}  max|d| {m:.2e}")
    r, m = rel(loss, batch["loss"])
    ok &= r <= 1e-5
    print(f"loss                   rel {r:.2e}  ours {float(loss):.9f} ref {float(batch['loss']):.9f}"
          f"  config {cfg.get('loss')}")
    assert set(grads) == set(grads_ref.files) == set(params), "parameter name sets differ"
    worst = (0.0, "")
    for k in sorted(grads):
        assert grads[k].shape == grads_ref[k].shape, (k, grads[k].shape, grads_ref[k].shape)
        r, m = rel(grads[k], grads_ref[k])
        # token_mixing/Dense_1/bias has zero gradient in exact arithmetic: absolute tolerance
        if k.endswith("token_mixing/Dense_1/bias"):
            good = m <= 1e-6
            tag = f"(abs) max|d| {m:.2e}  |ref| {np.abs(grads_ref[k]).max():.1e}"
        else:
            good = r <= 1e-4
            tag = f"rel {r:.2e}  max|d| {m:.2e}"
            if r > worst[0]:
                worst = (r, k)
        ok &= good
        if verbose or not good:
            print(f"grad {k:45s} {tag}{'' if good else '  <-- FAIL'}")
    print(f"grads                  worst rel {worst[0]:.2e} ({worst[1] or 'all bit-exact'}) over {len(grads)} tensors")
    assert list(acts) == list(acts_ref.files) or set(acts) == set(acts_ref.files), \
        (list(acts), acts_ref.files)
    for k in acts_ref.files:
        r, m = rel(acts[k], acts_ref[k])
        ok &= r <= 1e-5
        print(f"act {k:22s} rel {r:.2e}  max|d| {m:.2e}")
    print("MATCH" if ok else "MISMATCH")
    return ok


# ---------------------------------------------------------------- --generate
FIXTURES = [
    dict(name="mixer-nonsquare", image_height=24, image_width=40, patch=8, hidden_dim=48,
         num_blocks=3, tokens_mlp_dim=24, channels_mlp_dim=96, num_classes=7, batch=3,
         seed=2, gelu="tanh"),
    dict(name="mixer-patch4-erf", image_height=16, image_width=16, patch=4, hidden_dim=32,
         num_blocks=1, tokens_mlp_dim=16, channels_mlp_dim=64, num_classes=5, batch=2,
         seed=3, gelu="erf"),
]


def random_params(cfg):
    """Official init (lecun-normal kernels, head kernel zero, etc.), then the head kernel,
    every LayerNorm scale/bias and every bias replaced by small random values so that every
    gradient is non-trivial."""
    model = model_from_config(cfg)
    key = jax.random.PRNGKey(cfg["seed"])
    k_init, k_pert = jax.random.split(key)
    x = jnp.zeros((1, cfg["image_height"], cfg["image_width"], 3), jnp.float32)
    flat = tree_to_flat(model.init(k_init, x)["params"])
    rng = np.random.default_rng(1000 + cfg["seed"])
    for k in sorted(flat):
        v = flat[k]
        if k.endswith("/scale"):
            v = 1.0 + 0.1 * rng.standard_normal(v.shape)
        elif k.endswith("/bias"):
            v = (0.1 if "LayerNorm" in k or "layer_norm" in k else 0.05) * rng.standard_normal(v.shape)
        elif k == "head/kernel":
            v = 0.02 * rng.standard_normal(v.shape)
        flat[k] = np.asarray(v, np.float32)
    return flat


def generate(spec, out_root):
    cfg = {k: v for k, v in spec.items() if k != "name"}
    cfg["layernorm_epsilon"] = LN_EPS
    H, W, P = cfg["image_height"], cfg["image_width"], cfg["patch"]
    assert H % P == 0 and W % P == 0
    params = random_params(cfg)
    rng = np.random.default_rng(cfg["seed"])
    images = rng.uniform(-1.0, 1.0, size=(cfg["batch"], H, W, 3)).astype(np.float32)
    labels = rng.integers(0, cfg["num_classes"], size=(cfg["batch"],)).astype(np.int32)
    logits, loss, grads, acts = compute(cfg, params, images, labels)
    folder = os.path.join(out_root, spec["name"])
    os.makedirs(folder, exist_ok=True)
    ordered = {
        "image_height": H, "image_width": W, "patch": P, "hidden_dim": cfg["hidden_dim"],
        "num_blocks": cfg["num_blocks"], "tokens_mlp_dim": cfg["tokens_mlp_dim"],
        "channels_mlp_dim": cfg["channels_mlp_dim"], "num_classes": cfg["num_classes"],
        "batch": cfg["batch"], "seed": cfg["seed"], "gelu": cfg["gelu"],
        "layernorm_epsilon": LN_EPS, "loss": float(loss),
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(ordered, f, indent=1)
    np.savez(os.path.join(folder, "params.npz"), **{k: params[k] for k in sorted(params)})
    np.savez(os.path.join(folder, "batch.npz"), images=images, labels=labels, logits=logits,
             loss=np.asarray(loss, np.float32))
    np.savez(os.path.join(folder, "grads.npz"), **{k: grads[k] for k in sorted(grads)})
    np.savez(os.path.join(folder, "activations.npz"), **acts)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    zero = [k for k in grads if np.max(np.abs(grads[k])) == 0.0]
    print(f"wrote {folder}: loss {float(loss):.6f}, {size / 1024:.1f} KiB, "
          f"all-zero grads: {zero or 'none'}")
    return folder


# ---------------------------------------------------------------- --bench
CIFAR = dict(image_height=32, image_width=32, patch=4, hidden_dim=256, num_blocks=8,
             tokens_mlp_dim=128, channels_mlp_dim=1024, num_classes=10, seed=0, gelu="tanh")


def bench(batch, steps, warmup):
    cfg = dict(CIFAR, batch=batch)
    model = model_from_config(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3), jnp.float32))["params"]
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 10, (batch,)).astype(np.int32))
    try:
        import optax
        tx = optax.adam(1e-3)
        opt_name = f"optax.adam (optax {optax.__version__})"
    except ImportError:
        optax = None
        tx = None
        opt_name = "plain SGD"

    def loss_fn(p, x, y):
        return xent(model.apply({"params": p}, x), y)

    if tx is not None:
        opt_state = tx.init(params)

        @jax.jit
        def step(p, s, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s, loss
    else:
        opt_state = None

        @jax.jit
        def step(p, s, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            return jax.tree_util.tree_map(lambda a, b: a - 1e-2 * b, p, g), s, loss

    nparams = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(params))
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = "?"
    print(f"bench: cifar shape (32x32, P4, C256, 8 blocks, D_S128, D_C1024, 10 cls), "
          f"{nparams} params, batch {batch}, {opt_name}, matmul precision "
          f"{jax.config.jax_default_matmul_precision}")
    print(f"jax {jax.__version__}, cpu affinity {affinity}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, loadavg {os.getloadavg()}")
    t0 = time.perf_counter()
    for _ in range(warmup):
        params, opt_state, loss = step(params, opt_state, images, labels)
    loss.block_until_ready()
    print(f"compile + {warmup} warm-up steps: {time.perf_counter() - t0:.1f}s, loss {float(loss):.4f}")
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, images, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    times = np.array(times)
    print(f"{steps} steps: mean {times.mean() * 1e3:.1f} ms/step, median {np.median(times) * 1e3:.1f} ms, "
          f"-> {batch / times.mean():.1f} img/s (median {batch / np.median(times):.1f}, "
          f"best step {batch / times.min():.1f} img/s), "
          f"loadavg after {os.getloadavg()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", nargs="+", metavar="FOLDER")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "Tests", "Fixtures", "reference"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if not (a.check or a.generate or a.bench):
        ap.print_help()
        return 2
    ok = True
    if a.check:
        for f in a.check:
            ok &= check(f, a.verbose)
    if a.generate:
        out = os.path.normpath(a.out)
        for spec in FIXTURES:
            folder = generate(spec, out)
            ok &= check(folder)  # self-consistency: reload and recompute
    if a.bench:
        bench(a.batch, a.steps, a.warmup)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
