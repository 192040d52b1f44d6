#!/usr/bin/env python3
"""The accuracy/speed trade-off tables (issue 14, item 3) from launch/tradeoff's JSON lines.

    python3 tools/tradeoff_table.py docs/tradeoff.jsonl > docs/tradeoff.md

Record kinds (one JSON object a line, written by launch/tradeoff):
  run       the machine and settings: date, load average, CPU, OpenBLAS core, commit, threads
  train     a trained model: its flags, shape, tokens, parameters, forward GFLOPs, train time
  quantize  the report `mixer-dist quantize` printed (the per-layer sensitivity table)
  model     a trained model timed (`bench --inference --checkpoint`, or ONNX Runtime on its
            export) on one thread count; mixer-dist rows carry the validation top-1 (`eval`)
  preset    a paper shape timed with fresh weights (mixer-dist, or ONNX Runtime)
  phase     a phase's wall time; command: every command run and its wall time; end: the end
"""
import json
import sys

ROW_NAMES = {
    "fp32": "fp32",
    "bf16": "bf16",
    "int8": "int8",
    "int8-minmax": "int8 min-max",
    "int8-calibrated": "int8 calibrated (percentile)",
    "onnxruntime fp32": "ONNX Runtime fp32",
    "onnxruntime int8 dynamic": "ONNX Runtime int8 dynamic",
}
ROW_ORDER = list(ROW_NAMES)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def figure(value):
    """three significant figures, trailing zeros kept (1.00, 23.5, 340)"""
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ms(seconds):
    return figure(seconds * 1e3)


def rate(images_per_second):
    return figure(images_per_second)


def by_row(records):
    """{(model, row): {threads: record}} in first-seen model order and ROW_ORDER."""
    table, models = {}, []
    for r in records:
        if r["model"] not in models:
            models.append(r["model"])
        table.setdefault((r["model"], r["row"]), {})[r["threads"]] = r
    keys = sorted(table, key=lambda k: (models.index(k[0]), ROW_ORDER.index(k[1]) if k[1] in ROW_ORDER else 99))
    return [(k, table[k]) for k in keys]


def timing_cells(per_thread, threads):
    latency = " / ".join(ms(per_thread[t]["latency_seconds"]) if t in per_thread else "–" for t in threads)
    speed = " / ".join(rate(per_thread[t]["images_per_second"]) if t in per_thread else "–" for t in threads)
    return latency, speed


def products(per_thread):
    """the products' precision as bench reported it (e.g. "int8 (2 of 18 products bf16)")"""
    first = next(iter(per_thread.values()))
    return first.get("precision", "")


