// The released MLP-Mixer weights (PAPER.md "Released checkpoints", "Fine-tuning"): import of the
// official `.npz` files (flat keys joined by `/`, float32, Dense kernels `[in, out]`), export back
// to that format, and initialisation of a model from a checkpoint, an imported folder or an
// `.npz`, adapting to the model the way the official fine-tuning does:
//   - same shapes: copy;
//   - another number of classes: copy everything else, `head/*` re-initialised to zeros;
//   - a higher resolution with the same patch (paper App. C): S' = K²·S tokens, D_S' = K²·D_S,
//     token-mixing weights block-diagonal with K² copies of the pre-trained ones, biases tiled.
//
// Token order at a higher resolution. The paper orders the S' tokens "as the K×K sub-images'
// sequences one after another"; our stem orders them row-major over the full (K·gh)×(K·gw) patch
// grid. Instead of permuting activations, the widened weights are permuted: full-grid token
// t = (gy, gx) lies in sub-image k = (gy / gh)·K + gx / gw at position s = (gy % gh)·gw + gx % gw
// of that sub-image's own row-major grid, and
//   first kernel  [S', K²·D_S]:  W'[t, k·D_S + d] = W[s, d]   (0 outside sub-image k)
//   first bias    [K²·D_S]:      b'[k·D_S + d]    = b[d]
//   second kernel [K²·D_S, S']:  W'[k·D_S + d, t] = W[d, s]   (0 outside sub-image k)
//   second bias   [S']:          b'[t]            = b[s]
// so on an image made of K×K tiles every token-mixing layer gives exactly the per-tile outputs
// of the original layer; every other layer is per token and is copied unchanged.
//
// An imported `.npz` becomes a weights folder: `params.safetensors` (official names, table
// order) and `model.json` (format, version, config, preset, source, the file's size and SHA-256).
// It holds no optimizer state, so `--init-from` accepts it and `--resume` does not.

import Foundation
import MixerModel

// MARK: - Config inference

/// The config whose parameter table has exactly `shapes`, and the name of the preset with the
/// same architecture (patch, C, blocks, D_S, D_C; any image size and number of classes), if any.
/// S (the rows of the token-mixing MLP's first kernel) fixes the image size: `imageSize` when given,
/// else a square grid of side √S patches. GELU and the LayerNorm epsilon are not stored in the
/// weights: they are the official tanh and 1e-6.
public func inferConfig(
  fromParameters shapes: [String: [Int]], imageSize: (height: Int, width: Int)? = nil
) throws -> (config: MixerConfig, preset: String?) {
  func shape(_ name: String, rank: Int) throws -> [Int] {
    guard let shape = shapes[name] else { throw ConfigError("no tensor '\(name)' (not Mixer weights?)") }
    guard shape.count == rank, shape.allSatisfy({ $0 > 0 }) else {
      throw ConfigError("'\(name)' has shape \(shape), expected \(rank) positive dimensions")
    }
    return shape
  }
  let stem = try shape(OfficialName.kernel(OfficialName.stem), rank: 4)  // [P, P, 3, C]
  guard stem[0] == stem[1], stem[2] == 3 else {
    throw ConfigError("'\(OfficialName.kernel(OfficialName.stem))' has shape \(stem), expected [P, P, 3, C] (HWIO)")
  }
  let patch = stem[0], hidden = stem[3]
  var blocks = 0
  while shapes[OfficialName.kernel(OfficialName.join(OfficialName.mixerBlock(blocks), OfficialName.join(OfficialName.tokenMixing, OfficialName.dense0)))] != nil { blocks += 1 }
  let firstTokenKernel = OfficialName.kernel(OfficialName.join(OfficialName.mixerBlock(0), OfficialName.join(OfficialName.tokenMixing, OfficialName.dense0)))
  guard blocks > 0 else { throw ConfigError("no tensor '\(firstTokenKernel)' (not Mixer weights?)") }
  let token = try shape(firstTokenKernel, rank: 2)  // [S, D_S]
  let channel = try shape(OfficialName.kernel(OfficialName.join(OfficialName.mixerBlock(0), OfficialName.channelMixing, OfficialName.dense0)), rank: 2)  // [C, D_C]
  let head = try shape(OfficialName.kernel(OfficialName.head), rank: 2)  // [C, K]
  let tokens = token[0]

  let height: Int, width: Int
  if let size = imageSize {
    guard size.height > 0, size.width > 0, size.height % patch == 0, size.width % patch == 0,
      case (tokens, false) = (size.height / patch).multipliedReportingOverflow(by: size.width / patch)
    else {
      throw ConfigError(
        "image size \(size.height)x\(size.width) does not give the \(tokens) tokens of the weights at patch \(patch)")
    }
    (height, width) = (size.height, size.width)
  } else {
    let side = Int(Double(tokens).squareRoot().rounded())
    guard side * side == tokens else {
      throw ConfigError(
        "the weights have \(tokens) tokens, not a square grid: give the image size (mixer-dist import --image-height H --image-width W)")
    }
    (height, width) = (side * patch, side * patch)
  }
  let config = MixerConfig(
    imageHeight: height, imageWidth: width, patch: patch, hidden: hidden, blocks: blocks,
    tokensMLP: token[1], channelsMLP: channel[1], classes: head[1])
  try checkBuildable(config)
  let problems = shapeProblems(shapes, table: ParameterTable(config: config))
  if !problems.isEmpty {
    throw ConfigError("inconsistent Mixer weights: " + listed(problems))
  }
  return (config, presetName(matching: config))
}

