#!/usr/bin/env python3
"""The tables of docs/performance.md, from one benchmark run of `mixer-dist bench`.

    python3 tools/perf_table.py run [--bin PATH] [--presets "cifar:32 tiny:128"] [--threads "1 2"]
                                    [--steps 3] [--warmup 1] [--precisions fp32] [--inference]
                                    [--commit HASH] [--out perf.jsonl] [--into docs/performance.md]
    python3 tools/perf_table.py render perf.jsonl [--into docs/performance.md]

`run` records the machine (date in UTC, CPU model, the ISA flags that matter to the kernels, core
count, kernel, the binary's commit: --commit, else this checkout's HEAD), then runs `mixer-dist bench` once per preset:batch,
thread count and precision, and keeps each run's command and the JSON line `bench` prints last
(its `blas_core` is the OpenBLAS kernel that ran). With --inference it also runs
`bench --inference` per preset and thread count. Every record is one JSON line in --out; the
Markdown tables go to stdout, or with --into replace the text between the markers
`<!-- perf-table:begin -->` and `<!-- perf-table:end -->` of that file.
`render` prints (or writes --into) the same tables again from a saved --out file.

The binary is --bin, else $MIXER_DIST_BIN, else `mixer-dist` on the PATH, else
.build/release/mixer-dist. Run it alone: other load on the machine changes every figure.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

BEGIN = "<!-- perf-table:begin -->"
END = "<!-- perf-table:end -->"
# the ISA extensions the kernels care about: fp32 sgemm (AVX2/FMA or AVX-512), bf16 and int8 on oneDNN
ISA_FLAGS = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message):
    print(f"tools/perf_table.py: {message}", file=sys.stderr)
    sys.exit(2)


def find_binary(given):
    for candidate in (given, os.environ.get("MIXER_DIST_BIN"), shutil.which("mixer-dist"),
                      os.path.join(ROOT, ".build", "release", "mixer-dist")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    fail("no mixer-dist binary (give --bin, set MIXER_DIST_BIN, or run launch/setup)")


def cpu_info():
    """CPU model, ISA flags present and absent (from /proc/cpuinfo), logical cores."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or "unknown",
        "isa": [f for f in ISA_FLAGS if f in flags],
        "isa_absent": [f for f in ISA_FLAGS if f not in flags],
        "cores": os.cpu_count(),
    }


def commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def last_json_line(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def run_bench(command, timeout):
    started = time.monotonic()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"timed out after {timeout} s: {shlex.join(command)}")
    result = last_json_line(out.stdout)
    if out.returncode != 0 or result is None:
        message = (out.stderr.strip().splitlines() or ["no JSON line"])[-1]
        fail(f"failed (status {out.returncode}): {shlex.join(command)}: {message}")
    return result, time.monotonic() - started


def run(args):
    entries = []
    for entry in args.presets.split():
        preset, sep, batch = entry.rpartition(":")
        if not sep or not preset or not batch.isdigit() or int(batch) <= 0:
            fail(f"'{entry}' is not PRESET:BATCH (e.g. cifar:32)")
        entries.append((preset, int(batch)))
    threads = args.threads.split()
    if not threads or not all(t.isdigit() and int(t) > 0 for t in threads):
        fail(f"--threads takes positive integers, got '{args.threads}'")
    if args.steps <= 0 or args.warmup < 0:
        fail("--steps must be positive and --warmup non-negative")
    binary = find_binary(args.bin)
    records = [dict(kind="machine", date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    kernel=f"{platform.system()} {platform.release()}", commit=args.commit or commit(),
                    openblas_coretype_env=os.environ.get("OPENBLAS_CORETYPE"),
                    load_average=list(os.getloadavg()), **cpu_info())]
    for preset, batch in entries:
        for t in threads:
            for precision in args.precisions.split():
                command = [binary, "bench", "--preset", preset, "--batch", str(batch), "--threads", t,
                           "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", precision]
                result, wall = run_bench(command, args.timeout)
                records.append(dict(kind="bench", command=shown(command), wall_seconds=round(wall, 1), result=result))
                print(f"tools/perf_table.py: {shown(command)}: {result['images_per_second']:.1f} images/s",
                      file=sys.stderr)
            if args.inference:
                command = [binary, "bench", "--inference", "--preset", preset, "--threads", t]
                result, wall = run_bench(command, args.timeout)
                records.append(dict(kind="inference", command=shown(command), wall_seconds=round(wall, 1), result=result))
    records.append(dict(kind="end", date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        load_average=list(os.getloadavg())))
    if args.out:
        with open(args.out, "w") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    emit(render(records), args.into)


def shown(command):
    """the command as a reader types it: the binary as `mixer-dist`"""
    return shlex.join(["mixer-dist"] + command[1:])


