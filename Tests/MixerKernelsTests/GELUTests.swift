// biasGELUForward against a Double reference; geluBackward with biasBackwardRows/Columns against
// central differences of that reference, for both GELU kinds and both bias axes; GELU at large |x|.

import Foundation
import MixerTestSupport
import MixerKernels
import XCTest

/// gelu(x) in Double, in the kernel's two forms.
private func geluReference(_ x: Double, _ kind: GELUKind) -> Double {
  switch kind {
  case .tanh:
    return 0.5 * x
      * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
  case .erf: return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
  }
}

/// act = gelu(pre + bias) over `[rows, cols]` in Double, the bias along `axis`.
private func biasGELUReference(
  pre: [Double], bias: [Double], rows: Int, cols: Int, axis: BiasAxis, kind: GELUKind
) -> [Double] {
  var act = [Double](repeating: 0, count: rows * cols)
  for r in 0..<rows {
    for j in 0..<cols {
      let b = axis == .rows ? bias[r] : bias[j]
      act[r * cols + j] = geluReference(pre[r * cols + j] + b, kind)
    }
  }
  return act
}

final class GELUTests: XCTestCase {
  /// Shapes (rows, cols): 19 columns run the 16-lane path and a tail, 7 only the scalar tail.
  private let shapes = [(3, 19), (5, 7), (4, 32)]

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 20)
    for kind in GELUKind.allCases {
      for axis in [BiasAxis.rows, .columns] {
        for (rows, cols) in shapes {
          let pre0 = random.floats(rows * cols, in: -4...4)
          let bias = random.floats(axis == .rows ? rows : cols, in: -0.5...0.5)
          var pre = pre0
          var act = [Float](repeating: .nan, count: rows * cols)
          biasGELUForward(
            act: &act, pre: &pre, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)
          let label = "\(kind) \(axis) rows \(rows) cols \(cols)"
          // pre keeps pre + bias for the backward (the same Float addition).
          let preExpected = (0..<(rows * cols)).map { i in
            pre0[i] + bias[axis == .rows ? i / cols : i % cols]
          }
          assertClose(pre, preExpected, relative: 0, absolute: 0, "pre + bias \(label)")
          let reference = biasGELUReference(
            pre: pre0.doubles, bias: bias.doubles, rows: rows, cols: cols, axis: axis, kind: kind)
          assertClose(act, reference, relative: 1e-5, absolute: 1e-6, "act \(label)")
        }
      }
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 21)
    for kind in GELUKind.allCases {
      for axis in [BiasAxis.rows, .columns] {
        for (rows, cols) in shapes {
          let count = rows * cols
          let pre0 = random.floats(count, in: -4...4)
          let bias = random.floats(axis == .rows ? rows : cols, in: -0.5...0.5)
          let w = random.floats(count, in: -1...1)  // L = Σ w·act, so dout = w
          var pre = pre0
          var act = [Float](repeating: 0, count: count)
          biasGELUForward(
            act: &act, pre: &pre, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)

          var dpre = [Float](repeating: .nan, count: count)  // overwritten
          geluBackward(dinp: &dpre, dout: w, inp: pre, count: count, kind: kind)
          let dbias0 = random.floats(bias.count, in: -1...1)  // accumulated into
          var dbias = dbias0
          switch axis {
          case .rows: biasBackwardRows(dbias: &dbias, dout: dpre, rows: rows, cols: cols)
          case .columns: biasBackwardColumns(dbias: &dbias, dout: dpre, rows: rows, cols: cols)
          }

          let (preD, biasD, wD) = (pre0.doubles, bias.doubles, w.doubles)
          func loss(_ pre: [Double], _ bias: [Double]) -> Double {
            dot(
              wD,
              biasGELUReference(
                pre: pre, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind))
          }
          let gradPre = centralDifferences(at: preD) { loss($0, biasD) }
          let gradBias = centralDifferences(at: biasD) { loss(preD, $0) }
          let label = "\(kind) \(axis) rows \(rows) cols \(cols)"
          assertClose(dpre, gradPre, relative: 1e-3, absolute: 1e-5, "dpre \(label)")
          assertClose(
            dbias, add(dbias0, gradBias), relative: 1e-3, absolute: 1e-5, "dbias \(label)")
        }
      }
    }
  }

  /// geluBackward may write its result over dout.
  func testBackwardInPlaceMatchesOutOfPlace() {
    var random = TestRandom(seed: 22)
    let count = 37
    let x = random.floats(count, in: -4...4)
    let dout = random.floats(count, in: -1...1)
    for kind in GELUKind.allCases {
      var separate = [Float](repeating: 0, count: count)
      geluBackward(dinp: &separate, dout: dout, inp: x, count: count, kind: kind)
      var inPlace = dout
      inPlace.withUnsafeMutableBufferPointer { buffer in
        geluBackward(
          dinp: buffer.baseAddress!, dout: buffer.baseAddress!, inp: x, count: count, kind: kind)
      }
      assertClose(inPlace, separate, relative: 0, absolute: 0, "in place \(kind)")
    }
  }

  /// At large |x| gelu(x) is x (x > 0) or 0 (x < 0) and gelu′ is 1 or 0, with nothing infinite or
  /// NaN; 24 values so both the 16-lane path and the tail see them.
  func testLargeInputs() {
    let magnitudes: [Float] = [10, 50, 100, 1e4, 20, 30]
    var x = magnitudes + magnitudes.map { -$0 }
    x += x.reversed()
    let count = x.count
    for kind in GELUKind.allCases {
      var out = [Float](repeating: .nan, count: count)
      geluForward(out: &out, inp: x, count: count, kind: kind)
      assertFinite(out, "gelu \(kind)")
      assertClose(
        out, x.map { Double(max($0, 0)) }, relative: 1e-6, absolute: 1e-6, "gelu \(kind) large |x|")

      var derivative = [Float](repeating: .nan, count: count)
      geluBackward(
        dinp: &derivative, dout: [Float](repeating: 1, count: count), inp: x, count: count,
        kind: kind)
      assertFinite(derivative, "gelu′ \(kind)")
      assertClose(
        derivative, x.map { $0 > 0 ? 1.0 : 0.0 }, relative: 1e-6, absolute: 1e-6,
        "gelu′ \(kind) large |x|")
    }
  }
}

