// quantize measures a summary setting once: a setting that runs every product as an earlier one
// does (the chosen one with no product kept in bf16) copies its figures. `runTheSame` decides
// that, and must not confuse settings that compute differently.

import MixerInference
import MixerKernels
import MixerModel
@testable import MixerTrain
import XCTest

final class QuantizationTests: XCTestCase {
  func testSettingsRunTheSameOnlyWhenEveryProductComputesTheSame() {
    let config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 1, tokensMLP: 16, channelsMLP: 32, classes: 5)
    let layers = config.productLayers
    var wide: [String: ActivationQuantization] = [:], narrow: [String: ActivationQuantization] = [:]
    for layer in layers {
      wide[layer.name] = ActivationQuantization(low: -4, high: 4)
      narrow[layer.name] = ActivationQuantization(low: -2, high: 2)
    }
    let int8Wide = uniformSettings(layers, .int8, inputs: wide)
    XCTAssertTrue(runTheSame(int8Wide, uniformSettings(layers, .int8, inputs: wide)))
    XCTAssertFalse(runTheSame(int8Wide, uniformSettings(layers, .int8, inputs: narrow)), "other int8 ranges")
    XCTAssertFalse(runTheSame(int8Wide, uniformSettings(layers, .bf16, inputs: wide)), "other precision")
    // bf16 reads no range: the chosen settings keep one for a product kept in bf16
    XCTAssertTrue(runTheSame(uniformSettings(layers, .bf16, inputs: [:]), uniformSettings(layers, .bf16, inputs: narrow)))

    // one product moved to bf16, one range changed, one product missing, stored weights
    var oneBF16 = int8Wide
    oneBF16[layers[1].name]!.precision = .bf16
    XCTAssertFalse(runTheSame(int8Wide, oneBF16))
    var oneRange = int8Wide
    oneRange[layers.last!.name]!.input = narrow[layers.last!.name]
    XCTAssertFalse(runTheSame(int8Wide, oneRange))
    var missing = int8Wide
    missing[layers[0].name] = nil
    XCTAssertFalse(runTheSame(int8Wide, missing))
    XCTAssertFalse(runTheSame(missing, int8Wide))
    var stored = int8Wide
    stored[layers[0].name]!.weights = QuantizedWeights(values: [1], scales: [1])
    XCTAssertFalse(runTheSame(int8Wide, stored))
  }
}
