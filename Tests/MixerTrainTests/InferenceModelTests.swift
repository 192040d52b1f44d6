// Loading a model for inference: a quantized checkpoint run at --precision fp32 runs its
// dequantized weights, and the loader says so (and names the checkpoint it was made from).

import Foundation
import MixerInference
import MixerKernels
import MixerModel
import MixerTestSupport
import MixerTrain
import XCTest

final class InferenceModelTests: XCTestCase {
  func testQuantizedCheckpointAtFP32SaysItRunsDequantizedWeights() throws {
    let dir = try makeTemporaryDirectory(self)
    let config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 1, tokensMLP: 16, channelsMLP: 32, classes: 5)
    let model = try MixerModel(config: config, seed: 1)
    var settings: [String: LayerSetting] = [:]
    for layer in config.productLayers {
      settings[layer.name] = LayerSetting(precision: .int8, input: ActivationQuantization(low: -3, high: 3))
    }
    let folder = dir.appendingPathComponent("q")
    try writeQuantizedCheckpoint(
      model: model, settings: settings, config: TrainConfig(model: config), source: "/runs/a/step-00000010", step: 10,
      calibration: CalibrationRecord(method: .minMax, percentile: nil, samples: 8, data: "shapes"), to: folder)
    var notes: [String] = []
    let inference = try loadInferenceModel(folder.path, precision: .fp32, log: { notes.append($0) })
    XCTAssertEqual(inference.precisionSummary, "fp32")
    XCTAssertEqual(notes.count, 1, "\(notes)")
    XCTAssertTrue(notes.first?.contains("runs its dequantized weights") ?? false, "\(notes)")
    XCTAssertTrue(notes.first?.contains("/runs/a/step-00000010") ?? false, "\(notes)")
    XCTAssertFalse(notes.first?.contains("\n") ?? true)
  }
}