/// The fused training pair: the forward keeps gelu′ in place of the pre-activation, the backward
/// multiplies by it and accumulates the bias gradient in the same pass.
final class GELUFusedTests: XCTestCase {
  func testKeptDerivativeMatchesFiniteDifferencesAndUnfusedPair() {
    var random = TestRandom(seed: 31)
    for kind in GELUKind.allCases {
      for axis in [BiasAxis.rows, .columns] {
        for (rows, cols) in [(3, 19), (5, 7), (2, 48)] {
          let label = "\(kind) \(axis) \(rows)x\(cols)"
          let pre0 = random.floats(rows * cols, in: -5...5)
          let bias = random.floats(axis == .rows ? rows : cols, in: -0.5...0.5)
          var kept = pre0
          var act = [Float](repeating: .nan, count: rows * cols)
          biasGELUForwardKeepingDerivative(
            act: &act, pre: &kept, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)
          // forward value equals the unfused kernel's
          var pre = pre0
          var act2 = [Float](repeating: .nan, count: rows * cols)
          biasGELUForward(act: &act2, pre: &pre, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)
          assertClose(act, act2, relative: 1e-6, absolute: 1e-7, "act \(label)")
          // kept derivative against central differences of the Double reference
          let numeric = (0..<(rows * cols)).map { i -> Double in
            let x = Double(pre[i]), h = 1e-5
            return (geluReference(x + h, kind) - geluReference(x - h, kind)) / (2 * h)
          }
          assertClose(kept, numeric, relative: 1e-4, absolute: 1e-5, "gelu′ \(label)")
          // backward: dinp = dout·gelu′, dbias accumulates (pre-filled to check +=)
          let dout = random.floats(rows * cols, in: -1...1)
          var dinp = [Float](repeating: .nan, count: rows * cols)
          let biasCount = axis == .rows ? rows : cols
          var dbias = [Float](repeating: 0.5, count: biasCount)
          geluBackwardFromDerivative(
            dinp: &dinp, dbias: &dbias, dout: dout, derivative: kept, rows: rows, cols: cols, axis: axis)
          let expected = (0..<(rows * cols)).map { Double(dout[$0]) * numeric[$0] }
          assertClose(dinp, expected, relative: 1e-4, absolute: 1e-5, "dinp \(label)")
          var expectedBias = [Double](repeating: 0.5, count: biasCount)
          for i in 0..<(rows * cols) { expectedBias[axis == .rows ? i / cols : i % cols] += expected[i] }
          assertClose(dbias, expectedBias, relative: 1e-4, absolute: 1e-5, "dbias \(label)")
        }
      }
    }
  }
}
