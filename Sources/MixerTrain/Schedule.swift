// Learning-rate schedules: linear warm-up from 0, then cosine or linear decay to 0 (the paper's
// pre-training uses linear decay, fine-tuning cosine), or constant.

import Foundation

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
