// softmaxCrossEntropyForward against a Double reference; softmaxCrossEntropyBackward,
// scale·(p − t), against central differences of scale·Σ_b loss_b; smoothedOneHot targets;
// huge logits.

import Foundation
import MixerTestSupport
import MixerKernels
import XCTest

/// Per-example losses −Σ_k t[b, k]·log softmax(z[b, :])_k and the probabilities, in Double.
private func crossEntropyReference(
  logits: [Double], targets: [Double], batch: Int, classes: Int
) -> (losses: [Double], probs: [Double]) {
  var losses = [Double](repeating: 0, count: batch)
  var probs = [Double](repeating: 0, count: batch * classes)
  for b in 0..<batch {
    let z = logits[(b * classes)..<((b + 1) * classes)]
    let maxLogit = z.max()!
    let logSum = Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - maxLogit) }) + maxLogit
    for k in 0..<classes {
      let logProbability = logits[b * classes + k] - logSum
      probs[b * classes + k] = Foundation.exp(logProbability)
      losses[b] -= targets[b * classes + k] * logProbability
    }
  }
  return (losses, probs)
}

final class SoftmaxCrossEntropyTests: XCTestCase {
  private let batch = 4

  /// Targets for each case: smoothed one-hot (smoothing 0 and 0.1) and a random distribution.
  private func targetCases(classes: Int, random: inout TestRandom) -> [(String, [Float])] {
    let labels: [Int32] = (0..<batch).map { Int32(($0 * 5 + 2) % classes) }
    var cases: [(String, [Float])] = []
    for smoothing: Float in [0, 0.1] {
      var targets = [Float](repeating: .nan, count: batch * classes)
      smoothedOneHot(
        targets: &targets, labels: labels, batch: batch, classes: classes, smoothing: smoothing)
      cases.append(("smoothing \(smoothing)", targets))
    }
    var mixed = random.floats(batch * classes, in: 0...1)
    for b in 0..<batch {
      let sum = mixed[(b * classes)..<((b + 1) * classes)].reduce(0, +)
      for k in 0..<classes { mixed[b * classes + k] /= sum }
    }
    cases.append(("mixed", mixed))
    return cases
  }

  func testSmoothedOneHot() {
    let classes = 7
    let labels: [Int32] = [0, 6, 3]
    var targets = [Float](repeating: .nan, count: 3 * classes)
    smoothedOneHot(targets: &targets, labels: labels, batch: 3, classes: classes, smoothing: 0.1)
    var expected = [Double](repeating: 0.1 / 7, count: 3 * classes)
    for (b, label) in labels.enumerated() { expected[b * classes + Int(label)] = 0.9 + 0.1 / 7 }
    assertClose(targets, expected, relative: 1e-6, absolute: 0, "smoothedOneHot 0.1")
  }

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 60)
    for classes in [7, 19] {
      for (name, targets) in targetCases(classes: classes, random: &random) {
        let logits = random.floats(batch * classes, in: -3...3)
        var losses = [Float](repeating: .nan, count: batch)
        var probs = [Float](repeating: .nan, count: batch * classes)
        softmaxCrossEntropyForward(
          losses: &losses, probs: &probs, logits: logits, targets: targets, batch: batch,
          classes: classes)
        let reference = crossEntropyReference(
          logits: logits.doubles, targets: targets.doubles, batch: batch, classes: classes)
        assertClose(
          losses, reference.losses, relative: 1e-5, absolute: 1e-6, "losses \(name) K \(classes)")
        assertClose(
          probs, reference.probs, relative: 1e-5, absolute: 1e-7, "probs \(name) K \(classes)")
      }
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 61)
    let scale: Float = 0.25  // 1/(global batch) for a mean loss
    for classes in [7, 19] {
      for (name, targets) in targetCases(classes: classes, random: &random) {
        let logits = random.floats(batch * classes, in: -3...3)
        var losses = [Float](repeating: 0, count: batch)
        var probs = [Float](repeating: 0, count: batch * classes)
        softmaxCrossEntropyForward(
          losses: &losses, probs: &probs, logits: logits, targets: targets, batch: batch,
          classes: classes)
        var dlogits = [Float](repeating: .nan, count: batch * classes)  // overwritten
        softmaxCrossEntropyBackward(
          dlogits: &dlogits, probs: probs, targets: targets, batch: batch, classes: classes,
          scale: scale)
        let targetsD = targets.doubles
        let gradLogits = centralDifferences(at: logits.doubles) { z in
          Double(scale)
            * crossEntropyReference(
              logits: z, targets: targetsD, batch: self.batch, classes: classes
            )
            .losses.reduce(0, +)
        }
        assertClose(
          dlogits, gradLogits, relative: 1e-3, absolute: 1e-6, "dlogits \(name) K \(classes)")
      }
    }
  }

  /// Logits of ±1000 and 1e30 would overflow a naive exp; the max shift keeps everything finite.
  func testHugeLogitsStayFinite() {
    let classes = 4
    let logits: [Float] = [1000, 0, -1000, 999, 1e30, -1e30, 0, 1e30]
    var targets = [Float](repeating: 0, count: 2 * classes)
    smoothedOneHot(targets: &targets, labels: [3, 0], batch: 2, classes: classes, smoothing: 0.1)
    var losses = [Float](repeating: .nan, count: 2)
    var probs = [Float](repeating: .nan, count: 2 * classes)
    softmaxCrossEntropyForward(
      losses: &losses, probs: &probs, logits: logits, targets: targets, batch: 2, classes: classes)
    assertFinite(probs, "probs")
    // Smoothing puts weight on the far logits: loss 0 ≈ 0.025·(2000 + 1000) + …, loss 1 ≈ 7.5e28.
    assertFinite(losses, "losses")
    assertClose(
      probs, [1 / (1 + inverseE), 0, 0, inverseE / (1 + inverseE), 0.5, 0, 0, 0.5],
      relative: 1e-5, absolute: 1e-7, "probs of huge logits")
  }
}

/// e⁻¹, the odds of logit 999 against logit 1000.
private let inverseE = Foundation.exp(-1.0)
