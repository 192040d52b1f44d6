// Post-training quantization (`mixer-dist quantize`): calibrate every product's input range on
// training images, measure how much each product alone moves the logits when it runs in int8
// (min-max and percentile ranges) or bf16, keep the products whose int8 error is above the limit
// in bf16, and write a quantized checkpoint (MixerInference/QuantizedCheckpoint.swift). The
// products are the model's `productLayers` (any stem, block kind and head).
// The error of a setting is ‖logits − logits_fp32‖ / ‖logits_fp32‖ over held-out training images
// (not the calibration images), with the top-1 agreement beside it (per image, or per pixel for
// a segmentation model): the summaries on `evaluationSamples` images, each product's sensitivity
// on the first `sensitivitySamples` of them.

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
  /// calibration images
  public var samples: Int = 256
  /// held-out images the summaries (every setting against fp32) are measured on
  public var evaluationSamples: Int = 32
  /// held-out images each product's sensitivity is measured on (fewer: 3 partial forwards per
  /// product; 4, where 8 took twice the time for the same choices: docs/inference.md)
  public var sensitivitySamples: Int = 4
  public var method: CalibrationMethod = .percentile
  public var percentile: Double = 99.99
  /// a product whose int8 error alone is above this stays bf16 (0: every product bf16; ≥ 1: all int8)
  public var maxLayerError: Double = 0.02
  /// the checkpoint's parameters, or their moving average (`train --ema`)
  public var weights: WeightsChoice = .raw
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
  /// the held-out images the per-product sensitivities were measured on (the first of them)
  public var sensitivityImages: Int?
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

/// Every product of `layers` in `precision`, with its range from `inputs` (what
/// `InferencePlan(model:precision:inputs:)` runs).
func uniformSettings(
  _ layers: [ProductLayer], _ precision: Precision, inputs: [String: ActivationQuantization]
) -> [String: LayerSetting] {
  var settings: [String: LayerSetting] = [:]
  for layer in layers { settings[layer.name] = LayerSetting(precision: precision, input: inputs[layer.name]) }
  return settings
}

/// Whether plans built from `a` and `b` compute the same thing: every product in the same
/// precision, and the same input range where that precision is int8 (bf16 and fp32 use none).
/// Settings that carry stored weights (a quantized checkpoint's) are never the same here.
func runTheSame(_ a: [String: LayerSetting], _ b: [String: LayerSetting]) -> Bool {
  guard a.count == b.count else { return false }
  for (name, x) in a {
    guard let y = b[name], x.precision == y.precision, x.weights == nil, y.weights == nil else { return false }
    if x.precision == .int8 && x.input != y.input { return false }
  }
  return true
}