def figure(value):
    """three significant figures (0.842, 8.42, 84.2, 842)"""
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def render(records):
    machine = next((r for r in records if r["kind"] == "machine"), None)
    if machine is None:
        fail("no machine record in the input")
    end = next((r for r in records if r["kind"] == "end"), {})
    benches = [r for r in records if r["kind"] == "bench"]
    inferences = [r for r in records if r["kind"] == "inference"]
    cores = sorted({r["result"].get("blas_core", "?") for r in benches}) or ["(no training bench)"]
    lines = [
        f"Generated by `tools/perf_table.py` from a run on {machine['date']}"
        + (f" (commit `{machine['commit']}`)" if machine.get("commit") else "") + ".",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} logical cores, {machine['kernel']}",
        f"- ISA: {' '.join(machine['isa']) or 'none of the listed'}"
        + (f" (not: {' '.join(machine['isa_absent'])})" if machine.get("isa_absent") else ""),
        f"- OpenBLAS core (from `bench`): {', '.join(cores)}"
        + (f"; OPENBLAS_CORETYPE={machine['openblas_coretype_env']}" if machine.get("openblas_coretype_env") else
           "; OPENBLAS_CORETYPE unset"),
        f"- Load average at start / end: {' '.join(f'{x:.2f}' for x in machine['load_average'])}"
        + (f" / {' '.join(f'{x:.2f}' for x in end['load_average'])}" if end.get("load_average") else ""),
        "",
    ]
    if benches:
        lines += [
            "Training steps (`bench`: forward, backward and optimizer of the one training step on a fresh model):",
            "",
            "| preset | batch | threads | precision | images/s | step ms | GFLOP/s | sgemm GFLOP/s | mfu (steps' range) | ceiling median / slowest | command |",
            "|---|---:|---:|---|---:|---:|---:|---:|---|---|---|",
        ]
        for r in benches:
            d = r["result"]
            mfu = figure(d["mfu"])
            if len(d.get("mfu_range", [])) == 2:
                mfu += f" ({d['mfu_range'][0]:.2f}–{d['mfu_range'][1]:.2f})"
            runs = sorted(d.get("ceiling_runs_gflops", []))
            ceiling = "–"
            if runs and runs[-1] > 0:
                median = runs[len(runs) // 2] if len(runs) % 2 else (runs[len(runs) // 2 - 1] + runs[len(runs) // 2]) / 2
                ceiling = f"{median / runs[-1]:.2f} / {runs[0] / runs[-1]:.2f}"
            rate = figure(d["bf16_gflops"]) + " (bf16)" if d.get("bf16_gflops") else figure(d["sgemm_gflops"])
            lines.append(
                f"| `{d['preset']}` | {d['batch']} | {d['threads']} | {d['precision']} | {figure(d['images_per_second'])} "
                f"| {figure(d['seconds_per_step'] * 1e3)} | {figure(d['gflops'])} | {rate} | {mfu} | {ceiling} "
                f"| `{r['command']}` |")
        lines.append("")
    if inferences:
        lines += [
            "Inference (`bench --inference`: the evaluation forward through the inference plan):",
            "",
            "| preset | threads | products | batch-1 latency ms | batch | images/s | command |",
            "|---|---:|---|---:|---:|---:|---|",
        ]
        for r in inferences:
            d = r["result"]
            lines.append(
                f"| `{d['preset']}` | {d['threads']} | {d['precision']} | {figure(d['latency_seconds'] * 1e3)} "
                f"| {d['throughput_batch']} | {figure(d['images_per_second'])} | `{r['command']}` |")
        lines.append("")
    return "\n".join(lines)


def emit(text, into, markers=(BEGIN, END), script="tools/perf_table.py"):
    """Prints `text`, or puts it between the `markers` of the file `into`."""
    begin, end = markers
    if not into:
        print(text)
        return
    with open(into) as f:
        page = f.read()
    start, stop = page.find(begin), page.find(end)
    if start < 0 or stop < start:
        fail(f"{into} has no '{begin}' ... '{end}' markers")
    with open(into, "w") as f:
        f.write(page[:start + len(begin)] + "\n" + text + "\n" + page[stop:])
    print(f"{script}: wrote the tables into {into}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run", help="run the benchmarks, save the records, print the tables")
    r.add_argument("--bin", help="the mixer-dist binary")
    r.add_argument("--presets", default="cifar:32 tiny:128", help="PRESET:BATCH entries (default: %(default)s)")
    r.add_argument("--threads", default="1 2", help="thread counts (default: %(default)s)")
    r.add_argument("--precisions", default="fp32", help="fp32 and/or bf16 (bf16 needs AVX512-BF16; default: %(default)s)")
    r.add_argument("--steps", type=int, default=3, help="timed steps per bench (default: %(default)s)")
    r.add_argument("--warmup", type=int, default=1, help="untimed steps per bench (default: %(default)s)")
    r.add_argument("--inference", action="store_true", help="also run bench --inference per preset and thread count")
    r.add_argument("--commit", help="the commit the binary was built from (default: this checkout's HEAD)")
    r.add_argument("--timeout", type=int, default=900, help="seconds per bench command (default: %(default)s)")
    r.add_argument("--out", help="write the records here (JSON lines)")
    r.add_argument("--into", help="replace the tables between the markers of this Markdown file")
    p = sub.add_parser("render", help="print the tables of a saved run")
    p.add_argument("records", help="the JSON lines written by run --out")
    p.add_argument("--into", help="replace the tables between the markers of this Markdown file")
    args = parser.parse_args()
    if args.mode == "run":
        run(args)
    else:
        try:
            with open(args.records) as f:
                records = [json.loads(line) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as error:
            fail(f"cannot read {args.records}: {error}")
        emit(render(records), args.into)


if __name__ == "__main__":
    main()
