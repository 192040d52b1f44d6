// One config struct for a training run; command-line flags map one to one onto it, and it is
// written into the run folder so a run can be read back and repeated.

import Foundation
import MixerCheckpoint
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel

/// Everything that defines a training run.
public struct TrainConfig: CheckpointConfig {
  /// preset the model started from (for the record; `model` is authoritative)
  public var preset: String = "tiny"
  public var model: MixerConfig
  /// data source `KIND:PATH` (shapes, folder, cifar10, cifar100, mnist, fashion-mnist)
  public var data: String = "shapes"
  /// decoding, augmentation and split options of the data source
  public var dataOptions = DataOptions()
  /// mixup α (0: off), mixing along the global batch as big_vision
  public var mixup: Float = 0
  /// initial weights: an official .npz, an imported folder or a checkpoint (fine-tuning); the
  /// head is re-initialised for another class count, token mixing widened for a higher resolution
  public var initFrom: String?
  /// the data's class names, recorded at start (for eval and predict)
  public var classNames: [String] = []
  /// training images of the embedded dataset
  public var trainExamples: Int = 50_000
  /// validation images of the embedded dataset
  public var validationExamples: Int = 5_000
  public var steps: Int = 600
  public var globalBatch: Int = 128
  /// micro-batches per step (gradient accumulation); the local batch must divide by it
  public var accumulation: Int = 1
  public var optimizer = OptimizerConfig()
  public var learningRate: Float = 2e-3
  public var warmupSteps: Int = 60
  public var decay: DecayKind = .cosine
  /// the learning rate the decay ends at (`--lr-end`; big_vision's `linear_end` × `--lr`)
  public var endLearningRate: Float = 0
  /// warm-up counted as big_vision does: step t (0-based) at t/W of the rate, the first at 0
  public var warmupFromZero = false
  /// every value of the head's bias at initialisation (big_vision's `init_head_bias`; -6.9 ≈
  /// log(1/1000) with `--loss sigmoid` on 1000 classes); applies to a model initialised from the
  /// seed, not to weights loaded by `--init-from`
  public var headBiasInit: Float = 0
  /// clip the global gradient norm to this (0 = off); the paper uses 1.0
  public var clipNorm: Float = 1
  public var labelSmoothing: Float = 0
  public var stochasticDepth: Float = 0
  public var dropout: Float = 0
  public var seed: UInt64 = 0
  public var logEvery: Int = 25
  /// evaluate every N steps (0 = only at the end)
  public var evalEvery: Int = 0
  public var evalBatch: Int = 250
  /// OpenBLAS threads per rank (nil = cores per node / ranks per node)
  public var threads: Int?
  /// data loader worker threads per rank
  public var loaderWorkers: Int = 1
  /// gradient all-reduce bucket size in floats (nil: `BucketSizeRule` from the parameter count
  /// and the world size; `gradientBucketFloats(worldSize:)` is the size a job uses)
  public var bucketFloats: Int?
  /// reduce gradient buckets on a communication thread during backward (false: all after it)
  public var overlap: Bool = true
  /// the format gradients travel in: fp32, or bf16 (half the bytes, for slow links)
  public var gradientCommunication: GradientPrecision = .fp32
  /// 0: all-reduce gradients; 1: ZeRO-1 (shard optimizer state and update)
  public var zeroStage: Int = 0
  /// the matrix products' number format: fp32, or bf16 mixed precision (fp32 master parameters,
  /// gradients and optimizer state, so checkpoints are the same either way); absent in older
  /// manifests, which decode as fp32
  public var precision: Precision = .fp32
  public var runDirectory: String = "runs/default"
  /// where checkpoints go (nil: no checkpoints)
  public var checkpointDirectory: String?
  /// save every N steps (0: only at the end, when a checkpoint directory is set)
  public var saveEvery: Int = 0
  /// keep the newest K checkpoints (0: keep all)
  public var keep: Int = 0
  /// when `saveEvery` is 0: save a checkpoint after the step that ends each such period of
  /// training time (rank 0's clock; 0: off), so a crash loses at most about this much
  public var saveEveryMinutes: Double = 30
  /// how periodic checkpoints are written: `async` copies the state at the step and writes it
  /// in the background while training goes on (BackgroundSave); `sync` stops every rank until the
  /// save is committed. The last step's save and a signal's are always waited for.
  public var saveMode: SaveMode = .async
  /// exact at any scale: micro-batches of `exactMicroBatch` images whatever the world size, and
  /// gradients, loss and norm summed as 128-bit fixed-point integers (order-free); the same seed
  /// then gives the same bits on any number of ranks and threads
  public var exact: Bool = false
  /// images per micro-batch under `exact` (the global batch must be a multiple of it times the ranks)
  public var exactMicroBatch: Int = 16
  /// also keep the checkpoint with the best value of this evaluation metric (e.g. `val_top1`;
  /// lower is better for `val_loss`), named in `best.json` of the checkpoint folder
  public var keepBest: String?
  /// the decay of the exponential moving average of the parameters (0: none), kept in fp32
  /// beside the optimizer state, evaluated beside the raw parameters and saved in checkpoints
  /// (`ExponentialMovingAverage`)
  public var emaDecay: Float = 0
  /// the average's decay warms up as timm's ModelEmaV3 `use_warmup`: min(decay, 1 − (1 + t)^(−2/3))
  public var emaWarmup: Bool = false

