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
  python3 tools/make_reference.py --optax-trajectory [--trajectory-out Tests/Fixtures/optax-trajectory]
      20 steps of big_vision's optax chain (clip → scale_by_adam → scale(lr) →
      add_decayed_weights(wd) on kernels → scale_by_schedule → scale(-1)) on the official model,
      small config, fixed batches: writes batches.npz and, per loss (softmax, sigmoid with head
      bias -6.9), a folder with config.json (settings, per-step loss, gradient norm and schedule
      factor) and trajectory.npz (every parameter after every step, leading axis = step 0..20,
      0 = the initial values)
  python3 tools/make_reference.py --bench [--bench-preset cifar|S/16] [--batch 128] [--steps 10]
      jitted train step (fwd+bwd+Adam) on the `cifar` (or `S/16`) shape; prints images/s.
      Thread control: run under `taskset -c 0` (1 thread) or `taskset -c 0,1` (2 threads).

Needs: jax, flax (optax optional: plain SGD otherwise; --optax-trajectory needs it). CPU, float32, highest matmul precision.
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


# ---------------------------------------------------------------- --optax-trajectory
# big_vision's Mixer recipe (configs/mlp_mixer_i1k.py with big_vision/optax.py `make` and
# utils.py `create_learning_rate_schedule`, `sigmoid_xent`), written out here from the optax
# primitives on a model small enough that 21 copies of its parameters stay in a few hundred KB.
TRAJECTORY_MODEL = dict(image_height=8, image_width=8, patch=4, hidden_dim=8, num_blocks=2,
                        tokens_mlp_dim=8, channels_mlp_dim=16, num_classes=5, gelu="tanh")
TRAJECTORY = dict(steps=20, batch=4, seed=5, lr=1e-3, wd=1e-4, grad_clip_norm=1.0,
                  warmup_steps=3, linear_end=0.2, b1=0.9, b2=0.999, eps=1e-8)
TRAJECTORY_CASES = [dict(name="sigmoid", loss="sigmoid", head_bias_init=-6.9),
                    dict(name="softmax", loss="softmax", head_bias_init=0.0)]


def schedule_factor(step, total, warmup, linear_end):
    """big_vision's learning-rate schedule with base 1 (its optax chain multiplies the updates by
    it): linear decay from 1 to linear_end over the steps after the warm-up, times min(1, t/W)."""
    progress = jnp.clip((step - warmup) / float(total - warmup), 0.0, 1.0)
    value = linear_end + (1.0 - linear_end) * (1.0 - progress)
    if warmup:
        value = value * jnp.minimum(1.0, step / warmup)
    return jnp.asarray(value, jnp.float32)


def sigmoid_cross_entropy(logits, labels):
    """Σ_k −(y log σ(z) + (1 − y) log σ(−z)), averaged over the batch (big_vision's sigmoid_xent)."""
    per_class = labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits)
    return jnp.mean(-jnp.sum(per_class, axis=-1))


def softmax_cross_entropy(logits, labels):
    """−Σ_k y log softmax(z), averaged over the batch (big_vision's softmax_xent)."""
    return jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def big_vision_chain(h, total_steps):
    """The update big_vision builds for optax_name='scale_by_adam', grad_clip_norm, lr, wd and a
    linear schedule: the decay is added after the lr scaling, so only the schedule scales it."""
    import optax
    kernels = lambda params: traverse_util.unflatten_dict(  # noqa: E731  wd_mults '.*/kernel$'
        {k: k[-1] == "kernel" for k in traverse_util.flatten_dict(params)})
    return optax.chain(
        optax.clip_by_global_norm(h["grad_clip_norm"]),
        optax.scale_by_adam(b1=h["b1"], b2=h["b2"], eps=h["eps"]),
        optax.scale(h["lr"]),
        optax.add_decayed_weights(h["wd"], kernels),
        optax.scale_by_schedule(
            lambda count: schedule_factor(count, total_steps, h["warmup_steps"], h["linear_end"])),
        optax.scale(-1.0))


def trajectory_batches(cfg, h):
    rng = np.random.default_rng(h["seed"])
    n, b = h["steps"], h["batch"]
    images = rng.uniform(-1.0, 1.0, size=(n, b, cfg["image_height"], cfg["image_width"], 3)).astype(np.float32)
    labels = rng.integers(0, cfg["num_classes"], size=(n, b)).astype(np.int32)
    return images, labels


