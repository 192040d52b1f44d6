// `mixer-dist bench`: times full training steps (forward, loss, backward, clipping, AdamW) after
// warm-up, and in the same run measures the sgemm rate of the same OpenBLAS kernel and thread
// count, so the model FLOP utilisation (mfu) is relative to what this machine's BLAS can do. In
// bf16 (`--precision bf16`) mfu is relative to the bf16 matmul rate of oneDNN, measured the same way.

import Foundation
import MixerData
import MixerDistributed
import MixerInference
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

/// Best-of-`repeats` GFLOP/s of an `m×k · k×n` bf16 matmul (fp32 accumulate and output, beta 0)
/// on oneDNN with its current threads.
public func measureBF16Matmul(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
  let a = [UInt16](repeating: bf16Bits(0.5), count: m * k)
  let b = [UInt16](repeating: bf16Bits(0.25), count: k * n)
  let c = FlatBuffer(count: m * n)
  var best = Double.infinity
  for _ in 0..<(repeats + 1) {  // the first call creates the primitive
    let t0 = monotonicSeconds()
    matmulBF16(.none, .none, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: c.pointer, ldc: n)
    best = min(best, monotonicSeconds() - t0)
  }
  return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}

/// The user's warning when this CPU's bf16 products (`bf16` GFLOP/s) run slower than its sgemm
/// (`sgemm` GFLOP/s, measured beside them): there, bf16 steps are no faster than fp32 ones. On an
/// Intel core without AMX (or with AMX hidden by the hypervisor) oneDNN runs bf16 on vdpbf16ps,
/// which issues at half the rate of the fp32 FMA (tools/isa-peak measures both); nil where bf16
/// is the faster.
public func bf16SlowerNote(bf16: Double, sgemm: Double) -> String? {
  guard sgemm > 0, bf16 < sgemm else { return nil }
  return String(format: "bf16 products run at %.2fx the sgemm rate on this CPU (oneDNN %@): expect bf16 steps no faster than fp32 here "
                + "(tools/isa-peak compares the instructions)", bf16 / sgemm, DNNL.effectiveISA)
}

extension Precision {
  /// For training in this precision: `bf16SlowerNote` from one 2048³ product in each format (after
  /// a call that warms it up, about a second on 1 core), when the products are bf16 on oneDNN's
  /// own kernels; nil otherwise (fp32, or bf16 on the portable kernels, which `kernelNote` covers).
  public func measuredSpeedNote() -> String? {
    guard format.operandRounding == .bfloat16, !usesPortableKernels else { return nil }
    return bf16SlowerNote(
      bf16: measureBF16Matmul(m: 2048, n: 2048, k: 2048, repeats: 1), sgemm: measureSgemm(m: 2048, n: 2048, k: 2048, repeats: 1))
  }
}

