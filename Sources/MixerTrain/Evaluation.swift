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
  /// classification: each class's accuracy (recall), nil for a class with no image
  public var classAccuracy: [Double?]?
  /// classification: images of true class i predicted as class j, at `[i · K + j]`
  public var confusion: [Double]?

  public init(task: MixerTask = .classification, count: Int, top1: Double, top5: Double, loss: Double) {
    self.task = task
    self.count = count
    self.top1 = top1
    self.top5 = top5
    self.loss = loss
  }

  /// The task's main metric, e.g. "val top-1 98.30%" or "val mIoU 64.79%".
  public var headline: String { task.training.headline(self) }
}

/// Evaluates `model` on all of `dataset`, this rank taking its range; every rank gets the totals.
/// The model's task decides the targets and what is counted (`TaskHead`).
/// `inference` runs the forward when given (a bf16/int8 plan; InferenceModel.swift).
public func evaluate(
  model: MixerModel, dataset: any Dataset, comm: Communicator, batchSize: Int, inference: InferenceModel? = nil
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
    batch.pixels.withUnsafeBufferPointer { pixels in
      if let inference { inference.forward(images: pixels.baseAddress!, acts: acts) } else { model.forward(images: pixels.baseAddress!, acts: acts) }
    }
    task.setTargets(acts: acts, batch: batch, offset: 0, classes: config.classes, smoothing: 0)
    let loss = model.loss(acts: acts)
    task.accumulate(&totals, acts: acts, batch: batch, loss: loss, config: config)
  }
  try comm.allReduceSum(&totals)
  return task.evaluationResult(totals, config: config)
}

/// A model read back from what a run or `import` left.
public struct LoadedModel {
  public let model: MixerModel
  /// the settings it was trained with; for an imported weights folder the model alone (no data,
  /// no class names)
  public let config: TrainConfig
  /// the checkpoint's step (nil for imported weights)
  public let step: Int?
  /// the folder the parameters came from
  public let folder: URL
}

/// Reads a model from any of: a checkpoint folder (`step-N`), a checkpoint directory or a run
/// folder (the newest valid checkpoint, in `checkpoints/` for a run folder), or a weights folder
/// made by `mixer-dist import` (`model.json`). Every checksum is verified.
/// `weights: .ema`: a checkpoint's moving average of the parameters (`train --ema`) instead of its
/// parameters; a folder without one is an error that says so.
public func loadModel(_ path: String, weights: WeightsChoice = .raw) throws -> LoadedModel {
  let url = URL(fileURLWithPath: path)
  let fileManager = FileManager.default
  try refuseQuantizedCheckpoint(url)
  if fileManager.fileExists(atPath: url.appendingPathComponent("model.json").path) {
    let (config, parameters, _) = try readParameterFolder(url, weights: weights)
    let model = try MixerModel(config: config, seed: 0)
    try loadParameters(parameters, into: model, source: path)
    var train = TrainConfig(model: config)
    train.data = ""
    return LoadedModel(model: model, config: train, step: nil, folder: url)
  }
  // inference reads the manifest and the parameters only: a missing or damaged optimizer file is no obstacle
  let folder: URL
  var skipped: [String] = []
  let note: (String) -> Void = { skipped.append(String($0.dropFirst($0.hasPrefix("mixer-dist: ") ? 12 : 0))) }
  if fileManager.fileExists(atPath: url.appendingPathComponent("manifest.json").path) {
    folder = url
  } else if let newest = try selectCheckpoint(resume: "auto", directory: url, parametersOnly: true, log: note)
    ?? selectCheckpoint(resume: "auto", directory: url.appendingPathComponent("checkpoints"), parametersOnly: true, log: note)
  {
    folder = newest
  } else if let newest = skipped.first {
    throw CheckpointError("\(path): no checkpoint here can be read: \(newest)")
  } else {
    throw CheckpointError(
      "\(path): no valid checkpoint here (a step-N folder with manifest.json, a checkpoint or run folder holding "
        + "them, or a weights folder with model.json)")
  }
  let manifest = try verifyCheckpoint(folder, config: TrainConfig.self, parametersOnly: true)
  let model = try MixerModel(config: manifest.config.model, seed: 0)
  switch weights {
  case .raw:
    let params = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("params.safetensors"))
    try CheckpointStore<TrainConfig>.checkShapes(params, model: model, source: folder.path)
    for view in model.table.views { model.parameters.copy(from: try params.floats(view.name), at: view.offset) }
  case .ema:
    model.parameters.copy(from: try readAveragedParameters(folder, manifest: manifest))
  }
  return LoadedModel(model: model, config: manifest.config, step: manifest.step, folder: folder)
}

