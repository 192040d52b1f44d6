// The training loop: data-parallel over the communicator's ranks. Each rank reads its slice of
// every global batch (one seeded permutation), runs forward/backward on micro-batches, and the
// flat gradient buffer is reduced in buckets on a communication thread while backward goes on.
// The loss is the mean over the global batch, so N ranks match one rank with the same global
// batch to float rounding. Rank 0 owns every side effect (console, metrics, files).

import Foundation
import MixerTelemetry
import Logging
import MixerCheckpoint
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerTrace

/// What a finished run reports.
public struct TrainSummary {
  public var steps: Int
  public var finalLoss: Double
  public var evaluation: EvaluationResult?
  /// this segment's time (from the start or the resume)
  public var seconds: Double
  /// the run's training time over all its segments (a resumed run adds the checkpoint's)
  public var totalSeconds: Double = 0
  public var imagesPerSecond: Double
  /// communication not hidden by backward, as a share of step time
  public var exposedCommunicationShare: Double
  public var optimizerStateFloats: Int
  /// set when a signal stopped the run after saving (exit with `Interruption.exitCode`)
  public var interrupted: InterruptedRun?
}

/// Injected failures, for tests of the failure paths: read from `MIXER_DIST_FAULTS`, which only
/// tests set (directly, or through the hidden `--fail-at-step` family of `train` flags), and passed
/// into a `Trainer`, never set on it afterwards. Internal: the library's tests pass one through
/// `@testable import`.
struct FaultPlan: Sendable {
  /// The environment variable: space-separated `name=value` faults named as the `train` flags,
  /// e.g. `fail-at-step=5 fail-rank=1`.
  static let environmentVariable = "MIXER_DIST_FAULTS"

  /// rank `rank` throws at this step (or, with `stall`, sleeps there for an hour: a stuck disk, a
  /// hung peer, so the others' watchdog fires). It fires in a run that trained up to the step, not
  /// in one resumed at it: a job restarted from the checkpoint its failure left goes on.
  var failAtStep: Int?
  var rank: Int = 0
  var stall = false
  /// SIGKILL this process in the middle of the checkpoint save at this step (in a background
  /// save: on its thread, once this rank's files are written)
  var killInSaveAtStep: Int?
  /// a background save of this step fails on this rank after its write, as a full disk would
  var failInSaveAtStep: Int?
  /// stop (as a preempted job would) after this many steps, without the final evaluation
  var stopAfterStep: Int?
  /// this rank sleeps `slowSeconds` inside every step's compute (a straggler)
  var slowRank: Int?
  var slowSeconds = 0.0

  init(
    failAtStep: Int? = nil, rank: Int = 0, stall: Bool = false, killInSaveAtStep: Int? = nil,
    failInSaveAtStep: Int? = nil, stopAfterStep: Int? = nil, slowRank: Int? = nil, slowSeconds: Double = 0
  ) {
    self.failAtStep = failAtStep
    self.rank = rank
    self.stall = stall
    self.killInSaveAtStep = killInSaveAtStep
    self.failInSaveAtStep = failInSaveAtStep
    self.stopAfterStep = stopAfterStep
    self.slowRank = slowRank
    self.slowSeconds = slowSeconds
  }

  /// The faults `environment` names in `MIXER_DIST_FAULTS` (none when it is unset):
  /// `fail-at-step=N`, `fail-rank=R`, `stall-at-step=N` (a fail that sleeps), `kill-in-save-at-step=N`,
  /// `fail-in-save-at-step=N`, `stop-after-step=N`, `slow-rank=R`, `slow-ms=M`.
  init(environment: [String: String]) throws {
    self.init()
    guard let text = environment[Self.environmentVariable] else { return }
    for item in text.split(separator: " ") {
      let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, let value = Double(parts[1]) else {
        throw TrainError("\(Self.environmentVariable): '\(item)' is not name=number")
      }
      let integer = Int(exactly: value)
      switch (parts[0], integer) {
      case ("fail-at-step", let n?): failAtStep = n
      case ("fail-rank", let n?): rank = n
      case ("stall-at-step", let n?): (failAtStep, stall) = (n, true)
      case ("kill-in-save-at-step", let n?): killInSaveAtStep = n
      case ("fail-in-save-at-step", let n?): failInSaveAtStep = n
      case ("stop-after-step", let n?): stopAfterStep = n
      case ("slow-rank", let n?): slowRank = n
      case ("slow-ms", _): slowSeconds = value / 1000
      default: throw TrainError("\(Self.environmentVariable): '\(item)' is not a known fault with an integer value")
      }
    }
  }
}