/// Quantizes the fp32 checkpoint at `path` into `output` and returns the sensitivity table.
public func quantizeCheckpoint(
  path: String, output: URL, options: QuantizationOptions, log: (String) -> Void
) throws -> QuantizationReport {
  let loaded = try loadModel(path, weights: options.weights)
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
  let evaluationCount = min(options.evaluationSamples, train.count / 2)
  let sensitivityCount = min(options.sensitivitySamples, evaluationCount)
  guard samples > 0, evaluationCount > 0, sensitivityCount > 0 else {
    throw TrainError("--samples, --eval-samples and --sensitivity-samples must be positive and the calibration data must hold images")
  }
  log("calibrating on \(samples) training images of \(dataConfig.data), measuring on \(evaluationCount) others "
    + "(each product's sensitivity on \(sensitivityCount) of them)")
  let calibration = try evenlySpacedImages(train, count: samples, phase: 0)
  let heldOut = try evenlySpacedImages(train, count: evaluationCount, phase: 0.5)

  let started = Date()
  func seconds(since start: Date) -> String { String(format: "%.0f s", Date().timeIntervalSince(start)) }
  let statistics = try calibration.withUnsafeBufferPointer {
    try collectActivationStatistics(model: model, images: $0.baseAddress!, count: samples)
  }
  let minMax = statistics.quantization(.minMax)
  let percentile = statistics.quantization(.percentile, percentile: options.percentile)
  let chosenRanges = options.method == .minMax ? minMax : percentile
  log("calibrated in \(seconds(since: started))")

  // the head's outputs: K logits per image, or K per pixel (agreement is then per pixel)
  let outputs = cfg.head.outputsPerImage(cfg), k = cfg.classes
  let perImage = cfg.imageHeight * cfg.imageWidth * 3
  func logits(_ plan: InferencePlan) -> [Float] {
    var out: [Float] = []
    heldOut.withUnsafeBufferPointer { images in
      for start in stride(from: 0, to: evaluationCount, by: 32) {
        let b = min(32, evaluationCount - start)
        let l = plan.forward(images: images.baseAddress! + start * perImage, batch: b)
        out += UnsafeBufferPointer(start: l, count: b * outputs)
      }
    }
    return out
  }
  /// Relative RMS difference of `l` from `reference` and their top-1 agreement.
  func compare(_ l: [Float], _ reference: ArraySlice<Float>) -> (error: Double, agreement: Double) {
    let reference = Array(reference), predictions = l.count / k
    var d = 0.0, n = 0.0, agree = 0
    for i in l.indices { d += Double((l[i] - reference[i]) * (l[i] - reference[i])); n += Double(reference[i] * reference[i]) }
    for e in 0..<predictions {
      let a = (0..<k).max { l[e * k + $0] < l[e * k + $1] }!, r = (0..<k).max { reference[e * k + $0] < reference[e * k + $1] }!
      if a == r { agree += 1 }
    }
    return ((d / max(n, 1e-30)).squareRoot(), Double(agree) / Double(predictions))
  }
  let fp32 = try InferencePlan(model: model, precision: .fp32)
  let reference = logits(fp32)

  // Sensitivity: each product alone in int8 (min-max and percentile ranges) or bf16, on the first
  // `sensitivityCount` held-out images in one batch. The fp32 forward runs once, step by step; at
  // each product the buffers are saved, and each variant reruns only the steps from that product
  // on (and the buffers are put back), so a product costs three partial forwards, not three whole
  // ones with a new plan each.
  let sensitivityStart = Date()
  let totalMACs = Double(cfg.productLayers.reduce(0) { $0 + $1.macsPerImage })
  var rows: [LayerSensitivity] = []
  var settings: [String: LayerSetting] = [:]
  try heldOut.withUnsafeBufferPointer { images in
    let x = images.baseAddress!, b = sensitivityCount, stepCount = fp32.stepCount
    var position = 0
    for (j, layer) in fp32.layers.enumerated() {
      let t = fp32.step(ofKernel: j)
      fp32.run(steps: position..<t, images: x, batch: b)
      position = t
      let saved = fp32.savedValues(batch: b)
      func error(_ setting: LayerSetting) throws -> Double {
        let kernel = try setting.precision.makeKernel(
          weight: model.parameters.pointer + model.table.offset(OfficialName.kernel(layer.name)),
          bias: model.parameters.pointer + model.table.offset(OfficialName.bias(layer.name)),
          inputs: layer.inputs, outputs: layer.outputs, setting: setting)
        let out = fp32.replacingKernel(j, with: kernel) { fp32.run(steps: t..<stepCount, images: x, batch: b) }
        let l = Array(UnsafeBufferPointer(start: out, count: b * outputs))
        fp32.restoreValues(saved, batch: b)
        return compare(l, reference[0..<(b * outputs)]).error
      }
      let errMinMax = try error(LayerSetting(precision: .int8, input: minMax[layer.name]))
      let errPercentile = try error(LayerSetting(precision: .int8, input: percentile[layer.name]))
      let errBF16 = try error(LayerSetting(precision: .bf16))
      let chosenError = options.method == .minMax ? errMinMax : errPercentile
      let chosen: Precision = chosenError > options.maxLayerError ? .bf16 : .int8
      settings[layer.name] = LayerSetting(precision: chosen, input: chosenRanges[layer.name])
      rows.append(LayerSensitivity(
        layer: layer.name, inputs: layer.inputs, outputs: layer.outputs, macShare: Double(layer.macsPerImage) / totalMACs,
        int8MinMax: errMinMax, int8Percentile: errPercentile, bf16: errBF16, chosen: chosen))
    }
  }

  log("measured the sensitivity of \(rows.count) products in \(seconds(since: sensitivityStart))")
  // A setting that runs every product as an earlier one does (the chosen one when no product was
  // kept in bf16) gives the same logits: its summary is copied, not measured again.
  let summaryStart = Date()
  var summaries: [QuantizationSummary] = []
  var measured: [(settings: [String: LayerSetting], summary: QuantizationSummary)] = []
  for (name, summarySettings) in [
    ("bf16", uniformSettings(cfg.productLayers, .bf16, inputs: [:])),
    ("int8 min-max", uniformSettings(cfg.productLayers, .int8, inputs: minMax)),
    ("int8 percentile \(options.percentile)", uniformSettings(cfg.productLayers, .int8, inputs: percentile)),
    ("chosen (written)", settings),
  ] {
    var summary: QuantizationSummary
    if let same = measured.first(where: { runTheSame($0.settings, summarySettings) }) {
      summary = same.summary
    } else {
      let (error, agreement) = compare(logits(try InferencePlan(model: model, settings: summarySettings)), reference[...])
      summary = QuantizationSummary(setting: name, relativeError: error, top1Agreement: agreement)
      measured.append((summarySettings, summary))
    }
    summary.setting = name
    summaries.append(summary)
  }

  log("compared the whole model in 4 settings in \(seconds(since: summaryStart))")
  try writeQuantizedCheckpoint(
    model: model, settings: settings, config: loaded.config, source: loaded.folder.path + (options.weights == .ema ? " (EMA weights)" : ""),
    step: loaded.step,
    calibration: CalibrationRecord(
      method: options.method, percentile: options.method == .percentile ? options.percentile : nil, samples: samples,
      data: dataConfig.data),
    to: output)
  let bytes = (try? FileManager.default.attributesOfItem(atPath: output.appendingPathComponent("params.safetensors").path)[.size] as? NSNumber)?.intValue ?? 0
  return QuantizationReport(
    layers: rows, summaries: summaries, calibrationImages: samples, heldOutImages: evaluationCount,
    sensitivityImages: sensitivityCount, bytes: bytes)
}
