// Whole-model gradient checks: the backward pass against central finite differences of the loss
// along random directions, with and without the training regularisers (stochastic depth and
// dropout; their masks are a pure function of (seed, step, example), so both sides of a
// difference see the same masks). Forward parity with the official model is tested on the
// reference fixtures in MixerTrainTests.

import XCTest
import MixerKernels
@testable import MixerModel

final class ModelGradientTests: XCTestCase {
  var config = MixerConfig(
    imageHeight: 8, imageWidth: 12, patch: 4, hidden: 20, blocks: 3, tokensMLP: 6,
    channelsMLP: 24, classes: 5, gelu: .tanh)
  let batch = 3

  func makeModel() throws -> (MixerModel, [Float], [Int32]) {
    let model = try MixerModel(config: config, seed: 3)
    var rng = CounterRNG(seed: 11)
    // non-trivial LayerNorm, biases and head so every path carries gradient
    for view in model.table.views where view.role != .kernel {
      for i in view.range { model.parameters[i] += Float(rng.normal() * 0.2) }
    }
    let images = (0..<(batch * 8 * 12 * 3)).map { _ in rng.uniform() * 2 - 1 }
    let labels: [Int32] = [1, 4, 0]
    return (model, images, labels)
  }

  /// Mean loss over the batch at the current parameters, as Double.
  func loss(_ model: MixerModel, _ acts: Activations, _ images: [Float], _ labels: [Int32], _ reg: Regularization?) -> Double {
    images.withUnsafeBufferPointer {
      model.forward(images: $0.baseAddress!, acts: acts, regularization: reg, sampleIDs: [10, 11, 12])
    }
    switch config.task {
    case .segmentation:
      // a class per pixel from the image's labels, every seventh pixel ignored
      let out = acts.head(SegmentationBuffers.self)
      let n = config.imageHeight * config.imageWidth
      for e in 0..<batch {
        for q in 0..<n { out.masks[e * n + q] = q % 7 == 3 ? -1 : Int32((Int(labels[e]) + q / 5) % config.classes) }
      }
      out.labelSmoothing = 0.1
    case .classification:
      labels.withUnsafeBufferPointer {
        smoothedOneHot(
          targets: acts.head(ClassificationBuffers.self).targets, labels: $0.baseAddress!, batch: batch,
          classes: config.classes, smoothing: 0.1)
      }
    }
    return model.loss(acts: acts) / Double(batch)
  }

  func checkDirectionalDerivatives(_ reg: Regularization?, file: StaticString = #filePath, line: UInt = #line) throws {
    let (model, images, labels) = try makeModel()
    let acts = Activations(config: config, batch: batch)
    _ = loss(model, acts, images, labels, reg)
    model.zeroGradients()
    model.backward(acts: acts, lossScale: 1 / Float(batch), regularization: reg)
    let gradient = model.gradients.array()
    let theta = model.parameters.array()
    var rng = CounterRNG(seed: 99)
    // along random directions, and along each named tensor alone
    var directions: [[Float]] = (0..<3).map { _ in theta.map { _ in Float(rng.normal()) } }
    for view in model.table.views.prefix(16) {
      var d = [Float](repeating: 0, count: theta.count)
      for i in view.range { d[i] = Float(rng.normal()) }
      directions.append(d)
    }
    for (n, raw) in directions.enumerated() {
      let norm = Float(raw.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
      let direction = raw.map { $0 / norm }  // unit length: a step of h stays in the linear regime
      let h: Float = 1e-2
      model.parameters.copy(from: zip(theta, direction).map { $0 + h * $1 })
      let plus = loss(model, acts, images, labels, reg)
      model.parameters.copy(from: zip(theta, direction).map { $0 - h * $1 })
      let minus = loss(model, acts, images, labels, reg)
      model.parameters.copy(from: theta)
      let numeric = (plus - minus) / (2 * Double(h))
      let analytic = zip(gradient, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
      let scale = max(abs(numeric), abs(analytic), 1e-3)
      XCTAssertLessThan(abs(numeric - analytic) / scale, 2e-2,
        "direction \(n): finite difference \(numeric) vs backward \(analytic)", file: file, line: line)
    }
  }

  func testBackwardMatchesFiniteDifferences() throws {
    try checkDirectionalDerivatives(nil)
  }

  /// The hybrid blocks of the architecture study (attention, token-grid conv, mixer+attention)
  /// mixed with the paper's block, with and without the regularisers.
  func testHybridBlocksBackwardMatchesFiniteDifferences() throws {
    config.blocks = 4
    config.blockKinds = [.attention, .mixer, .conv, .mixerAttention]
    config.attentionHeads = 2
    try checkDirectionalDerivatives(nil)
    try checkDirectionalDerivatives(Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2))
    let table = ParameterTable(config: config)
    XCTAssertNotNil(table["AttentionBlock_0/MultiHeadDotProductAttention_0/qkv/kernel"])
    XCTAssertEqual(table["ConvBlock_2/Conv_0/kernel"]?.shape, [3, 3, 20, 20])
    XCTAssertNotNil(table["MixerAttentionBlock_3/token_mixing/Dense_1/bias"])
    XCTAssertNotNil(table["MixerAttentionBlock_3/MultiHeadDotProductAttention_0/out/kernel"])
    XCTAssertNil(table["AttentionBlock_0/token_mixing/Dense_0/kernel"])
  }

  /// The CNN stem (two stride-2 3×3 convolutions for patch 4) in place of the linear one.
  func testCNNStemBackwardMatchesFiniteDifferences() throws {
    config.stem = .cnn
    config.blocks = 2
    try checkDirectionalDerivatives(nil)
    let table = ParameterTable(config: config)
    XCTAssertEqual(table["stem/Conv_0/kernel"]?.shape, [3, 3, 3, 10])
    XCTAssertEqual(table["stem/Conv_1/kernel"]?.shape, [3, 3, 10, 20])
    XCTAssertNil(table["stem/kernel"])
    config.patch = 3
    XCTAssertThrowsError(try config.validate())
  }

  /// The segmentation head (each token to its P×P×K patch of logits, pixel-wise cross-entropy with
  /// ignored pixels and label smoothing), on the paper's blocks and on a hybrid with the CNN stem.
  func testSegmentationHeadBackwardMatchesFiniteDifferences() throws {
    config.task = .segmentation
    try checkDirectionalDerivatives(nil)
    try checkDirectionalDerivatives(Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2))
    let table = ParameterTable(config: config)
    XCTAssertEqual(table["segmentation_head/kernel"]?.shape, [20, 4 * 4 * 5])
    XCTAssertEqual(table["segmentation_head/bias"]?.shape, [4 * 4 * 5])
    XCTAssertNil(table["head/kernel"])
    XCTAssertEqual(config.parameterCount, table.count)
    config.blocks = 2
    config.blockKinds = [.attention, .conv]
    config.attentionHeads = 2
    config.stem = .cnn
    try checkDirectionalDerivatives(nil)
  }

