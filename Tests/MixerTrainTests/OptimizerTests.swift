// Optimizers, schedules and clipping, each against a step computed by hand.

import XCTest
import MixerKernels
import MixerModel
@testable import MixerTrain

final class OptimizerTests: XCTestCase {
  /// 1 block, tiny widths: kernels decay, biases/scales do not.
  let config = MixerConfig(
    imageHeight: 4, imageWidth: 4, patch: 2, hidden: 2, blocks: 1, tokensMLP: 2, channelsMLP: 2,
    classes: 2)

  func testAdamWTwoStepsByHand() throws {
    let table = ParameterTable(config: config)
    var options = OptimizerConfig()
    options.weightDecay = 0.1
    let optimizer = Optimizer(config: options, table: table)
    let n = table.count
    let params = FlatBuffer((0..<n).map { Float($0 % 7) * 0.1 - 0.3 })
    let start = params.array()
    let grads1 = (0..<n).map { Float($0 % 5) * 0.2 - 0.4 }
    let grads2 = (0..<n).map { Float($0 % 3) * -0.3 + 0.25 }
    let lr: Float = 0.01
    let g1 = FlatBuffer(grads1), g2 = FlatBuffer(grads2)
    optimizer.update(parameters: params.pointer, gradients: g1.pointer, lr: lr, step: 1)
    optimizer.update(parameters: params.pointer, gradients: g2.pointer, lr: lr, step: 2)
    withExtendedLifetime((g1, g2)) {}
    for view in table.views {
      for i in view.range {
        // by hand, in Double
        var p = Double(start[i]), m = 0.0, v = 0.0
        let wd = view.decays ? 0.1 : 0.0
        for (t, g) in [(1, Double(grads1[i])), (2, Double(grads2[i]))] {
          m = 0.9 * m + 0.1 * g
          v = 0.999 * v + 0.001 * g * g
          let mHat = m / (1 - pow(0.9, Double(t)))
          let vHat = v / (1 - pow(0.999, Double(t)))
          p -= Double(lr) * (mHat / (vHat.squareRoot() + 1e-8) + wd * p)
        }
        XCTAssertEqual(Double(params[i]), p, accuracy: 1e-6, "\(view.name)[\(i - view.offset)]")
      }
    }
  }

  func testWeightDecayOnlyOnKernels() throws {
    let table = ParameterTable(config: config)
    var options = OptimizerConfig()
    options.weightDecay = 0.5
    let optimizer = Optimizer(config: options, table: table)
    let params = FlatBuffer(count: table.count, repeating: 1)
    let zero = FlatBuffer(count: table.count)
    optimizer.update(parameters: params.pointer, gradients: zero.pointer, lr: 0.1, step: 1)
    for view in table.views {
      let expected: Float = view.decays ? 1 - 0.1 * 0.5 : 1
      for i in view.range { XCTAssertEqual(params[i], expected, accuracy: 1e-7, view.name) }
    }
    XCTAssertTrue(table["head/kernel"]!.decays)
    XCTAssertFalse(table["MixerBlock_0/LayerNorm_0/scale"]!.decays)
    XCTAssertFalse(table["stem/bias"]!.decays)
  }

  func testSGDMomentumByHand() throws {
    let table = ParameterTable(config: config)
    var options = OptimizerConfig()
    options.kind = .sgd
    options.momentum = 0.9
    options.weightDecay = 0
    let optimizer = Optimizer(config: options, table: table)
    XCTAssertEqual(optimizer.secondMoment.count, 0)
    let params = FlatBuffer(count: table.count, repeating: 0.5)
    let g = FlatBuffer(count: table.count, repeating: 0.2)
    optimizer.update(parameters: params.pointer, gradients: g.pointer, lr: 0.1, step: 1)
    optimizer.update(parameters: params.pointer, gradients: g.pointer, lr: 0.1, step: 2)
    // m1 = 0.2, p1 = 0.5 - 0.02; m2 = 0.9·0.2 + 0.2 = 0.38, p2 = p1 - 0.038
    for i in 0..<table.count { XCTAssertEqual(params[i], 0.5 - 0.02 - 0.038, accuracy: 1e-6) }
  }

