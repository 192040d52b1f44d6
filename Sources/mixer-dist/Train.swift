// `mixer-dist train`: train a Mixer, alone or as every rank of `mpirun -n N mixer-dist train`.
// With no flags it trains the `tiny` preset on the embedded procedural dataset.

import ArgumentParser
import Foundation
import MixerTelemetry
import MixerTrace
import MixerCheckpoint
import Logging
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerTrain

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a Mixer (single process, or every rank under mpirun).")

  @OptionGroup var model: ModelOptions
  // expanded by ConfigFile before parsing; declared so that --help documents it
  @Option(help: "A YAML file of `flag: value` settings (keys are these flag names); command-line flags override it.") var config: String?
  @Option(help: "Data: KIND:PATH with KIND one of \(DataKind.helpList). Inferred from a bare PATH when obvious; stored in the run as an absolute path.") var data: String?
  @Option(help: "Hold out this fraction of train/ for validation (image folders).") var valFraction: Double?
  @Flag(help: "Count, log and skip corrupt or unsupported images instead of stopping.") var skipBadImages = false
  @Option(help: "RandAugment N,M (e.g. 2,15; off by default).") var randaugment: String?
  @Option(help: "Mixup alpha (0: off; the paper's B/16 recipe uses 0.5).") var mixup: Float = D.mixup
  @Option(help: "Pixel normalisation: minus-one-one (official), imagenet, or R,G,B/R,G,B mean/std.") var normalize: String = "minus-one-one"
  @Flag(help: "No training augmentation (no random crop or flip).") var noAugment = false
  @Flag(help: "No random left-right flips (digits, text and other images that a mirror changes; MNIST is never flipped).") var noFlip = false
  @Option(help: "Random (inception) crop area MIN,MAX as fractions of the image, timm's --scale (default 0.05,1; e.g. 0.5,1 for small images).") var cropScale: String?
  @Option(help: "Random crop aspect ratio MIN,MAX (width/height, drawn uniformly as big_vision's inception crop; default 0.75,1.33).") var cropRatio: String?
  @Option(help: "Training images of the embedded dataset.") var trainExamples: Int = D.trainExamples
  @Option(help: "Validation images of the embedded dataset.") var valExamples: Int = D.validationExamples
  @Option(help: "Optimizer steps (default \(ClassificationTask().defaultSteps); \(SegmentationTask().defaultSteps) with --task segmentation).") var steps: Int?
  @Option(help: "Global batch size over all ranks (default \(ClassificationTask().defaultGlobalBatch); \(SegmentationTask().defaultGlobalBatch) with --task segmentation).") var batch: Int?
  @Option(help: "Micro-batches per step (gradient accumulation).") var accum: Int = D.accumulation
  @Option(help: "Loss of the head: softmax (cross-entropy over the classes) or sigmoid (a binary cross-entropy per class, summed; big_vision's sigmoid_xent; classification only).") var loss: HeadLoss = D.model.loss
  @Option(parsing: .unconditional, help: "Initial value of every head bias (big_vision's init_head_bias, e.g. -6.9 with --loss sigmoid on 1000 classes; not applied to --init-from weights).") var headBiasInit: Float = D.headBiasInit
  @Option(help: "Optimizer: adamw (p -= lr_t*(adam + wd*p)), adam (big_vision's chain: p -= s_t*(lr*adam + wd*p), the decay scaled by the schedule s_t but not by lr) or sgd.") var optimizer: OptimizerKind = D.optimizer.kind
  @Option(help: "Peak learning rate.") var lr: Float = D.learningRate
  @Option(help: "Linear warm-up: steps (an integer), or a fraction of the steps below 1 (0.1: a tenth). Must be shorter than the run (default \(D.warmupSteps) steps).") var warmup: String?
  @Flag(help: "Count the warm-up as big_vision does: step t (from 0) at t/W of the learning rate, so the first update has rate 0 (default: (t+1)/W).") var warmupFromZero = false
  @Option(help: "Decay after warm-up: cosine, linear or constant.") var decay: String = D.decay.rawValue
  @Option(help: "Learning rate the decay ends at (default 0; big_vision's linear_end is a fraction of its lr: --lr-end = lr x linear_end).") var lrEnd: Float = D.endLearningRate
  @Option(help: "Weight decay, kernels only: decoupled and scaled by the learning rate with adamw and sgd, scaled by the schedule only with adam (adamw's wd = adam's wd / lr).") var weightDecay: Float = D.optimizer.weightDecay
  @Option(help: "SGD momentum.") var momentum: Float = D.optimizer.momentum
  @Option(help: "Adam beta1.") var beta1: Float = D.optimizer.beta1
  @Option(help: "Adam beta2.") var beta2: Float = D.optimizer.beta2
  @Option(help: "Clip the global gradient norm to this (0: off).") var clip: Float = D.clipNorm
  @Option(help: "Label smoothing.") var labelSmoothing: Float = D.labelSmoothing
  @Option(help: "Stochastic depth rate (per block, linear in depth).") var stochasticDepth: Float = D.stochasticDepth
  @Option(help: "Dropout on the MLP hidden activations.") var dropout: Float = D.dropout
  @Option(help: "Seed of initialisation, data order and regularisers.") var seed: UInt64 = D.seed
  @Option(help: "Log every N steps.") var logEvery: Int = D.logEvery
  @Option(help: "Evaluate every N steps (0: at the end only; default: a tenth of the steps).") var evalEvery: Int?
  @Option(help: "Train this many passes over the training images instead of --steps.") var epochs: Int?
  @Option(help: "Evaluation batch size.") var evalBatch: Int = D.evalBatch
  @Option(help: "OpenBLAS threads per rank (default: cores per node / ranks per node).") var threads: Int?
  @Option(help: "Data loader threads per rank.") var loaderWorkers: Int = D.loaderWorkers
  @Option(help: "Gradient all-reduce bucket size, in floats (default: the parameters cut into 4-16 equal buckets, fewer as ranks grow, so ring latency stays a small share).") var bucketSize: Int?
  @Option(help: "ZeRO stage: 0 (all-reduce) or 1 (sharded optimizer).") var zero: Int = D.zeroStage
  @Option(help: "Gradient communication format: fp32, or bf16 (half the bytes; for links slower than about 10 Gbit/s).") var gradComm: String = D.gradientCommunication.rawValue
  @Flag(help: "Reduce the gradients after backward instead of overlapping it (for comparison).") var noOverlap = false
  @Flag(help: "Exact at any scale: the same seed gives the same bits on any number of ranks and threads (micro-batches of --micro-batch images, gradients summed as exact fixed-point integers).") var exact = false
  @Option(help: "Images per micro-batch under --exact; the global batch must be a multiple of it times the ranks.") var microBatch: Int = D.exactMicroBatch
  @Option(help: "Matrix products: fp32 (OpenBLAS), or bf16 mixed precision (oneDNN; fp32 parameters, gradients and optimizer state, so checkpoints are the same; fast with AVX512-BF16 or AMX, portable and slower than fp32 elsewhere).") var precision: Precision = D.precision
  @Option(help: "Run folder for metrics.jsonl, config.json and the final parameters.") var runDir: String = D.runDirectory
  @Option(help: "Abort the job if a step or collective takes longer (seconds).") var timeout: Double = 600
  // fault injection for the launch tests (hidden): fail, or stall, at a step on --fail-rank
  @Option(help: .hidden) var failAtStep: Int?
  @Option(help: .hidden) var failRank: Int = 0
  @Option(help: .hidden) var stallAtStep: Int?
  // a straggler for the launch tests (hidden): --slow-rank R sleeps --slow-ms M in every step's compute
  @Option(help: .hidden) var slowRank: Int?
  @Option(help: .hidden) var slowMs: Double = 0
  @Flag(help: "Print the effective settings as a --config YAML file (flag names as keys), checked (the data source too), and exit without training.") var printConfig = false
  @Option(help: "Folder for checkpoints (one step-N folder per save; shared by all ranks; default: checkpoints/ in the run folder).") var checkpointDir: String?
  @Option(help: "Save a checkpoint every N steps (and always at the end).") var saveEvery: Int = D.saveEvery
  @Option(help: "Without --save-every: save a checkpoint after the step that ends every M minutes of training (0: off), so a crash loses at most about M minutes.") var saveEveryMinutes: Double = D.saveEveryMinutes
  @Option(help: "How periodic checkpoints are written: async (copied at the step, one more copy of the parameters and optimizer state in memory, written in the background while training goes on) or sync (every rank waits for the write).") var saveMode: SaveMode = D.saveMode
  @Option(help: "Keep only the newest K checkpoints (0: all).") var keep: Int = D.keep
  @Option(help: "Also keep the checkpoint with the best value of this evaluation metric (val_top1, val_top5, val_loss; val_miou, val_pixel_accuracy for segmentation; with --ema the same with _ema, e.g. val_top1_ema; lower is better for val_loss), named in best.json.") var keepBest: String?
  @Option(help: "Keep an exponential moving average of the parameters with this decay (0: off; e.g. 0.9999): updated after every optimizer step in fp32 (sharded under --zero 1), evaluated beside the raw parameters (val_top1_ema, ...), saved in checkpoints; eval, predict, export and quantize read it with --weights ema.") var ema: Float = D.emaDecay
  @Flag(help: "Warm up the --ema decay as timm's ModelEmaV3 (use_warmup): min(DECAY, 1 - (1 + t)^(-2/3)) at update t + 1.") var emaWarmup = false
  @Option(help: "Resume: 'auto' (newest valid checkpoint in the checkpoint folder) or a checkpoint folder.") var resume: String?
  @Flag(help: "Start a new run in a run or checkpoint folder that holds another run's records and checkpoints, removing them.") var overwrite = false
  @Option(help: "Fine-tune from weights: an official .npz, a folder from `mixer-dist import`, or a checkpoint. Another class count re-initialises the head; a larger --image-size (same patch, K times the side) widens token mixing as the paper's Appendix C.") var initFrom: String?
  @Option(help: .hidden) var killInSaveAtStep: Int?
  // a background save's write that fails (as a full disk would) at this step (hidden)
  @Option(help: .hidden) var failInSaveAtStep: Int?
  @Option(help: "Record a timeline of every rank into this folder (rank-R.json each, merged into trace.json at the end: Chrome trace-event JSON for Perfetto or chrome://tracing); `mixer-dist trace summary` names the slow ranks.") var trace: String?
  @Option(help: "Console log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
  @Option(help: "Track the run in MLflow: the tracking server's URI, http://HOST:PORT (default: $MLFLOW_TRACKING_URI when it is one; 'off': not tracked).") var mlflow: String?
  @Option(help: "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else mixer-dist).") var mlflowExperiment: String?

  /// The flags as a config, with what they leave unspecified still to be resolved by the library.
  func parsedConfig() throws -> (TrainConfig, Unspecified) {
    var c = TrainConfig(model: try model.config())
    c.preset = model.preset
    c.data = data ?? c.data
    c.dataOptions.valFraction = valFraction
    c.dataOptions.skipBadImages = skipBadImages
    c.dataOptions.augment = !noAugment
    if noFlip { c.dataOptions.flip = false }
    if let cropScale {
      (c.dataOptions.cropMinArea, c.dataOptions.cropMaxArea) = try parseRange(cropScale, flag: "--crop-scale")
    }
    if let cropRatio {
      (c.dataOptions.cropMinRatio, c.dataOptions.cropMaxRatio) = try parseRange(cropRatio, flag: "--crop-ratio")
    }
    c.dataOptions.randAugment = try randaugment.map { try RandAugment(parsing: $0) }
    c.dataOptions.normalization = try Normalization(parsing: normalize)
    c.mixup = mixup
    c.trainExamples = trainExamples
    c.validationExamples = valExamples
    c.steps = steps ?? c.steps
    c.globalBatch = batch ?? c.globalBatch
    c.accumulation = accum
    c.optimizer.kind = optimizer
    c.optimizer.weightDecay = weightDecay
    c.optimizer.momentum = momentum
    c.optimizer.beta1 = beta1
    c.optimizer.beta2 = beta2
    guard let decayKind = DecayKind(rawValue: decay) else {
      throw ConfigError("unknown decay '\(decay)' (known: cosine, linear, constant)")
    }
    c.learningRate = lr
    c.decay = decayKind
    c.endLearningRate = lrEnd
    c.warmupFromZero = warmupFromZero
    c.model.loss = loss
    c.headBiasInit = headBiasInit
    c.clipNorm = clip
    c.labelSmoothing = labelSmoothing
    c.stochasticDepth = stochasticDepth
    c.dropout = dropout
    c.seed = seed
    c.logEvery = logEvery
    c.evalEvery = evalEvery ?? c.evalEvery
    c.evalBatch = evalBatch
    c.threads = threads
    c.loaderWorkers = loaderWorkers
    c.bucketFloats = bucketSize
    c.zeroStage = zero
    guard let gradientPrecision = GradientPrecision(rawValue: gradComm) else {
      throw ConfigError("unknown --grad-comm '\(gradComm)' (known: fp32, bf16)")
    }
    c.gradientCommunication = gradientPrecision
    c.overlap = !noOverlap
    c.exact = exact
    c.exactMicroBatch = microBatch
    c.precision = precision
    c.runDirectory = runDir
    c.checkpointDirectory = checkpointDir
    c.initFrom = initFrom
    c.saveEvery = saveEvery
    c.saveEveryMinutes = saveEveryMinutes
    c.saveMode = saveMode
    c.keep = keep
    c.keepBest = keepBest
    c.emaDecay = ema
    c.emaWarmup = emaWarmup
    if timeout <= 0 { throw ConfigError("--timeout must be positive, got \(timeout)") }
    var unspecified: Unspecified = []
    if steps == nil { unspecified.insert(.steps) }
    if batch == nil { unspecified.insert(.globalBatch) }
    if data == nil { unspecified.insert(.data) }
    if model.classes == nil { unspecified.insert(.classes) }
    if model.tokensMlp == nil { unspecified.insert(.tokensMLP) }
    if evalEvery == nil { unspecified.insert(.evalEvery) }
    return (c, unspecified)
  }

  /// The config this command line trains with (what it leaves unspecified, resolved).
  func trainConfig() throws -> (TrainConfig, notes: [String]) {
    var (config, unspecified) = try parsedConfig()
    let notes = try config.resolve(unspecified, epochs: epochs, warmup: warmupLength)
    return (config, notes)
  }

  /// `--warmup` parsed (nil: not given).
  var warmupLength: WarmupLength? {
    get throws { try warmup.map(WarmupLength.init(parsing:)) }
  }

  /// The hidden fault flags as the trainer reads them, `MIXER_DIST_FAULTS` (MixerTrain's
  /// `FaultPlan`); nil when none is given.
  var faults: String? {
    let given: [(String, String?)] = [
      ("fail-at-step", failAtStep.map { "\($0)" }), ("fail-rank", failRank != 0 ? "\(failRank)" : nil),
      ("stall-at-step", stallAtStep.map { "\($0)" }), ("kill-in-save-at-step", killInSaveAtStep.map { "\($0)" }),
      ("fail-in-save-at-step", failInSaveAtStep.map { "\($0)" }), ("slow-rank", slowRank.map { "\($0)" }),
      ("slow-ms", slowMs != 0 ? "\(slowMs)" : nil),
    ]
    let items = given.compactMap { name, value in value.map { "\(name)=\($0)" } }
    return items.isEmpty ? nil : items.joined(separator: " ")
  }

  func run() throws {
    try runReportingErrors {
      guard let level = Logger.Level(rawValue: logLevel) else {
        throw ConfigError("unknown --log-level '\(logLevel)' (known: trace, debug, info, notice, warning, error, critical)")
      }
      if printConfig {
        let (config, _) = try trainConfig()
        try config.validate(worldSize: 1)
        try config.checkDataSource()
        print(Train.settingsYAML(config), terminator: "")
        return
      }
      Interruption.install()  // a signal during start-up stops after the first step
      // before MPI starts: a settings error is every rank's alike, and each rank then exits with
      // its one line instead of aborting the job through MPI_Abort (and OpenMPI's banner)
      let (config, notes): (TrainConfig, [String])
      var tracking: URL?
      do {
        (config, notes) = try trainConfig()
        // the launcher's world size (mpirun, srun), so that a batch the ranks cannot share is
        // said here too; the trainer checks again with MPI's own
        let environment = ProcessInfo.processInfo.environment
        let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].lazy.compactMap { environment[$0].flatMap(Int.init) }.first
        try config.validate(worldSize: max(size ?? 1, 1))
        tracking = try trackingURI()
      } catch {
        // the same line from every rank would be said N times: the first rank says it
        let environment = ProcessInfo.processInfo.environment
        let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"].lazy.compactMap { environment[$0] }.first
        if let rank, rank != "0" { throw ExitCode(ExitStatus.refused) }
        throw Refusal.wrapping(error)
      }
      if let faults { setenv("MIXER_DIST_FAULTS", faults, 1) }  // the launch tests' hidden flags
      if trace != nil { Timeline.current = Timeline() }
      let interrupted = try Job.run { comm -> Bool in
        Interruption.install()  // again after MPI's start-up, in case it set handlers of its own
        // anything refused before training is refused again by a rerun: its own exit status
        let trainer: Trainer
        do {
          trainer = try Trainer(
            config: config, comm: comm, timeout: timeout, resume: resume, logLevel: level, overwrite: overwrite)
        } catch {
          throw Refusal.wrapping(error)
        }
        for note in notes { trainer.log.line("mixer-dist: \(note)") }
        let tracker = comm.rank == 0 ? tracking.map { startTracking($0, config: config, hosts: trainer.rankHosts, log: trainer.log) } : nil
        trainer.log.tracker = tracker
        let summary: TrainSummary
        do {
          summary = try trainer.run()
        } catch {
          finishTracking(tracker, .failed, config: config, log: trainer.log)
          writeTrace(comm: comm, merge: false, log: trainer.log)
          throw error
        }
        writeTrace(comm: comm, merge: true, log: trainer.log)
        guard summary.interrupted == nil else {
          finishTracking(tracker, .killed, config: config, log: trainer.log)
          return true
        }
        if summary.seconds > 0 {
          trainer.log.line(String(
            format: "done: %d steps in %@, %.0f img/s, final loss %.4f, %@",
            summary.steps, formatDuration(summary.totalSeconds), summary.imagesPerSecond, summary.finalLoss,
            summary.evaluation?.headline ?? "no evaluation"))
        }
        finishTracking(tracker, .finished, config: config, log: trainer.log)
        return false
      }
      // stopped by a signal after saving: the status launch/resilient reads as "resume me"
      if interrupted { throw ExitCode(Interruption.exitCode) }
    }
  }
}

