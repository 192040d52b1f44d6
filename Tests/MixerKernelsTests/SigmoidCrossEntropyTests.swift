// sigmoidCrossEntropyForward against a naive Double reference (big_vision's sigmoid_xent per
// example: −Σ_k t·log σ(z) + (1 − t)·log(1 − σ(z))); sigmoidCrossEntropyBackward,
// scale·(σ(z) − t), against central differences of scale·Σ_b loss_b; huge logits.

import Foundation
import MixerTestSupport
import MixerKernels
import XCTest

/// Per-example losses and the sigmoids, naively in Double.
private func sigmoidReference(
  logits: [Double], targets: [Double], batch: Int, classes: Int
) -> (losses: [Double], probs: [Double]) {
  var losses = [Double](repeating: 0, count: batch)
  var probs = [Double](repeating: 0, count: batch * classes)
  for b in 0..<batch {
    for k in 0..<classes {
      let i = b * classes + k
      let p = 1 / (1 + Foundation.exp(-logits[i]))
      probs[i] = p
      losses[b] -= targets[i] * Foundation.log(p) + (1 - targets[i]) * Foundation.log(1 - p)
    }
  }
  return (losses, probs)
}

final class SigmoidCrossEntropyTests: XCTestCase {
  private let batch = 3

  /// One-hot, smoothed one-hot and mixup-like targets (two labels weighted 0.7/0.3).
  private func targetCases(classes: Int) -> [(String, [Float])] {
    let labels: [Int32] = (0..<batch).map { Int32(($0 * 5 + 2) % classes) }
    var cases: [(String, [Float])] = []
    for smoothing: Float in [0, 0.1] {
      var targets = [Float](repeating: .nan, count: batch * classes)
      smoothedOneHot(targets: &targets, labels: labels, batch: batch, classes: classes, smoothing: smoothing)
      cases.append(("smoothing \(smoothing)", targets))
    }
    var mixed = [Float](repeating: 0, count: batch * classes)
    for b in 0..<batch {
      mixed[b * classes + Int(labels[b])] += 0.7
      mixed[b * classes + (Int(labels[b]) + 1) % classes] += 0.3
    }
    cases.append(("mixed", mixed))
    return cases
  }

  func testForwardMatchesNaiveDouble() {
    var random = TestRandom(seed: 70)
    for classes in [5, 17] {
      for (name, targets) in targetCases(classes: classes) {
        var logits = random.floats(batch * classes, in: -4...4)
        logits[0] = -6.9  // big_vision's initial head bias
        var losses = [Float](repeating: .nan, count: batch)
        var probs = [Float](repeating: .nan, count: batch * classes)
        sigmoidCrossEntropyForward(
          losses: &losses, probs: &probs, logits: logits, targets: targets, batch: batch, classes: classes)
        let reference = sigmoidReference(logits: logits.doubles, targets: targets.doubles, batch: batch, classes: classes)
        assertClose(losses, reference.losses, relative: 1e-6, absolute: 1e-6, "losses \(name) K \(classes)")
        assertClose(probs, reference.probs, relative: 1e-6, absolute: 1e-9, "probs \(name) K \(classes)")
      }
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 71)
    let scale: Float = 0.25
    for classes in [5, 17] {
      for (name, targets) in targetCases(classes: classes) {
        let logits = random.floats(batch * classes, in: -4...4)
        var losses = [Float](repeating: 0, count: batch)
        var probs = [Float](repeating: 0, count: batch * classes)
        sigmoidCrossEntropyForward(
          losses: &losses, probs: &probs, logits: logits, targets: targets, batch: batch, classes: classes)
        var dlogits = [Float](repeating: .nan, count: batch * classes)  // overwritten
        sigmoidCrossEntropyBackward(
          dlogits: &dlogits, probs: probs, targets: targets, batch: batch, classes: classes, scale: scale)
        let targetsD = targets.doubles
        let gradient = centralDifferences(at: logits.doubles) { z in
          Double(scale)
            * sigmoidReference(logits: z, targets: targetsD, batch: self.batch, classes: classes).losses.reduce(0, +)
        }
        assertClose(dlogits, gradient, relative: 1e-4, absolute: 1e-7, "dlogits \(name) K \(classes)")
      }
    }
  }

  /// Logits of ±1000 and ±1e30 overflow a naive exp and log(1 − σ); the stable form gives the
  /// limits: a wrong-side logit costs |z|, a right-side one nothing.
  func testHugeLogitsStayFinite() {
    let logits: [Float] = [1000, -1000, 1e30, -1e30]
    let targets: [Float] = [1, 1, 0, 0]
    var losses = [Float](repeating: .nan, count: 1)
    var probs = [Float](repeating: .nan, count: 4)
    sigmoidCrossEntropyForward(losses: &losses, probs: &probs, logits: logits, targets: targets, batch: 1, classes: 4)
    assertFinite(probs, "probs")
    XCTAssertEqual(probs, [1, 0, 1, 0])
    // 0 (right) + 1000 (wrong) + 1e30 (wrong) + 0 (right)
    XCTAssertEqual(Double(losses[0]), 1e30, accuracy: 1e24)
    var small = [Float](repeating: .nan, count: 1)
    sigmoidCrossEntropyForward(
      losses: &small, probs: &probs, logits: [1000, -1000], targets: [1, 1], batch: 1, classes: 2)
    XCTAssertEqual(small[0], 1000)
  }
}