/// The preset with the architecture of `config` (patch, C, blocks, D_S, D_C), whatever its
/// image size and number of classes; nil when none matches.
public func presetName(matching config: MixerConfig) -> String? {
  MixerPreset.names.first { name in
    guard let preset = try? MixerPreset.config(named: name) else { return false }
    return preset.patch == config.patch && preset.hidden == config.hidden && preset.blocks == config.blocks
      && preset.tokensMLP == config.tokensMLP && preset.channelsMLP == config.channelsMLP
  }
}

/// Every tensor of `table` that is missing or mis-shaped in `shapes`, then every extra one.
func shapeProblems(_ shapes: [String: [Int]], table: ParameterTable) -> [String] {
  var problems: [String] = []
  for view in table.views {
    guard let shape = shapes[view.name] else { problems.append("\(view.name) missing"); continue }
    if shape != view.shape { problems.append("\(view.name) \(shape) vs \(view.shape)") }
  }
  let extra = Set(shapes.keys).subtracting(table.views.map(\.name))
  return problems + extra.sorted().map { "\($0) not in the model" }
}

/// "N tensor(s): a; b; …" with at most 8 shown.
func listed(_ problems: [String]) -> String {
  "\(problems.count) tensor(s): " + problems.prefix(8).joined(separator: "; ") + (problems.count > 8 ? "; …" : "")
}

/// The parameter count of `config`, computed without overflow; throws unless the config is valid
/// and small enough to build (at most 2^16 blocks and 2^40 parameters). A file or a flag can say
/// anything, and `ParameterTable(config:)` traps on an overflowing shape and allocates a view per block.
@discardableResult
func checkBuildable(_ config: MixerConfig) throws -> Int {
  try config.validate()  // rejects models over 2^16 blocks or 2^40 parameters
  return config.parameterCount
}

// MARK: - Import and export of the official .npz

