// The matrix half of an im2col convolution, shared by the token-grid and image convolutions:
// out = columns · weight + bias, and its gradients. forward overwrites out; backward accumulates
// into dweight and dbias and overwrites scratch (which may be the columns buffer itself: columns
// is read before scratch is written).

/// out[rows, Cout] = bias + columns[rows, K·K·Cin] · weight[K·K·Cin, Cout]
func columnsProductForward(
  out: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>, weight: UnsafePointer<Float>,
  bias: UnsafePointer<Float>, rows: Int, patchLength: Int, outChannels: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  broadcastColumns(out: out, bias: bias, rows: rows, cols: outChannels)
  products.gemm(
    .none, .none, m: rows, n: outChannels, k: patchLength, a: columns, lda: patchLength,
    b: weight, ldb: outChannels, beta: 1, c: out, ldc: outChannels)
}

/// dweight += columnsᵀ·dout, dbias += Σ_rows dout, scratch[rows, K·K·Cin] = dout·weightᵀ
func columnsProductBackward(
  dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
  scratch: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, columns: UnsafePointer<Float>,
  weight: UnsafePointer<Float>, rows: Int, patchLength: Int, outChannels: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  products.gemm(
    .transpose, .none, m: patchLength, n: outChannels, k: rows, a: columns, lda: patchLength,
    b: dout, ldb: outChannels, beta: 1, c: dweight, ldc: outChannels)
  biasBackwardColumns(dbias: dbias, dout: dout, rows: rows, cols: outChannels)
  products.gemm(
    .none, .transpose, m: rows, n: patchLength, k: outChannels, a: dout, lda: outChannels,
    b: weight, ldb: outChannels, beta: 0, c: scratch, ldc: patchLength)
}
