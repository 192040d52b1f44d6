// Optimizers on flat buffers: AdamW (Loshchilov & Hutter 2019; β1 0.9, β2 0.999, ε 1e-8,
// decoupled weight decay on kernels only: p −= lr_t·(adam + wd·p)), Adam as big_vision chains it
// (the paper's pre-training optimizer: p −= s_t·(lr·adam + wd·p), see `OptimizerKind.adam`) and
// SGD with momentum (the paper's fine-tuning optimizer, optax `trace`: m = μm + g, p −= lr·m).
// An optimizer owns the moments of one contiguous range of the flat parameter buffer: the whole
// buffer normally, this rank's shard under ZeRO-1. Moments are indexed relative to the range.

import Foundation
import MixerCheckpoint
import MixerKernels
import MixerModel

/// Which update rule. With lr_t = lr·s_t the scheduled learning rate (s_t the schedule's factor,
/// `Schedule.factor`), `adam` the bias-corrected Adam direction m̂/(√v̂ + ε) and wd the weight
/// decay (kernels only):
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
  /// p −= lr_t·(adam + wd·p): the decay is scaled by the learning rate
  case adamw
  /// p −= s_t·(lr·adam + wd·p): big_vision's chain clip → scale_by_adam → scale(lr) →
  /// add_decayed_weights(wd, `.*/kernel$`) → scale_by_schedule, the decay scaled by the schedule
  /// but not by lr (its Mixer recipe: lr 1e-3, wd 1e-4, the same as adamw's wd 0.1 at that lr)
  case adam
  /// m = μm + g, p −= lr_t·(m + wd·p)
  case sgd

  /// Keeps a second moment (Adam's v).
  var usesSecondMoment: Bool { self != .sgd }
}

/// Hyper-parameters of the update rule (the learning rate comes from the schedule).
public struct OptimizerConfig: Codable, Equatable, Sendable {
  public var kind: OptimizerKind = .adamw
  public var beta1: Float = 0.9
  public var beta2: Float = 0.999
  public var epsilon: Float = 1e-8
  /// weight decay, kernels only: p −= lr_t · weightDecay · p (adamw, sgd), or
  /// p −= s_t · weightDecay · p, not scaled by lr (adam)
  public var weightDecay: Float = 0.05
  /// SGD momentum μ
  public var momentum: Float = 0.9
  public init() {}
}

/// An optimizer over `range` of the flat parameter buffer.
public final class Optimizer: ShardedOptimizerState {
  public let config: OptimizerConfig
  public let range: Range<Int>
  /// first moment (Adam, AdamW) or momentum trace (SGD), `range.count` floats
  public let firstMoment: FlatBuffer
  /// second moment (Adam, AdamW; empty for SGD)
  public let secondMoment: FlatBuffer
  /// sub-ranges of `range` (absolute offsets) that take weight decay
  let decaySegments: [Range<Int>]
  let plainSegments: [Range<Int>]

  public init(config: OptimizerConfig, table: ParameterTable, range: Range<Int>? = nil) {
    self.config = config
    let r = range ?? 0..<table.count
    self.range = r
    firstMoment = FlatBuffer(count: r.count)
    secondMoment = FlatBuffer(count: config.kind.usesSecondMoment ? r.count : 0)
    var decay: [Range<Int>] = []
    var plain: [Range<Int>] = []
    for view in table.views {
      let lo = max(view.range.lowerBound, r.lowerBound), hi = min(view.range.upperBound, r.upperBound)
      guard lo < hi else { continue }
      if view.decays { decay.append(lo..<hi) } else { plain.append(lo..<hi) }
    }
    decaySegments = decay
    plainSegments = plain
  }

  public var kindName: String { config.kind.rawValue }
  /// The moments as checkpoints name them.
  public var moments: [(name: String, buffer: FlatBuffer)] {
    [("first_moment", firstMoment), ("second_moment", secondMoment)]
  }

  /// Floats of optimizer state held (for memory reports).
  public var stateCount: Int { firstMoment.count + secondMoment.count }

