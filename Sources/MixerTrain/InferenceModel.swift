// What `eval`, `predict` and `bench --inference` run: a checkpoint's model with the inference
// plan its precision asks for. An fp32 checkpoint runs the training forward (every model kind and
// task), or with `--precision bf16|int8` the plan (int8 needs calibrated ranges: a quantized
// checkpoint); the plan covers every stem, block kind and head (MixerInference/InferencePlan.swift).
// A quantized checkpoint runs its own per-layer precisions, or every layer in the one
// `--precision` names (at fp32: its dequantized weights, which the loader says). `exportONNX`
// writes either kind as ONNX (a quantized one in QDQ form); `exportSafeTensors` the parameters.

import Foundation
import MixerCheckpoint
import MixerInference
import MixerKernels
import MixerModel

/// A loaded model and how its forward runs.
public struct InferenceModel {
  public let loaded: LoadedModel
  /// nil: the training forward (fp32)
  public let plan: InferencePlan?

  /// "fp32", "int8", or a mix such as "int8 (3 of 18 products bf16)".
  public var precisionSummary: String { plan?.precisionSummary ?? "fp32" }

  /// Runs the forward on `images` and leaves the head's outputs in `acts` as the training forward does.
  public func forward(images: UnsafePointer<Float>, acts: Activations) {
    guard let plan else {
      loaded.model.forward(images: images, acts: acts)
      return
    }
    let outputs = plan.forward(images: images, batch: acts.batch)
    loaded.model.config.head.outputs(acts).update(from: outputs, count: acts.batch * plan.outputsPerImage)
  }
}

/// Loads `path` (anything `loadModel` reads, or a quantized checkpoint folder) for inference in
/// `precision` (nil: the checkpoint's own). oneDNN gets as many threads as OpenBLAS has. A
/// quantized checkpoint run at `--precision fp32` runs its dequantized weights, not the model it
/// was made from: `log` is told so. `weights: .ema`: a checkpoint's moving average of the
/// parameters (`train --ema`; a quantized checkpoint holds one set of weights: an error).
public func loadInferenceModel(
  _ path: String, precision: Precision?, weights: WeightsChoice = .raw, log: (String) -> Void = { _ in }
) throws -> InferenceModel {
  let url = URL(fileURLWithPath: path)
  DNNL.setThreads(BLAS.threads)
  if isQuantizedCheckpoint(url) {
    try refuseAverage(of: path, weights)
    let quantized = try readQuantizedCheckpoint(url, config: TrainConfig.self)
    var settings = quantized.settings
    if precision == .fp32 {
      log(
        "note: \(path) is a quantized checkpoint: --precision fp32 runs its dequantized weights (int8 kernels times their "
          + "scales, bf16 kernels widened), not the fp32 model it was made from (\(quantized.manifest.source))")
    }
    if let precision {
      for (name, setting) in settings {
        settings[name] = LayerSetting(precision: precision, input: setting.input, weights: setting.weights)
      }
    }
    let loaded = LoadedModel(model: quantized.model, config: quantized.manifest.config, step: quantized.manifest.step, folder: url)
    for used in Set(settings.values.map(\.precision)).sorted(by: { $0.rawValue < $1.rawValue }) {
      if let note = used.kernelNote { log("note: \(note)") }
    }
    return InferenceModel(loaded: loaded, plan: try InferencePlan(model: quantized.model, settings: settings))
  }
  let loaded = try loadModel(path, weights: weights)
  guard let precision, precision != .fp32 else { return InferenceModel(loaded: loaded, plan: nil) }
  if let note = precision.kernelNote { log("note: \(note)") }
  return InferenceModel(loaded: loaded, plan: try InferencePlan(model: loaded.model, precision: precision))
}

/// The ONNX model of `path` (anything `loadModel` reads, or a quantized checkpoint folder): fp32,
/// or for a quantized checkpoint its int8 products as QuantizeLinear/DequantizeLinear nodes and
/// its other products fp32. Returns the file's bytes, the model's config and a one-line summary of
/// the products (`onnxProductSummary`: "fp32", "16 of 18 products int8 (QDQ), 2 fp32").
/// `weights: .ema`: a checkpoint's moving average of the parameters (`train --ema`).
public func exportONNX(_ path: String, weights: WeightsChoice = .raw) throws -> (data: Data, config: MixerConfig, products: String) {
  let url = URL(fileURLWithPath: path)
  guard isQuantizedCheckpoint(url) else {
    let model = try loadModel(path, weights: weights).model
    return (try onnxModel(model), model.config, "fp32")
  }
  try refuseAverage(of: path, weights)
  let quantized = try readQuantizedCheckpoint(url, config: TrainConfig.self)
  let config = quantized.model.config
  let products = onnxProductSummary(config.productLayers, settings: quantized.settings)
  return (try onnxModel(quantized.model, settings: quantized.settings), config, products)
}

/// Writes the parameters of `path` (a checkpoint or weights folder, as `export` to .npz reads)
/// as float32 safetensors under their official names; returns the model's config. `weights: .ema`:
/// a checkpoint's moving average of the parameters (`train --ema`).
public func exportSafeTensors(
  _ path: String, to url: URL, weights: WeightsChoice = .raw, log: (String) -> Void
) throws -> MixerConfig {
  let (config, parameters, _) = try readParameterFolder(URL(fileURLWithPath: path), weights: weights, log: log)
  try SafeTensors.write(parameters.keys.sorted().map { ($0, parameters[$0]!) }, to: url)
  return config
}

/// A quantized checkpoint holds one set of weights: `--weights ema` on it is an error.
func refuseAverage(of path: String, _ weights: WeightsChoice) throws {
  guard weights == .ema else { return }
  throw TrainError(
    "\(path) is a quantized checkpoint: it holds one set of weights, no EMA; quantize the EMA weights with "
      + "`mixer-dist quantize --weights ema`, or drop --weights ema")
}
