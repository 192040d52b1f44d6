// `mixer-dist bench`: images/s of full training steps and the fraction of the sgemm peak.

import ArgumentParser
import Foundation
import MixerDistributed
import MixerKernels
import MixerTrain

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time full training steps and compare with the measured sgemm rate.")

  @OptionGroup var model: ModelOptions
  @Option(help: "Batch size per step and rank (with --inference: the throughput batch).") var batch: Int = 32
  @Option(help: "OpenBLAS threads per rank (default: cores per node / ranks per node).") var threads: Int?
  @Option(help: "Timed steps.") var steps: Int = 5
  @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
  @Flag(help: "Also print time per kernel (gemm shape, LayerNorm, GELU, ...).") var profile = false
  @Flag(help: "Benchmark inference instead: batch-1 latency and batch-32 throughput (forward only).") var inference = false
  @Option(help: "Benchmark the data loader instead: decode+augment images/s per thread for this --data spec ('jpeg' = generated 500x375 JPEGs).") var data: String?
  @Option(help: "Loader threads for --data.") var loaderWorkers: Int = 1
  @Option(help: "Gradient bucket size in floats (default: train's).") var bucketSize: Int?
  @Option(help: "ZeRO stage: 0 (all-reduce) or 1 (sharded optimizer).") var zero: Int = 0
  @Option(help: "Gradient communication format: fp32 or bf16.") var gradComm: String = "fp32"
  @Flag(help: "Reduce the gradients after backward instead of overlapping it.") var noOverlap = false
  @Option(help: "Time `train --exact` with micro-batches of this many images (--batch, per rank, must be a multiple of it).") var exactMicroBatch: Int?
  @Option(help: "Matrix products: fp32, or bf16 (training: mixed precision on oneDNN, mfu then over the measured bf16 matmul rate); with --inference also int8 (default: fp32, or the --checkpoint's own).") var precision: Precision?
  @Option(help: "With --inference: time this checkpoint (fp32 or quantized) instead of a fresh --preset model.") var checkpoint: String?

  func validate() throws {
    guard batch > 0, steps > 0, warmup >= 0 else {
      throw ValidationError("--batch and --steps must be positive, --warmup non-negative")
    }
    if let t = threads, t <= 0 { throw ValidationError("--threads must be positive") }
  }

  func run() throws {
    try runReportingErrors {
      let config = try model.config()
      if let data {
        Job.setBLASThreads(requested: threads)
        let r = try benchmarkData(
          config: config, spec: data, batch: batch, steps: steps, warmup: warmup, workers: loaderWorkers)
        print(r.loader)
        print(String(format: "loader: %.1f images/s over %d thread(s), %.1f images/s per thread (%dx%d output)",
                     r.loader.imagesPerSecond, r.loader.threads, r.loader.imagesPerSecond / Double(r.loader.threads),
                     r.imageSize.height, r.imageSize.width))
        print(String(format: "training fed by %d loader thread(s): %.1f ms/step, %.1f images/s; the step waited for data in %d of %d steps (%.2f s)",
                     loaderWorkers, r.fed.secondsPerStep * 1e3, r.fed.imagesPerSecond, r.fed.waitedSteps, r.fed.steps, r.fed.waitSeconds))
        return
      }
      if inference {
        Job.setBLASThreads(requested: threads)
        let r = try benchmarkInference(
          config: config, preset: model.preset, batch: batch, repeats: max(steps, 8), precision: precision, checkpoint: checkpoint,
          profile: profile)
        print("\(checkpoint == nil ? "preset " : "")\(r.preset)  threads \(r.threads)  inference, products \(r.precision)")
        for precision in Precision.allCases { if let note = precision.kernelNote, r.precision.contains(precision.rawValue) { print("note: \(note)") } }
        print(String(format: "batch-1 latency      %8.2f ms", r.latencySeconds * 1e3))
        print(String(format: "batch-%d throughput  %8.1f images/s", r.throughputBatch, r.imagesPerSecond))
        if profile { printKernelProfile(forwards: r.profiledForwards) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(r), as: UTF8.self))
        return
      }
      guard let gradientPrecision = GradientPrecision(rawValue: gradComm) else {
        throw ValidationError("unknown --grad-comm '\(gradComm)' (known: fp32, bf16)")
      }
      let reduction = BenchmarkReduction(
        bucketFloats: bucketSize, zeroStage: zero, overlap: !noOverlap, precision: gradientPrecision,
        exactMicroBatch: exactMicroBatch)
      let (r, rank) = try Job.run { comm in
        Job.setBLASThreads(requested: threads, comm: comm)
        let r = try benchmarkTraining(
          config: config, preset: model.preset, batch: batch, steps: steps, warmup: warmup,
          profile: profile, comm: comm, reduction: reduction, precision: precision ?? .fp32)
        return (r, comm.rank)
      }
      guard rank == 0 else { return }
      print("preset \(r.preset)  batch \(r.batch) per rank  ranks \(r.ranks)  threads \(r.threads)  OpenBLAS core \(BLAS.coreSummary)  kernels \(KernelISA.summary)  precision \(r.precision.rawValue)")
      if let note = r.precision.kernelNote { print("note: \(note)") }
      print(String(format: "step          %8.1f ms", r.secondsPerStep * 1e3))
      print(String(format: "  forward     %8.1f ms", r.forwardSeconds * 1e3))
      print(String(format: "  backward    %8.1f ms", r.backwardSeconds * 1e3))
      print(String(format: "  optimizer   %8.1f ms", r.optimizerSeconds * 1e3))
      print(String(format: "images/s      %8.1f", r.imagesPerSecond))
      print(String(format: "GFLOP/s       %8.1f", r.gflops))
      print(String(format: "sgemm GFLOP/s %8.1f", r.sgemmGflops))
      if let bf16 = r.bf16Gflops {
        print(String(format: "bf16 GFLOP/s  %8.1f  (oneDNN matmul, %@)", bf16, DNNL.effectiveISA))
        if let note = r.bf16Note { print("note: \(note)") }
      }
      print(String(format: "mfu           %8.3f", r.mfu)
        + (r.mfuRange.count == 2 ? String(format: "  (steps %.3f-%.3f, each over the rate measured after it)", r.mfuRange[0], r.mfuRange[1]) : ""))
      if let spread = r.ceilingSpread, r.ceilingShape.count == 3 {
        print(String(format: "ceiling spread %d back-to-back runs of %@ %dx%dx%d: median %.2f, slowest %.2f of the fastest",
                     r.ceilingRuns.count, r.bf16Gflops != nil ? "bf16 matmul" : "sgemm",
                     r.ceilingShape[0], r.ceilingShape[1], r.ceilingShape[2], spread.median, spread.slowest))
      }
      if r.ranks > 1 {
        print(String(format: "exposed communication %5.1f%% of step time", r.exposedCommunicationShare * 100))
        print("gradients     \(r.buckets) buckets of \(r.bucketFloats) floats, \(r.gradComm), "
          + (r.overlap ? "overlapped" : "after backward")
          + String(format: ", %.1f ms communication per step, %.1f ms not hidden, %.1f buckets started during backward",
                   r.communicationSeconds * 1e3, r.exposedSeconds * 1e3, r.bucketsStartedBeforeBackwardEnd))
      }
      if profile {
        // a product is a kernel with a FLOP count (sgemm, bf16 matmul); the rest is elementwise
        let total = KernelProfile.seconds.values.reduce(0, +)
        let products = KernelProfile.seconds.filter { (KernelProfile.flops[$0.key] ?? 0) > 0 }.values.reduce(0, +)
        print(String(format: "profiled %.1f ms/step: matrix products %.1f ms (%.0f%%), everything else %.1f ms (%.0f%%)",
                     total / Double(steps) * 1e3, products / Double(steps) * 1e3, 100 * products / max(total, 1e-12),
                     (total - products) / Double(steps) * 1e3, 100 * (total - products) / max(total, 1e-12)))
        print("per step, by kernel:")
        for (name, seconds) in KernelProfile.seconds.sorted(by: { $0.value > $1.value }) {
          let perStep = seconds / Double(steps)
          let flops = KernelProfile.flops[name] ?? 0
          let rate = flops > 0 ? String(format: "%7.1f GFLOP/s", flops / seconds / 1e9) : ""
          print(String(format: "  %-34@ %8.2f ms  %@", name as NSString, perStep * 1e3, rate))
        }
      }
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(r), as: UTF8.self))
    }
  }
}

/// Prints the per-kernel time of the profiled batch-1 inference forwards.
func printKernelProfile(forwards: Int) {
  print("per batch-1 forward, by kernel:")
  for (name, seconds) in KernelProfile.seconds.sorted(by: { $0.value > $1.value }) {
    let flops = KernelProfile.flops[name] ?? 0
    let rate = flops > 0 ? String(format: "%7.1f GOP/s", flops / seconds / 1e9) : ""
    print(String(format: "  %-34@ %8.3f ms  %@", name as NSString, seconds / Double(max(forwards, 1)) * 1e3, rate))
  }
}