/// One training run on one rank.
public final class Trainer {
  public let config: TrainConfig
  public let comm: Communicator
  public let model: MixerModel
  /// the one step (accumulate → reduce → clip → update), shared with `bench`
  let step: TrainingStep
  public var optimizer: Optimizer { step.optimizer }
  /// the moving average of the parameters over the optimizer's range (`--ema`; nil: off)
  public var average: ExponentialMovingAverage? { step.average }
  public let log: RunLog
  let trainSet: any Dataset
  let validationSet: any Dataset
  let sampler: ShardedSampler
  let watchdog: Watchdog?
  let faults: FaultPlan
  /// a new run may replace the records and checkpoints of another run in its folders
  let overwrite: Bool
  /// the checkpoint the run resumed from
  var resumedFrom: String?
  /// rank 0 of several: the ranks' compute and loader times by window, naming a slow rank
  var stragglers: StragglerWatch?
  /// every rank's host name, by rank
  public private(set) var rankHosts: [String] = []
  /// the buffers of the last background save, reused by the next (`--save-mode async`)
  var spareSnapshot: CheckpointSnapshot<TrainConfig>?
  /// where checkpoints go: rank 0's `config.checkpointFolder` (one folder for every rank)
  let checkpointFolder: String
  /// the best evaluation so far under --keep-best (from best.json when resuming)
  var best: (step: Int, value: Double)?
  /// the step training starts from (0, or the resumed checkpoint's)
  public private(set) var startStep = 0
  /// `--resume` as given (a run that finds no checkpoint to resume starts its own run again)
  let resumeRequest: String?
  /// the training time of the segments before this one (from the resumed checkpoint)
  var secondsBefore = 0.0
  /// when this segment's steps started (monotonic seconds)
  var segmentStart = 0.0
  /// the run's training time so far, over all its segments
  var trainingSeconds: Double { secondsBefore + monotonicSeconds() - segmentStart }

  public let logger: Logger

  /// Builds the model (rank 0's initialisation broadcast to all), optimizer, data and logging;
  /// failures injected by tests come from `MIXER_DIST_FAULTS` (`FaultPlan`).
  public convenience init(
    config: TrainConfig, comm: Communicator, timeout: Double? = nil, resume: String? = nil,
    logLevel: Logger.Level = .info, overwrite: Bool = false
  ) throws {
    try self.init(
      config: config, comm: comm, timeout: timeout, resume: resume, logLevel: logLevel,
      faults: try FaultPlan(environment: ProcessInfo.processInfo.environment), overwrite: overwrite)
  }

