// The training side of the paper's head: one-hot (label-smoothed, mixup-mixed) targets, top-1,
// top-5 and loss over images, top-k classes per predicted image.

import Foundation
import MixerData
import MixerKernels
import MixerModel
import MixerTelemetry

/// One class per image.
public struct ClassificationTask: TaskHead {
  public init() {}
  public var task: MixerTask { .classification }
  public var defaultSteps: Int { 600 }
  public var defaultGlobalBatch: Int { 128 }
  public var defaultData: String { "shapes" }
  public var metricNames: [String] { ["val_top1", "val_top5", "val_loss"] }
  public var reportedMetrics: [ReportedMetric] {
    [ReportedMetric("val_top1", name: "top-1"), ReportedMetric("val_top5", name: "top-5")]
  }

  public var batchTargets: BatchTargets { .labels }
  public func accepts(_ dataset: any Dataset) -> Bool { !(dataset is any SegmentationDataset) }
  public func dataRequirement(spec: String) -> String {
    "--data \(spec) holds segmentation masks: pass --task segmentation"
  }
  public func validate(_ config: TrainConfig) throws {}

  public func setTargets(acts: Activations, batch: Batch, offset: Int, classes: Int, smoothing: Float) {
    let out = acts.head(ClassificationBuffers.self)
    let microBatch = acts.batch
    batch.labels.withUnsafeBufferPointer { labels in
      if let mix = batch.mixup {
        mix.partnerLabels.withUnsafeBufferPointer { partners in
          mixupTargets(
            targets: out.targets, labels: labels.baseAddress! + offset,
            partnerLabels: partners.baseAddress! + offset, weight: mix.weight, batch: microBatch,
            classes: classes, smoothing: smoothing)
        }
      } else {
        smoothedOneHot(
          targets: out.targets, labels: labels.baseAddress! + offset, batch: microBatch,
          classes: classes, smoothing: smoothing)
      }
    }
  }

  public func syntheticBatch(_ config: MixerConfig, size: Int) -> Batch {
    let labels = (0..<size).map { Int32($0 % config.classes) }
    return Batch(indices: Array(0..<size), pixels: syntheticImages(config, size: size), labels: labels)
  }

  public func relabelled(_ dataset: any Dataset, permutation: [Int], classNames: [String]) -> (any Dataset)? {
    RelabelledDataset(base: dataset, permutation: permutation, classNames: classNames)
  }

  public func fillEvaluationBatch(_ batch: inout Batch, dataset: any Dataset, indices: [Int]) throws {
    try batch.fill(dataset: dataset, indices: indices)
  }

  // totals: top-1 hits, top-5 hits, summed loss, images, then the confusion matrix
  // [true, predicted] of images
  public func evaluationTotalsCount(_ config: MixerConfig) -> Int { 4 + config.classes * config.classes }

  public func accumulate(_ totals: inout [Double], acts: Activations, batch: Batch, loss: Double, config: MixerConfig) {
    let out = acts.head(ClassificationBuffers.self)
    totals[2] += loss
    for e in 0..<acts.batch {
      let higher = rank(of: Int(batch.labels[e]), in: out.logits + e * config.classes, classes: config.classes)
      if higher == 0 { totals[0] += 1 }
      if higher < 5 { totals[1] += 1 }
      let k = config.classes
      totals[4 + Int(batch.labels[e]) * k + predictedClass(out.logits + e * k, classes: k)] += 1
    }
    totals[3] += Double(acts.batch)
  }

  public func evaluationResult(_ totals: [Double], config: MixerConfig) -> EvaluationResult {
    let n = max(totals[3], 1), k = config.classes
    var result = EvaluationResult(
      task: .classification, count: Int(totals[3]), top1: totals[0] / n, top5: totals[1] / n, loss: totals[2] / n)
    let confusion = Array(totals[4...])
    result.confusion = confusion
    result.classAccuracy = (0..<k).map { c in
      let labelled = confusion[(c * k)..<((c + 1) * k)].reduce(0, +)
      return labelled > 0 ? confusion[c * k + c] / labelled : nil
    }
    return result
  }

