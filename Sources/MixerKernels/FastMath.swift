// Vectorised elementary functions for the GELU hot loops. Only `exp` is approximated (Cody–Waite
// range reduction to [-ln2/2, ln2/2] and a degree-7 Taylor polynomial, relative error < 2e-7);
// tanh is built from it. Tests compare against Foundation over a dense grid.

/// e^x for each lane; inputs are clamped to [-87, 88] (results stay finite and normal).
/// Rounding to the nearest integer uses the 1.5·2²³ trick (adding it leaves round(x) in the low
/// mantissa bits), so every step is plain vector arithmetic and integer bit work.
@_transparent
public func vexp(_ x: FloatVector) -> FloatVector {
  // (masked replacement compiles to vector blends; pointwiseMin/Max do not vectorise)
  let clamped = x.replacing(with: 88, where: x .> 88).replacing(with: -87, where: x .< -87)
  let shifter = FloatVector(repeating: 12_582_912)  // 1.5 · 2^23
  let shifted = clamped * 1.442_695_040_888_963_4 + shifter
  let n = shifted - shifter
  // ln 2 split into a part exact in float and a remainder (Cody–Waite).
  var r = clamped - n * 0.693_145_751_953_125
  r = r - n * 1.428_606_765_330_187_0e-06
  var p: FloatVector = FloatVector(repeating: 1.0 / 5040)
  p = p * r + 1.0 / 720
  p = p * r + 1.0 / 120
  p = p * r + 1.0 / 24
  p = p * r + 1.0 / 6
  p = p * r + 0.5
  p = p * r + 1
  p = p * r + 1
  // the integer n sits in the low bits of `shifted`; move it into the exponent field
  let bits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
  let scale = unsafeBitCast((bits &+ 127) &<< 23, to: FloatVector.self)
  return p * scale
}

/// tanh for each lane, as `sign(x)·(1 − e^{−2|x|}) / (1 + e^{−2|x|})`.
@_transparent
public func vtanh(_ x: FloatVector) -> FloatVector {
  let magnitude = unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: FloatVector.self)
  let sign = unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x8000_0000
  let e = vexp(-2 * magnitude)
  let t = (1 - e) / (1 + e)
  return unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) | sign, to: FloatVector.self)
}

/// tanh of one value through the vector path (for tails and tests).
@inline(__always)
public func scalarTanh(_ x: Float) -> Float { vtanh(FloatVector(repeating: x))[0] }
