// GradientPrecision: the number format gradients travel in (`--grad-comm`). fp32 sends the flat
// float buffer as it is; bf16 (bfloat16: fp32's sign and 8-bit exponent, 7 mantissa bits) halves
// the bytes on the wire. Each bucket is rounded to bf16 (to nearest, ties to even), summed over
// the ranks by a reduction that adds two bf16 values in fp32 and rounds the sum once, and widened
// back to fp32 in place. The exponent range is fp32's, so gradients scaled by 1/global batch do
// not underflow as they would in fp16; the price is a relative error of at most 2^-9 per rounding
// (one rounding per rank on the way through MPI's reduction).
//
// The rounding is MixerNumerics' `bf16Bits` (the project's one bf16 rounding); the reduction's
// inner loop lives here: MPICommunicator registers it as a user-defined MPI operation, the
// in-process communicators call it directly.

import MixerNumerics

/// The format of gradients on the wire.
public enum GradientPrecision: String, CaseIterable, Codable, Sendable {
  /// 4 bytes per gradient, exact sums (bit-identical to one rank up to summation order).
  case fp32
  /// 2 bytes per gradient, bfloat16 (half the bytes, about 3 significant digits).
  case bf16

  /// Bytes per gradient element on the wire.
  public var bytesPerElement: Int { self == .fp32 ? 4 : 2 }
}

/// The bf16 sum reduction: `accumulator[i] = bf16(float(accumulator[i]) + float(input[i]))`, the
/// sum formed in fp32 and rounded once.
public func addBFloat16(_ accumulator: UnsafeMutablePointer<UInt16>, _ input: UnsafePointer<UInt16>, count: Int) {
  for i in 0..<count {
    accumulator[i] = bf16Bits(floatFromBF16(accumulator[i]) + floatFromBF16(input[i]))
  }
}
