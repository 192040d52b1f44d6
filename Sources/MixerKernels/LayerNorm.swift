// LayerNorm over the last axis (Ba, Kiros, Hinton 2016), as Flax's `nn.LayerNorm` with epsilon
// 1e-6 and a biased variance. Rows are any leading axes flattened: here `rows = S·B`.
// forward overwrites out, mean, rstd; backward accumulates into dinp, dweight, dbias.

/// out[r, c] = (inp[r, c] − mean[r]) · rstd[r] · weight[c] + bias[c]
public func layerNormForward(
  out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
  rstd: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  rows: Int, channels: Int, epsilon: Float = 1e-6
) {
  let c = channels
  for r in 0..<rows {
    let x = inp + r * c
    let y = out + r * c
    let m = vsum(x, c) / Float(c)
    let variance = vsumSquaredDeviation(x, c, m) / Float(c)
    let s = 1 / (variance + epsilon).squareRoot()
    for i in 0..<c { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
    mean[r] = m
    rstd[r] = s
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
  let c = channels
  for r in 0..<rows {
    let x = inp + r * c
    let dy = dout + r * c
    let dx = dinp + r * c
    let m = mean[r]
    let s = rstd[r]
    var sumG: Float = 0
    var sumGXhat: Float = 0
    for i in 0..<c {
      let xhat = (x[i] - m) * s
      let g = dy[i] * weight[i]
      sumG += g
      sumGXhat += g * xhat
      dweight[i] += dy[i] * xhat
      dbias[i] += dy[i]
    }
    let meanG = sumG / Float(c)
    let meanGXhat = sumGXhat / Float(c)
    for i in 0..<c {
      let xhat = (x[i] - m) * s
      dx[i] += (dy[i] * weight[i] - meanG - xhat * meanGXhat) * s
    }
  }
}
