#!/usr/bin/env python3
"""The failure tour of issue 24 ("Field trust, round two"): every failure a new user met,
reproduced as the user met it, on real files and real processes, with what mixer-dist does now.

  tools/failure_tour.py [--binary PATH] [--only 1,4,7] [--keep-temp]

For each failure of the issue's list it runs the user's command (symlinks in a class folder,
export to .onnx, kill -9 before the first save, launch/resilient, a corrupt JPEG on 1 and 2 ranks,
a full and a read-only tmpfs, periodic saves, int8 against ONNX Runtime, Ctrl-C/SIGTERM under
mpirun, missing checkpoint files, eval from another folder, warm-up, crop flags and accuracy,
YAML errors, resumed time, --version, --help, errors under mpirun), checks the expected behaviour
itself (nothing here is a recorded result) and prints one Markdown table:

  failure | command (short) | exit status | message | checkpoint left | verdict

"message" is the first line of stderr that carries the outcome (launch/mpirun's echo of its
mpirun line and warnings are skipped unless they are the point), trimmed to about 200
characters; when stderr is empty, the stdout line that shows the behaviour ("stdout: ...").
In commands, $T is the tour's temporary folder and $SMALL/$SHAPES the small model's flags.
Exit status 0 when every expectation is met, 1 when one is not (or a scenario could not run).

Needs:
  * the mixer-dist binary: --binary, else $MIXER_DIST_BIN, else .build/release/mixer-dist;
  * mpirun (OpenMPI) on the PATH; launch/mpirun and launch/resilient of this repository;
  * root for scenario 5 (it mounts two small tmpfs and remounts one read-only; always unmounted
    in a finally block) — without root, scenario 5 reports that it could not run;
  * Python packages: numpy, onnx, onnxruntime (launch/test installs them), and for the image
    folder (scikit-learn's 1,797 digits written as 32 px PNG and JPEG class folders, 8x8
    upscaled by nearest neighbour) scikit-learn and Pillow, which launch/test does not install:
    `python3 -m pip install scikit-learn pillow` (this script is not run by a test).
Everything is written under one temporary folder, removed at the end (--keep-temp keeps it).
The whole tour takes a few minutes on 2 cores (1 OpenBLAS thread per process, small models).
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the failure tests' small model (Tests/MixerDistCLITests/FailureCheckpointTests.swift)
SMALL = ["--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8"]
SHAPES = SMALL + ["--train-examples", "256", "--val-examples", "32", "--batch", "16", "--threads", "1",
                  "--eval-every", "0"]
# a model that learns the digits in 200 steps of 64 images on one thread (about 10 s)
DIGITS_MODEL = ["--hidden", "64", "--blocks", "2", "--tokens-mlp", "32", "--channels-mlp", "128", "--patch", "4"]
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OPENBLAS_NUM_THREADS": "1"}
MPIRUN = ["mpirun", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1"]


class Tour:
    def __init__(self, binary, temp):
        self.binary = binary
        self.T = Path(temp)
        self.rows = []
        self._digits = None
        self._models = {}

    # ---- processes ---------------------------------------------------------------------------

    def run(self, cmd, timeout=120, cwd=None, env=None):
        """Runs cmd (a list; "mixer-dist" is the binary) in its own session; kills the whole group
        at the timeout. Returns a dict: status (int, or 'timeout'), stdout, stderr, seconds."""
        cmd = [self.binary if c == "mixer-dist" else str(c) for c in cmd]
        full_env = dict(os.environ, **MPI_ENV) if env is None else dict(os.environ, **env)
        started = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                             env=full_env, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
            status = p.returncode
        except subprocess.TimeoutExpired:
            kill_group(p)
            out, err = p.communicate()
            status = "timeout"
        return {"status": status, "stdout": out, "stderr": err, "seconds": time.monotonic() - started}

    def start(self, cmd, cwd=None):
        cmd = [self.binary if c == "mixer-dist" else str(c) for c in cmd]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                env=dict(os.environ, **MPI_ENV), start_new_session=True)

    def short(self, cmd):
        """The command as a user would read it: the binary as mixer-dist, the temp folder as $T and
        the small model's flags as $SMALL / $SHAPES."""
        words = [str(c) for c in cmd]
        text = " ".join(shlex.quote(w) for w in words)
        text = text.replace(" ".join(SHAPES), "$SHAPES").replace(" ".join(SMALL), "$SMALL")
        text = text.replace(" ".join(DIGITS_MODEL), "$DIGITS_MODEL")
        text = text.replace(" ".join(MPIRUN[1:]), "...")
        text = text.replace(self.binary, "mixer-dist").replace(str(REPO) + "/", "").replace(str(self.T), "$T")
        return text

    def inspect(self, folder):
        r = self.run(["mixer-dist", "inspect", folder], timeout=60)
        return r

    # ---- reporting ---------------------------------------------------------------------------

    def row(self, failure, cmd, result, ok, reason, checkpoint="n/a", message=None, status=None):
        if message is None:
            message = first_line(result["stderr"]) if result else ""
            if not message and result:
                message = "stdout: " + first_line(result["stdout"])
        self.rows.append({
            "failure": failure,
            "command": (cmd if isinstance(cmd, str) else self.short(cmd)).replace(str(self.T), "$T"),
            "status": status if status is not None else (result["status"] if result else ""),
            "message": trim(message.replace(str(self.T), "$T")) or "(stderr empty)",
            "checkpoint": checkpoint.replace(str(self.T), "$T") if checkpoint else "none",
            "ok": ok,
            "verdict": ("yes" if ok else "no") + (": " + reason.replace(str(self.T), "$T") if reason else ""),
        })

    def table(self):
        lines = ["| failure | command (short) | exit status | message | checkpoint left | verdict |",
                 "|---|---|---:|---|---|---|"]
        for r in self.rows:
            cells = [r["failure"], "`" + r["command"].replace("`", "'") + "`", str(r["status"]), r["message"],
                     r["checkpoint"], r["verdict"]]
            lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
        return "\n".join(lines)

    # ---- data --------------------------------------------------------------------------------

    def digits(self):
        """scikit-learn's 1,797 digits as class folders (train/ 4/5, val/ 1/5), 8x8 upscaled to 32x32
        by nearest neighbour, RGB, even indices PNG and odd ones JPEG (quality 95)."""
        if self._digits:
            return self._digits
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
        d = load_digits()
        root = self.T / "digits"
        order = np.random.default_rng(0).permutation(len(d.images))
        for rank, i in enumerate(order):
            split = "val" if rank % 5 == 0 else "train"
            pixels = (d.images[i] * (255.0 / 16)).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((32, 32), Image.NEAREST).convert("RGB")
            folder = root / split / CLASS_NAMES[d.target[i]]
            folder.mkdir(parents=True, exist_ok=True)
            if i % 2 == 0:
                image.save(folder / f"d{i:04d}.png")
            else:
                image.save(folder / f"d{i:04d}.jpg", quality=95)
        self._digits = root
        return root

    def digits_subset(self, dest, per_class_train, per_class_val):
        """A copy of the first images of each class of the digits folder."""
        src = self.digits()
        for split, n in (("train", per_class_train), ("val", per_class_val)):
            for c in CLASS_NAMES:
                (dest / split / c).mkdir(parents=True, exist_ok=True)
                for f in sorted((src / split / c).iterdir())[:n]:
                    shutil.copy(f, dest / split / c / f.name)
        return dest

    def digits_model(self, extra):
        """Trains DIGITS_MODEL on the digits folder for 200 steps of 64 images (once per flag set)."""
        key = tuple(extra)
        if key not in self._models:
            run_dir = self.T / ("digits-run-" + str(len(self._models)))
            cmd = ["mixer-dist", "train"] + DIGITS_MODEL + ["--data", "folder:" + str(self.digits()), "--steps", "200",
                                                             "--batch", "64", "--threads", "1", "--run-dir", run_dir] + extra
            self._models[key] = (cmd, self.run(cmd, timeout=300), run_dir)
        return self._models[key]


