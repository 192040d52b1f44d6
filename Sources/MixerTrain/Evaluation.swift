// Evaluation: the model's task metrics on a dataset, sharded over ranks so that every sample is
// counted exactly once (ranges differ by at most one sample), totals summed with one all-reduce.
// What the totals are is the task's (Tasks/): top-1, top-5 and loss over images for
// classification; for segmentation also the K×K confusion matrix of labelled pixels, from which
// the mIoU is computed once every rank's counts are summed.

import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerCheckpoint
import Foundation

/// Exact totals over a dataset.
public struct EvaluationResult: Equatable {
  /// the task evaluated (which metrics below are set)
  public var task: MixerTask
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

  public init(task: MixerTask = .classification, count: Int, top1: Double, top5: Double, loss: Double) {
    self.task = task
    self.count = count
    self.top1 = top1
    self.top5 = top5
    self.loss = loss
  }

  /// The task's main metric, e.g. "val top-1 98.30%" or "val mIoU 64.79%".
  public var headline: String {
    if let meanIoU { return String(format: "val mIoU %.2f%%", meanIoU * 100) }
    return String(format: "val top-1 %.2f%%", top1 * 100)
  }
}

/// Evaluates `model` on all of `dataset`, this rank taking its range; every rank gets the totals.
/// The model's task decides the targets and what is counted (`TaskHead`).
public func evaluate(
  model: MixerModel, dataset: any Dataset, comm: Communicator, batchSize: Int
) throws -> EvaluationResult {
  let config = model.config
  let task = config.task.training
  let range = EvaluationSharding.range(count: dataset.count, worldSize: comm.size, rank: comm.rank)
  var arenas: [Int: Activations] = [:]
  var totals = [Double](repeating: 0, count: task.evaluationTotalsCount(config))
  var batch = Batch()
  for chunk in EvaluationSharding.batches(of: range, batchSize: batchSize) {
    try task.fillEvaluationBatch(&batch, dataset: dataset, indices: Array(chunk))
    let b = chunk.count
    let acts = arenas[b] ?? Activations(config: config, batch: b)
    arenas[b] = acts
    batch.pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
    task.setTargets(acts: acts, batch: batch, offset: 0, classes: config.classes, smoothing: 0)
    let loss = model.loss(acts: acts)
    task.accumulate(&totals, acts: acts, batch: batch, loss: loss, config: config)
  }
  try comm.allReduceSum(&totals)
  return task.evaluationResult(totals, config: config)
}

/// A model restored from a checkpoint folder (or the newest valid one in a checkpoint directory).
public func loadModel(checkpoint path: String) throws -> (MixerModel, TrainingManifest, URL) {
  let url = URL(fileURLWithPath: path)
  let folder: URL
  if FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path) {
    folder = url
  } else if let newest = try selectCheckpoint(resume: "auto", directory: url, log: { _ in }) {
    folder = newest
  } else {
    throw CheckpointError("\(path): no valid checkpoint (a step-N folder with manifest.json)")
  }
  let manifest = try verifyCheckpoint(folder, config: TrainConfig.self)
  let model = try MixerModel(config: manifest.config.model, seed: 0)
  let params = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("params.safetensors"))
  try CheckpointStore<TrainConfig>.checkShapes(params, model: model, source: folder.path)
  for view in model.table.views { model.parameters.copy(from: try params.floats(view.name), at: view.offset) }
  return (model, manifest, folder)
}

/// Evaluates a checkpoint on the validation split of its own data source (or `data`); every
/// rank gets the exact totals.
public func evaluateCheckpoint(
  path: String, data: String?, comm: Communicator, batchSize: Int
) throws -> (EvaluationResult, TrainingManifest) {
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
