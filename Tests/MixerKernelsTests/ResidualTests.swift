// residualForward (accumulates into x) against a Double reference and residualBackward
// (overwrites dbranch) against central differences, with every example kept and with a 0/1 mask.

import MixerKernels
import MixerTestSupport
import XCTest

/// x + keep[b]·branch over `[S, B, C]` in Double.
private func residualReference(
  x: [Double], branch: [Double], keep: [Double]?, tokens: Int, batch: Int, channels: Int
) -> [Double] {
  var out = x
  for s in 0..<tokens {
    for b in 0..<batch {
      for c in 0..<channels {
        let i = (s * batch + b) * channels + c
        out[i] += (keep?[b] ?? 1) * branch[i]
      }
    }
  }
  return out
}

final class ResidualTests: XCTestCase {
  private let tokens = 4, batch = 3, channels = 19
  private let masks: [[Float]?] = [nil, [1, 0, 1], [0, 1, 1]]

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 40)
    let count = tokens * batch * channels
    for keep in masks {
      let x0 = random.floats(count, in: -2...2)
      let branch = random.floats(count, in: -2...2)
      var x = x0
      if let keep {
        residualForward(
          x: &x, branch: branch, keep: keep, tokens: tokens, batch: batch, channels: channels)
      } else {
        residualForward(
          x: &x, branch: branch, keep: nil, tokens: tokens, batch: batch, channels: channels)
      }
      let reference = residualReference(
        x: x0.doubles, branch: branch.doubles, keep: keep?.doubles, tokens: tokens, batch: batch,
        channels: channels)
      assertClose(
        x, reference, relative: 1e-6, absolute: 1e-6, "forward keep \(String(describing: keep))")
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 41)
    let count = tokens * batch * channels
    for keep in masks {
      let x = random.floats(count, in: -2...2)
      let branch = random.floats(count, in: -2...2)
      let w = random.floats(count, in: -1...1)  // L = Σ w·(x + keep·branch), so dx = w
      var dbranch = [Float](repeating: .nan, count: count)  // overwritten
      if let keep {
        residualBackward(
          dbranch: &dbranch, dx: w, keep: keep, tokens: tokens, batch: batch, channels: channels)
      } else {
        residualBackward(
          dbranch: &dbranch, dx: w, keep: nil, tokens: tokens, batch: batch, channels: channels)
      }
      let (xD, wD, keepD) = (x.doubles, w.doubles, keep?.doubles)
      let gradBranch = centralDifferences(at: branch.doubles) {
        dot(
          wD,
          residualReference(
            x: xD, branch: $0, keep: keepD, tokens: self.tokens, batch: self.batch,
            channels: self.channels))
      }
      assertClose(
        dbranch, gradBranch, relative: 1e-3, absolute: 1e-6,
        "dbranch keep \(String(describing: keep))")
    }
  }

  /// The passes of the in-place residual path (copy, the token and channel output biases) are
  /// one float add per element: exactly the scalar loops, on 1 and 3 threads (large enough to
  /// split, with a row length that leaves a tail after the 16-lane loop).
  func testStreamPassesAreTheScalarLoopsOnAnyThreadCount() {
    defer { KernelThreads.count = 1 }
    let rows = 1000, cols = 83
    var random = TestRandom(seed: 43)
    let x = random.floats(rows * cols, in: -3...3)
    let rowBias = random.floats(rows, in: -1...1), columnBias = random.floats(cols, in: -1...1)
    var expectedRows = x, expectedColumns = x
    for r in 0..<rows {
      for j in 0..<cols {
        expectedRows[r * cols + j] += rowBias[r]
        expectedColumns[r * cols + j] = x[r * cols + j] + columnBias[j]
      }
    }
    for threads in [1, 3] {
      KernelThreads.count = threads
      var copy = [Float](repeating: .nan, count: rows * cols)
      copyStream(out: &copy, inp: x, count: rows * cols)
      XCTAssertEqual(copy, x, "copy, \(threads) threads")
      addRowBias(&copy, bias: rowBias, rows: rows, cols: cols)
      XCTAssertEqual(copy, expectedRows, "row bias, \(threads) threads")
      var out = [Float](repeating: .nan, count: rows * cols)
      addColumnBias(out: &out, inp: x, bias: columnBias, rows: rows, cols: cols)
      XCTAssertEqual(out, expectedColumns, "column bias, \(threads) threads")
    }
  }
}