  /// Applies update number `step` (1-based, for Adam's bias correction) with learning rate `lr`
  /// (lr_t, the schedule's value) to `parameters[range]`, using `gradients[range]`;
  /// `scheduleFactor` is s_t = lr_t / lr, which scales `adam`'s weight decay (the others ignore it).
  public func update(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, lr: Float, step: Int,
    scheduleFactor: Float = 1
  ) {
    for segment in decaySegments {
      apply(parameters, gradients, segment, lr: lr, decay: config.weightDecay, scheduleFactor: scheduleFactor, step: step)
    }
    for segment in plainSegments {
      apply(parameters, gradients, segment, lr: lr, decay: 0, scheduleFactor: scheduleFactor, step: step)
    }
  }

  private func apply(
    _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ segment: Range<Int>, lr: Float,
    decay: Float, scheduleFactor: Float, step: Int
  ) {
    let base = segment.lowerBound - range.lowerBound
    let m = firstMoment.pointer + base
    let n = segment.count
    let pp = p + segment.lowerBound, gg = g + segment.lowerBound
    switch config.kind {
    case .adamw, .adam:
      let v = secondMoment.pointer + base
      let b1 = config.beta1, b2 = config.beta2, eps = config.epsilon
      let c1 = 1 / (1 - Float(pow(Double(b1), Double(step))))
      let c2 = 1 / (1 - Float(pow(Double(b2), Double(step))))
      if config.kind == .adamw {
        parallelElements(n) { range in
          for i in range {
            let gi = gg[i]
            let mi = b1 * m[i] + (1 - b1) * gi
            let vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            let update = (mi * c1) / ((vi * c2).squareRoot() + eps) + decay * pp[i]
            pp[i] -= lr * update
          }
        }
      } else {
        // big_vision: s_t·(lr·adam + wd·p) = lr_t·adam + (s_t·wd)·p, with optax's moment weights
        let scaledDecay = scheduleFactor * decay
        let a1 = decimalComplement(b1), a2 = decimalComplement(b2)
        parallelElements(n) { range in
          for i in range {
            let gi = gg[i]
            let mi = a1 * gi + b1 * m[i]
            let vi = a2 * (gi * gi) + b2 * v[i]
            m[i] = mi
            v[i] = vi
            let direction = (mi * c1) / ((vi * c2).squareRoot() + eps)
            pp[i] -= lr * direction + scaledDecay * pp[i]
          }
        }
      }
    case .sgd:
      let mu = config.momentum
      parallelElements(n) { range in
        for i in range {
          let mi = mu * m[i] + gg[i]
          m[i] = mi
          pp[i] -= lr * (mi + decay * pp[i])
        }
      }
    }
  }
}

/// 1 − β as optax's `scale_by_adam` weighs a new gradient: computed in double precision from
/// the decimal β names (the Python float 0.999), then rounded to float. 1 − Float(0.999) is
/// 1.3e-5 below 0.001 (the cancellation keeps Float(0.999)'s rounding error), which would move the
/// first steps' Adam direction by 6e-6 against optax's, whose bias correction 1 − β^t is a float
/// power of the rounded β as ours is.
func decimalComplement(_ beta: Float) -> Float {
  Float(1 - (Double("\(beta)") ?? Double(beta)))
}

/// Σ x[i]² over `range`, in Double (for the global gradient norm).
public func sumOfSquares(_ x: UnsafePointer<Float>, range: Range<Int>) -> Double {
  var total = 0.0
  var partial: Float = 0
  var i = range.lowerBound
  while i < range.upperBound {
    let end = min(i + 4096, range.upperBound)
    partial = 0
    for j in i..<end { partial += x[j] * x[j] }
    total += Double(partial)
    i = end
  }
  return total
}

/// Scales `x[range]` so that a global norm `norm` becomes at most `maxNorm`; returns the factor.
@discardableResult
public func clipByGlobalNorm(
  _ x: UnsafeMutablePointer<Float>, range: Range<Int>, norm: Double, maxNorm: Double
) -> Float {
  guard maxNorm > 0, norm > maxNorm else { return 1 }
  let factor = Float(maxNorm / norm)
  for i in range { x[i] *= factor }
  return factor
}