  public func headline(_ result: EvaluationResult) -> String { String(format: "val top-1 %.2f%%", result.top1 * 100) }

  public func evaluationRecord(_ result: EvaluationResult, classNames: [String]) -> (values: [(String, Double)], lines: [String]) {
    var values: [(String, Double)] = [
      ("val_top1", result.top1), ("val_top5", result.top5), ("val_loss", result.loss),
      ("val_count", Double(result.count)),
    ]
    let perClass = result.classAccuracy ?? []
    for (k, accuracy) in perClass.enumerated() {
      if let accuracy { values.append(("val_accuracy/\(className(k, classNames))", accuracy)) }
    }
    let line = String(
      format: "top-1 %.2f%%  top-5 %.2f%%  loss %.4f", result.top1 * 100, result.top5 * 100, result.loss)
    let accuracyLine = "accuracy per class (%): " + perClass.enumerated().map { k, accuracy in
      accuracy.map { String(format: "%@ %.1f", className(k, classNames), $0 * 100) } ?? "\(className(k, classNames)) -"
    }.joined(separator: ", ")
    return (values, perClass.isEmpty ? [line] : [line, accuracyLine])
  }

  struct JSONForm: Encodable {
    var step: Int, count: Int, top1: Double, top5: Double, loss: Double
    var classAccuracy: [Double?]
    /// images of true class i predicted as class j, `[K][K]`
    var confusion: [[Int]]
    enum CodingKeys: String, CodingKey {
      case step, count, top1, top5, loss, confusion
      case classAccuracy = "class_accuracy"
    }
  }
  public func evaluationJSON(_ result: EvaluationResult, step: Int) -> any Encodable {
    let confusion = result.confusion ?? []
    let k = Int(Double(confusion.count).squareRoot())
    return JSONForm(
      step: step, count: result.count, top1: result.top1, top5: result.top5, loss: result.loss,
      classAccuracy: result.classAccuracy ?? [],
      confusion: (0..<k).map { i in (0..<k).map { Int(confusion[i * k + $0]) } })
  }

  public func preparePrediction(_ config: MixerConfig, options: PredictionOptions) throws {}

  public func predictionBox(_ preprocessing: ImagePreprocessing, width: Int, height: Int) -> CropBox {
    preprocessing.centreCrop(sourceWidth: width, sourceHeight: height)
  }

  public func prediction(
    acts: Activations, index i: Int, file: String, imageSize: (width: Int, height: Int),
    config: MixerConfig, classNames: [String], context: PredictionContext
  ) throws -> Prediction {
    let out = acts.head(ClassificationBuffers.self)
    let k = min(max(context.options.topK, 1), config.classes)
    let logits = (0..<config.classes).map { Double(out.logits[i * config.classes + $0]) }
    let probabilities = config.loss.probabilities(logits)  // the loss the model trained with
    let order = (0..<config.classes).sorted { probabilities[$0] > probabilities[$1] }.prefix(k)
    return Prediction(
      file: file, classes: order.map { className($0, classNames) }, probabilities: order.map { probabilities[$0] })
  }
}

/// Deterministic images in [-1, 1) for benchmarks, `[size, H, W, 3]`.
func syntheticImages(_ config: MixerConfig, size: Int) -> [Float] {
  var rng = CounterRNG(seed: 2)
  return (0..<(size * config.imageHeight * config.imageWidth * 3)).map { _ in rng.uniform() * 2 - 1 }
}

/// How many classes score strictly higher than `label` (ties broken towards the lower index), at
/// one row of K logits: 0 means a top-1 hit, < 5 a top-5 hit.
@inline(__always)
func rank(of label: Int, in logits: UnsafePointer<Float>, classes: Int) -> Int {
  let target = logits[label]
  var higher = 0
  for k in 0..<classes where logits[k] > target || (logits[k] == target && k < label) {
    higher += 1
  }
  return higher
}

/// The class with the highest logit, ties to the lower class (as `rank` counts them).
@inline(__always)
func predictedClass(_ logits: UnsafePointer<Float>, classes: Int) -> Int {
  var best = 0
  for j in 1..<classes where logits[j] > logits[best] { best = j }
  return best
}
