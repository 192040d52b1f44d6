// Vectorised elementary functions for the GELU hot loops. Only `exp` is approximated (Cody–Waite
// range reduction to [-ln2/2, ln2/2] and a degree-7 Taylor polynomial, relative error < 2e-7);
// tanh is built from it. Tests compare against Foundation over a dense grid.

public typealias FloatVector = SIMD16<Float>

/// e^x for each lane; inputs are clamped to [-87, 88] (results stay finite and normal).
@inline(__always)
public func vexp(_ x: FloatVector) -> FloatVector {
  let clamped = x.clamped(lowerBound: FloatVector(repeating: -87), upperBound: FloatVector(repeating: 88))
  let n = (clamped * 1.442_695_040_888_963_4).rounded(.toNearestOrEven)
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
  let exponent = (SIMD16<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
  return p * unsafeBitCast(exponent, to: FloatVector.self)
}

/// tanh for each lane, as `sign(x)·(1 − e^{−2|x|}) / (1 + e^{−2|x|})`.
@inline(__always)
public func vtanh(_ x: FloatVector) -> FloatVector {
  let e = vexp(-2 * x.replacing(with: -x, where: x .< 0))
  let t = (1 - e) / (1 + e)
  return t.replacing(with: -t, where: x .< 0)
}

/// tanh of one value through the vector path (for tails and tests).
@inline(__always)
public func scalarTanh(_ x: Float) -> Float { vtanh(FloatVector(repeating: x))[0] }