  public init(model: MixerConfig) { self.model = model }

  /// The run keeps a moving average of its parameters (`--ema`).
  public var keepsAverage: Bool { emaDecay > 0 }

  /// Where checkpoints go: `checkpointDirectory`, or `checkpoints` in the run folder (every run
  /// ends with a checkpoint that eval, predict, export, inspect and --init-from accept).
  public var checkpointFolder: String {
    checkpointDirectory ?? (runDirectory as NSString).appendingPathComponent("checkpoints")
  }

  /// The gradient bucket size of a job of `worldSize` ranks: `bucketFloats` when given, else
  /// `BucketSizeRule`'s for this model.
  public func gradientBucketFloats(worldSize: Int) -> Int {
    bucketFloats ?? BucketSizeRule.bucketFloats(parameterCount: model.parameterCount, worldSize: worldSize)
  }

  /// The schedule these settings describe.
  public var schedule: Schedule {
    Schedule(
      baseLR: learningRate, warmupSteps: warmupSteps, totalSteps: steps, decay: decay, endLR: endLearningRate,
      warmupFromZero: warmupFromZero)
  }

  /// The regularisers at `step` (nil when none is on: plain evaluation-mode forward).
  public func regularization(step: Int) -> Regularization? {
    guard stochasticDepth > 0 || dropout > 0 else { return nil }
    return Regularization(stochasticDepth: stochasticDepth, dropout: dropout, seed: seed, step: step)
  }

  /// Throws a one-line error for settings that cannot run.
  public func validate(worldSize: Int) throws {
    try model.validate()
    func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
      if !ok { throw ConfigError(message()) }
    }
    try check(steps > 0, "--steps must be positive, got \(steps)")
    try check(globalBatch > 0, "--batch must be positive, got \(globalBatch)")
    try check(learningRate >= 0 && learningRate.isFinite, "learning rate must be non-negative, got \(learningRate)")
    try check(warmupSteps >= 0, "--warmup must be non-negative, got \(warmupSteps)")
    try check(endLearningRate >= 0 && endLearningRate.isFinite, "--lr-end must be non-negative, got \(endLearningRate)")
    try check(endLearningRate == 0 || decay != .constant, "--lr-end is where the decay ends: pass --decay linear or cosine")
    try check(headBiasInit.isFinite, "--head-bias-init must be finite, got \(headBiasInit)")
    try check(optimizer.weightDecay >= 0, "--weight-decay must be non-negative, got \(optimizer.weightDecay)")
    try check(clipNorm >= 0, "--clip must be non-negative, got \(clipNorm)")
    try check(labelSmoothing >= 0 && labelSmoothing < 1, "--label-smoothing must be in [0, 1), got \(labelSmoothing)")
    try check(stochasticDepth >= 0 && stochasticDepth < 1, "--stochastic-depth must be in [0, 1), got \(stochasticDepth)")
    try check(dropout >= 0 && dropout < 1, "--dropout must be in [0, 1), got \(dropout)")
    try check(accumulation >= 1, "--accum must be at least 1, got \(accumulation)")
    try check(globalBatch % worldSize == 0,
      "global batch \(globalBatch) does not divide by \(worldSize) ranks; choose a multiple of \(worldSize)")
    try check((globalBatch / worldSize) % accumulation == 0,
      "local batch \(globalBatch / worldSize) does not divide into \(accumulation) micro-batches")
    if exact {
      try check(exactMicroBatch >= 1, "--micro-batch must be positive, got \(exactMicroBatch)")
      try check(accumulation == 1, "--exact cuts the batch into micro-batches of --micro-batch images; drop --accum")
      try check(gradientCommunication == .fp32,
        "--exact needs --grad-comm fp32 (bf16 rounds each rank's partial sum, which depends on the world size)")
      try check(globalBatch % (exactMicroBatch * worldSize) == 0,
        "--exact: the global batch \(globalBatch) does not split into micro-batches of \(exactMicroBatch) shared evenly "
          + "by \(worldSize) ranks; choose --batch a multiple of \(exactMicroBatch * worldSize) or another --micro-batch")
    }
    try check(logEvery > 0, "--log-every must be positive")
    try check(evalEvery >= 0, "--eval-every must be non-negative")
    try check(evalBatch > 0, "--eval-batch must be positive")
    if let bucketFloats { try check(bucketFloats > 0, "--bucket-size must be positive, got \(bucketFloats)") }
    try check(zeroStage == 0 || zeroStage == 1, "--zero takes 0 or 1, got \(zeroStage)")
    try check(loaderWorkers >= 1, "--loader-workers must be at least 1")
    try check(mixup >= 0, "--mixup must be non-negative, got \(mixup)")
    try precision.requireTraining()
    try model.task.training.validate(self)
    try check(emaDecay >= 0 && emaDecay < 1, "--ema must be in [0, 1) (0: off; e.g. 0.9999), got \(emaDecay)")
    try check(!emaWarmup || keepsAverage, "--ema-warmup warms up the decay of --ema: pass --ema DECAY too")
    if let keepBest {
      let names = evaluationMetricNames
      try check(names.contains(keepBest), "--keep-best \(keepBest) is not a metric of this task (known: \(names.joined(separator: ", ")))"
        + (!keepsAverage && keepBest.hasSuffix(Self.averageSuffix) ? "; the _ema metrics need --ema DECAY" : ""))
    }
    if let t = threads { try check(t >= 1, "--threads must be at least 1, got \(t)") }
    try check(saveEvery >= 0, "--save-every must be non-negative")
    try check(keep >= 0, "--keep must be non-negative")
    try check(saveEveryMinutes >= 0 && saveEveryMinutes.isFinite, "--save-every-minutes must be non-negative, got \(saveEveryMinutes)")
  }
}

