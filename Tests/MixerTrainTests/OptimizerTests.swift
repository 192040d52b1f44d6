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

  /// big_vision's chain by hand for two steps, in Double: u = s_t·(lr·adam + wd·p) on kernels,
  /// s_t·lr·adam elsewhere; p −= u. Our update gets lr_t = lr·s_t and s_t.
  func testAdamTwoStepsByHand() throws {
    let table = ParameterTable(config: config)
    var options = OptimizerConfig()
    options.kind = .adam
    options.weightDecay = 0.1
    let optimizer = Optimizer(config: options, table: table)
    XCTAssertEqual(optimizer.secondMoment.count, table.count, "Adam keeps both moments")
    let n = table.count
    let params = FlatBuffer((0..<n).map { Float($0 % 7) * 0.1 - 0.3 })
    let start = params.array()
    let grads1 = (0..<n).map { Float($0 % 5) * 0.2 - 0.4 }
    let grads2 = (0..<n).map { Float($0 % 3) * -0.3 + 0.25 }
    let lr = 0.01, factors = [0.5, 0.25]
    let g1 = FlatBuffer(grads1), g2 = FlatBuffer(grads2)
    for (t, g) in [g1, g2].enumerated() {
      optimizer.update(
        parameters: params.pointer, gradients: g.pointer, lr: Float(lr * factors[t]), step: t + 1,
        scheduleFactor: Float(factors[t]))
    }
    withExtendedLifetime((g1, g2)) {}
    for view in table.views {
      for i in view.range {
        var p = Double(start[i]), m = 0.0, v = 0.0
        let wd = view.decays ? 0.1 : 0.0
        for (t, g) in [(1, Double(grads1[i])), (2, Double(grads2[i]))] {
          m = 0.9 * m + 0.1 * g
          v = 0.999 * v + 0.001 * g * g
          let adam = (m / (1 - pow(0.9, Double(t)))) / ((v / (1 - pow(0.999, Double(t)))).squareRoot() + 1e-8)
          p -= factors[t - 1] * (lr * adam + wd * p)
        }
        XCTAssertEqual(Double(params[i]), p, accuracy: 1e-6, "\(view.name)[\(i - view.offset)]")
      }
    }
  }

  /// adam's decay follows the schedule, not lr: with zero gradients a kernel shrinks by s_t·wd
  /// whatever lr is, where adamw's shrinks by lr_t·wd.
  func testAdamDecayIsScaledByTheScheduleNotByLR() throws {
    let table = ParameterTable(config: config)
    for (kind, expected) in [(OptimizerKind.adam, Float(1 - 0.5 * 0.1)), (.adamw, Float(1 - 0.005 * 0.1))] {
      var options = OptimizerConfig()
      options.kind = kind
      options.weightDecay = 0.1
      let optimizer = Optimizer(config: options, table: table)
      let params = FlatBuffer(count: table.count, repeating: 1)
      let zero = FlatBuffer(count: table.count)
      // lr 0.01 at half of the schedule: lr_t 0.005, s_t 0.5
      optimizer.update(parameters: params.pointer, gradients: zero.pointer, lr: 0.005, step: 1, scheduleFactor: 0.5)
      let kernel = table["head/kernel"]!, bias = table["head/bias"]!
      XCTAssertEqual(params[kernel.offset], expected, accuracy: 1e-7, kind.rawValue)
      XCTAssertEqual(params[bias.offset], 1, kind.rawValue)
    }
  }

  /// adamw and sgd ignore the schedule factor: the same bits with or without it.
  func testScheduleFactorLeavesAdamWAndSGDAlone() throws {
    let table = ParameterTable(config: config)
    for kind in [OptimizerKind.adamw, .sgd] {
      var results: [[Float]] = []
      for factor: Float in [1, 0.3] {
        var options = OptimizerConfig()
        options.kind = kind
        let optimizer = Optimizer(config: options, table: table)
        let p = FlatBuffer((0..<table.count).map { Float($0 % 11) * 0.01 - 0.05 })
        let g = FlatBuffer((0..<table.count).map { Float(($0 * 7) % 13) * 0.1 - 0.6 })
        for step in 1...2 {
          optimizer.update(parameters: p.pointer, gradients: g.pointer, lr: 0.1, step: step, scheduleFactor: factor)
        }
        results.append(p.array())
      }
      XCTAssertEqual(results[0], results[1], kind.rawValue)
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

  /// An optimizer over a shard (ZeRO-1) does exactly what the full one does on that range, for
  /// every update rule.
  func testShardedOptimizerMatchesFull() throws {
    let table = ParameterTable(config: config)
    for kind in OptimizerKind.allCases {
      var options = OptimizerConfig()
      options.kind = kind
      let full = Optimizer(config: options, table: table)
      let pFull = FlatBuffer((0..<table.count).map { Float($0) * 0.01 })
      let g = FlatBuffer((0..<table.count).map { Float($0 % 4) - 1.5 })
      let pShard = FlatBuffer(pFull.array())
      let shards = [0..<13, 13..<table.count]
      let parts = shards.map { Optimizer(config: options, table: table, range: $0) }
      for step in 1...3 {
        let factor = Float(step) / 4
        full.update(parameters: pFull.pointer, gradients: g.pointer, lr: 0.1 * factor, step: step, scheduleFactor: factor)
        for part in parts {
          part.update(parameters: pShard.pointer, gradients: g.pointer, lr: 0.1 * factor, step: step, scheduleFactor: factor)
        }
      }
      XCTAssertEqual(pFull.array(), pShard.array(), kind.rawValue)
      XCTAssertEqual(parts[0].stateCount + parts[1].stateCount, full.stateCount, kind.rawValue)
      XCTAssertEqual(
        parts.flatMap { $0.moments.flatMap { $0.buffer.array() } }.count, full.moments.flatMap { $0.buffer.array() }.count)
    }
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

  /// The schedule as big_vision's `create_learning_rate_schedule` computes it (base 1, linear,
  /// warm-up W, linear_end e), value by value: progress = clip((t − W)/(T − W), 0, 1),
  /// (e + (1 − e)(1 − progress))·min(1, t/W); `--lr-end` is lr·e.
  func testScheduleMatchesBigVisionFormula() {
    let lr: Float = 0.002, end = 0.1, warmup = 4, total = 14
    let schedule = Schedule(
      baseLR: lr, warmupSteps: warmup, totalSteps: total, decay: .linear, endLR: lr * Float(end), warmupFromZero: true)
    for t in 0..<(total + 3) {
      let progress = min(max(Double(t - warmup) / Double(total - warmup), 0), 1)
      let bigVision = (end + (1 - end) * (1 - progress)) * min(1, Double(t) / Double(warmup))
      XCTAssertEqual(schedule.factor(step: t), bigVision, accuracy: 1e-7, "step \(t)")
      XCTAssertEqual(Double(schedule.learningRate(step: t)), Double(lr) * bigVision, accuracy: 1e-9, "step \(t)")
    }
    // hand-picked values: the first update at rate 0, W at the peak, the end value after T
    XCTAssertEqual(schedule.factor(step: 0), 0)
    XCTAssertEqual(schedule.factor(step: 2), 0.5)
    XCTAssertEqual(schedule.factor(step: 4), 1)
    XCTAssertEqual(schedule.factor(step: 9), 0.55, accuracy: 1e-12)  // halfway: e + (1 − e)/2
    XCTAssertEqual(schedule.factor(step: 14), 0.1, accuracy: 1e-12)
    XCTAssertEqual(schedule.factor(step: 20), 0.1, accuracy: 1e-12)
    // without --warmup-from-zero the warm-up is ours, (t+1)/W; the rest is the same
    var ours = schedule
    ours.warmupFromZero = false
    XCTAssertEqual(ours.factor(step: 0), 0.25)
    XCTAssertEqual(ours.factor(step: 3), 1)
    XCTAssertEqual(ours.factor(step: 9), 0.55, accuracy: 1e-12)
    // cosine ends at --lr-end as well
    let cosine = Schedule(baseLR: 1, warmupSteps: 0, totalSteps: 10, decay: .cosine, endLR: 0.2)
    XCTAssertEqual(cosine.learningRate(step: 5), 0.6, accuracy: 1e-6)
    XCTAssertEqual(cosine.learningRate(step: 10), 0.2, accuracy: 1e-6)
  }

  /// Without --lr-end and --warmup-from-zero the schedule is the one it always was, bit for bit,
  /// and `factor` is its learning rate over the base.
  func testDefaultScheduleIsUnchanged() {
    for decay in DecayKind.allCases {
      let schedule = Schedule(baseLR: 0.003, warmupSteps: 5, totalSteps: 40, decay: decay)
      for t in 0..<45 {
        let progress = min(Double(t - 5) / 35, 1)
        let old: Float
        if t < 5 {
          old = 0.003 * Float(t + 1) / 5
        } else {
          switch decay {
          case .constant: old = 0.003
          case .linear: old = 0.003 * Float(1 - progress)
          case .cosine: old = 0.003 * Float(0.5 * (1 + cos(Double.pi * progress)))
          }
        }
        XCTAssertEqual(schedule.learningRate(step: t), old, "\(decay) step \(t)")
        XCTAssertEqual(schedule.factor(step: t) * 0.003, Double(old), accuracy: 1e-9, "\(decay) step \(t)")
      }
    }
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
