// Bias gradients of a `[rows, cols]` matrix output: the forward add is fused into GELU (hidden
// layers) or into the residual/stem (output layers). Both functions accumulate into dbias.

/// dbias[j] += Σ_r dout[r, j]   (bias per column: channel-mixing and stem and head Denses)
public func biasBackwardColumns(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    for r in 0..<rows {
      let d = dout + r * cols
      for j in 0..<cols { dbias[j] += d[j] }
    }
  }
}

/// dbias[r] += Σ_j dout[r, j]   (bias per row: token-mixing Denses, rows are tokens)
public func biasBackwardRows(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    for r in 0..<rows { dbias[r] += vsum(dout + r * cols, cols) }
  }
}

/// out[r, j] = bias[j] for every row (so a following `gemm` with beta = 1 adds the product).
public func broadcastColumns(
  out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int
) {
  for r in 0..<rows { (out + r * cols).update(from: bias, count: cols) }
}