extension TrainConfig {
  /// The suffix of the metrics of the averaged parameters (`val_top1_ema`).
  public static let averageSuffix = "_ema"

  /// The evaluation metrics a run records and --keep-best may name: the task's, and under --ema
  /// the same with `_ema` for the averaged parameters.
  public var evaluationMetricNames: [String] {
    let names = model.task.training.metricNames
    return names + (keepsAverage ? names.map { $0 + Self.averageSuffix } : [])
  }
}

/// Settings a command line left to the library: the task's budget and embedded data, the data's
/// class count, and D_S for fine-tuning at another resolution.
public struct Unspecified: OptionSet, Sendable {
  public let rawValue: Int
  public init(rawValue: Int) { self.rawValue = rawValue }
  public static let steps = Unspecified(rawValue: 1)
  public static let globalBatch = Unspecified(rawValue: 2)
  public static let data = Unspecified(rawValue: 4)
  public static let classes = Unspecified(rawValue: 8)
  public static let tokensMLP = Unspecified(rawValue: 16)
  public static let evalEvery = Unspecified(rawValue: 32)
}

extension TrainConfig {
  /// The settings every run starts from (the `tiny` preset on the embedded data).
  public static let defaults = TrainConfig(model: try! MixerPreset.config(named: "tiny"))

