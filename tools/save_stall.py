#!/usr/bin/env python3
"""The stall a checkpoint save adds to training, synchronous against asynchronous (issue 29).

  tools/save_stall.py [--preset S/16] [--ranks 2] [--batch 8] [--steps 13] [--save-every 4]
                      [--repeats 2] [--binary PATH]

Runs the same short training job under launch/mpirun three ways, interleaved (`--repeats` rounds
of none, sync, async, so a drifting machine hits all alike): without periodic saves, with
`--save-every N --save-mode sync` and with `--save-mode async`, each with `--trace`. Two measures:
- the stall: the time rank 0's training thread spends in checkpoint spans during the steps (the
  whole save when synchronous; the copy, the folder's preparation and any wait for an unfinished
  save when asynchronous; not the last step's save, which both modes wait for), per save and as
  a fraction of the unsaved run's median step;
- the extra time of the steps: every step's wall time (consecutive `seconds` records of
  metrics.jsonl, `--log-every 1`) from the first save on, summed, minus the same sum of the
  unsaved run of that round; it also holds what the background write takes from the compute
  (the same cores), and the machine's drift between runs.
Peak memory is each rank's maximum resident set (/usr/bin/time).

The data is a folder of 224 px PNGs this script writes (two classes, random pixels: the content
does not matter for timing). The output names the machine, the OpenBLAS kernel and the date.
Needs mpirun, /usr/bin/time and the release binary (--binary, else $MIXER_DIST_BIN, else
.build/release/mixer-dist).
"""
import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write_png(path, width, height, rng):
    """An RGB PNG of random pixels (zlib and struct only)."""
    rows = b"".join(b"\x00" + bytes(rng.getrandbits(8) for _ in range(3 * width)) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def write_folder(root, per_class, size):
    rng = random.Random(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in ("a", "b"):
            folder = os.path.join(root, split, c)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                write_png(os.path.join(folder, f"{i}.png"), size, size, rng)


def machine():
    cpu = "unknown"
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if x in flags]
    return f"{cpu}, {os.cpu_count()} cores, {'/'.join(isa) or 'no AVX2'}, {platform.system()} {platform.release()}"


def run_job(args, mode, work, binary, folder):
    run = os.path.join(work, f"run-{mode}")
    shutil.rmtree(run, ignore_errors=True)
    wrapper = os.path.join(work, "timed")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec /usr/bin/time -f %M -o \"$TIMED_DIR/rss.$OMPI_COMM_WORLD_RANK\" "
                f"\"{binary}\" \"$@\"\n")
    os.chmod(wrapper, 0o755)
    save = ["--save-every", "0"] if mode == "none" else ["--save-every", str(args.save_every), "--save-mode", mode]
    command = [os.path.join(ROOT, "launch", "mpirun"), "-n", str(args.ranks), "--", "train", "--preset", args.preset,
               "--data", f"folder:{folder}", "--batch", str(args.batch), "--steps", str(args.steps), "--log-every", "1",
               "--eval-every", "0", "--save-every-minutes", "0", "--warmup", "1", "--threads", "1", "--run-dir", run,
               "--loader-workers", "1", "--timeout", "1200", "--trace", os.path.join(run, "trace")] + save
    env = dict(os.environ, MIXER_DIST_BIN=wrapper, TIMED_DIR=work, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for r in range(args.ranks):
        try:
            os.remove(os.path.join(work, f"rss.{r}"))
        except FileNotFoundError:
            pass
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"save_stall: {mode} run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    seconds = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "train":
                seconds[record["step"]] = record["seconds"]
    steps = sorted(seconds)
    times = {s: seconds[s] - seconds[p] for p, s in zip(steps, steps[1:])}
    rss = []
    for r in range(args.ranks):
        with open(os.path.join(work, f"rss.{r}")) as f:
            rss.append(int(f.read().split()[-1]) / 1024)  # KiB -> MiB
    bytes_saved = 0
    ck = os.path.join(run, "checkpoints")
    for name in sorted(x for x in os.listdir(ck) if x.startswith("step-")):
        folder_path = os.path.join(ck, name)
        bytes_saved = sum(os.path.getsize(os.path.join(folder_path, x)) for x in os.listdir(folder_path))
    with open(os.path.join(run, "trace", "trace.json")) as f:
        events = json.load(f)["traceEvents"]
    steps_x = [e for e in events if e.get("cat") == "step" and e["pid"] == 0]
    end_of_steps = max(e["ts"] + e["dur"] for e in steps_x)
    # (not the last step's save, which is always waited for)
    stall = sum(e["dur"] for e in events if e.get("cat") == "checkpoint" and e["pid"] == 0 and e["tid"] == 0
                and e["ts"] + e["dur"] <= end_of_steps + 1 and f"(step {args.steps})" not in e["name"]) / 1e6
    shutil.rmtree(run, ignore_errors=True)
    core = re.search(r"OpenBLAS thread\(s\) per rank \(([^)]*)\)", result.stdout)
    return times, rss, bytes_saved, core.group(1) if core else "?", stall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--preset", default="S/16")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=13)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--binary", default=os.environ.get("MIXER_DIST_BIN", os.path.join(ROOT, ".build/release/mixer-dist")))
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="save-stall-")
    try:
        folder = os.path.join(work, "data")
        write_folder(folder, per_class=max(args.batch, 8), size=224)
        first_save = args.save_every + 1  # the interval after step N holds the save of step N
        rows = []
        for round_index in range(args.repeats):
            runs = {mode: run_job(args, mode, work, binary, folder) for mode in ("none", "sync", "async")}
            base_times = runs["none"][0]
            median = statistics.median(base_times.values())
            span = [s for s in base_times if s >= first_save]  # (the last step's save comes after its record)
            saves = len([s for s in range(args.save_every, args.steps, args.save_every)])
            for mode in ("sync", "async"):
                times, rss, size, core, stall = runs[mode]
                extra = sum(times[s] for s in span) - sum(base_times[s] for s in span)
                rows.append((round_index + 1, mode, median, saves, stall / saves, stall / saves / median, extra,
                             extra / saves / median, max(rss), max(runs["none"][1]), size))
        print(f"save_stall: {args.preset}, {args.ranks} ranks x 1 thread, global batch {args.batch}, "
              f"{args.steps} steps, a save every {args.save_every}")
        print(f"machine: {machine()}; OpenBLAS kernel {core}")
        print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; binary {binary}")
        print()
        print("| round | save mode | median step (s) | saves | stall per save (s) | of one step | extra step time, all saves (s) | per save, of one step | peak RSS per rank (MiB) | unsaved run (MiB) | checkpoint (MB) |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r, mode, median, saves, stall, stall_share, extra, share, rss, base_rss, size in rows:
            print(f"| {r} | {mode} | {median:.2f} | {saves} | {stall:.3f} | {100 * stall_share:.1f}% | {extra:+.2f} | "
                  f"{100 * share:+.1f}% | {rss:.0f} | {base_rss:.0f} | {size / 1e6:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
