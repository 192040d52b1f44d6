// Parity with the official Flax model on every reference folder, and clear errors for folders
// that do not describe a model.

import MixerTestSupport
import XCTest
@testable import MixerCheckpoint
@testable import MixerTrain

final class ReferenceTests: XCTestCase {
  func testEveryReferenceFolderMatches() throws {
    let folders = referenceFolders
    XCTAssertGreaterThanOrEqual(folders.count, 2, "Tests/Fixtures/reference must hold the official tensors")
    for folder in folders {
      let report = try verifyReference(directory: folder.path)
      XCTAssertTrue(report.passed, "\(folder.lastPathComponent):\n\(report.text)")
      XCTAssertEqual(report.comparisons.count, 2 + (6 + 12 * report.config.blocks))
      let logits = report.comparisons[0]
      XCTAssertLessThan(logits.relativeError, 1e-5)
    }
  }

  /// Copies a reference folder and lets the test rewrite one file.
  func brokenCopy(_ change: (URL) throws -> Void) throws -> URL {
    let source = referenceFolders.first { $0.lastPathComponent == "mixer-tiny-tanh" }!
    let target = try makeTemporaryDirectory(self).appendingPathComponent("broken")
    try FileManager.default.copyItem(at: source, to: target)
    try change(target)
    return target
  }

  func testMissingTensorIsNamed() throws {
    let folder = try brokenCopy { dir in
      let url = dir.appendingPathComponent("params.npz")
      let arrays = try NPZ.read(contentsOf: url).filter { $0.name != "MixerBlock_1/LayerNorm_0/scale" }
      try FileManager.default.removeItem(at: url)
      try NPZ.write(arrays.map { ($0.name, $0.array.ndarray) }, to: url)
    }
    XCTAssertThrowsError(try verifyReference(directory: folder.path)) {
      XCTAssertTrue("\($0)".contains("MixerBlock_1/LayerNorm_0/scale missing"), "\($0)")
    }
  }

  func testMisshapedTensorIsNamed() throws {
    let folder = try brokenCopy { dir in
      let url = dir.appendingPathComponent("params.npz")
      var arrays = try NPZ.read(contentsOf: url).map { ($0.name, $0.array.ndarray) }
      let i = arrays.firstIndex { $0.0 == "head/kernel" }!
      arrays[i].1 = NDArray(shape: [10, 64], data: arrays[i].1.data)
      try FileManager.default.removeItem(at: url)
      try NPZ.write(arrays, to: url)
    }
    XCTAssertThrowsError(try verifyReference(directory: folder.path)) {
      XCTAssertTrue("\($0)".contains("head/kernel has shape [10, 64], expected [64, 10]"), "\($0)")
    }
  }

  func testMissingFolderAndBadConfig() throws {
    XCTAssertThrowsError(try verifyReference(directory: "/nonexistent/reference")) {
      XCTAssertTrue("\($0)".contains("is not a directory"), "\($0)")
    }
    let folder = try brokenCopy { dir in
      try Data(#"{"image_height": 30, "image_width": 32, "patch": 8, "hidden_dim": 64, "num_blocks": 2, "tokens_mlp_dim": 32, "channels_mlp_dim": 128, "num_classes": 10, "batch": 4}"#.utf8)
        .write(to: dir.appendingPathComponent("config.json"))
    }
    XCTAssertThrowsError(try verifyReference(directory: folder.path)) {
      XCTAssertTrue("\($0)".contains("not divisible by the patch size 8"), "\($0)")
    }
  }

  /// A gradient that is off by a little more than the tolerance fails the check.
  func testToleranceCanFail() {
    let reference: [Float] = [1, 2, 3, 4]
    XCTAssertTrue(compare("x", [1, 2, 3, 4.0001], reference, tolerance: 1e-4).passed)
    XCTAssertFalse(compare("x", [1, 2, 3, 4.01], reference, tolerance: 1e-4).passed)
    XCTAssertFalse(compare("b", [0, 2e-6], [0, 0], tolerance: 1e-6, absolute: true).passed)
  }
}