/// Reads a released `.npz` (`Mixer-B_16.npz`: official keys, float32) and infers its config and
/// preset (see `inferConfig`; `imageSize` is needed only for a non-square token grid).
public func importOfficialNPZ(
  _ url: URL, imageSize: (height: Int, width: Int)? = nil
) throws -> (config: MixerConfig, parameters: [String: NDArray], preset: String?) {
  var parameters: [String: NDArray] = [:]
  for (name, array) in try NPZ.read(contentsOf: url) {
    guard !array.elementType.isInteger else {
      throw CheckpointFormatError(url.lastPathComponent, "'\(name)' is an \(array.elementType) array, not weights")
    }
    parameters[name] = array.ndarray
  }
  do {
    let (config, preset) = try inferConfig(fromParameters: parameters.mapValues(\.shape), imageSize: imageSize)
    return (config, parameters, preset)
  } catch let error as ConfigError {
    throw ConfigError("\(url.lastPathComponent): \(error.description)")
  }
}

/// Writes `parameters` (exactly the tensors of `config`) as an official `.npz`: float32,
/// official keys in sorted order like the released files.
public func exportOfficialNPZ(config: MixerConfig, parameters: [String: NDArray], to url: URL) throws {
  let problems = shapeProblems(parameters.mapValues(\.shape), table: ParameterTable(config: config))
  guard problems.isEmpty else { throw ConfigError("cannot export: \(listed(problems))") }
  try NPZ.write(parameters.keys.sorted().map { ($0, parameters[$0]!) }, to: url)
}

/// Writes the parameters of `model` as an official `.npz`.
public func exportOfficialNPZ(model: MixerModel, to url: URL) throws {
  try exportOfficialNPZ(config: model.config, parameters: parameterArrays(of: model), to: url)
}

/// Writes the parameters of a checkpoint or weights folder (see `readParameterFolder`) as an
/// official `.npz`; returns the folder's config.
/// `weights: .ema`: the checkpoint's moving average of the parameters (`train --ema`).
@discardableResult
public func exportOfficialNPZ(
  from folder: URL, to url: URL, weights: WeightsChoice = .raw, log: (String) -> Void = { _ in }
) throws -> MixerConfig {
  let (config, parameters, _) = try readParameterFolder(folder, weights: weights, log: log)
  try exportOfficialNPZ(config: config, parameters: parameters, to: url)
  return config
}

/// Every parameter of `model` as a named array.
public func parameterArrays(of model: MixerModel) -> [String: NDArray] {
  var arrays: [String: NDArray] = [:]
  for view in model.table.views { arrays[view.name] = NDArray(shape: view.shape, data: model.parameters.array(view.range)) }
  return arrays
}

// MARK: - Weights folders

/// `model.json` of a weights folder written by `mixer-dist import`.
public struct WeightsManifest: FolderManifest, Equatable {
  public static let fileName = "model.json"
  public static let formatName = "mixer-dist-weights"
  public static let currentVersion = 1
  public static let folderKind = "mixer-dist weights folder"

  public var format: String
  public var version: Int
  public var config: MixerConfig
  /// the matching preset, if any
  public var preset: String?
  /// the file the weights came from
  public var source: String
  /// `params.safetensors` with its size and SHA-256
  public var files: [CheckpointFile]

  /// A model that can be built, and its parameters file listed.
  public func validateContents(source: String) throws {
    try checkBuildable(config)
    guard files.contains(where: { $0.name == "params.safetensors" }) else {
      throw CheckpointFormatError(source, "no params.safetensors")
    }
  }
}

/// Writes a weights folder: `params.safetensors` (official names, table order) and `model.json`.
public func writeWeightsFolder(
  config: MixerConfig, parameters: [String: NDArray], preset: String?, source: String, to folder: URL
) throws {
  let table = ParameterTable(config: config)
  let problems = shapeProblems(parameters.mapValues(\.shape), table: table)
  guard problems.isEmpty else { throw ConfigError("cannot write weights: \(listed(problems))") }
  let fileManager = FileManager.default
  guard !fileManager.fileExists(atPath: folder.appendingPathComponent("manifest.json").path) else {
    throw CheckpointError("\(folder.path) holds a training checkpoint; choose another output folder")
  }
  try fileManager.createDirectory(at: folder, withIntermediateDirectories: true)
  let (bytes, sha256) = try SafeTensors.write(
    table.views.map { ($0.name, parameters[$0.name]!) }, metadata: ["format": "mixer-dist", "source": source],
    to: folder.appendingPathComponent("params.safetensors"))
  let manifest = WeightsManifest(
    format: WeightsManifest.formatName, version: WeightsManifest.currentVersion, config: config, preset: preset,
    source: source, files: [.init(name: "params.safetensors", bytes: bytes, sha256: sha256)])
  try manifest.write(in: folder)
}

