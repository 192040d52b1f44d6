#!/usr/bin/env python3
"""ONNX Runtime against mixer-dist on an exported model.

  tools/onnx_compare.py check MODEL.onnx INPUTS.npy LOGITS.npy [--tolerance 1e-4]
      onnx.checker accepts the file, and ONNX Runtime's logits on INPUTS ([B, H, W, 3] float32)
      match LOGITS ([B, K], ours) to --tolerance (max |diff| / max |ours|). Prints one JSON line;
      exit status 1 when they do not match.
      With --rms-tolerance R instead (a quantized model): the relative RMS difference
      ||theirs - ours|| / ||ours|| is at most R and the top-1 class (the last axis: per image, or
      per pixel for a segmentation model) agrees on every one (or on --min-agreement of them).
  tools/onnx_compare.py bench MODEL.onnx [--threads 1] [--repeats 20] [--batch 32]
      batch-1 latency (median) and batch-B images/s of ONNX Runtime on the model, fp32 and after
      its own dynamic int8 quantization (onnxruntime.quantization.quantize_dynamic, per-channel
      int8 weights, activations quantized at run time), on the given intra-op threads.
      Prints one JSON line per variant (the format of `mixer-dist bench --inference`).
"""
import argparse, json, os, sys, tempfile, time

import numpy as np


def session(path, threads, optimize=True):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if not optimize:
        # no graph rewrites: QDQ pairs stay fp32 arithmetic on the dequantized values
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def check(args):
    import onnx
    onnx.checker.check_model(args.model, full_check=True)
    inputs = np.load(args.inputs).astype(np.float32)
    ours = np.load(args.logits).astype(np.float32)
    theirs = session(args.model, 1, optimize=not args.unoptimized).run(["logits"], {"images": inputs})[0]
    if theirs.shape != ours.shape:
        print(json.dumps({"checker": "ok", "shape": list(theirs.shape), "expected_shape": list(ours.shape), "ok": False}))
        return 1
    scale = float(np.abs(ours).max())
    diff = float(np.abs(theirs - ours).max())
    rms = float(np.linalg.norm(theirs - ours) / max(np.linalg.norm(ours), 1e-30))
    # the class is the last axis: [B, K] logits, or [B, H, W, K] per pixel
    agreement = float(np.mean(theirs.argmax(axis=-1) == ours.argmax(axis=-1)))
    if args.rms_tolerance is not None:
        ok = rms <= args.rms_tolerance and agreement >= args.min_agreement
    else:
        ok = diff <= args.tolerance * max(scale, 1e-30)
    print(json.dumps({"checker": "ok", "shape": list(theirs.shape), "max_abs_diff": diff,
                      "max_abs_logit": scale, "relative": diff / max(scale, 1e-30), "relative_rms": rms,
                      "top1_agreement": agreement, "ok": bool(ok)}))
    return 0 if ok else 1


def time_session(sess, shape, batch, repeats):
    rng = np.random.default_rng(3)
    one = rng.uniform(-1, 1, size=(1,) + shape).astype(np.float32)
    many = rng.uniform(-1, 1, size=(batch,) + shape).astype(np.float32)
    sess.run(["logits"], {"images": one})
    latencies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(["logits"], {"images": one})
        latencies.append(time.perf_counter() - t0)
    sess.run(["logits"], {"images": many})
    rounds = max(1, repeats // 4)
    t0 = time.perf_counter()
    for _ in range(rounds):
        sess.run(["logits"], {"images": many})
    seconds = time.perf_counter() - t0
    return sorted(latencies)[len(latencies) // 2], batch * rounds / seconds


def bench(args):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    model = onnx.load(args.model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    with tempfile.TemporaryDirectory() as folder:
        int8_path = os.path.join(folder, "model-int8.onnx")
        quantize_dynamic(args.model, int8_path, weight_type=QuantType.QInt8, per_channel=True)
        for name, path in [("onnxruntime fp32", args.model), ("onnxruntime int8 dynamic", int8_path)]:
            latency, throughput = time_session(session(path, args.threads), shape, args.batch, args.repeats)
            print(json.dumps({"runtime": name, "threads": args.threads, "latency_seconds": latency,
                              "throughput_batch": args.batch, "images_per_second": throughput,
                              "file_bytes": os.path.getsize(path)}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("check")
    c.add_argument("model")
    c.add_argument("inputs")
    c.add_argument("logits")
    c.add_argument("--tolerance", type=float, default=1e-4)
    c.add_argument("--rms-tolerance", type=float, default=None)
    c.add_argument("--min-agreement", type=float, default=1.0)
    c.add_argument("--unoptimized", action="store_true",
                   help="run without ONNX Runtime's graph optimizations (QDQ stays fp32 on dequantized values)")
    b = commands.add_parser("bench")
    b.add_argument("model")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    return check(args) if args.command == "check" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
