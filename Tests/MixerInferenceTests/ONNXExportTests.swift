// ONNX export: onnx.checker accepts the file and ONNX Runtime gives our logits to 1e-4 on a
// batch (tools/onnx_compare.py), for both GELU forms; models the export does not cover are a
// one-line error. About 2 s (python start-up).

import Foundation
import MixerCheckpoint
import MixerInference
import MixerKernels
import MixerModel
import MixerTestSupport
import XCTest

/// The repository's root (this file is Tests/MixerInferenceTests/ONNXExportTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()

final class ONNXExportTests: XCTestCase {
  func testONNXRuntimeGivesOurLogits() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    for gelu in GELUKind.allCases {
      let (model, images) = try smallModel(seed: 4, gelu: gelu)
      let batch = 6
      let logits = trainingLogits(model, images, batch: batch)
      let onnx = folder.appendingPathComponent("model-\(gelu).onnx")
      try onnxModel(model).write(to: onnx)
      let inputs = folder.appendingPathComponent("inputs.npy"), expected = folder.appendingPathComponent("logits.npy")
      try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
      try NPY.write(NDArray(shape: [batch, model.config.classes], data: logits.map(Float.init)), to: expected)
      let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
      let run = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--tolerance", "1e-4"])
      XCTAssertEqual(run.status, 0, "\(gelu) GELU: \(run.output) \(run.errors)")
      XCTAssertTrue(run.output.contains("\"ok\": true"), run.output)
    }
  }

  func testExportRefusesModelsItDoesNotCover() throws {
    var config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 2, tokensMLP: 16, channelsMLP: 64, classes: 5)
    config.blockPattern = .uniform(.attention)
    XCTAssertThrowsError(try onnxModel(try MixerModel(config: config, seed: 1))) { error in
      XCTAssertEqual("\(error)", "ONNX export covers the paper's mixer blocks; this model has attention blocks")
    }
  }
}