/// Reads the parameters of a folder, verifying every checksum: a checkpoint (`manifest.json`),
/// a weights folder (`model.json`), a `--checkpoint-dir` or a run folder (its newest valid
/// checkpoint, in `checkpoints/` for a run folder).
/// Returns the folder's config, its parameters (exactly the config's tensors) and a description.
/// `weights: .ema`: a checkpoint's moving average of the parameters (`train --ema`) instead; an
/// error for a folder without one.
public func readParameterFolder(
  _ folder: URL, weights: WeightsChoice = .raw, log: (String) -> Void = { _ in }
) throws -> (config: MixerConfig, parameters: [String: NDArray], description: String) {
  let fileManager = FileManager.default
  try refuseQuantizedCheckpoint(folder)
  let config: MixerConfig, description: String, checkpoint: URL
  if fileManager.fileExists(atPath: folder.appendingPathComponent(WeightsManifest.fileName).path) {
    let manifest = try WeightsManifest.read(from: folder)
    if weights == .ema {
      throw CheckpointError("\(folder.path) is a weights folder from `mixer-dist import`: it holds no EMA weights; use --weights raw")
    }
    (config, description, checkpoint) = (manifest.config, "weights imported from \(manifest.source)", folder)
  } else {
    let manifest: CheckpointManifest<ModelOnlyConfig>, url: URL
    if fileManager.fileExists(atPath: folder.appendingPathComponent("manifest.json").path) {
      (manifest, url) = (try verifyCheckpoint(folder, parametersOnly: true), folder)
    } else {
      // a run's --checkpoint-dir: its newest checkpoint whose parameters verify (no optimizer state needed)
      var skipped: [String] = []
      let note: (String) -> Void = { skipped.append(String($0.dropFirst($0.hasPrefix("mixer-dist: ") ? 12 : 0))) }
      guard let newest = try selectCheckpoint(resume: "auto", directory: folder, parametersOnly: true, log: note)
        ?? selectCheckpoint(resume: "auto", directory: folder.appendingPathComponent("checkpoints"), parametersOnly: true, log: note)
      else {
        if let first = skipped.first { throw CheckpointError("\(folder.path): no checkpoint here can be read: \(first)") }
        throw CheckpointError("\(folder.path): no checkpoint or weights here (no manifest.json, model.json or valid step-N folder)")
      }
      skipped.forEach(log)  // the newer ones that did not verify
      let manifestURL = newest.appendingPathComponent("manifest.json")
      (manifest, url) = (try CheckpointManifest<ModelOnlyConfig>.decode(Data(contentsOf: manifestURL), source: manifestURL.path), newest)
    }
    if weights == .ema {
      let table = ParameterTable(config: manifest.config.model)
      let values = try readAveragedParameters(url, manifest: manifest)
      var parameters: [String: NDArray] = [:]
      for view in table.views { parameters[view.name] = NDArray(shape: view.shape, data: Array(values[view.range])) }
      return (manifest.config.model, parameters, "the EMA weights of checkpoint \(url.path) (step \(manifest.step))")
    }
    (config, description, checkpoint) = (manifest.config.model, "checkpoint \(url.path) (step \(manifest.step))", url)
  }
  let paramsURL = checkpoint.appendingPathComponent("params.safetensors")
  let file = try SafeTensorsFile(contentsOf: paramsURL)
  let problems = shapeProblems(
    Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.shape) }), table: ParameterTable(config: config))
  guard problems.isEmpty else { throw CheckpointError("\(paramsURL.path) does not match its manifest: \(listed(problems))") }
  var parameters: [String: NDArray] = [:]
  for tensor in file.tensors { parameters[tensor.name] = NDArray(shape: tensor.shape, data: try file.floats(tensor.name)) }
  return (config, parameters, description)
}