# ---- helpers ---------------------------------------------------------------------------------

def kill_group(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def first_line(text, skip=()):
    for line in text.splitlines():
        line = line.strip()
        if line and not any(re.search(s, line) for s in skip):
            return line
    return ""


def line_with(text, pattern):
    for line in text.splitlines():
        if re.search(pattern, line):
            return line.strip()
    return ""


def error_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def trim(text, n=200):
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def steps_in(folder):
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


def wait_for_lines(path, count, process, timeout=60, pattern='"train"'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if sum(1 for line in Path(path).read_text().splitlines() if pattern in line) >= count:
                return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def seconds_of(text):
    """'1m21s', '10s', '1h2m3s' -> seconds."""
    total = 0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def done_line(stdout):
    return line_with(stdout, r"^done: ")


def val_top1(stdout):
    m = re.search(r"val top-1 ([\d.]+)%", done_line(stdout))
    return float(m.group(1)) if m else None


def no_cocoa(result):
    return "NSCocoaErrorDomain" not in result["stdout"] + result["stderr"]


# ---- the scenarios -----------------------------------------------------------------------------

def s1_symlinks(t):
    """A loop, a link to a sibling class folder, a link to a file: the count is what the folder holds."""
    base = t.digits_subset(t.T / "s1" / "photos", 6, 2)
    outside = t.T / "s1" / "elsewhere" / "extra.png"
    outside.parent.mkdir(parents=True)
    shutil.copy(sorted((t.digits() / "train" / "six").glob("*.png"))[-1], outside)
    five = base / "train" / "five"
    first_six = sorted((base / "train" / "six").iterdir())[0].name
    cases = [
        ("1 symlink loop `ln -s .. train/five/loop`", "loop", "..", 60),
        ("1 link to a sibling class folder (`five/sixes -> ../six`)", "sixes", "../six", 60),
        ("1 link to a file already in the folder (`five/dup.png -> ../six/...`)", "dup.png", "../six/" + first_six, 60),
        ("1 link to a file outside the folder (`five/outside.png`)", "outside.png", str(outside), 61),
    ]
    for i, (failure, name, target, expected) in enumerate(cases):
        link = five / name
        os.symlink(target, link)
        try:
            cmd = ["mixer-dist", "train"] + SMALL + ["--data", "folder:" + str(base), "--classes", "10", "--batch", "16",
                                                     "--threads", "1", "--steps", "1", "--warmup", "0",
                                                     "--run-dir", t.T / "s1" / f"run{i}"]
            r = t.run(cmd, timeout=60)
        finally:
            link.unlink()
        m = re.search(r"\((\d+) train /", r["stdout"])
        count = int(m.group(1)) if m else None
        data = line_with(r["stdout"], r"^data: train:")
        ok = r["status"] == 0 and count == expected
        t.row(failure, f"ln -s {target} train/five/{name}; " + t.short(cmd), r, ok,
              f"{count} training images reported, {expected} expected (60 files + the links a user expects)",
              message="stdout: " + data)


def s2_export(t):
    run_dir = t.T / "s2" / "run"
    train = t.run(["mixer-dist", "train"] + SHAPES + ["--steps", "5", "--warmup", "0", "--run-dir", run_dir])
    if train["status"] != 0:
        t.row("2 export to .onnx", "train", train, False, "the training run failed")
        return
    onnx_path = t.T / "s2" / "m.onnx"
    cmd = ["mixer-dist", "export", run_dir, "--output", onnx_path]
    r = t.run(cmd)
    check = t.run([sys.executable, "-c",
                   "import sys, onnx, numpy as np, onnxruntime as ort\n"
                   "onnx.checker.check_model(sys.argv[1], full_check=True)\n"
                   "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
                   "y = s.run(None, {'images': np.zeros((2, 32, 32, 3), np.float32)})[0]\n"
                   "print('checker ok, onnxruntime logits', y.shape)", onnx_path], timeout=120)
    head = onnx_path.read_bytes()[:2] if onnx_path.exists() else b""
    ok = r["status"] == 0 and check["status"] == 0 and head != b"PK"
    t.row("2 `export RUN --output m.onnx` writes real ONNX", cmd, r, ok,
          ("onnx.checker (full) and onnxruntime: " + first_line(check["stdout"]) if check["status"] == 0
           else "onnx/onnxruntime: " + trim(first_line(check["stderr"][-400:]), 150)) + ("" if head != b"PK" else "; a zip file"),
          message="stdout: " + first_line(r["stdout"]))
    bad = t.T / "s2" / "m2.onnx"
    cmd = ["mixer-dist", "export", run_dir, "--format", "npz", "--output", bad]
    r = t.run(cmd)
    ok = r["status"] not in (0, "timeout") and not bad.exists() and "contradicts" in r["stderr"]
    t.row("2 `export --format npz --output m.onnx` refused", cmd, r, ok,
          "refused, nothing written" if ok else f"status {r['status']}, file written: {bad.exists()}")


def s3_killed_and_resilient(t):
    run_dir = t.T / "s3" / "run"
    args = ["mixer-dist", "train"] + SHAPES + ["--steps", "3000", "--warmup", "0", "--log-every", "1", "--run-dir", run_dir]
    p = t.start(args)
    try:
        started = wait_for_lines(run_dir / "metrics.jsonl", 5, p, timeout=60)
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
    finally:
        kill_group(p)
    left = [s for s in steps_in(run_dir / "checkpoints") if s.startswith("step-")]
    ids_before = run_ids(run_dir / "metrics.jsonl")
    cmd = args + ["--resume", "auto"]
    r = t.run(cmd, timeout=180)
    ids_after = run_ids(run_dir / "metrics.jsonl")
    said = line_with(r["stdout"], r"left no checkpoint")
    ok = (started and p.returncode == -9 and not left and r["status"] == 0 and bool(said)
          and len(set(ids_after)) == 1 and set(ids_after) == set(ids_before[:1]))
    t.row("3 kill -9 before the first checkpoint, then `--resume auto`",
          "kill -9 after 5 steps; " + t.short(cmd), r, ok,
          f"killed at status {p.returncode} with {len(left)} checkpoint(s); resumed as run ids {sorted(set(ids_after))}"
          f" (first run {ids_before[:1]})", checkpoint=", ".join(steps_in(run_dir / "checkpoints")) or "none",
          message="stdout: " + said if said else None)

    res_dir = t.T / "s3" / "resilient"
    cmd = [str(REPO / "launch" / "resilient"), "--max-restarts", "2", "--", "mixer-dist", "train"] + SHAPES + [
        "--steps", "40", "--warmup", "0", "--run-dir", res_dir, "--resume", "auto", "--fail-at-step", "30"]
    r = t.run(cmd, timeout=180)
    restarts = len(re.findall(r"restart \d+ of 2", r["stderr"]))
    ck = steps_in(res_dir / "checkpoints")
    ok = r["status"] == 0 and "step-00000040" in ck
    t.row("3 `launch/resilient --max-restarts 2 -- mixer-dist train ... --resume auto --fail-at-step 30`", cmd, r, ok,
          f"finished after {restarts} restart(s)", checkpoint=", ".join(ck))


def run_ids(path):
    ids = []
    try:
        for line in Path(path).read_text().splitlines():
            try:
                ids.append(json.loads(line).get("run"))
            except ValueError:
                pass
    except OSError:
        pass
    return [i for i in ids if i]


def s4_corrupt_jpeg(t):
    data = t.digits_subset(t.T / "s4" / "photos", 5, 1)
    bad = data / "train" / "five" / "broken.jpg"
    for name, launcher in (("1 process", []), ("mpirun -n 2", MPIRUN[:1] + ["-n", "2"] + MPIRUN[1:])):
        bad.write_bytes(bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes([0x5A]) * 300)
        tag = "one" if not launcher else "two"
        ck = t.T / "s4" / f"ck-{tag}"
        train = ["train"] + SMALL + ["--data", "folder:" + str(data), "--classes", "10", "--batch", "8", "--steps", "24",
                                     "--warmup", "2", "--threads", "1", "--eval-every", "0", "--seed", "3", "--timeout", "60",
                                     "--run-dir", t.T / "s4" / f"run-{tag}", "--checkpoint-dir", ck]
        cmd = launcher + ["mixer-dist"] + train
        r = t.run(cmd, timeout=180)
        out = r["stdout"] + r["stderr"]
        left = steps_in(ck)
        m = re.search(r"saved the last completed step (\d+) as (\S+?);", out)
        saved = m and left == [Path(m.group(2)).name] and int(m.group(1)) > 0
        insp = t.inspect(ck / left[-1]) if left else None
        ranks = re.search(r"saved by (\d+) rank", insp["stdout"]).group(1) if insp and "saved by" in insp["stdout"] else "?"
        bad.unlink()
        resumed = t.run(cmd + ["--resume", "auto"], timeout=180)
        finished = resumed["status"] == 0 and (ck / "step-00000024").exists()
        want_ranks = "1" if not launcher else "2"
        ok = (r["status"] == 65 and bool(saved) and "broken.jpg" in out and insp is not None and insp["status"] == 0
              and ranks == want_ranks and finished)
        message = first_line(r["stderr"], skip=(r"^-{10}",))
        if launcher:
            lines = [l for l in error_lines(r["stderr"]) if "mixer-dist" in l]
            message = " / ".join(lines[:2])
        t.row(f"4 corrupt JPEG met part-way ({name})", cmd, r, ok,
              f"{len(error_lines(r['stderr']))} stderr line(s); checkpoint saved by {ranks} rank(s), inspect status "
              f"{insp['status'] if insp else '-'}; without the file --resume auto finished: {finished} (status {resumed['status']})",
              checkpoint=", ".join(str(ck / s) for s in left) or "none", message=message)


def s5_disks(t):
    if os.geteuid() != 0:
        t.row("5 full disk / read-only volume", "mount -t tmpfs ...", None, False, "needs root to mount a tmpfs", status="-")
        return
    mounts = []

    def mount(path, megabytes):
        path.mkdir(parents=True)
        r = t.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", path], timeout=20)
        if r["status"] != 0:
            raise RuntimeError("mount: " + r["stderr"])
        mounts.append(path)

    try:
        disk = t.T / "s5" / "disk5m"
        mount(disk, 5)
        # a: the case, the tiny preset (a 6.9 MB checkpoint) on a 5 MB tmpfs: nothing fits
        ck = disk / "ck-tiny"
        cmd = ["mixer-dist", "train", "--batch", "16", "--train-examples", "128", "--val-examples", "16", "--threads", "1",
               "--eval-every", "0", "--steps", "10", "--warmup", "2", "--run-dir", t.T / "s5" / "run-tiny", "--checkpoint-dir", ck]
        r = t.run(cmd, timeout=180)
        line = first_line(r["stderr"])
        sizes = re.search(r"needs ([\d.]+ [KMG]B), the filesystem has ([\d.]+ [KMG]B) free", line)
        left = steps_in(ck)
        final = (t.T / "s5" / "run-tiny" / "final-parameters.f32").exists()
        ok = (r["status"] not in (0, "timeout") and len(error_lines(r["stderr"])) == 1 and str(ck) in line and bool(sizes)
              and no_cocoa(r) and not any(".partial" in s for s in left))
        t.row("5 full disk: tiny preset (6.9 MB checkpoint) on a 5 MB tmpfs", "mount -t tmpfs -o size=5m ...; " + t.short(cmd),
              r, ok, f"one line: {len(error_lines(r['stderr'])) == 1}, both sizes: {bool(sizes)}, no .partial: "
              f"{not any('.partial' in s for s in left)}; final-parameters.f32 in the run folder: {final}",
              checkpoint=(", ".join(left) or "none (nothing fitted)") + (f"; {ck} holds {left}" if left else ""))

        # b: a checkpoint that fits once but not twice: the second save is refused, the first kept
        ck = disk / "ck-b"
        cmd = ["mixer-dist", "train", "--hidden", "96", "--channels-mlp", "256", "--batch", "16", "--train-examples", "128",
               "--val-examples", "16", "--threads", "1", "--eval-every", "0", "--steps", "10", "--warmup", "2",
               "--save-every", "5", "--run-dir", t.T / "s5" / "run-b", "--checkpoint-dir", ck]
        r = t.run(cmd, timeout=180)
        line = first_line(r["stderr"])
        sizes = re.search(r"needs ([\d.]+ [KMG]B), the filesystem has ([\d.]+ [KMG]B) free", line)
        left = steps_in(ck)
        insp = t.inspect(ck / "step-00000005")
        ok = (r["status"] not in (0, "timeout") and len(error_lines(r["stderr"])) == 1 and str(ck) in line and bool(sizes)
              and no_cocoa(r) and left == ["step-00000005"] and insp["status"] == 0 and "is kept" in line)
        t.row("5 full disk: the second save does not fit (5 MB tmpfs, 2.9 MB checkpoints)", cmd, r, ok,
              f"one line with the path and both sizes: {bool(sizes)}; folder holds {left}; inspect {insp['status']}",
              checkpoint=", ".join(str(ck / s) for s in left) or "none")

        # c: a read-only volume holding the run's checkpoint: --resume auto into it
        ro = t.T / "s5" / "ro"
        mount(ro, 4)
        ck = ro / "ck"
        args = ["mixer-dist", "train"] + SHAPES + ["--warmup", "0", "--run-dir", t.T / "s5" / "run-ro", "--checkpoint-dir", ck]
        first = t.run(args + ["--steps", "5"])
        remount = t.run(["mount", "-o", "remount,ro", ro], timeout=20)
        cmd = args + ["--steps", "10", "--resume", "auto"]
        r = t.run(cmd)
        line = first_line(r["stderr"])
        left = steps_in(ck)
        insp = t.inspect(ck / "step-00000005")
        ok = (first["status"] == 0 and remount["status"] == 0 and r["status"] not in (0, "timeout")
              and len(error_lines(r["stderr"])) == 1 and str(ck) in line and "read-only" in line.lower() and no_cocoa(r)
              and left == ["step-00000005"] and insp["status"] == 0)
        t.row("5 read-only volume: `--resume auto` with the checkpoint folder on a tmpfs remounted ro",
              "mount -o remount,ro; " + t.short(cmd), r, ok,
              f"{len(error_lines(r['stderr']))} stderr line(s), names the path and read-only: "
              f"{str(ck) in line and 'read-only' in line.lower()}; inspect {insp['status']}",
              checkpoint=", ".join(str(ck / s) for s in left) or "none")

        # d: a command other than train writing to the read-only volume
        cmd = ["mixer-dist", "export", ck / "step-00000005", "--output", ro / "m.onnx"]
        r = t.run(cmd)
        line = first_line(r["stderr"])
        ok = (r["status"] not in (0, "timeout") and len(error_lines(r["stderr"])) == 1 and "read-only" in line.lower()
              and str(ro) in line and no_cocoa(r))
        t.row("5 read-only volume: `export` into it", cmd, r, ok,
              f"{len(error_lines(r['stderr']))} stderr line(s) naming the path and read-only: {ok}")
    finally:
        for path in reversed(mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def s6_periodic(t):
    cmd = ["mixer-dist", "train", "--help"]
    r = t.run(cmd)
    help_line = re.search(r"--save-every-minutes <save-every-minutes>(.*?)(?=\n  --)", r["stdout"], re.S)
    text = " ".join(help_line.group(1).split()) if help_line else ""
    ok = "(default: 30" in text
    t.row("6 periodic checkpoints on by default (help)", cmd, r, ok, "help says the default is 30 minutes" if ok else
          "no default of 30 in the help", message="stdout: --save-every-minutes " + text)
    ck = t.T / "s6" / "ck"
    cmd = ["mixer-dist", "train"] + SHAPES + ["--steps", "3000", "--warmup", "0", "--save-every-minutes", "0.01",
                                              "--run-dir", t.T / "s6" / "run", "--checkpoint-dir", ck]
    r = t.run(cmd, timeout=180)
    saves = [l for l in r["stdout"].splitlines() if l.startswith("checkpoint ")]
    startup = first_line(r["stdout"])
    ok = r["status"] == 0 and len(saves) > 2
    left = steps_in(ck)
    t.row("6 `--save-every-minutes 0.01` saves by the clock", cmd, r, ok,
          f"{len(saves)} saves in {r['seconds']:.1f} s ({len(saves) - 1} before the end); the start-up lines do "
          f"{'' if re.search('minute', r['stdout'].split('step ')[0]) else 'not '}mention the periodic saves",
          checkpoint=f"{len(left)} folders: {left[0]} … {left[-1]}" if left else "none",
          message="stdout: " + (saves[0] if saves else startup))


def ort_logits(path, images, optimize):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images})[0]


def predicted_logits(result, class_names, files):
    """Per file (in `files` order) our centred log-probabilities in class-index order (the logits up
    to a per-image constant, which softmax removes)."""
    import numpy as np
    by_file = {}
    for line in result["stdout"].splitlines():
        if line.startswith("{"):
            o = json.loads(line)
            row = np.full(len(class_names), np.nan)
            for name, p in zip(o["classes"], o["probabilities"]):
                row[class_names.index(name)] = np.log(p)
            by_file[os.path.realpath(o["file"])] = row
    out = np.stack([by_file[os.path.realpath(f)] for f in files])
    return out - out.mean(axis=1, keepdims=True)


def compare(theirs, ours):
    import numpy as np
    theirs = theirs - theirs.mean(axis=1, keepdims=True)
    rms = float(np.linalg.norm(theirs - ours) / np.linalg.norm(ours))
    disagree = int(np.sum(theirs.argmax(1) != ours.argmax(1)))
    return rms, disagree


def s7_int8(t):
    import numpy as np
    from PIL import Image
    train_cmd, trained, run_dir = t.digits_model(["--no-augment"])
    if trained["status"] != 0:
        t.row("7 int8 vs ONNX Runtime", train_cmd, trained, False, "training the digits model failed")
        return
    q = t.T / "s7" / "q"
    quant = t.run(["mixer-dist", "quantize", run_dir, "--samples", "256", "--output", q, "--threads", "1"], timeout=300)
    val = t.digits() / "val"
    files = sorted(str(p) for p in val.rglob("*") if p.is_file())
    class_names = json.loads((run_dir / "config.json").read_text())["classNames"]
    pred8_cmd = ["mixer-dist", "predict", q, val, "--json", "--top-k", "10", "--precision", "int8", "--threads", "1"]
    pred8 = t.run(pred8_cmd, timeout=300)
    pred32 = t.run(["mixer-dist", "predict", run_dir, val, "--json", "--top-k", "10", "--precision", "fp32", "--threads", "1"],
                   timeout=300)
    fp32_onnx, int8_onnx = t.T / "s7" / "m.onnx", t.T / "s7" / "m-int8.onnx"
    e32 = t.run(["mixer-dist", "export", run_dir, "--output", fp32_onnx])
    e8_cmd = ["mixer-dist", "export", q, "--output", int8_onnx]
    e8 = t.run(e8_cmd)
    if any(x["status"] != 0 for x in (quant, pred8, pred32, e32, e8)):
        bad = next(x for x in (quant, pred8, pred32, e32, e8) if x["status"] != 0)
        t.row("7 int8 vs ONNX Runtime", "quantize/predict/export", bad, False, "a step failed")
        return
    # our pixels: the image as stored (32x32 = the model's size), scaled to [-1, 1] (minus-one-one)
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) for f in files])
    images = (images / 255.0 - 0.5) / 0.5
    ours32 = predicted_logits(pred32, class_names, files)
    ours8 = predicted_logits(pred8, class_names, files)
    # the input pipeline first: ORT on the fp32 model against our fp32 predict
    rms32, dis32 = compare(ort_logits(fp32_onnx, images, True), ours32)
    int8_error, int8_vs_fp32 = compare(ours8 + 0, ours32)
    tolerance = min(1e-2, 0.25 * int8_error)  # the test's bound (Tests/MixerInferenceTests/ONNXExportTests.swift)
    n = len(files)
    note = (f"{n} images; our int8 vs our fp32: rel. RMS {int8_error:.2e}, {int8_vs_fp32} top-1 changes; "
            f"ORT fp32 vs our fp32 (input check): {rms32:.1e}, {dis32} disagree; bound: 0 disagreements and "
            f"rel. RMS <= min(1e-2, int8 error/4) = {tolerance:.1e}")
    for label, optimize in (("graph optimization disabled (as the tests compare)", False),
                            ("ORT default optimization (ORT_ENABLE_ALL)", True)):
        theirs = ort_logits(int8_onnx, images, optimize)
        rms, dis = compare(theirs, ours8)
        rms_fp32, _ = compare(theirs, ours32)
        ok = dis == 0 and rms <= tolerance and rms32 < 1e-4 and dis32 == 0
        t.row(f"7 `predict --precision int8` vs ONNX Runtime, {label}",
              t.short(pred8_cmd) + "; " + t.short(e8_cmd) + "; onnxruntime on the same pixels", pred8, ok,
              f"{dis} of {n} top-1 disagree, relative logit RMS {rms:.2e} (centred logits; this ORT int8 vs our fp32: "
              f"{rms_fp32:.2e}); " + note,
              message="stdout: " + first_line(e8["stdout"]), status=f"{pred8['status']}/{e8['status']}")
    cmd = ["mixer-dist", "eval", q, "--precision", "fp32", "--threads", "1"]
    r = t.run(cmd, timeout=300)
    said = line_with(r["stdout"] + "\n" + r["stderr"], r"dequantiz")
    t.row("7 eval of a quantized checkpoint at `--precision fp32` says so", cmd, r, r["status"] == 0 and bool(said),
          "it says it runs dequantized weights" if said else "no word of dequantized weights",
          message=said or None)


