// The training loop: data-parallel over the communicator's ranks. Each rank reads its slice of
// every global batch (one seeded permutation), runs forward/backward on micro-batches, and the
// flat gradient buffer is reduced in buckets on a communication thread while backward goes on.
// The loss is the mean over the global batch, so N ranks match one rank with the same global
// batch to float rounding. Rank 0 owns every side effect (console, metrics, files).

import Foundation
import Logging
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel

/// What a finished run reports.
public struct TrainSummary {
  public var steps: Int
  public var finalLoss: Double
  public var evaluation: EvaluationResult?
  public var seconds: Double
  public var imagesPerSecond: Double
  /// communication not hidden by backward, as a share of step time
  public var exposedCommunicationShare: Double
  public var optimizerStateFloats: Int
}

/// Fault injection for tests of the failure path: rank `rank` throws at `step`, or, with
/// `stall`, sleeps there for an hour (a stuck disk, a hung peer) so the others' watchdog fires.
public struct FaultInjection: Sendable {
  public var step: Int
  public var rank: Int
  public var stall: Bool
  public init(step: Int, rank: Int, stall: Bool = false) { self.step = step; self.rank = rank; self.stall = stall }
}

/// One training run on one rank.
public final class Trainer {
  public let config: TrainConfig
  public let comm: Communicator
  public let model: MixerModel
  public let optimizer: Optimizer
  public let log: RunLog
  let trainSet: any Dataset
  let validationSet: any Dataset
  let sampler: ShardedSampler
  let bucketer: GradientBucketer
  let watchdog: Watchdog?
  public var fault: FaultInjection?
  /// fault injection: SIGKILL this process in the middle of the save at this step
  public var killInSaveAtStep: Int?
  /// stop (as a preempted job would) after this many steps, without the final evaluation
  public var stopAfterStep: Int?
  /// the step training starts from (0, or the resumed checkpoint's)
  public private(set) var startStep = 0

  /// Builds the model (rank 0's initialisation broadcast to all), optimizer, data and logging.
  public let logger: Logger

