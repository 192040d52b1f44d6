// `mixer-dist verify-reference DIR`: parity with the official Flax model. Reads a folder in the
// format of shared/reference/* (config.json, params.npz, batch.npz, grads.npz), runs forward and
// backward on the batch, and compares logits, loss and every gradient tensor:
// ‖ours − ref‖ / ‖ref‖ ≤ 1e-5 for logits and loss, ≤ 1e-4 per gradient; the token-mixing output
// bias, whose exact gradient is zero (a per-token constant removed by every later LayerNorm),
// is compared absolutely: max |ours − ref| ≤ 1e-6.

import Foundation
import MixerKernels
import MixerModel

/// One compared quantity.
public struct ReferenceComparison {
  public var name: String
  public var relativeError: Double
  public var maxAbsoluteError: Double
  /// "relative" or "absolute"
  public var criterion: String
  public var tolerance: Double
  public var passed: Bool {
    criterion == "absolute" ? maxAbsoluteError <= tolerance : relativeError <= tolerance
  }
}

/// The outcome of a reference check.
public struct ReferenceReport {
  public var config: MixerConfig
  public var batch: Int
  public var comparisons: [ReferenceComparison]
  public var passed: Bool { comparisons.allSatisfy(\.passed) }

  /// One line per compared tensor and a verdict.
  public var text: String {
    var lines = [
      "model: \(config.imageHeight)x\(config.imageWidth) px, patch \(config.patch), C \(config.hidden), "
        + "\(config.blocks) blocks, D_S \(config.tokensMLP), D_C \(config.channelsMLP), "
        + "\(config.classes) classes, GELU \(config.gelu.rawValue), batch \(batch)",
    ]
    let width = comparisons.map(\.name.count).max() ?? 10
    for c in comparisons {
      let measure = c.criterion == "absolute"
        ? String(format: "max abs %.3e (≤ %.0e)", c.maxAbsoluteError, c.tolerance)
        : String(format: "rel %.3e (≤ %.0e)", c.relativeError, c.tolerance)
      lines.append(c.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
        + measure + (c.passed ? "  ok" : "  FAIL"))
    }
    let failed = comparisons.filter { !$0.passed }.count
    lines.append(failed == 0 ? "PASS: \(comparisons.count) quantities within tolerance"
      : "FAIL: \(failed) of \(comparisons.count) quantities outside tolerance")
    return lines.joined(separator: "\n")
  }
}

/// Compares `ours` with `reference` (same length).
func compare(_ name: String, _ ours: [Float], _ reference: [Float], tolerance: Double, absolute: Bool = false) -> ReferenceComparison {
  var diff = 0.0, norm = 0.0, maxAbs = 0.0
  for i in 0..<min(ours.count, reference.count) {
    let d = Double(ours[i]) - Double(reference[i])
    diff += d * d
    norm += Double(reference[i]) * Double(reference[i])
    maxAbs = max(maxAbs, abs(d))
  }
  let relative = norm > 0 ? (diff / norm).squareRoot() : (diff > 0 ? .infinity : 0)
  return ReferenceComparison(
    name: name, relativeError: relative, maxAbsoluteError: maxAbs,
    criterion: absolute ? "absolute" : "relative", tolerance: tolerance)
}

/// Reads config.json of a reference folder into a model config and the batch size.
public func readReferenceConfig(_ url: URL) throws -> (MixerConfig, Int) {
  let data: Data
  do { data = try Data(contentsOf: url) } catch {
    throw ConfigError("cannot read \(url.path): \(error.localizedDescription)")
  }
  guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
    throw ConfigError("\(url.lastPathComponent) is not a JSON object")
  }
  func int(_ key: String) throws -> Int {
    guard let value = json[key] as? NSNumber, let exact = Int(exactly: value.doubleValue) else {
      throw ConfigError("\(url.lastPathComponent): missing or non-integer '\(key)'")
    }
    return exact
  }
  let geluName = (json["gelu"] as? String) ?? "tanh"
  guard let gelu = GELUKind(rawValue: geluName) else {
    throw ConfigError("\(url.lastPathComponent): unknown gelu '\(geluName)' (known: tanh, erf)")
  }
  let epsilon = (json["layernorm_epsilon"] as? NSNumber)?.floatValue ?? 1e-6
  let config = MixerConfig(
    imageHeight: try int("image_height"), imageWidth: try int("image_width"),
    patch: try int("patch"), hidden: try int("hidden_dim"), blocks: try int("num_blocks"),
    tokensMLP: try int("tokens_mlp_dim"), channelsMLP: try int("channels_mlp_dim"),
    classes: try int("num_classes"), gelu: gelu, layerNormEpsilon: epsilon)
  try config.validate()
  let batch = try int("batch")
  guard batch > 0 else { throw ConfigError("\(url.lastPathComponent): batch must be positive") }
  return (config, batch)
}

