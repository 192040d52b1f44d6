#!/usr/bin/env python3
"""mixer-dist beside its anchors, in one run (docs/performance.md says what it measures); with
--into FILE the table goes between FILE's `<!-- compare-table:begin -->` and `:end -->` markers.

    tools/compare.py [--threads "1 2"] [--rounds N] [--train "cifar:128 S/16:32"] [--no-inference]
                     [--quick] [--bin PATH] [--out compare.jsonl] [--into FILE]
    tools/compare.py --render compare.jsonl [--into FILE]

For each thread count, side by side in one invocation:
- training: `mixer-dist bench` on `cifar` at batch 128 and `S/16` at batch 32, in fp32 and bf16,
  against the official model jitted in JAX (`tools/make_reference.py --bench`, the same shapes
  and batch, fp32 with the highest matmul precision, Adam), its threads set by the CPU affinity
  (`taskset`: JAX has no thread count of its own);
- inference: `mixer-dist bench --inference` on `B/16` (batch-1 latency, batch-B images/s) in fp32,
  bf16 and int8, against ONNX Runtime on the same model exported by `mixer-dist export --format
  onnx` (random weights of B/16's shapes), fp32 and after ONNX Runtime's own dynamic int8
  quantization (`tools/onnx_compare.py bench`).

With --rounds N (default 1) every training row runs N rounds, each round mixer-dist fp32, bf16
and JAX back to back, so a ratio is taken within a round (an interleaved pair) and the VM's drift
between rounds shows as the range beside the median; --train picks the training rows (PRESET:BATCH),
--no-inference leaves out the inference rows.

The table's header names the CPU model, its ISA flags, the OpenBLAS kernel that ran, whether
`OPENBLAS_CORETYPE` came from the environment, the binary's commit and the date; every
measurement is also one JSON line in --out. --quick checks the script in a few minutes (small
steps, `S/16` inference at 64 px instead of B/16 at 224). JAX (jax, flax, optax) and ONNX
Runtime must be installed (pip); a missing one is named and its rows are left out. Run it alone:
other load on the machine changes every figure.
"""
import argparse
import datetime
import json
import os
import re
import shlex
from statistics import median
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_table  # noqa: E402
from perf_table import ROOT, commit, cpu_info, find_binary, run_bench  # noqa: E402

BEGIN, END = "<!-- compare-table:begin -->", "<!-- compare-table:end -->"


def fail(message):
    print(f"tools/compare.py: {message}", file=sys.stderr)
    sys.exit(2)


perf_table.fail = fail  # the shared helpers' errors name this script


def emit(text, into):
    """Prints `text`, or puts it between the compare-table markers of the file `into`."""
    perf_table.emit(text, into, markers=(BEGIN, END), script="tools/compare.py")


def affinity(threads):
    """`taskset` prefix pinning a process to the first `threads` CPUs."""
    return ["taskset", "-c", ",".join(str(c) for c in range(threads))]