  public init(
    config: TrainConfig, comm: Communicator, timeout: Double? = nil, resume: String? = nil,
    logLevel: Logger.Level = .info
  ) throws {
    logger = makeLogger(rank: comm.rank, level: logLevel)
    try config.validate(worldSize: comm.size)
    var config = config
    self.comm = comm
    try Trainer.checkSameConfig(config, comm: comm)
    let environmentThreads = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap { Int($0) }
    let threads = config.threads ?? environmentThreads.flatMap { $0 > 0 ? $0 : nil }
      ?? defaultThreadsPerRank(coresPerNode: onlineCPUCount(), localSize: comm.localSize)
    BLAS.setThreads(threads)
    // the usual launch traps (binding that starves the BLAS threads, oversubscription), each
    // with its fix: errors stop the run, warnings are printed once per node
    let launchIssues = checkLaunch(.current(ranksOnNode: comm.localSize, threadsPerRank: threads))
    if let error = launchIssues.first(where: { $0.severity == .error }) {
      throw TrainError("\(error.problem); fix: \(error.fix)")
    }
    if comm.localRank == 0 {
      for issue in launchIssues {
        logger.warning("\(issue.problem); fix: \(issue.fix)")
      }
    }

    (trainSet, validationSet) = try makeDatasets(config)
    config.classNames = trainSet.classNames
    self.config = config
    if trainSet.height != config.model.imageHeight || trainSet.width != config.model.imageWidth {
      throw TrainError(
        "the data is \(trainSet.height)x\(trainSet.width) px but the model expects "
          + "\(config.model.imageHeight)x\(config.model.imageWidth): pass --image-size")
    }
    let maskedData = trainSet is any SegmentationDataset
    if config.model.isSegmentation && !maskedData {
      throw TrainError(
        "--task segmentation needs data with a class per pixel: --data segshapes (embedded) or segfolder:PATH, not \(config.data)")
    }
    if !config.model.isSegmentation && maskedData {
      throw TrainError("--data \(config.data) holds segmentation masks: pass --task segmentation")
    }
    if trainSet.numClasses != config.model.classes {
      throw TrainError(
        "the data has \(trainSet.numClasses) classes but the model has \(config.model.classes): pass --classes \(trainSet.numClasses)")
    }
    model = try MixerModel(config: config.model, seed: config.seed)
    if let initFrom = config.initFrom, resume == nil {
      // rank 0 reads and adapts the weights; the broadcast below gives them to every rank
      var problem = ""
      if comm.rank == 0 {
        do {
          try initializeModel(model, from: URL(fileURLWithPath: initFrom)) { [logger] in logger.info("mixer-dist: \($0)") }
        } catch {
          problem = "\(error)"
        }
      }
      problem = try comm.broadcast(problem, root: 0)
      if !problem.isEmpty { throw TrainError("--init-from \(initFrom): \(problem)") }
    }
    try comm.broadcast(model.parameters.pointer, count: model.table.count, root: 0)
    try Trainer.checkSameParameters(model.parameters, comm: comm)

    let shard = config.zeroStage == 1
      ? shardRanges(total: model.table.count, parts: comm.size)[comm.rank] : 0..<model.table.count
    optimizer = Optimizer(config: config.optimizer, table: model.table, range: shard)
    sampler = try ShardedSampler(
      datasetCount: trainSet.count, globalBatch: config.globalBatch, worldSize: comm.size,
      rank: comm.rank, seed: config.seed)
    watchdog = comm.size > 1 ? Watchdog(communicator: comm, timeout: timeout ?? 600) : nil
    bucketer = GradientBucketer(
      communicator: comm, buffer: model.gradients.pointer, count: model.table.count,
      bucketSize: config.bucketFloats, mode: config.zeroStage == 1 ? .reduceScatter : .allReduce,
      watchdog: watchdog)

    if comm.rank == 0 {
      try FileManager.default.createDirectory(
        atPath: config.runDirectory, withIntermediateDirectories: true)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      try encoder.encode(config).write(
        to: URL(fileURLWithPath: config.runDirectory).appendingPathComponent("config.json"))
    }
    log = try RunLog(directory: config.runDirectory, active: comm.rank == 0)
    log.line(
      "mixer-dist: \(config.preset) (\(grouped(model.table.count)) parameters), \(comm.size) rank(s), "
        + "\(threads) OpenBLAS thread(s) per rank (\(BLAS.coreName)), global batch \(config.globalBatch), "
        + "\(config.steps) steps, data \(config.data) (\(trainSet.count) train / \(validationSet.count) val)")
    if config.zeroStage == 1 {
      log.line("ZeRO-1: optimizer state \(grouped(optimizer.stateCount)) floats per rank (1/\(comm.size) of \(grouped(optimizer.stateCount * comm.size)))")
    }
    if let resume {
      startStep = try resumeFrom(resume)
    }
  }

  /// Picks the checkpoint on rank 0 (verifying checksums), tells every rank, and loads it;
  /// returns the step to continue from (0 when `auto` finds nothing).
  func resumeFrom(_ resume: String) throws -> Int {
    let directory = config.checkpointDirectory.map { URL(fileURLWithPath: $0) }
    var chosen = ""
    var problem = ""
    if comm.rank == 0 {
      do {
        chosen = try selectCheckpoint(resume: resume, directory: directory) { [logger] in
          logger.warning("\($0)")
        }?.path ?? ""
      } catch {
        problem = "\(error)"
      }
    }
    problem = try comm.broadcast(problem, root: 0)
    if !problem.isEmpty { throw CheckpointError(problem) }
    chosen = try comm.broadcast(chosen, root: 0)
    guard !chosen.isEmpty else {
      logger.info("mixer-dist: no checkpoint to resume from in \(directory?.path ?? "?"); starting from step 0")
      return 0
    }
    let manifest = try CheckpointStore.load(URL(fileURLWithPath: chosen), into: model, optimizer: optimizer)
    try Trainer.checkSameParameters(model.parameters, comm: comm)
    logger.info("mixer-dist: resumed from \(chosen) (step \(manifest.step), saved by \(manifest.worldSize) rank(s))")
    return manifest.step
  }

  /// Every rank must hold the same parameters: compares a checksum across ranks.
  static func checkSameParameters(_ parameters: FlatBuffer, comm: Communicator) throws {
    if try !comm.allRanksAgree(on: fnv1a(parameters.bytes)) {
      throw TrainError("rank \(comm.rank): parameters differ across ranks after the broadcast")
    }
  }

