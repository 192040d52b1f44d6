// CounterRNG: draws are a pure function of (key, counter); below(n) is in range and uniform
// (chi-square); truncatedNormal stays in [-2, 2] with the truncated normal's variance.

import MixerKernels
import XCTest

final class RandomTests: XCTestCase {
  /// Exact equality is the feature here: any rank must reproduce any draw.
  func testSameKeyAndCounterGiveSameValues() {
    var first = CounterRNG(seed: 42, 1, 2, 3)
    var second = CounterRNG(seed: 42, 1, 2, 3)
    let a = (0..<1000).map { _ in first.next() }
    let b = (0..<1000).map { _ in second.next() }
    XCTAssertEqual(a, b, "same key, same stream")

    // Jumping to a counter reproduces that draw without replaying the stream.
    var jumped = CounterRNG(seed: 42, 1, 2, 3)
    jumped.counter = 500
    XCTAssertEqual(jumped.next(), a[500], "draw 500 by counter")

    // Any change of seed or of one of the three integers gives a different stream.
    for var other in [
      CounterRNG(seed: 43, 1, 2, 3), CounterRNG(seed: 42, 0, 2, 3), CounterRNG(seed: 42, 1, 3, 3),
      CounterRNG(seed: 42, 1, 2, 4), CounterRNG(seed: 42, 2, 1, 3),
    ] {
      let values = (0..<1000).map { _ in other.next() }
      let shared = Set(values).intersection(a).count
      XCTAssertEqual(
        shared, 0, "key \(other.key) shares \(shared) of 1000 draws with key \(first.key)")
    }
  }

  func testBelowIsInRangeAndUniform() {
    var rng = CounterRNG(seed: 7, 1)
    // Range over awkward bounds, including 1 and sizes far from powers of two.
    for bound in [1, 2, 3, 10, 1_000_003, Int(Int32.max), 1 << 62 + 12345] {
      for _ in 0..<1000 {
        let value = rng.below(bound)
        if value < 0 || value >= bound {
          XCTFail("below(\(bound)) gave \(value)")
          break
        }
      }
    }

    // Chi-square over 10 buckets, 9 degrees of freedom: P(χ² > 40) ≈ 5e-6.
    let buckets = 10
    let draws = 100_000
    var counts = [Int](repeating: 0, count: buckets)
    for _ in 0..<draws { counts[rng.below(buckets)] += 1 }
    let expected = Double(draws) / Double(buckets)
    let chiSquare = counts.reduce(0.0) {
      $0 + (Double($1) - expected) * (Double($1) - expected) / expected
    }
    XCTAssertLessThan(chiSquare, 40, "below(10) counts \(counts)")

    // Uniform floats stay in [0, 1).
    for _ in 0..<10_000 {
      let u = rng.uniform()
      let d = rng.uniformDouble()
      if !(u >= 0 && u < 1 && d >= 0 && d < 1) {
        XCTFail("uniform \(u), uniformDouble \(d) outside [0, 1)")
        break
      }
    }
  }

  /// A standard normal truncated at ±2 has variance 1 − 4φ(2)/(Φ(2) − Φ(−2)) ≈ 0.7737 and mean 0;
  /// the standard errors over 200k draws are ≈ 0.002, the tolerances 5×.
  func testTruncatedNormalRangeAndMoments() {
    var rng = CounterRNG(seed: 9, 4, 5)
    let draws = 200_000
    var sum = 0.0
    var sumSquares = 0.0
    for _ in 0..<draws {
      let z = rng.truncatedNormal()
      if !(z >= -2 && z <= 2) {
        XCTFail("truncatedNormal gave \(z)")
        return
      }
      sum += z
      sumSquares += z * z
    }
    let mean = sum / Double(draws)
    let variance = sumSquares / Double(draws) - mean * mean
    let phi2 = 0.053_990_966_513_188_06  // φ(2)
    let mass = 0.954_499_736_103_641_6  // Φ(2) − Φ(−2)
    let expectedVariance = 1 - 4 * phi2 / mass
    XCTAssertEqual(mean, 0, accuracy: 0.01, "mean")
    XCTAssertEqual(
      variance, expectedVariance, accuracy: 0.01, "variance (expected \(expectedVariance))")
  }
}