/// Loads every parameter of `model` from `arrays`; throws listing missing, extra or mis-shaped tensors.
public func loadParameters(_ arrays: [String: NDArray], into model: MixerModel, source: String) throws {
  var problems: [String] = []
  for view in model.table.views {
    guard let array = arrays[view.name] else { problems.append("\(view.name) missing"); continue }
    if array.shape != view.shape {
      problems.append("\(view.name) has shape \(array.shape), expected \(view.shape)")
    }
  }
  let extra = Set(arrays.keys).subtracting(model.table.views.map(\.name))
  problems += extra.sorted().map { "\($0) is not a parameter of this model" }
  if !problems.isEmpty {
    let shown = problems.prefix(8).joined(separator: "; ")
    throw ConfigError("\(source): \(problems.count) tensor(s) do not fit the model: \(shown)\(problems.count > 8 ? "; …" : "")")
  }
  for view in model.table.views { model.parameters.copy(from: arrays[view.name]!.data, at: view.offset) }
}

/// Runs the check on a reference folder.
public func verifyReference(directory: String) throws -> ReferenceReport {
  let dir = URL(fileURLWithPath: directory)
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory), isDirectory.boolValue else {
    throw ConfigError("\(directory) is not a directory")
  }
  let (config, batch) = try readReferenceConfig(dir.appendingPathComponent("config.json"))
  let model = try MixerModel(config: config, seed: 0)
  try loadParameters(try NPZ.readFloats(contentsOf: dir.appendingPathComponent("params.npz")), into: model, source: "params.npz")

  let batchArrays = try NPZ.readFloats(contentsOf: dir.appendingPathComponent("batch.npz"))
  func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
    guard let array = batchArrays[name] else { throw ConfigError("batch.npz: missing '\(name)'") }
    guard array.shape == shape || (shape.isEmpty && array.data.count == 1) else {
      throw ConfigError("batch.npz: '\(name)' has shape \(array.shape), expected \(shape)")
    }
    return array.data
  }
  let images = try tensor("images", [batch, config.imageHeight, config.imageWidth, 3])
  let labelValues = try tensor("labels", [batch])
  let referenceLogits = try tensor("logits", [batch, config.classes])
  let referenceLoss = try tensor("loss", [])
  var labels: [Int32] = []
  for value in labelValues {
    guard value >= 0, value < Float(config.classes), value == value.rounded() else {
      throw ConfigError("batch.npz: label \(value) is not a class index in 0..<\(config.classes)")
    }
    labels.append(Int32(value))
  }

  let acts = Activations(config: config, batch: batch)
  images.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
  labels.withUnsafeBufferPointer {
    smoothedOneHot(targets: acts.head(ClassificationBuffers.self).targets, labels: $0.baseAddress!, batch: batch, classes: config.classes, smoothing: 0)
  }
  let loss = Float(model.loss(acts: acts) / Double(batch))
  model.zeroGradients()
  model.backward(acts: acts, lossScale: 1 / Float(batch))

  let logits = Array(UnsafeBufferPointer(start: acts.head(ClassificationBuffers.self).logits, count: batch * config.classes))
  var comparisons = [
    compare("logits", logits, referenceLogits, tolerance: 1e-5),
    compare("loss", [loss], referenceLoss, tolerance: 1e-5),
  ]
  let grads = try NPZ.readFloats(contentsOf: dir.appendingPathComponent("grads.npz"))
  for view in model.table.views {
    guard let reference = grads[view.name] else { throw ConfigError("grads.npz: missing '\(view.name)'") }
    guard reference.shape == view.shape else {
      throw ConfigError("grads.npz: '\(view.name)' has shape \(reference.shape), expected \(view.shape)")
    }
    let exactZero = view.name.hasSuffix(OfficialName.bias(OfficialName.join(OfficialName.tokenMixing, OfficialName.dense1)))
    comparisons.append(compare(
      "grad " + view.name, model.gradient(view.name)!, reference.data,
      tolerance: exactZero ? 1e-6 : 1e-4, absolute: exactZero))
  }
  return ReferenceReport(config: config, batch: batch, comparisons: comparisons)
}
