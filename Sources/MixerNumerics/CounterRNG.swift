// Counter-based random numbers: every draw is a pure function of (key, counter), so any rank can
// produce any sample's randomness without shared state, and resuming needs no RNG state.
//
// The mixer is SplitMix64's finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", 2014) applied to a key/counter combination; it passes BigCrush as a hash of a
// counter, which is all a training run needs.

import Foundation

/// A stream of random numbers identified by a 64-bit key; draw `i` is `mix(key, i)`.
public struct CounterRNG {
  public let key: UInt64
  public var counter: UInt64

  /// A stream keyed by a seed and up to three integers (e.g. purpose, step, sample index).
  @inlinable
  public init(seed: UInt64, _ a: UInt64 = 0, _ b: UInt64 = 0, _ c: UInt64 = 0) {
    key = CounterRNG.hash(seed, a, b, c)
    counter = 0
  }

  /// The SplitMix64 finaliser: a bijective 64-bit mix.
  @inlinable @inline(__always)
  public static func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Hashes a seed and three integers into one key.
  @inlinable
  public static func hash(_ seed: UInt64, _ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
    var h = mix(seed)
    h = mix(h ^ a &* 0xD6E8_FEB8_6659_FD93)
    h = mix(h ^ b &* 0xA076_1D64_78BD_642F)
    h = mix(h ^ c &* 0xE703_7ED1_A0B4_28DB)
    return h
  }

  /// The next 64 random bits.
  @inlinable @inline(__always)
  public mutating func next() -> UInt64 {
    let value = CounterRNG.mix(key ^ CounterRNG.mix(counter))
    counter &+= 1
    return value
  }

  /// A uniform Float in [0, 1) with 24 random bits.
  @inlinable @inline(__always)
  public mutating func uniform() -> Float {
    Float(next() >> 40) * (1.0 / 16_777_216.0)
  }

  /// A uniform Double in [0, 1) with 53 random bits.
  @inlinable @inline(__always)
  public mutating func uniformDouble() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// A uniform integer in 0..<bound (bound > 0), by Lemire's multiply-shift with rejection.
  @inlinable
  public mutating func below(_ bound: Int) -> Int {
    precondition(bound > 0)
    let b = UInt64(bound)
    while true {
      let product = next().multipliedFullWidth(by: b)
      if product.low >= (0 &- b) % b { return Int(product.high) }
    }
  }

  /// A standard normal Double (Box–Muller, one value per call).
  @inlinable
  public mutating func normal() -> Double {
    let u1 = max(uniformDouble(), 1e-300)
    let u2 = uniformDouble()
    return (-2.0 * log(u1)).squareRoot() * cos(2.0 * Double.pi * u2)
  }

  /// A standard normal truncated to [-2, 2] by rejection (as `jax.random.truncated_normal`).
  @inlinable
  public mutating func truncatedNormal() -> Double {
    while true {
      let z = normal()
      if z >= -2 && z <= 2 { return z }
    }
  }
}