def s8_signals(t):
    for launcher_name, launcher in (("launch/mpirun", [str(REPO / "launch" / "mpirun"), "2"]),
                                    ("plain mpirun", MPIRUN[:1] + ["-n", "2"] + MPIRUN[1:] + ["mixer-dist"])):
        for how in ("Ctrl-C", "SIGTERM"):
            tag = f"{'wrapper' if 'launch' in launcher_name else 'plain'}-{how}"
            run_dir = t.T / "s8" / tag
            cmd = launcher + ["train"] + SHAPES + ["--steps", "100000", "--warmup", "0", "--log-every", "1",
                                                    "--timeout", "60", "--run-dir", run_dir]
            env = dict(os.environ, **MPI_ENV, MIXER_DIST_BIN=t.binary)
            words = [t.binary if c == "mixer-dist" else str(c) for c in cmd]
            p = subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                 start_new_session=True)
            try:
                started = wait_for_lines(run_dir / "metrics.jsonl", 5, p, timeout=90)
                # Ctrl-C: the terminal sends SIGINT to the foreground process group; SIGTERM: kill PID
                if how == "Ctrl-C":
                    os.killpg(p.pid, signal.SIGINT)
                else:
                    os.kill(p.pid, signal.SIGTERM)
                try:
                    out, err = p.communicate(timeout=90)
                    status = p.returncode
                except subprocess.TimeoutExpired:
                    kill_group(p)
                    out, err = p.communicate()
                    status = "timeout"
            finally:
                kill_group(p)
            r = {"status": status, "stdout": out, "stderr": err}
            ck = run_dir / "checkpoints"
            left = steps_in(ck)
            insp = t.inspect(ck / left[-1]) if left else None
            two = bool(insp and "saved by 2 rank" in insp["stdout"])
            message = first_line(err, skip=(r"^launch/mpirun: \d+ rank", r"^launch/mpirun: mpirun ", r"^\[warn\]"))
            stopped = line_with(out, r"^mixer-dist: SIG\w+: stopped")
            if stopped:
                message = (message + " / " if message else "") + "stdout: " + stopped
            if launcher_name == "launch/mpirun":
                ok = started and status == 75 and two
                reason = (f"exit {status}, expected 75 with a checkpoint saved by every rank (saved by 2 ranks: {two}; "
                          f"the ranks said status 75: {'Exit code:    75' in err or 'exit status 75' in out})")
            else:
                # docs/cluster.md: plain mpirun kills the ranks a second after passing on SIGTERM and always exits 1
                ok = started and status == 1
                reason = (f"reported: plain mpirun exits {status}; docs/cluster.md says it always exits 1 "
                          f"(checkpoint saved by 2 ranks: {two})")
            t.row(f"8 {launcher_name} train stopped with {how}", f"{how} after 5 steps: " + t.short(cmd), r, ok, reason,
                  checkpoint=", ".join(left) or "none", message=message)


