#!/usr/bin/env python3
"""The scaling model of data-parallel mixer-dist (issue 12, item 5), fitted to launch/scaling's runs.

    python3 tools/scaling_model.py scaling.jsonl [--b16 b16.json] [--svg docs/scaling.svg] [--json]

A step of one rank is its compute (forward, backward, optimizer) plus the gradient communication
that backward does not hide:

    step       = c_N * B + exposed                      c_N: compute seconds per image at N hosts
    T_comm     = w_N + m * alpha_N + V / bandwidth      ring all-reduce (or reduce-scatter +
    V          = 2 (N-1)/N * gradient bytes * 8         all-gather, the same volume)
    m          = 2 (N-1) * buckets                      messages per step (ring steps x buckets)
    bandwidth  = eta * link rate  (shaped links)   or   B_u  (unshaped veth links)
    alpha_N    = the latency of one message at N hosts (with more ranks than cores, a message waits
                 for its receiver to be scheduled: alpha_4 on 2 cores is not a network's latency;
                 the B/16 predictions use alpha_2, one core per rank)
    w_N        = the wait for the slowest rank at N hosts (ranks that share cores finish backward
                 at different times; 0 on dedicated nodes, and so in the B/16 predictions)
    exposed    = T_comm                                 without overlap
               = T_comm - min(q * T_comm, h * t_backward)   overlapped all-reduce
               = T_rs - min(q * T_rs, h * t_backward) + T_ag   overlapped ZeRO-1 (the all-gather
                                                        of the parameters comes after the update)
    q          = the share of buckets started while backward runs (0 with one bucket: nothing
                 can hide; bench reports it)

c_N * B and t_backward are measured in every run (its step time less its exposed communication,
its backward less the wait for the buckets): on 2 cores, 4 hosts share the cores and other work on
the machine changes compute from run to run, so each run's own compute time is used (as the issue
asks); the model predicts the communication and the part of it backward hides. alpha, eta and B_u are a
linear least-squares fit (with w_N) to the communication time of the runs without overlap; h (the fraction of
backward that hides communication) is fitted to the step times of the overlapped runs. The model
then predicts images/s per rank for every run (table: measured, predicted, error) and, with a
per-image compute time for Mixer-B/16 (from --b16, a `mixer-dist bench --preset B/16` JSON line;
or stated), what Mixer-B/16 (gradients 239.5 MB) does on 8-512 nodes at 10, 25, 100 Gbit/s with the
paper's global batch of 4096: with the default bucket rule's count at each node count, and with the
old fixed default (457 buckets) for comparison.
"""

import argparse
import json
import math
import statistics
import sys

import numpy as np

B16_PARAMETERS = 59_880_472  # the paper's B/16 at 224 px, 1000 classes
OLD_DEFAULT_BUCKETS = math.ceil(B16_PARAMETERS / 131_072)  # the fixed default before the rule: 457
GLOBAL_BATCH = 4096


def default_buckets(parameters, nodes):
    """The default bucket count of mixer-dist (BucketSizeRule.swift): P / (312,500 (N-1)) buckets
    keep the ring's latency within a tenth of the bandwidth term on a 10 us, 100 Gbit/s link;
    at least 4 (backward hides up to 1 - 1/buckets of the reduction), at most 16."""
    by_latency = parameters // (312_500 * max(1, nodes - 1))
    return min(max(by_latency, 4), 16, max(1, parameters))


def rate_bits(rate):
    """Bits per second of a tc rate (100mbit, 1gbit); None for 'none' (unshaped)."""
    if rate == "none":
        return None
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1.0}
    for unit in ("kbit", "mbit", "gbit", "bit"):
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * units[unit]
    raise SystemExit(f"scaling_model.py: unknown rate '{rate}'")


def volume_bits(run):
    n = run["hosts"]
    return 2 * (n - 1) / n * run["gradient_bytes"] * 8


def messages(run):
    return 2 * (run["hosts"] - 1) * run["buckets"]


