// LayerNorm fused with the u8 quantization of its output, for an int8 product that reads it: the
// normalised row never exists in fp32.
//   q = clamp(round(((x − mean)·rstd·weight + bias) / scale) + zeroPoint, 0, 255)
// with mean and rstd = 1/√(var + ε) over the C channels of each row, as `layerNormForward`
// (rounding to nearest even, as `quantizeU8`). q is overwritten, in one of two layouts:
//   .rows                      q `[S·B, C]` as x (the channel-mixing input)
//   .transposed(tokens, batch) q `[B·C, S]`, q[b·C + c, s] for x row s·B + b (the token-mixing
//                              input Yᵀ, so its product reads contiguous rows); rows are done 16
//                              tokens at a time and written out as 16-byte runs
// Forward only (inference); no caches are written. The sums use 16-lane accumulators.

import MixerKernels

/// Where `layerNormQuantizeForward` puts row r = s·B + b, channel c.
enum QuantizedLayout {
  case rows
  case transposed(tokens: Int, batch: Int)
}

/// Floats of staging `layerNormQuantizeForward` needs for C channels (the folded affine
/// parameters and 16 quantized rows).
func layerNormQuantizeStaging(channels c: Int) -> Int { 2 * c + 4 * c }

/// q = quantize(LayerNorm(inp)); inp `[rows, C]`, weight and bias `[C]`, q as `layout` says;
/// `staging` holds `layerNormQuantizeStaging(channels:)` floats (overwritten).
func layerNormQuantizeForward(
  q: UnsafeMutablePointer<UInt8>, staging: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  rows: Int, channels c: Int, epsilon: Float, quantization p: ActivationQuantization, layout: QuantizedLayout
) {
  let name: String
  if case .rows = layout { name = "layernorm+quantize u8" } else { name = "layernorm+quantize u8 transposed" }
  KernelProfile.measure(name) {
    let inverse = 1 / p.scale, zero = Float(p.zeroPoint)
    let tile = 16
    // the affine part folded with the quantization: q = round(x̂·w' + b'), w' = w/scale, b' = b/scale + z
    let w = staging, b = staging + c
    let staged = UnsafeMutableRawPointer(staging + 2 * c).bindMemory(to: UInt8.self, capacity: tile * c)  // [16, C] u8
    for i in 0..<c {
      w[i] = weight[i] * inverse
      b[i] = bias[i] * inverse + zero
    }
    switch layout {
    case .rows:
      for r in 0..<rows { normalizeQuantizeRow(q + r * c, inp + r * c, w, b, c, epsilon) }
    case .transposed(let tokens, let batch):
      for image in 0..<batch {
        for s0 in stride(from: 0, to: tokens, by: tile) {
          let count = min(tile, tokens - s0)
          for t in 0..<count { normalizeQuantizeRow(staged + t * c, inp + ((s0 + t) * batch + image) * c, w, b, c, epsilon) }
          let out = q + image * c * tokens + s0
          for i in 0..<c {
            let o = out + i * tokens
            for t in 0..<count { o[t] = staged[t * c + i] }
          }
        }
      }
    }
  }
}

/// One row: out[i] = clamp(round((x[i] − mean)·rstd·w[i] + b[i]), 0, 255).
@inline(__always)
private func normalizeQuantizeRow(
  _ out: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
  _ c: Int, _ epsilon: Float
) {
  typealias V = SIMD16<Float>
  func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
  let vectorEnd = c - c % 16
  var sumV = V.zero
  for i in stride(from: 0, to: vectorEnd, by: 16) { sumV += load(x + i) }
  var sum = sumV.sum()
  for i in vectorEnd..<c { sum += x[i] }
  let mean = sum / Float(c)
  var squaresV = V.zero
  for i in stride(from: 0, to: vectorEnd, by: 16) {
    let d = load(x + i) - mean
    squaresV += d * d
  }
  var squares = squaresV.sum()
  for i in vectorEnd..<c { squares += (x[i] - mean) * (x[i] - mean) }
  let rstd = 1 / (squares / Float(c) + epsilon).squareRoot()
  // a plain loop (no reduction), which the compiler vectorises
  for i in 0..<c {
    let v = ((x[i] - mean) * rstd * w[i] + b[i]).rounded(.toNearestOrEven)
    out[i] = UInt8(Int32(min(255, max(0, v))))
  }
}