def run_trajectory(case, cfg, h, images, labels):
    """Parameters after each of the steps (index 0: the initial ones), losses, gradient norms and
    schedule factors."""
    import optax
    model = model_from_config(cfg)
    x = jnp.zeros((1, cfg["image_height"], cfg["image_width"], 3), jnp.float32)
    flat = tree_to_flat(model.init(jax.random.PRNGKey(h["seed"]), x)["params"])  # official init
    flat["head/bias"] = np.full_like(flat["head/bias"], case["head_bias_init"])  # init_head_bias
    params = flat_to_tree(flat)
    loss_of = sigmoid_cross_entropy if case["loss"] == "sigmoid" else softmax_cross_entropy
    tx = big_vision_chain(h, h["steps"])
    state = tx.init(params)

    def loss_fn(p, xb, yb):
        logits = model.apply({"params": p}, xb)
        return loss_of(logits, jax.nn.one_hot(yb, cfg["num_classes"], dtype=jnp.float32))

    @jax.jit
    def step(p, s, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss, optax.global_norm(g)

    history = [tree_to_flat(params)]
    losses, norms, factors = [], [], []
    with jax.default_matmul_precision("highest"):
        for t in range(h["steps"]):
            params, state, loss, norm = step(params, state, jnp.asarray(images[t]), jnp.asarray(labels[t]))
            history.append(tree_to_flat(params))
            losses.append(float(loss))
            norms.append(float(norm))
            factors.append(float(schedule_factor(t, h["steps"], h["warmup_steps"], h["linear_end"])))
    names = sorted(history[0])
    stacked = {k: np.stack([hst[k] for hst in history]).astype(np.float32) for k in names}
    return stacked, losses, norms, factors


def optax_trajectory(out_root):
    cfg = dict(TRAJECTORY_MODEL)
    h = dict(TRAJECTORY)
    os.makedirs(out_root, exist_ok=True)
    images, labels = trajectory_batches(cfg, h)
    np.savez(os.path.join(out_root, "batches.npz"), images=images, labels=labels)
    import optax
    for case in TRAJECTORY_CASES:
        stacked, losses, norms, factors = run_trajectory(case, cfg, h, images, labels)
        folder = os.path.join(out_root, case["name"])
        os.makedirs(folder, exist_ok=True)
        record = dict(cfg, layernorm_epsilon=LN_EPS, **h, loss=case["loss"],
                      head_bias_init=case["head_bias_init"], optax=optax.__version__,
                      jax=jax.__version__, losses=losses, gradient_norms=norms,
                      schedule_factors=factors)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(record, f, indent=1)
        np.savez(os.path.join(folder, "trajectory.npz"), **stacked)
        clipped = sum(n > h["grad_clip_norm"] for n in norms)
        moved = {k: float(np.max(np.abs(v[-1] - v[0]))) for k, v in stacked.items()}
        print(f"{case['name']}: loss {losses[0]:.4f} -> {losses[-1]:.4f}, gradient norm "
              f"{min(norms):.3f}..{max(norms):.3f} ({clipped} of {len(norms)} steps clipped), "
              f"least moved tensor {min(moved, key=moved.get)} by {min(moved.values()):.2e}")
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out_root) for f in fs)
    print(f"wrote {out_root}: {size / 1024:.1f} KiB")


# ---------------------------------------------------------------- --bench
# the shapes `--bench-preset` names (mixer-dist's presets of the same names)
BENCH_PRESETS = {
    "cifar": dict(image_height=32, image_width=32, patch=4, hidden_dim=256, num_blocks=8,
                  tokens_mlp_dim=128, channels_mlp_dim=1024, num_classes=10, seed=0, gelu="tanh"),
    "S/16": dict(image_height=224, image_width=224, patch=16, hidden_dim=512, num_blocks=8,
                 tokens_mlp_dim=256, channels_mlp_dim=2048, num_classes=1000, seed=0, gelu="tanh"),
}


def bench(batch, steps, warmup, preset="cifar"):
    cfg = dict(BENCH_PRESETS[preset], batch=batch)
    size, classes = cfg["image_height"], cfg["num_classes"]
    model = model_from_config(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, classes, (batch,)).astype(np.int32))
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
    print(f"bench: {preset} shape ({size}x{size}, P{cfg['patch']}, C{cfg['hidden_dim']}, {cfg['num_blocks']} blocks, "
          f"D_S{cfg['tokens_mlp_dim']}, D_C{cfg['channels_mlp_dim']}, {classes} cls), "
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
    ap.add_argument("--optax-trajectory", action="store_true")
    ap.add_argument("--trajectory-out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "..", "Tests", "Fixtures", "optax-trajectory"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--bench-preset", choices=sorted(BENCH_PRESETS), default="cifar")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if not (a.check or a.generate or a.bench or a.optax_trajectory):
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
    if a.optax_trajectory:
        optax_trajectory(os.path.normpath(a.trajectory_out))
    if a.bench:
        bench(a.batch, a.steps, a.warmup, a.bench_preset)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