  /// An optimizer over a shard (ZeRO-1) does exactly what the full one does on that range.
  func testShardedOptimizerMatchesFull() throws {
    let table = ParameterTable(config: config)
    let full = Optimizer(config: OptimizerConfig(), table: table)
    let pFull = FlatBuffer((0..<table.count).map { Float($0) * 0.01 })
    let g = FlatBuffer((0..<table.count).map { Float($0 % 4) - 1.5 })
    let pShard = FlatBuffer(pFull.array())
    let shards = [0..<13, 13..<table.count]
    let parts = shards.map { Optimizer(config: OptimizerConfig(), table: table, range: $0) }
    for step in 1...3 {
      full.update(parameters: pFull.pointer, gradients: g.pointer, lr: 0.1, step: step)
      for part in parts { part.update(parameters: pShard.pointer, gradients: g.pointer, lr: 0.1, step: step) }
    }
    XCTAssertEqual(pFull.array(), pShard.array())
    XCTAssertEqual(parts[0].stateCount + parts[1].stateCount, full.stateCount)
  }

  /// The update is elementwise and split over the kernel threads for large segments: AdamW and
  /// SGD give the same bits on 1 and 3 threads (on a model with kernels above the split size).
  func testUpdateIsTheSameOnAnyThreadCount() throws {
    defer { KernelThreads.count = 1 }
    let wide = MixerConfig(
      imageHeight: 8, imageWidth: 8, patch: 2, hidden: 96, blocks: 1, tokensMLP: 16, channelsMLP: 768, classes: 3)
    let table = ParameterTable(config: wide)
    XCTAssertGreaterThan(table["MixerBlock_0/channel_mixing/Dense_0/kernel"]?.range.count ?? 0, 65_536)
    for kind in OptimizerKind.allCases {
      var results: [[Float]] = []
      for threads in [1, 3] {
        KernelThreads.count = threads
        var options = OptimizerConfig()
        options.kind = kind
        let optimizer = Optimizer(config: options, table: table)
        let p = FlatBuffer((0..<table.count).map { Float($0 % 11) * 0.01 - 0.05 })
        let g = FlatBuffer((0..<table.count).map { Float(($0 * 7) % 13) * 0.1 - 0.6 })
        for step in 1...3 { optimizer.update(parameters: p.pointer, gradients: g.pointer, lr: 0.1, step: step) }
        results.append(p.array() + optimizer.moments.flatMap { $0.buffer.array() })
      }
      XCTAssertEqual(results[0], results[1], kind.rawValue)
      XCTAssertNotEqual(results[0][0], -0.05, kind.rawValue)
    }
  }

  func testScheduleWarmupCosineLinear() {
    let cosine = Schedule(baseLR: 1, warmupSteps: 4, totalSteps: 14, decay: .cosine)
    XCTAssertEqual(cosine.learningRate(step: 0), 0.25)
    XCTAssertEqual(cosine.learningRate(step: 3), 1)
    XCTAssertEqual(cosine.learningRate(step: 4), 1)
    XCTAssertEqual(cosine.learningRate(step: 9), 0.5, accuracy: 1e-6)  // halfway through decay
    XCTAssertEqual(cosine.learningRate(step: 14), 0, accuracy: 1e-7)
    let linear = Schedule(baseLR: 2, warmupSteps: 0, totalSteps: 10, decay: .linear)
    XCTAssertEqual(linear.learningRate(step: 0), 2)
    XCTAssertEqual(linear.learningRate(step: 5), 1, accuracy: 1e-6)
    let constant = Schedule(baseLR: 3, warmupSteps: 2, totalSteps: 10, decay: .constant)
    XCTAssertEqual(constant.learningRate(step: 1), 3)
    XCTAssertEqual(constant.learningRate(step: 8), 3)
  }

  func testClipByGlobalNorm() {
    let x = FlatBuffer([3, 4, 0, 0])
    let norm = sumOfSquares(x.pointer, range: 0..<4).squareRoot()
    XCTAssertEqual(norm, 5)
    XCTAssertEqual(clipByGlobalNorm(x.pointer, range: 0..<4, norm: norm, maxNorm: 1), 0.2)
    XCTAssertEqual(x.array(), [0.6, 0.8, 0, 0])
    XCTAssertEqual(clipByGlobalNorm(x.pointer, range: 0..<4, norm: 1, maxNorm: 1), 1, "at the limit: unchanged")
  }

  func testLabelSmoothingTargets() {
    var targets = [Float](repeating: -1, count: 8)
    let labels: [Int32] = [1, 3]
    targets.withUnsafeMutableBufferPointer { t in
      labels.withUnsafeBufferPointer {
        smoothedOneHot(targets: t.baseAddress!, labels: $0.baseAddress!, batch: 2, classes: 4, smoothing: 0.2)
      }
    }
    XCTAssertEqual(targets, [0.05, 0.85, 0.05, 0.05, 0.05, 0.05, 0.05, 0.85])
  }
}