def fit(runs):
    """Fits the model; returns its parameters."""
    multi = [r for r in runs if r["hosts"] > 1]
    # per (hosts, overlap): compute seconds per image and the backward share of compute
    compute, backward_share = {}, {}
    for r in runs:
        own = r["seconds_per_step"] - r["exposed_seconds"]
        bucket_exposed = r["exposed_seconds"] - r.get("all_gather_seconds", 0)
        key = (r["hosts"], r["overlap"])
        compute.setdefault(key, []).append(own / r["batch"])
        backward_share.setdefault(key, []).append((r["backward_seconds"] - bucket_exposed) / own)
    compute = {k: statistics.median(v) for k, v in compute.items()}
    backward_share = {k: statistics.median(v) for k, v in backward_share.items()}

    # communication: T = alpha * m + (1/eta) * V/R (shaped) + (1/B_u) * V (unshaped)
    plain = [r for r in multi if not r["overlap"]]
    if not plain:
        raise SystemExit("scaling_model.py: no run without overlap to fit the communication time to")
    host_counts = sorted({r["hosts"] for r in plain})
    rows, times = [], []
    for r in plain:
        bits = rate_bits(r["rate"])
        v = volume_bits(r)
        waits = [1.0 if r["hosts"] == n else 0.0 for n in host_counts]
        latencies = [messages(r) if r["hosts"] == n else 0.0 for n in host_counts]
        rows.append([v / bits if bits else 0.0, 0.0 if bits else v] + waits + latencies)
        times.append(r["communication_seconds"])
    a, t = np.array(rows), np.array(times)
    used = [j for j in range(a.shape[1]) if np.any(a[:, j] != 0)]
    # relative least squares: every run counts the same whatever its communication time
    weights = 1 / np.maximum(t, 1e-6)
    solution = np.zeros(a.shape[1])
    solution[used] = np.linalg.lstsq(a[:, used] * weights[:, None], t * weights, rcond=None)[0]
    eta = 1 / solution[0] if solution[0] > 0 else float("nan")
    # unshaped veth links move the gradients in a few ms; when that drowns in the waits the fit
    # cannot resolve it, and the model takes them as infinitely fast
    unshaped = 1 / solution[1] if solution[1] > 0 else float("inf")
    wait = {n: max(solution[2 + i], 0.0) for i, n in enumerate(host_counts)}
    alphas = {n: max(solution[2 + len(host_counts) + i], 0.0) for i, n in enumerate(host_counts)}
    alpha = alphas[min(host_counts)]
    model = {"alpha": alpha, "alphas": alphas, "eta": eta, "unshaped_bits": unshaped, "hidden": 0.0, "wait": wait,
             "compute": compute, "backward_share": backward_share}

    overlapped = [r for r in multi if r["overlap"]]
    if overlapped:
        best = None
        for h in np.linspace(0, 1, 101):
            model["hidden"] = h
            error = sum((predict_step(model, r) / r["seconds_per_step"] - 1) ** 2 for r in overlapped)
            if best is None or error < best[0]:
                best = (error, h)
        model["hidden"] = best[1]
    return model


def communication(model, run):
    """(all-reduce or reduce-scatter + all-gather time, all-gather part) of one run, seconds."""
    bits = rate_bits(run["rate"])
    bandwidth = model["eta"] * bits if bits else model["unshaped_bits"]
    alpha = model["alphas"].get(run["hosts"], model["alpha"])
    total = model["wait"].get(run["hosts"], 0.0) + messages(run) * alpha + volume_bits(run) / bandwidth
    gather = 0.0
    if run["zero"] == 1 and run["hosts"] > 1:
        gather = (run["hosts"] - 1) * alpha + volume_bits(run) / 2 / bandwidth
    return total, gather


def measured_compute(run):
    """(compute seconds per step, backward compute seconds) of one run: what it did besides waiting."""
    compute = run["seconds_per_step"] - run["exposed_seconds"]
    backward = run["backward_seconds"] - (run["exposed_seconds"] - run.get("all_gather_seconds", 0))
    return compute, backward