/// GFLOP/s of `runs` back-to-back single `m×k · k×n` products (beta 0) on buffers allocated and
/// touched once, sorted from slowest to fastest: sgemm, or with `bf16` the bf16 matmul. How far
/// the median lies below the fastest says how steady the machine's product rate is, and so how
/// close to a best-of ceiling any step can come.
public func measureProductSpread(m: Int, n: Int, k: Int, runs: Int, bf16: Bool) -> [Double] {
  let c = FlatBuffer(count: m * n)
  var seconds: [Double] = []
  if bf16 {
    let a = [UInt16](repeating: bf16Bits(0.5), count: m * k)
    let b = [UInt16](repeating: bf16Bits(0.25), count: k * n)
    for run in 0...runs {  // run 0 creates the primitive and touches c
      let t0 = monotonicSeconds()
      matmulBF16(.none, .none, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: c.pointer, ldc: n)
      if run > 0 { seconds.append(monotonicSeconds() - t0) }
    }
  } else {
    let a = FlatBuffer(count: m * k, repeating: 0.5)
    let b = FlatBuffer(count: k * n, repeating: 0.25)
    for run in 0...runs {  // run 0 touches c
      let t0 = monotonicSeconds()
      gemm(.none, .none, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
      if run > 0 { seconds.append(monotonicSeconds() - t0) }
    }
  }
  return seconds.map { 2 * Double(m) * Double(n) * Double(k) / $0 / 1e9 }.sorted()
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let sorted = values.sorted(), mid = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// What one benchmark run measured.
public struct BenchResult: Codable {
  public var preset: String
  public var batch: Int
  public var ranks: Int
  public var threads: Int
  public var blasCore: String
  /// the instruction set of the elementwise kernels (KernelISA)
  public var kernelISA: String = KernelISA.active.description
  public var steps: Int
  public var secondsPerStep: Double
  public var forwardSeconds: Double
  public var backwardSeconds: Double
  public var optimizerSeconds: Double
  public var imagesPerSecond: Double
  public var gflops: Double
  public var sgemmGflops: Double
  /// the products' number format; for bf16, mfu is over `bf16Gflops`
  public var precision: Precision
  /// the measured bf16 matmul rate (bf16 runs only)
  public var bf16Gflops: Double?
  /// `bf16SlowerNote` of the two rates this run measured (nil for fp32 runs)
  public var bf16Note: String? { bf16Gflops.flatMap { bf16SlowerNote(bf16: $0, sgemm: sgemmGflops) } }
  /// the median over timed steps of the step's GFLOP/s over the rate measured right after it
  /// (`sgemmGflops`, `bf16Gflops`: the medians of those measurements)
  public var mfu: Double
  /// the lowest and highest of those per-step ratios
  public var mfuRange: [Double] = []
  /// the ceiling's steadiness: GFLOP/s of back-to-back single runs of the model's largest product
  /// (in the products' precision) after the timed steps, slowest first. The median of these over
  /// the fastest bounds what mfu can show on this machine: mfu sets every step against a best-of
  /// ceiling, and even the ceiling's own product does not run at its best most of the time.
  public var ceilingRuns: [Double] = []
  /// that product's M, N, K
  public var ceilingShape: [Int] = []
  /// the median and the slowest of `ceilingRuns` as fractions of the fastest (nil without runs)
  public var ceilingSpread: (median: Double, slowest: Double)? {
    guard let fastest = ceilingRuns.last, fastest > 0 else { return nil }
    return (median(ceilingRuns) / fastest, ceilingRuns[0] / fastest)
  }
  /// time per step backward did not hide the all-reduce, as a share of the step (0 on one rank)
  public var exposedCommunicationShare: Double
  /// the gradient reduction benchmarked: floats per bucket, buckets per step, ZeRO stage,
  /// overlap, wire format, and the gradient bytes one rank puts into the reduction per step
  public var bucketFloats: Int = 0
  public var buckets: Int = 0
  public var zeroStage: Int = 0
  public var overlap: Bool = true
  public var gradComm: String = GradientPrecision.fp32.rawValue
  public var gradientBytes: Int = 0
  /// seconds per step inside gradient collectives (and ZeRO-1's all-gather), and the part of it
  /// backward did not hide
  public var communicationSeconds: Double = 0
  public var exposedSeconds: Double = 0
  /// of those, seconds per step in ZeRO-1's all-gather of the parameters (never hidden)
  public var allGatherSeconds: Double = 0
  /// buckets per step handed to the communication thread before backward ended
  public var bucketsStartedBeforeBackwardEnd: Double = 0

  enum CodingKeys: String, CodingKey {
    case preset, batch, ranks, threads, steps
    case exposedCommunicationShare = "exposed_communication_share"
    case blasCore = "blas_core"
    case kernelISA = "kernel_isa"
    case secondsPerStep = "seconds_per_step"
    case forwardSeconds = "forward_seconds"
    case backwardSeconds = "backward_seconds"
    case optimizerSeconds = "optimizer_seconds"
    case imagesPerSecond = "images_per_second"
    case gflops
    case sgemmGflops = "sgemm_gflops"
    case precision
    case bf16Gflops = "bf16_gflops"
    case mfu
    case mfuRange = "mfu_range"
    case ceilingRuns = "ceiling_runs_gflops"
    case ceilingShape = "ceiling_shape"
    case bucketFloats = "bucket_floats"
    case buckets
    case zeroStage = "zero"
    case overlap
    case gradComm = "grad_comm"
    case gradientBytes = "gradient_bytes"
    case communicationSeconds = "communication_seconds"
    case exposedSeconds = "exposed_seconds"
    case allGatherSeconds = "all_gather_seconds"
    case bucketsStartedBeforeBackwardEnd = "buckets_started_before_backward_end"
  }
}

/// The gradient reduction `bench` runs (nil / defaults: a training run's defaults).
public struct BenchmarkReduction: Sendable {
  public var bucketFloats: Int?
  public var zeroStage = 0
  public var overlap = true
  public var precision = GradientPrecision.fp32
  /// `--exact` with micro-batches of this many images (nil: today's reduction)
  public var exactMicroBatch: Int?
  public init(
    bucketFloats: Int? = nil, zeroStage: Int = 0, overlap: Bool = true, precision: GradientPrecision = .fp32,
    exactMicroBatch: Int? = nil
  ) {
    self.bucketFloats = bucketFloats
    self.zeroStage = zeroStage
    self.overlap = overlap
    self.precision = precision
    self.exactMicroBatch = exactMicroBatch
  }
}

/// The settings `bench` trains with: the defaults of a run, `batch` images per rank.
func benchmarkTrainConfig(_ config: MixerConfig, batch: Int, ranks: Int, reduction: BenchmarkReduction) -> TrainConfig {
  var train = TrainConfig(model: config)
  train.globalBatch = batch * ranks
  train.bucketFloats = reduction.bucketFloats
  train.zeroStage = reduction.zeroStage
  train.overlap = reduction.overlap
  train.gradientCommunication = reduction.precision
  if let microBatch = reduction.exactMicroBatch {
    train.exact = true
    train.exactMicroBatch = microBatch
  }
  return train
}

/// Runs `warmup` untimed then `steps` timed training steps of `config` at `batch` images per rank
/// through the trainer's own `TrainingStep` (accumulate → reduce → clip → update), gradients
/// all-reduced in buckets overlapped with backward when there are several ranks.
/// images/s counts every rank's images; GFLOP/s and mfu are per rank.
public func benchmarkTraining(
  config: MixerConfig, preset: String, batch: Int, steps: Int, warmup: Int, profile: Bool = false,
  comm: Communicator = SingleProcessCommunicator(), reduction: BenchmarkReduction = BenchmarkReduction(),
  precision: Precision = .fp32, ceilingRuns: Int = 9
) throws -> BenchResult {
  let model = try MixerModel(config: config, seed: 0)
  model.products = try precision.makeProducts()
  // a non-zero head so every gradient is non-trivial, as in training after step one
  if let head = model.table[config.head.scope + "/kernel"] {
    var rng = CounterRNG(seed: 1)
    for i in head.range { model.parameters[i] = Float(rng.normal() * 0.01) }
  }
  let train = benchmarkTrainConfig(config, batch: batch, ranks: comm.size, reduction: reduction)
  try train.validate(worldSize: comm.size)
  let step = TrainingStep(model: model, config: train, comm: comm, localBatch: batch)
  let input = config.task.training.syntheticBatch(config, size: batch)
  var forward = 0.0, backward = 0.0, update = 0.0, exposed = 0.0, communication = 0.0, allGather = 0.0, started = 0
  // The ceiling is measured right after every timed step (the model's largest product shape and
  // a square one, best of both), and mfu is the median over steps of the step's rate over the
  // ceiling measured beside it: on a machine whose speed drifts (a shared VM: the sgemm rate here
  // moved between 95 and 310 GFLOP/s within an hour), a ceiling measured once at the end set
  // against steps timed earlier made mfu swing both ways.
  let sb = config.tokens * batch
  var sgemmRates: [Double] = [], bf16Rates: [Double] = [], ratios: [Double] = []
  try comm.barrier()
  for index in 0..<(warmup + steps) {
    if index == warmup { KernelProfile.reset(); KernelProfile.enabled = profile }
    let result = try step.run(batch: input, step: index)
    if index >= warmup {
      forward += result.forwardSeconds
      backward += result.backwardSeconds
      update += result.updateSeconds
      exposed += result.communication.exposedSeconds + result.allGatherSeconds
      communication += result.communication.communicationSeconds + result.allGatherSeconds
      allGather += result.allGatherSeconds
      started += result.communication.bucketsStartedBeforeFinish
      KernelProfile.enabled = false
      let sgemm = max(
        measureSgemm(m: sb, n: config.channelsMLP, k: config.hidden, repeats: 2),
        measureSgemm(m: 2048, n: 2048, k: 2048, repeats: 1))
      let bf16 = precision.format.operandRounding == .bfloat16
        ? max(
          measureBF16Matmul(m: sb, n: config.channelsMLP, k: config.hidden, repeats: 2),
          measureBF16Matmul(m: 2048, n: 2048, k: 2048, repeats: 1)) : nil
      KernelProfile.enabled = profile
      let seconds = result.forwardSeconds + result.backwardSeconds + result.updateSeconds
      sgemmRates.append(sgemm)
      if let bf16 { bf16Rates.append(bf16) }
      ratios.append(config.trainingFLOPsPerImage * Double(batch) / seconds / 1e9 / (bf16 ?? sgemm))
    }
  }
  KernelProfile.enabled = false
  let perStep = (forward + backward + update) / Double(steps)
  let flops = config.trainingFLOPsPerImage * Double(batch) / perStep / 1e9
  let peak = median(sgemmRates)
  let bf16Peak = bf16Rates.isEmpty ? nil : median(bf16Rates)
  var result = BenchResult(
    preset: preset, batch: batch, ranks: comm.size, threads: BLAS.threads, blasCore: BLAS.coreName, steps: steps,
    secondsPerStep: perStep, forwardSeconds: forward / Double(steps),
    backwardSeconds: backward / Double(steps), optimizerSeconds: update / Double(steps),
    imagesPerSecond: Double(batch * comm.size) / perStep, gflops: flops, sgemmGflops: peak,
    precision: precision, bf16Gflops: bf16Peak, mfu: median(ratios),
    exposedCommunicationShare: exposed / Double(steps) / perStep)
  result.mfuRange = [ratios.min() ?? 0, ratios.max() ?? 0]
  result.ceilingShape = [sb, config.channelsMLP, config.hidden]
  result.ceilingRuns = measureProductSpread(
    m: sb, n: config.channelsMLP, k: config.hidden, runs: ceilingRuns, bf16: precision.format.operandRounding == .bfloat16)
  result.bucketFloats = train.gradientBucketFloats(worldSize: comm.size)
  result.buckets = step.bucketer.buckets.count
  result.zeroStage = train.zeroStage
  result.overlap = train.overlap
  result.gradComm = train.gradientCommunication.rawValue
  result.gradientBytes = model.table.count * train.gradientCommunication.bytesPerElement
  result.communicationSeconds = communication / Double(steps)
  result.exposedSeconds = exposed / Double(steps)
  result.allGatherSeconds = allGather / Double(steps)
  result.bucketsStartedBeforeBackwardEnd = Double(started) / Double(steps)
  return result
}

/// What an inference benchmark measured.
public struct InferenceResult: Codable {
  public var preset: String
  public var threads: Int
  /// the products' precision ("fp32", "int8", "int8 (2 of 18 products bf16)")
  public var precision: String
  /// median seconds of one batch-1 forward
  public var latencySeconds: Double
  public var throughputBatch: Int
  /// images/s of batched forwards
  public var imagesPerSecond: Double
  /// batch-1 forwards run with `KernelProfile` on (0 unless asked)
  public var profiledForwards = 0

  enum CodingKeys: String, CodingKey {
    case preset, threads, precision
    case latencySeconds = "latency_seconds"
    case throughputBatch = "throughput_batch"
    case imagesPerSecond = "images_per_second"
  }
}

/// Batch-1 latency (median of `repeats`) and batch-`batch` throughput of evaluation forwards
/// through the inference plan. With `checkpoint`, its model and precisions (`precision` overrides
/// them); without, a freshly initialised `config` in `precision`, whose int8 input ranges are
/// calibrated (percentile) on the benchmark's own random images (speed does not depend on them).
public func benchmarkInference(
  config: MixerConfig, preset: String, batch: Int, repeats: Int, precision: Precision? = nil, checkpoint: String? = nil,
  profile: Bool = false
) throws -> InferenceResult {
  DNNL.setThreads(BLAS.threads)
  let plan: InferencePlan
  var name = preset
  if let checkpoint {
    let inference = try loadInferenceModel(checkpoint, precision: precision)
    plan = try inference.plan ?? InferencePlan(model: inference.loaded.model, precision: .fp32)
    name = checkpoint
  } else {
    let model = try MixerModel(config: config, seed: 0)
    let wanted = precision ?? .fp32
    var ranges: [String: ActivationQuantization] = [:]
    if wanted.format.operandRounding == .affineU8 {  // a calibrated input range per layer
      let count = 4
      var rng = CounterRNG(seed: 5)
      let images = (0..<(count * config.imageHeight * config.imageWidth * 3)).map { _ in rng.uniform() * 2 - 1 }
      ranges = try calibrate(model: model, images: images, count: count, method: .percentile)
    }
    plan = try InferencePlan(model: model, precision: wanted, inputs: ranges)
  }
  let cfg = plan.model.config
  let imageFloats = cfg.imageHeight * cfg.imageWidth * 3
  let images = FlatBuffer(count: batch * imageFloats)
  var rng = CounterRNG(seed: 3)
  for i in 0..<images.count { images[i] = rng.uniform() * 2 - 1 }
  plan.forward(images: images.pointer, batch: 1)
  var latencies: [Double] = []
  for _ in 0..<repeats {
    let t0 = monotonicSeconds()
    plan.forward(images: images.pointer, batch: 1)
    latencies.append(monotonicSeconds() - t0)
  }
  plan.forward(images: images.pointer, batch: batch)
  let t0 = monotonicSeconds()
  let rounds = max(1, repeats / 4)
  for _ in 0..<rounds { plan.forward(images: images.pointer, batch: batch) }
  let seconds = monotonicSeconds() - t0
  latencies.sort()
  var result = InferenceResult(
    preset: name, threads: BLAS.threads, precision: plan.precisionSummary, latencySeconds: latencies[latencies.count / 2],
    throughputBatch: batch, imagesPerSecond: Double(batch * rounds) / seconds)
  if profile {  // separate forwards, so the timing above is not slowed by the profiler
    KernelProfile.reset()
    KernelProfile.enabled = true
    for _ in 0..<repeats { plan.forward(images: images.pointer, batch: 1) }
    KernelProfile.enabled = false
    result.profiledForwards = repeats
  }
  return result
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

/// Runs `warmup` + `steps` single-process training steps of `config` (through `TrainingStep`)
/// whose batches come from `spec` through a `BatchLoader` with `workers` threads (training
/// augmentation on). The model takes the data's task and class count.
public func benchmarkFedSteps(
  config: MixerConfig, spec: String, batch: Int, steps: Int, warmup: Int, workers: Int
) throws -> FedStepsResult {
  var options = DataOptions()
  options.valFraction = nil
  let dataset = try makeDataset(
    spec: spec, split: .train, imageSize: (config.imageHeight, config.imageWidth), seed: 0, options: options)
  var model = config
  model.classes = dataset.numClasses
  model.task = MixerTask.learning(from: dataset)
  let mixer = try MixerModel(config: model, seed: 0)
  let step = TrainingStep(
    model: mixer, config: benchmarkTrainConfig(model, batch: batch, ranks: 1, reduction: BenchmarkReduction()),
    comm: SingleProcessCommunicator(), localBatch: batch)
  let sampler = try ShardedSampler(datasetCount: dataset.count, globalBatch: batch, seed: 0)
  let loader = try BatchLoader(
    dataset: dataset, targets: model.task.training.batchTargets, sampler: sampler, startStep: 0,
    endStep: warmup + steps, workers: workers, depth: 3)
  defer { loader.stop() }
  var waited = 0, waitSeconds = 0.0, start = 0.0
  for index in 0..<(warmup + steps) {
    if index == warmup { start = monotonicSeconds() }
    let before = monotonicSeconds()
    let (next, didWait) = try loader.next()
    if index >= warmup && didWait { waited += 1; waitSeconds += monotonicSeconds() - before }
    _ = try step.run(batch: next, step: index)
    loader.recycle(next)
  }
  let seconds = monotonicSeconds() - start
  return FedStepsResult(
    steps: steps, secondsPerStep: seconds / Double(steps), imagesPerSecond: Double(steps * batch) / seconds,
    waitedSteps: waited, waitSeconds: waitSeconds)
}

/// What `bench --data` measured: the loader alone, then training steps fed by it.
public struct DataBenchmarkResult {
  public var loader: LoaderThroughput
  public var fed: FedStepsResult
  /// output size of the loader
  public var imageSize: (height: Int, width: Int)
}

/// Loader images/s for `spec` ('jpeg': 256 generated 500×375 JPEGs in a temporary image folder,
/// removed afterwards), then `steps` training steps fed by `workers` loader threads.
public func benchmarkData(
  config: MixerConfig, spec: String, batch: Int, steps: Int, warmup: Int, workers: Int
) throws -> DataBenchmarkResult {
  var spec = spec
  var generated: URL?
  defer { if let generated { try? FileManager.default.removeItem(at: generated) } }
  if spec == "jpeg" {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mixer-bench-jpeg-\(getpid())")
    try writeBenchmarkJPEGs(folder: folder, count: 256, width: 500, height: 375)
    generated = folder
    spec = "folder:" + folder.path
  }
  let size = (config.imageHeight, config.imageWidth)
  let loader = try measureLoaderThroughput(spec: spec, imageSize: size, threads: workers)
  let fed = try benchmarkFedSteps(config: config, spec: spec, batch: batch, steps: steps, warmup: warmup, workers: workers)
  return DataBenchmarkResult(loader: loader, fed: fed, imageSize: size)
}
