// LayerNorm over the last axis (Ba, Kiros, Hinton 2016), as Flax's `nn.LayerNorm` with epsilon
// 1e-6 and a biased variance. Rows are any leading axes flattened: here `rows = S·B`.
// forward overwrites out, mean, rstd; backward accumulates into dinp, dweight, dbias.

/// out[r, c] = (inp[r, c] − mean[r]) · rstd[r] · weight[c] + bias[c]. With `outBF16` (operand
/// storage of the products, MatrixProducts.swift) out is written there rounded to bf16 instead.
public func layerNormForward(
  out: UnsafeMutablePointer<Float>, outBF16: UnsafeMutablePointer<UInt16>? = nil,
  mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  rows: Int, channels: Int, epsilon: Float = 1e-6
) {
  KernelProfile.measure("layernorm forward") {
    let c = channels
    parallelRows(rows, elementsPerRow: c) { _, chunk in
    for r in chunk {
      let x = inp + r * c
      let m = vsum(x, c) / Float(c)
      let variance = vsumSquaredDeviation(x, c, m) / Float(c)
      let s = 1 / (variance + epsilon).squareRoot()
      if let out16 = outBF16.map({ $0 + r * c }) {
        var i = 0
        let mv = FloatVector(repeating: m), sv = FloatVector(repeating: s)
        while i + 16 <= c {
          storeBF16x16(out16, i, (load16(x, i) - mv) * sv * load16(weight, i) + load16(bias, i))
          i += 16
        }
        while i < c { out16[i] = bf16Bits((x[i] - m) * s * weight[i] + bias[i]); i += 1 }
      } else {
        let y = out + r * c
        for i in 0..<c { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
      }
      mean[r] = m
      rstd[r] = s
    }
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
    let dweight = partial.map { $0 + 2 * chunk * c } ?? dweight
    let dbias = partial.map { $0 + (2 * chunk + 1) * c } ?? dbias
    for r in chunkRows {
      let x = inp + r * c
      let dy = dout + r * c
      let dx = dinp + r * c
      let m = FloatVector(repeating: mean[r])
      let s = FloatVector(repeating: rstd[r])
      // pass 1: Σ g and Σ g·x̂ (g = dout·weight), and the parameter gradients
      var sumG = FloatVector(), sumGXhat = FloatVector()
      var i = 0
      while i + 16 <= c {
        let xhat = (load16(x, i) - m) * s
        let d = load16(dy, i)
        let g = d * load16(weight, i)
        sumG += g
        sumGXhat += g * xhat
        store16(dweight, i, load16(dweight, i) + d * xhat)
        store16(dbias, i, load16(dbias, i) + d)
        i += 16
      }
      var totalG = sumG.sum(), totalGXhat = sumGXhat.sum()
      while i < c {
        let xhat = (x[i] - mean[r]) * rstd[r]
        let g = dy[i] * weight[i]
        totalG += g
        totalGXhat += g * xhat
        dweight[i] += dy[i] * xhat
        dbias[i] += dy[i]
        i += 1
      }
      // pass 2: dinp += (g − mean(g) − x̂·mean(g·x̂)) · rstd
      let meanG = FloatVector(repeating: totalG / Float(c))
      let meanGXhat = FloatVector(repeating: totalGXhat / Float(c))
      i = 0
      while i + 16 <= c {
        let xhat = (load16(x, i) - m) * s
        let g = load16(dy, i) * load16(weight, i)
        store16(dx, i, load16(dx, i) + (g - meanG - xhat * meanGXhat) * s)
        i += 16
      }
      while i < c {
        let xhat = (x[i] - mean[r]) * rstd[r]
        dx[i] += (dy[i] * weight[i] - meanG[0] - xhat * meanGXhat[0]) * rstd[r]
        i += 1
      }
    }
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
