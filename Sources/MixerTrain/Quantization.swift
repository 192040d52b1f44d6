// Post-training quantization (`mixer-dist quantize`): calibrate every product's input range on
// training images, measure how much each product alone moves the logits when it runs in int8
// (min-max and percentile ranges) or bf16, keep the products whose int8 error is above the limit
// in bf16, and write a quantized checkpoint (MixerInference/QuantizedCheckpoint.swift). The
// products are the model's `productLayers` (any stem, block kind and head).
// The error of a setting is ‖logits − logits_fp32‖ / ‖logits_fp32‖ over held-out training images
// (not the calibration images), with the top-1 agreement beside it (per image, or per pixel for
// a segmentation model).

import Foundation
import MixerCheckpoint
import MixerData
import MixerInference
import MixerKernels
import MixerModel

/// The knobs of `quantize`.
public struct QuantizationOptions: Sendable {
  /// data spec of the calibration images (its training split); nil: the checkpoint's data
  public var calibrationData: String?
  public var samples: Int = 512
  public var method: CalibrationMethod = .percentile
  public var percentile: Double = 99.99
  /// a product whose int8 error alone is above this stays bf16 (0: every product bf16; ≥ 1: all int8)
  public var maxLayerError: Double = 0.02
  public init() {}
}

/// One row of the sensitivity table.
public struct LayerSensitivity: Codable, Sendable {
  public var layer: String
  public var inputs: Int
  public var outputs: Int
  /// share of the forward's multiply-adds
  public var macShare: Double
  /// relative logit error with only this product in int8 (min-max ranges, percentile ranges) or bf16
  public var int8MinMax: Double
  public var int8Percentile: Double
  public var bf16: Double
  public var chosen: Precision
}

/// How the quantized model compares with fp32 on the held-out images.
public struct QuantizationSummary: Codable, Sendable {
  public var setting: String
  public var relativeError: Double
  public var top1Agreement: Double
}

public struct QuantizationReport: Codable, Sendable {
  public var layers: [LayerSensitivity]
  public var summaries: [QuantizationSummary]
  public var calibrationImages: Int
  public var heldOutImages: Int
  public var bytes: Int
}

/// `count` images of `dataset` at evenly spaced indices starting at `phase` (0..<1) of a step.
func evenlySpacedImages(_ dataset: any Dataset, count: Int, phase: Double) throws -> [Float] {
  let perImage = dataset.height * dataset.width * 3
  var pixels = [Float](repeating: 0, count: count * perImage)
  let step = Double(dataset.count) / Double(count)
  try pixels.withUnsafeMutableBufferPointer { p in
    for i in 0..<count {
      _ = try dataset.load(min(dataset.count - 1, Int((Double(i) + phase) * step)), into: p.baseAddress! + i * perImage)
    }
  }
  return pixels
}

