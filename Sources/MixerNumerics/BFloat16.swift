// bfloat16: fp32's sign and 8-bit exponent with 7 mantissa bits. The one rounding of the project
// (to nearest, ties to even; NaN stays a quiet NaN, infinities stay): bf16 products' operands
// (MixerKernels), bf16 gradients on the wire (MixerDistributed), bf16 tensors in checkpoints and
// ONNX files all round through `bf16Bits`. The 16-lane form is the same arithmetic without
// branches, for the kernels' hot loops.
//
// Everything here is `@inlinable`: the kernels in other modules inline it into their loops.

/// 16 fp32 lanes, the vector width of the elementwise kernels.
public typealias FloatVector = SIMD16<Float>

/// The bfloat16 nearest to `x` (ties to even); NaN stays a quiet NaN with its sign.
@inlinable @inline(__always)
public func bf16Bits(_ x: Float) -> UInt16 {
  let bits = x.bitPattern
  if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
  let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
  return UInt16(truncatingIfNeeded: rounded >> 16)
}

/// The fp32 value of a bfloat16 bit pattern (exact).
@inlinable @inline(__always)
public func floatFromBF16(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

/// The rounding of `bf16Bits` on 16 lanes, without branches.
@inlinable @inline(__always)
public func bf16Bits(_ v: FloatVector) -> SIMD16<UInt16> {
  let bits = unsafeBitCast(v, to: SIMD16<UInt32>.self)
  let rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
  // NaN keeps its sign and top payload bits and stays quiet (found by a float comparison: an
  // unsigned integer one has no AVX2 instruction and compiles to scalar code, 10x slower)
  let quietNaN = (bits &>> 16) | 0x40
  let lanes = rounded.replacing(with: quietNaN, where: v .!= v)
  // the low half of each 32-bit lane (little-endian: the even 16-bit lanes). The generic
  // `SIMD16<UInt16>(truncatingIfNeeded:)` stays an out-of-line call, which in the GELU loop made
  // the bf16 store cost 0.85 ns an element against 0.3 for this
  return unsafeBitCast(lanes, to: SIMD32<UInt16>.self).evenHalf
}

/// Stores 16 values rounded to bf16 at `p + i`.
@inlinable @inline(__always)
public func storeBF16x16(_ p: UnsafeMutablePointer<UInt16>, _ i: Int, _ v: FloatVector) {
  UnsafeMutableRawPointer(p + i).storeBytes(of: bf16Bits(v), as: SIMD16<UInt16>.self)
}

/// `dst[i] = bf16(src[i])` for `count` values, 16 lanes at a time.
@inlinable
public func convertToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
  var i = 0
  while i + 16 <= count {
    storeBF16x16(dst, i, UnsafeRawPointer(src + i).loadUnaligned(as: FloatVector.self))
    i += 16
  }
  while i < count {
    dst[i] = bf16Bits(src[i])
    i += 1
  }
}

/// `dst[i] = Float(src[i])` for `count` bfloat16 values.
@inlinable
public func convertFromBF16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
  for i in 0..<count { dst[i] = floatFromBF16(src[i]) }
}
