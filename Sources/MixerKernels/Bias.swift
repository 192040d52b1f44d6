// Bias gradients of a `[rows, cols]` matrix output: the forward add is fused into GELU (hidden
// layers) or into the residual/stem (output layers). The gradient functions accumulate into dbias.
// The bf16 pair serves the hidden layers of bf16 training (MatrixProducts.swift): a per-row bias
// added to a bf16 pre-activation, and the bias gradient of a bf16 gradient. The loops are
// CMixerVector's, at the CPU's instruction set (KernelISA).

import CMixerVector

/// dbias[j] += Σ_r dout[r, j]   (bias per column: channel-mixing and stem and head Denses). The
/// columns split over the kernel threads, each still summed over the rows in order: the same
/// bits on any thread count.
public func biasBackwardColumns(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    parallelRows(cols, elementsPerRow: rows) { _, columns in
      mx_sum_columns(dbias, dout, rows, cols, columns.lowerBound, columns.upperBound)
    }
  }
}

/// dbias[r] += Σ_j dout[r, j]   (bias per row: token-mixing Denses, rows are tokens). Each row's
/// sum is its own, so the rows split over the kernel threads with the same bits.
public func biasBackwardRows(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("bias backward") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      mx_sum_rows(dbias, dout, chunk.lowerBound, chunk.upperBound, cols)
    }
  }
}

/// x[r, j] = bf16(x[r, j] + bias[r]) for the bf16 matrix x `[rows, cols]`, in place.
public func addRowBiasBF16(_ x: UnsafeMutablePointer<UInt16>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
  KernelProfile.measure("bias forward bf16") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      mx_add_row_bias_bf16(x, bias, chunk.lowerBound, chunk.upperBound, cols)
    }
  }
}

/// out[r, j] = bias[j] for every row (so a following `gemm` with beta = 1 adds the product).
public func broadcastColumns(
  out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int
) {
  for r in 0..<rows { (out + r * cols).update(from: bias, count: cols) }
}

/// dbias += the sums of the bf16 matrix `dout` `[rows, cols]` along `axis` (per row or per
/// column), in fp32, split over the kernel threads.
public func biasBackwardBF16(
  dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<UInt16>, rows: Int, cols: Int, axis: BiasAxis
) {
  KernelProfile.measure("bias backward") {
    parallelRowsSummingBias(into: dbias, rows: rows, cols: cols, axis: axis) { sums, chunk in
      mx_sum_bf16(sums, dout, chunk.lowerBound, chunk.upperBound, cols, axis == .rows ? 1 : 0)
    }
  }
}

/// `parallelRows` for a kernel that adds the sums of its `[rows, cols]` output along `axis` into
/// dbias: `body(sums, rows)` adds into `sums`, which is dbias itself for per-row sums (each chunk
/// owns its rows) and, for per-column sums over several chunks, a zeroed partial row of the
/// chunk's own, added into dbias in chunk order afterwards (the same bits for the same threads).
func parallelRowsSummingBias(
  into dbias: UnsafeMutablePointer<Float>, rows: Int, cols: Int, axis: BiasAxis,
  _ body: (UnsafeMutablePointer<Float>, Range<Int>) -> Void
) {
  let chunks = axis == .columns ? parallelChunks(rows, elementsPerRow: cols) : 1
  let partial = chunks > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: chunks * cols) : nil
  partial?.initialize(repeating: 0, count: chunks * cols)
  defer { partial?.deallocate() }
  parallelRows(rows, elementsPerRow: cols) { chunk, chunkRows in
    body(axis == .columns ? (partial.map { $0 + chunk * cols } ?? dbias) : dbias, chunkRows)
  }
  if let partial {
    for chunk in 0..<chunks {
      for j in 0..<cols { dbias[j] += partial[chunk * cols + j] }
    }
  }
}
