// Presets and the parameter table: the paper's Table 1 totals, official names, validation.

import XCTest
@testable import MixerModel

final class PresetTests: XCTestCase {
  /// docs/architecture.md / the official code: parameter counts at 224 px with 1000 classes.
  func testTable1ParameterTotals() throws {
    let expected: [(String, Int)] = [
      ("S/32", 19_104_624), ("S/16", 18_528_264), ("B/32", 60_293_428), ("B/16", 59_880_472),
      ("L/32", 206_939_264), ("L/16", 208_196_168), ("H/14", 432_350_952),
    ]
    for (name, total) in expected {
      let config = try MixerPreset.config(named: name)
      XCTAssertEqual(ParameterTable(config: config).count, total, name)
      XCTAssertEqual(config.parameterCount, total, "formula for \(name)")
    }
  }

  func testOfficialNamesAndLayouts() throws {
    let table = ParameterTable(config: try MixerPreset.config(named: "S/16"))
    XCTAssertEqual(table["stem/kernel"]?.shape, [16, 16, 3, 512])
    XCTAssertEqual(table["MixerBlock_0/token_mixing/Dense_0/kernel"]?.shape, [196, 256])
    XCTAssertEqual(table["MixerBlock_7/token_mixing/Dense_1/kernel"]?.shape, [256, 196])
    XCTAssertEqual(table["MixerBlock_3/channel_mixing/Dense_0/kernel"]?.shape, [512, 2048])
    XCTAssertEqual(table["pre_head_layer_norm/scale"]?.shape, [512])
    XCTAssertEqual(table["head/kernel"]?.shape, [512, 1000])
    XCTAssertNil(table["MixerBlock_8/LayerNorm_0/scale"])
    // views tile the buffer in order with no gaps
    var offset = 0
    for view in table.views {
      XCTAssertEqual(view.offset, offset, view.name)
      offset += view.count
    }
    XCTAssertEqual(offset, table.count)
  }

  func testUnknownPresetAndBadShapesThrow() throws {
    XCTAssertThrowsError(try MixerPreset.config(named: "Z/9")) {
      XCTAssertTrue("\($0)".contains("unknown preset 'Z/9'"), "\($0)")
    }
    var config = try MixerPreset.config(named: "tiny")
    config.imageHeight = 30
    XCTAssertThrowsError(try config.validate()) {
      XCTAssertTrue("\($0)".contains("not divisible by the patch size 4"), "\($0)")
    }
    config = try MixerPreset.config(named: "tiny")
    config.blocks = 0
    XCTAssertThrowsError(try MixerModel(config: config, seed: 0))
  }

  func testPresetNamesAcceptUnderscore() throws {
    XCTAssertEqual(try MixerPreset.config(named: "b_16"), try MixerPreset.config(named: "B/16"))
  }

  /// Official initialisers: lecun-normal kernels (truncated at 2σ, std sqrt(1/fan_in)), zero
  /// biases and head kernel, unit LayerNorm scales.
  func testInitialisation() throws {
    let config = MixerConfig(
      imageHeight: 32, imageWidth: 32, patch: 4, hidden: 128, blocks: 2, tokensMLP: 64,
      channelsMLP: 256, classes: 10)
    let model = try MixerModel(config: config, seed: 7)
    for view in model.table.views {
      let values = model.parameter(view.name)!
      switch view.role {
      case .kernel:
        let n = Double(values.count)
        let mean = values.reduce(0.0) { $0 + Double($1) } / n
        let variance = values.reduce(0.0) { $0 + Double($1) * Double($1) } / n - mean * mean
        let std = 1 / Double(view.fanIn).squareRoot()
        XCTAssertEqual(variance.squareRoot(), std, accuracy: std * 0.05, view.name)
        let bound = Float(2 * std / 0.879_625_661_034_239_78) * 1.0001
        XCTAssertLessThanOrEqual(values.map(abs).max()!, bound, view.name)
      case .bias, .headKernel:
        XCTAssertTrue(values.allSatisfy { $0 == 0 }, view.name)
      case .scale:
        XCTAssertTrue(values.allSatisfy { $0 == 1 }, view.name)
      }
    }
    let again = try MixerModel(config: config, seed: 7)
    XCTAssertEqual(Array(model.parameters.bytes), Array(again.parameters.bytes))
    let other = try MixerModel(config: config, seed: 8)
    XCTAssertNotEqual(Array(model.parameters.bytes), Array(other.parameters.bytes))
  }
}