def s9_missing_files(t):
    run_dir = t.T / "s9" / "run"
    train = t.run(["mixer-dist", "train"] + SHAPES + ["--steps", "5", "--warmup", "0", "--run-dir", run_dir])
    step = run_dir / "checkpoints" / "step-00000005"
    image = next((t.digits() / "val" / "five").glob("*.png"))
    for f in step.glob("optimizer-*"):
        f.unlink()
    commands = {
        "eval": ["mixer-dist", "eval", run_dir, "--threads", "1"],
        "predict": ["mixer-dist", "predict", run_dir, image],
        "export": ["mixer-dist", "export", run_dir, "--output", t.T / "s9" / "m.onnx"],
        "export .npz": ["mixer-dist", "export", run_dir, "--output", t.T / "s9" / "m.npz"],
        "quantize": ["mixer-dist", "quantize", run_dir, "--samples", "16", "--output", t.T / "s9" / "q", "--threads", "1"],
    }
    results = {k: t.run(c, timeout=120) for k, c in commands.items()}
    ok = train["status"] == 0 and all(r["status"] == 0 for r in results.values())
    t.row("9 optimizer file missing: eval / predict / export .onnx / export .npz / quantize",
          "rm step-5/optimizer-*; eval|predict|export (.onnx, .npz)|quantize RUN",
          None, ok, "all work" if ok else "refused: " + ", ".join(k for k, r in results.items() if r["status"] != 0),
          checkpoint="step-00000005 (params + manifest)", status="/".join(str(r["status"]) for r in results.values()),
          message="stdout: " + first_line(results["eval"]["stdout"]))
    (step / "params.safetensors").unlink()
    for name in ("eval", "predict", "export", "export .npz"):
        r = t.run(commands[name], timeout=120)
        lines = error_lines(r["stderr"])
        named = any("params.safetensors" in l for l in lines)
        doubled = any(l.startswith("mixer-dist: mixer-dist:") for l in lines)
        ok = r["status"] not in (0, "timeout") and named and len(lines) == 1 and not doubled
        t.row(f"9 params file missing: {name}", "rm step-5/params.safetensors; " + t.short(commands[name]), r, ok,
              f"{len(lines)} stderr line(s); names params.safetensors: {named}"
              + ("; prefix 'mixer-dist: mixer-dist:' doubled" if doubled else "")
              + ("; last line: " + trim(lines[-1], 160) if len(lines) > 1 else ""),
              checkpoint="step-00000005 (manifest only)")