  /// Every rank must run the same settings (a rank started with other flags would silently
  /// train on other data, or fall out of step in the collectives): compares a config hash.
  static func checkSameConfig(_ config: TrainConfig, comm: Communicator) throws {
    guard comm.size > 1 else { return }
    var shared = config
    shared.threads = nil  // may legitimately differ per node
    shared.runDirectory = ""  // only rank 0 writes there
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let bytes = try encoder.encode(shared)
    let agree = try bytes.withUnsafeBytes { try comm.allRanksAgree(on: fnv1a($0)) }
    if !agree {
      throw TrainError("the ranks were started with different settings: pass the same flags to every rank")
    }
  }

  /// Runs every step, evaluates, writes the run folder; returns the summary.
  public func run() throws -> TrainSummary {
    let cfg = config
    let localBatch = cfg.globalBatch / comm.size
    let acts = Activations(config: cfg.model, batch: localBatch / cfg.accumulation)
    let loader = try BatchLoader(
      dataset: trainSet, sampler: sampler, startStep: startStep, endStep: cfg.steps,
      workers: cfg.loaderWorkers, depth: 3,
      mixup: cfg.mixup > 0 ? Mixup(alpha: Double(cfg.mixup), seed: cfg.seed) : nil)
    defer { loader.stop() }
    let start = monotonicSeconds()
    var windowStart = start, windowImages = 0, windowLoss = 0.0, windowSteps = 0
    var lastLoss = Double.nan
    var exposed = 0.0
    var dataWaits = 0
    var evaluation: EvaluationResult?

    let store = cfg.checkpointDirectory.map { CheckpointStore(directory: URL(fileURLWithPath: $0), comm: comm) }
    for step in startStep..<cfg.steps {
      watchdog?.step = step
      // the whole step (collectives, checkpoint barriers, evaluation) must finish within
      // --timeout, or the watchdog aborts the job naming this step: a stalled peer never hangs it
      let stepToken = watchdog?.begin("training step \(step)")
      defer { if let stepToken { watchdog?.end(stepToken) } }
      if let fault, fault.step == step, fault.rank == comm.rank {
        if fault.stall { sleep(3600) }
        throw TrainError("injected fault at step \(step) (--fail-at-step \(step) --fail-rank \(fault.rank))")
      }
      let (batch, waited) = try loader.next()
      if waited { dataWaits += 1 }
      let lossSum = accumulateGradients(batch: batch, acts: acts, regularization: cfg.regularization(step: step))
      let timings = try bucketer.finish()
      exposed += timings.exposedSeconds
      logger.debug("step \(step): communication \(timings.communicationSeconds) s, not hidden \(timings.exposedSeconds) s, \(timings.buckets) buckets")
      loader.recycle(batch)

      let (loss, norm, lr) = try update(step: step, lossSum: lossSum)
      lastLoss = loss
      windowLoss += loss
      windowSteps += 1
      windowImages += cfg.globalBatch
      let done = step + 1
      if done % cfg.logEvery == 0 || done == cfg.steps {
        let now = monotonicSeconds()
        let rate = Double(windowImages) / max(now - windowStart, 1e-9)
        let meanLoss = windowLoss / Double(windowSteps)
        let eta = Double(cfg.steps - done) * Double(cfg.globalBatch) / max(rate, 1e-9)
        log.record(MetricRecord(kind: "train", step: done, values: [
          ("loss", meanLoss), ("lr", Double(lr)), ("grad_norm", norm), ("images_per_second", rate),
          ("epoch", Double(done) / Double(sampler.batchesPerEpoch)), ("seconds", now - start),
        ]))
        log.progress(String(
          format: "step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0f img/s  ETA %@", done, cfg.steps,
          Double(done) / Double(sampler.batchesPerEpoch), meanLoss, lr, rate, formatDuration(eta)))
        windowStart = now; windowImages = 0; windowLoss = 0; windowSteps = 0
      }
      if let store, (cfg.saveEvery > 0 && done % cfg.saveEvery == 0) || done == cfg.steps {
        try saveCheckpoint(store, done: done)
      }
      if let stop = stopAfterStep, done >= stop {
        log.close()
        return TrainSummary(
          steps: done, finalLoss: lastLoss, evaluation: nil, seconds: monotonicSeconds() - start,
          imagesPerSecond: 0, exposedCommunicationShare: 0, optimizerStateFloats: optimizer.stateCount)
      }
      if cfg.evalEvery > 0 && done % cfg.evalEvery == 0 && done != cfg.steps {
        evaluation = try evaluateAndLog(step: done)
      }
    }
    evaluation = try evaluateAndLog(step: cfg.steps)
    log.line(String(
      format: "data: the step waited for the loader %d time(s), %.2f s in all (--loader-workers %d)",
      dataWaits, loader.waitSeconds, cfg.loaderWorkers))
    let seconds = max(monotonicSeconds() - start, 1e-9)
    try saveFinalParameters()
    log.close()
    return TrainSummary(
      steps: cfg.steps, finalLoss: lastLoss, evaluation: evaluation, seconds: seconds,
      imagesPerSecond: Double((cfg.steps - startStep) * cfg.globalBatch) / seconds,
      exposedCommunicationShare: exposed / seconds, optimizerStateFloats: optimizer.stateCount)
  }

