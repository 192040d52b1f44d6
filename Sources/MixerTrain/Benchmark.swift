// `mixer-dist bench`: times full training steps (forward, loss, backward, clipping, AdamW) after
// warm-up, and in the same run measures the sgemm rate of the same OpenBLAS kernel and thread
// count, so the model FLOP utilisation (mfu) is relative to what this machine's BLAS can do.

import Foundation
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel

/// Best-of-`repeats` GFLOP/s of an `m×k · k×n` sgemm (beta 0).
public func measureSgemm(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
  let a = FlatBuffer(count: m * k, repeating: 0.5)
  let b = FlatBuffer(count: k * n, repeating: 0.25)
  let c = FlatBuffer(count: m * n)
  var best = Double.infinity
  for _ in 0..<repeats {
    let t0 = monotonicSeconds()
    gemm(.none, .none, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
    best = min(best, monotonicSeconds() - t0)
  }
  return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}

/// What one benchmark run measured.
public struct BenchResult: Codable {
  public var preset: String
  public var batch: Int
  public var ranks: Int
  public var threads: Int
  public var blasCore: String
  public var steps: Int
  public var secondsPerStep: Double
  public var forwardSeconds: Double
  public var backwardSeconds: Double
  public var optimizerSeconds: Double
  public var imagesPerSecond: Double
  public var gflops: Double
  public var sgemmGflops: Double
  public var mfu: Double
  /// time per step backward did not hide the all-reduce, as a share of the step (0 on one rank)
  public var exposedCommunicationShare: Double

  enum CodingKeys: String, CodingKey {
    case preset, batch, ranks, threads, steps
    case exposedCommunicationShare = "exposed_communication_share"
    case blasCore = "blas_core"
    case secondsPerStep = "seconds_per_step"
    case forwardSeconds = "forward_seconds"
    case backwardSeconds = "backward_seconds"
    case optimizerSeconds = "optimizer_seconds"
    case imagesPerSecond = "images_per_second"
    case gflops
    case sgemmGflops = "sgemm_gflops"
    case mfu
  }
}

/// Runs `warmup` untimed then `steps` timed training steps of `config` at `batch` images per rank,
/// gradients all-reduced in buckets overlapped with backward when there are several ranks.
/// images/s counts every rank's images; GFLOP/s and mfu are per rank.
public func benchmarkTraining(
  config: MixerConfig, preset: String, batch: Int, steps: Int, warmup: Int, profile: Bool = false,
  comm: Communicator = SingleProcessCommunicator(), bucketFloats: Int = 1 << 20
) throws -> BenchResult {
  let model = try MixerModel(config: config, seed: 0)
  // a non-zero head so every gradient is non-trivial, as in training after step one
  if let head = model.table["head/kernel"] ?? model.table["segmentation_head/kernel"] {
    var rng = CounterRNG(seed: 1)
    for i in head.range { model.parameters[i] = Float(rng.normal() * 0.01) }
  }
  let optimizer = Optimizer(config: OptimizerConfig(), table: model.table)
  let acts = Activations(config: config, batch: batch)
  let imageFloats = batch * config.imageHeight * config.imageWidth * 3
  let images = FlatBuffer(count: imageFloats)
  var rng = CounterRNG(seed: 2)
  for i in 0..<imageFloats { images[i] = rng.uniform() * 2 - 1 }
  let labels = (0..<batch).map { Int32($0 % config.classes) }
  labels.withUnsafeBufferPointer {
    smoothedOneHot(targets: acts.targets, labels: $0.baseAddress!, batch: batch, classes: config.classes, smoothing: 0)
  }
  // segmentation: a class per pixel (horizontal bands)
  let maskPixels = config.isSegmentation ? batch * config.imageHeight * config.imageWidth : 0
  for p in 0..<maskPixels { acts.masks[p] = Int32((p / (config.imageWidth * 4)) % config.classes) }
  let bucketer = GradientBucketer(
    communicator: comm, buffer: model.gradients.pointer, count: model.table.count,
    bucketSize: bucketFloats)
  var forward = 0.0, backward = 0.0, update = 0.0, exposed = 0.0
  try comm.barrier()
  for step in 0..<(warmup + steps) {
    if step == warmup { KernelProfile.reset(); KernelProfile.enabled = profile }
    let t0 = monotonicSeconds()
    model.zeroGradients()
    model.forward(images: images.pointer, acts: acts)
    model.loss(acts: acts)
    let t1 = monotonicSeconds()
    model.backward(acts: acts, lossScale: 1 / Float(batch * comm.size)) { bucketer.markReady(upTo: $0) }
    let timings = try bucketer.finish()
    let t2 = monotonicSeconds()
    let norm = sumOfSquares(model.gradients.pointer, range: 0..<model.table.count).squareRoot()
    clipByGlobalNorm(model.gradients.pointer, range: 0..<model.table.count, norm: norm, maxNorm: 1)
    optimizer.update(parameters: model.parameters.pointer, gradients: model.gradients.pointer, lr: 1e-4, step: step + 1)
    let t3 = monotonicSeconds()
    if step >= warmup {
      forward += t1 - t0
      backward += t2 - t1
      update += t3 - t2
      exposed += timings.exposedSeconds
    }
  }
  KernelProfile.enabled = false
  let perStep = (forward + backward + update) / Double(steps)
  let flops = config.trainingFLOPsPerImage * Double(batch) / perStep / 1e9
  // the sgemm ceiling: the model's largest product shape and a square one, best of both
  let sb = config.tokens * batch
  let peak = max(
    measureSgemm(m: sb, n: config.channelsMLP, k: config.hidden),
    measureSgemm(m: 2048, n: 2048, k: 2048, repeats: 3))
  return BenchResult(
    preset: preset, batch: batch, ranks: comm.size, threads: BLAS.threads, blasCore: BLAS.coreName, steps: steps,
    secondsPerStep: perStep, forwardSeconds: forward / Double(steps),
    backwardSeconds: backward / Double(steps), optimizerSeconds: update / Double(steps),
    imagesPerSecond: Double(batch * comm.size) / perStep, gflops: flops, sgemmGflops: peak,
    mfu: flops / peak, exposedCommunicationShare: exposed / Double(steps) / perStep)
}

/// What an inference benchmark measured.
public struct InferenceResult: Codable {
  public var preset: String
  public var threads: Int
  /// median seconds of one batch-1 forward
  public var latencySeconds: Double
  public var throughputBatch: Int
  /// images/s of batched forwards
  public var imagesPerSecond: Double

  enum CodingKeys: String, CodingKey {
    case preset, threads
    case latencySeconds = "latency_seconds"
    case throughputBatch = "throughput_batch"
    case imagesPerSecond = "images_per_second"
  }
}

/// Batch-1 latency (median of `repeats`) and batch-`batch` throughput of evaluation forwards.
public func benchmarkInference(config: MixerConfig, preset: String, batch: Int, repeats: Int) throws -> InferenceResult {
  let model = try MixerModel(config: config, seed: 0)
  let imageFloats = config.imageHeight * config.imageWidth * 3
  let images = FlatBuffer(count: batch * imageFloats)
  var rng = CounterRNG(seed: 3)
  for i in 0..<images.count { images[i] = rng.uniform() * 2 - 1 }
  let single = Activations(config: config, batch: 1)
  model.forward(images: images.pointer, acts: single)
  var latencies: [Double] = []
  for _ in 0..<repeats {
    let t0 = monotonicSeconds()
    model.forward(images: images.pointer, acts: single)
    latencies.append(monotonicSeconds() - t0)
  }
  let batched = Activations(config: config, batch: batch)
  model.forward(images: images.pointer, acts: batched)
  let t0 = monotonicSeconds()
  let rounds = max(1, repeats / 4)
  for _ in 0..<rounds { model.forward(images: images.pointer, acts: batched) }
  let seconds = monotonicSeconds() - t0
  latencies.sort()
  return InferenceResult(
    preset: preset, threads: BLAS.threads, latencySeconds: latencies[latencies.count / 2],
    throughputBatch: batch, imagesPerSecond: Double(batch * rounds) / seconds)
}

/// Training steps fed by the prefetching loader over a real data source: did the step wait?
public struct FedStepsResult {
  public var steps: Int
  public var secondsPerStep: Double
  public var imagesPerSecond: Double
  /// timed steps whose batch was not ready when the step wanted it
  public var waitedSteps: Int
  public var waitSeconds: Double
}

/// Runs `warmup` + `steps` single-process training steps of `config` whose batches come from
/// `spec` through a `BatchLoader` with `workers` threads (training augmentation on).
public func benchmarkFedSteps(
  config: MixerConfig, spec: String, batch: Int, steps: Int, warmup: Int, workers: Int
) throws -> FedStepsResult {
  var options = DataOptions()
  options.valFraction = nil
  let dataset = try makeDataset(
    spec: spec, split: .train, imageSize: (config.imageHeight, config.imageWidth), seed: 0, options: options)
  var model = config
  model.classes = dataset.numClasses
  if dataset is any SegmentationDataset { model.task = .segmentation }
  let mixer = try MixerModel(config: model, seed: 0)
  let optimizer = Optimizer(config: OptimizerConfig(), table: mixer.table)
  let acts = Activations(config: model, batch: batch)
  let sampler = try ShardedSampler(datasetCount: dataset.count, globalBatch: batch, seed: 0)
  let loader = try BatchLoader(
    dataset: dataset, sampler: sampler, startStep: 0, endStep: warmup + steps, workers: workers, depth: 3)
  defer { loader.stop() }
  var waited = 0, waitSeconds = 0.0, start = 0.0
  for step in 0..<(warmup + steps) {
    if step == warmup { start = monotonicSeconds() }
    let before = monotonicSeconds()
    let (next, didWait) = try loader.next()
    if step >= warmup && didWait { waited += 1; waitSeconds += monotonicSeconds() - before }
    mixer.zeroGradients()
    next.pixels.withUnsafeBufferPointer { mixer.forward(images: $0.baseAddress!, acts: acts) }
    if model.isSegmentation {
      next.masks.withUnsafeBufferPointer { acts.masks.update(from: $0.baseAddress!, count: $0.count) }
    } else {
      next.labels.withUnsafeBufferPointer {
        smoothedOneHot(targets: acts.targets, labels: $0.baseAddress!, batch: batch, classes: model.classes, smoothing: 0)
      }
    }
    mixer.loss(acts: acts)
    mixer.backward(acts: acts, lossScale: 1 / Float(batch))
    optimizer.update(parameters: mixer.parameters.pointer, gradients: mixer.gradients.pointer, lr: 1e-4, step: step + 1)
    loader.recycle(next)
  }
  let seconds = monotonicSeconds() - start
  return FedStepsResult(
    steps: steps, secondsPerStep: seconds / Double(steps), imagesPerSecond: Double(steps * batch) / seconds,
    waitedSteps: waited, waitSeconds: waitSeconds)
}
