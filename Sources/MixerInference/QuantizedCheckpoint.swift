// A quantized checkpoint: what `mixer-dist quantize` writes and `eval`, `predict` and
// `bench --inference` load. A folder with
//   quantized.json      format name and version, the source checkpoint and its step, the run's
//                       config (as a checkpoint manifest holds it), how the ranges were
//                       calibrated, each product's precision and input quantization, and every
//                       file with its size and SHA-256
//   params.safetensors  int8 layers: `<layer>/kernel` as I8 `[K, N]` with `<layer>/kernel_scale`
//                       F32 `[N]` (W ≈ q · scale per output column); bf16 layers: the kernel as
//                       BF16; everything else F32 under the official names
// Training refuses such a folder (MixerCheckpoint/QuantizedFolder.swift).

import Foundation
import MixerCheckpoint
import MixerKernels
import MixerModel

/// One product in a quantized checkpoint.
public struct QuantizedLayer: Codable, Equatable, Sendable {
  public var name: String
  public var precision: Precision
  /// the calibrated u8 quantization of the layer's input (kept for bf16/fp32 layers too, so the
  /// checkpoint can also run all-int8)
  public var input: ActivationQuantization?
}

/// How the activation ranges were found.
public struct CalibrationRecord: Codable, Equatable, Sendable {
  public var method: CalibrationMethod
  public var percentile: Double?
  public var samples: Int
  public var data: String

  public init(method: CalibrationMethod, percentile: Double?, samples: Int, data: String) {
    (self.method, self.percentile, self.samples, self.data) = (method, percentile, samples, data)
  }
}

/// `quantized.json`.
public struct QuantizedManifest<Config: CheckpointConfig>: FolderManifest {
  public static var fileName: String { quantizedManifestName }
  public static var formatName: String { "mixer-dist-quantized" }
  public static var currentVersion: Int { 1 }
  public static var folderKind: String { "mixer-dist quantized checkpoint" }
  public var format: String
  public var version: Int
  /// the fp32 checkpoint it was made from
  public var source: String
  public var step: Int?
  public var config: Config
  public var calibration: CalibrationRecord
  public var layers: [QuantizedLayer]
  public var files: [CheckpointFile]

  /// Settings added since the manifest was written are read as `Config.decodingDefaults`.
  public static func migrating(_ data: Data) -> Data { Config.migrating(data, at: "config") }
}

/// A model read back from a quantized checkpoint: fp32 parameters (int8 kernels dequantized,
/// bf16 ones widened) and the per-layer settings with the exact int8 weights.
public struct QuantizedModel<Config: CheckpointConfig> {
  public let model: MixerModel
  public let manifest: QuantizedManifest<Config>
  public let settings: [String: LayerSetting]
}

/// Writes a quantized checkpoint of `model` into `folder` (created; must not hold a checkpoint).
public func writeQuantizedCheckpoint<Config: CheckpointConfig>(
  model: MixerModel, settings: [String: LayerSetting], config: Config, source: String, step: Int?,
  calibration: CalibrationRecord, to folder: URL
) throws {
  let fileManager = FileManager.default
  try fileManager.createDirectory(at: folder, withIntermediateDirectories: true)
  var tensors: [(name: String, array: TypedArray)] = []
  func append<T>(_ name: String, _ type: ElementType, _ shape: [Int], _ values: [T]) {
    tensors.append((name, TypedArray(type, shape: shape, values: values)))
  }
  for view in model.table.views {
    let values = model.parameters.array(view.range)
    guard view.name.hasSuffix("/kernel") else {
      append(view.name, .float32, view.shape, values)
      continue
    }
    let layer = String(view.name.dropLast("/kernel".count))
    // a kernel is stored as its precision rounds it (the registry's `OperandRounding`)
    switch (settings[layer]?.precision ?? .fp32).format.operandRounding {
    case .none:
      append(view.name, .float32, view.shape, values)
    case .bfloat16:
      append(view.name, .bfloat16, view.shape, values.map(bf16Bits))
    case .affineU8:
      let k = view.shape.dropLast().reduce(1, *), n = view.shape.last!
      let weights = settings[layer]?.weights ?? values.withUnsafeBufferPointer {
        QuantizedWeights($0.baseAddress!, inputs: k, outputs: n)
      }
      append(view.name, .int8, view.shape, weights.values)
      append(view.name + "_scale", .float32, [n], weights.scales)
    }
  }
  let params = folder.appendingPathComponent("params.safetensors")
  let (bytes, sha256) = try SafeTensors.write(tensors, metadata: ["format": QuantizedManifest<Config>.formatName], to: params)

  let layers = model.config.productLayers.map {
    QuantizedLayer(name: $0.name, precision: settings[$0.name]?.precision ?? .fp32, input: settings[$0.name]?.input)
  }
  let manifest = QuantizedManifest(
    format: QuantizedManifest<Config>.formatName, version: QuantizedManifest<Config>.currentVersion, source: source, step: step, config: config,
    calibration: calibration, layers: layers,
    files: [CheckpointFile(name: "params.safetensors", bytes: bytes, sha256: sha256)])
  try manifest.write(in: folder)
}

/// True when `folder` holds a quantized checkpoint.
public func isQuantizedCheckpoint(_ folder: URL) -> Bool {
  FileManager.default.fileExists(atPath: folder.appendingPathComponent(quantizedManifestName).path)
}

/// Reads and verifies (sizes, SHA-256) a quantized checkpoint.
public func readQuantizedCheckpoint<Config: CheckpointConfig>(
  _ folder: URL, config: Config.Type
) throws -> QuantizedModel<Config> {
  let manifest = try QuantizedManifest<Config>.read(from: folder)
  let model = try MixerModel(config: manifest.config.model, seed: 0)
  let params = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("params.safetensors"))
  let byName = Dictionary(uniqueKeysWithValues: manifest.layers.map { ($0.name, $0) })
  var settings: [String: LayerSetting] = [:]
  for view in model.table.views {
    let tensor = try params.tensor(view.name)
    guard tensor.shape == view.shape else {
      throw CheckpointError("\(folder.path): \(view.name) has shape \(tensor.shape), the model expects \(view.shape)")
    }
    var values = tensor.floats()
    if tensor.elementType == .int8 {
      let scales = try params.floats(view.name + "_scale")
      let n = view.shape.last!
      let q = values.map { Int8($0) }
      for i in values.indices { values[i] *= scales[i % n] }
      let layer = String(view.name.dropLast("/kernel".count))
      settings[layer] = LayerSetting(
        precision: byName[layer]?.precision ?? .int8, input: byName[layer]?.input, weights: QuantizedWeights(values: q, scales: scales))
    }
    model.parameters.copy(from: values, at: view.offset)
  }
  for layer in manifest.layers where settings[layer.name] == nil {
    settings[layer.name] = LayerSetting(precision: layer.precision, input: layer.input)
  }
  return QuantizedModel(model: model, manifest: manifest, settings: settings)
}