extension Train {
  /// `--trace DIR`: every rank writes its timeline; after a run that ended on every rank alike
  /// (`merge`), rank 0 merges them into DIR/trace.json once all are written. A failure to write
  /// the trace is said and does not fail the run.
  func writeTrace(comm: Communicator, merge: Bool, log: RunLog) {
    guard let trace, let timeline = Timeline.current else { return }
    let folder = URL(fileURLWithPath: trace)
    do {
      _ = try timeline.write(into: folder, rank: comm.rank, host: ProcessInfo.processInfo.hostName)
      guard merge else { return }
      try comm.barrier()
      if comm.rank == 0 {
        let merged = try TraceFile(contentsOf: folder)
        let url = folder.appendingPathComponent("trace.json")
        try merged.write(to: url)
        log.line("trace: \(url.path) (\(comm.size) rank(s); `mixer-dist trace summary \(url.path)`)")
      }
    } catch {
      log.line("mixer-dist: warning: the trace was not written: \(describeError(error))")
    }
  }

  /// The MLflow tracking server: `--mlflow`, else $MLFLOW_TRACKING_URI when it is an http(s) URI
  /// (MLflow's other stores, such as `file:`, need its Python client); nil: not tracked.
  func trackingURI() throws -> URL? {
    if let mlflow { return mlflow == "off" ? nil : try MLflowSettings.trackingURI(mlflow) }
    guard let value = ProcessInfo.processInfo.environment["MLFLOW_TRACKING_URI"], !value.isEmpty else { return nil }
    return try? MLflowSettings.trackingURI(value)
  }