def jax_bench(preset, batch, threads, steps):
    """images/s (median step) of the official model's jitted train step in JAX."""
    command = affinity(threads) + [sys.executable, os.path.join(ROOT, "tools", "make_reference.py"), "--bench",
                                   "--bench-preset", preset, "--batch", str(batch), "--steps", str(steps),
                                   "--warmup", "2"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    found = re.search(r"\(median ([\d.]+),", out.stdout)
    if out.returncode != 0 or not found:
        fail(f"JAX bench failed (status {out.returncode}): {shlex.join(command)}: "
             f"{(out.stderr.strip().splitlines() or [out.stdout.strip()])[-1]}")
    return float(found.group(1)), command


def onnx_model(binary, preset, extra, work):
    """B/16 (or --quick's S/16) with random weights, exported to ONNX by mixer-dist."""
    import numpy as np
    described = subprocess.run([binary, "describe", "--preset", preset] + extra, capture_output=True, text=True,
                               check=True).stdout
    rng = np.random.default_rng(0)
    arrays = {}
    for line in described.splitlines():
        found = re.match(r"^(\S+/(kernel|bias|scale))\s+\[([\d, ]+)\]", line)
        if not found:
            continue
        shape = tuple(int(s) for s in found.group(3).split(","))
        kind = found.group(2)
        arrays[found.group(1)] = (np.ones(shape, np.float32) if kind == "scale" else np.zeros(shape, np.float32)
                                  if kind == "bias" else
                                  (rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32))
    npz, weights, onnx = (os.path.join(work, name) for name in ("weights.npz", "weights", "model.onnx"))
    np.savez(npz, **arrays)
    subprocess.run([binary, "import", npz, "--output", weights], capture_output=True, check=True)
    subprocess.run([binary, "export", weights, "--format", "onnx", "--output", onnx], capture_output=True, check=True)
    return onnx


def onnx_bench(model, threads, batch, repeats):
    command = [sys.executable, os.path.join(ROOT, "tools", "onnx_compare.py"), "bench", model, "--threads",
               str(threads), "--batch", str(batch), "--repeats", str(repeats)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        fail(f"ONNX Runtime bench failed (status {out.returncode}): {shlex.join(command)}")
    return lines, command


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1 2")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each training row (interleaved pairs)")
    parser.add_argument("--train", help='training rows as PRESET:BATCH words (default "cifar:128 S/16:32")')
    parser.add_argument("--no-inference", action="store_true", help="leave out the inference rows")
    parser.add_argument("--bin")
    parser.add_argument("--out", help="JSON lines of every measurement")
    parser.add_argument("--into", help="replace the compare table between its markers in this file")
    parser.add_argument("--render", metavar="JSONL", help="print (or write --into) the tables of a saved --out file")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as f:
            saved = [json.loads(line) for line in f if line.strip()]
        machine = next(r for r in saved if r["kind"] == "machine")
        records = [r for r in saved if r["kind"] != "machine"]
        inference = [r for r in records if r["kind"] == "inference"]
        quick = machine["quick"]
        emit(render(machine, records, inference[0]["preset"] if inference else "B/16",
                    ["--image-size", "64"] if quick else [], 4 if quick else 16), args.into)
        return 0
    binary = find_binary(args.bin)
    try:
        threads = [int(t) for t in args.threads.split()]
        train_rows = ([(w.split(":")[0], int(w.split(":")[1])) for w in args.train.split()] if args.train is not None
                      else None)
    except (ValueError, IndexError):
        fail(f"--threads takes counts (\"1 2\") and --train PRESET:BATCH words (\"cifar:128 S/16:32\"): "
             f"got {args.threads!r} and {args.train!r}")
    if args.rounds < 1 or not threads or min(threads) < 1:
        fail("--rounds and every --threads count must be at least 1")
    quick = args.quick
    steps = 2 if quick else 5
    if train_rows is None:
        train_rows = [("cifar", 32 if quick else 128), ("S/16", 4 if quick else 32)]
    infer_preset, infer_extra = ("S/16", ["--image-size", "64"]) if quick else ("B/16", [])
    infer_batch = 4 if quick else 16
    missing = [m for m in ("jax", "flax", "optax", "onnxruntime", "numpy") if not have(m)]
    if missing:
        print(f"tools/compare.py: not installed: {', '.join(missing)} (pip install); their rows are left out",
              file=sys.stderr)
    use_jax = not {"jax", "flax", "optax"} & set(missing)
    use_ort = not {"onnxruntime", "numpy"} & set(missing)

    records = []
    machine = dict(cpu_info(), date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   commit=commit(), coretype=os.environ.get("OPENBLAS_CORETYPE"), quick=quick,
                   command="tools/compare.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
                   load_start=os.getloadavg()[0])
    cores, kernels = set(), set()

    def note(record):
        records.append(record)
        print(json.dumps(record), file=sys.stderr)

    for t in threads:
        for preset, batch in train_rows:
            for round_ in range(args.rounds):
                for precision in ("fp32", "bf16"):
                    command = [binary, "bench", "--preset", preset, "--batch", str(batch), "--threads", str(t),
                               "--steps", str(steps), "--warmup", "1", "--precision", precision]
                    result, _ = run_bench(command, 3600)
                    cores.add(result.get("blas_core"))
                    kernels.add(result.get("kernel_isa"))
                    note(dict(kind="train", runtime="mixer-dist", preset=preset, batch=batch, threads=t, round=round_,
                              precision=precision, images_per_second=result["images_per_second"], mfu=result["mfu"],
                              command=shlex.join(command)))
                if use_jax:
                    rate, command = jax_bench(preset, batch, t, steps)
                    note(dict(kind="train", runtime="jax", preset=preset, batch=batch, threads=t, round=round_,
                              precision="fp32", images_per_second=rate, command=shlex.join(command)))
        if args.no_inference:
            continue
        for precision in ("fp32", "bf16", "int8"):
            command = [binary, "bench", "--inference", "--preset", infer_preset] + infer_extra + [
                "--precision", precision, "--threads", str(t), "--batch", str(infer_batch), "--steps", str(steps)]
            result, _ = run_bench(command, 3600)
            note(dict(kind="inference", runtime="mixer-dist", preset=infer_preset, threads=t, precision=precision,
                      latency_ms=result["latency_seconds"] * 1e3, images_per_second=result["images_per_second"],
                      command=shlex.join(command)))
    if use_ort and not args.no_inference:
        with tempfile.TemporaryDirectory(prefix="compare-") as work:
            model = onnx_model(binary, infer_preset, infer_extra, work)
            for t in threads:
                lines, command = onnx_bench(model, t, infer_batch, 3 if quick else 10)
                for line in lines:
                    note(dict(kind="inference", runtime="onnxruntime", preset=infer_preset, threads=t,
                              precision=line["runtime"].replace("onnxruntime ", ""),
                              latency_ms=line["latency_seconds"] * 1e3, images_per_second=line["images_per_second"],
                              command=shlex.join(command)))
    machine["blas_core"] = ", ".join(sorted(c for c in cores if c))
    machine["kernel_isa"] = ", ".join(sorted(k for k in kernels if k))
    machine["load_end"] = os.getloadavg()[0]
    if args.out:
        with open(args.out, "w") as f:
            for record in [dict(kind="machine", **machine)] + records:
                f.write(json.dumps(record) + "\n")
    emit(render(machine, records, infer_preset, infer_extra, infer_batch), args.into)


def render(machine, records, infer_preset, infer_extra, infer_batch):
    coretype = (f"`OPENBLAS_CORETYPE={machine['coretype']}` from the environment" if machine["coretype"]
                else "`OPENBLAS_CORETYPE` unset")
    lines = [f"{machine['date']}, {machine['cpu']}, {machine['cores']} cores, ISA {' '.join(machine['isa']) or '-'}"
             f" (absent: {' '.join(machine['isa_absent']) or '-'}), OpenBLAS `{machine['blas_core']}`, {coretype},"
             f" elementwise kernels `{machine.get('kernel_isa') or '?'}`,"
             f" commit {machine['commit']}, load average {machine['load_start']:.1f} at the start and"
             f" {machine['load_end']:.1f} at the end; `{machine['command']}`"
             + (" (quick: not for quoting)" if machine["quick"] else ""),
             "", "| training | threads | mixer-dist fp32 | mixer-dist bf16 (×fp32) | JAX fp32 | mixer-dist fp32 / JAX |",
             "|---|---:|---:|---:|---:|---:|"]
    train = [r for r in records if r["kind"] == "train"]
    keys = sorted({(r["preset"], r["batch"], r["threads"]) for r in train}, key=lambda k: (k[0] != "cifar", k[2]))
    rounds = max([r.get("round", 0) + 1 for r in train] or [1])
    if rounds > 1:
        lines[1:1] = ["", f"{rounds} rounds of each training row, each round mixer-dist fp32, bf16 and JAX back to"
                          " back: the median over the rounds, the rounds' range in brackets; a ratio is taken within"
                          " each round (an interleaved pair)"]
    for preset, batch, t in keys:
        def rates(runtime, precision):
            """round -> record"""
            return {r.get("round", 0): r for r in train
                    if (r["preset"], r["batch"], r["threads"], r["runtime"], r["precision"]) ==
                    (preset, batch, t, runtime, precision)}
        fp32, bf16, jax = rates("mixer-dist", "fp32"), rates("mixer-dist", "bf16"), rates("jax", "fp32")

        def cell(values, form, unit=""):
            """the median of `values` (and their range when there are several), or '-'"""
            if not values:
                return "-"
            text = form(median(values)) + unit
            return text + (f" [{form(min(values))}–{form(max(values))}]" if len(values) > 1 else "")

        def two(value):
            return f"{value:.2f}"
        fp32_rate = [r["images_per_second"] for r in fp32.values()]
        cells = [(cell(fp32_rate, two, " img/s") + f" (mfu {median([r['mfu'] for r in fp32.values()]):.2f})")
                 if fp32 else "-",
                 cell([r["images_per_second"] for r in bf16.values()], two) + " (" + cell(
                     [bf16[k]["images_per_second"] / fp32[k]["images_per_second"] for k in bf16 if k in fp32],
                     two, "×") + ")" if bf16 and fp32 else "-",
                 cell([r["images_per_second"] for r in jax.values()], two),
                 cell([fp32[k]["images_per_second"] / jax[k]["images_per_second"] for k in jax if k in fp32], two, "×")]
        lines.append(f"| `{preset}` b{batch} | {t} | " + " | ".join(cells) + " |")
    infer = [r for r in records if r["kind"] == "inference"]
    if not infer:
        return "\n".join(lines)
    size = f"{infer_preset}" + (f" {' '.join(infer_extra)}" if infer_extra else "")
    lines += ["", f"| inference `{size}` | threads | batch-1 latency (ms) | batch-{infer_batch} images/s |",
              "|---|---:|---:|---:|"]
    order = ["fp32", "bf16", "int8", "int8 dynamic"]
    for r in sorted(infer, key=lambda r: (r["threads"], r["runtime"] != "mixer-dist",
                                          order.index(r["precision"]) if r["precision"] in order else 9)):
        name = ("mixer-dist " if r["runtime"] == "mixer-dist" else "ONNX Runtime ") + r["precision"]
        lines.append(f"| {name} | {r['threads']} | {r['latency_ms']:.1f} | {r['images_per_second']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