  /// The reassembled logits: pixel (y, x) of image b, class k, is output ((y mod P)·P + x mod P)·K + k
  /// of the head applied to token (y / P, x / P) of LN_pre(x_L).
  func testSegmentationLogitsAreTheHeadOfEachPixelsToken() throws {
    config.task = .segmentation
    let (model, images, labels) = try makeModel()
    let acts = Activations(config: config, batch: batch)
    _ = loss(model, acts, images, labels, nil)
    let p = config.patch, k = config.classes, c = config.hidden, w = config.imageWidth
    let n = config.headOutputs
    let kernel = model.parameter("segmentation_head/kernel")!, bias = model.parameter("segmentation_head/bias")!
    var worst = 0.0
    for e in 0..<batch {
      for y in 0..<config.imageHeight {
        for x in 0..<w {
          let token = (y / p) * config.gridWidth + x / p
          for cls in 0..<k {
            let j = ((y % p) * p + x % p) * k + cls
            var expected = Double(bias[j])
            for ch in 0..<c { expected += Double(acts.headNormOut[(token * batch + e) * c + ch]) * Double(kernel[ch * n + j]) }
            let got = Double(acts.head(SegmentationBuffers.self).pixelLogits[((e * config.imageHeight + y) * w + x) * k + cls])
            worst = max(worst, abs(got - expected) / max(1, abs(expected)))
          }
        }
      }
    }
    XCTAssertLessThan(worst, 1e-5)
  }

  func testBackwardWithStochasticDepthAndDropout() throws {
    let reg = Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2)
    try checkDirectionalDerivatives(reg)
  }

  /// Stochastic depth: a dropped block leaves its example unchanged; evaluation is identity.
  func testStochasticDepthDropsWholeBlocksPerExample() throws {
    let (model, images, labels) = try makeModel()
    let acts = Activations(config: config, batch: batch)
    let reg = Regularization(stochasticDepth: 0.9, dropout: 0, seed: 1, step: 0)
    _ = loss(model, acts, images, labels, reg)
    var dropped = 0
    for i in 0..<config.blocks {
      for e in 0..<batch where acts.keep[i][e] == 0 {
        dropped += 1
        for t in 0..<config.tokens {
          for c in 0..<config.hidden {
            let index = (t * batch + e) * config.hidden + c
            XCTAssertEqual(acts.stream[i + 1][index], acts.stream[i][index])
          }
        }
      }
      XCTAssertEqual(acts.keep[0][0], 1, "the first block is never dropped")
    }
    XCTAssertGreaterThan(dropped, 0)
    // the same masks for the same (seed, step, example) whatever the batch position
    let acts2 = Activations(config: config, batch: batch)
    images.withUnsafeBufferPointer {
      model.forward(images: $0.baseAddress!, acts: acts2, regularization: reg, sampleIDs: [10, 11, 12])
    }
    for i in 0..<config.blocks { for e in 0..<batch { XCTAssertEqual(acts.keep[i][e], acts2.keep[i][e]) } }
    // evaluation ignores the regularisers
    let evalLoss = loss(model, acts, images, labels, nil)
    let plain = Regularization(stochasticDepth: 0, dropout: 0, seed: 1, step: 0)
    XCTAssertEqual(evalLoss, loss(model, acts, images, labels, plain))
  }
}