  /// Every rank's host, as the tag `mixer.hosts` gives them: each host once, in rank order, with
  /// its rank count (`node1 (2), node2 (2)`).
  static func hostsTag(_ hosts: [String]) -> String {
    var order: [String] = []
    var counts: [String: Int] = [:]
    for host in hosts {
      if counts[host] == nil { order.append(host) }
      counts[host, default: 0] += 1
    }
    return order.map { "\($0) (\(counts[$0]!))" }.joined(separator: ", ")
  }

  /// Rank 0: tracks the run at `uri`, continuing the MLflow run named in the run folder's
  /// mlflow.json when this run resumes.
  func startTracking(_ uri: URL, config: TrainConfig, hosts: [String], log: RunLog) -> MLflowTracker {
    let environment = ProcessInfo.processInfo.environment
    let runFolder = URL(fileURLWithPath: config.runDirectory).standardizedFileURL
    let record = runFolder.appendingPathComponent("mlflow.json")
    var continued: String?
    if resume != nil, let data = try? Data(contentsOf: record),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: String],
      object["tracking_uri"] == uri.absoluteString
    {
      continued = object["run_id"]
    }
    let params = Train.settings(config).map { key, value -> (String, String) in
      // quoted YAML strings as their text
      let text = value.hasPrefix("\"") ? (try? JSONDecoder().decode(String.self, from: Data(value.utf8))) ?? value : value
      return (key, text)
    }
    let settings = MLflowSettings(
      uri: uri, experiment: mlflowExperiment ?? environment["MLFLOW_EXPERIMENT_NAME"] ?? "mixer-dist",
      runName: runFolder.lastPathComponent, runID: continued, params: params,
      tags: [
        ("mlflow.source.name", "mixer-dist train"), ("mlflow.source.git.commit", buildCommit),
        ("mixer.version", mixerDistVersion), ("mixer.world_size", "\(hosts.count)"),
        ("mixer.host", ProcessInfo.processInfo.hostName), ("mixer.hosts", Train.hostsTag(hosts)), ("mixer.run_dir", runFolder.path),
        ("mixer.checkpoint_dir", URL(fileURLWithPath: config.checkpointFolder).standardizedFileURL.path),
      ])
    log.line("mlflow: tracking the run at \(uri.absoluteString), experiment '\(settings.experiment)'"
      + (continued.map { ", continuing run \($0)" } ?? ""))
    return MLflowTracker(settings) { id in
      // which MLflow run this folder logs to, for a resumed run
      let object = ["tracking_uri": uri.absoluteString, "run_id": id]
      try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: record, options: .atomic)
    }
  }

  /// Ends the tracked run: the run folder's small files as artifacts, the status, and any
  /// warning about what the server did not take.
  func finishTracking(_ tracker: MLflowTracker?, _ status: MLflowRunStatus, config: TrainConfig, log: RunLog) {
    guard let tracker else { return }
    let folder = URL(fileURLWithPath: config.runDirectory)
    for name in ["config.json", "confusion.json", "metrics.jsonl", "best.json"] {
      let file = folder.appendingPathComponent(name)
      if FileManager.default.fileExists(atPath: file.path) { tracker.artifact(name, file: file) }
    }
    for line in tracker.finish(status) { log.line(line) }
    if let id = tracker.currentRunID { log.line("mlflow: run \(id) \(status.rawValue.lowercased())") }
  }

  /// Every training flag with the value `config` gives it, as `flag: value` YAML lines that
  /// `--config` reads back to the same config (strings quoted; unset options left out).
  static func settingsYAML(_ config: TrainConfig) -> String {
    settings(config).map { "\($0.0): \($0.1)\n" }.joined()
  }

  /// `settingsYAML`'s pairs: flag name and YAML value (strings quoted).
  static func settings(_ config: TrainConfig) -> [(String, String)] {
    let m = config.model, d = config.dataOptions, o = config.optimizer
    func text(_ value: String) -> String {
      String(decoding: (try? JSONEncoder().encode(value)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
    var normalize = "minus-one-one"
    if d.normalization == .imagenet { normalize = "imagenet" }
    else if d.normalization != .minusOneToOne {
      normalize = d.normalization.mean.map { "\($0)" }.joined(separator: ",") + "/"
        + d.normalization.std.map { "\($0)" }.joined(separator: ",")
    }
    let settings: [(String, String?)] = [
      ("preset", text(config.preset)), ("image-height", "\(m.imageHeight)"), ("image-width", "\(m.imageWidth)"),
      ("patch", "\(m.patch)"), ("hidden", "\(m.hidden)"), ("blocks", "\(m.blocks)"), ("tokens-mlp", "\(m.tokensMLP)"),
      ("channels-mlp", "\(m.channelsMLP)"), ("classes", "\(m.classes)"), ("gelu", text(m.gelu.rawValue)),
      ("block-pattern", text(m.blockPattern.description)), ("heads", "\(m.attentionHeads)"),
      ("conv-kernel", "\(m.convKernel)"), ("task", text(m.task.rawValue)), ("stem", text(m.stem.rawValue)),
      ("data", text(config.data)), ("val-fraction", d.valFraction.map { "\($0)" }),
      ("skip-bad-images", "\(d.skipBadImages)"),
      ("randaugment", d.randAugment.map { text("\($0.layers),\($0.magnitude)") }),
      ("mixup", "\(config.mixup)"), ("normalize", text(normalize)), ("no-augment", "\(!d.augment)"), ("no-flip", "\(d.flip == false)"),
      ("crop-scale", text("\(d.cropMinArea),\(d.cropMaxArea)")), ("crop-ratio", text("\(d.cropMinRatio),\(d.cropMaxRatio)")),
      ("train-examples", "\(config.trainExamples)"), ("val-examples", "\(config.validationExamples)"),
      ("steps", "\(config.steps)"), ("batch", "\(config.globalBatch)"), ("accum", "\(config.accumulation)"),
      ("optimizer", text(o.kind.rawValue)), ("lr", "\(config.learningRate)"), ("warmup", Train.warmupSetting(config)),
      ("warmup-from-zero", "\(config.warmupFromZero)"), ("decay", text(config.decay.rawValue)),
      ("lr-end", "\(config.endLearningRate)"), ("loss", text(m.loss.rawValue)), ("head-bias-init", "\(config.headBiasInit)"),
      ("weight-decay", "\(o.weightDecay)"), ("momentum", "\(o.momentum)"),
      ("beta1", "\(o.beta1)"), ("beta2", "\(o.beta2)"), ("clip", "\(config.clipNorm)"),
      ("label-smoothing", "\(config.labelSmoothing)"), ("stochastic-depth", "\(config.stochasticDepth)"),
      ("dropout", "\(config.dropout)"), ("seed", "\(config.seed)"), ("log-every", "\(config.logEvery)"),
      ("eval-every", "\(config.evalEvery)"), ("eval-batch", "\(config.evalBatch)"),
      ("threads", config.threads.map { "\($0)" }), ("loader-workers", "\(config.loaderWorkers)"),
      ("bucket-size", config.bucketFloats.map { "\($0)" }), ("zero", "\(config.zeroStage)"),
      ("grad-comm", text(config.gradientCommunication.rawValue)), ("no-overlap", "\(!config.overlap)"),
      ("precision", text(config.precision.rawValue)), ("run-dir", text(config.runDirectory)),
      ("checkpoint-dir", config.checkpointDirectory.map(text)), ("save-every", "\(config.saveEvery)"),
      ("save-every-minutes", "\(config.saveEveryMinutes)"), ("save-mode", text(config.saveMode.rawValue)),
      ("keep", "\(config.keep)"), ("keep-best", config.keepBest.map(text)), ("init-from", config.initFrom.map(text)),
      ("exact", "\(config.exact)"), ("micro-batch", "\(config.exactMicroBatch)"),
      ("ema", "\(config.emaDecay)"), ("ema-warmup", "\(config.emaWarmup)"),
    ]
    return settings.compactMap { key, value in value.map { (key, $0) } }
  }
}

extension Train {
  /// The `warmup:` line of `settingsYAML`: the steps, except for a default warm-up the run cannot
  /// finish, which is left out (given, it is an error; as the default it is a warning, so reading
  /// the file back keeps it the default).
  static func warmupSetting(_ config: TrainConfig) -> String? {
    config.warmupSteps >= config.steps && config.warmupSteps == D.warmupSteps ? nil : "\(config.warmupSteps)"
  }
}

/// The defaults every flag shows (one source: `TrainConfig.defaults`).
private let D = TrainConfig.defaults
