// The training side of the per-pixel head: masks as targets, per-pixel top-1/top-5 and the K×K
// confusion matrix of labelled pixels (summed over ranks, then mIoU and per-class IoU), and
// predicted masks written as 8-bit PNGs of class indices at each image's own size.

import Foundation
import MixerData
import MixerModel
import MixerTelemetry

/// One class per pixel.
public struct SegmentationTask: TaskHead {
  public init() {}
  public var task: MixerTask { .segmentation }
  // the embedded runs' budgets: about 77k images either way; segmentation learns more from more,
  // smaller steps (measured at 3-4 minutes: batch 128 × 600 → 39% mIoU, 64 × 1200 → 52%,
  // 32 × 2400 → 65%)
  public var defaultSteps: Int { 2400 }
  public var defaultGlobalBatch: Int { 32 }
  public var defaultData: String { "segshapes" }
  public var metricNames: [String] { ["val_miou", "val_pixel_accuracy", "val_loss"] }
  public var reportedMetrics: [ReportedMetric] {
    [ReportedMetric("val_miou", name: "mIoU"), ReportedMetric("val_pixel_accuracy", name: "pixel accuracy")]
  }

  public var batchTargets: BatchTargets { .masks }
  public func accepts(_ dataset: any Dataset) -> Bool { dataset is any SegmentationDataset }
  public func dataRequirement(spec: String) -> String {
    "--task segmentation needs data with a class per pixel: --data segshapes (embedded) or segfolder:PATH, not \(spec)"
  }
  public func validate(_ config: TrainConfig) throws {
    if config.mixup != 0 {
      throw ConfigError("--mixup does not apply to segmentation (masks cannot be mixed)")
    }
  }

  public func setTargets(acts: Activations, batch: Batch, offset: Int, classes: Int, smoothing: Float) {
    let out = acts.head(SegmentationBuffers.self)
    let maskPixels = batch.masks.count / max(batch.size, 1)
    batch.masks.withUnsafeBufferPointer { masks in
      out.masks.update(from: masks.baseAddress! + offset * maskPixels, count: acts.batch * maskPixels)
    }
    out.labelSmoothing = smoothing
  }

  public func syntheticBatch(_ config: MixerConfig, size: Int) -> Batch {
    var batch = Batch(
      indices: Array(0..<size), pixels: syntheticImages(config, size: size),
      labels: [Int32](repeating: 0, count: size))
    // a class per pixel: horizontal bands four pixels high
    batch.masks = (0..<(size * config.imageHeight * config.imageWidth)).map {
      Int32(($0 / (config.imageWidth * 4)) % config.classes)
    }
    return batch
  }

  /// nil: a mask's pixels are class indices of the data's own order (masks cannot be mapped)
  public func relabelled(_ dataset: any Dataset, permutation: [Int], classNames: [String]) -> (any Dataset)? { nil }

  public func fillEvaluationBatch(_ batch: inout Batch, dataset: any Dataset, indices: [Int]) throws {
    guard accepts(dataset) else {
      throw TrainError("a segmentation model needs data with masks (segshapes, segfolder:PATH)")
    }
    try batch.fill(segmentation: dataset, indices: indices, epoch: 0)
  }

  // totals: top-1 hits, top-5 hits, summed loss, images, labelled pixels, then the confusion
  // matrix [true, predicted]
  public func evaluationTotalsCount(_ config: MixerConfig) -> Int { 5 + config.classes * config.classes }

  public func accumulate(_ totals: inout [Double], acts: Activations, batch: Batch, loss: Double, config: MixerConfig) {
    let out = acts.head(SegmentationBuffers.self)
    let k = config.classes, n = config.imageHeight * config.imageWidth
    totals[2] += loss
    totals[3] += Double(acts.batch)
    for p in 0..<(acts.batch * n) {
      let label = Int(out.masks[p])
      guard label >= 0 else { continue }
      let logits = out.pixelLogits + p * k
      let higher = rank(of: label, in: logits, classes: k)
      if higher == 0 { totals[0] += 1 }
      if higher < 5 { totals[1] += 1 }
      totals[4] += 1
      totals[5 + label * k + predictedClass(logits, classes: k)] += 1
    }
  }

  public func evaluationResult(_ totals: [Double], config: MixerConfig) -> EvaluationResult {
    let pixels = max(totals[4], 1)
    var result = EvaluationResult(
      task: .segmentation, count: Int(totals[3]), top1: totals[0] / pixels, top5: totals[1] / pixels,
      loss: totals[2] / max(totals[3], 1))
    let iou = intersectionOverUnion(confusion: Array(totals[5...]), classes: config.classes)
    result.meanIoU = iou.mean
    result.classIoU = iou.perClass
    result.pixels = Int(totals[4])
    return result
  }

  public func headline(_ result: EvaluationResult) -> String {
    String(format: "val mIoU %.2f%%", (result.meanIoU ?? .nan) * 100)
  }

  public func evaluationRecord(_ result: EvaluationResult, classNames: [String]) -> (values: [(String, Double)], lines: [String]) {
    let meanIoU = result.meanIoU ?? .nan, classIoU = result.classIoU ?? []
    var values: [(String, Double)] = [
      ("val_miou", meanIoU), ("val_pixel_accuracy", result.top1), ("val_loss", result.loss),
      ("val_count", Double(result.count)),
    ]
    for (k, iou) in classIoU.enumerated() {
      if let iou { values.append(("val_iou/\(className(k, classNames))", iou)) }
    }
    let perClass = classIoU.enumerated().map { k, iou in
      iou.map { String(format: "%@ %.1f", className(k, classNames), $0 * 100) } ?? "\(className(k, classNames)) -"
    }
    let line = String(
      format: "mIoU %.2f%%  pixel accuracy %.2f%%  loss %.4f", meanIoU * 100, result.top1 * 100, result.loss)
    return (values, [line, "IoU per class (%): " + perClass.joined(separator: ", ")])
  }