def s10_other_directory(t):
    work = t.T / "s10" / "work"
    work.mkdir(parents=True)
    rel = os.path.relpath(t.digits(), work)
    train = t.run(["mixer-dist", "train"] + SMALL + ["--data", rel, "--batch", "16", "--threads", "1", "--steps", "5",
                                                     "--warmup", "0", "--run-dir", "run"], cwd=work)
    stored = json.loads((work / "run" / "config.json").read_text()).get("data", "") if train["status"] == 0 else ""
    cmd = ["mixer-dist", "eval", work / "run", "--threads", "1"]
    r = t.run(cmd, cwd="/")
    ok = train["status"] == 0 and r["status"] == 0 and os.path.isabs(stored.split(":", 1)[-1])
    t.row("10 `eval RUN` from another directory", f"(cd $T/s10/work && mixer-dist train --data {rel} --run-dir run ...); "
          f"cd / && " + t.short(cmd), r, ok, f"stored data path: {stored}", checkpoint="step-00000005",
          message=None if r["stderr"] else "stdout: " + first_line(r["stdout"]))


def s11_warmup(t):
    base = ["mixer-dist", "train"] + SHAPES
    cmd = base + ["--steps", "10", "--run-dir", t.T / "s11" / "a"]
    r = t.run(cmd)
    line = line_with(r["stderr"], "warm-up")
    stream = "stderr"
    if not line:
        line, stream = line_with(r["stdout"], "warm-up"), "stdout"
    ok = bool(line) and "--warmup" in line and r["status"] in (0, 78)
    t.row("11 `--steps 10` with the default warm-up", cmd, r, ok,
          f"a warning naming the fix (on {stream}), status {r['status']}" if ok else "no word",
          checkpoint=", ".join(steps_in(t.T / "s11" / "a" / "checkpoints")),
          message=((stream + ": " if stream == "stdout" else "") + line) if line else None)
    cmd = base + ["--steps", "10", "--warmup", "0.1", "--run-dir", t.T / "s11" / "b"]
    r = t.run(cmd)
    ok = r["status"] == 0 and "warm-up" not in r["stderr"] + r["stdout"]
    t.row("11 `--warmup 0.1` accepted", cmd, r, ok, "accepted, no warning" if ok else "not accepted",
          checkpoint=", ".join(steps_in(t.T / "s11" / "b" / "checkpoints")),
          message=None if r["stderr"] else "stdout: " + done_line(r["stdout"]))
    cmd = base + ["--steps", "10", "--warmup", "20", "--run-dir", t.T / "s11" / "c"]
    r = t.run(cmd)
    ok = r["status"] == 78 and "--warmup" in r["stderr"] and len(error_lines(r["stderr"])) == 1
    t.row("11 an explicit `--warmup 20` with `--steps 10`", cmd, r, ok, "refused with the fix, status 78" if ok else "",
          checkpoint=", ".join(steps_in(t.T / "s11" / "c" / "checkpoints")) or "none")