  /// Decides what the user left `unspecified`: the task's default budget and data, the data's
  /// number of classes (the model follows its data), and, fine-tuning from weights trained at a
  /// lower resolution with the same patch, D_S widened by K² as the paper's Appendix C.
  /// Returns what it decided that a user should be told.
  /// `epochs`, when given, sets the steps: epochs × (training images / global batch).
  /// `warmup`, when given, sets the warm-up once the steps are known (see `resolveWarmup`).
  public mutating func resolve(
    _ unspecified: Unspecified, epochs: Int? = nil, warmup: WarmupLength? = nil
  ) throws -> [String] {
    var notes: [String] = []
    let task = model.task.training
    if unspecified.contains(.steps) { steps = task.defaultSteps }
    if unspecified.contains(.globalBatch) { globalBatch = task.defaultGlobalBatch }
    if unspecified.contains(.data) { data = task.defaultData }
    data = DataSpec(data).absolute.text  // the run's record reads the same data from any directory
    // embedded data that cannot be made at the model's size leaves the count alone: building the
    // run's datasets reports that error where it belongs; other data's errors are reported now
    let embedded = DataSpec(data).isEmbedded
    if unspecified.contains(.classes), let counted = embedded ? try? classCount(of: self) : try classCount(of: self) {
      if counted != model.classes {
        notes.append("the data has \(counted) classes: the model predicts \(counted) (pass --classes to choose)")
        model.classes = counted
      }
    }
    if let epochs {
      guard epochs > 0 else { throw ConfigError("--epochs must be positive, got \(epochs)") }
      guard unspecified.contains(.steps) else { throw ConfigError("give --epochs or --steps, not both") }
      var options = dataOptions
      options.trainExamples = trainExamples
      options.validationExamples = 1
      let count = try makeDataset(
        spec: data, split: .train, imageSize: (model.imageHeight, model.imageWidth), seed: seed, options: options).count
      let perEpoch = count / globalBatch
      guard perEpoch > 0 else {
        throw ConfigError("--epochs: the \(count) training images do not fill one batch of \(globalBatch)")
      }
      steps = epochs * perEpoch
      notes.append("--epochs \(epochs): \(steps) steps of \(globalBatch) (\(perEpoch) per epoch of \(count) images)")
    }
    if let note = try resolveWarmup(warmup) { notes.append(note) }
    // about ten evaluations per run, so the accuracy curve is a curve
    if unspecified.contains(.evalEvery) { evalEvery = max(1, steps / 10) }
    if unspecified.contains(.tokensMLP), let initFrom,
      let source = try readInitialParameters(from: URL(fileURLWithPath: initFrom)).config,
      source.patch == model.patch, (source.imageHeight, source.imageWidth) != (model.imageHeight, model.imageWidth)
    {
      // fine-tuning at a higher resolution: D_S grows by K² (paper, Appendix C)
      model.tokensMLP = try highResolutionConfig(
        source, imageHeight: model.imageHeight, imageWidth: model.imageWidth).tokensMLP
    }
    return notes
  }
}

extension TrainConfig {
  /// Throws the data source's own error when it cannot be opened (a missing folder, a wrong kind).
  public func checkDataSource() throws {
    if try DataSpec(data).resolved().kind.isEmbedded { return }  // generated here: nothing to find
    _ = try classCount(of: self)
  }
}

/// The number of classes of the training data `config` names.
func classCount(of config: TrainConfig) throws -> Int {
  var options = config.dataOptions
  options.trainExamples = 1
  options.validationExamples = 1
  options.declaredClasses = nil
  let size = (config.model.imageHeight, config.model.imageWidth)
  return try makeDataset(spec: config.data, split: .train, imageSize: size, seed: config.seed, options: options).numClasses
}

extension TrainConfig {
  /// Settings a config written before they existed lacks (a precision absent is fp32, ...) are
  /// read as today's defaults: `CheckpointConfig.migrating`, the one migration path of manifests
  /// and config files.
  public static var decodingDefaults: TrainConfig? { .defaults }
}

/// The manifest of a training checkpoint.
public typealias TrainingManifest = CheckpointManifest<TrainConfig>

/// The settings that differ between two configs, as "key old → new" (keys flattened with dots).
func configDifferences<T: Encodable>(_ old: T, _ new: T, ignoring: Set<String> = []) -> [String] {
  func flatten(_ value: Any, _ prefix: String, into out: inout [String: String]) {
    if let object = value as? [String: Any] {
      for (key, child) in object { flatten(child, prefix.isEmpty ? key : prefix + "." + key, into: &out) }
    } else if let array = value as? [Any] {
      out[prefix] = array.map { "\($0)" }.joined(separator: ",")
    } else {
      out[prefix] = "\(value)"
    }
  }
  func flat(_ value: T) -> [String: String] {
    guard let data = try? JSONEncoder().encode(value), let object = try? JSONSerialization.jsonObject(with: data) else {
      return [:]
    }
    var out: [String: String] = [:]
    flatten(object, "", into: &out)
    return out
  }
  let a = flat(old), b = flat(new)
  return Set(a.keys).union(b.keys).sorted().compactMap { key in
    guard !ignoring.contains(key), !ignoring.contains(where: { key.hasPrefix($0 + ".") }), a[key] != b[key] else { return nil }
    return "\(key) \(a[key] ?? "(none)") → \(b[key] ?? "(none)")"
  }
}

/// How periodic checkpoints are written (`--save-mode`).
public enum SaveMode: String, Codable, CaseIterable, Sendable {
  /// copied at the step, written in the background while training goes on
  case async
  /// every rank waits until the save is committed
  case sync
}