  /// The same, with injected failures (tests).
  init(
    config: TrainConfig, comm: Communicator, timeout: Double? = nil, resume: String? = nil,
    logLevel: Logger.Level = .info, faults: FaultPlan, overwrite: Bool = false
  ) throws {
    logger = makeLogger(rank: comm.rank, level: logLevel)
    self.faults = faults
    resumeRequest = resume
    self.overwrite = overwrite
    try config.validate(worldSize: comm.size)
    var config = config
    self.comm = comm
    // the start-up collectives (settings check, parameter broadcast, resume) are watched like a
    // step: a rank that never arrives ends the job after --timeout instead of hanging it
    let watchdog = comm.size > 1 ? Watchdog(communicator: comm, timeout: timeout ?? 600) : nil
    self.watchdog = watchdog
    let startToken = watchdog?.begin("start-up (settings, parameter broadcast, resume)")
    defer { if let startToken { watchdog?.end(startToken) } }
    try Trainer.checkSameConfig(config, comm: comm)
    let threads = Job.setBLASThreads(requested: config.threads, comm: comm)
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
    let task = config.model.task.training
    if !task.accepts(trainSet) { throw TrainError(task.dataRequirement(spec: config.data)) }
    if trainSet.numClasses != config.model.classes {
      throw TrainError(
        "the data has \(trainSet.numClasses) classes but the model has \(config.model.classes): pass --classes \(trainSet.numClasses)")
    }
    model = try MixerModel(config: config.model, seed: config.seed)
    model.products = try config.precision.makeProducts()
    if config.headBiasInit != 0, config.initFrom == nil, let bias = model.table[config.model.head.scope + "/bias"] {
      model.parameters.copy(from: [Float](repeating: config.headBiasInit, count: bias.count), at: bias.offset)
    }
    if let initFrom = config.initFrom, resume == nil {
      // rank 0 reads and adapts the weights; the broadcast below gives them to every rank
      var problem = ""
      if comm.rank == 0 {
        do {
          try initializeModel(model, from: URL(fileURLWithPath: initFrom)) { [logger] in logger.info("mixer-dist: \($0)") }
          let sourceNames = (try? loadModel(initFrom).config.classNames) ?? []
          Trainer.alignHead(model, with: sourceNames, dataNames: trainSet.classNames) { [logger] in logger.info("mixer-dist: \($0)") }
        } catch {
          problem = describeError(error)
        }
      }
      problem = try comm.broadcast(problem, root: 0)
      if !problem.isEmpty { throw TrainError("--init-from \(initFrom): \(problem)") }
    }
    try comm.broadcast(model.parameters.pointer, count: model.table.count, root: 0)
    try Trainer.checkSameParameters(model.parameters, comm: comm)

    sampler = try ShardedSampler(
      datasetCount: trainSet.count, globalBatch: config.globalBatch, worldSize: comm.size,
      rank: comm.rank, seed: config.seed)
    step = TrainingStep(
      model: model, config: config, comm: comm, localBatch: config.globalBatch / comm.size, watchdog: watchdog)
    if faults.slowRank == comm.rank { step.extraComputeSeconds = faults.slowSeconds }
    rankHosts = [ProcessInfo.processInfo.hostName]
    if comm.size > 1 {
      // every rank's host, for naming a slow rank (each rank broadcasts its own)
      let host = ProcessInfo.processInfo.hostName
      var hosts: [String] = []
      for root in 0..<comm.size { hosts.append(try comm.broadcast(host, root: root)) }
      rankHosts = hosts
      if comm.rank == 0 { stragglers = StragglerWatch(hosts: hosts) }
    }

    log = RunLog(directory: config.runDirectory, active: comm.rank == 0)
    checkpointFolder = try comm.broadcast(config.checkpointFolder, root: 0)
    log.line(
      "mixer-dist: \(config.preset) (\(grouped(model.table.count)) parameters), \(comm.size) rank(s), "
        + "\(threads) OpenBLAS thread(s) per rank (\(BLAS.coreSummary), kernels \(KernelISA.summary)), global batch \(config.globalBatch), "
        + "\(config.steps) steps, data \(config.data) (\(trainSet.count) train / \(validationSet.count) val)")
    for description in [trainSet.splitDescription, validationSet.splitDescription].compactMap({ $0 }) {
      log.line("data: \(description)")
    }
    log.line("augmentation: \(augmentationSummary(of: trainSet, mixup: config.mixup))")
    try checkEvaluationData()
    if let note = config.precision.kernelNote { log.line("mixer-dist: \(note)") }
    if comm.rank == 0, let note = config.precision.measuredSpeedNote() { log.line("mixer-dist: note: \(note)") }
    if config.zeroStage == 1 {
      log.line("ZeRO-1: optimizer state \(grouped(optimizer.stateCount)) floats per rank (1/\(comm.size) of \(grouped(optimizer.stateCount * comm.size)))")
    }
    if let average {
      log.line(
        "EMA: decay \(average.decay)\(average.warmup ? " with timm's warm-up" : ""), \(grouped(average.range.count)) floats "
          + "per rank, evaluated beside the raw parameters (metrics with _ema)")
    }
    if let resume {
      startStep = try resumeFrom(resume)
    }
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
    if startStep >= cfg.steps {  // before the folders are claimed: this run writes nothing
      log.line("mixer-dist: already at step \(startStep) (--steps \(cfg.steps)): nothing to train; raise --steps to continue")
      return TrainSummary(
        steps: startStep, finalLoss: .nan, evaluation: nil, seconds: 0, imagesPerSecond: 0,
        exposedCommunicationShare: 0, optimizerStateFloats: optimizer.stateCount)
    }
    let locks = try claimFolders()
    defer { locks.forEach { $0.release() } }
    Interruption.install()
    if resumedFrom != nil { best = readBest() }
    let loader = try BatchLoader(
      dataset: trainSet, targets: cfg.model.task.training.batchTargets, sampler: sampler, startStep: startStep,
      endStep: cfg.steps, workers: cfg.loaderWorkers, depth: 3,
      mixup: cfg.mixup > 0 ? Mixup(alpha: Double(cfg.mixup), seed: cfg.seed) : nil)
    defer { loader.stop() }
    let start = monotonicSeconds()
    segmentStart = start
    var windowStart = start, windowImages = 0, windowLoss = 0.0, windowSteps = 0
    var lastLoss = Double.nan
    var exposed = 0.0
    var dataWaits = 0
    var evaluation: EvaluationResult?

    let store = CheckpointStore<TrainConfig>(directory: URL(fileURLWithPath: checkpointFolder), comm: comm)
    var saveClock = SaveClock(minutes: cfg.saveEvery == 0 ? cfg.saveEveryMinutes : 0, comm: comm)
    // the last step whose update is applied, and the last one saved (a resumed run's start)
    var completed = startStep
    var lastSaved: Int? = resumedFrom != nil ? startStep : nil
    // a periodic save being written in the background (--save-mode async)
    var pending: BackgroundSave<TrainConfig>?
    func committed(_ save: BackgroundSave<TrainConfig>, as folder: URL) {
      pending = nil
      log.line("checkpoint \(folder.path)")
      lastSaved = save.step
      spareSnapshot = save.spareSnapshot
    }
    func finishPendingSave() throws {
      guard let save = pending else { return }
      committed(save, as: try Timeline.span("checkpoint wait (step \(save.step))", .checkpoint) { try save.finish() })
    }
    // this rank's batch failed and every rank learnt it in the step's reductions
    var batchFailureShared = false
    do {
      for stepIndex in startStep..<cfg.steps {
        watchdog?.step = stepIndex
        // the whole step (collectives, checkpoint barriers, evaluation) must finish within
        // --timeout, or the watchdog aborts the job naming this step: a stalled peer never hangs it
        let stepToken = watchdog?.begin("training step \(stepIndex)")
        defer { if let stepToken { watchdog?.end(stepToken) } }
        let traceStart = Timeline.begin()
        defer { Timeline.end(traceStart, "step \(stepIndex + 1)", .step) }
        if faults.failAtStep == stepIndex, faults.rank == comm.rank, stepIndex > startStep || startStep == 0 {
          if faults.stall { sleep(3600) }
          throw TrainError("injected fault at step \(stepIndex) (--fail-at-step \(stepIndex) --fail-rank \(faults.rank))")
        }
        let batch: Batch, waited: Bool
        let waitBefore = loader.waitSeconds
        do {
          (batch, waited) = try Timeline.span("wait for the batch", .loader) { try loader.next() }
        } catch {
          // an unreadable file is the data's; a failing disk or network may pass
          let failure: Error = FileSystemError.from(error) ?? DataFailure(underlying: error, step: stepIndex)
          if comm.size > 1 {
            // the other ranks learn it in this step's reductions and stop with this rank
            do { try step.runWithoutBatch(step: stepIndex, failure: failure is DataFailure ? .data : .other) } catch {
              batchFailureShared = error is PeerBatchFailure  // (else the reductions failed: no rank saves)
            }
          }
          throw failure
        }
        if waited { dataWaits += 1 }
        let result = try step.run(batch: batch, step: stepIndex, loaderWaitSeconds: loader.waitSeconds - waitBefore)
        stragglers?.add(compute: result.rankComputeSeconds, loader: result.rankLoaderSeconds)
        loader.recycle(batch)
        let timings = result.communication
        exposed += timings.exposedSeconds
        logger.debug("step \(stepIndex): communication \(timings.communicationSeconds) s, not hidden \(timings.exposedSeconds) s, \(timings.buckets) buckets, \(timings.bucketsStartedBeforeFinish) started during backward")

        lastLoss = result.loss
        windowLoss += result.loss
        windowSteps += 1
        windowImages += cfg.globalBatch
        let done = stepIndex + 1
        completed = done
        if let save = pending, let folder = try save.poll() { committed(save, as: folder) }  // (a collective while pending)
        if done % cfg.logEvery == 0 || done == cfg.steps {
          let now = monotonicSeconds()
          let rate = Double(windowImages) / max(now - windowStart, 1e-9)
          let meanLoss = windowLoss / Double(windowSteps)
          let eta = Double(cfg.steps - done) * Double(cfg.globalBatch) / max(rate, 1e-9)
          log.record(MetricRecord(kind: "train", step: done, values: [
            ("loss", meanLoss), ("lr", Double(result.learningRate)), ("grad_norm", result.gradientNorm),
            ("images_per_second", rate), ("epoch", Double(done) / Double(sampler.batchesPerEpoch)),
            ("seconds", secondsBefore + now - start),
          ]))
          log.progress(String(
            format: "step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0f img/s  ETA %@", done, cfg.steps,
            Double(done) / Double(sampler.batchesPerEpoch), meanLoss, result.learningRate, rate, formatDuration(eta)))
          for warning in stragglers?.endWindow() ?? [] { log.line(warning) }
          windowStart = now; windowImages = 0; windowLoss = 0; windowSteps = 0
        }
        // (every rank evaluates the same terms, so the clock's broadcast is skipped on all alike)
        let saved = try (cfg.saveEvery > 0 && done % cfg.saveEvery == 0) || done == cfg.steps || saveClock.due()
        if saved {
          try finishPendingSave()  // a second save waits for the first
          if cfg.saveMode == .async, done < cfg.steps, !result.stopRequested {
            pending = try startBackgroundSave(store, done: done)
          } else {
            try saveCheckpoint(store, done: done)
            lastSaved = done
          }
          saveClock.restart()
        }
        if result.stopRequested, done < cfg.steps {
          try finishPendingSave()
          let folder = saved
            ? checkpointName(step: done)
            : try saveCheckpoint(store, done: done).lastPathComponent
          let stop = InterruptedRun(
            signal: Interruption.signalName ?? "a signal on another rank", step: done,
            checkpoint: (checkpointFolder as NSString).appendingPathComponent(folder))
          log.line("mixer-dist: \(stop)")
          log.close()
          Interruption.uninstall()  // saved: from here on a signal ends the process at once
          var summary = TrainSummary(
            steps: done, finalLoss: lastLoss, evaluation: nil, seconds: monotonicSeconds() - start,
            imagesPerSecond: 0, exposedCommunicationShare: 0, optimizerStateFloats: optimizer.stateCount)
          summary.interrupted = stop
          return summary
        }
        if let stop = faults.stopAfterStep, done >= stop {
          try finishPendingSave()
          log.close()
          return TrainSummary(
            steps: done, finalLoss: lastLoss, evaluation: nil, seconds: monotonicSeconds() - start,
            imagesPerSecond: 0, exposedCommunicationShare: 0, optimizerStateFloats: optimizer.stateCount)
        }
        if cfg.evalEvery > 0 && done % cfg.evalEvery == 0 && done != cfg.steps {
          if cfg.keepBest != nil { try finishPendingSave() }  // best.json names only committed folders
          let (result, values) = try evaluateAndLog(step: done)
          evaluation = result
          try keepIfBest(values, step: done, saved: saved, store: store)
        }
      }
    } catch {
      throw saveAfter(
        error, completed: completed, lastSaved: lastSaved, store: store, batchFailureShared: batchFailureShared,
        pending: pending)
    }
    let evaluationToken = watchdog?.begin("final evaluation")
    let (result, values) = try evaluateAndLog(step: cfg.steps)
    evaluation = result
    if let evaluationToken { watchdog?.end(evaluationToken) }
    try keepIfBest(values, step: cfg.steps, saved: true, store: store)
    try writeConfusion(evaluation, step: cfg.steps)
    log.line(String(
      format: "data: the step waited for the loader %d time(s), %.2f s in all (--loader-workers %d)",
      dataWaits, loader.waitSeconds, cfg.loaderWorkers))
    let seconds = max(monotonicSeconds() - start, 1e-9)
    try saveFinalParameters()
    log.close()
    var summary = TrainSummary(
      steps: cfg.steps, finalLoss: lastLoss, evaluation: evaluation, seconds: seconds,
      imagesPerSecond: Double((cfg.steps - startStep) * cfg.globalBatch) / seconds,
      exposedCommunicationShare: exposed / seconds, optimizerStateFloats: optimizer.stateCount)
    summary.totalSeconds = secondsBefore + seconds
    return summary
  }