// MARK: - Initialising a model

/// The config of a model fine-tuned at `imageHeight`×`imageWidth` from `base` (paper App. C):
/// the same patch, K times the base size along both sides for one integer K ≥ 1, and
/// D_S' = K²·D_S (the token-mixing weights become K² block-diagonal copies).
public func highResolutionConfig(_ base: MixerConfig, imageHeight: Int, imageWidth: Int) throws -> MixerConfig {
  try base.validate()
  let k = imageHeight / base.imageHeight
  guard k >= 1, imageHeight % base.imageHeight == 0, imageWidth % base.imageWidth == 0,
    imageWidth / base.imageWidth == k
  else {
    throw ConfigError(
      "\(imageHeight)x\(imageWidth) px is not K times the pre-training size \(base.imageHeight)x\(base.imageWidth) "
        + "along both sides for one integer K (needed to tile the token-mixing weights)")
  }
  var config = base
  config.imageHeight = imageHeight
  config.imageWidth = imageWidth
  let (square, overflow) = k.multipliedReportingOverflow(by: k)
  let (width, overflow2) = base.tokensMLP.multipliedReportingOverflow(by: square)
  guard !overflow, !overflow2 else { throw ConfigError("\(imageHeight)x\(imageWidth) px is too large") }
  config.tokensMLP = width
  try checkBuildable(config)
  return config
}

/// How the S tokens of a pre-trained model map onto the S' = K²·S tokens of a model at K times
/// the resolution: for each full-grid token t, its sub-image k and its position s in there.
struct TokenTiling {
  /// K: sub-images along each side
  let k: Int
  /// S and D_S of the pre-trained weights
  let tokens: Int, hidden: Int
  /// [S']: sub-image index k(t) and position s(t) of every full-grid token
  let subImage: [Int], position: [Int]

  /// The tiling from `tokens`×`hidden` weights to `model`; throws why it does not exist.
  init(model: MixerConfig, tokens: Int, hidden: Int) throws {
    let ratio = tokens > 0 && model.tokens % tokens == 0 ? model.tokens / tokens : 0
    let k = Int(Double(ratio).squareRoot().rounded())
    guard k >= 1, k * k == ratio, model.gridHeight % k == 0, model.gridWidth % k == 0 else {
      throw ConfigError(
        "the checkpoint has \(tokens) tokens and the model \(model.tokens) (\(model.gridHeight)x\(model.gridWidth) patches): "
          + "a higher resolution needs K times the patch grid along both sides (S' = K²·S)")
    }
    guard model.tokensMLP == k * k * hidden else {
      throw ConfigError(
        "at K = \(k) the model needs D_S = K²·\(hidden) = \(k * k * hidden), it has \(model.tokensMLP) "
          + "(build it with highResolutionConfig)")
    }
    let gh = model.gridHeight / k, gw = model.gridWidth / k
    var subImage: [Int] = [], position: [Int] = []
    for gy in 0..<model.gridHeight {
      for gx in 0..<model.gridWidth {
        subImage.append((gy / gh) * k + gx / gw)
        position.append((gy % gh) * gw + gx % gw)
      }
    }
    self.k = k
    self.tokens = tokens
    self.hidden = hidden
    self.subImage = subImage
    self.position = position
  }

