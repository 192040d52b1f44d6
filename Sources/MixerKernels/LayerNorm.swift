// LayerNorm over the last axis (Ba, Kiros, Hinton 2016), as Flax's `nn.LayerNorm` with epsilon
// 1e-6 and a biased variance. Rows are any leading axes flattened: here `rows = S·B`.
// forward overwrites out, mean, rstd; backward accumulates into dinp, dweight, dbias. The row
// loops are CMixerVector's, at the CPU's instruction set (KernelISA).

import CMixerVector

/// out[r, c] = (inp[r, c] − mean[r]) · rstd[r] · weight[c] + bias[c]. With `outBF16` (operand
/// storage of the products, MatrixProducts.swift) out is written there rounded to bf16 instead.
public func layerNormForward(
  out: UnsafeMutablePointer<Float>, outBF16: UnsafeMutablePointer<UInt16>? = nil,
  mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  rows: Int, channels: Int, epsilon: Float = 1e-6
) {
  KernelProfile.measure("layernorm forward") {
    parallelRows(rows, elementsPerRow: channels) { _, chunk in
      mx_layernorm_forward(
        out, outBF16, mean, rstd, inp, weight, bias, chunk.lowerBound, chunk.upperBound, channels,
        epsilon)
    }
  }
}

/// The gradient of `layerNormForward` (llm.c's form): with x̂ = (x − mean)·rstd and g = dout·weight,
/// dinp += (g − mean(g) − x̂·mean(g·x̂)) · rstd; dweight += dout·x̂; dbias += dout.
public func layerNormBackward(
  dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
  dbias: UnsafeMutablePointer<Float>,
  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
  mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
  rows: Int, channels: Int
) {
  KernelProfile.measure("layernorm backward") {
    let c = channels
    let chunks = parallelChunks(rows, elementsPerRow: c)
    // one partial dweight/dbias per chunk (added in chunk order), or the outputs themselves
    let partial = chunks > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * chunks * c) : nil
    partial?.initialize(repeating: 0, count: 2 * chunks * c)
    defer { partial?.deallocate() }
    parallelRows(rows, elementsPerRow: c) { chunk, chunkRows in
      mx_layernorm_backward(
        dinp, partial.map { $0 + 2 * chunk * c } ?? dweight,
        partial.map { $0 + (2 * chunk + 1) * c } ?? dbias, dout, inp, weight, mean, rstd,
        chunkRows.lowerBound, chunkRows.upperBound, c)
    }
    if let partial {
      for chunk in 0..<chunks {
        for i in 0..<c {
          dweight[i] += partial[2 * chunk * c + i]
          dbias[i] += partial[(2 * chunk + 1) * c + i]
        }
      }
    }
  }
}
