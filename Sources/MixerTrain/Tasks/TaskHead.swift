// The training side of a head (the model side is MixerModel's `Head`): what the targets of a
// micro-batch are, which data the task takes, how evaluation accumulates its totals (reduced
// over ranks with one all-reduce) and turns them into metrics, what predict writes, and the
// task's default budget. Trainer, step, evaluation, predict and bench call these; none of them
// asks which task it runs.

import Foundation
import MixerData
import MixerModel
import MixerTelemetry

/// The training, evaluation and prediction side of a task.
public protocol TaskHead: Sendable {
  var task: MixerTask { get }

  /// The budget of the embedded default run of this task.
  var defaultSteps: Int { get }
  var defaultGlobalBatch: Int { get }
  /// The embedded dataset of this task (`--data` when none is given).
  var defaultData: String { get }

  /// The evaluation metrics --keep-best may name (metrics.jsonl keys).
  var metricNames: [String] { get }
  /// The evaluation accuracies a run report draws, with their names, the first ranking the
  /// evaluations (recorded in config.json).
  var reportedMetrics: [ReportedMetric] { get }

  /// The targets a training batch of this task carries (the loader fills them).
  var batchTargets: BatchTargets { get }
  /// True when `dataset` holds the targets this task learns from.
  func accepts(_ dataset: any Dataset) -> Bool
  /// A one-line explanation of what data the task needs, for an error naming `spec`.
  func dataRequirement(spec: String) -> String
  /// Throws for settings this task cannot train with.
  func validate(_ config: TrainConfig) throws

  /// Writes the targets of micro-batch `[offset, offset + acts.batch)` of `batch` into the
  /// head's buffers (`smoothing` = label smoothing).
  func setTargets(acts: Activations, batch: Batch, offset: Int, classes: Int, smoothing: Float)
  /// Synthetic inputs and targets of `size` images for benchmarks (deterministic).
  func syntheticBatch(_ config: MixerConfig, size: Int) -> Batch

  /// `dataset` (this task's data) with its classes renumbered, `label → permutation[label]` and
  /// named `classNames` (a checkpoint's classes in another order), or nil when its targets cannot
  /// be renumbered.
  func relabelled(_ dataset: any Dataset, permutation: [Int], classNames: [String]) -> (any Dataset)?
  /// Refills `batch` with samples `indices` of `dataset` for evaluation.
  func fillEvaluationBatch(_ batch: inout Batch, dataset: any Dataset, indices: [Int]) throws
  /// Length of the evaluation totals vector.
  func evaluationTotalsCount(_ config: MixerConfig) -> Int
  /// Adds one evaluated batch (after forward, targets and `loss` = the summed loss) to `totals`.
  func accumulate(_ totals: inout [Double], acts: Activations, batch: Batch, loss: Double, config: MixerConfig)
  /// The metrics of the totals summed over every rank.
  func evaluationResult(_ totals: [Double], config: MixerConfig) -> EvaluationResult
  /// metrics.jsonl values and console lines of one evaluation: the first line is the summary
  /// ("top-1 …  top-5 …  loss …"), the caller adds where and on how many images.
  func evaluationRecord(_ result: EvaluationResult, classNames: [String]) -> (values: [(String, Double)], lines: [String])
  /// The main metric in a few words ("val top-1 98.30%").
  func headline(_ result: EvaluationResult) -> String
  /// The evaluation as one JSON object (`eval --json`).
  func evaluationJSON(_ result: EvaluationResult, step: Int) -> any Encodable

  /// Checks and prepares a prediction run (e.g. the mask folder).
  func preparePrediction(_ config: MixerConfig, options: PredictionOptions) throws
  /// The part of a decoded image the model sees.
  func predictionBox(_ preprocessing: ImagePreprocessing, width: Int, height: Int) -> CropBox
  /// The predictions of image `index` of the forwarded chunk.
  func prediction(
    acts: Activations, index: Int, file: String, imageSize: (width: Int, height: Int),
    config: MixerConfig, classNames: [String], context: PredictionContext
  ) throws -> Prediction
}

extension MixerTask {
  /// The training side of this task (the one registration point of MixerTrain).
  public var training: any TaskHead {
    switch self {
    case .classification: return ClassificationTask()
    case .segmentation: return SegmentationTask()
    }
  }

  /// The task whose data `dataset` is (the first that accepts it).
  public static func learning(from dataset: any Dataset) -> MixerTask {
    allCases.first { $0.training.accepts(dataset) } ?? .classification
  }
}

/// What `predict` was asked for.
public struct PredictionOptions: Sendable {
  /// classes to report per image (classification)
  public var topK: Int = 5
  /// where predicted masks go (segmentation)
  public var maskDirectory: String?
  public init(topK: Int = 5, maskDirectory: String? = nil) {
    self.topK = topK
    self.maskDirectory = maskDirectory
  }
}

/// State shared by the predictions of one `predict` run.
public final class PredictionContext {
  public let options: PredictionOptions
  /// output names already used (masks of images with the same name get -2, -3, ...)
  var usedNames: Set<String> = []
  init(options: PredictionOptions) { self.options = options }
}

/// Class k's name, or "class k" when the names are unknown.
func className(_ k: Int, _ names: [String]) -> String {
  names.indices.contains(k) ? names[k] : "class \(k)"
}
