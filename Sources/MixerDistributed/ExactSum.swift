// ExactSum: an order-free sum of float gradients (`--exact`). Every float is turned into a 128-bit
// fixed-point integer, `round(x · 2^96)`, and integers are added instead of floats. Integer addition
// is associative and commutative, so the sum is the same bits whatever the grouping: over the
// micro-batches of one rank, over the ranks, in any MPI algorithm (ring, tree, recursive halving),
// under all-reduce or ZeRO-1's reduce-scatter. The sum is rounded back to a float once, at the end.
//
// Range and precision of the fixed point (quantum 2^-96, signed 128 bits):
//   * every float with |x| >= 2^-73 converts EXACTLY (its last bit is worth at least 2^-96);
//     smaller ones round to the nearest multiple of 2^-96 ≈ 1.3e-29 (ties away from zero);
//   * |x| < 2^31 per element and micro-batch; larger values, infinities and NaN are counted as
//     overflows (the caller stops the run with an error, as it does for a non-finite loss);
//   * the float result is a fixed function of the exact sum, within one fp32 rounding of it (the
//     magnitude's two 64-bit halves added in Double, then rounded to Float).
// Scalars (the loss, the squared gradient norm) use the same integers with their own quantum.
//
// The arithmetic lives here; the communicators add the integers (MPICommunicator with a
// user-defined MPI operation over 16-byte elements, the in-process ones directly).

/// Fixed-point exponent of gradients: an integer `n` stands for `n · 2^-96`.
public let exactGradientFractionBits = 96
/// Fixed-point exponent of scalars (loss sums, squared norms): `n` stands for `n · 2^-64`.
public let exactScalarFractionBits = 64

/// The fixed-point integer nearest to `x · 2^96` (ties away from zero); `overflow` is set when
/// |x| >= 2^31 or x is not finite (the result is then 0).
@inline(__always)
public func exactFixedPoint(_ x: Float, overflow: inout Bool) -> Int128 {
  guard x.magnitude < 0x1p31 else {  // also NaN
    overflow = true
    return 0
  }
  // x · 2^96 is exact in Double (24 significant bits, below 2^127); only |x| < 2^-73 rounds
  return fixedPoint(ofScaled: (Double(x) * 0x1p96).rounded(.toNearestOrAwayFromZero))
}

/// The integer `d` (an integral Double below 2^127 in magnitude) as an Int128, through two
/// exact 64-bit halves (faster than the generic conversion).
@inline(__always)
func fixedPoint(ofScaled d: Double) -> Int128 {
  let magnitude = d.magnitude
  let high = (magnitude * 0x1p-64).rounded(.down)
  let low = magnitude - high * 0x1p64  // in [0, 2^64), exact: it holds the low bits of d
  let result = Int128(UInt64(high)) << 64 | Int128(UInt64(low))
  return d < 0 ? -result : result
}

/// The float nearest to `n · 2^-96` (its magnitude's two 64-bit halves added in Double, then
/// rounded to Float: a fixed function of `n`, within one fp32 rounding of the exact value).
@inline(__always)
public func floatFromExactFixedPoint(_ n: Int128) -> Float {
  let magnitude = n.magnitude
  let value = Double(UInt64(truncatingIfNeeded: magnitude >> 64)) * 0x1p-32
    + Double(UInt64(truncatingIfNeeded: magnitude)) * 0x1p-96
  return Float(n < 0 ? -value : value)
}

/// `n · 2^-fractionBits` as the nearest Double (ties to even).
@inline(__always)
public func doubleFromFixedPoint(_ n: Int128, fractionBits: Int) -> Double {
  let magnitude = n.magnitude
  let high = UInt64(truncatingIfNeeded: magnitude >> 64)
  let low = UInt64(truncatingIfNeeded: magnitude)
  let value: Double
  if high == 0 {
    value = Double(low)
  } else {
    // 53 significant bits from the top, rounded to nearest (ties to even) by hand so that the low
    // word's bits are not rounded twice
    let leading = high.leadingZeroBitCount  // < 64
    let width = 128 - leading  // significant bits, > 64
    let drop = width - 53
    let top = magnitude >> drop
    let rest = magnitude & ((UInt128(1) << drop) - 1)
    let half = UInt128(1) << (drop - 1)
    var significand = UInt64(truncatingIfNeeded: top)
    if rest > half || (rest == half && significand & 1 == 1) { significand += 1 }
    value = Double(sign: .plus, exponent: drop, significand: Double(significand))
  }
  let scaled = Double(sign: .plus, exponent: -fractionBits, significand: value)
  return n < 0 ? -scaled : scaled
}

/// The fixed-point integer of a Double scalar, `round(x · 2^64)` (ties away from zero);
/// `overflow` is set when |x| >= 2^62 or x is not finite.
@inline(__always)
public func exactScalarFixedPoint(_ x: Double, overflow: inout Bool) -> Int128 {
  guard x.magnitude < 0x1p62 else {  // also NaN
    overflow = true
    return 0
  }
  return fixedPoint(ofScaled: (x * 0x1p64).rounded(.toNearestOrAwayFromZero))  // exact scaling
}

/// The fixed-point accumulator of a flat gradient buffer: one 128-bit integer per float.
public final class ExactGradients {
  /// Elements (the gradient buffer's length).
  public let count: Int
  /// `sum[i] · 2^-96` is the exact sum of every float added at `i` so far.
  public let sum: UnsafeMutablePointer<Int128>
  /// Set when a float added since `clearOverflow()` was too large or not finite.
  public private(set) var overflowed = false

  public init(count: Int) {
    self.count = count
    sum = .allocate(capacity: max(count, 1))
    sum.initialize(repeating: 0, count: max(count, 1))
  }

  deinit { sum.deallocate() }

  /// Moves `floats[range]` into the sum: `sum[i] (+)= fixed(floats[i])`, then `floats[i] = 0`, so
  /// the float buffer is ready for the next micro-batch's backward (which accumulates). With
  /// `replace`, the sum starts afresh on `range` instead of adding.
  public func add(moving floats: UnsafeMutablePointer<Float>, range: Range<Int>, replace: Bool) {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "ExactGradients.add(\(range)) outside 0..<\(count)")
    var overflow = false
    if replace {
      for i in range {
        sum[i] = exactFixedPoint(floats[i], overflow: &overflow)
        floats[i] = 0
      }
    } else {
      for i in range {
        sum[i] &+= exactFixedPoint(floats[i], overflow: &overflow)
        floats[i] = 0
      }
    }
    if overflow { overflowed = true }
  }

  /// Writes the rounded sums: `floats[i] = float(sum[i] · 2^-96)` on `range`.
  public func round(into floats: UnsafeMutablePointer<Float>, range: Range<Int>) {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "ExactGradients.round(\(range)) outside 0..<\(count)")
    for i in range { floats[i] = floatFromExactFixedPoint(sum[i]) }
  }

  /// Forgets a past overflow (start of a step).
  public func clearOverflow() { overflowed = false }
}

/// Σ x[i]² over `range` as a fixed-point integer (`n · 2^-64`): every square is formed exactly
/// in Double (24-bit significands give 48 bits) and rounded to the quantum on its own, so the
/// total does not depend on how the range is split (ZeRO-1 shards at any world size).
public func exactSumOfSquares(_ x: UnsafePointer<Float>, range: Range<Int>, overflow: inout Bool) -> Int128 {
  var total: Int128 = 0
  for i in range {
    let value = Double(x[i])
    total &+= exactScalarFixedPoint(value * value, overflow: &overflow)
  }
  return total
}