  /// The widened tensor for a token-mixing parameter `name` (see the file header), or nil when
  /// `array` is not the pre-trained shape of that parameter.
  func widen(_ name: String, _ array: NDArray) -> NDArray? {
    let s = tokens, d = hidden, wide = k * k * hidden, all = subImage.count
    var out: [Float]
    if name.hasSuffix(OfficialName.kernel(OfficialName.join(OfficialName.tokenMixing, OfficialName.dense0))), array.shape == [s, d] {  // [S, D_S] → [S', K²·D_S]
      out = [Float](repeating: 0, count: all * wide)
      for t in 0..<all {
        for j in 0..<d { out[t * wide + subImage[t] * d + j] = array.data[position[t] * d + j] }
      }
      return NDArray(shape: [all, wide], data: out)
    }
    if name.hasSuffix(OfficialName.bias(OfficialName.join(OfficialName.tokenMixing, OfficialName.dense0))), array.shape == [d] {  // [D_S] → [K²·D_S]
      out = (0..<(k * k)).flatMap { _ in array.data }
      return NDArray(shape: [wide], data: out)
    }
    if name.hasSuffix(OfficialName.kernel(OfficialName.join(OfficialName.tokenMixing, OfficialName.dense1))), array.shape == [d, s] {  // [D_S, S] → [K²·D_S, S']
      out = [Float](repeating: 0, count: wide * all)
      for t in 0..<all {
        for j in 0..<d { out[(subImage[t] * d + j) * all + t] = array.data[j * s + position[t]] }
      }
      return NDArray(shape: [wide, all], data: out)
    }
    if name.hasSuffix(OfficialName.bias(OfficialName.join(OfficialName.tokenMixing, OfficialName.dense1))), array.shape == [s] {  // [S] → [S']
      return NDArray(shape: [all], data: position.map { array.data[$0] })
    }
    return nil
  }
}

/// Reads the parameters of `source`: an official `.npz`, or a folder (`readParameterFolder`).
/// The config is nil for an `.npz`, whose image size the weights do not fix.
public func readInitialParameters(
  from source: URL, log: (String) -> Void = { _ in }
) throws -> (config: MixerConfig?, parameters: [String: NDArray], description: String) {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory) else {
    throw CheckpointError("\(source.path): no such file or folder")
  }
  if isDirectory.boolValue {
    let (config, parameters, description) = try readParameterFolder(source, log: log)
    return (config, parameters, description)
  }
  var parameters: [String: NDArray] = [:]
  for (name, array) in try NPZ.read(contentsOf: source) { parameters[name] = array.ndarray }
  return (nil, parameters, source.lastPathComponent)
}

/// Loads `source` (checkpoint folder, weights folder, run checkpoint directory or official
/// `.npz`) into `model`, adapting as the official fine-tuning does (see the file header), and
/// logs every adaptation. Throws, leaving the model untouched, when the weights do not fit:
/// another patch size, width or depth, listing the mismatched tensors.
public func initializeModel(_ model: MixerModel, from source: URL, log: (String) -> Void) throws {
  let (config, parameters, description) = try readInitialParameters(from: source, log: log)
  try initializeModel(
    model, from: parameters, source: description,
    sourceGrid: config.map { ($0.gridHeight, $0.gridWidth) }, log: log)
}

