// A K×K, stride-1, zero-padded ("SAME") convolution over the token grid of token-major
// activations, by im2col and one sgemm. Token s is grid cell (s / gridW, s % gridW), row-major;
// the weight is HWIO `[K, K, Cin, Cout]` (Flax `nn.Conv`), which read as `[K·K·Cin, Cout]` is
// the right-hand side of the GEMM because a column row is laid out (ky, kx, Cin) in that order.
//
//   out[s, b, co] = bias[co] + Σ_{ky, kx, ci} inp[s', b, ci] · weight[ky, kx, ci, co],
//   s' = the token at (gy + ky − pad, gx + kx − pad), pad = (K − 1) / 2; outside the grid reads 0.
//
// Forward overwrites out and columns (the im2col matrix, kept as the backward's cache).
// Backward accumulates into dinp, dweight and dbias and overwrites scratch. It reads columns only
// before it writes scratch, so a caller holding raw pointers may pass the same memory for both.

/// Number of floats in the im2col buffer (`columns`, `scratch`): `[S·B, K·K·Cin]`.
public func tokenConvColumnsCount(
  gridHeight: Int, gridWidth: Int, batch: Int, inChannels: Int, kernel: Int
) -> Int {
  gridHeight * gridWidth * batch * kernel * kernel * inChannels
}

/// out (`[S, B, Cout]`) = conv(inp `[S, B, Cin]`, weight `[K, K, Cin, Cout]`) + bias `[Cout]`;
/// columns (`[S·B, K·K·Cin]`) receives the im2col matrix. K must be odd.
public func tokenConvForward(
  out: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  gridHeight: Int, gridWidth: Int, batch: Int, inChannels: Int, outChannels: Int, kernel: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  precondition(kernel > 0 && kernel % 2 == 1, "tokenConvForward: kernel \(kernel) must be odd")
  let rows = gridHeight * gridWidth * batch
  let patchLength = kernel * kernel * inChannels
  KernelProfile.measure("token conv im2col") {
    tokenIm2col(
      columns: columns, inp: inp, gridHeight: gridHeight, gridWidth: gridWidth, batch: batch,
      inChannels: inChannels, kernel: kernel)
  }
  columnsProductForward(
    out: out, columns: columns, weight: weight, bias: bias, rows: rows, patchLength: patchLength,
    outChannels: outChannels, products: products)
}

/// dweight (`[K, K, Cin, Cout]`) += columnsᵀ·dout, dbias (`[Cout]`) += Σ_rows dout,
/// dinp (`[S, B, Cin]`) += col2im(dout·weightᵀ). scratch (`[S·B, K·K·Cin]`) is overwritten.
public func tokenConvBackward(
  dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
  dbias: UnsafeMutablePointer<Float>,
  dout: UnsafePointer<Float>, columns: UnsafePointer<Float>, weight: UnsafePointer<Float>,
  scratch: UnsafeMutablePointer<Float>,
  gridHeight: Int, gridWidth: Int, batch: Int, inChannels: Int, outChannels: Int, kernel: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  precondition(kernel > 0 && kernel % 2 == 1, "tokenConvBackward: kernel \(kernel) must be odd")
  let rows = gridHeight * gridWidth * batch
  let patchLength = kernel * kernel * inChannels
  // columns is not read after this: scratch may be the same buffer
  columnsProductBackward(
    dweight: dweight, dbias: dbias, scratch: scratch, dout: dout, columns: columns, weight: weight,
    rows: rows, patchLength: patchLength, outChannels: outChannels, products: products)
  KernelProfile.measure("token conv col2im") {
    tokenCol2im(
      dinp: dinp, columns: scratch, gridHeight: gridHeight, gridWidth: gridWidth, batch: batch,
      inChannels: inChannels, kernel: kernel)
  }
}

/// columns[(s, b), (ky, kx, :)] = inp[neighbour (ky, kx) of s, b, :], or 0 outside the grid.
public func tokenIm2col(
  columns: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
  gridHeight: Int, gridWidth: Int, batch: Int, inChannels: Int, kernel: Int
) {
  let pad = (kernel - 1) / 2
  let patchLength = kernel * kernel * inChannels
  for gy in 0..<gridHeight {
    for gx in 0..<gridWidth {
      let s = gy * gridWidth + gx
      for ky in 0..<kernel {
        let y = gy + ky - pad
        for kx in 0..<kernel {
          let x = gx + kx - pad
          let offset = (ky * kernel + kx) * inChannels
          let inside = y >= 0 && y < gridHeight && x >= 0 && x < gridWidth
          let source = (y * gridWidth + x) * batch
          for b in 0..<batch {
            let dst = columns + (s * batch + b) * patchLength + offset
            if inside {
              dst.update(from: inp + (source + b) * inChannels, count: inChannels)
            } else {
              dst.update(repeating: 0, count: inChannels)
            }
          }
        }
      }
    }
  }
}

/// The adjoint of `tokenIm2col`: dinp[neighbour (ky, kx) of s, b, :] += columns[(s, b), (ky, kx, :)].
private func tokenCol2im(
  dinp: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>,
  gridHeight: Int, gridWidth: Int, batch: Int, inChannels: Int, kernel: Int
) {
  let pad = (kernel - 1) / 2
  let patchLength = kernel * kernel * inChannels
  for gy in 0..<gridHeight {
    for gx in 0..<gridWidth {
      let s = gy * gridWidth + gx
      for ky in 0..<kernel {
        let y = gy + ky - pad
        guard y >= 0 && y < gridHeight else { continue }
        for kx in 0..<kernel {
          let x = gx + kx - pad
          guard x >= 0 && x < gridWidth else { continue }
          let offset = (ky * kernel + kx) * inChannels
          let target = (y * gridWidth + x) * batch
          for b in 0..<batch {
            let src = columns + (s * batch + b) * patchLength + offset
            let dst = dinp + (target + b) * inChannels
            for c in 0..<inChannels { dst[c] += src[c] }
          }
        }
      }
    }
  }
}
