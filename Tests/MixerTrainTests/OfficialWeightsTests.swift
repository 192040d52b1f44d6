// Official weights: config and preset inference from tensor shapes, .npz import → weights folder →
// .npz export bit for bit, initialisation with a re-initialised head, the higher-resolution
// widening of the token-mixing weights (paper App. C) checked tile by tile, and the errors for
// weights of another patch size or width.

import Foundation
import MixerTestSupport
import XCTest
@testable import MixerCheckpoint
import MixerDistributed
import MixerKernels
@testable import MixerModel
@testable import MixerTrain

final class OfficialWeightsTests: XCTestCase {
  var tinyTanh: URL { packageRoot.appendingPathComponent("Tests/Fixtures/reference/mixer-tiny-tanh") }

  func testImportInfersTheReferenceConfigs() throws {
    let (config, parameters, preset) = try importOfficialNPZ(tinyTanh.appendingPathComponent("params.npz"))
    XCTAssertEqual(
      config,
      MixerConfig(imageHeight: 32, imageWidth: 32, patch: 8, hidden: 64, blocks: 2, tokensMLP: 32, channelsMLP: 128, classes: 10))
    XCTAssertNil(preset)
    XCTAssertEqual(parameters.count, ParameterTable(config: config).views.count)

    for folder in referenceFolders {
      var (expected, _) = try readReferenceConfig(folder.appendingPathComponent("config.json"))
      expected.gelu = .tanh  // not stored in the weights
      let npz = folder.appendingPathComponent("params.npz")
      let size = (expected.imageHeight, expected.imageWidth)
      XCTAssertEqual(try importOfficialNPZ(npz, imageSize: size).config, expected, folder.lastPathComponent)
      if expected.gridHeight == expected.gridWidth {
        XCTAssertEqual(try importOfficialNPZ(npz).config, expected, folder.lastPathComponent)
      } else {
        XCTAssertThrowsError(try importOfficialNPZ(npz), folder.lastPathComponent) {
          XCTAssertTrue("\($0)".contains("not a square grid"), "\($0)")
        }
      }
      XCTAssertThrowsError(try importOfficialNPZ(npz, imageSize: (expected.imageHeight + expected.patch, expected.imageWidth))) {
        XCTAssertTrue("\($0)".contains("does not give the \(expected.tokens) tokens"), "\($0)")
      }
    }
  }

  func testPresetsAreRecognisedFromShapes() throws {
    for name in MixerPreset.names {
      let preset = try MixerPreset.config(named: name)
      let shapes = Dictionary(uniqueKeysWithValues: ParameterTable(config: preset).views.map { ($0.name, $0.shape) })
      let (config, found) = try inferConfig(fromParameters: shapes)
      XCTAssertEqual(found, name)
      XCTAssertEqual(config, preset, name)
    }
    // the ImageNet-21k release: S/32 shapes with a 21,843-class head, and B/16 fine-tuned at 384 px
    var s32 = try MixerPreset.config(named: "S/32")
    s32.classes = 21_843
    var shapes = Dictionary(uniqueKeysWithValues: ParameterTable(config: s32).views.map { ($0.name, $0.shape) })
    XCTAssertEqual(try inferConfig(fromParameters: shapes).preset, "S/32")
    XCTAssertEqual(try inferConfig(fromParameters: shapes).config.classes, 21_843)
    var b16 = try MixerPreset.config(named: "B/16")
    (b16.imageHeight, b16.imageWidth) = (384, 384)
    shapes = Dictionary(uniqueKeysWithValues: ParameterTable(config: b16).views.map { ($0.name, $0.shape) })
    XCTAssertEqual(try inferConfig(fromParameters: shapes).config, b16)
    XCTAssertEqual(try inferConfig(fromParameters: shapes).preset, "B/16")

    // inconsistent or incomplete weights: every bad tensor named
    shapes["MixerBlock_3/channel_mixing/Dense_1/kernel"] = [3072, 767]
    shapes["MixerBlock_5/LayerNorm_1/scale"] = nil
    shapes["extra/tensor"] = [1]
    XCTAssertThrowsError(try inferConfig(fromParameters: shapes)) {
      let message = "\($0)"
      for name in ["MixerBlock_3/channel_mixing/Dense_1/kernel [3072, 767] vs [3072, 768]",
                   "MixerBlock_5/LayerNorm_1/scale missing", "extra/tensor not in the model"] {
        XCTAssertTrue(message.contains(name), message)
      }
    }
    XCTAssertThrowsError(try inferConfig(fromParameters: ["head/kernel": [768, 10]])) {
      XCTAssertTrue("\($0)".contains("stem/kernel"), "\($0)")
    }
  }

