// CheckpointStoreTests.swift: checkpoints without MPI: a process that is alone saves with the
// store's default group (`SingleRankGroup`) and loads back the same parameters and moments; every
// saved folder kind is read through one manifest routine that verifies its files.

import Foundation
import MixerKernels
import MixerModel
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

/// Moments over the whole flat buffer, as one rank of an AdamW would hold them.
final class WholeMoments: ShardedOptimizerState {
  let kindName = "adamw"
  let range: Range<Int>
  let first: FlatBuffer, second: FlatBuffer
  init(count: Int) {
    range = 0..<count
    first = FlatBuffer(count: count)
    second = FlatBuffer(count: count)
  }
  var moments: [(name: String, buffer: FlatBuffer)] { [("m", first), ("v", second)] }
}

final class CheckpointStoreTests: XCTestCase {
  let config = MixerConfig(
    imageHeight: 16, imageWidth: 16, patch: 8, hidden: 8, blocks: 1, tokensMLP: 4, channelsMLP: 16, classes: 3)

  func testSaveAndLoadWithoutACommunicator() throws {
    let directory = try makeTemporaryDirectory(self)
    let model = try MixerModel(config: config, seed: 1)
    let optimizer = WholeMoments(count: model.table.count)
    for i in 0..<model.table.count {
      optimizer.first[i] = Float(i) * 0.5
      optimizer.second[i] = Float(i) * 0.25
    }
    let store = CheckpointStore<ModelOnlyConfig>(directory: directory)
    let folder = try store.save(
      step: 3, model: model, optimizer: optimizer, config: ModelOnlyConfig(model: config), zeroStage: 0,
      cursor: DataCursor(step: 3, epoch: 0, batchInEpoch: 3, samplesSeen: 48), keep: 0)
    XCTAssertEqual(folder.lastPathComponent, "step-00000003")
    let manifest = try verifyCheckpoint(folder)
    XCTAssertEqual(manifest.worldSize, 1)
    XCTAssertEqual(manifest.shards.map(\.file), ["optimizer-rank-00000.safetensors"])

    let other = try MixerModel(config: config, seed: 2)
    let loaded = WholeMoments(count: other.table.count)
    _ = try CheckpointStore<ModelOnlyConfig>.load(folder, into: other, optimizer: loaded)
    XCTAssertEqual(other.parameters.array(), model.parameters.array())
    XCTAssertEqual(loaded.first.array(), optimizer.first.array())
    XCTAssertEqual(loaded.second.array(), optimizer.second.array())
  }

  /// A weights folder (`model.json`) is read and verified by the same routine as a checkpoint:
  /// a damaged file is named, a missing manifest says which.
  func testEveryFolderKindVerifiesItsFiles() throws {
    let directory = try makeTemporaryDirectory(self)
    let model = try MixerModel(config: config, seed: 1)
    try writeWeightsFolder(
      config: config, parameters: parameterArrays(of: model), preset: nil, source: "test", to: directory)
    let manifest = try WeightsManifest.read(from: directory)
    XCTAssertEqual(manifest.files.map(\.name), ["params.safetensors"])
    XCTAssertEqual(try readParameterFolder(directory).config, config)
    let params = directory.appendingPathComponent("params.safetensors")
    let bytes = try Data(contentsOf: params)
    try flipping(bytes, bit: 8 * (bytes.count - 1)).write(to: params)
    XCTAssertThrowsError(try WeightsManifest.read(from: directory)) {
      XCTAssertTrue("\($0)".contains("params.safetensors: SHA-256 mismatch"), "\($0)")
    }
    XCTAssertThrowsError(try CheckpointManifest<ModelOnlyConfig>.read(from: directory)) {
      XCTAssertTrue("\($0)".contains("no manifest.json"), "\($0)")
    }
  }
}