def predict_step(model, run):
    compute, backward = measured_compute(run)
    if run["hosts"] == 1:
        return compute
    total, gather = communication(model, run)
    if not run["overlap"]:
        return compute + total
    return compute + exposed_overlapped(model, total - gather, hideable_share(run), backward) + gather


def hideable_share(run):
    """q: the share of the buckets handed over while backward was still running."""
    return run.get("buckets_started_before_backward_end", run["buckets"] - 1) / run["buckets"]


def exposed_overlapped(model, reduction, share, backward):
    return reduction - min(share * reduction, model["hidden"] * backward)


def describe(run):
    parts = [f"{run['hosts']}", run["rate"], "ZeRO-1" if run["zero"] == 1 else "all-reduce",
             "overlap" if run["overlap"] else "after backward", run["grad_comm"]]
    if run["buckets"] != max(1, math.ceil(run["gradient_bytes"] / (4 if run["grad_comm"] == "fp32" else 2) / 131_072)):
        parts.append(f"{run['buckets']} bucket" + ("s" if run["buckets"] > 1 else ""))
    return parts


def b16_table(model, per_image_seconds, label, alpha, buckets=None):
    """Markdown: B/16 step time, images/s and efficiency on 8-512 nodes at 10/25/100 Gbit/s, with
    `buckets` gradient buckets (None: the default rule's count at each node count)."""
    model = dict(model, alphas={}, wait={}, alpha=alpha)
    gradient_bytes = B16_PARAMETERS * 4
    described = (f"{buckets} buckets" if buckets is not None else
                 "the default rule's buckets (--bucket-size unset: " +
                 ", ".join(f"{default_buckets(B16_PARAMETERS, n)} at {n}" for n in (8, 16, 32, 64)) + " nodes and more)")
    lines = [f"Mixer-B/16, global batch {GLOBAL_BATCH}, {label}, {described}, alpha = "
             f"{alpha * 1e6:.0f} us, eta = {model['eta']:.0%}: images/s (scaling efficiency)", "",
             "| nodes | per-node batch | buckets | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s |", "|---:|---:|---:|---:|---:|---:|"]
    share = statistics.median(model["backward_share"].values())
    curves = {}
    for nodes in (8, 16, 32, 64, 128, 256, 512):
        batch = GLOBAL_BATCH / nodes
        compute = per_image_seconds * batch
        count = buckets if buckets is not None else default_buckets(B16_PARAMETERS, nodes)
        cells = []
        for gbit in (10, 25, 100):
            run = {"hosts": nodes, "rate": f"{gbit}gbit", "gradient_bytes": gradient_bytes,  # no w_N; alpha_2
                   "buckets": count, "zero": 0}
            total, _ = communication(model, run)
            step = compute + exposed_overlapped(model, total, 1 - 1 / count, share * compute)
            images = GLOBAL_BATCH / step
            curves.setdefault(gbit, []).append((nodes, images))
            cells.append((f"{images:.2f}" if images < 100 else f"{images:,.0f}") + f" ({compute / step:.0%})")
        lines.append(f"| {nodes} | {batch:g} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines), curves


def cost_table(curves, images, recipe, label):
    """Markdown: wall-clock hours and node-hours of `images` training images on each node count,
    at the images/s `b16_table` predicted (`curves`: link Gbit/s -> [(nodes, images/s)])."""
    lines = [f"Cost of {recipe} ({images:,.0f} training images), Mixer-B/16, {label}: hours of wall clock "
             "(node-hours)", "", "| nodes | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s |", "|---:|---:|---:|---:|"]
    by_nodes = {}
    for gbit in (10, 25, 100):
        for nodes, rate in curves[gbit]:
            hours = images / rate / 3600
            by_nodes.setdefault(nodes, []).append(f"{hours:,.1f} ({hours * nodes:,.0f})")
    for nodes, cells in by_nodes.items():
        lines.append(f"| {nodes} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg(points, curves, label):
    """Two panels: measured vs predicted images/s per rank; B/16 images/s against nodes."""
    w, h, pad = 420, 320, 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    # panel 1
    top = max(max(m, p) for m, p, _ in points) * 1.1
    def xy1(m, p):
        return pad + m / top * (w - 2 * pad), h - pad - p / top * (h - 2 * pad)
    x0, y0 = xy1(0, 0); x1, y1 = xy1(top, top)
    out.append(f'<polygon points="{x0},{y0} {xy1(top, top * 1.15)[0]},{xy1(top, top * 1.15)[1]} {x1},{y1} {xy1(top, top * 0.85)[0]},{xy1(top, top * 0.85)[1]}" fill="#e8f0ff"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#888"/>')
    colors = {1: "#000", 2: "#1f77b4", 4: "#d62728"}
    for m, p, hosts in points:
        x, y = xy1(m, p)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colors.get(hosts, "#2ca02c")}"/>')
    out.append(f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">measured images/s per rank</text>')
    out.append(f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">predicted images/s per rank</text>')
    out.append(f'<text x="{w / 2}" y="20" text-anchor="middle">model vs measurement (band: ±15%; 1 host black, 2 blue, 4 red)</text>')
    for tick in np.linspace(0, top, 5)[1:]:
        x, y = xy1(tick, 0)
        out.append(f'<text x="{x:.0f}" y="{y + 14:.0f}" text-anchor="middle">{tick:.0f}</text>')
        x, y = xy1(0, tick)
        out.append(f'<text x="{x - 4:.0f}" y="{y + 4:.0f}" text-anchor="end">{tick:.0f}</text>')
    # panel 2: log-log
    values = [v for c in curves.values() for _, v in c]
    low, high = math.log10(min(values) / 1.5), math.log10(max(values) * 1.5)
    def xy2(n, v):
        return w + pad + (math.log2(n) - 3) / 6 * (w - 2 * pad), h - pad - (math.log10(v) - low) / (high - low) * (h - 2 * pad)
    palette = {10: "#d62728", 25: "#ff7f0e", 100: "#2ca02c"}
    for gbit, curve in curves.items():
        path = " ".join(f"{xy2(n, v)[0]:.1f},{xy2(n, v)[1]:.1f}" for n, v in curve)
        out.append(f'<polyline points="{path}" fill="none" stroke="{palette[gbit]}" stroke-width="2"/>')
        x, y = xy2(*curve[-1])
        out.append(f'<text x="{x - 4:.0f}" y="{y - 6:.0f}" text-anchor="end" fill="{palette[gbit]}">{gbit} Gbit/s</text>')
    for n in (8, 16, 32, 64, 128, 256, 512):
        x, y = xy2(n, 10 ** low)
        out.append(f'<text x="{x:.0f}" y="{y + 14:.0f}" text-anchor="middle">{n}</text>')
    for e in range(math.ceil(low), math.floor(high) + 1):
        x, y = xy2(8, 10 ** e)
        out.append(f'<text x="{x - 4:.0f}" y="{y + 4:.0f}" text-anchor="end">1e{e}</text>')
        out.append(f'<line x1="{x}" y1="{y}" x2="{xy2(512, 1)[0]}" y2="{y}" stroke="#eee"/>')
    out.append(f'<text x="{w + w / 2}" y="{h - 12}" text-anchor="middle">nodes</text>')
    out.append(f'<text x="{w + w / 2}" y="20" text-anchor="middle">Mixer-B/16 predicted images/s, batch 4096 ({label})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", help="JSON lines of launch/scaling")
    parser.add_argument("--b16", help="a `mixer-dist bench --preset B/16` JSON line (per-image compute time)")
    parser.add_argument("--b16-images-per-second", type=float, default=1000.0,
                        help="assumed B/16 training images/s of one node for the second table (default 1000)")
    parser.add_argument("--b16-alpha", type=float,
                        help="per-message latency (s) for the B/16 tables (default: the fitted alpha_2, at least 10 us)")
    parser.add_argument("--recipe-images", type=float,
                        help="training images of a recipe (e.g. 300 epochs x 1,268,355 = 380.5e6 for big_vision's "
                             "Mixer-B/16 ImageNet-1k config): also print its cost, hours and node-hours, per node count")
    parser.add_argument("--recipe-label", default="the recipe", help="the recipe's name in the cost table")
    parser.add_argument("--svg", help="write the plot here")
    parser.add_argument("--json", action="store_true", help="print the fitted parameters and predictions as JSON only")
    args = parser.parse_args()
    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    if not runs:
        raise SystemExit(f"scaling_model.py: {args.runs} holds no runs")
    model = fit(runs)
    rows = []
    for r in runs:
        measured = r["images_per_second"] / r["ranks"]
        predicted = r["batch"] / predict_step(model, r)
        rows.append((r, measured, predicted, predicted / measured - 1))
    worst = max(abs(e) for *_, e in rows)
    if args.json:
        print(json.dumps({"alpha": model["alpha"], "eta": model["eta"], "unshaped_bits": model["unshaped_bits"],
                          "hidden": model["hidden"], "worst_error": worst,
                          "wait": {str(n): w for n, w in model["wait"].items()},
                          "predicted": [p for _, _, p, _ in rows]}))
        return
    unshaped = ("too fast to resolve (taken as infinite)" if math.isinf(model["unshaped_bits"])
                else f"{model['unshaped_bits'] / 1e9:.1f} Gbit/s")
    print(f"Fitted: per-message latency " + ", ".join(f"alpha_{n} = {a * 1e6:.0f} us" for n, a in model["alphas"].items())
          + f", shaped links deliver "
          f"eta = {model['eta']:.0%} of their rate, unshaped links {unshaped}, "
          f"backward hides communication for h = {model['hidden']:.0%} of its length, waits for the slowest "
          f"rank " + ", ".join(f"w_{n} = {w * 1e3:.0f} ms" for n, w in model["wait"].items()) + ". "
          f"Worst error of the prediction: {worst:.1%}.\n")
    print("| hosts | link | reduction | overlap | format | images/s per rank measured | predicted | error | communication ms | not hidden ms |")
    print("|---:|---|---|---|---|---:|---:|---:|---:|---:|")
    for r, m, p, e in rows:
        parts = describe(r)
        fmt = parts[4] + (f", {parts[5]}" if len(parts) > 5 else "")
        print(f"| {parts[0]} | {parts[1]} | {parts[2]} | {parts[3]} | {fmt} | {m:.1f} | {p:.1f} | {e:+.1%} | "
              f"{r['communication_seconds'] * 1e3:.0f} | {r['exposed_seconds'] * 1e3:.0f} |")
    print()
    tables = []
    if args.b16:
        with open(args.b16) as f:
            b16 = json.loads([line for line in f if line.strip()][-1])
        measured_per_image = b16["seconds_per_step"] / b16["batch"] / b16["ranks"]
        tables.append((measured_per_image, f"a node = this machine, {1 / measured_per_image:.2f} images/s measured"))
    tables.append((1 / args.b16_images_per_second, f"a node at {args.b16_images_per_second:,.0f} images/s (assumed)"))
    curves = None
    alpha = args.b16_alpha if args.b16_alpha is not None else max(model["alpha"], 10e-6)
    curves_by_label = {}
    for per_image, label in tables:
        text, curves_here = b16_table(model, per_image, label, alpha)
        print(text + "\n")
        curves, curve_label = curves_here, label
        curves_by_label[label] = curves_here
    if args.recipe_images:
        for per_image, label in tables:
            print(cost_table(curves_by_label[label], args.recipe_images, args.recipe_label, label) + "\n")
    # the same fast nodes with the old fixed default (131,072 floats: 457 buckets) for comparison
    text, _ = b16_table(model, tables[-1][0], tables[-1][1], alpha, buckets=OLD_DEFAULT_BUCKETS)
    print(text.replace(f"{OLD_DEFAULT_BUCKETS} buckets", f"{OLD_DEFAULT_BUCKETS} buckets (the old default "
                       "--bucket-size 131072)", 1) + "\n")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg([(m, p, r["hosts"]) for r, m, p, _ in rows], curves, curve_label))


if __name__ == "__main__":
    sys.exit(main())