  func testImportThenExportIsBitIdentical() throws {
    let dir = try makeTemporaryDirectory(self)
    let original = try NPZ.read(contentsOf: tinyTanh.appendingPathComponent("params.npz"))
    let (config, parameters, preset) = try importOfficialNPZ(tinyTanh.appendingPathComponent("params.npz"))
    let weights = dir.appendingPathComponent("weights")
    try writeWeightsFolder(config: config, parameters: parameters, preset: preset, source: "params.npz", to: weights)
    XCTAssertEqual(try readParameterFolder(weights).config, config)

    let exported = dir.appendingPathComponent("exported.npz")
    XCTAssertEqual(try exportOfficialNPZ(from: weights, to: exported), config)
    let back = try NPZ.read(contentsOf: exported)
    XCTAssertEqual(back.map(\.name), original.map(\.name), "names and their (sorted) order")
    for ((name, a), (_, b)) in zip(original, back) {
      XCTAssertEqual(b.elementType, .float32, name)
      XCTAssertEqual(a.shape, b.shape, name)
      XCTAssertEqual(a.floats().map(\.bitPattern), b.floats().map(\.bitPattern), name)
    }

    // a corrupt weights folder is refused
    let params = weights.appendingPathComponent("params.safetensors")
    var bytes = try Data(contentsOf: params)
    bytes[bytes.count - 1] ^= 1
    try bytes.write(to: params)
    XCTAssertThrowsError(try readParameterFolder(weights)) { XCTAssertTrue("\($0)".contains("corrupt"), "\($0)") }
  }

  func testWeightsFolderReproducesTheReferenceLogits() throws {
    let dir = try makeTemporaryDirectory(self)
    let (config, parameters, _) = try importOfficialNPZ(tinyTanh.appendingPathComponent("params.npz"))
    try writeWeightsFolder(config: config, parameters: parameters, preset: nil, source: "params.npz", to: dir)
    let model = try MixerModel(config: config, seed: 7)
    var messages: [String] = []
    try initializeModel(model, from: dir) { messages.append($0) }
    XCTAssertEqual(messages.count, 1, "\(messages)")
    XCTAssertTrue(messages[0].hasPrefix("initialised \(model.table.views.count) tensors"), "\(messages)")

    let batch = try NPZ.readFloats(contentsOf: tinyTanh.appendingPathComponent("batch.npz"))
    let images = batch["images"]!, reference = batch["logits"]!
    let acts = Activations(config: config, batch: images.shape[0])
    images.data.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
    let logits = Array(UnsafeBufferPointer(start: acts.head(ClassificationBuffers.self).logits, count: reference.data.count))
    assertClose(logits, reference.data, scaledTolerance: 1e-5, "logits")
  }

  func testOtherClassCountReinitialisesTheHead() throws {
    let npz = tinyTanh.appendingPathComponent("params.npz")
    let official = try NPZ.readFloats(contentsOf: npz)
    var config = try importOfficialNPZ(npz).config
    config.classes = 5
    let model = try MixerModel(config: config, seed: 3)
    model.parameters.fill(0.25)  // the head must be zeroed, whatever was there
    var messages: [String] = []
    try initializeModel(model, from: npz) { messages.append($0) }
    XCTAssertTrue(messages.contains("head re-initialised: checkpoint has 10 classes, model has 5"), "\(messages)")
    for view in model.table.views {
      if view.name.hasPrefix("head/") {
        XCTAssertEqual(model.parameter(view.name)!, [Float](repeating: 0, count: view.count), view.name)
      } else {
        XCTAssertEqual(model.parameter(view.name)!, official[view.name]!.data, view.name)
      }
    }
  }

