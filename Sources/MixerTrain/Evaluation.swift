// Evaluation: top-1, top-5 and mean loss of the model on a dataset, sharded over ranks so that
// every sample is counted exactly once (ranges differ by at most one sample), totals summed with
// one all-reduce.

import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerCheckpoint
import Foundation

/// Exact totals over a dataset.
public struct EvaluationResult: Equatable {
  public var count: Int
  public var top1: Double
  public var top5: Double
  public var loss: Double
}

/// Evaluates `model` on all of `dataset`, this rank taking its range; every rank gets the totals.
public func evaluate(
  model: MixerModel, dataset: any Dataset, comm: Communicator, batchSize: Int
) throws -> EvaluationResult {
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
      let logits = acts.logits + e * config.classes
      let label = Int(batch.labels[e])
      let target = logits[label]
      var higher = 0
      for k in 0..<config.classes where logits[k] > target || (logits[k] == target && k < label) {
        higher += 1
      }
      if higher == 0 { totals[0] += 1 }
      if higher < 5 { totals[1] += 1 }
    }
    totals[3] += Double(b)
  }
  try comm.allReduceSum(&totals)
  let n = max(totals[3], 1)
  return EvaluationResult(count: Int(totals[3]), top1: totals[0] / n, top5: totals[1] / n, loss: totals[2] / n)
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
