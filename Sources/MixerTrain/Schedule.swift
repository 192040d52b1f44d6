// Learning-rate schedules: linear warm-up from 0, then cosine or linear decay to 0 (the paper's
// pre-training uses linear decay, fine-tuning cosine), or constant.

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

  public init(baseLR: Float, warmupSteps: Int, totalSteps: Int, decay: DecayKind) {
    self.baseLR = baseLR
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
    self.decay = decay
  }

  /// The learning rate of 0-based `step`: (step+1)/warmup · base during warm-up, then decay.
  public func learningRate(step: Int) -> Float {
    if step < warmupSteps { return baseLR * Float(step + 1) / Float(warmupSteps) }
    let span = max(totalSteps - warmupSteps, 1)
    let progress = min(Double(step - warmupSteps) / Double(span), 1)
    switch decay {
    case .constant: return baseLR
    case .linear: return baseLR * Float(1 - progress)
    case .cosine: return baseLR * Float(0.5 * (1 + cos(Double.pi * progress)))
    }
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