def markdown_report(text):
    """quantize's report with blank lines around its table, so markdown renders the table alone"""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        table = line.startswith("|")
        if table != inside:
            out.append("")
            inside = table
        out.append(line)
    return "\n".join(out)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tools/tradeoff_table.py TRADEOFF.jsonl")
    records = load(sys.argv[1])
    kinds = {}
    for r in records:
        kinds.setdefault(r["kind"], []).append(r)
    run = kinds["run"][0]
    end = (kinds.get("end") or [{}])[0]
    threads = [int(t) for t in str(run["threads"]).split()]
    thread_label = " / ".join(str(t) for t in threads)
    batch = run["batch"]
    out = []
    say = out.append

    say("<!-- written by launch/tradeoff (tools/tradeoff_table.py from tradeoff.jsonl); do not edit by hand -->")
    say(f"`{run.get('invocation', 'launch/tradeoff')}`, measured {run['started']} to {end.get('finished', '?')} on {run['cores']} cores ({run['cpu']}), commit "
        f"{run['commit']}; load average {run['load_start']} at the start, {end.get('load_end', '?')} at the end "
        f"(each figure's 1-minute load is in the JSON). OpenBLAS core {run['blas_core']}: {run['coretype']}. "
        f"OMP_WAIT_POLICY {run.get('omp_wait_policy') or 'unset'}. ONNX Runtime {run.get('onnxruntime') or 'not run'}."
        + (" **--quick run: a few training steps, tiny sizes; the figures only check the script.**" if run["quick"] else ""))
    say("")

    trained = {r["model"]: r for r in kinds.get("train", [])}
    if trained:
        extra = run.get("train_extra") or ""
        say(f"**Models trained here**, the same budget for each: `mixer-dist train{' ' + extra if extra else ''} "
            "--run-dir DIR` plus the model's flags (same steps, batch, data and seed):")
        say("")
        say("| model | flags | shape | tokens | parameters | forward GFLOP/image | training | val top-1 at the end |")
        say("|---|---|---|---|---|---|---|---|")
        for name, t in trained.items():
            seconds = t.get("train_seconds")
            say(f"| {name} | `{t['flags'] or '(the default run)'}` | {t['shape'].split(': ', 1)[-1]} | {t['tokens']} | "
                f"{t['parameters']:,} | {t['forward_gflops']:.3f} | {t['steps']} steps, "
                f"{'%.0f s' % seconds if seconds is not None else '?'} ({t.get('wall_seconds', '?')} s with "
                f"evaluations and start-up) | "
                f"{'%.2f%%' % (100 * t['val_top1']) if t.get('val_top1') is not None else '–'} |")
        say("")
        say(f"Each in fp32, bf16, int8 min-max (`quantize --method minmax --max-layer-error 1`: every product "
            f"int8) and int8 calibrated (`quantize`, percentile ranges, products above the 0.02 error limit kept "
            f"bf16); top-1 on the validation split (`eval`), batch-1 latency and batch-{batch} images/s "
            f"(`bench --inference --checkpoint`), and ONNX Runtime on the model's `export --format onnx` "
            f"(`tools/onnx_compare.py bench`; its int8 is `quantize_dynamic`, per-channel):")
        say("")
        say(f"| model | products | top-1 | batch-1 latency, ms ({thread_label} threads) | "
            f"batch-{batch} images/s ({thread_label} threads) | file |")
        say("|---|---|---|---|---|---|")
        for (model, row), per_thread in by_row(kinds.get("model", [])):
            first = next(iter(per_thread.values()))
            latency, speed = timing_cells(per_thread, threads)
            top1 = f"{100 * first['eval']['top1']:.2f}%" if "eval" in first else "–"
            if first.get("bf16_converted_at_load"):
                size = "(fp32 file, converted at load)"
            else:
                size = f"{first['file_bytes']:,} B"
            label = ROW_NAMES.get(row, row)
            summary = products(per_thread)
            if summary and summary not in (row, "fp32", "bf16", "int8") and not row.startswith("onnx"):
                label += f" ({summary})"
            say(f"| {model} | {label} | {top1} | {latency} | {speed} | {size} |")
        say("")

        base = next((p for (m, r), p in by_row(kinds.get("model", [])) if m == "default" and r == "fp32"), None)
        t0 = threads[0]
        if base and t0 in base:
            base_top1 = base[t0]["eval"]["top1"]
            base_latency = base[t0]["latency_seconds"]
            say(f"**Which costs less accuracy per millisecond saved**: every trained option against the default "
                f"run in fp32, batch-1 latency on {t0} thread(s) (negative = slower):")
            say("")
            say("| option | top-1 | points lost | latency, ms | ms saved | points lost per ms saved | "
                f"batch-{batch} images/s |")
            say("|---|---|---|---|---|---|---|")
            rows = []
            for (model, row), per_thread in by_row(kinds.get("model", [])):
                r = per_thread.get(t0)
                if r is None or "eval" not in r or (model, row) == ("default", "fp32"):
                    continue
                lost = 100 * (base_top1 - r["eval"]["top1"])
                saved = 1e3 * (base_latency - r["latency_seconds"])
                per_ms = f"{lost / saved:.2f}" if saved > 0 else "– (not faster)"
                rows.append((r["latency_seconds"], f"| {model} {ROW_NAMES.get(row, row)} | {100 * r['eval']['top1']:.2f}% | "
                                                   f"{lost:+.2f} | {ms(r['latency_seconds'])} | {saved:+.3f} | {per_ms} | "
                                                   f"{rate(r['images_per_second'])} |"))
            say(f"| default fp32 (the reference) | {100 * base_top1:.2f}% | 0 | {ms(base_latency)} | 0 | – | "
                f"{rate(base[t0]['images_per_second'])} |")
            for _, line in sorted(rows):
                say(line)
            say("")

    presets = kinds.get("preset", [])
    if presets:
        extra = next((r.get("image_extra") for r in presets if r.get("image_extra")), "")
        say(f"**Paper shapes, speed only** (fresh weights: `bench --inference --preset P --precision X`, int8 ranges "
            f"calibrated on the benchmark's random images; ONNX Runtime on the same shapes with random weights, "
            f"written as an official .npz, `import`ed and `export --format onnx`ed"
            + (f"; at `{extra}`" if extra else "") + "):")
        say("")
        say(f"| shape | products | batch-1 latency, ms ({thread_label} threads) | vs our fp32 ({threads[0]} thread) | "
            f"batch-{batch} images/s ({thread_label} threads) |")
        say("|---|---|---|---|---|")
        rows = by_row(presets)
        for (model, row), per_thread in rows:
            latency, speed = timing_cells(per_thread, threads)
            base = dict(rows).get((model, "fp32"), {}).get(threads[0])
            mine = per_thread.get(threads[0])
            ratio = f"{mine['latency_seconds'] / base['latency_seconds']:.2f}" if base and mine else "–"
            say(f"| {model} | {ROW_NAMES.get(row, row)} | {latency} | {ratio} | {speed} |")
        say("")

    for q in kinds.get("quantize", []):
        if q["model"] == "default" and q["method"] == "percentile":
            say("<details><summary>The per-layer sensitivity table <code>quantize</code> printed for the default "
                "run (percentile)</summary>")
            say("")
            say(markdown_report(q["report"]))
            say("")
            say("</details>")
            say("")

    phases = kinds.get("phase", [])
    if phases:
        say("Wall time per phase: " + ", ".join(f"{p['phase']} {p['seconds']} s" for p in phases)
            + f"; {sum(p['seconds'] for p in phases)} s in all.")
        say("")
    commands = kinds.get("command", [])
    if commands:
        say(f"<details><summary>The {len(commands)} commands run, with their wall time</summary>")
        say("")
        say("```sh")
        for c in commands:
            say(f"{c['command']}  # {c['seconds']} s")
        say("```")
        say("")
        say("</details>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