  func testCheckpointFoldersInitialiseAModel() throws {
    let dir = try makeTemporaryDirectory(self)
    let config = MixerConfig(imageHeight: 16, imageWidth: 16, patch: 4, hidden: 8, blocks: 1, tokensMLP: 6, channelsMLP: 12, classes: 4)
    let source = try MixerModel(config: config, seed: 11)
    randomize(source, seed: 11)
    let optimizer = Optimizer(config: OptimizerConfig(), table: source.table)
    let store = CheckpointStore<TrainConfig>(directory: dir, comm: SingleProcessCommunicator())
    let cursor = DataCursor(step: 3, epoch: 0, batchInEpoch: 3, samplesSeen: 12)
    let folder = try store.save(step: 3, model: source, optimizer: optimizer, config: TrainConfig(model: config), zeroStage: 0, cursor: cursor, keep: 0)
    // the step folder itself, and the run's checkpoint directory (its newest valid checkpoint)
    for url in [folder, dir] {
      let model = try MixerModel(config: config, seed: 0)
      try initializeModel(model, from: url) { _ in }
      XCTAssertEqual(model.parameters.array(), source.parameters.array(), url.lastPathComponent)
    }
    // and exported from the checkpoint, it is the model's .npz
    let npz = dir.appendingPathComponent("model.npz")
    try exportOfficialNPZ(from: folder, to: npz)
    XCTAssertEqual(try NPZ.readFloats(contentsOf: npz), parameterArrays(of: source))
  }

  /// The criterion: on an image made of K×K tiles, the widened model's residual stream at
  /// the tokens of tile k equals the base model's stream on tile k alone, after every block; with
  /// K² equal tiles the logits are the base model's.
  func testHigherResolutionActsTileByTile() throws {
    for (height, width, k) in [(8, 8, 2), (8, 12, 3), (12, 8, 2)] {
      let dir = try makeTemporaryDirectory(self)
      let base = MixerConfig(
        imageHeight: height, imageWidth: width, patch: 4, hidden: 8, blocks: 2, tokensMLP: 6, channelsMLP: 16, classes: 3)
      let baseModel = try MixerModel(config: base, seed: 5)
      randomize(baseModel, seed: 5)
      let npz = dir.appendingPathComponent("base.npz")
      try exportOfficialNPZ(model: baseModel, to: npz)

      let high = try highResolutionConfig(base, imageHeight: k * height, imageWidth: k * width)
      XCTAssertEqual(high.tokensMLP, k * k * base.tokensMLP)
      XCTAssertEqual(high.tokens, k * k * base.tokens)
      let highModel = try MixerModel(config: high, seed: 6)
      var messages: [String] = []
      try initializeModel(highModel, from: npz) { messages.append($0) }
      XCTAssertTrue(messages.contains { $0.hasPrefix("token mixing widened") && $0.contains("K = \(k)") }, "\(messages)")

      for sameTiles in [false, true] {
        // K² tiles in sub-image order (row of tiles, then column), and the image they make
        var rng = CounterRNG(seed: 9, UInt64(k), sameTiles ? 1 : 0)
        let tileCount = k * k, tileLength = height * width * 3
        let first = (0..<tileLength).map { _ in rng.uniform() * 2 - 1 }
        let tiles: [[Float]] = (0..<tileCount).map { _ in sameTiles ? first : (0..<tileLength).map { _ in rng.uniform() * 2 - 1 } }
        var image = [Float](repeating: 0, count: tileCount * tileLength)
        for tile in 0..<tileCount {
          let (ty, tx) = (tile / k, tile % k)
          for y in 0..<height {
            for x in 0..<width {
              for channel in 0..<3 {
                image[((ty * height + y) * (k * width) + tx * width + x) * 3 + channel] = tiles[tile][(y * width + x) * 3 + channel]
              }
            }
          }
        }
        let baseActs = Activations(config: base, batch: tileCount)
        tiles.flatMap { $0 }.withUnsafeBufferPointer { baseModel.forward(images: $0.baseAddress!, acts: baseActs) }
        let highActs = Activations(config: high, batch: 1)
        image.withUnsafeBufferPointer { highModel.forward(images: $0.baseAddress!, acts: highActs) }

        // high-res token t = (gy, gx) ↔ tile (gy / gh, gx / gw), position (gy % gh, gx % gw)
        let c = base.hidden, gh = base.gridHeight, gw = base.gridWidth
        for i in 0...base.blocks {
          var expected: [Float] = [], actual: [Float] = []
          for gy in 0..<high.gridHeight {
            for gx in 0..<high.gridWidth {
              let t = gy * high.gridWidth + gx
              let tile = (gy / gh) * k + gx / gw, s = (gy % gh) * gw + gx % gw
              for channel in 0..<c {
                actual.append(highActs.stream[i][t * c + channel])  // [S', 1, C]
                expected.append(baseActs.stream[i][(s * tileCount + tile) * c + channel])  // [S, K², C]
              }
            }
          }
          assertClose(actual, expected, scaledTolerance: 1e-5, "\(height)x\(width) K=\(k): stream after block \(i)")
        }
        if sameTiles {
          let logits = Array(UnsafeBufferPointer(start: highActs.head(ClassificationBuffers.self).logits, count: base.classes))
          let baseLogits = Array(UnsafeBufferPointer(start: baseActs.head(ClassificationBuffers.self).logits, count: base.classes))
          assertClose(logits, baseLogits, scaledTolerance: 1e-5, "\(height)x\(width) K=\(k): logits")
        }
      }
    }
  }

