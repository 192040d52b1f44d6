// The exact sum (`--exact`, ExactSum.swift): floats convert to 128-bit fixed point without loss
// above the quantum, the integers add up to the same bits in any order and grouping (where fp32
// does not), the rounded result is within one fp32 rounding of a float64 sum, out-of-range values
// are reported, and the in-process communicators sum the integers in all-reduce and reduce-scatter.

import MixerDistributed
import XCTest

/// A small deterministic generator (xorshift64*), so the tests need no other module.
struct TestRNG {
  var state: UInt64
  init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
  mutating func next() -> UInt64 {
    state ^= state >> 12
    state ^= state << 25
    state ^= state >> 27
    return state &* 0x2545_F491_4F6C_DD1D
  }
  /// A value in 0..<bound.
  mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

final class ExactSumTests: XCTestCase {
  /// Floats with a wide spread of exponents, signs and significands (the range of gradients).
  func sampleFloats(count: Int, seed: UInt64) -> [Float] {
    var rng = TestRNG(seed: seed)
    return (0..<count).map { _ in
      let exponent = Int(rng.below(50)) - 40  // 2^-40 ..< 2^10
      let value = Float(sign: rng.below(2) == 0 ? .plus : .minus, exponent: exponent,
                        significand: 1 + Float(rng.below(1 << 23)) * 0x1p-23)
      return value
    }
  }

  func testConversionIsExactAboveTheQuantumAndFlagsOverflow() {
    var overflow = false
    for x in sampleFloats(count: 10_000, seed: 1) + [0x1p-73, -0x1p-73, 0x1.fffffep30, 1, -1, 0] {
      XCTAssertEqual(floatFromExactFixedPoint(exactFixedPoint(x, overflow: &overflow)), x, "\(x)")
    }
    XCTAssertFalse(overflow)
    XCTAssertEqual(exactFixedPoint(0x1.fffffep-98, overflow: &overflow), 0)  // below half a quantum
    XCTAssertEqual(exactFixedPoint(0x1p-97, overflow: &overflow), 1)  // half a quantum: away from zero
    XCTAssertEqual(exactFixedPoint(0x1p-96, overflow: &overflow), 1)
    XCTAssertEqual(exactFixedPoint(-0x1.8p-96, overflow: &overflow), -2)  // a tie, away from zero
    XCTAssertFalse(overflow)
    for bad: Float in [0x1p31, -0x1p31, .infinity, -.infinity, .nan] {
      var flagged = false
      _ = exactFixedPoint(bad, overflow: &flagged)
      XCTAssertTrue(flagged, "\(bad) must be flagged")
    }
  }

  /// Fixed point back to Double: exact where it fits, rounded to nearest (ties to even) above
  /// 53 bits, also past 64 bits of magnitude.
  func testDoubleFromFixedPointRoundsToNearest() {
    XCTAssertEqual(doubleFromFixedPoint(3, fractionBits: 1), 1.5)
    XCTAssertEqual(doubleFromFixedPoint(-5, fractionBits: 0), -5)
    let big = Int128(1) << 100
    XCTAssertEqual(doubleFromFixedPoint(big + 1, fractionBits: 0), 0x1p100)
    // 2^100 + 2^47 is a tie between 2^100 and 2^100 + 2^48: to even (2^100)
    XCTAssertEqual(doubleFromFixedPoint(big + (Int128(1) << 47), fractionBits: 0), 0x1p100)
    XCTAssertEqual(doubleFromFixedPoint(big + (Int128(1) << 47) + 1, fractionBits: 0), 0x1p100 + 0x1p48)
    XCTAssertEqual(doubleFromFixedPoint(-(big + (Int128(3) << 47)), fractionBits: 96), -(0x1p4 + 0x1p-47))
    var overflow = false
    XCTAssertEqual(exactScalarFixedPoint(-1.5, overflow: &overflow), -(Int128(3) << 63))
    XCTAssertEqual(exactScalarFixedPoint(-0x1p-65, overflow: &overflow), -1)  // a tie, away from zero
    XCTAssertEqual(doubleFromFixedPoint(exactScalarFixedPoint(-123.456, overflow: &overflow), fractionBits: 64), -123.456)
    XCTAssertFalse(overflow)
    _ = exactScalarFixedPoint(.nan, overflow: &overflow)
    XCTAssertTrue(overflow)
  }

