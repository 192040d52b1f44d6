// ONNX export: onnx.checker accepts the file and ONNX Runtime gives our logits to 1e-4 on a
// batch (tools/onnx_compare.py), for both GELU forms; the int8 model in QDQ form gives our int8
// plan's logits (relative RMS, top-1 on every image); models the export does not cover are a
// one-line error. About 3 s (python start-up).

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

  /// The QDQ graph quantizes with our grids (same scales, zero points, int8 weights, rounding half
  /// to even), so it differs from our int8 plan only where a value lands on the other side of a
  /// rounding boundary (fp32 order of operations, oneDNN's GELU inside the product against Tanh
  /// nodes), one quantization step each. Its logits must therefore be much closer to our int8
  /// logits than those are to fp32: relative RMS at most a quarter of our int8 error against fp32
  /// (and at most 1e-2). A graph without the QDQ nodes, or with a scale on the wrong axis, would
  /// be at least our int8 error away.
  func testQuantizedExportGivesOurInt8Logits() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let (model, images) = try smallModel(seed: 4)
    let batch = 6
    let ranges = try calibrate(model: model, images: images, count: batch, method: .minMax)
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
    let ours = planLogits(try InferencePlan(model: model, settings: settings), images, batch: batch)
    let int8Error = relativeError(ours, trainingLogits(model, images, batch: batch))
    XCTAssertGreaterThan(int8Error, 0)
    let tolerance = min(1e-2, 0.25 * int8Error)

    let onnx = folder.appendingPathComponent("model-int8.onnx")
    try onnxModel(model, settings: settings).write(to: onnx)
    let inputs = folder.appendingPathComponent("inputs.npy"), expected = folder.appendingPathComponent("logits.npy")
    try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: ours), to: expected)
    let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
    let run = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--rms-tolerance", "\(tolerance)"])
    XCTAssertEqual(run.status, 0, "int8 QDQ (tolerance \(tolerance), our int8 error \(int8Error)): \(run.output) \(run.errors)")
    XCTAssertTrue(run.output.contains("\"ok\": true"), run.output)
    print("int8 QDQ in ONNX Runtime against our int8 plan: \(run.output) (our int8 against fp32: \(int8Error))")
    let nodes = try runPython([
      "-c", "import onnx, sys; g = onnx.load(sys.argv[1]).graph; print(sum(n.op_type == 'QuantizeLinear' for n in g.node))",
      onnx.path,
    ])
    XCTAssertEqual(nodes.output.trimmingCharacters(in: .whitespacesAndNewlines), "\(model.config.productLayers.count)", nodes.errors)
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