  /// Forward and backward over the micro-batches of one step's batch, gradients accumulating;
  /// the last micro-batch hands finished gradient buckets to the communication thread.
  /// Returns the summed per-example loss.
  func accumulateGradients(batch: Batch, acts: Activations, regularization: Regularization?) -> Double {
    let cfg = config
    let microBatch = acts.batch
    let pixelsPerImage = trainSet.pixelsPerImage
    model.zeroGradients()
    var lossSum = 0.0
    for micro in 0..<cfg.accumulation {
      let offset = micro * microBatch
      batch.pixels.withUnsafeBufferPointer { pixels in
        model.forward(
          images: pixels.baseAddress! + offset * pixelsPerImage, acts: acts,
          regularization: regularization, sampleIDs: Array(batch.indices[offset..<(offset + microBatch)]))
      }
      setTargets(acts: acts, batch: batch, offset: offset)
      lossSum += model.loss(acts: acts)
      let last = micro == cfg.accumulation - 1
      model.backward(
        acts: acts, lossScale: 1 / Float(cfg.globalBatch), regularization: regularization,
        onReady: last ? { [bucketer] in bucketer.markReady(upTo: $0) } : nil)
    }
    return lossSum
  }

  /// The loss targets of micro-batch `[offset, offset + acts.batch)` of `batch`: the masks for
  /// segmentation; otherwise label-smoothed one-hot rows, mixed with the partners under mixup.
  func setTargets(acts: Activations, batch: Batch, offset: Int) {
    let cfg = config
    let microBatch = acts.batch
    if cfg.model.isSegmentation {
      let maskPixels = cfg.model.imageHeight * cfg.model.imageWidth
      batch.masks.withUnsafeBufferPointer { masks in
        acts.masks.update(from: masks.baseAddress! + offset * maskPixels, count: microBatch * maskPixels)
      }
      acts.labelSmoothing = cfg.labelSmoothing
      return
    }
    batch.labels.withUnsafeBufferPointer { labels in
      if let mix = batch.mixup {
        mix.partnerLabels.withUnsafeBufferPointer { partners in
          mixupTargets(
            targets: acts.targets, labels: labels.baseAddress! + offset,
            partnerLabels: partners.baseAddress! + offset, weight: mix.weight, batch: microBatch,
            classes: cfg.model.classes, smoothing: cfg.labelSmoothing)
        }
      } else {
        smoothedOneHot(
          targets: acts.targets, labels: labels.baseAddress! + offset, batch: microBatch,
          classes: cfg.model.classes, smoothing: cfg.labelSmoothing)
      }
    }
  }

  /// After the gradients are reduced: the global loss and gradient norm (one small all-reduce),
  /// clipping, the optimizer update of this rank's range, and under ZeRO-1 the all-gather.
  func update(step: Int, lossSum: Double) throws -> (loss: Double, norm: Double, lr: Float) {
    let cfg = config
    let total = model.table.count
    let shard = bucketer.shard  // everything, unless ZeRO-1
    let squares = sumOfSquares(model.gradients.pointer, range: shard)
    var scalars = [lossSum, cfg.zeroStage == 1 ? squares : 0]
    try comm.allReduceSum(&scalars)
    let loss = scalars[0] / Double(cfg.globalBatch)
    guard loss.isFinite else {
      throw TrainError("the loss is \(loss) at step \(step): lower --lr or check the data")
    }
    let norm = (cfg.zeroStage == 1 ? scalars[1] : squares).squareRoot()
    clipByGlobalNorm(model.gradients.pointer, range: shard, norm: norm, maxNorm: Double(cfg.clipNorm))
    let lr = cfg.schedule.learningRate(step: step)
    optimizer.update(parameters: model.parameters.pointer, gradients: model.gradients.pointer, lr: lr, step: step + 1)
    if cfg.zeroStage == 1 {
      try comm.allGather(model.parameters.pointer, counts: comm.shardCounts(ofTotal: total))
    }
    return (loss, norm, lr)
  }