  /// The same terms summed in two orders and two groupings: the integers agree bit for bit,
  /// the float32 sums do not, and the rounded exact sum is within half an fp32 ulp (plus the
  /// Double step) of a float64 sum.
  func testSumIsTheSameInAnyOrderAndGrouping() {
    let terms = sampleFloats(count: 4_096, seed: 2)
    var overflow = false
    func exactSum(_ values: ArraySlice<Float>) -> Int128 {
      values.reduce(Int128(0)) { $0 &+ exactFixedPoint($1, overflow: &overflow) }
    }
    var rng = TestRNG(seed: 3)
    var shuffled = terms
    for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, rng.below(i + 1)) }
    let forward = exactSum(terms[...])
    let byShuffle = exactSum(shuffled[...])
    let byGroups = stride(from: 0, to: terms.count, by: 3 * 64).map { exactSum(terms[$0..<min($0 + 192, terms.count)]) }
      .reversed().reduce(Int128(0), &+)
    XCTAssertEqual(forward, byShuffle)
    XCTAssertEqual(forward, byGroups)
    XCTAssertFalse(overflow)
    XCTAssertNotEqual(terms.reduce(0, +), shuffled.reduce(0, +), "fp32 sums should depend on the order here")
    let reference = terms.reduce(0.0) { $0 + Double($1) }
    let rounded = Double(floatFromExactFixedPoint(forward))
    XCTAssertLessThanOrEqual(abs(rounded - reference), abs(reference) * 0x1p-24 * 1.0001)
  }

  /// `ExactGradients` moves floats into the sum (leaving zeros) and rounds back; squares of a
  /// buffer add up the same whatever the split of the range.
  func testAccumulatorMovesAndSquaresSplitFreely() {
    let count = 1_000
    let exact = ExactGradients(count: count)
    var first = sampleFloats(count: count, seed: 4), second = sampleFloats(count: count, seed: 5)
    let expected = zip(first, second).map { Double($0) + Double($1) }
    exact.add(moving: &first, range: 0..<count, replace: true)
    exact.add(moving: &second, range: 0..<600, replace: false)
    exact.add(moving: &second, range: 600..<count, replace: false)
    XCTAssertEqual(first, [Float](repeating: 0, count: count))
    XCTAssertEqual(second, [Float](repeating: 0, count: count))
    XCTAssertFalse(exact.overflowed)
    var result = [Float](repeating: 0, count: count)
    exact.round(into: &result, range: 0..<count)
    for i in 0..<count { XCTAssertEqual(result[i], Float(expected[i]), "element \(i)") }

    var overflow = false
    let whole = exactSumOfSquares(result, range: 0..<count, overflow: &overflow)
    let parts = [0..<1, 1..<333, 333..<334, 334..<count].map { exactSumOfSquares(result, range: $0, overflow: &overflow) }
    XCTAssertEqual(whole, parts.reduce(0, &+))
    XCTAssertFalse(overflow)

    var huge: [Float] = [0x1p40]
    exact.add(moving: &huge, range: 0..<1, replace: false)
    XCTAssertTrue(exact.overflowed)
    exact.clearOverflow()
    XCTAssertFalse(exact.overflowed)
  }

  /// In-process ranks sum 128-bit integers exactly in all-reduce and reduce-scatter (including
  /// values past 64 bits, so a 64-bit sum would be wrong).
  func testLocalGroupSumsIntegers() throws {
    for size in [1, 2, 3] {
      let count = 7
      let value = { (rank: Int, i: Int) -> Int128 in (Int128(rank + 1) << 70) &- Int128(i * 1_000 + rank) }
      let expected = (0..<count).map { i in (0..<size).reduce(Int128(0)) { $0 &+ value($1, i) } }
      let results = try LocalGroup.run(size: size) { comm -> ([Int128], [Int128]) in
        var all = (0..<count).map { value(comm.rank, $0) }
        try comm.allReduceSum(&all)
        var scattered = (0..<count).map { value(comm.rank, $0) }
        let counts = comm.shardCounts(ofTotal: count)
        try scattered.withUnsafeMutableBufferPointer { try comm.reduceScatterSum($0.baseAddress!, counts: counts) }
        let shard = comm.shard(ofTotal: count)
        return (all, Array(scattered[shard]))
      }
      for (rank, result) in results.enumerated() {
        XCTAssertEqual(result.0, expected, "size \(size) rank \(rank)")
        XCTAssertEqual(result.1, Array(expected[shardRanges(total: count, parts: size)[rank]]), "size \(size) rank \(rank)")
      }
    }
  }
}