def s12_crop(t):
    readme = (REPO / "README.md").read_text()
    example = line_with(readme, r"train .*--data folder:")
    t.row("12 the README's image-folder example", "grep -- '--data folder:' README.md", None, bool(example),
          "found" if example else "README.md has no `train --data folder:` example (docs/data.md's 'Crop size' recipe "
          "is used below, with a small model)", status="-", message=example or "(none)")
    results = {}
    for label, extra in (("defaults", []), ("`--crop-scale 0.5,1`", ["--crop-scale", "0.5,1"]),
                         ("`--no-augment`", ["--no-augment"])):
        cmd, r, run_dir = t.digits_model(extra)
        top1 = val_top1(r["stdout"])
        results[label] = top1
        aug = line_with(r["stdout"], r"^augmentation:")
        ok = r["status"] == 0 and top1 is not None and top1 >= 80.0
        t.row(f"12 digits folder, 200 steps, {label}", cmd, r, ok,
              f"val top-1 {top1}% on 360 images (sensible: >= 80%; a linear classifier on these digits gets ~95%); {aug}",
              checkpoint=", ".join(steps_in(run_dir / "checkpoints")), message="stdout: " + done_line(r["stdout"]))


def s13_yaml(t):
    config = t.T / "s13" / "bad.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("steps: many\nbatch: 16\n")
    cmd = ["mixer-dist", "train", "--config", config, "--run-dir", t.T / "s13" / "run"]
    r = t.run(cmd)
    line = first_line(r["stderr"])
    ok = r["status"] == 64 and str(config) in line and "steps" in line and len(error_lines(r["stderr"])) == 1
    t.row("13 YAML type error `steps: many`", cmd, r, ok, "names the file and the key" if ok else "",
          checkpoint="none")


