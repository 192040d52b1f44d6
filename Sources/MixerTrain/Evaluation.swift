// Evaluation: top-1, top-5 and mean loss of the model on a dataset, sharded over ranks so that
// every sample is counted exactly once (ranges differ by at most one sample), totals summed with
// one all-reduce. For segmentation the totals also hold the K×K confusion matrix of labelled
// pixels, from which the mIoU is computed once every rank's counts are summed; top-1 and top-5
// are then over labelled pixels (top-1 is the pixel accuracy).

import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerCheckpoint
import Foundation

/// Exact totals over a dataset.
public struct EvaluationResult: Equatable {
  /// images evaluated
  public var count: Int
  /// classification: share of images; segmentation: share of labelled pixels
  public var top1: Double
  public var top5: Double
  /// mean over images of the per-image loss (segmentation: the mean over its labelled pixels)
  public var loss: Double
  /// segmentation: the mean over classes of TP / (TP + FP + FN), over the classes that occur in
  /// the labels or the predictions (nil for classification)
  public var meanIoU: Double?
  /// segmentation: each class's IoU, nil for a class neither labelled nor predicted anywhere
  public var classIoU: [Double?]?
  /// segmentation: labelled pixels evaluated
  public var pixels: Int?

  public init(count: Int, top1: Double, top5: Double, loss: Double) {
    self.count = count
    self.top1 = top1
    self.top5 = top5
    self.loss = loss
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

/// Evaluates `model` on all of `dataset`, this rank taking its range; every rank gets the totals.
public func evaluate(
  model: MixerModel, dataset: any Dataset, comm: Communicator, batchSize: Int
) throws -> EvaluationResult {
  if model.config.isSegmentation {
    return try evaluateSegmentation(model: model, dataset: dataset, comm: comm, batchSize: batchSize)
  }
  let config = model.config
  let range = EvaluationSharding.range(count: dataset.count, worldSize: comm.size, rank: comm.rank)
  var arenas: [Int: Activations] = [:]
  var totals = [Double](repeating: 0, count: 4)  // top1, top5, loss, count
  var batch = Batch()
  for chunk in EvaluationSharding.batches(of: range, batchSize: batchSize) {
    try batch.fill(dataset: dataset, indices: Array(chunk))
    let b = chunk.count
    let acts = arenas[b] ?? Activations(config: config, batch: b)
    arenas[b] = acts
    batch.pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
    batch.labels.withUnsafeBufferPointer {
      smoothedOneHot(targets: acts.targets, labels: $0.baseAddress!, batch: b, classes: config.classes, smoothing: 0)
    }
    totals[2] += model.loss(acts: acts)
    for e in 0..<b {
      let higher = rank(of: Int(batch.labels[e]), in: acts.logits + e * config.classes, classes: config.classes)
      if higher == 0 { totals[0] += 1 }
      if higher < 5 { totals[1] += 1 }
    }
    totals[3] += Double(b)
  }
  try comm.allReduceSum(&totals)
  let n = max(totals[3], 1)
  return EvaluationResult(count: Int(totals[3]), top1: totals[0] / n, top5: totals[1] / n, loss: totals[2] / n)
}

/// Segmentation evaluation: per-pixel top-1/top-5 and the confusion matrix over labelled pixels,
/// the mean per-image loss, and the mIoU of the summed confusion matrix.
func evaluateSegmentation(
  model: MixerModel, dataset: any Dataset, comm: Communicator, batchSize: Int
) throws -> EvaluationResult {
  let config = model.config
  guard let dataset = dataset as? any SegmentationDataset else {
    throw TrainError("a segmentation model needs data with masks (segshapes, segfolder:PATH)")
  }
  let k = config.classes, n = config.imageHeight * config.imageWidth
  let range = EvaluationSharding.range(count: dataset.count, worldSize: comm.size, rank: comm.rank)
  var arenas: [Int: Activations] = [:]
  // top1, top5, loss, images, labelled pixels, then the confusion matrix [true, predicted]
  var totals = [Double](repeating: 0, count: 5 + k * k)
  var batch = Batch()
  for chunk in EvaluationSharding.batches(of: range, batchSize: batchSize) {
    try batch.fill(segmentation: dataset, indices: Array(chunk), epoch: 0)
    let b = chunk.count
    let acts = arenas[b] ?? Activations(config: config, batch: b)
    arenas[b] = acts
    batch.pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
    batch.masks.withUnsafeBufferPointer { acts.masks.update(from: $0.baseAddress!, count: b * n) }
    totals[2] += model.loss(acts: acts)
    totals[3] += Double(b)
    for p in 0..<(b * n) {
      let label = Int(acts.masks[p])
      guard label >= 0 else { continue }
      let logits = acts.pixelLogits + p * k
      let higher = rank(of: label, in: logits, classes: k)
      if higher == 0 { totals[0] += 1 }
      if higher < 5 { totals[1] += 1 }
      totals[4] += 1
      totals[5 + label * k + predictedClass(logits, classes: k)] += 1
    }
  }
  try comm.allReduceSum(&totals)
  let pixels = max(totals[4], 1)
  var result = EvaluationResult(
    count: Int(totals[3]), top1: totals[0] / pixels, top5: totals[1] / pixels,
    loss: totals[2] / max(totals[3], 1))
  let iou = intersectionOverUnion(confusion: Array(totals[5...]), classes: k)
  result.meanIoU = iou.mean
  result.classIoU = iou.perClass
  result.pixels = Int(totals[4])
  return result
}

/// A model restored from a checkpoint folder (or the newest valid one in a checkpoint directory).
public func loadModel(checkpoint path: String) throws -> (MixerModel, CheckpointManifest, URL) {
  let url = URL(fileURLWithPath: path)
  let folder: URL
  if FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path) {
    folder = url
  } else if let newest = try selectCheckpoint(resume: "auto", directory: url, log: { _ in }) {
    folder = newest
  } else {
    throw CheckpointError("\(path): no valid checkpoint (a step-N folder with manifest.json)")
  }
  let manifest = try verifyCheckpoint(folder)
  let model = try MixerModel(config: manifest.config.model, seed: 0)
  let params = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("params.safetensors"))
  try CheckpointStore.checkShapes(params, model: model, source: folder.path)
  for view in model.table.views { model.parameters.copy(from: try params.floats(view.name), at: view.offset) }
  return (model, manifest, folder)
}

/// Evaluates a checkpoint on the validation split of its own data source (or `data`); every
/// rank gets the exact totals.
public func evaluateCheckpoint(
  path: String, data: String?, comm: Communicator, batchSize: Int
) throws -> (EvaluationResult, CheckpointManifest) {
  let (model, manifest, _) = try loadModel(checkpoint: path)
  var config = manifest.config
  if let data { config.data = data }
  let (_, validation) = try makeDatasets(config)
  if validation.numClasses != model.config.classes {
    throw TrainError(
      "checkpoint has \(model.config.classes) classes, dataset has \(validation.numClasses): evaluate on a dataset with the checkpoint's classes, or fine-tune with --init-from and --classes \(validation.numClasses)")
  }
  if validation.height != model.config.imageHeight || validation.width != model.config.imageWidth {
    throw TrainError("the data is \(validation.height)x\(validation.width) px, the checkpoint's model expects \(model.config.imageHeight)x\(model.config.imageWidth)")
  }
  return (try evaluate(model: model, dataset: validation, comm: comm, batchSize: batchSize), manifest)
}
