// layerNormForward against a Double reference; layerNormBackward (which accumulates) against
// central differences of that reference; a constant row (variance 0) stays finite.

import MixerKernels
import MixerTestSupport
import XCTest

/// LayerNorm of each row of `[rows, channels]` in Double, biased variance (the forward's contract).
private func layerNormReference(
  _ x: [Double], weight: [Double], bias: [Double], rows: Int, channels c: Int,
  epsilon: Double = 1e-6
) -> (out: [Double], mean: [Double], rstd: [Double]) {
  var out = [Double](repeating: 0, count: rows * c)
  var means = [Double](repeating: 0, count: rows)
  var rstds = [Double](repeating: 0, count: rows)
  for r in 0..<rows {
    let row = x[(r * c)..<((r + 1) * c)]
    let mean = row.reduce(0, +) / Double(c)
    let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c)
    let rstd = 1 / (variance + epsilon).squareRoot()
    for i in 0..<c { out[r * c + i] = (x[r * c + i] - mean) * rstd * weight[i] + bias[i] }
    means[r] = mean
    rstds[r] = rstd
  }
  return (out, means, rstds)
}

final class LayerNormTests: XCTestCase {
  /// Shapes (rows, channels): C = 7 runs only the scalar tail, C = 20 the 16-lane path and a tail.
  private let shapes = [(3, 7), (4, 20), (5, 16)]

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 10)
    for (rows, c) in shapes {
      var x = random.floats(rows * c, in: -2...2)
      for r in 0..<rows { for i in 0..<c { x[r * c + i] += Float(r) - 1.5 } }  // row offsets
      let weight = random.floats(c, in: 0.5...1.5)
      let bias = random.floats(c, in: -0.5...0.5)
      var out = [Float](repeating: .nan, count: rows * c)
      var mean = [Float](repeating: .nan, count: rows)
      var rstd = [Float](repeating: .nan, count: rows)
      layerNormForward(
        out: &out, mean: &mean, rstd: &rstd, inp: x, weight: weight, bias: bias, rows: rows,
        channels: c)
      let reference = layerNormReference(
        x.doubles, weight: weight.doubles, bias: bias.doubles, rows: rows, channels: c)
      let shape = "rows \(rows) C \(c)"
      assertClose(out, reference.out, relative: 1e-5, absolute: 1e-6, "out \(shape)")
      assertClose(mean, reference.mean, relative: 1e-5, absolute: 1e-6, "mean \(shape)")
      assertClose(rstd, reference.rstd, relative: 1e-5, absolute: 0, "rstd \(shape)")
    }
  }

  func testBackwardMatchesFiniteDifferencesAndAccumulates() {
    var random = TestRandom(seed: 11)
    for (rows, c) in shapes {
      let x = random.floats(rows * c, in: -2...2)
      let weight = random.floats(c, in: 0.5...1.5)
      let bias = random.floats(c, in: -0.5...0.5)
      let w = random.floats(rows * c, in: -1...1)  // L = Σ w·out, so dout = w
      var out = [Float](repeating: 0, count: rows * c)
      var mean = [Float](repeating: 0, count: rows)
      var rstd = [Float](repeating: 0, count: rows)
      layerNormForward(
        out: &out, mean: &mean, rstd: &rstd, inp: x, weight: weight, bias: bias, rows: rows,
        channels: c)

      // Pre-filled gradients: backward must add to them.
      let dinp0 = random.floats(rows * c, in: -1...1)
      let dweight0 = random.floats(c, in: -1...1)
      let dbias0 = random.floats(c, in: -1...1)
      var dinp = dinp0
      var dweight = dweight0
      var dbias = dbias0
      layerNormBackward(
        dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: w, inp: x, weight: weight,
        mean: mean, rstd: rstd, rows: rows, channels: c)

      let (xD, weightD, biasD, wD) = (x.doubles, weight.doubles, bias.doubles, w.doubles)
      func loss(_ x: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
        dot(wD, layerNormReference(x, weight: weight, bias: bias, rows: rows, channels: c).out)
      }
      let gradX = centralDifferences(at: xD) { loss($0, weightD, biasD) }
      let gradWeight = centralDifferences(at: weightD) { loss(xD, $0, biasD) }
      let gradBias = centralDifferences(at: biasD) { loss(xD, weightD, $0) }
      let shape = "rows \(rows) C \(c)"
      assertClose(dinp, add(dinp0, gradX), relative: 1e-3, absolute: 1e-5, "dinp \(shape)")
      assertClose(
        dweight, add(dweight0, gradWeight), relative: 1e-3, absolute: 1e-5, "dweight \(shape)")
      assertClose(dbias, add(dbias0, gradBias), relative: 1e-3, absolute: 1e-5, "dbias \(shape)")
    }
  }

  /// A constant row has variance 0: epsilon keeps rstd finite, out ≈ bias, backward finite.
  func testConstantRowStaysFinite() {
    let rows = 3
    let c = 19
    var x = [Float](repeating: 0, count: rows * c)
    for r in 0..<rows { for i in 0..<c { x[r * c + i] = [0, 3.7, -1e4][r] } }
    let weight = [Float](repeating: 1.25, count: c)
    let bias = (0..<c).map { Float($0) * 0.1 }
    var out = [Float](repeating: .nan, count: rows * c)
    var mean = [Float](repeating: .nan, count: rows)
    var rstd = [Float](repeating: .nan, count: rows)
    layerNormForward(
      out: &out, mean: &mean, rstd: &rstd, inp: x, weight: weight, bias: bias, rows: rows,
      channels: c)
    assertFinite(out, "out")
    assertFinite(rstd, "rstd")
    // Rows 0 and 1: the float mean is within a few ulps of 3.7 (ulp 2.4e-7), so out is bias up to
    // a few ulps · rstd (1000) · weight.
    assertClose(
      Array(out[0..<(2 * c)]), (bias + bias).doubles, relative: 0, absolute: 2e-3,
      "out ≈ bias on constant rows")

    let dout = [Float](repeating: 1, count: rows * c)
    var dinp = [Float](repeating: 0, count: rows * c)
    var dweight = [Float](repeating: 0, count: c)
    var dbias = [Float](repeating: 0, count: c)
    layerNormBackward(
      dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: dout, inp: x, weight: weight,
      mean: mean, rstd: rstd, rows: rows, channels: c)
    assertFinite(dinp, "dinp")
    assertFinite(dweight, "dweight")
    assertFinite(dbias, "dbias")
  }
}