  struct JSONForm: Encodable {
    var step: Int, count: Int, pixels: Int, miou: Double, pixelAccuracy: Double, classIoU: [Double?], loss: Double
    enum CodingKeys: String, CodingKey {
      case step, count, pixels, miou, loss
      case pixelAccuracy = "pixel_accuracy"
      case classIoU = "class_iou"
    }
  }
  public func evaluationJSON(_ result: EvaluationResult, step: Int) -> any Encodable {
    JSONForm(
      step: step, count: result.count, pixels: result.pixels ?? 0, miou: result.meanIoU ?? .nan,
      pixelAccuracy: result.top1, classIoU: result.classIoU ?? [], loss: result.loss)
  }

  public func preparePrediction(_ config: MixerConfig, options: PredictionOptions) throws {
    guard let maskDirectory = options.maskDirectory else {
      throw TrainError("a segmentation checkpoint writes masks: pass --mask-dir DIR")
    }
    guard config.classes <= 255 else {
      throw TrainError("the model has \(config.classes) classes; predicted masks are 8-bit PNGs (up to 255 classes)")
    }
    try FileManager.default.createDirectory(atPath: maskDirectory, withIntermediateDirectories: true)
  }

  /// The whole image, as evaluation resizes it.
  public func predictionBox(_ preprocessing: ImagePreprocessing, width: Int, height: Int) -> CropBox {
    CropBox(x: 0, y: 0, width: Double(width), height: Double(height))
  }

  public func prediction(
    acts: Activations, index i: Int, file: String, imageSize: (width: Int, height: Int),
    config: MixerConfig, classNames: [String], context: PredictionContext
  ) throws -> Prediction {
    let maskDirectory = context.options.maskDirectory ?? "."
    let (mask, shares) = predictedMask(acts: acts, image: i, config: config, width: imageSize.width, height: imageSize.height)
    var name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
    if context.usedNames.contains(name) {
      var n = 2
      while context.usedNames.contains("\(name)-\(n)") { n += 1 }
      name = "\(name)-\(n)"
    }
    context.usedNames.insert(name)
    let path = (maskDirectory as NSString).appendingPathComponent(name + ".png")
    let png = try encodePNG(pixels: mask, width: imageSize.width, height: imageSize.height, channels: 1)
    guard FileManager.default.createFile(atPath: path, contents: Data(png)) else {
      throw TrainError("\(path): cannot write the mask")
    }
    let order = (0..<config.classes).filter { shares[$0] > 0 }.sorted { shares[$0] > shares[$1] }
    return Prediction(
      file: file, classes: order.map { className($0, classNames) }, probabilities: order.map { shares[$0] }, mask: path)
  }
}

/// IoU per class from a confusion matrix `confusion[true · K + predicted]` of pixel counts:
/// IoU_k = C_kk / (Σ_j C_kj + Σ_i C_ik − C_kk), nil when class k is neither labelled nor
/// predicted; the mean is over the classes with an IoU (0 when there is none).
public func intersectionOverUnion(confusion: [Double], classes: Int) -> (mean: Double, perClass: [Double?]) {
  precondition(confusion.count == classes * classes)
  var perClass: [Double?] = []
  for k in 0..<classes {
    var labelled = 0.0, predicted = 0.0
    for j in 0..<classes {
      labelled += confusion[k * classes + j]
      predicted += confusion[j * classes + k]
    }
    let union = labelled + predicted - confusion[k * classes + k]
    perClass.append(union > 0 ? confusion[k * classes + k] / union : nil)
  }
  let present = perClass.compactMap { $0 }
  return (present.isEmpty ? 0 : present.reduce(0, +) / Double(present.count), perClass)
}

/// Image `image`'s per-pixel argmax (ties to the lower class) at the model's resolution, resized
/// to `width × height` by nearest neighbour (output pixel x reads model pixel
/// ⌊(x + ½)·W_model / width⌋), and each class's share of those pixels.
func predictedMask(
  acts: Activations, image: Int, config: MixerConfig, width: Int, height: Int
) -> (mask: [UInt8], shares: [Double]) {
  let out = acts.head(SegmentationBuffers.self)
  let k = config.classes, h = config.imageHeight, w = config.imageWidth
  var small = [UInt8](repeating: 0, count: h * w)
  for p in 0..<(h * w) {
    small[p] = UInt8(predictedClass(out.pixelLogits + (image * h * w + p) * k, classes: k))
  }
  var mask = [UInt8](repeating: 0, count: width * height)
  var counts = [Double](repeating: 0, count: k)
  let columns = (0..<width).map { min(w - 1, Int((Double($0) + 0.5) * Double(w) / Double(width))) }
  for y in 0..<height {
    let row = min(h - 1, Int((Double(y) + 0.5) * Double(h) / Double(height)))
    for x in 0..<width {
      let label = small[row * w + columns[x]]
      mask[y * width + x] = label
      counts[Int(label)] += 1
    }
  }
  return (mask, counts.map { $0 / Double(width * height) })
}