/// How the data's classes relate to the model's: the same list, the same set in another order
/// (mapped by name), or other classes (an error unless the caller means it).
public enum ClassMatch: Equatable {
  case same
  /// data label i is model class `permutation[i]`
  case reordered([Int])
  case different(String)

  /// Compares by name; an empty list (unknown names) matches anything of the same size.
  public init(model: [String], data: [String]) {
    if model.isEmpty || data.isEmpty || model == data {
      self = .same
    } else if Set(model) == Set(data), model.count == data.count, Set(model).count == model.count {
      self = .reordered(data.map { model.firstIndex(of: $0)! })
    } else {
      let missing = model.filter { !data.contains($0) }, unknown = data.filter { !model.contains($0) }
      var parts: [String] = []
      if !missing.isEmpty { parts.append("not in the data: " + missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", …" : "")) }
      if !unknown.isEmpty { parts.append("unknown to the model: " + unknown.prefix(5).joined(separator: ", ") + (unknown.count > 5 ? ", …" : "")) }
      self = .different(parts.isEmpty ? "\(data.count) classes in the data, \(model.count) in the model" : parts.joined(separator: "; "))
    }
  }
}

/// A dataset whose labels are renumbered (`label → permutation[label]`).
struct RelabelledDataset: Dataset {
  let base: any Dataset
  let permutation: [Int]
  let classNames: [String]
  var count: Int { base.count }
  var numClasses: Int { base.numClasses }
  var height: Int { base.height }
  var width: Int { base.width }
  func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    permutation[try base.load(index, into: pixels)]
  }
}

/// Evaluates a checkpoint (or any folder `loadModel` reads) on the validation split of its own
/// data source (or `data`); every rank gets the exact totals. The data's class names must be the
/// model's: the same names in another order are mapped by name; other names are an error unless
/// `ignoreClassNames`. `precision` (nil: the checkpoint's own) picks the inference plan; `log`
/// gets its notes (`loadInferenceModel`). `weights: .ema` evaluates the checkpoint's moving
/// average of the parameters (`train --ema`).
public func evaluateCheckpoint(
  path: String, data: String?, comm: Communicator, batchSize: Int, ignoreClassNames: Bool = false,
  precision: Precision? = nil, weights: WeightsChoice = .raw, log: (String) -> Void = { _ in }
) throws -> (EvaluationResult, LoadedModel) {
  let inference = try loadInferenceModel(path, precision: precision, weights: weights, log: log)
  let loaded = inference.loaded
  let model = loaded.model
  var config = loaded.config
  if let data { config.data = data }
  guard !config.data.isEmpty else {
    throw TrainError("\(path) holds imported weights, which do not say what data they were trained on: pass --data")
  }
  var (_, validation) = try makeDatasets(config)
  if validation.numClasses != model.config.classes {
    throw TrainError(
      "checkpoint has \(model.config.classes) classes, dataset has \(validation.numClasses): evaluate on a dataset with the checkpoint's classes, or fine-tune with --init-from and --classes \(validation.numClasses)")
  }
  if validation.height != model.config.imageHeight || validation.width != model.config.imageWidth {
    throw TrainError("the data is \(validation.height)x\(validation.width) px, the checkpoint's model expects \(model.config.imageHeight)x\(model.config.imageWidth)")
  }
  let match = ClassMatch(model: loaded.config.classNames, data: validation.classNames)
  // the data's task says whether its targets can be renumbered (labels can, masks cannot)
  if case .reordered(let permutation) = match,
    let relabelled = MixerTask.learning(from: validation).training.relabelled(
      validation, permutation: permutation, classNames: loaded.config.classNames)
  {
    validation = relabelled
  } else if match != .same, !ignoreClassNames {
    let detail: String
    if case .different(let text) = match {
      detail = text
    } else {
      detail = "the same names in another order, which masks cannot be mapped by"
    }
    throw TrainError(
      "the data's classes are not the checkpoint's (\(detail)): evaluate on data with the checkpoint's classes, "
        + "or pass --ignore-class-names to evaluate by class index anyway")
  }
  return (try evaluate(model: model, dataset: validation, comm: comm, batchSize: batchSize, inference: inference), loaded)
}