/// Quantizes the fp32 checkpoint at `path` into `output` and returns the sensitivity table.
public func quantizeCheckpoint(
  path: String, output: URL, options: QuantizationOptions, log: (String) -> Void
) throws -> QuantizationReport {
  let loaded = try loadModel(path)
  let model = loaded.model, cfg = model.config
  DNNL.setThreads(BLAS.threads)
  var dataConfig = loaded.config
  if let data = options.calibrationData { dataConfig.data = data }
  guard !dataConfig.data.isEmpty else {
    throw TrainError("\(path) does not say what data it was trained on: pass --calibration DATA")
  }
  let (train, _) = try makeDatasets(dataConfig)
  guard train.height == cfg.imageHeight, train.width == cfg.imageWidth else {
    throw TrainError("the calibration data is \(train.height)x\(train.width) px, the model expects \(cfg.imageHeight)x\(cfg.imageWidth)")
  }
  let samples = min(options.samples, train.count / 2)
  guard samples > 0 else { throw TrainError("--samples must be positive and the calibration data must hold images") }
  log("calibrating on \(samples) training images of \(dataConfig.data), measuring on \(samples) others")
  let calibration = try evenlySpacedImages(train, count: samples, phase: 0)
  let heldOut = try evenlySpacedImages(train, count: samples, phase: 0.5)

  let statistics = try calibration.withUnsafeBufferPointer {
    try collectActivationStatistics(model: model, images: $0.baseAddress!, count: samples)
  }
  let minMax = statistics.quantization(.minMax)
  let percentile = statistics.quantization(.percentile, percentile: options.percentile)
  let chosenRanges = options.method == .minMax ? minMax : percentile

  // the head's outputs: K logits per image, or K per pixel (agreement is then per pixel)
  let outputs = cfg.head.outputsPerImage(cfg), k = cfg.classes
  func logits(_ plan: InferencePlan) -> [Float] {
    var out: [Float] = []
    let perImage = cfg.imageHeight * cfg.imageWidth * 3
    heldOut.withUnsafeBufferPointer { images in
      for start in stride(from: 0, to: samples, by: 32) {
        let b = min(32, samples - start)
        let l = plan.forward(images: images.baseAddress! + start * perImage, batch: b)
        out += UnsafeBufferPointer(start: l, count: b * outputs)
      }
    }
    return out
  }
  let reference = logits(try InferencePlan(model: model, precision: .fp32))
  func compare(_ plan: InferencePlan) -> (error: Double, agreement: Double) {
    let l = logits(plan), predictions = samples * outputs / k
    var d = 0.0, n = 0.0, agree = 0
    for i in l.indices { d += Double((l[i] - reference[i]) * (l[i] - reference[i])); n += Double(reference[i] * reference[i]) }
    for e in 0..<predictions {
      let a = (0..<k).max { l[e * k + $0] < l[e * k + $1] }!, r = (0..<k).max { reference[e * k + $0] < reference[e * k + $1] }!
      if a == r { agree += 1 }
    }
    return ((d / max(n, 1e-30)).squareRoot(), Double(agree) / Double(predictions))
  }
  func only(_ layer: String, _ setting: LayerSetting) throws -> InferencePlan {
    try InferencePlan(model: model, settings: [layer: setting])
  }

  let totalMACs = Double(cfg.productLayers.reduce(0) { $0 + $1.macsPerImage })
  var rows: [LayerSensitivity] = []
  var settings: [String: LayerSetting] = [:]
  for layer in cfg.productLayers {
    let errMinMax = compare(try only(layer.name, LayerSetting(precision: .int8, input: minMax[layer.name]))).error
    let errPercentile = compare(try only(layer.name, LayerSetting(precision: .int8, input: percentile[layer.name]))).error
    let errBF16 = compare(try only(layer.name, LayerSetting(precision: .bf16))).error
    let chosenError = options.method == .minMax ? errMinMax : errPercentile
    let chosen: Precision = chosenError > options.maxLayerError ? .bf16 : .int8
    settings[layer.name] = LayerSetting(precision: chosen, input: chosenRanges[layer.name])
    rows.append(LayerSensitivity(
      layer: layer.name, inputs: layer.inputs, outputs: layer.outputs, macShare: Double(layer.macsPerImage) / totalMACs,
      int8MinMax: errMinMax, int8Percentile: errPercentile, bf16: errBF16, chosen: chosen))
  }

  var summaries: [QuantizationSummary] = []
  for (name, plan) in [
    ("bf16", try InferencePlan(model: model, precision: .bf16)),
    ("int8 min-max", try InferencePlan(model: model, precision: .int8, inputs: minMax)),
    ("int8 percentile \(options.percentile)", try InferencePlan(model: model, precision: .int8, inputs: percentile)),
    ("chosen (written)", try InferencePlan(model: model, settings: settings)),
  ] {
    let (error, agreement) = compare(plan)
    summaries.append(QuantizationSummary(setting: name, relativeError: error, top1Agreement: agreement))
  }

  try writeQuantizedCheckpoint(
    model: model, settings: settings, config: loaded.config, source: loaded.folder.path, step: loaded.step,
    calibration: CalibrationRecord(
      method: options.method, percentile: options.method == .percentile ? options.percentile : nil, samples: samples,
      data: dataConfig.data),
    to: output)
  let bytes = (try? FileManager.default.attributesOfItem(atPath: output.appendingPathComponent("params.safetensors").path)[.size] as? NSNumber)?.intValue ?? 0
  return QuantizationReport(layers: rows, summaries: summaries, calibrationImages: samples, heldOutImages: samples, bytes: bytes)
}
