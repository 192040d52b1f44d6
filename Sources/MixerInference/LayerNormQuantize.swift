// LayerNorm fused with the u8 quantization of its output, for an int8 product that reads it: the
// normalised row never leaves the registers in fp32.
//   q = clamp(round(((x − mean)·rstd·weight + bias) / scale) + zeroPoint, 0, 255)
// with mean and rstd = 1/√(var + ε) over the C channels of each row: the normalised value is
// computed exactly as `layerNormForward` computes it (the same sums and the same operations in the
// same order), and quantized exactly as `quantizeU8` (ONNX QuantizeLinear's formula: divide by the
// scale, round half to even, add the zero point, saturate), so the fused kernel gives the same
// bytes as LayerNorm followed by `quantizeU8`. q is overwritten, in one of two layouts:
//   .rows                      q `[S·B, C]` as x (the channel-mixing input)
//   .transposed(tokens, batch) q `[B·C, S]`, q[b·C + c, s] for x row s·B + b (the token-mixing
//                              input Yᵀ, so its product reads contiguous rows); rows are done 16
//                              tokens at a time and written out as 16-byte runs
// Forward only (inference); no caches are written.

import MixerKernels

/// Where `layerNormQuantizeForward` puts row r = s·B + b, channel c.
enum QuantizedLayout {
  case rows
  case transposed(tokens: Int, batch: Int)
}

/// Floats of staging `layerNormQuantizeForward` needs for C channels (16 quantized rows).
func layerNormQuantizeStaging(channels c: Int) -> Int { 4 * c }

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
    let tile = 16
    switch layout {
    case .rows:
      parallelRows(rows, elementsPerRow: c) { _, rows in
        for r in rows { normalizeQuantizeRow(q + r * c, inp + r * c, weight, bias, c, epsilon, p) }
      }
    case .transposed(let tokens, let batch):
      // images split over the kernel threads; the first chunk stages in `staging`, the others in
      // their own [16, C] bytes
      parallelRows(batch, elementsPerRow: tokens * c) { chunk, images in
        let own = chunk == 0 ? nil : UnsafeMutablePointer<UInt8>.allocate(capacity: tile * c)
        defer { own?.deallocate() }
        let staged = own ?? UnsafeMutableRawPointer(staging).bindMemory(to: UInt8.self, capacity: tile * c)  // [16, C] u8
        for image in images {
          for s0 in stride(from: 0, to: tokens, by: tile) {
            let count = min(tile, tokens - s0)
            for t in 0..<count {
              normalizeQuantizeRow(staged + t * c, inp + ((s0 + t) * batch + image) * c, weight, bias, c, epsilon, p)
            }
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
}

/// One row: out[i] = clamp(round(((x[i] − mean)·rstd·w[i] + b[i]) / scale) + zeroPoint, 0, 255).
@inline(__always)
private func normalizeQuantizeRow(
  _ out: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
  _ c: Int, _ epsilon: Float, _ p: ActivationQuantization
) {
  let mean = vsum(x, c) / Float(c)
  let variance = vsumSquaredDeviation(x, c, mean) / Float(c)
  let rstd = 1 / (variance + epsilon).squareRoot()
  let scale = p.scale, zero = Float(p.zeroPoint)
  // a plain loop (no reduction), which the compiler vectorises
  for i in 0..<c {
    let v = (((x[i] - mean) * rstd * w[i] + b[i]) / scale).rounded(.toNearestOrEven) + zero
    out[i] = UInt8(Int32(min(255, max(0, v))))
  }
}