def s14_resumed_time(t):
    run_dir, ck = t.T / "s14" / "run", t.T / "s14" / "ck"
    args = ["mixer-dist", "train"] + SHAPES + ["--warmup", "0", "--run-dir", run_dir, "--checkpoint-dir", ck]
    first = t.run(args + ["--steps", "5000"], timeout=180)
    cmd = args + ["--steps", "10000", "--resume", "auto"]
    r = t.run(cmd, timeout=180)
    t1 = seconds_of(done_line(first["stdout"]).split(" in ")[1].split(",")[0]) if done_line(first["stdout"]) else None
    total = seconds_of(done_line(r["stdout"]).split(" in ")[1].split(",")[0]) if done_line(r["stdout"]) else None
    try:
        m1 = json.loads((ck / "step-00005000" / "manifest.json").read_text())["trainingSeconds"]
        m2 = json.loads((ck / "step-00010000" / "manifest.json").read_text())["trainingSeconds"]
    except (OSError, KeyError, ValueError):
        m1 = m2 = None
    segment2 = (m2 - m1) if m1 is not None and m2 is not None else None
    ok = (first["status"] == 0 and r["status"] == 0 and t1 is not None and total is not None and m2 is not None
          and segment2 > 0.5 and abs(total - m2) <= 1.0 and total >= t1 + segment2 - 1.0)
    t.row("14 resumed run's `done: N steps in T`", "train --steps 5000; " + t.short(cmd), r, ok,
          f"segment 1 'done' said {t1:.0f} s; resumed 'done' says {total:.0f} s; manifests: {m1:.2f} s then {m2:.2f} s "
          f"(segment 2: {segment2:.2f} s)" if None not in (t1, total, m1, m2) else "could not read the times",
          checkpoint=", ".join(steps_in(ck)), message="stdout: " + done_line(r["stdout"]))