  /// Every rank saves its part of the checkpoint after `done` steps.
  func saveCheckpoint(_ store: CheckpointStore, done: Int) throws {
    let cursor = CheckpointManifest.DataCursor(
      step: done, epoch: done / sampler.batchesPerEpoch, batchInEpoch: done % sampler.batchesPerEpoch,
      samplesSeen: done * config.globalBatch)
    let folder = try store.save(
      step: done, model: model, optimizer: optimizer, config: config, cursor: cursor, keep: config.keep,
      failAfterFiles: killInSaveAtStep == done)
    log.line("checkpoint \(folder.path)")
  }

  func evaluateAndLog(step: Int) throws -> EvaluationResult {
    let result = try evaluate(model: model, dataset: validationSet, comm: comm, batchSize: config.evalBatch)
    if let meanIoU = result.meanIoU, let classIoU = result.classIoU {
      var values: [(String, Double)] = [
        ("val_miou", meanIoU), ("val_pixel_accuracy", result.top1), ("val_loss", result.loss),
        ("val_count", Double(result.count)),
      ]
      for (k, iou) in classIoU.enumerated() {
        if let iou { values.append(("val_iou/\(config.classNames.indices.contains(k) ? config.classNames[k] : "class \(k)")", iou)) }
      }
      log.record(MetricRecord(kind: "eval", step: step, values: values))
      let perClass = classIoU.enumerated().map { k, iou in
        let name = config.classNames.indices.contains(k) ? config.classNames[k] : "class \(k)"
        return iou.map { String(format: "%@ %.1f", name, $0 * 100) } ?? "\(name) -"
      }
      log.line(String(
        format: "eval step %d: val mIoU %.2f%%  pixel accuracy %.2f%%  loss %.4f  (%d images)", step,
        meanIoU * 100, result.top1 * 100, result.loss, result.count))
      log.line("  IoU per class (%): " + perClass.joined(separator: ", "))
      return result
    }
    log.record(MetricRecord(kind: "eval", step: step, values: [
      ("val_top1", result.top1), ("val_top5", result.top5), ("val_loss", result.loss),
      ("val_count", Double(result.count)),
    ]))
    log.line(String(
      format: "eval step %d: val top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images)", step,
      result.top1 * 100, result.top5 * 100, result.loss, result.count))
    return result
  }

  /// Rank 0 writes the final flat parameters (`final-parameters.f32`, little-endian float32).
  func saveFinalParameters() throws {
    guard comm.rank == 0 else { return }
    let url = URL(fileURLWithPath: config.runDirectory).appendingPathComponent("final-parameters.f32")
    try Data(model.parameters.bytes).write(to: url, options: .atomic)
  }
}

/// The number of classes of the training data `config` names (for a model that follows its data).
public func classCount(of config: TrainConfig) throws -> Int {
  var options = config.dataOptions
  options.trainExamples = 1
  options.validationExamples = 1
  options.segmentationClasses = nil
  let size = (config.model.imageHeight, config.model.imageWidth)
  return try makeDataset(spec: config.data, split: .train, imageSize: size, seed: config.seed, options: options).numClasses
}

/// The train and validation datasets a config names, at the model's image size.
func makeDatasets(_ config: TrainConfig) throws -> (any Dataset, any Dataset) {
  var options = config.dataOptions
  options.trainExamples = config.trainExamples
  options.validationExamples = config.validationExamples
  options.segmentationClasses = config.model.classes
  let size = (config.model.imageHeight, config.model.imageWidth)
  return (
    try makeDataset(spec: config.data, split: .train, imageSize: size, seed: config.seed, options: options),
    try makeDataset(spec: config.data, split: .validation, imageSize: size, seed: config.seed, options: options)
  )
}

/// FNV-1a, 64-bit, of raw bytes.
func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
  var hash: UInt64 = 0xcbf2_9ce4_8422_2325
  for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
  return hash
}

extension Communicator {
  /// True when every rank passed the same 64-bit value.
  func allRanksAgree(on value: UInt64) throws -> Bool {
    let halves = [Double(value >> 32), Double(value & 0xFFFF_FFFF)]
    var low = halves, high = halves
    try allReduceMin(&low)
    try allReduceMax(&high)
    return low == high
  }
}
