// Bias gradients of a `[rows, cols]` matrix output: the forward add is fused into GELU (hidden
// layers) or into the residual/stem (output layers). Both functions accumulate into dbias.
// Rows run on `KernelThreads.count` threads; per-column sums keep one partial row per chunk,
// added in chunk order (the same bits for a given thread count).

/// dbias[j] += Σ_r dout[r, j]   (bias per column: channel-mixing and stem and head Denses)
public func biasBackwardColumns(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    let chunks = parallelChunks(rows, elementsPerRow: cols)
    let partial = chunks > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: chunks * cols) : nil
    partial?.initialize(repeating: 0, count: chunks * cols)
    defer { partial?.deallocate() }
    parallelRows(rows, elementsPerRow: cols) { chunk, chunkRows in
      let sums = partial.map { $0 + chunk * cols } ?? dbias
      for r in chunkRows { vadd(sums, dout + r * cols, cols) }
    }
    if let partial {
      for chunk in 0..<chunks { vadd(dbias, partial + chunk * cols, cols) }
    }
  }
}

/// dbias[r] += Σ_j dout[r, j]   (bias per row: token-mixing Denses, rows are tokens)
public func biasBackwardRows(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      for r in chunk { dbias[r] += vsum(dout + r * cols, cols) }
    }
  }
}

/// out[r, j] = bias[j] for every row (so a following `gemm` with beta = 1 adds the product).
public func broadcastColumns(
  out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int
) {
  for r in 0..<rows { (out + r * cols).update(from: bias, count: cols) }
}
