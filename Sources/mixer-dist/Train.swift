// `mixer-dist train`: train a Mixer, alone or as every rank of `mpirun -n N mixer-dist train`.
// With no flags it trains the `tiny` preset on the embedded procedural dataset.

import ArgumentParser
import Foundation
import Logging
import MixerData
import MixerDistributed
import MixerModel
import MixerTrain

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a Mixer (single process, or every rank under mpirun).")

  @OptionGroup var model: ModelOptions
  // expanded by ConfigFile before parsing; declared so that --help documents it
  @Option(help: "A YAML file of `flag: value` settings (keys are these flag names); command-line flags override it.") var config: String?
  @Option(help: "Data: KIND:PATH with KIND shapes (embedded), folder, cifar10, cifar100, mnist, fashion-mnist; for --task segmentation segshapes (embedded, the default) or segfolder (images/ + masks/ PNGs). Inferred from a bare PATH when obvious.") var data: String = "shapes"
  @Option(help: "Hold out this fraction of train/ for validation (image folders).") var valFraction: Double?
  @Flag(help: "Count, log and skip corrupt or unsupported images instead of stopping.") var skipBadImages = false
  @Option(help: "RandAugment N,M (e.g. 2,15; off by default).") var randaugment: String?
  @Option(help: "Mixup alpha (0: off; the paper's B/16 recipe uses 0.5).") var mixup: Float = 0
  @Option(help: "Pixel normalisation: minus-one-one (official), imagenet, or R,G,B/R,G,B mean/std.") var normalize: String = "minus-one-one"
  @Flag(help: "No training augmentation (no random crop or flip).") var noAugment = false
  @Option(help: "Training images of the embedded dataset.") var trainExamples: Int = 50_000
  @Option(help: "Validation images of the embedded dataset.") var valExamples: Int = 5_000
  @Option(help: "Optimizer steps (default 600; 2400 with --task segmentation).") var steps: Int?
  @Option(help: "Global batch size over all ranks (default 128; 32 with --task segmentation).") var batch: Int?
  @Option(help: "Micro-batches per step (gradient accumulation).") var accum: Int = 1
  @Option(help: "Optimizer: adamw or sgd.") var optimizer: String = "adamw"
  @Option(help: "Peak learning rate.") var lr: Float = 2e-3
  @Option(help: "Linear warm-up steps.") var warmup: Int = 60
  @Option(help: "Decay after warm-up: cosine, linear or constant.") var decay: String = "cosine"
  @Option(help: "Decoupled weight decay (kernels only).") var weightDecay: Float = 0.05
  @Option(help: "SGD momentum.") var momentum: Float = 0.9
  @Option(help: "Adam beta1.") var beta1: Float = 0.9
  @Option(help: "Adam beta2.") var beta2: Float = 0.999
  @Option(help: "Clip the global gradient norm to this (0: off).") var clip: Float = 1
  @Option(help: "Label smoothing.") var labelSmoothing: Float = 0
  @Option(help: "Stochastic depth rate (per block, linear in depth).") var stochasticDepth: Float = 0
  @Option(help: "Dropout on the MLP hidden activations.") var dropout: Float = 0
  @Option(help: "Seed of initialisation, data order and regularisers.") var seed: UInt64 = 0
  @Option(help: "Log every N steps.") var logEvery: Int = 25
  @Option(help: "Evaluate every N steps (0: at the end only).") var evalEvery: Int = 0
  @Option(help: "Evaluation batch size.") var evalBatch: Int = 250
  @Option(help: "OpenBLAS threads per rank (default: cores per node / ranks per node).") var threads: Int?
  @Option(help: "Data loader threads per rank.") var loaderWorkers: Int = 1
  @Option(help: "Gradient all-reduce bucket size, in floats.") var bucketSize: Int = 1 << 20
  @Option(help: "ZeRO stage: 0 (all-reduce) or 1 (sharded optimizer).") var zero: Int = 0
  @Option(help: "Run folder for metrics.jsonl, config.json and the final parameters.") var runDir: String = "runs/default"
  @Option(help: "Abort the job if a step or collective takes longer (seconds).") var timeout: Double = 600
  @Option(help: "Fault injection: fail at this step (with --fail-rank).") var failAtStep: Int?
  @Option(help: "Fault injection: the rank that fails.") var failRank: Int = 0
  @Option(help: "Fault injection: stall (sleep) at this step on --fail-rank.") var stallAtStep: Int?
  @Flag(help: "Print the effective settings as JSON, checked, and exit without training.") var printConfig = false
  @Option(help: "Folder for checkpoints (one step-N folder per save; shared by all ranks).") var checkpointDir: String?
  @Option(help: "Save a checkpoint every N steps (and always at the end).") var saveEvery: Int = 0
  @Option(help: "Keep only the newest K checkpoints (0: all).") var keep: Int = 0
  @Option(help: "Resume: 'auto' (newest valid checkpoint in --checkpoint-dir) or a checkpoint folder.") var resume: String?
  @Option(help: "Fine-tune from weights: an official .npz, a folder from `mixer-dist import`, or a checkpoint. Another class count re-initialises the head; a larger --image-size (same patch, K times the side) widens token mixing as the paper's Appendix C.") var initFrom: String?
  @Option(help: .hidden) var killInSaveAtStep: Int?
  @Option(help: "Console log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"

  func trainConfig() throws -> TrainConfig {
    var c = TrainConfig(model: try model.config())
    c.preset = model.preset
    c.data = data
    c.dataOptions.valFraction = valFraction
    c.dataOptions.skipBadImages = skipBadImages
    c.dataOptions.augment = !noAugment
    c.dataOptions.randAugment = try randaugment.map { try RandAugment(parsing: $0) }
    c.dataOptions.normalization = try Normalization(parsing: normalize)
    c.mixup = mixup
    c.trainExamples = trainExamples
    c.validationExamples = valExamples
    // the embedded runs' budgets: about 77k images either way; segmentation learns more from
    // more, smaller steps (measured at 3-4 minutes: batch 128 × 600 → 39% mIoU, 64 × 1200 → 52%,
    // 32 × 2400 → 65%)
    let segmentation = c.model.isSegmentation
    c.steps = steps ?? (segmentation ? 2400 : 600)
    c.globalBatch = batch ?? (segmentation ? 32 : 128)
    c.accumulation = accum
    guard let kind = OptimizerKind(rawValue: optimizer) else {
      throw ConfigError("unknown optimizer '\(optimizer)' (known: adamw, sgd)")
    }
    c.optimizer.kind = kind
    c.optimizer.weightDecay = weightDecay
    c.optimizer.momentum = momentum
    c.optimizer.beta1 = beta1
    c.optimizer.beta2 = beta2
    guard let decayKind = DecayKind(rawValue: decay) else {
      throw ConfigError("unknown decay '\(decay)' (known: cosine, linear, constant)")
    }
    c.learningRate = lr
    c.warmupSteps = warmup
    c.decay = decayKind
    c.clipNorm = clip
    c.labelSmoothing = labelSmoothing
    c.stochasticDepth = stochasticDepth
    c.dropout = dropout
    c.seed = seed
    c.logEvery = logEvery
    c.evalEvery = evalEvery
    c.evalBatch = evalBatch
    c.threads = threads
    c.loaderWorkers = loaderWorkers
    c.bucketFloats = bucketSize
    c.zeroStage = zero
    c.runDirectory = runDir
    c.checkpointDirectory = checkpointDir
    c.initFrom = initFrom
    if let initFrom, model.tokensMlp == nil,
      let source = try readInitialParameters(from: URL(fileURLWithPath: initFrom)).config,
      source.patch == c.model.patch,
      (source.imageHeight, source.imageWidth) != (c.model.imageHeight, c.model.imageWidth)
    {
      // fine-tuning at a higher resolution: D_S grows by K² (paper, Appendix C)
      c.model.tokensMLP = try highResolutionConfig(
        source, imageHeight: c.model.imageHeight, imageWidth: c.model.imageWidth).tokensMLP
    }
    c.saveEvery = saveEvery
    c.keep = keep
    if c.model.isSegmentation {
      if data == "shapes" { c.data = "segshapes" }  // the embedded default of the task
      // without --classes, the model predicts the data's classes
      if model.classes == nil { c.model.classes = try classCount(of: c) }
    }
    if timeout <= 0 { throw ConfigError("--timeout must be positive, got \(timeout)") }
    return c
  }

  func run() throws {
    if printConfig {
      try runReportingErrors {
        let config = try trainConfig()
        try config.validate(worldSize: 1)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(config), as: UTF8.self))
      }
      return
    }
    let comm: Communicator
    do {
      comm = try MPICommunicator.makeDefault()
    } catch {
      FileHandle.standardError.write(Data("mixer-dist: error: \(error)\n".utf8))
      throw ExitCode(1)
    }
    do {
      guard let level = Logger.Level(rawValue: logLevel) else {
        throw ConfigError("unknown --log-level '\(logLevel)' (known: trace, debug, info, notice, warning, error, critical)")
      }
      let trainer = try Trainer(config: try trainConfig(), comm: comm, timeout: timeout, resume: resume, logLevel: level)
      if let step = failAtStep { trainer.fault = FaultInjection(step: step, rank: failRank) }
      if let step = stallAtStep { trainer.fault = FaultInjection(step: step, rank: failRank, stall: true) }
      trainer.killInSaveAtStep = killInSaveAtStep
      let summary = try trainer.run()
      let metric = summary.evaluation?.meanIoU.map { String(format: "val mIoU %.2f%%", $0 * 100) }
        ?? String(format: "val top-1 %.2f%%", (summary.evaluation?.top1 ?? .nan) * 100)
      trainer.log.line(String(
        format: "done: %d steps in %@, %.0f img/s, final loss %.4f, %@",
        summary.steps, formatDuration(summary.seconds), summary.imagesPerSecond, summary.finalLoss, metric))
      try comm.finalize()
    } catch {
      if comm.size > 1 { comm.abort(message: "\(error)", code: 1) }
      FileHandle.standardError.write(Data("mixer-dist: error: \(error)\n".utf8))
      throw ExitCode(1)
    }
  }
}