/// Loads named `parameters` into `model` (see `initializeModel(_:from:log:)`). `sourceGrid`, when
/// known, is the patch grid the weights were trained on, checked against a resolution change.
public func initializeModel(
  _ model: MixerModel, from parameters: [String: NDArray], source: String,
  sourceGrid: (height: Int, width: Int)? = nil, log: (String) -> Void
) throws {
  let config = model.config
  // another number of classes: head/kernel [C, K'] and head/bias [K'] with the model's C (or
  // segmentation_head [C, P·P·K'] and [P·P·K']); another task: the other kind of head
  let headPrefix = config.head.scope + "/"
  let otherTasks = MixerTask.allCases.filter { $0 != config.task }
  var sourceClasses: Int?
  if let kernel = parameters[headPrefix + "kernel"], let bias = parameters[headPrefix + "bias"], kernel.shape.count == 2,
    kernel.shape[0] == config.hidden, bias.shape == [kernel.shape[1]]
  {
    sourceClasses = kernel.shape[1] / (config.headOutputs / config.classes)
  }
  let otherTask = sourceClasses == nil ? otherTasks.first { other in
    parameters[other.head.scope + "/kernel"].map { $0.shape.count == 2 && $0.shape[0] == config.hidden } == true
  } : nil
  let otherHeadPrefix = (otherTask?.head.scope ?? "") + "/"
  let resetHead = (sourceClasses != nil && sourceClasses != config.classes) || otherTask != nil
  // another resolution: the token count of the first block decides
  var tiling: TokenTiling?
  var tilingProblem: String?
  if let kernel = parameters[OfficialName.kernel(OfficialName.join(OfficialName.mixerBlock(0), OfficialName.join(OfficialName.tokenMixing, OfficialName.dense0)))], kernel.shape.count == 2,
    kernel.shape[0] != config.tokens
  {
    do {
      let candidate = try TokenTiling(model: config, tokens: kernel.shape[0], hidden: kernel.shape[1])
      if let grid = sourceGrid,
        grid.height * candidate.k != config.gridHeight || grid.width * candidate.k != config.gridWidth
      {
        throw ConfigError(
          "the checkpoint's \(grid.height)x\(grid.width) patch grid is not the model's \(config.gridHeight)x\(config.gridWidth) divided by K = \(candidate.k)")
      }
      tiling = candidate
    } catch let error as ConfigError {
      tilingProblem = error.description
    }
  }

  var values: [(view: ParameterView, data: [Float])] = []
  var problems: [String] = []
  var widened = 0
  for view in model.table.views {
    if view.name.hasPrefix(headPrefix), resetHead {
      values.append((view, [Float](repeating: 0, count: view.count)))
      continue
    }
    guard let array = parameters[view.name] else { problems.append("\(view.name) missing"); continue }
    if array.shape == view.shape {
      values.append((view, array.data))
    } else if view.name.contains("/\(OfficialName.tokenMixing)/"), let wide = tiling?.widen(view.name, array), wide.shape == view.shape {
      values.append((view, wide.data))
      widened += 1
    } else {
      problems.append("\(view.name) \(array.shape) vs model \(view.shape)")
    }
  }
  let extra = Set(parameters.keys).subtracting(model.table.views.map(\.name))
    .filter { !(otherTask != nil && $0.hasPrefix(otherHeadPrefix)) }
  problems += extra.sorted().map { "\($0) not in the model" }
  guard problems.isEmpty else {
    var hints: [String] = []
    if let stem = parameters[OfficialName.kernel(OfficialName.stem)]?.shape, stem.count == 4, stem != [config.patch, config.patch, 3, config.hidden] {
      hints.append("checkpoint patch \(stem[0]), C \(stem[3]); model patch \(config.patch), C \(config.hidden)")
    }
    if let tilingProblem { hints.append(tilingProblem) }
    throw ConfigError(
      "\(source) does not fit the model\(hints.isEmpty ? "" : " (" + hints.joined(separator: "; ") + ")"): "
        + listed(problems))
  }

  for (view, data) in values { model.parameters.copy(from: data, at: view.offset) }
  if resetHead, let sourceClasses {
    log("head re-initialised: checkpoint has \(sourceClasses) classes, model has \(config.classes)")
  }
  if let otherTask {
    log("\(config.task.rawValue) head initialised to zero: the checkpoint has a \(otherTask.rawValue) head, which is left out")
  }
  if let tiling, widened > 0 {
    log("token mixing widened to \(config.imageHeight)x\(config.imageWidth) px: K = \(tiling.k), "
      + "\(tiling.k * tiling.k) sub-images of \(tiling.tokens) tokens, D_S \(tiling.hidden) → \(config.tokensMLP) "
      + "(block-diagonal copies, paper App. C)")
  }
  log("initialised \(values.count) tensors from \(source)")
}