  func testHigherResolutionConfigErrors() throws {
    let base = try MixerPreset.config(named: "B/16")
    XCTAssertEqual(try highResolutionConfig(base, imageHeight: 448, imageWidth: 448).tokensMLP, 4 * 384)
    XCTAssertEqual(try highResolutionConfig(base, imageHeight: 224, imageWidth: 224), base)
    for (h, w) in [(384, 384), (448, 224), (112, 112), (448, 672)] {
      XCTAssertThrowsError(try highResolutionConfig(base, imageHeight: h, imageWidth: w), "\(h)x\(w)") {
        XCTAssertTrue("\($0)".contains("not K times"), "\($0)")
      }
    }

    // a model at twice the size that was not widened (D_S unchanged): refused, naming why
    let small = MixerConfig(imageHeight: 8, imageWidth: 8, patch: 4, hidden: 8, blocks: 1, tokensMLP: 6, channelsMLP: 16, classes: 3)
    let source = parameterArrays(of: try MixerModel(config: small, seed: 1))
    var wrong = small
    (wrong.imageHeight, wrong.imageWidth) = (16, 16)
    let model = try MixerModel(config: wrong, seed: 2)
    let before = model.parameters.array()
    XCTAssertThrowsError(try initializeModel(model, from: source, source: "base", log: { _ in })) {
      let message = "\($0)"
      XCTAssertTrue(message.contains("D_S = K²·6 = 24"), message)
      XCTAssertTrue(message.contains("MixerBlock_0/token_mixing/Dense_0/kernel [4, 6] vs model [16, 6]"), message)
    }
    // 12x8 px is not K times 8x8 along both sides
    var skewed = small
    skewed.imageHeight = 16
    skewed.tokensMLP = 12
    XCTAssertThrowsError(try initializeModel(try MixerModel(config: skewed, seed: 2), from: source, source: "base", log: { _ in })) {
      XCTAssertTrue("\($0)".contains("K times the patch grid"), "\($0)")
    }
    // a known source grid that does not tile the model's: 1x4 patches cannot become 4x4 at K = 2
    let high = try highResolutionConfig(small, imageHeight: 16, imageWidth: 16)
    XCTAssertThrowsError(try initializeModel(try MixerModel(config: high, seed: 2), from: source, source: "base", sourceGrid: (1, 4), log: { _ in })) {
      XCTAssertTrue("\($0)".contains("1x4 patch grid"), "\($0)")
    }
    XCTAssertEqual(model.parameters.array(), before, "a refused initialisation leaves the model untouched")
  }