  /// After an error in the steps: saves the last completed step as a normal checkpoint when
  /// every rank meets the error at the same point (one process; a non-finite loss; a batch that
  /// some rank could not make, shared in the step's reductions; a failed save is not tried again) and the step is not saved yet; returns the error to end the run with,
  /// which names the cause and the checkpoint to continue from.
  func saveAfter(
    _ error: Error, completed: Int, lastSaved: Int?, store: CheckpointStore<TrainConfig>, batchFailureShared: Bool,
    pending: BackgroundSave<TrainConfig>?
  ) -> Error {
    if error is InterruptedRun { return error }
    // (a rank whose batch failed took part in the step's reductions: every rank knows; a
    // background save's failure is learnt by every rank at the same step)
    let failedSave = error as? CheckpointSaveError
    let everyRank = comm.size == 1 || error is NonFiniteLossError || error is PeerBatchFailure || batchFailureShared
      || failedSave?.inBackground == true
    var savedNow: URL?
    var saveProblem: String?
    // (a synchronous save that failed is not tried again: it would fail the same way)
    if everyRank, failedSave == nil || failedSave!.inBackground, completed > startStep {
      let token = watchdog?.begin("saving step \(completed) after an error")
      defer { if let token { watchdog?.end(token) } }
      var lastSaved = lastSaved
      if let pending, let folder = try? pending.finish() {  // the save under way first
        log.line("checkpoint \(folder.path)")
        lastSaved = pending.step
      }
      if completed != lastSaved {
        do {
          savedNow = try saveCheckpoint(store, done: completed)
        } catch {
          saveProblem = describeError(error)
        }
      }
    }
    log.close()
    return RunFailure(
      cause: error, completedStep: completed, savedNow: savedNow,
      newest: listCheckpoints(in: URL(fileURLWithPath: checkpointFolder)).first, saveProblem: saveProblem)
  }

