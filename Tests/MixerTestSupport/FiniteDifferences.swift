// FiniteDifferences.swift: what the gradient tests share: a finiteness check, central finite
// differences in Double, the dot product of the random functional L = Σ w·out, and a seeded
// generator that does not depend on the kernels under test.

import XCTest

/// Asserts every value is finite; a failure reports the first bad index.
public func assertFinite(
  _ values: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
  if let i = values.firstIndex(where: { !$0.isFinite }) {
    XCTFail("\(label): [\(i)] = \(values[i]) is not finite", file: file, line: line)
  }
}

/// ∂f/∂x[i] for every i by central differences, (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h, in Double.
public func centralDifferences(at point: [Double], step h: Double = 1e-6, of f: ([Double]) -> Double)
  -> [Double]
{
  var x = point
  var gradient = [Double](repeating: 0, count: x.count)
  for i in x.indices {
    let saved = x[i]
    x[i] = saved + h
    let plus = f(x)
    x[i] = saved - h
    let minus = f(x)
    x[i] = saved
    gradient[i] = (plus - minus) / (2 * h)
  }
  return gradient
}

/// Σ a[i]·b[i] in Double: the backward tests differentiate the random functional L = Σ w·out.
public func dot(_ a: [Double], _ b: [Double]) -> Double {
  precondition(a.count == b.count)
  var sum = 0.0
  for i in a.indices { sum += a[i] * b[i] }
  return sum
}

/// Elementwise a + b in Double (expected values of accumulating gradients).
public func add(_ a: [Float], _ b: [Double]) -> [Double] {
  precondition(a.count == b.count)
  return a.indices.map { Double(a[$0]) + b[$0] }
}

/// SplitMix64: a seeded generator for test data, independent of `CounterRNG`.
public struct TestRandom: RandomNumberGenerator {
  public var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// `count` uniform floats in `range`.
  public mutating func floats(_ count: Int, in range: ClosedRange<Float>) -> [Float] {
    (0..<count).map { _ in Float.random(in: range, using: &self) }
  }
}

extension Array where Element == Float {
  /// The values widened to Double (the point a Double reference is evaluated at).
  public var doubles: [Double] { map(Double.init) }
}
