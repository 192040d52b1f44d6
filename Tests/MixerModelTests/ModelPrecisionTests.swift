// Mixed precision (bf16 products, fp32 everything else) against the fp32 model on the same
// parameters and batch, for every layer kind: the paper's block, attention, token-grid conv,
// mixer+attention, both stems, both heads, with and without the regularisers. Stated tolerances
// (‖bf16 − fp32‖ / ‖fp32‖): the loss 1e-2, the head's outputs 2e-2, the whole gradient vector 2e-2,
// each named tensor's gradient 6e-2 (of its norm, or of the whole gradient's RMS if larger; its own layer's backward through bf16 products of every later
// layer). Each check also asserts the bf16 run differs from fp32, so a silent fp32 fall-back fails.

import XCTest
@testable import MixerKernels
import MixerTestSupport
@testable import MixerModel

extension ModelGradientTests {
  /// Loss, head outputs and gradients of one forward/backward at the current parameters.
  func lossOutputsGradients(
    _ model: MixerModel, _ images: [Float], _ labels: [Int32], _ reg: Regularization?
  ) -> (Double, [Float], [Float]) {
    let acts = Activations(config: config, batch: batch)
    let value = loss(model, acts, images, labels, reg)
    let outputs: [Float]
    switch config.task {
    case .classification:
      outputs = Array(UnsafeBufferPointer(start: acts.head(ClassificationBuffers.self).logits, count: batch * config.classes))
    case .segmentation:
      let n = batch * config.imageHeight * config.imageWidth * config.classes
      outputs = Array(UnsafeBufferPointer(start: acts.head(SegmentationBuffers.self).pixelLogits, count: n))
    }
    model.zeroGradients()
    model.backward(acts: acts, lossScale: 1 / Float(batch), regularization: reg)
    return (value, outputs, model.gradients.array())
  }

  func checkBF16AgainstFP32(_ reg: Regularization?, file: StaticString = #filePath, line: UInt = #line) throws {
    let (model, images, labels) = try makeModel()
    // a non-zero head, so every gradient below it is non-trivial
    var rng = CounterRNG(seed: 21)
    let head = model.table.views.first { $0.role == .headKernel }!
    for i in head.range { model.parameters[i] = Float(rng.normal() * 0.3) }
    let (loss32, out32, grad32) = lossOutputsGradients(model, images, labels, reg)
    model.products = try Precision.bf16.makeProducts()
    let (loss16, out16, grad16) = lossOutputsGradients(model, images, labels, reg)
    XCTAssertLessThan(abs(loss16 - loss32) / abs(loss32), 1e-2, "loss \(loss16) vs \(loss32)", file: file, line: line)
    XCTAssertNotEqual(loss16, loss32, "the bf16 products were not used", file: file, line: line)
    assertClose(out16, out32, tolerance: 2e-2, file: file, line: line)
    assertClose(grad16, grad32, tolerance: 2e-2, file: file, line: line)
    let meanSquare = grad32.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(grad32.count)
    for view in model.table.views {
      let a = Array(grad16[view.range]), b = Array(grad32[view.range])
      var difference = 0.0, norm = 0.0
      for i in a.indices {
        difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
        norm += Double(b[i]) * Double(b[i])
      }
      // relative to the tensor's norm, or to the whole gradient's RMS when the tensor's is far
      // below it (the token-mixing output bias: every path from it ends in a LayerNorm, whose
      // input gradient sums to zero over channels, so its exact gradient is 0 and fp32 holds
      // rounding noise)
      let relative = (difference / max(norm, meanSquare * Double(view.count))).squareRoot()
      XCTAssertLessThan(relative, 6e-2, "\(view.name): relative gradient error \(relative)", file: file, line: line)
    }
  }

  func testBF16MatchesFP32OnThePapersModel() throws {
    try checkBF16AgainstFP32(nil)
    try checkBF16AgainstFP32(Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2))
  }

  func testBF16MatchesFP32OnHybridBlocksAndCNNStem() throws {
    config.blocks = 4
    config.blockKinds = [.attention, .mixer, .conv, .mixerAttention]
    config.attentionHeads = 2
    try checkBF16AgainstFP32(nil)
    config.stem = .cnn
    try checkBF16AgainstFP32(Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2))
  }

  func testBF16MatchesFP32WithTheSegmentationHead() throws {
    config.task = .segmentation
    try checkBF16AgainstFP32(nil)
    config.blocks = 2
    config.blockKinds = [.attention, .conv]
    config.attentionHeads = 2
    config.stem = .cnn
    try checkBF16AgainstFP32(nil)
  }

  /// Storing the MLPs' activations and gradients as bf16 operands (once, by the kernels that
  /// write them) gives bit for bit what rounding them per product gives, over two steps (so
  /// the storage of one forward does not leak into the next), with and without dropout (whose
  /// masks make the model round after the kernel), on every block kind.
  func checkStoredOperandsChangeNoBit(_ reg: Regularization?, file: StaticString = #filePath, line: UInt = #line) throws {
    let (model, images, labels) = try makeModel()
    _ = try Precision.bf16.makeProducts()  // the CPU check and the thread team
    func twoSteps(_ stores: Bool) -> [(Double, [Float], [Float])] {
      model.products = BF16Products(storesOperands: stores, keepsHiddenLayersInBF16: false)
      let saved = model.parameters.array()
      defer { for i in saved.indices { model.parameters[i] = saved[i] } }
      var results: [(Double, [Float], [Float])] = []
      for _ in 0..<2 {
        let result = lossOutputsGradients(model, images, labels, reg)
        results.append(result)
        for i in 0..<model.parameters.count { model.parameters[i] -= 0.5 * result.2[i] }
      }
      return results
    }
    let perProduct = twoSteps(false), stored = twoSteps(true)
    for (step, (a, b)) in zip(perProduct, stored).enumerated() {
      XCTAssertEqual(a.0, b.0, "loss, step \(step)", file: file, line: line)
      XCTAssertEqual(a.1, b.1, "outputs, step \(step)", file: file, line: line)
      XCTAssertEqual(a.2, b.2, "gradients, step \(step)", file: file, line: line)
    }
    XCTAssertNotEqual(perProduct[0].0, perProduct[1].0, "the second step did not change the model", file: file, line: line)
  }

  func testStoredBF16OperandsChangeNoBit() throws {
    try checkStoredOperandsChangeNoBit(nil)
    try checkStoredOperandsChangeNoBit(Regularization(stochasticDepth: 0.6, dropout: 0.2, seed: 5, step: 2))
    config.blocks = 4
    config.blockKinds = [.attention, .mixer, .conv, .mixerAttention]
    config.attentionHeads = 2
    try checkStoredOperandsChangeNoBit(nil)
  }
}