  func testAbsurdSizesAreErrorsNotTraps() throws {
    for name in MixerPreset.names {
      let preset = try MixerPreset.config(named: name)
      XCTAssertEqual(try checkBuildable(preset), preset.parameterCount, name)
    }
    let base = try MixerPreset.config(named: "S/32")
    var huge: [MixerConfig] = []
    for change in [
      { (c: inout MixerConfig) in c.blocks = 302_147_483_648 },
      { (c: inout MixerConfig) in (c.patch, c.imageHeight, c.imageWidth) = (1, 1 << 62, 1 << 62) },
      { (c: inout MixerConfig) in c.tokensMLP = Int.max },
      { (c: inout MixerConfig) in c.hidden = 1 << 40 },
    ] {
      var config = base
      change(&config)
      huge.append(config)
      XCTAssertThrowsError(try checkBuildable(config)) { XCTAssertTrue("\($0)".contains("too large to build"), "\($0)") }
    }
    XCTAssertThrowsError(try highResolutionConfig(base, imageHeight: 224 << 40, imageWidth: 224 << 40))
    XCTAssertThrowsError(try inferConfig(fromParameters: ["stem/kernel": [32, 32, 3, 512]], imageSize: (1 << 62, 1 << 62)))

    // a weights folder whose model.json claims an absurd model is refused before any table is built
    let dir = try makeTemporaryDirectory(self)
    let (config, parameters, _) = try importOfficialNPZ(tinyTanh.appendingPathComponent("params.npz"))
    try writeWeightsFolder(config: config, parameters: parameters, preset: nil, source: "params.npz", to: dir)
    let manifestURL = dir.appendingPathComponent("model.json")
    var manifest = try JSONDecoder().decode(WeightsManifest.self, from: Data(contentsOf: manifestURL))
    for absurd in huge {
      manifest.config = absurd
      try JSONEncoder().encode(manifest).write(to: manifestURL)
      XCTAssertThrowsError(try readParameterFolder(dir)) { XCTAssertTrue("\($0)".contains("too large to build"), "\($0)") }
    }
  }

  func testOtherPatchOrWidthIsRejectedNamingTheTensors() throws {
    let npz = tinyTanh.appendingPathComponent("params.npz")
    let config = try importOfficialNPZ(npz).config
    var otherPatch = config
    otherPatch.patch = 4
    var otherWidth = config
    otherWidth.hidden = 32
    var otherDepth = config
    otherDepth.blocks = 1
    let cases: [(MixerConfig, [String])] = [
      (otherPatch, ["checkpoint patch 8, C 64; model patch 4, C 64", "stem/kernel [8, 8, 3, 64] vs model [4, 4, 3, 64]"]),
      (otherWidth, ["checkpoint patch 8, C 64; model patch 8, C 32", "stem/kernel [8, 8, 3, 64] vs model [8, 8, 3, 32]",
                    "MixerBlock_0/LayerNorm_0/scale [64] vs model [32]"]),
      (otherDepth, ["MixerBlock_1/LayerNorm_0/bias not in the model"]),
    ]
    for (modelConfig, expected) in cases {
      let model = try MixerModel(config: modelConfig, seed: 4)
      let before = model.parameters.array()
      XCTAssertThrowsError(try initializeModel(model, from: npz) { _ in }) {
        let message = "\($0)"
        XCTAssertTrue(message.hasPrefix("params.npz does not fit the model"), message)
        for text in expected { XCTAssertTrue(message.contains(text), "missing '\(text)' in: \(message)") }
      }
      XCTAssertEqual(model.parameters.array(), before)
    }
  }

  // MARK: helpers

  /// Non-trivial values everywhere: kernels keep their lecun-normal draw, biases and the head
  /// become random, LayerNorm scales 1 ± 0.3.
  func randomize(_ model: MixerModel, seed: UInt64) {
    var rng = CounterRNG(seed: seed, 77)
    for view in model.table.views {
      for j in view.range {
        switch view.role {
        case .kernel: continue
        case .headKernel: model.parameters[j] = rng.uniform() - 0.5
        case .bias: model.parameters[j] = (rng.uniform() - 0.5) * 0.4
        case .scale: model.parameters[j] = 1 + (rng.uniform() - 0.5) * 0.6
        }
      }
    }
  }
}
