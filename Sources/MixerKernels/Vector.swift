// Unaligned SIMD loads and stores on raw float buffers, and vectorised reductions. Float sums are
// not reassociated by the compiler, so reductions use explicit 16-lane accumulators.

@inline(__always)
func load16(_ p: UnsafePointer<Float>, _ i: Int) -> FloatVector {
  UnsafeRawPointer(p + i).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func store16(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ v: FloatVector) {
  UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: FloatVector.self)
}

/// Σ p[i] for i in 0..<n, with 16 lanes of partial sums.
@inline(__always)
public func vsum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
  var acc = FloatVector()
  var i = 0
  while i + 16 <= n { acc += load16(p, i); i += 16 }
  var total = acc.sum()
  while i < n { total += p[i]; i += 1 }
  return total
}

/// Σ (p[i] − shift)² for i in 0..<n.
@inline(__always)
public func vsumSquaredDeviation(_ p: UnsafePointer<Float>, _ n: Int, _ shift: Float) -> Float {
  var acc = FloatVector()
  let s = FloatVector(repeating: shift)
  var i = 0
  while i + 16 <= n { let d = load16(p, i) - s; acc += d * d; i += 16 }
  var total = acc.sum()
  while i < n { let d = p[i] - shift; total += d * d; i += 1 }
  return total
}

/// Σ a[i]·b[i] for i in 0..<n.
@inline(__always)
func vdot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
  var acc = FloatVector()
  var i = 0
  while i + 16 <= n { acc += load16(a, i) * load16(b, i); i += 16 }
  var total = acc.sum()
  while i < n { total += a[i] * b[i]; i += 1 }
  return total
}