def s15_version(t):
    cmd = ["mixer-dist", "--version"]
    r = t.run(cmd)
    m = re.search(r"(\d+\.\d+\.\d+).*commit ([0-9a-f]{7,40})(\S*)", r["stdout"])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    ok = r["status"] == 0 and bool(m)
    note = ""
    if m:
        note = (f"version {m.group(1)}, commit {m.group(2)[:12]}{m.group(3)}; this checkout's HEAD is {head[:12]}"
                + (" (same)" if head.startswith(m.group(2)) else " (the binary was built from another commit)"))
    t.row("15 `mixer-dist --version`", cmd, r, ok, note, checkpoint="n/a", message="stdout: " + first_line(r["stdout"]))


def s16_help(t):
    cmd = ["mixer-dist", "train", "--help"]
    r = t.run(cmd)
    m = re.search(r"--data <data>(.*?)(?=\n  --)", r["stdout"], re.S)
    text = " ".join(m.group(1).split()) if m else ""
    ok = "wds" in text
    t.row("16 `train --help` lists `wds`", cmd, r, ok, "listed among the --data kinds" if ok else "missing",
          message="stdout: --data " + text)


def s17_mpirun_errors(t):
    banners = ("MPI_ABORT", "ORTE_ERROR_LOG")
    cases = [
        ("17 bad flag value under mpirun (`--batch 0`)", MPIRUN[:1] + ["-n", "2"] + MPIRUN[1:] + ["mixer-dist", "train", "--batch", "0",
                                                                                                  "--run-dir", t.T / "s17" / "a"], "pre"),
        ("17 missing data folder under mpirun", MPIRUN[:1] + ["-n", "2"] + MPIRUN[1:] + ["mixer-dist", "train", "--data",
                                                                                         "folder:" + str(t.T / "s17" / "nothing"),
                                                                                         "--run-dir", t.T / "s17" / "b"], "pre"),
        ("17 bad flag value under launch/mpirun", [str(REPO / "launch" / "mpirun"), "2", "train", "--batch", "0",
                                                   "--run-dir", t.T / "s17" / "c"], "pre"),
    ]
    # an error after MPI started: a second run into a run folder that holds another run
    occupied = t.T / "s17" / "occupied"
    t.run(["mixer-dist", "train"] + SHAPES + ["--steps", "2", "--warmup", "0", "--run-dir", occupied])
    cases.append(("17 after MPI start: another run's folder under mpirun (the same command run twice)",
                  MPIRUN[:1] + ["-n", "2"] + MPIRUN[1:] + ["mixer-dist", "train"] + SHAPES + ["--steps", "2", "--warmup", "0",
                                                                                               "--timeout", "60", "--run-dir", occupied],
                  "post"))
    for failure, cmd, when in cases:
        r = t.run(cmd, timeout=120, env=dict(MPI_ENV, MIXER_DIST_BIN=t.binary))
        err = r["stderr"]
        ours = [l for l in err.splitlines() if l.startswith("mixer-dist")]
        found = [b for b in banners if b in err]
        mpirun_box = "Primary job  terminated normally" in err or "mpirun detected that one or more processes" in err
        ok = r["status"] not in (0, "timeout") and not found and len(ours) == 1
        remains = []
        if found:
            remains.append(", ".join(found) + f" ({sum(err.count(b) for b in found)} line(s))")
        if mpirun_box:
            remains.append("mpirun's own 'Primary job terminated normally, but 1 process returned a non-zero exit code' "
                           "and 'mpirun detected ... Exit code' boxes")
        t.row(failure, cmd, r, ok,
              f"{len(ours)} mixer-dist line(s); what remains: " + ("; ".join(remains) or "nothing"),
              checkpoint="none", message=" / ".join(ours[:2]) or first_line(err))


SCENARIOS = {1: s1_symlinks, 2: s2_export, 3: s3_killed_and_resilient, 4: s4_corrupt_jpeg, 5: s5_disks,
             6: s6_periodic, 7: s7_int8, 8: s8_signals, 9: s9_missing_files, 10: s10_other_directory,
             11: s11_warmup, 12: s12_crop, 13: s13_yaml, 14: s14_resumed_time, 15: s15_version, 16: s16_help,
             17: s17_mpirun_errors}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.environ.get("MIXER_DIST_BIN") or str(REPO / ".build/release/mixer-dist"))
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (1-17)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"failure_tour: no mixer-dist binary at {binary} (--binary or $MIXER_DIST_BIN)", file=sys.stderr)
        return 2
    chosen = sorted(int(n) for n in args.only.split(",") if n.strip()) if args.only else sorted(SCENARIOS)
    temp = tempfile.mkdtemp(prefix="failure-tour-")
    tour = Tour(binary, temp)
    started = time.monotonic()
    try:
        for n in chosen:
            t0 = time.monotonic()
            try:
                SCENARIOS[n](tour)
            except Exception as error:  # a scenario that could not run is a failed expectation too
                tour.rows.append({"failure": f"{n} (scenario)", "command": "", "status": "-",
                                  "message": trim(f"{type(error).__name__}: {error}"), "checkpoint": "",
                                  "ok": False, "verdict": "no: the scenario could not run"})
                traceback.print_exc()
            print(f"failure_tour: scenario {n} took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        if args.keep_temp:
            print(f"failure_tour: kept {temp}", file=sys.stderr)
        else:
            shutil.rmtree(temp, ignore_errors=True)
    print(tour.table())
    failed = [r for r in tour.rows if not r["ok"]]
    print(f"\n{len(tour.rows) - len(failed)} of {len(tour.rows)} expectations met; "
          f"{time.monotonic() - started:.0f} s; binary {binary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
