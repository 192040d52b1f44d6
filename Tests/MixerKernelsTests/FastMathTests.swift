// vexp, vtanh and scalarTanh against Foundation over dense grids, and at ±inf and huge inputs.

import Foundation
import MixerTestSupport
import MixerKernels
import XCTest

final class FastMathTests: XCTestCase {
  /// `count` evenly spaced Floats from `low` to `high`, padded to a multiple of 16 with `high`.
  private func grid(_ low: Float, _ high: Float, count: Int) -> [Float] {
    var points = (0..<count).map { low + (high - low) * Float($0) / Float(count - 1) }
    while points.count % 16 != 0 { points.append(high) }
    return points
  }

  /// f applied 16 lanes at a time.
  private func applyVector(_ x: [Float], _ f: (FloatVector) -> FloatVector) -> [Float] {
    var out = [Float](repeating: .nan, count: x.count)
    for start in stride(from: 0, to: x.count, by: 16) {
      let v = f(FloatVector(x[start..<(start + 16)]))
      for lane in 0..<16 { out[start + lane] = v[lane] }
    }
    return out
  }

  func testExpRelativeErrorOnMinus80To80() {
    let x = grid(-80, 80, count: 200_000)
    let reference = x.map { Foundation.exp(Double($0)) }
    assertClose(applyVector(x, vexp), reference, relative: 2e-6, absolute: 0, "vexp on [-80, 80]")
  }

  func testTanhAbsoluteErrorOnMinus20To20() {
    let x = grid(-20, 20, count: 200_000)
    let reference = x.map { Foundation.tanh(Double($0)) }
    assertClose(applyVector(x, vtanh), reference, relative: 0, absolute: 1e-6, "vtanh on [-20, 20]")
    // scalarTanh runs the same vector code on a splat: a sparser grid keeps the debug run short.
    let sparse = grid(-20, 20, count: 20_001)
    assertClose(
      sparse.map(scalarTanh), sparse.map { Foundation.tanh(Double($0)) }, relative: 0,
      absolute: 1e-6, "scalarTanh on [-20, 20]")
  }

  /// ±inf and huge inputs: tanh saturates at ±1 (no NaN); exp stays finite and normal.
  func testExtremeInputs() {
    let extremes: [Float] = [
      .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1e30, -1e30,
      1e4, -1e4, 100, -100, 88, -87, 89, -88, 0, -0.0,
    ]
    let tanh = applyVector(extremes, vtanh)
    assertClose(
      tanh, extremes.map { Foundation.tanh(Double($0)) }, relative: 0, absolute: 1e-6,
      "vtanh extremes")
    assertClose(
      extremes.map(scalarTanh), extremes.map { Foundation.tanh(Double($0)) }, relative: 0,
      absolute: 1e-6, "scalarTanh extremes")

    let exp = applyVector(extremes, vexp)
    assertFinite(exp, "vexp extremes")
    if let i = exp.firstIndex(where: { !($0.isNormal && $0 > 0) }) {
      XCTFail("vexp(\(extremes[i])) = \(exp[i]) is not a positive normal number")
    }
  }
}
