// The segmentation head's kernels: tokensToPixels against its index formula and as the exact
// inverse and adjoint of its backward; pixel-wise cross-entropy against a Double reference
// (per-image mean over labelled pixels, label smoothing, ignored pixels) and its backward against
// central differences.

import Foundation
import MixerTestSupport
import MixerKernels
import XCTest

/// Per-image mean over labelled pixels of −Σ_k t_pk·log softmax(z_p)_k, in Double.
private func pixelLossReference(
  logits: [Double], labels: [Int32], batch: Int, pixels: Int, classes: Int, smoothing: Double
) -> [Double] {
  (0..<batch).map { b in
    var total = 0.0, valid = 0
    for q in 0..<pixels {
      let row = b * pixels + q
      guard labels[row] >= 0 else { continue }
      let z = logits[(row * classes)..<((row + 1) * classes)]
      let maxLogit = z.max()!
      let logSum = Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - maxLogit) }) + maxLogit
      for k in 0..<classes {
        let target = (k == Int(labels[row]) ? 1 - smoothing : 0) + smoothing / Double(classes)
        total -= target * (logits[row * classes + k] - logSum)
      }
      valid += 1
    }
    return valid > 0 ? total / Double(valid) : 0
  }
}

final class PixelCrossEntropyTests: XCTestCase {
  let batch = 3, height = 6, width = 9, patch = 3, classes = 4

  func testTokensToPixelsFollowsThePatchLayout() {
    var random = TestRandom(seed: 70)
    let gridW = width / patch, tokens = (height / patch) * gridW, n = patch * patch * classes
    let tokenValues = random.floats(tokens * batch * n, in: -1...1)
    var pixels = [Float](repeating: .nan, count: batch * height * width * classes)
    tokensToPixelsForward(
      pixels: &pixels, tokens: tokenValues, batch: batch, height: height, width: width, patch: patch,
      channels: classes)
    for b in 0..<batch {
      for y in 0..<height {
        for x in 0..<width {
          for k in 0..<classes {
            let s = (y / patch) * gridW + x / patch
            let j = ((y % patch) * patch + x % patch) * classes + k
            XCTAssertEqual(
              pixels[((b * height + y) * width + x) * classes + k], tokenValues[(s * batch + b) * n + j],
              "pixel \(b),\(y),\(x),\(k)")
          }
        }
      }
    }
    // the backward is the inverse permutation, hence also the adjoint: <F t, p> = <t, Fᵀ p>
    var back = [Float](repeating: .nan, count: tokenValues.count)
    tokensToPixelsBackward(
      dtokens: &back, dpixels: pixels, batch: batch, height: height, width: width, patch: patch,
      channels: classes)
    XCTAssertEqual(back, tokenValues)
    let probe = random.floats(pixels.count, in: -1...1)
    var probeBack = [Float](repeating: 0, count: tokenValues.count)
    tokensToPixelsBackward(
      dtokens: &probeBack, dpixels: probe, batch: batch, height: height, width: width, patch: patch,
      channels: classes)
    XCTAssertEqual(dot(pixels.doubles, probe.doubles), dot(tokenValues.doubles, probeBack.doubles), accuracy: 1e-9)
  }

  /// Labels with ignored pixels everywhere, and the last image entirely ignored (loss and
  /// gradient 0, not NaN).
  func labels(pixels: Int) -> [Int32] {
    (0..<(batch * pixels)).map { row in
      row / pixels == batch - 1 || row % 5 == 2 ? -1 : Int32((row * 7 + 3) % classes)
    }
  }

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 71)
    let pixels = 10
    let labels = labels(pixels: pixels)
    for smoothing: Float in [0, 0.1] {
      let logits = random.floats(batch * pixels * classes, in: -4...4)
      var losses = [Float](repeating: .nan, count: batch)
      var probs = [Float](repeating: .nan, count: logits.count)
      var valid = [Float](repeating: .nan, count: batch)
      pixelCrossEntropyForward(
        losses: &losses, probs: &probs, validCounts: &valid, logits: logits, labels: labels,
        batch: batch, pixels: pixels, classes: classes, smoothing: smoothing, ignore: -1)
      let reference = pixelLossReference(
        logits: logits.doubles, labels: labels, batch: batch, pixels: pixels, classes: classes,
        smoothing: Double(smoothing))
      assertClose(losses, reference, relative: 1e-5, absolute: 1e-7, "losses, smoothing \(smoothing)")
      XCTAssertEqual(valid, [8, 8, 0])
      XCTAssertEqual(losses[batch - 1], 0)
      for row in 0..<(batch * pixels) {
        let sum = (0..<classes).reduce(0.0) { $0 + Double(probs[row * classes + $1]) }
        XCTAssertEqual(sum, 1, accuracy: 1e-5, "softmax row \(row)")
      }
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 72)
    let pixels = 10
    let labels = labels(pixels: pixels)
    let scale: Float = 0.25
    for smoothing: Float in [0, 0.1] {
      let logits = random.floats(batch * pixels * classes, in: -3...3)
      var losses = [Float](repeating: 0, count: batch)
      var probs = [Float](repeating: 0, count: logits.count)
      var valid = [Float](repeating: 0, count: batch)
      pixelCrossEntropyForward(
        losses: &losses, probs: &probs, validCounts: &valid, logits: logits, labels: labels,
        batch: batch, pixels: pixels, classes: classes, smoothing: smoothing, ignore: -1)
      var dlogits = [Float](repeating: .nan, count: logits.count)  // overwritten, ignored rows too
      pixelCrossEntropyBackward(
        dlogits: &dlogits, probs: probs, validCounts: valid, labels: labels, batch: batch,
        pixels: pixels, classes: classes, smoothing: smoothing, scale: scale, ignore: -1)
      let numeric = centralDifferences(at: logits.doubles) { z in
        Double(scale) * pixelLossReference(
          logits: z, labels: labels, batch: self.batch, pixels: pixels, classes: self.classes,
          smoothing: Double(smoothing)
        ).reduce(0, +)
      }
      assertClose(dlogits, numeric, relative: 1e-3, absolute: 1e-6, "dlogits, smoothing \(smoothing)")
      for row in 0..<(batch * pixels) where labels[row] < 0 {
        for k in 0..<classes { XCTAssertEqual(dlogits[row * classes + k], 0, "ignored pixel \(row)") }
      }
    }
  }
}