  /// Where the data stream stands after `done` steps.
  func cursor(after done: Int) -> DataCursor {
    DataCursor(
      step: done, epoch: done / sampler.batchesPerEpoch, batchInEpoch: done % sampler.batchesPerEpoch,
      samplesSeen: done * config.globalBatch)
  }

  /// Every rank starts a background save of the state after `done` steps (`--save-mode async`):
  /// copies its part now; the write and the commit go on while training does.
  func startBackgroundSave(_ store: CheckpointStore<TrainConfig>, done: Int) throws -> BackgroundSave<TrainConfig> {
    let snapshot = try Timeline.span("checkpoint copy (step \(done))", .checkpoint) {
      try store.snapshot(
        step: done, model: model, optimizer: optimizer, average: average, config: config, zeroStage: config.zeroStage,
        cursor: cursor(after: done), trainingSeconds: trainingSeconds, reusing: &spareSnapshot)
    }
    var afterWrite: (() throws -> Void)?
    if faults.killInSaveAtStep == done { afterWrite = { kill(getpid(), SIGKILL) } }
    if faults.failInSaveAtStep == done, faults.rank == comm.rank {
      afterWrite = { [directory = store.directory] in
        // what a disk that filled up during the write reports, from the write
        throw FileSystemError(path: directory.path, operation: "write", cause: .init(errno: ENOSPC))
      }
    }
    return try BackgroundSave(
      store: store, snapshot: snapshot, keep: config.keep, protecting: best.map { [$0.step] } ?? [],
      afterWrite: afterWrite)
  }

