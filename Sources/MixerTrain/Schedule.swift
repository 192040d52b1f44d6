// Learning-rate schedules: linear warm-up, then cosine or linear decay to `--lr-end` (0 by
// default; the paper's pre-training uses linear decay, fine-tuning cosine), or constant.
//
// big_vision's `create_learning_rate_schedule` (with base 1, as its optax chain multiplies the
// updates by it): progress = clip((t − W)/(T − W), 0, 1) for the 0-based step t of T steps;
// linear: end + (1 − end)·(1 − progress); then, with a warm-up of W steps, ×min(1, t/W). The
// decay part is ours; the warm-up differs by one step unless `warmupFromZero`: big_vision's update
// t runs at t/W of the rate, so its first update has rate 0, ours (t+1)/W (`--warmup-from-zero`
// gives big_vision's). Its `linear_end` is a fraction of the base rate (base 1): `--lr-end` =
// lr × linear_end.

import Foundation
import MixerModel

/// What the learning rate does after warm-up.
public enum DecayKind: String, Codable, Sendable, CaseIterable {
  case cosine, linear, constant
}

/// lr(step) for steps 0..<totalSteps.
public struct Schedule: Codable, Equatable, Sendable {
  public var baseLR: Float
  public var warmupSteps: Int
  public var totalSteps: Int
  public var decay: DecayKind
  /// the rate the decay ends at (`--lr-end`; big_vision's `linear_end` × base)
  public var endLR: Float = 0
  /// warm-up as big_vision counts it: step t at t/W of the rate (the first update at 0), instead of (t+1)/W
  public var warmupFromZero = false

  public init(
    baseLR: Float, warmupSteps: Int, totalSteps: Int, decay: DecayKind, endLR: Float = 0, warmupFromZero: Bool = false
  ) {
    self.baseLR = baseLR
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
    self.decay = decay
    self.endLR = endLR
    self.warmupFromZero = warmupFromZero
  }

  /// The learning rate of 0-based `step`: base · `factor(step:)`.
  public func learningRate(step: Int) -> Float {
    guard endLR == 0 && !warmupFromZero else { return Float(Double(baseLR) * factor(step: step)) }
    // (the schedule as it always was, operation for operation: runs repeat bit for bit)
    if step < warmupSteps { return baseLR * Float(step + 1) / Float(warmupSteps) }
    let span = max(totalSteps - warmupSteps, 1)
    let progress = min(Double(step - warmupSteps) / Double(span), 1)
    switch decay {
    case .constant: return baseLR
    case .linear: return baseLR * Float(1 - progress)
    case .cosine: return baseLR * Float(0.5 * (1 + cos(Double.pi * progress)))
    }
  }

  /// s_t, the schedule's factor of 0-based `step` (the learning rate over the base rate), as
  /// big_vision computes it with base 1: the decay from 1 to end = endLR/baseLR over
  /// progress = clip((t − W)/(T − W), 0, 1) (linear: end + (1 − end)(1 − progress); cosine:
  /// end + (1 − end)·½(1 + cos(π·progress)); constant: 1), times the warm-up min(1, t/W), or
  /// min(1, (t+1)/W) unless `warmupFromZero`.
  public func factor(step: Int) -> Double {
    let end = baseLR > 0 ? Double(endLR) / Double(baseLR) : 0
    let span = Double(max(totalSteps - warmupSteps, 1))
    let progress = min(max(Double(step - warmupSteps) / span, 0), 1)
    var value: Double
    switch decay {
    case .constant: value = 1
    case .linear: value = end + (1 - end) * (1 - progress)
    case .cosine: value = end + (1 - end) * 0.5 * (1 + cos(Double.pi * progress))
    }
    if warmupSteps > 0 {
      value *= min(1, Double(warmupFromZero ? step : step + 1) / Double(warmupSteps))
    }
    return value
  }
}

/// `--warmup`: a whole number of steps (`60`), or a fraction of the run's steps below 1
/// (`0.1`: a tenth, rounded to the nearest step).
public enum WarmupLength: Equatable, Sendable {
  case steps(Int)
  case fraction(Double)

  /// Parses `--warmup`: an integer is steps, a decimal in [0, 1) a fraction of the steps.
  public init(parsing text: String) throws {
    if let steps = Int(text) {
      guard steps >= 0 else { throw ConfigError("--warmup must be non-negative, got \(steps)") }
      self = .steps(steps)
    } else if let fraction = Double(text), fraction.isFinite {
      guard fraction >= 0 && fraction < 1 else {
        throw ConfigError(
          "--warmup \(text): a fraction of the steps must be at least 0 and below 1 (e.g. 0.1); "
            + "whole numbers are steps")
      }
      self = .fraction(fraction)
    } else {
      throw ConfigError("--warmup '\(text)' is neither a number of steps (60) nor a fraction of the steps (0.1)")
    }
  }

  /// The warm-up steps of a run of `totalSteps`.
  public func steps(of totalSteps: Int) -> Int {
    switch self {
    case .steps(let steps): return steps
    case .fraction(let fraction): return Int((fraction * Double(totalSteps)).rounded())
    }
  }
}

extension TrainConfig {
  /// Sets `warmupSteps` from `--warmup` (nil: not given, the default stays) once `steps` is
  /// known. A warm-up given and at least as long as the run throws with the fix; the default one
  /// is kept (same schedule as ever) with a warning, returned as a note.
  mutating func resolveWarmup(_ warmup: WarmupLength?) throws -> String? {
    if let warmup { warmupSteps = warmup.steps(of: steps) }
    guard warmupSteps >= steps && warmupSteps > 0 else { return nil }
    let tenth = WarmupLength.fraction(0.1).steps(of: steps)
    let fix = "pass --warmup 0.1 (a tenth of the steps: \(tenth)) or --warmup N with N below \(steps)"
    guard warmup == nil else {
      throw ConfigError(
        "the warm-up (\(warmupSteps) steps) is at least as long as the run (--steps \(steps)), so the "
          + "learning rate would never reach --lr \(learningRate): \(fix)")
    }
    return "warning: the default warm-up of \(warmupSteps) steps is at least as long as the run "
      + "(\(steps) steps): the learning rate never reaches --lr \(learningRate); \(fix)"
  }
}
