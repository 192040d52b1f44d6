// GradientPrecision: the number format gradients travel in (`--grad-comm`). fp32 sends the flat
// float buffer as it is; bf16 (bfloat16: fp32's sign and 8-bit exponent, 7 mantissa bits) halves
// the bytes on the wire. Each bucket is rounded to bf16 (to nearest, ties to even), summed over
// the ranks by a reduction that adds two bf16 values in fp32 and rounds the sum once, and widened
// back to fp32 in place. The exponent range is fp32's, so gradients scaled by 1/global batch do
// not underflow as they would in fp16; the price is a relative error of at most 2^-9 per rounding
// (one rounding per rank on the way through MPI's reduction).
//
// The conversions and the reduction's inner loop live here; MPICommunicator registers the loop as
// a user-defined MPI operation, the in-process communicators call it directly.

/// The format of gradients on the wire.
public enum GradientPrecision: String, CaseIterable, Codable, Sendable {
  /// 4 bytes per gradient, exact sums (bit-identical to one rank up to summation order).
  case fp32
  /// 2 bytes per gradient, bfloat16 (half the bytes, about 3 significant digits).
  case bf16

  /// Bytes per gradient element on the wire.
  public var bytesPerElement: Int { self == .fp32 ? 4 : 2 }
}

/// The bfloat16 nearest to `value` (ties to even); NaN stays a (quiet) NaN, infinities stay.
@inline(__always)
public func bfloat16Bits(_ value: Float) -> UInt16 {
  let bits = value.bitPattern
  if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
  let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
  return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
}

/// The float a bfloat16 stands for (exact).
@inline(__always)
public func floatFromBFloat16(_ bits: UInt16) -> Float {
  Float(bitPattern: UInt32(bits) << 16)
}

/// Rounds `count` floats to bfloat16: `output[i] = bf16(input[i])`.
public func convertToBFloat16(_ output: UnsafeMutablePointer<UInt16>, _ input: UnsafePointer<Float>, count: Int) {
  for i in 0..<count { output[i] = bfloat16Bits(input[i]) }
}

/// Widens `count` bfloat16 values to floats: `output[i] = float(input[i])`.
public func convertFromBFloat16(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<UInt16>, count: Int) {
  for i in 0..<count { output[i] = floatFromBFloat16(input[i]) }
}

/// The bf16 sum reduction: `accumulator[i] = bf16(float(accumulator[i]) + float(input[i]))`, the
/// sum formed in fp32 and rounded once.
public func addBFloat16(_ accumulator: UnsafeMutablePointer<UInt16>, _ input: UnsafePointer<UInt16>, count: Int) {
  for i in 0..<count {
    accumulator[i] = bfloat16Bits(floatFromBFloat16(accumulator[i]) + floatFromBFloat16(input[i]))
  }
}