  /// Every rank saves its part of the checkpoint after `done` steps.
  @discardableResult
  func saveCheckpoint(_ store: CheckpointStore<TrainConfig>, done: Int) throws -> URL {
    let folder = try Timeline.span("checkpoint save (step \(done))", .checkpoint) {
      try store.save(
        step: done, model: model, optimizer: optimizer, average: average, config: config, zeroStage: config.zeroStage,
        cursor: cursor(after: done), keep: config.keep,
        protecting: best.map { [$0.step] } ?? [], trainingSeconds: trainingSeconds,
        beforeCommit: faults.killInSaveAtStep == done ? { kill(getpid(), SIGKILL) } : nil)
    }
    log.line("checkpoint \(folder.path)")
    return folder
  }

  /// Rank 0 writes the final flat parameters (`final-parameters.f32`, little-endian float32).
  func saveFinalParameters() throws {
    guard comm.rank == 0 else { return }
    let url = URL(fileURLWithPath: config.runDirectory).appendingPathComponent("final-parameters.f32")
    try FileSystemError.mapping(path: url.path, operation: "write") {
      try Data(model.parameters.bytes).write(to: url, options: .atomic)
    }
  }
}

/// Wall-clock checkpoints (`--save-every-minutes`): rank 0's clock decides, and every rank
/// learns its verdict through a one-byte broadcast, so all save the same step.
struct SaveClock {
  let interval: Double
  let comm: Communicator
  var last = monotonicSeconds()

  /// `minutes` 0: never due (no broadcast either).
  init(minutes: Double, comm: Communicator) {
    interval = minutes * 60
    self.comm = comm
  }

  /// True (on every rank) when `interval` has passed since the start or the last save.
  func due() throws -> Bool {
    guard interval > 0 else { return false }
    let mine: [UInt8] = [monotonicSeconds() - last >= interval ? 1 : 0]
    return try (comm.size > 1 ? comm.broadcast(mine, root: 0) : mine) == [1]
  }

  mutating func restart() { last = monotonicSeconds() }
}

/// The train and validation datasets a config names, at the model's image size.
func makeDatasets(_ config: TrainConfig) throws -> (any Dataset, any Dataset) {
  var options = config.dataOptions
  options.trainExamples = config.trainExamples
  options.validationExamples = config.validationExamples
  options.declaredClasses = config.model.classes
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
